//! Webhook delivery: the background job that sends due deliveries (claimed through
//! `service::webhooks`), signed per the Standard Webhooks spec, at most `--webhook-concurrency` at
//! once, each bounded by `--webhook-timeout-secs`, so a slow receiver holds one slot for at most
//! that long and never the server. Targets are checked at every attempt, after name resolution (a
//! host name that resolves to a private address is refused too), no proxy is used and redirects
//! are not followed, unless `--webhook-allow-private`.
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use secrecy::ExposeSecret;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;

use crate::config::Settings;
use crate::service::events::webhooks::{self, Claimed, Outcome};
use crate::service::store::Store;

/// How long a claimed delivery is this replica's before another may retry it (longer than any
/// attempt may take).
const LEASE_MARGIN: Duration = Duration::from_secs(50);
/// How often due deliveries are looked for without a wake-up (retries, other replicas' events).
const POLL: Duration = Duration::from_secs(1);

pub struct Deliverer {
    store: Store,
    client: reqwest::Client,
    allow_private: bool,
    concurrency: usize,
    timeout: Duration,
}

impl Deliverer {
    pub fn new(store: Store, settings: &Settings) -> anyhow::Result<Self> {
        let timeout = Duration::from_secs(settings.webhook_timeout_secs.max(1));
        let client = reqwest::Client::builder()
            .dns_resolver(Arc::new(GuardedResolver { allow_private: settings.webhook_allow_private }))
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .user_agent(concat!("appkeys-webhooks/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            store,
            client,
            allow_private: settings.webhook_allow_private,
            concurrency: settings.webhook_concurrency.max(1),
            timeout,
        })
    }

    /// Sends due deliveries until asked to stop; then waits for the attempts in flight (each ends
    /// within the timeout; one cut short is retried after its lease, so none is lost).
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let this = Arc::new(self);
        let permits = Arc::new(Semaphore::new(this.concurrency));
        let lease = chrono::Duration::from_std(this.timeout + LEASE_MARGIN).unwrap_or(chrono::Duration::minutes(1));
        let mut tasks = JoinSet::new();
        let clock = this.store.clock().clone();
        let mut backlog_checked =
            clock.instant().checked_sub(Duration::from_secs(60)).unwrap_or_else(|| clock.instant());
        while !*stop.borrow() {
            while tasks.try_join_next().is_some() {}
            let free = permits.available_permits() as u64;
            let mut idle = false;
            match webhooks::claim_due(&this.store, this.store.now(), free, lease).await {
                Ok(claimed) => {
                    idle = claimed.is_empty() && tasks.is_empty();
                    for delivery in claimed {
                        let Ok(permit) = permits.clone().acquire_owned().await else {
                            break;
                        };
                        let this = this.clone();
                        tasks.spawn(async move {
                            this.deliver(delivery).await;
                            drop(permit);
                        });
                    }
                }
                Err(error) => error.log_if_internal(),
            }
            if clock.instant().saturating_duration_since(backlog_checked) >= Duration::from_secs(10) {
                backlog_checked = clock.instant();
                if let Ok(backlog) = webhooks::backlog(&this.store).await {
                    metrics::gauge!("appkeys_webhook_backlog").set(backlog as f64);
                }
            }
            let bus = crate::service::events::outbox::bus(&this.store);
            if idle {
                bus.note_idle_round();
            }
            tokio::select! {
                _ = stop.changed() => break,
                () = bus.deliveries_woken() => {}
                () = tokio::time::sleep(POLL) => {}
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            }
        }
        let _ = tokio::time::timeout(this.timeout + Duration::from_secs(1), async {
            while tasks.join_next().await.is_some() {}
        })
        .await;
    }

    async fn deliver(&self, claimed: Claimed) {
        let outcome = self.attempt(&claimed).await;
        let label = match &outcome {
            Outcome::Delivered { .. } => "delivered",
            Outcome::Failed { .. } => "failed",
        };
        metrics::counter!("appkeys_webhook_attempts_total", "outcome" => label).increment(1);
        if let Err(error) = webhooks::record_outcome(&self.store, &claimed, outcome).await {
            error.log_if_internal();
        }
    }

    async fn attempt(&self, claimed: &Claimed) -> Outcome {
        let failed = |error: &str| Outcome::Failed { status: None, error: error.to_owned() };
        let Some(secret) = &claimed.secret else {
            return failed("the endpoint's secret cannot be unsealed (was --secrets-key changed?)");
        };
        let Ok(url) = reqwest::Url::parse(&claimed.url) else {
            return failed("the endpoint's URL is not valid");
        };
        if url.host().is_some_and(|host| webhooks::is_private_host(&host)) && !self.allow_private {
            return failed("refused: the endpoint is a private address");
        }
        let timestamp = self.store.now().timestamp();
        let signature = webhooks::sign(secret.expose_secret(), &claimed.event_id, timestamp, claimed.body.as_bytes());
        let request = self
            .client
            .post(url)
            .header("content-type", "application/json")
            .header("webhook-id", &claimed.event_id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(claimed.body.clone());
        match request.send().await {
            Ok(response) if response.status().is_success() => Outcome::Delivered { status: response.status().as_u16() },
            Ok(response) => {
                let status = response.status();
                Outcome::Failed { status: Some(status.as_u16()), error: format!("the receiver answered HTTP {status}") }
            }
            Err(error) => failed(&describe(&error.without_url())),
        }
    }
}

/// An error and its causes on one line (the URL left out).
fn describe(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Resolves host names, keeping only addresses a webhook may go to.
struct GuardedResolver {
    allow_private: bool,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow_private = self.allow_private;
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let allowed: Vec<SocketAddr> =
                found.into_iter().filter(|a| allow_private || !webhooks::is_private(a.ip())).collect();
            if allowed.is_empty() {
                return Err(format!("refused: {host} resolves only to private addresses").into());
            }
            Ok(Box::new(allowed.into_iter()) as Addrs)
        })
    }
}
