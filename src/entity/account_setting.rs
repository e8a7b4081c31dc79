use sea_orm::entity::prelude::*;

/// An account's key settings; an account without a row has the defaults.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "account_settings")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub account_id: String,
    pub renewal_period_days: i32,
    pub max_lifetime_days: Option<i32>,
    pub deactivate_unused_after_days: Option<i32>,
    pub expiry_warning_days: i32,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
