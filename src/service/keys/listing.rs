//! The two listings ("Application Keys" and "My Keys") and the lookup of one key. Both read the
//! account's `key_access` rows joined with their keys, filtered, sorted and paged by keyset.
use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, ExprTrait, Func, LikeExpr};
use sea_orm::{
    sea_query, ColumnTrait, Condition, ConnectionTrait, DatabaseBackend, EntityTrait, JoinType, QueryFilter,
    QuerySelect, QueryTrait, RelationTrait, Select,
};

use super::usage::unused_since_condition;
use super::{
    has_roles, locate, renewal_alert_condition, status_condition, view_of, AppKeyView, KeyStatus, KeyType,
    RenewalAlert, Viewpoint,
};
use crate::entity::{account, app_key, key_access};
use crate::error::{AppError, AppResult};
use crate::service::folded::{self, Cells};
use crate::service::page::{self, Cursor, Direction, PageRequest, Paged, SortBy};
use crate::service::roles;
use crate::service::{query_text, Store};

/// Which page of keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listing {
    /// "Application Keys": every internal and external key holding roles in this account.
    WithAccess,
    /// "My Keys": every internal key, with or without roles.
    Internal,
}

#[derive(Debug, Clone, Default)]
pub struct KeyFilter {
    pub search: Option<String>,
    pub status: Option<KeyStatus>,
    pub key_type: Option<KeyType>,
    pub renewal_alert: Option<RenewalAlert>,
    /// Keys not used in this account since then (never used: created before then).
    pub unused_since: Option<DateTime<Utc>>,
}

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
            KeyOrder::Label => Some(SortBy {
                name: "label",
                expr: Expr::case(Expr::col((key_access::Entity, key_access::Column::External)).eq(true), "")
                    .finally(Expr::col((app_key::Entity, app_key::Column::LabelSearch)))
                    .into(),
                value: text,
            }),
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
            KeyOrder::LastUsedAt => Some(
                view.last_use
                    .as_ref()
                    .map_or_else(never, |u| u.at)
                    .to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            ),
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

/// The columns a page reads of each access row and of its key, in the order `row_of` reads them.
const ACCESS_COLUMNS: [key_access::Column; 11] = [
    key_access::Column::Id,
    key_access::Column::AppKeyId,
    key_access::Column::AccountId,
    key_access::Column::External,
    key_access::Column::Removed,
    key_access::Column::AddedAt,
    key_access::Column::AddedBy,
    key_access::Column::UpdatedAt,
    key_access::Column::LastUsedAt,
    key_access::Column::LastUsedIp,
    key_access::Column::LastUsedUserAgent,
];
const KEY_COLUMNS: [app_key::Column; 19] = [
    app_key::Column::Id,
    app_key::Column::Key,
    app_key::Column::AccountId,
    app_key::Column::Label,
    app_key::Column::LabelSearch,
    app_key::Column::TokenDigest,
    app_key::Column::Active,
    app_key::Column::CreatedAt,
    app_key::Column::CreatedBy,
    app_key::Column::TokenCreatedAt,
    app_key::Column::PreviousTokenDigest,
    app_key::Column::PreviousTokenCreatedAt,
    app_key::Column::PreviousTokenExpiresAt,
    app_key::Column::RenewalStartedAt,
    app_key::Column::ExpiresAt,
    app_key::Column::UpdatedAt,
    app_key::Column::ExpiringAnnouncedFor,
    app_key::Column::ExpiredAnnouncedFor,
    app_key::Column::RenewalDueAnnouncedFor,
];

