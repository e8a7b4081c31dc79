use crate::helpers::{Auth, TestApp};
use serde_json::{json, Value};

const KEY_FIELDS: &str = "id key type account label status hasAccess createdAt roles { id name }";

async fn app_key(app: &TestApp, auth: &Auth, key: &str) -> serde_json::Value {
    let query = format!("query($key: String!) {{ appKey(key: $key) {{ {KEY_FIELDS} }} }}");
    app.graphql(auth, &query, json!({ "key": key })).await.data("appKey")
}

async fn roles_mutation(app: &TestApp, auth: &Auth, name: &str, key: &str, roles: &[String]) -> crate::helpers::Gql {
    let query =
        format!("mutation($key: String!, $roles: [ID!]!) {{ {name}(key: $key, roleIds: $roles) {{ {KEY_FIELDS} }} }}");
    app.graphql(auth, &query, json!({ "key": key, "roles": roles })).await
}

async fn a_new_key_has_the_key_as_label_no_roles_and_no_access(app: &TestApp) {
    let owner = app.owner().await;
    let (key, token) = app.generate_key(&owner, None, &[]).await;
    let suffix = key.strip_prefix("appkey-main-").expect("prefix-account-");
    assert!(suffix.len() == 6 && suffix.bytes().all(|b| b.is_ascii_uppercase()), "{key}");
    assert!(token.starts_with("akt_") && token.len() == 50);
    let view = app_key(app, &owner, &key).await;
    assert_eq!(view["label"], key.as_str());
    assert_eq!(view["type"], "INTERNAL");
    assert_eq!(view["account"], "main");
    assert_eq!(view["status"], "ACTIVE");
    assert_eq!(view["hasAccess"], false);
    assert_eq!(view["roles"], json!([]));
    // A key without roles cannot make requests.
    app.graphql(&Auth::key(&key, &token), "{ viewer { account } }", json!({})).await.assert_code("UNAUTHENTICATED");
    // ... and is on My Keys but not on Application Keys.
    let lists = app.graphql(&owner, "{ myKeys { totalCount } appKeys { totalCount } }", json!({})).await;
    assert_eq!(lists.data("myKeys.totalCount"), 1);
    assert_eq!(lists.data("appKeys.totalCount"), 0);
}

async fn labels_are_trimmed_bounded_and_free_of_control_characters(app: &TestApp) {
    let owner = app.owner().await;
    let (key, _) = app.generate_key(&owner, Some("  ERP sync  "), &[]).await;
    assert_eq!(app_key(app, &owner, &key).await["label"], "ERP sync");
    let (blank, _) = app.generate_key(&owner, Some("   "), &[]).await;
    assert_eq!(app_key(app, &owner, &blank).await["label"], blank.as_str());
    let before = app.snapshot().await;
    let generate = "mutation($input: GenerateAppKeyInput!) { generateAppKey(input: $input) { appToken } }";
    for label in ["x".repeat(201), "line\nbreak".into(), "nul\u{0}".into()] {
        app.graphql(&owner, generate, json!({ "input": { "label": label } })).await.assert_code("BAD_USER_INPUT");
    }
    assert_eq!(app.snapshot().await, before, "a refused generate writes nothing");
    let (exact, _) = app.generate_key(&owner, Some(&"é".repeat(200)), &[]).await;
    assert_eq!(app_key(app, &owner, &exact).await["label"].as_str().map(|l| l.chars().count()), Some(200));
}

