//! Scale-out: replicas on one PostgreSQL database, concurrent mutations on both backends, and two
//! replicas starting at once on an empty database.
use crate::helpers::{Auth, Backend, Gql, TestApp, TestDatabase, OWNER_EMAIL, OWNER_PASSWORD};
use appkeys::config::Settings;
use appkeys::Application;
use futures::future::join_all;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

const VIEWER: &str = "{ viewer { account } }";

/// Starts a second replica on the same database and returns its address.
async fn second_replica(app: &TestApp) -> String {
    let (address, replica) = app.another_server().await;
    tokio::spawn(async move {
        let _ = replica.run_until_stopped(std::future::pending()).await;
    });
    address
}

/// Polls `address` until `auth` is refused; returns how long that took after the change.
async fn refused_after(app: &TestApp, address: &str, auth: &Auth, changed_at: Instant) -> Duration {
    loop {
        let response = app.graphql_at(address, auth, VIEWER, json!({})).await;
        if response.0.get("errors").is_some() {
            response.assert_code("UNAUTHENTICATED");
            return changed_at.elapsed();
        }
        assert!(changed_at.elapsed() < Duration::from_secs(3), "replica B still accepts the credential");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn assert_honoured_within_a_second(
    app: &TestApp,
    b: &str,
    what: &str,
    auth: &Auth,
    change: impl std::future::Future<Output = Gql>,
) {
    // Warm replica B's cache first: the change must reach a replica that has the credential cached.
    for _ in 0..3 {
        app.graphql_at(b, auth, VIEWER, json!({})).await.data("viewer");
    }
    let changed = change.await;
    // The change is committed when its response arrives: from then on, B has one second.
    let started = Instant::now();
    assert!(changed.0.get("errors").is_none(), "{what}: {:#}", changed.0);
    let took = refused_after(app, b, auth, started).await;
    assert!(took < Duration::from_secs(1), "{what} took {took:?} to reach replica B");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(appkeys_postgres_tests), ignore = "needs APPKEYS_TEST_POSTGRES_URL at build time")]
async fn postgres_replicas_honour_every_revocation_within_a_second() {
    let app = TestApp::spawn(Backend::Postgres).await;
    let b = second_replica(&app).await;
    let owner = app.owner().await;
    let restricted = app.restricted_role(&owner).await;

    let (key, token) = app.generate_key(&owner, None, std::slice::from_ref(&restricted)).await;
    let as_key = Auth::key(&key, &token);
    let deactivate = "mutation($k: String!) { deactivateAppKey(key: $k) { status } }";
    assert_honoured_within_a_second(
        &app,
        &b,
        "deactivation",
        &as_key,
        app.graphql(&owner, deactivate, json!({ "k": key })),
    )
    .await;

    let (key, token) = app.generate_key(&owner, None, std::slice::from_ref(&restricted)).await;
    let as_key = Auth::key(&key, &token);
    let set = "mutation($k: String!) { setAppKeyRoles(key: $k, roleIds: []) { key } }";
    assert_honoured_within_a_second(&app, &b, "role removal", &as_key, app.graphql(&owner, set, json!({ "k": key })))
        .await;

    let custom = app.custom_role(&owner, "Keys", &["LicenseManager.SaveUser"]).await;
    let (key, token) = app.generate_key(&owner, None, std::slice::from_ref(&custom)).await;
    let as_key = Auth::key(&key, &token);
    let delete = "mutation($id: ID!) { deleteRole(id: $id) }";
    assert_honoured_within_a_second(
        &app,
        &b,
        "role deletion",
        &as_key,
        app.graphql(&owner, delete, json!({ "id": custom })),
    )
    .await;

    let partner = app.account_with_owner("partner").await;
    let partner_role = app.restricted_role(&partner).await;
    let (external, external_token) = app.generate_key(&partner, None, &[partner_role]).await;
    let add = "mutation($k: String!, $r: [ID!]!) { addExternalAppKey(input: {key: $k, roleIds: $r}) { key } }";
    app.graphql(&owner, add, json!({ "k": external, "r": [restricted] })).await.data("addExternalAppKey");
    let in_main = Auth::key_for(&external, &external_token, "main");
    assert_honoured_within_a_second(
        &app,
        &b,
        "external removal",
        &in_main,
        app.graphql(&owner, deactivate, json!({ "k": external })),
    )
    .await;

    let session = app.owner().await;
    assert_honoured_within_a_second(
        &app,
        &b,
        "logout",
        &session,
        app.graphql(&session, "mutation { logout }", json!({})),
    )
    .await;

    let user = app.user_with_roles(&owner, "leaving@example.com", std::slice::from_ref(&restricted)).await;
    let user_id = app.graphql(&user, "{ viewer { user { id } } }", json!({})).await.data("viewer.user.id");
    let remove = "mutation($id: ID!) { removeUser(userId: $id) }";
    assert_honoured_within_a_second(
        &app,
        &b,
        "user removal",
        &user,
        app.graphql(&owner, remove, json!({ "id": user_id })),
    )
    .await;

    // Token renewal: finish stops the old token, undo the new one, delete the key.
    let renew = "mutation($k: String!) { renewAppKeyToken(key: $k) { appToken } }";
    let (key, old) = app.generate_key(&owner, None, std::slice::from_ref(&restricted)).await;
    let renewed = app.graphql(&owner, renew, json!({ "k": key })).await;
    let new = renewed.data("renewAppKeyToken.appToken").as_str().expect("token").to_owned();
    app.graphql_at(&b, &Auth::key(&key, &new), VIEWER, json!({})).await.data("viewer");
    let finish = "mutation($k: String!) { finishAppKeyRenewal(key: $k) { key } }";
    assert_honoured_within_a_second(
        &app,
        &b,
        "renewal finish",
        &Auth::key(&key, &old),
        app.graphql(&owner, finish, json!({ "k": key })),
    )
    .await;
    let newer = app.graphql(&owner, renew, json!({ "k": key })).await;
    let newer = newer.data("renewAppKeyToken.appToken").as_str().expect("token").to_owned();
    let undo = "mutation($k: String!) { undoAppKeyRenewal(key: $k) { key } }";
    assert_honoured_within_a_second(
        &app,
        &b,
        "renewal undo",
        &Auth::key(&key, &newer),
        app.graphql(&owner, undo, json!({ "k": key })),
    )
    .await;
    let delete = "mutation($k: String!) { deleteAppKey(key: $k) }";
    assert_honoured_within_a_second(
        &app,
        &b,
        "deletion",
        &Auth::key(&key, &new),
        app.graphql(&owner, delete, json!({ "k": key })),
    )
    .await;

    // And a grant made on A works on B straight away too.
    let (key, token) = app.generate_key(&owner, None, &[]).await;
    let as_key = Auth::key(&key, &token);
    app.graphql_at(&b, &as_key, VIEWER, json!({})).await.assert_code("UNAUTHENTICATED");
    let grant = "mutation($k: String!, $r: [ID!]!) { addAppKeyRoles(key: $k, roleIds: $r) { key } }";
    app.graphql(&owner, grant, json!({ "k": key, "r": [restricted] })).await.data("addAppKeyRoles");
    app.graphql_at(&b, &as_key, VIEWER, json!({})).await.data("viewer");
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(appkeys_postgres_tests), ignore = "needs APPKEYS_TEST_POSTGRES_URL at build time")]
async fn postgres_replicas_starting_together_migrate_and_bootstrap_once() {
    let database = TestDatabase::create(Backend::Postgres).await;
    let url = database.url.clone();
    let settings = || {
        let mut settings = Settings::for_database(&url);
        settings.bind = "127.0.0.1:0".parse().expect("address");
        settings.bootstrap_email = OWNER_EMAIL.into();
        settings.bootstrap_password = Some(OWNER_PASSWORD.to_owned().into());
        settings
    };
    let (first, second) = tokio::join!(Application::build(settings()), Application::build(settings()));
    let (mut first, mut second) = (first.expect("first replica starts"), second.expect("second replica starts"));
    let bootstrapped = [first.take_bootstrapped().is_some(), second.take_bootstrapped().is_some()];
    assert_eq!(bootstrapped.iter().filter(|b| **b).count(), 1, "exactly one replica bootstraps");
    use sea_orm::{ConnectionTrait, Statement};
    let db = &sea_orm::Database::connect(url.as_str()).await.expect("the test connects");
    let count = |sql: &'static str| async move {
        let row = db
            .query_one_raw(Statement::from_string(db.get_database_backend(), sql))
            .await
            .expect("query")
            .expect("a row");
        row.try_get_by_index::<i64>(0).expect("a count")
    };
    assert_eq!(count("SELECT COUNT(*) FROM accounts").await, 1);
    assert_eq!(count("SELECT COUNT(*) FROM users").await, 1);
    assert_eq!(count("SELECT COUNT(*) FROM roles").await, 2);
    let migrations = <migration::Migrator as migration::MigratorTrait>::migrations().len();
    assert_eq!(count("SELECT COUNT(*) FROM seaql_migrations").await, migrations as i64, "each migration ran once");
    first.state().store.close().await.ok();
    second.state().store.close().await.ok();
    db.clone().close().await.ok();
    drop((first, second));
}

