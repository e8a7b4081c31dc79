//! The gate's view of a key in the request's account: its policy (`AppKey.policy`,
//! `setAppKeyPolicy`) and its usage (`AppKey.usage`, `AppKey.permissionUsage`, `accountUsage`).
//! The types, and the input `generateAppKey` takes, are in `types`.
use async_graphql::{ComplexObject, Context, InputType, Object, Result, SelectionField, Value};
use chrono::{DateTime, Utc};
use std::collections::BTreeMap;

use super::guard::{principal, service_ctx, PermissionGuard};
use super::types::{
    AccountUsage, AppKey, AppKeyPolicy, AppKeyPolicyInput, ClientAddress, KeyUsageTotal, PermissionUsage, Role,
    UsageGranularity, UsagePoint, UsageSeries,
};
use crate::domain::Resource as R;
use crate::error::AppError;
use crate::service::keys::{meter, policy};
use crate::state::AppState;

/// The range of `usage` when it is all that a selection of `appKey` asks for (beside `__typename`):
/// the usage chart's query. Then `appKey` reads the key and its usage in one statement
/// (`meter::series_of_key`) instead of the key's whole row and then its usage. Anything else
/// selected, a second `usage`, arguments that do not parse or a range `usage` refuses: `None`, and
/// the key is read whole (so an error is the field's own, at its path). Fragments are flattened
/// here; `@skip` and `@include` were applied before the document runs.
pub(super) fn usage_alone(ctx: &Context<'_>) -> Option<meter::SeriesRange> {
    let mut range = None;
    for field in ctx.field().selection_set() {
        match field.name() {
            "__typename" => {}
            "usage" if range.is_none() => range = Some(usage_range(&field)?),
            _ => return None,
        }
    }
    range
}

/// The range a selected `usage` field's arguments ask for, if they parse and make one.
fn usage_range(field: &SelectionField<'_>) -> Option<meter::SeriesRange> {
    fn parsed<T: InputType>(value: Value) -> Option<T> {
        T::parse(Some(value)).ok()
    }
    let (mut from, mut to, mut granularity) = (None, None, UsageGranularity::default());
    for (name, value) in field.arguments().ok()? {
        match name.as_str() {
            "from" => from = Some(parsed::<DateTime<Utc>>(value)?),
            "to" => to = Some(parsed::<DateTime<Utc>>(value)?),
            "granularity" => granularity = parsed(value)?,
            _ => return None,
        }
    }
    meter::SeriesRange::new(from?, to?, granularity.into()).ok()
}

#[ComplexObject]
impl AppKey {
    /// The key's policy in the request's account (an external key's is this account's to set).
    async fn policy(&self, ctx: &Context<'_>) -> Result<AppKeyPolicy> {
        let state = ctx.data::<AppState>()?;
        let principal = principal(ctx)?;
        Ok(policy::of_access(&state.store, &principal.account_id, &self.access_id).await?.into())
    }

    /// Every decision about the key in this account from `from` to `to`, one point per hour or day
    /// (UTC), zero points included; at most 1000 points (else BAD_USER_INPUT on `to`). Counted on
    /// the hot path and written every `--usage-flush-secs`, so the last minute may not show yet.
    #[graphql(guard = "PermissionGuard::any_of(R::READ_KEYS)")]
    async fn usage(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The first bucket is the one holding this instant.")] from: DateTime<Utc>,
        #[graphql(desc = "The last bucket is the one holding this instant.")] to: DateTime<Utc>,
        #[graphql(desc = "HOUR (kept 35 days) or DAY.", default)] granularity: UsageGranularity,
    ) -> Result<UsageSeries> {
        let range = meter::SeriesRange::new(from, to, granularity.into())?;
        if let Some(read) = self.usage_read.as_deref().filter(|read| read.range == range) {
            return Ok(UsageSeries::of(&read.points));
        }
        let state = ctx.data::<AppState>()?;
        Ok(UsageSeries::of(&meter::series(&state.store, &self.access_id, range).await?))
    }

