//! The store: the database connection and what it takes to use it safely — write transactions
//! (`WriteTxn`, one writer on SQLite, account locks on PostgreSQL), leases for one-replica work, the
//! credential versions, paging, the read paths (`folded`, `inline_read`) and each room's parts.
//!
//! The rooms (`identity`, `keys`, `events`) keep their caches as *parts* of the store
//! (`Store::part`), typed by the room, so the store knows none of their types.
mod database;
pub(in crate::service) mod folded;
mod inline_read;
pub(in crate::service) mod links;
pub mod page;
pub mod revoked;
pub mod versions;

use anyhow::Context as _;
use migration::{Migrator, MigratorTrait};
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseBackend, DatabaseConnection, DatabaseTransaction,
    SqliteTransactionMode, Statement, TransactionOptions, TransactionTrait,
};
use sea_orm::{EntityTrait, QuerySelect};
use secrecy::ExposeSecret;
use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Mutex, OwnedMutexGuard};

use crate::clock::Clock;
use crate::config::Settings;
use crate::error::{AppError, AppResult};
pub use inline_read::Counts as InlineReadCounts;
use versions::{CredentialVersions, Scope};

/// The database, plus what it takes to write to it safely.
#[derive(Clone)]
pub struct Store {
    db: DatabaseConnection,
    /// SQLite allows one writer: serialising write transactions in the process means a writer never
    /// meets "database is locked" and readers (WAL) never wait. PostgreSQL needs no such lock.
    write_lock: Option<Arc<Mutex<()>>>,
    /// Stamped by every commit that may change what a credential resolves to, per scope; auth caches
    /// check their entries against it (see `versions`). Other replicas learn of it through NOTIFY.
    versions: Arc<CredentialVersions>,
    /// The one source of "now" for every rule and timestamp (tests move it forward).
    clock: Clock,
    /// The rooms' caches and shared state, one value per type (see `Parts`).
    parts: Arc<Parts>,
    /// On a SQLite file, listing pages are read on the calling thread (see `inline_read`).
    inline_reader: Option<Arc<inline_read::InlineReader>>,
}

/// One value per type, made on first use (`Store::part`) or installed at start (`Store::install`):
/// how a room keeps its caches with the store without the store naming its types.
#[derive(Default)]
pub struct Parts(std::sync::RwLock<std::collections::HashMap<std::any::TypeId, Arc<dyn std::any::Any + Send + Sync>>>);

impl Parts {
    fn get<T: Send + Sync + 'static>(&self) -> Option<Arc<T>> {
        let map = self.0.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        map.get(&std::any::TypeId::of::<T>()).cloned().and_then(|part| part.downcast::<T>().ok())
    }

    fn get_or_default<T: Default + Send + Sync + 'static>(&self) -> Arc<T> {
        if let Some(part) = self.get::<T>() {
            return part;
        }
        let mut map = self.0.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        let part = map.entry(std::any::TypeId::of::<T>()).or_insert_with(|| Arc::new(T::default())).clone();
        part.downcast::<T>().unwrap_or_else(|_| Arc::new(T::default()))
    }

    fn install<T: Send + Sync + 'static>(&self, value: T) {
        let mut map = self.0.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        map.insert(std::any::TypeId::of::<T>(), Arc::new(value));
    }
}

/// The PostgreSQL channel on which replicas announce credential changes; the payload lists the
/// scopes (`a:<account id>;k:<key id>`) or is `EVERYTHING`.
pub const CREDENTIALS_CHANNEL: &str = "appkeys_credentials";
pub const EVERYTHING: &str = "*";
/// The PostgreSQL channel on which replicas announce that usage counts changed (a flush, a prune);
/// the payload names the replica that sent it (`versions::UsageVersion`).
pub const USAGE_CHANNEL: &str = "appkeys_usage";

/// A write transaction; on SQLite it also holds the process's write lock until commit or drop.
pub struct WriteTxn {
    held: Held,
    versions: Arc<CredentialVersions>,
    /// What this change touches, for the credential caches (none recorded: anything).
    scopes: Vec<Scope>,
    clock: Clock,
    /// What this change announces once it commits: PostgreSQL notifications sent in the transaction
    /// (after the credentials' one), and work to do in this process after the commit.
    on_commit: std::sync::Mutex<OnCommit>,
    parts: Arc<Parts>,
}

/// A write transaction and, on SQLite, this process's writer turn (`Store::write_lock`).
///
/// Dropped without a commit (a rule refused the change midway), the transaction is not rolled back
/// at once: sqlx only queues the `ROLLBACK` for the connection's next use, and until then the file
/// stays locked for writing. So the turn is passed on only once the rollback has run; otherwise the
/// next writer would begin while the file is still locked and could fail with "database is locked".
struct Held {
    txn: Option<DatabaseTransaction>,
    turn: Option<OwnedMutexGuard<()>>,
}

