//! Usage: every decision about a key in an account counted by outcome per hour and per day
//! (written as additive upserts to both, so replicas and flushes add up), kept for a while; and
//! when each resource a key holds was last needed.
use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, OnConflict, Query};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QuerySelect};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::entity::{key_permission_use, key_usage};
use crate::error::{AppError, AppResult};
use crate::service::store::folded;
use crate::service::store::versions::UsageVersion;
use crate::service::store::{Store, USAGE_CHANNEL};

/// How a decision about a known key ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Valid = 0,
    /// It lacked a resource (or any role) in the account.
    Forbidden = 1,
    IpNotAllowed = 2,
    RateLimited = 3,
    UsageExceeded = 4,
    /// Inactive, expired or removed in the account.
    Disabled = 5,
    /// The right key with a wrong token: counted in the key's own account.
    InvalidToken = 6,
}

/// The counts of one bucket, indexed by `Outcome`.
pub type Counts = [u64; 7];

/// The columns of `key_usage` in `Outcome` order.
const COLUMNS: [key_usage::Column; 7] = [
    key_usage::Column::Valid,
    key_usage::Column::Forbidden,
    key_usage::Column::IpNotAllowed,
    key_usage::Column::RateLimited,
    key_usage::Column::UsageExceeded,
    key_usage::Column::Disabled,
    key_usage::Column::InvalidToken,
];
const NAMES: [&str; 7] =
    ["valid", "forbidden", "ip_not_allowed", "rate_limited", "usage_exceeded", "disabled", "invalid_token"];

/// Hour or day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Granularity {
    Hour = 1,
    Day = 2,
}

impl Granularity {
    pub fn seconds(self) -> i64 {
        match self {
            Granularity::Hour => 3600,
            Granularity::Day => 86_400,
        }
    }

    /// The start of the bucket holding `at`.
    pub fn bucket_of(self, at: DateTime<Utc>) -> i64 {
        at.timestamp().div_euclid(self.seconds()) * self.seconds()
    }
}

/// Counted decisions of one key access in one hour, as the hot path gathered them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CountedHour {
    pub access_id: String,
    pub account_id: String,
    /// The hour's start (seconds since the epoch).
    pub hour: i64,
    pub counts: Counts,
}

/// A resource a key's request needed, at `at`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PermissionUse {
    pub access_id: String,
    pub resource: String,
    pub at: DateTime<Utc>,
}

/// Valid requests of a key access from one address on one day, as the hot path gathered them;
/// `address: None` stands for the requests beyond the day's `MAX_ADDRESSES_A_DAY`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressSeen {
    pub access_id: String,
    pub day: i64,
    pub address: Option<String>,
    pub count: u64,
    pub last_seen: DateTime<Utc>,
}

/// Most addresses kept for one key access on one day; the rest are counted as `other`.
pub const MAX_ADDRESSES_A_DAY: usize = 100;
/// The stored name of the requests beyond a day's addresses.
pub const OTHER_ADDRESSES: &str = "other";

/// The upsert's `SET` value of `column` in `table` that keeps the newer of the stored and the new
/// instant, whichever replica writes first.
fn newest_wins(table: &str, column: &str) -> String {
    format!("CASE WHEN excluded.{column} > {table}.{column} THEN excluded.{column} ELSE {table}.{column} END")
}

/// The upsert's `SET` value of `column` in `table` that adds the new count to the stored one.
fn added(table: &str, column: &str) -> String {
    format!("{table}.{column} + excluded.{column}")
}

/// Most rows one statement upserts.
const CHUNK: usize = 500;

/// Adds counted hours to the stored ones, moves permission uses forward and adds the addresses
/// seen, in one transaction.
pub async fn record(
    store: &Store,
    hours: &[CountedHour],
    uses: &[PermissionUse],
    addresses: &[AddressSeen],
) -> AppResult<()> {
    if hours.is_empty() && uses.is_empty() && addresses.is_empty() {
        return Ok(());
    }
    let txn = store.begin_write().await?;
    // Kept usage answers go once this commits: this replica's at once, others' when they hear of it.
    let version = txn.part::<UsageVersion>();
    txn.notify_on_commit(USAGE_CHANNEL, version.announcement());
    txn.after_commit(move || version.changed());
    record_addresses(&*txn, store.backend(), addresses).await?;
    // Each hour is added to its hour and to its day: a daily series reads a day's row, not its hours.
    if store.backend() == sea_orm::DatabaseBackend::Postgres {
        add_hours_and_days_pg(&*txn, hours).await?;
    } else {
        let mut days: BTreeMap<(&str, i64), (&str, Counts)> = BTreeMap::new();
        for hour in hours {
            let day = hour.hour.div_euclid(Granularity::Day.seconds()) * Granularity::Day.seconds();
            add(
                &mut days.entry((hour.access_id.as_str(), day)).or_insert((hour.account_id.as_str(), [0; 7])).1,
                &hour.counts,
            );
        }
        let rows: Vec<(&str, &str, Granularity, i64, Counts)> = hours
            .iter()
            .map(|h| (h.access_id.as_str(), h.account_id.as_str(), Granularity::Hour, h.hour, h.counts))
            .chain(days.iter().map(|((access_id, day), (account_id, counts))| {
                (*access_id, *account_id, Granularity::Day, *day, *counts)
            }))
            .collect();
        for chunk in rows.chunks(CHUNK) {
            add_counts(&*txn, chunk.iter().copied()).await?;
        }
    }
    if store.backend() == sea_orm::DatabaseBackend::Postgres {
        let rows = PgRows::default()
            .column("access_id", "text", uses.iter().map(|u| u.access_id.clone()).collect::<Vec<_>>())
            .column("resource", "text", uses.iter().map(|u| u.resource.clone()).collect::<Vec<_>>())
            .column("last_used_at", "timestamptz", uses.iter().map(|u| u.at).collect::<Vec<_>>());
        let set = format!("last_used_at = {}", newest_wins("key_permission_use", "last_used_at"));
        upsert_rows(&*txn, "key_permission_use", rows, "access_id, resource", &set).await?;
        return txn.commit_without_credential_change().await;
    }
    for chunk in uses.chunks(CHUNK) {
        let mut insert = Query::insert();
        insert.into_table(key_permission_use::Entity).columns([
            key_permission_use::Column::AccessId,
            key_permission_use::Column::Resource,
            key_permission_use::Column::LastUsedAt,
        ]);
        for used in chunk {
            insert.values_panic([used.access_id.clone().into(), used.resource.clone().into(), used.at.into()]);
        }
        // The newest use wins, whichever replica writes first.
        insert.on_conflict(
            OnConflict::columns([key_permission_use::Column::AccessId, key_permission_use::Column::Resource])
                .value(
                    key_permission_use::Column::LastUsedAt,
                    Expr::cust(newest_wins("key_permission_use", "last_used_at")),
                )
                .to_owned(),
        );
        txn.execute(&insert).await?;
    }
    txn.commit_without_credential_change().await
}

