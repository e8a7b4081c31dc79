use crate::helpers::{Auth, TestApp};
use serde_json::{json, Value};

const UPDATE: &str =
    "mutation($id: ID!, $input: UpdateRoleInput!) { updateRole(id: $id, input: $input) { id name resources { id } } }";

async fn every_account_has_the_two_predefined_roles(app: &TestApp) {
    let owner = app.owner().await;
    let roles = app.graphql(&owner, "{ roles { name predefined resources { id } } }", json!({})).await.data("roles");
    assert_eq!(roles[0]["name"], "Owner (Admin Super)");
    assert_eq!(roles[0]["predefined"], true);
    assert_eq!(roles[0]["resources"].as_array().map(Vec::len), Some(6));
    assert_eq!(roles[1]["name"], "User Administrator - RESTRICTED");
    let restricted: Vec<&str> =
        roles[1]["resources"].as_array().expect("resources").iter().filter_map(|r| r["id"].as_str()).collect();
    assert_eq!(restricted, ["ApiKeys.Edit", "ApiKeys.RenewToken", "ApiKeys.View", "LicenseManager.SaveUser"]);
}

async fn predefined_roles_refuse_changes_and_deletion(app: &TestApp) {
    let owner = app.owner().await;
    let owner_role = app.owner_role(&owner).await;
    let before = app.snapshot().await;
    app.graphql(&owner, UPDATE, json!({ "id": owner_role, "input": { "name": "Boss" } }))
        .await
        .assert_code("BAD_USER_INPUT");
    app.graphql(&owner, "mutation($id: ID!) { deleteRole(id: $id) }", json!({ "id": owner_role }))
        .await
        .assert_code("BAD_USER_INPUT");
    assert_eq!(app.snapshot().await, before);
}

async fn a_custom_role_is_created_renamed_changed_and_deleted(app: &TestApp) {
    let owner = app.owner().await;
    let id = app.custom_role(&owner, "Support", &["ApiKeys.View"]).await;
    let updated = app
        .graphql(&owner, UPDATE, json!({ "id": id, "input": { "name": "Support desk", "resourceIds": ["ApiKeys.View", "ApiKeys.RenewToken"] } }))
        .await;
    assert_eq!(updated.data("updateRole.name"), "Support desk");
    assert_eq!(updated.data("updateRole.resources").as_array().map(Vec::len), Some(2));
    let deleted = app.graphql(&owner, "mutation($id: ID!) { deleteRole(id: $id) }", json!({ "id": id })).await;
    assert_eq!(deleted.data("deleteRole"), true);
    let names = app.graphql(&owner, "{ roles { name } }", json!({})).await.data("roles");
    assert!(!names.to_string().contains("Support"));
    let actions =
        app.graphql(&owner, "{ auditEvents { edges { node { action } } } }", json!({})).await.data("auditEvents.edges");
    for action in ["role.create", "role.update", "role.delete"] {
        assert!(actions.to_string().contains(action), "{action} missing from {actions}");
    }
}

async fn role_names_are_unique_and_validated(app: &TestApp) {
    let owner = app.owner().await;
    app.custom_role(&owner, "Support", &[]).await;
    let create = "mutation($input: CreateRoleInput!) { createRole(input: $input) { id } }";
    app.graphql(&owner, create, json!({ "input": { "name": "  Support ", "resourceIds": [] } }))
        .await
        .assert_code("CONFLICT");
    app.graphql(&owner, create, json!({ "input": { "name": "   ", "resourceIds": [] } }))
        .await
        .assert_code("BAD_USER_INPUT");
    let unknown =
        app.graphql(&owner, create, json!({ "input": { "name": "X", "resourceIds": ["Orders.Nope"] } })).await;
    unknown.assert_code("BAD_USER_INPUT");
    assert!(unknown.message().contains("Orders.Nope"));
    app.graphql(&owner, create, json!({ "input": { "name": "Y", "resourceIds": ["not a resource"] } }))
        .await
        .assert_code("BAD_USER_INPUT");
    let missing =
        app.graphql(&owner, UPDATE, json!({ "id": "01900000-0000-7000-8000-000000000000", "input": {} })).await;
    missing.assert_code("NOT_FOUND");
}

