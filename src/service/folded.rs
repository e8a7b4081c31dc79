//! Reading many rows as one: the database folds a query's rows into one JSON array, so the driver
//! hands over one row instead of hundreds. On SQLite every row crosses from the connection's thread
//! to the async task with a wake-up of its own, and each column is found by name and decoded on the
//! way: for a page of keys or a chunk of the export, that hand-off, not the query, was the cost.
//! `fold` writes the SQL, `fetch` runs it, `Cells` reads one folded row back.
use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DatabaseBackend, Statement};
use serde_json::Value;

use crate::error::{AppError, AppResult};

/// A column of the query to fold: its alias in the inner query, and whether it already holds JSON
/// text (a nested aggregate), to be embedded as JSON rather than as a string.
#[derive(Debug, Clone)]
pub struct Column {
    pub alias: String,
    pub json: bool,
}

impl Column {
    pub fn plain(alias: impl Into<String>) -> Self {
        Self { alias: alias.into(), json: false }
    }

    pub fn json(alias: impl Into<String>) -> Self {
        Self { alias: alias.into(), json: true }
    }
}

/// Wraps `inner` so it returns one row, one text column: a JSON array holding each of its rows as
/// an array of `columns`, sorted by `order` (SQL over the aliases, e.g. `"c0" DESC`; an aggregate
/// need not keep its input's order, so the order is stated).
pub fn fold(backend: DatabaseBackend, inner: Statement, columns: &[Column], order: Option<&str>) -> Statement {
    fold_with(backend, inner, columns, order, &[])
}

/// `fold`, with more aggregates over the same rows after the JSON (SQL over the aliases, e.g.
/// `MIN("c0")`), as further columns of the one row.
pub fn fold_with(
    backend: DatabaseBackend,
    inner: Statement,
    columns: &[Column],
    order: Option<&str>,
    also: &[&str],
) -> Statement {
    let also: String = also.iter().map(|a| format!(", {a}")).collect();
    let order = order.map(|o| format!(" ORDER BY {o}")).unwrap_or_default();
    let cells = |embed_json: fn(&str) -> String| {
        columns
            .iter()
            .map(|c| if c.json { embed_json(&c.alias) } else { format!("\"{}\"", c.alias) })
            .collect::<Vec<_>>()
            .join(", ")
    };
    let sql = match backend {
        // A nested aggregate is already of type json here.
        DatabaseBackend::Postgres => format!(
            "SELECT COALESCE(json_agg(json_build_array({}){order}), '[]'::json)::text{also} FROM ({}) AS folded",
            cells(|alias| format!("\"{alias}\"")),
            inner.sql
        ),
        // SQLite loses a value's JSON-ness across a subquery: `json()` restores it.
        _ => format!(
            "SELECT json_group_array(json_array({}){order}){also} FROM ({}) AS folded",
            cells(|alias| format!("json(\"{alias}\")")),
            inner.sql
        ),
    };
    Statement { sql, values: inner.values, db_backend: backend }
}

/// Runs a statement made by `fold` and returns its rows, each as its cells.
pub async fn fetch<C: ConnectionTrait>(db: &C, folded: Statement) -> AppResult<Vec<Vec<Value>>> {
    let Some(row) = db.query_one_raw(folded).await? else {
        return Ok(Vec::new());
    };
    let json: Option<String> = row.try_get_by_index(0)?;
    parse(json.as_deref().unwrap_or("[]"))
}

/// The rows of a folded JSON text (read by `fetch`, or by a caller that parses it later).
pub fn parse(json: &str) -> AppResult<Vec<Vec<Value>>> {
    serde_json::from_str(json).map_err(|e| AppError::Internal(anyhow::Error::new(e).context("reading folded rows")))
}

/// Reads one folded row's cells in order (the order the inner query selected them).
pub struct Cells<'a> {
    cells: &'a [Value],
    next: usize,
}

