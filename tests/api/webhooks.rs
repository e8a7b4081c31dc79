//! Webhooks: endpoints with a secret shown once, deliveries signed per the Standard Webhooks spec,
//! retried with backoff (a moved clock, never a sleep), given up after 24 hours, isolated per
//! account, durable across a restart, each sent by one replica.
use serde_json::{json, Value};
use std::time::{Duration, Instant};

use crate::helpers::receiver::Receiver;
use crate::helpers::{Auth, Backend, TestApp};

const CREATE: &str = "mutation($input: CreateWebhookEndpointInput!) {
    createWebhookEndpoint(input: $input) { endpoint { id url events } secret } }";
const DEACTIVATE: &str = "mutation($k: String!) { deactivateAppKey(key: $k) { status } }";
const DELIVERIES: &str = "query($f: WebhookDeliveryFilter) { webhookDeliveries(first: 50, filter: $f) {
    totalCount nodes { eventId eventType key status attempts lastStatusCode lastError nextAttemptAt deliveredAt } } }";

async fn spawn(backend: Backend) -> (TestApp, Auth) {
    TestApp::spawn_with(backend, |s| s.webhook_allow_private = true).await.with_owner().await
}

/// Creates an endpoint; returns (id, secret).
async fn endpoint(app: &TestApp, auth: &Auth, url: &str, events: Option<&[&str]>) -> (String, String) {
    let created = app.graphql(auth, CREATE, json!({ "input": { "url": url, "events": events } })).await;
    let id = created.data("createWebhookEndpoint.endpoint.id").as_str().expect("id").to_owned();
    let secret = created.data("createWebhookEndpoint.secret").as_str().expect("secret").to_owned();
    (id, secret)
}

async fn deliveries(app: &TestApp, auth: &Auth) -> Vec<Value> {
    let listed = app.graphql(auth, DELIVERIES, json!({})).await.data("webhookDeliveries.nodes");
    listed.as_array().expect("deliveries").clone()
}

/// Polls the deliveries until one matches (the outcome of an attempt is written just after the
/// receiver answered).
async fn delivery_where(app: &TestApp, auth: &Auth, what: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let listed = deliveries(app, auth).await;
        if let Some(found) = listed.iter().find(|d| what(d)) {
            return found.clone();
        }
        assert!(Instant::now() < deadline, "no such delivery: {listed:?}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn deactivated_key(app: &TestApp, owner: &Auth) -> String {
    let role = app.restricted_role(owner).await;
    let (key, _) = app.generate_key(owner, Some("hooked"), &[role]).await;
    app.graphql(owner, DEACTIVATE, json!({ "k": key })).await.data("deactivateAppKey");
    key
}

async fn a_deactivation_reaches_the_receiver_signed_within_two_seconds(backend: Backend) {
    let (app, owner) = spawn(backend).await;
    let receiver = Receiver::start(0).await;
    let (_, secret) = endpoint(&app, &owner, &receiver.url, Some(&["app_key.deactivated"])).await;
    assert!(secret.starts_with("whsec_"));
    let role = app.restricted_role(&owner).await;
    let (key, _) = app.generate_key(&owner, Some("hooked"), &[role]).await;
    let started = Instant::now();
    app.graphql(&owner, DEACTIVATE, json!({ "k": key })).await.data("deactivateAppKey");
    let received = receiver.wait_for(1, Duration::from_secs(2)).await;
    assert!(started.elapsed() < Duration::from_secs(2));
    let delivery = &received[0];
    assert!(delivery.signed_with(&secret), "the signature verifies: {delivery:?}");
    assert!(!delivery.signed_with("whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="), "and only with its secret");
    let body = delivery.json();
    assert_eq!(body["type"], "app_key.deactivated", "only the type asked for: {body}");
    assert_eq!(body["data"]["key"], key.as_str());
    assert_eq!(body["data"]["account"], "main");
    assert_eq!(body["data"]["actor"], "user:owner@example.com");
    assert_eq!(body["data"]["after"]["status"], "INACTIVE");
    assert_eq!(body["data"]["id"], delivery.id.as_str(), "webhook-id is the event id");
    let age = chrono::Utc::now().timestamp() - delivery.timestamp.parse::<i64>().expect("a unix timestamp");
    assert!(age.abs() < 60, "a current timestamp");
    // The delivery is recorded as such (its outcome is written just after the receiver answered);
    // the key's generation was not sent (not asked for).
    delivery_where(&app, &owner, |d| d["status"] == "DELIVERED").await;
    let listed = deliveries(&app, &owner).await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["status"], "DELIVERED");
    assert_eq!(listed[0]["attempts"], 1);
    assert_eq!(listed[0]["lastStatusCode"], 204);
    assert_eq!(listed[0]["nextAttemptAt"], Value::Null);
    assert!(listed[0]["deliveredAt"].is_string());
    app.cleanup().await;
}