/// An access row's roles as JSON, `[[id, name, predefined, [resource ids of a custom role]], …]`,
/// computed per row of the page (the link table's key leads with the access id).
fn roles_json(backend: DatabaseBackend) -> &'static str {
    match backend {
        DatabaseBackend::Postgres => {
            r#"(SELECT COALESCE(json_agg(json_build_array(r."id", r."name", r."predefined", CASE WHEN r."predefined" THEN '[]'::json ELSE (SELECT COALESCE(json_agg(rr."resource_id"), '[]'::json) FROM "role_resources" rr WHERE rr."role_id" = r."id") END)), '[]'::json) FROM "key_access_roles" l JOIN "roles" r ON r."id" = l."role_id" WHERE l."key_access_id" = "key_access"."id")"#
        }
        _ => {
            r#"(SELECT json_group_array(json_array(r."id", r."name", r."predefined", json(CASE WHEN r."predefined" THEN '[]' ELSE (SELECT json_group_array(rr."resource_id") FROM "role_resources" rr WHERE rr."role_id" = r."id") END))) FROM "key_access_roles" l JOIN "roles" r ON r."id" = l."role_id" WHERE l."key_access_id" = "key_access"."id")"#
        }
    }
}

/// A listing page as one query returning one row: the page's access rows, each with its key, the
/// key's owner's name and its roles here, folded into JSON (see `folded`). Also the statement
/// behind `totalCount`.
fn page_statements(
    at: &Viewpoint,
    backend: DatabaseBackend,
    listing: Listing,
    filter: &KeyFilter,
    (order, direction): (KeyOrder, Direction),
    page: &PageRequest,
) -> AppResult<(sea_orm::Statement, sea_query::SelectStatement)> {
    let base = access_select(at, listing, filter)?;
    let count = base.clone().into_query();
    let mut select = base.select_only().join(JoinType::InnerJoin, app_key::Relation::Owner.def());
    let mut columns = Vec::new();
    for (i, column) in ACCESS_COLUMNS.into_iter().enumerate() {
        columns.push(folded::Column::plain(format!("a{i}")));
        select = select.column_as(column, format!("a{i}"));
    }
    for (i, column) in KEY_COLUMNS.into_iter().enumerate() {
        columns.push(folded::Column::plain(format!("k{i}")));
        select = select.column_as(column, format!("k{i}"));
    }
    columns.push(folded::Column::plain("owner"));
    columns.push(folded::Column::json("roles"));
    select = select.column_as(account::Column::Name, "owner").expr_as(Expr::cust(roles_json(backend)), "roles");
    let sort = order.sort_by();
    if let Some(sort) = &sort {
        select = select.expr_as(sort.expr.clone(), "s");
    }
    let rows = page::arrange(select, sort.as_ref(), key_access::Column::Id, direction, page)?;
    // The folded array keeps the order the page was read in.
    let way = if page::reads_descending(direction, page) { "DESC" } else { "ASC" };
    let order_sql = match sort {
        Some(_) => format!("\"s\" {way}, \"a0\" {way}"),
        None => format!("\"a0\" {way}"),
    };
    let rows = page::with_literal_limit(rows.build(backend));
    Ok((folded::fold(backend, rows, &columns, Some(&order_sql)), count))
}