async fn a_key_with_roles_calls_the_api_with_their_resources(app: &TestApp) {
    let owner = app.owner().await;
    let restricted = app.restricted_role(&owner).await;
    let (key, token) = app.generate_key(&owner, Some("integration"), &[restricted]).await;
    let viewer =
        app.graphql(&Auth::key(&key, &token), "{ viewer { type account appKey resources { id } } }", json!({})).await;
    assert_eq!(viewer.data("viewer.type"), "APP_KEY");
    assert_eq!(viewer.data("viewer.account"), "main");
    assert_eq!(viewer.data("viewer.appKey"), key.as_str());
    assert_eq!(viewer.data("viewer.resources").as_array().map(Vec::len), Some(4));
    // The VTEX header aliases work too.
    let vtex =
        Auth::Raw(vec![("x-vtex-api-appkey".into(), key.clone()), ("x-vtex-api-apptoken".into(), token.clone())]);
    app.graphql(&vtex, "{ viewer { account } }", json!({})).await.data("viewer");
    // A wrong token for a real key, and a real token for a wrong key, fail alike.
    let other = app.generate_key(&owner, None, &[app.restricted_role(&owner).await]).await;
    let wrong_token = app.graphql(&Auth::key(&key, &other.1), "{ viewer { account } }", json!({})).await;
    let unknown_key = app.graphql(&Auth::key("appkey-main-ZZZZZZ", &token), "{ viewer { account } }", json!({})).await;
    wrong_token.assert_code("UNAUTHENTICATED");
    unknown_key.assert_code("UNAUTHENTICATED");
    assert_eq!(wrong_token.message(), unknown_key.message());
}

async fn the_token_is_shown_once_and_never_again(app: &TestApp) {
    let owner = app.owner().await;
    let restricted = app.restricted_role(&owner).await;
    let (key, token) = app.generate_key(&owner, Some("once"), &[restricted]).await;
    let everything = format!(
        "{{ myKeys {{ edges {{ node {{ {KEY_FIELDS} }} }} }} appKeys {{ edges {{ node {{ {KEY_FIELDS} }} }} }} auditEvents(first: 100) {{ edges {{ node {{ actor action target before after }} }} }} }}"
    );
    let listed = app.graphql(&owner, &everything, json!({})).await;
    assert!(listed.0.to_string().contains(&key));
    assert!(!listed.0.to_string().contains(&token), "the token leaked into a query result");
    let csv = app.get("/export/app-keys.csv", &owner).await.text().await.expect("csv");
    assert!(csv.contains(&key) && !csv.contains(&token));
}

async fn roles_are_set_added_and_removed(app: &TestApp) {
    let owner = app.owner().await;
    let restricted = app.restricted_role(&owner).await;
    let view_role = app.custom_role(&owner, "Viewer", &["ApiKeys.View"]).await;
    let (key, token) = app.generate_key(&owner, None, &[]).await;
    let added = roles_mutation(app, &owner, "addAppKeyRoles", &key, std::slice::from_ref(&view_role)).await;
    assert_eq!(added.data("addAppKeyRoles.hasAccess"), true);
    let both = roles_mutation(app, &owner, "addAppKeyRoles", &key, std::slice::from_ref(&restricted)).await;
    assert_eq!(both.data("addAppKeyRoles.roles").as_array().map(Vec::len), Some(2));
    let removed = roles_mutation(app, &owner, "removeAppKeyRoles", &key, std::slice::from_ref(&restricted)).await;
    assert_eq!(removed.data("removeAppKeyRoles.roles")[0]["id"], view_role.as_str());
    let set = roles_mutation(app, &owner, "setAppKeyRoles", &key, std::slice::from_ref(&restricted)).await;
    assert_eq!(set.data("setAppKeyRoles.roles")[0]["id"], restricted.as_str());
    app.graphql(&Auth::key(&key, &token), "{ users { totalCount } }", json!({})).await.data("users");
    // Removing every role removes the key's access, on the very next request.
    let none = roles_mutation(app, &owner, "setAppKeyRoles", &key, &[]).await;
    assert_eq!(none.data("setAppKeyRoles.hasAccess"), false);
    app.graphql(&Auth::key(&key, &token), "{ viewer { account } }", json!({})).await.assert_code("UNAUTHENTICATED");
    let actions = app.graphql(&owner, "{ auditEvents(first: 100) { edges { node { action } } } }", json!({})).await;
    for action in ["key.add_roles", "key.remove_roles", "key.set_roles"] {
        assert!(actions.0.to_string().contains(action), "{action} was not audited");
    }
}

