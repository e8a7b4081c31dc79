use crate::helpers::{Auth, TestApp};
use serde_json::json;

async fn health_and_readiness_answer(app: &TestApp) {
    let health = app.get("/healthz", &Auth::None).await;
    assert_eq!(health.status(), 200);
    assert!(health.headers().contains_key("x-request-id"));
    assert_eq!(app.get("/readyz", &Auth::None).await.status(), 200);
}

async fn graphiql_is_served_and_explains_the_headers(app: &TestApp) {
    let page = app.get("/", &Auth::None).await;
    assert_eq!(page.status(), 200);
    let csp = page.headers()["content-security-policy"].to_str().expect("a policy").to_owned();
    assert!(csp.contains("script-src 'self';") && !csp.contains("unsafe-inline") && !csp.contains("http"), "{csp}");
    let html = page.text().await.expect("html");
    assert!(html.contains("GraphiQL"));
    assert!(!html.contains("http://") && !html.contains("https://"), "no external URL on the page: {html}");
    assert!(!html.contains("<style") && !html.contains("<script>"), "no inline script or style: {html}");
    // Every asset the page names is served by appkeys itself.
    let assets: Vec<&str> = html.split('"').filter(|part| part.starts_with("/assets/")).collect();
    assert_eq!(assets.len(), 6, "{html}");
    for asset in &assets {
        let served = app.get(asset, &Auth::None).await;
        assert_eq!(served.status(), 200, "{asset}");
    }
    let start = app.get("/assets/graphiql/graphiql-start.js", &Auth::None).await.text().await.expect("js");
    assert!(start.contains("/graphql") && start.contains("\\\"Authorization\\\": \\\"Bearer"), "{start}");
    assert!(start.contains("X-API-AppKey") && start.contains("X-API-AppToken"));
}

async fn get_runs_queries_but_never_mutations(app: &TestApp) {
    let owner = app.owner().await;
    let query = app.get("/graphql?query=%7Bviewer%7Baccount%7D%7D", &owner).await;
    assert_eq!(query.status(), 200);
    let body: serde_json::Value = query.json().await.expect("json");
    assert_eq!(body["data"]["viewer"]["account"], "main");
    let before = app.snapshot().await;
    let mutation = app.get("/graphql?query=mutation%7BgenerateAppKey(input%3A%7B%7D)%7BappToken%7D%7D", &owner).await;
    assert_eq!(mutation.status(), 405);
    let named = app
        .get("/graphql?query=query%20A%7Bviewer%7Baccount%7D%7Dmutation%20B%7Blogout%7D&operationName=B", &owner)
        .await;
    let status = named.status();
    assert_eq!(status, 405, "{}", named.text().await.unwrap_or_default());
    assert_eq!(app.snapshot().await, before);
    app.graphql(&owner, "{ viewer { account } }", json!({})).await.data("viewer");
}

/// A response's fields come in the order the query selected them (the GraphQL specification's
/// ordering of a result map), whichever order that is.
async fn fields_come_back_in_the_order_they_were_selected(app: &TestApp) {
    let owner = app.owner().await;
    for (query, first, second) in [
        ("%7Bviewer%7Baccount%20resources%7Bid%7D%7D%7D", "\"account\"", "\"resources\""),
        ("%7Bviewer%7Bresources%7Bid%7D%20account%7D%7D", "\"resources\"", "\"account\""),
    ] {
        let response = app.get(&format!("/graphql?query={query}"), &owner).await;
        let text = response.text().await.expect("a body");
        let at = |field: &str| text.find(field).unwrap_or_else(|| panic!("{field} in {text}"));
        assert!(at(first) < at(second), "{first} before {second}: {text}");
    }
}

async fn only_json_posts_are_accepted(app: &TestApp) {
    let url = format!("{}/graphql", app.address);
    for content_type in ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"] {
        let response = app
            .client
            .post(&url)
            .header("content-type", content_type)
            .body(r#"{"query":"{ __typename }"}"#)
            .send()
            .await
            .expect("sent");
        assert_eq!(response.status(), 415, "{content_type}");
    }
    let garbage =
        app.client.post(&url).header("content-type", "application/json").body("{not json").send().await.expect("sent");
    assert_eq!(garbage.status(), 400);
}

async fn oversized_bodies_and_batches_are_refused(app: &TestApp) {
    let url = format!("{}/graphql", app.address);
    let big = json!({ "query": format!("{{ __typename }} # {}", "x".repeat(300 * 1024)) });
    let response = app.client.post(&url).json(&big).send().await.expect("sent");
    assert_eq!(response.status(), 413);
    let eleven: Vec<_> = (0..11).map(|_| json!({ "query": "{ __typename }" })).collect();
    assert_eq!(app.client.post(&url).json(&eleven).send().await.expect("sent").status(), 400);
    let ten: Vec<_> = (0..10).map(|_| json!({ "query": "{ __typename }" })).collect();
    let ok = app.client.post(&url).json(&ten).send().await.expect("sent");
    assert_eq!(ok.status(), 200);
    let answers: serde_json::Value = ok.json().await.expect("json");
    assert_eq!(answers.as_array().map(Vec::len), Some(10));
}

async fn graphiql_introspection_fits_the_limits(app: &TestApp) {
    let response = app.graphql(&Auth::None, INTROSPECTION, json!({})).await;
    assert!(response.data("__schema.types").as_array().is_some_and(|t| t.len() > 20));
}

async fn abusive_depth_is_refused(app: &TestApp) {
    let mut query = String::from("{ __schema { types { fields { type { ");
    for _ in 0..20 {
        query.push_str("ofType { ");
    }
    query.push_str("name");
    query.push_str(&" }".repeat(25));
    let response = app.graphql(&Auth::None, &query, json!({})).await;
    assert!(
        response.0["errors"][0]["message"].as_str().is_some_and(|m| m.contains("nested too deep")),
        "{:#}",
        response.0
    );
}

const INTROSPECTION: &str = r#"
query IntrospectionQuery {
  __schema {
    queryType { name } mutationType { name } subscriptionType { name }
    types { ...FullType }
    directives { name description locations args { ...InputValue } }
  }
}
fragment FullType on __Type {
  kind name description
  fields(includeDeprecated: true) { name description args { ...InputValue } type { ...TypeRef } isDeprecated deprecationReason }
  inputFields { ...InputValue }
  interfaces { ...TypeRef }
  enumValues(includeDeprecated: true) { name description isDeprecated deprecationReason }
  possibleTypes { ...TypeRef }
}
fragment InputValue on __InputValue { name description type { ...TypeRef } defaultValue }
fragment TypeRef on __Type {
  kind name
  ofType { kind name ofType { kind name ofType { kind name ofType { kind name ofType { kind name ofType { kind name ofType { kind name } } } } } } }
}
"#;

crate::backend_tests!(
    health_and_readiness_answer,
    graphiql_is_served_and_explains_the_headers,
    get_runs_queries_but_never_mutations,
    fields_come_back_in_the_order_they_were_selected,
    only_json_posts_are_accepted,
    oversized_bodies_and_batches_are_refused,
    graphiql_introspection_fits_the_limits,
    abusive_depth_is_refused,
);
