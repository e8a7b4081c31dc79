//! A key's policy at the gate: allowlists, rate limits (local and shared through a real Redis),
//! credits, on every route, on both backends.
use crate::helpers::process::{free_port, listening, poll_until, ChildGuard};
use crate::helpers::{Auth, Backend, TestApp};
use futures::future::join_all;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const SET: &str = "mutation($k: String!, $p: AppKeyPolicyInput!) { setAppKeyPolicy(key: $k, input: $p) { key \
                   policy { allowedIps rateLimits { name limit periodSeconds } \
                   credits { remaining refill { amount interval day } } } } }";
const POLICY: &str =
    "query($k: String!) { appKey(key: $k) { policy { allowedIps rateLimits { name limit periodSeconds } \
                      credits { remaining refill { amount interval day } } } } }";

async fn key_with(app: &TestApp, owner: &Auth, policy: Value) -> (String, String) {
    let role = app.restricted_role(owner).await;
    let (key, token) = app.generate_key(owner, None, &[role]).await;
    app.graphql(owner, SET, json!({ "k": key, "p": policy })).await.data("setAppKeyPolicy");
    (key, token)
}

async fn auth_at(app: &TestApp, address: &str, key: &str, token: &str, query: &str) -> reqwest::Response {
    Auth::key(key, token).apply(app.client.get(format!("{address}/auth{query}"))).send().await.expect("sent")
}

async fn body(response: reqwest::Response) -> Value {
    response.json().await.expect("a JSON body")
}

fn header(response: &reqwest::Response, name: &str) -> Option<String> {
    response.headers().get(name).map(|v| v.to_str().expect("text").to_owned())
}

async fn policies_are_set_read_replaced_and_audited(app: &TestApp) {
    let owner = app.owner().await;
    let role = app.restricted_role(&owner).await;
    let (plain, _) = app.generate_key(&owner, None, std::slice::from_ref(&role)).await;
    let empty = app.graphql(&owner, POLICY, json!({ "k": plain })).await.data("appKey.policy");
    assert_eq!(empty, json!({ "allowedIps": [], "rateLimits": [], "credits": null }));
    let generate = "mutation($i: GenerateAppKeyInput!) { generateAppKey(input: $i) { appKey { key policy { \
                    allowedIps rateLimits { name } credits { remaining refill { interval day } } } } } }";
    let policy = json!({
        "allowedIps": ["10.1.2.3/8", "2001:db8::1/32", "203.0.113.7"],
        "rateLimits": [{ "name": "burst", "limit": 10, "periodSeconds": 1 }],
        "credits": { "remaining": 500, "refill": { "amount": 500, "interval": "MONTHLY", "day": 31 } },
    });
    let made = app.graphql(&owner, generate, json!({ "i": { "roleIds": [role], "policy": policy } })).await;
    assert_eq!(
        made.data("generateAppKey.appKey.policy"),
        json!({
            "allowedIps": ["10.0.0.0/8", "2001:db8::/32", "203.0.113.7/32"],
            "rateLimits": [{ "name": "burst" }],
            "credits": { "remaining": 500, "refill": { "interval": "MONTHLY", "day": 31 } },
        })
    );
    let key = made.data("generateAppKey.appKey.key");
    // Replacing the whole policy: what is omitted is gone.
    let replaced = app
        .graphql(
            &owner,
            SET,
            json!({ "k": key, "p": { "rateLimits": [{ "name": "m", "limit": 5, "periodSeconds": 60 }] } }),
        )
        .await;
    assert_eq!(
        replaced.data("setAppKeyPolicy.policy"),
        json!({ "allowedIps": [], "rateLimits": [{ "name": "m", "limit": 5, "periodSeconds": 60 }], "credits": null })
    );
    let audit = app.graphql(&owner, "{ auditEvents(first: 1) { nodes { action before after } } }", json!({})).await;
    let entry = audit.data("auditEvents.nodes")[0].clone();
    assert_eq!(entry["action"], "key.policy");
    let (before, after) = (&entry["before"], &entry["after"]);
    assert_eq!(before["credits"]["remaining"], 500);
    assert_eq!(after["rateLimits"][0]["name"], "m");
    // A key holding only ApiKeys.View may read a policy but not change it.
    let viewer = app.custom_role(&owner, "Viewer", &["ApiKeys.View"]).await;
    let (reader, reader_token) = app.generate_key(&owner, None, &[viewer]).await;
    let as_reader = Auth::key(&reader, &reader_token);
    app.graphql(&as_reader, POLICY, json!({ "k": key })).await.data("appKey.policy");
    app.graphql(&as_reader, SET, json!({ "k": key, "p": {} })).await.assert_code("FORBIDDEN");
}

