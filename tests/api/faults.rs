//! Faults on PostgreSQL: the server's connections killed mid-load, a statement past its limit, the
//! database cut at the TCP level. Every answer is then a success or `UNAVAILABLE` (HTTP 503 with
//! `Retry-After`), never a 500; nothing half-written stays; the server heals by itself, revocation
//! reaches another replica within a second again, and a stop stays within its grace period.
use crate::helpers::binary::{generate_key, owner_session, restricted_role, Server};
use crate::helpers::process::poll_until;
use crate::helpers::{Auth, Backend, TestApp, TestDatabase};
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};

const MY_KEYS: &str = "{ myKeys(first: 5) { totalCount } }";

/// What one request got: its HTTP status, its body, and whether it carried `Retry-After`.
#[derive(Debug)]
struct Answer {
    status: u16,
    body: Value,
    retry_after: bool,
}

async fn answer(response: reqwest::Response) -> Answer {
    let status = response.status().as_u16();
    let retry_after = response.headers().contains_key("retry-after");
    let body = response.json().await.unwrap_or(Value::Null);
    Answer { status, body, retry_after }
}

/// Every answer a success or `UNAVAILABLE` with `Retry-After`; an internal error in no body.
fn assert_never_internal(answers: &[Answer]) {
    for answer in answers {
        let text = answer.body.to_string();
        assert!(!text.contains("INTERNAL_SERVER_ERROR"), "an internal error: {answer:?}");
        match answer.status {
            200 => {}
            401 if answer.body.is_null() || text.contains("UNAUTHENTICATED") => {}
            503 => {
                assert!(text.contains("UNAVAILABLE"), "a 503 says UNAVAILABLE: {answer:?}");
                assert!(answer.retry_after, "a 503 carries Retry-After: {answer:?}");
            }
            _ => panic!("neither a success nor UNAVAILABLE: {answer:?}"),
        }
    }
}