impl Held {
    fn txn(&self) -> &DatabaseTransaction {
        // Taken only by `WriteTxn::finish`, which consumes the `WriteTxn`.
        self.txn.as_ref().expect("a write transaction lives until it commits")
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let (Some(txn), Some(turn)) = (self.txn.take(), self.turn.take()) else { return };
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Err(error) = txn.rollback().await {
                    tracing::warn!(error = %error, "rolling back a refused write");
                }
                drop(turn);
            });
        }
    }
}

type AfterCommit = Box<dyn FnOnce() + Send>;

#[derive(Default)]
struct OnCommit {
    notifications: Vec<(&'static str, String)>,
    after: Vec<AfterCommit>,
}

impl Deref for WriteTxn {
    type Target = DatabaseTransaction;
    fn deref(&self) -> &Self::Target {
        self.held.txn()
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

    /// On PostgreSQL, sends `payload` on `channel` when (and only if) this change commits, after the
    /// credentials' notification; nothing on SQLite.
    pub fn notify_on_commit(&self, channel: &'static str, payload: String) {
        if self.is_postgres() {
            self.on_commit
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .notifications
                .push((channel, payload));
        }
    }

    /// Runs `work` in this process once this change has committed (never if it does not).
    pub fn after_commit(&self, work: impl FnOnce() + Send + 'static) {
        self.on_commit.lock().unwrap_or_else(std::sync::PoisonError::into_inner).after.push(Box::new(work));
    }

    /// A room's part of the store (see `Store::part`).
    pub fn part<T: Default + Send + Sync + 'static>(&self) -> Arc<T> {
        self.parts.get_or_default()
    }

