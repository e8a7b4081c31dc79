//! Upgrading a database: keys made before a migration keep working and get sensible values.
use crate::helpers::{Auth, TestApp};
use migration::{Migrator, MigratorTrait};
use sea_orm::ConnectionTrait;
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
    // Down to where round one ended (nine migrations), so every later migration goes down and up.
    let later = u32::try_from(Migrator::migrations().len() - 9).expect("a count");
    Migrator::down(db, Some(later))
        .await
        .expect("the renewal, expiry, last-use, events, index, policy, usage and leak migrations go down");
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

/// A new key's access row in the owner's account (the row its usage points belong to).
async fn new_key_access(app: &TestApp) -> String {
    let owner = app.owner().await;
    let restricted = app.restricted_role(&owner).await;
    let (key, _) = app.generate_key(&owner, None, &[restricted]).await;
    app.scalar(format!("SELECT a.id FROM key_access a JOIN app_keys k ON k.id = a.app_key_id WHERE k.key = '{key}'"))
        .await
}

/// Usage counted before daily points were written with their hours: the upgrade adds the hours kept
/// into their days (a day rolled up in part keeps its row and gets the rest), and going down takes
/// them out again, leaving the rows as the earlier roll-up expects them.
async fn usage_hours_kept_are_added_into_their_days(app: &TestApp) {
    let access = new_key_access(app).await;
    let account: String = app.scalar(format!("SELECT account_id FROM key_access WHERE id = '{access}'")).await;
    app.kill_server().await;
    let db = app.db();
    // The last three: the layout by key, the flush's fillfactor, then the day sums.
    Migrator::down(db, Some(3)).await.expect("the day-sums migration goes down");
    let run = |sql: String| async move {
        db.execute_raw(sea_orm::Statement::from_string(db.get_database_backend(), sql)).await.expect("ran");
    };
    // Before: day 0 had two hours left and a row rolled up from its others; day 1 only hours.
    let day = 20_000 * 86_400_i64;
    for (granularity, bucket, valid, forbidden) in
        [(1, day + 3_600, 2, 1), (1, day + 7_200, 3, 0), (2, day, 10, 4), (1, day + 86_400, 5, 0)]
    {
        run(format!(
            "INSERT INTO key_usage (access_id, account_id, granularity, bucket, valid, forbidden) \
             VALUES ('{access}', '{account}', {granularity}, {bucket}, {valid}, {forbidden})"
        ))
        .await;
    }
    let days = || async {
        let sql = format!(
            "SELECT bucket, valid, forbidden FROM key_usage WHERE access_id = '{access}' AND granularity = 2 ORDER BY bucket"
        );
        let rows =
            db.query_all_raw(sea_orm::Statement::from_string(db.get_database_backend(), sql)).await.expect("read");
        rows.iter()
            .map(|row| {
                let at: i64 = row.try_get_by_index(0).expect("bucket");
                let valid: i64 = row.try_get_by_index(1).expect("valid");
                let forbidden: i64 = row.try_get_by_index(2).expect("forbidden");
                (at, valid, forbidden)
            })
            .collect::<Vec<_>>()
    };
    Migrator::up(db, None).await.expect("up");
    assert_eq!(days().await, vec![(day, 15, 5), (day + 86_400, 5, 0)], "each day holds all its hours");
    let hours: i64 =
        app.scalar(format!("SELECT COUNT(*) FROM key_usage WHERE access_id = '{access}' AND granularity = 1")).await;
    assert_eq!(hours, 3, "the hours stay until their retention");
    Migrator::down(db, Some(3)).await.expect("down");
    assert_eq!(days().await, vec![(day, 10, 4)], "down leaves the rolled-up row alone and drops the rest");
    Migrator::up(db, None).await.expect("up again");
    assert_eq!(days().await, vec![(day, 15, 5), (day + 86_400, 5, 0)]);
}

