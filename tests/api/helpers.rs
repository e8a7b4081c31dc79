//! `TestApp`: the real server on port 0 over a fresh database (a SQLite file, or a new PostgreSQL
//! database when `APPKEYS_TEST_POSTGRES_URL` is set), driven over real HTTP.
use appkeys::config::Settings;
use appkeys::service::{accounts, Store};
use appkeys::{AppState, Application};
use reqwest::Url;
use sea_orm::{ConnectionTrait, Database};
use serde_json::{json, Value};
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

pub const OWNER_EMAIL: &str = "owner@example.com";
pub const OWNER_PASSWORD: &str = "correct horse battery staple";
pub const POSTGRES_ENV: &str = "APPKEYS_TEST_POSTGRES_URL";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// PostgreSQL tests run only when the variable is set; once set, an unreachable server fails them.
    pub fn available(self) -> bool {
        match self {
            Backend::Sqlite => true,
            Backend::Postgres => std::env::var(POSTGRES_ENV).is_ok_and(|v| !v.is_empty()),
        }
    }
}

/// Every log line the servers in this test binary wrote, so tests can prove no secret is logged.
pub fn captured_logs() -> String {
    let buffer = log_buffer();
    let bytes = buffer.lock().expect("log buffer").clone();
    String::from_utf8_lossy(&bytes).into_owned()
}

fn log_buffer() -> Arc<Mutex<Vec<u8>>> {
    static BUFFER: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    BUFFER
        .get_or_init(|| {
            let buffer = Arc::new(Mutex::new(Vec::new()));
            let writer = LogWriter(buffer.clone());
            let _ = tracing_subscriber::fmt()
                .with_env_filter("debug")
                .with_ansi(false)
                .with_writer(move || writer.clone())
                .try_init();
            buffer
        })
        .clone()
}

#[derive(Clone)]
struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().map_err(|_| std::io::Error::other("poisoned"))?.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Credentials a test request carries.
#[derive(Debug, Clone)]
pub enum Auth {
    None,
    Bearer(String),
    Key { key: String, token: String, account: Option<String> },
    Raw(Vec<(String, String)>),
}

impl Auth {
    pub fn key(key: &str, token: &str) -> Self {
        Auth::Key { key: key.into(), token: token.into(), account: None }
    }

    pub fn key_for(key: &str, token: &str, account: &str) -> Self {
        Auth::Key { key: key.into(), token: token.into(), account: Some(account.into()) }
    }

    pub fn apply(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match self {
            Auth::None => request,
            Auth::Bearer(token) => request.bearer_auth(token),
            Auth::Key { key, token, account } => {
                let request = request.header("x-api-appkey", key).header("x-api-apptoken", token);
                match account {
                    Some(account) => request.header("x-account", account),
                    None => request,
                }
            }
            Auth::Raw(headers) => headers.iter().fold(request, |r, (k, v)| r.header(k.as_str(), v.as_str())),
        }
    }
}

/// A GraphQL response with assertions that print the whole body when they fail.
#[derive(Debug, Clone)]
pub struct Gql(pub Value);

impl Gql {
    /// `data.<path>` of a response that must have no errors.
    pub fn data(&self, path: &str) -> Value {
        assert!(self.0.get("errors").is_none(), "unexpected errors: {:#}", self.0);
        let mut value = &self.0["data"];
        for part in path.split('.').filter(|p| !p.is_empty()) {
            value = &value[part];
        }
        value.clone()
    }

    /// The `extensions.code` of the first error; fails when there is none.
    pub fn code(&self) -> String {
        self.0["errors"][0]["extensions"]["code"]
            .as_str()
            .unwrap_or_else(|| panic!("expected an error with a code: {:#}", self.0))
            .to_owned()
    }

    pub fn message(&self) -> String {
        self.0["errors"][0]["message"].as_str().unwrap_or_default().to_owned()
    }

    pub fn assert_code(&self, code: &str) {
        assert_eq!(self.code(), code, "response: {:#}", self.0);
    }
}

pub struct TestApp {
    pub backend: Backend,
    pub address: String,
    pub client: reqwest::Client,
    pub state: AppState,
    pub database_url: String,
    pub sqlite_path: Option<PathBuf>,
    pg_database: Option<(String, String)>,
    _dir: Option<tempfile::TempDir>,
    server: tokio::task::JoinHandle<()>,
}

