//! The CSV export of the "Application Keys" listing (README: "Export"), streamed page by page, and the
//! single-use download tickets that let a browser fetch it with a plain link.
use bytes::Bytes;
use futures::Stream;
use sea_orm::sea_query::{Expr, ExprTrait, Order, Query};

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseBackend, DatabaseConnection, EntityTrait, QueryFilter, Set,
    Statement,
};
use serde::Deserialize;
use serde_json::json;
use std::borrow::Cow;
use std::collections::{BTreeSet, HashMap};

use super::folded::{self, opt_instant, Flag, Instant};
use super::keys;
use super::roles;
use super::{new_id, Ctx, Store};
use crate::domain::DownloadToken;
use crate::entity::{account, app_key, download_ticket, key_access, key_access_role, role};
use crate::error::{AppError, AppResult};

pub const HEADER: [&str; 11] = [
    "key",
    "account",
    "type",
    "status",
    "roles",
    "created_at",
    "label",
    "token_created_at",
    "renewal_pending",
    "last_used_at",
    "expires_at",
];
/// Keys per chunk (each with its roles) where the export is read in chunks (everywhere but
/// PostgreSQL's CSV, which is copied in one statement). On PostgreSQL small enough that the planner
/// finds each chunk's keys by index (at 2 000 it hashed the whole keys table for every chunk
/// instead); SQLite, which has no such choice to make, goes faster with fewer, larger chunks.
fn keys_per_chunk(backend: DatabaseBackend) -> u64 {
    match backend {
        DatabaseBackend::Postgres => 500,
        _ => 2_000,
    }
}
pub const TICKET_TTL_SECS: i64 = 60;

/// Spreadsheet formula injection guard: a cell that a spreadsheet would evaluate gets a leading `'`.
/// `= + - @` as the product requires; tab and carriage return too, as OWASP advises.
pub fn neutralise(cell: &str) -> Cow<'_, str> {
    if cell.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        Cow::Owned(format!("'{cell}"))
    } else {
        Cow::Borrowed(cell)
    }
}

/// Which keys a pass over the export reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Keys {
    All,
    /// The account's own keys (the workbook's `Generated` sheet).
    Internal,
    /// Other accounts' keys (the `External` sheet).
    External,
}

/// One key of the export, read in bulk by `read_chunk`; its roles' and its owner's names are filled
/// in from `Names` (ids are cheaper to read than joined rows).
#[derive(Debug)]
struct ExportRow {
    access_id: String,
    key: String,
    owner_id: String,
    owner: String,
    external: bool,
    removed: bool,
    active: bool,
    created_at: DateTime<Utc>,
    role_ids: Vec<String>,
    /// The roles' names, in display order (filled in by `Names::resolve`).
    roles: Vec<String>,
    label: String,
    token_created_at: DateTime<Utc>,
    renewal_started_at: Option<DateTime<Utc>>,
    old_token_expires_at: Option<DateTime<Utc>>,
    last_used_at: Option<DateTime<Utc>>,
    expires_at: Option<DateTime<Utc>>,
}

/// A folded chunk's row: `COLUMNS`, in order.
#[derive(Deserialize)]
struct FoldedRow {
    access_id: String,
    key: String,
    owner_id: String,
    external: Flag,
    removed: Flag,
    active: Flag,
    created_at: Instant,
    role_ids: Vec<String>,
    label: String,
    token_created_at: Instant,
    renewal_started_at: Option<Instant>,
    old_token_expires_at: Option<Instant>,
    last_used_at: Option<Instant>,
    expires_at: Option<Instant>,
}

impl From<FoldedRow> for ExportRow {
    fn from(row: FoldedRow) -> Self {
        Self {
            access_id: row.access_id,
            key: row.key,
            owner_id: row.owner_id,
            owner: String::new(),
            external: row.external.0,
            removed: row.removed.0,
            active: row.active.0,
            created_at: row.created_at.0,
            role_ids: row.role_ids,
            roles: Vec::new(),
            label: row.label,
            token_created_at: row.token_created_at.0,
            renewal_started_at: opt_instant(row.renewal_started_at),
            old_token_expires_at: opt_instant(row.old_token_expires_at),
            last_used_at: opt_instant(row.last_used_at),
            expires_at: opt_instant(row.expires_at),
        }
    }
}

