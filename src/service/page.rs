//! Keyset pagination shared by every connection: newest first by UUIDv7 id, `first` capped at 100,
//! opaque cursors.
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use sea_orm::sea_query::{Expr, Query, SelectStatement};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder, QuerySelect, QueryTrait,
    Select,
};

use crate::error::{AppError, AppResult};

pub const DEFAULT_PAGE_SIZE: u64 = 20;
pub const MAX_PAGE_SIZE: u64 = 100;

/// A validated page request: how many rows, and after which id.
#[derive(Debug, Clone)]
pub struct PageRequest {
    pub first: u64,
    pub after: Option<String>,
}

impl PageRequest {
    /// `first` above 100 is capped to 100 (a Relay client then sees `hasNextPage`); negative is refused.
    pub fn parse(first: Option<i32>, after: Option<&str>) -> AppResult<Self> {
        let first = match first {
            None => DEFAULT_PAGE_SIZE,
            Some(n) if n < 0 => return Err(AppError::bad_input("first", "`first` cannot be negative")),
            Some(n) => u64::try_from(n).unwrap_or(MAX_PAGE_SIZE).min(MAX_PAGE_SIZE),
        };
        let after = after.map(decode_cursor).transpose()?;
        Ok(Self { first, after })
    }
}

/// How many rows match, counted only when asked: on a large account a count costs far more than a
/// page, and most requests (scrolling, the export) never need it.
#[derive(Clone)]
pub struct Total {
    db: DatabaseConnection,
    statement: SelectStatement,
}

impl Total {
    pub async fn count(&self) -> AppResult<u64> {
        let count =
            Query::select().expr(Expr::cust("COUNT(*)")).from_subquery(self.statement.clone(), "matching").to_owned();
        let row = self.db.query_one(&count).await?;
        let n = row.map(|r| r.try_get_by_index::<i64>(0)).transpose()?.unwrap_or(0);
        Ok(u64::try_from(n).unwrap_or(0))
    }
}

/// One page of rows plus what a Relay connection needs.
pub struct Paged<T> {
    pub items: Vec<T>,
    pub total: Total,
    pub has_next: bool,
    /// The id of the last row, for the next page's `after`.
    pub last_cursor_id: Option<String>,
}

impl<T> Paged<T> {
    /// The same page with its rows replaced (e.g. entities turned into views).
    pub fn with_items<U>(self, items: Vec<U>) -> Paged<U> {
        Paged { items, total: self.total, has_next: self.has_next, last_cursor_id: self.last_cursor_id }
    }

    pub fn map<U>(mut self, f: impl FnMut(T) -> U) -> Paged<U> {
        let items = std::mem::take(&mut self.items).into_iter().map(f).collect();
        self.with_items(items)
    }
}

pub fn encode_cursor(id: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("c1:{id}"))
}

fn decode_cursor(cursor: &str) -> AppResult<String> {
    let invalid = || AppError::bad_input("after", "invalid cursor: pass an `endCursor` from a previous page");
    let bytes = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| invalid())?;
    let text = String::from_utf8(bytes).map_err(|_| invalid())?;
    let id = text.strip_prefix("c1:").ok_or_else(invalid)?;
    uuid::Uuid::parse_str(id).map_err(|_| invalid())?;
    Ok(id.to_owned())
}

/// Runs `select` as one page, newest first by `id_column`.
pub async fn fetch<E>(
    db: &DatabaseConnection,
    select: Select<E>,
    id_column: E::Column,
    page: &PageRequest,
    id_of: impl Fn(&E::Model) -> &str,
) -> AppResult<Paged<E::Model>>
where
    E: EntityTrait,
    E::Model: Send + Sync,
{
    let total = Total { db: db.clone(), statement: select.clone().into_query() };
    let mut rows = select;
    if let Some(after) = &page.after {
        rows = rows.filter(id_column.lt(after.clone()));
    }
    let mut items = rows.order_by_desc(id_column).limit(page.first + 1).all(db).await?;
    let has_next = items.len() as u64 > page.first;
    items.truncate(page.first as usize);
    let last_cursor_id = items.last().map(|m| id_of(m).to_owned());
    Ok(Paged { items, total, has_next, last_cursor_id })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_is_capped_at_one_hundred_and_defaults_to_twenty() {
        assert_eq!(PageRequest::parse(Some(500), None).map(|p| p.first).ok(), Some(100));
        assert_eq!(PageRequest::parse(None, None).map(|p| p.first).ok(), Some(20));
        assert!(PageRequest::parse(Some(-1), None).is_err());
    }

    #[test]
    fn a_cursor_round_trips_and_garbage_is_refused() {
        let id = uuid::Uuid::now_v7().to_string();
        let page = PageRequest::parse(Some(5), Some(&encode_cursor(&id))).expect("valid cursor");
        assert_eq!(page.after, Some(id));
        for bad in ["", "!!!", "YWJj", &URL_SAFE_NO_PAD.encode("c1:not-a-uuid")] {
            assert!(PageRequest::parse(None, Some(bad)).is_err(), "{bad:?} should be refused");
        }
    }
}
