//! The one source of "now" and of monotonic time. Production reads the system clocks; tests move
//! both forward (`Clock::advance`) to reach expiries, renewal overlaps, sweeps, cache ages,
//! throttles and TTLs in milliseconds instead of waiting for them.
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use chrono::{DateTime, Utc};

/// The system clock plus an offset that only tests change. Clones share the offset.
#[derive(Debug, Clone, Default)]
pub struct Clock {
    offset_micros: Arc<AtomicI64>,
}

impl Clock {
    /// The current time at microsecond precision: what PostgreSQL keeps, so both backends return
    /// identical timestamps.
    ///
    /// The system's microseconds are read as a count, so a date is worked out once, for the
    /// result (`Utc::now` works one out too: on `/auth`, reading the clock showed in profiles).
    pub fn now(&self) -> DateTime<Utc> {
        let since_epoch = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
        let system = (since_epoch.ok().and_then(|d| i64::try_from(d.as_micros()).ok()))
            .unwrap_or_else(|| Utc::now().timestamp_micros());
        let micros = system.saturating_add(self.offset_micros.load(Ordering::SeqCst));
        DateTime::from_timestamp_micros(micros).unwrap_or_else(Utc::now)
    }

    /// Monotonic time, for rules that measure an age or a wait (a cache entry's age, a throttle, a
    /// TTL): the system's monotonic clock plus the same offset as `now`, so moving the clock moves
    /// these too. Latency measurements read `std::time::Instant` directly.
    pub fn instant(&self) -> std::time::Instant {
        let now = std::time::Instant::now();
        match u64::try_from(self.offset_micros.load(Ordering::SeqCst)) {
            Ok(offset) if offset > 0 => now + std::time::Duration::from_micros(offset),
            _ => now,
        }
    }

    /// Moves this clock (and every clone of it) forward.
    pub fn advance(&self, by: chrono::Duration) {
        let micros = by.num_microseconds().unwrap_or(i64::MAX);
        self.offset_micros.fetch_add(micros, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_advanced_clock_is_ahead_by_the_offset_in_every_clone() {
        let clock = Clock::default();
        let copy = clock.clone();
        let before = clock.now();
        copy.advance(chrono::Duration::days(3));
        let after = clock.now();
        assert!(after - before >= chrono::Duration::days(3));
        assert!(after - before < chrono::Duration::days(3) + chrono::Duration::seconds(5));
    }

    #[test]
    fn an_advanced_clock_moves_monotonic_time_too() {
        let clock = Clock::default();
        let before = clock.instant();
        clock.clone().advance(chrono::Duration::minutes(5));
        let after = clock.instant();
        assert!(after.duration_since(before) >= std::time::Duration::from_secs(300));
        assert!(after.duration_since(before) < std::time::Duration::from_secs(305));
    }

    #[test]
    fn now_has_microsecond_precision() {
        assert_eq!(Clock::default().now().timestamp_subsec_nanos() % 1_000, 0);
    }
}
