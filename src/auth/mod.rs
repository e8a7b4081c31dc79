//! Who is calling: principal resolution from request headers (ARCHITECTURE.md:
//! "Reading"), credential checks, and the permission set of the principal in the account the
//! request acts on.
//!
//! The facade is `Authenticator::resolve(headers, ip)`, backed by a credential cache (`cache.rs`).
//! Every failure is the one generic `UNAUTHENTICATED` (no hint whether a key, user or account
//! exists); a malformed token is refused before any database lookup (a cached credential is answered
//! before its headers are parsed, as only parsed values are ever cached: `headers::Raw`); failures are
//! throttled (`throttle.rs`).
pub mod cache;
mod flights;
pub mod gate;
mod headers;
pub mod last_use;
pub mod throttle;
pub mod usage;

use std::net::IpAddr;
use std::sync::Arc;

use axum::http::HeaderMap;
use chrono::{DateTime, Utc};

pub use cache::{CacheKey, Credential, CredentialCache};
use flights::{Flight, Flights};
pub use gate::{Admission, Gate, LimitStatus, Refusal};
use headers::Raw;
pub use headers::{Presented, ACCOUNT_HEADER, APP_KEY_HEADERS, APP_TOKEN_HEADERS};
pub use last_use::LastUseRecorder;
pub use throttle::{ip_subject, Throttle};
pub use usage::UsageCounter;

use crate::error::{AppError, AppResult};
pub use crate::principal::{Principal, PrincipalKind};
use crate::service::identity::sessions;
use crate::service::keys;
use crate::service::keys::meter::Outcome as UsageOutcome;
use crate::service::store::Store;
use crate::telemetry::LabelledCounter;

/// The outcome of authentication for one request: no credentials, a principal, or an error that
/// protected operations report (public ones, like `login`, ignore it).
pub type AuthState = AppResult<Option<Arc<Principal>>>;

/// The request's `User-Agent`, as a key's last use records it.
pub fn user_agent(headers: &HeaderMap) -> Option<&str> {
    headers.get(axum::http::header::USER_AGENT).and_then(|v| v.to_str().ok())
}

/// Resolves callers: the facade every route uses.
#[derive(Clone)]
pub struct Authenticator {
    store: Store,
    cache: CredentialCache,
    /// Cache misses being looked up, so concurrent misses of one credential share one lookup.
    flights: Flights,
    throttle: Throttle,
    last_use: LastUseRecorder,
    /// `appkeys_auth_outcomes_total` by `Outcome` (registering the series on every request cost a
    /// cached `/auth` more than its cache lookup).
    outcomes: Arc<LabelledCounter<{ Outcome::ALL.len() }>>,
    /// Rate limits and credits of keys' policies.
    gate: Arc<Gate>,
    /// Every decision about a known key, counted by outcome.
    usage: UsageCounter,
}

/// How a request's authentication ended, as counted in `appkeys_auth_outcomes_total`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Outcome {
    OkCached,
    /// Answered by another request's lookup of the same credential.
    OkShared,
    OkDatabase,
    Unauthenticated,
    RateLimited,
    /// The database was needed and away.
    Unavailable,
    Error,
}

impl Outcome {
    const ALL: [Outcome; 7] = [
        Outcome::OkCached,
        Outcome::OkShared,
        Outcome::OkDatabase,
        Outcome::Unauthenticated,
        Outcome::RateLimited,
        Outcome::Unavailable,
        Outcome::Error,
    ];

    fn label(self) -> &'static str {
        match self {
            Outcome::OkCached => "ok_cached",
            Outcome::OkShared => "ok_shared",
            Outcome::OkDatabase => "ok_database",
            Outcome::Unauthenticated => "unauthenticated",
            Outcome::RateLimited => "rate_limited",
            Outcome::Unavailable => "unavailable",
            Outcome::Error => "error",
        }
    }
}

