//! Token renewal without downtime: `renew` makes a new token while the previous one keeps working,
//! for a bounded overlap or until `finish_renewal` (the previous token stops) or `undo_renewal`
//! (the new token stops, the previous one stays). Internal keys only; a key never renews itself.
use sea_orm::{ActiveModelTrait, Set};
use serde_json::json;

use super::{expiry_for, holds_leaked_token, locate, pending_renewal, AppKeyView, Located, Viewpoint};
use crate::domain::AppToken;
use crate::entity::app_key;
use crate::error::{AppError, AppResult};
use crate::service::events::audit::Ctx;
use crate::service::identity::roles;
use crate::service::store::Store;
use crate::service::store::WriteTxn;

/// The longest overlap `oldTokenValidFor` may ask for: 90 days.
pub const MAX_OVERLAP_SECS: i64 = 90 * 24 * 60 * 60;

/// A renewed key and its new token, revealed this once.
pub struct RenewedKey {
    pub key: AppKeyView,
    pub token: AppToken,
}

fn renewal_state(view: &AppKeyView) -> serde_json::Value {
    json!({
        "tokenCreatedAt": view.token_created_at,
        "expiresAt": view.expires_at,
        "renewal": view.renewal.map(|r| json!({ "startedAt": r.started_at, "oldTokenExpiresAt": r.old_token_expires_at })),
    })
}

/// Finds an internal key that the caller may rotate: not an external key (only its owner can), not
/// the calling key itself (rotation is done by a person or another key).
async fn rotatable(txn: &WriteTxn, ctx: &Ctx<'_>, at: &Viewpoint, raw_key: &str) -> AppResult<Located> {
    let located = locate(&**txn, &at.account_id, raw_key).await?;
    if !located.internal() {
        return Err(AppError::bad_input(
            "key",
            format!("{} is another account's key; only its owner can renew its token", located.key.key),
        ));
    }
    if ctx.principal.app_key_id() == Some(located.key.id.as_str()) {
        return Err(AppError::NotAllowed(
            "a key cannot renew, finish or undo its own token: use a session or another key".into(),
        ));
    }
    Ok(located)
}

