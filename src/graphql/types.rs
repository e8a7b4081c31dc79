//! GraphQL output and input types. They convert from service views; services never see them.
use async_graphql::connection::{Connection, Edge, EmptyFields};
use async_graphql::{ComplexObject, Enum, InputObject, Json, MaybeUndefined, Object, OutputType, SimpleObject, ID};
use chrono::{DateTime, Utc};
use std::sync::Arc;

use super::written::{push_list, push_object, push_time, raw, Edges, Listed, Nodes};
use crate::domain::policy::{self as rules, RefillInterval as Interval};
use crate::service::events::audit::AuditEventView;
use crate::service::identity::roles::{ResourceView, RoleView};
use crate::service::identity::users::UserView;
use crate::service::keys::meter;
use crate::service::keys::policy::PolicyView;
use crate::service::keys::settings::KeySettings;
use crate::service::keys::{AppKeyView, Renewal};
use crate::service::store::page::{Cursor, Paged, Total};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

/// One permission from the catalogue, e.g. `LicenseManager.SaveUser`.
#[derive(SimpleObject, Clone)]
pub struct Resource {
    /// Stable id, e.g. `ApiKeys.View`.
    pub id: String,
    /// Human-readable name, e.g. `View API keys`.
    pub name: String,
}

impl From<ResourceView> for Resource {
    fn from(r: ResourceView) -> Self {
        Self { id: r.id, name: r.name }
    }
}

/// A named set of resources inside one account.
#[derive(SimpleObject, Clone)]
#[graphql(complex)]
pub struct Role {
    /// Role id, to pass in `roleIds`.
    pub id: ID,
    /// Role name, unique in the account.
    pub name: String,
    /// Predefined roles exist in every account and cannot be edited or deleted.
    pub predefined: bool,
    /// Shared with every key of a page holding the role; written out only when asked for.
    #[graphql(skip)]
    pub resource_views: Arc<[ResourceView]>,
}

#[ComplexObject]
impl Role {
    /// The resources this role grants.
    async fn resources(&self) -> Vec<Resource> {
        self.resource_views.iter().cloned().map(Into::into).collect()
    }

    /// Who holds the role in the request's account: users (their emails, shown to callers with
    /// LicenseManager.SaveUser) and keys (their values, shown to callers who may read keys); a list
    /// the caller may not read is empty.
    async fn held_by(&self, ctx: &async_graphql::Context<'_>) -> async_graphql::Result<RoleHolders> {
        use crate::domain::Resource as R;
        let state = ctx.data::<crate::state::AppState>()?;
        let principal = super::guard::principal(ctx)?;
        let id = local_id(NodeKind::Role, &self.id);
        let (users, keys) = crate::service::identity::roles::holders(&state.store, &principal.account_id, &id).await?;
        Ok(RoleHolders {
            users: if principal.holds(R::SaveUser) { users } else { Vec::new() },
            keys: if R::READ_KEYS.iter().any(|r| principal.holds(*r)) { keys } else { Vec::new() },
        })
    }
}

/// Who holds a role in an account.
#[derive(SimpleObject)]
pub struct RoleHolders {
    /// The users holding it, by email (empty without LicenseManager.SaveUser).
    pub users: Vec<String>,
    /// The keys holding it here, by value (empty without a key-reading resource).
    pub keys: Vec<String>,
}

impl From<RoleView> for Role {
    fn from(r: RoleView) -> Self {
        Self {
            id: global_id(NodeKind::Role, &r.id),
            name: r.name,
            predefined: r.predefined,
            resource_views: r.resources,
        }
    }
}

/// A user of an account.
#[derive(SimpleObject, Clone)]
pub struct User {
    /// User id, to pass to `setUserRoles` and `removeUser`.
    pub id: ID,
    /// Login email (lower-case).
    pub email: String,
    /// The user's roles in this account.
    pub roles: Vec<Role>,
    /// When the user was added.
    pub created_at: DateTime<Utc>,
}

impl From<UserView> for User {
    fn from(u: UserView) -> Self {
        Self {
            id: global_id(NodeKind::User, &u.id),
            email: u.email,
            roles: u.roles.into_iter().map(Into::into).collect(),
            created_at: u.created_at,
        }
    }
}

/// Whether a key belongs to this account or was granted access by it.
#[derive(Enum, Copy, Clone, PartialEq, Eq)]
#[graphql(remote = "crate::service::keys::KeyType")]
pub enum AppKeyType {
    /// Generated in, and managed by, this account.
    Internal,
    /// Another account's key that this account has granted roles to.
    External,
}

/// A key's effective status in the request's account.
#[derive(Enum, Copy, Clone, PartialEq, Eq)]
#[graphql(remote = "crate::service::keys::KeyStatus")]
pub enum AppKeyStatus {
    /// Active at its owner and, for an external key, not removed here.
    Active,
    /// Deactivated by its owner, or (external) removed from this account.
    Inactive,
    /// Past its `expiresAt`: it cannot authenticate until renewed with a new expiry.
    Expired,
}

