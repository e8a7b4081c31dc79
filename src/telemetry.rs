//! Metrics in the Prometheus text format (`GET /metrics`), through the `metrics` facade: request
//! counts and latencies per route and per GraphQL operation, authentication outcomes, the credential
//! cache, the database pool, logins in progress and last uses waiting to be written.
//!
//! Recording costs an atomic add on a handle registered once per series; gauges of state that
//! already exists (the cache's counters, the pool) are read only when `/metrics` is rendered.
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, OnceLock, PoisonError, RwLock};
use std::time::Duration;

/// Latency buckets, in seconds: from a cache hit to a slow export.
const BUCKETS: &[f64] = &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

/// How often histogram samples are folded into their buckets.
const UPKEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// The process's recorder, installed once (the `metrics` facade is global).
pub fn handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets(BUCKETS)
            .map(PrometheusBuilder::build_recorder)
            .unwrap_or_else(|_| PrometheusBuilder::new().build_recorder());
        let handle = recorder.handle();
        // Another recorder installed first (an embedding program): render what this one sees.
        let _ = metrics::set_global_recorder(recorder);
        // Histograms keep their raw samples until upkeep folds them into buckets; with nobody
        // scraping `/metrics` they would grow without end (tens of MiB a minute under load), so
        // upkeep runs every few seconds, scraped or not.
        let upkeep = handle.clone();
        let _ = std::thread::Builder::new().name("metrics-upkeep".into()).spawn(move || loop {
            std::thread::sleep(UPKEEP_EVERY);
            upkeep.run_upkeep();
        });
        handle
    })
}

/// Renders the recorded series (after folding histogram samples into their buckets); `http` sets
/// the gauges read at render time first.
pub fn render() -> String {
    let handle = handle();
    handle.run_upkeep();
    handle.render()
}

/// One counter's series for a fixed set of values of one label, registered together at the first
/// count (after the recorder is installed) and kept: registering a series builds its key and looks
/// it up in the recorder's registry, work a hot path should not repeat on every count.
pub struct LabelledCounter<const N: usize> {
    name: &'static str,
    label: &'static str,
    values: [&'static str; N],
    handles: OnceLock<[metrics::Counter; N]>,
}

impl<const N: usize> LabelledCounter<N> {
    pub const fn new(name: &'static str, label: &'static str, values: [&'static str; N]) -> Self {
        Self { name, label, values, handles: OnceLock::new() }
    }

    /// Counts one in the series whose label has `values[index]`.
    pub fn increment(&self, index: usize) {
        let handles =
            self.handles.get_or_init(|| self.values.map(|value| metrics::counter!(self.name, self.label => value)));
        handles[index].increment(1);
    }
}

/// One request's count (`appkeys_http_requests_total` by route and status) and latency
/// (`appkeys_http_request_duration_seconds` by route). Each series' handle is registered once and
/// kept: registering builds the series' key and looks it up in the recorder's registry, which is
/// otherwise a good part of a cached `/auth`'s work. Routes are the router's patterns (and
/// "unmatched"), so the handles are few.
pub fn record_request(route: &str, status: u16, elapsed: Duration) {
    static ROUTES: OnceLock<RwLock<HashMap<String, RouteSeries>>> = OnceLock::new();
    let routes = ROUTES.get_or_init(RwLock::default);
    {
        let known = routes.read().unwrap_or_else(PoisonError::into_inner);
        if let Some(series) = known.get(route) {
            if let Some((_, count)) = series.by_status.iter().find(|(s, _)| *s == status) {
                count.increment(1);
                series.duration.record(elapsed);
                return;
            }
        }
    }
    let mut known = routes.write().unwrap_or_else(PoisonError::into_inner);
    let series = known.entry(route.to_owned()).or_insert_with(|| RouteSeries {
        duration: metrics::histogram!("appkeys_http_request_duration_seconds", "route" => route.to_owned()),
        by_status: Vec::new(),
    });
    let known_status = series.by_status.iter().position(|(s, _)| *s == status);
    let at = known_status.unwrap_or_else(|| {
        let count = metrics::counter!("appkeys_http_requests_total", "route" => route.to_owned(), "status" => status.to_string());
        series.by_status.push((status, count));
        series.by_status.len() - 1
    });
    series.by_status[at].1.increment(1);
    series.duration.record(elapsed);
}

struct RouteSeries {
    duration: metrics::Histogram,
    by_status: Vec<(u16, metrics::Counter)>,
}

/// A GraphQL operation name as a label: names are the client's choice, so only well-formed ones,
/// and at most `MAX_OPERATION_NAMES` distinct ones, get their own series; the rest share `other`.
pub fn operation_label(name: Option<&str>) -> String {
    const MAX_OPERATION_NAMES: usize = 200;
    static SEEN: OnceLock<Mutex<HashSet<String>>> = OnceLock::new();
    let Some(name) = name.filter(|n| !n.is_empty()) else {
        return "anonymous".into();
    };
    let well_formed = name.len() <= 64 && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if !well_formed {
        return "other".into();
    }
    let Ok(mut seen) = SEEN.get_or_init(Mutex::default).lock() else {
        return "other".into();
    };
    if seen.contains(name) || seen.len() < MAX_OPERATION_NAMES {
        seen.insert(name.to_owned());
        name.to_owned()
    } else {
        "other".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operation_names_become_bounded_labels() {
        assert_eq!(operation_label(None), "anonymous");
        assert_eq!(operation_label(Some("MyKeys")), "MyKeys");
        assert_eq!(operation_label(Some("bad name\\n")), "other");
        assert_eq!(operation_label(Some(&"x".repeat(65))), "other");
    }

    #[test]
    fn requests_are_counted_per_route_and_status_through_kept_handles() {
        let handle = handle();
        for status in [200, 404, 200] {
            record_request("/telemetry-test", status, Duration::from_millis(3));
        }
        handle.run_upkeep();
        let page = handle.render();
        for line in [
            "appkeys_http_requests_total{route=\"/telemetry-test\",status=\"200\"} 2",
            "appkeys_http_requests_total{route=\"/telemetry-test\",status=\"404\"} 1",
            "appkeys_http_request_duration_seconds_count{route=\"/telemetry-test\"} 3",
            "appkeys_http_request_duration_seconds_bucket{route=\"/telemetry-test\",le=\"0.005\"} 3",
        ] {
            assert!(page.lines().any(|l| l == line), "{line} not in\n{page}");
        }
    }
}