impl<'a> Cells<'a> {
    pub fn new(cells: &'a [Value]) -> Self {
        Self { cells, next: 0 }
    }

    /// The next cell, as the database wrote it.
    pub fn value(&mut self) -> &'a Value {
        let cell = self.cells.get(self.next).unwrap_or(&Value::Null);
        self.next += 1;
        cell
    }

    fn missing(&self) -> AppError {
        AppError::Internal(anyhow::anyhow!("a folded row lacks column {}", self.next.saturating_sub(1)))
    }

    pub fn text(&mut self) -> AppResult<String> {
        self.opt_text().ok_or_else(|| self.missing())
    }

    pub fn opt_text(&mut self) -> Option<String> {
        self.value().as_str().map(str::to_owned)
    }

    /// A nested JSON array of texts (ids), empty when absent.
    pub fn texts(&mut self) -> Vec<String> {
        self.value()
            .as_array()
            .map(|items| items.iter().filter_map(|item| item.as_str().map(str::to_owned)).collect())
            .unwrap_or_default()
    }

    /// A boolean: SQLite writes 0/1, PostgreSQL true/false.
    pub fn flag(&mut self) -> bool {
        let cell = self.value();
        cell.as_bool().unwrap_or_else(|| cell.as_i64().is_some_and(|n| n != 0))
    }

    pub fn time(&mut self) -> AppResult<DateTime<Utc>> {
        self.opt_time()?.ok_or_else(|| self.missing())
    }

    /// A timestamp as the database's JSON writes it (SQLite: `2026-01-01 00:00:00+00:00`;
    /// PostgreSQL: ISO 8601), or null.
    pub fn opt_time(&mut self) -> AppResult<Option<DateTime<Utc>>> {
        parse_time(self.value())
    }
}

pub fn parse_time(value: &Value) -> AppResult<Option<DateTime<Utc>>> {
    value.as_str().map(parse_instant).transpose()
}

/// An instant as a database writes it as text: RFC 3339, with `T` or a space between date and time
/// (chrono's `FromStr` takes either).
pub fn parse_instant(text: &str) -> AppResult<DateTime<Utc>> {
    text.parse::<DateTime<chrono::FixedOffset>>()
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| AppError::Internal(anyhow::Error::new(e).context("reading a timestamp")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn cells_read_both_backends_spellings() {
        let row = [json!("a"), json!(1), json!(false), json!("2026-01-02 03:04:05.123456+00:00"), json!(null)];
        let mut cells = Cells::new(&row);
        assert_eq!(cells.text().ok().as_deref(), Some("a"));
        assert!(cells.flag());
        assert!(!cells.flag());
        let at = cells.time().expect("a timestamp");
        assert_eq!(at.to_rfc3339(), "2026-01-02T03:04:05.123456+00:00");
        assert_eq!(cells.opt_time().ok(), Some(None));
        assert!(cells.text().is_err(), "past the end is an error, not a panic");
        let iso = [json!("2026-01-02T03:04:05+02:00")];
        assert_eq!(Cells::new(&iso).time().map(|t| t.to_rfc3339()).ok().as_deref(), Some("2026-01-02T01:04:05+00:00"));
    }

    #[test]
    fn the_fold_names_every_column_and_the_order() {
        let inner = Statement::from_string(DatabaseBackend::Sqlite, "SELECT 1 AS \"c0\", '[]' AS \"r\"");
        let columns = [Column::plain("c0"), Column::json("r")];
        let sqlite = fold(DatabaseBackend::Sqlite, inner.clone(), &columns, Some("\"c0\" DESC"));
        assert!(sqlite.sql.contains("json_array(\"c0\", json(\"r\")) ORDER BY \"c0\" DESC"), "{}", sqlite.sql);
        let postgres = fold(DatabaseBackend::Postgres, inner, &columns, None);
        assert!(postgres.sql.contains("json_build_array(\"c0\", \"r\")"), "{}", postgres.sql);
    }
}
