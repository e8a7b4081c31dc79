//! The gate after a key is known: its rate limits and its credits (the allowlist is checked where
//! the principal is granted, in `Authenticator::granted`).
//!
//! **Rate limits** are sliding windows: a limit of `L` per period `P` admits a request of cost `n`
//! when `previous × (P − elapsed) / P + current + n ≤ L`, where `current` counts this window's
//! units (windows are aligned to the Unix epoch, so every replica and Redis agree on them) and
//! `previous` the window before. It admits a burst of `L` at once and at most about `L` in any span
//! of `P`. Without Redis each replica keeps its own windows (N replicas admit up to N × L); with
//! `--redis-url` one script checks and counts every limit of a key in one round trip, so all
//! replicas share one budget. When Redis does not answer within 250 ms the replica falls back to
//! its own windows (counted, warned once), probes Redis every 500 ms and shares again when it is
//! back.
//!
//! **Credits** are charged by `service::keys::policy::Charger`, exactly, in the database.
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::clock::Clock;
use crate::domain::policy::RateLimitRule;
use crate::domain::KeyPolicy;
use crate::error::AppError;
use crate::service::keys::policy::{Charge, Charger};
use crate::service::store::Store;
use crate::telemetry::LabelledCounter;

/// How long a request waits for Redis before deciding with this replica's own windows.
const REDIS_TIMEOUT: Duration = Duration::from_millis(250);
/// How often a replica that fell back asks whether Redis is back.
const REDIS_PROBE_EVERY: Duration = Duration::from_millis(500);

/// Where a limit stands after a decision, for the `RateLimit` headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitStatus {
    pub name: String,
    pub limit: u32,
    pub period_secs: u32,
    /// Units left now.
    pub remaining: u64,
    /// Seconds until the current window ends.
    pub reset_secs: u64,
}

/// The gate's answer: admitted or refused, with the tightest limit and the credits left (both
/// shown on every `/auth` answer).
#[derive(Debug, Default)]
pub struct Admission {
    pub refused: Option<AppError>,
    pub tightest: Option<LimitStatus>,
    pub credits: Option<i64>,
}

/// Why the gate refused, as counted in `appkeys_gate_refusals_total`.
#[derive(Clone, Copy)]
pub enum Refusal {
    IpNotAllowed = 0,
    RateLimited = 1,
    UsageExceeded = 2,
}

/// The sliding-window estimate of a limit's use (the one formula; `SHARED_SCRIPT` repeats it in
/// Lua, in the same floating-point steps, so both decide alike).
fn estimate(previous: u64, current: u64, elapsed_ms: u64, period_ms: u64) -> f64 {
    previous as f64 * ((period_ms - elapsed_ms) as f64 / period_ms as f64) + current as f64
}

/// Units left, and the milliseconds until a request of `cost` would fit (0 when it fits now).
fn standing(rule: &RateLimitRule, previous: u64, current: u64, elapsed_ms: u64, cost: u64) -> (u64, u64) {
    let period_ms = u64::from(rule.period_secs) * 1000;
    let limit = f64::from(rule.limit);
    let used = estimate(previous, current, elapsed_ms, period_ms);
    let remaining = (limit - used).max(0.0).floor() as u64;
    let cost = cost as f64;
    if used + cost <= limit {
        return (remaining, 0);
    }
    let wait = if current as f64 + cost <= limit && previous > 0 {
        // Later in this window, once enough of the previous one has slid out.
        let needed = 1.0 - (limit - current as f64 - cost) / previous as f64;
        ((needed * period_ms as f64).ceil() as u64).saturating_sub(elapsed_ms)
    } else if cost <= limit && current > 0 {
        // In the next window, with this one as its previous.
        let needed = (1.0 - (limit - cost) / current as f64).max(0.0);
        (period_ms - elapsed_ms) + (needed * period_ms as f64).ceil() as u64
    } else {
        period_ms - elapsed_ms
    };
    (remaining, wait.max(1))
}

/// A window's counts.
#[derive(Clone, Copy)]
struct Window {
    index: u64,
    current: u64,
    previous: u64,
    period_ms: u64,
}

impl Window {
    /// The counts as of window `index`.
    fn at(self, index: u64) -> (u64, u64) {
        match index.checked_sub(self.index) {
            Some(0) => (self.previous, self.current),
            Some(1) => (self.current, 0),
            _ => (0, 0),
        }
    }
}

struct Shard {
    windows: HashMap<u64, Window>,
    /// When the map has this many entries, windows that ended are dropped.
    prune_at: usize,
}

