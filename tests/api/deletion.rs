//! Deleting a key: irreversible, at once everywhere, gone from every listing and export, its audit
//! history kept.
use crate::helpers::{Auth, TestApp};
use serde_json::json;

const DELETE: &str = "mutation($k: String!) { deleteAppKey(key: $k) }";
const ADD: &str = "mutation($k: String!, $r: [ID!]!) { addExternalAppKey(input: {key: $k, roleIds: $r}) { key } }";

async fn listed(app: &TestApp, auth: &Auth, key: &str) -> bool {
    let lists = app
        .graphql(
            auth,
            "{ myKeys(first: 100) { edges { node { key } } } appKeys(first: 100) { edges { node { key } } } }",
            json!({}),
        )
        .await;
    lists.0["data"].to_string().contains(key)
}

async fn a_deleted_key_stops_everywhere_and_leaves_every_listing(app: &TestApp) {
    let owner = app.owner().await;
    let restricted = app.restricted_role(&owner).await;
    let (key, token) = app.generate_key(&owner, Some("to delete"), std::slice::from_ref(&restricted)).await;
    let partner = app.account_with_owner("partner").await;
    let partner_role = app.restricted_role(&partner).await;
    app.graphql(&partner, ADD, json!({ "k": key, "r": [partner_role.clone()] })).await.data("addExternalAppKey");
    let here = Auth::key(&key, &token);
    let there = Auth::key_for(&key, &token, "partner");
    // Warm the caches: deletion must reach a cached credential too.
    assert_eq!(app.get("/auth", &here).await.status(), 200);
    assert_eq!(app.get("/auth", &there).await.status(), 200);
    assert!(listed(app, &owner, &key).await && listed(app, &partner, &key).await);

    let deleted = app.graphql(&owner, DELETE, json!({ "k": key })).await;
    assert_eq!(deleted.data("deleteAppKey"), true);
    assert_eq!(app.get("/auth", &here).await.status(), 401);
    assert_eq!(app.get("/auth", &there).await.status(), 401);
    app.graphql(&here, "{ viewer { account } }", json!({})).await.assert_code("UNAUTHENTICATED");
    assert!(!listed(app, &owner, &key).await, "still listed in its own account");
    assert!(!listed(app, &partner, &key).await, "still listed where it was external");
    let lookup = app.graphql(&owner, "query($k: String!) { appKey(key: $k) { key } }", json!({ "k": key })).await;
    assert_eq!(lookup.data("appKey"), serde_json::Value::Null);
    for auth in [&owner, &partner] {
        let export = app.get("/export/app-keys.csv", auth).await.text().await.expect("csv");
        assert!(!export.contains(&key), "the export still has it: {export}");
    }
    // It cannot come back as an external key, and it cannot be deleted twice.
    let readd = app.graphql(&partner, ADD, json!({ "k": key, "r": [partner_role] })).await;
    readd.assert_code("NOT_FOUND");
    app.graphql(&owner, DELETE, json!({ "k": key })).await.assert_code("NOT_FOUND");
    // Its history stays.
    let query = "query($k: String!) { auditEvents(filter: {target: $k}) { edges { node { action before after } } } }";
    let events = app.graphql(&owner, query, json!({ "k": key })).await.data("auditEvents.edges");
    let actions: Vec<&str> =
        events.as_array().expect("events").iter().filter_map(|e| e["node"]["action"].as_str()).collect();
    assert_eq!(actions, ["key.delete", "key.generate"]);
    assert_eq!(events[0]["node"]["after"], serde_json::Value::Null);
    assert!(!events.to_string().contains(&token));
}

async fn only_internal_keys_can_be_deleted_and_refusals_change_nothing(app: &TestApp) {
    let owner = app.owner().await;
    let partner = app.account_with_owner("partner").await;
    let partner_role = app.restricted_role(&partner).await;
    let (external, external_token) = app.generate_key(&partner, None, &[partner_role]).await;
    let restricted = app.restricted_role(&owner).await;
    app.graphql(&owner, ADD, json!({ "k": external, "r": [restricted] })).await.data("addExternalAppKey");
    let before = app.snapshot().await;
    let refused = app.graphql(&owner, DELETE, json!({ "k": external })).await;
    refused.assert_code("BAD_USER_INPUT");
    assert!(refused.message().contains("only its owner"), "{}", refused.message());
    app.graphql(&owner, DELETE, json!({ "k": "appkey-main-NOSUCH" })).await.assert_code("NOT_FOUND");
    app.graphql(&owner, DELETE, json!({ "k": "not a key" })).await.assert_code("BAD_USER_INPUT");
    let view_role = app.custom_role(&owner, "Viewers", &["ApiKeys.View"]).await;
    let snapshot = app.snapshot().await;
    assert_ne!(before, snapshot);
    let viewer = app.user_with_roles(&owner, "viewer@example.com", &[view_role]).await;
    let after_user = app.snapshot().await;
    let (own, _) = app.generate_key(&owner, None, &[]).await;
    let with_key = app.snapshot().await;
    app.graphql(&viewer, DELETE, json!({ "k": own })).await.assert_code("FORBIDDEN");
    assert_eq!(app.snapshot().await, with_key, "a refused delete writes nothing");
    assert_ne!(after_user, with_key);
    // The external key still works in its own account.
    assert_eq!(app.get("/auth", &Auth::key(&external, &external_token)).await.status(), 200);
}

crate::backend_tests!(
    a_deleted_key_stops_everywhere_and_leaves_every_listing,
    only_internal_keys_can_be_deleted_and_refusals_change_nothing,
);
