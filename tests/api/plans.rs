//! Query plans. PostgreSQL: every listing page — each listing, filter, order and direction, with and
//! without a cursor — its `totalCount` and the export's chunks reach an account's rows through an
//! index, never by reading a whole table, on a database with many other accounts' keys and fresh
//! statistics. Both backends: the sweeper's retention round finds old rows by index.
use appkeys::service::keys::export::Keys;
use appkeys::service::keys::{self, KeyFilter, KeyOrder, Lister, Listing};
use appkeys::service::store::page::{Direction, PageRequest};
use sea_orm::{ConnectionTrait, Statement, TransactionTrait};
use serde_json::json;

use crate::helpers::{Backend, TestApp};

const SEEDED: i64 = 30_000;

/// `n` internal keys (with access rows, holding the predefined roles) in an account, by SQL in bulk.
async fn bulk_keys(app: &TestApp, account_id: &str, prefix: &str, n: i64) {
    let db = app.db();
    let run = |sql: String| async move {
        db.execute_raw(Statement::from_string(db.get_database_backend(), sql)).await.expect("seeding");
    };
    run(format!(
        "INSERT INTO app_keys (id, key, account_id, label, label_search, token_digest, active, created_at, created_by, \
         token_created_at, updated_at) \
         SELECT gen_random_uuid()::text, '{prefix}-' || lpad(g::text, 8, '0'), '{account_id}', 'bulk ' || g, 'bulk ' || g, \
         md5('{prefix}' || g) || md5('{prefix}x' || g), g % 7 <> 0, now() - g * interval '1 minute', 'seed', \
         now() - g * interval '1 minute', now() FROM generate_series(1, {n}) g"
    ))
    .await;
    run(format!(
        "INSERT INTO key_access (id, app_key_id, account_id, external, removed, added_at, added_by, updated_at, last_used_at) \
         SELECT gen_random_uuid()::text, id, account_id, false, false, created_at, 'seed', created_at, \
         CASE WHEN random() < 0.5 THEN now() - random() * interval '100 days' END \
         FROM app_keys WHERE account_id = '{account_id}' \
         AND NOT EXISTS (SELECT 1 FROM key_access a WHERE a.app_key_id = app_keys.id)"
    ))
    .await;
    run(format!(
        "INSERT INTO key_access_roles (key_access_id, role_id) SELECT a.id, r.id FROM key_access a \
         JOIN roles r ON r.account_id = a.account_id AND r.predefined WHERE a.account_id = '{account_id}' \
         AND a.added_by = 'seed'"
    ))
    .await;
}

async fn account_id(app: &TestApp, name: &str) -> String {
    app.scalar(format!("SELECT id FROM accounts WHERE name = '{name}'")).await
}

fn lines(rows: &[sea_orm::QueryResult]) -> String {
    rows.iter().map(|r| r.try_get_by_index::<String>(0).expect("a plan line")).collect::<Vec<_>>().join("\n")
}

/// The plans PostgreSQL may run `statement` with, each explained for its parameters: the plan made
/// for them (PostgreSQL plans a prepared statement per execution at first); the generic plan, made
/// once for any parameters, which it may keep from the sixth execution on when its estimated cost is
/// no higher (a page's LIMIT is written into its SQL so that it can: `page::with_literal_limit`);
/// and the plan it actually runs after five executions with these parameters.
async fn plans(app: &TestApp, statement: &Statement) -> [(&'static str, String); 3] {
    let db = app.db();
    let explain = Statement { sql: format!("EXPLAIN {}", statement.sql), ..statement.clone() };
    let custom = lines(&db.query_all_raw(explain).await.expect("EXPLAIN runs"));
    let builder = sea_orm::sea_query::PostgresQueryBuilder;
    let values: Vec<String> = statement
        .values
        .iter()
        .flat_map(|values| values.0.iter())
        .map(|value| sea_orm::sea_query::QueryBuilder::value_to_string(&builder, value))
        .collect();
    let arguments = if values.is_empty() { String::new() } else { format!("({})", values.join(", ")) };
    let run = |sql: String| Statement::from_string(db.get_database_backend(), sql);
    let prepared = |mode: &'static str, runs: usize| {
        let (sql, arguments) = (statement.sql.clone(), arguments.clone());
        async move {
            let txn = db.begin().await.expect("a transaction keeps one connection");
            txn.execute_raw(run(format!("SET LOCAL plan_cache_mode = {mode}"))).await.expect("SET runs");
            txn.execute_raw(run(format!("PREPARE listing AS {sql}"))).await.expect("PREPARE runs");
            for _ in 0..runs {
                txn.query_all_raw(run(format!("EXECUTE listing{arguments}"))).await.expect("EXECUTE runs");
            }
            let plan =
                lines(&txn.query_all_raw(run(format!("EXPLAIN EXECUTE listing{arguments}"))).await.expect("EXPLAIN"));
            txn.execute_raw(run("DEALLOCATE listing".to_owned())).await.expect("DEALLOCATE runs");
            txn.rollback().await.expect("rolled back");
            plan
        }
    };
    let generic = prepared("force_generic_plan", 0).await;
    let chosen = prepared("auto", 5).await;
    [("for its parameters", custom), ("generic", generic), ("after five runs", chosen)]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(appkeys_postgres_tests), ignore = "needs APPKEYS_TEST_POSTGRES_URL at build time")]