async fn bad_policies_name_their_field_and_change_nothing(app: &TestApp) {
    let owner = app.owner().await;
    let (key, token) = key_with(app, &owner, json!({ "allowedIps": ["127.0.0.1"] })).await;
    let before = app.graphql(&owner, POLICY, json!({ "k": key })).await.data("appKey.policy");
    let hundred_and_one: Vec<String> = (0..101).map(|i| format!("10.0.{i}.0/24")).collect();
    let limit = |limit: i64, period: i64| json!({ "name": "a", "limit": limit, "periodSeconds": period });
    let refill = |interval: &str, day: Value| json!({ "remaining": 5, "refill": { "amount": 5, "interval": interval, "day": day } });
    let cases = [
        (json!({ "allowedIps": ["10.0.0.0/8", "::1", "10.0.0.0/33"] }), "input.allowedIps[2]"),
        (json!({ "allowedIps": ["not an address"] }), "input.allowedIps[0]"),
        (json!({ "allowedIps": hundred_and_one }), "input.allowedIps"),
        (json!({ "rateLimits": [limit(0, 60)] }), "input.rateLimits[0].limit"),
        (
            json!({ "rateLimits": [limit(1, 60), { "name": "b", "limit": 1, "periodSeconds": 0 }] }),
            "input.rateLimits[1].periodSeconds",
        ),
        (json!({ "rateLimits": [limit(1, 2_678_401)] }), "input.rateLimits[0].periodSeconds"),
        (json!({ "rateLimits": [limit(1, 60), limit(2, 60)] }), "input.rateLimits[1].name"),
        (json!({ "credits": { "remaining": -1 } }), "input.credits.remaining"),
        (json!({ "credits": refill("MONTHLY", json!(0)) }), "input.credits.refill.day"),
        (json!({ "credits": refill("MONTHLY", json!(32)) }), "input.credits.refill.day"),
        (json!({ "credits": refill("DAILY", json!(3)) }), "input.credits.refill.day"),
    ];
    for (policy, field) in cases {
        let refused = app.graphql(&owner, SET, json!({ "k": key, "p": policy })).await;
        refused.assert_code("BAD_USER_INPUT");
        assert_eq!(refused.0["errors"][0]["extensions"]["field"], field, "{policy}");
    }
    let generate = "mutation($i: GenerateAppKeyInput!) { generateAppKey(input: $i) { appKey { key } } }";
    let refused = app.graphql(&owner, generate, json!({ "i": { "policy": { "rateLimits": [limit(0, 1)] } } })).await;
    refused.assert_code("BAD_USER_INPUT");
    assert_eq!(refused.0["errors"][0]["extensions"]["field"], "input.policy.rateLimits[0].limit");
    assert_eq!(app.graphql(&owner, POLICY, json!({ "k": key })).await.data("appKey.policy"), before);
    for cost in ["1001", "-1", "x"] {
        let response = auth_at(app, &app.address, &key, &token, &format!("?cost={cost}")).await;
        assert_eq!(response.status(), 400, "cost={cost}");
        assert_eq!(body(response).await["errors"][0]["extensions"]["field"], "cost");
    }
}