/// The server's PostgreSQL connections are killed three times under load (reads and key
/// generation): no request is answered 500, every key is whole or absent and every acknowledged one
/// is there, the server heals without a restart, and a key deactivated while a replica's change
/// feed was dead is refused by that replica within a second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(appkeys_postgres_tests), ignore = "needs APPKEYS_TEST_POSTGRES_URL at build time")]
async fn killed_connections_are_unavailable_never_500_and_the_server_heals() {
    let app = TestApp::spawn_with(Backend::Postgres, |s| s.failures_per_minute = 100_000).await;
    let owner = app.owner().await;
    let restricted = app.restricted_role(&owner).await;
    let (key, token) = app.generate_key(&owner, None, std::slice::from_ref(&restricted)).await;
    let as_key = Auth::key(&key, &token);
    let (replica, replica_app) = app.another_server().await;
    let replica_feed = replica_app.state().store.part::<appkeys::service::events::follow::Feed>();
    tokio::spawn(async move {
        let _ = replica_app.run_until_stopped(std::future::pending()).await;
    });
    let listening = poll_until(Duration::from_secs(10), || std::future::ready(replica_feed.is_listening())).await;
    assert!(listening, "the replica's change feed listens");

    // Load: listings (always read the database) and `/auth` (mostly cached), on both servers.
    let client = reqwest::Client::new();
    let answers = Arc::new(Mutex::new(Vec::new()));
    let until = Instant::now() + Duration::from_millis(2_500);
    let load: Vec<_> = (0..4)
        .map(|task| {
            let (client, answers, owner, as_key) = (client.clone(), answers.clone(), owner.clone(), as_key.clone());
            let address = if task % 2 == 0 { app.address.clone() } else { replica.clone() };
            tokio::spawn(async move {
                while Instant::now() < until {
                    let listing = owner
                        .apply(client.post(format!("{address}/graphql")))
                        .json(&json!({ "query": MY_KEYS }))
                        .send()
                        .await
                        .expect("sent");
                    let listed = answer(listing).await;
                    let checked =
                        answer(as_key.apply(client.get(format!("{address}/auth"))).send().await.expect("sent"));
                    let checked = checked.await;
                    answers.lock().expect("answers").extend([listed, checked]);
                }
            })
        })
        .collect();
    // And mutations: each key generated whole (its access, its roles, its audit event) or not at all,
    // and every one answered with success is there.
    let generated = Arc::new(Mutex::new(Vec::new()));
    let writer = {
        let (client, answers, owner, generated) = (client.clone(), answers.clone(), owner.clone(), generated.clone());
        let (address, role) = (app.address.clone(), restricted.clone());
        tokio::spawn(async move {
            let generate = "mutation($r: [ID!]!) { generateAppKey(input: {roleIds: $r}) { appKey { key } } }";
            while Instant::now() < until {
                let request = owner
                    .apply(client.post(format!("{address}/graphql")))
                    .json(&json!({ "query": generate, "variables": { "r": [role] } }));
                let made = answer(request.send().await.expect("sent")).await;
                if let Some(key) = made.body["data"]["generateAppKey"]["appKey"]["key"].as_str() {
                    generated.lock().expect("generated").push(key.to_owned());
                }
                answers.lock().expect("answers").push(made);
            }
        })
    };
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert!(app.terminate_backends().await >= 1, "the servers' connections were ended");
    }
    for task in load {
        task.await.expect("the load ran");
    }
    writer.await.expect("the writer ran");
    let generated = std::mem::take(&mut *generated.lock().expect("generated"));
    assert!(!generated.is_empty(), "keys were generated during the kills");
    let whole = "SELECT count(*) FROM app_keys k WHERE EXISTS (SELECT 1 FROM key_access a \
                 JOIN key_access_roles r ON r.key_access_id = a.id WHERE a.app_key_id = k.id) \
                 AND EXISTS (SELECT 1 FROM audit_events e WHERE e.action = 'key.generate' AND e.target = k.key)";
    let (all, whole): (i64, i64) = (app.scalar("SELECT count(*) FROM app_keys").await, app.scalar(whole).await);
    assert_eq!(all, whole, "every key is whole: its access, its roles and its audit event");
    for key in &generated {
        let there: i64 = app.scalar(format!("SELECT count(*) FROM app_keys WHERE key = '{key}'")).await;
        assert_eq!(there, 1, "{key} was acknowledged and is gone");
    }
    let answers = std::mem::take(&mut *answers.lock().expect("answers"));
    assert!(answers.len() >= 8, "the load ran: {} answers", answers.len());
    let unavailable = answers.iter().filter(|a| a.status == 503).count();
    eprintln!("{} answers during the kills, {unavailable} of them UNAVAILABLE", answers.len());
    assert_never_internal(&answers);

    // Healed by itself: the listing answers again.
    let healed = poll_until(Duration::from_secs(5), || {
        let request = owner.apply(client.post(format!("{}/graphql", app.address))).json(&json!({ "query": MY_KEYS }));
        async move { request.send().await.is_ok_and(|r| r.status().is_success()) }
    })
    .await;
    assert!(healed, "the server answers again without a restart");

    // The replica has the key cached; its feed's connection is killed; the key is deactivated on the
    // first server meanwhile; the replica refuses it within a second.
    for _ in 0..3 {
        assert_eq!(app.get_at(&replica, "/auth", &as_key).await.status(), 200);
    }
    app.terminate_backends().await;
    let deactivate = "mutation($k: String!) { deactivateAppKey(key: $k) { status } }";
    let deactivated = loop {
        let request = owner
            .apply(client.post(format!("{}/graphql", app.address)))
            .json(&json!({ "query": deactivate, "variables": { "k": key } }));
        let done = answer(request.send().await.expect("sent")).await;
        assert_never_internal(std::slice::from_ref(&done));
        if done.body["data"]["deactivateAppKey"]["status"] == "INACTIVE" {
            break Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    loop {
        let refused = answer(app.get_at(&replica, "/auth", &as_key).await).await;
        assert_never_internal(std::slice::from_ref(&refused));
        if refused.status == 401 {
            break;
        }
        assert!(deactivated.elapsed() <= Duration::from_secs(1), "the replica still admitted the key: {refused:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    app.cleanup().await;
}

/// A statement that waits past `--db-statement-timeout-ms` (here behind a row lock the test holds)
/// is cancelled: the mutation is answered `UNAVAILABLE` and leaves the database as it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(appkeys_postgres_tests), ignore = "needs APPKEYS_TEST_POSTGRES_URL at build time")]
async fn a_statement_past_its_limit_is_unavailable_and_writes_nothing() {
    use sea_orm::{ConnectionTrait, TransactionTrait};
    let app = TestApp::spawn_with(Backend::Postgres, |s| s.db_statement_timeout_ms = 300).await;
    let owner = app.owner().await;
    let restricted = app.restricted_role(&owner).await;
    let before = app.snapshot().await;
    let holder = app.db().begin().await.expect("a transaction");
    let lock = "SELECT id FROM accounts WHERE name = 'main' FOR UPDATE";
    holder.execute_unprepared(lock).await.expect("the account row locked");
    let generate = "mutation($r: [ID!]!) { generateAppKey(input: {roleIds: $r}) { appKey { key } } }";
    let started = Instant::now();
    let request = owner
        .apply(reqwest::Client::new().post(format!("{}/graphql", app.address)))
        .json(&json!({ "query": generate, "variables": { "r": [restricted] } }));
    let refused = answer(request.send().await.expect("sent")).await;
    let waited = started.elapsed();
    assert_eq!(refused.status, 503, "{refused:?}");
    assert!(refused.retry_after, "{refused:?}");
    assert_eq!(refused.body["errors"][0]["extensions"]["code"], "UNAVAILABLE", "{refused:?}");
    assert!(waited < Duration::from_secs(3), "cancelled at its limit, not later: {waited:?}");
    holder.rollback().await.expect("released");
    assert_eq!(app.snapshot().await, before, "nothing half-written");
    let made = app.graphql(&owner, generate, json!({ "r": [restricted] })).await;
    assert!(made.data("generateAppKey.appKey.key").is_string());
    app.cleanup().await;
}

/// A TCP relay between the server and PostgreSQL, which the test can cut: every connection through
/// it closed, and no new one accepted.
struct Relay {
    port: u16,
    cut: tokio::sync::watch::Sender<bool>,
}

impl Relay {
    async fn start(target: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("a relay port");
        let port = listener.local_addr().expect("an address").port();
        let (cut, mut cut_seen) = tokio::sync::watch::channel(false);
        let connections = cut_seen.clone();
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    accepted = listener.accept() => accepted,
                    _ = cut_seen.changed() => return, // the listener goes: new connections are refused
                };
                let Ok((mut inbound, _)) = accepted else { continue };
                let (target, mut cut_seen) = (target.clone(), connections.clone());
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(&target).await else { return };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = cut_seen.changed() => {} // both streams dropped: closed on both sides
                    }
                });
            }
        });
        Self { port, cut }
    }

    fn cut(&self) {
        self.cut.send_replace(true);
    }
}

