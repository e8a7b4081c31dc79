//! The one source of "now". Production reads the system clock; tests move it forward
//! (`Clock::advance`) to reach expiries, renewal overlaps and sweeps in milliseconds instead of days.
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
    fn now_has_microsecond_precision() {
        assert_eq!(Clock::default().now().timestamp_subsec_nanos() % 1_000, 0);
    }
}
