//! A key's policy in one account: where it may be used from, how fast, and how much. Parsed and
//! checked here once; the gate (`auth::gate`) and the services only see valid policies.
use std::net::IpAddr;

use chrono::{DateTime, Datelike, Duration, NaiveDate, TimeZone, Utc};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::Invalid;

/// At most this many ranges in an allowlist.
pub const MAX_ALLOWED_IPS: usize = 100;
/// At most this many named rate limits on a key in an account.
pub const MAX_RATE_LIMITS: usize = 10;
/// The longest period a rate limit may have: 31 days.
pub const MAX_PERIOD_SECS: u32 = 31 * 24 * 3600;
/// The most a single request may cost (`/auth?cost=`).
pub const MAX_COST: u32 = 1000;

/// A key's policy in one account. The default is the empty policy: any address, no limit,
/// unlimited use.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyPolicy {
    /// Normalised CIDR ranges; empty means any address.
    #[serde(default)]
    pub allowed_ips: Vec<IpNet>,
    /// Every one must admit a request.
    #[serde(default)]
    pub rate_limits: Vec<RateLimitRule>,
    /// `None`: unlimited. The remaining credits are kept beside the policy (they change per request).
    #[serde(default)]
    pub credits: Option<CreditsRule>,
    /// `allowed_ips` as sorted, merged integer ranges, searched in O(log n) per request; made by
    /// `parse` and `compiled` (an empty one falls back to scanning `allowed_ips`).
    #[serde(skip)]
    ranges: Ranges,
}

/// Sorted, non-overlapping inclusive ranges of addresses, one list per family.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Ranges {
    v4: Vec<(u32, u32)>,
    v6: Vec<(u128, u128)>,
}

impl Ranges {
    fn of(nets: &[IpNet]) -> Self {
        fn merged<T: Ord + Copy>(mut ranges: Vec<(T, T)>, next: impl Fn(T) -> Option<T>) -> Vec<(T, T)> {
            ranges.sort_unstable();
            let mut out: Vec<(T, T)> = Vec::with_capacity(ranges.len());
            for (start, end) in ranges {
                match out.last_mut() {
                    Some(last) if next(last.1).is_none_or(|after| start <= after) => last.1 = last.1.max(end),
                    _ => out.push((start, end)),
                }
            }
            out
        }
        let v4 = nets
            .iter()
            .filter_map(|n| match n {
                IpNet::V4(n) => Some((u32::from(n.network()), u32::from(n.broadcast()))),
                IpNet::V6(_) => None,
            })
            .collect();
        let v6 = nets
            .iter()
            .filter_map(|n| match n {
                IpNet::V6(n) => Some((u128::from(n.network()), u128::from(n.broadcast()))),
                IpNet::V4(_) => None,
            })
            .collect();
        Self { v4: merged(v4, |x: u32| x.checked_add(1)), v6: merged(v6, |x: u128| x.checked_add(1)) }
    }

    fn is_empty(&self) -> bool {
        self.v4.is_empty() && self.v6.is_empty()
    }

    fn contains(&self, ip: IpAddr) -> bool {
        fn find<T: Ord + Copy>(ranges: &[(T, T)], x: T) -> bool {
            // The last range starting at or before x.
            let after = ranges.partition_point(|(start, _)| *start <= x);
            after > 0 && x <= ranges[after - 1].1
        }
        match ip {
            IpAddr::V4(v4) => find(&self.v4, u32::from(v4)),
            IpAddr::V6(v6) => find(&self.v6, u128::from(v6)),
        }
    }
}

/// A named limit: at most `limit` units per `period_secs` (a sliding window, see `auth::gate`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RateLimitRule {
    pub name: String,
    pub limit: u32,
    pub period_secs: u32,
}

/// What a key's credits were set to, and how they come back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreditsRule {
    /// The credits the policy gave (the basis of "10 % left" until a refill gives `refill.amount`).
    pub initial: i64,
    pub refill: Option<CreditRefill>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RefillInterval {
    Daily,
    Monthly,
}

/// Credits set back to `amount` at 00:00 UTC every day, or on `day` of every month (the month's
/// last day when it is shorter).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreditRefill {
    pub amount: i64,
    pub interval: RefillInterval,
    pub day: Option<u8>,
}

