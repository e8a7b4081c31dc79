//! Brute-force throttling of *failures*: failed logins per account+email and per client IP, failed
//! key authentications per key and per client IP. Rates come from governor (GCRA); a subject that
//! fails faster than its quota is refused with `RATE_LIMITED` until the quota allows again.
//!
//! Successful traffic is never counted, and a valid key is never refused because others failed with
//! it: key throttling only turns further *failures* into `RATE_LIMITED`.
use governor::clock::Clock as _;
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};
use moka::sync::Cache;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::clock::Clock;
use crate::error::{AppError, AppResult};

/// governor's view of the store's clock, so tests reach the end of a throttle by moving it.
#[derive(Clone)]
struct ThrottleClock(Clock);

impl governor::clock::Clock for ThrottleClock {
    type Instant = Instant;
    fn now(&self) -> Instant {
        self.0.instant()
    }
}

type Limiter = RateLimiter<String, DefaultKeyedStateStore<String>, ThrottleClock, NoOpMiddleware<Instant>>;

/// Client IPs get this many times the quota of one identity (several users may share an address).
const PER_IP_FACTOR: u32 = 5;
const MAX_TRACKED: usize = 50_000;

#[derive(Clone)]
pub struct Throttle {
    identity: Arc<Limiter>,
    ip: Arc<Limiter>,
    /// Subjects refused until an instant.
    blocked: Cache<String, Instant>,
    clock: ThrottleClock,
}

impl Throttle {
    pub fn new(failures_per_minute: u32, clock: Clock) -> Self {
        let clock = ThrottleClock(clock);
        let per_identity = NonZeroU32::new(failures_per_minute.max(1)).unwrap_or(NonZeroU32::MIN);
        let per_ip = per_identity.saturating_mul(NonZeroU32::new(PER_IP_FACTOR).unwrap_or(NonZeroU32::MIN));
        Self {
            identity: Arc::new(RateLimiter::dashmap_with_clock(Quota::per_minute(per_identity), clock.clone())),
            ip: Arc::new(RateLimiter::dashmap_with_clock(Quota::per_minute(per_ip), clock.clone())),
            blocked: Cache::builder().max_capacity(100_000).time_to_live(Duration::from_secs(120)).build(),
            clock,
        }
    }

    /// `RATE_LIMITED` (with the seconds to wait) when any subject is blocked.
    pub fn check(&self, subjects: &[&str]) -> AppResult<()> {
        let now = self.clock.now();
        let wait = subjects
            .iter()
            .filter_map(|subject| self.blocked.get(*subject))
            .filter(|until| *until > now)
            .map(|until| until - now)
            .max();
        match wait {
            Some(wait) => Err(AppError::RateLimited { retry_after_secs: wait.as_secs().max(1), limit: None }),
            None => Ok(()),
        }
    }

    /// Counts one failure for an identity (`login:<account>/<email>` or `key:<key>`, when there is
    /// one) and for an IP.
    pub fn record_failure(&self, identity: Option<&str>, ip: Option<&str>) {
        if let Some(identity) = identity {
            self.count(&self.identity, identity.to_owned());
        }
        if let Some(ip) = ip {
            self.count(&self.ip, ip_subject(ip));
        }
    }

    fn count(&self, limiter: &Limiter, subject: String) {
        // Every failing subject gets a limiter entry: forget the ones that have recovered before
        // they pile up.
        if limiter.len() > MAX_TRACKED {
            limiter.retain_recent();
        }
        if let Err(not_until) = limiter.check_key(&subject) {
            let now = self.clock.now();
            self.blocked.insert(subject, now + not_until.wait_time_from(now));
        }
    }
}

pub fn ip_subject(ip: impl std::fmt::Display) -> String {
    format!("ip:{ip}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_beyond_the_quota_block_the_subject_and_not_others() {
        let throttle = Throttle::new(3, Clock::default());
        for _ in 0..3 {
            throttle.record_failure(Some("login:main/a@example.com"), None);
        }
        assert!(throttle.check(&["login:main/a@example.com"]).is_ok(), "three failures are within the quota");
        throttle.record_failure(Some("login:main/a@example.com"), None);
        let refused = throttle.check(&["login:main/a@example.com"]);
        assert!(matches!(refused, Err(AppError::RateLimited { retry_after_secs, .. }) if retry_after_secs >= 1));
        assert!(throttle.check(&["login:main/b@example.com"]).is_ok());
    }

    #[test]
    fn a_blocked_subject_is_let_through_once_the_clock_has_moved_past_its_wait() {
        let clock = Clock::default();
        let throttle = Throttle::new(1, clock.clone());
        throttle.record_failure(Some("key:k"), None);
        throttle.record_failure(Some("key:k"), None);
        assert!(throttle.check(&["key:k"]).is_err(), "a second failure within the minute is refused");
        clock.advance(chrono::Duration::seconds(61));
        assert!(throttle.check(&["key:k"]).is_ok(), "a minute later on the moved clock it is not");
    }

    #[test]
    fn an_ip_gets_five_times_the_quota() {
        let throttle = Throttle::new(2, Clock::default());
        for i in 0..10 {
            throttle.record_failure(Some(&format!("key:k{i}")), Some("10.0.0.1"));
        }
        assert!(throttle.check(&[&ip_subject("10.0.0.1")]).is_ok());
        throttle.record_failure(Some("key:k10"), Some("10.0.0.1"));
        assert!(throttle.check(&[&ip_subject("10.0.0.1")]).is_err());
        assert!(throttle.check(&[&ip_subject("10.0.0.2")]).is_ok());
    }
}
