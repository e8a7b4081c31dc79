//! The two backends and a fresh database on each, dropped when the test ends (even by a panic).
use reqwest::Url;
use sea_orm::{ConnectionTrait, Database};
use std::path::PathBuf;

pub const POSTGRES_ENV: &str = "APPKEYS_TEST_POSTGRES_URL";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A fresh database: a SQLite file in a temporary directory, or a new PostgreSQL database. Dropping
/// it removes it, so a test that panics leaks nothing.
pub struct TestDatabase {
    pub url: String,
    pub sqlite_path: Option<PathBuf>,
    postgres: Option<(String, String)>,
    _dir: Option<tempfile::TempDir>,
}

impl TestDatabase {
    pub async fn create(backend: Backend) -> Self {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("temp dir");
                let path = dir.path().join("appkeys.db");
                Self {
                    url: format!("sqlite://{}?mode=rwc", path.display()),
                    sqlite_path: Some(path),
                    postgres: None,
                    _dir: Some(dir),
                }
            }
            Backend::Postgres => {
                let admin_url = std::env::var(POSTGRES_ENV)
                    .unwrap_or_else(|_| panic!("{POSTGRES_ENV} must be set to run PostgreSQL tests"));
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
                Self { url: url.to_string(), sqlite_path: None, postgres: Some((admin_url, name)), _dir: None }
            }
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let Some((admin_url, name)) = self.postgres.take() else {
            return;
        };
        // Drop runs inside the test's runtime, which cannot be blocked on: use a runtime of its own
        // on a thread of its own. FORCE ends the connections a server still holds.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
            runtime.block_on(async {
                if let Ok(admin) = Database::connect(admin_url.as_str()).await {
                    let _ = admin.execute_unprepared(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)")).await;
                    admin.close().await.ok();
                }
            });
        });
        let _ = dropped.join();
    }
}