/// How urgently a key's token should be renewed, from its age and the account's renewal period.
#[derive(Enum, Copy, Clone, PartialEq, Eq)]
#[graphql(remote = "crate::service::keys::RenewalAlert")]
pub enum RenewalAlert {
    /// The token is younger than the account's renewal period.
    None,
    /// The token is older than the account's renewal period (`appKeySettings.renewalPeriodDays`).
    Recommended,
    /// The token is older than the renewal period plus 90 days.
    HighlyRecommended,
}

/// Why a key is switched off.
#[derive(Enum, Copy, Clone, PartialEq, Eq)]
#[graphql(remote = "crate::service::keys::DeactivationReason")]
pub enum DeactivationReason {
    /// Deactivated by a person or a key (`deactivateAppKey`), or (external) removed from this account.
    Manual,
    /// Deactivated by appkeys: unused for longer than the account's `deactivateUnusedAfterDays`.
    Inactivity,
    /// Its token was reported leaked (GitHub secret scanning) or revoked by whoever held it
    /// (`POST /revoke`): renew its token, then activate it.
    Leaked,
}

/// A leak reported of a key's token.
#[derive(SimpleObject, Clone)]
pub struct KeyLeak {
    /// When appkeys was told, and the token stopped.
    pub at: DateTime<Utc>,
    /// Where the token was found (the reporter's URL); null when the reporter gave none.
    pub url: Option<String>,
    /// Who found it: GitHub's source (`content`, `commit`, `pull_request_description`, …), or
    /// `self-revocation` for `POST /revoke`.
    pub source: Option<String>,
}

/// A token renewal in progress: the previous and the new token both authenticate.
#[derive(SimpleObject, Clone)]
pub struct AppKeyRenewal {
    /// When the renewal started (and the new token was made).
    pub started_at: DateTime<Utc>,
    /// When the previous token stops by itself; null: when the renewal is finished or undone.
    pub old_token_expires_at: Option<DateTime<Utc>>,
}

impl From<Renewal> for AppKeyRenewal {
    fn from(r: Renewal) -> Self {
        Self { started_at: r.started_at, old_token_expires_at: r.old_token_expires_at }
    }
}

/// An application key as seen from the request's account. Its token is never shown here.
#[derive(SimpleObject, Clone)]
#[graphql(complex)]
pub struct AppKey {
    /// The key's access row in the request's account (where its policy is kept).
    #[graphql(skip)]
    pub access_id: String,
    /// Key id.
    pub id: ID,
    /// The public key value, e.g. `appkey-mystore-ORYNWX`; send it as `X-API-AppKey`.
    pub key: String,
    /// INTERNAL (this account's own) or EXTERNAL (another account's, granted roles here).
    #[graphql(name = "type")]
    pub key_type: AppKeyType,
    /// The managing (owner) account.
    pub account: String,
    /// The label given at creation; null for other accounts' keys.
    pub label: Option<String>,
    /// Effective status in the request's account.
    pub status: AppKeyStatus,
    /// The key's roles in the request's account.
    pub roles: Vec<Role>,
    /// When the key was generated.
    pub created_at: DateTime<Utc>,
    /// Active here and holding at least one role here: only such keys can make API requests.
    pub has_access: bool,
    /// When the current token was made: at generation, or by the last renewal.
    pub token_created_at: DateTime<Utc>,
    /// The renewal in progress; null when none is pending.
    pub renewal: Option<AppKeyRenewal>,
    /// Whether the token is due for renewal.
    pub renewal_alert: RenewalAlert,
    /// When the key stops working by itself; null: never.
    pub expires_at: Option<DateTime<Utc>>,
    /// When the key last made a request in this account that was let through (GraphQL, `/auth`,
    /// an export, a subscription): the `valid` decisions of `usage`; a refused request is no use.
    /// Null: never. Recorded off the hot path, so it may lag by up to the flush interval.
    pub last_used_at: Option<DateTime<Utc>>,
    /// The client address of that request (behind a trusted gateway, the address it forwards).
    pub last_used_ip: Option<String>,
    /// The `User-Agent` of that request.
    pub last_used_user_agent: Option<String>,
    /// Who generated the key: a user's email or a key; null for other accounts' keys.
    pub created_by: Option<String>,
    /// The last change to the key or to its access in this account.
    pub updated_at: DateTime<Utc>,
    /// Why the key is switched off here; null while it is switched on.
    pub deactivation_reason: Option<DeactivationReason>,
    /// The last leak reported of the key's token (its owner account only); null when none was.
    pub leak: Option<KeyLeak>,
    /// Its usage, when `appKey` read it with the key (`gate::usage_alone`).
    #[graphql(skip)]
    pub usage_read: Option<std::sync::Arc<UsageRead>>,
}

/// A key's usage over one range, read in the statement that found the key.
pub struct UsageRead {
    pub range: meter::SeriesRange,
    pub points: std::sync::Arc<[meter::UsagePoint]>,
}