async fn every_listing_reaches_its_rows_through_an_index() {
    let app = TestApp::spawn(Backend::Postgres).await;
    let owner = app.owner().await;
    let role = app.restricted_role(&owner).await;
    let partner = app.account_with_owner("partner").await;
    let partner_role = app.restricted_role(&partner).await;
    let (external, _) = app.generate_key(&partner, None, &[partner_role]).await;
    let add = "mutation($k: String!, $r: [ID!]!) { addExternalAppKey(input: {key: $k, roleIds: $r}) { key } }";
    app.graphql(&owner, add, json!({ "k": external, "r": [role] })).await.data("addExternalAppKey");
    for i in 0..30 {
        app.generate_key(&owner, Some(&format!("main {i}")), std::slice::from_ref(&role)).await;
    }
    // Two big neighbours: the account listed is a small one among many rows.
    app.account_with_owner("big").await;
    let big = account_id(&app, "big").await;
    bulk_keys(&app, &big, "appkey-big", SEEDED).await;
    bulk_keys(&app, &account_id(&app, "partner").await, "appkey-partner-bulk", SEEDED).await;
    let db = app.db();
    db.execute_raw(Statement::from_string(db.get_database_backend(), "ANALYZE".to_owned())).await.expect("ANALYZE");

    let main = account_id(&app, "main").await;
    let who = Lister { account_id: &main, account_name: "main", now: app.store().now() };
    let filters = [
        ("no filter", KeyFilter::default()),
        ("search", KeyFilter { search: Some("main".into()), ..KeyFilter::default() }),
        ("status", KeyFilter { status: Some(keys::KeyStatus::Active), ..KeyFilter::default() }),
        ("type", KeyFilter { key_type: Some(keys::KeyType::External), ..KeyFilter::default() }),
        ("renewal alert", KeyFilter { renewal_alert: Some(keys::RenewalAlert::None), ..KeyFilter::default() }),
        ("unused since", KeyFilter { unused_since: Some(app.store().now()), ..KeyFilter::default() }),
        ("unused permissions", KeyFilter { unused_permission_days: Some(90), ..KeyFilter::default() }),
    ];
    let mut checked = 0;
    for listing in [Listing::Internal, Listing::WithAccess] {
        for (name, filter) in &filters {
            for order in [KeyOrder::CreatedAt, KeyOrder::Key, KeyOrder::Label, KeyOrder::LastUsedAt] {
                for direction in [Direction::Desc, Direction::Asc] {
                    // The first page, and a later one (a cursor from the first).
                    let first = PageRequest::parse(Some(5), None, None, None).expect("a page");
                    let mut pages = vec![first.clone()];
                    let listed = keys::list(app.store(), &who, listing, filter, (order, direction), &first)
                        .await
                        .expect("a page");
                    if let Some(last) = listed.items.last() {
                        let cursor = keys::cursor_of(last, order).encode();
                        pages.push(PageRequest::parse(Some(5), Some(&cursor), None, None).expect("a page"));
                        pages.push(PageRequest::parse(None, None, Some(5), Some(&cursor)).expect("a page"));
                    }
                    for page in &pages {
                        let (rows, count) =
                            keys::listing_statements(app.store(), &who, listing, filter, (order, direction), page)
                                .await
                                .expect("statements");
                        for (what, statement) in [("page", &rows), ("totalCount", &count)] {
                            for (kind, plan) in plans(&app, statement).await {
                                // Generic plans must reach their rows by index too for pages in the
                                // orders an index serves (newest first is the default). One of the
                                // label or last-use order sorts the account's keys, estimated for an
                                // average account: dearer than the plans for a small account's
                                // parameters, so PostgreSQL keeps making those ("after five runs").
                                let generic_too =
                                    what == "page" && matches!(order, KeyOrder::CreatedAt | KeyOrder::Key);
                                if kind == "generic" && !generic_too {
                                    continue;
                                }
                                for table in ["app_keys", "key_access", "key_access_roles"] {
                                    assert!(
                                        !plan.contains(&format!("Seq Scan on {table}")),
                                        "{listing:?} / {name} / {order:?} {direction:?} ({what}, plan {kind}) reads all of {table}:\n{plan}\n{}",
                                        statement.sql
                                    );
                                }
                            }
                            checked += 1;
                        }
                    }
                }
            }
        }
    }
    assert!(checked >= 2 * 7 * 4 * 2 * 2, "{checked} plans checked");

    // The export's copy, for a small account among big ones: each key and its role links by index.
    for which in [Keys::All, Keys::Internal, Keys::External] {
        let copy = appkeys::service::keys::export::copy_statement(&main, which);
        let select = copy
            .strip_prefix("COPY (")
            .and_then(|rest| rest.strip_suffix(") TO STDOUT WITH (FORMAT csv)"))
            .expect("a COPY of a SELECT");
        let explain = Statement::from_string(db.get_database_backend(), format!("EXPLAIN {select}"));
        let plan = lines(&db.query_all_raw(explain).await.expect("EXPLAIN runs"));
        for table in ["app_keys", "key_access", "key_access_roles"] {
            assert!(
                !plan.contains(&format!("Seq Scan on {table}")),
                "the export ({which:?}) reads all of {table}:\n{plan}"
            );
        }
    }
    app.cleanup().await;
}

