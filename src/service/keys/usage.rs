//! Last use and inactivity: writing the coalesced last uses (newest wins, whichever replica writes
//! first), the `unusedSince` filter, and deactivating keys unused for longer than the account allows.
use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, ExprTrait, Query};
use sea_orm::{ActiveModelTrait, ColumnTrait, Condition, EntityTrait, QueryFilter, Set};
use serde_json::json;

use super::{effective_status, DeactivationReason, KeyStatus};
use crate::entity::{account_setting, app_key, key_access};
use crate::error::AppResult;
use crate::service::events::audit::RequestMeta;
use crate::service::events::audit::{self, AuditEntry};
use crate::service::store::truncate_chars;
use crate::service::store::Store;

/// One authenticated request of a key in an account, as the hot path noted it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyUse {
    /// The `key_access` row: the key in the account it acted on.
    pub access_id: String,
    pub at: DateTime<Utc>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

/// Writes last uses; a row already holding a newer use (from another replica) keeps it. Changes no
/// credential, so caches stay warm.
pub async fn record_uses(store: &Store, uses: &[KeyUse]) -> AppResult<()> {
    if uses.is_empty() {
        return Ok(());
    }
    let txn = store.begin_write().await?;
    for KeyUse { access_id, at, ip, user_agent } in uses {
        let ip = ip.as_deref().map(|ip| truncate_chars(ip, 64));
        let user_agent = user_agent.as_deref().map(|ua| truncate_chars(ua, 300));
        key_access::Entity::update_many()
            .col_expr(key_access::Column::LastUsedAt, Expr::value(*at))
            .col_expr(key_access::Column::LastUsedIp, Expr::value(ip))
            .col_expr(key_access::Column::LastUsedUserAgent, Expr::value(user_agent))
            .filter(key_access::Column::Id.eq(access_id.as_str()))
            .filter(
                Condition::any()
                    .add(key_access::Column::LastUsedAt.is_null())
                    .add(key_access::Column::LastUsedAt.lt(*at)),
            )
            .exec(&*txn)
            .await?;
    }
    txn.commit_without_credential_change().await
}

/// Keys (rows of `app_keys`) not used since `since` — in `account_id`, or anywhere they may act
/// when `None` — and created before it (a key made later has not had the time to be used).
pub fn unused_since_condition(account_id: Option<&str>, since: DateTime<Utc>) -> Condition {
    let mut used_since = Query::select()
        .expr(Expr::val(1))
        .from_as(key_access::Entity, "recent")
        .and_where(Expr::col(("recent", key_access::Column::AppKeyId)).equals((app_key::Entity, app_key::Column::Id)))
        .and_where(Expr::col(("recent", key_access::Column::LastUsedAt)).gte(since))
        .to_owned();
    if let Some(account_id) = account_id {
        used_since.and_where(Expr::col(("recent", key_access::Column::AccountId)).eq(account_id));
    }
    Condition::all()
        .add(Expr::col((app_key::Entity, app_key::Column::CreatedAt)).lt(since))
        .add(Expr::exists(used_since).not())
}

/// Lock id for the sweep, so that one replica at a time sweeps.
const SWEEP_LOCK_ID: i64 = 0x0061_7070_6b65_7902;

/// Deactivates internal keys unused for longer than their account's `deactivateUnusedAfterDays`
/// (unused anywhere they may act; never used: since creation), each audited as
/// `key.auto_deactivate` by `system`. On PostgreSQL a replica that finds another sweeping skips this
/// round. Returns how many keys it deactivated.
pub async fn deactivate_unused(store: &Store, now: DateTime<Utc>) -> AppResult<usize> {
    let Some(lease) = store.try_lease(SWEEP_LOCK_ID).await? else {
        return Ok(0);
    };
    let accounts = account_setting::Entity::find()
        .filter(account_setting::Column::DeactivateUnusedAfterDays.is_not_null())
        .all(store.db())
        .await?;
    let mut deactivated = 0;
    for settings in accounts {
        let Some(days) = settings.deactivate_unused_after_days.filter(|d| *d > 0) else {
            continue;
        };
        let threshold = now - chrono::Duration::days(i64::from(days));
        deactivated += deactivate_unused_in(store, &settings.account_id, threshold, now).await?;
    }
    lease.release().await?;
    Ok(deactivated)
}

async fn deactivate_unused_in(
    store: &Store,
    account_id: &str,
    threshold: DateTime<Utc>,
    now: DateTime<Utc>,
) -> AppResult<usize> {
    let mut txn = store.begin_account_write(account_id).await?;
    let candidates = app_key::Entity::find()
        .filter(app_key::Column::AccountId.eq(account_id))
        .filter(app_key::Column::Active.eq(true))
        .filter(unused_since_condition(None, threshold))
        .all(&*txn)
        .await?;
    let mut count = 0;
    for key in candidates {
        // Expired keys no longer authenticate; they are left as they are.
        if effective_status(key.active, false, key.expires_at, now) != KeyStatus::Active {
            continue;
        }
        let value = key.key.clone();
        txn.affects_key(&key.id);
        let mut active: app_key::ActiveModel = key.into();
        active.active = Set(false);
        active.deactivation_reason = Set(Some(DeactivationReason::Inactivity.as_str().to_owned()));
        active.updated_at = Set(now);
        active.update(&*txn).await?;
        let entry = AuditEntry {
            account_id,
            actor: "system",
            action: "key.auto_deactivate",
            target: &value,
            before: Some(json!({ "status": "ACTIVE" })),
            after: Some(json!({ "status": "INACTIVE", "unusedSince": threshold })),
        };
        audit::record(&txn, &RequestMeta::default(), entry).await?;
        count += 1;
    }
    if count == 0 {
        return Ok(0);
    }
    txn.commit().await?;
    Ok(count)
}
