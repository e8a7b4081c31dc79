//! Reading many rows as one: the database folds a query's rows into one JSON array, so the driver
//! hands over one row instead of hundreds. On SQLite every row crosses from the connection's thread
//! to the async task with a wake-up of its own, and each column is found by name and decoded on the
//! way: for a page of keys or a chunk of the export, that hand-off, not the query, was the cost.
//! `fold` writes the SQL; `fetch` runs it and reads each folded row as a typed struct (`Flag` and
//! `Instant` read the cells each database spells its own way).
//!
//! Where there is no hand-off — a SQLite file read on the calling thread (`inline_read`), or any
//! PostgreSQL read — building the JSON and parsing it again were most of a page's cost, so
//! `fetch_from` reads the statement `fold_keeping_rows` kept, row by row, into the same struct
//! (`cells`).
use chrono::{DateTime, NaiveDate, NaiveTime, Utc};
use sea_orm::{ConnectionTrait, DatabaseBackend, Statement};
use serde::de::{self, DeserializeOwned, Deserializer};
use serde::Deserialize;

mod cells;

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
    /// Where each of `columns` is in `rows`' results, once a read has found them.
    at: std::sync::OnceLock<Vec<usize>>,
}

impl Folded {
    /// The statement whose rows it folds (for `EXPLAIN`).
    pub fn rows(&self) -> &Statement {
        &self.rows
    }
}

/// `fold`, keeping the statement folded and its columns so `fetch_from` can read its rows as they
/// are where no hand-off between threads makes folding worth it.
pub fn fold_keeping_rows(
    backend: DatabaseBackend,
    inner: Statement,
    columns: Vec<Column>,
    order: Option<&str>,
) -> Folded {
    Folded { statement: fold(backend, inner.clone(), &columns, order), rows: inner, columns, at: Default::default() }
}

/// `fetch` from the store, reading the rows the fold wraps as they are where the fold saves no
/// hand-off between threads: on a SQLite file on the calling thread (`inline_read`), and on
/// PostgreSQL, whose rows sqlx reads on the calling task (there the fold cost the server more than
/// the rows: it built the JSON this parsed again). Otherwise, or when an inline read is declined,
/// folded through the pool. Every way reads the same rows into the same `T`; on SQLite none states
/// an order (`fold` is given none there), so the caller sorts.
pub async fn fetch_from<T: DeserializeOwned>(store: &super::Store, folded: &Folded) -> AppResult<Vec<T>> {
    if let Some(reader) = store.inline_reader() {
        if let Ok(rows) = reader.read_rows(&folded.rows, |row| Ok(cells::from_row(row, &folded.at, &folded.columns)?)) {
            return Ok(rows);
        }
    }
    if folded.rows.db_backend == DatabaseBackend::Postgres {
        return fetch_rows(store.db(), folded).await;
    }
    fetch(store.db(), folded.statement.clone()).await
}