async fn the_allowlist_decides_by_the_client_address_on_every_route(backend: Backend) {
    // The test's requests come from 127.0.0.1, which is a trusted proxy here: `X-Forwarded-For`
    // names the client.
    let app = TestApp::spawn_with(backend, |s| s.trusted_proxies = vec!["127.0.0.1/32".parse().expect("net")]).await;
    let owner = app.owner().await;
    let (key, token) = key_with(&app, &owner, json!({ "allowedIps": ["10.0.0.0/8", "2001:db8::/32"] })).await;
    let from = |ip: &str| {
        Auth::key(&key, &token).apply(app.client.get(format!("{}/auth", app.address))).header("x-forwarded-for", ip)
    };
    for (ip, status) in [
        ("10.0.0.0", 200),
        ("10.255.255.255", 200),
        ("11.0.0.0", 403),
        ("9.255.255.255", 403),
        ("2001:db8:ffff::1", 200),
        ("2001:db9::1", 403),
        ("::ffff:10.1.1.1", 200),
    ] {
        let response = from(ip).send().await.expect("sent");
        assert_eq!(response.status(), status, "{ip}");
        if status == 403 {
            let error = body(response).await;
            assert_eq!(error["errors"][0]["extensions"]["code"], "FORBIDDEN");
            assert_eq!(error["errors"][0]["extensions"]["reason"], "IP_NOT_ALLOWED");
        }
    }
    // The peer itself (no header) is 127.0.0.1: not allowed, on every route.
    assert_eq!(auth_at(&app, &app.address, &key, &token, "").await.status(), 403);
    let graphql = app.graphql(&Auth::key(&key, &token), "{ viewer { account } }", json!({})).await;
    graphql.assert_code("FORBIDDEN");
    assert_eq!(graphql.0["errors"][0]["extensions"]["reason"], "IP_NOT_ALLOWED");
    let export = app.get("/export/app-keys.csv", &Auth::key(&key, &token)).await;
    assert_eq!(export.status(), 403);
    assert_eq!(body(export).await["errors"][0]["extensions"]["reason"], "IP_NOT_ALLOWED");
    let allowed = Auth::key(&key, &token).apply(app.client.get(format!("{}/export/app-keys.csv", app.address)));
    let allowed = allowed.header("x-forwarded-for", "10.9.9.9").send().await.expect("sent");
    assert_eq!(allowed.status(), 200, "from an allowed address");
    app.cleanup().await;

    // Without trusted proxies `X-Forwarded-For` is not believed: the peer decides.
    let app = TestApp::spawn(backend).await;
    let owner = app.owner().await;
    let (key, token) = key_with(&app, &owner, json!({ "allowedIps": ["10.0.0.0/8"] })).await;
    let forged = Auth::key(&key, &token).apply(app.client.get(format!("{}/auth", app.address)));
    assert_eq!(forged.header("x-forwarded-for", "10.0.0.1").send().await.expect("sent").status(), 403);
    let set = json!({ "k": key, "p": { "allowedIps": ["127.0.0.0/8", "::1"] } });
    app.graphql(&owner, SET, set).await.data("setAppKeyPolicy");
    assert_eq!(auth_at(&app, &app.address, &key, &token, "").await.status(), 200, "the next request");
    app.cleanup().await;
}