async fn a_refused_delivery_is_retried_after_its_backoff(backend: Backend) {
    let (app, owner) = spawn(backend).await;
    let receiver = Receiver::start(1).await;
    endpoint(&app, &owner, &receiver.url, None).await;
    let key = deactivated_key(&app, &owner).await;
    // generated and deactivated: two events; the first attempt of the first one gets the 500.
    let first = receiver.wait_for(2, Duration::from_secs(2)).await;
    let failed = delivery_where(&app, &owner, |d| d["lastStatusCode"] == 500).await;
    assert_eq!(failed["status"], "PENDING");
    assert_eq!(failed["attempts"], 1);
    assert_eq!(failed["lastStatusCode"], 500);
    assert!(failed["lastError"].as_str().expect("an error").contains("500"));
    assert!(failed["nextAttemptAt"].is_string());
    // Nothing more happens before the backoff (5 s) has passed...
    app.deliverer_caught_up().await;
    assert_eq!(receiver.received().len(), 2);
    // ...and once it has, the same event comes again, with the same id.
    app.advance_clock(chrono::Duration::seconds(6));
    let all = receiver.wait_for(3, Duration::from_secs(3)).await;
    let again = &all[2];
    assert_eq!(again.id, first[0].id, "the refused event is sent again");
    // The retry's outcome is written just after the receiver answered it.
    delivery_where(&app, &owner, |d| d["eventId"] == again.id.as_str() && d["status"] == "DELIVERED").await;
    let listed = deliveries(&app, &owner).await;
    assert!(listed.iter().all(|d| d["status"] == "DELIVERED"), "{listed:?}");
    let retried = listed.iter().find(|d| d["eventId"] == again.id.as_str()).expect("the retried delivery");
    assert_eq!(retried["attempts"], 2);
    assert!(listed.iter().any(|d| d["eventType"] == "app_key.deactivated" && d["key"] == key.as_str()));
    app.cleanup().await;
}

async fn deliveries_fail_for_good_after_twenty_four_hours(backend: Backend) {
    let (app, owner) = spawn(backend).await;
    let receiver = Receiver::start(usize::MAX).await;
    endpoint(&app, &owner, &receiver.url, Some(&["app_key.deactivated"])).await;
    deactivated_key(&app, &owner).await;
    receiver.wait_for(1, Duration::from_secs(2)).await;
    delivery_where(&app, &owner, |d| d["lastStatusCode"] == 500 && d["status"] == "PENDING").await;
    app.advance_clock(chrono::Duration::hours(25));
    receiver.wait_for(2, Duration::from_secs(3)).await;
    let owner = app.owner().await; // a day later: the session has expired
    let failed = delivery_where(&app, &owner, |d| d["status"] == "FAILED").await;
    assert_eq!(failed["attempts"], 2);
    assert_eq!(failed["nextAttemptAt"], Value::Null);
    let failed = app.graphql(&owner, DELIVERIES, json!({ "f": { "status": "FAILED" } })).await;
    assert_eq!(failed.data("webhookDeliveries.totalCount"), 1);
    // Another day later nothing is attempted any more.
    app.advance_clock(chrono::Duration::hours(25));
    app.deliverer_caught_up().await;
    assert_eq!(receiver.received().len(), 2);
    app.cleanup().await;
}

