//! Application keys: what a key is as one account sees it, and the rules every part of the product
//! shares about it. The work is split by job:
//!
//! - `listing`: the "Application Keys" and "My Keys" pages and `appKey(key)`;
//! - `changes`: every mutation (generate, add external, roles, activate/deactivate, delete);
//! - `renewal`: renewing a key's token, finishing and undoing a renewal;
//! - `authenticate`: whether a key and token may act on an account, as a plain `KeyGrant`;
//! - `usage`: last uses and deactivating unused keys; `announce`: the time-based key events;
//! - `meter`: decisions counted by outcome per hour and day (each flush adds to both), permission use, retention;
//! - `policy`: a key's policy in an account, its credits charged, refilled and announced;
//! - `settings`: an account's key settings; `export`: the CSV and XLSX exports.
//!
//! A key is owned by one account (`app_keys`); each account it may act on has one `key_access` row
//! (internal for the owner, external elsewhere) holding its roles there.
pub mod announce;
mod authenticate;
mod changes;
pub mod export;
mod leaks;
mod listing;
pub mod meter;
pub mod policy;
mod renewal;
mod row;
pub mod settings;
mod usage;

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, ExprTrait, Query};
use sea_orm::{ColumnTrait, Condition, ConnectionTrait, EntityTrait, QueryFilter};
use serde_json::json;
use std::collections::{BTreeSet, HashMap};

pub use crate::service::store::revoked::Reported;
pub use authenticate::{authenticate, KeyGrant, Refused};
pub use changes::{
    activate, add_external, change_roles, deactivate, delete, generate, GeneratedKey, NewKey, RolesChange,
};
pub use leaks::{report_leaked, LeakReport};
pub use listing::{
    cursor_of, get, get_by_id, list, listing_statements, BuiltPage, KeyFilter, KeyOrder, Lister, Listing,
};
pub use renewal::{finish_renewal, renew, undo_renewal, Renew, RenewedKey, MAX_OVERLAP_SECS};
pub use usage::{deactivate_unused, record_uses, KeyUse};

use crate::domain::AppKeyValue;
use crate::entity::{account, app_key, key_access, key_access_role, role};
use crate::error::{AppError, AppResult};
use crate::service::identity::roles::{self, RoleView};
use settings::KeySettings;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyType {
    Internal,
    External,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyStatus {
    Active,
    Inactive,
    Expired,
}

impl KeyStatus {
    /// The name the API, the export and the audit log use.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyStatus::Active => "ACTIVE",
            KeyStatus::Inactive => "INACTIVE",
            KeyStatus::Expired => "EXPIRED",
        }
    }

    /// Why a key in this status may not act (for the server's log).
    pub fn cause(self) -> &'static str {
        match self {
            KeyStatus::Active => "active",
            KeyStatus::Inactive => "the key is inactive",
            KeyStatus::Expired => "the key has expired",
        }
    }
}

/// Why a key was switched off at its owner (`app_keys.deactivation_reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeactivationReason {
    /// By a person or a key (`deactivateAppKey`); also a removed external key, and keys switched
    /// off before reasons were kept.
    Manual,
    /// By the sweeper: unused for longer than the account's `deactivateUnusedAfterDays`.
    Inactivity,
    /// Its token was reported leaked (secret scanning) or revoked by whoever held it.
    Leaked,
}

impl DeactivationReason {
    /// The stored form, which the API shows too.
    pub fn as_str(self) -> &'static str {
        match self {
            DeactivationReason::Manual => "MANUAL",
            DeactivationReason::Inactivity => "INACTIVITY",
            DeactivationReason::Leaked => "LEAKED",
        }
    }

    /// From the stored form; anything else (NULL included) is `Manual`.
    pub fn stored(raw: Option<&str>) -> Self {
        match raw {
            Some("INACTIVITY") => DeactivationReason::Inactivity,
            Some("LEAKED") => DeactivationReason::Leaked,
            _ => DeactivationReason::Manual,
        }
    }
}