/// Adds addresses seen. A day keeps at most `MAX_ADDRESSES_A_DAY` addresses per key access: an
/// address not among them once they are full is added to `other`. Per chunk of key accesses: their
/// access rows locked (PostgreSQL, in id order, so two replicas flushing at once cannot both take
/// a day's last place), the addresses they keep read in one statement, all rows upserted in one.
async fn record_addresses<C: ConnectionTrait>(
    db: &C,
    backend: sea_orm::DatabaseBackend,
    addresses: &[AddressSeen],
) -> AppResult<()> {
    use crate::entity::key_client_address as kca;
    let mut by_day: BTreeMap<(&str, i64), Vec<&AddressSeen>> = BTreeMap::new();
    for seen in addresses {
        by_day.entry((seen.access_id.as_str(), seen.day)).or_default().push(seen);
    }
    let groups: Vec<((&str, i64), Vec<&AddressSeen>)> = by_day.into_iter().collect();
    // PostgreSQL takes every row as one JSON parameter: one chunk. SQLite binds each value.
    let chunk_size = if backend == sea_orm::DatabaseBackend::Postgres { usize::MAX } else { CHUNK };
    for chunk in groups.chunks(chunk_size) {
        let mut ids: Vec<&str> = chunk.iter().map(|((id, _), _)| *id).collect();
        ids.dedup();
        let days: Vec<i64> = {
            let mut days: Vec<i64> = chunk.iter().map(|((_, day), _)| *day).collect();
            days.sort_unstable();
            days.dedup();
            days
        };
        if backend == sea_orm::DatabaseBackend::Postgres {
            let ids: Vec<String> = ids.iter().map(|id| (*id).to_owned()).collect();
            // One row back, not one per access: 10 000 rows read back took ~50 ms of the flush.
            let sql = "WITH locked AS (SELECT a.id FROM key_access a WHERE a.id = ANY($1::text[]) \
                       ORDER BY a.id FOR UPDATE OF a) SELECT count(*) FROM locked";
            let statement = sea_orm::Statement::from_sql_and_values(backend, sql, [ids.into()]);
            db.query_one_raw(statement).await?;
        }
        let kept_rows: Vec<(String, i64, String)> = if backend == sea_orm::DatabaseBackend::Postgres {
            // Joined to the (key, day) pairs, sent as two arrays: a long IN list was matched
            // against every row of the table (100–200 ms a chunk).
            let pairs = PgRows::default()
                .column("access_id", "text", chunk.iter().map(|((id, _), _)| (*id).to_owned()).collect::<Vec<_>>())
                .column("day", "bigint", chunk.iter().map(|((_, day), _)| *day).collect::<Vec<_>>());
            let sql = format!(
                "SELECT k.access_id, k.day, k.address FROM key_client_addresses k JOIN {} \
                 ON k.access_id = r.access_id AND k.day = r.day",
                pairs.source()
            );
            let statement = sea_orm::Statement::from_sql_and_values(backend, sql, pairs.values);
            let mut rows = Vec::new();
            for row in db.query_all_raw(statement).await? {
                rows.push((row.try_get_by_index(0)?, row.try_get_by_index(1)?, row.try_get_by_index(2)?));
            }
            rows
        } else {
            kca::Entity::find()
                .select_only()
                .column(kca::Column::AccessId)
                .column(kca::Column::Day)
                .column(kca::Column::Address)
                .filter(kca::Column::AccessId.is_in(ids.iter().copied()))
                .filter(kca::Column::Day.is_in(days))
                .into_tuple()
                .all(db)
                .await?
        };
        let mut kept: HashMap<(String, i64), Vec<String>> = HashMap::new();
        for (access_id, day, address) in kept_rows {
            kept.entry((access_id, day)).or_default().push(address);
        }
        let mut insert = Query::insert();
        insert.into_table(kca::Entity).columns([
            kca::Column::AccessId,
            kca::Column::Day,
            kca::Column::Address,
            kca::Column::Count,
            kca::Column::LastSeenAt,
        ]);
        let mut pg_rows: Vec<(&str, i64, String, i64, DateTime<Utc>)> = Vec::new();
        for ((access_id, day), seen) in chunk {
            let none = Vec::new();
            let kept = kept.get(&((*access_id).to_owned(), *day)).unwrap_or(&none);
            let mut places = MAX_ADDRESSES_A_DAY.saturating_sub(kept.iter().filter(|a| *a != OTHER_ADDRESSES).count());
            let mut rows: BTreeMap<String, (u64, DateTime<Utc>)> = BTreeMap::new();
            for one in seen {
                let address = match &one.address {
                    Some(address) if kept.contains(address) || rows.contains_key(address) => address.clone(),
                    Some(address) if places > 0 => {
                        places -= 1;
                        address.clone()
                    }
                    _ => OTHER_ADDRESSES.to_owned(),
                };
                let row = rows.entry(address).or_insert((0, one.last_seen));
                row.0 += one.count;
                row.1 = row.1.max(one.last_seen);
            }
            for (address, (count, last_seen)) in rows {
                if backend == sea_orm::DatabaseBackend::Postgres {
                    pg_rows.push((access_id, *day, address, i64::try_from(count).unwrap_or(i64::MAX), last_seen));
                    continue;
                }
                insert.values_panic([
                    (*access_id).into(),
                    (*day).into(),
                    address.into(),
                    i64::try_from(count).unwrap_or(i64::MAX).into(),
                    last_seen.into(),
                ]);
            }
        }
        if backend == sea_orm::DatabaseBackend::Postgres {
            let rows = PgRows::default()
                .column("access_id", "text", pg_rows.iter().map(|r| r.0.to_owned()).collect::<Vec<_>>())
                .column("day", "bigint", pg_rows.iter().map(|r| r.1).collect::<Vec<_>>())
                .column("address", "text", pg_rows.iter().map(|r| r.2.clone()).collect::<Vec<_>>())
                .column("count", "bigint", pg_rows.iter().map(|r| r.3).collect::<Vec<_>>())
                .column("last_seen_at", "timestamptz", pg_rows.iter().map(|r| r.4).collect::<Vec<_>>());
            let set = format!(
                "count = {}, last_seen_at = {}",
                added("key_client_addresses", "count"),
                newest_wins("key_client_addresses", "last_seen_at")
            );
            upsert_rows(db, "key_client_addresses", rows, "access_id, day, address", &set).await?;
            continue;
        }
        insert.on_conflict(
            OnConflict::columns([kca::Column::AccessId, kca::Column::Day, kca::Column::Address])
                .value(kca::Column::Count, Expr::cust(added("key_client_addresses", "count")))
                .value(kca::Column::LastSeenAt, Expr::cust(newest_wins("key_client_addresses", "last_seen_at")))
                .to_owned(),
        );
        db.execute(&insert).await?;
    }
    Ok(())
}

