use sea_orm::entity::prelude::*;

/// How many valid requests of a key in one account came from one address on one day.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "key_client_addresses")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub access_id: String,
    /// The day's start, seconds since the epoch (UTC).
    #[sea_orm(primary_key, auto_increment = false)]
    pub day: i64,
    /// The address as text, or `other` for the requests beyond a day's 100 addresses.
    #[sea_orm(primary_key, auto_increment = false)]
    pub address: String,
    pub count: i64,
    pub last_seen_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
