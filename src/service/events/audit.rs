//! The audit log: one event per change, written in the change's own transaction. Events carry
//! identifiers and before/after states, never a token or a password.
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, Set};
use serde_json::{json, Value};

use super::outbox::{self, EventType};
use crate::entity::audit_event;
use crate::error::AppResult;
use crate::principal::Principal;
use crate::service::store::page::{self, PageRequest, Paged};
use crate::service::store::Store;
use crate::service::store::{new_id, query_text, truncate_chars, WriteTxn};

/// Who did something and from where: what every audit event records besides the change itself.
#[derive(Debug, Clone, Default)]
pub struct RequestMeta {
    pub request_id: Option<String>,
    pub client_ip: Option<String>,
}

/// The acting principal and the request it came in, handed to every mutation.
pub struct Ctx<'a> {
    pub principal: &'a Principal,
    pub meta: &'a RequestMeta,
}

impl Ctx<'_> {
    /// Records, in the change's own transaction, that this principal did `action` to `target`.
    pub async fn audit(
        &self,
        txn: &WriteTxn,
        action: &'static str,
        target: &str,
        before: Option<serde_json::Value>,
        after: Option<serde_json::Value>,
    ) -> AppResult<()> {
        let entry = AuditEntry {
            account_id: &self.principal.account_id,
            actor: &self.principal.actor(),
            action,
            target,
            before,
            after,
        };
        record(txn, self.meta, entry).await
    }
}

/// One change to record.
pub struct AuditEntry<'a> {
    pub account_id: &'a str,
    pub actor: &'a str,
    pub action: &'static str,
    pub target: &'a str,
    pub before: Option<Value>,
    pub after: Option<Value>,
}

/// Writes the event in the change's transaction, at the transaction's time, and, when the action is
/// a key's lifecycle event, that event into the outbox too (`events`). Actions by a principal go
/// through `Ctx::audit`; this is for the rest (the system, failed logins).
pub async fn record(txn: &WriteTxn, meta: &RequestMeta, entry: AuditEntry<'_>) -> AppResult<()> {
    if let Some(event_type) = EventType::for_audit_action(entry.action) {
        let details = json!({ "before": entry.before, "after": entry.after });
        outbox::record(txn, entry.account_id, event_type, entry.target, entry.actor, details).await?;
    }
    audit_event::ActiveModel {
        id: Set(new_id()),
        account_id: Set(entry.account_id.to_owned()),
        at: Set(txn.now()),
        actor: Set(truncate_chars(entry.actor, 300)),
        action: Set(entry.action.to_owned()),
        target: Set(truncate_chars(entry.target, 300)),
        before: Set(entry.before.map(|v| v.to_string())),
        after: Set(entry.after.map(|v| v.to_string())),
        client_ip: Set(meta.client_ip.as_deref().map(|ip| truncate_chars(ip, 64))),
        request_id: Set(meta.request_id.as_deref().map(|id| truncate_chars(id, 64))),
    }
    .insert(&**txn)
    .await?;
    Ok(())
}

#[derive(Debug, Clone)]
pub struct AuditEventView {
    pub id: String,
    pub at: chrono::DateTime<chrono::Utc>,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub before: Option<Value>,
    pub after: Option<Value>,
    pub client_ip: Option<String>,
    pub request_id: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub action: Option<String>,
    pub actor: Option<String>,
    pub target: Option<String>,
}

/// One event of the account by id (Relay `node`), or `None`.
pub async fn get(store: &Store, account_id: &str, id: &str) -> AppResult<Option<AuditEventView>> {
    let db = store.db();
    if !crate::service::store::is_id(id) {
        return Ok(None);
    }
    let event =
        audit_event::Entity::find_by_id(id).filter(audit_event::Column::AccountId.eq(account_id)).one(db).await?;
    Ok(event.map(view))
}

fn view(e: audit_event::Model) -> AuditEventView {
    AuditEventView {
        id: e.id,
        at: e.at,
        actor: e.actor,
        action: e.action,
        target: e.target,
        before: e.before.as_deref().and_then(|text| serde_json::from_str(text).ok()),
        after: e.after.as_deref().and_then(|text| serde_json::from_str(text).ok()),
        client_ip: e.client_ip,
        request_id: e.request_id,
    }
}

pub async fn list(
    store: &Store,
    account_id: &str,
    filter: &AuditFilter,
    page: &PageRequest,
) -> AppResult<Paged<AuditEventView>> {
    let db = store.db();
    let mut select = audit_event::Entity::find().filter(audit_event::Column::AccountId.eq(account_id));
    if let Some(action) = &filter.action {
        select = select.filter(audit_event::Column::Action.eq(query_text(action, "filter.action")?));
    }
    if let Some(actor) = &filter.actor {
        select = select.filter(audit_event::Column::Actor.eq(query_text(actor, "filter.actor")?));
    }
    if let Some(target) = &filter.target {
        select = select.filter(audit_event::Column::Target.eq(query_text(target, "filter.target")?));
    }
    let paged = page::fetch(db, select, audit_event::Column::Id, page).await?;
    Ok(paged.map(view))
}
