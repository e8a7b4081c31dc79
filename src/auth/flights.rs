//! Single flight for cache misses: while one request looks a credential up in the database, others
//! presenting the same credential wait for its answer instead of each querying the database. When
//! a hot key's cache entry reaches its age, every request for it misses at once; without this, a
//! few dozen concurrent requests each took a pooled connection (PostgreSQL `/auth` p99 13–16 ms
//! against 3 ms for `/healthz`).
//!
//! Exactness: a request joins a lookup only if the change sequence it read is the one the lookup's
//! leader read before querying (nothing was committed, here or as notified from elsewhere, in
//! between); otherwise it looks up on its own, as every request did before.
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use super::cache::Found;
use super::CacheKey;

/// A lookup's outcome as followers see it: the principal and when it stops by itself, or `None`
/// when it failed (a follower then looks up on its own, to get its own error).
pub type Outcome = Option<Found>;
type Slot = watch::Receiver<Option<Outcome>>;

#[derive(Clone, Default)]
pub struct Flights {
    in_flight: Arc<Mutex<HashMap<CacheKey, (u64, Slot)>>>,
}

/// What a request that missed the cache does.
pub enum Flight {
    /// Look up, then `Leader::finish` (dropping it unfinished tells followers to look up themselves).
    Lead(Leader),
    /// Wait for another request's lookup.
    Follow(Slot),
}

pub struct Leader {
    flights: Flights,
    key: CacheKey,
    sender: watch::Sender<Option<Outcome>>,
    slot: Slot,
}

impl Flights {
    /// Joins the lookup in flight for `key` started at sequence `since`, or starts one.
    pub fn join(&self, key: &CacheKey, since: u64) -> Flight {
        let Ok(mut in_flight) = self.in_flight.lock() else {
            // A poisoned map: every request leads, as without single flight.
            let (sender, slot) = watch::channel(None);
            return Flight::Lead(Leader { flights: self.clone(), key: key.clone(), sender, slot });
        };
        if let Some((started, slot)) = in_flight.get(key) {
            if *started == since && slot.has_changed().is_ok() {
                return Flight::Follow(slot.clone());
            }
        }
        let (sender, slot) = watch::channel(None);
        in_flight.insert(key.clone(), (since, slot.clone()));
        Flight::Lead(Leader { flights: self.clone(), key: key.clone(), sender, slot })
    }
}

impl Leader {
    /// Hands the outcome to the followers.
    pub fn finish(self, outcome: Outcome) {
        self.sender.send_replace(Some(outcome));
    }
}

impl Drop for Leader {
    fn drop(&mut self) {
        // Leave the map, unless a later lookup for the same key has taken the place.
        if let Ok(mut in_flight) = self.flights.in_flight.lock() {
            if in_flight.get(&self.key).is_some_and(|(_, slot)| self.slot.same_channel(slot)) {
                in_flight.remove(&self.key);
            }
        }
    }
}

/// Waits for the leader's outcome (`None` if the leader failed or went away).
pub async fn follow(mut slot: Slot) -> Outcome {
    match slot.wait_for(Option::is_some).await {
        Ok(outcome) => outcome.clone().flatten(),
        Err(_) => None, // the leader was dropped before it finished
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::principal::{Principal, PrincipalKind};

    fn key(name: &str) -> CacheKey {
        crate::auth::Credential { digest: [0; 32], key: Some(name), account: None }.to_key()
    }

    fn principal() -> Arc<Principal> {
        Arc::new(Principal {
            kind: PrincipalKind::User { user_id: "u".into(), email: "a@example.com".into(), session_id: "s".into() },
            account_id: "a".into(),
            account_name: "main".into(),
            resources: Default::default(),
            forward_headers: Default::default(),
            policy: None,
        })
    }

    #[tokio::test]
    async fn a_miss_at_the_same_sequence_follows_and_gets_the_answer() {
        let flights = Flights::default();
        let Flight::Lead(leader) = flights.join(&key("k"), 7) else { panic!("the first miss leads") };
        let Flight::Follow(slot) = flights.join(&key("k"), 7) else { panic!("the second follows") };
        assert!(matches!(flights.join(&key("other"), 7), Flight::Lead(_)), "another credential leads");
        let waiting = tokio::spawn(follow(slot));
        leader.finish(Some((principal(), None)));
        let (got, until) = waiting.await.expect("joined").expect("an answer");
        assert_eq!((got.account_name.as_str(), until), ("main", None));
        assert!(matches!(flights.join(&key("k"), 7), Flight::Lead(_)), "a finished lookup leaves the flights");
    }

    #[tokio::test]
    async fn a_change_in_between_or_a_leader_gone_means_looking_up_alone() {
        let flights = Flights::default();
        let Flight::Lead(first) = flights.join(&key("k"), 7) else { panic!("leads") };
        assert!(matches!(flights.join(&key("k"), 8), Flight::Lead(_)), "a later sequence never joins");
        drop(first);
        let Flight::Lead(leader) = flights.join(&key("k"), 9) else { panic!("leads") };
        let Flight::Follow(slot) = flights.join(&key("k"), 9) else { panic!("follows") };
        drop(leader);
        assert!(follow(slot).await.is_none(), "a leader dropped unfinished sends its followers to look up");
        let Flight::Lead(failing) = flights.join(&key("k"), 9) else { panic!("leads") };
        let Flight::Follow(slot) = flights.join(&key("k"), 9) else { panic!("follows") };
        failing.finish(None);
        assert!(follow(slot).await.is_none(), "a failed lookup is not shared");
    }
}
