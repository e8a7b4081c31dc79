//! The business rules, over SeaORM. Services never see async-graphql or axum; entities never leave
//! this module (services return their own view types).
//!
//! Every mutation validates first, then writes in one transaction from `Store::begin_write`, together
//! with its audit event, so a refused request leaves the database as it was.
pub mod accounts;
pub mod audit;
mod database;
pub mod events;
pub mod export;
mod folded;
pub mod follow;
pub mod inline_read;
pub mod keys;
mod links;
pub mod page;
pub mod passwords;
pub mod roles;
pub mod sessions;
pub mod settings;
pub mod users;
pub mod versions;
pub mod webhooks;

use anyhow::Context as _;
use migration::{Migrator, MigratorTrait};
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseBackend, DatabaseConnection, DatabaseTransaction, Statement,
    TransactionTrait,
};
use sea_orm::{EntityTrait, QuerySelect};
use secrecy::ExposeSecret;
use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Mutex, OwnedMutexGuard};

use crate::clock::Clock;
use crate::config::Settings;
use crate::domain::Password;
use crate::error::{AppError, AppResult};
use crate::principal::Principal;
use versions::{CredentialVersions, Scope};

/// The database, plus what it takes to write to it safely.
#[derive(Clone)]
pub struct Store {
    pub db: DatabaseConnection,
    /// SQLite allows one writer: serialising write transactions in the process means a writer never
    /// meets "database is locked" and readers (WAL) never wait. PostgreSQL needs no such lock.
    write_lock: Option<Arc<Mutex<()>>>,
    /// argon2 takes 19 MiB and a core for tens of milliseconds: bound how many run at once so a login
    /// storm cannot starve everything else, each in memory allocated at start (see `passwords`).
    passwords: Arc<passwords::Passwords>,
    /// Stamped by every commit that may change what a credential resolves to, per scope; auth caches
    /// check their entries against it (see `versions`). Other replicas learn of it through NOTIFY.
    versions: Arc<CredentialVersions>,
    /// The one source of "now" for every rule and timestamp (tests move it forward).
    clock: Clock,
    /// The resource catalogue as last read, and when (see `roles::cached_catalogue`).
    catalogue: Arc<std::sync::RwLock<Option<roles::CachedCatalogue>>>,
    /// Committed key events on their way to this replica's subscribers and deliverer.
    events: events::EventBus,
    /// Accounts' key settings as last read, with the change sequence read before (see `settings::cached`).
    settings_cache: moka::sync::Cache<String, (u64, settings::KeySettings)>,
    /// Accounts' roles as last read, with the change sequence read before (see `roles::cached_facts`).
    role_cache: moka::sync::Cache<String, (u64, Arc<roles::AccountRoles>)>,
    /// Listing pages' statements, by what names them whole (see `keys::listing::memo_key`).
    page_statements: moka::sync::Cache<String, Arc<keys::BuiltPage>>,
    /// Seals webhook secrets at rest; set by `prepare` (see `webhooks::SecretBox`).
    secret_box: Arc<std::sync::OnceLock<webhooks::SecretBox>>,
    /// On a SQLite file, listing pages are read on the calling thread (see `inline_read`).
    inline_reader: Option<Arc<inline_read::InlineReader>>,
}

/// The PostgreSQL channel on which replicas announce credential changes; the payload lists the
/// scopes (`a:<account id>;k:<key id>`) or is `EVERYTHING`.
pub const CREDENTIALS_CHANNEL: &str = "appkeys_credentials";
pub const EVERYTHING: &str = "*";

/// A write transaction; on SQLite it also holds the process's write lock until commit or drop.
pub struct WriteTxn {
    txn: DatabaseTransaction,
    _guard: Option<OwnedMutexGuard<()>>,
    versions: Arc<CredentialVersions>,
    /// What this change touches, for the credential caches (none recorded: anything).
    scopes: Vec<Scope>,
    clock: Clock,
    /// The key events this change wrote to the outbox, announced once it commits.
    events: std::sync::Mutex<Vec<events::KeyEvent>>,
    bus: events::EventBus,
}