/// SQLite is built with the query planner stability guarantee (`.cargo/config.toml`): without it,
/// every statement with a bound `LIMIT ?` or `LIKE ?` is parsed and planned again each time it
/// runs, and the prepared-statement cache saves nothing for pages and single-row reads.
#[tokio::test]
async fn sqlite_is_built_with_a_stable_query_planner() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let used: i64 = app.scalar("SELECT sqlite_compileoption_used('ENABLE_QPSG')").await;
    assert_eq!(used, 1, "build appkeys from its directory so .cargo/config.toml sets LIBSQLITE3_FLAGS");
    app.cleanup().await;
}

/// The sweeper's retention round (events and finished webhook deliveries older than the retention
/// period, usage hours, days and client addresses past theirs) finds its rows by time through an index instead of reading the tables whole, which it
/// did every round in a write transaction: as SQLite plans it, and on PostgreSQL with sequential
/// scans discouraged (its tables here are too small for a plan of their own to mean anything).
async fn the_retention_round_finds_old_rows_through_an_index(app: &TestApp) {
    let db = app.db();
    let backend = db.get_database_backend();
    let [deliveries, events] = appkeys::service::events::outbox::prune_statements(backend, chrono::Utc::now());
    let day = chrono::Utc::now().timestamp().div_euclid(86_400) * 86_400;
    let [oldest_hour, addresses, days] =
        appkeys::service::keys::meter::prune_statements(backend, day - 35 * 86_400, day - 400 * 86_400);
    let hour = appkeys::service::keys::meter::hour_deletion(backend, day - 40 * 86_400);
    for (statement, tables) in [
        (&deliveries, &["webhook_deliveries"][..]),
        (&events, &["key_events", "webhook_deliveries"][..]),
        (&oldest_hour, &["key_usage"][..]),
        (&hour, &["key_usage"][..]),
        (&addresses, &["key_client_addresses"][..]),
        (&days, &["key_usage"][..]),
    ] {
        let plan = if backend == sea_orm::DatabaseBackend::Postgres {
            let txn = db.begin().await.expect("a transaction");
            txn.execute_raw(Statement::from_string(backend, "SET LOCAL enable_seqscan = off".to_owned()))
                .await
                .expect("SET LOCAL");
            let explain = Statement { sql: format!("EXPLAIN {}", statement.sql), ..statement.clone() };
            let plan = lines(&txn.query_all_raw(explain).await.expect("EXPLAIN runs"));
            txn.rollback().await.expect("rollback");
            plan
        } else {
            let explain = Statement { sql: format!("EXPLAIN QUERY PLAN {}", statement.sql), ..statement.clone() };
            let rows = db.query_all_raw(explain).await.expect("EXPLAIN QUERY PLAN runs");
            rows.iter().map(|r| r.try_get::<String>("", "detail").expect("a plan line")).collect::<Vec<_>>().join("\n")
        };
        for table in tables {
            let whole = if backend == sea_orm::DatabaseBackend::Postgres {
                format!("Seq Scan on {table}")
            } else {
                format!("SCAN {table}")
            };
            assert!(!plan.contains(&whole), "the retention round reads all of {table}:\n{plan}\n{}", statement.sql);
        }
        assert!(plan.contains("idx_"), "an index is used:\n{plan}");
    }
}

