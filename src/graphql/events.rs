//! Key events out: webhook endpoints and deliveries, and the `appKeyEvents` subscription.
use async_graphql::{Context, Enum, InputObject, Object, Result, SimpleObject, Subscription, ID};
use axum::http::HeaderMap;
use chrono::{DateTime, Utc};
use futures::Stream;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast;

use super::guard::{principal, require_any, service_ctx, PermissionGuard};
use super::page_complexity;
use super::types::{connection, global_id, id_cursor, local_id, NodeKind, Page};
use crate::domain::Resource as R;
use crate::error::AppError;
use crate::service::events::webhooks::{self, DeliveryFilter, DeliveryView, EndpointView};
use crate::service::events::KeyEvent;
use crate::service::store::page::PageRequest;
use crate::state::AppState;

/// Where an account's key events are delivered. Its signing secret is shown once, at creation.
#[derive(SimpleObject, Clone)]
pub struct WebhookEndpoint {
    /// Endpoint id.
    pub id: ID,
    /// Where events are POSTed.
    pub url: String,
    /// The event types it receives; null: every type.
    pub events: Option<Vec<String>>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// Who created it.
    pub created_by: String,
}

impl From<EndpointView> for WebhookEndpoint {
    fn from(e: EndpointView) -> Self {
        Self {
            id: global_id(NodeKind::WebhookEndpoint, &e.id),
            url: e.url,
            events: e.events,
            created_at: e.created_at,
            created_by: e.created_by,
        }
    }
}

/// A new endpoint and its signing secret.
#[derive(SimpleObject)]
pub struct CreatedWebhookEndpoint {
    /// The endpoint.
    pub endpoint: WebhookEndpoint,
    /// The signing secret (`whsec_…`), shown this once: store it in the receiver, which checks each
    /// delivery's `webhook-signature` with it.
    pub secret: String,
}

/// Where a delivery stands.
#[derive(Enum, Copy, Clone, PartialEq, Eq)]
#[graphql(remote = "crate::service::events::outbox::DeliveryStatus")]
pub enum WebhookDeliveryStatus {
    /// Not delivered yet; retried with backoff.
    Pending,
    /// The receiver answered 2xx.
    Delivered,
    /// Still not delivered 24 hours after the event; no more attempts.
    Failed,
}

/// One event sent (or to be sent) to one endpoint.
#[derive(SimpleObject, Clone)]
pub struct WebhookDelivery {
    /// Delivery id.
    pub id: ID,
    /// The endpoint's id.
    pub endpoint_id: ID,
    /// The event's id: the `webhook-id` header of every attempt.
    pub event_id: String,
    /// The event type, e.g. `app_key.deactivated`.
    pub event_type: String,
    /// The key the event is about.
    pub key: String,
    /// Where the delivery stands.
    pub status: WebhookDeliveryStatus,
    /// Attempts made so far.
    pub attempts: i32,
    /// When the next attempt is due; null once delivered or failed.
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// When the last attempt started.
    pub last_attempt_at: Option<DateTime<Utc>>,
    /// The HTTP status the receiver last answered; null if it did not answer.
    pub last_status_code: Option<i32>,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    /// When the event happened.
    pub created_at: DateTime<Utc>,
    /// When the receiver accepted it.
    pub delivered_at: Option<DateTime<Utc>>,
}

impl From<DeliveryView> for WebhookDelivery {
    fn from(d: DeliveryView) -> Self {
        Self {
            id: global_id(NodeKind::WebhookDelivery, &d.id),
            endpoint_id: global_id(NodeKind::WebhookEndpoint, &d.endpoint_id),
            event_id: d.event_id,
            event_type: d.event_type,
            key: d.key,
            status: d.status.into(),
            attempts: d.attempts,
            next_attempt_at: d.next_attempt_at,
            last_attempt_at: d.last_attempt_at,
            last_status_code: d.last_status_code,
            last_error: d.last_error,
            created_at: d.created_at,
            delivered_at: d.delivered_at,
        }
    }
}

/// A new webhook endpoint.
#[derive(InputObject)]
pub struct CreateWebhookEndpointInput {
    /// An `https://` (or `http://`) URL. Loopback, private, link-local and metadata addresses are
    /// refused unless the server runs with `--webhook-allow-private`.
    pub url: String,
    /// Event types to receive (e.g. `app_key.deactivated`); omit for every type.
    pub events: Option<Vec<String>>,
}

