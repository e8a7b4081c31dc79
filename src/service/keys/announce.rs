//! The time-based key events (expiring, expired, renewal due), produced once each per key and
//! anchor by the sweeper, one replica at a time, into the outbox.
use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{ColumnTrait, Condition, EntityTrait, QueryFilter};
use serde_json::json;
use std::collections::HashMap;

use super::{renewal_due_condition, settings, status_condition, KeyStatus};
use crate::entity::{account, account_setting, app_key};
use crate::error::AppResult;
use crate::service::events::outbox::record;
use crate::service::events::EventType;
use crate::service::store::Store;

/// Lock id for announcing time-based events, so that one replica at a time does it.
const ANNOUNCE_LOCK_ID: i64 = 0x0061_7070_6b65_7903;

/// Produces the time-based events that are due at `now`, each once per key and anchor (an expiry
/// moved or a token renewed makes a new one due): `app_key.expiring` within the account's
/// `expiryWarningDays` of `expiresAt`, `app_key.expired` once it passed, `app_key.renewal_due` once the
/// token is older than `renewalPeriodDays`. Only active internal keys are announced as expiring or due;
/// any key's expiry is announced. Returns how many events it wrote.
pub async fn announce_due(store: &Store, now: DateTime<Utc>) -> AppResult<usize> {
    let Some(lease) = store.try_lease(ANNOUNCE_LOCK_ID).await? else {
        return Ok(0);
    };
    let settings: HashMap<String, account_setting::Model> =
        account_setting::Entity::find().all(store.db()).await?.into_iter().map(|s| (s.account_id.clone(), s)).collect();
    let accounts = account::Entity::find().all(store.db()).await?;
    let mut announced = 0;
    for account in accounts {
        let rules = settings.get(&account.id).map(settings::from_row).unwrap_or_default();
        announced += announce_in(store, &account.id, rules, now).await?;
    }
    lease.release().await?;
    Ok(announced)
}

/// Which time-based event, about which anchor column, marked in which column.
struct Due {
    event_type: EventType,
    anchor: app_key::Column,
    mark: app_key::Column,
    condition: Condition,
}

async fn announce_in(
    store: &Store,
    account_id: &str,
    rules: settings::KeySettings,
    now: DateTime<Utc>,
) -> AppResult<usize> {
    let warning = chrono::Duration::days(i64::from(rules.expiry_warning_days));
    let dues = [
        Due {
            event_type: EventType::Expired,
            anchor: app_key::Column::ExpiresAt,
            mark: app_key::Column::ExpiredAnnouncedFor,
            condition: status_condition(KeyStatus::Expired, now, true),
        },
        Due {
            event_type: EventType::Expiring,
            anchor: app_key::Column::ExpiresAt,
            mark: app_key::Column::ExpiringAnnouncedFor,
            condition: Condition::all()
                .add(status_condition(KeyStatus::Active, now, true))
                .add(app_key::Column::ExpiresAt.lte(now + warning)),
        },
        Due {
            event_type: EventType::RenewalDue,
            anchor: app_key::Column::TokenCreatedAt,
            mark: app_key::Column::RenewalDueAnnouncedFor,
            condition: Condition::all()
                .add(status_condition(KeyStatus::Active, now, true))
                .add(renewal_due_condition(now, rules.renewal_period_days)),
        },
    ];
    // A due event's keys: this account's, meeting the condition, not yet announced for the anchor.
    let due_keys = |due: &Due| {
        app_key::Entity::find().filter(app_key::Column::AccountId.eq(account_id)).filter(due.condition.clone()).filter(
            Condition::any()
                .add(due.mark.is_null())
                .add(Expr::col((app_key::Entity, due.mark)).ne(Expr::col((app_key::Entity, due.anchor)))),
        )
    };
    // Read first, outside any write: most rounds find nothing.
    let mut any = false;
    for due in &dues {
        any |= due_keys(due).one(store.db()).await?.is_some();
    }
    if !any {
        return Ok(0);
    }
    let txn = store.begin_account_write(account_id).await?;
    let mut count = 0;
    for due in &dues {
        let keys = due_keys(due).all(&*txn).await?;
        for key in keys {
            let (anchor, details) = match due.event_type {
                EventType::RenewalDue => {
                    (Some(key.token_created_at), json!({ "tokenCreatedAt": key.token_created_at }))
                }
                _ => (key.expires_at, json!({ "expiresAt": key.expires_at })),
            };
            app_key::Entity::update_many()
                .col_expr(due.mark, Expr::value(anchor))
                .filter(app_key::Column::Id.eq(key.id.as_str()))
                .exec(&*txn)
                .await?;
            record(&txn, account_id, due.event_type, &key.key, "system", details).await?;
            count += 1;
        }
    }
    txn.commit_without_credential_change().await?;
    Ok(count)
}
