//! A key's policy in an account (`setAppKeyPolicy`, `AppKey.policy`), its credits spent exactly
//! (`Charger`), refilled and announced.
//!
//! Credits are exact across replicas because the database is their only record: every charge is a
//! read-and-decrement under a lock of the key's access row (PostgreSQL `FOR UPDATE`; SQLite's one
//! writer). To keep that off the per-request cost, concurrent charges on a replica are grouped:
//! one task applies everything queued so far in one transaction, then the next batch.
use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, QuerySelect, Set};
use serde_json::json;
use std::collections::HashMap;
use std::sync::Arc;

use super::{locate, AppKeyView, Located, Viewpoint};
use crate::domain::policy::{CreditRefill, RefillInterval};
use crate::domain::{KeyPolicy, PolicyInput};
use crate::entity::{app_key, key_access};
use crate::error::{AppError, AppResult};
use crate::service::events::audit::Ctx;
use crate::service::events::outbox::record;
use crate::service::events::EventType;
use crate::service::store::Store;

/// Lock id of the refill and credits-announcement round, one replica at a time.
const CREDITS_LOCK_ID: i64 = 0x0061_7070_6b65_7904;

/// A key's policy in one account, with its credits left.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicyView {
    pub policy: KeyPolicy,
    /// `None`: unlimited.
    pub remaining: Option<i64>,
}

impl PolicyView {
    /// The policy as the API shows it (and the audit log records it).
    pub fn to_json(&self) -> serde_json::Value {
        let credits = self.policy.credits.as_ref().map(|credits| {
            json!({
                "remaining": self.remaining.unwrap_or(0),
                "refill": credits.refill.map(|r| json!({
                    "amount": r.amount,
                    "interval": match r.interval { RefillInterval::Daily => "DAILY", RefillInterval::Monthly => "MONTHLY" },
                    "day": r.day,
                })),
            })
        });
        let limits: Vec<_> = self
            .policy
            .rate_limits
            .iter()
            .map(|l| json!({ "name": l.name, "limit": l.limit, "periodSeconds": l.period_secs }))
            .collect();
        let ips: Vec<String> = self.policy.allowed_ips.iter().map(ToString::to_string).collect();
        json!({ "allowedIps": ips, "rateLimits": limits, "credits": credits })
    }
}

/// The policy stored in an access row (NULL or unreadable: the empty policy; unreadable is logged,
/// and cannot happen through appkeys, which writes only what it parsed).
pub(crate) fn stored_policy(raw: Option<&str>) -> KeyPolicy {
    match raw {
        None => KeyPolicy::default(),
        Some(raw) => serde_json::from_str::<KeyPolicy>(raw).map(KeyPolicy::compiled).unwrap_or_else(|error| {
            tracing::error!(%error, "a stored key policy is unreadable; treated as empty");
            KeyPolicy::default()
        }),
    }
}

fn view_of(access: &key_access::Model) -> PolicyView {
    let policy = stored_policy(access.policy.as_deref());
    let remaining = policy.credits.as_ref().map(|_| access.credits_remaining.unwrap_or(0));
    PolicyView { policy, remaining }
}

/// The policy of the access row `access_id` in `account_id` (the empty one for an unknown row).
pub async fn of_access(store: &Store, account_id: &str, access_id: &str) -> AppResult<PolicyView> {
    let row = key_access::Entity::find_by_id(access_id)
        .filter(key_access::Column::AccountId.eq(account_id))
        .one(store.db())
        .await?;
    Ok(row.as_ref().map(view_of).unwrap_or_default())
}

/// Parses a policy input, its failures under `prefix` (`input`, `input.policy`).
pub fn parse(input: &PolicyInput, prefix: &str) -> AppResult<(KeyPolicy, Option<i64>)> {
    KeyPolicy::parse(input).map_err(|e| AppError::bad_input(format!("{prefix}.{}", e.field), e.invalid.0))
}

