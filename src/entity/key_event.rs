use sea_orm::entity::prelude::*;

/// The outbox: one lifecycle event of a key, written in the change's own transaction.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "key_events")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub account_id: String,
    pub r#type: String,
    /// The key value (kept after the key is deleted).
    pub key: String,
    pub actor: String,
    pub at: DateTimeUtc,
    /// The webhook body, exactly as every delivery sends it (JSON).
    pub body: String,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
