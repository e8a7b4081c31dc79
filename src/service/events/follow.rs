//! Follows what other replicas commit, on PostgreSQL: credential changes (each notification stamps
//! the scopes it names, see `versions`) and key events (each notification carries an event id; the
//! event is read and handed to this replica's subscribers, and the deliverer is woken). Every
//! (re)connection stamps everything, since notifications sent while disconnected are lost. Stops,
//! closing its connection, when asked to.
use sea_orm::sqlx::postgres::{PgListener, PgPool, PgPoolOptions};
use std::time::Duration;
use tokio::sync::watch;

use crate::service::events::outbox;
use crate::service::store::versions::Scope;
use crate::service::store::Store;
use crate::service::store::CREDENTIALS_CHANNEL;
use crate::service::store::EVERYTHING;

/// The scopes a credential notification names (none: everything).
fn scopes_of(payload: &str) -> Vec<Scope> {
    if payload == EVERYTHING {
        return Vec::new();
    }
    let scopes: Option<Vec<Scope>> = payload.split(';').map(Scope::decode).collect();
    scopes.unwrap_or_default()
}

pub async fn run(database_url: String, store: Store, mut stop: watch::Receiver<bool>) {
    let everything_changed = || store.versions().changed(&[]);
    while !*stop.borrow() {
        match listen(&database_url).await {
            Ok((pool, mut listener)) => {
                everything_changed();
                loop {
                    let received = tokio::select! {
                        received = listener.try_recv() => received,
                        _ = stop.changed() => {
                            // Close the connection properly (PostgreSQL logs a reset otherwise).
                            drop(listener);
                            pool.close().await;
                            return;
                        }
                    };
                    match received {
                        Ok(Some(notification)) => {
                            if notification.channel() == CREDENTIALS_CHANNEL {
                                store.versions().changed(&scopes_of(notification.payload()));
                            } else {
                                announce(&store, notification.payload()).await;
                            }
                        }
                        // The connection dropped; the next call reconnects. Anything missed in
                        // between is covered by treating the drop itself as a change.
                        Ok(None) => everything_changed(),
                        Err(error) => {
                            tracing::warn!(error = %error, "change listener failed; reconnecting");
                            everything_changed();
                            drop(listener);
                            pool.close().await;
                            break;
                        }
                    }
                }
            }
            Err(error) => tracing::warn!(error = %error, "LISTEN failed; retrying"),
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = stop.changed() => return,
        }
    }
}

/// A listener on its own one-connection pool, which `run` closes when stopping.
async fn listen(database_url: &str) -> Result<(PgPool, PgListener), sea_orm::sqlx::Error> {
    let pool = PgPoolOptions::new().max_connections(1).connect(database_url).await?;
    let mut listener = PgListener::connect_with(&pool).await?;
    listener.listen_all([CREDENTIALS_CHANNEL, outbox::EVENTS_CHANNEL]).await?;
    Ok((pool, listener))
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