/// 100 mutations at once on one account: every one succeeds, and the final state is exactly what
/// their responses imply (no lost update), with unique key values.
async fn one_hundred_concurrent_mutations_lose_nothing(app: &TestApp) {
    let owner = app.owner().await;
    let restricted = app.restricted_role(&owner).await;
    let viewer_role = app.custom_role(&owner, "Viewer", &["ApiKeys.View"]).await;
    let partner = app.account_with_owner("partner").await;
    let partner_role = app.restricted_role(&partner).await;
    let mut existing = Vec::new();
    for _ in 0..45 {
        existing.push(app.generate_key(&owner, None, &[]).await.0);
    }
    let mut externals = Vec::new();
    for _ in 0..10 {
        externals.push(app.generate_key(&partner, None, std::slice::from_ref(&partner_role)).await.0);
    }
    let both = [restricted.clone(), viewer_role.clone()];
    let set = "mutation($k: String!, $r: [ID!]!) { setAppKeyRoles(key: $k, roleIds: $r) { key } }";
    for key in &existing[10..35] {
        app.graphql(&owner, set, json!({ "k": key, "r": both })).await.data("setAppKeyRoles");
    }

    let add = "mutation($k: String!, $r: [ID!]!) { addAppKeyRoles(key: $k, roleIds: $r) { key } }";
    let remove = "mutation($k: String!, $r: [ID!]!) { removeAppKeyRoles(key: $k, roleIds: $r) { key } }";
    let deactivate = "mutation($k: String!) { deactivateAppKey(key: $k) { key } }";
    let external = "mutation($k: String!, $r: [ID!]!) { addExternalAppKey(input: {key: $k, roleIds: $r}) { key } }";
    let generate = "mutation($l: String!) { generateAppKey(input: {label: $l}) { appKey { key } } }";
    let mut operations: Vec<(&str, Value)> = Vec::new();
    for i in 0..10 {
        operations.push((generate, json!({ "l": format!("concurrent-{i}") })));
    }
    for key in &existing[0..10] {
        operations.push((add, json!({ "k": key, "r": [restricted] })));
        operations.push((add, json!({ "k": key, "r": [viewer_role] })));
    }
    for key in &existing[10..15] {
        operations.push((remove, json!({ "k": key, "r": [viewer_role] })));
        operations.push((deactivate, json!({ "k": key })));
    }
    for key in &existing[15..35] {
        operations.push((remove, json!({ "k": key, "r": [restricted] })));
        operations.push((remove, json!({ "k": key, "r": [viewer_role] })));
    }
    for key in &existing[35..45] {
        operations.push((set, json!({ "k": key, "r": [viewer_role] })));
    }
    for key in &externals {
        operations.push((external, json!({ "k": key, "r": [viewer_role] })));
    }
    assert_eq!(operations.len(), 100);
    let responses =
        join_all(operations.iter().map(|(query, variables)| app.graphql(&owner, query, variables.clone()))).await;
    for response in &responses {
        assert!(response.0.get("errors").is_none(), "a concurrent mutation failed: {:#}", response.0);
    }

    let all = app
        .graphql(&owner, "{ myKeys(first: 100) { totalCount edges { node { key label status roles { id } } } } appKeys(first: 100, filter: {type: EXTERNAL}) { totalCount } }", json!({}))
        .await;
    assert_eq!(all.data("myKeys.totalCount"), 55);
    assert_eq!(all.data("appKeys.totalCount"), 10);
    let nodes = all.data("myKeys.edges");
    let nodes: Vec<&Value> = nodes.as_array().expect("edges").iter().map(|e| &e["node"]).collect();
    let keys: BTreeSet<&str> = nodes.iter().filter_map(|n| n["key"].as_str()).collect();
    assert_eq!(keys.len(), 55, "key values are unique");
    let node = |key: &str| *nodes.iter().find(|n| n["key"] == key).expect("key listed");
    let role_set = |n: &Value| -> BTreeSet<String> {
        n["roles"].as_array().expect("roles").iter().filter_map(|r| r["id"].as_str().map(str::to_owned)).collect()
    };
    let expected_both: BTreeSet<String> = both.iter().cloned().collect();
    for key in &existing[0..10] {
        assert_eq!(role_set(node(key)), expected_both, "both concurrent additions to {key} survive");
    }
    for key in &existing[10..15] {
        assert_eq!(node(key)["status"], "INACTIVE");
        assert_eq!(role_set(node(key)), BTreeSet::from([restricted.clone()]));
    }
    for key in &existing[15..35] {
        assert!(role_set(node(key)).is_empty(), "both concurrent removals from {key} apply");
    }
    for key in &existing[35..45] {
        assert_eq!(role_set(node(key)), BTreeSet::from([viewer_role.clone()]));
    }
    let generated = nodes.iter().filter(|n| n["label"].as_str().is_some_and(|l| l.starts_with("concurrent-"))).count();
    assert_eq!(generated, 10);
}

