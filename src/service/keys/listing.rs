//! The two listings ("Application Keys" and "My Keys") and the lookup of one key. Both read the
//! account's `key_access` rows joined with their keys, filtered, sorted and paged by keyset.
use std::collections::hash_map::{Entry, HashMap};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, ExprTrait, Func, LikeExpr};
use sea_orm::{
    sea_query, ColumnTrait, Condition, DatabaseBackend, EntityTrait, JoinType, QueryFilter, QuerySelect, QueryTrait,
    RelationTrait, Select,
};

use super::row::{KeyRow, KeySource};
use super::usage::unused_since_condition;
use super::{
    has_roles, renewal_alert_condition, status_condition, view_of, visible_label_matches, visible_label_search,
    AccessFacts, AppKeyView, KeyFacts, KeyStatus, KeyType, LastUse, Leak, RenewalAlert, Viewpoint,
};
use crate::entity::{account, app_key, key_access};
use crate::error::{AppError, AppResult};
use crate::service::identity::roles;
use crate::service::store::folded::{self, opt_instant, Instant};
use crate::service::store::page::{self, Cursor, Direction, PageRequest, Paged, SortBy};
use crate::service::store::query_text;
use crate::service::store::Store;

/// Which page of keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listing {
    /// "Application Keys": every internal and external key holding roles in this account.
    WithAccess,
    /// "My Keys": every internal key, with or without roles.
    Internal,
    /// Every key this account knows: its own, and others' it added (removed here included).
    Known,
}

#[derive(Debug, Clone, Default)]
pub struct KeyFilter {
    /// Exactly this key value (`appKey(key)` reads one key as a listing of one).
    pub key: Option<String>,
    pub search: Option<String>,
    pub status: Option<KeyStatus>,
    pub key_type: Option<KeyType>,
    pub renewal_alert: Option<RenewalAlert>,
    /// Keys not used in this account since then (never used: created before then).
    pub unused_since: Option<DateTime<Utc>>,
    /// Keys holding here a resource none of their requests needed for this many days (1–400).
    pub unused_permission_days: Option<i32>,
}

/// The longest `unusedPermissionDays`: as long as usage is kept by default, and AWS's window.
pub const MAX_UNUSED_PERMISSION_DAYS: i32 = 400;

/// What a listing is sorted by; the key's access id breaks ties (and is the whole order for
/// `CreatedAt`: ids are time-ordered, so it is the order keys were generated, or added here).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KeyOrder {
    #[default]
    CreatedAt,
    Key,
    /// The label; another account's key, whose label is never shown, sorts as if it had none.
    Label,
    /// The last use here; never-used keys sort as the oldest.
    LastUsedAt,
}

/// Never used sorts as this instant.
fn never() -> DateTime<Utc> {
    DateTime::<Utc>::UNIX_EPOCH
}

impl KeyOrder {
    fn sort_by(self) -> Option<SortBy> {
        let text = |raw: &str| Some(sea_orm::Value::from(raw.to_owned()));
        let time = |raw: &str| raw.parse::<DateTime<Utc>>().ok().map(sea_orm::Value::from);
        match self {
            KeyOrder::CreatedAt => None,
            KeyOrder::Key => {
                Some(SortBy { name: "key", expr: Expr::col((app_key::Entity, app_key::Column::Key)), value: text })
            }
            KeyOrder::Label => Some(SortBy { name: "label", expr: visible_label_search(), value: text }),
            KeyOrder::LastUsedAt => Some(SortBy {
                name: "used",
                expr: Func::coalesce([
                    Expr::col((key_access::Entity, key_access::Column::LastUsedAt)),
                    Expr::val(never()),
                ])
                .into(),
                value: time,
            }),
        }
    }

    /// A view's sort value, as its cursor carries it (the twin of `sort_by`).
    fn sort_value(self, view: &AppKeyView) -> Option<String> {
        match self {
            KeyOrder::CreatedAt => None,
            KeyOrder::Key => Some(view.key.clone()),
            KeyOrder::Label => Some(view.label.as_deref().map(str::to_lowercase).unwrap_or_default()),
            KeyOrder::LastUsedAt => {
                Some(crate::domain::instant::to_microsecond(view.last_use.as_ref().map_or_else(never, |u| u.at)))
            }
        }
    }
}

