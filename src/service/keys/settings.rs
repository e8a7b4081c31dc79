//! Each account's key settings. An account that never changed them has the defaults.
use sea_orm::sea_query::OnConflict;
use sea_orm::{ConnectionTrait, EntityTrait, Set};
use serde_json::json;

use crate::domain::Days;
use crate::entity::account_setting;
use crate::error::AppResult;
use crate::service::events::audit::Ctx;
use crate::service::store::Store;

/// VTEX offers 3 or 6 months; 90 days unless the account chooses otherwise.
pub const DEFAULT_RENEWAL_PERIOD_DAYS: u32 = 90;
pub const DEFAULT_EXPIRY_WARNING_DAYS: u32 = 7;
const MAX_DAYS: u32 = 3_650;
const MAX_WARNING_DAYS: u32 = 365;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeySettings {
    /// A token older than this gets a renewal alert.
    pub renewal_period_days: u32,
    /// The longest a key may live: caps `expiresAt` and supplies it when omitted. `None`: no cap.
    pub max_lifetime_days: Option<u32>,
    /// Internal keys unused for longer are deactivated by the sweeper. `None`: never.
    pub deactivate_unused_after_days: Option<u32>,
    /// How long before its expiry a key is announced as expiring.
    pub expiry_warning_days: u32,
}

impl Default for KeySettings {
    fn default() -> Self {
        Self {
            renewal_period_days: DEFAULT_RENEWAL_PERIOD_DAYS,
            max_lifetime_days: None,
            deactivate_unused_after_days: None,
            expiry_warning_days: DEFAULT_EXPIRY_WARNING_DAYS,
        }
    }
}

impl KeySettings {
    fn audit_state(&self) -> serde_json::Value {
        json!({
            "renewalPeriodDays": self.renewal_period_days,
            "maxLifetimeDays": self.max_lifetime_days,
            "deactivateUnusedAfterDays": self.deactivate_unused_after_days,
            "expiryWarningDays": self.expiry_warning_days,
        })
    }
}

/// What `updateAppKeySettings` may change. `None` keeps the current value; for the settings that
/// can be off, `Some(None)` turns them off.
#[derive(Debug, Clone, Default)]
pub struct SettingsChange {
    pub renewal_period_days: Option<i32>,
    pub max_lifetime_days: Option<Option<i32>>,
    pub deactivate_unused_after_days: Option<Option<i32>>,
    pub expiry_warning_days: Option<i32>,
}

/// A number of days from the input field `input.<what>`.
fn days(raw: Option<i32>, what: &str, max: u32) -> AppResult<Option<u32>> {
    let parsed =
        raw.map(|days| Days::parse(days, what, max)).transpose().map_err(|e| e.at(&format!("input.{what}")))?;
    Ok(parsed.map(Days::get))
}

fn stored(days: u32) -> i32 {
    i32::try_from(days).unwrap_or(i32::MAX)
}

fn loaded(days: i32) -> Option<u32> {
    u32::try_from(days).ok()
}

pub async fn get(store: &Store, account_id: &str) -> AppResult<KeySettings> {
    get_in(store.db(), account_id).await
}

/// The account's settings, read through `db` (a transaction's view).
pub(in crate::service) async fn get_in<C: ConnectionTrait>(db: &C, account_id: &str) -> AppResult<KeySettings> {
    let row = account_setting::Entity::find_by_id(account_id).one(db).await?;
    Ok(row.as_ref().map(from_row).unwrap_or_default())
}

/// The settings room's part of the store: accounts' settings as last read, with the change
/// sequence read before them.
struct SettingsCache(moka::sync::Cache<String, (u64, KeySettings)>);

impl Default for SettingsCache {
    fn default() -> Self {
        Self(moka::sync::Cache::new(100_000))
    }
}

/// The account's settings from this replica's memory when no change to the account was committed
/// since they were read (the change stamps, `versions`, reach every replica), else from the database.
pub async fn cached(store: &Store, account_id: &str) -> AppResult<KeySettings> {
    let versions = store.versions();
    if let Some((since, settings)) = store.part::<SettingsCache>().0.get(account_id) {
        if versions.unchanged_since(since, account_id, None) {
            return Ok(settings);
        }
    }
    let since = versions.snapshot();
    let settings = get_in(store.db(), account_id).await?;
    store.part::<SettingsCache>().0.insert(account_id.to_owned(), (since, settings));
    Ok(settings)
}

/// The settings a stored row holds (out-of-range values fall back to the defaults).
pub fn from_row(row: &account_setting::Model) -> KeySettings {
    let defaults = KeySettings::default();
    KeySettings {
        renewal_period_days: loaded(row.renewal_period_days).unwrap_or(defaults.renewal_period_days),
        max_lifetime_days: row.max_lifetime_days.and_then(loaded),
        deactivate_unused_after_days: row.deactivate_unused_after_days.and_then(loaded),
        expiry_warning_days: loaded(row.expiry_warning_days).unwrap_or(defaults.expiry_warning_days),
    }
}

pub async fn update(store: &Store, ctx: &Ctx<'_>, change: &SettingsChange) -> AppResult<KeySettings> {
    let renewal_period = days(change.renewal_period_days, "renewalPeriodDays", MAX_DAYS)?;
    let max_lifetime = change.max_lifetime_days.map(|raw| days(raw, "maxLifetimeDays", MAX_DAYS)).transpose()?;
    let unused =
        change.deactivate_unused_after_days.map(|raw| days(raw, "deactivateUnusedAfterDays", MAX_DAYS)).transpose()?;
    let warning = days(change.expiry_warning_days, "expiryWarningDays", MAX_WARNING_DAYS)?;
    let account_id = &ctx.principal.account_id;
    let txn = store.begin_account_write(account_id).await?;
    let before = get_in(&*txn, account_id).await?;
    let after = KeySettings {
        renewal_period_days: renewal_period.unwrap_or(before.renewal_period_days),
        max_lifetime_days: max_lifetime.unwrap_or(before.max_lifetime_days),
        deactivate_unused_after_days: unused.unwrap_or(before.deactivate_unused_after_days),
        expiry_warning_days: warning.unwrap_or(before.expiry_warning_days),
    };
    if after == before {
        return Ok(before);
    }
    let row = account_setting::ActiveModel {
        account_id: Set(account_id.clone()),
        renewal_period_days: Set(stored(after.renewal_period_days)),
        max_lifetime_days: Set(after.max_lifetime_days.map(stored)),
        deactivate_unused_after_days: Set(after.deactivate_unused_after_days.map(stored)),
        expiry_warning_days: Set(stored(after.expiry_warning_days)),
        updated_at: Set(txn.now()),
    };
    account_setting::Entity::insert(row)
        .on_conflict(
            OnConflict::column(account_setting::Column::AccountId)
                .update_columns([
                    account_setting::Column::RenewalPeriodDays,
                    account_setting::Column::MaxLifetimeDays,
                    account_setting::Column::DeactivateUnusedAfterDays,
                    account_setting::Column::ExpiryWarningDays,
                    account_setting::Column::UpdatedAt,
                ])
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
    // A plain commit: it stamps the account, so every replica's cached settings of it go too.
    txn.commit().await?;
    Ok(after)
}