/// A policy as given, before its rules are checked (GraphQL's input converted field by field).
#[derive(Debug, Clone, Default)]
pub struct PolicyInput {
    pub allowed_ips: Vec<String>,
    pub rate_limits: Vec<RateLimitInput>,
    pub credits: Option<CreditsInput>,
}

#[derive(Debug, Clone)]
pub struct RateLimitInput {
    pub name: String,
    pub limit: i64,
    pub period_seconds: i64,
}

#[derive(Debug, Clone)]
pub struct CreditsInput {
    pub remaining: i64,
    pub refill: Option<RefillInput>,
}

#[derive(Debug, Clone)]
pub struct RefillInput {
    pub amount: i64,
    pub interval: RefillInterval,
    pub day: Option<i64>,
}

/// A rule of the policy failed: `field` is its path inside the policy (`allowedIps[2]`,
/// `rateLimits[0].periodSeconds`), for the caller to put under its own prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyInvalid {
    pub field: String,
    pub invalid: Invalid,
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> PolicyInvalid {
    PolicyInvalid { field: field.into(), invalid: Invalid(message.into()) }
}

impl KeyPolicy {
    /// Checks every rule, in the order the fields are given; the first failure is reported. Returns
    /// the policy and the credits it starts with.
    pub fn parse(input: &PolicyInput) -> Result<(Self, Option<i64>), PolicyInvalid> {
        if input.allowed_ips.len() > MAX_ALLOWED_IPS {
            return Err(invalid(
                "allowedIps",
                format!("at most {MAX_ALLOWED_IPS} ranges (given {})", input.allowed_ips.len()),
            ));
        }
        let mut allowed_ips = Vec::with_capacity(input.allowed_ips.len());
        for (i, raw) in input.allowed_ips.iter().enumerate() {
            let net = parse_range(raw).map_err(|e| PolicyInvalid { field: format!("allowedIps[{i}]"), invalid: e })?;
            if !allowed_ips.contains(&net) {
                allowed_ips.push(net);
            }
        }
        if input.rate_limits.len() > MAX_RATE_LIMITS {
            return Err(invalid("rateLimits", format!("at most {MAX_RATE_LIMITS} rate limits")));
        }
        let mut rate_limits: Vec<RateLimitRule> = Vec::with_capacity(input.rate_limits.len());
        for (i, raw) in input.rate_limits.iter().enumerate() {
            let name = raw.name.trim();
            if name.is_empty()
                || name.len() > 64
                || !name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':'))
            {
                return Err(invalid(
                    format!("rateLimits[{i}].name"),
                    "a limit's name is 1 to 64 letters, digits, '_', '-', '.' or ':'",
                ));
            }
            if rate_limits.iter().any(|r| r.name == name) {
                return Err(invalid(format!("rateLimits[{i}].name"), format!("the name {name:?} is used twice")));
            }
            let limit = u32::try_from(raw.limit)
                .ok()
                .filter(|l| *l >= 1 && i32::try_from(*l).is_ok())
                .ok_or_else(|| invalid(format!("rateLimits[{i}].limit"), "a limit is at least 1"))?;
            let period_secs = u32::try_from(raw.period_seconds)
                .ok()
                .filter(|p| (1..=MAX_PERIOD_SECS).contains(p))
                .ok_or_else(|| {
                    invalid(
                        format!("rateLimits[{i}].periodSeconds"),
                        format!("a period is from 1 second to 31 days ({MAX_PERIOD_SECS} seconds)"),
                    )
                })?;
            rate_limits.push(RateLimitRule { name: name.to_owned(), limit, period_secs });
        }
        let (credits, remaining) = match &input.credits {
            None => (None, None),
            Some(credits) => {
                if credits.remaining < 0 || credits.remaining > i64::from(i32::MAX) {
                    return Err(invalid("credits.remaining", "credits are a whole number from 0"));
                }
                let refill = match &credits.refill {
                    None => None,
                    Some(refill) => Some(parse_refill(refill)?),
                };
                (Some(CreditsRule { initial: credits.remaining, refill }), Some(credits.remaining))
            }
        };
        let ranges = Ranges::of(&allowed_ips);
        Ok((Self { allowed_ips, rate_limits, credits, ranges }, remaining))
    }

    /// The policy ready for the gate (its allowlist's search ranges made), as read back from its
    /// stored form.
    pub fn compiled(mut self) -> Self {
        self.ranges = Ranges::of(&self.allowed_ips);
        self
    }

    /// Whether the policy decides nothing (no allowlist, no limit, unlimited).
    pub fn is_empty(&self) -> bool {
        self.allowed_ips.is_empty() && self.rate_limits.is_empty() && self.credits.is_none()
    }

    /// Whether a request from `client` may pass the allowlist. An empty allowlist admits any
    /// request; a non-empty one refuses a request whose address is not known.
    pub fn allows(&self, client: Option<IpAddr>) -> bool {
        if self.allowed_ips.is_empty() {
            return true;
        }
        let Some(client) = client else {
            return false;
        };
        // An IPv4 client on a dual-stack socket arrives as ::ffff:a.b.c.d.
        let client = client.to_canonical();
        if self.ranges.is_empty() {
            return self.allowed_ips.iter().any(|net| net.contains(&client));
        }
        self.ranges.contains(client)
    }

    /// The credits that count as "10 % left": a tenth of what a refill gives, or of what the
    /// policy gave.
    pub fn low_credits_threshold(&self) -> Option<i64> {
        let credits = self.credits.as_ref()?;
        let basis = credits.refill.map_or(credits.initial, |r| r.amount);
        Some(basis / 10)
    }
}

