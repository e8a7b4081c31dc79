//! Reading many rows as one: the database folds a query's rows into one JSON array, so the driver
//! hands over one row instead of hundreds. On SQLite every row crosses from the connection's thread
//! to the async task with a wake-up of its own, and each column is found by name and decoded on the
//! way: for a page of keys or a chunk of the export, that hand-off, not the query, was the cost.
//! `fold` writes the SQL; `fetch` runs it and reads each folded row as a typed struct (`Flag` and
//! `Instant` read the cells each database spells its own way).
//!
//! Where there is no hand-off — a SQLite file read on the calling thread (`inline_read`) — building
//! the JSON and parsing it again were most of a page's cost, so `fetch_from` reads the statement
//! `fold_keeping_rows` kept, row by row, into the same struct (`from_row`).
use chrono::{DateTime, NaiveDate, NaiveTime, Utc};
use sea_orm::{ConnectionTrait, DatabaseBackend, Statement};
use serde::de::{self, DeserializeOwned, DeserializeSeed, Deserializer, SeqAccess, Visitor};
use serde::Deserialize;

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
            "SELECT COALESCE(json_agg(json_build_array({}){order}), '[]'::json)::text FROM ({}) AS folded",
            cells(|alias| format!("\"{alias}\"")),
            inner.sql
        ),
        // SQLite loses a value's JSON-ness across a subquery: `json()` restores it.
        _ => format!(
            "SELECT json_group_array(json_array({}){order}) FROM ({}) AS folded",
            cells(|alias| format!("json(\"{alias}\")")),
            inner.sql
        ),
    };
    Statement { sql, values: inner.values, db_backend: backend }
}

/// Runs a statement made by `fold` and returns its rows, each read as a `T` from its array of
/// cells (a struct deriving `Deserialize` reads its fields in declaration order from an array).
pub async fn fetch<T: DeserializeOwned, C: ConnectionTrait>(db: &C, folded: Statement) -> AppResult<Vec<T>> {
    parse(&fetch_text(db, folded).await?)
}

/// A folded statement with the statement it folds, for `fetch_from`.
#[derive(Debug, Clone)]
pub struct Folded {
    /// One row of JSON text, as `fold` writes it.
    pub statement: Statement,
    /// The rows it folds.
    rows: Statement,
    columns: Vec<Column>,
}

/// `fold`, keeping the statement folded and its columns so `fetch_from` can read its rows as they
/// are where no hand-off between threads makes folding worth it.
pub fn fold_keeping_rows(
    backend: DatabaseBackend,
    inner: Statement,
    columns: Vec<Column>,
    order: Option<&str>,
) -> Folded {
    Folded { statement: fold(backend, inner.clone(), &columns, order), rows: inner, columns }
}

/// `fetch` from the store: on a SQLite file on the calling thread, row by row, when it can
/// (`inline_read`), else folded through the pool. Both read the same rows into the same `T`; on
/// SQLite neither states an order (`fold` is given none there), so the caller sorts.
pub async fn fetch_from<T: DeserializeOwned>(store: &super::Store, folded: &Folded) -> AppResult<Vec<T>> {
    if let Some(reader) = store.inline_reader() {
        let mut at = None;
        if let Ok(rows) = reader.read_rows(&folded.rows, |row| from_row(row, &mut at, &folded.columns)) {
            return Ok(rows);
        }
    }
    fetch(&store.db, folded.statement.clone()).await
}

/// Reads a row of a folded statement's inner query as a `T`, as `parse` reads a folded row: its
/// `columns`' cells in order (`at` remembers where each is, found by its alias on the first row). A
/// JSON column's text is read as the JSON it holds.
fn from_row<T: DeserializeOwned>(
    row: &rusqlite::Row<'_>,
    at: &mut Option<Vec<usize>>,
    columns: &[Column],
) -> Result<T, super::inline_read::BoxError> {
    if at.is_none() {
        let statement = row.as_ref();
        *at = Some(columns.iter().map(|c| statement.column_index(&c.alias)).collect::<Result<_, _>>()?);
    }
    let at = at.as_deref().unwrap_or_default();
    Ok(T::deserialize(RowCells { row, at, columns })?)
}

/// A row's cells as a sequence (a struct deriving `Deserialize` reads its fields from one).
struct RowCells<'r, 'c> {
    row: &'r rusqlite::Row<'r>,
    at: &'c [usize],
    columns: &'c [Column],
}