/// An account's owner and one of its keys holding the RESTRICTED role: its value and credentials.
async fn owner_with_key(app: &TestApp) -> (Auth, String, Auth) {
    let owner = app.owner().await;
    let restricted = app.restricted_role(&owner).await;
    let (key, token) = app.generate_key(&owner, None, std::slice::from_ref(&restricted)).await;
    let as_key = Auth::key(&key, &token);
    (owner, key, as_key)
}

/// A change invalidates only the cached credentials it can affect: writes in account B leave
/// account A's key answered from the cache, while a change to A's key reaches it at once.
async fn changes_in_another_account_leave_cached_credentials_warm(app: &TestApp) {
    use std::sync::atomic::Ordering;
    let (owner, key, as_key) = owner_with_key(app).await;
    let stats = app.state.auth.cache().stats();
    app.graphql(&as_key, VIEWER, json!({})).await.data("viewer");
    let other = app.account_with_owner("busy").await;
    let other_role = app.restricted_role(&other).await;
    // Each round: A's key is cached afresh, B writes twice, A's key is asked again. Rounds slower
    // than half the cache's maximum age (a busy machine) prove nothing and are not counted, nor are
    // rounds in which everything was stamped stale at once (on PostgreSQL, a change feed that missed
    // its heartbeat on a busy machine counts as lost: every replica's cache goes, by design). Each
    // round first lets the last round's entry expire: an entry cached rounds ago (a hit at the
    // round's start) could reach its maximum age during the round, a miss that B did not cause.
    let mut counted = 0;
    for round in 0..6 {
        app.advance_clock(chrono::Duration::from_std(appkeys::auth::cache::MAX_AGE).expect("a short age"));
        // Read before A's key is cached: a stamp between caching and reading would go unseen.
        let epoch = app.state.store.versions().epoch();
        app.graphql(&as_key, VIEWER, json!({})).await.data("viewer");
        let cached_at = Instant::now();
        let (busy_key, _) = app.generate_key(&other, None, std::slice::from_ref(&other_role)).await;
        let set = "mutation($k: String!) { setAppKeyRoles(key: $k, roleIds: []) { key } }";
        app.graphql(&other, set, json!({ "k": busy_key })).await.data("setAppKeyRoles");
        let hits = stats.hits.load(Ordering::SeqCst);
        let misses = stats.misses.load(Ordering::SeqCst);
        app.graphql(&as_key, VIEWER, json!({})).await.data("viewer");
        if cached_at.elapsed() > appkeys::auth::cache::MAX_AGE / 2 || app.state.store.versions().epoch() != epoch {
            continue;
        }
        counted += 1;
        assert_eq!(stats.misses.load(Ordering::SeqCst), misses, "round {round}: B's writes made A's key miss");
        assert!(stats.hits.load(Ordering::SeqCst) > hits, "round {round}: A's key is answered from the cache");
    }
    assert!(counted >= 3, "only {counted} rounds were fast enough to count");
    // A change to A's key itself still reaches it on the very next request.
    let deactivate = "mutation($k: String!) { deactivateAppKey(key: $k) { status } }";
    app.graphql(&owner, deactivate, json!({ "k": key })).await.data("deactivateAppKey");
    app.graphql(&as_key, VIEWER, json!({})).await.assert_code("UNAUTHENTICATED");
}

