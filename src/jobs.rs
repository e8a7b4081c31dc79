//! Background work, each job a small struct with `run(stop)`: the last-use and usage flushers, the sweeper
//! (inactive keys, time-based events), the webhook deliverer and, on PostgreSQL, the follower of
//! other replicas' changes. `Jobs::start` spawns them; `Jobs::stop` asks them to finish (the flusher
//! writes what it holds, the deliverer lets attempts in flight end, the follower closes its
//! connection) and waits for them.
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::auth::{LastUseRecorder, UsageCounter};
use crate::delivery::Deliverer;
use crate::service::events::follow;
use crate::service::events::outbox;
use crate::service::keys;
use crate::service::store::Store;
use crate::state::AppState;

pub struct Jobs {
    stop: watch::Sender<bool>,
    handles: Vec<JoinHandle<()>>,
}

impl Jobs {
    pub fn start(state: &AppState) -> Self {
        let (stop, stopped) = watch::channel(false);
        let settings = &state.settings;
        let recorder = state.auth.last_use().clone();
        let mut handles = Vec::new();
        if recorder.enabled() {
            let flusher = LastUseFlusher {
                recorder: recorder.clone(),
                store: state.store.clone(),
                every: Duration::from_secs(settings.last_used_flush_secs.max(1)),
            };
            handles.push(tokio::spawn(flusher.run(stopped.clone())));
        }
        let usage = UsageFlusher {
            counter: state.auth.usage().clone(),
            store: state.store.clone(),
            every: Duration::from_secs(settings.usage_flush_secs.max(1)),
        };
        handles.push(tokio::spawn(usage.run(stopped.clone())));
        let sweeper = Sweeper {
            usage_retention_days: settings.usage_retention_days,
            recorder,
            store: state.store.clone(),
            every: Duration::from_secs(settings.sweep_interval_secs.max(1)),
            retention: chrono::Duration::days(i64::from(settings.event_retention_days.max(1))),
        };
        handles.push(tokio::spawn(sweeper.run(stopped.clone())));
        match Deliverer::new(state.store.clone(), settings) {
            Ok(deliverer) => handles.push(tokio::spawn(deliverer.run(stopped.clone()))),
            Err(error) => tracing::error!(error = %error, "the webhook deliverer cannot start"),
        }
        if state.store.backend() == sea_orm::DatabaseBackend::Postgres {
            let url = secrecy::ExposeSecret::expose_secret(&settings.database_url).to_owned();
            handles.push(tokio::spawn(follow::run(url, state.store.clone(), stopped)));
        }
        Self { stop, handles }
    }

    /// Stops every job after its current round; the flusher writes what it still holds.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for handle in self.handles {
            let _ = handle.await;
        }
    }
}

/// Waits `every`, or until asked to stop; `true` when it is time to stop.
async fn wait_or_stop(every: Duration, stop: &mut watch::Receiver<bool>) -> bool {
    if *stop.borrow() {
        return true;
    }
    tokio::select! {
        () = tokio::time::sleep(every) => false,
        _ = stop.changed() => true,
    }
}

/// Writes the noted key uses every interval, and once more when stopping.
struct LastUseFlusher {
    recorder: LastUseRecorder,
    store: Store,
    every: Duration,
}

impl LastUseFlusher {
    async fn run(self, mut stop: watch::Receiver<bool>) {
        loop {
            let stopping = wait_or_stop(self.every, &mut stop).await;
            if let Err(error) = self.recorder.flush(&self.store).await {
                error.log_if_internal();
                if stopping {
                    tracing::warn!(
                        unwritten = self.recorder.pending(),
                        "stopping without writing these keys' last uses"
                    );
                }
            }
            if stopping {
                return;
            }
        }
    }
}

/// Writes the counted decisions every interval, and once more when stopping.
struct UsageFlusher {
    counter: UsageCounter,
    store: Store,
    every: Duration,
}

impl UsageFlusher {
    async fn run(self, mut stop: watch::Receiver<bool>) {
        loop {
            let stopping = wait_or_stop(self.every, &mut stop).await;
            if let Err(error) = self.counter.flush(&self.store).await {
                error.log_if_internal();
                if stopping {
                    tracing::warn!(unwritten = self.counter.pending(), "stopping without writing these keys' usage");
                }
            }
            if stopping {
                return;
            }
        }
    }
}

/// Deactivates keys unused for longer than their account allows and produces the time-based key
/// events that are due. On PostgreSQL one replica at a time does each (the others skip the round);
/// every replica first writes its own noted uses, so a key just used here is not taken for unused.
struct Sweeper {
    usage_retention_days: u32,
    recorder: LastUseRecorder,
    store: Store,
    every: Duration,
    retention: chrono::Duration,
}

impl Sweeper {
    async fn run(self, mut stop: watch::Receiver<bool>) {
        while !wait_or_stop(self.every, &mut stop).await {
            if let Err(error) = sweep(&self.store, &self.recorder).await {
                error.log_if_internal();
            }
            if let Err(error) = outbox::prune(&self.store, self.store.now() - self.retention).await {
                error.log_if_internal();
            }
            if let Err(error) = keys::meter::prune(&self.store, self.store.now(), self.usage_retention_days).await {
                error.log_if_internal();
            }
        }
    }
}

/// One round of the sweeper (tests call it with a moved clock).
pub async fn sweep(store: &Store, recorder: &LastUseRecorder) -> crate::error::AppResult<usize> {
    recorder.flush(store).await?;
    let deactivated = keys::deactivate_unused(store, store.now()).await?;
    if deactivated > 0 {
        tracing::info!(deactivated, "deactivated keys unused for longer than their account allows");
    }
    let announced = keys::announce::announce_due(store, store.now()).await?;
    if announced > 0 {
        tracing::info!(announced, "announced expiring, expired and renewal-due keys");
    }
    let credits = keys::policy::refill_and_announce(store, store.now()).await?;
    if credits > 0 {
        tracing::info!(credits, "refilled credits and announced low and exhausted credits");
    }
    Ok(deactivated)
}