/// Writes a policy into an access row being inserted or updated: the policy, the credits it starts
/// with, and a new anchor for the credits (their refills and events start over).
pub(crate) fn apply(
    access: &mut key_access::ActiveModel,
    policy: &KeyPolicy,
    remaining: Option<i64>,
    now: DateTime<Utc>,
) {
    access.policy = Set((!policy.is_empty()).then(|| serde_json::to_string(policy).unwrap_or_default()));
    access.credits_remaining = Set(remaining);
    access.credits_reset_at = Set(remaining.map(|_| now));
    access.credits_low_announced_for = Set(None);
    access.credits_exhausted_announced_for = Set(None);
}

/// `setAppKeyPolicy`: replaces the key's whole policy in this account (audit `key.policy`, with the
/// old and the new policy). Cached credentials of the key are invalidated on every replica, so the
/// next request is decided by the new policy.
pub async fn set(store: &Store, ctx: &Ctx<'_>, raw_key: &str, input: &PolicyInput) -> AppResult<AppKeyView> {
    let (policy, remaining) = parse(input, "input")?;
    let account_id = &ctx.principal.account_id;
    let mut txn = store.begin_account_write(account_id).await?;
    let at = Viewpoint::of(&*txn, account_id, txn.now()).await?;
    let located = locate(&*txn, account_id, raw_key).await?;
    if located.access.removed {
        return Err(AppError::RemovedExternalKey);
    }
    txn.affects_key(&located.key.id);
    let before = view_of(&located.access);
    let Located { key, access } = located;
    let mut active: key_access::ActiveModel = access.into();
    apply(&mut active, &policy, remaining, txn.now());
    active.updated_at = Set(txn.now());
    let access = active.update(&*txn).await?;
    let after = view_of(&access);
    let view = Located { key, access }.view(&*txn, &at).await?;
    ctx.audit(&txn, "key.policy", &view.key, Some(before.to_json()), Some(after.to_json())).await?;
    txn.commit().await?;
    Ok(view)
}

/// The answer to one charge of credits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Charge {
    /// Charged; this many are left.
    Admitted { remaining: i64 },
    /// Not enough credits: nothing charged.
    Exhausted { remaining: i64 },
    /// The key has no credits (its policy changed meanwhile): nothing to charge.
    Unlimited,
}

struct Pending {
    access_id: String,
    account_id: String,
    cost: i64,
    /// At or below this many credits left, `app_key.credits_low` is due.
    low_at: i64,
    reply: tokio::sync::oneshot::Sender<AppResult<Charge>>,
}

/// The charges of one replica, applied in batches (a part of the store: `Store::part`).
#[derive(Default)]
pub struct Charger {
    queue: std::sync::Mutex<(Vec<Pending>, bool)>,
}

impl Charger {
    pub fn of(store: &Store) -> Arc<Self> {
        store.part::<Self>()
    }

    /// Charges `cost` credits to the access row, exactly: admitted only if that many are left. A
    /// request with cost 0 is admitted while any credit is left. `low_at`: the policy's "10 % left".
    pub async fn charge(
        self: &Arc<Self>,
        store: &Store,
        account_id: &str,
        access_id: &str,
        cost: u32,
        low_at: i64,
    ) -> AppResult<Charge> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let pending = Pending {
            access_id: access_id.to_owned(),
            account_id: account_id.to_owned(),
            cost: i64::from(cost),
            low_at,
            reply,
        };
        let start = {
            let mut queue = self.queue.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            queue.0.push(pending);
            !std::mem::replace(&mut queue.1, true)
        };
        if start {
            // A task of its own: a request that goes away does not strand the others' charges.
            tokio::spawn(self.clone().drain(store.clone()));
        }
        answer.await.map_err(|_| AppError::Internal(anyhow::anyhow!("the credits charger stopped")))?
    }

    async fn drain(self: Arc<Self>, store: Store) {
        loop {
            let batch = {
                let mut queue = self.queue.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                if queue.0.is_empty() {
                    queue.1 = false;
                    return;
                }
                std::mem::take(&mut queue.0)
            };
            match apply_batch(&store, &batch).await {
                Ok(answers) => {
                    for (pending, answer) in batch.into_iter().zip(answers) {
                        let _ = pending.reply.send(Ok(answer));
                    }
                }
                Err(error) => {
                    error.log_if_internal();
                    let unavailable = matches!(error, AppError::Unavailable(_));
                    for pending in batch {
                        let error = if unavailable {
                            AppError::Unavailable(anyhow::anyhow!("charging credits failed"))
                        } else {
                            AppError::Internal(anyhow::anyhow!("charging credits failed"))
                        };
                        let _ = pending.reply.send(Err(error));
                    }
                }
            }
        }
    }
}