fn parse_refill(refill: &RefillInput) -> Result<CreditRefill, PolicyInvalid> {
    if refill.amount < 1 || refill.amount > i64::from(i32::MAX) {
        return Err(invalid("credits.refill.amount", "a refill gives at least 1 credit"));
    }
    let day = match (refill.interval, refill.day) {
        (_, None) => None,
        (RefillInterval::Daily, Some(_)) => {
            return Err(invalid("credits.refill.day", "a day is given only with a MONTHLY refill"));
        }
        (RefillInterval::Monthly, Some(day)) => Some(
            u8::try_from(day)
                .ok()
                .filter(|d| (1..=31).contains(d))
                .ok_or_else(|| invalid("credits.refill.day", "a day of the month is from 1 to 31"))?,
        ),
    };
    Ok(CreditRefill { amount: refill.amount, interval: refill.interval, day })
}

/// A CIDR range (`10.0.0.0/8`, `2001:db8::/32`) or one address (`/32` or `/128`), host bits cleared.
fn parse_range(raw: &str) -> Result<IpNet, Invalid> {
    let raw = raw.trim();
    let parsed = raw.parse::<IpNet>().or_else(|_| raw.parse::<IpAddr>().map(IpNet::from));
    match parsed {
        Ok(net) => Ok(match net {
            // An IPv4-mapped range would never match: clients are compared in canonical form.
            IpNet::V6(v6) if v6.addr().to_ipv4_mapped().is_some() && v6.prefix_len() >= 96 => {
                let v4 = v6.addr().to_ipv4_mapped().unwrap_or(std::net::Ipv4Addr::UNSPECIFIED);
                IpNet::V4(ipnet::Ipv4Net::new(v4, v6.prefix_len() - 96).map_err(|e| Invalid(e.to_string()))?)
            }
            other => other,
        }
        .trunc()),
        Err(_) => Err(Invalid(format!("{raw:?} is not an IPv4 or IPv6 address or CIDR range (like 203.0.113.0/24)"))),
    }
}

impl CreditRefill {
    /// The latest refill instant at or before `now`.
    pub fn last_at_or_before(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        let today = now.date_naive();
        match self.interval {
            RefillInterval::Daily => midnight(today),
            RefillInterval::Monthly => {
                let day = u32::from(self.day.unwrap_or(1));
                let this_month = refill_day_in(today.year(), today.month(), day);
                if this_month <= today {
                    midnight(this_month)
                } else {
                    let (year, month) =
                        if today.month() == 1 { (today.year() - 1, 12) } else { (today.year(), today.month() - 1) };
                    midnight(refill_day_in(year, month, day))
                }
            }
        }
    }

    /// The first refill instant after `now`.
    pub fn next_after(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        let today = now.date_naive();
        match self.interval {
            RefillInterval::Daily => midnight(today) + Duration::days(1),
            RefillInterval::Monthly => {
                let day = u32::from(self.day.unwrap_or(1));
                let this_month = refill_day_in(today.year(), today.month(), day);
                if this_month > today {
                    midnight(this_month)
                } else {
                    let (year, month) =
                        if today.month() == 12 { (today.year() + 1, 1) } else { (today.year(), today.month() + 1) };
                    midnight(refill_day_in(year, month, day))
                }
            }
        }
    }
}