    /// Whether this change runs on PostgreSQL (so other replicas learn of it through NOTIFY).
    pub fn is_postgres(&self) -> bool {
        self.held.txn().get_database_backend() == DatabaseBackend::Postgres
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

    async fn finish(mut self, credentials_changed: bool) -> AppResult<()> {
        let postgres = self.is_postgres();
        let on_commit = std::mem::take(self.on_commit.get_mut().unwrap_or_else(std::sync::PoisonError::into_inner));
        if postgres && credentials_changed {
            let payload = if self.scopes.is_empty() {
                EVERYTHING.to_owned()
            } else {
                self.scopes.iter().map(Scope::encode).collect::<Vec<_>>().join(";")
            };
            notify(self.held.txn(), CREDENTIALS_CHANNEL, payload).await?;
        }
        for (channel, payload) in on_commit.notifications {
            notify(self.held.txn(), channel, payload).await?;
        }
        if let Some(txn) = self.held.txn.take() {
            txn.commit().await?;
        }
        if credentials_changed {
            self.versions.changed(&self.scopes);
        }
        for work in on_commit.after {
            work();
        }
        Ok(())
    }
}

/// Sends a PostgreSQL notification that is delivered when (and only if) the transaction commits.
async fn notify(txn: &DatabaseTransaction, channel: &str, payload: String) -> AppResult<()> {
    txn.execute_raw(notification(channel, payload)).await?;
    Ok(())
}

/// PostgreSQL's `pg_notify` of `payload` on `channel`.
fn notification(channel: &str, payload: String) -> Statement {
    Statement::from_sql_and_values(
        DatabaseBackend::Postgres,
        format!("SELECT pg_notify('{channel}', $1)"),
        [payload.into()],
    )
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
            .acquire_timeout(settings.db_acquire_timeout())
            .connect_timeout(settings.db_acquire_timeout())
            .sqlx_logging(false);
        // A statement past its limit is cancelled by the server (answered `UNAVAILABLE`), for every
        // connection of the pool (migrations run outside it, `migrate`; exports lift it).
        let statement_ms = settings.db_statement_timeout().as_millis().to_string();
        options.map_sqlx_postgres_opts(move |opts| opts.options([("statement_timeout", statement_ms.as_str())]));
        let busy = settings.db_statement_timeout();
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
                .busy_timeout(busy)
                .create_if_missing(true)
                .pragma("mmap_size", mmap_bytes.clone())
        });
        let target = database::describe(url);
        database::probe(url).await.map_err(|cause| anyhow::anyhow!("cannot open the database {target}: {cause}"))?;
        let db = Database::connect(options)
            .await
            .map_err(|error| anyhow::anyhow!("cannot open the database {target}: {}", database::cause(&error)))?;
        let write_lock = (db.get_database_backend() == DatabaseBackend::Sqlite).then(|| Arc::new(Mutex::new(())));
        Ok(Self {
            db,
            write_lock,
            versions: Arc::new(CredentialVersions::default()),
            clock: Clock::default(),
            parts: Arc::default(),
            inline_reader,
        })
    }

    /// The reader of listing pages on the calling thread, on a SQLite file (see `inline_read`).
    pub(in crate::service::store) fn inline_reader(&self) -> Option<&inline_read::InlineReader> {
        self.inline_reader.as_deref()
    }

    /// How many statements were read inline and how many declined, on a SQLite file.
    pub fn inline_read_counts(&self) -> Option<InlineReadCounts> {
        self.inline_reader.as_deref().map(inline_read::InlineReader::counts)
    }

    /// A room's part of the store: its caches or shared state, made on first use. The type names
    /// the part, so each room declares its own (`identity::roles::RoleCache`, `events::EventBus`, …).
    pub fn part<T: Default + Send + Sync + 'static>(&self) -> Arc<T> {
        self.parts.get_or_default()
    }

    /// A part that must be installed at start (`install`), as one made from the settings is.
    pub fn installed<T: Send + Sync + 'static>(&self) -> AppResult<Arc<T>> {
        self.parts.get().ok_or_else(|| {
            AppError::Internal(anyhow::anyhow!("{} is not installed in the store", std::any::type_name::<T>()))
        })
    }

    /// Installs a part (replacing one of the same type).
    pub fn install<T: Send + Sync + 'static>(&self, value: T) {
        self.parts.install(value);
    }

    /// The connection pool, for the rooms' queries (never handed outside `service`).
    pub(in crate::service) fn db(&self) -> &DatabaseConnection {
        &self.db
    }

    /// Closes the connection pool (a graceful stop).
    pub async fn close(&self) -> AppResult<()> {
        self.db.clone().close().await?;
        Ok(())
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

    /// On PostgreSQL, tells other replicas on `channel` of a change already committed outside a
    /// `WriteTxn` (one that commits its own notifies with `WriteTxn::notify_on_commit`); nothing on
    /// SQLite, which has one process.
    pub async fn notify(&self, channel: &'static str, payload: String) -> AppResult<()> {
        if self.backend() != DatabaseBackend::Postgres {
            return Ok(());
        }
        self.db.execute_raw(notification(channel, payload)).await?;
        Ok(())
    }

    pub async fn begin_write(&self) -> AppResult<WriteTxn> {
        let guard = match &self.write_lock {
            Some(lock) => Some(lock.clone().lock_owned().await),
            None => None,
        };
        // IMMEDIATE: the write lock is taken at BEGIN, where SQLite waits out a holder (busy
        // timeout); a deferred transaction that has read and then writes is refused at once instead.
        let immediate = TransactionOptions {
            sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
            ..TransactionOptions::default()
        };
        let txn = self.db.begin_with_options(immediate).await?;
        Ok(WriteTxn {
            held: Held { txn: Some(txn), turn: guard },
            versions: self.versions.clone(),
            scopes: Vec::new(),
            clock: self.clock.clone(),
            on_commit: std::sync::Mutex::default(),
            parts: self.parts.clone(),
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

    /// Runs pending migrations. On PostgreSQL under an advisory lock held until `StartupLock::release`
    /// (see `service::prepare`), so replicas starting together migrate once, never twice and never half.
    ///
    /// On PostgreSQL the migrations run on the start-up lock's own connection, without the pool's
    /// statement limit: building an index over millions of keys may take minutes.
    pub async fn migrate(&self, lock: &StartupLock) -> anyhow::Result<()> {
        let connection = lock.0.as_ref().unwrap_or(&self.db);
        Migrator::up(connection, None).await.context("running migrations")
    }

    /// Takes the start-up lock (PostgreSQL: a session-level advisory lock on a connection of its own).
    pub async fn startup_lock(&self, url: &str) -> anyhow::Result<StartupLock> {
        StartupLock::acquire(self, url).await
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

    pub async fn ping(&self) -> AppResult<()> {
        self.db.ping().await?;
        Ok(())
    }
}

/// One dedicated connection of its own (not the pool's, and without its statement limit).
async fn single_connection(url: &str) -> Result<DatabaseConnection, sea_orm::DbErr> {
    let mut options = ConnectOptions::new(url.to_owned());
    options.max_connections(1).min_connections(1).sqlx_logging(false);
    Database::connect(options).await
}

/// A PostgreSQL session-level advisory lock held on one dedicated connection; nothing on SQLite,
/// where the file is owned by one process.
pub struct StartupLock(Option<DatabaseConnection>);

const STARTUP_LOCK_ID: i64 = 0x0061_7070_6b65_7973; // "appkeys" in ASCII

impl StartupLock {
    async fn acquire(store: &Store, url: &str) -> anyhow::Result<Self> {
        if store.backend() != DatabaseBackend::Postgres {
            return Ok(Self(None));
        }
        // The lock belongs to one connection, and a pool could hand the unlock to another: hold a
        // dedicated single connection for the duration.
        let single = single_connection(url).await.context("opening the start-up lock connection")?;
        single
            .execute_raw(Statement::from_string(
                DatabaseBackend::Postgres,
                format!("SELECT pg_advisory_lock({STARTUP_LOCK_ID})"),
            ))
            .await
            .context("taking the start-up advisory lock")?;
        Ok(Self(Some(single)))
    }

    pub async fn release(self) -> anyhow::Result<()> {
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

/// The name of the account `account_id` (every row that names an account holds its id).
pub async fn account_name<C: ConnectionTrait>(db: &C, account_id: &str) -> AppResult<String> {
    crate::entity::account::Entity::find_by_id(account_id)
        .one(db)
        .await?
        .map(|a| a.name)
        .ok_or_else(|| AppError::Internal(anyhow::anyhow!("account {account_id} vanished")))
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