impl Deref for WriteTxn {
    type Target = DatabaseTransaction;
    fn deref(&self) -> &Self::Target {
        &self.txn
    }
}

impl WriteTxn {
    /// The time this change happens at, from the store's clock.
    pub fn now(&self) -> chrono::DateTime<chrono::Utc> {
        self.clock.now()
    }

    /// Records that this change alters a key's own state (status, token, existence), which acts in
    /// other accounts too: their cached credentials of it go as well.
    pub fn affects_key(&mut self, key_id: &str) {
        self.scopes.push(Scope::Key(key_id.to_owned()));
    }

    /// Records that this change alters credentials in `account_id`.
    pub fn affects_account(&mut self, account_id: &str) {
        self.scopes.push(Scope::Account(account_id.to_owned()));
    }

    /// Notes a key event this change wrote to the outbox (`events::record`).
    pub(crate) fn note_event(&self, event: events::KeyEvent) {
        if let Ok(mut events) = self.events.lock() {
            events.push(event);
        }
    }

    /// Commits, and tells every auth cache (this replica's at once, others' through NOTIFY, which
    /// PostgreSQL delivers only if the transaction commits) which credentials may have changed.
    pub async fn commit(self) -> AppResult<()> {
        self.finish(true).await
    }

    /// Commits a change that cannot alter what any existing credential resolves to (a new session,
    /// a failed-login event, a download ticket), so auth caches stay warm.
    pub async fn commit_without_credential_change(self) -> AppResult<()> {
        self.finish(false).await
    }

    async fn finish(self, credentials_changed: bool) -> AppResult<()> {
        let postgres = self.txn.get_database_backend() == DatabaseBackend::Postgres;
        let events = self.events.into_inner().unwrap_or_default();
        if postgres && credentials_changed {
            let payload = if self.scopes.is_empty() {
                EVERYTHING.to_owned()
            } else {
                self.scopes.iter().map(Scope::encode).collect::<Vec<_>>().join(";")
            };
            notify(&self.txn, CREDENTIALS_CHANNEL, payload).await?;
        }
        if postgres {
            // Every replica, this one included, learns of the events from the notification.
            for event in &events {
                notify(&self.txn, events::EVENTS_CHANNEL, event.id.clone()).await?;
            }
        }
        self.txn.commit().await?;
        if credentials_changed {
            self.versions.changed(&self.scopes);
        }
        if !events.is_empty() {
            self.bus.wake_deliveries();
            if !postgres {
                for event in events {
                    self.bus.publish(event);
                }
            }
        }
        Ok(())
    }
}

/// Sends a PostgreSQL notification that is delivered when (and only if) the transaction commits.
async fn notify(txn: &DatabaseTransaction, channel: &str, payload: String) -> AppResult<()> {
    txn.execute_raw(Statement::from_sql_and_values(
        DatabaseBackend::Postgres,
        format!("SELECT pg_notify('{channel}', $1)"),
        [payload.into()],
    ))
    .await?;
    Ok(())
}

/// A lease for work that one replica at a time does (sweeps, announcements): on PostgreSQL a
/// transaction holding a transaction-level advisory lock, released when it ends, even if this replica
/// dies. SQLite has one process.
pub struct Lease(Option<DatabaseTransaction>);

impl Lease {
    pub async fn release(self) -> AppResult<()> {
        if let Some(txn) = self.0 {
            txn.rollback().await?;
        }
        Ok(())
    }
}