/// Which deliveries to list.
#[derive(InputObject, Default)]
pub struct WebhookDeliveryFilter {
    /// Only this endpoint's deliveries.
    pub endpoint_id: Option<ID>,
    /// Only deliveries in this state.
    pub status: Option<WebhookDeliveryStatus>,
}

/// A key's lifecycle event, as subscribers and webhook receivers see it.
#[derive(SimpleObject, Clone)]
pub struct AppKeyEvent {
    /// Event id (also the `webhook-id` of its deliveries).
    pub id: String,
    /// The event type, e.g. `app_key.deactivated`.
    #[graphql(name = "type")]
    pub event_type: String,
    /// The key value.
    pub key: String,
    /// The account the event happened in.
    pub account: String,
    /// Who caused it: `user:<email>`, `appkey:<key>`, or `system` (expiry, inactivity, renewal due).
    pub actor: String,
    /// When it happened.
    pub at: DateTime<Utc>,
}

impl From<&KeyEvent> for AppKeyEvent {
    fn from(e: &KeyEvent) -> Self {
        Self {
            id: e.id.clone(),
            event_type: e.event_type.clone(),
            key: e.key.clone(),
            account: e.account.clone(),
            actor: e.actor.clone(),
            at: e.at,
        }
    }
}

#[derive(Default)]
pub struct EventQuery;

#[Object]
impl EventQuery {
    /// The account's webhook endpoints, oldest first.
    #[graphql(guard = "PermissionGuard::any_of(R::READ_SETTINGS)")]
    async fn webhook_endpoints(&self, ctx: &Context<'_>) -> Result<Vec<WebhookEndpoint>> {
        let state = ctx.data::<AppState>()?;
        let principal = principal(ctx)?;
        let endpoints = webhooks::list_endpoints(&state.store, &principal.account_id).await?;
        Ok(endpoints.into_iter().map(Into::into).collect())
    }

    /// The account's webhook deliveries, newest first.
    #[graphql(
        guard = "PermissionGuard::any_of(R::READ_SETTINGS)",
        complexity = "page_complexity(first.or(last), child_complexity)"
    )]
    #[allow(clippy::too_many_arguments)]
    async fn webhook_deliveries(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Page size forwards (default 20), at most 100.")] first: Option<i32>,
        #[graphql(desc = "Cursor of the row to continue after (`pageInfo.endCursor`).")] after: Option<String>,
        #[graphql(desc = "Page size backwards, at most 100.")] last: Option<i32>,
        #[graphql(desc = "Cursor of the row to continue before (`pageInfo.startCursor`).")] before: Option<String>,
        #[graphql(desc = "Endpoint and status filters.")] filter: Option<WebhookDeliveryFilter>,
    ) -> Result<Page<WebhookDelivery>> {
        let state = ctx.data::<AppState>()?;
        let principal = principal(ctx)?;
        let page = PageRequest::parse(first, after.as_deref(), last, before.as_deref())?;
        let filter = filter.unwrap_or_default();
        let filter = DeliveryFilter {
            endpoint_id: filter.endpoint_id.map(|id| local_id(NodeKind::WebhookEndpoint, &id)),
            status: filter.status.map(Into::into),
        };
        let paged = webhooks::list_deliveries(&state.store, &principal.account_id, &filter, &page).await?;
        Ok(connection(paged, |d| id_cursor(&d.id), WebhookDelivery::from))
    }
}

#[derive(Default)]
pub struct EventMutation;

#[Object]
impl EventMutation {
    /// Adds a webhook endpoint; its signing secret is in the response, once.
    #[graphql(guard = "PermissionGuard::new(R::ApiKeysEditSettings)")]
    async fn create_webhook_endpoint(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The receiver's URL and the events it wants.")] input: CreateWebhookEndpointInput,
    ) -> Result<CreatedWebhookEndpoint> {
        let state = ctx.data::<AppState>()?;
        let sctx = service_ctx(ctx)?;
        let allow_private = state.settings.webhook_allow_private;
        let created = webhooks::create_endpoint(&state.store, &sctx, &input.url, input.events, allow_private).await?;
        Ok(CreatedWebhookEndpoint {
            endpoint: created.endpoint.into(),
            secret: secrecy::ExposeSecret::expose_secret(&created.secret).to_owned(),
        })
    }

    /// Sends a delivered or failed webhook delivery again, at once, with a fresh count of attempts
    /// (audited as `webhook.redeliver`). A pending delivery is refused with CONFLICT: it is sent by
    /// itself when due.
    #[graphql(guard = "PermissionGuard::new(R::ApiKeysEditSettings)")]
    async fn redeliver_webhook(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The delivery's id (from `webhookDeliveries`).")] id: ID,
    ) -> Result<WebhookDelivery> {
        let state = ctx.data::<AppState>()?;
        let sctx = service_ctx(ctx)?;
        let delivery = webhooks::redeliver(&state.store, &sctx, &local_id(NodeKind::WebhookDelivery, &id)).await?;
        Ok(delivery.into())
    }

