//! `GET /metrics`: the Prometheus text format with requests per route and operation, authentication
//! outcomes, the credential cache and the pool; on its own listener with `--metrics-bind`.
use crate::helpers::process::free_port;
use crate::helpers::{Auth, Backend, TestApp};
use serde_json::json;

/// The value of the first series whose line starts with `prefix`.
fn value(page: &str, prefix: &str) -> Option<f64> {
    page.lines().find(|line| line.starts_with(prefix)).and_then(|line| line.rsplit(' ').next()?.parse().ok())
}

async fn metrics_count_routes_operations_and_authentication(app: &TestApp) {
    let owner = app.owner().await;
    let restricted = app.restricted_role(&owner).await;
    let (key, token) = app.generate_key(&owner, None, &[restricted]).await;
    for _ in 0..3 {
        assert_eq!(app.get("/auth", &Auth::key(&key, &token)).await.status(), 200);
    }
    app.get("/auth", &Auth::key(&key, "akt_wrongwrongwrongwrongwrongwrongwrongwrong000000")).await;
    let inline = "appkeys_sqlite_inline_reads_total{outcome=\"inline\"}";
    let inline_before = value(&app.get("/metrics", &Auth::None).await.text().await.expect("text"), inline);
    let page = "query MyKeysPage { myKeys { totalCount edges { node { key } } } }";
    app.graphql(&owner, page, json!({})).await.data("myKeys");
    let response = app.get("/metrics", &Auth::None).await;
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"].to_str().expect("text").starts_with("text/plain"));
    let page = response.text().await.expect("text");
    assert!(
        value(&page, "appkeys_http_requests_total{route=\"/auth\",status=\"200\"}").is_some_and(|n| n >= 3.0),
        "{page}"
    );
    assert!(page.contains("appkeys_http_request_duration_seconds_bucket{route=\"/auth\""), "{page}");
    assert!(value(&page, "appkeys_graphql_operations_total{operation=\"MyKeysPage\"}").is_some_and(|n| n >= 1.0));
    assert!(value(&page, "appkeys_auth_outcomes_total{outcome=\"ok_cached\"}").is_some_and(|n| n >= 1.0), "{page}");
    assert!(value(&page, "appkeys_auth_outcomes_total{outcome=\"unauthenticated\"}").is_some_and(|n| n >= 1.0));
    assert!(value(&page, "appkeys_credential_cache_hits_total").is_some(), "{page}");
    assert!(value(&page, "appkeys_db_pool_connections").is_some_and(|n| n >= 1.0));
    assert!(value(&page, "appkeys_logins_in_progress").is_some());
    assert!(value(&page, "appkeys_webhook_backlog").is_some(), "the deliverer reports its backlog: {page}");
    if app.backend == Backend::Sqlite {
        // The page was read on the request's thread (the series counts every server in this process).
        let after = value(&page, inline).expect("the inline reads are counted");
        assert!(after >= inline_before.unwrap_or(0.0) + 1.0, "{page}");
    }
    assert!(!page.contains(&token), "no secret in the metrics");
}

async fn metrics_move_to_their_own_listener(backend: Backend) {
    let port = free_port();
    let app = TestApp::spawn_with(backend, |s| {
        s.metrics_bind = Some(format!("127.0.0.1:{port}").parse().expect("an address"))
    })
    .await;
    assert_eq!(app.get("/metrics", &Auth::None).await.status(), 404, "not on the API's listener");
    let page = reqwest::get(format!("http://127.0.0.1:{port}/metrics")).await.expect("sent");
    assert_eq!(page.status(), 200);
    assert!(page.text().await.expect("text").contains("appkeys_db_pool_connections"));
    app.cleanup().await;
}

mod cases {
    use super::*;
    crate::backend_cases!(metrics_move_to_their_own_listener);
}

crate::backend_tests!(metrics_count_routes_operations_and_authentication);
