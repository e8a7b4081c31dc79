//! `appKeyEvents` over `graphql-transport-ws` at `/graphql/ws`: authenticated in
//! `connection_init`, one account's events only, filtered by key, ended when the credential is
//! revoked, and fed by other replicas on PostgreSQL.
use serde_json::{json, Value};
use std::time::Duration;

use crate::helpers::subscriber::{Frame, Subscriber};
use crate::helpers::{Auth, Backend, TestApp};

const EVENTS: &str = "subscription($keys: [String!]) { appKeyEvents(keys: $keys) { id type key account actor at } }";
const DEACTIVATE: &str = "mutation($k: String!) { deactivateAppKey(key: $k) { status } }";
const WAIT: Duration = Duration::from_secs(3);

fn init_payload(auth: &Auth) -> Value {
    match auth {
        Auth::Bearer(token) => json!({ "Authorization": format!("Bearer {token}") }),
        Auth::Key { key, token, .. } => json!({ "X-VTEX-API-AppKey": key, "X-VTEX-API-AppToken": token }),
        _ => json!({}),
    }
}

async fn subscribed(address: &str, auth: &Auth, keys: Option<Vec<&str>>) -> Subscriber {
    let (mut subscriber, ack) = Subscriber::connect(address, init_payload(auth)).await;
    assert!(matches!(&ack, Frame::Message(m) if m["type"] == "connection_ack"), "{ack:?}");
    subscriber.subscribe("1", EVENTS, json!({ "keys": keys })).await;
    // Let the subscription start before anything happens.
    tokio::time::sleep(Duration::from_millis(200)).await;
    subscriber
}

/// The next event of subscription "1".
async fn next_event(subscriber: &mut Subscriber) -> Value {
    let message = subscriber.message(WAIT).await;
    assert_eq!(message["type"], "next", "{message}");
    assert!(message["payload"].get("errors").is_none(), "{message}");
    message["payload"]["data"]["appKeyEvents"].clone()
}

async fn a_subscriber_sees_its_own_accounts_events_only(app: &TestApp) {
    let owner = app.owner().await;
    let partner = app.account_with_owner("partner").await;
    let mut subscriber = subscribed(&app.address, &owner, None).await;
    let partner_role = app.restricted_role(&partner).await;
    let (theirs, _) = app.generate_key(&partner, None, &[partner_role]).await;
    app.graphql(&partner, DEACTIVATE, json!({ "k": theirs })).await.data("deactivateAppKey");
    let role = app.restricted_role(&owner).await;
    let (ours, _) = app.generate_key(&owner, None, &[role]).await;
    app.graphql(&owner, DEACTIVATE, json!({ "k": ours })).await.data("deactivateAppKey");
    let generated = next_event(&mut subscriber).await;
    assert_eq!(generated["type"], "app_key.generated", "the partner's events never arrive: {generated}");
    assert_eq!(generated["key"], ours.as_str());
    assert_eq!(generated["account"], "main");
    assert_eq!(generated["actor"], "user:owner@example.com");
    let deactivated = next_event(&mut subscriber).await;
    assert_eq!(deactivated["type"], "app_key.deactivated");
    assert_eq!(deactivated["key"], ours.as_str());
    subscriber.assert_quiet(Duration::from_millis(500)).await;
}

async fn a_subscriber_can_follow_chosen_keys(app: &TestApp) {
    let owner = app.owner().await;
    let role = app.restricted_role(&owner).await;
    let (watched, _) = app.generate_key(&owner, None, std::slice::from_ref(&role)).await;
    let (other, _) = app.generate_key(&owner, None, &[role]).await;
    let mut subscriber = subscribed(&app.address, &owner, Some(vec![watched.as_str()])).await;
    app.graphql(&owner, DEACTIVATE, json!({ "k": other })).await.data("deactivateAppKey");
    app.graphql(&owner, DEACTIVATE, json!({ "k": watched })).await.data("deactivateAppKey");
    // Its generation, made just before subscribing, may still arrive first (through NOTIFY).
    let mut event = next_event(&mut subscriber).await;
    if event["type"] == "app_key.generated" {
        event = next_event(&mut subscriber).await;
    }
    assert_eq!((event["type"].as_str(), event["key"].as_str()), (Some("app_key.deactivated"), Some(watched.as_str())));
    subscriber.assert_quiet(Duration::from_millis(500)).await;
}