/// The cursor of a view in a listing in this order.
pub fn cursor_of(view: &AppKeyView, order: KeyOrder) -> Cursor {
    let sort = order.sort_by().zip(order.sort_value(view)).map(|(by, value)| SortBy::cursor_text(by.name, &value));
    Cursor { sort, id: view.access_id.clone() }
}

/// Who lists, and when.
pub struct Lister<'a> {
    pub account_id: &'a str,
    pub account_name: &'a str,
    pub now: DateTime<Utc>,
}

/// An access row's role ids as a JSON array, read through the link table's key (which leads with
/// the access id) without touching the roles themselves.
fn role_ids_json(backend: DatabaseBackend) -> &'static str {
    match backend {
        DatabaseBackend::Postgres => {
            r#"(SELECT COALESCE(json_agg(l."role_id"), '[]'::json) FROM "key_access_roles" l WHERE l."key_access_id" = "key_access"."id")"#
        }
        _ => {
            r#"(SELECT json_group_array(l."role_id") FROM "key_access_roles" l WHERE l."key_access_id" = "key_access"."id")"#
        }
    }
}

/// A page's statement and its `totalCount`'s, as `list` keeps them (see `memo_key`).
pub type BuiltPage = (folded::Folded, Arc<sea_query::SelectStatement>);

/// The table a listing reads access rows from.
const TABLE: &str = "key_access";

/// A listing page as one query: the page's access rows, each with its key, the key's owner's name
/// and its roles here, kept with the same rows folded into one row of JSON (`folded::fetch_from`
/// picks which to run). Also the statement behind `totalCount`.
fn page_statements(
    at: &Viewpoint,
    backend: DatabaseBackend,
    listing: Listing,
    filter: &KeyFilter,
    (order, direction): (KeyOrder, Direction),
    page: &PageRequest,
) -> AppResult<BuiltPage> {
    let base = access_select(at, listing, filter)?;
    let count = Arc::new(base.clone().into_query());
    let mut select = base.select_only().join(JoinType::InnerJoin, app_key::Relation::Owner.def());
    let sort = order.sort_by();
    // The key's read model, column by column (`KeyRow`); on SQLite the sort value is folded too
    // (see below), so it is the last column there.
    let mut columns = Vec::new();
    for &(alias, source) in KeyRow::COLUMNS {
        let (cell, column) = match source {
            KeySource::RoleIds => (Expr::cust(role_ids_json(backend)), folded::Column::json(alias)),
            KeySource::OwnerName => (Expr::col((account::Entity, account::Column::Name)), folded::Column::plain(alias)),
            KeySource::SortValue => match (&sort, backend) {
                (Some(sort), DatabaseBackend::Postgres) => {
                    select = select.expr_as(sort.expr.clone(), alias);
                    continue;
                }
                (Some(sort), _) => (sort.expr.clone(), folded::Column::plain(alias)),
                (None, _) => continue,
            },
            source => match source.column(TABLE) {
                Some(cell) => (cell, folded::Column::plain(alias)),
                None => continue,
            },
        };
        select = select.expr_as(cell, alias);
        columns.push(column);
    }
    let rows = page::arrange(select, sort.as_ref(), key_access::Column::Id, direction, page)?;
    let rows = page::with_literal_limit(rows.build(backend));
    // An aggregate need not keep its input's order. PostgreSQL is told the order (its text order
    // follows its collation); SQLite would build a temporary index for it, so there the sort value
    // is folded too and `list` sorts the rows by it (SQLite compares text bytewise, as Rust does).
    let way = if page::reads_descending(direction, page) { "DESC" } else { "ASC" };
    let order_sql = match (backend, &sort) {
        (DatabaseBackend::Postgres, Some(_)) => Some(format!("\"sort\" {way}, \"access_id\" {way}")),
        (DatabaseBackend::Postgres, None) => Some(format!("\"access_id\" {way}")),
        (_, _) => None,
    };
    Ok((folded::fold_keeping_rows(backend, rows, columns, order_sql.as_deref()), count))
}