async fn a_restricted_administrator_cannot_manage_roles(app: &TestApp) {
    let owner = app.owner().await;
    let restricted = app.restricted_role(&owner).await;
    let admin = app.user_with_roles(&owner, "admin2@example.com", &[restricted]).await;
    let create = "mutation($input: CreateRoleInput!) { createRole(input: $input) { id } }";
    let denied = app.graphql(&admin, create, json!({ "input": { "name": "Mine", "resourceIds": [] } })).await;
    denied.assert_code("FORBIDDEN");
    assert!(denied.message().contains("LicenseManager.SaveAccessProfile"));
}

async fn a_role_cannot_hold_resources_its_creator_lacks(app: &TestApp) {
    let owner = app.owner().await;
    let profiles = app.custom_role(&owner, "Profiles", &["LicenseManager.SaveAccessProfile"]).await;
    let designer = app.user_with_roles(&owner, "designer@example.com", &[profiles]).await;
    let create = "mutation($input: CreateRoleInput!) { createRole(input: $input) { id } }";
    let denied = app
        .graphql(
            &designer,
            create,
            json!({ "input": { "name": "Sneaky", "resourceIds": ["LicenseManager.SaveUser"] } }),
        )
        .await;
    denied.assert_code("FORBIDDEN");
    assert!(denied.message().contains("LicenseManager.SaveUser"));
}

/// `heldBy`: the users and keys holding a role in this account, each list shown only to a caller
/// who may read it; another account's holders never.
async fn a_role_tells_who_holds_it(app: &TestApp) {
    let owner = app.owner().await;
    let readers = app.custom_role(&owner, "Readers", &["ApiKeys.View"]).await;
    let (key, token) = app.generate_key(&owner, None, std::slice::from_ref(&readers)).await;
    app.user_with_roles(&owner, "reader@example.com", std::slice::from_ref(&readers)).await;
    let (removed_key, _) = app.generate_key(&owner, None, std::slice::from_ref(&readers)).await;
    app.graphql(&owner, "mutation($k: String!) { deleteAppKey(key: $k) }", json!({ "k": removed_key })).await;
    let partner = app.account_with_owner("partner").await;
    let partner_role = app.restricted_role(&partner).await;
    app.generate_key(&partner, None, &[partner_role]).await;
    let query = "{ roles { name heldBy { users keys } } }";
    let held = |roles: Value, name: &str| {
        roles.as_array().expect("roles").iter().find(|r| r["name"] == name).expect(name)["heldBy"].clone()
    };
    let roles = app.graphql(&owner, query, json!({})).await.data("roles");
    assert_eq!(held(roles.clone(), "Readers"), json!({ "users": ["reader@example.com"], "keys": [key] }));
    assert_eq!(held(roles.clone(), "Owner (Admin Super)"), json!({ "users": ["owner@example.com"], "keys": [] }));
    assert_eq!(held(roles, "User Administrator - RESTRICTED"), json!({ "users": [], "keys": [] }), "not the partner's");
    // A key that may read keys but not users sees the keys alone.
    let as_reader = Auth::key(&key, &token);
    let roles = app.graphql(&as_reader, query, json!({})).await.data("roles");
    assert_eq!(held(roles, "Readers"), json!({ "users": [], "keys": [key] }));
}

crate::backend_tests!(
    a_role_tells_who_holds_it,
    every_account_has_the_two_predefined_roles,
    predefined_roles_refuse_changes_and_deletion,
    a_custom_role_is_created_renamed_changed_and_deleted,
    role_names_are_unique_and_validated,
    a_restricted_administrator_cannot_manage_roles,
    a_role_cannot_hold_resources_its_creator_lacks,
);