impl AppKey {
    /// The key as `appKey` answers a selection of its usage alone (`gate::usage_alone`): its access
    /// row and the usage read with it. Nothing else of the key was read, and nothing else is
    /// resolved from it: any other field selected takes the whole key's path.
    pub fn usage_alone(access_id: String, key: String, read: UsageRead) -> Self {
        Self {
            access_id,
            id: ID::default(),
            key,
            key_type: AppKeyType::Internal,
            account: String::new(),
            label: None,
            status: AppKeyStatus::Active,
            roles: Vec::new(),
            created_at: DateTime::UNIX_EPOCH,
            has_access: false,
            token_created_at: DateTime::UNIX_EPOCH,
            renewal: None,
            renewal_alert: RenewalAlert::None,
            expires_at: None,
            last_used_at: None,
            last_used_ip: None,
            last_used_user_agent: None,
            created_by: None,
            updated_at: DateTime::UNIX_EPOCH,
            deactivation_reason: None,
            leak: None,
            usage_read: Some(std::sync::Arc::new(read)),
        }
    }
}

impl From<AppKeyView> for AppKey {
    fn from(k: AppKeyView) -> Self {
        Self {
            access_id: k.access_id,
            id: global_id(NodeKind::AppKey, &k.id),
            key: k.key,
            key_type: k.key_type.into(),
            account: k.account,
            label: k.label,
            status: k.status.into(),
            roles: k.roles.into_iter().map(Into::into).collect(),
            created_at: k.created_at,
            has_access: k.has_access,
            token_created_at: k.token_created_at,
            renewal: k.renewal.map(Into::into),
            renewal_alert: k.renewal_alert.into(),
            expires_at: k.expires_at,
            last_used_at: k.last_use.as_ref().map(|u| u.at),
            last_used_ip: k.last_use.as_ref().and_then(|u| u.ip.clone()),
            last_used_user_agent: k.last_use.and_then(|u| u.user_agent),
            created_by: k.created_by,
            updated_at: k.updated_at,
            deactivation_reason: k.deactivation_reason.map(Into::into),
            leak: k.leak.map(|leak| KeyLeak { at: leak.at, url: leak.url, source: leak.source }),
            usage_read: None,
        }
    }
}

/// A new key and its token. The token is shown here once and never again: store it now.
#[derive(SimpleObject)]
pub struct GeneratedAppKey {
    /// The new key.
    pub app_key: AppKey,
    /// The secret token (`akt_…`); send it as `X-API-AppToken`. Shown only in this response.
    pub app_token: String,
}

/// A key with a new token. The token is shown here once and never again: deploy it, then finish
/// the renewal (or undo it).
#[derive(SimpleObject)]
pub struct RenewedAppKeyToken {
    /// The key, with its pending renewal.
    pub app_key: AppKey,
    /// The new secret token (`akt_…`). Shown only in this response.
    pub app_token: String,
}

/// How a renewal treats the previous token.
#[derive(InputObject, Default)]
pub struct RenewAppKeyTokenInput {
    /// Seconds the previous token keeps working: 0 stops it now; at most 7776000 (90 days); null
    /// keeps it until the renewal is finished or undone.
    pub old_token_valid_for: Option<i64>,
    /// The key's new expiry (in the future, within the account's `maxLifetimeDays`); null keeps its
    /// expiry, or sets it `maxLifetimeDays` ahead when the account has a maximum.
    pub expires_at: Option<DateTime<Utc>>,
}

/// An account's key settings.
#[derive(SimpleObject)]
pub struct AppKeySettings {
    /// A token older than this many days gets a renewal alert (default 90).
    pub renewal_period_days: u32,
    /// The longest a key may live, in days: caps `expiresAt` at generate and renew, and supplies it
    /// when omitted. Null: no maximum.
    pub max_lifetime_days: Option<u32>,
    /// Internal keys unused for longer than this many days (never used: since creation) are
    /// deactivated automatically (audited as `key.auto_deactivate` by `system`). Null: never.
    pub deactivate_unused_after_days: Option<u32>,
    /// How many days before its expiry a key is announced as expiring (default 7).
    pub expiry_warning_days: u32,
}

impl From<KeySettings> for AppKeySettings {
    fn from(s: KeySettings) -> Self {
        Self {
            renewal_period_days: s.renewal_period_days,
            max_lifetime_days: s.max_lifetime_days,
            deactivate_unused_after_days: s.deactivate_unused_after_days,
            expiry_warning_days: s.expiry_warning_days,
        }
    }
}

/// Changes to the key settings; omitted fields stay as they are.
#[derive(InputObject)]
pub struct AppKeySettingsInput {
    /// Days after which a token gets a renewal alert: 1 to 3650.
    pub renewal_period_days: Option<i32>,
    /// Maximum key lifetime in days, 1 to 3650; null removes the maximum.
    pub max_lifetime_days: MaybeUndefined<i32>,
    /// Deactivate internal keys unused for this many days, 1 to 3650; null turns it off.
    pub deactivate_unused_after_days: MaybeUndefined<i32>,
    /// Days of warning before a key expires: 1 to 365.
    pub expiry_warning_days: Option<i32>,
}

/// A user session.
#[derive(SimpleObject)]
pub struct Session {
    /// Bearer token (`aks_…`): send `Authorization: Bearer <token>`. Shown only in this response.
    pub token: String,
    /// When the session ends (24 h after login).
    pub expires_at: DateTime<Utc>,
    /// The logged-in user.
    pub user: User,
    /// The account the session is bound to.
    pub account: String,
}

