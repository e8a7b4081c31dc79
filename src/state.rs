//! What every handler and resolver shares. The GraphQL schema is not part of it: the schema holds
//! this state as its data, and the router holds both (`http::HttpState`).
use std::sync::Arc;

use crate::auth::{Authenticator, LastUseRecorder};
use crate::config::Settings;
use crate::domain::KeyPrefix;
use crate::service::Store;

#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub auth: Authenticator,
    pub key_prefix: KeyPrefix,
    pub session_ttl: chrono::Duration,
    pub settings: Arc<Settings>,
}

impl AppState {
    pub fn new(store: Store, key_prefix: KeyPrefix, settings: Settings) -> Self {
        Self {
            auth: Authenticator::new(
                store.clone(),
                settings.failures_per_minute,
                LastUseRecorder::new(settings.last_used_flush_secs > 0),
            ),
            store,
            key_prefix,
            session_ttl: chrono::Duration::seconds(settings.session_ttl_secs),
            settings: Arc::new(settings),
        }
    }
}