async fn rate_limits_answer_429_with_headers_and_slide_with_time(app: &TestApp) {
    let owner = app.owner().await;
    let policy = json!({ "rateLimits": [
        { "name": "minute", "limit": 3, "periodSeconds": 60 },
        { "name": "hour", "limit": 100, "periodSeconds": 3600 },
    ] });
    // At the start of a minute, so the whole test stays in one window.
    let now = app.store().now();
    app.advance_clock(chrono::Duration::seconds(60 - i64::from(chrono::Timelike::second(&now))));
    let (key, token) = key_with(app, &owner, policy).await;
    for remaining in [2, 1, 0] {
        let response = auth_at(app, &app.address, &key, &token, "").await;
        assert_eq!(response.status(), 200);
        assert_eq!(header(&response, "ratelimit-policy").as_deref(), Some("\"minute\";q=3;w=60"));
        let state = header(&response, "ratelimit").expect("RateLimit");
        assert!(state.starts_with(&format!("\"minute\";r={remaining};t=")), "{state}");
    }
    let refused = auth_at(app, &app.address, &key, &token, "").await;
    assert_eq!(refused.status(), 429);
    let retry: u64 = header(&refused, "retry-after").expect("Retry-After").parse().expect("seconds");
    assert!((1..=120).contains(&retry), "{retry}");
    assert!(header(&refused, "ratelimit").expect("RateLimit").contains("r=0"));
    let error = body(refused).await;
    assert_eq!(error["errors"][0]["extensions"]["code"], "RATE_LIMITED");
    assert_eq!(error["errors"][0]["extensions"]["limit"], "minute");
    // /graphql: the same refusal, as HTTP 429 in the one error shape.
    let graphql = Auth::key(&key, &token)
        .apply(app.client.post(format!("{}/graphql", app.address)))
        .json(&json!({ "query": "{ viewer { account } }" }))
        .send()
        .await
        .expect("sent");
    assert_eq!(graphql.status(), 429);
    assert!(header(&graphql, "retry-after").is_some());
    assert_eq!(body(graphql).await["errors"][0]["extensions"]["code"], "RATE_LIMITED");
    // Two minutes on (injected time), the window has slid past.
    app.advance_clock(chrono::Duration::seconds(120));
    assert_eq!(auth_at(app, &app.address, &key, &token, "").await.status(), 200);
    // `cost` charges units of every limit: 2 left of 3 is not enough for 3.
    assert_eq!(auth_at(app, &app.address, &key, &token, "?cost=3").await.status(), 429);
    let response = auth_at(app, &app.address, &key, &token, "?cost=2").await;
    assert_eq!(response.status(), 200);
    assert!(header(&response, "ratelimit").expect("RateLimit").starts_with("\"minute\";r=0;"));
    let metrics = app.get("/metrics", &Auth::None).await.text().await.expect("text");
    assert!(metrics.contains("appkeys_gate_refusals_total{reason=\"rate_limited\"}"), "{metrics}");
}

async fn credits_are_charged_exactly_announced_and_refused_when_spent(app: &TestApp) {
    let owner = app.owner().await;
    let (key, token) = key_with(app, &owner, json!({ "credits": { "remaining": 10 } })).await;
    let response = auth_at(app, &app.address, &key, &token, "?cost=5").await;
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "x-credits-remaining").as_deref(), Some("5"));
    let response = auth_at(app, &app.address, &key, &token, "?cost=0").await;
    assert_eq!(header(&response, "x-credits-remaining").as_deref(), Some("5"), "cost 0 charges nothing");
    assert_eq!(auth_at(app, &app.address, &key, &token, "?cost=6").await.status(), 429, "more than is left");
    assert_eq!(auth_at(app, &app.address, &key, &token, "?cost=4").await.status(), 200);
    // The last credit, spent through GraphQL.
    app.graphql(&Auth::key(&key, &token), "{ viewer { account } }", json!({})).await.data("viewer");
    let refused = auth_at(app, &app.address, &key, &token, "").await;
    assert_eq!(refused.status(), 429);
    assert_eq!(header(&refused, "x-credits-remaining").as_deref(), Some("0"));
    assert!(header(&refused, "retry-after").is_none(), "no refill: nothing to wait for");
    assert_eq!(body(refused).await["errors"][0]["extensions"]["code"], "USAGE_EXCEEDED");
    let policy = app.graphql(&owner, POLICY, json!({ "k": key })).await.data("appKey.policy.credits.remaining");
    assert_eq!(policy, 0);
    // Each of low (≤ 10 %) and exhausted is announced once.
    let announced = poll_until(Duration::from_secs(5), || async {
        let sql = "SELECT COUNT(*) FROM key_events WHERE type IN ('app_key.credits_low', 'app_key.credits_exhausted')";
        app.scalar::<i64>(sql).await == 2
    })
    .await;
    assert!(announced, "credits_low and credits_exhausted are recorded");
    let recorder = app.state.auth.last_use().clone();
    appkeys::jobs::sweep(app.store(), &recorder).await.expect("a sweep");
    let sql = "SELECT COUNT(*) FROM key_events WHERE type LIKE 'app_key.credits_%'";
    assert_eq!(app.scalar::<i64>(sql).await, 2, "the sweep makes no second announcement");
}