/// One transaction for the whole batch: each access row's credits read under its lock, the
/// charges admitted in arrival order while they fit, the row written once.
async fn apply_batch(store: &Store, batch: &[Pending]) -> AppResult<Vec<Charge>> {
    let txn = store.begin_write().await?;
    let ids: Vec<&str> = {
        let mut ids: Vec<&str> = batch.iter().map(|p| p.access_id.as_str()).collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    };
    let mut query = key_access::Entity::find()
        .select_only()
        .column(key_access::Column::Id)
        .column(key_access::Column::CreditsRemaining)
        .column(key_access::Column::CreditsResetAt)
        .column(key_access::Column::Policy)
        .filter(key_access::Column::Id.is_in(ids.iter().copied()));
    if store.backend() == sea_orm::DatabaseBackend::Postgres {
        query = query.lock_exclusive();
    }
    type Row = (String, Option<i64>, Option<DateTime<Utc>>, Option<String>);
    let rows: Vec<Row> = query.into_tuple().all(&*txn).await?;
    let now = txn.now();
    let mut before: HashMap<String, Option<i64>> = HashMap::with_capacity(rows.len());
    for (id, remaining, reset_at, stored) in rows {
        // A refill due since the credits were last set is applied before charging, so requests
        // see it at 00:00 whether or not the sweeper has run.
        let refill = stored_policy(stored.as_deref()).credits.and_then(|c| c.refill);
        let remaining = match (remaining, reset_at, refill) {
            (Some(_), Some(anchor), Some(refill)) if anchor < refill.last_at_or_before(now) => {
                key_access::Entity::update_many()
                    .col_expr(key_access::Column::CreditsRemaining, Expr::value(refill.amount))
                    .col_expr(key_access::Column::CreditsResetAt, Expr::value(now))
                    .filter(key_access::Column::Id.eq(id.as_str()))
                    .exec(&*txn)
                    .await?;
                Some(refill.amount)
            }
            (remaining, ..) => remaining,
        };
        before.insert(id, remaining);
    }
    let mut left: HashMap<&str, Option<i64>> = before.iter().map(|(id, remaining)| (id.as_str(), *remaining)).collect();
    let mut answers = Vec::with_capacity(batch.len());
    for pending in batch {
        let answer = match left.get_mut(pending.access_id.as_str()) {
            None | Some(None) => Charge::Unlimited,
            Some(Some(remaining)) if *remaining > 0 && pending.cost <= *remaining => {
                *remaining -= pending.cost;
                Charge::Admitted { remaining: *remaining }
            }
            Some(Some(remaining)) => Charge::Exhausted { remaining: *remaining },
        };
        answers.push(answer);
    }
    let mut crossed = Vec::new();
    for (id, remaining) in &left {
        let (Some(now_left), Some(Some(was))) = (remaining, before.get(*id)) else {
            continue;
        };
        if now_left == was {
            continue;
        }
        key_access::Entity::update_many()
            .col_expr(key_access::Column::CreditsRemaining, Expr::value(*now_left))
            .filter(key_access::Column::Id.eq(*id))
            .exec(&*txn)
            .await?;
        if let Some(pending) = batch.iter().find(|p| p.access_id == *id) {
            if (*was > pending.low_at && *now_left <= pending.low_at) || *now_left == 0 {
                crossed.push((pending.account_id.clone(), id.to_string()));
            }
        }
    }
    txn.commit_without_credential_change().await?;
    for (account_id, access_id) in crossed {
        // The crossing is announced now rather than at the next sweep; the sweep is the backstop.
        let store = store.clone();
        tokio::spawn(async move {
            if let Err(error) = announce_credits(&store, &account_id, &access_id).await {
                error.log_if_internal();
            }
        });
    }
    Ok(answers)
}

