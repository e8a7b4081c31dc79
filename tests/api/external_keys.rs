use crate::helpers::{Auth, TestApp};
use serde_json::json;

const ADD: &str = "mutation($key: String!, $roles: [ID!]!) { addExternalAppKey(input: {key: $key, roleIds: $roles}) { key type account label status hasAccess roles { id } } }";
const DEACTIVATE: &str = "mutation($k: String!) { deactivateAppKey(key: $k) { type status hasAccess roles { id } } }";
const ACTIVATE: &str = "mutation($k: String!) { activateAppKey(key: $k) { status } }";

/// A partner account with a key holding the RESTRICTED role there.
async fn partner_key(app: &TestApp) -> (Auth, String, String) {
    let partner = app.account_with_owner("partner").await;
    let restricted = app.restricted_role(&partner).await;
    let (key, token) = app.generate_key(&partner, Some("partner's secret purpose"), &[restricted]).await;
    (partner, key, token)
}

async fn an_external_key_is_added_used_removed_and_added_again(app: &TestApp) {
    let owner = app.owner().await;
    let (_partner, key, token) = partner_key(app).await;
    let restricted = app.restricted_role(&owner).await;
    let in_main = Auth::key_for(&key, &token, "main");
    app.graphql(&in_main, "{ viewer { account } }", json!({})).await.assert_code("UNAUTHENTICATED");

    let added = app.graphql(&owner, ADD, json!({ "key": key, "roles": [restricted] })).await;
    assert_eq!(added.data("addExternalAppKey.type"), "EXTERNAL");
    assert_eq!(added.data("addExternalAppKey.account"), "partner", "the managing account is shown");
    assert!(added.data("addExternalAppKey.label").is_null(), "another account's label is never shown");
    assert_eq!(added.data("addExternalAppKey.hasAccess"), true);
    let viewer = app.graphql(&in_main, "{ viewer { account appKey } }", json!({})).await;
    assert_eq!(viewer.data("viewer.account"), "main");
    // Without X-Account the key still acts on its own account.
    let home = app.graphql(&Auth::key(&key, &token), "{ viewer { account } }", json!({})).await;
    assert_eq!(home.data("viewer.account"), "partner");
    let listed = app
        .graphql(
            &owner,
            "{ appKeys(filter: {type: EXTERNAL}) { totalCount edges { node { account label } } } }",
            json!({}),
        )
        .await;
    assert_eq!(listed.data("appKeys.totalCount"), 1);
    assert_eq!(listed.data("appKeys.edges")[0]["node"]["account"], "partner");
    assert!(!listed.0.to_string().contains("secret purpose"));
    let my_keys = app.graphql(&owner, "{ myKeys { totalCount } }", json!({})).await;
    assert_eq!(my_keys.data("myKeys.totalCount"), 0, "an external key is not one of My Keys");

    let removed = app.graphql(&owner, DEACTIVATE, json!({ "k": key })).await;
    assert_eq!(removed.data("deactivateAppKey.status"), "INACTIVE");
    assert_eq!(removed.data("deactivateAppKey.roles"), json!([]), "removal clears its roles here");
    app.graphql(&in_main, "{ viewer { account } }", json!({})).await.assert_code("UNAUTHENTICATED");
    app.graphql(&Auth::key(&key, &token), "{ viewer { account } }", json!({})).await.data("viewer");
    let before = app.snapshot().await;
    app.graphql(&owner, ACTIVATE, json!({ "k": key })).await.assert_code("REMOVED_EXTERNAL_KEY");
    let set = "mutation($k: String!, $r: [ID!]!) { setAppKeyRoles(key: $k, roleIds: $r) { key } }";
    app.graphql(&owner, set, json!({ "k": key, "r": [restricted] })).await.assert_code("REMOVED_EXTERNAL_KEY");
    assert_eq!(app.snapshot().await, before);

    let again = app.graphql(&owner, ADD, json!({ "key": key, "roles": [restricted] })).await;
    assert_eq!(again.data("addExternalAppKey.status"), "ACTIVE");
    app.graphql(&in_main, "{ viewer { account } }", json!({})).await.data("viewer");
}

