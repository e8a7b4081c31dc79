//! Seeds a benchmark database: the bootstrap account `main`, `--keys N` internal keys holding the
//! RESTRICTED role (bulk-inserted), and one probe key whose token is printed as `PROBE_KEY=` /
//! `PROBE_TOKEN=` lines for `benches/run.sh`.
//!
//!     cargo run --release --example bench-seed -- --database-url sqlite://bench.db?mode=rwc --keys 1000000
//!
//! `--usage-days N --time-usage-flush` adds N days of usage and times a flush of every key;
//! `--flush-only` times the flush alone on a database seeded before.
//!
//! On PostgreSQL, `--copy` streams the rows through `COPY … FROM STDIN` in one transaction (ten
//! million keys in minutes, where batched inserts take far longer).
use appkeys::config::Settings;
use appkeys::domain::{AppToken, TokenDigest};
use appkeys::entity::{account, app_key, key_access, key_access_role, role};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, Set, TransactionTrait};
#[path = "args.rs"]
mod args;
use args::arg;

const CHUNK: usize = 1_000;

/// The i-th six-letter suffix: distinct for every i below 26^6.
fn suffix(mut i: usize) -> String {
    let mut out = [b'A'; 6];
    for slot in out.iter_mut().rev() {
        *slot = b'A' + (i % 26) as u8;
        i /= 26;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let url = arg("--database-url").unwrap_or_else(|| "sqlite://bench.db?mode=rwc".into());
    let keys: usize = arg("--keys").map(|k| k.parse()).transpose()?.unwrap_or(1_000);
    let mut settings = Settings::for_database(&url);
    settings.bootstrap_password = Some(arg("--password").unwrap_or_else(|| "bench-password-123".into()).into());
    let store = appkeys::service::open(&settings).await?;
    appkeys::service::prepare(&store, &settings).await?;
    store.close().await.map_err(appkeys::error::AppError::into_anyhow)?;
    if std::env::args().any(|a| a == "--flush-only") {
        // A database seeded before (e.g. copied from a seeded template): only the flush's timing.
        return time_usage_flush(&settings).await;
    }
    // The bulk insert is the seeding tool's own: on a connection of its own, past the service.
    let db = sea_orm::Database::connect(url.as_str()).await?;
    let main = account::Entity::find()
        .filter(account::Column::Name.eq("main"))
        .one(&db)
        .await?
        .ok_or_else(|| anyhow::anyhow!("no account main"))?;
    let restricted = role::Entity::find()
        .filter(role::Column::AccountId.eq(main.id.as_str()))
        .filter(role::Column::Name.eq("User Administrator - RESTRICTED"))
        .one(&db)
        .await?
        .ok_or_else(|| anyhow::anyhow!("no RESTRICTED role"))?;

    let started = std::time::Instant::now();
    let probe = AppToken::generate();
    let probe_key = format!("appkey-main-{}", suffix(keys));
    let copy = std::env::args().any(|a| a == "--copy") && url.starts_with("postgres");
    let probe_digest = probe.digest();
    let row = |i: usize| seeded_key(i, keys, &probe_key, &probe_digest);
    if copy {
        db.close().await?;
        copy_seed(&url, &main.id, &restricted.id, keys, &row).await?;
    } else {
        let txn = db.begin().await?;
        let mut batch = Vec::with_capacity(CHUNK);
        for i in 0..=keys {
            batch.push(row(i));
            if batch.len() == CHUNK || i == keys {
                insert(&txn, &main.id, &restricted.id, std::mem::take(&mut batch)).await?;
            }
        }
        txn.commit().await?;
    }
    let how = if copy { " with COPY" } else { "" };
    eprintln!("seeded {} keys{how} in {:.1} s", keys + 1, started.elapsed().as_secs_f64());
    if let Some(days) = arg("--usage-days").map(|d| d.parse::<i64>()).transpose()? {
        seed_usage(&url, days).await?;
    }
    if std::env::args().any(|a| a == "--time-usage-flush") {
        time_usage_flush(&settings).await?;
    }
    println!("PROBE_KEY={probe_key}");
    println!("PROBE_TOKEN={}", probe.expose_secret());
    Ok(())
}

/// `--usage-days N`: N days of hourly usage points for every key, ending this hour, and their
/// daily points (two SQL statements on the database itself), stored in time order, as the flushes
/// would have written them: an hour's rows of every key together, then the next hour's.
async fn seed_usage(url: &str, days: i64) -> anyhow::Result<()> {
    use sea_orm::ConnectionTrait;
    let started = std::time::Instant::now();
    let db = sea_orm::Database::connect(url).await?;
    let backend = db.get_database_backend();
    let hours = days * 24;
    let this_hour = chrono::Utc::now().timestamp().div_euclid(3600) * 3600;
    let numbers = if backend == sea_orm::DatabaseBackend::Postgres {
        format!("SELECT generate_series(0, {}) AS i", hours - 1)
    } else {
        format!(
            "WITH RECURSIVE c(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM c WHERE i < {}) SELECT i FROM c",
            hours - 1
        )
    };
    let seed = format!(
        "INSERT INTO key_usage (access_id, account_id, granularity, bucket, valid, forbidden, invalid_token) \
         SELECT a.id, a.account_id, 1, {this_hour} - 3600 * n.i, 1 + n.i % 7, n.i % 3, n.i % 11 \
         FROM key_access a CROSS JOIN ({numbers}) n ORDER BY n.i DESC, a.id"
    );
    let inserted = db.execute_raw(sea_orm::Statement::from_string(backend, seed)).await?.rows_affected();
    // Their days, as the flush writes them: each hour's counts are also added to its day.
    let sums = ["valid", "forbidden", "invalid_token"].map(|c| format!("CAST(SUM({c}) AS BIGINT)")).join(", ");
    let days_seed = format!(
        "INSERT INTO key_usage (access_id, account_id, granularity, bucket, valid, forbidden, invalid_token) \
         SELECT access_id, MIN(account_id), 2, bucket - bucket % 86400, {sums} FROM key_usage \
         WHERE granularity = 1 GROUP BY access_id, bucket - bucket % 86400 \
         ORDER BY bucket - bucket % 86400, access_id"
    );
    let day_rows = db.execute_raw(sea_orm::Statement::from_string(backend, days_seed)).await?.rows_affected();
    // As 30 days of flushes would have left them: on PostgreSQL autovacuum has long passed over
    // those rows (hint bits set, visibility map written), so it is not left to race the timed flush.
    let settle = match backend {
        sea_orm::DatabaseBackend::Postgres => "VACUUM (ANALYZE) key_usage",
        _ => "ANALYZE",
    };
    db.execute_raw(sea_orm::Statement::from_string(backend, settle.to_owned())).await?;
    // And the seed's pages written out: a checkpoint writing them back would otherwise compete with
    // the timed flush's commits (it needs a superuser, or `pg_checkpoint`; without, it is skipped).
    if backend == sea_orm::DatabaseBackend::Postgres {
        let checkpoint = sea_orm::Statement::from_string(backend, "CHECKPOINT".to_owned());
        if let Err(error) = db.execute_raw(checkpoint).await {
            eprintln!("no CHECKPOINT after the seed ({error}): the flush's timing may include writing it back");
        }
    }
    db.close().await?;
    eprintln!(
        "seeded {inserted} hourly and {day_rows} daily usage rows ({days} days) in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    println!("USAGE_ROWS={inserted}");
    println!("USAGE_DAY_ROWS={day_rows}");
    Ok(())
}

/// `--time-usage-flush`: one replica's flush with every key active this minute (a counted hour, a
/// resource used and an address for each), as the usage flusher writes it, three times: the
/// hour's first flush inserts, the next ones add. Prints the database time of each.
async fn time_usage_flush(settings: &Settings) -> anyhow::Result<()> {
    use appkeys::service::keys::meter::{self, AddressSeen, CountedHour, PermissionUse};
    use sea_orm::ConnectionTrait;
    let store = appkeys::service::open(settings).await?;
    let db = sea_orm::Database::connect(secrecy::ExposeSecret::expose_secret(&settings.database_url)).await?;
    if db.get_database_backend() == sea_orm::DatabaseBackend::Postgres {
        // Each flush then starts as the first one after a checkpoint does: writing whole pages.
        if let Err(error) = db.execute_unprepared("CHECKPOINT").await {
            eprintln!("no CHECKPOINT before the flush ({error})");
        }
    }
    let accesses: Vec<key_access::Model> = key_access::Entity::find().all(&db).await?;
    db.close().await?;
    let now = chrono::Utc::now();
    let hour = now.timestamp().div_euclid(3600) * 3600;
    let day = now.timestamp().div_euclid(86_400) * 86_400;
    let hours: Vec<CountedHour> = accesses
        .iter()
        .map(|a| CountedHour {
            access_id: a.id.clone(),
            account_id: a.account_id.clone(),
            hour,
            counts: [5, 1, 0, 0, 0, 0, 1],
        })
        .collect();
    let uses: Vec<PermissionUse> = accesses
        .iter()
        .map(|a| PermissionUse { access_id: a.id.clone(), resource: "LicenseManager.SaveUser".into(), at: now })
        .collect();
    let addresses: Vec<AddressSeen> = accesses
        .iter()
        .enumerate()
        .map(|(i, a)| AddressSeen {
            access_id: a.id.clone(),
            day,
            address: Some(format!("10.{}.{}.{}", (i >> 16) & 255, (i >> 8) & 255, i & 255)),
            count: 5,
            last_seen: now,
        })
        .collect();
    for round in 1..=3 {
        let started = std::time::Instant::now();
        meter::record(&store, &hours, &uses, &addresses).await.map_err(appkeys::error::AppError::into_anyhow)?;
        let secs = started.elapsed().as_secs_f64();
        eprintln!("usage flush {round} of {} active keys: {secs:.3} s", hours.len());
        println!("USAGE_FLUSH_{round}_SECS={secs:.3}");
    }
    store.close().await.map_err(appkeys::error::AppError::into_anyhow)?;
    Ok(())
}

/// The `i`-th seeded key and its token's digest; the last (`i == keys`) is the probe.
fn seeded_key(i: usize, keys: usize, probe_key: &str, probe_digest: &TokenDigest) -> (String, TokenDigest) {
    if i == keys {
        (probe_key.to_owned(), probe_digest.clone())
    } else {
        (format!("appkey-main-{}", suffix(i)), TokenDigest::of(&format!("bench-token-{i}")))
    }
}

async fn insert(
    txn: &sea_orm::DatabaseTransaction,
    account_id: &str,
    role_id: &str,
    batch: Vec<(String, TokenDigest)>,
) -> anyhow::Result<()> {
    let now = chrono::Utc::now();
    let mut keys = Vec::with_capacity(batch.len());
    let mut accesses = Vec::with_capacity(batch.len());
    let mut roles = Vec::with_capacity(batch.len());
    for (key, digest) in batch {
        let key_id = uuid::Uuid::now_v7().to_string();
        let access_id = uuid::Uuid::now_v7().to_string();
        keys.push(app_key::ActiveModel {
            id: Set(key_id.clone()),
            label: Set(format!("bench {key}")),
            label_search: Set(format!("bench {key}").to_lowercase()),
            key: Set(key),
            account_id: Set(account_id.to_owned()),
            token_digest: Set(digest.as_str().to_owned()),
            active: Set(true),
            created_at: Set(now),
            created_by: Set("system:bench-seed".into()),
            token_created_at: Set(now),
            previous_token_digest: Set(None),
            previous_token_created_at: Set(None),
            previous_token_expires_at: Set(None),
            renewal_started_at: Set(None),
            expires_at: Set(None),
            updated_at: Set(now),
            expiring_announced_for: Set(None),
            expired_announced_for: Set(None),
            renewal_due_announced_for: Set(None),
            deactivation_reason: Set(None),
            leaked_at: Set(None),
            leak_url: Set(None),
            leak_source: Set(None),
        });
        accesses.push(key_access::ActiveModel {
            id: Set(access_id.clone()),
            app_key_id: Set(key_id),
            account_id: Set(account_id.to_owned()),
            external: Set(false),
            removed: Set(false),
            added_at: Set(now),
            added_by: Set("system:bench-seed".into()),
            updated_at: Set(now),
            last_used_at: Set(None),
            last_used_ip: Set(None),
            last_used_user_agent: Set(None),
            ..Default::default()
        });
        roles.push(key_access_role::ActiveModel { key_access_id: Set(access_id), role_id: Set(role_id.to_owned()) });
    }
    app_key::Entity::insert_many(keys).exec(txn).await?;
    key_access::Entity::insert_many(accesses).exec(txn).await?;
    key_access_role::Entity::insert_many(roles).exec(txn).await?;
    Ok(())
}

/// Writes row `i` of a `COPY` as one CSV line.
type CopyRow<'a> = dyn Fn(usize, &mut String) + 'a;

/// Rows handed to one `COPY` message.
const COPY_CHUNK: usize = 20_000;

/// Seeds `keys` keys (and the probe, the last) through three `COPY … FROM STDIN` in one transaction:
/// keys, their access rows, their roles. Ids are made from two time-ordered bases plus the row's
/// index, so each pass finds the ids the others made.
async fn copy_seed(
    url: &str,
    account_id: &str,
    role_id: &str,
    keys: usize,
    seeded: &dyn Fn(usize) -> (String, TokenDigest),
) -> anyhow::Result<()> {
    use sea_orm::sqlx::{Connection, PgConnection};
    let base = uuid::Uuid::now_v7().as_u128() & !0xFFFF_FFFF_u128;
    let key_id = |i: usize| uuid::Uuid::from_u128(base + i as u128).to_string();
    let access_id = |i: usize| uuid::Uuid::from_u128(base + (1 << 31) + i as u128).to_string();
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let mut connection = PgConnection::connect(url).await?;
    sea_orm::sqlx::query("BEGIN").execute(&mut connection).await?;
    let passes: [(&str, &CopyRow); 3] = [
        (
            "COPY app_keys (id, label, label_search, key, account_id, token_digest, active, created_at, created_by, token_created_at, updated_at) FROM STDIN WITH (FORMAT csv)",
            &|i, out: &mut String| {
                let (key, digest) = seeded(i);
                let digest = digest.as_str();
                let label = format!("bench {key}");
                let search = label.to_lowercase();
                let id = key_id(i);
                out.push_str(&format!("{id},{label},{search},{key},{account_id},{digest},true,{now},system:bench-seed,{now},{now}\n"));
            },
        ),
        (
            "COPY key_access (id, app_key_id, account_id, external, removed, added_at, added_by, updated_at) FROM STDIN WITH (FORMAT csv)",
            &|i, out: &mut String| {
                let (id, key) = (access_id(i), key_id(i));
                out.push_str(&format!("{id},{key},{account_id},false,false,{now},system:bench-seed,{now}\n"));
            },
        ),
        ("COPY key_access_roles (key_access_id, role_id) FROM STDIN WITH (FORMAT csv)", &|i, out: &mut String| {
            out.push_str(&format!("{},{role_id}\n", access_id(i)));
        }),
    ];
    for (statement, row) in passes {
        let mut copy = connection.copy_in_raw(statement).await?;
        let mut chunk = String::with_capacity(COPY_CHUNK * 200);
        for i in 0..=keys {
            row(i, &mut chunk);
            if (i + 1) % COPY_CHUNK == 0 || i == keys {
                copy.send(chunk.as_bytes()).await?;
                chunk.clear();
            }
        }
        let copied = copy.finish().await?;
        eprintln!("{copied} rows: {}", statement.split(" FROM").next().unwrap_or(statement));
    }
    sea_orm::sqlx::query("COMMIT").execute(&mut connection).await?;
    connection.close().await?;
    Ok(())
}
