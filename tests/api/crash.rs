//! Crash safety: the real binary is killed with SIGKILL in the middle of a burst of
//! `generateAppKey` and `setAppKeyRoles`; after a restart every key exists whole (its access, its
//! roles, its audit event) or not at all, and every roles change is there with its event or not at all.
use crate::helpers::binary::{gql, owner_session, Server};
use crate::helpers::{row_id, Backend, TestDatabase};
use futures::future::join_all;
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

async fn killed_mid_burst_leaves_every_key_whole_or_absent(backend: Backend) {
    let database = TestDatabase::create(backend).await;
    let database_url = database.url.clone();
    let client = reqwest::Client::new();
    let server = Server::start(&database_url, &[]).await;
    let owner = owner_session(&client, &server.address).await;
    let roles = gql(&client, &server.address, &owner, "{ roles { id } }", json!({})).await.expect("roles");
    let role_ids: Vec<String> = roles["data"]["roles"]
        .as_array()
        .expect("roles")
        .iter()
        .filter_map(|r| r["id"].as_str().map(str::to_owned))
        .collect();
    let generate = "mutation($r: [ID!]!) { generateAppKey(input: {roleIds: $r}) { appKey { key } } }";
    let mut existing = Vec::new();
    for _ in 0..10 {
        let made = gql(&client, &server.address, &owner, generate, json!({ "r": [role_ids[1]] })).await.expect("key");
        existing.push(made["data"]["generateAppKey"]["appKey"]["key"].as_str().expect("key").to_owned());
    }

    // The burst: generates and role changes from several tasks, until the process is killed.
    let address = server.address.clone();
    let answered = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let burst = (0..8).map(|task| {
        let (client, address, owner, role_ids, existing, answered) =
            (client.clone(), address.clone(), owner.clone(), role_ids.clone(), existing.clone(), answered.clone());
        tokio::spawn(async move {
            for i in 0.. {
                let outcome = if (task + i) % 2 == 0 {
                    gql(&client, &address, &owner, generate, json!({ "r": [role_ids[1]] })).await
                } else {
                    let set = "mutation($k: String!, $r: [ID!]!) { setAppKeyRoles(key: $k, roleIds: $r) { key } }";
                    let key = &existing[(task * 7 + i) % existing.len()];
                    gql(&client, &address, &owner, set, json!({ "k": key, "r": role_ids })).await
                };
                if outcome.is_none() {
                    break; // the server is gone
                }
                answered.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
        })
    });
    let tasks: Vec<_> = burst.collect();
    // Kill once the burst is well under way (requests are in flight at every moment of it).
    for _ in 0..500 {
        if answered.load(std::sync::atomic::Ordering::SeqCst) >= 40 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    drop(server); // SIGKILL
    join_all(tasks).await;

    // After a restart, check every key row against the rest of the database.
    let server = Server::start(&database_url, &[]).await;
    let db = sea_orm::Database::connect(database_url.as_str()).await.expect("connect");
    use sea_orm::{ConnectionTrait, Statement};
    let rows = |sql: &str| {
        let statement = Statement::from_string(db.get_database_backend(), sql.to_owned());
        let db = &db;
        async move { db.query_all_raw(statement).await.expect("query") }
    };
    let keys: Vec<String> =
        rows("SELECT key FROM app_keys").await.iter().map(|r| r.try_get_by_index::<String>(0).expect("key")).collect();
    let mut roles_of: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for row in rows("SELECT k.key, r.role_id FROM app_keys k JOIN key_access a ON a.app_key_id = k.id JOIN key_access_roles r ON r.key_access_id = a.id").await {
        roles_of.entry(row.try_get_by_index(0).expect("key")).or_default().insert(row.try_get_by_index(1).expect("role"));
    }
    let accesses: BTreeSet<String> = rows("SELECT k.key FROM app_keys k JOIN key_access a ON a.app_key_id = k.id")
        .await
        .iter()
        .map(|r| r.try_get_by_index::<String>(0).expect("key"))
        .collect();
    let events: Vec<(String, String)> = rows("SELECT action, target FROM audit_events")
        .await
        .iter()
        .map(|r| (r.try_get_by_index::<String>(0).expect("action"), r.try_get_by_index::<String>(1).expect("target")))
        .collect();
    let generated: BTreeSet<&str> =
        events.iter().filter(|(a, _)| a == "key.generate").map(|(_, t)| t.as_str()).collect();
    let role_changes: BTreeSet<&str> =
        events.iter().filter(|(a, _)| a == "key.set_roles").map(|(_, t)| t.as_str()).collect();
    assert!(keys.len() > existing.len(), "the burst generated keys before the kill");
    let all_roles: BTreeSet<String> = role_ids.iter().map(|id| row_id(id)).collect();
    for key in &keys {
        assert!(accesses.contains(key), "{key} exists without its access row");
        assert!(generated.contains(key.as_str()), "{key} exists without its audit event");
        let roles = roles_of.get(key).cloned().unwrap_or_default();
        if role_changes.contains(key.as_str()) {
            assert_eq!(roles, all_roles, "{key}: a roles change was audited but not applied whole");
        } else {
            assert_eq!(roles, BTreeSet::from([row_id(&role_ids[1])]), "{key}: roles changed without an audit event");
        }
    }
    for target in generated {
        assert!(keys.iter().any(|k| k == target), "an audit event names {target}, which does not exist");
    }
    // And the restarted server serves.
    let viewer = gql(&client, &server.address, &owner, "{ myKeys { totalCount } }", json!({})).await.expect("viewer");
    assert_eq!(viewer["data"]["myKeys"]["totalCount"].as_u64(), Some(keys.len() as u64));
    drop(server);
    db.close().await.ok();
}

mod cases {
    use super::*;
    crate::backend_cases!(killed_mid_burst_leaves_every_key_whole_or_absent);
}
