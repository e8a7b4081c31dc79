//! A short-lived cache of verified credentials, so the hot path (`/auth`, every GraphQL request)
//! costs a SHA-256 and a hash-map lookup instead of database round trips.
//!
//! Exactness: an entry remembers the change sequence number read *before* the database lookup that
//! produced it (`service::versions`). Every commit that may change what a credential resolves to
//! stamps the scopes it touched — an account, a key — on this replica at once and, on PostgreSQL, on
//! every other replica through LISTEN/NOTIFY (`service::follow`). An entry whose account or key was
//! stamped later is a miss; entries of other accounts stay warm. As a fallback should a notification
//! be lost, no entry lives longer than `MAX_AGE`.
use quick_cache::sync::Cache;
use quick_cache::Equivalent;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::Principal;
use crate::clock::Clock;
use crate::service::store::versions::CredentialVersions;

/// Below the 1 s within which every replica must honour a revocation.
pub const MAX_AGE: Duration = Duration::from_millis(750);
/// A current entry this old is looked up again in the background by the next request that finds
/// it (`Authenticator::resolve`), so a credential in steady use is refreshed before `MAX_AGE`
/// instead of missing: every request for it then waited on one database lookup.
pub const REFRESH_AFTER: Duration = Duration::from_millis(450);
const MAX_ENTRIES: usize = 100_000;

/// Which credential an entry answers for: its token's SHA-256, the key (`None`: a session) and the
/// account asked for (`None`: the credential's own).
#[derive(Clone, PartialEq, Eq)]
pub struct CacheKey {
    digest: [u8; 32],
    key: Option<Box<str>>,
    account: Option<Box<str>>,
}

/// A `CacheKey` as a request presents it, borrowed from its headers: a lookup allocates nothing,
/// and only a miss writes the key out (`to_key`).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Credential<'a> {
    pub digest: [u8; 32],
    pub key: Option<&'a str>,
    pub account: Option<&'a str>,
}

impl Credential<'_> {
    pub fn to_key(&self) -> CacheKey {
        CacheKey { digest: self.digest, key: self.key.map(Box::from), account: self.account.map(Box::from) }
    }
}

impl CacheKey {
    pub fn as_credential(&self) -> Credential<'_> {
        Credential { digest: self.digest, key: self.key.as_deref(), account: self.account.as_deref() }
    }
}

// Hashed as its borrowed form, so that a `Credential` finds the entry its `to_key` was stored under.
impl Hash for CacheKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_credential().hash(state);
    }
}

impl Equivalent<CacheKey> for Credential<'_> {
    fn equivalent(&self, key: &CacheKey) -> bool {
        *self == key.as_credential()
    }
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
    /// When it was stored: its age counts from there.
    stored: Instant,
}

/// A cache hit: the principal, and whether its entry is due for a refresh (`REFRESH_AFTER`).
pub struct Hit {
    pub principal: Arc<Principal>,
    pub refresh: bool,
}

/// Entries live in a sharded map whose reads take a shard's read lock and nothing else (moka, used
/// before, also recorded each read for its eviction policy: half the cache's cost on `/auth`). Age
/// is checked on reading, so an entry older than `MAX_AGE` is never answered; such entries are
/// swept out at most once every `MAX_AGE`, by the insert of a lookup's answer.
#[derive(Clone)]
pub struct CredentialCache {
    entries: Arc<Cache<CacheKey, Entry>>,
    /// When entries past their age were last swept out.
    swept: Arc<Mutex<Instant>>,
    stats: Arc<CacheStats>,
    /// Ages are measured on the store's clock, so tests age entries by moving it.
    clock: Clock,
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

impl CredentialCache {
    pub fn new(clock: Clock) -> Self {
        Self {
            entries: Arc::new(Cache::new(MAX_ENTRIES)),
            swept: Arc::new(Mutex::new(clock.instant())),
            stats: Arc::default(),
            clock,
        }
    }