impl Authenticator {
    pub fn new(store: Store, failures_per_minute: u32, last_use: LastUseRecorder, gate: Gate) -> Self {
        let clock = store.clock().clone();
        Self {
            store,
            cache: CredentialCache::new(clock.clone()),
            flights: Flights::default(),
            throttle: Throttle::new(failures_per_minute, clock),
            last_use,
            outcomes: Arc::new(LabelledCounter::new(
                "appkeys_auth_outcomes_total",
                "outcome",
                Outcome::ALL.map(Outcome::label),
            )),
            gate: Arc::new(gate),
            usage: UsageCounter::default(),
        }
    }

    pub fn throttle(&self) -> &Throttle {
        &self.throttle
    }

    pub fn cache(&self) -> &CredentialCache {
        &self.cache
    }

    pub fn last_use(&self) -> &LastUseRecorder {
        &self.last_use
    }

    pub fn gate(&self) -> &Gate {
        &self.gate
    }

    pub fn usage(&self) -> &UsageCounter {
        &self.usage
    }

    /// The rest of the gate for a granted principal (after the resources it asked for): its key's
    /// rate limits, then its credits, charged `cost` units; the decision is counted, and an admitted
    /// request is the key's last use (so `lastUsedAt`, and inactivity that reads it, agree with the
    /// `valid` count: a refused request is no use). Callers without a policy pass at once.
    pub async fn admit(
        &self,
        principal: &Principal,
        client_ip: Option<IpAddr>,
        user_agent: Option<&str>,
        cost: u32,
    ) -> Admission {
        let PrincipalKind::AppKey { access_id, .. } = &principal.kind else {
            return Admission::default();
        };
        let admission = match &principal.policy {
            Some(policy) if !policy.rate_limits.is_empty() || policy.credits.is_some() => {
                // Boxed: the gate's future (Redis, the database for credits) is built only for a
                // key with limits, and every other request's future stays small.
                Box::pin(self.gate.admit(&principal.account_id, access_id, policy, cost)).await
            }
            _ => Admission::default(),
        };
        let outcome = match &admission.refused {
            None => {
                let now = self.store.now();
                self.usage.count_valid(access_id, &principal.account_id, now, client_ip);
                self.last_use.record(access_id, now, client_ip, user_agent);
                None
            }
            Some(AppError::RateLimited { .. }) => Some(UsageOutcome::RateLimited),
            Some(AppError::UsageExceeded { .. }) => Some(UsageOutcome::UsageExceeded),
            Some(_) => None, // the database away: no decision was made
        };
        if let Some(outcome) = outcome {
            self.usage.count(access_id, &principal.account_id, self.store.now(), outcome);
        }
        admission
    }

    /// A key's request lacked a resource it asked for: counted as forbidden.
    pub fn refused_resources(&self, principal: &Principal) {
        if let PrincipalKind::AppKey { access_id, .. } = &principal.kind {
            self.usage.count(access_id, &principal.account_id, self.store.now(), UsageOutcome::Forbidden);
        }
    }