/// A new user and the one-time password to hand over.
#[derive(SimpleObject)]
pub struct AddedUser {
    /// The new user.
    pub user: User,
    /// Generated password, shown only in this response.
    pub one_time_password: String,
}

/// What kind of principal is calling.
#[derive(Enum, Copy, Clone, PartialEq, Eq)]
pub enum PrincipalType {
    /// A logged-in user (`Authorization: Bearer aks_…`).
    User,
    /// An application key (`X-API-AppKey` + `X-API-AppToken`).
    AppKey,
}

/// Who is calling, in which account, with which resources.
#[derive(SimpleObject)]
pub struct Viewer {
    /// USER or APP_KEY.
    #[graphql(name = "type")]
    pub principal_type: PrincipalType,
    /// The account this request acts on.
    pub account: String,
    /// The user, for a session.
    pub user: Option<User>,
    /// The key value, for an app key.
    pub app_key: Option<String>,
    /// The caller's resources in this account.
    pub resources: Vec<Resource>,
}

/// One audited change.
#[derive(SimpleObject)]
pub struct AuditEvent {
    /// Event id.
    pub id: ID,
    /// When it happened.
    pub at: DateTime<Utc>,
    /// Who did it: `user:<email>`, `appkey:<key>`, `system`, or the email of a failed login.
    pub actor: String,
    /// What was done, e.g. `key.generate`, `key.deactivate`, `user.add`, `login.failed`.
    pub action: String,
    /// What it was done to: a key value, an email, a role id.
    pub target: String,
    /// State before the change, e.g. `{"status": "ACTIVE", "roles": ["Owner (Admin Super)"]}`.
    pub before: Option<Json<serde_json::Value>>,
    /// State after the change, in the same form.
    pub after: Option<Json<serde_json::Value>>,
    /// The client's IP address.
    pub client_ip: Option<String>,
    /// The request id (`X-Request-Id`).
    pub request_id: Option<String>,
}

impl From<AuditEventView> for AuditEvent {
    fn from(e: AuditEventView) -> Self {
        Self {
            id: global_id(NodeKind::AuditEvent, &e.id),
            at: e.at,
            actor: e.actor,
            action: e.action,
            target: e.target,
            before: e.before.map(Json),
            after: e.after.map(Json),
            client_ip: e.client_ip,
            request_id: e.request_id,
        }
    }
}

/// The export's file format.
#[derive(Enum, Copy, Clone, PartialEq, Eq)]
pub enum ExportFormat {
    /// Comma-separated values (RFC 4180).
    Csv,
    /// An Excel workbook with the sheets `Generated` (this account's keys) and `External`.
    Xlsx,
}

/// A short-lived, single-use link to download the CSV export without auth headers.
#[derive(SimpleObject)]
pub struct ExportDownload {
    /// Path to GET (relative to this server), valid once.
    pub url: String,
    /// When the link stops working.
    pub expires_at: DateTime<Utc>,
}

/// One page of a listing, as a Relay connection of `N` (named `<N>Connection`). Its edges hold their
/// cursors unencoded: a cursor is written out (as `String!`) only when a query selects it, or
/// `pageInfo`'s start or end.
pub struct Page<N: OutputType> {
    connection: Connection<Cursor, N, EmptyFields, EmptyFields>,
    total: Total,
}

impl<N: OutputType> async_graphql::TypeName for Page<N> {
    fn type_name() -> std::borrow::Cow<'static, str> {
        format!("{}Connection", N::type_name()).into()
    }
}

/// One page of a listing: its items as edges (each with the cursor to page on from it) and as
/// nodes, where the page stands among the others, and how many items match in all.
#[Object(name_type)]
impl<N: Listed> Page<N> {
    /// Information to aid in pagination.
    async fn page_info(&self) -> async_graphql::connection::PageInfo {
        let edges = &self.connection.edges;
        async_graphql::connection::PageInfo {
            has_previous_page: self.connection.has_previous_page,
            has_next_page: self.connection.has_next_page,
            start_cursor: edges.first().map(|edge| edge.cursor.encode()),
            end_cursor: edges.last().map(|edge| edge.cursor.encode()),
        }
    }

    /// A list of edges.
    async fn edges(&self) -> Edges<'_, N> {
        Edges(&self.connection.edges)
    }

    /// A list of nodes.
    async fn nodes(&self) -> Nodes<'_, N> {
        Nodes(&self.connection.edges)
    }

    /// How many items match, across all pages (counted only when asked for).
    async fn total_count(&self) -> async_graphql::Result<u64> {
        Ok(self.total.count().await?)
    }
}

impl async_graphql::connection::CursorType for Cursor {
    type Error = &'static str;

    /// Not used: the listings read their cursor arguments themselves (`PageRequest::parse`).
    fn decode_cursor(s: &str) -> Result<Self, Self::Error> {
        Cursor::decode(s, "after").map_err(|_| "invalid cursor")
    }

    fn encode_cursor(&self) -> String {
        self.encode()
    }
}

/// Builds a Relay connection from a service page, each edge with the cursor `cursor` gives.
pub fn connection<V, N: OutputType>(paged: Paged<V>, cursor: impl Fn(&V) -> Cursor, node: impl Fn(V) -> N) -> Page<N> {
    let mut connection = Connection::new(paged.has_previous, paged.has_next);
    connection.edges.extend(paged.items.into_iter().map(|item| Edge::new(cursor(&item), node(item))));
    Page { connection, total: paged.total }
}