async fn an_endpoint_never_receives_another_accounts_events(backend: Backend) {
    let (app, owner) = spawn(backend).await;
    let partner = app.account_with_owner("partner").await;
    let (ours, theirs) = (Receiver::start(0).await, Receiver::start(0).await);
    let (our_endpoint, _) = endpoint(&app, &owner, &ours.url, None).await;
    let (their_endpoint, _) = endpoint(&app, &partner, &theirs.url, None).await;
    deactivated_key(&app, &owner).await;
    ours.wait_for(2, Duration::from_secs(2)).await;
    app.deliverer_caught_up().await;
    assert!(theirs.received().is_empty(), "the partner's endpoint got main's events: {:?}", theirs.received());
    assert!(deliveries(&app, &partner).await.is_empty());
    // Each account sees, and can delete, only its own endpoints.
    let listed = app.graphql(&partner, "{ webhookEndpoints { id url } }", json!({})).await.data("webhookEndpoints");
    assert_eq!(listed, json!([{ "id": their_endpoint, "url": theirs.url }]));
    let delete = "mutation($id: ID!) { deleteWebhookEndpoint(id: $id) }";
    app.graphql(&partner, delete, json!({ "id": our_endpoint })).await.assert_code("NOT_FOUND");
    let node = app.graphql(&partner, "query($id: ID!) { node(id: $id) { id } }", json!({ "id": our_endpoint })).await;
    assert_eq!(node.data("node"), Value::Null);
    assert_eq!(app.graphql(&owner, delete, json!({ "id": our_endpoint })).await.data("deleteWebhookEndpoint"), true);
    assert_eq!(app.graphql(&owner, "{ webhookEndpoints { id } }", json!({})).await.data("webhookEndpoints"), json!([]));
    app.cleanup().await;
}

async fn a_restart_between_the_change_and_the_delivery_loses_nothing(backend: Backend) {
    let (app, owner) = spawn(backend).await;
    // The receiver is down when the change happens: the first attempt cannot connect.
    let port = crate::helpers::process::free_port();
    let url = format!("http://127.0.0.1:{port}/hooks");
    let (_, secret) = endpoint(&app, &owner, &url, Some(&["app_key.deactivated"])).await;
    deactivated_key(&app, &owner).await;
    let pending = delivery_where(&app, &owner, |d| d["lastError"].is_string()).await;
    assert_eq!(pending["status"], "PENDING");
    assert_eq!(pending["lastStatusCode"], Value::Null, "nobody answered: {pending}");
    app.kill_server().await;
    // The server comes back (same database), and so does the receiver.
    let receiver = Receiver::start_on(&format!("127.0.0.1:{port}"), 0).await;
    let (_, restarted) = app.another_server_with(|s| s.webhook_allow_private = true).await;
    restarted.state().store.clock().advance(chrono::Duration::seconds(10));
    tokio::spawn(restarted.run_until_stopped(std::future::pending()));
    let received = receiver.wait_for(1, Duration::from_secs(3)).await;
    assert!(received[0].signed_with(&secret), "the secret survived the restart too");
    assert_eq!(received[0].event_type(), "app_key.deactivated");
    app.cleanup().await;
}