/// Whether a key switched off as leaked still holds the leaked token: it may be activated only once
/// a renewal has replaced it, and that renewal keeps no overlap.
pub fn holds_leaked_token(key: &app_key::Model) -> bool {
    key.deactivation_reason.as_deref() == Some(DeactivationReason::Leaked.as_str())
        && key.leaked_at.is_some_and(|at| key.token_created_at <= at)
}

/// A leak reported of a key: when, where and by whom.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leak {
    pub at: DateTime<Utc>,
    pub url: Option<String>,
    pub source: Option<String>,
}

/// A key's effective status in one account: EXPIRED once past its expiry (nothing but a renewal
/// with a new expiry brings it back); otherwise ACTIVE when active at its owner and, where it is
/// external, not removed there. `status_condition` is its SQL twin.
pub fn effective_status(
    active_at_owner: bool,
    removed_here: bool,
    expires_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> KeyStatus {
    if expires_at.is_some_and(|at| at <= now) {
        KeyStatus::Expired
    } else if active_at_owner && !removed_here {
        KeyStatus::Active
    } else {
        KeyStatus::Inactive
    }
}

/// The expiry a key gets at generation or renewal. An expiry in the past is refused, and so is one
/// beyond the account's maximum lifetime, which also supplies the expiry when none is asked for;
/// without either, the key keeps `current` (none for a new key).
pub fn expiry_for(
    requested: Option<DateTime<Utc>>,
    current: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    max_lifetime_days: Option<u32>,
    field: &str,
) -> AppResult<Option<DateTime<Utc>>> {
    let latest = max_lifetime_days.map(|days| now + chrono::Duration::days(i64::from(days)));
    match (requested, latest) {
        (Some(at), _) if at <= now => Err(AppError::bad_input(field, "expiresAt must be in the future")),
        (Some(at), Some(latest)) if at > latest => Err(AppError::bad_input(
            field,
            format!(
                "expiresAt is at most {} days ahead (this account's maxLifetimeDays); the latest allowed is {}",
                max_lifetime_days.unwrap_or_default(),
                crate::domain::instant::to_second(latest)
            ),
        )),
        (Some(at), _) => Ok(Some(at)),
        (None, Some(latest)) => Ok(Some(latest)),
        (None, None) => Ok(current),
    }
}

/// A key's label as an account sees it: only its owner account sees it. Another account's label is
/// never shown, sorted by, searched or exported; `visible_label_search` and `visible_label_matches`
/// are its SQL twins (over `app_keys` joined with `key_access`).
pub fn visible_label<T>(external: bool, label: T) -> Option<T> {
    (!external).then_some(label)
}

/// The lower-cased label an account may sort by: its own keys' (`label_search`), `''` for others'.
pub(super) fn visible_label_search() -> Expr {
    Expr::case(Expr::col((key_access::Entity, key_access::Column::External)).eq(true), "")
        .finally(Expr::col((app_key::Entity, app_key::Column::LabelSearch)))
        .into()
}

/// The account's own keys whose lower-cased label is `LIKE pattern`.
pub(super) fn visible_label_matches(pattern: sea_orm::sea_query::LikeExpr) -> Condition {
    Condition::all()
        .add(key_access::Column::External.eq(false))
        .add(Expr::col((app_key::Entity, app_key::Column::LabelSearch)).like(pattern))
}

/// "Has access": effectively active here and holding at least one role here. Only such a key can
/// make API requests. `has_roles` is the SQL twin of its second half.
pub fn has_access(status: KeyStatus, roles_here: usize) -> bool {
    status == KeyStatus::Active && roles_here > 0
}

/// The SQL twin of `effective_status`, over `app_keys` joined with `key_access` (`internal_only`:
/// over `app_keys` alone, for keys that are never removed from their own account).
pub(super) fn status_condition(status: KeyStatus, now: DateTime<Utc>, internal_only: bool) -> Condition {
    let expires = || Expr::col((app_key::Entity, app_key::Column::ExpiresAt));
    let expired = Condition::all().add(expires().is_not_null()).add(expires().lte(now));
    let mut switched_on = Condition::all().add(Expr::col((app_key::Entity, app_key::Column::Active)).eq(true));
    if !internal_only {
        switched_on = switched_on.add(Expr::col((key_access::Entity, key_access::Column::Removed)).eq(false));
    }
    match status {
        KeyStatus::Expired => expired,
        KeyStatus::Active => Condition::all().add(expired.not()).add(switched_on),
        KeyStatus::Inactive => Condition::all().add(expired.not()).add(switched_on.not()),
    }
}

/// The SQL twin of "holds at least one role here": a correlated EXISTS, answered from the primary
/// key's index.
pub(crate) fn has_roles() -> Expr {
    Expr::exists(
        Query::select()
            .expr(Expr::val(1))
            .from(key_access_role::Entity)
            .and_where(
                Expr::col((key_access_role::Entity, key_access_role::Column::KeyAccessId))
                    .equals((key_access::Entity, key_access::Column::Id)),
            )
            .to_owned(),
    )
}

/// A renewal in progress: both the previous and the new token authenticate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Renewal {
    pub started_at: DateTime<Utc>,
    /// When the previous token stops by itself; `None`: when the renewal is finished or undone.
    pub old_token_expires_at: Option<DateTime<Utc>>,
}