/// The cursor of a row in a listing ordered by id alone.
pub fn id_cursor(id: &str) -> Cursor {
    Cursor { sort: None, id: id.to_owned() }
}

/// What a key listing is sorted by.
#[derive(Enum, Copy, Clone, PartialEq, Eq, Default)]
#[graphql(remote = "crate::service::keys::KeyOrder")]
pub enum AppKeyOrderField {
    /// When the key was generated (or, for an external key, added here). The default.
    #[default]
    CreatedAt,
    /// The key value.
    Key,
    /// The label, case-insensitively; other accounts' keys (whose label is never shown) sort as blank.
    Label,
    /// The last use in this account; never-used keys sort as the oldest.
    LastUsedAt,
}

/// Ascending or descending.
#[derive(Enum, Copy, Clone, PartialEq, Eq, Default)]
#[graphql(remote = "crate::service::store::page::Direction")]
pub enum OrderDirection {
    /// Smallest, oldest or A first.
    Asc,
    /// Largest, newest or Z first. The default.
    #[default]
    Desc,
}

/// The order of a key listing; ties are broken by creation, in the same direction.
#[derive(InputObject, Default)]
pub struct AppKeyOrder {
    /// What to sort by (default CREATED_AT).
    #[graphql(default)]
    pub field: AppKeyOrderField,
    /// Which way (default DESC).
    #[graphql(default)]
    pub direction: OrderDirection,
}

/// Filters for the key listings.
#[derive(InputObject, Default)]
pub struct AppKeyFilter {
    /// Case-insensitive substring of the key value or (own keys only) the label.
    pub search: Option<String>,
    /// Only keys with this effective status.
    pub status: Option<AppKeyStatus>,
    /// Only keys of this type.
    #[graphql(name = "type")]
    pub key_type: Option<AppKeyType>,
    /// Only keys with this renewal alert.
    pub renewal_alert: Option<RenewalAlert>,
    /// Only keys not used in this account since then (never-used keys: created before then).
    pub unused_since: Option<DateTime<Utc>>,
    /// Only keys that hold here, through their roles, a resource none of their requests needed
    /// for this many days (1–400; never needed included), and that were here before then: the
    /// keys whose roles could shrink (`permissionUsage` says which resources).
    pub unused_permission_days: Option<i32>,
}

/// Filters for the audit log; each is an exact match.
#[derive(InputObject, Default)]
pub struct AuditEventFilter {
    /// e.g. `key.deactivate`.
    pub action: Option<String>,
    /// e.g. `user:admin@example.com`.
    pub actor: Option<String>,
    /// e.g. a key value or an email.
    pub target: Option<String>,
}

/// Credentials for `login`.
#[derive(InputObject)]
pub struct LoginInput {
    /// The account to log in to, e.g. `main`.
    pub account: String,
    /// The user's email.
    pub email: String,
    /// The user's password.
    pub password: String,
}

/// A new internal key.
#[derive(InputObject)]
pub struct GenerateAppKeyInput {
    /// Purpose of the key; trimmed, at most 200 characters; blank means the key value. Cannot be changed later.
    pub label: Option<String>,
    /// Roles to give the key; none means no access until roles are added.
    pub role_ids: Option<Vec<ID>>,
    /// When the key stops working by itself: in the future and within the account's
    /// `maxLifetimeDays`; omitted: never, or `maxLifetimeDays` ahead when the account has a maximum.
    pub expires_at: Option<DateTime<Utc>>,
    /// The key's policy in this account; omitted: the empty policy (any address, no limit,
    /// unlimited).
    pub policy: Option<AppKeyPolicyInput>,
}

/// Another account's key to grant roles to.
#[derive(InputObject)]
pub struct AddExternalAppKeyInput {
    /// The other account's key value.
    pub key: String,
    /// At least one role of this account.
    pub role_ids: Vec<ID>,
}

/// A new custom role.
#[derive(InputObject)]
pub struct CreateRoleInput {
    /// Unique name in the account.
    pub name: String,
    /// Resource ids, e.g. `["ApiKeys.View"]`; only resources you hold yourself.
    pub resource_ids: Vec<String>,
}

/// Changes to a custom role; omitted fields stay as they are.
#[derive(InputObject)]
pub struct UpdateRoleInput {
    /// New name.
    pub name: Option<String>,
    /// New resource ids (replaces the current set).
    pub resource_ids: Option<Vec<String>>,
}

/// A new user.
#[derive(InputObject)]
pub struct AddUserInput {
    /// The user's email.
    pub email: String,
    /// Roles to give the user.
    pub role_ids: Vec<ID>,
}

/// The kinds of object a global id can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeKind {
    AppKey,
    Role,
    User,
    AuditEvent,
    WebhookEndpoint,
    WebhookDelivery,
}

impl NodeKind {
    const ALL: [NodeKind; 6] = [
        NodeKind::AppKey,
        NodeKind::Role,
        NodeKind::User,
        NodeKind::AuditEvent,
        NodeKind::WebhookEndpoint,
        NodeKind::WebhookDelivery,
    ];