    pub fn get(
        &self,
        credential: &Credential<'_>,
        versions: &CredentialVersions,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Option<Hit> {
        let (hit, stale) = self.look(credential, versions, now);
        if stale {
            self.stats.invalidated.fetch_add(1, Ordering::Relaxed);
        }
        let counter = if hit.is_some() { &self.stats.hits } else { &self.stats.misses };
        counter.fetch_add(1, Ordering::Relaxed);
        hit
    }

    /// `get` for a credential read from headers and not yet parsed (`headers::Raw`): a hit is
    /// counted; a miss is not, as the `get` of the parsed credential follows it (a malformed
    /// credential, refused before any database lookup, counts as neither).
    pub fn hit(
        &self,
        credential: &Credential<'_>,
        versions: &CredentialVersions,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Option<Hit> {
        let hit = self.look(credential, versions, now).0?;
        self.stats.hits.fetch_add(1, Ordering::Relaxed);
        Some(hit)
    }

    /// The lookup `get` and `hit` share, counting nothing: a hit if the entry is current, and
    /// whether a stale entry was found.
    fn look(
        &self,
        credential: &Credential<'_>,
        versions: &CredentialVersions,
        now: chrono::DateTime<chrono::Utc>,
    ) -> (Option<Hit>, bool) {
        let Some((entry, age)) = self.entry(credential) else {
            return (None, false);
        };
        let (found, stale) = Self::current(entry, versions, now);
        (found.map(|(principal, _)| Hit { principal, refresh: age >= REFRESH_AFTER }), stale)
    }

    /// `get` without counting: the current principal for `credential` with when it stops by
    /// itself, and whether a stale entry was found.
    pub fn find(
        &self,
        credential: &Credential<'_>,
        versions: &CredentialVersions,
        now: chrono::DateTime<chrono::Utc>,
    ) -> (Option<Found>, bool) {
        match self.entry(credential) {
            Some((entry, _)) => Self::current(entry, versions, now),
            None => (None, false),
        }
    }

    /// The entry for `credential` and its age, unless it is older than `MAX_AGE`.
    fn entry(&self, credential: &Credential<'_>) -> Option<(Entry, Duration)> {
        let entry = self.entries.get(credential)?;
        let age = self.clock.instant().saturating_duration_since(entry.stored);
        (age < MAX_AGE).then_some((entry, age))
    }

    /// An entry's principal if it is current (nothing it depends on changed since its lookup, and
    /// it has not stopped by itself), and whether it was found stale.
    fn current(
        entry: Entry,
        versions: &CredentialVersions,
        now: chrono::DateTime<chrono::Utc>,
    ) -> (Option<Found>, bool) {
        let expired = entry.valid_until.is_some_and(|until| until <= now);
        let principal = &entry.principal;
        let current = versions.unchanged_since(entry.since, &principal.account_id, principal.app_key_id());
        // The entry is a copy: its principal is moved out, not counted once more.
        ((current && !expired).then_some((entry.principal, entry.valid_until)), !current)
    }

    pub fn stats(&self) -> &CacheStats {
        &self.stats
    }

    /// How many entries are held, past their age or not.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.len()
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
        let stored = self.clock.instant();
        self.insert_stored(key, Entry { since, principal, valid_until, stored });
    }

    fn insert_stored(&self, key: CacheKey, entry: Entry) {
        self.entries.insert(key, entry);
        self.sweep();
    }

    /// Drops the entries past their age, unless that was done less than `MAX_AGE` ago: credentials
    /// no longer presented (ended sessions, deleted keys) do not stay in memory.
    fn sweep(&self) {
        let Ok(mut swept) = self.swept.try_lock() else {
            return; // another insert is sweeping
        };
        let now = self.clock.instant();
        if now.saturating_duration_since(*swept) < MAX_AGE {
            return;
        }
        *swept = now;
        self.entries.retain(|_, entry| now.saturating_duration_since(entry.stored) < MAX_AGE);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::principal::PrincipalKind;

    fn principal(account: &str, key: &str) -> Arc<Principal> {
        Arc::new(Principal {
            kind: PrincipalKind::AppKey { key_id: key.into(), key: key.into(), access_id: key.into() },
            account_id: account.into(),
            account_name: account.into(),
            resources: Default::default(),
            forward_headers: Default::default(),
            policy: None,
        })
    }

    fn credential<'a>(digest: u8, key: Option<&'a str>, account: Option<&'a str>) -> Credential<'a> {
        Credential { digest: [digest; 32], key, account }
    }

    fn entry(principal: Arc<Principal>, stored: Instant) -> Entry {
        Entry { since: 0, principal, valid_until: None, stored }
    }

    #[test]
    fn a_credential_finds_only_the_entry_stored_under_its_own_key() {
        let cache = CredentialCache::new(Clock::default());
        let versions = CredentialVersions::default();
        let now = chrono::Utc::now();
        let stored = credential(1, Some("appkey-a"), Some("acme"));
        cache.insert(stored.to_key(), versions.snapshot(), principal("a", "appkey-a"), None);
        let hit = cache.get(&stored, &versions, now).expect("its own credential hits");
        assert_eq!(hit.principal.account_id, "a");
        assert!(!hit.refresh, "a new entry is not due for a refresh");
        for other in [
            credential(2, Some("appkey-a"), Some("acme")), // another token
            credential(1, Some("appkey-b"), Some("acme")), // another key
            credential(1, Some("appkey-a"), None),         // its own account, not the one named
            credential(1, Some("appkey-a"), Some("other")),
            credential(1, None, Some("acme")), // a session with that digest
        ] {
            assert!(cache.get(&other, &versions, now).is_none());
        }
        assert_eq!(cache.stats().hits.load(Ordering::Relaxed), 1);
        assert_eq!(cache.stats().misses.load(Ordering::Relaxed), 5);
    }

    #[test]
    fn an_entry_past_its_age_is_a_miss_and_is_swept_out() {
        let cache = CredentialCache::new(Clock::default());
        let versions = CredentialVersions::default();
        let now = chrono::Utc::now();
        let aged = cache.clock.instant().checked_sub(MAX_AGE).expect("an instant a moment ago");
        let old = credential(1, Some("appkey-old"), None);
        cache.insert_stored(old.to_key(), entry(principal("a", "appkey-old"), aged));
        assert!(cache.get(&old, &versions, now).is_none(), "older than MAX_AGE: never answered");
        let due = cache.clock.instant().checked_sub(REFRESH_AFTER).expect("an instant a moment ago");
        let refreshing = credential(2, Some("appkey-due"), None);
        cache.insert_stored(refreshing.to_key(), entry(principal("a", "appkey-due"), due));
        assert!(cache.get(&refreshing, &versions, now).expect("still current").refresh);
        assert_eq!(cache.len(), 2, "no sweep within MAX_AGE of the last");

        *cache.swept.lock().expect("sweep lock") = aged;
        cache.insert(credential(3, Some("appkey-new"), None).to_key(), 0, principal("a", "appkey-new"), None);
        assert_eq!(cache.len(), 2, "the aged entry is swept out, the others stay");
        assert!(cache.get(&refreshing, &versions, now).is_some());
    }

    #[test]
    fn moving_the_clock_ages_an_entry() {
        let clock = Clock::default();
        let cache = CredentialCache::new(clock.clone());
        let versions = CredentialVersions::default();
        let key = credential(1, Some("appkey-a"), None);
        cache.insert(key.to_key(), versions.snapshot(), principal("a", "appkey-a"), None);
        clock.advance(chrono::Duration::milliseconds(REFRESH_AFTER.as_millis() as i64));
        assert!(cache.get(&key, &versions, clock.now()).expect("still current").refresh, "due for a refresh");
        clock.advance(chrono::Duration::milliseconds((MAX_AGE - REFRESH_AFTER).as_millis() as i64));
        assert!(cache.get(&key, &versions, clock.now()).is_none(), "past MAX_AGE on the moved clock");
    }

    #[test]
    fn an_entry_of_a_changed_scope_or_past_its_end_is_not_answered() {
        let cache = CredentialCache::new(Clock::default());
        let versions = CredentialVersions::default();
        let now = chrono::Utc::now();
        let (mine, theirs, ending) =
            (credential(1, Some("k1"), None), credential(2, Some("k2"), None), credential(3, Some("k3"), None));
        let since = versions.snapshot();
        cache.insert(mine.to_key(), since, principal("a", "k1"), None);
        cache.insert(theirs.to_key(), since, principal("b", "k2"), None);
        cache.insert(ending.to_key(), since, principal("b", "k3"), Some(now));
        versions.changed(&[crate::service::store::versions::Scope::Account("a".into())]);
        assert!(cache.get(&mine, &versions, now).is_none(), "its account changed");
        assert_eq!(cache.stats().invalidated.load(Ordering::Relaxed), 1);
        assert!(cache.get(&theirs, &versions, now).is_some(), "another account's entry stays warm");
        assert!(cache.get(&ending, &versions, now).is_none(), "it stopped by itself");
    }
}
