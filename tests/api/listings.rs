//! The listings as a Relay client pages them: both directions, every order, correct `pageInfo` at
//! the edges; and object identification (`node`, `nodes`) that never crosses accounts.
use crate::helpers::{Auth, TestApp};
use serde_json::{json, Value};

const PAGE: &str = "query($first: Int, $after: String, $last: Int, $before: String, $order: AppKeyOrder) { \
    myKeys(first: $first, after: $after, last: $last, before: $before, orderBy: $order) { \
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor } edges { cursor node { key label } } } }";

fn keys_of(page: &Value) -> Vec<String> {
    page["edges"]
        .as_array()
        .expect("edges")
        .iter()
        .map(|e| e["node"]["key"].as_str().expect("key").to_owned())
        .collect()
}

async fn page(app: &TestApp, auth: &Auth, variables: Value) -> Value {
    app.graphql(auth, PAGE, variables).await.data("myKeys")
}

/// Walks the whole listing forwards and backwards in pages of `size`.
async fn walk(app: &TestApp, auth: &Auth, order: &Value, size: i32) -> (Vec<String>, Vec<String>) {
    let mut forwards = Vec::new();
    let mut after = Value::Null;
    loop {
        let page = page(app, auth, json!({ "first": size, "after": after, "order": order })).await;
        forwards.extend(keys_of(&page));
        assert_eq!(page["pageInfo"]["hasPreviousPage"], !after.is_null(), "{page}");
        if page["pageInfo"]["hasNextPage"] == false {
            break;
        }
        after = page["pageInfo"]["endCursor"].clone();
    }
    let mut backwards = Vec::new();
    let mut before = Value::Null;
    loop {
        let page = page(app, auth, json!({ "last": size, "before": before, "order": order })).await;
        let mut keys = keys_of(&page);
        keys.extend(backwards);
        backwards = keys;
        assert_eq!(page["pageInfo"]["hasNextPage"], !before.is_null(), "{page}");
        if page["pageInfo"]["hasPreviousPage"] == false {
            break;
        }
        before = page["pageInfo"]["startCursor"].clone();
    }
    (forwards, backwards)
}

async fn keys_page_both_ways_in_every_order(app: &TestApp) {
    let owner = app.owner().await;
    let labels = ["delta", "Alpha", "charlie", "bravo", "echo", "alpha two", "Foxtrot"];
    let mut made = Vec::new();
    for label in labels {
        made.push((app.generate_key(&owner, Some(label), &[]).await.0, label.to_lowercase()));
    }
    // Some keys are used, so last use has values and blanks.
    let restricted = app.restricted_role(&owner).await;
    let (used, token) = app.generate_key(&owner, Some("used"), &[restricted]).await;
    made.push((used.clone(), "used".into()));
    app.get("/auth", &Auth::key(&used, &token)).await;

    let newest_first: Vec<String> = made.iter().rev().map(|(k, _)| k.clone()).collect();
    let mut by_key: Vec<String> = made.iter().map(|(k, _)| k.clone()).collect();
    by_key.sort();
    let mut by_label = made.clone();
    by_label.sort_by(|a, b| a.1.cmp(&b.1));
    let by_label: Vec<String> = by_label.into_iter().map(|(k, _)| k).collect();
    let expected = [
        (json!({}), newest_first.clone()),
        (json!({ "field": "CREATED_AT", "direction": "ASC" }), newest_first.iter().rev().cloned().collect::<Vec<_>>()),
        (json!({ "field": "KEY", "direction": "ASC" }), by_key.clone()),
        (json!({ "field": "KEY", "direction": "DESC" }), by_key.iter().rev().cloned().collect()),
        (json!({ "field": "LABEL", "direction": "ASC" }), by_label.clone()),
        (json!({ "field": "LABEL" }), by_label.iter().rev().cloned().collect()),
    ];
    for (order, keys) in expected {
        for size in [1, 3, 100] {
            let (forwards, backwards) = walk(app, &owner, &order, size).await;
            assert_eq!(forwards, keys, "forwards, {order}, pages of {size}");
            assert_eq!(backwards, keys, "backwards, {order}, pages of {size}");
        }
    }
    // Last use, newest first: the used key leads; the never-used follow by creation, newest first.
    let (by_use, _) = walk(app, &owner, &json!({ "field": "LAST_USED_AT" }), 2).await;
    assert_eq!(by_use[0], used, "{by_use:?}");
    let (by_use_asc, back) = walk(app, &owner, &json!({ "field": "LAST_USED_AT", "direction": "ASC" }), 2).await;
    assert_eq!(by_use_asc.last(), Some(&used));
    assert_eq!(by_use_asc, back);
    assert_eq!(by_use_asc.len(), made.len());

    // A cursor of one order does not page another.
    let by_key_page = page(app, &owner, json!({ "first": 2, "order": { "field": "KEY" } })).await;
    let refused = app
        .graphql(
            &owner,
            PAGE,
            json!({ "first": 2, "after": by_key_page["pageInfo"]["endCursor"], "order": { "field": "LABEL" } }),
        )
        .await;
    refused.assert_code("BAD_USER_INPUT");
    assert_eq!(refused.0["errors"][0]["extensions"]["field"], "after");
    // Mixing directions is refused.
    app.graphql(&owner, PAGE, json!({ "first": 2, "last": 2 })).await.assert_code("BAD_USER_INPUT");
}

