//! Who is calling: the one type every layer shares. A leaf module: `auth` builds principals,
//! `service` reads them (who acts, with which resources), `graphql` and `http` check them.
use std::collections::BTreeSet;
use std::sync::OnceLock;

use axum::http::{HeaderName, HeaderValue};

use crate::domain::{KeyPolicy, Resource};

/// What kind of caller a principal is.
#[derive(Debug, Clone)]
pub enum PrincipalKind {
    User {
        user_id: String,
        email: String,
        session_id: String,
    },
    /// `access_id`: the key's access row in the account the request acts on.
    AppKey {
        key_id: String,
        key: String,
        access_id: String,
    },
}

/// An authenticated caller, bound to the account the request acts on, with its resources there.
#[derive(Debug, Clone)]
pub struct Principal {
    pub kind: PrincipalKind,
    pub account_id: String,
    pub account_name: String,
    pub resources: BTreeSet<String>,
    /// The headers `/auth` answers with for this principal, written on its first answer and kept
    /// with it (a cached principal answers many requests).
    pub forward_headers: OnceLock<Vec<(HeaderName, HeaderValue)>>,
    /// An app key's policy in this account (`None`: the empty policy, or not a key).
    pub policy: Option<std::sync::Arc<KeyPolicy>>,
}

impl Principal {
    /// How the audit log names this caller.
    pub fn actor(&self) -> String {
        match &self.kind {
            PrincipalKind::User { email, .. } => format!("user:{email}"),
            PrincipalKind::AppKey { key, .. } => format!("appkey:{key}"),
        }
    }

    pub fn holds(&self, resource: Resource) -> bool {
        self.resources.contains(resource.id())
    }

    /// The key id when the caller is an app key.
    pub fn app_key_id(&self) -> Option<&str> {
        match &self.kind {
            PrincipalKind::AppKey { key_id, .. } => Some(key_id),
            PrincipalKind::User { .. } => None,
        }
    }
}
