//! What a request costs the server's own code: `/healthz` and `/auth` of a cached key sent through
//! the whole router (every layer and handler) in process, on one thread, with no socket, no HTTP
//! parsing and no other thread. The load runs' ratios (`run.sh`) also carry loopback, the load
//! generator and scheduling on two cores, which move by more than a change to the hot path does;
//! this measures that change alone, and a build against another in alternated rounds.
//!
//!     bench-seed --database-url URL --keys 1000 --password P   # prints PROBE_KEY and PROBE_TOKEN
//!     bench-router --database-url URL --key KEY --token TOKEN [--rounds 5] [--requests 200000]
//!         [--route healthz|auth]
//!
//! Prints, per round, the nanoseconds per request of each route and their difference. `--route`
//! sends only that route in the rounds (both still warm up first): under
//! `valgrind --tool=callgrind`, two runs of different `--requests` give a route's instructions per
//! request, a count that other load on the machine does not move.
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::Request;
use std::net::SocketAddr;
use std::time::Instant;
use tower::ServiceExt;
#[path = "args.rs"]
mod args;
use args::{arg, required};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let url = required("--database-url")?;
    let (key, token) = (required("--key")?, required("--token")?);
    let rounds: usize = arg("--rounds").map_or(Ok(5), |r| r.parse())?;
    let requests: u32 = arg("--requests").map_or(Ok(200_000), |r| r.parse())?;
    let route = arg("--route");
    anyhow::ensure!(matches!(route.as_deref(), None | Some("healthz" | "auth")), "--route is healthz or auth");
    let sends = |name: &str| route.as_deref().is_none_or(|only| only == name);
    let mut settings = appkeys::config::Settings::for_database(&url);
    settings.bind = "127.0.0.1:0".parse()?;
    let server = appkeys::Application::build(settings).await?;
    let router = appkeys::app(server.state().clone());
    let peer = ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 40_000)));
    let request = |path: &str, with_key: bool| {
        let mut builder = Request::get(path).header("user-agent", "bench-router/1");
        if with_key {
            builder = builder.header("x-api-appkey", key.as_str()).header("x-api-apptoken", token.as_str());
        }
        let mut request = builder.body(Body::empty()).expect("a request");
        request.extensions_mut().insert(peer);
        request
    };
    // Per request, in nanoseconds; the first pass warms the cache and the allocator.
    let time = async |path: &str, with_key: bool, n: u32| -> anyhow::Result<f64> {
        let started = Instant::now();
        for i in 0..n {
            let response = router.clone().oneshot(request(path, with_key)).await?;
            anyhow::ensure!(response.status() == 200, "{path} answered {}", response.status());
            if i % 1000 == 0 {
                // Lets what requests spawn run, as a server's other tasks would: the cache's
                // background refresh of the key's entry.
                tokio::task::yield_now().await;
            }
        }
        Ok(started.elapsed().as_nanos() as f64 / f64::from(n))
    };
    time("/healthz", false, 20_000).await?;
    time("/auth", true, 20_000).await?;
    for round in 1..=rounds {
        let healthz = if sends("healthz") { time("/healthz", false, requests).await? } else { 0.0 };
        let auth = if sends("auth") { time("/auth", true, requests).await? } else { 0.0 };
        println!("round {round} healthz_ns {healthz:.0} auth_ns {auth:.0} auth_minus_healthz_ns {:.0}", auth - healthz);
    }
    Ok(())
}