/// The addresses a key access's valid requests came from since `since` (whole days), busiest
/// first, with `other` last.
pub async fn client_addresses(
    store: &Store,
    access_id: &str,
    since: DateTime<Utc>,
) -> AppResult<Vec<(String, u64, DateTime<Utc>)>> {
    use crate::entity::key_client_address as kca;
    let rows = kca::Entity::find()
        .filter(kca::Column::AccessId.eq(access_id))
        .filter(kca::Column::Day.gte(Granularity::Day.bucket_of(since)))
        .all(store.db())
        .await?;
    let mut sums: HashMap<String, (u64, DateTime<Utc>)> = HashMap::new();
    for row in rows {
        let entry = sums.entry(row.address).or_insert((0, row.last_seen_at));
        entry.0 += u64::try_from(row.count).unwrap_or(0);
        entry.1 = entry.1.max(row.last_seen_at);
    }
    let mut list: Vec<(String, u64, DateTime<Utc>)> = sums.into_iter().map(|(a, (n, at))| (a, n, at)).collect();
    list.sort_by(|a, b| {
        (a.0 == OTHER_ADDRESSES).cmp(&(b.0 == OTHER_ADDRESSES)).then(b.1.cmp(&a.1)).then_with(|| a.0.cmp(&b.0))
    });
    Ok(list)
}

/// PostgreSQL: adds counted hours to their hours and to their days in one statement, the rows sent
/// once as one array per column (`PgRows`), each kind upserted in key order (two replicas flushing
/// at once take their row locks in the same order).
async fn add_hours_and_days_pg<C: ConnectionTrait>(db: &C, hours: &[CountedHour]) -> AppResult<()> {
    if hours.is_empty() {
        return Ok(());
    }
    let mut rows = PgRows::default()
        .column("access_id", "text", hours.iter().map(|h| h.access_id.clone()).collect::<Vec<_>>())
        .column("account_id", "text", hours.iter().map(|h| h.account_id.clone()).collect::<Vec<_>>())
        .column("bucket", "bigint", hours.iter().map(|h| h.hour).collect::<Vec<_>>());
    for (i, name) in NAMES.iter().enumerate() {
        let counts: Vec<i64> = hours.iter().map(|h| i64::try_from(h.counts[i]).unwrap_or(i64::MAX)).collect();
        rows = rows.column(name, "bigint", counts);
    }
    let counts = NAMES.join(", ");
    let sums = NAMES.iter().map(|name| format!("CAST(SUM({name}) AS BIGINT)")).collect::<Vec<_>>().join(", ");
    let set = NAMES.iter().map(|n| format!("{n} = {}", added("key_usage", n))).collect::<Vec<_>>().join(", ");
    let day = Granularity::Day.seconds();
    let (hour_kind, day_kind) = (Granularity::Hour as i16, Granularity::Day as i16);
    let sql = format!(
        "WITH r AS (SELECT * FROM {source}), \
         hours AS (INSERT INTO key_usage (access_id, account_id, granularity, bucket, {counts}) \
           SELECT access_id, account_id, {hour_kind}, bucket, {counts} FROM r ORDER BY access_id, bucket \
           ON CONFLICT (access_id, granularity, bucket) DO UPDATE SET {set}) \
         INSERT INTO key_usage (access_id, account_id, granularity, bucket, {counts}) \
           SELECT access_id, MIN(account_id), {day_kind}, bucket - bucket % {day}, {sums} FROM r \
           GROUP BY access_id, bucket - bucket % {day} ORDER BY access_id, bucket - bucket % {day} \
         ON CONFLICT (access_id, granularity, bucket) DO UPDATE SET {set}",
        source = rows.source()
    );
    db.execute_raw(sea_orm::Statement::from_sql_and_values(sea_orm::DatabaseBackend::Postgres, sql, rows.values))
        .await?;
    Ok(())
}

