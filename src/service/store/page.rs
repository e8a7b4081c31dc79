//! Keyset pagination shared by every connection: forwards (`first`/`after`) or backwards
//! (`last`/`before`), by an optional sort value then the UUIDv7 id (newest first by default), at
//! most 100 rows a page, opaque cursors that carry the sort value and the id.
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use sea_orm::sea_query::{Expr, ExprTrait, Order, Query, SelectStatement};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, DatabaseBackend, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, QueryTrait, Select, SelectTwo, Statement,
};

use crate::error::{AppError, AppResult};

pub const DEFAULT_PAGE_SIZE: u64 = 20;
pub const MAX_PAGE_SIZE: u64 = 100;

/// A position in a listing: the sort value of a row (when the listing is sorted by more than its
/// id) and its id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub sort: Option<String>,
    pub id: String,
}

impl Cursor {
    pub fn encode(&self) -> String {
        let text = match &self.sort {
            Some(sort) => format!("c2:{}:{sort}", self.id),
            None => format!("c2:{}", self.id),
        };
        URL_SAFE_NO_PAD.encode(text)
    }

    pub(crate) fn decode(raw: &str, field: &str) -> AppResult<Self> {
        let invalid = || AppError::bad_input(field, "invalid cursor: pass a cursor from this listing's pageInfo");
        let bytes = URL_SAFE_NO_PAD.decode(raw).map_err(|_| invalid())?;
        let text = String::from_utf8(bytes).map_err(|_| invalid())?;
        let rest = text.strip_prefix("c2:").ok_or_else(invalid)?;
        let (id, sort) = match rest.split_once(':') {
            Some((id, sort)) => (id, Some(sort.to_owned())),
            None => (rest, None),
        };
        uuid::Uuid::parse_str(id).map_err(|_| invalid())?;
        Ok(Self { sort, id: id.to_owned() })
    }
}

/// A validated page request.
#[derive(Debug, Clone)]
pub struct PageRequest {
    /// How many rows.
    pub limit: u64,
    /// Paging backwards (`last`/`before`): the last `limit` rows before the cursor.
    pub backward: bool,
    /// `after` (forwards) or `before` (backwards).
    pub cursor: Option<Cursor>,
}

impl PageRequest {
    /// `first`/`after` or `last`/`before` (not both); sizes above 100 are capped to 100 (a Relay
    /// client then sees more pages), negative ones refused; neither size means `first: 20`.
    pub fn parse(first: Option<i32>, after: Option<&str>, last: Option<i32>, before: Option<&str>) -> AppResult<Self> {
        let size = |n: i32, field: &str| -> AppResult<u64> {
            u64::try_from(n)
                .map(|n| Ord::min(n, MAX_PAGE_SIZE))
                .map_err(|_| AppError::bad_input(field, format!("`{field}` cannot be negative")))
        };
        if first.is_some() && last.is_some() {
            return Err(AppError::bad_input("last", "give `first` (with `after`) or `last` (with `before`), not both"));
        }
        if after.is_some() && before.is_some() {
            return Err(AppError::bad_input("before", "give `after` or `before`, not both"));
        }
        if first.is_some() && before.is_some() {
            return Err(AppError::bad_input("before", "`before` pages backwards: use it with `last`"));
        }
        if last.is_some() || before.is_some() {
            if after.is_some() {
                return Err(AppError::bad_input("after", "`after` pages forwards: use it with `first`"));
            }
            let limit = last.map(|n| size(n, "last")).transpose()?.unwrap_or(DEFAULT_PAGE_SIZE);
            let cursor = before.map(|raw| Cursor::decode(raw, "before")).transpose()?;
            return Ok(Self { limit, backward: true, cursor });
        }
        let limit = first.map(|n| size(n, "first")).transpose()?.unwrap_or(DEFAULT_PAGE_SIZE);
        let cursor = after.map(|raw| Cursor::decode(raw, "after")).transpose()?;
        Ok(Self { limit, backward: false, cursor })
    }