async fn endpoints_are_checked_and_guarded(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let owner = app.owner().await;
    // Without --webhook-allow-private, loopback and metadata targets are refused.
    for url in ["http://127.0.0.1:9/hooks", "http://169.254.169.254/latest/meta-data", "http://localhost/x"] {
        let refused = app.graphql(&owner, CREATE, json!({ "input": { "url": url } })).await;
        refused.assert_code("BAD_USER_INPUT");
        assert_eq!(refused.0["errors"][0]["extensions"]["field"], "input.url", "{url}");
    }
    let before = app.snapshot().await;
    let unknown = app
        .graphql(
            &owner,
            CREATE,
            json!({ "input": { "url": "https://hooks.example.com/", "events": ["app_key.nope"] } }),
        )
        .await;
    unknown.assert_code("BAD_USER_INPUT");
    assert_eq!(unknown.0["errors"][0]["extensions"]["field"], "input.events.0");
    assert_eq!(app.snapshot().await, before, "a refused endpoint writes nothing");
    let (_, secret) = endpoint(&app, &owner, "https://hooks.example.com/appkeys", None).await;
    // The secret is shown once: never listed, never stored in plain text.
    let listed = app.graphql(&owner, "{ webhookEndpoints { id url events createdBy } }", json!({})).await;
    assert!(!listed.0.to_string().contains(&secret));
    assert_eq!(listed.data("webhookEndpoints")[0]["createdBy"], "user:owner@example.com");
    assert!(!app.snapshot().await.contains(&secret["whsec_".len()..]), "the secret is sealed at rest");
    if backend == Backend::Sqlite {
        let raw = String::from_utf8_lossy(&app.sqlite_bytes()).into_owned();
        assert!(!raw.contains(&secret["whsec_".len()..]), "not even in the file");
    }
    // Reading needs ApiKeys.View (or another settings reader); changing needs ApiKeys.EditSettings.
    let viewer_role = app.custom_role(&owner, "Key viewer", &["ApiKeys.View"]).await;
    let viewer = app.user_with_roles(&owner, "viewer@example.com", &[viewer_role]).await;
    let seen = app.graphql(&viewer, "{ webhookEndpoints { url } }", json!({})).await.data("webhookEndpoints");
    assert_eq!(seen, json!([{ "url": "https://hooks.example.com/appkeys" }]));
    app.graphql(&viewer, CREATE, json!({ "input": { "url": "https://x.example.com/" } }))
        .await
        .assert_code("FORBIDDEN");
    let audit = "{ auditEvents(filter: {action: \"webhook.create\"}) { totalCount } }";
    assert_eq!(app.graphql(&owner, audit, json!({})).await.data("auditEvents.totalCount"), 1);
    app.cleanup().await;
}

async fn old_events_and_finished_deliveries_are_pruned(backend: Backend) {
    let (app, owner) = spawn(backend).await;
    let receiver = Receiver::start(0).await;
    endpoint(&app, &owner, &receiver.url, None).await;
    let dead = format!("http://127.0.0.1:{}/hooks", crate::helpers::process::free_port());
    endpoint(&app, &owner, &dead, Some(&["app_key.deactivated"])).await;
    deactivated_key(&app, &owner).await;
    receiver.wait_for(2, Duration::from_secs(2)).await;
    delivery_where(&app, &owner, |d| d["lastError"].is_string()).await;
    let count = |table: &str| app.scalar::<i64>(format!("SELECT COUNT(*) FROM {table}"));
    assert_eq!((count("key_events").await, count("webhook_deliveries").await), (2, 3));
    // Nothing is young enough to go yet.
    appkeys::service::events::outbox::prune(app.store(), app.store().now() - chrono::Duration::days(30))
        .await
        .expect("pruned");
    assert_eq!((count("key_events").await, count("webhook_deliveries").await), (2, 3));
    // A month on, the delivered ones and the generation event go; the pending delivery keeps its event.
    let later = app.store().now() + chrono::Duration::days(1);
    let pruned = appkeys::service::events::outbox::prune(app.store(), later).await.expect("pruned");
    assert_eq!(pruned, 1);
    assert_eq!((count("key_events").await, count("webhook_deliveries").await), (1, 1));
    let left = deliveries(&app, &owner).await;
    assert_eq!(left[0]["status"], "PENDING");
    assert_eq!(left[0]["eventType"], "app_key.deactivated");
    app.cleanup().await;
}