/// A page shows a key's roles as they are now: renaming a role, changing its resources, creating
/// one and deleting one show on the very next page (the listing remembers the account's roles only
/// until the account changes).
async fn a_page_shows_role_changes_at_once(app: &TestApp) {
    const ROLES: &str = "{ myKeys(first: 5) { edges { node { key roles { name resources { id } } } } } }";
    let owner = app.owner().await;
    let role = app.custom_role(&owner, "Viewers", &["ApiKeys.View"]).await;
    let (key, _) = app.generate_key(&owner, Some("with a role"), std::slice::from_ref(&role)).await;
    async fn roles_shown(app: &TestApp, owner: &Auth, key: &str) -> Vec<(String, Vec<String>)> {
        let page = app.graphql(owner, ROLES, json!({})).await.data("myKeys");
        let edges = page["edges"].as_array().expect("edges").clone();
        let node = &edges.iter().find(|e| e["node"]["key"] == key).expect("the key")["node"];
        let roles = node["roles"].as_array().expect("roles");
        roles
            .iter()
            .map(|r| {
                let resources = r["resources"].as_array().expect("resources");
                let ids = resources.iter().map(|x| x["id"].as_str().expect("id").to_owned()).collect();
                (r["name"].as_str().expect("name").to_owned(), ids)
            })
            .collect()
    }
    let names =
        |shown: Vec<(String, Vec<String>)>| -> Vec<String> { shown.into_iter().map(|(name, _)| name).collect() };
    assert_eq!(roles_shown(app, &owner, &key).await, vec![("Viewers".to_owned(), vec!["ApiKeys.View".to_owned()])]);
    app.graphql(
        &owner,
        "mutation($r: ID!) { updateRole(id: $r, input: {name: \"Editors\", resourceIds: [\"ApiKeys.Edit\"]}) { id } }",
        json!({ "r": role }),
    )
    .await
    .data("updateRole");
    assert_eq!(roles_shown(app, &owner, &key).await, vec![("Editors".to_owned(), vec!["ApiKeys.Edit".to_owned()])]);
    let second = app.custom_role(&owner, "Auditors", &["ApiKeys.View"]).await;
    app.graphql(
        &owner,
        "mutation($k: String!, $r: [ID!]!) { setAppKeyRoles(key: $k, roleIds: $r) { key } }",
        json!({ "k": key, "r": [role.clone(), second] }),
    )
    .await
    .data("setAppKeyRoles");
    assert_eq!(names(roles_shown(app, &owner, &key).await), ["Auditors", "Editors"]);
    app.graphql(&owner, "mutation($r: ID!) { deleteRole(id: $r) }", json!({ "r": role })).await.data("deleteRole");
    assert_eq!(names(roles_shown(app, &owner, &key).await), ["Auditors"]);
}