    /// Where a cursor of this request came from, for error messages.
    fn cursor_field(&self) -> &'static str {
        if self.backward {
            "before"
        } else {
            "after"
        }
    }
}

/// How many rows match, counted only when asked: on a large account a count costs far more than a
/// page, and most requests (scrolling, the export) never need it.
#[derive(Clone)]
pub struct Total {
    db: DatabaseConnection,
    statement: std::sync::Arc<SelectStatement>,
}

/// How many rows `statement` matches, as SQL.
pub fn count_query(statement: SelectStatement) -> SelectStatement {
    Query::select().expr(Expr::cust("COUNT(*)")).from_subquery(statement, "matching").to_owned()
}

impl Total {
    /// The total of the rows `statement` selects (before paging).
    pub fn new(db: DatabaseConnection, statement: impl Into<std::sync::Arc<SelectStatement>>) -> Self {
        Self { db, statement: statement.into() }
    }

    pub async fn count(&self) -> AppResult<u64> {
        let row = self.db.query_one(&count_query(SelectStatement::clone(&self.statement))).await?;
        let n = row.map(|r| r.try_get_by_index::<i64>(0)).transpose()?.unwrap_or(0);
        Ok(u64::try_from(n).unwrap_or(0))
    }
}

/// One page of rows plus what a Relay connection needs.
pub struct Paged<T> {
    pub items: Vec<T>,
    pub total: Total,
    pub has_next: bool,
    pub has_previous: bool,
}

impl<T> Paged<T> {
    /// The same page with its rows replaced (e.g. entities turned into views).
    pub fn with_items<U>(self, items: Vec<U>) -> Paged<U> {
        Paged { items, total: self.total, has_next: self.has_next, has_previous: self.has_previous }
    }

    pub fn map<U>(mut self, f: impl FnMut(T) -> U) -> Paged<U> {
        let items = std::mem::take(&mut self.items).into_iter().map(f).collect();
        self.with_items(items)
    }
}

/// Sort direction of a listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Asc,
    Desc,
}

/// What a listing is sorted by before its id: a name (cursors carry it, so a cursor of one order
/// cannot page another), an SQL expression, and how a cursor's text becomes a value to compare it
/// with.
pub struct SortBy {
    pub name: &'static str,
    pub expr: Expr,
    pub value: fn(&str) -> Option<sea_orm::Value>,
}

impl SortBy {
    /// The cursor's sort text for a row whose sort value is `value`.
    pub fn cursor_text(name: &str, value: &str) -> String {
        format!("{name}={value}")
    }
}

/// Runs `select` as one page, newest first by `id_column`.
pub async fn fetch<E>(
    db: &DatabaseConnection,
    select: Select<E>,
    id_column: E::Column,
    page: &PageRequest,
) -> AppResult<Paged<E::Model>>
where
    E: EntityTrait,
    E::Model: Send + Sync,
{
    fetch_sorted(db, select, None, id_column, Direction::Desc, page).await
}

/// A query that can be paged: one entity's rows, or one entity's rows each with a related row read
/// in the same query (`select_also`).
pub trait PageQuery:
    QueryFilter + QueryOrder + QuerySelect + QueryTrait<QueryStatement = SelectStatement> + Clone
{
    type Row: Send;
    fn rows(self, db: &DatabaseConnection) -> impl std::future::Future<Output = AppResult<Vec<Self::Row>>> + Send;
}

impl<E> PageQuery for Select<E>
where
    E: EntityTrait,
    E::Model: Send + Sync,
{
    type Row = E::Model;
    async fn rows(self, db: &DatabaseConnection) -> AppResult<Vec<E::Model>> {
        Ok(self.all(db).await?)
    }
}

impl<E, F> PageQuery for SelectTwo<E, F>
where
    E: EntityTrait,
    F: EntityTrait,
    E::Model: Send + Sync,
    F::Model: Send + Sync,
{
    type Row = (E::Model, Option<F::Model>);
    async fn rows(self, db: &DatabaseConnection) -> AppResult<Vec<Self::Row>> {
        Ok(self.all(db).await?)
    }
}