/// PostgreSQL: the rows a `Folded` folds, each read as a `T` as `fetch` reads its folded row.
async fn fetch_rows<T: DeserializeOwned, C: ConnectionTrait>(db: &C, folded: &Folded) -> AppResult<Vec<T>> {
    let unreadable = |e: cells::CellError| AppError::Internal(anyhow::Error::new(e).context("reading a row"));
    (db.query_all_raw(folded.rows.clone()).await?.iter())
        .map(|row| match row.try_as_pg_row() {
            Some(row) => cells::from_row(row, &folded.at, &folded.columns).map_err(unreadable),
            None => Err(AppError::Internal(anyhow::anyhow!("a PostgreSQL statement gave another kind of row"))),
        })
        .collect()
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

/// Declares a read model once: the struct its rows are read into and, in the same order, each
/// field's column — its alias (the field's name) and where it is read from (a source of the model's
/// own type). Every way of reading a row reads the fields in declaration order, by the aliases: a
/// folded JSON row (`fetch`, `parse`), a row as it is (`fetch_from`), a CSV line
/// (`csv::StringRecord::deserialize`). A reader that reads fewer columns reads a prefix of them;
/// the fields after it must then be `#[serde(default)]`.
macro_rules! read_model {
    ($(#[$meta:meta])* $vis:vis struct $name:ident from $source:ty {
        $( $(#[$fmeta:meta])* $field:ident : $ty:ty = $from:expr ),* $(,)?
    }) => {
        $(#[$meta])*
        #[derive(Debug, serde::Deserialize)]
        $vis struct $name { $( $(#[$fmeta])* pub $field: $ty ),* }

        impl $name {
            /// Each field's column, in the struct's order: its alias and its source.
            pub const COLUMNS: &'static [(&'static str, $source)] = &[$( (stringify!($field), $from) ),*];
        }
    };
}
pub(in crate::service) use read_model;

/// A boolean cell: SQLite writes 0/1, PostgreSQL true/false (`t`/`f` as text).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
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
            /// PostgreSQL's text form (`t`/`f`, as its COPY writes booleans).
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Flag, E> {
                match v {
                    "t" | "true" | "1" => Ok(Flag(true)),
                    "f" | "false" | "0" => Ok(Flag(false)),
                    _ => Err(E::invalid_value(de::Unexpected::Str(v), &self)),
                }
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

/// An instant cell, as the database's JSON writes it (SQLite: the stored RFC 3339 text, with `T`
/// or a space; PostgreSQL: ISO 8601), or as microseconds since the Unix epoch (a PostgreSQL row
/// read as it is).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Instant(pub DateTime<Utc>);

impl<'de> Deserialize<'de> for Instant {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl de::Visitor<'_> for Visitor {
            type Value = Instant;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an instant as RFC 3339 text, or as microseconds since 1970")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Instant, E> {
                parse_instant(v).map(Instant).map_err(|_| E::invalid_value(de::Unexpected::Str(v), &self))
            }
            /// Microseconds since the Unix epoch, as a PostgreSQL row's cell gives it (`cells`).
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Instant, E> {
                DateTime::from_timestamp_micros(v)
                    .map(Instant)
                    .ok_or_else(|| E::invalid_value(de::Unexpected::Signed(v), &self))
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
        let path = dir.path().join("rows.db()");
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
        let inline: Vec<Listed> = reader
            .read_rows(&folded.rows, |row| cells::from_row(row, &folded.at, &folded.columns).map_err(Into::into))
            .expect("inline rows");
        assert_eq!(inline, from_fold);
        assert_eq!(inline.len(), 2);
        assert_eq!(
            (inline[0].name.as_str(), inline[0].on, &inline[0].tags[..]),
            ("first \"quoted\" é", Flag(true), &["a".to_owned(), "b,c".to_owned()][..])
        );
        assert_eq!(inline[1].until.map(|Instant(at)| at.to_rfc3339()), Some("2026-01-31T22:00:00+00:00".into()));
        assert_eq!(inline[1].note.as_deref(), Some("n"));

        db.execute("UPDATE t SET at = 'yesterday' WHERE id = 2", []).expect("a bad instant");
        let bad =
            reader.read_rows(&folded.rows, |row| Ok(cells::from_row::<Listed>(row, &folded.at, &folded.columns)?));
        assert_eq!(bad.err(), Some(super::super::inline_read::Declined::Error));
    }

    /// PostgreSQL's rows read as they are give what their fold gives, cell for cell (text needing
    /// escapes, booleans, instants with and without a fraction, nulls, a JSON column), whatever the
    /// order of the inner query's columns; a cell of a type not read is an error. Runs where
    /// `APPKEYS_TEST_POSTGRES_URL` names a server (as CI does).
    #[tokio::test]
    async fn postgres_rows_read_as_they_are_are_the_rows_the_fold_gives() {
        let Ok(url) = std::env::var("APPKEYS_TEST_POSTGRES_URL") else {
            eprintln!("APPKEYS_TEST_POSTGRES_URL is not set: PostgreSQL rows not tested");
            return;
        };
        let db = sea_orm::Database::connect(url).await.expect("PostgreSQL");
        let inner = |extra: &str| {
            Statement::from_string(
                DatabaseBackend::Postgres,
                format!(
                    "SELECT note AS c4, id AS s, name AS c0, on_ AS c1, at AS c2, until AS c3, tags{extra} FROM (VALUES \
                     (1, 'first \"quoted\" é\\', true, '2026-01-02 03:04:05.123456+00'::timestamptz, NULL::timestamptz, \
                      NULL::varchar, json_build_array('a', 'b,c')), \
                     (2, 'second', false, '2026-01-02T03:04:05Z'::timestamptz, '1969-07-20T22:17:40.5+02:00'::timestamptz, \
                      'n'::varchar, '[\"z\"]'::json)) AS t(id, name, on_, at, until, note, tags) ORDER BY id"
                ),
            )
        };
        let columns = || ["c0", "c1", "c2", "c3", "c4"].map(Column::plain).into_iter().chain([Column::json("tags")]);
        let folded = fold_keeping_rows(DatabaseBackend::Postgres, inner(""), columns().collect(), Some("\"s\""));
        let from_fold: Vec<Listed> = fetch(&db, folded.statement.clone()).await.expect("folded rows");
        let as_they_are: Vec<Listed> = fetch_rows(&db, &folded).await.expect("rows");
        assert_eq!(as_they_are, from_fold);
        assert_eq!(as_they_are.len(), 2);
        assert_eq!(
            (as_they_are[0].name.as_str(), as_they_are[0].on, &as_they_are[0].tags[..]),
            ("first \"quoted\" é\\", Flag(true), &["a".to_owned(), "b,c".to_owned()][..])
        );
        assert_eq!(as_they_are[0].at.0.to_rfc3339(), "2026-01-02T03:04:05.123456+00:00");
        let before_both_epochs = "1969-07-20T20:17:40.5Z".parse::<DateTime<Utc>>().ok();
        assert_eq!(as_they_are[1].until.map(|Instant(at)| at), before_both_epochs);
        assert_eq!((as_they_are[0].note.as_deref(), as_they_are[1].note.as_deref()), (None, Some("n")));

        let odd = fold_keeping_rows(DatabaseBackend::Postgres, inner(", point(1, 2) AS c5"), columns().collect(), None);
        let mut with_point = odd.columns.clone();
        with_point.push(Column::plain("c5"));
        let odd = Folded { columns: with_point, ..odd };
        let error = fetch_rows::<Listed, _>(&db, &odd).await.expect_err("a point is not read");
        assert!(format!("{error:?}").contains("POINT"), "{error:?}");

        let endless = inner("").sql.replace("'2026-01-02T03:04:05Z'::timestamptz", "'infinity'::timestamptz");
        let endless = Statement::from_string(DatabaseBackend::Postgres, endless);
        let endless = fold_keeping_rows(DatabaseBackend::Postgres, endless, columns().collect(), None);
        let error = fetch_rows::<Listed, _>(&db, &endless).await.expect_err("infinity is no instant here");
        assert!(format!("{error:?}").contains("out of range"), "{error:?}");
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
