//! Abuse and hostile input: query cost limits, switches for production, CORS, brute-force throttling.
use crate::helpers::{Auth, Backend, TestApp, OWNER_EMAIL, OWNER_PASSWORD};
use serde_json::{json, Value};

async fn post_raw(app: &TestApp, auth: &Auth, body: Value) -> (u16, Value) {
    let request = app.client.post(format!("{}/graphql", app.address)).json(&body);
    let response = auth.apply(request).send().await.expect("sent");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn more_than_thirty_aliases_are_refused(app: &TestApp) {
    let thirty: String = (0..30).map(|i| format!("a{i}: __typename ")).collect();
    let (status, body) = post_raw(app, &Auth::None, json!({ "query": format!("{{ {thirty} }}") })).await;
    assert_eq!(status, 200, "{body}");
    let thirty_one: String = (0..31).map(|i| format!("a{i}: __typename ")).collect();
    let (status, body) = post_raw(app, &Auth::None, json!({ "query": format!("{{ {thirty_one} }}") })).await;
    // A validation failure: 200 for application/json, no data, a code (400 for graphql-response+json).
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["errors"][0]["extensions"]["code"], "GRAPHQL_VALIDATION_FAILED", "{body}");
    assert!(body.get("data").is_none(), "{body}");
    assert!(body.to_string().contains("aliases"));
    // Hidden in a fragment, they count too.
    let fragment = format!("query {{ ...F }} fragment F on Query {{ {thirty_one} }}");
    let (_, body) = post_raw(app, &Auth::None, json!({ "query": fragment })).await;
    assert_eq!(body["errors"][0]["extensions"]["code"], "GRAPHQL_VALIDATION_FAILED", "{body}");
}

async fn repeated_directives_and_complexity_are_bounded(app: &TestApp) {
    let owner = app.owner().await;
    let directives = "@include(if: true) ".repeat(6);
    let response = app.graphql(&owner, &format!("{{ viewer {directives} {{ account }} }}"), json!({})).await;
    assert!(response.0["errors"].is_array(), "six directives on a field are refused: {}", response.0);
    // A full page with the fields a listing shows fits the budget...
    let page = "{ myKeys(first: 100) { totalCount edges { cursor node { key label status type account createdAt hasAccess roles { name } } } } }";
    app.graphql(&owner, page, json!({})).await.data("myKeys");
    // ...four of them, nested down to every role's resources, do not.
    let node = "edges { node { key label status roles { name resources { id name } } } }";
    let heavy = format!("{{ a: appKeys(first: 100) {{ {node} }} b: myKeys(first: 100) {{ {node} }} c: appKeys(first: 100) {{ {node} }} d: myKeys(first: 100) {{ {node} }} }}");
    let response = app.graphql(&owner, &heavy, json!({})).await;
    assert!(response.message().contains("complex"), "{}", response.0);
}

async fn production_switches_turn_off_introspection_and_graphiql(backend: Backend) {
    let app = TestApp::spawn_with(backend, |s| {
        s.no_introspection = true;
        s.no_graphiql = true;
    })
    .await;
    for query in [
        "{ __schema { types { name } } }",
        "{ __type(name: \"AppKey\") { name } }",
        "{ ...F } fragment F on Query { __schema { queryType { name } } }",
    ] {
        let (_, body) = post_raw(&app, &Auth::None, json!({ "query": query })).await;
        assert_eq!(body["errors"][0]["extensions"]["code"], "GRAPHQL_VALIDATION_FAILED", "an error, not null: {body}");
        assert!(body["errors"][0]["message"].as_str().is_some_and(|m| m.contains("introspection is disabled")));
        assert!(!body.to_string().contains("AppKey\""), "no type leaks: {body}");
    }
    let (_, typename) = post_raw(&app, &Auth::None, json!({ "query": "{ __typename }" })).await;
    assert_eq!(typename["data"]["__typename"], "Query", "__typename is not introspection");
    assert_eq!(app.get("/", &Auth::None).await.status(), 404);
    assert_eq!(app.get("/assets/graphiql/graphiql.min.js", &Auth::None).await.status(), 404);
    let owner = app.owner().await;
    app.graphql(&owner, "{ viewer { account } }", json!({})).await.data("viewer");
    app.cleanup().await;
}