/// This replica's own windows, sharded by key.
struct LocalWindows {
    shards: Vec<Mutex<Shard>>,
    hasher: foldhash::fast::FixedState,
}

impl LocalWindows {
    fn new() -> Self {
        let shards = (0..64).map(|_| Mutex::new(Shard { windows: HashMap::new(), prune_at: 1024 })).collect();
        Self { shards, hasher: foldhash::fast::FixedState::with_seed(0x6170_706b) }
    }

    fn id(&self, access_id: &str, rule: &RateLimitRule) -> u64 {
        self.hasher.hash_one((access_id, &rule.name, rule.limit, rule.period_secs))
    }

    /// Checks every limit and, if all admit, counts `cost` in each; returns whether it admitted
    /// and each limit's (previous, current) after.
    fn decide(&self, access_id: &str, rules: &[RateLimitRule], now_ms: u64, cost: u64) -> (bool, Vec<(u64, u64)>) {
        let shard_of = (self.hasher.hash_one(access_id) % self.shards.len() as u64) as usize;
        let mut shard = self.shards[shard_of].lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut counts = Vec::with_capacity(rules.len());
        let mut admitted = true;
        for rule in rules {
            let period_ms = u64::from(rule.period_secs) * 1000;
            let index = now_ms / period_ms;
            let (previous, current) =
                shard.windows.get(&self.id(access_id, rule)).map_or((0, 0), |window| window.at(index));
            if estimate(previous, current, now_ms % period_ms, period_ms) + cost as f64 > f64::from(rule.limit) {
                admitted = false;
            }
            counts.push((previous, current));
        }
        if admitted && cost > 0 {
            for (rule, (previous, current)) in rules.iter().zip(counts.iter_mut()) {
                let period_ms = u64::from(rule.period_secs) * 1000;
                *current += cost;
                let window = Window { index: now_ms / period_ms, current: *current, previous: *previous, period_ms };
                shard.windows.insert(self.id(access_id, rule), window);
            }
            if shard.windows.len() >= shard.prune_at {
                shard.windows.retain(|_, w| now_ms / w.period_ms <= w.index + 1);
                shard.prune_at = (shard.windows.len() * 2).max(1024);
            }
        }
        (admitted, counts)
    }
}

/// Checks and counts every limit of one key in one round trip. KEYS: per limit, this window's and
/// the previous window's counter. ARGV: now (ms), cost, then per limit its limit and period (ms).
/// Returns admitted (1/0), then per limit previous and current (after counting).
const SHARED_SCRIPT: &str = r"
local now = tonumber(ARGV[1])
local cost = tonumber(ARGV[2])
local n = #KEYS / 2
local previous, current = {}, {}
local admitted = 1
for i = 1, n do
  local limit = tonumber(ARGV[1 + 2 * i])
  local period = tonumber(ARGV[2 + 2 * i])
  local elapsed = now % period
  current[i] = tonumber(redis.call('GET', KEYS[2 * i - 1]) or '0')
  previous[i] = tonumber(redis.call('GET', KEYS[2 * i]) or '0')
  if previous[i] * ((period - elapsed) / period) + current[i] + cost > limit then
    admitted = 0
  end
end
if admitted == 1 and cost > 0 then
  for i = 1, n do
    current[i] = redis.call('INCRBY', KEYS[2 * i - 1], cost)
    redis.call('PEXPIRE', KEYS[2 * i - 1], tonumber(ARGV[2 + 2 * i]) * 2)
  end
end
local out = { admitted }
for i = 1, n do
  out[#out + 1] = previous[i]
  out[#out + 1] = current[i]
end
return out
";

/// The budget shared through Redis, and whether it is reachable.
struct Shared {
    connection: redis::aio::ConnectionManager,
    script: redis::Script,
    /// Redis did not answer: decide locally until a probe finds it back.
    down: AtomicBool,
}

impl Shared {
    fn connect(url: &str) -> anyhow::Result<Self> {
        let client = redis::Client::open(url)?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(REDIS_TIMEOUT))
            .set_response_timeout(Some(REDIS_TIMEOUT))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(200));
        let connection = redis::aio::ConnectionManager::new_lazy_with_config(client, config)?;
        Ok(Self { connection, script: redis::Script::new(SHARED_SCRIPT), down: AtomicBool::new(false) })
    }

    async fn decide(
        &self,
        access_id: &str,
        rules: &[RateLimitRule],
        local: &LocalWindows,
        now_ms: u64,
        cost: u64,
    ) -> redis::RedisResult<(bool, Vec<(u64, u64)>)> {
        let mut invocation = self.script.prepare_invoke();
        invocation.arg(now_ms).arg(cost);
        for rule in rules {
            let period_ms = u64::from(rule.period_secs) * 1000;
            let index = now_ms / period_ms;
            // One hash slot per key (`{…}`), so a Redis Cluster runs the script on one node.
            let id = local.id(access_id, rule);
            invocation.key(format!("appkeys:rl:{{{access_id}}}:{id:x}:{index}"));
            invocation.key(format!("appkeys:rl:{{{access_id}}}:{id:x}:{}", index.saturating_sub(1)));
            invocation.arg(rule.limit).arg(period_ms);
        }
        let mut connection = self.connection.clone();
        let answer: Vec<i64> = invocation.invoke_async(&mut connection).await?;
        let admitted = answer.first() == Some(&1);
        let counts = answer[1..]
            .chunks(2)
            .map(|pair| {
                (u64::try_from(pair[0]).unwrap_or(0), pair.get(1).and_then(|c| u64::try_from(*c).ok()).unwrap_or(0))
            })
            .collect();
        Ok((admitted, counts))
    }
}

