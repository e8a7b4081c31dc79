use sea_orm::entity::prelude::*;

/// One event to one endpoint: pending until delivered, or failed after 24 hours of retries.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "webhook_deliveries")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub account_id: String,
    pub endpoint_id: String,
    pub event_id: String,
    /// PENDING, DELIVERED or FAILED (`service::webhooks::DeliveryStatus`).
    pub status: String,
    pub attempts: i32,
    /// When the next attempt is due; while an attempt runs, when its lease ends.
    pub next_attempt_at: DateTimeUtc,
    pub last_attempt_at: Option<DateTimeUtc>,
    pub last_status_code: Option<i32>,
    pub last_error: Option<String>,
    pub created_at: DateTimeUtc,
    pub delivered_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