/// The key's pending renewal, if any: one was started and its previous token has not run out. An
/// overlap that ran out is over as if finished.
pub fn pending_renewal(key: &app_key::Model, now: DateTime<Utc>) -> Option<Renewal> {
    key.previous_token_digest.as_ref()?;
    renewal_pending(key.renewal_started_at, key.previous_token_expires_at, now)
}

/// `pending_renewal` from the renewal's two timestamps (a renewal always keeps its previous token).
pub fn renewal_pending(
    started_at: Option<DateTime<Utc>>,
    old_token_expires_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Option<Renewal> {
    let started_at = started_at?;
    if old_token_expires_at.is_some_and(|until| until <= now) {
        return None;
    }
    Some(Renewal { started_at, old_token_expires_at })
}

/// How urgently a key's token should be renewed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RenewalAlert {
    None,
    /// The token is older than the account's renewal period.
    Recommended,
    /// The token is older than the renewal period plus `HIGHLY_RECOMMENDED_AFTER_DAYS`.
    HighlyRecommended,
}

/// Days past the renewal period after which renewal becomes highly recommended.
pub const HIGHLY_RECOMMENDED_AFTER_DAYS: i64 = 90;

/// The alert for a token made at `token_created_at`. `renewal_alert_condition` is its SQL twin.
pub fn renewal_alert(token_created_at: DateTime<Utc>, now: DateTime<Utc>, period_days: u32) -> RenewalAlert {
    let (recommended, highly) = alert_thresholds(now, period_days);
    if token_created_at < highly {
        RenewalAlert::HighlyRecommended
    } else if token_created_at < recommended {
        RenewalAlert::Recommended
    } else {
        RenewalAlert::None
    }
}

/// Tokens made before the first instant get RECOMMENDED, before the second HIGHLY_RECOMMENDED.
fn alert_thresholds(now: DateTime<Utc>, period_days: u32) -> (DateTime<Utc>, DateTime<Utc>) {
    let recommended = now - chrono::Duration::days(i64::from(period_days));
    (recommended, recommended - chrono::Duration::days(HIGHLY_RECOMMENDED_AFTER_DAYS))
}

/// The SQL twin of "`renewal_alert` is not NONE": the token is older than the renewal period (the
/// sweeper's `app_key.renewal_due` uses it, so the event and the alert turn at the same instant).
pub(super) fn renewal_due_condition(now: DateTime<Utc>, period_days: u32) -> Condition {
    renewal_alert_condition(RenewalAlert::None, now, period_days).not()
}

/// The SQL twin of `renewal_alert`, over `app_keys`.
fn renewal_alert_condition(alert: RenewalAlert, now: DateTime<Utc>, period_days: u32) -> Condition {
    let (recommended, highly) = alert_thresholds(now, period_days);
    let made = || Expr::col((app_key::Entity, app_key::Column::TokenCreatedAt));
    match alert {
        RenewalAlert::None => Condition::all().add(made().gte(recommended)),
        RenewalAlert::Recommended => Condition::all().add(made().lt(recommended)).add(made().gte(highly)),
        RenewalAlert::HighlyRecommended => Condition::all().add(made().lt(highly)),
    }
}