/// Rate limits and credits for every route.
pub struct Gate {
    store: Store,
    clock: Clock,
    local: LocalWindows,
    shared: Option<Arc<Shared>>,
    charger: Arc<Charger>,
    refusals: LabelledCounter<3>,
}

impl Gate {
    pub fn new(store: Store, redis_url: Option<&str>) -> anyhow::Result<Self> {
        let shared = match redis_url {
            Some(url) => Some(Arc::new(Shared::connect(url)?)),
            None => None,
        };
        Ok(Self {
            clock: store.clock().clone(),
            charger: Charger::of(&store),
            store,
            local: LocalWindows::new(),
            shared,
            refusals: LabelledCounter::new(
                "appkeys_gate_refusals_total",
                "reason",
                ["ip_not_allowed", "rate_limited", "usage_exceeded"],
            ),
        })
    }

    pub fn refused(&self, reason: Refusal) {
        self.refusals.increment(reason as usize);
    }

    /// Whether the shared budget is in use now (Redis configured and answering).
    pub fn sharing(&self) -> bool {
        self.shared.as_ref().is_some_and(|shared| !shared.down.load(Ordering::Relaxed))
    }

    /// Decides the rate limits, then the credits, of a key's request costing `cost` units.
    pub async fn admit(&self, account_id: &str, access_id: &str, policy: &KeyPolicy, cost: u32) -> Admission {
        let mut admission = Admission::default();
        if !policy.rate_limits.is_empty() {
            let now_ms = u64::try_from(self.clock.now().timestamp_millis()).unwrap_or(0);
            let (admitted, counts) = self.decide(access_id, &policy.rate_limits, now_ms, u64::from(cost)).await;
            let mut worst_wait = (0u64, None::<&RateLimitRule>);
            for (rule, (previous, current)) in policy.rate_limits.iter().zip(counts) {
                let period_ms = u64::from(rule.period_secs) * 1000;
                let elapsed = now_ms % period_ms;
                // After admitting, `current` holds the cost: what is left is judged for one more unit.
                let (remaining, wait) =
                    standing(rule, previous, current, elapsed, if admitted { 0 } else { u64::from(cost) });
                let status = LimitStatus {
                    name: rule.name.clone(),
                    limit: rule.limit,
                    period_secs: rule.period_secs,
                    remaining,
                    reset_secs: (period_ms - elapsed).div_ceil(1000),
                };
                if admission.tightest.as_ref().is_none_or(|t| status.remaining < t.remaining) {
                    admission.tightest = Some(status);
                }
                if wait > worst_wait.0 {
                    worst_wait = (wait, Some(rule));
                }
            }
            if !admitted {
                self.refused(Refusal::RateLimited);
                admission.refused = Some(AppError::RateLimited {
                    retry_after_secs: worst_wait.0.div_ceil(1000).max(1),
                    limit: worst_wait.1.map(|rule| rule.name.clone()),
                });
                return admission;
            }
        }
        if let Some(credits) = &policy.credits {
            let low_at = policy.low_credits_threshold().unwrap_or(0);
            match self.charger.charge(&self.store, account_id, access_id, cost, low_at).await {
                Ok(Charge::Admitted { remaining }) => {
                    metrics::counter!("appkeys_credits_charged_total").increment(u64::from(cost));
                    admission.credits = Some(remaining);
                }
                Ok(Charge::Exhausted { remaining }) => {
                    self.refused(Refusal::UsageExceeded);
                    admission.credits = Some(remaining);
                    let now = self.clock.now();
                    let retry_after_secs = credits
                        .refill
                        .map(|refill| u64::try_from((refill.next_after(now) - now).num_seconds().max(1)).unwrap_or(1));
                    admission.refused = Some(AppError::UsageExceeded { retry_after_secs });
                }
                Ok(Charge::Unlimited) => {}
                Err(error) => admission.refused = Some(error),
            }
        }
        admission
    }

