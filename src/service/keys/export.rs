//! The CSV export of the "Application Keys" listing (docs/walkthrough.md: "Export"), streamed page by page, and the
//! single-use download tickets that let a browser fetch it with a plain link.
use bytes::Bytes;
use futures::Stream;
use sea_orm::sea_query::{Expr, ExprTrait, JoinType, Order, Query};

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseBackend, DatabaseConnection, EntityTrait, QueryFilter, Set,
    Statement,
};
use serde_json::json;
use std::borrow::Cow;
use std::collections::{BTreeSet, HashMap};

use super::row::{KeyRow, KeySource, EXPORTED};
use crate::domain::DownloadToken;
use crate::entity::{account, app_key, download_ticket, key_access, key_access_role, role};
use crate::error::{AppError, AppResult};
use crate::service::events::audit::Ctx;
use crate::service::identity::roles;
use crate::service::keys;
use crate::service::store::folded::{self, opt_instant};
use crate::service::store::new_id;
use crate::service::store::Store;

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
/// Keys per chunk, each with all its roles: SQLite's export reads this many access rows per
/// statement, and PostgreSQL's copy hands on about as many lines at a time.
const KEYS_PER_CHUNK: u64 = 2_000;
/// SQLite: how many chunks are read at once (on as many connections). Reading takes more time than
/// parsing and encoding; two readers keep both of a small machine's cores busy.
const READERS: usize = 2;
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
pub enum Keys {
    All,
    /// The account's own keys (the workbook's `Generated` sheet).
    Internal,
    /// Other accounts' keys (the `External` sheet).
    External,
}

/// One key of the export: its read model (`KeyRow`, the columns through `expires_at`, read in bulk
/// by `read_range` or `copy_rows`, one line per role it holds), its roles' names in display order
/// and its owner's name filled in from `Names` (ids are cheaper to read than joined rows).
#[derive(Debug)]
struct ExportRow {
    row: KeyRow,
    role_names: Vec<String>,
}

impl From<KeyRow> for ExportRow {
    fn from(row: KeyRow) -> Self {
        Self { row, role_names: Vec::new() }
    }
}

/// The export's columns: the key's read model through `expires_at` (`row::EXPORTED`).
fn exported() -> &'static [(&'static str, KeySource)] {
    &KeyRow::COLUMNS[..EXPORTED]
}

/// The access rows in `window` (as `w`) with their keys and role links (`l`), one row per (key,
/// role), the exported columns of `KeyRow` as aliases. A key holding no role has none (the export
/// lists keys holding roles).
fn lines_select(window: sea_orm::sea_query::SelectStatement) -> sea_orm::sea_query::SelectStatement {
    let col = |table: &'static str, column: &'static str| Expr::col((table, column));
    let mut lines = Query::select();
    lines.from_subquery(window, "w").join_as(
        JoinType::InnerJoin,
        key_access_role::Entity,
        "l",
        col("l", "key_access_id").equals(("w", "id")),
    );
    lines.inner_join(app_key::Entity, col("app_keys", "id").equals(("w", "app_key_id")));
    for &(alias, source) in exported() {
        match source {
            KeySource::RoleIds => _ = lines.expr_as(col("l", "role_id"), alias),
            source => {
                if let Some(cell) = source.column("w") {
                    lines.expr_as(cell, alias);
                }
            }
        }
    }
    lines
}

/// The account's access rows (of `which` keys, older than `after` if given), as `lines_select`
/// reads them.
fn access_window(account_id: &str, which: Keys, after: Option<&str>) -> sea_orm::sea_query::SelectStatement {
    let access = |column: key_access::Column| Expr::col((key_access::Entity, column));
    let mut window = Query::select();
    // The access columns the export reads, and the key's id to join it.
    let read = exported().iter().filter_map(|(_, source)| match source {
        KeySource::Access(column) => Some(*column),
        _ => None,
    });
    window
        .columns(std::iter::once(key_access::Column::AppKeyId).chain(read).map(|c| (key_access::Entity, c)))
        .from(key_access::Entity)
        .and_where(access(key_access::Column::AccountId).eq(account_id));
    match which {
        Keys::All => {}
        Keys::Internal => _ = window.and_where(access(key_access::Column::External).eq(false)),
        Keys::External => _ = window.and_where(access(key_access::Column::External).eq(true)),
    }
    if let Some(after) = after {
        window.and_where(access(key_access::Column::Id).lt(after));
    }
    window
}