/// Where keys are looked at from: the account, the time, and the account's settings that shape a
/// view (the renewal period behind alerts).
#[derive(Debug, Clone)]
pub(crate) struct Viewpoint {
    pub account_id: String,
    pub now: DateTime<Utc>,
    pub settings: KeySettings,
    /// The account's name, when the caller knows it (its own keys then need no owner lookup).
    pub account_name: Option<String>,
    /// The resource catalogue, when the caller has it from memory (roles' resources then need no
    /// catalogue read).
    pub catalogue: Option<std::sync::Arc<Vec<roles::ResourceView>>>,
}

impl Viewpoint {
    /// Everything read through `db` (inside a write: what the transaction sees).
    pub async fn of<C: ConnectionTrait>(db: &C, account_id: &str, now: DateTime<Utc>) -> AppResult<Self> {
        Ok(Self {
            account_id: account_id.to_owned(),
            now,
            settings: settings::get_in(db, account_id).await?,
            account_name: None,
            catalogue: None,
        })
    }

    /// For reads: the settings and the catalogue from memory when current, the name from the caller.
    pub async fn cached(
        store: &crate::service::store::Store,
        account_id: &str,
        account_name: &str,
        now: DateTime<Utc>,
    ) -> AppResult<Self> {
        Ok(Self {
            account_id: account_id.to_owned(),
            now,
            settings: settings::cached(store, account_id).await?,
            account_name: Some(account_name.to_owned()),
            catalogue: Some(roles::cached_catalogue(store).await?),
        })
    }
}

/// A key as seen from one account.
#[derive(Debug, Clone)]
pub struct AppKeyView {
    pub id: String,
    /// The key's access row in the viewing account: the listings' keyset.
    pub access_id: String,
    pub key: String,
    pub key_type: KeyType,
    /// The managing (owner) account's name.
    pub account: String,
    /// Only for the account's own keys: another account's label is never shown.
    pub label: Option<String>,
    pub status: KeyStatus,
    pub roles: Vec<RoleView>,
    pub created_at: DateTime<Utc>,
    pub has_access: bool,
    pub token_created_at: DateTime<Utc>,
    pub renewal: Option<Renewal>,
    pub renewal_alert: RenewalAlert,
    pub expires_at: Option<DateTime<Utc>>,
    /// The last authenticated request of the key in this account.
    pub last_use: Option<LastUse>,
    /// Who generated it (a user's email or a key), for the account's own keys only.
    pub created_by: Option<String>,
    /// The last change to the key, or to its access in this account.
    pub updated_at: DateTime<Utc>,
    /// Why the key is switched off here; `None` while it is switched on (an expired key that was
    /// never deactivated has none either).
    pub deactivation_reason: Option<DeactivationReason>,
    /// The last leak reported of the key, for its owner account only.
    pub leak: Option<Leak>,
}

/// When, from where and with which client a key was last used in one account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastUse {
    pub at: DateTime<Utc>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

/// `created_by` as stored (`user:<email>`, `appkey:<key>`) shown as the email or key alone.
fn creator(actor: &str) -> String {
    actor.split_once(':').map_or(actor, |(_, who)| who).to_owned()
}

impl AppKeyView {
    /// What the audit log records of a key's state: its status and roles (by name) here.
    fn audit_state(&self) -> serde_json::Value {
        let roles: Vec<&str> = self.roles.iter().map(|r| r.name.as_str()).collect();
        json!({ "status": self.status.as_str(), "roles": roles })
    }
}

