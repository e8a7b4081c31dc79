//! Last use, off the hot path: an authenticated request only notes its key's use in memory (newest
//! wins); `jobs` writes the notes at most once per key per flush interval, and on shutdown.
use chrono::{DateTime, Utc};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use crate::error::AppResult;
use crate::service::keys::{self, KeyUse};
use crate::service::store::Store;

/// Coalesces key uses until they are flushed. Disabled, it notes nothing.
#[derive(Clone, Default)]
pub struct LastUseRecorder {
    pending: Option<Arc<Mutex<Notes>>>,
}

/// Notes by access id, hashed with foldhash: only authenticated keys' ids are noted.
type Notes = HashMap<String, Noted, foldhash::fast::RandomState>;

/// A use waiting to be written. The client's address stays an address until the flush writes it
/// out as text, so a request only compares it.
struct Noted {
    at: DateTime<Utc>,
    ip: Option<IpAddr>,
    user_agent: Option<String>,
}

impl LastUseRecorder {
    pub fn new(enabled: bool) -> Self {
        Self { pending: enabled.then(Default::default) }
    }

    pub fn enabled(&self) -> bool {
        self.pending.is_some()
    }

    /// Uses noted and not yet written.
    pub fn pending(&self) -> usize {
        self.pending.as_ref().and_then(|p| p.lock().ok().map(|p| p.len())).unwrap_or(0)
    }

    /// Notes a use of the key access `access_id`; the newest use of each key wins.
    pub fn record(&self, access_id: &str, at: DateTime<Utc>, ip: Option<IpAddr>, user_agent: Option<&str>) {
        let Some(pending) = &self.pending else {
            return;
        };
        let Ok(mut pending) = pending.lock() else {
            return;
        };
        match pending.get_mut(access_id) {
            Some(noted) if noted.at > at => {}
            Some(noted) => {
                noted.at = at;
                noted.ip = ip;
                // Allocate only when the client changed, which is rare for one key.
                if noted.user_agent.as_deref() != user_agent {
                    noted.user_agent = user_agent.map(str::to_owned);
                }
            }
            None => {
                let noted = Noted { at, ip, user_agent: user_agent.map(str::to_owned) };
                pending.insert(access_id.to_owned(), noted);
            }
        }
    }

    fn take(&self) -> Vec<KeyUse> {
        let Some(pending) = &self.pending else {
            return Vec::new();
        };
        let drained = |mut pending: std::sync::MutexGuard<'_, Notes>| {
            pending
                .drain()
                .map(|(access_id, Noted { at, ip, user_agent })| KeyUse {
                    access_id,
                    at,
                    ip: ip.map(|ip| ip.to_string()),
                    user_agent,
                })
                .collect()
        };
        pending.lock().map(drained).unwrap_or_default()
    }

    /// Writes every noted use. Uses that could not be written are noted again (unless a newer one
    /// came meanwhile), so a database hiccup loses nothing.
    pub async fn flush(&self, store: &Store) -> AppResult<usize> {
        let uses = self.take();
        if uses.is_empty() {
            return Ok(0);
        }
        match keys::record_uses(store, &uses).await {
            Ok(()) => Ok(uses.len()),
            Err(error) => {
                for noted in &uses {
                    // The text was written from an address here, so it reads back as the same one.
                    let ip = noted.ip.as_deref().and_then(|ip| ip.parse().ok());
                    self.record(&noted.access_id, noted.at, ip, noted.user_agent.as_deref());
                }
                Err(error)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_use_of_a_key_wins_and_a_flush_empties_the_notes() {
        let recorder = LastUseRecorder::new(true);
        let now = Utc::now();
        let earlier = now - chrono::Duration::seconds(5);
        let ip = |text: &str| Some(text.parse::<IpAddr>().expect("an address"));
        recorder.record("a", now, ip("10.0.0.1"), Some("probe/1.0"));
        recorder.record("a", earlier, ip("10.0.0.2"), Some("old/0.1"));
        recorder.record("b", earlier, None, None);
        recorder.record("c", earlier, ip("10.0.0.3"), None);
        recorder.record("c", now, ip("2001:db8::1"), None);
        let mut taken = recorder.take();
        taken.sort_by(|x, y| x.access_id.cmp(&y.access_id));
        assert_eq!(taken.len(), 3);
        assert_eq!(taken[0].at, now);
        assert_eq!(taken[0].ip.as_deref(), Some("10.0.0.1"));
        assert_eq!(taken[0].user_agent.as_deref(), Some("probe/1.0"));
        assert_eq!(taken[2].ip.as_deref(), Some("2001:db8::1"), "a newer use from another client");
        assert!(recorder.take().is_empty());
    }

    #[test]
    fn a_disabled_recorder_notes_nothing() {
        let recorder = LastUseRecorder::new(false);
        recorder.record("a", Utc::now(), None, None);
        assert!(recorder.take().is_empty());
        assert!(!recorder.enabled());
    }
}