/// SQLite: one additive upsert of buckets (PostgreSQL: `add_hours_and_days_pg`).
async fn add_counts<'a, C: ConnectionTrait>(
    db: &C,
    rows: impl Iterator<Item = (&'a str, &'a str, Granularity, i64, Counts)>,
) -> AppResult<()> {
    let mut insert = Query::insert();
    insert.into_table(key_usage::Entity).columns(
        [
            key_usage::Column::AccessId,
            key_usage::Column::AccountId,
            key_usage::Column::Granularity,
            key_usage::Column::Bucket,
        ]
        .into_iter()
        .chain(COLUMNS),
    );
    let mut any = false;
    for (access_id, account_id, granularity, bucket, counts) in rows {
        let mut values: Vec<sea_orm::sea_query::SimpleExpr> =
            vec![access_id.into(), account_id.into(), (granularity as i16).into(), bucket.into()];
        values.extend(counts.iter().map(|c| i64::try_from(*c).unwrap_or(i64::MAX).into()));
        insert.values_panic(values);
        any = true;
    }
    if !any {
        return Ok(());
    }
    let mut conflict =
        OnConflict::columns([key_usage::Column::AccessId, key_usage::Column::Granularity, key_usage::Column::Bucket]);
    for (column, name) in COLUMNS.into_iter().zip(NAMES) {
        conflict.value(column, Expr::cust(added("key_usage", name)));
    }
    insert.on_conflict(conflict.to_owned());
    db.execute(&insert).await?;
    Ok(())
}

/// PostgreSQL rows sent as one array parameter per column and read back by `unnest`: a flush sends
/// one statement per table (rather than many multi-row `VALUES` statements of thousands of
/// parameters, each prepared anew), in binary, with no JSON to build here or to parse there.
#[derive(Default)]
struct PgRows {
    /// `name` and `name[]` type of each column.
    columns: Vec<(&'static str, &'static str)>,
    values: Vec<sea_orm::Value>,
    /// Rows (the length of every column).
    len: usize,
}

impl PgRows {
    fn column<T>(mut self, name: &'static str, ty: &'static str, values: Vec<T>) -> Self
    where
        Vec<T>: Into<sea_orm::Value>,
    {
        debug_assert!(self.columns.is_empty() || values.len() == self.len, "columns of one length");
        self.len = values.len();
        self.columns.push((name, ty));
        self.values.push(values.into());
        self
    }

    fn names(&self) -> String {
        self.columns.iter().map(|(name, _)| *name).collect::<Vec<_>>().join(", ")
    }

    /// `unnest($1::text[], …) AS r(name, …)`: the rows as a table `r`.
    fn source(&self) -> String {
        let arrays =
            self.columns.iter().enumerate().map(|(i, (_, ty))| format!("${}::{ty}[]", i + 1)).collect::<Vec<_>>();
        format!("unnest({}) AS r({})", arrays.join(", "), self.names())
    }
}

/// PostgreSQL: upserts every row in one statement.
async fn upsert_rows<C: ConnectionTrait>(
    db: &C,
    table: &str,
    rows: PgRows,
    conflict: &str,
    set: &str,
) -> AppResult<()> {
    if rows.len == 0 {
        return Ok(());
    }
    let names = rows.names();
    let sql = format!(
        "INSERT INTO {table} ({names}) SELECT {names} FROM {} ON CONFLICT ({conflict}) DO UPDATE SET {set}",
        rows.source()
    );
    db.execute_raw(sea_orm::Statement::from_sql_and_values(sea_orm::DatabaseBackend::Postgres, sql, rows.values))
        .await?;
    Ok(())
}

/// One point of a usage series.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsagePoint {
    pub at: DateTime<Utc>,
    pub counts: Counts,
}

/// Most points one series may have.
pub const MAX_POINTS: i64 = 1000;

fn counts_of(row: &key_usage::Model) -> Counts {
    stored_counts([
        row.valid,
        row.forbidden,
        row.ip_not_allowed,
        row.rate_limited,
        row.usage_exceeded,
        row.disabled,
        row.invalid_token,
    ])
}

fn add(into: &mut Counts, from: &Counts) {
    for (a, b) in into.iter_mut().zip(from) {
        *a += b;
    }
}

/// The buckets a series spans, checked: from the one holding `from` to the one holding `to`, at
/// most `MAX_POINTS` of one granularity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SeriesRange {
    first: i64,
    last: i64,
    granularity: Granularity,
}

impl SeriesRange {
    /// `BAD_USER_INPUT` on `to` when it ends before it starts or would have more than `MAX_POINTS`
    /// points.
    pub fn new(from: DateTime<Utc>, to: DateTime<Utc>, granularity: Granularity) -> AppResult<Self> {
        if to < from {
            return Err(AppError::bad_input("to", "to is before from"));
        }
        let step = granularity.seconds();
        let (first, last) = (granularity.bucket_of(from), granularity.bucket_of(to));
        if (last - first) / step + 1 > MAX_POINTS {
            return Err(AppError::bad_input("to", format!("at most {MAX_POINTS} points per call: narrow the range")));
        }
        Ok(Self { first, last, granularity })
    }