async fn unknown_role_ids_are_named_and_nothing_changes(app: &TestApp) {
    let owner = app.owner().await;
    let restricted = app.restricted_role(&owner).await;
    let (key, _) = app.generate_key(&owner, None, std::slice::from_ref(&restricted)).await;
    let before = app.snapshot().await;
    for name in ["setAppKeyRoles", "addAppKeyRoles", "removeAppKeyRoles"] {
        let refused = roles_mutation(app, &owner, name, &key, &[restricted.clone(), "no-such-role".into()]).await;
        refused.assert_code("BAD_USER_INPUT");
        assert!(refused.message().contains("no-such-role"), "{}", refused.message());
    }
    let generate = "mutation($input: GenerateAppKeyInput!) { generateAppKey(input: $input) { appToken } }";
    app.graphql(&owner, generate, json!({ "input": { "roleIds": ["ghost"] } })).await.assert_code("BAD_USER_INPUT");
    assert_eq!(app.snapshot().await, before);
    roles_mutation(app, &owner, "setAppKeyRoles", "appkey-main-NOSUCH", &[]).await.assert_code("NOT_FOUND");
    roles_mutation(app, &owner, "setAppKeyRoles", "not a key!", &[]).await.assert_code("BAD_USER_INPUT");
}

async fn deactivation_stops_a_key_at_once_and_keeps_its_roles(app: &TestApp) {
    let owner = app.owner().await;
    let restricted = app.restricted_role(&owner).await;
    let (key, token) = app.generate_key(&owner, None, &[restricted]).await;
    let as_key = Auth::key(&key, &token);
    app.graphql(&as_key, "{ viewer { account } }", json!({})).await.data("viewer");
    let off = app
        .graphql(
            &owner,
            "mutation($k: String!) { deactivateAppKey(key: $k) { status hasAccess roles { id } deactivationReason } }",
            json!({ "k": key }),
        )
        .await;
    assert_eq!(off.data("deactivateAppKey.status"), "INACTIVE");
    assert_eq!(off.data("deactivateAppKey.deactivationReason"), "MANUAL");
    assert_eq!(off.data("deactivateAppKey.hasAccess"), false);
    assert_eq!(off.data("deactivateAppKey.roles").as_array().map(Vec::len), Some(1), "roles are kept");
    app.graphql(&as_key, "{ viewer { account } }", json!({})).await.assert_code("UNAUTHENTICATED");
    let listed = app.graphql(&owner, "{ appKeys(filter: {status: INACTIVE}) { totalCount } }", json!({})).await;
    assert_eq!(listed.data("appKeys.totalCount"), 1);
    let on = app
        .graphql(
            &owner,
            "mutation($k: String!) { activateAppKey(key: $k) { status hasAccess deactivationReason } }",
            json!({ "k": key }),
        )
        .await;
    assert_eq!(on.data("activateAppKey.status"), "ACTIVE");
    assert_eq!(on.data("activateAppKey.deactivationReason"), Value::Null);
    app.graphql(&as_key, "{ viewer { account } }", json!({})).await.data("viewer");
}

async fn a_key_with_save_user_manages_keys_without_escalating(app: &TestApp) {
    let owner = app.owner().await;
    let restricted = app.restricted_role(&owner).await;
    let owner_role = app.owner_role(&owner).await;
    let (key, token) = app.generate_key(&owner, Some("automation"), std::slice::from_ref(&restricted)).await;
    let as_key = Auth::key(&key, &token);
    let (made, _) = app.generate_key(&as_key, Some("made by a key"), std::slice::from_ref(&restricted)).await;
    assert!(made.starts_with("appkey-main-"));
    let before = app.snapshot().await;
    let generate = "mutation($input: GenerateAppKeyInput!) { generateAppKey(input: $input) { appToken } }";
    let denied = app.graphql(&as_key, generate, json!({ "input": { "roleIds": [owner_role] } })).await;
    denied.assert_code("FORBIDDEN");
    assert!(denied.message().contains("LicenseManager.SaveAccessProfile"));
    roles_mutation(app, &as_key, "addAppKeyRoles", &key, std::slice::from_ref(&owner_role))
        .await
        .assert_code("FORBIDDEN");
    assert_eq!(app.snapshot().await, before);
    let events = app
        .graphql(
            &owner,
            "{ auditEvents(filter: {actor: $actor}) { totalCount } }"
                .replace("$actor", &format!("\"appkey:{key}\""))
                .as_str(),
            json!({}),
        )
        .await;
    assert_eq!(events.data("auditEvents.totalCount"), 1);
}

