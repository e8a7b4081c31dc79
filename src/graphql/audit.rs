//! The audit log.
use async_graphql::{Context, Object, Result};

use super::guard::{principal, PermissionGuard};
use super::page_complexity;
use super::types::{connection, id_cursor, AuditEvent, AuditEventFilter, Page};
use crate::domain::Resource as R;
use crate::service::events::audit::{self, AuditFilter};
use crate::service::store::page::PageRequest;
use crate::state::AppState;

#[derive(Default)]
pub struct AuditQuery;

#[Object]
impl AuditQuery {
    /// The account's audit log, newest first.
    #[graphql(
        guard = "PermissionGuard::any_of(R::READ_AUDIT)",
        complexity = "page_complexity(first.or(last), child_complexity)"
    )]
    async fn audit_events(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Page size forwards (default 20), at most 100.")] first: Option<i32>,
        #[graphql(desc = "Cursor of the row to continue after (`pageInfo.endCursor`).")] after: Option<String>,
        #[graphql(desc = "Page size backwards, at most 100.")] last: Option<i32>,
        #[graphql(desc = "Cursor of the row to continue before (`pageInfo.startCursor`).")] before: Option<String>,
        #[graphql(desc = "Exact-match filters.")] filter: Option<AuditEventFilter>,
    ) -> Result<Page<AuditEvent>> {
        let state = ctx.data::<AppState>()?;
        let principal = principal(ctx)?;
        let page = PageRequest::parse(first, after.as_deref(), last, before.as_deref())?;
        let filter = filter.unwrap_or_default();
        let filter = AuditFilter { action: filter.action, actor: filter.actor, target: filter.target };
        let paged = audit::list(&state.store, &principal.account_id, &filter, &page).await?;
        Ok(connection(paged, |e| id_cursor(&e.id), AuditEvent::from))
    }
}