    /// The first bucket and the one after the last: the range of `bucket` read.
    fn bounds(&self) -> (i64, i64) {
        (self.first, self.last + self.granularity.seconds())
    }

    /// A point for every bucket, zero where `sums` has none.
    fn dense(&self, sums: &BTreeMap<i64, Counts>) -> Vec<UsagePoint> {
        let step = self.granularity.seconds();
        (0..=(self.last - self.first) / step)
            .map(|i| {
                let bucket = self.first + i * step;
                UsagePoint {
                    at: DateTime::from_timestamp(bucket, 0).unwrap_or_default(),
                    counts: sums.get(&bucket).copied().unwrap_or_default(),
                }
            })
            .collect()
    }
}

/// One key access's usage over `range` as a dense series: a point per bucket, zero where nothing
/// was counted. One range read of the primary key: the rows of the granularity asked for (a day's
/// row holds its hours, added as they were flushed).
pub async fn series(store: &Store, access_id: &str, range: SeriesRange) -> AppResult<Vec<UsagePoint>> {
    let (from, until) = range.bounds();
    let folded = series_rows(store.backend(), access_id, range.granularity, from, until);
    type Row = (i64, i64, i64, i64, i64, i64, i64, i64);
    let rows: Vec<Row> = folded::fetch_from(store, &folded).await?;
    let sums =
        rows.into_iter().map(|(bucket, a, b, d, e, f, g, h)| (bucket, stored_counts([a, b, d, e, f, g, h]))).collect();
    Ok(range.dense(&sums))
}

/// `series` of the key with this value as `account_id` knows it (its own, or one it added: as
/// `appKey(key)` finds it) and its access id, read in one statement with the key. `None` when the
/// account does not know the key. On PostgreSQL the answer is kept (`UsageAnswers`) and given again
/// while it is exact.
pub async fn series_of_key(
    store: &Store,
    account_id: &str,
    key: &str,
    range: SeriesRange,
) -> AppResult<Option<(String, Arc<[UsagePoint]>)>> {
    let keep = store.backend() == sea_orm::DatabaseBackend::Postgres;
    let answers = store.part::<UsageAnswers>();
    let asked = (Box::<str>::from(account_id), Box::<str>::from(key), range);
    if keep {
        if let Some(answer) = answers.current(store, &asked) {
            return Ok(Some((answer.access_id.clone(), answer.points.clone())));
        }
    }
    // Read before the statement: a change committed meanwhile leaves the answer stale at once.
    let (usage_since, credentials_since) = (store.part::<UsageVersion>().current(), store.versions().snapshot());
    let (from, until) = range.bounds();
    let folded = key_series_rows(store.backend(), account_id, key, range.granularity, from, until);
    type Row = (String, String, Option<i64>, i64, i64, i64, i64, i64, i64, i64);
    let rows: Vec<Row> = folded::fetch_from(store, &folded).await?;
    let Some((access_id, key_id)) = rows.first().map(|row| (row.0.clone(), row.1.clone())) else {
        return Ok(None);
    };
    let sums: BTreeMap<i64, Counts> = rows
        .into_iter()
        .filter_map(|(_, _, bucket, a, b, d, e, f, g, h)| Some((bucket?, stored_counts([a, b, d, e, f, g, h]))))
        .collect();
    let points: Arc<[UsagePoint]> = range.dense(&sums).into();
    if keep {
        let answer = Answer {
            usage_since,
            credentials_since,
            read_at: store.clock().instant(),
            key_id,
            access_id: access_id.clone(),
            points: points.clone(),
        };
        answers.keep(asked, answer);
    }
    Ok(Some((access_id, points)))
}

/// How long a kept usage answer may be given at most, should a change's notification be lost
/// (the change feed's heartbeat already treats a silent connection as a change).
pub const ANSWER_MAX_AGE: std::time::Duration = std::time::Duration::from_secs(1);
/// How many points all kept answers hold at most (a point is ~72 bytes: ~72 MB), and how many
/// answers are expected (a 400-day chart each: 2 500).
const MAX_KEPT_POINTS: u64 = 1_000_000;
const EXPECTED_ANSWERS: usize = 2_500;

/// What `series_of_key` answered, by (account, key value, range).
type Asked = (Box<str>, Box<str>, SeriesRange);

struct Answer {
    /// `UsageVersion` and the credential sequence read before the statement.
    usage_since: u64,
    credentials_since: u64,
    read_at: std::time::Instant,
    key_id: String,
    access_id: String,
    points: Arc<[UsagePoint]>,
}

/// `series_of_key`'s answers on PostgreSQL, where each is a round trip: the usage chart's query
/// asked again (a page reloaded, several people looking at one key) is answered from memory while
/// nothing it was read from can have changed. An answer goes when usage counts change anywhere (a
/// flush or a prune on any replica: `UsageVersion`), when the account or the key changes (as cached
/// credentials go: a key added, removed or deleted), and after `ANSWER_MAX_AGE` in any case. Usage
/// counts reach the database once a flush interval anyway; this adds no staleness beyond the time
/// a notification takes to reach another replica. SQLite reads in-process and keeps nothing.
pub struct UsageAnswers {
    answers: quick_cache::sync::Cache<Asked, Arc<Answer>, ByPoints>,
    hits: AtomicU64,
    misses: AtomicU64,
}

/// A kept answer weighs its points (at least one), so memory stays bounded whatever the ranges.
#[derive(Clone)]
struct ByPoints;