    /// Deletes a webhook endpoint and its deliveries (pending ones are not sent).
    #[graphql(guard = "PermissionGuard::new(R::ApiKeysEditSettings)")]
    async fn delete_webhook_endpoint(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The endpoint's id.")] id: ID,
    ) -> Result<bool> {
        let state = ctx.data::<AppState>()?;
        let sctx = service_ctx(ctx)?;
        webhooks::delete_endpoint(&state.store, &sctx, &local_id(NodeKind::WebhookEndpoint, &id)).await?;
        Ok(true)
    }
}

/// The credential a WebSocket connection presented in `connection_init`, checked again while its
/// subscriptions run: a revoked credential's subscriptions end.
#[derive(Clone)]
pub struct SocketCredential {
    pub headers: HeaderMap,
    pub client_ip: Option<std::net::IpAddr>,
}

/// How often a running subscription checks that its credential still holds.
const RECHECK: Duration = Duration::from_secs(1);

#[derive(Default)]
pub struct SubscriptionRoot;

/// Live events, over WebSocket at `/graphql/ws` (`graphql-transport-ws`).
#[Subscription(name = "Subscription")]
impl SubscriptionRoot {
    /// The account's key events as they happen, on any replica (over `graphql-transport-ws` at
    /// `/graphql/ws`, authenticated in `connection_init`). Ends with UNAUTHENTICATED once the
    /// credential is revoked.
    #[graphql(guard = "PermissionGuard::any_of(R::READ_KEYS)")]
    async fn app_key_events(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Only events about these key values; omit for every key.")] keys: Option<Vec<String>>,
    ) -> Result<impl Stream<Item = Result<AppKeyEvent>>> {
        let state = ctx.data::<AppState>()?.clone();
        let account_id = principal(ctx)?.account_id.clone();
        let credential = ctx
            .data::<SocketCredential>()
            .map_err(|_| AppError::bad_input("keys", "subscribe over WebSocket at /graphql/ws"))?
            .clone();
        let watch = Watch {
            receiver: crate::service::events::outbox::bus(&state.store).subscribe(),
            ticker: tokio::time::interval(RECHECK),
            state,
            credential,
            account_id,
            keys: keys.map(|k| k.into_iter().collect()),
            done: false,
        };
        Ok(futures::stream::unfold(watch, Watch::next))
    }
}

/// A running `appKeyEvents` subscription.
struct Watch {
    receiver: broadcast::Receiver<Arc<KeyEvent>>,
    ticker: tokio::time::Interval,
    state: AppState,
    credential: SocketCredential,
    account_id: String,
    keys: Option<HashSet<String>>,
    done: bool,
}

impl Watch {
    async fn next(mut self) -> Option<(Result<AppKeyEvent>, Self)> {
        if self.done {
            return None;
        }
        loop {
            tokio::select! {
                received = self.receiver.recv() => match received {
                    Ok(event) => {
                        let wanted = event.account_id == self.account_id
                            && self.keys.as_ref().is_none_or(|keys| keys.contains(&event.key));
                        if !wanted {
                            continue;
                        }
                        if let Err(error) = self.still_allowed().await {
                            return self.end(error);
                        }
                        return Some((Ok(AppKeyEvent::from(&*event)), self));
                    }
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        tracing::warn!(missed, "a subscriber fell behind; events were skipped");
                    }
                    Err(broadcast::error::RecvError::Closed) => return None,
                },
                _ = self.ticker.tick() => {
                    if let Err(error) = self.still_allowed().await {
                        return self.end(error);
                    }
                }
            }
        }
    }

    fn end(mut self, error: AppError) -> Option<(Result<AppKeyEvent>, Self)> {
        self.done = true;
        Some((Err(async_graphql::ErrorExtensions::extend(&error)), self))
    }

    /// The credential still authenticates, in the same account, with a resource that reads keys.
    async fn still_allowed(&self) -> Result<(), AppError> {
        let resolved = self.state.auth.resolve(&self.credential.headers, self.credential.client_ip).await?;
        let principal = resolved.ok_or(AppError::Unauthenticated)?;
        if principal.account_id != self.account_id {
            return Err(AppError::Unauthenticated);
        }
        require_any(&principal, R::READ_KEYS)
    }
}