async fn listings_filter_search_and_paginate_newest_first(app: &TestApp) {
    let owner = app.owner().await;
    let restricted = app.restricted_role(&owner).await;
    let mut keys = Vec::new();
    for i in 0..5 {
        let roles = if i % 2 == 0 { vec![restricted.clone()] } else { vec![] };
        keys.push(app.generate_key(&owner, Some(&format!("Batch-{i} 100%_done")), &roles).await.0);
    }
    let page = app
        .graphql(
            &owner,
            "{ myKeys(first: 2) { totalCount pageInfo { hasNextPage endCursor } edges { node { key } } } }",
            json!({}),
        )
        .await;
    assert_eq!(page.data("myKeys.totalCount"), 5);
    assert_eq!(page.data("myKeys.pageInfo.hasNextPage"), true);
    assert_eq!(page.data("myKeys.edges")[0]["node"]["key"], keys[4].as_str(), "newest first");
    let cursor = page.data("myKeys.pageInfo.endCursor");
    let next = app
        .graphql(&owner, "query($after: String) { myKeys(first: 10, after: $after) { pageInfo { hasNextPage } edges { node { key } } } }", json!({ "after": cursor }))
        .await;
    let rest: Vec<String> = next
        .data("myKeys.edges")
        .as_array()
        .expect("edges")
        .iter()
        .map(|e| e["node"]["key"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(rest, [keys[2].clone(), keys[1].clone(), keys[0].clone()]);
    assert_eq!(next.data("myKeys.pageInfo.hasNextPage"), false);
    let with_access = app.graphql(&owner, "{ appKeys { totalCount } }", json!({})).await;
    assert_eq!(with_access.data("appKeys.totalCount"), 3);
    // Search is a case-insensitive substring of key or label, with % and _ taken literally.
    let search = "query($s: String!) { myKeys(filter: {search: $s}) { totalCount } }";
    assert_eq!(app.graphql(&owner, search, json!({ "s": "batch-3" })).await.data("myKeys.totalCount"), 1);
    assert_eq!(app.graphql(&owner, search, json!({ "s": "100%_" })).await.data("myKeys.totalCount"), 5);
    assert_eq!(app.graphql(&owner, search, json!({ "s": "0%d" })).await.data("myKeys.totalCount"), 0);
    // Non-ASCII letters fold alike on both backends.
    let (accented, _) = app.generate_key(&owner, Some("ÉCOLE Nationale"), &[]).await;
    for query in ["école", "ÉCOLE", "École nat"] {
        let found = app
            .graphql(
                &owner,
                "query($s: String!) { myKeys(filter: {search: $s}) { edges { node { key } } } }",
                json!({ "s": query }),
            )
            .await;
        assert_eq!(found.data("myKeys.edges")[0]["node"]["key"], accented.as_str(), "searching {query:?}");
    }
    let by_key = &keys[1][keys[1].len() - 6..].to_lowercase();
    assert_eq!(app.graphql(&owner, search, json!({ "s": by_key })).await.data("myKeys.totalCount"), 1);
    let typed = app.graphql(&owner, "{ a: myKeys(filter: {type: EXTERNAL}) { totalCount } b: appKeys(filter: {type: INTERNAL, status: ACTIVE}) { totalCount } }", json!({})).await;
    assert_eq!(typed.data("a.totalCount"), 0);
    assert_eq!(typed.data("b.totalCount"), 3);
    app.graphql(&owner, "{ myKeys(first: -1) { totalCount } }", json!({})).await.assert_code("BAD_USER_INPUT");
    app.graphql(&owner, "{ myKeys(after: \"garbage\") { totalCount } }", json!({})).await.assert_code("BAD_USER_INPUT");
    let capped = app.graphql(&owner, "{ myKeys(first: 1000) { edges { cursor } } }", json!({})).await;
    assert_eq!(capped.data("myKeys.edges").as_array().map(Vec::len), Some(6));
    assert!(app_key_is_null(app, &owner, "appkey-main-NOSUCH").await);
}

async fn app_key_is_null(app: &TestApp, auth: &Auth, key: &str) -> bool {
    app.graphql(auth, "query($k: String!) { appKey(key: $k) { key } }", json!({ "k": key }))
        .await
        .data("appKey")
        .is_null()
}

async fn one_hundred_keys_page_at_most_one_hundred(app: &TestApp) {
    let owner = app.owner().await;
    for _ in 0..101 {
        app.generate_key(&owner, None, &[]).await;
    }
    let page = app
        .graphql(
            &owner,
            "{ myKeys(first: 500) { totalCount pageInfo { hasNextPage } edges { node { key } } } }",
            json!({}),
        )
        .await;
    assert_eq!(page.data("myKeys.totalCount"), 101);
    assert_eq!(page.data("myKeys.edges").as_array().map(Vec::len), Some(100));
    assert_eq!(page.data("myKeys.pageInfo.hasNextPage"), true);
    let unique: std::collections::BTreeSet<String> =
        page.data("myKeys.edges").as_array().expect("edges").iter().map(|e| e["node"]["key"].to_string()).collect();
    assert_eq!(unique.len(), 100, "key values are unique");
}

/// The snapshot that proves "nothing changed" sees a changed value, not only a changed row count.
async fn the_snapshot_sees_a_value_change_in_a_row(app: &TestApp) {
    let owner = app.owner().await;
    let (key, _) = app.generate_key(&owner, None, &[]).await;
    let before = app.snapshot().await;
    assert!(before.contains("seaql_migrations") && before.contains(&key), "every table, with its values");
    app.graphql(&owner, "mutation($k: String!) { deactivateAppKey(key: $k) { key } }", json!({ "k": key }))
        .await
        .data("deactivateAppKey");
    let audit_free = |snapshot: &str| -> String {
        snapshot.lines().filter(|l| !l.contains("key.deactivate") && !l.contains("app_key.deactivated")).collect()
    };
    assert_ne!(audit_free(&app.snapshot().await), audit_free(&before), "the key's `active` changed");
}

/// A refused key gets the one generic answer; the server's log says which check failed (at debug),
/// never with the token presented.
async fn a_refused_key_gets_the_generic_answer_and_the_log_says_why(app: &TestApp) {
    let owner = app.owner().await;
    let (key, token) = app.generate_key(&owner, None, &[]).await;
    // A well-formed token (its checksum holds), but another key's.
    let (_, wrong) = app.generate_key(&owner, None, &[]).await;
    for (presented, cause) in [(wrong.as_str(), "wrong token"), (token.as_str(), "no role in the account")] {
        let answer = app.get("/auth", &Auth::key(&key, presented)).await;
        assert_eq!(answer.status(), 401);
        let body: serde_json::Value = answer.json().await.expect("a JSON body");
        assert_eq!(body["errors"][0]["message"], "authentication failed: missing, invalid or unauthorised credentials");
        let logs = crate::helpers::captured_logs();
        let logged =
            logs.lines().any(|l| l.contains("key authentication refused") && l.contains(&key) && l.contains(cause));
        assert!(logged, "the cause {cause:?} is logged for {key}");
        assert!(!logs.contains(presented), "a token in the logs");
    }
}

crate::backend_tests!(
    a_refused_key_gets_the_generic_answer_and_the_log_says_why,
    the_snapshot_sees_a_value_change_in_a_row,
    a_new_key_has_the_key_as_label_no_roles_and_no_access,
    labels_are_trimmed_bounded_and_free_of_control_characters,
    a_key_with_roles_calls_the_api_with_their_resources,
    the_token_is_shown_once_and_never_again,
    roles_are_set_added_and_removed,
    unknown_role_ids_are_named_and_nothing_changes,
    deactivation_stops_a_key_at_once_and_keeps_its_roles,
    a_key_with_save_user_manages_keys_without_escalating,
    listings_filter_search_and_paginate_newest_first,
    one_hundred_keys_page_at_most_one_hundred,
);
