//! `TestApp`: the real server on port 0 over a fresh database, driven over real HTTP.
use appkeys::config::Settings;
use appkeys::service::Store;
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
    server: tokio::task::JoinHandle<()>,
    /// Last, so it is dropped after the server: the database goes when the test ends, however it ends.
    _database: TestDatabase,
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
        Self {
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

    pub fn store(&self) -> &Store {
        &self.state.store
    }

    /// Moves this server's clock forward (expiries, overlaps and sweeps without waiting).
    pub fn advance_clock(&self, by: chrono::Duration) {
        self.store().clock().advance(by);
    }

    /// Stops this server abruptly (a crash), keeping its database for another server.
    pub async fn kill_server(&self) {
        self.server.abort();
        while !self.server.is_finished() {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }

    /// Stops the server and closes its pool; the database itself goes with `TestDatabase`'s drop.
    pub async fn cleanup(self) {
        self.server.abort();
        let _ = self.server.await;
        self.state.store.db.clone().close().await.ok();
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
        auth.apply(self.client.get(format!("{}{path}", self.address))).send().await.expect("the request is sent")
    }

    /// The first column of the first row of `sql`, run directly on the database.
    pub async fn scalar<T: sea_orm::TryGetable>(&self, sql: impl AsRef<str>) -> T {
        let sql = sql.as_ref();
        let db = &self.store().db;
        let row = db
            .query_one_raw(sea_orm::Statement::from_string(db.get_database_backend(), sql.to_owned()))
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .unwrap_or_else(|| panic!("{sql}: no row"));
        row.try_get_by_index(0).unwrap_or_else(|e| panic!("{sql}: {e:?}"))
    }

    /// Every table's rows as text, to prove a refused mutation changed nothing.
    pub async fn snapshot(&self) -> String {
        let db = &self.store().db;
        let mut out = String::new();
        for (table, order) in [
            ("accounts", "id"),
            ("roles", "id"),
            ("role_resources", "role_id, resource_id"),
            ("users", "id"),
            ("user_roles", "user_id, role_id"),
            ("app_keys", "id"),
            ("key_access", "id"),
            ("key_access_roles", "key_access_id, role_id"),
            ("audit_events", "id"),
            ("account_settings", "account_id"),
            ("key_events", "id"),
            ("webhook_endpoints", "id"),
            ("webhook_deliveries", "id"),
        ] {
            let rows = db
                .query_all_raw(sea_orm::Statement::from_string(
                    db.get_database_backend(),
                    format!("SELECT * FROM {table} ORDER BY {order}"),
                ))
                .await
                .expect("snapshot query");
            out.push_str(&format!("{table}: {rows:?}\n"));
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
