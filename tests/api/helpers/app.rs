//! `TestApp`: the real server on port 0 over a fresh database, driven over real HTTP.
use appkeys::config::Settings;
use appkeys::service::store::Store;
use appkeys::{AppState, Application};
use sea_orm::ConnectionTrait;
use serde_json::{json, Value};
use std::path::PathBuf;

use super::logs::log_buffer;
use super::{Auth, Backend, Gql, TestDatabase, OWNER_EMAIL, OWNER_PASSWORD};

pub struct TestApp {
    pub backend: Backend,
    pub address: String,
    pub client: reqwest::Client,
    pub state: AppState,
    pub database_url: String,
    pub sqlite_path: Option<PathBuf>,
    /// The test's own connection to the server's database, for what a test reads or writes in SQL.
    db: sea_orm::DatabaseConnection,
    server: tokio::task::JoinHandle<()>,
    /// Last, so it is dropped after the server: the database goes when the test ends, however it ends.
    _database: TestDatabase,
}

impl Drop for TestApp {
    /// However the test ended (passed, or a failed assertion unwinding), its server stops; the
    /// database goes after it (`TestDatabase`, the last field).
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl TestApp {
    /// A server over a fresh database with the bootstrap account `main` and its owner.
    pub async fn spawn(backend: Backend) -> Self {
        Self::spawn_with(backend, |_| {}).await
    }

    pub async fn spawn_with(backend: Backend, configure: impl FnOnce(&mut Settings)) -> Self {
        log_buffer();
        let database = TestDatabase::create(backend).await;
        let mut settings = Settings::for_database(&database.url);
        settings.bind = "127.0.0.1:0".parse().expect("address");
        settings.bootstrap_account = "main".into();
        settings.bootstrap_email = OWNER_EMAIL.into();
        settings.bootstrap_password = Some(OWNER_PASSWORD.to_owned().into());
        configure(&mut settings);
        let app = Application::build(settings).await.expect("the application builds");
        let address = format!("http://{}", app.local_addr().expect("bound address"));
        let state = app.state().clone();
        let server = tokio::spawn(async move {
            let _ = app.run_until_stopped(std::future::pending()).await;
        });
        let db = sea_orm::Database::connect(database.url.as_str()).await.expect("the test connects to the database");
        if backend == Backend::Postgres {
            // The change feed stamps every cached credential when it connects: a test counting
            // cache hits starts once it has.
            let feed = state.store.part::<appkeys::service::events::follow::Feed>();
            let listening = super::process::poll_until(std::time::Duration::from_secs(10), || {
                std::future::ready(feed.is_listening())
            })
            .await;
            assert!(listening, "the change feed listens within 10 s");
        }
        Self {
            db,
            backend,
            address,
            client: reqwest::Client::new(),
            state,
            database_url: database.url.clone(),
            sqlite_path: database.sqlite_path.clone(),
            server,
            _database: database,
        }
    }

    /// A second server on the same database (a replica, or a restart).
    pub async fn another_server(&self) -> (String, Application) {
        self.another_server_with(|_| {}).await
    }

    pub async fn another_server_with(&self, configure: impl FnOnce(&mut Settings)) -> (String, Application) {
        let mut settings = Settings::for_database(&self.database_url);
        settings.bind = "127.0.0.1:0".parse().expect("address");
        settings.bootstrap_email = OWNER_EMAIL.into();
        settings.bootstrap_password = Some(OWNER_PASSWORD.to_owned().into());
        configure(&mut settings);
        let app = Application::build(settings).await.expect("the second server builds");
        (format!("http://{}", app.local_addr().expect("bound address")), app)
    }

    /// Ends every PostgreSQL connection to this test's database but the caller's own (the servers'
    /// pools, their change feeds) with `pg_terminate_backend`; how many it ended.
    pub async fn terminate_backends(&self) -> i64 {
        use sea_orm::ConnectionTrait;
        let admin = sea_orm::Database::connect(self.database_url.as_str()).await.expect("connected");
        let terminate = "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
                         WHERE datname = current_database() AND pid <> pg_backend_pid()";
        let row = admin.query_one_raw(sea_orm::Statement::from_string(admin.get_database_backend(), terminate)).await;
        let ended: i64 = row.expect("terminated").expect("a row").try_get_by_index(0).expect("a count");
        admin.close().await.expect("closed");
        ended
    }

    /// The test's own connection to the database (not the server's pool).
    pub fn db(&self) -> &sea_orm::DatabaseConnection {
        &self.db
    }

    pub fn store(&self) -> &Store {
        &self.state.store
    }

    /// Moves this server's clock forward (expiries, overlaps and sweeps without waiting).
    pub fn advance_clock(&self, by: chrono::Duration) {
        self.store().clock().advance(by);
    }

    /// Waits until this server's webhook deliverer has attempted every delivery due now (two of its
    /// rounds found nothing due and nothing in flight), instead of sleeping for it.
    pub async fn deliverer_caught_up(&self) {
        let bus = appkeys::service::events::outbox::bus(self.store());
        tokio::time::timeout(std::time::Duration::from_secs(10), bus.caught_up())
            .await
            .expect("the deliverer caught up within 10 s");
    }

    /// Stops this server abruptly (a crash), keeping its database for another server.
    pub async fn kill_server(&self) {
        self.server.abort();
        while !self.server.is_finished() {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }

    /// Stops the server and closes its pools now; the database itself goes with `TestDatabase`'s drop.
    /// A test that ends without it (a failed assertion) is cleaned up by `Drop` all the same.
    pub async fn cleanup(self) {
        self.server.abort();
        while !self.server.is_finished() {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        self.state.store.close().await.ok();
        self.db.clone().close().await.ok();
    }

    pub async fn graphql(&self, auth: &Auth, query: &str, variables: Value) -> Gql {
        self.graphql_at(&self.address, auth, query, variables).await
    }

    pub async fn graphql_at(&self, address: &str, auth: &Auth, query: &str, variables: Value) -> Gql {
        let request =
            self.client.post(format!("{address}/graphql")).json(&json!({ "query": query, "variables": variables }));
        let response = auth.apply(request).send().await.expect("the request is sent");
        let status = response.status();
        let body: Value = response.json().await.expect("a JSON body");
        assert!(status.is_success(), "HTTP {status}: {body:#}");
        Gql(body)
    }

    /// A GET with auth headers.
    pub async fn get(&self, path: &str, auth: &Auth) -> reqwest::Response {
        self.get_at(&self.address, path, auth).await
    }

    /// A GET with auth headers to another server (a replica).
    pub async fn get_at(&self, address: &str, path: &str, auth: &Auth) -> reqwest::Response {
        auth.apply(self.client.get(format!("{address}{path}"))).send().await.expect("the request is sent")
    }

    /// The first column of the first row of `sql`, run directly on the database.
    pub async fn scalar<T: sea_orm::TryGetable>(&self, sql: impl AsRef<str>) -> T {
        let sql = sql.as_ref();
        let db = &self.db;
        let row = db
            .query_one_raw(sea_orm::Statement::from_string(db.get_database_backend(), sql.to_owned()))
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .unwrap_or_else(|| panic!("{sql}: no row"));
        row.try_get_by_index(0).unwrap_or_else(|e| panic!("{sql}: {e:?}"))
    }

    /// Every table's rows as text, to prove a refused mutation changed nothing. The tables come from
    /// the database's own catalogue, so a new table is in the snapshot without a change here.
    pub async fn snapshot(&self) -> String {
        let db = &self.db;
        let backend = db.get_database_backend();
        let query = |sql: String| db.query_all_raw(sea_orm::Statement::from_string(backend, sql));
        let tables = match backend {
            sea_orm::DatabaseBackend::Postgres => {
                "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() ORDER BY 1"
            }
            _ => "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY 1",
        };
        let tables: Vec<String> = (query(tables.to_owned()).await.expect("the tables").iter())
            .map(|row| row.try_get_by_index(0).expect("a table name"))
            .collect();
        assert!(tables.len() >= 17, "every table of the schema: {tables:?}");
        let mut out = String::new();
        for table in tables {
            // Each row as JSON text written by the database (a row's Debug shows no values).
            let as_text = match backend {
                sea_orm::DatabaseBackend::Postgres => format!("SELECT row_to_json(t)::text FROM \"{table}\" t"),
                _ => {
                    let columns =
                        query(format!("SELECT name FROM pragma_table_info('{table}')")).await.expect("columns");
                    let columns: Vec<String> = (columns.iter())
                        .map(|row| format!("'{0}', \"{0}\"", row.try_get_by_index::<String>(0).expect("a column")))
                        .collect();
                    format!("SELECT json_object({}) FROM \"{table}\"", columns.join(", "))
                }
            };
            let rows = query(as_text).await.expect("snapshot query");
            // Rows in no stated order, so sorted.
            let mut rows: Vec<String> =
                rows.iter().map(|row| row.try_get_by_index(0).expect("a row as text")).collect();
            rows.sort();
            out.push_str(&format!("{table}: {}\n", rows.join("\n  ")));
        }
        out
    }

    /// The raw bytes of the SQLite database file and its WAL.
    pub fn sqlite_bytes(&self) -> Vec<u8> {
        let mut bytes = Vec::new();
        if let Some(path) = &self.sqlite_path {
            for suffix in ["", "-wal", "-shm"] {
                let file = PathBuf::from(format!("{}{suffix}", path.display()));
                if let Ok(content) = std::fs::read(file) {
                    bytes.extend(content);
                }
            }
        }
        bytes
    }
}
