//! Lifecycle events of keys: the outbox. Every key change writes its event in the change's own
//! transaction (hooked on the audit entry it already writes), together with one pending delivery per
//! webhook endpoint that wants it (the time-based events come from `keys::announce`). After commit the events reach this
//! replica's subscribers at once and other replicas' through NOTIFY (`EVENTS_CHANNEL`).
use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, Set};
use serde_json::{json, Value};
use std::sync::Arc;
use tokio::sync::{broadcast, Notify};

use crate::entity::{key_event, webhook_delivery, webhook_endpoint};
use crate::error::AppResult;
use crate::service::store::account_name;
use crate::service::store::new_id;
use crate::service::store::truncate_chars;
use crate::service::store::Store;
use crate::service::store::WriteTxn;

/// The PostgreSQL channel on which a committed event's id reaches every replica.
pub const EVENTS_CHANNEL: &str = "appkeys_events";

/// What happened to a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventType {
    Generated,
    Renewed,
    RenewalFinished,
    RenewalUndone,
    Activated,
    Deactivated,
    Deleted,
    RolesChanged,
    ExternalAdded,
    ExternalRemoved,
    Expiring,
    Expired,
    RenewalDue,
    AutoDeactivated,
    CreditsLow,
    CreditsExhausted,
    Leaked,
}

impl EventType {
    pub const ALL: [EventType; 17] = [
        EventType::Generated,
        EventType::Renewed,
        EventType::RenewalFinished,
        EventType::RenewalUndone,
        EventType::Activated,
        EventType::Deactivated,
        EventType::Deleted,
        EventType::RolesChanged,
        EventType::ExternalAdded,
        EventType::ExternalRemoved,
        EventType::Expiring,
        EventType::Expired,
        EventType::RenewalDue,
        EventType::AutoDeactivated,
        EventType::CreditsLow,
        EventType::CreditsExhausted,
        EventType::Leaked,
    ];

    /// The name receivers and subscribers see, e.g. `app_key.deactivated`.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Generated => "app_key.generated",
            EventType::Renewed => "app_key.renewed",
            EventType::RenewalFinished => "app_key.renewal_finished",
            EventType::RenewalUndone => "app_key.renewal_undone",
            EventType::Activated => "app_key.activated",
            EventType::Deactivated => "app_key.deactivated",
            EventType::Deleted => "app_key.deleted",
            EventType::RolesChanged => "app_key.roles_changed",
            EventType::ExternalAdded => "app_key.external_added",
            EventType::ExternalRemoved => "app_key.external_removed",
            EventType::Expiring => "app_key.expiring",
            EventType::Expired => "app_key.expired",
            EventType::RenewalDue => "app_key.renewal_due",
            EventType::AutoDeactivated => "app_key.auto_deactivated",
            EventType::CreditsLow => "app_key.credits_low",
            EventType::CreditsExhausted => "app_key.credits_exhausted",
            EventType::Leaked => "app_key.leaked",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == raw)
    }

    /// The event a change's audit action announces, if it is a key's lifecycle event.
    pub fn for_audit_action(action: &str) -> Option<Self> {
        Some(match action {
            "key.generate" => EventType::Generated,
            "key.renew" => EventType::Renewed,
            "key.renew_finish" => EventType::RenewalFinished,
            "key.renew_undo" => EventType::RenewalUndone,
            "key.activate" => EventType::Activated,
            "key.deactivate" => EventType::Deactivated,
            "key.delete" => EventType::Deleted,
            "key.set_roles" | "key.add_roles" | "key.remove_roles" => EventType::RolesChanged,
            "key.add_external" | "key.readd_external" => EventType::ExternalAdded,
            "key.remove_external" => EventType::ExternalRemoved,
            "key.auto_deactivate" => EventType::AutoDeactivated,
            "key.leaked" => EventType::Leaked,
            _ => return None,
        })
    }
}

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryStatus {
    /// Not delivered yet; attempted when due.
    Pending,
    /// The receiver answered 2xx.
    Delivered,
    /// Not delivered within the retry window; no more attempts.
    Failed,
}