/// Subscriptions' `connection_init` and the exports meet the same gate: the allowlist, the rate
/// limits, the credits.
async fn subscriptions_and_exports_meet_the_same_gate(app: &TestApp) {
    use crate::helpers::subscriber::{Frame, Subscriber};
    let owner = app.owner().await;
    let init = |key: &str, token: &str| json!({ "X-API-AppKey": key, "X-API-AppToken": token });
    let refused_with = |frame: &Frame, close: u16, message: &str| matches!(frame, Frame::Closed(Some(code), reason) if *code == close && reason.contains(message));
    let (fenced, fenced_token) = key_with(app, &owner, json!({ "allowedIps": ["192.0.2.0/24"] })).await;
    let (_, answer) = Subscriber::connect(&app.address, init(&fenced, &fenced_token)).await;
    assert!(refused_with(&answer, 4403, "may not be used from this address"), "{answer:?}");
    let one_a_minute = json!({ "rateLimits": [{ "name": "minute", "limit": 1, "periodSeconds": 60 }] });
    let (limited, limited_token) = key_with(app, &owner, one_a_minute.clone()).await;
    let (_, answer) = Subscriber::connect(&app.address, init(&limited, &limited_token)).await;
    assert!(matches!(answer, Frame::Message(ref m) if m["type"] == "connection_ack"), "{answer:?}");
    let (_, answer) = Subscriber::connect(&app.address, init(&limited, &limited_token)).await;
    assert!(refused_with(&answer, 4429, "rate limit \"minute\""), "{answer:?}");
    let (metered, metered_token) = key_with(app, &owner, json!({ "credits": { "remaining": 0 } })).await;
    let (_, answer) = Subscriber::connect(&app.address, init(&metered, &metered_token)).await;
    assert!(refused_with(&answer, 4429, "credits are used up"), "{answer:?}");

    let (exporter, exporter_token) = key_with(app, &owner, one_a_minute).await;
    let as_exporter = Auth::key(&exporter, &exporter_token);
    assert_eq!(app.get("/export/app-keys.csv", &as_exporter).await.status(), 200);
    let refused = app.get("/export/app-keys.xlsx", &as_exporter).await;
    assert_eq!(refused.status(), 429);
    assert!(header(&refused, "retry-after").is_some());
    assert_eq!(body(refused).await["errors"][0]["extensions"]["code"], "RATE_LIMITED");
    let spent = app.get("/export/app-keys.csv", &Auth::key(&metered, &metered_token)).await;
    assert_eq!(spent.status(), 429);
    assert_eq!(body(spent).await["errors"][0]["extensions"]["code"], "USAGE_EXCEEDED");
}

/// 100 credits, 400 concurrent requests over two replicas: exactly 100 admitted.
async fn credits_are_exact_across_two_replicas(app: &TestApp) {
    let owner = app.owner().await;
    let (b, replica) = app.another_server().await;
    tokio::spawn(replica.run_until_stopped(std::future::pending()));
    let (key, token) = key_with(app, &owner, json!({ "credits": { "remaining": 100 } })).await;
    let requests = (0..400).map(|i| {
        let address = if i % 2 == 0 { app.address.clone() } else { b.clone() };
        let (key, token) = (key.clone(), token.clone());
        async move { auth_at(app, &address, &key, &token, "").await.status().as_u16() }
    });
    let statuses = join_all(requests).await;
    let admitted = statuses.iter().filter(|s| **s == 200).count();
    let refused = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!((admitted, refused), (100, 300), "{statuses:?}");
    let remaining = app.graphql(&owner, POLICY, json!({ "k": key })).await.data("appKey.policy.credits.remaining");
    assert_eq!(remaining, 0);
}

