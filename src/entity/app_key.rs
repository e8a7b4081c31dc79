use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "app_keys")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    #[sea_orm(unique)]
    pub key: String,
    pub account_id: String,
    pub label: String,
    /// The label lower-cased by appkeys, for backend-independent search.
    pub label_search: String,
    #[sea_orm(unique)]
    pub token_digest: String,
    pub active: bool,
    pub created_at: DateTimeUtc,
    pub created_by: String,
    /// When the current token was made (at generation, or by the last renewal).
    pub token_created_at: DateTimeUtc,
    /// While a renewal is pending: the previous token's digest, which still authenticates until
    /// `previous_token_expires_at` (null: until the renewal is finished or undone).
    pub previous_token_digest: Option<String>,
    pub previous_token_created_at: Option<DateTimeUtc>,
    pub previous_token_expires_at: Option<DateTimeUtc>,
    pub renewal_started_at: Option<DateTimeUtc>,
    /// When the key stops authenticating by itself; `None`: never.
    pub expires_at: Option<DateTimeUtc>,
    /// The last change to the key itself (status, token, expiry).
    pub updated_at: DateTimeUtc,
    /// The `expires_at` for which `app_key.expiring` was already produced (each event once).
    pub expiring_announced_for: Option<DateTimeUtc>,
    /// The `expires_at` for which `app_key.expired` was already produced.
    pub expired_announced_for: Option<DateTimeUtc>,
    /// The `token_created_at` for which `app_key.renewal_due` was already produced.
    pub renewal_due_announced_for: Option<DateTimeUtc>,
    /// Why the key was switched off: `MANUAL`, `INACTIVITY` or `LEAKED` (NULL while active, and for
    /// keys switched off before reasons were kept: read as `MANUAL`).
    pub deactivation_reason: Option<String>,
    /// The last leak reported of the key: when, where (a URL, if the reporter gave one) and by
    /// which source (GitHub's `source`, or `self-revocation`).
    pub leaked_at: Option<DateTimeUtc>,
    pub leak_url: Option<String>,
    pub leak_source: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(belongs_to = "super::account::Entity", from = "Column::AccountId", to = "super::account::Column::Id")]
    Owner,
}

impl Related<super::account::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Owner.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
