use sea_orm::entity::prelude::*;

/// Decisions about a key in one account, by outcome, per hour (`granularity` 1) or day (2).
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "key_usage")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub access_id: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub granularity: i16,
    /// The bucket's start, seconds since the Unix epoch (UTC).
    #[sea_orm(primary_key, auto_increment = false)]
    pub bucket: i64,
    pub account_id: String,
    pub valid: i64,
    pub forbidden: i64,
    pub ip_not_allowed: i64,
    pub rate_limited: i64,
    pub usage_exceeded: i64,
    pub disabled: i64,
    pub invalid_token: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
