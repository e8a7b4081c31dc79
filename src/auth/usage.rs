//! Usage, off the hot path: every decision about a known key in an account is counted in memory
//! per (key access, hour, outcome), with the resources its requests needed; `jobs` writes them every
//! `--usage-flush-secs` as additive upserts (and on shutdown). A flush that fails is kept for the
//! next one. Unknown keys are counted only in `/metrics`, so guessing writes no rows.
use chrono::{DateTime, Utc};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use crate::error::AppResult;
use crate::service::keys::meter::{self, AddressSeen, CountedHour, Granularity, Outcome, PermissionUse};
use crate::service::store::Store;

#[derive(Default)]
struct Pending {
    account_id: String,
    /// Usually one hour; two around the hour's turn.
    hours: Vec<(i64, meter::Counts)>,
    /// Resource → when it was last needed.
    resources: Vec<(String, DateTime<Utc>)>,
    /// (day, address; `None` beyond the day's places) → valid requests, last seen.
    addresses: Vec<(i64, Option<IpAddr>, u64, DateTime<Utc>)>,
}

impl Pending {
    /// Adds `n` to outcome `index` of `hour`.
    fn bump(&mut self, hour: i64, index: usize, n: u64) {
        match self.hours.iter_mut().find(|(h, _)| *h == hour) {
            Some((_, counts)) => counts[index] += n,
            None => {
                let mut counts = meter::Counts::default();
                counts[index] = n;
                self.hours.push((hour, counts));
            }
        }
    }
}

/// Counts decisions until they are flushed.
#[derive(Clone, Default)]
pub struct UsageCounter {
    pending: Arc<Mutex<HashMap<String, Pending, foldhash::fast::RandomState>>>,
}

impl UsageCounter {
    fn with<R>(&self, access_id: &str, account_id: &str, work: impl FnOnce(&mut Pending) -> R) -> R {
        let mut pending = self.pending.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(entry) = pending.get_mut(access_id) {
            return work(entry);
        }
        let entry = pending
            .entry(access_id.to_owned())
            .or_insert_with(|| Pending { account_id: account_id.to_owned(), ..Pending::default() });
        work(entry)
    }

    /// Counts one decision about the key access `access_id` (of `account_id`) at `at`.
    pub fn count(&self, access_id: &str, account_id: &str, at: DateTime<Utc>, outcome: Outcome) {
        self.add(access_id, account_id, Granularity::Hour.bucket_of(at), outcome as usize, 1);
    }

    /// Counts a valid request, and the address it came from (at most `MAX_ADDRESSES_A_DAY` a day
    /// are told apart, here and where they are stored).
    pub fn count_valid(&self, access_id: &str, account_id: &str, at: DateTime<Utc>, client: Option<IpAddr>) {
        let hour = Granularity::Hour.bucket_of(at);
        let day = Granularity::Day.bucket_of(at);
        self.with(access_id, account_id, |entry| {
            entry.bump(hour, Outcome::Valid as usize, 1);
            let Some(client) = client.map(|ip| ip.to_canonical()) else {
                return;
            };
            add_address(&mut entry.addresses, day, Some(client), 1, at);
        });
    }

    fn add(&self, access_id: &str, account_id: &str, hour: i64, index: usize, n: u64) {
        self.with(access_id, account_id, |entry| entry.bump(hour, index, n));
    }

    /// Notes that a request of the key access needed `resource` at `at` (newest wins).
    pub fn used_resource(&self, access_id: &str, account_id: &str, resource: &str, at: DateTime<Utc>) {
        self.with(access_id, account_id, |entry| match entry.resources.iter_mut().find(|(r, _)| r == resource) {
            Some((_, last)) => *last = (*last).max(at),
            None => entry.resources.push((resource.to_owned(), at)),
        });
    }

    /// Key accesses with counts or uses not yet written.
    pub fn pending(&self) -> usize {
        self.pending.lock().map(|p| p.len()).unwrap_or(0)
    }