/// The columns of a chunk, in the order the database folds them (see `chunk_statement`).
const COLUMNS: [&str; 14] = [
    "access_id",
    "key",
    "owner_id",
    "external",
    "removed",
    "active",
    "created_at",
    "role_ids",
    "label",
    "token_created_at",
    "renewal_started_at",
    "old_token_expires_at",
    "last_used_at",
    "expires_at",
];

/// How a pass reads its keys: chunk by chunk, each folded into JSON text (`read_chunk`), or on
/// PostgreSQL all at once through `COPY … TO STDOUT` as CSV (`copy_rows`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    Folded,
    Copied,
}

/// A key's role ids here, read through the link table's key (per key: a join would repeat the key's
/// columns for each role, and PostgreSQL would hash the whole link table for it): a JSON array to
/// fold, or ids joined by commas for COPY (ids are UUIDs: no comma in one).
fn role_ids(backend: DatabaseBackend, shape: Shape) -> &'static str {
    match (backend, shape) {
        (DatabaseBackend::Postgres, Shape::Copied) => {
            r#"(SELECT string_agg(l."role_id", ',') FROM "key_access_roles" l WHERE l."key_access_id" = "w"."id")"#
        }
        (DatabaseBackend::Postgres, Shape::Folded) => {
            r#"(SELECT COALESCE(json_agg(l."role_id"), '[]'::json) FROM "key_access_roles" l WHERE l."key_access_id" = "w"."id")"#
        }
        _ => r#"(SELECT json_group_array(l."role_id") FROM "key_access_roles" l WHERE l."key_access_id" = "w"."id")"#,
    }
}

/// The columns of `COLUMNS` that hold instants (COPY writes them as RFC 3339 in UTC).
const INSTANTS: [&str; 6] =
    ["created_at", "token_created_at", "renewal_started_at", "old_token_expires_at", "last_used_at", "expires_at"];

/// Where each of `COLUMNS` comes from, as (table, column): `w` is the chunk's access rows; an empty
/// table is the key's role ids (`role_ids`).
const SOURCES: [(&str, &str); 14] = [
    ("w", "id"),
    ("app_keys", "key"),
    ("app_keys", "account_id"),
    ("w", "external"),
    ("w", "removed"),
    ("app_keys", "active"),
    ("app_keys", "created_at"),
    ("", "role_ids"),
    ("app_keys", "label"),
    ("app_keys", "token_created_at"),
    ("app_keys", "renewal_started_at"),
    ("app_keys", "previous_token_expires_at"),
    ("w", "last_used_at"),
    ("app_keys", "expires_at"),
];