    fn name(self) -> &'static str {
        match self {
            NodeKind::AppKey => "AppKey",
            NodeKind::Role => "Role",
            NodeKind::User => "User",
            NodeKind::AuditEvent => "AuditEvent",
            NodeKind::WebhookEndpoint => "WebhookEndpoint",
            NodeKind::WebhookDelivery => "WebhookDelivery",
        }
    }
}

/// A Relay global id: opaque to clients (base64 of the kind and the row's id), unique across kinds.
pub fn global_id(kind: NodeKind, id: &str) -> ID {
    ID(URL_SAFE_NO_PAD.encode(format!("{}:{id}", kind.name())))
}

/// The kind and row id a global id names, if it is one.
pub fn parse_global_id(id: &str) -> Option<(NodeKind, String)> {
    let text = String::from_utf8(URL_SAFE_NO_PAD.decode(id).ok()?).ok()?;
    let (kind, local) = text.split_once(':')?;
    let kind = NodeKind::ALL.into_iter().find(|k| k.name() == kind)?;
    Some((kind, local.to_owned()))
}

/// Row ids from ids a client sends: global ids of `kind` are decoded; anything else passes through
/// untouched (a plain row id, or garbage the service refuses by name).
pub fn local_ids(kind: NodeKind, ids: Vec<ID>) -> Vec<String> {
    ids.into_iter().map(|id| local_id(kind, &id)).collect()
}

pub fn local_id(kind: NodeKind, id: &ID) -> String {
    match parse_global_id(id) {
        Some((found, local)) if found == kind => local,
        _ => id.0.clone(),
    }
}

// A key's policy (`AppKey.policy`, `setAppKeyPolicy`, `GenerateAppKeyInput.policy`).

/// Where, how fast and how much a key may be used in one account. The empty policy (no
/// allowlist, no limit, no credits) admits any address, at any rate, without end.
#[derive(SimpleObject)]
pub struct AppKeyPolicy {
    /// CIDR ranges (IPv4 and IPv6) the key may be used from, normalised (`10.0.0.0/8`,
    /// `203.0.113.7/32`); empty: any address. A request whose address is not known fails a
    /// non-empty list.
    pub allowed_ips: Vec<String>,
    /// Named rate limits; every one must admit a request (RATE_LIMITED, HTTP 429, otherwise).
    pub rate_limits: Vec<RateLimit>,
    /// The key's credits here; null: unlimited.
    pub credits: Option<Credits>,
}

/// At most `limit` requests (or units of `/auth?cost=`) per `periodSeconds`, as a sliding window.
#[derive(SimpleObject)]
pub struct RateLimit {
    /// Unique among the key's limits; named in RATE_LIMITED errors and the `RateLimit` headers.
    pub name: String,
    /// Requests (or cost units) per period, at least 1.
    pub limit: i32,
    /// The period, from 1 second to 31 days.
    pub period_seconds: i32,
}

/// Credits: each request costs 1 (or `/auth?cost=N`); none left is USAGE_EXCEEDED (HTTP 429).
#[derive(SimpleObject)]
pub struct Credits {
    /// Credits left now.
    pub remaining: i64,
    /// How the credits come back; null: never (set a new policy to give more).
    pub refill: Option<CreditRefill>,
}

/// Credits set back to `amount` at 00:00 UTC every day (DAILY) or on `day` of every month
/// (MONTHLY; the month's last day when it is shorter).
#[derive(SimpleObject)]
pub struct CreditRefill {
    /// The credits after a refill.
    pub amount: i64,
    /// DAILY or MONTHLY.
    pub interval: RefillInterval,
    /// The day of the month of a MONTHLY refill (1–31, default 1); null for DAILY.
    pub day: Option<i32>,
}

/// How often credits are refilled.
#[derive(Enum, Copy, Clone, Eq, PartialEq)]
pub enum RefillInterval {
    /// Every day at 00:00 UTC.
    Daily,
    /// Every month, on the refill's `day` at 00:00 UTC.
    Monthly,
}

impl From<RefillInterval> for Interval {
    fn from(value: RefillInterval) -> Self {
        match value {
            RefillInterval::Daily => Interval::Daily,
            RefillInterval::Monthly => Interval::Monthly,
        }
    }
}

impl From<PolicyView> for AppKeyPolicy {
    fn from(view: PolicyView) -> Self {
        let clamp = |n: u32| i32::try_from(n).unwrap_or(i32::MAX);
        Self {
            allowed_ips: view.policy.allowed_ips.iter().map(ToString::to_string).collect(),
            rate_limits: view
                .policy
                .rate_limits
                .iter()
                .map(|l| RateLimit {
                    name: l.name.clone(),
                    limit: clamp(l.limit),
                    period_seconds: clamp(l.period_secs),
                })
                .collect(),
            credits: view.policy.credits.as_ref().map(|credits| Credits {
                remaining: view.remaining.unwrap_or(0),
                refill: credits.refill.map(|r| CreditRefill {
                    amount: r.amount,
                    interval: match r.interval {
                        Interval::Daily => RefillInterval::Daily,
                        Interval::Monthly => RefillInterval::Monthly,
                    },
                    day: r.day.map(i32::from),
                }),
            }),
        }
    }
}

