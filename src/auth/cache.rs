//! A short-lived cache of verified credentials, so the hot path (`/auth`, every GraphQL request)
//! costs a SHA-256 and a hash-map lookup instead of database round trips.
//!
//! Exactness: an entry remembers the credentials generation it was computed under (read *before*
//! the database lookup). Every commit that may change what a credential resolves to bumps the
//! generation on this replica at once and, on PostgreSQL, on every other replica through
//! LISTEN/NOTIFY (`follow_changes`). An entry from an older generation is a miss. As a fallback
//! should a notification be lost, no entry lives longer than `MAX_AGE`.
use moka::sync::Cache;
use std::sync::Arc;
use std::time::Duration;

use super::Principal;
use crate::service::{Store, CREDENTIALS_CHANNEL};

/// Below the 1 s within which every replica must honour a revocation.
pub const MAX_AGE: Duration = Duration::from_millis(750);
const MAX_ENTRIES: u64 = 100_000;

#[derive(Clone, Hash, PartialEq, Eq)]
pub enum CacheKey {
    /// A session, by its token's digest, and the account asked for.
    Session { digest: String, account: Option<String> },
    /// A key, its token's digest and the account asked for (`None`: its own).
    AppKey { key: String, digest: String, account: Option<String> },
}

#[derive(Clone)]
struct Entry {
    generation: u64,
    principal: Arc<Principal>,
    /// Credentials that stop on their own schedule: sessions, previous tokens of a renewal.
    valid_until: Option<chrono::DateTime<chrono::Utc>>,
}

#[derive(Clone)]
pub struct CredentialCache {
    entries: Cache<CacheKey, Entry>,
}

impl Default for CredentialCache {
    fn default() -> Self {
        Self { entries: Cache::builder().max_capacity(MAX_ENTRIES).time_to_live(MAX_AGE).build() }
    }
}

impl CredentialCache {
    pub fn get(&self, key: &CacheKey, generation: u64, now: chrono::DateTime<chrono::Utc>) -> Option<Arc<Principal>> {
        let entry = self.entries.get(key)?;
        let expired = entry.valid_until.is_some_and(|until| until <= now);
        (entry.generation == generation && !expired).then_some(entry.principal)
    }

    /// `generation` must have been read before the lookup that produced `principal`.
    pub fn insert(
        &self,
        key: CacheKey,
        generation: u64,
        principal: Arc<Principal>,
        valid_until: Option<chrono::DateTime<chrono::Utc>>,
    ) {
        self.entries.insert(key, Entry { generation, principal, valid_until });
    }
}

/// Follows other replicas' credential changes on PostgreSQL: every notification bumps this replica's
/// generation; so does every (re)connection, since notifications sent while disconnected are lost.
pub async fn follow_changes(database_url: String, store: Store) {
    use sea_orm::sqlx::postgres::PgListener;
    loop {
        match PgListener::connect(&database_url).await {
            Ok(mut listener) => match listener.listen(CREDENTIALS_CHANNEL).await {
                Ok(()) => {
                    store.credentials_changed();
                    loop {
                        match listener.try_recv().await {
                            Ok(Some(_)) => store.credentials_changed(),
                            // The connection dropped; the next call reconnects. Anything missed in
                            // between is covered by treating the drop itself as a change.
                            Ok(None) => store.credentials_changed(),
                            Err(error) => {
                                tracing::warn!(error = %error, "credential change listener failed; reconnecting");
                                store.credentials_changed();
                                break;
                            }
                        }
                    }
                }
                Err(error) => tracing::warn!(error = %error, "LISTEN failed; retrying"),
            },
            Err(error) => tracing::warn!(error = %error, "connecting the credential change listener failed; retrying"),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