/// PostgreSQL: the tables every usage flush updates leave room on their pages (HOT updates), and
/// going down gives the default back. SQLite has no such setting: its migration goes down and up
/// again doing nothing.
async fn the_flush_tables_leave_room_for_updates(app: &TestApp) {
    let postgres = app.store().backend() == sea_orm::DatabaseBackend::Postgres;
    let options = || async {
        let mut found = Vec::new();
        for table in ["key_usage", "key_permission_use", "key_client_addresses"] {
            let sql = format!(
                "SELECT COALESCE(array_to_string(reloptions, ','), '') FROM pg_class WHERE relname = '{table}'"
            );
            found.push(if postgres { app.scalar::<String>(sql).await } else { "fillfactor=60".to_owned() });
        }
        found
    };
    assert_eq!(options().await, vec!["fillfactor=60"; 3]);
    app.kill_server().await;
    // The last two: the layout by key, then the fillfactor.
    Migrator::down(app.db(), Some(2)).await.expect("down");
    if postgres {
        assert_eq!(options().await, vec!["fillfactor=60", "", ""]);
    }
    Migrator::up(app.db(), None).await.expect("up again");
    assert_eq!(options().await, vec!["fillfactor=60"; 3]);
    let applied: i64 = app.scalar("SELECT COUNT(*) FROM seaql_migrations").await;
    assert_eq!(applied, i64::try_from(Migrator::migrations().len()).expect("a count"), "every migration applied");
}

/// SQLite: `key_usage` is stored in the order of its primary key (`WITHOUT ROWID`), so a key's
/// points lie together; going down rebuilds it as a rowid table, and both ways every row and count
/// is kept, with the table's indexes. PostgreSQL: nothing changes, and the rows are kept too.
async fn usage_is_stored_by_key(app: &TestApp) {
    let sqlite = app.store().backend() == sea_orm::DatabaseBackend::Sqlite;
    let access = new_key_access(app).await;
    app.kill_server().await;
    let db = app.db();
    let run = |sql: String| async move {
        db.execute_raw(sea_orm::Statement::from_string(db.get_database_backend(), sql)).await.expect("ran");
    };
    run(format!(
        "INSERT INTO key_usage (access_id, account_id, granularity, bucket, valid, invalid_token) \
         SELECT id, account_id, 1, 3600, 7, 2 FROM key_access WHERE id = '{access}'"
    ))
    .await;
    let layout = || async {
        if !sqlite {
            return None;
        }
        let sql: String = app.scalar("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'key_usage'").await;
        let indexes: i64 = app
            .scalar(
                "SELECT COUNT(*) FROM sqlite_master WHERE type = 'index' AND tbl_name = 'key_usage' AND sql NOT NULL",
            )
            .await;
        Some((sql.contains("WITHOUT ROWID"), indexes))
    };
    let kept = || async {
        let sql =
            format!("SELECT valid * 10 + invalid_token FROM key_usage WHERE access_id = '{access}' AND bucket = 3600");
        app.scalar::<i64>(sql).await
    };
    assert_eq!(layout().await, sqlite.then_some((true, 2)), "by key, with its two indexes");
    Migrator::down(db, Some(1)).await.expect("the layout by key goes down");
    assert_eq!(layout().await, sqlite.then_some((false, 2)), "a rowid table again");
    assert_eq!(kept().await, 72);
    Migrator::up(db, None).await.expect("and up again");
    assert_eq!(layout().await, sqlite.then_some((true, 2)));
    assert_eq!(kept().await, 72);
    // The foreign key to the key access still holds.
    let orphan =
        "INSERT INTO key_usage (access_id, account_id, granularity, bucket) VALUES ('no-such-access', 'x', 1, 0)";
    let refused = db.execute_raw(sea_orm::Statement::from_string(db.get_database_backend(), orphan.to_owned())).await;
    assert!(refused.is_err(), "a point of no key access is refused");
}

crate::backend_tests!(
    the_round_two_migrations_upgrade_existing_keys,
    usage_hours_kept_are_added_into_their_days,
    the_flush_tables_leave_room_for_updates,
    usage_is_stored_by_key
);