impl Store {
    pub async fn connect(settings: &Settings) -> anyhow::Result<Self> {
        let url = settings.database_url.expose_secret();
        let mut options = ConnectOptions::new(url.to_owned());
        options
            .max_connections(settings.db_max_connections.max(1))
            .min_connections(1)
            .acquire_timeout(Duration::from_secs(10))
            .sqlx_logging(false);
        // sqlx pings a connection on every checkout by default: a round trip to the SQLite
        // connection's thread, or to PostgreSQL, before each query. A SQLite file cannot hang up;
        // a PostgreSQL connection is pinged only once idle for a second (one used a moment ago is
        // known to be alive), so a connection the server or a proxy dropped is still replaced.
        if database::is_postgres(url) {
            options.test_before_acquire_if_idle_for(Duration::from_secs(1));
        } else {
            options.test_before_acquire(false);
        }
        let mmap = settings.sqlite_mmap_mib.saturating_mul(1 << 20);
        let inline_reader = inline_read::InlineReader::for_url(url, mmap).map(Arc::new);
        let mmap_bytes = mmap.to_string();
        options.map_sqlx_sqlite_opts(move |opts| {
            opts.journal_mode(sea_orm::sqlx::sqlite::SqliteJournalMode::Wal)
                .synchronous(sea_orm::sqlx::sqlite::SqliteSynchronous::Normal)
                .foreign_keys(true)
                .busy_timeout(Duration::from_secs(10))
                .create_if_missing(true)
                .pragma("mmap_size", mmap_bytes.clone())
        });
        let target = database::describe(url);
        database::probe(url).await.map_err(|cause| anyhow::anyhow!("cannot open the database {target}: {cause}"))?;
        let db = Database::connect(options)
            .await
            .map_err(|error| anyhow::anyhow!("cannot open the database {target}: {}", database::cause(&error)))?;
        let write_lock = (db.get_database_backend() == DatabaseBackend::Sqlite).then(|| Arc::new(Mutex::new(())));
        let passwords = Arc::new(passwords::Passwords::new(settings.max_concurrent_logins));
        Ok(Self {
            db,
            write_lock,
            passwords,
            versions: Arc::new(CredentialVersions::default()),
            clock: Clock::default(),
            catalogue: Arc::default(),
            events: events::EventBus::default(),
            settings_cache: moka::sync::Cache::new(100_000),
            role_cache: moka::sync::Cache::new(10_000),
            page_statements: moka::sync::Cache::new(1_000),
            secret_box: Arc::default(),
            inline_reader,
        })
    }

    /// The reader of listing pages on the calling thread, on a SQLite file (see `inline_read`).
    pub fn inline_reader(&self) -> Option<&inline_read::InlineReader> {
        self.inline_reader.as_deref()
    }

    pub(crate) fn settings_cache(&self) -> &moka::sync::Cache<String, (u64, settings::KeySettings)> {
        &self.settings_cache
    }

    pub(crate) fn page_statements(&self) -> &moka::sync::Cache<String, Arc<keys::BuiltPage>> {
        &self.page_statements
    }

    pub(crate) fn role_cache(&self) -> &moka::sync::Cache<String, (u64, Arc<roles::AccountRoles>)> {
        &self.role_cache
    }

    /// Committed key events on this replica (subscribers, the deliverer).
    pub fn events(&self) -> &events::EventBus {
        &self.events
    }

    /// What seals webhook secrets at rest (set by `prepare`).
    pub fn secret_box(&self) -> AppResult<&webhooks::SecretBox> {
        self.secret_box.get().ok_or_else(|| AppError::Internal(anyhow::anyhow!("the webhook secret key is not loaded")))
    }

    /// Takes the lease `lock_id` if no other replica holds it (`None`: another one does).
    pub async fn try_lease(&self, lock_id: i64) -> AppResult<Option<Lease>> {
        if self.backend() != DatabaseBackend::Postgres {
            return Ok(Some(Lease(None)));
        }
        let txn = self.db.begin().await?;
        let row = txn
            .query_one_raw(Statement::from_string(
                DatabaseBackend::Postgres,
                format!("SELECT pg_try_advisory_xact_lock({lock_id})"),
            ))
            .await?;
        if row.map(|r| r.try_get_by_index::<bool>(0)).transpose()?.unwrap_or(false) {
            Ok(Some(Lease(Some(txn))))
        } else {
            Ok(None)
        }
    }