async fn page_info_is_right_at_the_edges(app: &TestApp) {
    let owner = app.owner().await;
    let empty = page(app, &owner, json!({ "first": 5 })).await;
    assert_eq!(
        empty["pageInfo"],
        json!({ "hasNextPage": false, "hasPreviousPage": false, "startCursor": null, "endCursor": null })
    );
    let empty = page(app, &owner, json!({ "first": 0 })).await;
    assert_eq!(empty["pageInfo"]["hasNextPage"], false, "no key at all: nothing next");
    let empty = page(app, &owner, json!({ "last": 5 })).await;
    assert_eq!(empty["pageInfo"]["hasPreviousPage"], false);

    let (only, _) = app.generate_key(&owner, None, &[]).await;
    let zero = page(app, &owner, json!({ "first": 0 })).await;
    assert_eq!(zero["edges"], json!([]));
    assert_eq!(zero["pageInfo"]["hasNextPage"], true, "first: 0 over one key: one more exists");
    let one = page(app, &owner, json!({ "first": 1 })).await;
    assert_eq!(keys_of(&one), std::slice::from_ref(&only));
    assert_eq!(one["pageInfo"]["hasNextPage"], false);
    assert_eq!(one["pageInfo"]["hasPreviousPage"], false);
    assert_eq!(one["pageInfo"]["startCursor"], one["pageInfo"]["endCursor"]);
    let past = page(app, &owner, json!({ "first": 1, "after": one["pageInfo"]["endCursor"] })).await;
    assert_eq!(past["edges"], json!([]));
    assert_eq!(past["pageInfo"]["hasNextPage"], false);
    assert_eq!(past["pageInfo"]["hasPreviousPage"], true);
}

async fn nodes_are_found_by_global_id_within_the_account_only(app: &TestApp) {
    let owner = app.owner().await;
    let restricted = app.restricted_role(&owner).await;
    let (key, _) = app.generate_key(&owner, Some("mine"), std::slice::from_ref(&restricted)).await;
    let key_id = app
        .graphql(&owner, "query($k: String!) { appKey(key: $k) { id } }", json!({ "k": key }))
        .await
        .data("appKey.id");
    let user_id = app.graphql(&owner, "{ viewer { user { id } } }", json!({})).await.data("viewer.user.id");
    let event_id = app
        .graphql(&owner, "{ auditEvents(first: 1) { edges { node { id } } } }", json!({}))
        .await
        .data("auditEvents.edges")[0]["node"]["id"]
        .clone();
    for id in [&key_id, &user_id, &event_id, &json!(restricted)] {
        let text = id.as_str().expect("an id");
        assert!(!text.contains('-'), "ids are opaque, not bare row ids: {text}");
    }
    let query = "query($id: ID!) { node(id: $id) { __typename id ... on AppKey { key label } ... on Role { name } \
                 ... on User { email } ... on AuditEvent { action } } }";
    let found = app.graphql(&owner, query, json!({ "id": key_id })).await.data("node");
    assert_eq!(found, json!({ "__typename": "AppKey", "id": key_id, "key": key, "label": "mine" }));
    assert_eq!(app.graphql(&owner, query, json!({ "id": restricted })).await.data("node.__typename"), "Role");
    assert_eq!(
        app.graphql(&owner, query, json!({ "id": user_id })).await.data("node.email"),
        crate::helpers::OWNER_EMAIL
    );
    assert_eq!(app.graphql(&owner, query, json!({ "id": event_id })).await.data("node.__typename"), "AuditEvent");
    let many = "query($ids: [ID!]!) { nodes(ids: $ids) { __typename id } }";
    let found = app.graphql(&owner, many, json!({ "ids": [key_id, "garbage", user_id] })).await.data("nodes");
    assert_eq!(found[0]["__typename"], "AppKey");
    assert_eq!(found[1], Value::Null);
    assert_eq!(found[2]["__typename"], "User");

    // Another account finds none of them, and learns nothing.
    let other = app.account_with_owner("other").await;
    for id in [&key_id, &user_id, &event_id, &json!(restricted)] {
        let answer = app.graphql(&other, query, json!({ "id": id })).await;
        assert_eq!(answer.data("node"), Value::Null, "{id} crossed accounts");
    }
    // A key it added as external it does see, as it sees it: without the label.
    let other_role = app.restricted_role(&other).await;
    let add = "mutation($k: String!, $r: [ID!]!) { addExternalAppKey(input: {key: $k, roleIds: $r}) { id } }";
    app.graphql(&other, add, json!({ "k": key, "r": [other_role] })).await.data("addExternalAppKey");
    let seen = app.graphql(&other, query, json!({ "id": key_id })).await.data("node");
    assert_eq!(seen["label"], Value::Null);
    // And each kind needs the permission its own queries need.
    let profiles = app.custom_role(&owner, "Profiles", &["LicenseManager.SaveAccessProfile"]).await;
    let profiler = app.user_with_roles(&owner, "profiler@example.com", &[profiles]).await;
    app.graphql(&profiler, query, json!({ "id": key_id })).await.assert_code("FORBIDDEN");
    app.graphql(&profiler, query, json!({ "id": restricted })).await.data("node");
    // Ids given back to mutations work in both forms.
    let set = "mutation($k: String!, $r: [ID!]!) { setAppKeyRoles(key: $k, roleIds: $r) { roles { id } } }";
    let roles = app.graphql(&owner, set, json!({ "k": key, "r": [restricted] })).await.data("setAppKeyRoles.roles");
    assert_eq!(roles[0]["id"], json!(restricted));
    let raw = crate::helpers::row_id(&restricted);
    app.graphql(&owner, set, json!({ "k": key, "r": [raw] })).await.data("setAppKeyRoles");
}