/// A MONTHLY refill on day 31 comes on the 28th of February; DAILY would at 00:00 UTC.
async fn credits_refill_on_the_last_day_of_february(app: &TestApp) {
    // Move to 2027-01-31T12:00:00Z (and log in then: a session would not last).
    let target: chrono::DateTime<chrono::Utc> = "2027-01-31T12:00:00Z".parse().expect("instant");
    app.advance_clock(target - app.store().now());
    let owner_after = app.owner().await;
    let policy = json!({ "credits": { "remaining": 2, "refill": { "amount": 7, "interval": "MONTHLY", "day": 31 } } });
    let (key, token) = key_with(app, &owner_after, policy).await;
    assert_eq!(auth_at(app, &app.address, &key, &token, "?cost=2").await.status(), 200);
    let refused = auth_at(app, &app.address, &key, &token, "").await;
    assert_eq!(refused.status(), 429);
    let retry: i64 = header(&refused, "retry-after").expect("until the refill").parse().expect("seconds");
    let february_28 = "2027-02-28T00:00:00Z".parse::<chrono::DateTime<chrono::Utc>>().expect("instant");
    assert!((retry - (february_28 - app.store().now()).num_seconds()).abs() <= 2, "{retry}");
    // A second before midnight of the 28th: nothing yet.
    app.advance_clock(february_28 - app.store().now() - chrono::Duration::seconds(1));
    assert_eq!(auth_at(app, &app.address, &key, &token, "").await.status(), 429);
    app.advance_clock(chrono::Duration::seconds(2));
    let response = auth_at(app, &app.address, &key, &token, "").await;
    assert_eq!(response.status(), 200, "refilled on the 28th");
    assert_eq!(header(&response, "x-credits-remaining").as_deref(), Some("6"));
    // An idle key is refilled by the sweeper: its policy shows the amount.
    let idle_policy = json!({ "credits": { "remaining": 0, "refill": { "amount": 3, "interval": "DAILY" } } });
    let (idle, _) = key_with(app, &app.owner().await, idle_policy).await;
    app.advance_clock(chrono::Duration::days(1));
    let recorder = app.state.auth.last_use().clone();
    appkeys::jobs::sweep(app.store(), &recorder).await.expect("a sweep");
    let owner_now = app.owner().await;
    let remaining = app.graphql(&owner_now, POLICY, json!({ "k": idle })).await.data("appKey.policy.credits.remaining");
    assert_eq!(remaining, 3);
}

