//! Time-based key events, produced by the scheduler (the sweeper's round) with a moved clock: each
//! once per key and anchor, one replica at a time.
use serde_json::json;

use crate::helpers::{Auth, Backend, TestApp};

const GENERATE: &str = "mutation($input: GenerateAppKeyInput!) { generateAppKey(input: $input) { appKey { key } } }";
const TYPES: &str = "{ webhookDeliveries(first: 100) { nodes { eventType key } } }";

/// Every event type delivered so far (to the catch-all endpoint), with its key.
async fn announced(app: &TestApp, auth: &Auth) -> Vec<(String, String)> {
    let nodes = app.graphql(auth, TYPES, json!({})).await.data("webhookDeliveries.nodes");
    let mut found: Vec<(String, String)> = nodes
        .as_array()
        .expect("nodes")
        .iter()
        .map(|n| (n["eventType"].as_str().unwrap_or_default().into(), n["key"].as_str().unwrap_or_default().into()))
        .filter(|(t, _): &(String, String)| t != "app_key.generated")
        .collect();
    found.sort();
    found
}

fn pair(event_type: &str, key: &str) -> (String, String) {
    (event_type.to_owned(), key.to_owned())
}

async fn time_based_events_are_produced_once_each(app: &TestApp) {
    let owner = app.owner().await;
    // An endpoint that nobody listens on collects the outbox's deliveries for us to read.
    let create = "mutation { createWebhookEndpoint(input: {url: \"https://hooks.example.com/all\"}) { secret } }";
    app.graphql(&owner, create, json!({})).await.data("createWebhookEndpoint");
    let role = app.restricted_role(&owner).await;
    let expires = app.store().now() + chrono::Duration::days(3);
    let input = json!({ "input": { "roleIds": [role], "expiresAt": expires } });
    let expiring = app.graphql(&owner, GENERATE, input).await.data("generateAppKey.appKey.key");
    let expiring = expiring.as_str().expect("key").to_owned();
    let (lasting, _) = app.generate_key(&owner, None, std::slice::from_ref(&role)).await;
    let sweep = || appkeys::jobs::sweep(app.store(), app.state.auth.last_use());

    // Within the 7-day warning: announced as expiring, once.
    sweep().await.expect("a round");
    sweep().await.expect("another round");
    assert_eq!(announced(app, &owner).await, vec![pair("app_key.expiring", &expiring)]);

    // Past its expiry: expired, once.
    app.advance_clock(chrono::Duration::days(4));
    sweep().await.expect("a round");
    sweep().await.expect("another round");
    let owner = app.owner().await;
    assert_eq!(
        announced(app, &owner).await,
        vec![pair("app_key.expired", &expiring), pair("app_key.expiring", &expiring)]
    );

    // 91 days after generation the lasting key's token is due for renewal (90 by default), once;
    // renewing makes the next one due 90 days after the renewal.
    app.advance_clock(chrono::Duration::days(87));
    sweep().await.expect("a round");
    sweep().await.expect("another round");
    let owner = app.owner().await;
    let due = announced(app, &owner).await;
    assert_eq!(due.iter().filter(|e| **e == pair("app_key.renewal_due", &lasting)).count(), 1, "{due:?}");
    assert!(!due.contains(&pair("app_key.renewal_due", &expiring)), "an expired key is not due: {due:?}");
    let renew = "mutation($k: String!) { renewAppKeyToken(key: $k, input: {oldTokenValidFor: 0}) { appToken } }";
    app.graphql(&owner, renew, json!({ "k": lasting })).await.data("renewAppKeyToken");
    app.advance_clock(chrono::Duration::days(91));
    sweep().await.expect("a round");
    let owner = app.owner().await;
    let due = announced(app, &owner).await;
    assert_eq!(due.iter().filter(|e| **e == pair("app_key.renewal_due", &lasting)).count(), 2, "{due:?}");
    assert!(due.contains(&pair("app_key.renewed", &lasting)));

    // Inactivity: the sweeper's deactivation is an event too.
    let settings =
        "mutation { updateAppKeySettings(input: {deactivateUnusedAfterDays: 30}) { deactivateUnusedAfterDays } }";
    app.graphql(&owner, settings, json!({})).await.data("updateAppKeySettings");
    sweep().await.expect("a round");
    let owner = app.owner().await;
    assert!(announced(app, &owner).await.contains(&pair("app_key.auto_deactivated", &lasting)));
}

/// `app_key.renewal_due` turns at the instant `renewalAlert` leaves NONE: a token exactly
/// `renewalPeriodDays` old is not due yet, one a microsecond older is.
async fn renewal_is_due_at_the_instant_the_alert_turns(app: &TestApp) {
    let owner = app.owner().await;
    let create = "mutation { createWebhookEndpoint(input: {url: \"https://hooks.example.com/all\"}) { secret } }";
    app.graphql(&owner, create, json!({})).await.data("createWebhookEndpoint");
    let role = app.restricted_role(&owner).await;
    let (key, _) = app.generate_key(&owner, None, std::slice::from_ref(&role)).await;
    let made =
        app.graphql(&owner, "query($k: String!) { appKey(key: $k) { tokenCreatedAt } }", json!({ "k": key })).await;
    let made = made.data("appKey.tokenCreatedAt");
    let made: chrono::DateTime<chrono::Utc> =
        chrono::DateTime::parse_from_rfc3339(made.as_str().expect("an instant")).expect("RFC 3339").into();
    let period = made + chrono::Duration::days(90);
    let announce = |at| appkeys::service::keys::announce::announce_due(app.store(), at);
    assert_eq!(announce(period).await.expect("a round"), 0, "exactly the renewal period old: not due");
    assert!(!announced(app, &owner).await.contains(&pair("app_key.renewal_due", &key)));
    assert_eq!(
        announce(period + chrono::Duration::microseconds(1)).await.expect("a round"),
        1,
        "a microsecond older: due"
    );
    assert!(announced(app, &owner).await.contains(&pair("app_key.renewal_due", &key)));
}

crate::backend_tests!(time_based_events_are_produced_once_each, renewal_is_due_at_the_instant_the_alert_turns);

/// Two PostgreSQL replicas announcing at once produce each event once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(appkeys_postgres_tests), ignore = "needs APPKEYS_TEST_POSTGRES_URL at build time")]
async fn postgres_replicas_announce_each_event_once() {
    let app = TestApp::spawn(Backend::Postgres).await;
    let owner = app.owner().await;
    let role = app.restricted_role(&owner).await;
    for _ in 0..5 {
        let expires = app.store().now() + chrono::Duration::days(1);
        app.graphql(&owner, GENERATE, json!({ "input": { "roleIds": [role], "expiresAt": expires } }))
            .await
            .data("generateAppKey");
    }
    let (_, replica) = app.another_server().await;
    let other = replica.state().clone();
    let later = app.store().now() + chrono::Duration::days(2);
    let (a, b) = tokio::join!(
        appkeys::service::keys::announce::announce_due(app.store(), later),
        appkeys::service::keys::announce::announce_due(&other.store, later)
    );
    let (a, b) = (a.expect("first"), b.expect("second"));
    assert_eq!(a + b, 5, "five keys expired, announced once each ({a} + {b})");
    let (a, b) = tokio::join!(
        appkeys::service::keys::announce::announce_due(app.store(), later),
        appkeys::service::keys::announce::announce_due(&other.store, later)
    );
    assert_eq!(a.expect("first") + b.expect("second"), 0, "and never again");
    app.cleanup().await;
}
