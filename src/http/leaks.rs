//! Leaked tokens at the edge: GitHub's secret-scanning partner endpoint
//! (`POST /secret-scanning/github`) and self-revocation in the style of RFC 7009 (`POST /revoke`).
//! Both end in the same place: `keys::report_leaked` for app tokens, `sessions::report_leaked` for
//! session tokens; docs/leaks.md tells the whole story.
//!
//! GitHub signs each report (ECDSA P-256 with SHA-256 over the raw body, base64 DER in
//! `Github-Public-Key-Signature`) with the key named by `Github-Public-Key-Identifier`; the
//! signature is checked before the body is parsed, against the keys of `--github-scanning-keys`.
use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine as _;
use p256::ecdsa::signature::Verifier as _;
use p256::ecdsa::{Signature, VerifyingKey};
use p256::pkcs8::DecodePublicKey as _;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::{error_body, error_response, request_error, request_meta, ClientAddr, HttpState};
use crate::auth::ip_subject;
use crate::domain::{AppToken, SessionToken, TokenDigest};
use crate::error::AppError;
use crate::service::identity::sessions;
use crate::service::keys::{self, LeakReport, Reported};

/// GitHub sends large batches; a report's body is at most this big.
const MAX_REPORT_BYTES: usize = 1 << 20;
/// At most this many tokens in one report.
const MAX_REPORTED_TOKENS: usize = 1000;
/// How long the fetched keys are kept.
const KEYS_TTL: Duration = Duration::from_secs(24 * 60 * 60);
/// An unknown key identifier refetches the keys, at most once in this long (so a stream of made-up
/// identifiers cannot turn every request into a fetch).
const REFETCH_AFTER: Duration = Duration::from_secs(60);
/// A key that this replica saw current and that GitHub then marked not current still verifies for
/// this long: reports signed just before a rotation are still on their way. A key never seen
/// current is refused: an old key is no reason to accept new reports.
const RETIRED_GRACE: Duration = Duration::from_secs(60 * 60);
/// `POST /revoke`'s body is one token and a hint.
const MAX_REVOKE_BYTES: usize = 8 * 1024;

/// Who the audit log names for each path.
const GITHUB_ACTOR: &str = "github-secret-scanning";
const SELF_REVOCATION: &str = "self-revocation";

/// GitHub's public keys for secret scanning, as read from `--github-scanning-keys`.
pub(crate) struct GithubKeys {
    source: String,
    client: reqwest::Client,
    loaded: tokio::sync::Mutex<Loaded>,
}

#[derive(Default)]
struct Loaded {
    keys: HashMap<String, PublicKey>,
    fetched: Option<Instant>,
}

struct PublicKey {
    key: VerifyingKey,
    current: bool,
    /// Seen current by this replica at some point.
    seen_current: bool,
    /// When this replica first saw it no longer current, after it had seen it current.
    retired_at: Option<Instant>,
}

/// GitHub's key list: `{"public_keys":[{"key_identifier","key","is_current"}]}`.
#[derive(Deserialize)]
struct KeyList {
    public_keys: Vec<KeyEntry>,
}

#[derive(Deserialize)]
struct KeyEntry {
    key_identifier: String,
    key: String,
    is_current: bool,
}

/// Why a report's signature was refused (the caller sees the message; nothing secret in it).
enum Refused {
    /// The keys could not be read at all: the report should come again later.
    KeysUnavailable(anyhow::Error),
    Signature(&'static str),
}

impl GithubKeys {
    pub(crate) fn new(source: String) -> Self {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap_or_else(|_| reqwest::Client::new());
        Self { source, client, loaded: tokio::sync::Mutex::default() }
    }

    /// The key list's text, from the file or the `https://` URL.
    async fn read(&self) -> anyhow::Result<String> {
        if self.source.starts_with("https://") {
            let response = self.client.get(&self.source).send().await?.error_for_status()?;
            Ok(response.text().await?)
        } else if self.source.starts_with("http://") {
            anyhow::bail!("--github-scanning-keys must be a file or an https:// URL")
        } else {
            Ok(tokio::fs::read_to_string(&self.source).await?)
        }
    }

