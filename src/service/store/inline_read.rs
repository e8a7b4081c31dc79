//! Reading a SQLite file on the calling thread, for the reads of a listing page.
//!
//! sqlx runs each SQLite connection on a thread of its own: a query is handed to that thread and its
//! answer handed back, two thread wake-ups that cost a listing page more than its query does (and
//! one per row, which is why a page read through sqlx is folded into one row of JSON, `folded`).
//! `InlineReader` runs a page's statement on the async task's own thread instead, on a connection
//! of its own that may only read (`query_only`), and hands its rows to the caller as they are, with
//! no JSON built or parsed. In WAL mode such a connection sees every commit made before its
//! statement starts, as a pooled one does.
//!
//! A worker thread must not be held long: a statement still running after `BUDGET_STEPS` is interrupted
//! (SQLite's progress handler) and declined, and the caller runs it the usual way. So is a statement
//! with a value this module does not bind exactly as sqlx would (`bind`), or one that fails for any
//! reason: the usual way then gives the usual answer or error. `appkeys_sqlite_inline_reads_total`
//! counts the reads by outcome.
use rusqlite::types::{ToSqlOutput, Value as Owned, ValueRef};
use rusqlite::OpenFlags;
use sea_orm::{Statement, Value};
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use crate::telemetry::LabelledCounter;

/// How many SQLite virtual-machine steps a statement may take on the calling thread before it is
/// handed to sqlx instead. Counted in steps, not time, so a busy machine does not decline more: a
/// page of 20 keys takes ~1 700 steps, of 100 ~8 000, and a search that reads 1 000 keys ~15 000;
/// 50 000 steps are a few milliseconds.
pub const BUDGET_STEPS: u32 = 50_000;
/// Steps between two calls of the progress handler that counts them.
const STEPS_PER_CHECK: u32 = 1_000;
/// Idle connections kept (the async runtime has one thread per core; more only after a burst).
const MAX_IDLE: usize = 8;

/// Reads a SQLite file on the calling thread; see the module's documentation.
pub struct InlineReader {
    path: PathBuf,
    mmap_bytes: u64,
    idle: Mutex<Vec<rusqlite::Connection>>,
    inline: AtomicU64,
    declined: AtomicU64,
    /// `appkeys_sqlite_inline_reads_total` by outcome (`OUTCOMES`).
    counters: LabelledCounter<{ OUTCOMES.len() }>,
}

/// The outcome labels: "inline", then each `Declined` at its index + 1.
const OUTCOMES: [&str; 4] = ["inline", "declined_values", "declined_budget", "declined_error"];

/// Why `decode` refused a row.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// How many statements this reader read, and how many it handed back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub inline: u64,
    pub declined: u64,
}

/// Why a statement was handed back to the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Declined {
    /// A value of a type this module does not bind.
    Values,
    /// It took more than `BUDGET_STEPS`.
    Budget,
    /// SQLite refused it, a row could not be read, or the connection could not be opened.
    Error,
}

impl Declined {
    /// Its place in `OUTCOMES`.
    fn outcome(self) -> usize {
        match self {
            Declined::Values => 1,
            Declined::Budget => 2,
            Declined::Error => 3,
        }
    }
}

impl InlineReader {
    /// A reader for the database `url` names when it is a SQLite file; `None` for PostgreSQL and for
    /// an in-memory database (another connection would see another database).
    pub fn for_url(url: &str, mmap_bytes: u64) -> Option<Self> {
        if !(url.starts_with("sqlite:")) || url.contains("mode=memory") {
            return None;
        }
        let options = sea_orm::sqlx::sqlite::SqliteConnectOptions::from_str(url).ok()?;
        let path = options.get_filename().to_path_buf();
        let name = path.to_string_lossy();
        if name.is_empty() || name.starts_with(":memory:") || name.starts_with("file:") {
            return None;
        }
        Some(Self {
            path,
            mmap_bytes,
            idle: Mutex::new(Vec::new()),
            inline: AtomicU64::new(0),
            declined: AtomicU64::new(0),
            counters: LabelledCounter::new("appkeys_sqlite_inline_reads_total", "outcome", OUTCOMES),
        })
    }

    pub fn counts(&self) -> Counts {
        Counts { inline: self.inline.load(Ordering::Relaxed), declined: self.declined.load(Ordering::Relaxed) }
    }