/// A page's row as a view: the key, its access here, the owner's name and the roles in display order
/// (each role's view made once a page, in `views`, and shared by the keys that hold it).
fn view_of_row(
    at: &Viewpoint,
    row: KeyRow,
    known: &roles::AccountRoles,
    catalogue: &[roles::ResourceView],
    views: &mut HashMap<String, roles::RoleView>,
) -> AppKeyView {
    let mut roles: Vec<roles::RoleView> = row
        .roles
        .0
        .into_iter()
        .filter_map(|id| {
            let view = match views.entry(id) {
                Entry::Occupied(seen) => seen.into_mut(),
                Entry::Vacant(new) => {
                    let facts = known.get(new.key())?;
                    let id = new.key().clone();
                    new.insert(roles::view_of(id, facts.name.clone(), facts.predefined, &facts.held, catalogue))
                }
            };
            Some(view.clone())
        })
        .collect();
    roles::sort_for_display(&mut roles);
    let key = KeyFacts {
        id: row.id,
        key: row.key,
        account_id: row.owner_id,
        label: row.label,
        active: row.active.0,
        created_at: row.created_at.0,
        created_by: row.created_by,
        token_created_at: row.token_created_at.0,
        previous_token: row.previous_token.0,
        renewal_started_at: opt_instant(row.renewal_started_at),
        previous_token_expires_at: opt_instant(row.previous_token_expires_at),
        expires_at: opt_instant(row.expires_at),
        updated_at: row.updated_at.0,
        deactivation_reason: row.deactivation_reason,
        leak: opt_instant(row.leaked_at).map(|at| Leak { at, url: row.leak_url, source: row.leak_source }),
    };
    let access = AccessFacts {
        id: row.access_id,
        removed: row.removed.0,
        updated_at: row.access_updated_at.0,
        last_use: row.last_used_at.map(|Instant(at)| LastUse {
            at,
            ip: row.last_used_ip,
            user_agent: row.last_used_user_agent,
        }),
    };
    view_of(at, key, Some(access), row.owner, roles)
}

/// What names a page's statements whole, when they depend on nothing else: the same account,
/// listing, filter, order and page request build the same SQL and values, so `list` builds them
/// once (building took a tenth of a page request's own time). A filter by status, renewal alert or
/// unused permissions reads the clock (and the account's settings) into its values: never kept.
fn memo_key(
    at: &Viewpoint,
    backend: DatabaseBackend,
    listing: Listing,
    filter: &KeyFilter,
    order: (KeyOrder, Direction),
    page: &PageRequest,
) -> Option<String> {
    if filter.status.is_some() || filter.renewal_alert.is_some() || filter.unused_permission_days.is_some() {
        return None;
    }
    Some(format!("{backend:?}|{}|{listing:?}|{filter:?}|{order:?}|{page:?}", at.account_id))
}

/// The SQL of a listing's page (and of its `totalCount`), as `list` runs it through SQLite's pool
/// (on PostgreSQL and on a SQLite file read inline, the statement it folds, which this one holds
/// whole): for checking query plans (`EXPLAIN`).
pub async fn listing_statements(
    store: &Store,
    who: &Lister<'_>,
    listing: Listing,
    filter: &KeyFilter,
    order: (KeyOrder, Direction),
    page: &PageRequest,
) -> AppResult<(sea_orm::Statement, sea_orm::Statement)> {
    let at = Viewpoint::cached(store, who.account_id, who.account_name, who.now).await?;
    let backend = store.backend();
    let (rows, count) = page_statements(&at, backend, listing, filter, order, page)?;
    Ok((rows.statement, backend.build(&page::count_query(sea_query::SelectStatement::clone(&count)))))
}

/// Listing pages' statements, by what names them whole (see `memo_key`): the listing's part of
/// the store.
struct PageStatements(moka::sync::Cache<String, Arc<BuiltPage>>);

impl Default for PageStatements {
    fn default() -> Self {
        Self(moka::sync::Cache::new(1_000))
    }
}