fn midnight(day: NaiveDate) -> DateTime<Utc> {
    Utc.from_utc_datetime(&day.and_hms_opt(0, 0, 0).unwrap_or_default())
}

/// `day` of the month, or its last day when the month is shorter.
fn refill_day_in(year: i32, month: u32, day: u32) -> NaiveDate {
    (1..=day).rev().find_map(|d| NaiveDate::from_ymd_opt(year, month, d)).unwrap_or(NaiveDate::MIN)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ips(raw: &[&str]) -> PolicyInput {
        PolicyInput { allowed_ips: raw.iter().map(|s| s.to_string()).collect(), ..Default::default() }
    }

    fn at(raw: &str) -> DateTime<Utc> {
        raw.parse().expect("an instant")
    }

    #[test]
    fn ranges_are_normalised_and_checked() {
        let (policy, _) =
            KeyPolicy::parse(&ips(&["10.1.2.3/8", "203.0.113.7", "2001:db8::1/32", " ::ffff:192.0.2.0/120 "]))
                .expect("valid");
        let shown: Vec<String> = policy.allowed_ips.iter().map(ToString::to_string).collect();
        assert_eq!(shown, ["10.0.0.0/8", "203.0.113.7/32", "2001:db8::/32", "192.0.2.0/24"]);
        let allows = |ip: &str| policy.allows(Some(ip.parse().expect("ip")));
        assert!(allows("10.255.255.255"));
        assert!(!allows("11.0.0.0"));
        assert!(allows("203.0.113.7"));
        assert!(!allows("203.0.113.8"));
        assert!(allows("2001:db8:ffff::1"));
        assert!(!allows("2001:db9::"));
        assert!(allows("::ffff:10.0.0.1"), "a mapped IPv4 client");
        assert!(allows("192.0.2.255"));
        assert!(!policy.allows(None), "no known address fails a non-empty allowlist");
        assert!(KeyPolicy::default().allows(None));
        let error = KeyPolicy::parse(&ips(&["10.0.0.0/8", "1.2.3.4", "300.1.1.1/8"])).expect_err("bad");
        assert_eq!(error.field, "allowedIps[2]");
        assert_eq!(KeyPolicy::parse(&ips(&["10.0.0.0/33"])).expect_err("bad").field, "allowedIps[0]");
        assert_eq!(KeyPolicy::parse(&ips(&["2001:db8::/129"])).expect_err("bad").field, "allowedIps[0]");
        let many: Vec<String> = (0..=100).map(|i| format!("10.0.{i}.0/24")).collect();
        let refs: Vec<&str> = many.iter().map(String::as_str).collect();
        assert_eq!(KeyPolicy::parse(&ips(&refs)).expect_err("too many").field, "allowedIps");
        assert!(KeyPolicy::parse(&ips(&refs[..100])).is_ok(), "100 is allowed");
        // Search ranges answer as the networks do, at every edge, merged or not.
        let nets = [
            "10.0.0.0/8",
            "10.1.0.0/16",
            "11.0.0.0/8",
            "192.168.1.0/24",
            "192.168.3.0/24",
            "0.0.0.0/32",
            "255.255.255.255/32",
            "2001:db8::/32",
            "::/128",
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128",
        ];
        let (compiled, _) = KeyPolicy::parse(&ips(&nets)).expect("valid");
        let scanned = KeyPolicy { ranges: Ranges::default(), ..compiled.clone() };
        for probe in [
            "9.255.255.255",
            "10.0.0.0",
            "11.255.255.255",
            "12.0.0.0",
            "192.168.1.255",
            "192.168.2.0",
            "192.168.3.0",
            "0.0.0.0",
            "0.0.0.1",
            "255.255.255.255",
            "255.255.255.254",
            "2001:db8::",
            "2001:db7:ffff::",
            "2001:db9::",
            "::",
            "::1",
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
        ] {
            let ip = Some(probe.parse().expect("ip"));
            assert_eq!(compiled.allows(ip), scanned.allows(ip), "{probe}");
        }
        assert_eq!(compiled.ranges.v4.len(), 5, "10/8 and 11/8 merge, 10.1/16 inside");
    }

    fn limit(name: &str, limit: i64, period_seconds: i64) -> RateLimitInput {
        RateLimitInput { name: name.into(), limit, period_seconds }
    }

    #[test]
    fn rate_limits_and_credits_are_checked() {
        let with = |rate_limits: Vec<RateLimitInput>| PolicyInput { rate_limits, ..Default::default() };
        assert!(KeyPolicy::parse(&with(vec![limit("a", 1, 1), limit("b", 5, 2_678_400)])).is_ok());
        let field = |input: PolicyInput| KeyPolicy::parse(&input).expect_err("invalid").field;
        assert_eq!(field(with(vec![limit("a", 0, 60)])), "rateLimits[0].limit");
        assert_eq!(field(with(vec![limit("a", 1, 60), limit("b", 1, 0)])), "rateLimits[1].periodSeconds");
        assert_eq!(field(with(vec![limit("a", 1, 2_678_401)])), "rateLimits[0].periodSeconds");
        assert_eq!(field(with(vec![limit("a", 1, 60), limit("a", 2, 60)])), "rateLimits[1].name");
        assert_eq!(field(with(vec![limit("", 1, 60)])), "rateLimits[0].name");
        let credits = |remaining: i64, refill: Option<RefillInput>| PolicyInput {
            credits: Some(CreditsInput { remaining, refill }),
            ..Default::default()
        };
        assert_eq!(field(credits(-1, None)), "credits.remaining");
        let monthly = |day| Some(RefillInput { amount: 10, interval: RefillInterval::Monthly, day });
        assert_eq!(field(credits(5, monthly(Some(0)))), "credits.refill.day");
        assert_eq!(field(credits(5, monthly(Some(32)))), "credits.refill.day");
        let daily = Some(RefillInput { amount: 10, interval: RefillInterval::Daily, day: Some(3) });
        assert_eq!(field(credits(5, daily)), "credits.refill.day");
        let (policy, remaining) = KeyPolicy::parse(&credits(0, monthly(Some(31)))).expect("valid");
        assert_eq!(remaining, Some(0));
        assert_eq!(policy.low_credits_threshold(), Some(1));
    }

    #[test]
    fn monthly_refills_fall_on_the_last_day_of_shorter_months() {
        let refill = CreditRefill { amount: 100, interval: RefillInterval::Monthly, day: Some(31) };
        assert_eq!(refill.next_after(at("2027-02-10T12:00:00Z")), at("2027-02-28T00:00:00Z"));
        assert_eq!(refill.next_after(at("2028-02-10T12:00:00Z")), at("2028-02-29T00:00:00Z"), "leap year");
        assert_eq!(refill.last_at_or_before(at("2027-02-28T00:00:00Z")), at("2027-02-28T00:00:00Z"));
        assert_eq!(refill.last_at_or_before(at("2027-02-27T23:59:59Z")), at("2027-01-31T00:00:00Z"));
        assert_eq!(refill.next_after(at("2027-02-28T00:00:00Z")), at("2027-03-31T00:00:00Z"));
        assert_eq!(refill.next_after(at("2027-12-31T01:00:00Z")), at("2028-01-31T00:00:00Z"));
        let first = CreditRefill { amount: 1, interval: RefillInterval::Monthly, day: None };
        assert_eq!(first.last_at_or_before(at("2027-01-15T00:00:00Z")), at("2027-01-01T00:00:00Z"));
        let daily = CreditRefill { amount: 1, interval: RefillInterval::Daily, day: None };
        assert_eq!(daily.next_after(at("2027-02-28T23:59:59Z")), at("2027-03-01T00:00:00Z"));
        assert_eq!(daily.last_at_or_before(at("2027-02-28T23:59:59Z")), at("2027-02-28T00:00:00Z"));
    }

    #[test]
    fn a_policy_round_trips_through_its_stored_form() {
        let input = PolicyInput {
            allowed_ips: vec!["10.0.0.0/8".into()],
            rate_limits: vec![limit("burst", 10, 1)],
            credits: Some(CreditsInput {
                remaining: 50,
                refill: Some(RefillInput { amount: 50, interval: RefillInterval::Daily, day: None }),
            }),
        };
        let (policy, _) = KeyPolicy::parse(&input).expect("valid");
        let stored = serde_json::to_string(&policy).expect("json");
        assert_eq!(serde_json::from_str::<KeyPolicy>(&stored).expect("back").compiled(), policy);
        assert!(serde_json::from_str::<KeyPolicy>("{}").expect("empty").is_empty());
    }
}