/// Runs `select` as one page ordered by `sort` (if any) then `id_column`, both in `direction`. A
/// backward page is read in the reverse order and turned around.
pub async fn fetch_sorted<Q, C>(
    db: &DatabaseConnection,
    select: Q,
    sort: Option<&SortBy>,
    id_column: C,
    direction: Direction,
    page: &PageRequest,
) -> AppResult<Paged<Q::Row>>
where
    Q: PageQuery,
    C: ColumnTrait,
{
    let total = Total::new(db.clone(), select.clone().into_query());
    let items = arrange(select, sort, id_column, direction, page)?.rows(db).await?;
    Ok(finish(items, total, page))
}

/// The page from the rows of `arrange`'s query (which reads one row beyond the page when there is
/// more), in the listing's order.
pub fn finish<T>(mut items: Vec<T>, total: Total, page: &PageRequest) -> Paged<T> {
    let more = items.len() as u64 > page.limit;
    items.truncate(usize::try_from(page.limit).unwrap_or(usize::MAX));
    if page.backward {
        items.reverse();
    }
    // Past the cursor there is at least the cursor's own row; beyond the page, `more` tells.
    let (has_next, has_previous) =
        if page.backward { (page.cursor.is_some(), more) } else { (more, page.cursor.is_some()) };
    Paged { items, total, has_next, has_previous }
}

/// Whether `arrange`'s query reads rows in descending order (the listing's order, or its reverse
/// when paging backwards).
pub fn reads_descending(direction: Direction, page: &PageRequest) -> bool {
    (direction == Direction::Desc) != page.backward
}

/// The page's query: `select` past the cursor, in the order rows are read (the listing's, or its
/// reverse when paging backwards), one row more than the page to tell whether there is more.
pub fn arrange<Q, C>(
    select: Q,
    sort: Option<&SortBy>,
    id_column: C,
    direction: Direction,
    page: &PageRequest,
) -> AppResult<Q>
where
    Q: PageQuery,
    C: ColumnTrait,
{
    let descending = reads_descending(direction, page);
    let mut rows = select;
    if let Some(cursor) = &page.cursor {
        let beyond_id = if descending { id_column.lt(cursor.id.clone()) } else { id_column.gt(cursor.id.clone()) };
        let condition = match (sort, &cursor.sort) {
            (None, None) => Condition::all().add(beyond_id),
            (Some(sort), Some(raw)) => {
                let invalid =
                    || AppError::bad_input(page.cursor_field(), "invalid cursor: it belongs to another order");
                let text = raw.strip_prefix(sort.name).and_then(|rest| rest.strip_prefix('=')).ok_or_else(invalid)?;
                let value = (sort.value)(text).ok_or_else(invalid)?;
                let beyond =
                    if descending { sort.expr.clone().lt(value.clone()) } else { sort.expr.clone().gt(value.clone()) };
                Condition::any().add(beyond).add(Condition::all().add(sort.expr.clone().eq(value)).add(beyond_id))
            }
            _ => return Err(AppError::bad_input(page.cursor_field(), "invalid cursor: it belongs to another order")),
        };
        rows = rows.filter(condition);
    }
    let order = if descending { Order::Desc } else { Order::Asc };
    if let Some(sort) = sort {
        rows = rows.order_by(sort.expr.clone(), order.clone());
    }
    Ok(rows.order_by(id_column, order).limit(page.limit + 1))
}