/// The database cut at the TCP level: within the acquire timeout every route that needs it answers
/// 503 (`/healthz` stays 200, `/readyz` turns 503 within a second), a key never cached is refused,
/// and SIGTERM stops the server within its grace period.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(appkeys_postgres_tests), ignore = "needs APPKEYS_TEST_POSTGRES_URL at build time")]
async fn a_cut_database_is_unavailable_fails_closed_and_the_stop_is_bounded() {
    let database = TestDatabase::create(Backend::Postgres).await;
    let mut url = reqwest::Url::parse(&database.url).expect("a URL");
    let target = format!("{}:{}", url.host_str().expect("a host"), url.port().unwrap_or(5432));
    let relay = Relay::start(target).await;
    url.set_port(Some(relay.port)).expect("a port");
    let env = [("APPKEYS_DB_ACQUIRE_TIMEOUT_MS", "500"), ("APPKEYS_SHUTDOWN_GRACE_SECS", "2")];
    let mut server = Server::start(url.as_str(), &env).await;
    let client = reqwest::Client::new();
    let owner = owner_session(&client, &server.address).await;
    let role = restricted_role(&client, &server.address, &owner).await;
    let mut keys = Vec::new();
    for _ in 0..2 {
        let (key, token) = generate_key(&client, &server.address, &owner, &role).await;
        keys.push(Auth::key(&key, &token));
    }
    let (cached, never_cached) = (&keys[0], &keys[1]);
    let get = |path: &str, auth: &Auth| auth.apply(client.get(format!("{}{path}", server.address))).send();
    assert_eq!(get("/auth", cached).await.expect("sent").status(), 200);

    relay.cut();
    let cut_at = Instant::now();
    let ready = poll_until(Duration::from_secs(3), || {
        let request = get("/readyz", &Auth::None);
        async move { request.await.is_ok_and(|r| r.status() == 503) }
    })
    .await;
    assert!(ready, "/readyz turns 503");
    assert!(cut_at.elapsed() < Duration::from_millis(1_800), "/readyz turned 503 after {:?}", cut_at.elapsed());
    assert_eq!(get("/healthz", &Auth::None).await.expect("sent").status(), 200);

    let within = Duration::from_millis(500 + 1_000); // the acquire timeout, and a margin for a busy machine
    let listing = owner.apply(client.post(format!("{}/graphql", server.address))).json(&json!({ "query": MY_KEYS }));
    let checks: Vec<(&str, reqwest::RequestBuilder)> = vec![
        ("a listing", listing),
        ("a key never cached", never_cached.apply(client.get(format!("{}/auth", server.address)))),
        ("the export", owner.apply(client.get(format!("{}/export/app-keys.csv", server.address)))),
    ];
    for (what, request) in checks {
        let started = Instant::now();
        let answered = answer(request.send().await.expect("sent")).await;
        let took = started.elapsed();
        assert_eq!(answered.status, 503, "{what}: {answered:?}");
        assert_never_internal(std::slice::from_ref(&answered));
        assert!(took < within, "{what} answered after {took:?}");
    }
    // The cache stops vouching for the cached key too, once the change feed is known lost.
    let refused = poll_until(Duration::from_secs(3), || {
        let request = get("/auth", cached);
        async move { request.await.is_ok_and(|r| r.status() == 503) }
    })
    .await;
    assert!(refused, "a cached key is not admitted while the database is away");

    let asked = Instant::now();
    assert!(server.terminate_within(Duration::from_secs(4)).await, "SIGTERM stopped the server within its grace");
    assert!(asked.elapsed() < Duration::from_secs(4), "stopped after {:?}", asked.elapsed());
}
