//! Upgrading a database: keys made before a migration keep working and get sensible values.
use crate::helpers::{Auth, TestApp};
use migration::{Migrator, MigratorTrait};
use serde_json::json;

/// Keys from before token renewal existed get their creation time as their token's, and keep
/// authenticating; the new resources exist after the upgrade.
async fn the_renewal_migration_upgrades_existing_keys(app: &TestApp) {
    let owner = app.owner().await;
    let restricted = app.restricted_role(&owner).await;
    let (key, token) = app.generate_key(&owner, None, &[restricted]).await;
    let db = &app.store().db;
    Migrator::down(db, Some(1)).await.expect("the renewal migration goes down");
    app.advance_clock(chrono::Duration::days(3));
    Migrator::up(db, None).await.expect("and up again");
    let query = "query($k: String!) { appKey(key: $k) { createdAt tokenCreatedAt renewal { startedAt } } }";
    let owner = app.owner().await;
    let view = app.graphql(&owner, query, json!({ "k": key })).await;
    assert_eq!(view.data("appKey.tokenCreatedAt"), view.data("appKey.createdAt"));
    assert_eq!(view.data("appKey.renewal"), serde_json::Value::Null);
    assert_eq!(app.get("/auth", &Auth::key(&key, &token)).await.status(), 200);
}

crate::backend_tests!(the_renewal_migration_upgrades_existing_keys);