/// Builds views of keys as seen from `account_id`, loading owners' names and roles in bulk.
async fn views<C: ConnectionTrait>(
    db: &C,
    at: &Viewpoint,
    keys: Vec<app_key::Model>,
    accesses: Vec<key_access::Model>,
) -> AppResult<Vec<AppKeyView>> {
    // The account's own name may be known; only other owners are looked up.
    let known = at.account_name.as_ref().map(|name| (at.account_id.clone(), name.clone()));
    let owner_ids: BTreeSet<&str> = keys
        .iter()
        .map(|k| k.account_id.as_str())
        .filter(|id| known.as_ref().is_none_or(|(own, _)| own != id))
        .collect();
    let mut owners: HashMap<String, String> = if owner_ids.is_empty() {
        HashMap::new()
    } else {
        account::Entity::find()
            .filter(account::Column::Id.is_in(owner_ids))
            .all(db)
            .await?
            .into_iter()
            .map(|a| (a.id, a.name))
            .collect()
    };
    owners.extend(known);
    let mut roles_by_access = roles_of_accesses(db, &accesses, at.catalogue.as_deref()).await?;
    let access_by_key: HashMap<&str, &key_access::Model> =
        accesses.iter().map(|a| (a.app_key_id.as_str(), a)).collect();
    Ok(keys
        .into_iter()
        .map(|k| {
            let access = access_by_key.get(k.id.as_str()).copied();
            let roles = access.and_then(|a| roles_by_access.remove(&a.id)).unwrap_or_default();
            let owner = owners.get(&k.account_id).cloned().unwrap_or_default();
            view_of(at, k.into(), access.map(AccessFacts::from), owner, roles)
        })
        .collect())
}

/// What a view shows of a key: read from its row, or from a listing's page (which reads only this).
struct KeyFacts {
    id: String,
    key: String,
    /// The owner account.
    account_id: String,
    label: String,
    active: bool,
    created_at: DateTime<Utc>,
    created_by: String,
    token_created_at: DateTime<Utc>,
    /// Whether the key keeps a previous token (a renewal in progress, or one that ran out).
    previous_token: bool,
    renewal_started_at: Option<DateTime<Utc>>,
    previous_token_expires_at: Option<DateTime<Utc>>,
    expires_at: Option<DateTime<Utc>>,
    updated_at: DateTime<Utc>,
    deactivation_reason: Option<String>,
    leak: Option<Leak>,
}

impl From<app_key::Model> for KeyFacts {
    fn from(k: app_key::Model) -> Self {
        Self {
            leak: k.leaked_at.map(|at| Leak { at, url: k.leak_url, source: k.leak_source }),
            deactivation_reason: k.deactivation_reason,
            previous_token: k.previous_token_digest.is_some(),
            id: k.id,
            key: k.key,
            account_id: k.account_id,
            label: k.label,
            active: k.active,
            created_at: k.created_at,
            created_by: k.created_by,
            token_created_at: k.token_created_at,
            renewal_started_at: k.renewal_started_at,
            previous_token_expires_at: k.previous_token_expires_at,
            expires_at: k.expires_at,
            updated_at: k.updated_at,
        }
    }
}

/// What a view shows of a key's access row in the viewing account.
struct AccessFacts {
    id: String,
    removed: bool,
    updated_at: DateTime<Utc>,
    last_use: Option<LastUse>,
}

impl From<&key_access::Model> for AccessFacts {
    fn from(a: &key_access::Model) -> Self {
        Self {
            id: a.id.clone(),
            removed: a.removed,
            updated_at: a.updated_at,
            last_use: a.last_used_at.map(|at| LastUse {
                at,
                ip: a.last_used_ip.clone(),
                user_agent: a.last_used_user_agent.clone(),
            }),
        }
    }
}