/// SQLite: where the chunk of `chunk` keys after `after` ends (its oldest access id; `None`: no
/// key is left). Read from the index alone, so a reader can hand this chunk to a connection and
/// look for the next one's end at once.
fn chunk_end_statement(account_id: &str, which: Keys, after: Option<&str>, chunk: u64) -> Statement {
    let mut window = access_window(account_id, which, after);
    window.clear_selects().expr_as(Expr::col((key_access::Entity, key_access::Column::Id)), "id");
    window.order_by((key_access::Entity, key_access::Column::Id), Order::Desc).limit(chunk);
    let mut end = Query::select();
    end.expr(Expr::col("id").min()).from_subquery(window, "w");
    DatabaseBackend::Sqlite.build(&end)
}

/// SQLite: one chunk of the export as one statement returning one row: the keys from `after`
/// (excluded) down to `last` (included), each with a row per role it holds, folded into JSON text.
/// The join finds each key's roles in one index seek (a test that the key holds any role and a
/// subquery for their ids made two, and took a quarter more time).
fn chunk_statement(account_id: &str, which: Keys, after: Option<&str>, last: &str) -> Statement {
    let mut window = access_window(account_id, which, after);
    window.and_where(Expr::col((key_access::Entity, key_access::Column::Id)).gte(last));
    let lines = lines_select(window);
    let columns: Vec<folded::Column> = exported().iter().map(|(alias, _)| folded::Column::plain(*alias)).collect();
    let backend = DatabaseBackend::Sqlite;
    folded::fold(backend, backend.build(&lines), &columns, None)
}

