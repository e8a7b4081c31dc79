use crate::helpers::{Auth, TestApp};
use serde_json::json;

const ADD: &str =
    "mutation($input: AddUserInput!) { addUser(input: $input) { user { id email roles { name } } oneTimePassword } }";
const SET: &str =
    "mutation($id: ID!, $roles: [ID!]!) { setUserRoles(userId: $id, roleIds: $roles) { id roles { name } } }";
const REMOVE: &str = "mutation($id: ID!) { removeUser(userId: $id) }";

async fn owner_user_id(app: &TestApp, auth: &Auth) -> String {
    app.graphql(auth, "{ viewer { user { id } } }", json!({}))
        .await
        .data("viewer.user.id")
        .as_str()
        .expect("id")
        .to_owned()
}

async fn an_added_user_logs_in_with_the_one_time_password(app: &TestApp) {
    let owner = app.owner().await;
    let restricted = app.restricted_role(&owner).await;
    let added =
        app.graphql(&owner, ADD, json!({ "input": { "email": " Ann@Example.com ", "roleIds": [restricted] } })).await;
    assert_eq!(added.data("addUser.user.email"), "ann@example.com");
    let password = added.data("addUser.oneTimePassword");
    let token = app.login_token("main", "ann@example.com", password.as_str().expect("password")).await;
    let viewer = app.graphql(&Auth::Bearer(token), "{ viewer { user { email } resources { id } } }", json!({})).await;
    assert_eq!(viewer.data("viewer.resources").as_array().map(Vec::len), Some(4));
    let users = app.graphql(&owner, "{ users { totalCount edges { node { email } } } }", json!({})).await;
    assert_eq!(users.data("users.totalCount"), 2);
    assert_eq!(users.data("users.edges")[0]["node"]["email"], "ann@example.com", "newest first");
}

async fn a_duplicate_or_malformed_email_is_refused(app: &TestApp) {
    let owner = app.owner().await;
    app.graphql(&owner, ADD, json!({ "input": { "email": "bob@example.com", "roleIds": [] } })).await.data("addUser");
    let before = app.snapshot().await;
    app.graphql(&owner, ADD, json!({ "input": { "email": "BOB@example.com", "roleIds": [] } }))
        .await
        .assert_code("CONFLICT");
    app.graphql(&owner, ADD, json!({ "input": { "email": "bob", "roleIds": [] } })).await.assert_code("BAD_USER_INPUT");
    let unknown =
        app.graphql(&owner, ADD, json!({ "input": { "email": "carl@example.com", "roleIds": ["nope"] } })).await;
    unknown.assert_code("BAD_USER_INPUT");
    assert!(unknown.message().contains("nope"));
    assert_eq!(app.snapshot().await, before);
}

async fn a_restricted_administrator_cannot_hand_out_owner(app: &TestApp) {
    let owner = app.owner().await;
    let restricted = app.restricted_role(&owner).await;
    let owner_role = app.owner_role(&owner).await;
    let admin = app.user_with_roles(&owner, "admin@example.com", std::slice::from_ref(&restricted)).await;
    let before = app.snapshot().await;
    let denied =
        app.graphql(&admin, ADD, json!({ "input": { "email": "x@example.com", "roleIds": [owner_role] } })).await;
    denied.assert_code("FORBIDDEN");
    assert!(denied.message().contains("LicenseManager.SaveAccessProfile"), "{}", denied.message());
    let me = owner_user_id(app, &admin).await;
    app.graphql(&admin, SET, json!({ "id": me, "roles": [owner_role] })).await.assert_code("FORBIDDEN");
    // Nor take Owner away from, or remove, someone who holds it.
    let the_owner = owner_user_id(app, &owner).await;
    app.graphql(&admin, SET, json!({ "id": the_owner, "roles": [restricted] })).await.assert_code("FORBIDDEN");
    app.graphql(&admin, REMOVE, json!({ "id": the_owner })).await.assert_code("FORBIDDEN");
    assert_eq!(app.snapshot().await, before);
    // Within its own resources it may act.
    app.graphql(&admin, ADD, json!({ "input": { "email": "y@example.com", "roleIds": [restricted] } }))
        .await
        .data("addUser");
}

async fn the_last_owner_can_be_neither_demoted_nor_removed(app: &TestApp) {
    let owner = app.owner().await;
    let me = owner_user_id(app, &owner).await;
    let restricted = app.restricted_role(&owner).await;
    let before = app.snapshot().await;
    app.graphql(&owner, SET, json!({ "id": me, "roles": [restricted] })).await.assert_code("BAD_USER_INPUT");
    app.graphql(&owner, REMOVE, json!({ "id": me })).await.assert_code("BAD_USER_INPUT");
    assert_eq!(app.snapshot().await, before);
    // With a second owner, the first may go.
    let owner_role = app.owner_role(&owner).await;
    let second = app.user_with_roles(&owner, "second@example.com", &[owner_role]).await;
    assert_eq!(app.graphql(&second, REMOVE, json!({ "id": me })).await.data("removeUser"), true);
    app.graphql(&owner, "{ viewer { account } }", json!({})).await.assert_code("UNAUTHENTICATED");
}

/// A refused change rolls back before the next writer begins: one refused right after another
/// (each reads, then writes), however many at once, is refused for its rule, never for a database still locked by the first.
async fn refused_changes_in_a_row_are_each_refused_for_their_rule(app: &TestApp) {
    let owner = app.owner().await;
    let me = owner_user_id(app, &owner).await;
    let restricted = app.restricted_role(&owner).await;
    let before = app.snapshot().await;
    for _ in 0..20 {
        let demote = json!({ "id": me, "roles": [restricted] });
        let remove = json!({ "id": me });
        let answers = futures::future::join_all([
            app.graphql(&owner, SET, demote.clone()),
            app.graphql(&owner, REMOVE, remove.clone()),
            app.graphql(&owner, SET, demote),
            app.graphql(&owner, REMOVE, remove),
        ])
        .await;
        answers.iter().for_each(|answer| answer.assert_code("BAD_USER_INPUT"));
    }
    assert_eq!(app.snapshot().await, before);
}

async fn role_changes_apply_to_the_very_next_request(app: &TestApp) {
    let owner = app.owner().await;
    let restricted = app.restricted_role(&owner).await;
    let user = app.user_with_roles(&owner, "dana@example.com", &[restricted]).await;
    let id = owner_user_id(app, &user).await;
    app.graphql(&user, "{ users { totalCount } }", json!({})).await.data("users");
    app.graphql(&owner, SET, json!({ "id": id, "roles": [] })).await.data("setUserRoles");
    app.graphql(&user, "{ users { totalCount } }", json!({})).await.assert_code("FORBIDDEN");
    let unknown = app.graphql(&owner, SET, json!({ "id": "01900000-0000-7000-8000-000000000000", "roles": [] })).await;
    unknown.assert_code("NOT_FOUND");
}

crate::backend_tests!(
    an_added_user_logs_in_with_the_one_time_password,
    a_duplicate_or_malformed_email_is_refused,
    a_restricted_administrator_cannot_hand_out_owner,
    the_last_owner_can_be_neither_demoted_nor_removed,
    refused_changes_in_a_row_are_each_refused_for_their_rule,
    role_changes_apply_to_the_very_next_request,
);
