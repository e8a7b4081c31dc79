//! Upgrading a database: keys made before a migration keep working and get sensible values.
use crate::helpers::{Auth, TestApp};
use migration::{Migrator, MigratorTrait};
use serde_json::json;

/// Keys from before token renewal, expiry and last use existed get their creation time as their
/// token's and as their last change, no expiry, no last use and the empty policy, and keep
/// authenticating.
async fn the_round_two_migrations_upgrade_existing_keys(app: &TestApp) {
    let owner = app.owner().await;
    let restricted = app.restricted_role(&owner).await;
    let (key, token) = app.generate_key(&owner, None, &[restricted]).await;
    // The server stops first (an upgrade does not run under a live server's background jobs).
    app.kill_server().await;
    let db = app.db();
    Migrator::down(db, Some(5))
        .await
        .expect("the renewal, expiry, last-use, events, index and policy migrations go down");
    tokio::time::sleep(std::time::Duration::from_millis(50)).await; // created and updated times differ from now
    Migrator::up(db, None).await.expect("and up again");
    let (address, upgraded) = app.another_server().await;
    tokio::spawn(upgraded.run_until_stopped(std::future::pending()));
    let query = "query($k: String!) { appKey(key: $k) { createdAt tokenCreatedAt updatedAt expiresAt lastUsedAt \
                 renewal { startedAt } policy { allowedIps rateLimits { name } credits { remaining } } } }";
    let owner = crate::helpers::binary::owner_session(&app.client, &address).await;
    let view = app.graphql_at(&address, &owner, query, json!({ "k": key })).await;
    assert_eq!(view.data("appKey.tokenCreatedAt"), view.data("appKey.createdAt"));
    assert_eq!(view.data("appKey.updatedAt"), view.data("appKey.createdAt"));
    assert_eq!(view.data("appKey.renewal"), serde_json::Value::Null);
    assert_eq!(view.data("appKey.expiresAt"), serde_json::Value::Null);
    assert_eq!(view.data("appKey.lastUsedAt"), serde_json::Value::Null);
    assert_eq!(view.data("appKey.policy"), json!({ "allowedIps": [], "rateLimits": [], "credits": null }));
    let auth = Auth::key(&key, &token).apply(app.client.get(format!("{address}/auth"))).send().await.expect("sent");
    assert_eq!(auth.status(), 200);
}

crate::backend_tests!(the_round_two_migrations_upgrade_existing_keys);
