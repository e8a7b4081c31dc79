use crate::helpers::{Auth, TestApp};
use serde_json::json;

/// Every protected operation, with arguments that would otherwise be valid enough to reach the guard.
const PROTECTED: &[&str] = &[
    "{ viewer { account } }",
    "{ appKeys { totalCount } }",
    "{ myKeys { totalCount } }",
    "{ appKey(key: \"appkey-main-AAAAAA\") { key } }",
    "{ roles { id } }",
    "{ resources { id } }",
    "{ users { totalCount } }",
    "{ auditEvents { totalCount } }",
    "mutation { logout }",
    "mutation { generateAppKey(input: {}) { appToken } }",
    "mutation { addExternalAppKey(input: {key: \"x\", roleIds: [\"r\"]}) { key } }",
    "mutation { setAppKeyRoles(key: \"x\", roleIds: []) { key } }",
    "mutation { addAppKeyRoles(key: \"x\", roleIds: []) { key } }",
    "mutation { removeAppKeyRoles(key: \"x\", roleIds: []) { key } }",
    "mutation { activateAppKey(key: \"x\") { key } }",
    "mutation { deactivateAppKey(key: \"x\") { key } }",
    "mutation { createAppKeysExport { url } }",
    "mutation { createRole(input: {name: \"r\", resourceIds: []}) { id } }",
    "mutation { updateRole(id: \"r\", input: {}) { id } }",
    "mutation { deleteRole(id: \"r\") }",
    "mutation { addUser(input: {email: \"a@b.co\", roleIds: []}) { oneTimePassword } }",
    "mutation { setUserRoles(userId: \"u\", roleIds: []) { id } }",
    "mutation { removeUser(userId: \"u\") }",
];

async fn every_protected_operation_without_credentials_is_unauthenticated(app: &TestApp) {
    let before = app.snapshot().await;
    for operation in PROTECTED {
        let response = app.graphql(&Auth::None, operation, json!({})).await;
        assert_eq!(response.code(), "UNAUTHENTICATED", "{operation}: {:#}", response.0);
    }
    assert_eq!(app.snapshot().await, before);
}

async fn malformed_auth_headers_are_unauthenticated_but_login_still_works(app: &TestApp) {
    let session = app.owner().await;
    let Auth::Bearer(good) = session else { unreachable!() };
    let bad_headers: Vec<Vec<(&str, String)>> = vec![
        vec![("authorization", "Bearer".into())],
        vec![("authorization", "Basic dXNlcjpwYXNz".into())],
        vec![("authorization", format!("Bearer {}x", good))],
        vec![("authorization", format!("Bearer {}", good.replace("aks_", "akt_")))],
        vec![("x-api-appkey", "appkey-main-ABCDEF".into())],
        vec![("x-api-apptoken", "akt_abc".into())],
        vec![("x-api-appkey", "appkey-main-ABCDEF".into()), ("x-api-apptoken", "akt_abc".into())],
        vec![("x-api-appkey", "bad key value!".into()), ("x-api-apptoken", "akt_abc".into())],
        vec![("authorization", format!("Bearer {good}")), ("x-account", "NOT VALID".into())],
    ];
    for headers in bad_headers {
        let auth = Auth::Raw(headers.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect());
        app.graphql(&auth, "{ viewer { account } }", json!({})).await.assert_code("UNAUTHENTICATED");
        // Public operations ignore whatever credentials came along.
        let login = app.login("main", crate::helpers::OWNER_EMAIL, crate::helpers::OWNER_PASSWORD).await;
        login.data("login.token");
    }
}

async fn a_user_without_save_user_is_forbidden_naming_the_resource(app: &TestApp) {
    let owner = app.owner().await;
    let profile_role = app.custom_role(&owner, "Profiles only", &["LicenseManager.SaveAccessProfile"]).await;
    let user = app.user_with_roles(&owner, "profiles@example.com", &[profile_role]).await;
    let denied = app.graphql(&user, "mutation { generateAppKey(input: {}) { appToken } }", json!({})).await;
    denied.assert_code("FORBIDDEN");
    assert!(denied.message().contains("LicenseManager.SaveUser"), "{}", denied.message());
    assert_eq!(denied.0["errors"][0]["extensions"]["missingResources"][0], "LicenseManager.SaveUser");
    app.graphql(&user, "{ users { totalCount } }", json!({})).await.assert_code("FORBIDDEN");
    // What it does hold works.
    app.graphql(&user, "{ roles { id } }", json!({})).await.data("roles");
}

async fn view_only_holders_can_read_keys_but_not_change_them(app: &TestApp) {
    let owner = app.owner().await;
    let view_role = app.custom_role(&owner, "Auditor", &["ApiKeys.View"]).await;
    let auditor = app.user_with_roles(&owner, "auditor@example.com", &[view_role]).await;
    app.graphql(&auditor, "{ appKeys { totalCount } myKeys { totalCount } auditEvents { totalCount } }", json!({}))
        .await
        .data("appKeys");
    assert_eq!(app.get("/export/app-keys.csv", &auditor).await.status(), 200);
    app.graphql(&auditor, "mutation { generateAppKey(input: {}) { appToken } }", json!({}))
        .await
        .assert_code("FORBIDDEN");
    app.graphql(&auditor, "{ users { totalCount } }", json!({})).await.assert_code("FORBIDDEN");
}

crate::backend_tests!(
    every_protected_operation_without_credentials_is_unauthenticated,
    malformed_auth_headers_are_unauthenticated_but_login_still_works,
    a_user_without_save_user_is_forbidden_naming_the_resource,
    view_only_holders_can_read_keys_but_not_change_them,
);