    /// Reads the keys again, keeping what this replica knew of each (seen current, retired when).
    async fn fetch(&self, loaded: &mut Loaded, now: Instant) -> anyhow::Result<()> {
        let list: KeyList = serde_json::from_str(&self.read().await?)?;
        let mut keys = HashMap::with_capacity(list.public_keys.len());
        for entry in list.public_keys {
            let key = match VerifyingKey::from_public_key_pem(entry.key.trim()) {
                Ok(key) => key,
                Err(error) => {
                    tracing::warn!(id = %entry.key_identifier, %error, "a secret-scanning key is not a P-256 public key");
                    continue;
                }
            };
            let before = loaded.keys.get(&entry.key_identifier);
            let seen_current = entry.is_current || before.is_some_and(|b| b.seen_current);
            let retired_at = match (entry.is_current, before) {
                (true, _) => None,
                (false, Some(before)) => before.retired_at.or(before.seen_current.then_some(now)),
                (false, None) => None,
            };
            keys.insert(entry.key_identifier, PublicKey { key, current: entry.is_current, seen_current, retired_at });
        }
        loaded.keys = keys;
        loaded.fetched = Some(now);
        Ok(())
    }

    /// Checks `signature` (DER) over `body` with the key `id`: keys older than a day are read
    /// again, and an unknown id reads them again once (at most once a minute).
    async fn verify(&self, now: Instant, id: &str, signature: &Signature, body: &[u8]) -> Result<(), Refused> {
        let mut loaded = self.loaded.lock().await;
        let stale = loaded.fetched.is_none_or(|at| now.saturating_duration_since(at) >= KEYS_TTL);
        let unknown = !loaded.keys.contains_key(id)
            && loaded.fetched.is_none_or(|at| now.saturating_duration_since(at) >= REFETCH_AFTER);
        if stale || unknown {
            if let Err(error) = self.fetch(&mut loaded, now).await {
                if loaded.keys.is_empty() {
                    return Err(Refused::KeysUnavailable(error));
                }
                tracing::warn!(%error, "GitHub's secret-scanning keys could not be read again; the last ones are kept");
            }
        }
        let key = loaded.keys.get(id).ok_or(Refused::Signature("no such GitHub key identifier"))?;
        if !key.current {
            let within_grace = key.retired_at.is_some_and(|at| now.saturating_duration_since(at) < RETIRED_GRACE);
            if !within_grace {
                return Err(Refused::Signature("that GitHub key is no longer current"));
            }
        }
        key.key.verify(body, signature).map_err(|_| Refused::Signature("the signature does not match the body"))
    }
}

/// One token GitHub found.
#[derive(Deserialize)]
struct FoundToken {
    token: String,
    #[serde(rename = "type")]
    token_type: String,
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    source: Option<String>,
}

/// What appkeys tells GitHub of each token.
#[derive(Serialize)]
struct Feedback {
    token_hash: String,
    token_type: String,
    label: &'static str,
}

fn unauthenticated(message: &str) -> Response {
    metrics::counter!("appkeys_secret_scanning_signature_failures_total").increment(1);
    let body = error_body(message, serde_json::json!({ "code": "UNAUTHENTICATED" }));
    (StatusCode::UNAUTHORIZED, Json(body)).into_response()
}

/// `POST /secret-scanning/github`: GitHub's report of tokens found in public. Each appkeys token in
/// it stops at once; the answer labels each `true_positive` (a token of appkeys, live or revoked)
/// or `false_positive`.
pub(super) async fn github(
    State(state): State<HttpState>,
    headers: HeaderMap,
    peer: ClientAddr,
    body: Body,
) -> Response {
    let Some(keys) = &state.scanning else {
        return super::not_found().await;
    };
    let Ok(body) = axum::body::to_bytes(body, MAX_REPORT_BYTES).await else {
        return request_error(StatusCode::PAYLOAD_TOO_LARGE, "a report is at most 1 MiB");
    };
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim);
    let (Some(id), Some(signature)) = (header("github-public-key-identifier"), header("github-public-key-signature"))
    else {
        return unauthenticated("Github-Public-Key-Identifier and Github-Public-Key-Signature are required");
    };
    let signature =
        base64::engine::general_purpose::STANDARD.decode(signature).ok().and_then(|der| Signature::from_der(&der).ok());
    let Some(signature) = signature else {
        return unauthenticated("Github-Public-Key-Signature is not a base64 DER ECDSA signature");
    };
    match keys.verify(state.app.store.clock().instant(), id, &signature, &body).await {
        Ok(()) => {}
        Err(Refused::Signature(message)) => return unauthenticated(message),
        Err(Refused::KeysUnavailable(error)) => {
            tracing::error!(%error, "GitHub's secret-scanning keys could not be read");
            return error_response(&AppError::Unavailable(error.context("reading GitHub's secret-scanning keys")));
        }
    }
    let found: Vec<FoundToken> = match serde_json::from_slice(&body) {
        Ok(found) => found,
        Err(_) => {
            return request_error(StatusCode::BAD_REQUEST, "a report is a JSON array of {token, type, url, source}")
        }
    };
    if found.len() > MAX_REPORTED_TOKENS {
        return request_error(StatusCode::PAYLOAD_TOO_LARGE, "a report holds at most 1000 tokens");
    }
    metrics::counter!("appkeys_secret_scanning_reports_total").increment(1);
    metrics::counter!("appkeys_secret_scanning_tokens_total").increment(found.len() as u64);
    let meta = request_meta(&headers, &peer);
    let report = |token: &FoundToken| LeakReport {
        url: token.url.clone(),
        source: token.source.clone().unwrap_or_else(|| "unknown".to_owned()),
    };
    let mut outcomes = vec![Reported::Unknown; found.len()];
    let mut app_tokens = Vec::new();
    let mut positions = Vec::new();
    for (position, token) in found.iter().enumerate() {
        if let Ok(app_token) = AppToken::parse(&token.token) {
            app_tokens.push((app_token.digest(), report(token)));
            positions.push(position);
        } else if let Ok(session) = SessionToken::parse(&token.token) {
            match sessions::report_leaked(&state.app.store, &meta, GITHUB_ACTOR, &session.digest()).await {
                Ok(outcome) => outcomes[position] = outcome,
                Err(error) => return error_response(&error),
            }
        }
    }
    match keys::report_leaked(&state.app.store, &meta, GITHUB_ACTOR, &app_tokens).await {
        Ok(found) => positions.into_iter().zip(found).for_each(|(position, outcome)| outcomes[position] = outcome),
        Err(error) => return error_response(&error),
    }
    let feedback: Vec<Feedback> = found
        .into_iter()
        .zip(outcomes)
        .map(|(token, outcome)| {
            let true_positive = outcome != Reported::Unknown;
            let counter = if true_positive {
                "appkeys_secret_scanning_true_positives_total"
            } else {
                "appkeys_secret_scanning_false_positives_total"
            };
            metrics::counter!(counter).increment(1);
            Feedback {
                token_hash: TokenDigest::of(&token.token).into_string(),
                token_type: token.token_type,
                label: if true_positive { "true_positive" } else { "false_positive" },
            }
        })
        .collect();
    Json(feedback).into_response()
}