/// A failed delivery is sent again on request (`redeliverWebhook`, audited), at once; a pending one
/// is refused, since it is sent by itself when due.
async fn a_failed_delivery_is_sent_again_on_request(backend: Backend) {
    let (app, owner) = spawn(backend).await;
    let receiver = Receiver::start(2).await;
    endpoint(&app, &owner, &receiver.url, Some(&["app_key.deactivated"])).await;
    deactivated_key(&app, &owner).await;
    receiver.wait_for(1, Duration::from_secs(2)).await;
    let pending = delivery_where(&app, &owner, |d| d["lastStatusCode"] == 500 && d["status"] == "PENDING").await;
    let ids = "query { webhookDeliveries(first: 5) { nodes { id status } } }";
    let id = app.graphql(&owner, ids, json!({})).await.data("webhookDeliveries.nodes")[0]["id"].clone();
    let redeliver = "mutation($id: ID!) { redeliverWebhook(id: $id) { status attempts lastStatusCode } }";
    app.graphql(&owner, redeliver, json!({ "id": id })).await.assert_code("CONFLICT");
    assert_eq!(pending["attempts"], 1);
    app.advance_clock(chrono::Duration::hours(25));
    receiver.wait_for(2, Duration::from_secs(3)).await;
    let owner = app.owner().await; // a day later: the session has expired
    delivery_where(&app, &owner, |d| d["status"] == "FAILED").await;
    let again = app.graphql(&owner, redeliver, json!({ "id": id })).await.data("redeliverWebhook");
    assert_eq!(again, json!({ "status": "PENDING", "attempts": 0, "lastStatusCode": 500 }), "the last answer is kept");
    receiver.wait_for(3, Duration::from_secs(3)).await;
    let delivered = delivery_where(&app, &owner, |d| d["status"] == "DELIVERED").await;
    assert_eq!((delivered["attempts"].as_i64(), delivered["lastStatusCode"].as_i64()), (Some(1), Some(204)));
    let audit = "{ auditEvents(filter: {action: \"webhook.redeliver\"}) { totalCount } }";
    assert_eq!(app.graphql(&owner, audit, json!({})).await.data("auditEvents.totalCount"), 1);
    let unknown = app.graphql(&owner, redeliver, json!({ "id": "nothing" })).await;
    unknown.assert_code("NOT_FOUND");
    app.cleanup().await;
}

mod cases {
    use super::*;
    crate::backend_cases!(
        a_failed_delivery_is_sent_again_on_request,
        a_deactivation_reaches_the_receiver_signed_within_two_seconds,
        a_refused_delivery_is_retried_after_its_backoff,
        deliveries_fail_for_good_after_twenty_four_hours,
        an_endpoint_never_receives_another_accounts_events,
        a_restart_between_the_change_and_the_delivery_loses_nothing,
        endpoints_are_checked_and_guarded,
        old_events_and_finished_deliveries_are_pruned,
    );
}

/// Two PostgreSQL replicas deliver every event exactly once between them (`FOR UPDATE SKIP LOCKED`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(appkeys_postgres_tests), ignore = "needs APPKEYS_TEST_POSTGRES_URL at build time")]
async fn postgres_replicas_send_each_delivery_once() {
    let (app, owner) = spawn(Backend::Postgres).await;
    let (_, replica) = app.another_server_with(|s| s.webhook_allow_private = true).await;
    tokio::spawn(replica.run_until_stopped(std::future::pending()));
    let receiver = Receiver::start(0).await;
    endpoint(&app, &owner, &receiver.url, None).await;
    let role = app.restricted_role(&owner).await;
    for i in 0..20 {
        app.generate_key(&owner, Some(&format!("k{i}")), std::slice::from_ref(&role)).await;
    }
    receiver.wait_for(20, Duration::from_secs(5)).await;
    app.deliverer_caught_up().await;
    let mut ids: Vec<String> = receiver.received().into_iter().map(|r| r.id).collect();
    assert_eq!(ids.len(), 20, "each event once");
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 20);
    app.cleanup().await;
}