async fn a_bad_credential_is_refused_at_connection_init(app: &TestApp) {
    for payload in [json!({}), json!({ "Authorization": "Bearer aks_not-a-session" })] {
        let (_, answer) = Subscriber::connect(&app.address, payload.clone()).await;
        // graphql-transport-ws: a refused `connection_init` closes with 4403 Forbidden (the reason
        // is the error's message).
        assert!(
            matches!(&answer, Frame::Closed(Some(4403), reason) if reason.starts_with("authentication failed")),
            "{payload}: {answer:?}"
        );
    }
    // A caller without a key-reading resource is refused at subscribe time.
    let owner = app.owner().await;
    let role = app.custom_role(&owner, "Profiles only", &["LicenseManager.SaveAccessProfile"]).await;
    let (key, token) = app.generate_key(&owner, None, &[role]).await;
    let (mut subscriber, ack) = Subscriber::connect(&app.address, init_payload(&Auth::key(&key, &token))).await;
    assert!(matches!(&ack, Frame::Message(m) if m["type"] == "connection_ack"));
    subscriber.subscribe("1", EVENTS, json!({})).await;
    let refused = subscriber.message(WAIT).await;
    assert_eq!(refused["type"], "next", "{refused}");
    assert_eq!(refused["payload"]["errors"][0]["extensions"]["code"], "FORBIDDEN");
    assert_eq!(subscriber.message(WAIT).await["type"], "complete");
}

async fn a_revoked_credentials_subscription_ends(app: &TestApp) {
    let owner = app.owner().await;
    let role = app.restricted_role(&owner).await;
    let (key, token) = app.generate_key(&owner, None, &[role]).await;
    let mut subscriber = subscribed(&app.address, &Auth::key(&key, &token), None).await;
    app.graphql(&owner, DEACTIVATE, json!({ "k": key })).await.data("deactivateAppKey");
    // The key's own generation may still arrive (on PostgreSQL it comes back through NOTIFY); its
    // deactivation never does: the subscription ends first.
    let mut ended = subscriber.message(WAIT).await;
    while ended["payload"]["data"]["appKeyEvents"]["type"] == "app_key.generated" {
        ended = subscriber.message(WAIT).await;
    }
    assert_eq!(ended["type"], "next", "{ended}");
    assert_eq!(ended["payload"]["errors"][0]["extensions"]["code"], "UNAUTHENTICATED", "{ended}");
    let complete = subscriber.message(WAIT).await;
    assert_eq!(complete["type"], "complete", "{complete}");
}

crate::backend_tests!(
    a_subscriber_sees_its_own_accounts_events_only,
    a_subscriber_can_follow_chosen_keys,
    a_bad_credential_is_refused_at_connection_init,
    a_revoked_credentials_subscription_ends,
);

/// A subscriber on replica 1 sees a deactivation made on replica 2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(appkeys_postgres_tests), ignore = "needs APPKEYS_TEST_POSTGRES_URL at build time")]
async fn postgres_subscribers_see_changes_made_on_another_replica() {
    let app = TestApp::spawn(Backend::Postgres).await;
    let (replica, server) = app.another_server().await;
    tokio::spawn(server.run_until_stopped(std::future::pending()));
    let owner = app.owner().await;
    let role = app.restricted_role(&owner).await;
    let (key, _) = app.generate_key(&owner, None, &[role]).await;
    let mut subscriber = subscribed(&app.address, &owner, None).await;
    app.graphql_at(&replica, &owner, DEACTIVATE, json!({ "k": key })).await.data("deactivateAppKey");
    // The key's generation, made just before subscribing, may still arrive first (through NOTIFY).
    let mut event = next_event(&mut subscriber).await;
    if event["type"] == "app_key.generated" {
        event = next_event(&mut subscriber).await;
    }
    assert_eq!(event["type"], "app_key.deactivated");
    assert_eq!(event["key"], key.as_str());
    app.cleanup().await;
}