/// PostgreSQL: a page statement (built by `arrange`) with its LIMIT written into the SQL instead of
/// bound. PostgreSQL plans a prepared statement for its bound values until a plan made once for any
/// values (a generic plan) is estimated as cheap; with the LIMIT a parameter it assumes a tenth of
/// the rows and never is, so every page was planned afresh (0.4 ms, as long as running it). With the
/// LIMIT in the SQL the generic plan costs what the page costs, and PostgreSQL keeps it when its
/// estimate says so. The limit is the page size this code computed (at most 101): nothing of a
/// client's is written into SQL. A statement of another shape is returned unchanged.
pub fn with_literal_limit(mut statement: Statement) -> Statement {
    if statement.db_backend != DatabaseBackend::Postgres {
        return statement;
    }
    let Some(values) = statement.values.as_mut() else {
        return statement;
    };
    let Some(&sea_orm::Value::BigUnsigned(Some(limit))) = values.0.last() else {
        return statement;
    };
    let Some(head) = statement.sql.strip_suffix(&format!(" LIMIT ${}", values.0.len())) else {
        return statement;
    };
    statement.sql = format!("{head} LIMIT {limit}");
    values.0.pop();
    statement
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_postgresql_page_has_its_limit_written_into_the_sql() {
        let values = || Some(sea_orm::Values(vec!["a".into(), sea_orm::Value::BigUnsigned(Some(21))]));
        let page = Statement {
            sql: "SELECT x FROM t WHERE a = $1 LIMIT $2".into(),
            values: values(),
            db_backend: DatabaseBackend::Postgres,
        };
        let written = with_literal_limit(page);
        assert_eq!(written.sql, "SELECT x FROM t WHERE a = $1 LIMIT 21");
        assert_eq!(written.values, Some(sea_orm::Values(vec!["a".into()])));
        // SQLite keeps its bound LIMIT (its planner does not re-plan for it: QPSG), and a statement
        // of another shape is left alone.
        let sqlite = Statement {
            sql: "SELECT x FROM t WHERE a = ? LIMIT ?".into(),
            values: values(),
            db_backend: DatabaseBackend::Sqlite,
        };
        assert_eq!(with_literal_limit(sqlite.clone()).sql, sqlite.sql);
        let other = Statement {
            sql: "SELECT x FROM t WHERE a = $1 AND b = $2".into(),
            values: values(),
            db_backend: DatabaseBackend::Postgres,
        };
        assert_eq!(with_literal_limit(other.clone()).values, other.values);
    }

    #[test]
    fn sizes_are_capped_at_one_hundred_and_default_to_twenty_forwards() {
        let page = PageRequest::parse(Some(500), None, None, None).expect("valid");
        assert_eq!((page.limit, page.backward), (100, false));
        assert_eq!(PageRequest::parse(None, None, None, None).map(|p| p.limit).ok(), Some(20));
        assert_eq!(PageRequest::parse(None, None, Some(7), None).map(|p| (p.limit, p.backward)).ok(), Some((7, true)));
        assert!(PageRequest::parse(Some(-1), None, None, None).is_err());
        assert!(PageRequest::parse(None, None, Some(-1), None).is_err());
    }

    #[test]
    fn directions_are_not_mixed() {
        let cursor = Cursor { sort: None, id: uuid::Uuid::now_v7().to_string() }.encode();
        assert!(PageRequest::parse(Some(1), None, Some(1), None).is_err());
        assert!(PageRequest::parse(None, Some(&cursor), None, Some(&cursor)).is_err());
        assert!(PageRequest::parse(None, Some(&cursor), Some(2), None).is_err());
        assert!(PageRequest::parse(Some(2), None, None, Some(&cursor)).is_err(), "first with before");
    }

    #[test]
    fn a_cursor_round_trips_and_garbage_is_refused() {
        let id = uuid::Uuid::now_v7().to_string();
        for sort in [None, Some("label: with colons".to_owned())] {
            let cursor = Cursor { sort: sort.clone(), id: id.clone() };
            let page = PageRequest::parse(Some(5), Some(&cursor.encode()), None, None).expect("valid cursor");
            assert_eq!(page.cursor, Some(cursor));
        }
        for bad in ["", "!!!", "YWJj", &URL_SAFE_NO_PAD.encode("c2:not-a-uuid"), &URL_SAFE_NO_PAD.encode("c1:x")] {
            assert!(PageRequest::parse(None, Some(bad), None, None).is_err(), "{bad:?} should be refused");
        }
    }
}