impl DeliveryStatus {
    /// The stored form.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "PENDING",
            DeliveryStatus::Delivered => "DELIVERED",
            DeliveryStatus::Failed => "FAILED",
        }
    }

    pub(super) fn stored(raw: &str) -> Self {
        match raw {
            "DELIVERED" => DeliveryStatus::Delivered,
            "FAILED" => DeliveryStatus::Failed,
            _ => DeliveryStatus::Pending,
        }
    }
}

/// One event as subscribers see it.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyEvent {
    pub id: String,
    pub account_id: String,
    /// The account's name.
    pub account: String,
    pub event_type: String,
    pub key: String,
    pub actor: String,
    pub at: DateTime<Utc>,
}

/// Where committed events go on this replica: subscribers (a broadcast), and a wake-up for the
/// webhook deliverer.
#[derive(Clone)]
pub struct EventBus {
    sender: broadcast::Sender<Arc<KeyEvent>>,
    deliveries: Arc<Notify>,
    /// Rounds in which the deliverer found nothing due and had nothing in flight, and a signal for
    /// each (`caught_up`).
    idle_rounds: Arc<std::sync::atomic::AtomicU64>,
    idle: Arc<Notify>,
    /// The ids of the events published lately (at most `RECENT`), so an event published twice (at
    /// its commit, and again by the change feed catching up) reaches subscribers once.
    recent: Arc<std::sync::Mutex<Recent>>,
}

/// How many published event ids `EventBus` remembers.
const RECENT: usize = 4096;

#[derive(Default)]
struct Recent {
    order: std::collections::VecDeque<String>,
    ids: std::collections::HashSet<String>,
}

impl Recent {
    /// Remembers `id`; `false` when it was remembered already.
    fn remember(&mut self, id: &str) -> bool {
        if !self.ids.insert(id.to_owned()) {
            return false;
        }
        self.order.push_back(id.to_owned());
        if self.order.len() > RECENT {
            if let Some(oldest) = self.order.pop_front() {
                self.ids.remove(&oldest);
            }
        }
        true
    }
}

impl Default for EventBus {
    fn default() -> Self {
        Self {
            sender: broadcast::channel(1024).0,
            deliveries: Arc::new(Notify::new()),
            idle_rounds: Arc::default(),
            idle: Arc::new(Notify::new()),
            recent: Arc::default(),
        }
    }
}

impl EventBus {
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<KeyEvent>> {
        self.sender.subscribe()
    }

    /// Hands `event` to this replica's subscribers, once however often it is published.
    pub fn publish(&self, event: KeyEvent) {
        let fresh = self.recent.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remember(&event.id);
        if fresh {
            // No subscriber is not an error.
            let _ = self.sender.send(Arc::new(event));
        }
    }

    /// Tells the deliverer that deliveries may be due.
    pub fn wake_deliveries(&self) {
        self.deliveries.notify_one();
    }

    /// Resolves when `wake_deliveries` was called (or had been, since the last wait).
    pub async fn deliveries_woken(&self) {
        self.deliveries.notified().await;
    }

    /// The deliverer ended a round with nothing due and nothing in flight.
    pub fn note_idle_round(&self) {
        self.idle_rounds.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.idle.notify_waiters();
    }

    /// Resolves once the deliverer has caught up: woken now, it has since ended two rounds with
    /// nothing due and nothing in flight (the first may have begun before the wake), so every
    /// delivery due by then has been attempted. What a test waits for instead of sleeping.
    pub async fn caught_up(&self) {
        let seen = self.idle_rounds.load(std::sync::atomic::Ordering::SeqCst);
        loop {
            let idle = self.idle.notified();
            self.wake_deliveries();
            if self.idle_rounds.load(std::sync::atomic::Ordering::SeqCst) >= seen + 2 {
                return;
            }
            idle.await;
        }
    }
}

/// This replica's event bus (the outbox's part of the store).
pub fn bus(store: &Store) -> std::sync::Arc<EventBus> {
    store.part::<EventBus>()
}