/// Makes `app_key.credits_low` (10 % or less left) and `app_key.credits_exhausted` (none left) of
/// one access row, each once per anchor (the credits' last reset). Returns how many it made.
pub async fn announce_credits(store: &Store, account_id: &str, access_id: &str) -> AppResult<usize> {
    let txn = store.begin_account_write(account_id).await?;
    let Some(access) = key_access::Entity::find_by_id(access_id).one(&*txn).await? else {
        return Ok(0);
    };
    let (Some(remaining), Some(anchor)) = (access.credits_remaining, access.credits_reset_at) else {
        return Ok(0);
    };
    let policy = stored_policy(access.policy.as_deref());
    let Some(low_at) = policy.low_credits_threshold() else {
        return Ok(0);
    };
    let Some(key) = app_key::Entity::find_by_id(access.app_key_id.as_str()).one(&*txn).await? else {
        return Ok(0);
    };
    let mut made = 0;
    let details = json!({ "remaining": remaining, "account": account_id });
    if remaining <= low_at && access.credits_low_announced_for != Some(anchor) {
        record(&txn, account_id, EventType::CreditsLow, &key.key, "system", details.clone()).await?;
        made += 1;
    }
    if remaining == 0 && access.credits_exhausted_announced_for != Some(anchor) {
        record(&txn, account_id, EventType::CreditsExhausted, &key.key, "system", details).await?;
        made += 1;
    }
    if made > 0 {
        let mut marks = key_access::Entity::update_many().filter(key_access::Column::Id.eq(access_id));
        if remaining <= low_at {
            marks = marks.col_expr(key_access::Column::CreditsLowAnnouncedFor, Expr::value(anchor));
        }
        if remaining == 0 {
            marks = marks.col_expr(key_access::Column::CreditsExhaustedAnnouncedFor, Expr::value(anchor));
        }
        marks.exec(&*txn).await?;
    }
    txn.commit_without_credential_change().await?;
    Ok(made)
}

/// The sweeper's credits round, one replica at a time: refills that are due (credits set back to
/// the refill's amount, a new anchor), then any credits event a crash left unmade. Returns how many
/// rows it refilled plus events it made.
pub async fn refill_and_announce(store: &Store, now: DateTime<Utc>) -> AppResult<usize> {
    let Some(lease) = store.try_lease(CREDITS_LOCK_ID).await? else {
        return Ok(0);
    };
    let rows: Vec<key_access::Model> =
        key_access::Entity::find().filter(key_access::Column::CreditsResetAt.is_not_null()).all(store.db()).await?;
    let mut done = 0;
    for row in rows {
        let policy = stored_policy(row.policy.as_deref());
        let refill: Option<CreditRefill> = policy.credits.as_ref().and_then(|c| c.refill);
        let (Some(refill), Some(anchor)) = (refill, row.credits_reset_at) else {
            continue;
        };
        let due = refill.last_at_or_before(now);
        if anchor < due {
            let txn = store.begin_account_write(&row.account_id).await?;
            // Only if no change moved the anchor meanwhile (a new policy, another refill).
            let refilled = key_access::Entity::update_many()
                .col_expr(key_access::Column::CreditsRemaining, Expr::value(refill.amount))
                .col_expr(key_access::Column::CreditsResetAt, Expr::value(now))
                .filter(key_access::Column::Id.eq(row.id.as_str()))
                .filter(key_access::Column::CreditsResetAt.eq(anchor))
                .exec(&*txn)
                .await?;
            txn.commit_without_credential_change().await?;
            done += refilled.rows_affected as usize;
            continue;
        }
        let low_at = policy.low_credits_threshold().unwrap_or(0);
        let remaining = row.credits_remaining.unwrap_or(0);
        let low_due = remaining <= low_at && row.credits_low_announced_for != Some(anchor);
        let exhausted_due = remaining == 0 && row.credits_exhausted_announced_for != Some(anchor);
        if low_due || exhausted_due {
            done += announce_credits(store, &row.account_id, &row.id).await?;
        }
    }
    lease.release().await?;
    Ok(done)
}