    /// The store's clock: `now()` for every rule and timestamp; tests advance it.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    pub fn now(&self) -> chrono::DateTime<chrono::Utc> {
        self.clock.now()
    }

    pub fn backend(&self) -> DatabaseBackend {
        self.db.get_database_backend()
    }

    pub async fn begin_write(&self) -> AppResult<WriteTxn> {
        let guard = match &self.write_lock {
            Some(lock) => Some(lock.clone().lock_owned().await),
            None => None,
        };
        let txn = self.db.begin().await?;
        Ok(WriteTxn {
            txn,
            _guard: guard,
            versions: self.versions.clone(),
            scopes: Vec::new(),
            clock: self.clock.clone(),
            events: std::sync::Mutex::default(),
            bus: self.events.clone(),
        })
    }

    /// A write transaction that changes one account's keys, roles or users. On PostgreSQL it locks the
    /// account's row first, so concurrent changes to one account apply one after another: no lost
    /// update, and no write skew (two owners removing each other). SQLite already has one writer.
    pub async fn begin_account_write(&self, account_id: &str) -> AppResult<WriteTxn> {
        let mut txn = self.begin_write().await?;
        txn.affects_account(account_id);
        if self.backend() == DatabaseBackend::Postgres {
            crate::entity::account::Entity::find_by_id(account_id).lock_exclusive().one(&*txn).await?;
        }
        Ok(txn)
    }

    /// Which credentials changed when (see `versions`).
    pub fn versions(&self) -> &CredentialVersions {
        &self.versions
    }

    /// Runs pending migrations, seeds the resource catalogue and, on an empty database, bootstraps the
    /// first account. On PostgreSQL this happens under an advisory lock, so replicas starting together
    /// do it once, never twice and never half.
    pub async fn prepare(&self, settings: &Settings) -> anyhow::Result<Option<accounts::CreatedAccount>> {
        let lock = StartupLock::acquire(self, settings.database_url.expose_secret()).await?;
        let result = async {
            Migrator::up(&self.db, None).await.context("running migrations")?;
            roles::seed_catalogue(self)
                .await
                .map_err(AppError::into_anyhow)
                .context("seeding the resource catalogue")?;
            let secret_box = webhooks::SecretBox::load(self, settings.secrets_key.as_ref())
                .await
                .map_err(AppError::into_anyhow)
                .context("loading the key that protects webhook secrets")?;
            let _ = self.secret_box.set(secret_box);
            accounts::bootstrap(self, settings)
                .await
                .map_err(AppError::into_anyhow)
                .context("bootstrapping the first account")
        }
        .await;
        lock.release().await?;
        result
    }

    /// Hashes a password off the async threads, within the argon2 concurrency bound.
    pub async fn hash_password(&self, password: Password) -> AppResult<String> {
        self.passwords.hash(password).await
    }

    /// Verifies a password off the async threads, within the argon2 concurrency bound; `None` (an
    /// unknown user) costs the same and never verifies.
    pub async fn verify_password(&self, password: Password, phc: Option<String>) -> AppResult<bool> {
        self.passwords.verify(password, phc).await
    }

    /// Computes the unknown-user dummy hash now, off the async threads, not in the first login.
    pub async fn prepare_logins(&self) -> AppResult<()> {
        self.passwords.prepare().await
    }

    /// Connections in the pool, and how many of them are idle.
    pub fn pool_use(&self) -> (u32, u32) {
        match self.backend() {
            DatabaseBackend::Postgres => {
                let pool = self.db.get_postgres_connection_pool();
                (pool.size(), u32::try_from(pool.num_idle()).unwrap_or(u32::MAX))
            }
            _ => {
                let pool = self.db.get_sqlite_connection_pool();
                (pool.size(), u32::try_from(pool.num_idle()).unwrap_or(u32::MAX))
            }
        }
    }

    /// Password verifications running now (each holds one of the bounded permits).
    pub fn logins_in_progress(&self) -> usize {
        self.passwords.in_progress()
    }

    pub async fn ping(&self) -> AppResult<()> {
        self.db.ping().await?;
        Ok(())
    }
}

