use sea_orm::entity::prelude::*;

/// Where an account wants its key events delivered.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "webhook_endpoints")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub account_id: String,
    pub url: String,
    /// The event types wanted, as a JSON array; `None`: every type.
    pub events: Option<String>,
    /// The signing secret, encrypted (see `service::webhooks::SecretBox`).
    pub secret: String,
    pub created_at: DateTimeUtc,
    pub created_by: String,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