/// One folded row of a page: the access, its key, the owner's name and the roles in display order.
fn row_of(
    cells: &[serde_json::Value],
    catalogue: &[roles::ResourceView],
) -> AppResult<(key_access::Model, app_key::Model, String, Vec<roles::RoleView>)> {
    let mut c = Cells::new(cells);
    let access = key_access::Model {
        id: c.text()?,
        app_key_id: c.text()?,
        account_id: c.text()?,
        external: c.flag(),
        removed: c.flag(),
        added_at: c.time()?,
        added_by: c.text()?,
        updated_at: c.time()?,
        last_used_at: c.opt_time()?,
        last_used_ip: c.opt_text(),
        last_used_user_agent: c.opt_text(),
    };
    let key = app_key::Model {
        id: c.text()?,
        key: c.text()?,
        account_id: c.text()?,
        label: c.text()?,
        label_search: c.text()?,
        token_digest: c.text()?,
        active: c.flag(),
        created_at: c.time()?,
        created_by: c.text()?,
        token_created_at: c.time()?,
        previous_token_digest: c.opt_text(),
        previous_token_created_at: c.opt_time()?,
        previous_token_expires_at: c.opt_time()?,
        renewal_started_at: c.opt_time()?,
        expires_at: c.opt_time()?,
        updated_at: c.time()?,
        expiring_announced_for: c.opt_time()?,
        expired_announced_for: c.opt_time()?,
        renewal_due_announced_for: c.opt_time()?,
    };
    let owner = c.text()?;
    let mut roles = Vec::new();
    for role in c.value().as_array().map(Vec::as_slice).unwrap_or_default() {
        let mut r = Cells::new(role.as_array().map(Vec::as_slice).unwrap_or_default());
        let (id, name, predefined) = (r.text()?, r.text()?, r.flag());
        let held = r.texts();
        roles.push(roles::view_of(id, name, predefined, &held, catalogue));
    }
    roles::sort_for_display(&mut roles);
    Ok((access, key, owner, roles))
}

/// The SQL of a listing's page (and of its `totalCount`), as `list` runs it: for checking query
/// plans (`EXPLAIN`).
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
    Ok((rows, backend.build(&page::count_query(count))))
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
    let (rows, count) = page_statements(&at, store.backend(), listing, filter, order, page)?;
    let catalogue = match &at.catalogue {
        Some(known) => std::borrow::Cow::Borrowed(known.as_slice()),
        None => std::borrow::Cow::Owned(roles::catalogue(&store.db).await?),
    };
    let mut items = Vec::new();
    for cells in folded::fetch(&store.db, rows).await? {
        let (access, key, owner, roles) = row_of(&cells, &catalogue)?;
        items.push(view_of(&at, key, Some(&access), owner, roles));
    }
    Ok(page::finish(items, page::Total::new(store.db.clone(), count), page))
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

fn label_contains(search: &str) -> Expr {
    Expr::col((app_key::Entity, app_key::Column::LabelSearch)).like(like_pattern(search))
}

fn access_select(at: &Viewpoint, listing: Listing, filter: &KeyFilter) -> AppResult<Select<key_access::Entity>> {
    let mut select = key_access::Entity::find()
        .join(JoinType::InnerJoin, key_access::Relation::AppKey.def())
        .filter(key_access::Column::AccountId.eq(at.account_id.as_str()));
    select = match listing {
        Listing::WithAccess => select.filter(has_roles()),
        Listing::Internal => select.filter(key_access::Column::External.eq(false)),
    };
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
    if let Some(search) = filter.search.as_deref().filter(|s| !s.is_empty()) {
        let search = query_text(search, "filter.search")?;
        // Another account's label is never shown, so it is never searched either.
        select = select.filter(
            Condition::any()
                .add(key_contains(search))
                .add(Condition::all().add(key_access::Column::External.eq(false)).add(label_contains(search))),
        );
    }
    Ok(select)
}

/// `appKey(key)`: the key as this account sees it, or `None` when this account has never known it.
pub async fn get<C: ConnectionTrait>(
    db: &C,
    account_id: &str,
    now: DateTime<Utc>,
    raw_key: &str,
) -> AppResult<Option<AppKeyView>> {
    match locate(db, account_id, raw_key).await {
        Ok(located) => Ok(Some(located.view(db, &Viewpoint::of(db, account_id, now).await?).await?)),
        Err(AppError::NotFound(_)) => Ok(None),
        Err(other) => Err(other),
    }
}

/// `node(id)` for a key: the key with this id as this account sees it (its own, or one it added),
/// or `None`.
pub async fn get_by_id<C: ConnectionTrait>(
    db: &C,
    account_id: &str,
    now: DateTime<Utc>,
    key_id: &str,
) -> AppResult<Option<AppKeyView>> {
    if !crate::service::is_id(key_id) {
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