/// A PostgreSQL session-level advisory lock held on one dedicated connection; nothing on SQLite,
/// where the file is owned by one process.
struct StartupLock(Option<DatabaseConnection>);

const STARTUP_LOCK_ID: i64 = 0x0061_7070_6b65_7973; // "appkeys" in ASCII

impl StartupLock {
    async fn acquire(store: &Store, url: &str) -> anyhow::Result<Self> {
        if store.backend() != DatabaseBackend::Postgres {
            return Ok(Self(None));
        }
        // The lock belongs to one connection, and a pool could hand the unlock to another: hold a
        // dedicated single connection for the duration.
        let single = Database::connect({
            let mut options = ConnectOptions::new(url.to_owned());
            options.max_connections(1).min_connections(1).sqlx_logging(false);
            options
        })
        .await
        .context("opening the start-up lock connection")?;
        single
            .execute_raw(Statement::from_string(
                DatabaseBackend::Postgres,
                format!("SELECT pg_advisory_lock({STARTUP_LOCK_ID})"),
            ))
            .await
            .context("taking the start-up advisory lock")?;
        Ok(Self(Some(single)))
    }

    async fn release(self) -> anyhow::Result<()> {
        if let Some(conn) = self.0 {
            conn.execute_raw(Statement::from_string(
                DatabaseBackend::Postgres,
                format!("SELECT pg_advisory_unlock({STARTUP_LOCK_ID})"),
            ))
            .await
            .context("releasing the start-up advisory lock")?;
            conn.close().await.context("closing the start-up lock connection")?;
        }
        Ok(())
    }
}

/// Who did something and from where: what every audit event records besides the change itself.
#[derive(Debug, Clone, Default)]
pub struct RequestMeta {
    pub request_id: Option<String>,
    pub client_ip: Option<String>,
}

/// The acting principal and the request it came in, handed to every mutation.
pub struct Ctx<'a> {
    pub principal: &'a Principal,
    pub meta: &'a RequestMeta,
}

impl Ctx<'_> {
    /// Records, in the change's own transaction, that this principal did `action` to `target`.
    pub async fn audit(
        &self,
        txn: &WriteTxn,
        action: &'static str,
        target: &str,
        before: Option<serde_json::Value>,
        after: Option<serde_json::Value>,
    ) -> AppResult<()> {
        let entry = audit::AuditEntry {
            account_id: &self.principal.account_id,
            actor: &self.principal.actor(),
            action,
            target,
            before,
            after,
        };
        audit::record(txn, self.meta, entry).await
    }
}

/// Whether `raw` could be one of our ids (a UUID). Anything else is unknown without asking the
/// database, which keeps hostile ids (NUL bytes, megabytes of text) away from it.
pub(crate) fn is_id(raw: &str) -> bool {
    uuid::Uuid::try_parse(raw).is_ok()
}

/// Free text that goes into a query (a search, an audit filter). PostgreSQL refuses NUL in text, so it
/// is refused here, on both backends alike.
pub(crate) fn query_text<'a>(raw: &'a str, field: &str) -> AppResult<&'a str> {
    if raw.contains('\0') {
        return Err(AppError::bad_input(field, "text cannot contain NUL characters"));
    }
    Ok(raw)
}

/// At most `max_chars` characters of `s`: what a bounded text column keeps.
pub(crate) fn truncate_chars(s: &str, max_chars: usize) -> String {
    s.chars().take(max_chars).collect()
}

pub(crate) fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}