/// `POST /revoke` (RFC 7009 style): whoever holds an app token or a session token revokes it by
/// sending it as the form field `token` (`token_type_hint` is read and not needed: the token's
/// prefix tells). The answer is 200 whether or not the token existed; a client address whose
/// tokens are unknown is throttled as failed logins are.
pub(super) async fn revoke(
    State(state): State<HttpState>,
    headers: HeaderMap,
    peer: ClientAddr,
    body: Body,
) -> Response {
    let form = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|v| {
        v.split(';').next().is_some_and(|t| t.trim().eq_ignore_ascii_case("application/x-www-form-urlencoded"))
    });
    if !form {
        return request_error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "send the token as application/x-www-form-urlencoded: token=…",
        );
    }
    let Ok(body) = axum::body::to_bytes(body, MAX_REVOKE_BYTES).await else {
        return request_error(StatusCode::PAYLOAD_TOO_LARGE, "a revocation request is at most 8 KiB");
    };
    let Some(token) = url::form_urlencoded::parse(&body).find(|(name, _)| name == "token").map(|(_, v)| v) else {
        return error_response(&AppError::bad_input("token", "send the token to revoke as the form field token"));
    };
    let throttle = state.app.auth.throttle();
    if let Some(ip) = peer.0 {
        if let Err(limited) = throttle.check(&[&ip_subject(ip)]) {
            return error_response(&limited);
        }
    }
    let meta = request_meta(&headers, &peer);
    let store = &state.app.store;
    let outcome = if let Ok(token) = AppToken::parse(&token) {
        let report = LeakReport { url: None, source: SELF_REVOCATION.to_owned() };
        keys::report_leaked(store, &meta, SELF_REVOCATION, &[(token.digest(), report)])
            .await
            .map(|found| found.first().copied().unwrap_or(Reported::Unknown))
    } else if let Ok(token) = SessionToken::parse(&token) {
        sessions::report_leaked(store, &meta, SELF_REVOCATION, &token.digest()).await
    } else {
        Ok(Reported::Unknown)
    };
    match outcome {
        Ok(Reported::Unknown) => throttle.record_failure(None, meta.client_ip.as_deref()),
        Ok(_) => {}
        Err(error) => return error_response(&error),
    }
    let mut response = StatusCode::OK.into_response();
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