/// PostgreSQL: every key of the account holding roles, as one `COPY (…) TO STDOUT` in CSV, newest
/// first: one line per role the key holds here, so a key's lines follow one another
/// (`merge_roles`). The inner join drops the keys holding no role. Unlike a per-key subquery for
/// the role ids (which ran for every key, on one core, and took a third of the copy), it is a hash
/// join the planner spreads over its workers. Instants are written as PostgreSQL writes them in the
/// copy's session (`copy_rows` sets ISO and UTC), which is cheaper than `to_char`. PostgreSQL writes
/// CSV far faster than it builds JSON, and streams the whole result from one snapshot. COPY takes
/// no parameters: sea-query writes the one value (the account id) into the SQL with its quoting.
/// (Public for the tests of its query plan.)
pub fn copy_statement(account_id: &str, which: Keys) -> String {
    let mut lines = lines_select(access_window(account_id, which, None));
    lines.order_by(("w", "id"), Order::Desc);
    format!("COPY ({}) TO STDOUT WITH (FORMAT csv)", lines.to_string(sea_orm::sea_query::PostgresQueryBuilder))
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
    let fail = AppError::from;
    let mut pooled = db.get_postgres_connection_pool().acquire().await.map_err(fail)?;
    let copied = async {
        let connection = pooled.acquire().await.map_err(fail)?;
        // The names first, in the copy's own snapshot: every role and owner a copied line names is
        // then known, and the stream never needs a second connection while this one copies (with the
        // pool exhausted by exports, each would wait on the others).
        // One round trip (a script of statements), settings for this transaction only: the copy's
        // estimated cost is past `jit_above_cost` for any sizeable account, and compiling it took
        // 730 ms of an 840 ms copy of 100 000 keys, so no JIT; instants as
        // `2026-01-02 03:04:05.123456+00` whatever the server's defaults (`parse_instant`); no
        // statement limit, as the copy streams for as long as the client reads.
        sea_orm::sqlx::raw_sql(
            "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SET LOCAL jit = off; \
             SET LOCAL TimeZone = 'UTC'; SET LOCAL DateStyle = 'ISO, YMD'; SET LOCAL statement_timeout = 0",
        )
        .execute(&mut *connection)
        .await
        .map_err(fail)?;
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
        // A batch ends between two keys, never between two lines of one key (`merge_roles`): once
        // full, it is handed on when a line of another key comes.
        let (mut batch, mut count, mut last_key) = (Vec::new(), 0, Vec::new());
        while let Some(line) = lines.next().await {
            let line = line.map_err(fail)?;
            let key = first_cell(&line);
            if count >= per_batch && key != last_key.as_slice() {
                if tx.send(Ok(Batch::Copied(std::mem::take(&mut batch)))).await.is_err() {
                    return Ok(false); // the client went away
                }
                count = 0;
            }
            last_key.clear();
            last_key.extend_from_slice(key);
            batch.extend_from_slice(&line);
            count += 1;
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

/// A copied line's first cell (the access id: a UUID, never quoted).
fn first_cell(line: &[u8]) -> &[u8] {
    line.split(|&b| b == b',' || b == b'\n').next().unwrap_or_default()
}

/// SQLite: the oldest access id of the chunk of `chunk` keys after `after` (`None`: none is left).
async fn chunk_end(
    db: &DatabaseConnection,
    account_id: &str,
    which: Keys,
    after: Option<&str>,
    chunk: u64,
) -> AppResult<Option<String>> {
    let statement = chunk_end_statement(account_id, which, after, chunk);
    let Some(row) = db.query_one_raw(statement).await? else {
        return Ok(None);
    };
    Ok(row.try_get_by_index(0)?)
}

/// SQLite: the JSON text of the chunk from `after` (excluded) down to `last` (included). It is not
/// parsed here, so the database can read the next chunk while this one is parsed and encoded.
async fn read_range(
    db: DatabaseConnection,
    account_id: String,
    which: Keys,
    after: Option<String>,
    last: String,
) -> AppResult<String> {
    folded::fetch_text(&db, chunk_statement(&account_id, which, after.as_deref(), &last)).await
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
            let folded: Vec<KeyRow> = folded::parse(&json)?;
            let mut lines: Vec<ExportRow> = folded.into_iter().map(ExportRow::from).collect();
            // An aggregate need not keep any order: newest first, a key's lines together. (COPY's
            // lines come in its ORDER BY.) SQLite folds them oldest first: reversed, not sorted.
            if lines.is_sorted_by(|a, b| a.row.access_id <= b.row.access_id) {
                lines.reverse();
            } else {
                lines.sort_by(|a, b| b.row.access_id.cmp(&a.row.access_id));
            }
            let mut rows = Vec::with_capacity(lines.len());
            for line in lines {
                merge_roles(&mut rows, line);
            }
            rows
        }
        Batch::Copied(csv) => {
            let mut reader = csv::ReaderBuilder::new().has_headers(false).from_reader(csv.as_slice());
            let mut record = csv::StringRecord::new();
            let mut rows = Vec::new();
            let fail = |e: csv::Error| AppError::Internal(anyhow::Error::new(e).context("reading the copied export"));
            while reader.read_record(&mut record).map_err(fail)? {
                merge_roles(&mut rows, ExportRow::from_record(&record)?);
            }
            rows
        }
    };
    names.resolve(db, rows).await
}

/// Adds a line (copied or folded) to the rows read so far: a key's further lines (one per role) add
/// their role id to its row.
fn merge_roles(rows: &mut Vec<ExportRow>, line: ExportRow) {
    match rows.last_mut() {
        Some(last) if last.row.access_id == line.row.access_id => last.row.roles.0.extend(line.row.roles.0),
        _ => rows.push(line),
    }
}

impl ExportRow {
    /// A line of `copy_statement`: the exported columns as CSV (one role id), booleans as `t`/`f`,
    /// null as an empty cell, read as `KeyRow` reads any row.
    fn from_record(record: &csv::StringRecord) -> AppResult<Self> {
        let row: KeyRow = record
            .deserialize(None)
            .map_err(|e| AppError::Internal(anyhow::Error::new(e).context("reading a copied line")))?;
        Ok(row.into())
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
            .flat_map(|r| r.row.roles.0.iter().map(String::as_str))
            .filter(|id| !self.roles.contains_key(*id))
            .collect();
        if !unknown_roles.is_empty() {
            for found in role::Entity::find().filter(role::Column::Id.is_in(unknown_roles)).all(db).await? {
                self.roles.insert(found.id, (found.name, found.predefined));
            }
        }
        let unknown_owners: BTreeSet<&str> =
            rows.iter().map(|r| r.row.owner_id.as_str()).filter(|id| !self.owners.contains_key(*id)).collect();
        if !unknown_owners.is_empty() {
            for found in account::Entity::find().filter(account::Column::Id.is_in(unknown_owners)).all(db).await? {
                self.owners.insert(found.id, found.name);
            }
        }
        Ok(rows
            .into_iter()
            .filter_map(|mut row| {
                let mut held: Vec<&(String, bool)> =
                    row.row.roles.0.iter().filter_map(|id| self.roles.get(id)).collect();
                if held.is_empty() {
                    return None;
                }
                held.sort_by(|a, b| roles::display_key(a.1, &a.0).cmp(&roles::display_key(b.1, &b.0)));
                row.role_names = held.into_iter().map(|(name, _)| name.clone()).collect();
                row.row.owner = self.owners.get(&row.row.owner_id).cloned().unwrap_or_default();
                Some(row)
            })
            .collect())
    }
}

/// An instant as the export writes it: `domain::instant::to_second`, written into `out` without
/// allocating; nothing for none.
fn write_instant(out: &mut String, at: Option<DateTime<Utc>>) {
    use chrono::{Datelike, Timelike};
    out.clear();
    let Some(at) = at else { return };
    let (date, time) = (at.date_naive(), at.time());
    let year = u32::try_from(date.year()).ok().filter(|year| *year <= 9999);
    if let (Some(year), true) = (year, time.nanosecond() < 1_000_000_000) {
        // Digits written by hand: `write!` took a tenth of the encoder's time.
        let mut text = *b"0000-00-00T00:00:00Z";
        let fields = [(0, 4, year), (5, 2, date.month()), (8, 2, date.day())].into_iter().chain([
            (11, 2, time.hour()),
            (14, 2, time.minute()),
            (17, 2, time.second()),
        ]);
        for (at, width, mut value) in fields {
            for digit in text[at..at + width].iter_mut().rev() {
                *digit = b'0' + u8::try_from(value % 10).unwrap_or_default();
                value /= 10;
            }
        }
        out.extend(text.iter().map(|&b| char::from(b)));
    } else {
        out.push_str(&crate::domain::instant::to_second(at));
    }
}

/// Text a row's cells are formatted into, reused from row to row.
#[derive(Default)]
struct Scratch {
    roles: String,
    instants: [String; 4],
}

/// A row's cells, in `HEADER` order, its roles in display order. Another account's label is never
/// exported.
fn cells<'a>(export: &'a ExportRow, now: DateTime<Utc>, scratch: &'a mut Scratch) -> [&'a str; 11] {
    let row = &export.row;
    let (external, expires_at) = (row.external.0, opt_instant(row.expires_at));
    let status = keys::effective_status(row.active.0, row.removed.0, expires_at, now);
    let pending =
        keys::renewal_pending(opt_instant(row.renewal_started_at), opt_instant(row.previous_token_expires_at), now)
            .is_some();
    let Scratch { roles, instants: [created, token_created, last_used, expires] } = scratch;
    roles.clear();
    for (i, role) in export.role_names.iter().enumerate() {
        if i > 0 {
            roles.push(';');
        }
        roles.push_str(role);
    }
    write_instant(created, Some(row.created_at.0));
    write_instant(token_created, Some(row.token_created_at.0));
    write_instant(last_used, opt_instant(row.last_used_at));
    write_instant(expires, expires_at);
    [
        &row.key,
        &row.owner,
        if external { "EXTERNAL" } else { "INTERNAL" },
        status.as_str(),
        roles,
        created,
        keys::visible_label(external, row.label.as_str()).unwrap_or_default(),
        token_created,
        if pending { "true" } else { "false" },
        last_used,
        expires,
    ]
}