/// The keys holding roles, newest first (keyset on the access id, after `after`; at most `limit`),
/// one row per key with `COLUMNS` as aliases, its role ids as `shape` wants them.
fn keys_select(
    backend: DatabaseBackend,
    account_id: &str,
    which: Keys,
    after: Option<&str>,
    limit: Option<u64>,
    shape: Shape,
) -> sea_orm::sea_query::SelectStatement {
    let access = |column: key_access::Column| Expr::col((key_access::Entity, column));
    let mut window = Query::select();
    window
        .columns([
            (key_access::Entity, key_access::Column::Id),
            (key_access::Entity, key_access::Column::AppKeyId),
            (key_access::Entity, key_access::Column::External),
            (key_access::Entity, key_access::Column::Removed),
            (key_access::Entity, key_access::Column::LastUsedAt),
        ])
        .from(key_access::Entity)
        .and_where(access(key_access::Column::AccountId).eq(account_id));
    let link = |column: key_access_role::Column| Expr::col((key_access_role::Entity, column));
    let mut holds_roles = Query::select();
    holds_roles
        .expr(Expr::val(1))
        .from(key_access_role::Entity)
        .and_where(link(key_access_role::Column::KeyAccessId).equals((key_access::Entity, key_access::Column::Id)));
    match which {
        Keys::All => {}
        Keys::Internal => _ = window.and_where(access(key_access::Column::External).eq(false)),
        Keys::External => _ = window.and_where(access(key_access::Column::External).eq(true)),
    }
    if let Some(after) = after {
        window.and_where(access(key_access::Column::Id).lt(after));
        // Implied by the line above, but said: PostgreSQL may check this by merging the two
        // indexes, and without it would walk the link table's index from its end on every chunk
        // (each chunk slower than the last).
        holds_roles.and_where(link(key_access_role::Column::KeyAccessId).lt(after));
    }
    window.and_where(Expr::exists(holds_roles));
    if let Some(limit) = limit {
        window.order_by((key_access::Entity, key_access::Column::Id), Order::Desc).limit(limit);
    }
    // The window (the chunk's access rows themselves) drives the query; each key and its role links
    // are then found by id. (Joining the access rows again by id let PostgreSQL's planner hash a
    // whole table per chunk.)
    let col = |table: &'static str, column: &'static str| Expr::col((table, column));
    let mut keys = Query::select();
    keys.from_subquery(window.to_owned(), "w")
        .inner_join(app_key::Entity, col("app_keys", "id").equals(("w", "app_key_id")));
    for (alias, (table, column)) in COLUMNS.into_iter().zip(SOURCES) {
        if table.is_empty() {
            keys.expr_as(Expr::cust(role_ids(backend, shape)), alias);
        } else {
            keys.expr_as(col(table, column), alias);
        }
    }
    keys
}

