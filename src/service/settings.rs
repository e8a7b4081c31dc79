//! Each account's key settings. An account that never changed them has the defaults.
use sea_orm::sea_query::OnConflict;
use sea_orm::{ConnectionTrait, EntityTrait, Set};
use serde_json::json;

use super::{Ctx, Store};
use crate::domain::Days;
use crate::entity::account_setting;
use crate::error::AppResult;

/// VTEX offers 3 or 6 months; 90 days unless the account chooses otherwise.
pub const DEFAULT_RENEWAL_PERIOD_DAYS: u32 = 90;
const MAX_RENEWAL_PERIOD_DAYS: u32 = 3_650;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeySettings {
    /// A token older than this gets a renewal alert.
    pub renewal_period_days: u32,
}

impl Default for KeySettings {
    fn default() -> Self {
        Self { renewal_period_days: DEFAULT_RENEWAL_PERIOD_DAYS }
    }
}

impl KeySettings {
    fn audit_state(&self) -> serde_json::Value {
        json!({ "renewalPeriodDays": self.renewal_period_days })
    }
}

/// What `updateAppKeySettings` may change; `None` keeps the current value.
#[derive(Debug, Clone, Default)]
pub struct SettingsChange {
    pub renewal_period_days: Option<i32>,
}

pub async fn get<C: ConnectionTrait>(db: &C, account_id: &str) -> AppResult<KeySettings> {
    let row = account_setting::Entity::find_by_id(account_id).one(db).await?;
    Ok(row.map_or_else(KeySettings::default, |row| KeySettings {
        renewal_period_days: u32::try_from(row.renewal_period_days).unwrap_or(DEFAULT_RENEWAL_PERIOD_DAYS),
    }))
}

pub async fn update(store: &Store, ctx: &Ctx<'_>, change: &SettingsChange) -> AppResult<KeySettings> {
    let renewal_period = change
        .renewal_period_days
        .map(|days| Days::parse(days, "renewalPeriodDays", MAX_RENEWAL_PERIOD_DAYS))
        .transpose()?;
    let account_id = &ctx.principal.account_id;
    let txn = store.begin_account_write(account_id).await?;
    let before = get(&*txn, account_id).await?;
    let after = KeySettings { renewal_period_days: renewal_period.map_or(before.renewal_period_days, Days::get) };
    if after == before {
        return Ok(before);
    }
    let row = account_setting::ActiveModel {
        account_id: Set(account_id.clone()),
        renewal_period_days: Set(i32::try_from(after.renewal_period_days).unwrap_or(i32::MAX)),
        updated_at: Set(txn.now()),
    };
    account_setting::Entity::insert(row)
        .on_conflict(
            OnConflict::column(account_setting::Column::AccountId)
                .update_columns([account_setting::Column::RenewalPeriodDays, account_setting::Column::UpdatedAt])
                .to_owned(),
        )
        .exec(&*txn)
        .await?;
    ctx.audit(
        &txn,
        "settings.update",
        &ctx.principal.account_name,
        Some(before.audit_state()),
        Some(after.audit_state()),
    )
    .await?;
    // Settings change no credential: caches stay warm.
    txn.commit_without_credential_change().await?;
    Ok(after)
}