/// A whole policy; what is omitted is empty (any address, no limit, unlimited).
#[derive(InputObject, Default)]
pub struct AppKeyPolicyInput {
    /// CIDR ranges or single addresses, IPv4 or IPv6; at most 100. Empty: any address.
    #[graphql(default)]
    pub allowed_ips: Vec<String>,
    /// Named rate limits (at most 10, names unique).
    #[graphql(default)]
    pub rate_limits: Vec<RateLimitInput>,
    /// Credits; omitted: unlimited.
    pub credits: Option<CreditsInput>,
}

/// One named rate limit.
#[derive(InputObject)]
pub struct RateLimitInput {
    /// 1 to 64 letters, digits, `_`, `-`, `.` or `:`; unique among the key's limits.
    pub name: String,
    /// Requests (or cost units) per period, at least 1.
    pub limit: i64,
    /// The period in seconds, from 1 to 2678400 (31 days).
    pub period_seconds: i64,
}

/// The credits a key starts with, and their refill.
#[derive(InputObject)]
pub struct CreditsInput {
    /// Credits to start with, 0 or more.
    pub remaining: i64,
    /// How they come back; omitted: never.
    pub refill: Option<CreditRefillInput>,
}

/// A refill of credits.
#[derive(InputObject)]
pub struct CreditRefillInput {
    /// The credits after a refill, at least 1.
    pub amount: i64,
    /// DAILY (00:00 UTC) or MONTHLY.
    pub interval: RefillInterval,
    /// MONTHLY only: the day of the month, 1–31 (the last day in shorter months); default 1.
    pub day: Option<i64>,
}

impl From<AppKeyPolicyInput> for rules::PolicyInput {
    fn from(input: AppKeyPolicyInput) -> Self {
        Self {
            allowed_ips: input.allowed_ips,
            rate_limits: input
                .rate_limits
                .into_iter()
                .map(|l| rules::RateLimitInput { name: l.name, limit: l.limit, period_seconds: l.period_seconds })
                .collect(),
            credits: input.credits.map(|c| rules::CreditsInput {
                remaining: c.remaining,
                refill: c.refill.map(|r| rules::RefillInput {
                    amount: r.amount,
                    interval: r.interval.into(),
                    day: r.day,
                }),
            }),
        }
    }
}

// Usage (`AppKey.usage`, `AppKey.permissionUsage`, `accountUsage`).

/// Hourly or daily points.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Default)]
pub enum UsageGranularity {
    /// One point per hour (UTC); hourly points are kept 35 days.
    #[default]
    Hour,
    /// One point per day (UTC); kept `--usage-retention-days` (default 400).
    Day,
}

impl From<UsageGranularity> for meter::Granularity {
    fn from(value: UsageGranularity) -> Self {
        match value {
            UsageGranularity::Hour => meter::Granularity::Hour,
            UsageGranularity::Day => meter::Granularity::Day,
        }
    }
}

/// Decisions about a key in one bucket (an hour or a day), by outcome.
#[derive(SimpleObject)]
pub struct UsagePoint {
    /// The bucket's start (UTC).
    pub at: DateTime<Utc>,
    /// Admitted requests.
    pub valid: u64,
    /// Refused for a missing resource (or no role here).
    pub forbidden: u64,
    /// Refused: the address was not in the key's allowlist.
    pub ip_not_allowed: u64,
    /// Refused by a rate limit.
    pub rate_limited: u64,
    /// Refused: no credits left.
    pub usage_exceeded: u64,
    /// Refused: the key was inactive, expired or removed here.
    pub disabled: u64,
    /// The right key with a wrong token (counted in the key's own account only): someone is guessing.
    pub invalid_token: u64,
}

impl UsagePoint {
    pub fn of(at: DateTime<Utc>, c: &meter::Counts) -> Self {
        Self {
            at,
            valid: c[0],
            forbidden: c[1],
            ip_not_allowed: c[2],
            rate_limited: c[3],
            usage_exceeded: c[4],
            disabled: c[5],
            invalid_token: c[6],
        }
    }
}

/// A key's usage series (`[UsagePoint!]!`), resolved in one pass: the points' selection is read
/// once and every point written out as JSON text with it, answered as a raw value. Resolved field by
/// field, as any list is, a 400-point series cost several times the rest of its request. `@skip` and
/// `@include` are already applied to the document when it runs; every field of `UsagePoint` is a
/// plain value. A test holds its text equal to field-by-field resolution (`accountUsage.series`).
pub struct UsageSeries(pub Vec<UsagePoint>);

/// What one selected field of a point shows.
#[derive(Clone, Copy)]
enum PointField {
    Typename,
    At,
    Count(usize),
}

impl UsageSeries {
    pub fn of(points: &[meter::UsagePoint]) -> Self {
        Self(points.iter().map(|p| UsagePoint::of(p.at, &p.counts)).collect())
    }

