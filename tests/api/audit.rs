use crate::helpers::TestApp;
use serde_json::json;

const EVENTS: &str = "query($f: AuditEventFilter) { auditEvents(first: 100, filter: $f) { totalCount edges { node { at actor action target before after clientIp requestId } } } }";

async fn every_key_change_writes_one_audit_event(app: &TestApp) {
    let owner = app.owner().await;
    let restricted = app.restricted_role(&owner).await;
    let (key, _) = app.generate_key(&owner, Some("audited"), &[]).await;
    let set = "mutation($k: String!, $r: [ID!]!) { setAppKeyRoles(key: $k, roleIds: $r) { key } }";
    app.graphql(&owner, set, json!({ "k": key, "r": [restricted] })).await.data("setAppKeyRoles");
    app.graphql(&owner, "mutation($k: String!) { deactivateAppKey(key: $k) { key } }", json!({ "k": key }))
        .await
        .data("deactivateAppKey");
    app.graphql(&owner, "mutation($k: String!) { activateAppKey(key: $k) { key } }", json!({ "k": key }))
        .await
        .data("activateAppKey");
    let events = app.graphql(&owner, EVENTS, json!({ "f": { "target": key } })).await;
    let actions: Vec<String> = events
        .data("auditEvents.edges")
        .as_array()
        .expect("edges")
        .iter()
        .map(|e| e["node"]["action"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(actions, ["key.activate", "key.deactivate", "key.set_roles", "key.generate"], "newest first");
    let set_event = &events.data("auditEvents.edges")[2]["node"];
    assert_eq!(set_event["actor"], "user:owner@example.com");
    // Before and after are JSON values, roles by name.
    assert_eq!(set_event["before"], json!({ "status": "ACTIVE", "roles": [] }));
    assert_eq!(set_event["after"], json!({ "status": "ACTIVE", "roles": ["User Administrator - RESTRICTED"] }));
    assert!(!events.0.to_string().contains(&restricted), "role ids are not what a person reads");
    assert_eq!(set_event["clientIp"], "127.0.0.1");
    assert!(set_event["requestId"].as_str().is_some_and(|id| id.len() >= 32));
}

async fn a_refused_mutation_writes_no_event(app: &TestApp) {
    let owner = app.owner().await;
    let count = |events: crate::helpers::Gql| events.data("auditEvents.totalCount");
    let before = count(app.graphql(&owner, EVENTS, json!({})).await);
    let generate = "mutation($input: GenerateAppKeyInput!) { generateAppKey(input: $input) { appToken } }";
    app.graphql(&owner, generate, json!({ "input": { "label": "x".repeat(300) } })).await.assert_code("BAD_USER_INPUT");
    assert_eq!(count(app.graphql(&owner, EVENTS, json!({})).await), before);
}

async fn the_audit_log_filters_by_action_actor_and_target(app: &TestApp) {
    let owner = app.owner().await;
    app.generate_key(&owner, None, &[]).await;
    app.generate_key(&owner, None, &[]).await;
    let by_action = app.graphql(&owner, EVENTS, json!({ "f": { "action": "key.generate" } })).await;
    assert_eq!(by_action.data("auditEvents.totalCount"), 2);
    let by_actor = app.graphql(&owner, EVENTS, json!({ "f": { "actor": "user:nobody@example.com" } })).await;
    assert_eq!(by_actor.data("auditEvents.totalCount"), 0);
    // Another account sees none of these.
    let other = app.account_with_owner("other").await;
    let theirs = app.graphql(&other, EVENTS, json!({ "f": { "action": "key.generate" } })).await;
    assert_eq!(theirs.data("auditEvents.totalCount"), 0);
}

crate::backend_tests!(
    every_key_change_writes_one_audit_event,
    a_refused_mutation_writes_no_event,
    the_audit_log_filters_by_action_actor_and_target,
);