/// Writes `event_type` about `key` into the outbox of `account_id`, with a pending delivery for each
/// endpoint of the account that wants it, in the change's transaction. `details` goes into the
/// webhook body's `data` (the audit entry's before/after states, or what a scheduled event is about).
pub(crate) async fn record(
    txn: &WriteTxn,
    account_id: &str,
    event_type: EventType,
    key: &str,
    actor: &str,
    details: Value,
) -> AppResult<()> {
    let at = txn.now();
    let id = new_id();
    let account = account_name(&**txn, account_id).await?;
    let event = KeyEvent {
        id: id.clone(),
        account_id: account_id.to_owned(),
        account,
        event_type: event_type.as_str().to_owned(),
        key: truncate_chars(key, 300),
        actor: truncate_chars(actor, 300),
        at,
    };
    let body = webhook_body(&event, details);
    key_event::ActiveModel {
        id: Set(id.clone()),
        account_id: Set(event.account_id.clone()),
        r#type: Set(event.event_type.clone()),
        key: Set(event.key.clone()),
        actor: Set(event.actor.clone()),
        at: Set(at),
        body: Set(body.to_string()),
    }
    .insert(&**txn)
    .await?;
    let endpoints =
        webhook_endpoint::Entity::find().filter(webhook_endpoint::Column::AccountId.eq(account_id)).all(&**txn).await?;
    for endpoint in endpoints.into_iter().filter(|e| wants(e.events.as_deref(), event_type)) {
        webhook_delivery::ActiveModel {
            id: Set(new_id()),
            account_id: Set(account_id.to_owned()),
            endpoint_id: Set(endpoint.id),
            event_id: Set(id.clone()),
            status: Set(DeliveryStatus::Pending.as_str().to_owned()),
            attempts: Set(0),
            next_attempt_at: Set(at),
            last_attempt_at: Set(None),
            last_status_code: Set(None),
            last_error: Set(None),
            created_at: Set(at),
            delivered_at: Set(None),
        }
        .insert(&**txn)
        .await?;
    }
    txn.notify_on_commit(EVENTS_CHANNEL, id);
    let bus = txn.part::<EventBus>();
    let postgres = txn.is_postgres();
    txn.after_commit(move || {
        bus.wake_deliveries();
        // On PostgreSQL every replica, this one included, learns of the event from its notification.
        if !postgres {
            bus.publish(event);
        }
    });
    Ok(())
}

/// The body every delivery of this event sends, in the Standard Webhooks shape.
fn webhook_body(event: &KeyEvent, details: Value) -> Value {
    let mut data = json!({
        "id": event.id,
        "type": event.event_type,
        "key": event.key,
        "account": event.account,
        "actor": event.actor,
        "at": event.at,
    });
    if let (Some(data), Value::Object(extra)) = (data.as_object_mut(), details) {
        for (name, value) in extra {
            data.entry(name).or_insert(value);
        }
    }
    json!({ "type": event.event_type, "timestamp": event.at, "data": data })
}

/// Whether an endpoint's event list (a JSON array; none: every type) includes `event_type`.
pub(crate) fn wants(events: Option<&str>, event_type: EventType) -> bool {
    match events {
        None => true,
        Some(list) => serde_json::from_str::<Vec<String>>(list)
            .map(|names| names.iter().any(|n| n == event_type.as_str()))
            .unwrap_or(false),
    }
}

/// One stored event (another replica committed it; its NOTIFY carried the id).
pub async fn load<C: ConnectionTrait>(db: &C, id: &str) -> AppResult<Option<KeyEvent>> {
    let Some(row) = key_event::Entity::find_by_id(id).one(db).await? else {
        return Ok(None);
    };
    let account = account_name(db, &row.account_id).await?;
    Ok(Some(KeyEvent {
        id: row.id,
        account_id: row.account_id,
        account,
        event_type: row.r#type,
        key: row.key,
        actor: row.actor,
        at: row.at,
    }))
}

/// The ids of the events stored at or after `since`, oldest first (at most `limit`): what a change
/// feed that was away may have missed.
pub async fn ids_since<C: ConnectionTrait>(db: &C, since: DateTime<Utc>, limit: u64) -> AppResult<Vec<String>> {
    use sea_orm::{QueryOrder, QuerySelect};
    let ids = key_event::Entity::find()
        .select_only()
        .column(key_event::Column::Id)
        .filter(key_event::Column::At.gte(since))
        .order_by_asc(key_event::Column::At)
        .limit(limit)
        .into_tuple::<String>()
        .all(db)
        .await?;
    Ok(ids)
}

