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
    "mutation { deleteAppKey(key: \"x\") }",
    "mutation { renewAppKeyToken(key: \"x\") { appToken } }",
    "mutation { finishAppKeyRenewal(key: \"x\") { key } }",
    "mutation { undoAppKeyRenewal(key: \"x\") { key } }",
    "{ appKeySettings { renewalPeriodDays } }",
    "mutation { updateAppKeySettings(input: {renewalPeriodDays: 30}) { renewalPeriodDays } }",
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

/// A cached credential is answered before its headers are parsed: only headers that would pass
/// unparsed are answered from the cache, so the same key and token with anything the strict reading
/// refuses (a second credential, a malformed account, a disagreeing duplicate) still fail.
async fn a_cached_credential_is_refused_with_headers_the_strict_reading_refuses(app: &TestApp) {
    let owner = app.owner().await;
    let Auth::Bearer(session) = owner.clone() else { unreachable!() };
    let restricted = app.restricted_role(&owner).await;
    let (key, token) = app.generate_key(&owner, None, &[restricted]).await;
    let good = Auth::key(&key, &token);
    let key_headers = || vec![("x-api-appkey".to_owned(), key.clone()), ("x-api-apptoken".to_owned(), token.clone())];
    // Warm: both credentials are now cached.
    assert_eq!(app.get("/auth", &good).await.status(), 200);
    app.graphql(&owner, "{ viewer { account } }", json!({})).await.data("viewer");
    let with = |extra: &[(&str, &str)]| {
        let mut headers = key_headers();
        headers.extend(extra.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
        Auth::Raw(headers)
    };
    let bearer = format!("Bearer {session}");
    let refused = [
        with(&[("authorization", &bearer)]),
        with(&[("x-account", "NOT VALID")]),
        with(&[("x-vtex-api-appkey", "appkey-main-ZZZZZZ")]),
        with(&[("x-vtex-api-apptoken", "akt_other")]),
        Auth::Raw(vec![("authorization".into(), bearer.clone()), ("x-account".into(), "NOT VALID".into())]),
        Auth::Raw(vec![("authorization".into(), format!("Basic {session}"))]),
    ];
    for (case, auth) in refused.iter().enumerate() {
        assert_eq!(app.get("/auth", auth).await.status(), 401, "case {case}");
        app.graphql(auth, "{ viewer { account } }", json!({})).await.assert_code("UNAUTHENTICATED");
    }
    // The same headers said twice alike, or under their VTEX names, are still the credential.
    let twice = with(&[("x-vtex-api-appkey", key.as_str()), ("x-api-apptoken", token.as_str())]);
    assert_eq!(app.get("/auth", &twice).await.status(), 200);
    assert_eq!(app.get("/auth", &good).await.status(), 200);
    app.graphql(&owner, "{ viewer { account } }", json!({})).await.data("viewer");
}

async fn a_user_without_save_user_is_forbidden_naming_the_resource(app: &TestApp) {
    let owner = app.owner().await;
    let profile_role = app.custom_role(&owner, "Profiles only", &["LicenseManager.SaveAccessProfile"]).await;
    let user = app.user_with_roles(&owner, "profiles@example.com", &[profile_role]).await;
    let denied = app.graphql(&user, "mutation { generateAppKey(input: {}) { appToken } }", json!({})).await;
    denied.assert_code("FORBIDDEN");
    // Either resource would do: both are named.
    assert_eq!(denied.message(), "missing permission: ApiKeys.Edit, LicenseManager.SaveUser");
    assert_eq!(
        denied.0["errors"][0]["extensions"]["missingResources"],
        json!(["ApiKeys.Edit", "LicenseManager.SaveUser"])
    );
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

/// The four API-key permissions: Edit manages keys, View only reads, RenewToken only renews,
/// EditSettings only changes settings; Save user keeps every key operation it had.
async fn the_api_key_permissions_each_allow_their_own_operations(app: &TestApp) {
    let owner = app.owner().await;
    let restricted = app.restricted_role(&owner).await;
    let generate = "mutation($r: [ID!]) { generateAppKey(input: {roleIds: $r}) { appKey { key } } }";
    let deactivate = "mutation($k: String!) { deactivateAppKey(key: $k) { status } }";
    let list = "{ myKeys { totalCount } appKeys { totalCount } appKeySettings { renewalPeriodDays } }";

    let edit_role = app.custom_role(&owner, "Key editors", &["ApiKeys.Edit"]).await;
    let editor = app.user_with_roles(&owner, "editor@example.com", &[edit_role]).await;
    let made = app.graphql(&editor, generate, json!({ "r": null })).await;
    let key = made.data("generateAppKey.appKey.key");
    app.graphql(&editor, deactivate, json!({ "k": key })).await.data("deactivateAppKey");
    app.graphql(&editor, list, json!({})).await.data("myKeys");
    // No escalation through Edit: it cannot hand out roles holding what it lacks.
    app.graphql(&editor, generate, json!({ "r": [restricted] })).await.assert_code("FORBIDDEN");

    let save_role = app.custom_role(&owner, "Savers", &["LicenseManager.SaveUser"]).await;
    let saver = app.user_with_roles(&owner, "saver@example.com", &[save_role]).await;
    let made = app.graphql(&saver, generate, json!({ "r": null })).await;
    app.graphql(&saver, deactivate, json!({ "k": made.data("generateAppKey.appKey.key") }))
        .await
        .data("deactivateAppKey");

    let view_role = app.custom_role(&owner, "Viewers", &["ApiKeys.View"]).await;
    let viewer = app.user_with_roles(&owner, "viewer@example.com", &[view_role]).await;
    app.graphql(&viewer, list, json!({})).await.data("appKeys");
    app.graphql(&viewer, generate, json!({ "r": null })).await.assert_code("FORBIDDEN");
    app.graphql(&viewer, deactivate, json!({ "k": key })).await.assert_code("FORBIDDEN");

    let renew_role = app.custom_role(&owner, "Renewers", &["ApiKeys.RenewToken"]).await;
    let renewer = app.user_with_roles(&owner, "renewer@example.com", &[renew_role]).await;
    app.graphql(&renewer, generate, json!({ "r": null })).await.assert_code("FORBIDDEN");
    app.graphql(&renewer, list, json!({})).await.assert_code("FORBIDDEN");
    let renew = "mutation($k: String!) { renewAppKeyToken(key: $k) { appToken } }";
    app.graphql(&renewer, renew, json!({ "k": key })).await.data("renewAppKeyToken");

    let settings_role = app.custom_role(&owner, "Settings", &["ApiKeys.EditSettings"]).await;
    let tuner = app.user_with_roles(&owner, "tuner@example.com", &[settings_role]).await;
    let update = "mutation { updateAppKeySettings(input: {renewalPeriodDays: 180}) { renewalPeriodDays } }";
    app.graphql(&tuner, update, json!({})).await.data("updateAppKeySettings");
    app.graphql(&tuner, generate, json!({ "r": null })).await.assert_code("FORBIDDEN");
    app.graphql(&editor, update, json!({})).await.assert_code("FORBIDDEN");
}

crate::backend_tests!(
    every_protected_operation_without_credentials_is_unauthenticated,
    malformed_auth_headers_are_unauthenticated_but_login_still_works,
    a_cached_credential_is_refused_with_headers_the_strict_reading_refuses,
    a_user_without_save_user_is_forbidden_naming_the_resource,
    view_only_holders_can_read_keys_but_not_change_them,
    the_api_key_permissions_each_allow_their_own_operations,
);