    fn take(&self) -> (Vec<CountedHour>, Vec<PermissionUse>, Vec<AddressSeen>) {
        let drained: Vec<(String, Pending)> =
            self.pending.lock().unwrap_or_else(std::sync::PoisonError::into_inner).drain().collect();
        let mut hours = Vec::new();
        let mut uses = Vec::new();
        let mut addresses = Vec::new();
        for (access_id, entry) in drained {
            for (day, address, count, last_seen) in entry.addresses {
                addresses.push(AddressSeen {
                    access_id: access_id.clone(),
                    day,
                    address: address.map(|a| a.to_string()),
                    count,
                    last_seen,
                });
            }
            for (hour, counts) in entry.hours {
                hours.push(CountedHour {
                    access_id: access_id.clone(),
                    account_id: entry.account_id.clone(),
                    hour,
                    counts,
                });
            }
            for (resource, at) in entry.resources {
                uses.push(PermissionUse { access_id: access_id.clone(), resource, at });
            }
        }
        (hours, uses, addresses)
    }

    /// Writes everything counted. What could not be written is counted again for the next flush,
    /// so a database away loses nothing (and nothing is added twice: a failed transaction wrote
    /// nothing).
    pub async fn flush(&self, store: &Store) -> AppResult<usize> {
        let (hours, uses, addresses) = self.take();
        if hours.is_empty() && uses.is_empty() && addresses.is_empty() {
            return Ok(0);
        }
        let started = std::time::Instant::now();
        let written = meter::record(store, &hours, &uses, &addresses).await;
        metrics::histogram!("appkeys_usage_flush_duration_seconds").record(started.elapsed());
        match written {
            Ok(()) => Ok(hours.len() + uses.len()),
            Err(error) => {
                metrics::counter!("appkeys_usage_flush_failures_total").increment(1);
                for hour in &hours {
                    for (index, n) in hour.counts.iter().enumerate().filter(|(_, n)| **n > 0) {
                        self.add(&hour.access_id, &hour.account_id, hour.hour, index, *n);
                    }
                }
                for seen in &addresses {
                    let address = seen.address.as_deref().and_then(|a| a.parse().ok());
                    self.with(&seen.access_id, "", |entry| {
                        add_address(&mut entry.addresses, seen.day, address, seen.count, seen.last_seen)
                    });
                }
                for used in uses {
                    // The account is the hour's, or found again on the next count; a use alone
                    // keeps the account it had (every use comes with a counted decision).
                    let account = hours.iter().find(|h| h.access_id == used.access_id).map(|h| h.account_id.clone());
                    self.used_resource(&used.access_id, account.as_deref().unwrap_or(""), &used.resource, used.at);
                }
                Err(error)
            }
        }
    }
}

/// Adds requests from an address on a day; past the day's places they go to `None` (`other`).
fn add_address(
    addresses: &mut Vec<(i64, Option<IpAddr>, u64, DateTime<Utc>)>,
    day: i64,
    address: Option<IpAddr>,
    n: u64,
    at: DateTime<Utc>,
) {
    if let Some(slot) = addresses.iter_mut().find(|(d, a, ..)| *d == day && *a == address) {
        slot.2 += n;
        slot.3 = slot.3.max(at);
        return;
    }
    let places = addresses.iter().filter(|(d, a, ..)| *d == day && a.is_some()).count();
    if address.is_some() && places >= meter::MAX_ADDRESSES_A_DAY {
        return add_address(addresses, day, None, n, at);
    }
    addresses.push((day, address, n, at));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decisions_are_counted_per_hour_and_outcome_and_a_take_empties_them() {
        let counter = UsageCounter::default();
        let at: DateTime<Utc> = "2027-03-01T10:59:59Z".parse().expect("instant");
        counter.count("a", "acc", at, Outcome::Valid);
        counter.count("a", "acc", at, Outcome::Valid);
        counter.count("a", "acc", at + chrono::Duration::seconds(1), Outcome::RateLimited);
        counter.count("b", "acc", at, Outcome::InvalidToken);
        counter.used_resource("a", "acc", "ApiKeys.View", at);
        counter.used_resource("a", "acc", "ApiKeys.View", at - chrono::Duration::seconds(5));
        let (mut hours, uses, _) = counter.take();
        hours.sort_by_key(|h| (h.access_id.clone(), h.hour));
        assert_eq!(hours.len(), 3, "two hours of a, one of b");
        assert_eq!(hours[0].counts[Outcome::Valid as usize], 2);
        assert_eq!(hours[1].counts[Outcome::RateLimited as usize], 1);
        assert_eq!(hours[1].hour - hours[0].hour, 3600);
        assert_eq!(hours[2].counts[Outcome::InvalidToken as usize], 1);
        assert_eq!(uses, vec![PermissionUse { access_id: "a".into(), resource: "ApiKeys.View".into(), at }]);
        assert_eq!(counter.take(), (Vec::new(), Vec::new(), Vec::new()));
    }
}