/// One page of a listing in one query (see `page_statements`); the account's settings and the
/// resource catalogue from memory when current; the total only when asked.
pub async fn list(
    store: &Store,
    who: &Lister<'_>,
    listing: Listing,
    filter: &KeyFilter,
    order: (KeyOrder, Direction),
    page: &PageRequest,
) -> AppResult<Paged<AppKeyView>> {
    let at = Viewpoint::cached(store, who.account_id, who.account_name, who.now).await?;
    let build = || page_statements(&at, store.backend(), listing, filter, order, page).map(Arc::new);
    let built = match memo_key(&at, store.backend(), listing, filter, order, page) {
        Some(key) => match store.part::<PageStatements>().0.get(&key) {
            Some(built) => built,
            None => {
                let built = build()?;
                store.part::<PageStatements>().0.insert(key, built.clone());
                built
            }
        },
        None => build()?,
    };
    let count = built.1.clone();
    let catalogue = match &at.catalogue {
        Some(known) => std::borrow::Cow::Borrowed(known.as_slice()),
        None => std::borrow::Cow::Owned(roles::catalogue(store).await?),
    };
    let mut rows: Vec<KeyRow> = folded::fetch_from(store, &built.0).await?;
    if store.backend() != DatabaseBackend::Postgres {
        let descending = page::reads_descending(order.1, page);
        rows.sort_by(|a, b| {
            let ascending = (&a.sort, &a.access_id).cmp(&(&b.sort, &b.access_id));
            if descending {
                ascending.reverse()
            } else {
                ascending
            }
        });
    }
    // A role the remembered ones lack was made since they were read: read them again (a role
    // deleted since the page was read is left out, as the link went with it).
    let mut known = roles::cached_facts(store, who.account_id).await?;
    if rows.iter().flat_map(|row| &row.roles.0).any(|id| !known.contains_key(id)) {
        known = roles::fresh_facts(store, who.account_id).await?;
    }
    let mut views = HashMap::new();
    let items = rows.into_iter().map(|row| view_of_row(&at, row, &known, &catalogue, &mut views)).collect();
    Ok(page::finish(items, page::Total::new(store.db().clone(), count), page))
}

fn like_pattern(search: &str) -> LikeExpr {
    let escaped: String = search
        .to_lowercase()
        .chars()
        .flat_map(|c| match c {
            '%' | '_' | '\\' => vec!['\\', c],
            c => vec![c],
        })
        .collect();
    LikeExpr::new(format!("%{escaped}%")).escape('\\')
}

/// Case-insensitive substring of the key value (ASCII by construction, so `lower()` is the same on
/// every backend) or of the label (through `label_search`, lower-cased by appkeys itself).
fn key_contains(search: &str) -> Expr {
    Expr::expr(Func::lower(Expr::col((app_key::Entity, app_key::Column::Key)))).like(like_pattern(search))
}

fn access_select(at: &Viewpoint, listing: Listing, filter: &KeyFilter) -> AppResult<Select<key_access::Entity>> {
    let mut select = key_access::Entity::find()
        .join(JoinType::InnerJoin, key_access::Relation::AppKey.def())
        .filter(key_access::Column::AccountId.eq(at.account_id.as_str()));
    select = match listing {
        Listing::WithAccess => select.filter(has_roles()),
        Listing::Internal => select.filter(key_access::Column::External.eq(false)),
        Listing::Known => select,
    };
    if let Some(key) = &filter.key {
        select = select.filter(Expr::col((app_key::Entity, app_key::Column::Key)).eq(key.as_str()));
    }
    if let Some(key_type) = filter.key_type {
        select = select.filter(key_access::Column::External.eq(key_type == KeyType::External));
    }
    if let Some(status) = filter.status {
        select = select.filter(status_condition(status, at.now, false));
    }
    if let Some(alert) = filter.renewal_alert {
        select = select.filter(renewal_alert_condition(alert, at.now, at.settings.renewal_period_days));
    }
    if let Some(since) = filter.unused_since {
        select = select.filter(unused_since_condition(Some(&at.account_id), since));
    }
    if let Some(days) = filter.unused_permission_days {
        if !(1..=MAX_UNUSED_PERMISSION_DAYS).contains(&days) {
            return Err(AppError::bad_input(
                "filter.unusedPermissionDays",
                format!("unusedPermissionDays is a number of days from 1 to {MAX_UNUSED_PERMISSION_DAYS}"),
            ));
        }
        let since = at.now - chrono::Duration::days(i64::from(days));
        select = select.filter(super::meter::holds_unused_resource_condition(since));
    }
    if let Some(search) = filter.search.as_deref().filter(|s| !s.is_empty()) {
        let search = query_text(search, "filter.search")?;
        select =
            select.filter(Condition::any().add(key_contains(search)).add(visible_label_matches(like_pattern(search))));
    }
    Ok(select)
}

/// `appKey(key)`: the key as this account sees it, or `None` when this account has never known it.
/// Read as a listing of one key (one statement, the caches of a listing), so reading one key costs
/// what a row of a page does.
pub async fn get(store: &Store, who: &Lister<'_>, raw_key: &str) -> AppResult<Option<AppKeyView>> {
    let value = crate::domain::AppKeyValue::parse(raw_key).map_err(|e| e.at("key"))?;
    let filter = KeyFilter { key: Some(value.as_str().to_owned()), ..KeyFilter::default() };
    let page = PageRequest::parse(Some(1), None, None, None)?;
    let mut found = list(store, who, Listing::Known, &filter, (KeyOrder::CreatedAt, Direction::Desc), &page).await?;
    Ok(found.items.pop())
}