    /// The response keys and fields a point's selection asks for, in order (fragments flattened).
    fn plan(
        ctx: &async_graphql::ContextSelectionSet<'_>,
        set: &async_graphql::parser::types::SelectionSet,
        into: &mut Vec<(async_graphql::Name, PointField)>,
    ) {
        use async_graphql::parser::types::Selection;
        for selection in &set.items {
            match &selection.node {
                Selection::Field(field) => {
                    let field = &field.node;
                    let shown = match field.name.node.as_str() {
                        "__typename" => PointField::Typename,
                        "at" => PointField::At,
                        "valid" => PointField::Count(0),
                        "forbidden" => PointField::Count(1),
                        "ipNotAllowed" => PointField::Count(2),
                        "rateLimited" => PointField::Count(3),
                        "usageExceeded" => PointField::Count(4),
                        "disabled" => PointField::Count(5),
                        "invalidToken" => PointField::Count(6),
                        _ => continue, // validation admits no other field
                    };
                    let key = field.alias.as_ref().unwrap_or(&field.name).node.clone();
                    if !into.iter().any(|(known, _)| *known == key) {
                        into.push((key, shown));
                    }
                }
                Selection::FragmentSpread(spread) => {
                    if let Some(fragment) = ctx.query_env.fragments.get(&spread.node.fragment_name.node) {
                        Self::plan(ctx, &fragment.node.selection_set.node, into);
                    }
                }
                Selection::InlineFragment(fragment) => Self::plan(ctx, &fragment.node.selection_set.node, into),
            }
        }
    }
}

impl OutputType for UsageSeries {
    fn type_name() -> std::borrow::Cow<'static, str> {
        <Vec<UsagePoint> as OutputType>::type_name()
    }

    fn qualified_type_name() -> String {
        <Vec<UsagePoint> as OutputType>::qualified_type_name()
    }

    fn create_type_info(registry: &mut async_graphql::registry::Registry) -> String {
        <Vec<UsagePoint> as OutputType>::create_type_info(registry)
    }

    async fn resolve(
        &self,
        ctx: &async_graphql::ContextSelectionSet<'_>,
        _field: &async_graphql::Positioned<async_graphql::parser::types::Field>,
    ) -> async_graphql::ServerResult<async_graphql::Value> {
        let mut plan = Vec::new();
        Self::plan(ctx, &ctx.item.node, &mut plan);
        // The series is written as JSON text here, once, and handed to the response as a raw value
        // (async-graphql's `raw_value`: an object holding only `RAW_VALUE_TOKEN` is written out as
        // the text it holds). Built as a tree of values, 400 points cost most of the request in
        // allocation, hashing each point's keys, writing and dropping them (profiled).
        let keys: Vec<(String, PointField)> =
            plan.iter().map(|(key, shown)| (format!("{}:", serde_json::Value::from(key.as_str())), *shown)).collect();
        let mut json =
            String::with_capacity(2 + self.0.len() * (3 + keys.iter().map(|(k, _)| k.len() + 28).sum::<usize>()));
        let mut number = itoa::Buffer::new();
        push_list(&mut json, &self.0, |json, point| {
            let counts = [
                point.valid,
                point.forbidden,
                point.ip_not_allowed,
                point.rate_limited,
                point.usage_exceeded,
                point.disabled,
                point.invalid_token,
            ];
            push_object(json, &keys, |json, shown| match shown {
                PointField::Typename => json.push_str("\"UsagePoint\""),
                // As the `DateTime` scalar writes it (RFC 3339: digits, `-`, `:`, `T`, `+`).
                PointField::At => push_time(json, Some(&point.at)),
                PointField::Count(i) => json.push_str(number.format(counts[*i])),
            })
        });
        Ok(raw(json))
    }
}

/// A resource the key holds here, when one of its requests last needed it, and the roles that grant it.
#[derive(SimpleObject)]
pub struct PermissionUsage {
    /// The resource.
    pub resource: Resource,
    /// When a request of the key last needed it (`/auth?resource=`, a guarded field); null: never
    /// (as far as the kept usage goes). Written off the hot path, so it may lag by the flush interval.
    pub last_used_at: Option<DateTime<Utc>>,
    /// The key's roles here that grant it: remove it from all of them to drop it.
    pub granted_by: Vec<Role>,
}

/// An account's usage over a range: totals, a series, and the busiest keys.
#[derive(SimpleObject)]
pub struct AccountUsage {
    /// Every decision about the account's keys in the range, by outcome (`at`: the range's start):
    /// the sum of the series' points (hourly: the hours kept, 35 days).
    pub totals: UsagePoint,
    /// The same, per bucket of the granularity asked for (zero points included).
    pub series: Vec<UsagePoint>,
    /// The keys with the most decisions in the range, busiest first.
    pub top_keys: Vec<KeyUsageTotal>,
}

/// One key's decisions in a range.
#[derive(SimpleObject)]
pub struct KeyUsageTotal {
    /// The key value.
    pub key: String,
    /// Its totals by outcome (`at`: the range's start).
    pub totals: UsagePoint,
}

/// An address a key's valid requests came from, over the days asked for.
#[derive(SimpleObject)]
pub struct ClientAddress {
    /// The client's IP address (behind a trusted gateway, the one it forwards), or `other`: the
    /// requests beyond the 100 addresses kept for a key each day.
    pub address: String,
    /// Valid requests from it.
    pub count: u64,
    /// Its latest valid request.
    pub last_seen_at: DateTime<Utc>,
}