impl quick_cache::Weighter<Asked, Arc<Answer>> for ByPoints {
    fn weight(&self, _: &Asked, answer: &Arc<Answer>) -> u64 {
        u64::try_from(answer.points.len()).unwrap_or(u64::MAX).max(1)
    }
}

impl Default for UsageAnswers {
    fn default() -> Self {
        Self {
            answers: quick_cache::sync::Cache::with_weighter(EXPECTED_ANSWERS, MAX_KEPT_POINTS, ByPoints),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }
}

impl UsageAnswers {
    fn current(&self, store: &Store, asked: &Asked) -> Option<Arc<Answer>> {
        let found = self.answers.get(asked).filter(|answer| {
            store.part::<UsageVersion>().current() == answer.usage_since
                && store.versions().unchanged_since(answer.credentials_since, &asked.0, Some(&answer.key_id))
                && store.clock().instant().saturating_duration_since(answer.read_at) < ANSWER_MAX_AGE
        });
        let counter = if found.is_some() { &self.hits } else { &self.misses };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    fn keep(&self, asked: Asked, answer: Answer) {
        self.answers.insert(asked, Arc::new(answer));
    }

    /// Answers given from memory and read from the database, since start.
    pub fn counts(&self) -> (u64, u64) {
        (self.hits.load(Ordering::Relaxed), self.misses.load(Ordering::Relaxed))
    }
}

/// A bucket's counts as stored (never negative; a negative one would read as zero).
fn stored_counts(columns: [i64; 7]) -> Counts {
    columns.map(|v| u64::try_from(v).unwrap_or(0))
}

/// The statement of `series`: one key access's rows of `granularity` in `[from, until)`, a range of
/// the primary key.
fn series_rows(
    backend: sea_orm::DatabaseBackend,
    access_id: &str,
    granularity: Granularity,
    from: i64,
    until: i64,
) -> folded::Folded {
    let mut select = key_usage::Entity::find()
        .filter(key_usage::Column::AccessId.eq(access_id))
        .filter(key_usage::Column::Granularity.eq(granularity as i16))
        .filter(key_usage::Column::Bucket.gte(from))
        .filter(key_usage::Column::Bucket.lt(until))
        .select_only()
        .column_as(key_usage::Column::Bucket, "at");
    for (column, name) in COLUMNS.into_iter().zip(NAMES) {
        select = select.column_as(column, name);
    }
    let statement = sea_orm::QueryTrait::build(&select, backend);
    let columns = std::iter::once("at").chain(NAMES).map(folded::Column::plain).collect();
    folded::fold_keeping_rows(backend, statement, columns, None)
}

/// The statement of `series_of_key`: the key's access row in the account and the key's id (found
/// through the key's value, as `appKey(key)` finds it), left-joined to its usage rows of `granularity` in
/// `[from, until)` (a range of `key_usage`'s primary key): one row of nulls when there are none.
fn key_series_rows(
    backend: sea_orm::DatabaseBackend,
    account_id: &str,
    key: &str,
    granularity: Granularity,
    from: i64,
    until: i64,
) -> folded::Folded {
    use crate::entity::{app_key, key_access};
    use sea_orm::sea_query::{Condition, ExprTrait};
    let usage = |column: key_usage::Column| Expr::col((key_usage::Entity, column));
    let in_range = Condition::all()
        .add(usage(key_usage::Column::AccessId).equals((key_access::Entity, key_access::Column::Id)))
        .add(usage(key_usage::Column::Granularity).eq(granularity as i16))
        .add(usage(key_usage::Column::Bucket).gte(from))
        .add(usage(key_usage::Column::Bucket).lt(until));
    let mut select = Query::select();
    select
        .expr_as(Expr::col((key_access::Entity, key_access::Column::Id)), "access")
        .expr_as(Expr::col((app_key::Entity, app_key::Column::Id)), "key_id")
        .expr_as(usage(key_usage::Column::Bucket), "at");
    for (column, name) in COLUMNS.into_iter().zip(NAMES) {
        select.expr_as(usage(column).if_null(0), name);
    }
    select
        .from(key_access::Entity)
        .inner_join(
            app_key::Entity,
            Expr::col((app_key::Entity, app_key::Column::Id))
                .equals((key_access::Entity, key_access::Column::AppKeyId)),
        )
        .left_join(key_usage::Entity, in_range)
        .and_where(Expr::col((key_access::Entity, key_access::Column::AccountId)).eq(account_id))
        .and_where(Expr::col((app_key::Entity, app_key::Column::Key)).eq(key));
    let columns = ["access", "key_id", "at"].into_iter().chain(NAMES).map(folded::Column::plain).collect();
    folded::fold_keeping_rows(backend, backend.build(&select), columns, None)
}

/// The statement of a 400-day daily series (as `series` reads it where rows are read as they are),
/// for the plan tests.
pub fn series_statement(
    backend: sea_orm::DatabaseBackend,
    access_id: &str,
    until: DateTime<Utc>,
) -> sea_orm::Statement {
    let to = Granularity::Day.bucket_of(until);
    series_rows(backend, access_id, Granularity::Day, to - 400 * 86_400, to).rows().clone()
}

/// The statement of a 400-day daily series read with its key (as `series_of_key` reads it where rows
/// are read as they are), for the plan tests.
pub fn key_series_statement(
    backend: sea_orm::DatabaseBackend,
    account_id: &str,
    key: &str,
    until: DateTime<Utc>,
) -> sea_orm::Statement {
    let to = Granularity::Day.bucket_of(until);
    key_series_rows(backend, account_id, key, Granularity::Day, to - 400 * 86_400, to).rows().clone()
}

/// When each resource was last needed by the key access's requests.
/// Key accesses (rows of `key_access`, as the listing's `key_access`) that hold, through their roles
/// there, a resource none of their requests needed since `since` (never needed included), and were
/// in the account before then: the `unusedPermissionDays` filter, the SQL twin of `permissionUsage`.
pub fn holds_unused_resource_condition(since: DateTime<Utc>) -> sea_orm::Condition {
    use crate::entity::{key_access, key_access_role, resource, role};
    use sea_orm::sea_query::{ExprTrait, JoinType};
    let used_since = Query::select()
        .expr(Expr::val(1))
        .from_as(key_permission_use::Entity, "used")
        .and_where(
            Expr::col(("used", key_permission_use::Column::AccessId))
                .equals(("held_by", key_access_role::Column::KeyAccessId)),
        )
        .and_where(Expr::col(("used", key_permission_use::Column::Resource)).equals(("res", resource::Column::Id)))
        .and_where(Expr::col(("used", key_permission_use::Column::LastUsedAt)).gte(since))
        .to_owned();
    let unused = Query::select()
        .expr(Expr::val(1))
        .from_as(key_access_role::Entity, "held_by")
        .join_as(
            JoinType::InnerJoin,
            role::Entity,
            "r",
            Expr::col(("r", role::Column::Id)).equals(("held_by", key_access_role::Column::RoleId)),
        )
        .join_as(
            JoinType::InnerJoin,
            resource::Entity,
            "res",
            crate::service::identity::roles::holds_condition("r", "res"),
        )
        .and_where(
            Expr::col(("held_by", key_access_role::Column::KeyAccessId))
                .equals((key_access::Entity, key_access::Column::Id)),
        )
        .and_where(Expr::exists(used_since).not())
        .to_owned();
    sea_orm::Condition::all()
        .add(Expr::col((key_access::Entity, key_access::Column::AddedAt)).lt(since))
        .add(Expr::exists(unused))
}

pub async fn permission_uses(store: &Store, access_id: &str) -> AppResult<HashMap<String, DateTime<Utc>>> {
    Ok(key_permission_use::Entity::find()
        .filter(key_permission_use::Column::AccessId.eq(access_id))
        .all(store.db())
        .await?
        .into_iter()
        .map(|row| (row.resource, row.last_used_at))
        .collect())
}

/// An account's usage over a range: totals, a dense series, and the key values of its busiest keys
/// with their totals, busiest first (at most `first`).
pub struct AccountUsage {
    pub totals: Counts,
    pub series: Vec<UsagePoint>,
    pub top_keys: Vec<(String, Counts)>,
}

pub async fn account_usage(
    store: &Store,
    account_id: &str,
    range: SeriesRange,
    first: usize,
) -> AppResult<AccountUsage> {
    let (totals, rows, by_access) = account_rows(store, account_id, range.granularity, range.first, range.last).await?;
    let mut sums: BTreeMap<i64, Counts> = BTreeMap::new();
    for row in &rows {
        add(sums.entry(row.bucket).or_default(), &counts_of(row));
    }
    let series = range.dense(&sums);
    let busiest: Vec<(String, Counts)> = by_access.into_iter().take(first).collect();
    let ids: Vec<&str> = busiest.iter().map(|(id, _)| id.as_str()).collect();
    let values: HashMap<String, String> = if ids.is_empty() {
        HashMap::new()
    } else {
        let pairs: Vec<(String, String)> = crate::entity::key_access::Entity::find()
            .select_only()
            .column(crate::entity::key_access::Column::Id)
            .column_as(Expr::col((crate::entity::app_key::Entity, crate::entity::app_key::Column::Key)), "key")
            .inner_join(crate::entity::app_key::Entity)
            .filter(crate::entity::key_access::Column::Id.is_in(ids))
            .into_tuple()
            .all(store.db())
            .await?;
        pairs.into_iter().collect()
    };
    let top_keys = busiest.into_iter().filter_map(|(id, counts)| Some((values.get(&id)?.clone(), counts))).collect();
    Ok(AccountUsage { totals, series, top_keys })
}

/// An account's rows of `granularity` from bucket `first` to bucket `last`, their totals, and the
/// totals per access row, busiest first.
async fn account_rows(
    store: &Store,
    account_id: &str,
    granularity: Granularity,
    first: i64,
    last: i64,
) -> AppResult<(Counts, Vec<key_usage::Model>, Vec<(String, Counts)>)> {
    let rows = key_usage::Entity::find()
        .filter(key_usage::Column::AccountId.eq(account_id))
        .filter(key_usage::Column::Granularity.eq(granularity as i16))
        .filter(key_usage::Column::Bucket.gte(first))
        .filter(key_usage::Column::Bucket.lte(last))
        .all(store.db())
        .await?;
    let mut total = Counts::default();
    let mut by_access: HashMap<String, Counts> = HashMap::new();
    for row in &rows {
        let counts = counts_of(row);
        add(&mut total, &counts);
        add(by_access.entry(row.access_id.clone()).or_default(), &counts);
    }
    let mut keys: Vec<(String, Counts)> = by_access.into_iter().collect();
    keys.sort_by(|a, b| b.1.iter().sum::<u64>().cmp(&a.1.iter().sum::<u64>()).then_with(|| a.0.cmp(&b.0)));
    Ok((total, rows, keys))
}

/// Lock id of the usage round (retention), one replica at a time.
const USAGE_LOCK_ID: i64 = 0x0061_7070_6b65_7905;
/// Hourly points are kept this long, then only their day.
pub const HOURLY_RETENTION_DAYS: i64 = 35;

/// The sweeper's usage round: hours of days older than 35 days are deleted (their day already holds
/// them: each flush adds to both), as are client addresses of those days; days older than
/// `retention_days` are deleted. Hours go one hour at a time (one statement each, at most a row per
/// key access), so no statement holds the database for long. Returns the rows it deleted.
pub async fn prune(store: &Store, now: DateTime<Utc>, retention_days: u32) -> AppResult<u64> {
    let Some(lease) = store.try_lease(USAGE_LOCK_ID).await? else {
        return Ok(0);
    };
    let backend = store.backend();
    let db = store.db();
    // Whole days only: the day holding the cut-off keeps its hours.
    let cutoff = Granularity::Day.bucket_of(now - chrono::Duration::days(HOURLY_RETENTION_DAYS));
    let oldest_day = Granularity::Day.bucket_of(now - chrono::Duration::days(i64::from(retention_days.max(1))));
    let [oldest_hour, addresses, days] = prune_statements(backend, cutoff, oldest_day);
    let mut done = 0;
    let pruned: AppResult<()> = async {
        loop {
            let row = db.query_one_raw(oldest_hour.clone()).await?;
            let Some(hour) = row.map(|row| row.try_get_by_index::<Option<i64>>(0)).transpose()?.flatten() else {
                break;
            };
            done += db.execute_raw(hour_deletion(backend, hour)).await?.rows_affected();
        }
        done += db.execute_raw(addresses).await?.rows_affected();
        done += db.execute_raw(days).await?.rows_affected();
        Ok(())
    }
    .await;
    let released = lease.release().await;
    if done > 0 {
        // Kept usage answers go, also when a later statement failed (each deletion commits on its
        // own): this replica's at once, others' when they hear of it.
        let version = store.part::<UsageVersion>();
        version.changed();
        store.notify(USAGE_CHANNEL, version.announcement()).await?;
    }
    pruned?;
    released?;
    Ok(done)
}

/// The statements of `prune`, each through an index: the oldest hour before `cutoff`, the deletion
/// of client addresses before `cutoff`, and of days before `oldest_day` (an hour's deletion:
/// `hour_deletion`).
pub fn prune_statements(backend: sea_orm::DatabaseBackend, cutoff: i64, oldest_day: i64) -> [sea_orm::Statement; 3] {
    use crate::entity::key_client_address as kca;
    use sea_orm::QueryTrait;
    [
        key_usage::Entity::find()
            .select_only()
            .column_as(key_usage::Column::Bucket.min(), "oldest")
            .filter(key_usage::Column::Granularity.eq(Granularity::Hour as i16))
            .filter(key_usage::Column::Bucket.lt(cutoff))
            .build(backend),
        kca::Entity::delete_many().filter(kca::Column::Day.lt(cutoff)).build(backend),
        key_usage::Entity::delete_many()
            .filter(key_usage::Column::Granularity.eq(Granularity::Day as i16))
            .filter(key_usage::Column::Bucket.lt(oldest_day))
            .build(backend),
    ]
}

/// `prune`'s deletion of one hour's rows (every key access's), through an index.
pub fn hour_deletion(backend: sea_orm::DatabaseBackend, hour: i64) -> sea_orm::Statement {
    use sea_orm::QueryTrait;
    key_usage::Entity::delete_many()
        .filter(key_usage::Column::Granularity.eq(Granularity::Hour as i16))
        .filter(key_usage::Column::Bucket.eq(hour))
        .build(backend)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_sent_as_one_typed_array_per_column() {
        let rows = PgRows::default().column("access_id", "text", vec!["a".to_owned(), "b".to_owned()]).column(
            "day",
            "bigint",
            vec![86_400_i64, 172_800],
        );
        assert_eq!(rows.source(), "unnest($1::text[], $2::bigint[]) AS r(access_id, day)");
        assert_eq!(rows.names(), "access_id, day");
        assert_eq!(rows.len, 2);
        assert_eq!(rows.values.len(), 2);
        assert!(matches!(&rows.values[1], sea_orm::Value::Array(_, Some(values)) if values.len() == 2));
        assert_eq!(PgRows::default().column("id", "text", Vec::<String>::new()).len, 0);
    }

    #[test]
    fn kept_answers_stay_within_their_points() {
        let answers = UsageAnswers::default();
        let range = SeriesRange::new(
            DateTime::from_timestamp(0, 0).unwrap_or_default(),
            DateTime::from_timestamp(999 * 3600, 0).unwrap_or_default(),
            Granularity::Hour,
        )
        .expect("1 000 points");
        let points: Arc<[UsagePoint]> = range.dense(&BTreeMap::new()).into();
        assert_eq!(points.len(), 1000);
        for i in 0..3_000 {
            let answer = Answer {
                usage_since: 0,
                credentials_since: 0,
                read_at: std::time::Instant::now(),
                key_id: format!("k{i}"),
                access_id: format!("a{i}"),
                points: points.clone(),
            };
            answers.keep(("account".into(), format!("key-{i}").into(), range), answer);
        }
        assert!(answers.answers.weight() <= MAX_KEPT_POINTS, "{}", answers.answers.weight());
        assert!(answers.answers.len() <= 1_000, "{} answers of 1 000 points", answers.answers.len());
        assert!(answers.answers.len() >= 500, "the cache still keeps answers: {}", answers.answers.len());
    }

    #[test]
    fn a_range_is_refused_past_its_points() {
        let from = DateTime::from_timestamp(0, 0).unwrap_or_default();
        let to = DateTime::from_timestamp(1000 * 3600, 0).unwrap_or_default();
        assert!(SeriesRange::new(from, to, Granularity::Hour).is_err(), "1 001 points");
        assert!(SeriesRange::new(to, from, Granularity::Hour).is_err(), "backwards");
        assert!(SeriesRange::new(from, to, Granularity::Day).is_ok());
    }
}
