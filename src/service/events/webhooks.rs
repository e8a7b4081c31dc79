//! Webhook endpoints and their deliveries: endpoints per account (the signing secret shown once,
//! sealed at rest), the deliveries listing, and what the deliverer (`crate::delivery`) asks of the
//! database: claim due deliveries (one replica each: `FOR UPDATE SKIP LOCKED` on PostgreSQL), then
//! record each outcome with exponential backoff for 24 hours.
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use rand::RngCore;
use sea_orm::sea_query::{Expr, LockBehavior, LockType};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect,
    Set,
};
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;
use sha2::Sha256;
use std::collections::HashMap;
use std::net::IpAddr;

use crate::entity::{key_event, server_secret, webhook_delivery, webhook_endpoint};
use crate::error::{AppError, AppResult};
use crate::service::events::audit::Ctx;
use crate::service::events::outbox::DeliveryStatus;
use crate::service::events::EventType;
use crate::service::store::is_id;
use crate::service::store::new_id;
use crate::service::store::page::{self, PageRequest, Paged};
use crate::service::store::query_text;
use crate::service::store::truncate_chars;
use crate::service::store::Store;

const PENDING: DeliveryStatus = DeliveryStatus::Pending;

/// The most endpoints one account may have.
pub const MAX_ENDPOINTS: u64 = 10;
/// Deliveries are retried for this long after the event, then marked FAILED.
pub const RETRY_WINDOW: chrono::Duration = chrono::Duration::hours(24);
const MAX_URL_LEN: usize = 2048;

/// The delay before attempt `attempts + 1`: 5 s, doubling, at most 2 hours.
pub fn backoff(attempts: u32) -> chrono::Duration {
    let seconds = 5_i64.saturating_mul(1_i64 << attempts.saturating_sub(1).min(20));
    chrono::Duration::seconds(seconds.min(2 * 3600))
}

/// Seals webhook secrets at rest with ChaCha20-Poly1305 under the server's key (`--secrets-key`, or
/// a key generated once and kept in `server_secrets`). The endpoint id is bound in as associated
/// data, so a sealed secret cannot be moved to another endpoint.
/// The key that seals webhook secrets, loaded at start (`load_secret_box`): the webhooks' part of the
/// store.
#[derive(Default)]
struct SecretSlot(std::sync::OnceLock<SecretBox>);

/// Loads (or on first start creates) the key that seals webhook secrets, for this store.
pub async fn load_secret_box(store: &Store, configured: Option<&SecretString>) -> AppResult<()> {
    let loaded = SecretBox::load(store, configured).await?;
    let _ = store.part::<SecretSlot>().0.set(loaded);
    Ok(())
}

/// What seals webhook secrets at rest (loaded by `load_secret_box`).
fn secret_box(store: &Store) -> AppResult<SecretBox> {
    store
        .part::<SecretSlot>()
        .0
        .get()
        .cloned()
        .ok_or_else(|| AppError::Internal(anyhow::anyhow!("the webhook secret key is not loaded")))
}

#[derive(Clone)]
pub struct SecretBox {
    cipher: ChaCha20Poly1305,
}

const GENERATED_KEY_NAME: &str = "webhook-secrets-key";

impl SecretBox {
    pub fn new(key: [u8; 32]) -> Self {
        Self { cipher: ChaCha20Poly1305::new(Key::from_slice(&key)) }
    }

    /// The configured key, or the database's generated one (made on first start).
    pub async fn load(store: &Store, configured: Option<&SecretString>) -> AppResult<Self> {
        if let Some(raw) = configured {
            let key = parse_key(raw.expose_secret()).ok_or_else(|| {
                AppError::Internal(anyhow::anyhow!("--secrets-key must be 64 hexadecimal characters (32 bytes)"))
            })?;
            return Ok(Self::new(key));
        }
        if let Some(row) = server_secret::Entity::find_by_id(GENERATED_KEY_NAME).one(store.db()).await? {
            let key = parse_key(&row.value)
                .ok_or_else(|| AppError::Internal(anyhow::anyhow!("the stored webhook secrets key is malformed")))?;
            return Ok(Self::new(key));
        }
        let mut key = [0_u8; 32];
        rand::rng().fill_bytes(&mut key);
        server_secret::ActiveModel {
            name: Set(GENERATED_KEY_NAME.to_owned()),
            value: Set(hex(&key)),
            created_at: Set(store.now()),
        }
        .insert(store.db())
        .await?;
        Ok(Self::new(key))
    }