impl<'de> Deserializer<'de> for RowCells<'de, '_> {
    type Error = CellError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, CellError> {
        visitor.visit_seq(self)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf option unit
        unit_struct newtype_struct seq tuple tuple_struct map struct enum identifier ignored_any
    }
}

impl<'de> SeqAccess<'de> for RowCells<'de, '_> {
    type Error = CellError;

    fn next_element_seed<S: DeserializeSeed<'de>>(&mut self, seed: S) -> Result<Option<S::Value>, CellError> {
        let (Some((&index, rest)), Some((column, columns))) = (self.at.split_first(), self.columns.split_first())
        else {
            return Ok(None);
        };
        (self.at, self.columns) = (rest, columns);
        let value = self.row.get_ref(index).map_err(CellError::of)?;
        seed.deserialize(Cell { value, json: column.json }).map(Some)
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.at.len())
    }
}

/// One cell, as its type in SQLite gives it (text is UTF-8 there; a JSON column's text is parsed).
struct Cell<'v> {
    value: rusqlite::types::ValueRef<'v>,
    json: bool,
}

impl<'de> Deserializer<'de> for Cell<'de> {
    type Error = CellError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, CellError> {
        use rusqlite::types::ValueRef;
        match self.value {
            ValueRef::Null => visitor.visit_unit(),
            ValueRef::Integer(i) => visitor.visit_i64(i),
            ValueRef::Real(f) => visitor.visit_f64(f),
            ValueRef::Text(text) if self.json => {
                let mut json = serde_json::Deserializer::from_slice(text);
                let value = json.deserialize_any(visitor).map_err(CellError::of)?;
                json.end().map_err(CellError::of)?;
                Ok(value)
            }
            ValueRef::Text(text) => visitor.visit_borrowed_str(std::str::from_utf8(text).map_err(CellError::of)?),
            ValueRef::Blob(bytes) => visitor.visit_borrowed_bytes(bytes),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, CellError> {
        match self.value {
            rusqlite::types::ValueRef::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf unit
        unit_struct newtype_struct seq tuple tuple_struct map struct enum identifier ignored_any
    }
}

/// Why a row could not be read as its struct.
#[derive(Debug)]
struct CellError(String);

impl CellError {
    fn of(error: impl std::fmt::Display) -> Self {
        Self(error.to_string())
    }
}

impl std::fmt::Display for CellError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CellError {}

impl de::Error for CellError {
    fn custom<M: std::fmt::Display>(message: M) -> Self {
        Self::of(message)
    }
}

/// Runs a statement made by `fold` and returns its JSON text unparsed (`[]` for no row).
pub async fn fetch_text<C: ConnectionTrait>(db: &C, folded: Statement) -> AppResult<String> {
    let json: Option<String> = match db.query_one_raw(folded).await? {
        Some(row) => row.try_get_by_index(0)?,
        None => None,
    };
    Ok(json.unwrap_or_else(|| "[]".to_owned()))
}

/// The rows of a folded JSON text (read by `fetch`, or by a caller that parses it later).
pub fn parse<T: DeserializeOwned>(json: &str) -> AppResult<Vec<T>> {
    serde_json::from_str(json).map_err(|e| AppError::Internal(anyhow::Error::new(e).context("reading folded rows")))
}

/// A boolean cell: SQLite writes 0/1, PostgreSQL true/false.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flag(pub bool);

impl<'de> Deserialize<'de> for Flag {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl de::Visitor<'_> for Visitor {
            type Value = Flag;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a boolean, or 0 or 1")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Flag, E> {
                Ok(Flag(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Flag, E> {
                Ok(Flag(v != 0))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Flag, E> {
                Ok(Flag(v != 0))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

/// An instant cell, as the database's JSON writes it (SQLite: the stored RFC 3339 text, with `T`
/// or a space; PostgreSQL: ISO 8601).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Instant(pub DateTime<Utc>);

impl<'de> Deserialize<'de> for Instant {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl de::Visitor<'_> for Visitor {
            type Value = Instant;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an instant as RFC 3339 text")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Instant, E> {
                parse_instant(v).map(Instant).map_err(|_| E::invalid_value(de::Unexpected::Str(v), &self))
            }
        }
        deserializer.deserialize_str(Visitor)
    }
}

/// An optional instant cell as a `DateTime` (null: `None`).
pub fn opt_instant(cell: Option<Instant>) -> Option<DateTime<Utc>> {
    cell.map(|Instant(at)| at)
}

/// An instant as a database writes it as text: RFC 3339, with `T` or a space between date and time.
/// Both databases write UTC as `+00:00`, `+00` (PostgreSQL's ISO style, as its COPY writes it) or
/// `Z`, which is read here directly; any other offset goes through chrono's parser.
pub fn parse_instant(text: &str) -> AppResult<DateTime<Utc>> {
    if let Some(at) = utc_instant(text.as_bytes()) {
        return Ok(at);
    }
    text.parse::<DateTime<chrono::FixedOffset>>()
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| AppError::Internal(anyhow::Error::new(e).context("reading a timestamp")))
}

/// `YYYY-MM-DD?HH:MM:SS[.fraction]` (`?` a `T` or a space, at most 9 digits of fraction) ending in
/// `Z`, `+00:00` or `+00` (PostgreSQL's ISO output in UTC); `None` for anything else (which
/// `parse_instant` hands to chrono).
fn utc_instant(text: &[u8]) -> Option<DateTime<Utc>> {
    let digits = |from: usize, to: usize| -> Option<u32> {
        text.get(from..to)?.iter().try_fold(0u32, |n, &d| d.is_ascii_digit().then(|| n * 10 + u32::from(d - b'0')))
    };
    let separators = [(4, b'-'), (7, b'-'), (13, b':'), (16, b':')];
    if separators.iter().any(|&(at, c)| text.get(at) != Some(&c)) || !matches!(text.get(10), Some(b'T' | b' ')) {
        return None;
    }
    let date = NaiveDate::from_ymd_opt(i32::try_from(digits(0, 4)?).ok()?, digits(5, 7)?, digits(8, 10)?)?;
    let mut rest = text.get(19..)?;
    let mut nanos = 0;
    if let Some(fraction) = rest.strip_prefix(b".") {
        let len = fraction.iter().take_while(|d| d.is_ascii_digit()).count();
        if !(1..=9).contains(&len) {
            return None;
        }
        nanos = digits(20, 20 + len)? * 10u32.pow(9 - u32::try_from(len).ok()?);
        rest = &fraction[len..];
    }
    if !matches!(rest, b"Z" | b"+00:00" | b"+00") {
        return None;
    }
    let time = NaiveTime::from_hms_nano_opt(digits(11, 13)?, digits(14, 16)?, digits(17, 19)?, nanos)?;
    Some(date.and_time(time).and_utc())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct Row {
        text: String,
        one: Flag,
        zero: Flag,
        at: Instant,
        never: Option<Instant>,
        yes: Flag,
    }

    #[test]
    fn rows_read_both_backends_spellings() {
        let sqlite = r#"[["a", 1, 0, "2026-01-02 03:04:05.123456+00:00", null, true]]"#;
        let rows: Vec<Row> = parse(sqlite).expect("a folded row");
        let row = &rows[0];
        assert_eq!((row.text.as_str(), row.one, row.zero, row.yes), ("a", Flag(true), Flag(false), Flag(true)));
        assert_eq!(row.at.0.to_rfc3339(), "2026-01-02T03:04:05.123456+00:00");
        assert_eq!(opt_instant(row.never), None);
        let short: AppResult<Vec<Row>> = parse(r#"[["a", 1]]"#);
        assert!(short.is_err(), "a short row is an error, not a panic");
        let garbage: AppResult<Vec<Row>> = parse(r#"[["a", 1, 0, "yesterday", null, true]]"#);
        assert!(garbage.is_err());
    }

    #[test]
    fn instants_read_as_chrono_reads_them() {
        for text in [
            "2026-11-27T05:10:21.007754518+00:00",
            "2026-11-27 05:10:21.007754518+00:00",
            "1970-01-01 00:00:00+00:00",
            "2026-11-27T05:10:21Z",
            "2026-11-27T05:10:21.5Z",
            "2026-02-28T23:59:59.000001+00:00",
            "2026-11-27T05:10:21+02:00",
            "2026-11-27T05:10:21.123-05:30",
            "2026-11-27T05:10:21.1234567890Z",
        ] {
            let chrono = text.parse::<DateTime<chrono::FixedOffset>>().map(|t| t.with_timezone(&Utc)).ok();
            assert_eq!(parse_instant(text).ok(), chrono, "{text}");
            assert!(chrono.is_some(), "{text}");
        }
        // PostgreSQL's ISO style, which chrono does not read.
        for (text, same) in [
            ("2026-11-27 05:10:21.007754+00", "2026-11-27T05:10:21.007754Z"),
            ("1970-01-01 00:00:00+00", "1970-01-01T00:00:00Z"),
        ] {
            assert_eq!(parse_instant(text).ok(), parse_instant(same).ok(), "{text}");
            assert!(parse_instant(text).is_ok(), "{text}");
        }
        for bad in [
            "",
            "2026-11-27",
            "2026-11-27 05:10:21+0",
            "2026-11-27 05:10:21+01",
            "2026-13-01T00:00:00Z",
            "2026-02-30T00:00:00Z",
            "2026-11-27T24:00:00Z",
            "2026-11-27T05:10:21.+00:00",
            "2026-11-27T05:10:21+00:00x",
            "２026-11-27T05:10:21Z",
        ] {
            assert!(parse_instant(bad).is_err(), "{bad:?}");
        }
    }

    #[derive(Debug, PartialEq, Deserialize)]
    struct Listed {
        name: String,
        on: Flag,
        at: Instant,
        until: Option<Instant>,
        note: Option<String>,
        tags: Vec<String>,
        #[serde(default)]
        sort: Option<String>,
    }

    /// A statement read row by row on the calling thread gives what its fold gives, cell for cell,
    /// whatever the order of the inner query's columns; a row that does not read is declined.
    #[test]
    fn rows_read_inline_are_the_rows_the_fold_gives() {
        let dir = tempfile::tempdir().expect("a directory");
        let path = dir.path().join("rows.db");
        let db = rusqlite::Connection::open(&path).expect("open");
        db.execute_batch(
            "CREATE TABLE t (id INTEGER, name TEXT, on_ INTEGER, at TEXT, until TEXT, note TEXT);
             CREATE TABLE tag (t INTEGER, tag TEXT);
             INSERT INTO t VALUES (1, 'first \"quoted\" é', 1, '2026-01-02 03:04:05.123456+00:00', NULL, NULL),
                                  (2, 'second', 0, '2026-01-02T03:04:05Z', '2026-02-01T00:00:00+02:00', 'n');
             INSERT INTO tag VALUES (1, 'a'), (1, 'b,c'), (2, 'z');",
        )
        .expect("rows");
        let inner = Statement::from_string(
            DatabaseBackend::Sqlite,
            "SELECT note AS c4, id AS s, name AS c0, on_ AS c1, at AS c2, until AS c3, \
             (SELECT json_group_array(tag) FROM tag WHERE tag.t = t.id) AS tags FROM t ORDER BY id",
        );
        let columns = ["c0", "c1", "c2", "c3", "c4"].map(Column::plain).into_iter().chain([Column::json("tags")]);
        let folded = fold_keeping_rows(DatabaseBackend::Sqlite, inner, columns.collect(), None);
        let text: String = db.query_row(&folded.statement.sql, [], |row| row.get(0)).expect("the fold");
        let from_fold: Vec<Listed> = parse(&text).expect("folded rows");
        let reader = super::super::inline_read::InlineReader::for_url(&format!("sqlite://{}", path.display()), 0)
            .expect("a file");
        let mut at = None;
        let inline: Vec<Listed> =
            reader.read_rows(&folded.rows, |row| from_row(row, &mut at, &folded.columns)).expect("inline rows");
        assert_eq!(inline, from_fold);
        assert_eq!(inline.len(), 2);
        assert_eq!(
            (inline[0].name.as_str(), inline[0].on, &inline[0].tags[..]),
            ("first \"quoted\" é", Flag(true), &["a".to_owned(), "b,c".to_owned()][..])
        );
        assert_eq!(inline[1].until.map(|Instant(at)| at.to_rfc3339()), Some("2026-01-31T22:00:00+00:00".into()));
        assert_eq!(inline[1].note.as_deref(), Some("n"));

        db.execute("UPDATE t SET at = 'yesterday' WHERE id = 2", []).expect("a bad instant");
        let mut at = None;
        let bad = reader.read_rows(&folded.rows, |row| from_row::<Listed>(row, &mut at, &folded.columns));
        assert_eq!(bad.err(), Some(super::super::inline_read::Declined::Error));
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
