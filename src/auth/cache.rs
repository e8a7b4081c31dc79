//! A short-lived cache of verified credentials, so the hot path (`/auth`, every GraphQL request)
//! costs a SHA-256 and a hash-map lookup instead of database round trips.
//!
//! Exactness: an entry remembers the change sequence number read *before* the database lookup that
//! produced it (`service::versions`). Every commit that may change what a credential resolves to
//! stamps the scopes it touched — an account, a key — on this replica at once and, on PostgreSQL, on
//! every other replica through LISTEN/NOTIFY (`service::follow`). An entry whose account or key was
//! stamped later is a miss; entries of other accounts stay warm. As a fallback should a notification
//! be lost, no entry lives longer than `MAX_AGE`.
use moka::sync::Cache;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::Principal;
use crate::service::versions::CredentialVersions;

/// Below the 1 s within which every replica must honour a revocation.
pub const MAX_AGE: Duration = Duration::from_millis(750);
/// A current entry this old is looked up again in the background by the next request that finds
/// it (`Authenticator::resolve`), so a credential in steady use is refreshed before `MAX_AGE`
/// instead of missing: every request for it then waited on one database lookup.
pub const REFRESH_AFTER: Duration = Duration::from_millis(450);
const MAX_ENTRIES: u64 = 100_000;

#[derive(Clone, Hash, PartialEq, Eq)]
pub enum CacheKey {
    /// A session, by its token's digest, and the account asked for.
    Session { digest: String, account: Option<String> },
    /// A key, its token's digest and the account asked for (`None`: its own).
    AppKey { key: String, digest: String, account: Option<String> },
}

/// A current principal, and when it stops by itself (sessions, previous tokens of a renewal).
pub type Found = (Arc<Principal>, Option<chrono::DateTime<chrono::Utc>>);

#[derive(Clone)]
struct Entry {
    /// The change sequence number read before the lookup.
    since: u64,
    principal: Arc<Principal>,
    /// Credentials that stop on their own schedule: sessions, previous tokens of a renewal.
    valid_until: Option<chrono::DateTime<chrono::Utc>>,
    /// When it was stored (the cache's time to live counts from there too).
    stored: std::time::Instant,
}

/// A cache hit: the principal, and whether its entry is due for a refresh (`REFRESH_AFTER`).
pub struct Hit {
    pub principal: Arc<Principal>,
    pub refresh: bool,
}

#[derive(Clone)]
pub struct CredentialCache {
    /// Hashed with foldhash, not SipHash: a key is only stored once its credential verified (no
    /// caller chooses what goes in), and its digest is already a SHA-256.
    entries: Cache<CacheKey, Entry, foldhash::fast::RandomState>,
    stats: Arc<CacheStats>,
}

/// How the cache fares: lookups answered, lookups that went to the database (or, `shared`, were
/// answered by another request's lookup of the same credential), and entries found stale because a
/// change touched them.
#[derive(Debug, Default)]
pub struct CacheStats {
    pub hits: AtomicU64,
    pub misses: AtomicU64,
    /// Misses answered by a lookup another request was making (`auth::flights`).
    pub shared: AtomicU64,
    /// Current entries looked up again in the background before their age ran out.
    pub refreshed: AtomicU64,
    pub invalidated: AtomicU64,
}

impl Default for CredentialCache {
    fn default() -> Self {
        Self {
            entries: Cache::builder()
                .max_capacity(MAX_ENTRIES)
                .time_to_live(MAX_AGE)
                .build_with_hasher(foldhash::fast::RandomState::default()),
            stats: Arc::default(),
        }
    }
}

impl CredentialCache {
    pub fn get(
        &self,
        key: &CacheKey,
        versions: &CredentialVersions,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Option<Hit> {
        let Some(entry) = self.entries.get(key) else {
            self.stats.misses.fetch_add(1, Ordering::Relaxed);
            return None;
        };
        let (found, stale) = Self::current(&entry, versions, now);
        if stale {
            self.stats.invalidated.fetch_add(1, Ordering::Relaxed);
        }
        let counter = if found.is_some() { &self.stats.hits } else { &self.stats.misses };
        counter.fetch_add(1, Ordering::Relaxed);
        found.map(|(principal, _)| Hit { principal, refresh: entry.stored.elapsed() >= REFRESH_AFTER })
    }

    /// `get` without counting: the current principal for `key` with when it stops by itself, and
    /// whether a stale entry was found.
    pub fn find(
        &self,
        key: &CacheKey,
        versions: &CredentialVersions,
        now: chrono::DateTime<chrono::Utc>,
    ) -> (Option<Found>, bool) {
        match self.entries.get(key) {
            Some(entry) => Self::current(&entry, versions, now),
            None => (None, false),
        }
    }

    /// An entry's principal if it is current (nothing it depends on changed since its lookup, and
    /// it has not stopped by itself), and whether it was found stale.
    fn current(
        entry: &Entry,
        versions: &CredentialVersions,
        now: chrono::DateTime<chrono::Utc>,
    ) -> (Option<Found>, bool) {
        let expired = entry.valid_until.is_some_and(|until| until <= now);
        let principal = &entry.principal;
        let current = versions.unchanged_since(entry.since, &principal.account_id, principal.app_key_id());
        ((current && !expired).then(|| (entry.principal.clone(), entry.valid_until)), !current)
    }

    pub fn stats(&self) -> &CacheStats {
        &self.stats
    }

    /// `since` must have been read (`CredentialVersions::snapshot`) before the lookup that produced
    /// `principal`.
    pub fn insert(
        &self,
        key: CacheKey,
        since: u64,
        principal: Arc<Principal>,
        valid_until: Option<chrono::DateTime<chrono::Utc>>,
    ) {
        self.entries.insert(key, Entry { since, principal, valid_until, stored: std::time::Instant::now() });
    }
}
