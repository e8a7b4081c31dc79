//! The client side of `benches/cluster.sh`: what a load generator cannot measure by itself.
//!
//!     bench-cluster revocation --replicas URL,URL,… --count 200 --password P
//!         Revocations through the first replica, each polled on every other one until refused
//!         (p50 / p99 / max from the acknowledgement of `deactivateAppKey` to the refusal).
//!     bench-cluster fault --through URL --replicas URL,… --database-url URL --pg-cluster "15 main" --password P
//!         A fault round under load through the gateway: PostgreSQL's backends killed, then
//!         PostgreSQL restarted (fast shutdown); answers counted by status in each phase, the time
//!         from PostgreSQL back to the first success, a revocation after recovery, and whether every
//!         key generated through the gateway meanwhile and acknowledged is there, whole.
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
#[path = "args.rs"]
mod args;
use args::{arg, required};

/// One server's client side: GraphQL as the owner, `/auth` with a key.
#[derive(Clone)]
struct Client {
    http: reqwest::Client,
    session: String,
}

impl Client {
    async fn login(http: reqwest::Client, address: &str, password: &str) -> anyhow::Result<Self> {
        let login = "mutation($i: LoginInput!) { login(input: $i) { token } }";
        let variables = json!({ "i": { "account": "main", "email": "admin@example.com", "password": password } });
        let body: Value = http
            .post(format!("{address}/graphql"))
            .json(&json!({ "query": login, "variables": variables }))
            .send()
            .await?
            .json()
            .await?;
        let session = body["data"]["login"]["token"].as_str().ok_or_else(|| anyhow::anyhow!("login failed: {body}"))?;
        Ok(Self { http, session: session.to_owned() })
    }

    async fn graphql(&self, address: &str, query: &str, variables: Value) -> anyhow::Result<Value> {
        let request = self.http.post(format!("{address}/graphql")).bearer_auth(&self.session);
        Ok(request.json(&json!({ "query": query, "variables": variables })).send().await?.json().await?)
    }

    async fn auth(&self, address: &str, key: &str, token: &str) -> Option<u16> {
        let request =
            self.http.get(format!("{address}/auth")).header("x-api-appkey", key).header("x-api-apptoken", token);
        request.send().await.ok().map(|r| r.status().as_u16())
    }

    async fn restricted_role(&self, address: &str) -> anyhow::Result<String> {
        let roles = self.graphql(address, "{ roles { id name } }", json!({})).await?;
        roles["data"]["roles"]
            .as_array()
            .and_then(|roles| roles.iter().find(|r| r["name"].as_str().is_some_and(|n| n.contains("RESTRICTED"))))
            .and_then(|r| r["id"].as_str())
            .map(str::to_owned)
            .ok_or_else(|| anyhow::anyhow!("no RESTRICTED role: {roles}"))
    }

    async fn generate(&self, address: &str, role: &str) -> anyhow::Result<(String, String)> {
        let generate = "mutation($r: [ID!]!) { generateAppKey(input: {roleIds: $r}) { appKey { key } appToken } }";
        let made = self.graphql(address, generate, json!({ "r": [role] })).await?;
        let made = &made["data"]["generateAppKey"];
        match (made["appKey"]["key"].as_str(), made["appToken"].as_str()) {
            (Some(key), Some(token)) => Ok((key.to_owned(), token.to_owned())),
            _ => anyhow::bail!("generateAppKey failed: {made}"),
        }
    }