type Record = [String; 11];

/// A chunk's records, one per key, as owned text (for the workbook's writer thread).
fn records(rows: &[ExportRow], now: DateTime<Utc>) -> Vec<Record> {
    let mut scratch = Scratch::default();
    rows.iter().map(|row| cells(row, now, &mut scratch).map(str::to_owned)).collect()
}

/// A CSV writer (the `csv` crate: RFC 4180 quoting) into memory, the header first if `with_header`.
fn csv_writer(capacity: usize, with_header: bool) -> AppResult<csv::Writer<Vec<u8>>> {
    let mut writer = csv::Writer::from_writer(Vec::with_capacity(capacity));
    if with_header {
        writer.write_record(HEADER).map_err(csv_failed)?;
    }
    Ok(writer)
}

fn csv_failed(e: csv::Error) -> AppError {
    AppError::Internal(anyhow::Error::new(e).context("writing CSV"))
}

/// Writes one record, each cell through the formula guard.
fn write_cells(writer: &mut csv::Writer<Vec<u8>>, cells: &[&str]) -> AppResult<()> {
    for cell in cells {
        writer.write_field(neutralise(cell).as_bytes()).map_err(csv_failed)?;
    }
    writer.write_record(None::<&[u8]>).map_err(csv_failed)
}

fn csv_bytes(writer: csv::Writer<Vec<u8>>) -> AppResult<Vec<u8>> {
    writer.into_inner().map_err(|e| AppError::Internal(anyhow::anyhow!("flushing CSV: {e}")))
}

