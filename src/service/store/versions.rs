//! Which credentials a committed change may have altered, so that credential caches drop exactly
//! those entries: a change in one account leaves every other account's cached credentials warm.
//!
//! Every change gets the next number of one sequence and stamps it on the scopes it touched: its
//! account, and the key, when a key's own state changed (status, token, deletion), since that key
//! acts in other accounts too. A cache entry remembers the sequence number read *before* the lookup
//! that produced it, and stays valid while none of its scopes (its account, its key) and not the
//! epoch was stamped later. A change with unknown scopes, a lost notification from another replica
//! and a full table all stamp the epoch, which invalidates everything.
use std::collections::HashMap;
use std::sync::RwLock;

/// What a change touched.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Scope {
    Account(String),
    Key(String),
}

impl Scope {
    /// The form other replicas receive in the notification's payload.
    pub fn encode(&self) -> String {
        match self {
            Scope::Account(id) => format!("a:{id}"),
            Scope::Key(id) => format!("k:{id}"),
        }
    }

    pub fn decode(raw: &str) -> Option<Self> {
        match raw.split_once(':')? {
            ("a", id) if !id.is_empty() => Some(Scope::Account(id.to_owned())),
            ("k", id) if !id.is_empty() => Some(Scope::Key(id.to_owned())),
            _ => None,
        }
    }
}

/// Beyond this many stamped scopes the table starts over (stamping the epoch), so memory stays
/// bounded however many accounts and keys change.
const MAX_SCOPES: usize = 200_000;

#[derive(Debug, Default)]
struct Stamps {
    sequence: u64,
    epoch: u64,
    // Hashed with foldhash: every cached request reads both maps. Their ids are the server's own,
    // written only by committed changes.
    accounts: HashMap<String, u64, foldhash::fast::RandomState>,
    keys: HashMap<String, u64, foldhash::fast::RandomState>,
}

#[derive(Debug, Default)]
pub struct CredentialVersions {
    stamps: RwLock<Stamps>,
}

impl CredentialVersions {
    /// The sequence number now: read it before a lookup whose result will be cached.
    pub fn snapshot(&self) -> u64 {
        self.stamps.read().map(|s| s.sequence).unwrap_or(u64::MAX)
    }

    /// The sequence number at which everything was last stamped stale at once (a change of unknown
    /// scope, a lost change feed, a full table): an answer cached before it is stale whatever it is.
    pub fn epoch(&self) -> u64 {
        self.stamps.read().map(|s| s.epoch).unwrap_or(u64::MAX)
    }

    /// Records a change to these scopes (none: to anything).
    pub fn changed(&self, scopes: &[Scope]) {
        let Ok(mut stamps) = self.stamps.write() else {
            return;
        };
        stamps.sequence += 1;
        let now = stamps.sequence;
        if scopes.is_empty() || stamps.accounts.len() + stamps.keys.len() + scopes.len() > MAX_SCOPES {
            stamps.accounts.clear();
            stamps.keys.clear();
            stamps.epoch = now;
            return;
        }
        for scope in scopes {
            match scope {
                Scope::Account(id) => stamps.accounts.insert(id.clone(), now),
                Scope::Key(id) => stamps.keys.insert(id.clone(), now),
            };
        }
    }

    /// Whether nothing that could alter a credential of `account_id` (and of `key_id`, for a key)
    /// changed after `since`.
    pub fn unchanged_since(&self, since: u64, account_id: &str, key_id: Option<&str>) -> bool {
        let Ok(stamps) = self.stamps.read() else {
            return false;
        };
        stamps.epoch <= since
            && stamps.accounts.get(account_id).is_none_or(|stamp| *stamp <= since)
            && key_id.is_none_or(|key| stamps.keys.get(key).is_none_or(|stamp| *stamp <= since))
    }
}

/// How many committed changes to usage counts (a flush, a prune) this replica has heard of: its
/// own at once, other replicas' through `USAGE_CHANNEL` (`follow`), and every gap in the change
/// feed as one. An answer read from the usage rows stays exact while this has not moved since it
/// was read (`keys::meter::UsageAnswers`).
///
/// A replica's own announcements come back to it through its listener too, some time after it
/// counted the change: they carry its `origin` and are not counted twice (counted again, they
/// would drop an answer kept after the change, at a moment no one can predict).
#[derive(Debug)]
pub struct UsageVersion {
    version: std::sync::atomic::AtomicU64,
    origin: String,
}

impl Default for UsageVersion {
    fn default() -> Self {
        Self { version: std::sync::atomic::AtomicU64::new(0), origin: format!("{:016x}", rand::random::<u64>()) }
    }
}

impl UsageVersion {
    /// The number now: read it before a read whose answer will be kept.
    pub fn current(&self) -> u64 {
        self.version.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Records a committed change to usage counts.
    pub fn changed(&self) {
        self.version.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }

    /// The payload this replica announces its changes with on `USAGE_CHANNEL`.
    pub fn announcement(&self) -> String {
        self.origin.clone()
    }

    /// An announcement heard on `USAGE_CHANNEL`: a change, unless this replica sent it (and so
    /// counted it already). Any other payload (an empty one included) is another replica's.
    pub fn heard(&self, payload: &str) {
        if payload != self.origin {
            self.changed();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_invalidates_its_own_scopes_only() {
        let versions = CredentialVersions::default();
        let since = versions.snapshot();
        versions.changed(&[Scope::Account("b".into())]);
        assert!(versions.unchanged_since(since, "a", Some("key-of-a")), "account A stays warm");
        assert!(!versions.unchanged_since(since, "b", None), "account B's entries go");
        versions.changed(&[Scope::Account("x".into()), Scope::Key("key-of-a".into())]);
        assert!(!versions.unchanged_since(since, "a", Some("key-of-a")), "the key changed: everywhere it acts");
        assert!(versions.unchanged_since(since, "a", Some("other-key")));
        let later = versions.snapshot();
        assert!(versions.unchanged_since(later, "b", None), "entries made after a change are valid");
    }

    #[test]
    fn an_unknown_change_invalidates_everything() {
        let versions = CredentialVersions::default();
        versions.changed(&[Scope::Account("b".into())]);
        let (since, epoch) = (versions.snapshot(), versions.epoch());
        assert_eq!(epoch, 0, "a scoped change leaves the epoch");
        versions.changed(&[]);
        assert!(!versions.unchanged_since(since, "a", None));
        assert_eq!(versions.epoch(), versions.snapshot(), "the epoch is stamped at the unknown change");
        assert!(versions.unchanged_since(versions.snapshot(), "a", None));
    }

    #[test]
    fn scopes_travel_between_replicas_as_text() {
        for scope in [Scope::Account("0192-a".into()), Scope::Key("0192-k".into())] {
            assert_eq!(Scope::decode(&scope.encode()), Some(scope));
        }
        assert_eq!(Scope::decode("x:1"), None);
        assert_eq!(Scope::decode("a:"), None);
    }

    #[test]
    fn a_replicas_own_usage_announcement_is_not_counted_twice() {
        let (here, there) = (UsageVersion::default(), UsageVersion::default());
        here.changed();
        here.heard(&here.announcement());
        assert_eq!(here.current(), 1, "its own, heard back");
        here.heard(&there.announcement());
        here.heard("");
        assert_eq!(here.current(), 3, "another replica's, and one that names none");
    }
}