async fn adding_an_external_key_checks_what_it_is_given(app: &TestApp) {
    let owner = app.owner().await;
    let (_partner, key, _) = partner_key(app).await;
    let restricted = app.restricted_role(&owner).await;
    let (own, _) = app.generate_key(&owner, None, &[]).await;
    let before = app.snapshot().await;
    app.graphql(&owner, ADD, json!({ "key": "appkey-nowhere-AAAAAA", "roles": [restricted] }))
        .await
        .assert_code("NOT_FOUND");
    app.graphql(&owner, ADD, json!({ "key": own, "roles": [restricted] })).await.assert_code("BAD_USER_INPUT");
    app.graphql(&owner, ADD, json!({ "key": key, "roles": [] })).await.assert_code("BAD_USER_INPUT");
    app.graphql(&owner, ADD, json!({ "key": key, "roles": ["ghost"] })).await.assert_code("BAD_USER_INPUT");
    app.graphql(&owner, ADD, json!({ "key": "spaces are not keys", "roles": [restricted] }))
        .await
        .assert_code("BAD_USER_INPUT");
    assert_eq!(app.snapshot().await, before);
    app.graphql(&owner, ADD, json!({ "key": key, "roles": [restricted] })).await.data("addExternalAppKey");
    app.graphql(&owner, ADD, json!({ "key": key, "roles": [restricted] })).await.assert_code("CONFLICT");
}

async fn deactivation_by_the_owner_stops_the_key_where_it_is_external(app: &TestApp) {
    let owner = app.owner().await;
    let (partner, key, token) = partner_key(app).await;
    let restricted = app.restricted_role(&owner).await;
    app.graphql(&owner, ADD, json!({ "key": key, "roles": [restricted] })).await.data("addExternalAppKey");
    let in_main = Auth::key_for(&key, &token, "main");
    app.graphql(&in_main, "{ viewer { account } }", json!({})).await.data("viewer");
    app.graphql(&partner, DEACTIVATE, json!({ "k": key })).await.data("deactivateAppKey");
    app.graphql(&in_main, "{ viewer { account } }", json!({})).await.assert_code("UNAUTHENTICATED");
    let seen =
        app.graphql(&owner, "{ appKeys { edges { node { key status hasAccess roles { id } } } } }", json!({})).await;
    let node = &seen.data("appKeys.edges")[0]["node"];
    assert_eq!(node["status"], "INACTIVE", "effective status in this account");
    assert_eq!(node["hasAccess"], false);
    assert_eq!(node["roles"].as_array().map(Vec::len), Some(1), "its roles here are kept");
    // Only the owner can switch it back on; here activation changes nothing.
    assert_eq!(app.graphql(&owner, ACTIVATE, json!({ "k": key })).await.data("activateAppKey.status"), "INACTIVE");
    app.graphql(&partner, ACTIVATE, json!({ "k": key })).await.data("activateAppKey");
    app.graphql(&in_main, "{ viewer { account } }", json!({})).await.data("viewer");
}

async fn another_accounts_keys_stay_out_of_sight(app: &TestApp) {
    let owner = app.owner().await;
    let (partner, key, _) = partner_key(app).await;
    let unknown = app.graphql(&owner, "query($k: String!) { appKey(key: $k) { key } }", json!({ "k": key })).await;
    assert!(unknown.data("appKey").is_null(), "a key this account never added is invisible");
    app.graphql(&owner, DEACTIVATE, json!({ "k": key })).await.assert_code("NOT_FOUND");
    app.graphql(&owner, ACTIVATE, json!({ "k": key })).await.assert_code("NOT_FOUND");
    let (own, _) = app.generate_key(&owner, None, &[]).await;
    app.graphql(&partner, DEACTIVATE, json!({ "k": own })).await.assert_code("NOT_FOUND");
    let lists =
        app.graphql(&partner, "{ myKeys { totalCount } appKeys { totalCount } users { totalCount } }", json!({})).await;
    assert_eq!(lists.data("myKeys.totalCount"), 1);
    assert_eq!(lists.data("users.totalCount"), 1);
    // A role id of another account is an unknown role here.
    let partner_role = app.restricted_role(&partner).await;
    let set = "mutation($k: String!, $r: [ID!]!) { setAppKeyRoles(key: $k, roleIds: $r) { key } }";
    app.graphql(&owner, set, json!({ "k": own, "r": [partner_role] })).await.assert_code("BAD_USER_INPUT");
}

crate::backend_tests!(
    an_external_key_is_added_used_removed_and_added_again,
    adding_an_external_key_checks_what_it_is_given,
    deactivation_by_the_owner_stops_the_key_where_it_is_external,
    another_accounts_keys_stay_out_of_sight,
);
