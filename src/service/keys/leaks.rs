//! Leaked app tokens (secret scanning, self-revocation): a reported token stops at once on every
//! replica. Its current token leaked: the key is switched off in its owner account as `LEAKED`
//! (both tokens of a pending renewal stop), and only a renewal (with no overlap) and then an
//! activation bring it back. The previous token of a pending renewal leaked: the overlap ends, the
//! new token lives on. Either way the audit entry `key.leaked` writes the event `app_key.leaked`.
use sea_orm::{ActiveModelTrait, ColumnTrait, Condition, EntityTrait, QueryFilter, Set};
use serde_json::json;
use std::collections::{HashMap, HashSet};

use super::{effective_status, pending_renewal, DeactivationReason};
use crate::domain::TokenDigest;
use crate::entity::app_key;
use crate::error::AppResult;
use crate::service::events::audit::{self, AuditEntry, RequestMeta};
use crate::service::store::revoked::{self, Reported};
use crate::service::store::{truncate_chars, Store};

/// Where a token was found and who reports it.
#[derive(Debug, Clone)]
pub struct LeakReport {
    /// The page where it was found, if the reporter says.
    pub url: Option<String>,
    /// GitHub's `source` (`content`, `commit`, …), or `self-revocation`.
    pub source: String,
}

/// Reports app tokens (by digest) as leaked, each with its report, by `actor`
/// (`github-secret-scanning`, `self-revocation`): what each was, in order. The lookups are batched;
/// each live token is revoked in a transaction of its own, in its owner account.
pub async fn report_leaked(
    store: &Store,
    meta: &RequestMeta,
    actor: &str,
    reports: &[(TokenDigest, LeakReport)],
) -> AppResult<Vec<Reported>> {
    let digests: Vec<String> = reports.iter().map(|(digest, _)| digest.as_str().to_owned()).collect();
    let mut known = revoked::known(store.db(), &digests).await?;
    let mut holders: HashMap<String, app_key::Model> = HashMap::new();
    for chunk in digests.chunks(250) {
        let keys = app_key::Entity::find()
            .filter(
                Condition::any()
                    .add(app_key::Column::TokenDigest.is_in(chunk.iter().map(String::as_str)))
                    .add(app_key::Column::PreviousTokenDigest.is_in(chunk.iter().map(String::as_str))),
            )
            .all(store.db())
            .await?;
        let wanted: HashSet<&str> = chunk.iter().map(String::as_str).collect();
        for key in keys {
            for digest in [Some(&key.token_digest), key.previous_token_digest.as_ref()].into_iter().flatten() {
                if wanted.contains(digest.as_str()) {
                    holders.insert(digest.clone(), key.clone());
                }
            }
        }
    }
    let mut found = Vec::with_capacity(reports.len());
    for (digest, report) in reports {
        let digest = digest.as_str();
        let outcome = if known.contains(digest) {
            Reported::Known
        } else if let Some(key) = holders.get(digest) {
            revoke(store, meta, actor, &key.account_id, &key.id, digest, report).await?
        } else {
            Reported::Unknown
        };
        if outcome != Reported::Unknown {
            known.insert(digest.to_owned()); // the same token twice in one batch: known the second time
        }
        found.push(outcome);
    }
    Ok(found)
}

/// Revokes one token of a key, read again under its account's write lock.
async fn revoke(
    store: &Store,
    meta: &RequestMeta,
    actor: &str,
    account_id: &str,
    key_id: &str,
    digest: &str,
    report: &LeakReport,
) -> AppResult<Reported> {
    let mut txn = store.begin_account_write(account_id).await?;
    let Some(key) = app_key::Entity::find_by_id(key_id).one(&*txn).await? else {
        return Ok(Reported::Unknown); // deleted meanwhile
    };
    let now = txn.now();
    let current = key.token_digest == digest;
    if !current && key.previous_token_digest.as_deref() != Some(digest) {
        return Ok(Reported::Unknown); // renewed meanwhile: not the key's token any more
    }
    revoked::remember(&txn, digest, "app", &key.id).await?;
    if !current && pending_renewal(&key, now).is_none() {
        // A previous token whose overlap ran out: it works nowhere already.
        txn.commit_without_credential_change().await?;
        return Ok(Reported::Known);
    }
    txn.affects_key(&key.id);
    let url = report.url.as_deref().map(|url| truncate_chars(url, 2000));
    let source = truncate_chars(&report.source, 64);
    let leak = json!({ "url": url, "source": source });
    let status = effective_status(key.active, false, key.expires_at, now);
    let value = key.key.clone();
    let mut changed: app_key::ActiveModel = key.into();
    changed.previous_token_digest = Set(None);
    changed.previous_token_created_at = Set(None);
    changed.previous_token_expires_at = Set(None);
    changed.renewal_started_at = Set(None);
    changed.leaked_at = Set(Some(now));
    changed.leak_url = Set(url);
    changed.leak_source = Set(Some(source));
    changed.updated_at = Set(now);
    let (before, after) = if current {
        changed.active = Set(false);
        changed.deactivation_reason = Set(Some(DeactivationReason::Leaked.as_str().to_owned()));
        (
            json!({ "status": status.as_str() }),
            json!({ "status": "INACTIVE", "deactivationReason": "LEAKED", "token": "current", "leak": leak }),
        )
    } else {
        (json!({ "renewal": "pending" }), json!({ "renewal": null, "token": "previous", "leak": leak }))
    };
    changed.update(&*txn).await?;
    let entry = AuditEntry {
        account_id,
        actor,
        action: "key.leaked",
        target: &value,
        before: Some(before),
        after: Some(after),
    };
    audit::record(&txn, meta, entry).await?;
    txn.commit().await?;
    tracing::warn!(key = %value, actor, "a leaked token was revoked");
    Ok(Reported::Revoked)
}
