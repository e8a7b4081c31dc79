//! Upgrading a database: keys made before a migration keep working and get sensible values.
use crate::helpers::{Auth, TestApp};
use migration::{Migrator, MigratorTrait};
use serde_json::json;

/// Keys from before token renewal, expiry and last use existed get their creation time as their
/// token's and as their last change, no expiry and no last use, and keep authenticating.
async fn the_round_two_migrations_upgrade_existing_keys(app: &TestApp) {
    let owner = app.owner().await;
    let restricted = app.restricted_role(&owner).await;
    let (key, token) = app.generate_key(&owner, None, &[restricted]).await;
    let db = &app.store().db;
    Migrator::down(db, Some(2)).await.expect("the renewal, expiry and last-use migrations go down");
    app.advance_clock(chrono::Duration::days(3));
    Migrator::up(db, None).await.expect("and up again");
    let query = "query($k: String!) { appKey(key: $k) { createdAt tokenCreatedAt updatedAt expiresAt lastUsedAt \
                 renewal { startedAt } } }";
    let owner = app.owner().await;
    let view = app.graphql(&owner, query, json!({ "k": key })).await;
    assert_eq!(view.data("appKey.tokenCreatedAt"), view.data("appKey.createdAt"));
    assert_eq!(view.data("appKey.updatedAt"), view.data("appKey.createdAt"));
    assert_eq!(view.data("appKey.renewal"), serde_json::Value::Null);
    assert_eq!(view.data("appKey.expiresAt"), serde_json::Value::Null);
    assert_eq!(view.data("appKey.lastUsedAt"), serde_json::Value::Null);
    assert_eq!(app.get("/auth", &Auth::key(&key, &token)).await.status(), 200);
}

crate::backend_tests!(the_round_two_migrations_upgrade_existing_keys);