/// Concurrent requests that all miss the cache for one credential share one database lookup:
/// whichever way they interleave, every miss but one is answered by another request's lookup (or
/// the cache once it is filled), and every request gets the same answer.
async fn concurrent_misses_of_one_credential_share_one_lookup(app: &TestApp) {
    use std::sync::atomic::Ordering;
    let (_, key, as_key) = owner_with_key(app).await;
    let stats = app.state.auth.cache().stats();
    for round in 0..3 {
        // A cold cache: the last round's entry has expired.
        app.advance_clock(chrono::Duration::from_std(appkeys::auth::cache::MAX_AGE).expect("a short age"));
        let (misses, shared) = (stats.misses.load(Ordering::SeqCst), stats.shared.load(Ordering::SeqCst));
        let answers = join_all((0..24).map(|_| app.get("/auth", &as_key))).await;
        assert!(answers.iter().all(|a| a.status() == 200), "round {round}: every request passes");
        let lookups = (stats.misses.load(Ordering::SeqCst) - misses) - (stats.shared.load(Ordering::SeqCst) - shared);
        assert_eq!(lookups, 1, "round {round}: one database lookup for 24 concurrent requests");
    }
    // A wrong token still fails for each request, whatever the others presented.
    let wrong = Auth::key(&key, "akt_wrongwrongwrongwrongwrongwrongwrongwrong000000");
    let answers = join_all((0..4).map(|_| app.get("/auth", &wrong))).await;
    assert!(answers.iter().all(|a| a.status() == 401), "a wrong token is refused");
}