/// A chunk's rows as CSV, optionally preceded by the header.
fn encode(rows: &[ExportRow], now: DateTime<Utc>, with_header: bool) -> AppResult<Vec<u8>> {
    let mut writer = csv_writer(rows.len() * 256, with_header)?;
    let mut scratch = Scratch::default();
    for row in rows {
        write_cells(&mut writer, &cells(row, now, &mut scratch))?;
    }
    csv_bytes(writer)
}

/// Streams the export for an account: the header, then one chunk per page of keys. Memory stays
/// bounded by one chunk whatever the number of keys.
pub fn stream(store: Store, account_id: String) -> impl Stream<Item = Result<Bytes, std::io::Error>> {
    stream_in_chunks(store, account_id, KEYS_PER_CHUNK)
}

/// `stream` with a chosen chunk size (in keys), so tests can cross many chunk boundaries. The
/// stream parses, encodes and sends the chunks `read` hands on.
pub fn stream_in_chunks(
    store: Store,
    account_id: String,
    chunk: u64,
) -> impl Stream<Item = Result<Bytes, std::io::Error>> {
    let now = store.now();
    let db = store.db().clone();
    let rx = read(store, account_id, Keys::All, chunk);
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
            let csv = encode(&rows, now, first_chunk).map_err(fail)?;
            Ok(Some((Bytes::from(csv), (rx, names, false))))
        }
    })
}

