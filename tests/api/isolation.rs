//! Tenant isolation: every principal kind of account B, against every query, mutation and HTTP
//! route that could reach account A's keys, users, roles or audit log. A sees no change; B learns
//! nothing (NOT_FOUND, FORBIDDEN or an empty answer — never A's data).
use crate::helpers::{Auth, TestApp};
use serde_json::json;

async fn account_b_can_neither_see_nor_touch_account_a(app: &TestApp) {
    // Account A ("main"): a key, a user, a custom role, audit events.
    let a_owner = app.owner().await;
    let a_restricted = app.restricted_role(&a_owner).await;
    let a_role = app.custom_role(&a_owner, "A secret role", &["ApiKeys.View"]).await;
    let (a_key, a_token) =
        app.generate_key(&a_owner, Some("A private label"), std::slice::from_ref(&a_restricted)).await;
    let a_user = app.user_with_roles(&a_owner, "alice@a.example.com", std::slice::from_ref(&a_role)).await;
    let a_user_id = app.graphql(&a_user, "{ viewer { user { id } } }", json!({})).await.data("viewer.user.id");

    // Account B and its principals: owner, RESTRICTED admin, its own key, and an external key
    // (account C's key that B granted the RESTRICTED role).
    let b_owner = app.account_with_owner("bravo").await;
    let b_restricted = app.restricted_role(&b_owner).await;
    let b_admin = app.user_with_roles(&b_owner, "admin@b.example.com", std::slice::from_ref(&b_restricted)).await;
    let (b_key, b_token) = app.generate_key(&b_owner, None, std::slice::from_ref(&b_restricted)).await;
    let c_owner = app.account_with_owner("charlie").await;
    let c_restricted = app.restricted_role(&c_owner).await;
    let (c_key, c_token) = app.generate_key(&c_owner, None, &[c_restricted]).await;
    let add = "mutation($k: String!, $r: [ID!]!) { addExternalAppKey(input: {key: $k, roleIds: $r}) { key } }";
    app.graphql(&b_owner, add, json!({ "k": c_key, "r": [b_restricted] })).await.data("addExternalAppKey");
    let principals = [
        ("B owner", b_owner.clone()),
        ("B restricted admin", b_admin),
        ("B app key", Auth::key(&b_key, &b_token)),
        ("C key external in B", Auth::key_for(&c_key, &c_token, "bravo")),
    ];

    let before = app.snapshot().await;
    let secrets = [
        a_key.as_str(),
        "A private label",
        "A secret role",
        "alice@a.example.com",
        a_restricted.as_str(),
        a_role.as_str(),
    ];
    for (who, auth) in &principals {
        // Reads answer from B's own account only.
        let reads = app
            .graphql(
                auth,
                "query($k: String!) { appKey(key: $k) { key } appKeys(first: 100) { edges { node { key label } } } myKeys(first: 100) { edges { node { key label } } } roles { id name } users(first: 100) { edges { node { id email } } } auditEvents(first: 100) { edges { node { actor target before after } } } }",
                json!({ "k": a_key }),
            )
            .await;
        let text = reads.0.to_string();
        for secret in secrets {
            assert!(!text.contains(secret), "{who} learned {secret:?}: {text}");
        }
        assert!(reads.0["data"]["appKey"].is_null(), "{who} sees A's key");

        // Mutations aimed at A's things find nothing.
        let not_found = [
            ("mutation($k: String!) { deactivateAppKey(key: $k) { key } }", json!({ "k": a_key })),
            ("mutation($k: String!) { activateAppKey(key: $k) { key } }", json!({ "k": a_key })),
            ("mutation($k: String!) { setAppKeyRoles(key: $k, roleIds: []) { key } }", json!({ "k": a_key })),
            (
                "mutation($k: String!, $r: [ID!]!) { addAppKeyRoles(key: $k, roleIds: $r) { key } }",
                json!({ "k": a_key, "r": [b_restricted] }),
            ),
            (
                "mutation($k: String!, $r: [ID!]!) { removeAppKeyRoles(key: $k, roleIds: $r) { key } }",
                json!({ "k": a_key, "r": [b_restricted] }),
            ),
            ("mutation($k: String!) { deleteAppKey(key: $k) }", json!({ "k": a_key })),
            ("mutation($k: String!) { renewAppKeyToken(key: $k) { appToken } }", json!({ "k": a_key })),
            ("mutation($k: String!) { finishAppKeyRenewal(key: $k) { key } }", json!({ "k": a_key })),
            ("mutation($k: String!) { undoAppKeyRenewal(key: $k) { key } }", json!({ "k": a_key })),
            ("mutation($u: ID!) { setUserRoles(userId: $u, roleIds: []) { id } }", json!({ "u": a_user_id })),
            ("mutation($u: ID!) { removeUser(userId: $u) }", json!({ "u": a_user_id })),
            ("mutation($r: ID!) { updateRole(id: $r, input: {name: \"mine\"}) { id } }", json!({ "r": a_role })),
            ("mutation($r: ID!) { deleteRole(id: $r) }", json!({ "r": a_role })),
        ];
        for (mutation, variables) in not_found {
            let code = app.graphql(auth, mutation, variables).await.code();
            assert!(code == "NOT_FOUND" || code == "FORBIDDEN", "{who}: {mutation} answered {code}");
        }
        // A's role ids are unknown roles in B.
        let borrow = "mutation($k: String!, $r: [ID!]!) { addAppKeyRoles(key: $k, roleIds: $r) { key } }";
        let code = app.graphql(auth, borrow, json!({ "k": b_key, "r": [a_role] })).await.code();
        assert!(code == "BAD_USER_INPUT" || code == "FORBIDDEN", "{who}: borrowing A's role answered {code}");
        let user =
            "mutation($r: [ID!]!) { addUser(input: {email: \"mallory@b.example.com\", roleIds: $r}) { user { id } } }";
        let code = app.graphql(auth, user, json!({ "r": [a_restricted] })).await.code();
        assert!(code == "BAD_USER_INPUT" || code == "FORBIDDEN", "{who}: granting A's role answered {code}");

        // HTTP routes: the export is B's, and credentials of B do not act on A.
        let csv = app.get("/export/app-keys.csv", auth).await.text().await.expect("export");
        assert!(!csv.contains(&a_key), "{who}'s export lists A's key");
    }
    let b_key_in_a = Auth::key_for(&b_key, &b_token, "main");
    app.graphql(&b_key_in_a, "{ viewer { account } }", json!({})).await.assert_code("UNAUTHENTICATED");
    assert_eq!(app.get("/auth", &b_key_in_a).await.status(), 401);
    let Auth::Bearer(b_session) = &b_owner else { unreachable!() };
    let b_session_in_a =
        Auth::Raw(vec![("authorization".into(), format!("Bearer {b_session}")), ("x-account".into(), "main".into())]);
    app.graphql(&b_session_in_a, "{ viewer { account } }", json!({})).await.assert_code("UNAUTHENTICATED");
    // A's own key keeps working, and A's data is exactly as it was.
    app.graphql(&Auth::key(&a_key, &a_token), "{ viewer { account } }", json!({})).await.data("viewer");
    assert_eq!(app.snapshot().await, before, "account A (and everything else) is unchanged");
}

crate::backend_tests!(account_b_can_neither_see_nor_touch_account_a);
