//! Test helpers: `TestApp` (the real server over a fresh database, driven over real HTTP), the
//! backends and their databases, request helpers, fixtures, captured logs, and the macros that run a
//! test on SQLite and on PostgreSQL.
mod app;
mod backend;
pub mod binary;
mod client;
mod fixtures;
mod logs;
pub mod process;
pub mod receiver;
pub mod subscriber;

pub use app::TestApp;
pub use backend::{Backend, TestDatabase};
pub use client::{row_id, Auth, Gql};
pub use logs::captured_logs;

pub const OWNER_EMAIL: &str = "owner@example.com";
pub const OWNER_PASSWORD: &str = "correct horse battery staple";

/// Generates a `#[tokio::test]` per backend for each `async fn name(app: &TestApp)`.
#[macro_export]
macro_rules! backend_tests {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let app = $crate::helpers::TestApp::spawn($crate::helpers::Backend::Sqlite).await;
                    super::$name(&app).await;
                    app.cleanup().await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                #[cfg_attr(not(appkeys_postgres_tests), ignore = "needs APPKEYS_TEST_POSTGRES_URL at build time")]
                async fn $name() {
                    let app = $crate::helpers::TestApp::spawn($crate::helpers::Backend::Postgres).await;
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
                #[cfg_attr(not(appkeys_postgres_tests), ignore = "needs APPKEYS_TEST_POSTGRES_URL at build time")]
                async fn $name() {
                    super::$name($crate::helpers::Backend::Postgres).await;
                }
            )*
        }
    };
}
