//! The CSV export of the "Application Keys" listing (README: "Export"), streamed page by page, and the
//! single-use download tickets that let a browser fetch it with a plain link.
use bytes::Bytes;
use futures::Stream;
use sea_orm::sea_query::Expr;

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseBackend, DatabaseConnection, EntityTrait, JoinType,
    QueryFilter, QueryOrder, QuerySelect, QueryTrait, RelationTrait, Select, Set, Statement,
};
use serde_json::{json, Value};
use std::borrow::Cow;

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
const ROWS_PER_CHUNK: u64 = 2_000;
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

/// One (key, role) pair of the export, read in bulk by `page`.
#[derive(Debug)]
struct ExportRow {
    access_id: String,
    key: String,
    owner: String,
    external: bool,
    removed: bool,
    active: bool,
    created_at: DateTime<Utc>,
    role_name: String,
    role_predefined: bool,
    label: String,
    token_created_at: DateTime<Utc>,
    renewal_started_at: Option<DateTime<Utc>>,
    old_token_expires_at: Option<DateTime<Utc>>,
    last_used_at: Option<DateTime<Utc>>,
    expires_at: Option<DateTime<Utc>>,
}

/// The columns of a chunk, in the order the database folds them (see `fetch_aggregated`).
const COLUMNS: &str = r#"access_id, "key", owner, external, removed, active, created_at, role_name, role_predefined, label, token_created_at, renewal_started_at, old_token_expires_at, last_used_at, expires_at"#;

/// One chunk of the export in one query: keys joined with their roles (so only keys with roles),
/// keyset on the access id. A full chunk may end inside a key's roles: that key is left for the next
/// chunk. Returns the rows and the cursor of the next chunk.
async fn page(
    db: &DatabaseConnection,
    account_id: &str,
    which: Keys,
    after: Option<&str>,
    chunk: u64,
) -> AppResult<(Vec<ExportRow>, Option<String>)> {
    let mut select = key_access::Entity::find()
        .select_only()
        .column_as(key_access::Column::Id, "access_id")
        .column_as(app_key::Column::Key, "key")
        .column_as(account::Column::Name, "owner")
        .column_as(key_access::Column::External, "external")
        .column_as(key_access::Column::Removed, "removed")
        .column_as(app_key::Column::Active, "active")
        .column_as(app_key::Column::CreatedAt, "created_at")
        .column_as(role::Column::Name, "role_name")
        .column_as(role::Column::Predefined, "role_predefined")
        .column_as(app_key::Column::Label, "label")
        .column_as(app_key::Column::TokenCreatedAt, "token_created_at")
        .column_as(app_key::Column::RenewalStartedAt, "renewal_started_at")
        .column_as(app_key::Column::PreviousTokenExpiresAt, "old_token_expires_at")
        .column_as(key_access::Column::LastUsedAt, "last_used_at")
        .column_as(app_key::Column::ExpiresAt, "expires_at")
        .join(JoinType::InnerJoin, key_access::Relation::AppKey.def())
        .join(JoinType::InnerJoin, app_key::Relation::Owner.def())
        .join(JoinType::InnerJoin, key_access::Relation::Roles.def())
        .join(JoinType::InnerJoin, key_access_role::Relation::Role.def())
        .filter(key_access::Column::AccountId.eq(account_id));
    match which {
        Keys::All => {}
        Keys::Internal => select = select.filter(key_access::Column::External.eq(false)),
        Keys::External => select = select.filter(key_access::Column::External.eq(true)),
    }
    if let Some(after) = after {
        select = select.filter(key_access::Column::Id.lt(after));
    }
    let select = select.order_by_desc(key_access::Column::Id);
    // A chunk holding one key's roles only cannot tell whether that key has more: widen it until a
    // second key (or the end) shows up.
    let mut limit = chunk;
    loop {
        let mut rows = fetch_aggregated(db, select.clone().limit(limit)).await?;
        if (rows.len() as u64) < limit {
            return Ok((rows, None));
        }
        let last = rows.last().map(|r| r.access_id.clone()).unwrap_or_default();
        let complete = rows.iter().position(|r| r.access_id == last).unwrap_or(rows.len());
        if complete > 0 {
            rows.truncate(complete);
            let next = rows.last().map(|r| r.access_id.clone());
            return Ok((rows, next));
        }
        limit = limit.saturating_mul(2);
    }
}

/// Runs the chunk's query with the database folding its rows into one JSON array, so a chunk costs
/// one row through the driver instead of thousands (the driver's per-row cost, not the query, is what
/// bounded the export's speed).
async fn fetch_aggregated(db: &DatabaseConnection, select: Select<key_access::Entity>) -> AppResult<Vec<ExportRow>> {
    let backend = db.get_database_backend();
    let inner = backend.build(&select.into_query());
    let sql = match backend {
        DatabaseBackend::Postgres => {
            format!("SELECT COALESCE(json_agg(json_build_array({COLUMNS}))::text, '[]') FROM ({}) AS chunk", inner.sql)
        }
        _ => format!("SELECT json_group_array(json_array({COLUMNS})) FROM ({}) AS chunk", inner.sql),
    };
    let statement = Statement { sql, values: inner.values, db_backend: backend };
    let row = db.query_one_raw(statement).await?;
    let json: String = match row {
        Some(row) => row.try_get_by_index(0)?,
        None => return Ok(Vec::new()),
    };
    let raw: Vec<Vec<Value>> = serde_json::from_str(&json)
        .map_err(|e| AppError::Internal(anyhow::Error::new(e).context("reading an export chunk")))?;
    let mut rows = raw.iter().map(|cells| ExportRow::from_cells(cells)).collect::<AppResult<Vec<_>>>()?;
    // Aggregates need not keep the subquery's order: restore it (newest first; stable for roles).
    rows.sort_by(|a, b| b.access_id.cmp(&a.access_id));
    Ok(rows)
}