/// `node(id)` for a key: the key with this id as this account sees it (its own, or one it added),
/// or `None`.
pub async fn get_by_id(store: &Store, account_id: &str, key_id: &str) -> AppResult<Option<AppKeyView>> {
    let (db, now) = (store.db(), store.now());
    if !crate::service::store::is_id(key_id) {
        return Ok(None);
    }
    let Some(key) = app_key::Entity::find_by_id(key_id).one(db).await? else {
        return Ok(None);
    };
    let Some(access) = super::find_access(db, &key.id, account_id).await? else {
        return Ok(None);
    };
    let at = Viewpoint::of(db, account_id, now).await?;
    Ok(Some(super::Located { key, access }.view(db, &at).await?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::keys::settings::KeySettings;

    /// Every combination of what a page request can vary, seen from two instants and two renewal
    /// periods: where `memo_key` gives two of them the same key, they must build the same
    /// statements (a kept statement is then the one that would have been built).
    #[test]
    fn a_kept_page_statement_is_the_one_its_request_would_build() {
        let now = Utc::now();
        let at = |account: &str, later: i64, period: u32| Viewpoint {
            account_id: account.to_owned(),
            now: now + chrono::Duration::days(later),
            settings: KeySettings { renewal_period_days: period, ..KeySettings::default() },
            account_name: None,
            catalogue: None,
        };
        let viewpoints = [at("a", 0, 90), at("a", 400, 90), at("a", 0, 30), at("b", 0, 90)];
        let filters = [
            KeyFilter::default(),
            KeyFilter { search: Some("ab".into()), ..KeyFilter::default() },
            KeyFilter { search: Some("cd".into()), ..KeyFilter::default() },
            KeyFilter { key_type: Some(KeyType::External), ..KeyFilter::default() },
            KeyFilter { unused_since: Some(now), ..KeyFilter::default() },
            KeyFilter { status: Some(KeyStatus::Active), ..KeyFilter::default() },
            KeyFilter { renewal_alert: Some(RenewalAlert::Recommended), ..KeyFilter::default() },
            KeyFilter { unused_permission_days: Some(90), ..KeyFilter::default() },
        ];
        let cursor = Cursor { sort: None, id: uuid::Uuid::now_v7().to_string() }.encode();
        let pages = [
            PageRequest::parse(Some(20), None, None, None),
            PageRequest::parse(Some(5), None, None, None),
            PageRequest::parse(Some(20), Some(&cursor), None, None),
            PageRequest::parse(None, None, Some(20), Some(&cursor)),
        ]
        .map(|page| page.expect("a valid page request"));
        let orders = [
            (KeyOrder::CreatedAt, Direction::Desc),
            (KeyOrder::CreatedAt, Direction::Asc),
            (KeyOrder::Label, Direction::Desc),
        ];
        let mut built: std::collections::HashMap<String, String> = std::collections::HashMap::new();
        let mut kept = 0;
        for backend in [DatabaseBackend::Sqlite, DatabaseBackend::Postgres] {
            for at in &viewpoints {
                for listing in [Listing::WithAccess, Listing::Internal] {
                    for filter in &filters {
                        for order in orders {
                            for page in &pages {
                                let Ok((rows, count)) = page_statements(at, backend, listing, filter, order, page)
                                else {
                                    continue; // a label cursor for a created-at order: refused, never kept
                                };
                                let statements = format!("{rows:?} {:?}", backend.build(&*count));
                                let Some(key) = memo_key(at, backend, listing, filter, order, page) else {
                                    assert!(
                                        filter.status.is_some()
                                            || filter.renewal_alert.is_some()
                                            || filter.unused_permission_days.is_some()
                                    );
                                    continue;
                                };
                                kept += 1;
                                let first = built.entry(key.clone()).or_insert_with(|| statements.clone());
                                assert_eq!(*first, statements, "one key, two statements: {key}");
                            }
                        }
                    }
                }
            }
        }
        // Requests differing only in the instant or the renewal period share their statements.
        assert!(built.len() < kept, "{} keys for {kept} requests", built.len());
    }
}