    fn seal(&self, endpoint_id: &str, secret: &str) -> AppResult<String> {
        let mut nonce = [0_u8; 12];
        rand::rng().fill_bytes(&mut nonce);
        let sealed = self
            .cipher
            .encrypt(Nonce::from_slice(&nonce), Payload { msg: secret.as_bytes(), aad: endpoint_id.as_bytes() })
            .map_err(|_| AppError::Internal(anyhow::anyhow!("sealing a webhook secret failed")))?;
        let mut bytes = nonce.to_vec();
        bytes.extend(sealed);
        Ok(format!("v1:{}", STANDARD.encode(bytes)))
    }

    fn open(&self, endpoint_id: &str, stored: &str) -> Option<SecretString> {
        let bytes = STANDARD.decode(stored.strip_prefix("v1:")?).ok()?;
        if bytes.len() < 12 {
            return None;
        }
        let (nonce, sealed) = bytes.split_at(12);
        let plain =
            self.cipher.decrypt(Nonce::from_slice(nonce), Payload { msg: sealed, aad: endpoint_id.as_bytes() }).ok()?;
        String::from_utf8(plain).ok().map(SecretString::from)
    }
}

fn parse_key(raw: &str) -> Option<[u8; 32]> {
    let raw = raw.trim();
    if raw.len() != 64 {
        return None;
    }
    let mut key = [0_u8; 32];
    for (i, byte) in key.iter_mut().enumerate() {
        *byte = u8::from_str_radix(raw.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(key)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A new signing secret: `whsec_` and 32 random bytes in base64 (the Standard Webhooks form).
fn new_secret() -> SecretString {
    let mut bytes = [0_u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    SecretString::from(format!("whsec_{}", STANDARD.encode(bytes)))
}

/// The Standard Webhooks signature header value: `v1,` and the base64 HMAC-SHA256, under the
/// secret's bytes, of `id.timestamp.body`.
pub fn sign(secret: &str, id: &str, timestamp: i64, body: &[u8]) -> String {
    let key = secret.strip_prefix("whsec_").and_then(|b64| STANDARD.decode(b64).ok()).unwrap_or_default();
    let Ok(mut mac) = <Hmac<Sha256> as Mac>::new_from_slice(&key) else {
        return String::new();
    };
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

/// Whether a webhook may not go to `ip` unless private targets are allowed: loopback, private,
/// shared (CGNAT), link-local (cloud metadata lives there), unspecified, multicast and broadcast
/// addresses, and IPv6's equivalents (unique-local, link-local, IPv4-mapped forms of the above).
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_multicast()
                || v4.is_broadcast()
                || a == 0
                || (a == 100 && (64..128).contains(&b))
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_private(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
                // NAT64 (64:ff9b::/96) reaches IPv4 addresses, private ones too.
                || (first == 0x0064 && v6.segments()[1] == 0xff9b)
        }
    }
}

/// Whether a URL's host is one a webhook may not go to without being resolved first: a literal
/// private address (`is_private`), or `localhost` and its subdomains.
pub fn is_private_host(host: &url::Host<&str>) -> bool {
    match host {
        url::Host::Ipv4(ip) => is_private(IpAddr::V4(*ip)),
        url::Host::Ipv6(ip) => is_private(IpAddr::V6(*ip)),
        url::Host::Domain(name) => {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            name == "localhost" || name.ends_with(".localhost")
        }
    }
}

/// A webhook target URL: http(s), a host, no user info; a literal private address or `localhost`
/// only when private targets are allowed. Host names are checked again, resolved, at each delivery.
pub fn check_url(raw: &str, allow_private: bool) -> AppResult<reqwest::Url> {
    let invalid = |message: &str| AppError::bad_input("input.url", message);
    if raw.len() > MAX_URL_LEN {
        return Err(invalid("the URL is longer than 2048 characters"));
    }
    let url = reqwest::Url::parse(raw.trim()).map_err(|e| invalid(&format!("not a URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid("the URL must start with https:// (or http://)"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid("the URL cannot carry a user name or password; the signature authenticates appkeys"));
    }
    let Some(host) = url.host() else {
        return Err(invalid("the URL has no host"));
    };
    if is_private_host(&host) && !allow_private {
        return Err(invalid(
            "loopback, private, link-local and metadata addresses are refused (the server's --webhook-allow-private allows them)",
        ));
    }
    Ok(url)
}

/// An endpoint as listings show it: never its secret.
#[derive(Debug, Clone)]
pub struct EndpointView {
    pub id: String,
    pub url: String,
    /// The event types it receives; `None`: every type.
    pub events: Option<Vec<String>>,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
}

impl EndpointView {
    /// What the audit log records of an endpoint.
    fn audit_state(&self) -> serde_json::Value {
        json!({ "url": self.url, "events": self.events })
    }
}

fn endpoint_view(e: webhook_endpoint::Model) -> EndpointView {
    EndpointView {
        events: e.events.as_deref().and_then(|list| serde_json::from_str(list).ok()),
        id: e.id,
        url: e.url,
        created_at: e.created_at,
        created_by: e.created_by,
    }
}

/// A created endpoint and its secret, which is shown this once.
pub struct CreatedEndpoint {
    pub endpoint: EndpointView,
    pub secret: SecretString,
}

pub async fn list_endpoints(store: &Store, account_id: &str) -> AppResult<Vec<EndpointView>> {
    let db = store.db();
    let rows = webhook_endpoint::Entity::find()
        .filter(webhook_endpoint::Column::AccountId.eq(account_id))
        .order_by_asc(webhook_endpoint::Column::Id)
        .all(db)
        .await?;
    Ok(rows.into_iter().map(endpoint_view).collect())
}

pub async fn get_endpoint(store: &Store, account_id: &str, id: &str) -> AppResult<Option<EndpointView>> {
    let db = store.db();
    if !is_id(id) {
        return Ok(None);
    }
    let row = webhook_endpoint::Entity::find_by_id(id)
        .filter(webhook_endpoint::Column::AccountId.eq(account_id))
        .one(db)
        .await?;
    Ok(row.map(endpoint_view))
}

/// Event type names, checked and without repeats; `None` (every type) stays `None`.
fn event_list(events: Option<Vec<String>>) -> AppResult<Option<Vec<String>>> {
    let Some(events) = events else {
        return Ok(None);
    };
    if events.is_empty() {
        return Err(AppError::bad_input("input.events", "name at least one event type, or leave events out for all"));
    }
    let mut names: Vec<String> = Vec::new();
    for (i, name) in events.into_iter().enumerate() {
        let Some(event_type) = EventType::parse(name.trim()) else {
            let known: Vec<&str> = EventType::ALL.iter().map(|t| t.as_str()).collect();
            let shown = truncate_chars(&name, 60);
            return Err(AppError::bad_input(
                format!("input.events.{i}"),
                format!("unknown event type {shown:?}; known: {}", known.join(", ")),
            ));
        };
        let name = event_type.as_str().to_owned();
        if !names.contains(&name) {
            names.push(name);
        }
    }
    Ok(Some(names))
}

pub async fn create_endpoint(
    store: &Store,
    ctx: &Ctx<'_>,
    url: &str,
    events: Option<Vec<String>>,
    allow_private: bool,
) -> AppResult<CreatedEndpoint> {
    let url = check_url(query_text(url, "input.url")?, allow_private)?;
    let events = event_list(events)?;
    let secret_box = secret_box(store)?;
    let account_id = &ctx.principal.account_id;
    let txn = store.begin_account_write(account_id).await?;
    let count = webhook_endpoint::Entity::find()
        .filter(webhook_endpoint::Column::AccountId.eq(account_id))
        .count(&*txn)
        .await?;
    if count >= MAX_ENDPOINTS {
        return Err(AppError::bad_input(
            "input.url",
            format!("an account has at most {MAX_ENDPOINTS} webhook endpoints; delete one first"),
        ));
    }
    let id = new_id();
    let secret = new_secret();
    let row = webhook_endpoint::ActiveModel {
        id: Set(id.clone()),
        account_id: Set(account_id.clone()),
        url: Set(url.to_string()),
        events: Set(events.as_ref().map(|list| json!(list).to_string())),
        secret: Set(secret_box.seal(&id, secret.expose_secret())?),
        created_at: Set(txn.now()),
        created_by: Set(truncate_chars(&ctx.principal.actor(), 300)),
    }
    .insert(&*txn)
    .await?;
    let endpoint = endpoint_view(row);
    ctx.audit(&txn, "webhook.create", &endpoint.id, None, Some(endpoint.audit_state())).await?;
    txn.commit_without_credential_change().await?;
    Ok(CreatedEndpoint { endpoint, secret })
}

/// Deletes an endpoint of the caller's account, with its deliveries (pending ones are not sent).
pub async fn delete_endpoint(store: &Store, ctx: &Ctx<'_>, id: &str) -> AppResult<()> {
    let account_id = &ctx.principal.account_id;
    let not_found = || AppError::NotFound("no such webhook endpoint in this account".into());
    if !is_id(id) {
        return Err(not_found());
    }
    let txn = store.begin_account_write(account_id).await?;
    let row = webhook_endpoint::Entity::find_by_id(id)
        .filter(webhook_endpoint::Column::AccountId.eq(account_id))
        .one(&*txn)
        .await?
        .ok_or_else(not_found)?;
    let before = endpoint_view(row).audit_state();
    webhook_endpoint::Entity::delete_by_id(id).exec(&*txn).await?;
    ctx.audit(&txn, "webhook.delete", id, Some(before), None).await?;
    txn.commit_without_credential_change().await
}

/// Sends a delivery again: it is due at once, with a fresh count of attempts (its last response is
/// kept until the new attempt answers). A delivery still pending is left as it is, and told so.
pub async fn redeliver(store: &Store, ctx: &Ctx<'_>, id: &str) -> AppResult<DeliveryView> {
    let account_id = &ctx.principal.account_id;
    let not_found = || AppError::NotFound("no such webhook delivery in this account".into());
    if !is_id(id) {
        return Err(not_found());
    }
    let txn = store.begin_account_write(account_id).await?;
    let row = webhook_delivery::Entity::find_by_id(id)
        .filter(webhook_delivery::Column::AccountId.eq(account_id))
        .one(&*txn)
        .await?
        .ok_or_else(not_found)?;
    if DeliveryStatus::stored(&row.status) == DeliveryStatus::Pending {
        return Err(AppError::Conflict("the delivery is still pending: it is sent again by itself when due".into()));
    }
    let before = serde_json::json!({ "status": row.status, "attempts": row.attempts });
    let mut active: webhook_delivery::ActiveModel = row.into();
    active.status = Set(DeliveryStatus::Pending.as_str().to_owned());
    active.attempts = Set(0);
    active.next_attempt_at = Set(txn.now());
    active.delivered_at = Set(None);
    let row = active.update(&*txn).await?;
    let after = serde_json::json!({ "status": row.status, "attempts": row.attempts });
    ctx.audit(&txn, "webhook.redeliver", id, Some(before), Some(after)).await?;
    let event = key_event::Entity::find_by_id(&row.event_id).one(&*txn).await?;
    let bus = txn.part::<super::EventBus>();
    txn.after_commit(move || bus.wake_deliveries());
    txn.commit_without_credential_change().await?;
    Ok(delivery_view(row, event.as_ref()))
}

/// One delivery as the listing shows it.
#[derive(Debug, Clone)]
pub struct DeliveryView {
    pub id: String,
    pub endpoint_id: String,
    pub event_id: String,
    pub event_type: String,
    pub key: String,
    pub status: DeliveryStatus,
    pub attempts: i32,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub last_attempt_at: Option<DateTime<Utc>>,
    pub last_status_code: Option<i32>,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub delivered_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Default)]
pub struct DeliveryFilter {
    pub endpoint_id: Option<String>,
    pub status: Option<DeliveryStatus>,
}

/// The account's deliveries, newest first; each with its event's type and key (one more query per page).
pub async fn list_deliveries(
    store: &Store,
    account_id: &str,
    filter: &DeliveryFilter,
    page: &PageRequest,
) -> AppResult<Paged<DeliveryView>> {
    let db = store.db();
    let mut select = webhook_delivery::Entity::find().filter(webhook_delivery::Column::AccountId.eq(account_id));
    if let Some(endpoint_id) = &filter.endpoint_id {
        if !is_id(endpoint_id) {
            return Err(AppError::bad_input("filter.endpointId", "no such webhook endpoint in this account"));
        }
        select = select.filter(webhook_delivery::Column::EndpointId.eq(endpoint_id.as_str()));
    }
    if let Some(status) = filter.status {
        select = select.filter(webhook_delivery::Column::Status.eq(status.as_str()));
    }
    let paged = page::fetch(db, select, webhook_delivery::Column::Id, page).await?;
    let events = events_by_id(db, paged.items.iter().map(|d| d.event_id.as_str())).await?;
    Ok(paged.map(|d| {
        let event = events.get(&d.event_id);
        delivery_view(d, event)
    }))
}

pub async fn get_delivery(store: &Store, account_id: &str, id: &str) -> AppResult<Option<DeliveryView>> {
    let db = store.db();
    if !is_id(id) {
        return Ok(None);
    }
    let Some(row) = webhook_delivery::Entity::find_by_id(id)
        .filter(webhook_delivery::Column::AccountId.eq(account_id))
        .one(db)
        .await?
    else {
        return Ok(None);
    };
    let event = key_event::Entity::find_by_id(&row.event_id).one(db).await?;
    Ok(Some(delivery_view(row, event.as_ref())))
}

/// The events with these ids, by id (one query).
async fn events_by_id<'a, C: ConnectionTrait>(
    db: &C,
    ids: impl Iterator<Item = &'a str>,
) -> AppResult<HashMap<String, key_event::Model>> {
    let ids: Vec<&str> = ids.collect();
    let rows = key_event::Entity::find().filter(key_event::Column::Id.is_in(ids)).all(db).await?;
    Ok(rows.into_iter().map(|e| (e.id.clone(), e)).collect())
}

fn delivery_view(d: webhook_delivery::Model, event: Option<&key_event::Model>) -> DeliveryView {
    let status = DeliveryStatus::stored(&d.status);
    DeliveryView {
        event_type: event.map(|e| e.r#type.clone()).unwrap_or_default(),
        key: event.map(|e| e.key.clone()).unwrap_or_default(),
        next_attempt_at: (status == PENDING).then_some(d.next_attempt_at),
        status,
        id: d.id,
        endpoint_id: d.endpoint_id,
        event_id: d.event_id,
        attempts: d.attempts,
        last_attempt_at: d.last_attempt_at,
        last_status_code: d.last_status_code,
        last_error: d.last_error,
        created_at: d.created_at,
        delivered_at: d.delivered_at,
    }
}

/// A delivery this replica claimed: what to send where, and the attempt number that identifies the
/// claim (the outcome is written only if nobody claimed the row again since).
pub struct Claimed {
    pub id: String,
    pub attempt: i32,
    pub url: String,
    pub secret: Option<SecretString>,
    pub event_id: String,
    pub body: String,
    pub created_at: DateTime<Utc>,
}

/// Claims up to `limit` due deliveries: each gets its attempt counted and its next attempt moved to
/// `now + lease`, so a replica that dies mid-attempt leaves it to be retried after the lease. On
/// PostgreSQL rows another replica is claiming are skipped (`FOR UPDATE SKIP LOCKED`).
pub async fn claim_due(
    store: &Store,
    now: DateTime<Utc>,
    limit: u64,
    lease: chrono::Duration,
) -> AppResult<Vec<Claimed>> {
    if limit == 0 {
        return Ok(Vec::new());
    }
    let due_rows = || {
        webhook_delivery::Entity::find()
            .filter(webhook_delivery::Column::Status.eq(PENDING.as_str()))
            .filter(webhook_delivery::Column::NextAttemptAt.lte(now))
    };
    // Read first, outside any write: the deliverer polls every second and most polls find nothing
    // (on SQLite a write would take the one writer's lock each time).
    if due_rows().one(store.db()).await?.is_none() {
        return Ok(Vec::new());
    }
    let txn = store.begin_write().await?;
    let due = due_rows()
        .order_by_asc(webhook_delivery::Column::NextAttemptAt)
        .limit(limit)
        .lock_with_behavior(LockType::Update, LockBehavior::SkipLocked)
        .all(&*txn)
        .await?;
    if due.is_empty() {
        txn.commit_without_credential_change().await?;
        return Ok(Vec::new());
    }
    let ids: Vec<&str> = due.iter().map(|d| d.id.as_str()).collect();
    webhook_delivery::Entity::update_many()
        .col_expr(
            webhook_delivery::Column::Attempts,
            sea_orm::sea_query::ExprTrait::add(Expr::col(webhook_delivery::Column::Attempts), 1),
        )
        .col_expr(webhook_delivery::Column::NextAttemptAt, Expr::value(now + lease))
        .col_expr(webhook_delivery::Column::LastAttemptAt, Expr::value(now))
        .filter(webhook_delivery::Column::Id.is_in(ids.clone()))
        .exec(&*txn)
        .await?;
    let endpoint_ids: Vec<&str> = due.iter().map(|d| d.endpoint_id.as_str()).collect();
    let endpoints: HashMap<String, webhook_endpoint::Model> = webhook_endpoint::Entity::find()
        .filter(webhook_endpoint::Column::Id.is_in(endpoint_ids))
        .all(&*txn)
        .await?
        .into_iter()
        .map(|e| (e.id.clone(), e))
        .collect();
    let events = events_by_id(&*txn, due.iter().map(|d| d.event_id.as_str())).await?;
    txn.commit_without_credential_change().await?;
    let secret_box = secret_box(store)?;
    Ok(due
        .into_iter()
        .filter_map(|d| {
            let endpoint = endpoints.get(&d.endpoint_id)?;
            let event = events.get(&d.event_id)?;
            Some(Claimed {
                attempt: d.attempts + 1,
                url: endpoint.url.clone(),
                secret: secret_box.open(&endpoint.id, &endpoint.secret),
                event_id: event.id.clone(),
                body: event.body.clone(),
                created_at: d.created_at,
                id: d.id,
            })
        })
        .collect())
}

/// How an attempt ended.
pub enum Outcome {
    /// The receiver answered 2xx.
    Delivered { status: u16 },
    /// Any other answer, or none.
    Failed { status: Option<u16>, error: String },
}

/// Writes an attempt's outcome: delivered; or retried after `backoff`; or, once that would fall
/// outside the 24-hour window, failed for good.
pub async fn record_outcome(store: &Store, claimed: &Claimed, outcome: Outcome) -> AppResult<()> {
    let now = store.now();
    let txn = store.begin_write().await?;
    let mut update = webhook_delivery::Entity::update_many();
    match outcome {
        Outcome::Delivered { status } => {
            update = update
                .col_expr(webhook_delivery::Column::Status, Expr::value(DeliveryStatus::Delivered.as_str()))
                .col_expr(webhook_delivery::Column::DeliveredAt, Expr::value(Some(now)))
                .col_expr(webhook_delivery::Column::LastStatusCode, Expr::value(Some(i32::from(status))))
                .col_expr(webhook_delivery::Column::LastError, Expr::value(Option::<String>::None));
        }
        Outcome::Failed { status, error } => {
            let next = now + backoff(u32::try_from(claimed.attempt).unwrap_or(u32::MAX));
            let next_status =
                if next > claimed.created_at + RETRY_WINDOW { DeliveryStatus::Failed } else { DeliveryStatus::Pending };
            update = update
                .col_expr(webhook_delivery::Column::Status, Expr::value(next_status.as_str()))
                .col_expr(webhook_delivery::Column::NextAttemptAt, Expr::value(next))
                .col_expr(webhook_delivery::Column::LastStatusCode, Expr::value(status.map(i32::from)))
                .col_expr(webhook_delivery::Column::LastError, Expr::value(Some(truncate_chars(&error, 300))));
        }
    }
    update
        .filter(webhook_delivery::Column::Id.eq(claimed.id.as_str()))
        .filter(webhook_delivery::Column::Attempts.eq(claimed.attempt))
        .filter(webhook_delivery::Column::Status.eq(PENDING.as_str()))
        .exec(&*txn)
        .await?;
    txn.commit_without_credential_change().await
}

/// Deliveries waiting to be sent, on every replica (for `/metrics`).
pub async fn backlog(store: &Store) -> AppResult<u64> {
    let db = store.db();
    Ok(webhook_delivery::Entity::find().filter(webhook_delivery::Column::Status.eq(PENDING.as_str())).count(db).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_follow_the_standard_webhooks_example() {
        // The example of the Standard Webhooks specification's reference libraries.
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let body = br#"{"test": 2432232314}"#;
        let signature = sign(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1_614_265_330, body);
        assert_eq!(signature, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn secrets_are_sealed_to_their_endpoint() {
        let sealer = SecretBox::new([7; 32]);
        let sealed = sealer.seal("endpoint-a", "whsec_abc").expect("sealed");
        assert!(!sealed.contains("whsec_abc"));
        assert_eq!(sealer.open("endpoint-a", &sealed).map(|s| s.expose_secret().to_owned()), Some("whsec_abc".into()));
        assert!(sealer.open("endpoint-b", &sealed).is_none(), "bound to its endpoint");
        assert!(SecretBox::new([8; 32]).open("endpoint-a", &sealed).is_none(), "needs the same key");
        assert!(sealer.open("endpoint-a", "v1:AAAA").is_none());
    }

    #[test]
    fn private_and_metadata_addresses_are_recognised() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fd00:ec2::254",
            "fe80::1",
            "::ffff:127.0.0.1",
            "64:ff9b::a00:1",
            "224.0.0.1",
        ] {
            assert!(is_private(private.parse().expect("ip")), "{private}");
        }
        for public in ["93.184.216.34", "8.8.8.8", "2606:4700::1111", "100.128.0.1"] {
            assert!(!is_private(public.parse().expect("ip")), "{public}");
        }
    }

    #[test]
    fn target_urls_are_checked() {
        assert!(check_url("https://hooks.example.com/appkeys", false).is_ok());
        for bad in [
            "ftp://x.example/",
            "http://127.0.0.1:9/",
            "http://localhost/",
            "https://u:p@x.example/",
            "nope",
            "http://[::1]/",
            "http://169.254.169.254/latest",
        ] {
            let error = check_url(bad, false).expect_err(bad);
            assert!(matches!(error, AppError::BadUserInput { ref field, .. } if field == "input.url"), "{bad}");
        }
        assert!(check_url("http://127.0.0.1:9/", true).is_ok(), "allowed with --webhook-allow-private");
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        assert_eq!(backoff(1), chrono::Duration::seconds(5));
        assert_eq!(backoff(2), chrono::Duration::seconds(10));
        assert_eq!(backoff(5), chrono::Duration::seconds(80));
        assert_eq!(backoff(40), chrono::Duration::hours(2));
    }
}
