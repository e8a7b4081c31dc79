//! The reference GraphQL clients from npm against the real server: graphql-ws (the subscriptions
//! protocol's own client) and Apollo Client with its persisted-queries link. Runs when `APPKEYS_TEST_NODE_CLIENTS` names `tests/node` with its
//! packages installed (`npm ci --prefix tests/node`, as CI does); compiled as ignored otherwise.
use crate::helpers::{Auth, Backend, TestApp};
use serde_json::{json, Value};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};

const CLIENTS_ENV: &str = "APPKEYS_TEST_NODE_CLIENTS";

/// Runs `script` of `tests/node` with `args`; its stdout's JSON lines, one by one.
fn node(
    script: &str,
    args: &[&str],
) -> (tokio::process::Child, tokio::io::Lines<BufReader<tokio::process::ChildStdout>>) {
    let folder = std::env::var(CLIENTS_ENV).unwrap_or_else(|_| panic!("{CLIENTS_ENV} names tests/node"));
    let mut child = tokio::process::Command::new("node")
        .arg(script)
        .args(args)
        .current_dir(&folder)
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node runs");
    let lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    (child, lines)
}

async fn next_line(lines: &mut tokio::io::Lines<BufReader<tokio::process::ChildStdout>>) -> Value {
    let line = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
        .await
        .expect("the client answers within 10 s")
        .expect("stdout")
        .expect("a line");
    serde_json::from_str(&line).unwrap_or_else(|_| panic!("a JSON line: {line}"))
}

/// graphql-ws subscribes with a session, receives a key event, and is refused with `4403:
/// Forbidden` for credentials appkeys does not accept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(appkeys_node_tests), ignore = "needs APPKEYS_TEST_NODE_CLIENTS at build time")]
async fn the_graphql_ws_client_subscribes_and_bad_credentials_close_with_4403() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let owner = app.owner().await;
    let Auth::Bearer(session) = &owner else { panic!("a session") };
    let url = format!("{}/graphql/ws", app.address.replacen("http", "ws", 1));
    let params = json!({ "Authorization": format!("Bearer {session}") }).to_string();
    let (_child, mut lines) = node("subscriptions.mjs", &[&url, &params]);
    assert_eq!(next_line(&mut lines).await, json!({ "connected": true }));
    let role = app.restricted_role(&owner).await;
    // The subscription starts right after the acknowledgement: keep making events until one arrives.
    let (key, _) = app.generate_key(&owner, None, std::slice::from_ref(&role)).await;
    let deactivate = "mutation($k: String!) { deactivateAppKey(key: $k) { status } }";
    app.graphql(&owner, deactivate, json!({ "k": key })).await.data("deactivateAppKey");
    let event = next_line(&mut lines).await;
    let data = &event["next"]["data"]["appKeyEvents"];
    assert_eq!(data["key"], key.as_str(), "{event}");
    assert!(matches!(data["type"].as_str(), Some("app_key.generated" | "app_key.deactivated")), "{event}");

    for params in [
        json!({}),
        json!({ "Authorization": "Bearer aks_not-a-session" }),
        json!({ "X-API-AppKey": key, "X-API-AppToken": "akt_wrong" }),
    ] {
        let (_child, mut lines) = node("subscriptions.mjs", &[&url, &params.to_string()]);
        let closed = next_line(&mut lines).await;
        assert_eq!(closed["closed"], 4403, "{params}: {closed}");
    }
    app.cleanup().await;
}

/// Apollo Client's persisted-queries link: the first run sends the hash alone, learns the server
/// does not know it, and sends the text once; a second client's run sends the hash alone and is
/// answered. A hash whose text does not match is refused, and an unknown one asks for the text.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(appkeys_node_tests), ignore = "needs APPKEYS_TEST_NODE_CLIENTS at build time")]
async fn apollo_clients_persisted_queries_link_sends_each_document_once() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let owner = app.owner().await;
    let Auth::Bearer(session) = &owner else { panic!("a session") };
    let url = format!("{}/graphql", app.address);
    let (_child, mut lines) = node("persisted.mjs", &[&url, session]);
    let runs = next_line(&mut lines).await;
    let hash_only = json!({ "query": false, "hash": true });
    let with_text = json!({ "query": true, "hash": true });
    assert_eq!(runs["first"]["sent"], json!([hash_only, with_text]), "{runs}");
    assert_eq!(runs["second"]["sent"], json!([hash_only]), "{runs}");
    for run in ["first", "second"] {
        assert_eq!(runs[run]["data"]["viewer"]["account"], "main", "{runs}");
    }

    let post = |body: Value| {
        let request = owner.apply(app.client.post(&url)).header("content-type", "application/json");
        async move { request.body(body.to_string()).send().await.expect("sent").json::<Value>().await.expect("JSON") }
    };
    let unknown = json!({ "extensions": { "persistedQuery": { "version": 1, "sha256Hash": "0".repeat(64) } } });
    let answer = post(unknown).await;
    assert_eq!(answer["errors"][0]["extensions"]["code"], "PERSISTED_QUERY_NOT_FOUND", "{answer}");
    let mismatch = json!({ "query": "{ viewer { account } }", "extensions": { "persistedQuery": { "version": 1, "sha256Hash": "1".repeat(64) } } });
    let answer = post(mismatch).await;
    assert_eq!(answer["errors"][0]["message"], "provided sha does not match query", "{answer}");
    app.cleanup().await;
}