crate::backend_tests!(
    a_page_shows_role_changes_at_once,
    keys_page_both_ways_in_every_order,
    page_info_is_right_at_the_edges,
    nodes_are_found_by_global_id_within_the_account_only,
);

/// On a SQLite file a listing page is read on the request's own thread, from a connection of its
/// own (`service::inline_read`) that sees every commit made before it. A page that would hold the
/// thread too long — a search through thousands of keys — is handed to the pool, with the same
/// answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_pages_are_read_inline_and_a_long_one_through_the_pool() {
    let app = TestApp::spawn(crate::helpers::Backend::Sqlite).await;
    let owner = app.owner().await;
    let reader = || app.store().inline_read_counts().expect("a SQLite file is read inline");
    let (key, _) = app.generate_key(&owner, Some("just made"), &[]).await;
    let before = reader();
    let first = app.graphql(&owner, "{ myKeys(first: 5) { edges { node { key } } } }", json!({})).await.data("myKeys");
    assert_eq!(keys_of(&first)[0], key, "a key committed a moment ago is on the page");
    let after_page = reader();
    assert_eq!((after_page.inline, after_page.declined), (before.inline + 1, before.declined));

    // 5 000 copies of the key, written in SQL; one of them is the needle a search looks for.
    let copies = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 5000)";
    let db = app.db();
    for sql in [
        format!(
            "{copies} INSERT INTO app_keys (id, key, account_id, label, label_search, token_digest, active, created_at, \
             created_by, token_created_at, updated_at) SELECT k.id || '-' || n.i, k.key || '-' || n.i, k.account_id, \
             CASE n.i WHEN 1234 THEN 'needle' ELSE 'copy ' || n.i END, CASE n.i WHEN 1234 THEN 'needle' ELSE 'copy ' || n.i END, \
             k.token_digest || '-' || n.i, k.active, k.created_at, k.created_by, k.token_created_at, k.updated_at \
             FROM app_keys k, n WHERE k.key = '{key}'"
        ),
        format!(
            "{copies} INSERT INTO key_access (id, app_key_id, account_id, external, removed, added_at, added_by, updated_at) \
             SELECT a.id || '-' || n.i, a.app_key_id || '-' || n.i, a.account_id, a.external, a.removed, a.added_at, \
             a.added_by, a.updated_at FROM key_access a, n WHERE a.app_key_id = (SELECT id FROM app_keys WHERE key = '{key}')"
        ),
    ] {
        sea_orm::ConnectionTrait::execute_unprepared(db, &sql).await.expect("copies");
    }
    let search = r#"{ myKeys(first: 5, filter: {search: "needle"}) { edges { node { key label } } } }"#;
    let found = app.graphql(&owner, search, json!({})).await.data("myKeys");
    assert_eq!(keys_of(&found), vec![format!("{key}-1234")], "{found}");
    let after_search = reader();
    assert_eq!((after_search.inline, after_search.declined), (after_page.inline, after_page.declined + 1));
    app.cleanup().await;
}
