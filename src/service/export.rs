//! The CSV export of the "Application Keys" listing (SPEC §5.8), streamed page by page, and the
//! single-use download tickets that let a browser fetch it with a plain link.
use bytes::Bytes;
use futures::Stream;
use sea_orm::sea_query::Expr;

use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, Set};
use serde_json::json;
use std::borrow::Cow;

use super::audit::{self, AuditEntry};
use super::keys::{self, AppKeyView, KeyFilter, KeyStatus, KeyType};
use super::page::PageRequest;
use super::{new_id, now, Ctx, Store};
use crate::domain::DownloadToken;
use crate::entity::download_ticket;
use crate::error::{AppError, AppResult};

pub const HEADER: [&str; 6] = ["key", "account", "type", "status", "roles", "created_at"];
const ROWS_PER_CHUNK: u64 = 500;
pub const TICKET_TTL_SECS: i64 = 60;

/// Spreadsheet formula injection guard: a cell that a spreadsheet would evaluate gets a leading `'`.
/// SPEC names `= + - @`; tab and carriage return are guarded too, as OWASP advises.
pub fn neutralise(cell: &str) -> Cow<'_, str> {
    if cell.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        Cow::Owned(format!("'{cell}"))
    } else {
        Cow::Borrowed(cell)
    }
}

fn row(view: &AppKeyView) -> [String; 6] {
    let roles: Vec<&str> = view.roles.iter().map(|r| r.name.as_str()).collect();
    [
        view.key.clone(),
        view.account.clone(),
        match view.key_type {
            KeyType::Internal => "INTERNAL",
            KeyType::External => "EXTERNAL",
        }
        .to_owned(),
        match view.status {
            KeyStatus::Active => "ACTIVE",
            KeyStatus::Inactive => "INACTIVE",
        }
        .to_owned(),
        roles.join(";"),
        view.created_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    ]
}

/// Encodes rows with the `csv` crate (RFC 4180 quoting), optionally preceded by the header.
pub fn encode(views: &[AppKeyView], with_header: bool) -> AppResult<Vec<u8>> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    let fail = |e: csv::Error| AppError::Internal(anyhow::Error::new(e).context("writing CSV"));
    if with_header {
        writer.write_record(HEADER).map_err(fail)?;
    }
    for view in views {
        let cells = row(view);
        writer.write_record(cells.iter().map(|c| neutralise(c).into_owned())).map_err(fail)?;
    }
    writer.into_inner().map_err(|e| AppError::Internal(anyhow::anyhow!("flushing CSV: {e}")))
}

/// Streams the export for an account: the header, then one chunk per page of keys.
pub fn stream(store: Store, account_id: String) -> impl Stream<Item = Result<Bytes, std::io::Error>> {
    let state = (store, account_id, Some(PageRequest { first: ROWS_PER_CHUNK, after: None }), true);
    futures::stream::try_unfold(state, |(store, account_id, page, first_chunk)| async move {
        let Some(page) = page else {
            return Ok(None);
        };
        let paged =
            keys::list_with_access(&store.db, &account_id, &KeyFilter::default(), &page).await.map_err(|e| {
                e.log_if_internal();
                std::io::Error::other("export failed")
            })?;
        let chunk = encode(&paged.items, first_chunk).map_err(|_| std::io::Error::other("export failed"))?;
        let next = match (paged.has_next, paged.items.last()) {
            (true, Some(_)) => Some(PageRequest { first: ROWS_PER_CHUNK, after: paged.last_cursor_id }),
            _ => None,
        };
        Ok(Some((Bytes::from(chunk), (store, account_id, next, false))))
    })
}

/// Issues a single-use ticket valid for `TICKET_TTL_SECS`; the caller's permission was checked by
/// the guard on the mutation.
pub async fn issue_ticket(store: &Store, ctx: &Ctx<'_>) -> AppResult<(DownloadToken, chrono::DateTime<chrono::Utc>)> {
    let token = DownloadToken::generate();
    let expires_at = now() + chrono::Duration::seconds(TICKET_TTL_SECS);
    let txn = store.begin_write().await?;
    let ticket = download_ticket::ActiveModel {
        id: Set(new_id()),
        token_digest: Set(token.digest().as_str().to_owned()),
        account_id: Set(ctx.principal.account_id.clone()),
        actor: Set(ctx.principal.actor()),
        created_at: Set(now()),
        expires_at: Set(expires_at),
        used_at: Set(None),
    }
    .insert(&*txn)
    .await?;
    audit::record(
        &*txn,
        ctx.meta,
        AuditEntry {
            account_id: &ctx.principal.account_id,
            actor: &ctx.principal.actor(),
            action: "export.ticket",
            target: &ticket.id,
            before: None,
            after: Some(json!({ "expiresAt": expires_at })),
        },
    )
    .await?;
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
    if ticket.expires_at <= now() {
        return Err(AppError::Unauthenticated);
    }
    // Conditional update: of two concurrent redemptions (even on two replicas) exactly one wins.
    let claimed = download_ticket::Entity::update_many()
        .col_expr(download_ticket::Column::UsedAt, Expr::value(now()))
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