async fn cors_is_off_by_default_and_follows_the_allow_list(backend: Backend) {
    let preflight = |app: &TestApp, origin: &'static str| {
        let request = app
            .client
            .request(reqwest::Method::OPTIONS, format!("{}/graphql", app.address))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "content-type,authorization");
        async move { request.send().await.expect("preflight") }
    };
    let closed = TestApp::spawn(backend).await;
    let response = preflight(&closed, "https://admin.example.com").await;
    assert!(response.headers().get("access-control-allow-origin").is_none());
    closed.cleanup().await;

    let open = TestApp::spawn_with(backend, |s| s.cors_origins = vec!["https://admin.example.com".into()]).await;
    let allowed = preflight(&open, "https://admin.example.com").await;
    assert_eq!(allowed.headers()["access-control-allow-origin"], "https://admin.example.com");
    let other = preflight(&open, "https://evil.example.com").await;
    assert!(other.headers().get("access-control-allow-origin").is_none());
    open.cleanup().await;
}

async fn failed_logins_are_throttled_without_slowing_others(backend: Backend) {
    let app = TestApp::spawn_with(backend, |s| s.failures_per_minute = 3).await;
    for _ in 0..4 {
        app.login("main", OWNER_EMAIL, "wrong password!!").await.assert_code("UNAUTHENTICATED");
    }
    let limited = app.login("main", OWNER_EMAIL, OWNER_PASSWORD).await;
    limited.assert_code("RATE_LIMITED");
    assert!(limited.0["errors"][0]["extensions"]["retryAfter"].as_u64().is_some_and(|s| (1..=60).contains(&s)));
    // Another user of the account logs in unhindered.
    let other = app.account_with_owner("other").await;
    app.graphql(&other, "{ viewer { account } }", json!({})).await.data("viewer");
    app.cleanup().await;
}

async fn failed_key_authentications_are_throttled_but_the_valid_token_passes(backend: Backend) {
    let app = TestApp::spawn_with(backend, |s| s.failures_per_minute = 3).await;
    let owner = app.owner().await;
    let restricted = app.restricted_role(&owner).await;
    let (key, token) = app.generate_key(&owner, None, &[restricted]).await;
    let wrong = appkeys::domain::AppToken::generate();
    let mut codes = Vec::new();
    for _ in 0..5 {
        codes.push(
            app.graphql(&Auth::key(&key, wrong.expose_secret()), "{ viewer { account } }", json!({})).await.code(),
        );
    }
    assert_eq!(codes.last().map(String::as_str), Some("RATE_LIMITED"), "{codes:?}");
    let gateway = app.get("/auth", &Auth::key(&key, wrong.expose_secret())).await;
    assert_eq!(gateway.status(), 429);
    assert!(gateway.headers().contains_key("retry-after"));
    // The key's real owner is not locked out.
    app.graphql(&Auth::key(&key, &token), "{ viewer { account } }", json!({})).await.data("viewer");
    assert_eq!(app.get("/auth", &Auth::key(&key, &token)).await.status(), 200);
    app.cleanup().await;
}

async fn graphql_over_http_negotiates_and_reports_request_errors(app: &TestApp) {
    let url = format!("{}/graphql", app.address);
    let send = |accept: Option<&'static str>, query: &'static str| {
        let mut request = app.client.post(&url).json(&json!({ "query": query }));
        if let Some(accept) = accept {
            request = request.header("accept", accept);
        }
        async move { request.send().await.expect("sent") }
    };
    let modern = send(Some("application/graphql-response+json"), "{ __typename }").await;
    assert_eq!(modern.status(), 200);
    assert_eq!(modern.headers()["content-type"], "application/graphql-response+json");
    let legacy = send(None, "{ __typename }").await;
    assert_eq!(legacy.headers()["content-type"], "application/json");
    assert_eq!(send(Some("application/graphql-response+json"), "{ nope").await.status(), 400, "syntax error");
    assert_eq!(send(Some("application/graphql-response+json"), "{ noSuchField }").await.status(), 400, "validation");
    assert_eq!(send(Some("application/json"), "{ noSuchField }").await.status(), 200, "legacy clients get 200");
    assert_eq!(send(Some("text/html"), "{ __typename }").await.status(), 406);
    // An execution error is still a 200 with partial data semantics.
    let guarded = send(Some("application/graphql-response+json"), "{ viewer { account } }").await;
    assert_eq!(guarded.status(), 200);
}