    /// Every row of `statement`, each read by `decode`, on this thread; `Err` when it is declined
    /// and must be run the usual way (a row `decode` refuses declines it too: the usual way then
    /// gives the usual answer or error).
    pub fn read_rows<T>(
        &self,
        statement: &Statement,
        decode: impl FnMut(&rusqlite::Row<'_>) -> Result<T, BoxError>,
    ) -> Result<Vec<T>, Declined> {
        let outcome = self.read(statement, decode);
        let (index, count) = match &outcome {
            Ok(_) => (0, &self.inline),
            Err(declined) => (declined.outcome(), &self.declined),
        };
        count.fetch_add(1, Ordering::Relaxed);
        self.counters.increment(index);
        outcome
    }

    fn read<T>(
        &self,
        statement: &Statement,
        mut decode: impl FnMut(&rusqlite::Row<'_>) -> Result<T, BoxError>,
    ) -> Result<Vec<T>, Declined> {
        let values = statement.values.as_ref().map_or(&[][..], |v| v.0.as_slice());
        let params = values.iter().map(bind).collect::<Option<Vec<_>>>().ok_or(Declined::Values)?;
        let connection = self.take()?;
        let mut checks = 0;
        let over_budget = move || {
            checks += 1;
            checks > BUDGET_STEPS / STEPS_PER_CHECK
        };
        let declined = |error: rusqlite::Error| match error {
            rusqlite::Error::SqliteFailure(error, _) if error.code == rusqlite::ErrorCode::OperationInterrupted => {
                Declined::Budget
            }
            _ => Declined::Error,
        };
        let outcome = (|| {
            connection.progress_handler(STEPS_PER_CHECK as i32, Some(over_budget)).map_err(declined)?;
            let mut prepared = connection.prepare_cached(&statement.sql).map_err(declined)?;
            let mut rows = prepared.query(rusqlite::params_from_iter(params)).map_err(declined)?;
            let mut read = Vec::new();
            while let Some(row) = rows.next().map_err(declined)? {
                read.push(decode(row).map_err(|_| Declined::Error)?);
            }
            Ok(read)
        })();
        self.put(connection);
        outcome
    }

    fn take(&self) -> Result<rusqlite::Connection, Declined> {
        if let Some(connection) = self.idle.lock().ok().and_then(|mut idle| idle.pop()) {
            return Ok(connection);
        }
        self.open().map_err(|_| Declined::Error)
    }

    fn put(&self, connection: rusqlite::Connection) {
        if let Ok(mut idle) = self.idle.lock() {
            if idle.len() < MAX_IDLE {
                idle.push(connection);
            }
        }
    }

    /// A connection that may only read, never waits on a lock (a busy database declines), and maps
    /// the file as the pool's connections do.
    fn open(&self) -> rusqlite::Result<rusqlite::Connection> {
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let connection = rusqlite::Connection::open_with_flags(&self.path, flags)?;
        // rusqlite waits up to 5 s for a lock by default; a worker thread must not.
        connection.busy_timeout(std::time::Duration::ZERO)?;
        connection.pragma_update(None, "query_only", true)?;
        connection.pragma_update(None, "mmap_size", i64::try_from(self.mmap_bytes).unwrap_or(i64::MAX))?;
        connection.set_prepared_statement_cache_capacity(64);
        Ok(connection)
    }
}

/// A value bound as sqlx binds it on SQLite (`sea-query-sqlx`, then sqlx's `Encode`); `None` for a
/// type not bound here, so nothing is ever compared in another spelling.
fn bind(value: &Value) -> Option<ToSqlOutput<'_>> {
    let owned = |v: Option<Owned>| ToSqlOutput::Owned(v.unwrap_or(Owned::Null));
    Some(match value {
        Value::Bool(b) => owned(b.map(|b| Owned::Integer(i64::from(b)))),
        Value::TinyInt(i) => owned(i.map(|i| Owned::Integer(i.into()))),
        Value::SmallInt(i) => owned(i.map(|i| Owned::Integer(i.into()))),
        Value::Int(i) => owned(i.map(|i| Owned::Integer(i.into()))),
        Value::BigInt(i) => owned(i.map(Owned::Integer)),
        Value::TinyUnsigned(i) => owned(i.map(|i| Owned::Integer(i.into()))),
        Value::SmallUnsigned(i) => owned(i.map(|i| Owned::Integer(i.into()))),
        Value::Unsigned(i) => owned(i.map(|i| Owned::Integer(i.into()))),
        Value::BigUnsigned(i) => owned(match i {
            Some(i) => Some(Owned::Integer(i64::try_from(*i).ok()?)),
            None => None,
        }),
        Value::Double(d) => owned(d.map(Owned::Real)),
        Value::String(Some(s)) => ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes())),
        Value::String(None) => owned(None),
        // sqlx writes an instant with a zone as RFC 3339, seconds' fraction as needed.
        Value::ChronoDateTimeUtc(t) => owned(t.map(|t| Owned::Text(crate::domain::instant::as_sqlx_writes_it(t)))),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};
    use sea_orm::sqlx::{Connection, Row};

    impl InlineReader {
        /// The one-column text of `statement`'s first row (`None` for no row or a NULL).
        fn read_text(&self, statement: &Statement) -> Result<Option<String>, Declined> {
            let rows = self.read_rows(statement, |row| Ok(row.get::<_, Option<String>>(0)?))?;
            Ok(rows.into_iter().next().flatten())
        }
    }

