//! appkeys: a GraphQL API server that issues and governs application keys.
//!
//! Data flows one way: `http` → `graphql` → `service` → `entity`, with `auth` resolving the caller
//! and `domain` holding the self-validating types every layer shares. See ARCHITECTURE.md.
pub mod auth;
pub mod cli;
pub mod config;
pub mod domain;
pub mod entity;
pub mod error;
pub mod graphql;
pub mod http;
pub mod service;

use anyhow::Context as _;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;

use crate::config::Settings;
use crate::domain::{KeyPrefix, Password};
use crate::graphql::AppSchema;
use crate::service::accounts::Bootstrapped;
use crate::service::Store;

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub auth: auth::Authenticator,
    pub schema: AppSchema,
    pub key_prefix: KeyPrefix,
    pub session_ttl: chrono::Duration,
    pub settings: Arc<Settings>,
}

/// The router, for tests and embedding.
pub fn app(state: AppState) -> axum::Router {
    http::router(state)
}

/// A bound, prepared server: `build` binds first (port 0 works) and prepares the database;
/// `run_until_stopped` serves.
pub struct Application {
    listener: TcpListener,
    state: AppState,
    bootstrapped: Option<Bootstrapped>,
}

impl Application {
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let key_prefix = KeyPrefix::parse(&settings.key_prefix).context("--key-prefix")?;
        let store = Store::connect(&settings).await?;
        let bootstrapped = store.prepare(&settings).await?;
        if store.backend() == sea_orm::DatabaseBackend::Postgres {
            let url = secrecy::ExposeSecret::expose_secret(&settings.database_url).to_owned();
            tokio::spawn(auth::cache::follow_changes(url, store.clone()));
        }
        // Compute the unknown-email dummy hash now, off the async threads, not in the first login.
        tokio::task::spawn_blocking(Password::dummy_hash).await.context("preparing the dummy hash")?;
        let listener = TcpListener::bind(settings.bind).await.with_context(|| format!("binding {}", settings.bind))?;
        let state = build_state(store, key_prefix, settings);
        Ok(Self { listener, state, bootstrapped })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// The bootstrap login, when this start created the first account.
    pub fn take_bootstrapped(&mut self) -> Option<Bootstrapped> {
        self.bootstrapped.take()
    }

    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        let router = app(self.state).into_make_service_with_connect_info::<SocketAddr>();
        axum::serve(self.listener, router).with_graceful_shutdown(shutdown).await.context("serving HTTP")
    }
}

fn build_state(store: Store, key_prefix: KeyPrefix, settings: Settings) -> AppState {
    let mut state = AppState {
        auth: auth::Authenticator::new(store.clone(), settings.failures_per_minute),
        store,
        schema: graphql::build(None),
        key_prefix,
        session_ttl: chrono::Duration::seconds(settings.session_ttl_secs),
        settings: Arc::new(settings),
    };
    state.schema = graphql::build(Some(state.clone()));
    state
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down");
}
