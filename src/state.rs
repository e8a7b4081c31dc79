//! What every handler and resolver shares. The GraphQL schema is not part of it: the schema holds
//! this state as its data, and the router holds both (`http::HttpState`).
use std::sync::Arc;

use crate::auth::{Authenticator, Gate, LastUseRecorder};
use crate::config::Settings;
use crate::domain::KeyPrefix;
use crate::service::store::Store;

/// Cloned for every request (each extractor and middleware layer takes its own copy), so one
/// reference count: cloning the parts themselves — the pool, the caches, the clock, each an `Arc`
/// or several — took a tenth of `/auth`'s CPU on two cores, most of it in contended atomics.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

pub struct Shared {
    pub store: Store,
    pub auth: Authenticator,
    pub key_prefix: KeyPrefix,
    pub session_ttl: chrono::Duration,
    pub settings: Arc<Settings>,
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

impl AppState {
    pub fn new(store: Store, key_prefix: KeyPrefix, settings: Settings) -> anyhow::Result<Self> {
        use secrecy::ExposeSecret;
        let gate = Gate::new(store.clone(), settings.redis_url.as_ref().map(|url| url.expose_secret()))?;
        Ok(Self(Arc::new(Shared {
            auth: Authenticator::new(
                store.clone(),
                settings.failures_per_minute,
                LastUseRecorder::new(settings.last_used_flush_secs > 0),
                gate,
            ),
            store,
            key_prefix,
            session_ttl: chrono::Duration::seconds(settings.session_ttl_secs),
            settings: Arc::new(settings),
        })))
    }
}
