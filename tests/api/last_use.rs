//! Last use (when, from where, with which client; per account; off the hot path), the `unusedSince`
//! filter, flushing on shutdown and after a crash, and the inactivity sweeper.
use crate::helpers::binary::{gql, owner_session, Server};
use crate::helpers::{Auth, Backend, TestApp, TestDatabase};
use appkeys::service::keys::{self, KeyUse};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const LAST_USE: &str = "query($k: String!) { appKey(key: $k) { lastUsedAt lastUsedIp lastUsedUserAgent status } }";

/// Sends `/auth` with this user agent (and extra headers).
async fn use_key(address: &str, key: &str, token: &str, user_agent: &str, extra: &[(&str, &str)]) -> u16 {
    let mut request = reqwest::Client::new()
        .get(format!("{address}/auth"))
        .header("x-api-appkey", key)
        .header("x-api-apptoken", token)
        .header("user-agent", user_agent);
    for (name, value) in extra {
        request = request.header(*name, *value);
    }
    request.send().await.expect("sent").status().as_u16()
}

/// Polls until the key's last use in the account of `auth` satisfies `done`, for at most 3 s.
async fn wait_for_last_use(app: &TestApp, auth: &Auth, key: &str, done: impl Fn(&Value) -> bool) -> Value {
    let started = Instant::now();
    loop {
        let view = app.graphql(auth, LAST_USE, json!({ "k": key })).await.data("appKey");
        if done(&view) {
            return view;
        }
        assert!(started.elapsed() < Duration::from_secs(3), "no last use within 3 s: {view}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn last_use_shows_up_within_the_flush_interval_per_account(backend: Backend) {
    let app = TestApp::spawn_with(backend, |s| s.last_used_flush_secs = 1).await;
    let owner = app.owner().await;
    let restricted = app.restricted_role(&owner).await;
    let (key, token) = app.generate_key(&owner, None, std::slice::from_ref(&restricted)).await;
    let fresh = app.graphql(&owner, LAST_USE, json!({ "k": key })).await.data("appKey");
    assert_eq!(fresh["lastUsedAt"], Value::Null, "never used yet");

    assert_eq!(use_key(&app.address, &key, &token, "probe/1.0", &[]).await, 200);
    let seen = wait_for_last_use(&app, &owner, &key, |v| v["lastUsedUserAgent"] == "probe/1.0").await;
    assert_eq!(seen["lastUsedIp"], "127.0.0.1");
    assert!(seen["lastUsedAt"].is_string());

    // GraphQL counts too, and the newest use wins.
    let request = app
        .client
        .post(format!("{}/graphql", app.address))
        .header("user-agent", "graphql-client/2.0")
        .json(&json!({ "query": "{ viewer { appKey } }" }));
    Auth::key(&key, &token).apply(request).send().await.expect("sent");
    wait_for_last_use(&app, &owner, &key, |v| v["lastUsedUserAgent"] == "graphql-client/2.0").await;

    // Last use is per account: a use in the partner account shows there, not here.
    let partner = app.account_with_owner("partner").await;
    let partner_role = app.restricted_role(&partner).await;
    let add = "mutation($k: String!, $r: [ID!]!) { addExternalAppKey(input: {key: $k, roleIds: $r}) { key } }";
    app.graphql(&partner, add, json!({ "k": key, "r": [partner_role] })).await.data("addExternalAppKey");
    assert_eq!(use_key(&app.address, &key, &token, "partner-run/1.0", &[("x-account", "partner")]).await, 200);
    wait_for_last_use(&app, &partner, &key, |v| v["lastUsedUserAgent"] == "partner-run/1.0").await;
    let here = app.graphql(&owner, LAST_USE, json!({ "k": key })).await.data("appKey");
    assert_eq!(here["lastUsedUserAgent"], "graphql-client/2.0");
    // A failed authentication is not a use.
    assert_eq!(
        use_key(&app.address, &key, "akt_wrongwrongwrongwrongwrongwrongwrongwrong000000", "bad/1.0", &[]).await,
        401
    );
    // Whatever the request noted is written now (the flusher's own work, without waiting for it).
    app.state.auth.last_use().flush(app.store()).await.expect("the noted uses are written");
    let here = app.graphql(&owner, LAST_USE, json!({ "k": key })).await.data("appKey");
    assert_eq!(here["lastUsedUserAgent"], "graphql-client/2.0");
    app.cleanup().await;
}

async fn behind_a_trusted_gateway_the_forwarded_client_is_recorded(backend: Backend) {
    let app = TestApp::spawn_with(backend, |s| {
        s.last_used_flush_secs = 1;
        s.trusted_proxies = vec!["127.0.0.1/32".parse().expect("a range")];
    })
    .await;
    let owner = app.owner().await;
    let restricted = app.restricted_role(&owner).await;
    let (key, token) = app.generate_key(&owner, None, &[restricted]).await;
    let forwarded = [("x-forwarded-for", "198.51.100.23, 127.0.0.1")];
    assert_eq!(use_key(&app.address, &key, &token, "behind-nginx/1.0", &forwarded).await, 200);
    let seen = wait_for_last_use(&app, &owner, &key, |v| v["lastUsedUserAgent"] == "behind-nginx/1.0").await;
    assert_eq!(seen["lastUsedIp"], "198.51.100.23");
    app.cleanup().await;

    // Without trusting the peer, the header is ignored.
    let app = TestApp::spawn_with(backend, |s| s.last_used_flush_secs = 1).await;
    let owner = app.owner().await;
    let restricted = app.restricted_role(&owner).await;
    let (key, token) = app.generate_key(&owner, None, &[restricted]).await;
    assert_eq!(use_key(&app.address, &key, &token, "spoofer/1.0", &forwarded).await, 200);
    let seen = wait_for_last_use(&app, &owner, &key, |v| v["lastUsedUserAgent"] == "spoofer/1.0").await;
    assert_eq!(seen["lastUsedIp"], "127.0.0.1");
    app.cleanup().await;
}

/// Two replicas flushing in any order: the newest use stays.
async fn the_newest_use_wins_whoever_writes_last(app: &TestApp) {
    let owner = app.owner().await;
    let restricted = app.restricted_role(&owner).await;
    let (key, _) = app.generate_key(&owner, None, &[restricted]).await;
    let sql = format!("SELECT a.id FROM key_access a JOIN app_keys k ON k.id = a.app_key_id WHERE k.key = '{key}'");
    let access_id: String = app.scalar(sql).await;
    let now = app.store().now();
    let use_at = |at, agent: &str| KeyUse {
        access_id: access_id.clone(),
        at,
        ip: Some("10.0.0.1".into()),
        user_agent: Some(agent.into()),
    };
    keys::record_uses(app.store(), &[use_at(now, "newer/1.0")]).await.expect("written");
    keys::record_uses(app.store(), &[use_at(now - chrono::Duration::seconds(30), "older/1.0")]).await.expect("written");
    let seen = app.graphql(&owner, LAST_USE, json!({ "k": key })).await.data("appKey");
    assert_eq!(seen["lastUsedUserAgent"], "newer/1.0");
}

async fn unused_since_finds_keys_not_used_lately(backend: Backend) {
    let app = TestApp::spawn_with(backend, |s| s.last_used_flush_secs = 1).await;
    let owner = app.owner().await;
    let restricted = app.restricted_role(&owner).await;
    let (used, token) = app.generate_key(&owner, Some("used"), std::slice::from_ref(&restricted)).await;
    let (idle, _) = app.generate_key(&owner, Some("idle"), std::slice::from_ref(&restricted)).await;
    app.advance_clock(chrono::Duration::days(10));
    let since = app.store().now() - chrono::Duration::days(1);
    assert_eq!(use_key(&app.address, &used, &token, "cron/1.0", &[]).await, 200);
    let owner = app.owner().await;
    wait_for_last_use(&app, &owner, &used, |v| v["lastUsedUserAgent"] == "cron/1.0").await;
    let query = "query($s: DateTime) { myKeys(filter: {unusedSince: $s}) { edges { node { key } } } \
                 appKeys(filter: {unusedSince: $s}) { edges { node { key } } } }";
    let lists = app.graphql(&owner, query, json!({ "s": since })).await;
    for list in ["myKeys", "appKeys"] {
        let keys: Vec<&str> = lists.0["data"][list]["edges"]
            .as_array()
            .expect("edges")
            .iter()
            .filter_map(|e| e["node"]["key"].as_str())
            .collect();
        assert_eq!(keys, [idle.as_str()], "{list}");
    }
    // A key created after the date has not had the time to be used: not listed.
    let (_newer, _) = app.generate_key(&owner, None, &[restricted]).await;
    let lists = app.graphql(&owner, query, json!({ "s": since })).await;
    assert_eq!(lists.0["data"]["myKeys"]["edges"].as_array().map(Vec::len), Some(1));
    app.cleanup().await;
}

/// A graceful stop (SIGTERM) writes the uses noted since the last flush; a SIGKILL between flushes
/// loses at most the uses of that one interval, and nothing else.
async fn uses_survive_a_graceful_stop_and_a_crash_loses_at_most_one_interval(backend: Backend) {
    let database = TestDatabase::create(backend).await;
    let client = reqwest::Client::new();
    let hour = [("APPKEYS_LAST_USED_FLUSH_SECS", "3600")];
    let server = Server::start(&database.url, &hour).await;
    let owner = owner_session(&client, &server.address).await;
    let roles = gql(&client, &server.address, &owner, "{ roles { id } }", json!({})).await.expect("roles");
    let role = roles["data"]["roles"][1]["id"].as_str().expect("a role").to_owned();
    let generate = "mutation($r: [ID!]!) { generateAppKey(input: {roleIds: $r}) { appKey { key } appToken } }";
    let made = gql(&client, &server.address, &owner, generate, json!({ "r": [role] })).await.expect("generated");
    let key = made["data"]["generateAppKey"]["appKey"]["key"].as_str().expect("key").to_owned();
    let token = made["data"]["generateAppKey"]["appToken"].as_str().expect("token").to_owned();
    assert_eq!(use_key(&server.address, &key, &token, "before-sigterm/1.0", &[]).await, 200);
    server.terminate().await;

    let second = [("APPKEYS_LAST_USED_FLUSH_SECS", "1")];
    let server = Server::start(&database.url, &second).await;
    let owner = owner_session(&client, &server.address).await;
    let view = gql(&client, &server.address, &owner, LAST_USE, json!({ "k": key })).await.expect("view");
    assert_eq!(view["data"]["appKey"]["lastUsedUserAgent"], "before-sigterm/1.0", "flushed on SIGTERM: {view}");

    // A use that had its flush, then one that is killed before its own.
    assert_eq!(use_key(&server.address, &key, &token, "flushed/1.0", &[]).await, 200);
    let started = Instant::now();
    loop {
        let view = gql(&client, &server.address, &owner, LAST_USE, json!({ "k": key })).await.expect("view");
        if view["data"]["appKey"]["lastUsedUserAgent"] == "flushed/1.0" {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(3), "not flushed within 3 s: {view}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let flushed_at = gql(&client, &server.address, &owner, LAST_USE, json!({ "k": key })).await.expect("view")["data"]
        ["appKey"]["lastUsedAt"]
        .clone();
    assert_eq!(use_key(&server.address, &key, &token, "maybe-lost/1.0", &[]).await, 200);
    drop(server); // SIGKILL, most likely before the next flush

    let server = Server::start(&database.url, &second).await;
    let owner = owner_session(&client, &server.address).await;
    let view = gql(&client, &server.address, &owner, LAST_USE, json!({ "k": key })).await.expect("view");
    let agent = view["data"]["appKey"]["lastUsedUserAgent"].as_str().expect("a last use");
    assert!(agent == "flushed/1.0" || agent == "maybe-lost/1.0", "older than the last flush: {view}");
    let at: chrono::DateTime<chrono::Utc> =
        view["data"]["appKey"]["lastUsedAt"].as_str().expect("at").parse().expect("time");
    let flushed: chrono::DateTime<chrono::Utc> = flushed_at.as_str().expect("at").parse().expect("time");
    assert!(at >= flushed);
    // Nothing else is lost: the key, its status and its access are whole.
    assert_eq!(view["data"]["appKey"]["status"], "ACTIVE");
    assert_eq!(use_key(&server.address, &key, &token, "after/1.0", &[]).await, 200);
    drop(server);
}

async fn the_sweeper_deactivates_keys_unused_for_longer_than_allowed(backend: Backend) {
    let app = TestApp::spawn_with(backend, |s| s.last_used_flush_secs = 3600).await;
    let owner = app.owner().await;
    let restricted = app.restricted_role(&owner).await;
    let (never_used, _) = app.generate_key(&owner, Some("never used"), std::slice::from_ref(&restricted)).await;
    let (busy, busy_token) = app.generate_key(&owner, Some("busy"), std::slice::from_ref(&restricted)).await;
    let (stale, stale_token) = app.generate_key(&owner, Some("stale"), std::slice::from_ref(&restricted)).await;
    let partner = app.account_with_owner("partner").await;
    let partner_role = app.restricted_role(&partner).await;
    let (partner_key, _) = app.generate_key(&partner, None, &[partner_role]).await;
    let sweep = || appkeys::jobs::sweep(app.store(), app.state.auth.last_use());

    // Off by default.
    assert_eq!(use_key(&app.address, &stale, &stale_token, "once/1.0", &[]).await, 200);
    app.advance_clock(chrono::Duration::days(400));
    assert_eq!(sweep().await.expect("swept"), 0);

    let owner = app.owner().await;
    let settings =
        "mutation { updateAppKeySettings(input: {deactivateUnusedAfterDays: 30}) { deactivateUnusedAfterDays } }";
    app.graphql(&owner, settings, json!({})).await.data("updateAppKeySettings");
    // Used just now on this replica and not flushed yet: the sweeper writes it first.
    assert_eq!(use_key(&app.address, &busy, &busy_token, "busy/1.0", &[]).await, 200);
    assert_eq!(sweep().await.expect("swept"), 2, "never used and stale, not busy");
    let status = |key: String| {
        let owner = owner.clone();
        let app = &app;
        async move { app.graphql(&owner, LAST_USE, json!({ "k": key })).await.data("appKey.status") }
    };
    assert_eq!(status(never_used.clone()).await, "INACTIVE");
    assert_eq!(status(stale.clone()).await, "INACTIVE");
    assert_eq!(status(busy.clone()).await, "ACTIVE");
    let reason = "query($k: String!) { appKey(key: $k) { deactivationReason } }";
    let stale_reason = app.graphql(&owner, reason, json!({ "k": stale })).await.data("appKey.deactivationReason");
    assert_eq!(stale_reason, "INACTIVITY");
    let busy_reason = app.graphql(&owner, reason, json!({ "k": busy })).await.data("appKey.deactivationReason");
    assert_eq!(busy_reason, Value::Null);
    assert_eq!(use_key(&app.address, &stale, &stale_token, "again/1.0", &[]).await, 401, "deactivated at once");
    assert_eq!(sweep().await.expect("swept"), 0, "nothing left to do");
    let query = "{ auditEvents(filter: {action: \"key.auto_deactivate\"}) { edges { node { actor target } } } }";
    let events = app.graphql(&owner, query, json!({})).await.data("auditEvents.edges");
    let mut targets: Vec<&str> =
        events.as_array().expect("events").iter().filter_map(|e| e["node"]["target"].as_str()).collect();
    targets.sort_unstable();
    let mut expected = [never_used.as_str(), stale.as_str()];
    expected.sort_unstable();
    assert_eq!(targets, expected);
    assert!(events.as_array().expect("events").iter().all(|e| e["node"]["actor"] == "system"));
    // Another account, without the setting, is untouched.
    let partner = app.graphql(&partner_with_fresh_session(&app).await, LAST_USE, json!({ "k": partner_key })).await;
    assert_eq!(partner.data("appKey.status"), "ACTIVE");
    app.cleanup().await;
}

async fn partner_with_fresh_session(app: &TestApp) -> Auth {
    Auth::Bearer(app.login_token("partner", "owner@partner.example.com", crate::helpers::OWNER_PASSWORD).await)
}

/// Two replicas sweeping at once deactivate each key once: one audit event each. (Replicas share a
/// PostgreSQL database; SQLite has one process.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(appkeys_postgres_tests), ignore = "needs APPKEYS_TEST_POSTGRES_URL at build time")]
async fn postgres_replicas_sweeping_together_deactivate_each_key_once() {
    let app = TestApp::spawn(Backend::Postgres).await;
    let app = &app;
    let owner = app.owner().await;
    let restricted = app.restricted_role(&owner).await;
    for _ in 0..5 {
        app.generate_key(&owner, None, std::slice::from_ref(&restricted)).await;
    }
    let settings =
        "mutation { updateAppKeySettings(input: {deactivateUnusedAfterDays: 1}) { deactivateUnusedAfterDays } }";
    app.graphql(&owner, settings, json!({})).await.data("updateAppKeySettings");
    let (_, replica) = app.another_server().await;
    let other = replica.state().clone();
    let later = app.store().now() + chrono::Duration::days(2);
    let (a, b) =
        tokio::join!(keys::deactivate_unused(app.store(), later), keys::deactivate_unused(&other.store, later));
    assert_eq!(a.expect("first") + b.expect("second"), 5);
    let query = "{ auditEvents(filter: {action: \"key.auto_deactivate\"}) { totalCount } }";
    assert_eq!(app.graphql(&owner, query, json!({})).await.data("auditEvents.totalCount"), 5);
}

mod cases {
    use super::*;
    crate::backend_cases!(
        last_use_shows_up_within_the_flush_interval_per_account,
        behind_a_trusted_gateway_the_forwarded_client_is_recorded,
        unused_since_finds_keys_not_used_lately,
        uses_survive_a_graceful_stop_and_a_crash_loses_at_most_one_interval,
        the_sweeper_deactivates_keys_unused_for_longer_than_allowed,
    );
}

crate::backend_tests!(the_newest_use_wins_whoever_writes_last);
