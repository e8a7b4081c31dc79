//! Follows what other replicas commit, on PostgreSQL: credential changes (each notification stamps
//! the scopes it names, see `versions`), usage changes (each moves `versions::UsageVersion`) and
//! key events (each notification carries an event id; the event is read and handed to this
//! replica's subscribers, and the deliverer is woken). A heartbeat on the feed's connection finds
//! one gone silent; every (re)connection stamps everything, usage included, since notifications
//! sent while disconnected are lost, and reads back the events committed meanwhile. Stops, closing
//! its connection, when asked to.
use sea_orm::sqlx::postgres::{PgListener, PgPool, PgPoolOptions};
use std::time::Duration;
use tokio::sync::watch;

use crate::service::events::outbox;
use crate::service::store::versions::{Scope, UsageVersion};
use crate::service::store::Store;
use crate::service::store::EVERYTHING;
use crate::service::store::{CREDENTIALS_CHANNEL, USAGE_CHANNEL};

/// The scopes a credential notification names (none: everything).
fn scopes_of(payload: &str) -> Vec<Scope> {
    if payload == EVERYTHING {
        return Vec::new();
    }
    let scopes: Option<Vec<Scope>> = payload.split(';').map(Scope::decode).collect();
    scopes.unwrap_or_default()
}

/// How often the feed's connection is asked whether it is alive, and how long it may take to say
/// so: a connection whose packets go nowhere tells nothing by itself, and notifications sent to it
/// are lost. Within this, and while the feed is away (every retry), every cached credential is
/// stamped stale, so a change another replica made is seen here within a second.
const HEARTBEAT: Duration = Duration::from_millis(500);

/// How far before the feed was last known alive its catch-up reads events back.
const CATCH_UP_MARGIN: chrono::Duration = chrono::Duration::seconds(5);

/// Whether the change feed is listening now (a store part; tests wait for it).
#[derive(Default)]
pub struct Feed {
    listening: std::sync::atomic::AtomicBool,
}

impl Feed {
    pub fn is_listening(&self) -> bool {
        self.listening.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn set(&self, listening: bool) {
        self.listening.store(listening, std::sync::atomic::Ordering::SeqCst);
    }
}

pub async fn run(database_url: String, store: Store, mut stop: watch::Receiver<bool>) {
    let everything_changed = || everything_changed(&store);
    let feed = store.part::<Feed>();
    // When the feed was last known to hear everything (`None`: never yet, nothing to catch up on).
    let mut alive_at: Option<chrono::DateTime<chrono::Utc>> = None;
    while !*stop.borrow() {
        match tokio::time::timeout(HEARTBEAT * 4, listen(&database_url)).await {
            Ok(Ok((pool, mut listener))) => {
                feed.set(true);
                after_a_gap(&store, alive_at).await;
                alive_at = Some(store.now());
                let mut heartbeat = tokio::time::interval(HEARTBEAT);
                heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                let lost = loop {
                    let received = tokio::select! {
                        received = listener.try_recv() => received,
                        _ = heartbeat.tick() => {
                            let asked = sea_orm::sqlx::query("SELECT 1").execute(&mut listener);
                            match tokio::time::timeout(HEARTBEAT, asked).await {
                                Ok(Ok(_)) => {
                                    alive_at = Some(store.now());
                                    continue;
                                }
                                Ok(Err(error)) => break format!("the feed's connection failed: {error}"),
                                Err(_) => break "the feed's connection did not answer its heartbeat".to_owned(),
                            }
                        }
                        _ = stop.changed() => {
                            feed.set(false);
                            // Close the connection properly (PostgreSQL logs a reset otherwise).
                            drop(listener);
                            let _ = tokio::time::timeout(HEARTBEAT, pool.close()).await;
                            return;
                        }
                    };
                    match received {
                        Ok(Some(notification)) => {
                            if notification.channel() == CREDENTIALS_CHANNEL {
                                store.versions().changed(&scopes_of(notification.payload()));
                            } else if notification.channel() == USAGE_CHANNEL {
                                store.part::<UsageVersion>().heard(notification.payload());
                            } else {
                                announce(&store, notification.payload()).await;
                            }
                        }
                        // The connection dropped and was made again (LISTEN included): what was
                        // sent in between is covered by treating the drop itself as a change.
                        Ok(None) => after_a_gap(&store, alive_at).await,
                        Err(error) => break format!("the change listener failed: {error}"),
                    }
                };
                feed.set(false);
                tracing::warn!(cause = %lost, "change feed lost; reconnecting");
                everything_changed();
                drop(listener);
                // A connection gone silent may not close quickly either: not waited for long.
                let _ = tokio::time::timeout(HEARTBEAT, pool.close()).await;
            }
            Ok(Err(error)) => tracing::warn!(error = %error, "LISTEN failed; retrying"),
            Err(_) => tracing::warn!("LISTEN did not connect in time; retrying"),
        }
        // Away: whatever this replica caches meanwhile is read from the database, and stamped
        // stale again at each retry, since changes made meanwhile reach no one here.
        everything_changed();
        tokio::select! {
            () = tokio::time::sleep(HEARTBEAT) => {}
            _ = stop.changed() => return,
        }
    }
}

/// What this replica keeps is stale, whatever it is: every cached credential and usage answer.
fn everything_changed(store: &Store) {
    store.versions().changed(&[]);
    store.part::<UsageVersion>().changed();
}

/// A listener on its own one-connection pool, which `run` closes when stopping.
async fn listen(database_url: &str) -> Result<(PgPool, PgListener), sea_orm::sqlx::Error> {
    let pool = PgPoolOptions::new().max_connections(1).acquire_timeout(HEARTBEAT * 4).connect(database_url).await?;
    let mut listener = PgListener::connect_with(&pool).await?;
    listener.listen_all([CREDENTIALS_CHANNEL, USAGE_CHANNEL, outbox::EVENTS_CHANNEL]).await?;
    Ok((pool, listener))
}

/// What a (re)subscribed feed does about what it may have missed since it was last known alive
/// (`None`: never yet): every cached credential stamped stale, and the events committed meanwhile
/// that this replica has not published handed to its subscribers (the bus publishes each once),
/// the deliverer woken.
async fn after_a_gap(store: &Store, alive_at: Option<chrono::DateTime<chrono::Utc>>) {
    everything_changed(store);
    let Some(alive_at) = alive_at else { return };
    match outbox::ids_since(store.db(), alive_at - CATCH_UP_MARGIN, 10_000).await {
        Ok(ids) => {
            for id in &ids {
                announce(store, id).await;
            }
            tracing::info!(events = ids.len(), "change feed caught up");
        }
        Err(error) => error.log_if_internal(),
    }
    outbox::bus(store).wake_deliveries();
}

/// Hands a committed event (by id) to this replica's subscribers and wakes the deliverer.
async fn announce(store: &Store, event_id: &str) {
    match outbox::load(store.db(), event_id).await {
        Ok(Some(event)) => outbox::bus(store).publish(event),
        Ok(None) => {}
        Err(error) => error.log_if_internal(),
    }
    outbox::bus(store).wake_deliveries();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notifications_name_scopes_or_everything() {
        assert_eq!(scopes_of(EVERYTHING), Vec::new());
        assert_eq!(scopes_of("a:1;k:2"), vec![Scope::Account("1".into()), Scope::Key("2".into())]);
        assert_eq!(scopes_of("a:1;garbage"), Vec::new(), "anything unreadable: everything");
    }
}
