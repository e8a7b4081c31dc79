//! Last use, off the hot path: an authenticated request only notes its key's use in memory (newest
//! wins); `jobs` writes the notes at most once per key per flush interval, and on shutdown.
use chrono::{DateTime, Utc};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use crate::error::AppResult;
use crate::service::keys::{self, KeyUse};
use crate::service::Store;

/// Coalesces key uses until they are flushed. Disabled, it notes nothing.
#[derive(Clone, Default)]
pub struct LastUseRecorder {
    pending: Option<Arc<Mutex<HashMap<String, Noted>>>>,
}

/// A use waiting to be written, with the client's address as an address: a request from the same
/// client compares it without writing it out as text.
struct Noted {
    ip: Option<IpAddr>,
    key_use: KeyUse,
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
            Some(noted) if noted.key_use.at > at => {}
            Some(noted) => {
                noted.key_use.at = at;
                // Allocate only when the client changed, which is rare for one key.
                if noted.ip != ip {
                    noted.ip = ip;
                    noted.key_use.ip = ip.map(|ip| ip.to_string());
                }
                if noted.key_use.user_agent.as_deref() != user_agent {
                    noted.key_use.user_agent = user_agent.map(str::to_owned);
                }
            }
            None => {
                let key_use = KeyUse {
                    access_id: access_id.to_owned(),
                    at,
                    ip: ip.map(|ip| ip.to_string()),
                    user_agent: user_agent.map(str::to_owned),
                };
                pending.insert(access_id.to_owned(), Noted { ip, key_use });
            }
        }
    }

    fn take(&self) -> Vec<Noted> {
        let Some(pending) = &self.pending else {
            return Vec::new();
        };
        pending.lock().map(|mut p| p.drain().map(|(_, noted)| noted).collect()).unwrap_or_default()
    }

    /// Writes every noted use. Uses that could not be written are noted again (unless a newer one
    /// came meanwhile), so a database hiccup loses nothing.
    pub async fn flush(&self, store: &Store) -> AppResult<usize> {
        let noted = self.take();
        if noted.is_empty() {
            return Ok(0);
        }
        let uses: Vec<KeyUse> = noted.iter().map(|n| n.key_use.clone()).collect();
        match keys::record_uses(store, &uses).await {
            Ok(()) => Ok(uses.len()),
            Err(error) => {
                for Noted { ip, key_use } in noted {
                    self.record(&key_use.access_id, key_use.at, ip, key_use.user_agent.as_deref());
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
        let mut taken: Vec<KeyUse> = recorder.take().into_iter().map(|n| n.key_use).collect();
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