/// A policy set on one replica decides the next request on the other within a second.
async fn a_policy_change_reaches_every_replica_within_a_second(app: &TestApp) {
    let owner = app.owner().await;
    let (b, replica) = app.another_server().await;
    tokio::spawn(replica.run_until_stopped(std::future::pending()));
    let (key, token) = key_with(app, &owner, json!({})).await;
    for _ in 0..3 {
        assert_eq!(auth_at(app, &b, &key, &token, "").await.status(), 200, "cached on replica B");
    }
    app.graphql(&owner, SET, json!({ "k": key, "p": { "allowedIps": ["192.0.2.0/24"] } }))
        .await
        .data("setAppKeyPolicy");
    let changed = Instant::now();
    loop {
        let status = auth_at(app, &b, &key, &token, "").await.status();
        if status == 403 {
            break;
        }
        assert!(changed.elapsed() < Duration::from_secs(1), "replica B still admits after {:?}", changed.elapsed());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A `redis-server` of the test's own, on a free port, that the test may stop and start again.
struct Redis {
    port: u16,
    child: Option<ChildGuard>,
}

impl Redis {
    async fn start() -> Self {
        let mut redis = Self { port: free_port(), child: None };
        redis.restart().await;
        redis
    }

    async fn restart(&mut self) {
        let port = self.port.to_string();
        let mut command = std::process::Command::new("redis-server");
        command
            .args(["--port", &port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null());
        self.child = Some(ChildGuard::spawn(&mut command, "redis-server"));
        assert!(listening(self.port, Duration::from_secs(10)).await, "redis-server listens");
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill();
        }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

/// Sends `count` concurrent `/auth` requests alternately to each address; counts by status.
async fn burst(app: &TestApp, addresses: &[&str], key: &str, token: &str, count: usize) -> (usize, usize, usize) {
    let requests = (0..count).map(|i| {
        let address = addresses[i % addresses.len()].to_owned();
        async move { auth_at(app, &address, key, token, "").await.status().as_u16() }
    });
    let statuses = join_all(requests).await;
    let count = |wanted: fn(u16) -> bool| statuses.iter().filter(|s| wanted(**s)).count();
    (count(|s| s == 200), count(|s| s == 429), count(|s| s >= 500))
}

async fn redis_shares_one_budget_across_replicas_and_falls_back_when_it_stops(backend: Backend) {
    let mut redis = Redis::start().await;
    let url = redis.url();
    let app = TestApp::spawn_with(backend, |s| s.redis_url = Some(url.clone().into())).await;
    let (b, replica) = app.another_server_with(|s| s.redis_url = Some(url.clone().into())).await;
    tokio::spawn(replica.run_until_stopped(std::future::pending()));
    let owner = app.owner().await;
    let shared = json!({ "rateLimits": [{ "name": "shared", "limit": 50, "periodSeconds": 60 }] });
    let (key, token) = key_with(&app, &owner, shared.clone()).await;
    let (admitted, limited, failed) = burst(&app, &[&app.address, &b], &key, &token, 200).await;
    assert_eq!((admitted, limited, failed), (50, 150, 0), "one budget for both replicas");

    // Redis stops mid-run: no 5xx, each replica decides alone, and says so in /metrics.
    redis.stop();
    let (local_key, local_token) = key_with(&app, &owner, shared.clone()).await;
    let started = Instant::now();
    let (admitted, limited, failed) = burst(&app, &[&app.address, &b], &local_key, &local_token, 200).await;
    assert_eq!(failed, 0);
    assert_eq!(admitted + limited, 200);
    assert!(admitted <= 100, "{admitted}: at most 50 per replica");
    assert!(started.elapsed() < Duration::from_secs(5), "fell back promptly: {:?}", started.elapsed());
    let metrics = app.get("/metrics", &Auth::None).await.text().await.expect("text");
    assert!(metrics.contains("appkeys_rate_limit_redis_fallbacks_total"), "{metrics}");
    assert!(!app.state.auth.gate().sharing());

    // Redis back: shared again.
    redis.restart().await;
    let back = poll_until(Duration::from_secs(10), || std::future::ready(app.state.auth.gate().sharing())).await;
    assert!(back, "replica A shares again");
    // Replica B learns on its own (its /metrics says when); until then it decides alone.
    let b_back = poll_until(Duration::from_secs(10), || async {
        let metrics = app.get_at(&b, "/metrics", &Auth::None).await.text().await.unwrap_or_default();
        metrics.lines().any(|line| line == "appkeys_rate_limit_shared 1")
    })
    .await;
    assert!(b_back, "replica B shares again");
    let (key, token) = key_with(&app, &owner, shared).await;
    let (admitted, _, failed) = burst(&app, &[&app.address, &b], &key, &token, 200).await;
    assert_eq!((admitted, failed), (50, 0), "one budget again");
    app.cleanup().await;
}

/// Without Redis every replica keeps its own budget: two replicas admit up to twice a limit.
async fn without_redis_each_replica_keeps_its_own_budget(app: &TestApp) {
    let owner = app.owner().await;
    let (b, replica) = app.another_server().await;
    tokio::spawn(replica.run_until_stopped(std::future::pending()));
    let policy = json!({ "rateLimits": [{ "name": "local", "limit": 50, "periodSeconds": 60 }] });
    let (key, token) = key_with(app, &owner, policy).await;
    let (admitted, limited, failed) = burst(app, &[&app.address, &b], &key, &token, 200).await;
    assert_eq!(failed, 0);
    assert_eq!(admitted + limited, 200);
    assert_eq!(admitted, 100, "50 on each replica");
}

crate::backend_tests!(
    policies_are_set_read_replaced_and_audited,
    bad_policies_name_their_field_and_change_nothing,
    rate_limits_answer_429_with_headers_and_slide_with_time,
    credits_are_charged_exactly_announced_and_refused_when_spent,
    credits_are_exact_across_two_replicas,
    subscriptions_and_exports_meet_the_same_gate,
    credits_refill_on_the_last_day_of_february,
    a_policy_change_reaches_every_replica_within_a_second,
    without_redis_each_replica_keeps_its_own_budget,
);

mod cases {
    use super::*;
    crate::backend_cases!(
        the_allowlist_decides_by_the_client_address_on_every_route,
        redis_shares_one_budget_across_replicas_and_falls_back_when_it_stops,
    );
}