    async fn decide(
        &self,
        access_id: &str,
        rules: &[RateLimitRule],
        now_ms: u64,
        cost: u64,
    ) -> (bool, Vec<(u64, u64)>) {
        if let Some(shared) = &self.shared {
            if !shared.down.load(Ordering::Relaxed) {
                match tokio::time::timeout(REDIS_TIMEOUT, shared.decide(access_id, rules, &self.local, now_ms, cost))
                    .await
                {
                    Ok(Ok(decided)) => return decided,
                    Ok(Err(error)) => self.fall_back(shared, &error.to_string()),
                    Err(_) => self.fall_back(shared, "no answer within 250 ms"),
                }
            }
            metrics::counter!("appkeys_rate_limit_redis_fallbacks_total").increment(1);
        }
        self.local.decide(access_id, rules, now_ms, cost)
    }

    /// Redis did not answer: decide locally, warn once, and probe until it answers again.
    fn fall_back(&self, shared: &Arc<Shared>, cause: &str) {
        if shared.down.swap(true, Ordering::SeqCst) {
            return; // another request fell back first
        }
        tracing::warn!(cause, "Redis is unreachable: rate limits fall back to this replica's own budget");
        let shared = shared.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(REDIS_PROBE_EVERY).await;
                let mut connection = shared.connection.clone();
                let command = redis::cmd("PING");
                let ping = command.query_async::<String>(&mut connection);
                if let Ok(Ok(_)) = tokio::time::timeout(REDIS_TIMEOUT, ping).await {
                    shared.down.store(false, Ordering::SeqCst);
                    tracing::info!("Redis answers again: rate limits are shared again");
                    return;
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(limit: u32, period_secs: u32) -> RateLimitRule {
        RateLimitRule { name: "r".into(), limit, period_secs }
    }

    #[test]
    fn a_burst_is_admitted_up_to_the_limit_and_then_slides_out() {
        let local = LocalWindows::new();
        let rules = [rule(5, 10)];
        let start = 1_000_000_000; // a window boundary: 10 s windows
        let admitted = (0..8).filter(|_| local.decide("a", &rules, start, 1).0).count();
        assert_eq!(admitted, 5);
        // Half-way through the next window, half the previous window still counts: 2 more fit.
        let later = start + 15_000;
        let admitted = (0..8).filter(|_| local.decide("a", &rules, later, 1).0).count();
        assert_eq!(admitted, 2);
        // Two windows on, nothing counts.
        let admitted = (0..8).filter(|_| local.decide("a", &rules, start + 30_000, 1).0).count();
        assert_eq!(admitted, 5);
        assert!(local.decide("b", &rules, start, 5).0, "keys have their own windows");
        assert!(!local.decide("c", &rules, start, 6).0, "a cost above the limit never fits");
    }

    #[test]
    fn every_limit_must_admit_and_only_then_counts() {
        let local = LocalWindows::new();
        let rules = [RateLimitRule { name: "second".into(), limit: 2, period_secs: 1 }, rule(3, 60)];
        let t = 6_000_000;
        assert!(local.decide("k", &rules, t, 1).0);
        assert!(local.decide("k", &rules, t, 1).0);
        assert!(!local.decide("k", &rules, t, 1).0, "the per-second limit");
        assert!(local.decide("k", &rules, t + 2_000, 1).0);
        let (admitted, counts) = local.decide("k", &rules, t + 4_000, 1);
        assert!(!admitted, "the per-minute limit: 3 counted");
        assert_eq!(counts[1], (0, 3));
    }

    #[test]
    fn the_wait_is_until_the_request_fits() {
        let r = rule(10, 10);
        // 10 used at the window's start: the next window, half through, admits 5 (10 × 0.5 + 1 ≤ 10
        // from 1 s in).
        let (remaining, wait) = standing(&r, 0, 10, 0, 1);
        assert_eq!(remaining, 0);
        assert_eq!(wait, 10_000 + 1_000);
        let (_, wait) = standing(&r, 10, 0, 5_000, 1);
        assert_eq!(wait, 0, "5 of the previous still count: 1 fits");
        let (remaining, wait) = standing(&r, 10, 5, 5_000, 1);
        assert_eq!(remaining, 0);
        assert!(wait > 0 && wait <= 5_000, "{wait}");
    }
}