/// A key's view from what was read of it: its access here (none: removed from this account), its
/// owner's name and its roles here in display order.
fn view_of(
    at: &Viewpoint,
    k: KeyFacts,
    access: Option<AccessFacts>,
    owner: String,
    roles: Vec<RoleView>,
) -> AppKeyView {
    let internal = k.account_id == at.account_id;
    let status = effective_status(k.active, access.as_ref().is_none_or(|a| a.removed), k.expires_at, at.now);
    let renewal = if k.previous_token {
        renewal_pending(k.renewal_started_at, k.previous_token_expires_at, at.now)
    } else {
        None
    };
    let updated_at = access.as_ref().map_or(k.updated_at, |a| Ord::max(a.updated_at, k.updated_at));
    let removed_here = access.as_ref().is_none_or(|a| a.removed);
    let deactivation_reason = if !k.active {
        Some(DeactivationReason::stored(k.deactivation_reason.as_deref()))
    } else {
        removed_here.then_some(DeactivationReason::Manual)
    };
    let (access_id, last_use) = access.map(|a| (a.id, a.last_use)).unwrap_or_default();
    AppKeyView {
        access_id,
        id: k.id,
        account: owner,
        label: visible_label(!internal, k.label),
        created_by: internal.then(|| creator(&k.created_by)),
        key: k.key,
        key_type: if internal { KeyType::Internal } else { KeyType::External },
        status,
        has_access: has_access(status, roles.len()),
        roles,
        created_at: k.created_at,
        token_created_at: k.token_created_at,
        renewal,
        renewal_alert: renewal_alert(k.token_created_at, at.now, at.settings.renewal_period_days),
        expires_at: k.expires_at,
        last_use,
        updated_at,
        deactivation_reason,
        leak: if internal { k.leak } else { None },
    }
}

/// Each access's roles, in display order: the links and their roles in one query.
async fn roles_of_accesses<C: ConnectionTrait>(
    db: &C,
    accesses: &[key_access::Model],
    catalogue: Option<&Vec<roles::ResourceView>>,
) -> AppResult<HashMap<String, Vec<RoleView>>> {
    let ids: Vec<&str> = accesses.iter().map(|a| a.id.as_str()).collect();
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let found = key_access_role::Entity::find()
        .filter(key_access_role::Column::KeyAccessId.is_in(ids))
        .find_also_related(role::Entity)
        .all(db)
        .await?;
    let mut rows: HashMap<String, role::Model> = HashMap::new();
    let mut links = Vec::with_capacity(found.len());
    for (link, role) in found {
        if let Some(role) = role {
            rows.entry(role.id.clone()).or_insert(role);
        }
        links.push(link);
    }
    let by_id: HashMap<String, RoleView> = roles::views_with(db, rows.into_values().collect(), catalogue)
        .await?
        .into_iter()
        .map(|r| (r.id.clone(), r))
        .collect();
    let mut out: HashMap<String, Vec<RoleView>> = HashMap::new();
    for link in links {
        if let Some(view) = by_id.get(&link.role_id) {
            out.entry(link.key_access_id).or_default().push(view.clone());
        }
    }
    for roles in out.values_mut() {
        roles::sort_for_display(roles);
    }
    Ok(out)
}

/// A key and its access in this account, as a mutation needs them.
#[derive(Clone)]
struct Located {
    key: app_key::Model,
    access: key_access::Model,
}

impl Located {
    fn internal(&self) -> bool {
        !self.access.external
    }

    async fn view<C: ConnectionTrait>(self, db: &C, at: &Viewpoint) -> AppResult<AppKeyView> {
        Ok(views(db, at, vec![self.key], vec![self.access]).await?.remove(0))
    }
}

async fn find_key<C: ConnectionTrait>(db: &C, key: &AppKeyValue) -> AppResult<Option<app_key::Model>> {
    Ok(app_key::Entity::find().filter(app_key::Column::Key.eq(key.as_str())).one(db).await?)
}

async fn find_access<C: ConnectionTrait>(
    db: &C,
    key_id: &str,
    account_id: &str,
) -> AppResult<Option<key_access::Model>> {
    Ok(key_access::Entity::find()
        .filter(key_access::Column::AppKeyId.eq(key_id))
        .filter(key_access::Column::AccountId.eq(account_id))
        .one(db)
        .await?)
}