/// A request that passed full validation runs on the lighter checks next time; the same document
/// with other variables, or another operation of it, is validated in full again.
async fn a_document_validated_once_is_still_checked_for_each_variables(app: &TestApp) {
    let owner = app.owner().await;
    let page =
        "query Page($n: Int) { myKeys(first: $n) { edges { node { key } } } } query Other { viewer { account } }";
    let run = |variables: Value, operation: &'static str| {
        post_raw(app, &owner, json!({ "query": page, "variables": variables, "operationName": operation }))
    };
    let (status, first) = run(json!({ "n": 5 }), "Page").await;
    assert_eq!(status, 200);
    assert!(first.get("errors").is_none(), "{first}");
    assert_eq!(run(json!({ "n": 5 }), "Page").await.1, first, "the same request, the same answer");
    // Same text, a value validation refuses: refused as before execution, not run on lighter checks.
    for bad in [json!({ "n": "five" }), json!({ "n": 1.5 })] {
        let (_, refused) = run(bad.clone(), "Page").await;
        assert_eq!(refused["errors"][0]["extensions"]["code"], "GRAPHQL_VALIDATION_FAILED", "{bad}: {refused}");
        assert!(refused.get("data").is_none(), "{refused}");
    }
    assert_eq!(run(json!({}), "Other").await.1["data"]["viewer"]["account"], "main");
    // The price of a page follows its variables: cheap twice, then past the limit with the same text.
    let node = "edges { node { key label status roles { name resources { id name } } } }";
    let heavy = format!("query($n: Int) {{ a: appKeys(first: $n) {{ {node} }} b: myKeys(first: $n) {{ {node} }} c: appKeys(first: $n) {{ {node} }} d: myKeys(first: $n) {{ {node} }} }}");
    for _ in 0..2 {
        let (_, cheap) = post_raw(app, &owner, json!({ "query": heavy, "variables": { "n": 2 } })).await;
        assert!(cheap.get("errors").is_none(), "{cheap}");
    }
    let (_, refused) = post_raw(app, &owner, json!({ "query": heavy, "variables": { "n": 100 } })).await;
    assert!(refused["errors"][0]["message"].as_str().unwrap_or_default().contains("complex"), "{refused}");
}

/// A pooled PostgreSQL connection is not pinged before each query, only once idle for a second: one
/// the server dropped meanwhile (a restart, a proxy's timeout) is found out and replaced, unseen.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(appkeys_postgres_tests), ignore = "needs APPKEYS_TEST_POSTGRES_URL at build time")]
async fn postgres_connections_dropped_by_the_server_are_replaced() {
    let app = TestApp::spawn(Backend::Postgres).await;
    let owner = app.owner().await;
    // A listing reads the database every time (a cached principal would not).
    let page = "{ myKeys(first: 5) { totalCount } }";
    let total = app.graphql(&owner, page, json!({})).await.data("myKeys.totalCount");
    assert!(app.terminate_backends().await >= 1, "the server's connections were ended");
    tokio::time::sleep(std::time::Duration::from_millis(1_200)).await;
    for _ in 0..5 {
        assert_eq!(app.graphql(&owner, page, json!({})).await.data("myKeys.totalCount"), total);
    }
    app.cleanup().await;
}

mod cases {
    use super::*;
    crate::backend_cases!(
        production_switches_turn_off_introspection_and_graphiql,
        cors_is_off_by_default_and_follows_the_allow_list,
        failed_logins_are_throttled_without_slowing_others,
        failed_key_authentications_are_throttled_but_the_valid_token_passes,
    );
}

crate::backend_tests!(
    more_than_thirty_aliases_are_refused,
    repeated_directives_and_complexity_are_bounded,
    graphql_over_http_negotiates_and_reports_request_errors,
    a_document_validated_once_is_still_checked_for_each_variables,
);
