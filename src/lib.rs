//! appkeys: a GraphQL API server that issues and governs application keys.
//!
//! Data flows one way: `http` → `graphql` → `service` → `entity`, with `auth` resolving the caller
//! and `domain` holding the self-validating types every layer shares. See ARCHITECTURE.md.
pub mod auth;
pub mod cli;
pub mod clock;
pub mod config;
pub mod delivery;
pub mod domain;
pub mod entity;
pub mod error;
pub mod graphql;
pub mod http;
pub mod jobs;
pub mod principal;
pub mod service;
pub mod state;
pub mod telemetry;

use anyhow::Context as _;
use std::future::{Future, IntoFuture};
use std::net::SocketAddr;
use tokio::net::TcpListener;

use crate::config::Settings;
use crate::domain::KeyPrefix;
use crate::error::AppError;
use crate::graphql::Schemas;
use crate::service::identity::accounts::CreatedAccount;
pub use crate::state::AppState;

/// The router over a state, for tests and embedding.
pub fn app(state: AppState) -> axum::Router {
    let schema = Schemas::build(state.clone());
    http::router(state, schema)
}

/// A bound, prepared server: `build` binds first (port 0 works) and prepares the database;
/// `run_until_stopped` serves.
pub struct Application {
    listener: TcpListener,
    metrics_listener: Option<TcpListener>,
    state: AppState,
    schema: Schemas,
    bootstrapped: Option<CreatedAccount>,
}

impl Application {
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let key_prefix = KeyPrefix::parse(&settings.key_prefix).context("--key-prefix")?;
        // Bind first: a start that cannot serve (the port is taken) changes nothing, so it never
        // creates an owner whose password nobody saw.
        let listener = TcpListener::bind(settings.bind).await.with_context(|| format!("binding {}", settings.bind))?;
        let metrics_listener = match settings.metrics_bind {
            Some(address) => {
                Some(TcpListener::bind(address).await.with_context(|| format!("binding {address} (--metrics-bind)"))?)
            }
            None => None,
        };
        telemetry::handle();
        let store = crate::service::open(&settings).await?;
        let bootstrapped = crate::service::prepare(&store, &settings).await?;
        service::identity::passwords::prepare(&store)
            .await
            .map_err(AppError::into_anyhow)
            .context("preparing the dummy hash")?;
        let state = AppState::new(store, key_prefix, settings)?;
        let schema = Schemas::build(state.clone());
        Ok(Self { listener, metrics_listener, state, schema, bootstrapped })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// The bootstrap login, when this start created the first account.
    pub fn take_bootstrapped(&mut self) -> Option<CreatedAccount> {
        self.bootstrapped.take()
    }

    /// Serves until `shutdown` resolves, with the background jobs; then stops accepting, lets
    /// in-flight requests finish, stops the jobs (writing the last uses they hold) and closes the
    /// pool — all within `--shutdown-grace-secs` of the signal. Whatever has not finished by then
    /// (the database away) is logged and given up: a replica always stops.
    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        let jobs = jobs::Jobs::start(&self.state);
        let store = self.state.store.clone();
        let recorder = self.state.auth.last_use().clone();
        let grace = std::time::Duration::from_secs(self.state.settings.shutdown_grace_secs);
        let metrics_server = self.metrics_listener.map(|listener| {
            let router = http::metrics_router(self.state.clone());
            tokio::spawn(async move { axum::serve(listener, router).await })
        });
        let router = http::router(self.state, self.schema).into_make_service_with_connect_info::<SocketAddr>();
        let (signalled, on_signal) = tokio::sync::oneshot::channel::<()>();
        let shutdown = async move {
            shutdown.await;
            let _ = signalled.send(());
        };
        let mut serving =
            tokio::spawn(axum::serve(self.listener, router).with_graceful_shutdown(shutdown).into_future());
        // Serving ends by itself only on an error; otherwise the grace period starts at the signal.
        let served = tokio::select! {
            served = &mut serving => Some(served),
            _ = on_signal => None,
        };
        if let Some(server) = metrics_server {
            server.abort();
        }
        // One grace period for the whole stop: what is still running when it ends is given up.
        let mut step = "requests in flight";
        let mut closed = Ok(());
        let mut result = Ok(());
        let stopped = tokio::time::timeout(grace, async {
            let served = match served {
                Some(served) => served,
                None => (&mut serving).await,
            };
            result = served.context("the HTTP server stopped").and_then(|s| s.context("serving HTTP"));
            step = "background jobs (the last uses not yet written)";
            jobs.stop().await;
            step = "closing the database pool";
            closed = store.close().await.map_err(AppError::into_anyhow).context("closing the database pool");
        })
        .await;
        if stopped.is_err() {
            serving.abort();
            tracing::warn!(
                grace_secs = grace.as_secs(),
                given_up = step,
                unwritten_last_uses = recorder.pending(),
                "the stop did not finish within its grace period; the rest is given up"
            );
        }
        closed?;
        tracing::info!("stopped");
        result
    }
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
