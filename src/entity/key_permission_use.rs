use sea_orm::entity::prelude::*;

/// When a resource a key holds in one account was last needed by one of its requests.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "key_permission_use")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub access_id: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub resource: String,
    pub last_used_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