/// What `renewAppKeyToken` asks for.
#[derive(Debug, Clone, Default)]
pub struct Renew {
    /// `Some(0)` stops the previous token now, `Some(n)` after n seconds (at most 90 days), `None`
    /// keeps it until the renewal is finished or undone.
    pub old_token_valid_for_secs: Option<i64>,
    /// The key's new expiry; `None` keeps its expiry (or takes the account's maximum lifetime).
    pub expires_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// Starts a renewal.
pub async fn renew(store: &Store, ctx: &Ctx<'_>, raw_key: &str, request: &Renew) -> AppResult<RenewedKey> {
    let old_token_valid_for_secs = request.old_token_valid_for_secs;
    if let Some(secs) = old_token_valid_for_secs {
        if !(0..=MAX_OVERLAP_SECS).contains(&secs) {
            return Err(AppError::bad_input(
                "input.oldTokenValidFor",
                format!("oldTokenValidFor is a number of seconds from 0 to {MAX_OVERLAP_SECS} (90 days)"),
            ));
        }
    }
    let account_id = &ctx.principal.account_id;
    let token = AppToken::generate();
    let mut txn = store.begin_account_write(account_id).await?;
    let now = txn.now();
    let at = Viewpoint::of(&*txn, account_id, now).await?;
    let located = rotatable(&txn, ctx, &at, raw_key).await?;
    txn.affects_key(&located.key.id);
    if pending_renewal(&located.key, now).is_some() {
        return Err(AppError::Conflict(format!("{} has a renewal pending; finish or undo it first", located.key.key)));
    }
    let expires_at =
        expiry_for(request.expires_at, located.key.expires_at, now, at.settings.max_lifetime_days, "input.expiresAt")?;
    let before = located.clone().view(&*txn, &at).await?;
    // Whoever renews gets a working credential with the key's roles: no escalation through it.
    roles::ensure_can_change_roles(&ctx.principal.resources, &[], &before.roles)?;
    // A leaked token gets no overlap: the new token replaces it at once (the key stays switched off
    // until it is activated).
    let leaked = holds_leaked_token(&located.key);
    let Located { key, access } = located;
    let previous = (key.token_digest.clone(), key.token_created_at);
    let mut active: app_key::ActiveModel = key.into();
    active.token_digest = Set(token.digest().as_str().to_owned());
    active.token_created_at = Set(now);
    if leaked {
        active.previous_token_digest = Set(None);
        active.previous_token_created_at = Set(None);
        active.previous_token_expires_at = Set(None);
        active.renewal_started_at = Set(None);
    } else {
        active.previous_token_digest = Set(Some(previous.0));
        active.previous_token_created_at = Set(Some(previous.1));
        active.previous_token_expires_at =
            Set(old_token_valid_for_secs.map(|secs| now + chrono::Duration::seconds(secs)));
        active.renewal_started_at = Set(Some(now));
    }
    active.expires_at = Set(expires_at);
    active.updated_at = Set(now);
    let after = Located { key: active.update(&*txn).await?, access }.view(&*txn, &at).await?;
    ctx.audit(&txn, "key.renew", &after.key, Some(renewal_state(&before)), Some(renewal_state(&after))).await?;
    txn.commit().await?;
    Ok(RenewedKey { key: after, token })
}

/// Ends a pending renewal: the previous token stops at once.
pub async fn finish_renewal(store: &Store, ctx: &Ctx<'_>, raw_key: &str) -> AppResult<AppKeyView> {
    end_renewal(store, ctx, raw_key, End::Finish).await
}

/// Undoes a pending renewal: the new token stops at once and the previous one stays.
pub async fn undo_renewal(store: &Store, ctx: &Ctx<'_>, raw_key: &str) -> AppResult<AppKeyView> {
    end_renewal(store, ctx, raw_key, End::Undo).await
}

#[derive(Clone, Copy)]
enum End {
    Finish,
    Undo,
}

async fn end_renewal(store: &Store, ctx: &Ctx<'_>, raw_key: &str, end: End) -> AppResult<AppKeyView> {
    let account_id = &ctx.principal.account_id;
    let mut txn = store.begin_account_write(account_id).await?;
    let at = Viewpoint::of(&*txn, account_id, txn.now()).await?;
    let located = rotatable(&txn, ctx, &at, raw_key).await?;
    txn.affects_key(&located.key.id);
    if pending_renewal(&located.key, at.now).is_none() {
        return Err(AppError::Conflict(format!("{} has no renewal pending", located.key.key)));
    }
    let before = located.clone().view(&*txn, &at).await?;
    let Located { key, access } = located;
    let mut active: app_key::ActiveModel = key.clone().into();
    if let End::Undo = end {
        // Back to the previous token, as if the renewal never happened.
        let (Some(digest), Some(made)) = (key.previous_token_digest, key.previous_token_created_at) else {
            return Err(AppError::Internal(anyhow::anyhow!("a pending renewal without its previous token")));
        };
        active.token_digest = Set(digest);
        active.token_created_at = Set(made);
    }
    active.previous_token_digest = Set(None);
    active.previous_token_created_at = Set(None);
    active.previous_token_expires_at = Set(None);
    active.renewal_started_at = Set(None);
    active.updated_at = Set(at.now);
    let after = Located { key: active.update(&*txn).await?, access }.view(&*txn, &at).await?;
    let action = match end {
        End::Finish => "key.renew_finish",
        End::Undo => "key.renew_undo",
    };
    ctx.audit(&txn, action, &after.key, Some(renewal_state(&before)), Some(renewal_state(&after))).await?;
    txn.commit().await?;
    Ok(after)
}
