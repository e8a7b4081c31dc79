//! Crash safety: the real binary is killed with SIGKILL in the middle of a burst of
//! `generateAppKey` and `setAppKeyRoles`; after a restart every key exists whole (its access, its
//! roles, its audit event) or not at all, and every roles change is there with its event or not at all;
//! and every token renewal and webhook endpoint answered with success is there after the kill.
use crate::helpers::binary::{generate_key, gql, owner_session, restricted_role, Server};
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

/// What the burst of `acknowledged_changes_survive_a_kill` was told was saved.
#[derive(Default)]
struct Acknowledged {
    /// Keys renewed, with the new token the renewal showed.
    renewals: Vec<(String, String)>,
    /// Webhook endpoints created, by id.
    endpoints: Vec<String>,
}

/// Token renewals and webhook endpoints answered with success are all there after SIGKILL: each
/// renewed key's new token passes `/auth` on the restarted server, each endpoint is listed.
async fn acknowledged_changes_survive_a_kill(backend: Backend) {
    let database = TestDatabase::create(backend).await;
    let database_url = database.url.clone();
    let client = reqwest::Client::new();
    let env = [("APPKEYS_WEBHOOK_ALLOW_PRIVATE", "true")];
    let server = Server::start(&database_url, &env).await;
    let owner = owner_session(&client, &server.address).await;
    let role = restricted_role(&client, &server.address, &owner).await;
    let mut keys = Vec::new();
    for _ in 0..40 {
        keys.push(generate_key(&client, &server.address, &owner, &role).await.0);
    }
    let acknowledged = std::sync::Arc::new(std::sync::Mutex::new(Acknowledged::default()));
    let address = server.address.clone();
    let tasks: Vec<_> = (0..4)
        .map(|task| {
            let (client, address, owner, keys, acknowledged) =
                (client.clone(), address.clone(), owner.clone(), keys.clone(), acknowledged.clone());
            tokio::spawn(async move {
                for i in 0.. {
                    if task % 2 == 0 {
                        // Each key renewed once, by one task: keys 0, 2, 4 … and 1, 3, 5 ….
                        let Some(key) = keys.get(i * 2 + task / 2) else { break };
                        let renew = "mutation($k: String!) { renewAppKeyToken(key: $k) { appToken } }";
                        let Some(done) = gql(&client, &address, &owner, renew, json!({ "k": key })).await else {
                            break;
                        };
                        if let Some(token) = done["data"]["renewAppKeyToken"]["appToken"].as_str() {
                            acknowledged.lock().expect("acks").renewals.push((key.clone(), token.to_owned()));
                        }
                    } else {
                        let create =
                            "mutation($u: String!) { createWebhookEndpoint(input: {url: $u}) { endpoint { id } } }";
                        let url = format!("http://127.0.0.1:9/hook-{task}-{i}");
                        let Some(done) = gql(&client, &address, &owner, create, json!({ "u": url })).await else {
                            break;
                        };
                        if let Some(id) = done["data"]["createWebhookEndpoint"]["endpoint"]["id"].as_str() {
                            acknowledged.lock().expect("acks").endpoints.push(id.to_owned());
                        }
                    }
                }
            })
        })
        .collect();
    for _ in 0..500 {
        let enough = {
            let acks = acknowledged.lock().expect("acks");
            acks.renewals.len() >= 10 && acks.endpoints.len() >= 10
        };
        if enough {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    drop(server); // SIGKILL, with requests in flight
    join_all(tasks).await;
    let acknowledged = std::mem::take(&mut *acknowledged.lock().expect("acks"));
    assert!(!acknowledged.renewals.is_empty() && !acknowledged.endpoints.is_empty(), "the burst was acknowledged");

    let server = Server::start(&database_url, &[]).await;
    for (key, token) in &acknowledged.renewals {
        let auth = crate::helpers::Auth::key(key, token);
        let checked = auth.apply(client.get(format!("{}/auth", server.address))).send().await.expect("sent");
        assert_eq!(checked.status(), 200, "{key}: its acknowledged renewal's token is refused after the kill");
    }
    let listed = gql(&client, &server.address, &owner, "{ webhookEndpoints { id } }", json!({})).await.expect("list");
    let listed: BTreeSet<&str> = listed["data"]["webhookEndpoints"]
        .as_array()
        .expect("endpoints")
        .iter()
        .filter_map(|e| e["id"].as_str())
        .collect();
    for id in &acknowledged.endpoints {
        assert!(listed.contains(id.as_str()), "the acknowledged endpoint {id} is gone after the kill");
    }
    drop(server);
}

mod cases {
    use super::*;
    crate::backend_cases!(killed_mid_burst_leaves_every_key_whole_or_absent, acknowledged_changes_survive_a_kill);
}