    /// A SQLite file in WAL mode holding `table`, with a sqlx connection to it.
    async fn database(table: &'static str) -> (tempfile::TempDir, String, sea_orm::sqlx::SqliteConnection) {
        let dir = tempfile::tempdir().expect("a directory");
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("inline.db()").display());
        let mut sqlx = sea_orm::sqlx::SqliteConnection::connect(&url).await.expect("connect");
        sea_orm::sqlx::query("PRAGMA journal_mode = WAL").execute(&mut sqlx).await.expect("wal");
        sea_orm::sqlx::query(table).execute(&mut sqlx).await.expect("table");
        (dir, url, sqlx)
    }

    #[test]
    fn only_a_sqlite_file_is_read_inline() {
        assert!(InlineReader::for_url("postgres://localhost/appkeys", 0).is_none());
        assert!(InlineReader::for_url("sqlite::memory:", 0).is_none());
        assert!(InlineReader::for_url("sqlite://x.db()?mode=memory", 0).is_none());
        let reader = InlineReader::for_url("sqlite://data/appkeys.db()?mode=rwc", 0).expect("a file");
        assert_eq!(reader.path, PathBuf::from("data/appkeys.db()"));
    }

    /// Every value bound here compares in SQL exactly as the same value bound by sqlx: each is
    /// written by sqlx into a row, then found by an equality on the inline connection.
    #[tokio::test]
    async fn values_are_bound_as_sqlx_binds_them() {
        let (_dir, url, mut sqlx) = database("CREATE TABLE t (n INTEGER, v)").await;
        let instant = Utc.with_ymd_and_hms(2026, 11, 27, 18, 30, 5).unwrap() + chrono::Duration::microseconds(120);
        let values = [
            Value::Bool(Some(true)),
            Value::Int(Some(-7)),
            Value::BigInt(Some(1 << 40)),
            Value::Unsigned(Some(7)),
            Value::BigUnsigned(Some(9)),
            Value::Double(Some(0.25)),
            Value::String(Some("appkey-main-ABCDEF".into())),
            Value::ChronoDateTimeUtc(Some(instant)),
            Value::ChronoDateTimeUtc(Some(Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap())),
        ];
        for (n, value) in values.iter().enumerate() {
            // Bound through sqlx as sea-query-sqlx binds each type on SQLite.
            let query = sea_orm::sqlx::query("INSERT INTO t (n, v) VALUES ($1, $2)").bind(n as i64);
            let query = match value.clone() {
                Value::Bool(b) => query.bind(b),
                Value::Int(i) => query.bind(i),
                Value::BigInt(i) => query.bind(i),
                Value::Unsigned(i) => query.bind(i),
                Value::BigUnsigned(i) => query.bind(i.map(|i| i64::try_from(i).expect("small"))),
                Value::Double(d) => query.bind(d),
                Value::String(s) => query.bind(s),
                Value::ChronoDateTimeUtc(t) => query.bind(t),
                other => panic!("not covered: {other:?}"),
            };
            query.execute(&mut sqlx).await.expect("insert");
        }
        let reader = InlineReader::for_url(&url, 0).expect("a file");
        for (n, value) in values.iter().enumerate() {
            let find = Statement::from_sql_and_values(
                sea_orm::DatabaseBackend::Sqlite,
                "SELECT CAST(n AS TEXT) FROM t WHERE v = $1 AND typeof(v) = typeof($1)",
                [value.clone()],
            );
            assert_eq!(reader.read_text(&find), Ok(Some(n.to_string())), "{value:?}");
        }
        // What sqlx wrote for the instant is what it reads back.
        let row = sea_orm::sqlx::query("SELECT v FROM t WHERE n = 7").fetch_one(&mut sqlx).await.expect("row");
        assert_eq!(row.get::<chrono::DateTime<Utc>, _>(0), instant);
    }

    #[tokio::test]
    async fn a_value_it_does_not_bind_or_a_long_statement_is_declined_and_it_never_writes() {
        let (_dir, url, mut sqlx) = database("CREATE TABLE t (v)").await;
        let reader = InlineReader::for_url(&url, 0).expect("a file");
        let statement = |sql: &str, values: Vec<Value>| {
            Statement::from_sql_and_values(sea_orm::DatabaseBackend::Sqlite, sql, values)
        };
        let bytes = statement("SELECT CAST($1 AS TEXT)", vec![Value::Bytes(Some(vec![1, 2]))]);
        assert_eq!(reader.read_text(&bytes), Err(Declined::Values));
        // A recursive count to a hundred million runs far past the budget.
        let long = statement(
            "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < 100000000) SELECT CAST(count(*) AS TEXT) FROM c",
            vec![],
        );
        assert_eq!(reader.read_text(&long), Err(Declined::Budget));
        assert_eq!(
            reader.read_text(&statement("INSERT INTO t (v) VALUES (1) RETURNING 'x'", vec![])),
            Err(Declined::Error)
        );
        let count = sea_orm::sqlx::query("SELECT count(*) FROM t").fetch_one(&mut sqlx).await.expect("count");
        assert_eq!(count.get::<i64, _>(0), 0, "the inline connection only reads");
        // The connection is still good after an interruption and a refusal.
        assert_eq!(reader.read_text(&statement("SELECT 'ok'", vec![])), Ok(Some("ok".into())));
        assert_eq!(reader.read_text(&statement("SELECT NULL", vec![])), Ok(None));
        assert_eq!(reader.read_text(&statement("SELECT 'x' FROM t", vec![])), Ok(None), "no row");
    }
}
