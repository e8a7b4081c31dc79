//! The audit log.
use async_graphql::{Context, Object, Result};

use super::guard::{principal, PermissionGuard};
use super::page_complexity;
use super::types::{connection, AuditEvent, AuditEventFilter, Page};
use crate::domain::Resource as R;
use crate::service::audit::{self, AuditFilter};
use crate::service::page::PageRequest;
use crate::state::AppState;

#[derive(Default)]
pub struct AuditQuery;

#[Object]
impl AuditQuery {
    /// The account's audit log, newest first.
    #[graphql(
        guard = "PermissionGuard::new(R::SaveUser).or(R::ApiKeysView)",
        complexity = "page_complexity(first, child_complexity)"
    )]
    async fn audit_events(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Page size, at most 100.", default = 20)] first: i32,
        #[graphql(desc = "Cursor from the previous page's `pageInfo.endCursor`.")] after: Option<String>,
        #[graphql(desc = "Exact-match filters.")] filter: Option<AuditEventFilter>,
    ) -> Result<Page<AuditEvent>> {
        let state = ctx.data::<AppState>()?;
        let principal = principal(ctx)?;
        let page = PageRequest::parse(Some(first), after.as_deref())?;
        let filter = filter.unwrap_or_default();
        let filter = AuditFilter { action: filter.action, actor: filter.actor, target: filter.target };
        let paged = audit::list(&state.store.db, &principal.account_id, &filter, &page).await?;
        Ok(connection(paged, page.after.is_some(), |e| e.id.as_str(), AuditEvent::from))
    }
}