impl TestApp {
    /// A server over a fresh database with the bootstrap account `main` and its owner.
    pub async fn spawn(backend: Backend) -> Option<Self> {
        Self::spawn_with(backend, |_| {}).await
    }

    pub async fn spawn_with(backend: Backend, configure: impl FnOnce(&mut Settings)) -> Option<Self> {
        log_buffer();
        if !backend.available() {
            return None;
        }
        let (database_url, sqlite_path, pg_database, dir) = match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("temp dir");
                let path = dir.path().join("appkeys.db");
                (format!("sqlite://{}?mode=rwc", path.display()), Some(path), None, Some(dir))
            }
            Backend::Postgres => {
                let (url, admin_url, name) = create_postgres_database().await;
                (url, None, Some((admin_url, name)), None)
            }
        };
        let mut settings = Settings::for_database(&database_url);
        settings.bind = "127.0.0.1:0".parse().expect("address");
        settings.bootstrap_account = "main".into();
        settings.bootstrap_email = OWNER_EMAIL.into();
        settings.bootstrap_password = Some(OWNER_PASSWORD.to_owned().into());
        configure(&mut settings);
        Some(Self::start(backend, settings, database_url, sqlite_path, pg_database, dir).await)
    }

    async fn start(
        backend: Backend,
        settings: Settings,
        database_url: String,
        sqlite_path: Option<PathBuf>,
        pg_database: Option<(String, String)>,
        dir: Option<tempfile::TempDir>,
    ) -> Self {
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
            database_url,
            sqlite_path,
            pg_database,
            _dir: dir,
            server,
        }
    }

    /// A second server on the same database (a replica, or a restart).
    pub async fn another_server(&self) -> (String, Application) {
        let mut settings = Settings::for_database(&self.database_url);
        settings.bind = "127.0.0.1:0".parse().expect("address");
        settings.bootstrap_email = OWNER_EMAIL.into();
        settings.bootstrap_password = Some(OWNER_PASSWORD.to_owned().into());
        let app = Application::build(settings).await.expect("the second server builds");
        (format!("http://{}", app.local_addr().expect("bound address")), app)
    }

    pub fn store(&self) -> &Store {
        &self.state.store
    }

    /// Drops the PostgreSQL database of this test.
    pub async fn cleanup(self) {
        self.server.abort();
        let _ = self.server.await;
        self.state.store.db.clone().close().await.ok();
        if let Some((admin_url, name)) = &self.pg_database {
            if let Ok(admin) = Database::connect(admin_url.as_str()).await {
                let _ = admin.execute_unprepared(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)")).await;
            }
        }
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

    pub async fn login(&self, account: &str, email: &str, password: &str) -> Gql {
        self.graphql(
            &Auth::None,
            "mutation($input: LoginInput!) { login(input: $input) { token expiresAt account user { id email } } }",
            json!({ "input": { "account": account, "email": email, "password": password } }),
        )
        .await
    }

    pub async fn login_token(&self, account: &str, email: &str, password: &str) -> String {
        let token = self.login(account, email, password).await.data("login.token");
        token.as_str().expect("a token").to_owned()
    }

    /// A session of the bootstrap owner of `main`.
    pub async fn owner(&self) -> Auth {
        Auth::Bearer(self.login_token("main", OWNER_EMAIL, OWNER_PASSWORD).await)
    }

    /// Creates another account (as `appkeys account create` does) and logs its owner in.
    pub async fn account_with_owner(&self, name: &str) -> Auth {
        let email = format!("owner@{name}.example.com");
        accounts::create(self.store(), name, &email, Some(OWNER_PASSWORD)).await.expect("account created");
        Auth::Bearer(self.login_token(name, &email, OWNER_PASSWORD).await)
    }

    /// The id of a role by name, as `auth` sees it.
    pub async fn role_id(&self, auth: &Auth, name: &str) -> String {
        let roles = self.graphql(auth, "{ roles { id name } }", json!({})).await.data("roles");
        roles
            .as_array()
            .expect("roles")
            .iter()
            .find(|r| r["name"] == name)
            .and_then(|r| r["id"].as_str())
            .unwrap_or_else(|| panic!("no role {name}: {roles}"))
            .to_owned()
    }

    pub async fn owner_role(&self, auth: &Auth) -> String {
        self.role_id(auth, "Owner (Admin Super)").await
    }

    pub async fn restricted_role(&self, auth: &Auth) -> String {
        self.role_id(auth, "User Administrator - RESTRICTED").await
    }

    /// Creates a custom role holding these resources.
    pub async fn custom_role(&self, auth: &Auth, name: &str, resources: &[&str]) -> String {
        let created = self
            .graphql(
                auth,
                "mutation($input: CreateRoleInput!) { createRole(input: $input) { id } }",
                json!({ "input": { "name": name, "resourceIds": resources } }),
            )
            .await;
        created.data("createRole.id").as_str().expect("role id").to_owned()
    }

    /// Adds a user with these roles and returns a session of theirs.
    pub async fn user_with_roles(&self, auth: &Auth, email: &str, role_ids: &[String]) -> Auth {
        let added = self
            .graphql(
                auth,
                "mutation($input: AddUserInput!) { addUser(input: $input) { user { id } oneTimePassword } }",
                json!({ "input": { "email": email, "roleIds": role_ids } }),
            )
            .await;
        let password = added.data("addUser.oneTimePassword");
        let account = self.graphql(auth, "{ viewer { account } }", json!({})).await.data("viewer.account");
        Auth::Bearer(
            self.login_token(account.as_str().expect("account"), email, password.as_str().expect("password")).await,
        )
    }

    /// Generates a key with these roles; returns (key, token).
    pub async fn generate_key(&self, auth: &Auth, label: Option<&str>, role_ids: &[String]) -> (String, String) {
        let generated = self
            .graphql(
                auth,
                "mutation($input: GenerateAppKeyInput!) { generateAppKey(input: $input) { appKey { key } appToken } }",
                json!({ "input": { "label": label, "roleIds": role_ids } }),
            )
            .await;
        (
            generated.data("generateAppKey.appKey.key").as_str().expect("key").to_owned(),
            generated.data("generateAppKey.appToken").as_str().expect("token").to_owned(),
        )
    }

    /// A GET with auth headers.
    pub async fn get(&self, path: &str, auth: &Auth) -> reqwest::Response {
        auth.apply(self.client.get(format!("{}{path}", self.address))).send().await.expect("the request is sent")
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

/// Creates a fresh database on the PostgreSQL server; returns (its URL, the admin URL, its name).
pub async fn create_postgres_database() -> (String, String, String) {
    let admin_url = std::env::var(POSTGRES_ENV).expect("APPKEYS_TEST_POSTGRES_URL");
    let admin = Database::connect(admin_url.as_str())
        .await
        .unwrap_or_else(|e| panic!("{POSTGRES_ENV} is set but PostgreSQL is unreachable: {e}"));
    let name = format!("appkeys_t_{}", uuid::Uuid::now_v7().simple());
    admin
        .execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
        .await
        .unwrap_or_else(|e| panic!("creating the test database failed: {e}"));
    admin.close().await.ok();
    let mut url = Url::parse(&admin_url).expect("APPKEYS_TEST_POSTGRES_URL is a URL");
    url.set_path(&format!("/{name}"));
    (url.to_string(), admin_url, name)
}

/// Generates a `#[tokio::test]` per backend for each `async fn name(app: &TestApp)`.
#[macro_export]
macro_rules! backend_tests {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let app = $crate::helpers::TestApp::spawn($crate::helpers::Backend::Sqlite).await.expect("sqlite");
                    super::$name(&app).await;
                    app.cleanup().await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let Some(app) = $crate::helpers::TestApp::spawn($crate::helpers::Backend::Postgres).await else {
                        eprintln!("skipped: {} is not set", $crate::helpers::POSTGRES_ENV);
                        return;
                    };
                    super::$name(&app).await;
                    app.cleanup().await;
                }
            )*
        }
    };
}

/// Generates a `#[tokio::test]` per backend for each `async fn name(backend: Backend)` that spawns
/// its own servers.
#[macro_export]
macro_rules! backend_cases {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::helpers::Backend::Sqlite).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    if !$crate::helpers::Backend::Postgres.available() {
                        eprintln!("skipped: {} is not set", $crate::helpers::POSTGRES_ENV);
                        return;
                    }
                    super::$name($crate::helpers::Backend::Postgres).await;
                }
            )*
        }
    };
}