/// The key as known to this account: its own key, or an external key it has added (even if removed).
async fn locate<C: ConnectionTrait>(db: &C, account_id: &str, raw_key: &str) -> AppResult<Located> {
    let not_found = || AppError::NotFound(format!("no application key {raw_key:?} in this account"));
    let value = AppKeyValue::parse(raw_key).map_err(|e| e.at("key"))?;
    let key = find_key(db, &value).await?.ok_or_else(not_found)?;
    let access = find_access(db, &key.id, account_id).await?.ok_or_else(not_found)?;
    Ok(Located { key, access })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_exactly_the_renewal_period_old_needs_no_renewal_and_a_microsecond_older_does() {
        let made = chrono::DateTime::parse_from_rfc3339("2026-01-01T00:00:00.000001Z").expect("an instant").to_utc();
        let period = made + chrono::Duration::days(90);
        assert_eq!(renewal_alert(made, period, 90), RenewalAlert::None);
        assert_eq!(renewal_alert(made, period + chrono::Duration::microseconds(1), 90), RenewalAlert::Recommended);
    }

    #[test]
    fn a_key_is_active_only_when_active_at_its_owner_and_not_removed_here() {
        let now = Utc::now();
        assert_eq!(effective_status(true, false, None, now), KeyStatus::Active);
        assert_eq!(effective_status(false, false, None, now), KeyStatus::Inactive);
        assert_eq!(effective_status(true, true, None, now), KeyStatus::Inactive);
        assert_eq!(effective_status(false, true, None, now), KeyStatus::Inactive);
    }

    #[test]
    fn a_key_past_its_expiry_is_expired_whatever_else_holds() {
        let now = Utc::now();
        let later = Some(now + chrono::Duration::seconds(1));
        assert_eq!(effective_status(true, false, later, now), KeyStatus::Active);
        assert_eq!(effective_status(true, false, Some(now), now), KeyStatus::Expired);
        assert_eq!(effective_status(false, true, Some(now), now), KeyStatus::Expired);
    }

    #[test]
    fn expiry_is_in_the_future_within_the_maximum_lifetime() {
        let now = Utc::now();
        let days = |n: i64| now + chrono::Duration::days(n);
        assert_eq!(expiry_for(None, None, now, None, "f").ok(), Some(None));
        assert_eq!(expiry_for(None, Some(days(5)), now, None, "f").ok(), Some(Some(days(5))), "kept");
        assert_eq!(expiry_for(Some(days(2)), None, now, None, "f").ok(), Some(Some(days(2))));
        assert_eq!(expiry_for(None, None, now, Some(1), "f").ok(), Some(Some(days(1))), "supplied by the cap");
        assert_eq!(expiry_for(Some(days(1)), None, now, Some(1), "f").ok(), Some(Some(days(1))));
        assert!(expiry_for(Some(days(2)), None, now, Some(1), "f").is_err(), "beyond the cap");
        assert!(expiry_for(Some(now), None, now, None, "f").is_err(), "not in the future");
        assert!(expiry_for(Some(days(-1)), None, now, Some(10), "f").is_err());
    }

    #[test]
    fn the_creator_is_shown_without_its_kind() {
        assert_eq!(creator("user:ann@example.com"), "ann@example.com");
        assert_eq!(creator("appkey:appkey-main-ABCDEF"), "appkey-main-ABCDEF");
        assert_eq!(creator("system"), "system");
    }

    #[test]
    fn renewal_alerts_start_after_the_period_and_rise_ninety_days_later() {
        let now = Utc::now();
        let days = |n: i64| now - chrono::Duration::days(n);
        assert_eq!(renewal_alert(now, now, 90), RenewalAlert::None);
        assert_eq!(renewal_alert(days(90), now, 90), RenewalAlert::None);
        assert_eq!(renewal_alert(days(91), now, 90), RenewalAlert::Recommended);
        assert_eq!(renewal_alert(days(180), now, 90), RenewalAlert::Recommended);
        assert_eq!(renewal_alert(days(181), now, 90), RenewalAlert::HighlyRecommended);
        assert_eq!(renewal_alert(days(31), now, 30), RenewalAlert::Recommended);
    }

    #[test]
    fn access_needs_an_active_status_and_a_role() {
        assert!(has_access(KeyStatus::Active, 1));
        assert!(!has_access(KeyStatus::Active, 0));
        assert!(!has_access(KeyStatus::Inactive, 3));
    }
}