/// A key's usage over 400 days is one range read of `key_usage`'s primary key, with 40 keys'
/// worth of hourly and daily points in the table (analysed), on both backends.
async fn a_keys_usage_series_is_one_range_read(app: &TestApp) {
    let db = app.db();
    let backend = db.get_database_backend();
    // 40 keys with 400 daily and 35 × 24 hourly points each, so the planner has a table to plan for.
    let owner = app.owner().await;
    let role = app.restricted_role(&owner).await;
    for _ in 0..40 {
        app.generate_key(&owner, None, std::slice::from_ref(&role)).await;
    }
    let today = chrono::Utc::now().timestamp().div_euclid(86_400) * 86_400;
    let numbers = if backend == sea_orm::DatabaseBackend::Postgres {
        "SELECT generate_series(0, 839) AS i"
    } else {
        "WITH RECURSIVE c(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM c WHERE i < 839) SELECT i FROM c"
    };
    let seed = format!(
        "INSERT INTO key_usage (access_id, account_id, granularity, bucket, valid) \
         SELECT a.id, a.account_id, g.granularity, {today} - g.step * n.i, 1 FROM key_access a \
         CROSS JOIN (SELECT 2 AS granularity, 86400 AS step UNION ALL SELECT 1, 3600) g \
         CROSS JOIN ({numbers}) n WHERE (g.granularity = 2 AND n.i < 400) OR (g.granularity = 1 AND n.i < 840)"
    );
    db.execute_raw(Statement::from_string(backend, seed)).await.expect("usage seeded");
    db.execute_raw(Statement::from_string(backend, "ANALYZE".to_owned())).await.expect("ANALYZE");
    let access_id: String = app.scalar("SELECT id FROM key_access ORDER BY id LIMIT 1").await;
    let account_id: String = app.scalar(format!("SELECT account_id FROM key_access WHERE id = '{access_id}'")).await;
    let key: String = app
        .scalar(format!(
            "SELECT k.key FROM app_keys k JOIN key_access a ON a.app_key_id = k.id WHERE a.id = '{access_id}'"
        ))
        .await;
    let now = chrono::Utc::now();
    let by_access = appkeys::service::keys::meter::series_statement(backend, &access_id, now);
    // `appKey(key) { usage }` alone: the key found by its value, its usage rows beside it.
    let with_key = appkeys::service::keys::meter::key_series_statement(backend, &account_id, &key, now);
    for statement in [by_access, with_key] {
        let plan = usage_plan(app, &statement).await;
        assert!(
            !plan.contains("Seq Scan on key_usage") && !plan.contains("SCAN key_usage"),
            "reads all of key_usage:\n{plan}"
        );
        assert!(!plan.contains("Sort"), "no sort: the key's order is the series' order\n{plan}");
    }
}

/// The plan of a statement reading `key_usage`, which must read it as one range of its primary key.
async fn usage_plan(app: &TestApp, statement: &Statement) -> String {
    let db = app.db();
    if db.get_database_backend() == sea_orm::DatabaseBackend::Postgres {
        let txn = db.begin().await.expect("a transaction");
        let explain = Statement { sql: format!("EXPLAIN {}", statement.sql), ..statement.clone() };
        let plan = lines(&txn.query_all_raw(explain).await.expect("EXPLAIN runs"));
        txn.rollback().await.expect("rollback");
        assert!(
            plan.contains("Index Scan using key_usage_pkey")
                || plan.contains("Index Only Scan using key_usage_pkey")
                || plan.contains("Bitmap Index Scan on key_usage_pkey"),
            "{plan}"
        );
        plan
    } else {
        let explain = Statement { sql: format!("EXPLAIN QUERY PLAN {}", statement.sql), ..statement.clone() };
        let rows = db.query_all_raw(explain).await.expect("EXPLAIN QUERY PLAN runs");
        let plan =
            rows.iter().map(|r| r.try_get::<String>("", "detail").expect("a plan line")).collect::<Vec<_>>().join("\n");
        let range = "access_id=? AND granularity=? AND bucket>? AND bucket<?";
        assert!(plan.contains("SEARCH key_usage USING") && plan.contains(range), "{plan}");
        plan
    }
}

crate::backend_tests!(the_retention_round_finds_old_rows_through_an_index, a_keys_usage_series_is_one_range_read);
