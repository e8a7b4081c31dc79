use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "key_access")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub app_key_id: String,
    pub account_id: String,
    pub external: bool,
    pub removed: bool,
    pub added_at: DateTimeUtc,
    pub added_by: String,
    /// The last change to the key's access here (roles, removal).
    pub updated_at: DateTimeUtc,
    /// The last authenticated request of the key in this account, written off the hot path.
    pub last_used_at: Option<DateTimeUtc>,
    pub last_used_ip: Option<String>,
    pub last_used_user_agent: Option<String>,
    /// The key's policy here (`domain::KeyPolicy` as JSON); NULL is the empty policy.
    pub policy: Option<String>,
    /// The credits left here; NULL is unlimited. Decremented by the gate, set by the policy and refills.
    pub credits_remaining: Option<i64>,
    /// When the credits were last set (the anchor of refills and of the credits events).
    pub credits_reset_at: Option<DateTimeUtc>,
    pub credits_low_announced_for: Option<DateTimeUtc>,
    pub credits_exhausted_announced_for: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(
        belongs_to = "super::app_key::Entity",
        from = "Column::AppKeyId",
        to = "super::app_key::Column::Id",
        on_delete = "Cascade"
    )]
    AppKey,
    #[sea_orm(has_many = "super::key_access_role::Entity")]
    Roles,
}

impl Related<super::app_key::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::AppKey.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