/// One chunk of the export as one statement returning one row: the next `chunk` keys, each with its
/// role ids, folded into JSON text, plus the last key's access id.
fn chunk_statement(
    backend: DatabaseBackend,
    account_id: &str,
    which: Keys,
    after: Option<&str>,
    chunk: u64,
) -> Statement {
    let keys = keys_select(backend, account_id, which, after, Some(chunk), Shape::Folded);
    let columns: Vec<folded::Column> = COLUMNS
        .into_iter()
        .zip(SOURCES)
        .map(
            |(alias, (table, _))| {
                if table.is_empty() {
                    folded::Column::json(alias)
                } else {
                    folded::Column::plain(alias)
                }
            },
        )
        .collect();
    folded::fold_with(backend, backend.build(&keys), &columns, None, &[r#"MIN("access_id")"#])
}

/// PostgreSQL: every key of a pass as one `COPY (…) TO STDOUT` in CSV, newest first, instants as
/// RFC 3339 in UTC. PostgreSQL writes CSV far faster than it builds JSON, and streams the whole
/// result from one snapshot. COPY takes no parameters: sea-query writes the one value (the account
/// id) into the SQL with its quoting.
fn copy_statement(account_id: &str, which: Keys) -> String {
    let keys = keys_select(DatabaseBackend::Postgres, account_id, which, None, None, Shape::Copied)
        .to_string(sea_orm::sea_query::PostgresQueryBuilder);
    let cells: Vec<String> = COLUMNS
        .iter()
        .map(|column| {
            if INSTANTS.contains(column) {
                format!(r#"to_char("{column}" AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')"#)
            } else {
                format!(r#""{column}""#)
            }
        })
        .collect();
    format!(
        r#"COPY (SELECT {} FROM ({keys}) AS "k" ORDER BY "access_id" DESC) TO STDOUT WITH (FORMAT csv)"#,
        cells.join(", ")
    )
}

/// What the reader hands the encoder: a chunk folded into JSON text, or lines of PostgreSQL's COPY.
enum Batch {
    Folded(String),
    Copied(Vec<u8>),
    /// PostgreSQL: every role and owner name the copy can refer to, read in its snapshot before it.
    Names(Names),
}

/// Runs `statement` (a `COPY … TO STDOUT`) and hands its lines on `per_batch` at a time (PostgreSQL
/// sends one message per line). If the client goes away, or the copy fails, before the last line,
/// the connection is closed rather than returned to the pool with the rest of the copy unread (and
/// its transaction open).
async fn copy_rows(
    db: &DatabaseConnection,
    account_id: &str,
    statement: &str,
    per_batch: usize,
    tx: &tokio::sync::mpsc::Sender<AppResult<Batch>>,
) -> AppResult<()> {
    use futures::StreamExt;
    use sea_orm::sqlx::Acquire;
    let fail = |e: sea_orm::sqlx::Error| AppError::Internal(anyhow::Error::new(e).context("copying the export"));
    let mut pooled = db.get_postgres_connection_pool().acquire().await.map_err(fail)?;
    let copied = async {
        let connection = pooled.acquire().await.map_err(fail)?;
        // The names first, in the copy's own snapshot: every role and owner a copied line names is
        // then known, and the stream never needs a second connection while this one copies (with the
        // pool exhausted by exports, each would wait on the others).
        sea_orm::sqlx::query("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .execute(&mut *connection)
            .await
            .map_err(fail)?;
        // The copy's estimated cost is past `jit_above_cost` for any sizeable account, and compiling
        // it took 730 ms of an 840 ms copy of 100 000 keys: for this one transaction, no JIT.
        sea_orm::sqlx::query("SET LOCAL jit = off").execute(&mut *connection).await.map_err(fail)?;
        let mut names = Names::default();
        let roles: Vec<(String, String, bool)> =
            sea_orm::sqlx::query_as(r#"SELECT "id", "name", "predefined" FROM "roles" WHERE "account_id" = $1"#)
                .bind(account_id)
                .fetch_all(&mut *connection)
                .await
                .map_err(fail)?;
        names.roles.extend(roles.into_iter().map(|(id, name, predefined)| (id, (name, predefined))));
        let owners: Vec<(String, String)> = sea_orm::sqlx::query_as(
            r#"SELECT a."id", a."name" FROM "accounts" a WHERE a."id" = $1 OR a."id" IN (SELECT k."account_id" FROM "key_access" w JOIN "app_keys" k ON k."id" = w."app_key_id" WHERE w."account_id" = $1 AND w."external")"#,
        )
        .bind(account_id)
        .fetch_all(&mut *connection)
        .await
        .map_err(fail)?;
        names.owners.extend(owners);
        if tx.send(Ok(Batch::Names(names))).await.is_err() {
            return Ok(false);
        }
        let mut lines = connection.copy_out_raw(statement).await.map_err(fail)?;
        let (mut batch, mut count) = (Vec::new(), 0);
        while let Some(line) = lines.next().await {
            batch.extend_from_slice(&line.map_err(fail)?);
            count += 1;
            if count == per_batch {
                if tx.send(Ok(Batch::Copied(std::mem::take(&mut batch)))).await.is_err() {
                    return Ok(false); // the client went away
                }
                count = 0;
            }
        }
        drop(lines);
        sea_orm::sqlx::query("COMMIT").execute(&mut *connection).await.map_err(fail)?;
        Ok(batch.is_empty() || tx.send(Ok(Batch::Copied(batch))).await.is_ok())
    }
    .await;
    if !matches!(copied, Ok(true)) {
        pooled.close_on_drop();
    }
    copied.map(|_| ())
}

/// Reads the next chunk's JSON text and where the one after it starts (`None`: there was nothing
/// left; a full last chunk is followed by one empty read). SQLite's CSV export and the XLSX export
/// read in chunks. The JSON is not parsed here, so the database can read the next chunk while this
/// one is parsed and encoded.
async fn read_chunk(
    db: &DatabaseConnection,
    account_id: &str,
    which: Keys,
    after: Option<&str>,
    chunk: u64,
) -> AppResult<(String, Option<String>)> {
    let statement = chunk_statement(db.get_database_backend(), account_id, which, after, chunk);
    let Some(row) = db.query_one_raw(statement).await? else {
        return Ok(("[]".to_owned(), None));
    };
    let json: Option<String> = row.try_get_by_index(0)?;
    // An empty chunk (no key left) has no last key: that ends the export.
    let last: Option<String> = row.try_get_by_index(1)?;
    Ok((json.unwrap_or_else(|| "[]".to_owned()), last))
}

/// A batch's keys, newest first, with their roles' and owner's names.
async fn parse_batch(db: &DatabaseConnection, names: &mut Names, batch: Batch) -> AppResult<Vec<ExportRow>> {
    let rows = match batch {
        Batch::Names(known) => {
            names.roles.extend(known.roles);
            names.owners.extend(known.owners);
            return Ok(Vec::new());
        }
        Batch::Folded(json) => {
            let folded: Vec<FoldedRow> = folded::parse(&json)?;
            let mut rows: Vec<ExportRow> = folded.into_iter().map(Into::into).collect();
            // An aggregate need not keep any order: newest first. (COPY's lines come in its ORDER BY.)
            rows.sort_by(|a, b| b.access_id.cmp(&a.access_id));
            rows
        }
        Batch::Copied(csv) => {
            let mut reader = csv::ReaderBuilder::new().has_headers(false).from_reader(csv.as_slice());
            let mut record = csv::StringRecord::new();
            let mut rows = Vec::new();
            let fail = |e: csv::Error| AppError::Internal(anyhow::Error::new(e).context("reading the copied export"));
            while reader.read_record(&mut record).map_err(fail)? {
                rows.push(ExportRow::from_record(&record)?);
            }
            rows
        }
    };
    names.resolve(db, rows).await
}

impl ExportRow {
    /// A line of `copy_statement`: `COLUMNS` as CSV, booleans as `t`/`f`, null as an empty cell.
    fn from_record(record: &csv::StringRecord) -> AppResult<Self> {
        let mut cells = record.iter();
        let mut next = || cells.next().ok_or_else(|| AppError::Internal(anyhow::anyhow!("a copied line is short")));
        let time = |cell: &str| (!cell.is_empty()).then(|| folded::parse_instant(cell)).transpose();
        let missing = || AppError::Internal(anyhow::anyhow!("a copied instant is missing"));
        Ok(Self {
            access_id: next()?.to_owned(),
            key: next()?.to_owned(),
            owner_id: next()?.to_owned(),
            owner: String::new(),
            external: next()? == "t",
            removed: next()? == "t",
            active: next()? == "t",
            created_at: time(next()?)?.ok_or_else(missing)?,
            role_ids: next()?.split(',').filter(|id| !id.is_empty()).map(str::to_owned).collect(),
            roles: Vec::new(),
            label: next()?.to_owned(),
            token_created_at: time(next()?)?.ok_or_else(missing)?,
            renewal_started_at: time(next()?)?,
            old_token_expires_at: time(next()?)?,
            last_used_at: time(next()?)?,
            expires_at: time(next()?)?,
        })
    }
}

/// The names an export's rows refer to by id: the account's roles and the keys' owners.
#[derive(Default)]
struct Names {
    roles: HashMap<String, (String, bool)>,
    owners: HashMap<String, String>,
}

impl Names {
    /// Fills in the rows' role and owner names, reading the ones not known yet (a chunk of the
    /// account's own keys needs no read after the first). A role deleted since the chunk was read
    /// is left out, and a key left with none (the export lists keys holding roles).
    async fn resolve(&mut self, db: &DatabaseConnection, rows: Vec<ExportRow>) -> AppResult<Vec<ExportRow>> {
        let unknown_roles: BTreeSet<&str> = rows
            .iter()
            .flat_map(|r| r.role_ids.iter().map(String::as_str))
            .filter(|id| !self.roles.contains_key(*id))
            .collect();
        if !unknown_roles.is_empty() {
            for found in role::Entity::find().filter(role::Column::Id.is_in(unknown_roles)).all(db).await? {
                self.roles.insert(found.id, (found.name, found.predefined));
            }
        }
        let unknown_owners: BTreeSet<&str> =
            rows.iter().map(|r| r.owner_id.as_str()).filter(|id| !self.owners.contains_key(*id)).collect();
        if !unknown_owners.is_empty() {
            for found in account::Entity::find().filter(account::Column::Id.is_in(unknown_owners)).all(db).await? {
                self.owners.insert(found.id, found.name);
            }
        }
        Ok(rows
            .into_iter()
            .filter_map(|mut row| {
                let mut held: Vec<&(String, bool)> = row.role_ids.iter().filter_map(|id| self.roles.get(id)).collect();
                if held.is_empty() {
                    return None;
                }
                held.sort_by(|a, b| roles::display_key(a.1, &a.0).cmp(&roles::display_key(b.1, &b.0)));
                row.roles = held.into_iter().map(|(name, _)| name.clone()).collect();
                row.owner = self.owners.get(&row.owner_id).cloned().unwrap_or_default();
                Some(row)
            })
            .collect())
    }
}

fn instant(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

type Record = [String; 11];

/// A chunk's records, one per key, its roles in display order. Another account's label is never
/// exported.
fn records(rows: &[ExportRow], now: DateTime<Utc>) -> impl Iterator<Item = Record> + '_ {
    rows.iter().map(move |row| {
        let status = keys::effective_status(row.active, row.removed, row.expires_at, now);
        let pending = keys::renewal_pending(row.renewal_started_at, row.old_token_expires_at, now).is_some();
        [
            row.key.clone(),
            row.owner.clone(),
            if row.external { "EXTERNAL" } else { "INTERNAL" }.to_owned(),
            status.as_str().to_owned(),
            row.roles.join(";"),
            instant(row.created_at),
            if row.external { String::new() } else { row.label.clone() },
            instant(row.token_created_at),
            pending.to_string(),
            row.last_used_at.map(instant).unwrap_or_default(),
            row.expires_at.map(instant).unwrap_or_default(),
        ]
    })
}

/// Encodes records with the `csv` crate (RFC 4180 quoting), optionally preceded by the header.
fn encode(records: impl Iterator<Item = Record>, with_header: bool) -> AppResult<Vec<u8>> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    let fail = |e: csv::Error| AppError::Internal(anyhow::Error::new(e).context("writing CSV"));
    if with_header {
        writer.write_record(HEADER).map_err(fail)?;
    }
    for cells in records {
        for cell in &cells {
            writer.write_field(neutralise(cell).as_bytes()).map_err(fail)?;
        }
        writer.write_record(None::<&[u8]>).map_err(fail)?;
    }
    writer.into_inner().map_err(|e| AppError::Internal(anyhow::anyhow!("flushing CSV: {e}")))
}

/// Streams the export for an account: the header, then one chunk per page of keys. Memory stays
/// bounded by one chunk whatever the number of keys.
pub fn stream(store: Store, account_id: String) -> impl Stream<Item = Result<Bytes, std::io::Error>> {
    // PostgreSQL copies every key in one statement: there the chunk is only how many lines are
    // handed to the encoder at a time.
    let chunk = match store.backend() {
        DatabaseBackend::Postgres => 2_000,
        backend => keys_per_chunk(backend),
    };
    stream_in_chunks(store, account_id, chunk)
}

/// `stream` with a chosen chunk size (in keys), so tests can cross many chunk boundaries. A reader
/// task has the database fold chunk after chunk into JSON text (on PostgreSQL: copy every key out as
/// CSV lines, handed on a chunk at a time) while the stream parses, encodes and sends the ones
/// already read (the two overlap, on two threads); at most two chunks wait in between, so memory
/// stays bounded (PostgreSQL's copy waits on the connection meanwhile).
pub fn stream_in_chunks(
    store: Store,
    account_id: String,
    chunk: u64,
) -> impl Stream<Item = Result<Bytes, std::io::Error>> {
    let (tx, rx) = tokio::sync::mpsc::channel::<AppResult<Batch>>(2);
    let now = store.now();
    let db = store.db.clone();
    tokio::spawn(async move {
        if store.backend() == DatabaseBackend::Postgres {
            let statement = copy_statement(&account_id, Keys::All);
            let per_batch = usize::try_from(chunk).unwrap_or(usize::MAX).max(1);
            if let Err(error) = copy_rows(&store.db, &account_id, &statement, per_batch, &tx).await {
                let _ = tx.send(Err(error)).await;
            }
            return;
        }
        let mut after: Option<String> = None;
        loop {
            let (json, next) =
                match read_chunk(&store.db, &account_id, Keys::All, after.as_deref(), Ord::max(chunk, 1)).await {
                    Ok(read) => read,
                    Err(error) => {
                        let _ = tx.send(Err(error)).await;
                        return;
                    }
                };
            if tx.send(Ok(Batch::Folded(json))).await.is_err() {
                return; // the client went away
            }
            match next {
                Some(next) => after = Some(next),
                None => return,
            }
        }
    });
    let state = (rx, Names::default(), true);
    futures::stream::try_unfold(state, move |(mut rx, mut names, first_chunk)| {
        let db = db.clone();
        async move {
            let fail = |e: AppError| {
                e.log_if_internal();
                std::io::Error::other("export failed")
            };
            let rows = match rx.recv().await {
                None if first_chunk => Vec::new(), // an empty export still has its header
                None => return Ok(None),
                Some(read) => parse_batch(&db, &mut names, read.map_err(fail)?).await.map_err(fail)?,
            };
            let csv = encode(records(&rows, now), first_chunk).map_err(fail)?;
            Ok(Some((Bytes::from(csv), (rx, names, false))))
        }
    })
}

/// Builds the export as an XLSX workbook (sheets `Generated` and `External`, the CSV's columns and
/// the same formula guard) in a temporary file. Memory stays bounded: chunks are read as for the
/// CSV and handed to a writer thread in constant-memory mode, which keeps rows on disk.
pub async fn workbook(store: &Store, account_id: &str) -> AppResult<tempfile::NamedTempFile> {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<(u16, Vec<Record>)>(2);
    let writer = tokio::task::spawn_blocking(move || -> AppResult<tempfile::NamedTempFile> {
        let fail = |e: rust_xlsxwriter::XlsxError| AppError::Internal(anyhow::Error::new(e).context("writing XLSX"));
        let mut workbook = rust_xlsxwriter::Workbook::new();
        let mut next_row = [1_u32; 2];
        for name in ["Generated", "External"] {
            let sheet = workbook.add_worksheet_with_constant_memory().map_err(fail)?;
            sheet.set_name(name).map_err(fail)?;
            for (column, title) in (0_u16..).zip(HEADER) {
                sheet.write_string(0, column, title).map_err(fail)?;
            }
        }
        while let Some((index, records)) = rx.blocking_recv() {
            let sheet = workbook.worksheet_from_index(usize::from(index)).map_err(fail)?;
            for record in records {
                let row = next_row[usize::from(index)];
                for (column, cell) in (0_u16..).zip(&record) {
                    sheet.write_string(row, column, neutralise(cell)).map_err(fail)?;
                }
                next_row[usize::from(index)] += 1;
            }
        }
        let file = tempfile::NamedTempFile::new().map_err(|e| AppError::Internal(e.into()))?;
        workbook.save(file.path()).map_err(fail)?;
        Ok(file)
    });
    let now = store.now();
    let mut names = Names::default();
    let chunk = keys_per_chunk(store.backend());
    for (index, which) in [(0_u16, Keys::Internal), (1, Keys::External)] {
        let mut after: Option<String> = None;
        loop {
            let (json, next) = read_chunk(&store.db, account_id, which, after.as_deref(), chunk).await?;
            let rows = parse_batch(&store.db, &mut names, Batch::Folded(json)).await?;
            let records: Vec<Record> = records(&rows, now).collect();
            if tx.send((index, records)).await.is_err() {
                break; // the writer failed; its error is reported below
            }
            match next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
    }
    drop(tx);
    writer.await.map_err(|e| AppError::Internal(e.into()))?
}

/// Issues a single-use ticket valid for `TICKET_TTL_SECS`; the caller's permission was checked by
/// the guard on the mutation.
pub async fn issue_ticket(store: &Store, ctx: &Ctx<'_>) -> AppResult<(DownloadToken, chrono::DateTime<chrono::Utc>)> {
    let token = DownloadToken::generate();
    let txn = store.begin_write().await?;
    let expires_at = txn.now() + chrono::Duration::seconds(TICKET_TTL_SECS);
    let ticket = download_ticket::ActiveModel {
        id: Set(new_id()),
        token_digest: Set(token.digest().as_str().to_owned()),
        account_id: Set(ctx.principal.account_id.clone()),
        actor: Set(ctx.principal.actor()),
        created_at: Set(txn.now()),
        expires_at: Set(expires_at),
        used_at: Set(None),
    }
    .insert(&*txn)
    .await?;
    ctx.audit(&txn, "export.ticket", &ticket.id, None, Some(json!({ "expiresAt": expires_at }))).await?;
    txn.commit_without_credential_change().await?;
    Ok((token, expires_at))
}

/// Redeems a ticket once; returns the account to export. Unknown, used and expired tickets all fail alike.
pub async fn redeem_ticket(store: &Store, raw: &str) -> AppResult<String> {
    let token = DownloadToken::parse(raw).map_err(|_| AppError::Unauthenticated)?;
    let txn = store.begin_write().await?;
    let ticket = download_ticket::Entity::find()
        .filter(download_ticket::Column::TokenDigest.eq(token.digest().as_str()))
        .one(&*txn)
        .await?
        .ok_or(AppError::Unauthenticated)?;
    if ticket.expires_at <= txn.now() {
        return Err(AppError::Unauthenticated);
    }
    // Conditional update: of two concurrent redemptions (even on two replicas) exactly one wins.
    let claimed = download_ticket::Entity::update_many()
        .col_expr(download_ticket::Column::UsedAt, Expr::value(txn.now()))
        .filter(download_ticket::Column::Id.eq(ticket.id.as_str()))
        .filter(download_ticket::Column::UsedAt.is_null())
        .exec(&*txn)
        .await?;
    if claimed.rows_affected != 1 {
        return Err(AppError::Unauthenticated);
    }
    txn.commit_without_credential_change().await?;
    Ok(ticket.account_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_a_spreadsheet_would_evaluate_get_a_leading_quote() {
        for formula in ["=1+1", "+1", "-1", "@SUM(A1)", "\tx", "\rx"] {
            assert_eq!(neutralise(formula), format!("'{formula}"));
        }
        for plain in ["appkey-main-ABCDEF", "Owner (Admin Super)", "", "a=b"] {
            assert_eq!(neutralise(plain), plain);
        }
    }

    #[test]
    fn records_are_quoted_by_rfc_4180() {
        let record = [
            "k",
            "main",
            "INTERNAL",
            "ACTIVE",
            "a,b;\"c\"",
            "2026-01-01T00:00:00Z",
            "ERP",
            "2026-01-01T00:00:00Z",
            "false",
            "",
            "",
        ]
        .map(str::to_owned);
        let csv = encode(std::iter::once(record), true).expect("encodes");
        assert_eq!(
            String::from_utf8(csv).expect("utf-8"),
            "key,account,type,status,roles,created_at,label,token_created_at,renewal_pending,last_used_at,expires_at\n\
             k,main,INTERNAL,ACTIVE,\"a,b;\"\"c\"\"\",2026-01-01T00:00:00Z,ERP,2026-01-01T00:00:00Z,false,,\n"
        );
    }
}