impl ExportRow {
    fn from_cells(cells: &[Value]) -> AppResult<Self> {
        let cell = |i: usize| cells.get(i).unwrap_or(&Value::Null);
        let text = |i: usize| cell(i).as_str().unwrap_or_default().to_owned();
        let required = |i: usize| {
            timestamp(cell(i))?.ok_or_else(|| AppError::Internal(anyhow::anyhow!("an export row lacks column {i}")))
        };
        Ok(Self {
            access_id: text(0),
            key: text(1),
            owner: text(2),
            external: truthy(cell(3)),
            removed: truthy(cell(4)),
            active: truthy(cell(5)),
            created_at: required(6)?,
            role_name: text(7),
            role_predefined: truthy(cell(8)),
            label: text(9),
            token_created_at: required(10)?,
            renewal_started_at: timestamp(cell(11))?,
            old_token_expires_at: timestamp(cell(12))?,
            last_used_at: timestamp(cell(13))?,
            expires_at: timestamp(cell(14))?,
        })
    }
}

/// A timestamp as the database's JSON writes it (SQLite: `2026-01-01 00:00:00+00:00`; PostgreSQL:
/// ISO 8601), or null.
fn timestamp(value: &Value) -> AppResult<Option<DateTime<Utc>>> {
    let Some(text) = value.as_str() else {
        return Ok(None);
    };
    chrono::DateTime::parse_from_rfc3339(&text.replacen(' ', "T", 1))
        .map(|t| Some(t.with_timezone(&Utc)))
        .map_err(|e| AppError::Internal(anyhow::Error::new(e).context("reading an export timestamp")))
}

/// SQLite has no boolean type (0/1); PostgreSQL's JSON has true/false.
fn truthy(value: &Value) -> bool {
    value.as_bool().unwrap_or_else(|| value.as_i64().is_some_and(|n| n != 0))
}

fn instant(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

type Record = [String; 11];

/// Groups a chunk's rows into records, one per key, its roles in display order. Another account's
/// label is never exported.
fn records(rows: &[ExportRow], now: DateTime<Utc>) -> impl Iterator<Item = Record> + '_ {
    rows.chunk_by(|a, b| a.access_id == b.access_id).map(move |group| {
        let row = &group[0];
        let mut roles: Vec<&ExportRow> = group.iter().collect();
        roles.sort_by(|a, b| {
            roles::display_key(a.role_predefined, &a.role_name)
                .cmp(&roles::display_key(b.role_predefined, &b.role_name))
        });
        let names: Vec<&str> = roles.iter().map(|r| r.role_name.as_str()).collect();
        let status = keys::effective_status(row.active, row.removed, row.expires_at, now);
        let pending = keys::renewal_pending(row.renewal_started_at, row.old_token_expires_at, now).is_some();
        [
            row.key.clone(),
            row.owner.clone(),
            if row.external { "EXTERNAL" } else { "INTERNAL" }.to_owned(),
            status.as_str().to_owned(),
            names.join(";"),
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
    stream_in_chunks(store, account_id, ROWS_PER_CHUNK)
}

/// `stream` with a chosen chunk size (in key-role pairs), so tests can cross many chunk boundaries.
/// A reader task fetches the next chunk while the current one is encoded and sent (the database and
/// the encoding overlap); at most two chunks wait in between, so memory stays bounded.
pub fn stream_in_chunks(
    store: Store,
    account_id: String,
    chunk: u64,
) -> impl Stream<Item = Result<Bytes, std::io::Error>> {
    let (tx, rx) = tokio::sync::mpsc::channel::<AppResult<Vec<ExportRow>>>(2);
    let now = store.now();
    tokio::spawn(async move {
        let mut after: Option<String> = None;
        loop {
            let read = page(&store.db, &account_id, Keys::All, after.as_deref(), chunk.max(1)).await;
            let (rows, next) = match read {
                Ok(read) => read,
                Err(error) => {
                    let _ = tx.send(Err(error)).await;
                    return;
                }
            };
            if tx.send(Ok(rows)).await.is_err() {
                return; // the client went away
            }
            match next {
                Some(next) => after = Some(next),
                None => return,
            }
        }
    });
    let state = (rx, true);
    futures::stream::try_unfold(state, move |(mut rx, first_chunk)| async move {
        let fail = |e: AppError| {
            e.log_if_internal();
            std::io::Error::other("export failed")
        };
        let rows = match rx.recv().await {
            None if first_chunk => Vec::new(), // an empty export still has its header
            None => return Ok(None),
            Some(read) => read.map_err(fail)?,
        };
        let csv = encode(records(&rows, now), first_chunk).map_err(fail)?;
        Ok(Some((Bytes::from(csv), (rx, false))))
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
    for (index, which) in [(0_u16, Keys::Internal), (1, Keys::External)] {
        let mut after: Option<String> = None;
        loop {
            let (rows, next) = page(&store.db, account_id, which, after.as_deref(), ROWS_PER_CHUNK).await?;
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