    /// A key's request needed these resources, and held them: each is marked as used now.
    pub fn used_resources<'r>(&self, principal: &Principal, resources: impl IntoIterator<Item = &'r str>) {
        let mut resources = resources.into_iter().peekable();
        if resources.peek().is_none() {
            return; // nothing needed: the clock is not read
        }
        if let PrincipalKind::AppKey { access_id, .. } = &principal.kind {
            let now = self.store.now();
            for resource in resources {
                self.usage.used_resource(access_id, &principal.account_id, resource, now);
            }
        }
    }

    /// Resolves the caller from the request headers, from the cache when it is current. Failures are
    /// throttled per client IP and per key (see `throttle`); a cache hit is never throttled. The
    /// address is written as text only where it is needed (a miss, a failure, a new last-use note).
    pub async fn resolve(&self, headers: &HeaderMap, client_ip: Option<IpAddr>) -> AuthState {
        let raw = match Raw::read(headers) {
            Ok(raw) => raw,
            Err(error) => return Err(self.failed(error, None, client_ip)),
        };
        // Read the sequence before the lookup: a change committed meanwhile makes the entry stale.
        let since = self.store.versions().snapshot();
        // One reading of the clock serves a cached request: the entry's validity and the use noted.
        let now = self.store.now();
        // A cached credential is answered before its values are parsed: entries are stored only
        // under values that parsed, so values that find one are well-formed (`Raw::credential`).
        let cached = raw.credential().and_then(|c| self.cache.hit(&c, self.store.versions(), now).map(|hit| (c, hit)));
        if let Some((credential, hit)) = cached {
            if hit.refresh {
                if let Ok(presented) = raw.parse() {
                    self.refresh(credential.to_key(), since, presented);
                }
            }
            return self.granted(hit.principal, Outcome::OkCached, now, client_ip);
        }
        let presented = match raw.parse() {
            Ok(presented) => presented,
            Err(error) => return Err(self.failed(error, None, client_ip)),
        };
        let Some(credential) = presented.credential() else {
            return Ok(None);
        };
        if let Some(hit) = self.cache.get(&credential, self.store.versions(), now) {
            // Found since the look above (a lookup finished meanwhile).
            if hit.refresh {
                self.refresh(credential.to_key(), since, presented);
            }
            return self.granted(hit.principal, Outcome::OkCached, now, client_ip);
        }
        // What follows waits on the database, and its future is kilobytes: boxed, it is built only
        // for a miss, and the future of every request (moved as it is awaited) stays small.
        let key = credential.to_key();
        Box::pin(self.resolve_missed(key, since, presented, client_ip)).await
    }

    /// A credential the cache did not hold: throttled per client address, then looked up, once for
    /// every request missing it at the same time.
    async fn resolve_missed(
        &self,
        key: CacheKey,
        since: u64,
        presented: Presented,
        client_ip: Option<IpAddr>,
    ) -> AuthState {
        if let Some(ip) = client_ip {
            self.throttle.check(&[&ip_subject(ip)])?;
        }
        // Another request may be looking this credential up already, from the same sequence.
        let leader = match self.flights.join(&key, since) {
            Flight::Lead(leader) => {
                // A lookup that finished between this request's miss and its joining has filled
                // the cache (it fills it before it leaves the flights): answered as shared.
                let now = self.store.now();
                if let (Some(found), _) = self.cache.find(&key.as_credential(), self.store.versions(), now) {
                    let principal = found.0.clone();
                    leader.finish(Some(found));
                    return self.granted(principal, Outcome::OkShared, now, client_ip);
                }
                Some(leader)
            }
            Flight::Follow(slot) => match flights::follow(slot).await {
                Some((principal, valid_until)) => {
                    let now = self.store.now();
                    if valid_until.is_none_or(|until| until > now) {
                        return self.granted(principal, Outcome::OkShared, now, client_ip);
                    }
                    None // its answer ran out meanwhile: look up here
                }
                None => None, // the lookup failed: look up here
            },
        };
        match self.look_up(&key, since, presented, leader).await {
            Ok((principal, _)) => {
                let now = self.store.now();
                self.granted(principal, Outcome::OkDatabase, now, client_ip)
            }
            Err(error) => {
                // The throttle's subject for a key (written out only on this failure path).
                let identity = key.as_credential().key.map(|key| format!("key:{key}"));
                Err(self.failed(error, identity.as_deref(), client_ip))
            }
        }
    }

    /// Looks a current entry's credential up again in the background, as a lookup in flight (so a
    /// request missing meanwhile waits for it rather than querying too), and stores the answer as
    /// any lookup's: `since` was read before it, so a change committed meanwhile still makes the
    /// new entry stale. Nothing is stored when the lookup fails: the entry runs out at its age, and
    /// the next request looks up on its own (with its own error and throttling).
    fn refresh(&self, key: CacheKey, since: u64, presented: Presented) {
        let Flight::Lead(leader) = self.flights.join(&key, since) else {
            return; // being looked up already
        };
        let this = self.clone();
        tokio::spawn(async move {
            if this.look_up(&key, since, presented, Some(leader)).await.is_ok() {
                this.cache.stats().refreshed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        });
    }

    /// The database lookup of a credential, its answer cached under `since` (read before it) and
    /// then handed to the lookup's followers: a request arriving in between finds the entry.
    async fn look_up(
        &self,
        key: &CacheKey,
        since: u64,
        presented: Presented,
        leader: Option<flights::Leader>,
    ) -> AppResult<cache::Found> {
        let resolved =
            resolve_uncached(&self.store, &self.usage, presented).await.map(|(p, until)| (Arc::new(p), until));
        if let Ok((principal, valid_until)) = &resolved {
            self.cache.insert(key.clone(), since, principal.clone(), *valid_until);
        }
        if let Some(leader) = leader {
            leader.finish(resolved.as_ref().ok().cloned());
        }
        resolved
    }

    /// A request let through (its key's address checked against the allowlist) and its outcome
    /// counted (`ok_cached`, `ok_shared`: answered by another request's lookup, `ok_database`).
    fn granted(
        &self,
        principal: Arc<Principal>,
        outcome: Outcome,
        at: DateTime<Utc>,
        client_ip: Option<IpAddr>,
    ) -> AuthState {
        if outcome == Outcome::OkShared {
            self.cache.stats().shared.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        if let Some(policy) = &principal.policy {
            // The allowlist comes right after the roles: a request from elsewhere is no use.
            if !policy.allows(client_ip) {
                self.gate.refused(Refusal::IpNotAllowed);
                if let PrincipalKind::AppKey { access_id, .. } = &principal.kind {
                    self.usage.count(access_id, &principal.account_id, at, UsageOutcome::IpNotAllowed);
                }
                return Err(AppError::IpNotAllowed);
            }
        }
        self.outcomes.increment(outcome as usize);
        Ok(Some(principal))
    }

    /// Counts an authentication failure; once the subject is over its quota the answer becomes
    /// `RATE_LIMITED` instead of `UNAUTHENTICATED`.
    fn failed(&self, error: AppError, identity: Option<&str>, client_ip: Option<IpAddr>) -> AppError {
        self.outcomes.increment(match &error {
            AppError::Unauthenticated => Outcome::Unauthenticated,
            AppError::RateLimited { .. } => Outcome::RateLimited,
            AppError::Unavailable(_) => Outcome::Unavailable,
            _ => Outcome::Error,
        } as usize);
        if !matches!(error, AppError::Unauthenticated) {
            return error;
        }
        let client_ip = client_ip.map(|ip| ip.to_string());
        self.throttle.record_failure(identity, client_ip.as_deref());
        let ip = client_ip.as_deref().map(ip_subject);
        let subjects: Vec<&str> = identity.into_iter().chain(ip.as_deref()).collect();
        match self.throttle.check(&subjects) {
            Err(limited) => limited,
            Ok(()) => error,
        }
    }
}

/// The database path; the second value is when the credential stops by itself (a session's expiry,
/// a previous token's end of overlap).
async fn resolve_uncached(
    store: &Store,
    usage: &UsageCounter,
    presented: Presented,
) -> AppResult<(Principal, Option<chrono::DateTime<chrono::Utc>>)> {
    match presented {
        Presented::Nothing => Err(AppError::Unauthenticated),
        Presented::Session { token, account } => {
            let grant = sessions::grant(store, &token, account.as_ref()).await?.ok_or(AppError::Unauthenticated)?;
            let principal = Principal {
                kind: PrincipalKind::User { user_id: grant.user_id, email: grant.email, session_id: grant.session_id },
                account_id: grant.account_id,
                account_name: grant.account_name,
                resources: grant.resources,
                forward_headers: Default::default(),
                policy: None,
            };
            Ok((principal, Some(grant.expires_at)))
        }
        Presented::AppKey { key, token, account } => {
            let grant = match keys::authenticate(store, &key, &token, account.as_ref()).await? {
                Ok(grant) => grant,
                Err(refused) => {
                    if let Some(refused) = refused {
                        usage.count(&refused.access_id, &refused.account_id, store.now(), refused.outcome);
                    }
                    return Err(AppError::Unauthenticated);
                }
            };
            let valid_until = grant.valid_until;
            let principal = Principal {
                kind: PrincipalKind::AppKey { key_id: grant.key_id, key: grant.key, access_id: grant.access_id },
                account_id: grant.account_id,
                account_name: grant.account_name,
                resources: grant.resources,
                forward_headers: Default::default(),
                policy: grant.policy,
            };
            Ok((principal, valid_until))
        }
    }
}