    /// Deactivates `key` through `address`, retrying while the answer is not a success.
    async fn deactivate(&self, address: &str, key: &str) -> anyhow::Result<()> {
        let deactivate = "mutation($k: String!) { deactivateAppKey(key: $k) { status } }";
        for _ in 0..500 {
            let done = self.graphql(address, deactivate, json!({ "k": key })).await.unwrap_or(Value::Null);
            if done["data"]["deactivateAppKey"]["status"] == "INACTIVE" {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        anyhow::bail!("{key} could not be deactivated")
    }
}

/// One revocation: a new key, admitted on every other replica, deactivated through the first; how
/// long after the acknowledgement each other replica refused it (`None`: not within 5 s).
async fn revoke_once(client: &Client, replicas: &[String], role: &str) -> anyhow::Result<Vec<Option<Duration>>> {
    let (first, others) = replicas.split_first().ok_or_else(|| anyhow::anyhow!("no replica"))?;
    let (key, token) = client.generate(first, role).await?;
    for replica in others {
        // Admitted, hence cached, on each.
        let mut admitted = false;
        for _ in 0..200 {
            if client.auth(replica, &key, &token).await == Some(200) {
                admitted = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        anyhow::ensure!(admitted, "{replica} never admitted the new key");
    }
    client.deactivate(first, &key).await?;
    let acknowledged = Instant::now();
    let polls = others.iter().map(|replica| {
        let (client, key, token) = (client.clone(), key.clone(), token.clone());
        async move {
            while acknowledged.elapsed() < Duration::from_secs(5) {
                if client.auth(replica, &key, &token).await == Some(401) {
                    return Some(acknowledged.elapsed());
                }
            }
            None
        }
    });
    Ok(futures::future::join_all(polls).await)
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * (sorted.len() as f64)).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1].as_secs_f64() * 1_000.0
}

async fn revocation(replicas: Vec<String>, count: usize, password: &str) -> anyhow::Result<()> {
    let client = Client::login(reqwest::Client::new(), &replicas[0], password).await?;
    let role = client.restricted_role(&replicas[0]).await?;
    let mut seen: Vec<Duration> = Vec::new();
    let mut missed = 0;
    for _ in 0..count {
        for latency in revoke_once(&client, &replicas, &role).await? {
            match latency {
                Some(latency) => seen.push(latency),
                None => missed += 1,
            }
        }
    }
    seen.sort();
    println!(
        "REVOCATION revocations={count} observations={} p50_ms={:.2} p99_ms={:.2} max_ms={:.2} not_within_5s={missed}",
        seen.len(),
        percentile(&seen, 50.0),
        percentile(&seen, 99.0),
        seen.last().map_or(f64::NAN, |d| d.as_secs_f64() * 1_000.0),
    );
    Ok(())
}

/// Answers by phase and status (0: no answer at all).
type Counts = Arc<Mutex<BTreeMap<(&'static str, u16), usize>>>;

async fn fault(
    through: String,
    replicas: Vec<String>,
    database_url: &str,
    cluster: &str,
    password: &str,
) -> anyhow::Result<()> {
    let http = reqwest::Client::builder().timeout(Duration::from_secs(15)).build()?;
    let client = Client::login(http, &replicas[0], password).await?;
    let role = client.restricted_role(&replicas[0]).await?;
    let (key, token) = client.generate(&replicas[0], &role).await?;
    let phase: Arc<Mutex<&'static str>> = Arc::new(Mutex::new("steady"));
    let counts: Counts = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let successes = Arc::new(AtomicUsize::new(0));
    let listing = "{ myKeys(first: 5) { totalCount } }";
    let load: Vec<_> = (0..16)
        .map(|task| {
            let (client, through, key, token) = (client.clone(), through.clone(), key.clone(), token.clone());
            let (phase, counts, stop, successes) = (phase.clone(), counts.clone(), stop.clone(), successes.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    // Half the tasks check the key, half read a listing (always the database).
                    let status = if task % 2 == 0 {
                        client.auth(&through, &key, &token).await.unwrap_or(0)
                    } else {
                        let request = client.http.post(format!("{through}/graphql")).bearer_auth(&client.session);
                        match request.json(&json!({ "query": listing })).send().await {
                            Ok(response) => response.status().as_u16(),
                            Err(_) => 0,
                        }
                    };
                    if status == 200 {
                        successes.fetch_add(1, Ordering::Relaxed);
                    }
                    let now = *phase.lock().expect("phase");
                    *counts.lock().expect("counts").entry((now, status)).or_default() += 1;
                }
            })
        })
        .collect();
    // One writer through the gateway all along: every key it was told was generated must be there
    // afterwards, whole.
    let acknowledged: Arc<Mutex<Vec<String>>> = Arc::default();
    let writer = {
        let (client, through, role, acknowledged) =
            (client.clone(), through.clone(), role.clone(), acknowledged.clone());
        let (phase, counts, stop) = (phase.clone(), counts.clone(), stop.clone());
        tokio::spawn(async move {
            let generate = "mutation($r: [ID!]!) { generateAppKey(input: {roleIds: $r}) { appKey { key } } }";
            while !stop.load(Ordering::Relaxed) {
                let request = client.http.post(format!("{through}/graphql")).bearer_auth(&client.session);
                let request = request.json(&json!({ "query": generate, "variables": { "r": [role] } }));
                let (status, body) = match request.send().await {
                    Ok(response) => (response.status().as_u16(), response.json::<Value>().await.unwrap_or(Value::Null)),
                    Err(_) => (0, Value::Null),
                };
                if let Some(key) = body["data"]["generateAppKey"]["appKey"]["key"].as_str() {
                    acknowledged.lock().expect("acknowledged").push(key.to_owned());
                }
                let now = *phase.lock().expect("phase");
                *counts.lock().expect("counts").entry((now, status)).or_default() += 1;
            }
        })
    };
    let set_phase = |name: &'static str| *phase.lock().expect("phase") = name;
    tokio::time::sleep(Duration::from_secs(3)).await;

    set_phase("backends_killed");
    let admin = sea_orm::sqlx::PgPool::connect(database_url).await?;
    for _ in 0..3 {
        let ended: (i64,) = sea_orm::sqlx::query_as(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
             WHERE datname = current_database() AND pid <> pg_backend_pid()",
        )
        .fetch_one(&admin)
        .await?;
        eprintln!("terminated {} backends", ended.0);
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    admin.close().await;
    tokio::time::sleep(Duration::from_secs(2)).await;

    set_phase("postgres_restarting");
    let mut parts = cluster.split_whitespace();
    let (version, name) = (parts.next().unwrap_or("15"), parts.next().unwrap_or("main"));
    let restarted = tokio::process::Command::new("pg_ctlcluster")
        .args(["--skip-systemctl-redirect", version, name, "restart", "-m", "fast"])
        .status()
        .await?;
    anyhow::ensure!(restarted.success(), "pg_ctlcluster restart failed");
    let back = Instant::now();
    set_phase("after_restart");
    let before = successes.load(Ordering::Relaxed);
    while successes.load(Ordering::Relaxed) == before && back.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let to_first_success = back.elapsed();
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::Relaxed);
    for task in load {
        task.await?;
    }
    writer.await?;
    let acknowledged = std::mem::take(&mut *acknowledged.lock().expect("acknowledged"));
    let db = sea_orm::sqlx::PgPool::connect(database_url).await?;
    let mut missing = 0;
    for key in &acknowledged {
        let (there,): (i64,) =
            sea_orm::sqlx::query_as("SELECT count(*) FROM app_keys WHERE key = $1").bind(key).fetch_one(&db).await?;
        if there != 1 {
            missing += 1;
        }
    }
    let (partial,): (i64,) = sea_orm::sqlx::query_as(
        "SELECT count(*) FROM app_keys k WHERE k.created_by <> 'system:bench-seed' AND (NOT EXISTS \
         (SELECT 1 FROM key_access a JOIN key_access_roles r ON r.key_access_id = a.id WHERE a.app_key_id = k.id) \
         OR NOT EXISTS (SELECT 1 FROM audit_events e WHERE e.action = 'key.generate' AND e.target = k.key))",
    )
    .fetch_one(&db)
    .await?;
    db.close().await;
    println!("FAULT_ACKNOWLEDGED generated={} missing={missing} keys_not_whole={partial}", acknowledged.len());
    let revoked = revoke_once(&client, &replicas, &role).await?;
    let worst = revoked.iter().map(|d| d.map_or(f64::INFINITY, |d| d.as_secs_f64() * 1_000.0)).fold(0.0, f64::max);
    for ((phase, status), count) in counts.lock().expect("counts").iter() {
        println!("FAULT phase={phase} status={status} count={count}");
    }
    println!(
        "FAULT_RECOVERY first_success_after_postgres_back_ms={:.1} revocation_after_recovery_max_ms={worst:.1}",
        to_first_success.as_secs_f64() * 1_000.0
    );
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let replicas: Vec<String> = required("--replicas")?.split(',').map(str::to_owned).collect();
    let password = arg("--password").unwrap_or_else(|| "bench-password-123".into());
    match std::env::args().nth(1).as_deref() {
        Some("revocation") => {
            let count = arg("--count").map(|c| c.parse()).transpose()?.unwrap_or(200);
            revocation(replicas, count, &password).await
        }
        Some("fault") => {
            let through = required("--through")?;
            let database_url = required("--database-url")?;
            let cluster = arg("--pg-cluster").unwrap_or_else(|| "15 main".into());
            fault(through, replicas, &database_url, &cluster, &password).await
        }
        _ => anyhow::bail!("usage: bench-cluster revocation|fault …"),
    }
}