    /// The client addresses its valid requests here came from in the last `days` days (1–35,
    /// default 30), with counts and when each was last seen; at most 100 addresses a day are told
    /// apart, the rest are counted as `other`.
    #[graphql(guard = "PermissionGuard::any_of(R::READ_KEYS)")]
    async fn client_addresses(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "How many days back, today included (1–35).", default = 30)] days: i32,
    ) -> Result<Vec<ClientAddress>> {
        client_addresses_of(ctx, &self.access_id, days).await
    }

    /// Every resource the key holds in this account through its roles, when one of its requests last
    /// needed it, and the roles that grant it: what was never needed can be taken away.
    #[graphql(guard = "PermissionGuard::any_of(R::READ_KEYS)")]
    async fn permission_usage(&self, ctx: &Context<'_>) -> Result<Vec<PermissionUsage>> {
        let state = ctx.data::<AppState>()?;
        let used = meter::permission_uses(&state.store, &self.access_id).await?;
        let mut held: BTreeMap<String, (super::types::Resource, Vec<Role>)> = BTreeMap::new();
        for role in &self.roles {
            for resource in role.resource_views.iter() {
                held.entry(resource.id.clone())
                    .or_insert_with(|| (resource.clone().into(), Vec::new()))
                    .1
                    .push(role.clone());
            }
        }
        Ok(held
            .into_iter()
            .map(|(id, (resource, granted_by))| PermissionUsage {
                last_used_at: used.get(&id).copied(),
                resource,
                granted_by,
            })
            .collect())
    }
}

/// The addresses the key's valid requests here came from in the last `days` days (whole UTC
/// days), busiest first, `other` last; at most 100 addresses a day are told apart — the evidence an
/// allowlist can be built from.
async fn client_addresses_of(ctx: &Context<'_>, access_id: &str, days: i32) -> Result<Vec<ClientAddress>> {
    let state = ctx.data::<AppState>()?;
    let max = meter::HOURLY_RETENTION_DAYS;
    let days = i64::from(days);
    if !(1..=max).contains(&days) {
        return Err(AppError::bad_input("days", format!("days is from 1 to {max}")).into());
    }
    let since = state.store.now() - chrono::Duration::days(days - 1);
    let list = meter::client_addresses(&state.store, access_id, since).await?;
    Ok(list.into_iter().map(|(address, count, last_seen_at)| ClientAddress { address, count, last_seen_at }).collect())
}

#[derive(Default)]
pub struct GateQuery;

#[Object]
impl GateQuery {
    /// The account's usage from `from` to `to`: totals by outcome, a series (zero points included,
    /// at most 1000), and the `first` busiest keys (default 10, at most 100).
    #[graphql(guard = "PermissionGuard::any_of(R::READ_KEYS)")]
    async fn account_usage(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The range's start.")] from: DateTime<Utc>,
        #[graphql(desc = "The range's end.")] to: DateTime<Utc>,
        #[graphql(desc = "The series' buckets: DAY (the default) or HOUR.", default_with = "UsageGranularity::Day")]
        granularity: UsageGranularity,
        #[graphql(desc = "How many of the busiest keys (default 10, at most 100).", default = 10)] first: i32,
    ) -> Result<AccountUsage> {
        let state = ctx.data::<AppState>()?;
        let principal = principal(ctx)?;
        let first = usize::try_from(first)
            .ok()
            .filter(|n| (1..=100).contains(n))
            .ok_or_else(|| AppError::bad_input("first", "first is from 1 to 100"))?;
        let range = meter::SeriesRange::new(from, to, granularity.into())?;
        let usage = meter::account_usage(&state.store, &principal.account_id, range, first).await?;
        Ok(AccountUsage {
            totals: UsagePoint::of(from, &usage.totals),
            series: usage.series.iter().map(|p| UsagePoint::of(p.at, &p.counts)).collect(),
            top_keys: usage
                .top_keys
                .iter()
                .map(|(key, counts)| KeyUsageTotal { key: key.clone(), totals: UsagePoint::of(from, counts) })
                .collect(),
        })
    }
}

#[derive(Default)]
pub struct GateMutation;

#[Object]
impl GateMutation {
    /// Replaces the key's whole policy in this account (audited as `key.policy`, with the old and
    /// the new policy). It applies from the next request on every replica. Invalid input:
    /// BAD_USER_INPUT with `extensions.field` (`input.allowedIps[2]`, `input.rateLimits[0].limit`).
    #[graphql(guard = "PermissionGuard::any_of(R::EDIT_KEYS)")]
    async fn set_app_key_policy(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The key value.")] key: String,
        #[graphql(desc = "The whole new policy.")] input: AppKeyPolicyInput,
    ) -> Result<AppKey> {
        let state = ctx.data::<AppState>()?;
        let sctx = service_ctx(ctx)?;
        Ok(policy::set(&state.store, &sctx, &key, &input.into()).await?.into())
    }
}