/// A credential in steady use is looked up again in the background before its entry's age runs
/// out, so it does not miss (without the refresh, asking every 50 ms for four maximum ages misses
/// at least three times); a change to it still applies on the very next request.
async fn a_credential_in_steady_use_is_refreshed_before_it_runs_out(app: &TestApp) {
    use std::sync::atomic::Ordering;
    let (owner, key, as_key) = owner_with_key(app).await;
    let stats = app.state.auth.cache().stats();
    assert_eq!(app.get("/auth", &as_key).await.status(), 200);
    let (misses, refreshed) = (stats.misses.load(Ordering::SeqCst), stats.refreshed.load(Ordering::SeqCst));
    let until = Instant::now() + appkeys::auth::cache::MAX_AGE * 4;
    while Instant::now() < until {
        assert_eq!(app.get("/auth", &as_key).await.status(), 200);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let refreshes = stats.refreshed.load(Ordering::SeqCst) - refreshed;
    assert!(refreshes >= 3, "{refreshes} refreshes in four maximum ages");
    // One lookup slower than the time left after `REFRESH_AFTER` (a busy machine) may miss once.
    let missed = stats.misses.load(Ordering::SeqCst) - misses;
    assert!(missed <= 1, "a credential in steady use missed {missed} times");
    let deactivate = "mutation($k: String!) { deactivateAppKey(key: $k) { status } }";
    app.graphql(&owner, deactivate, json!({ "k": key })).await.data("deactivateAppKey");
    assert_eq!(app.get("/auth", &as_key).await.status(), 401, "the change applies at once");
}

crate::backend_tests!(
    one_hundred_concurrent_mutations_lose_nothing,
    changes_in_another_account_leave_cached_credentials_warm,
    concurrent_misses_of_one_credential_share_one_lookup,
    a_credential_in_steady_use_is_refreshed_before_it_runs_out
);