/// Deletes finished deliveries (delivered or failed) and events made before `before`, keeping every
/// event a pending delivery still needs. Returns how many events went.
pub async fn prune(store: &Store, before: DateTime<Utc>) -> AppResult<u64> {
    let [deliveries, events] = prune_statements(store.backend(), before);
    let txn = store.begin_write().await?;
    txn.execute_raw(deliveries).await?;
    let deleted = txn.execute_raw(events).await?.rows_affected();
    txn.commit_without_credential_change().await?;
    Ok(deleted)
}

/// `prune`'s two deletes, finished deliveries then events, each finding its rows by time through an
/// index (the plans test reads them with `EXPLAIN`).
pub fn prune_statements(backend: sea_orm::DatabaseBackend, before: DateTime<Utc>) -> [sea_orm::Statement; 2] {
    use sea_orm::sea_query::Query;
    use sea_orm::QueryTrait;
    let deliveries = webhook_delivery::Entity::delete_many()
        .filter(webhook_delivery::Column::Status.ne(DeliveryStatus::Pending.as_str()))
        .filter(webhook_delivery::Column::CreatedAt.lt(before));
    let still_needed = Query::select()
        .expr(Expr::val(1))
        .from(webhook_delivery::Entity)
        .and_where(
            Expr::col((webhook_delivery::Entity, webhook_delivery::Column::EventId))
                .equals((key_event::Entity, key_event::Column::Id)),
        )
        .to_owned();
    let events = key_event::Entity::delete_many()
        .filter(key_event::Column::At.lt(before))
        .filter(Expr::exists(still_needed).not());
    [deliveries.build(backend), events.build(backend)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_id_is_remembered_once_and_forgotten_past_the_bound() {
        let mut recent = Recent::default();
        assert!(recent.remember("a"));
        assert!(!recent.remember("a"));
        for n in 0..RECENT {
            recent.remember(&n.to_string());
        }
        assert!(recent.remember("a"), "the oldest id is forgotten");
        assert_eq!(recent.order.len(), RECENT);
    }

    #[test]
    fn every_event_type_has_one_name_and_parses_back() {
        for event_type in EventType::ALL {
            assert_eq!(EventType::parse(event_type.as_str()), Some(event_type));
            assert!(event_type.as_str().starts_with("app_key."));
        }
        assert_eq!(EventType::parse("app_key.nope"), None);
    }

    #[test]
    fn key_changes_announce_their_events_and_nothing_else_does() {
        assert_eq!(EventType::for_audit_action("key.deactivate"), Some(EventType::Deactivated));
        assert_eq!(EventType::for_audit_action("key.add_roles"), Some(EventType::RolesChanged));
        assert_eq!(EventType::for_audit_action("key.readd_external"), Some(EventType::ExternalAdded));
        assert_eq!(EventType::for_audit_action("role.create"), None);
        assert_eq!(EventType::for_audit_action("webhook.create"), None);
    }

    #[test]
    fn an_endpoint_gets_the_types_it_asked_for() {
        assert!(wants(None, EventType::Expired));
        let list = r#"["app_key.deactivated","app_key.expired"]"#;
        assert!(wants(Some(list), EventType::Expired));
        assert!(!wants(Some(list), EventType::Generated));
        assert!(!wants(Some("not json"), EventType::Generated));
    }

    #[test]
    fn the_body_carries_the_event_and_the_change() {
        let event = KeyEvent {
            id: "e1".into(),
            account_id: "a1".into(),
            account: "main".into(),
            event_type: "app_key.deactivated".into(),
            key: "k".into(),
            actor: "user:o@x".into(),
            at: DateTime::<Utc>::UNIX_EPOCH,
        };
        let body = webhook_body(&event, json!({ "after": { "status": "INACTIVE" }, "key": "ignored" }));
        assert_eq!(body["type"], "app_key.deactivated");
        assert_eq!(body["data"]["key"], "k", "the event's own fields win");
        assert_eq!(body["data"]["after"]["status"], "INACTIVE");
        assert_eq!(body["data"]["account"], "main");
    }
}