/// Starts a reader task for a pass over `which` keys and returns the batches it hands on: on SQLite
/// the database folds chunk after chunk of `chunk` keys into JSON text; on PostgreSQL it copies
/// every key out as CSV lines in one statement, handed on about `chunk` keys at a time. The reader
/// and whoever parses and encodes the batches overlap, on two threads; at most two batches wait in
/// between, so memory stays bounded (PostgreSQL's copy waits on the connection meanwhile). An error
/// is the last batch; the channel closes after the last one, or when the receiver is dropped.
fn read(store: Store, account_id: String, which: Keys, chunk: u64) -> tokio::sync::mpsc::Receiver<AppResult<Batch>> {
    let (tx, rx) = tokio::sync::mpsc::channel::<AppResult<Batch>>(2);
    let chunk = Ord::max(chunk, 1);
    tokio::spawn(async move {
        if store.backend() == DatabaseBackend::Postgres {
            let statement = copy_statement(&account_id, which);
            let per_batch = usize::try_from(chunk).unwrap_or(usize::MAX);
            if let Err(error) = copy_rows(store.db(), &account_id, &statement, per_batch, &tx).await {
                let _ = tx.send(Err(error)).await;
            }
            return;
        }
        // SQLite: `READERS` chunks are read at once, each on its own connection (and its own
        // thread), their ends found first from the index; they are handed on in order. A chunk is
        // a range of access ids, so chunks never overlap whatever is written meanwhile.
        let mut reading = std::collections::VecDeque::new();
        let (mut after, mut more) = (None::<String>, true);
        loop {
            while more && reading.len() < READERS {
                match chunk_end(store.db(), &account_id, which, after.as_deref(), chunk).await {
                    Ok(Some(last)) => {
                        let range = read_range(store.db().clone(), account_id.clone(), which, after, last.clone());
                        reading.push_back(tokio::spawn(range));
                        after = Some(last);
                    }
                    Ok(None) => more = false,
                    Err(error) => {
                        let _ = tx.send(Err(error)).await;
                        return;
                    }
                }
            }
            let Some(next) = reading.pop_front() else { return };
            let read = next.await.unwrap_or_else(|e| Err(AppError::Internal(anyhow::Error::new(e))));
            let failed = read.is_err();
            if tx.send(read.map(Batch::Folded)).await.is_err() || failed {
                return; // the receiver went away, or the read failed
            }
        }
    });
    rx
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
    'sheets: for (index, which) in [(0_u16, Keys::Internal), (1, Keys::External)] {
        let mut batches = read(store.clone(), account_id.to_owned(), which, KEYS_PER_CHUNK);
        while let Some(batch) = batches.recv().await {
            let rows = parse_batch(store.db(), &mut names, batch?).await?;
            let records = records(&rows, now);
            if tx.send((index, records)).await.is_err() {
                break 'sheets; // the writer failed; its error is reported below
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
        ];
        let mut writer = csv_writer(0, true).expect("a writer");
        write_cells(&mut writer, &record).expect("encodes");
        let csv = csv_bytes(writer).expect("flushed");
        assert_eq!(
            String::from_utf8(csv).expect("utf-8"),
            "key,account,type,status,roles,created_at,label,token_created_at,renewal_pending,last_used_at,expires_at\n\
             k,main,INTERNAL,ACTIVE,\"a,b;\"\"c\"\"\",2026-01-01T00:00:00Z,ERP,2026-01-01T00:00:00Z,false,,\n"
        );
    }

    #[test]
    fn a_keys_copied_lines_make_one_row_with_every_role() {
        let line = |access: &str, role: &str| {
            let text = format!(
                "{access},appkey-main-A,acc,f,f,t,2026-01-02 03:04:05.123456+00,{role},\"a, label\",2026-01-02 03:04:05+00,,,,\n"
            );
            let mut reader = csv::ReaderBuilder::new().has_headers(false).from_reader(text.as_bytes());
            let record = reader.records().next().expect("a line").expect("csv");
            assert_eq!(first_cell(text.as_bytes()), access.as_bytes());
            ExportRow::from_record(&record).expect("a copied line")
        };
        let mut rows = Vec::new();
        for (access, role) in [("b", "r1"), ("b", "r2"), ("a", "r1"), ("c", "r3")] {
            merge_roles(&mut rows, line(access, role));
        }
        let read: Vec<(&str, Vec<&str>)> = rows
            .iter()
            .map(|r| (r.row.access_id.as_str(), r.row.roles.0.iter().map(String::as_str).collect()))
            .collect();
        assert_eq!(read, [("b", vec!["r1", "r2"]), ("a", vec!["r1"]), ("c", vec!["r3"])]);
        assert_eq!(rows[0].row.label, "a, label");
        assert_eq!(rows[0].row.created_at.0.to_rfc3339(), "2026-01-02T03:04:05.123456+00:00");
        assert_eq!(rows[0].row.last_used_at, None);
    }

    #[test]
    fn instants_are_written_as_chrono_writes_them() {
        let mut out = String::from("left over");
        for text in
            ["2026-11-27T05:10:21.987654Z", "1970-01-01T00:00:00Z", "0001-02-03T04:05:06Z", "9999-12-31T23:59:59.999Z"]
        {
            let at: DateTime<Utc> = text.parse().expect("an instant");
            write_instant(&mut out, Some(at));
            assert_eq!(out, crate::domain::instant::to_second(at), "{text}");
        }
        write_instant(&mut out, None);
        assert_eq!(out, "");
    }
}
