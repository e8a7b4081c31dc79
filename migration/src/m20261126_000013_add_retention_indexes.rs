use sea_orm_migration::prelude::*;

/// The sweeper's retention round deletes events and finished deliveries older than the retention
/// period; by time, these indexes let it read only those rows instead of the whole tables (which,
/// on a busy server, it scanned in a write transaction every round).
#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum KeyEvents {
    Table,
    At,
}

#[derive(DeriveIden)]
enum WebhookDeliveries {
    Table,
    CreatedAt,
}

const KEY_EVENTS_AT: &str = "idx_key_events_at";
const WEBHOOK_DELIVERIES_CREATED: &str = "idx_webhook_deliveries_created_at";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_index(Index::create().name(KEY_EVENTS_AT).table(KeyEvents::Table).col(KeyEvents::At).to_owned())
            .await?;
        manager
            .create_index(
                Index::create()
                    .name(WEBHOOK_DELIVERIES_CREATED)
                    .table(WebhookDeliveries::Table)
                    .col(WebhookDeliveries::CreatedAt)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(Index::drop().name(WEBHOOK_DELIVERIES_CREATED).table(WebhookDeliveries::Table).to_owned())
            .await?;
        manager.drop_index(Index::drop().name(KEY_EVENTS_AT).table(KeyEvents::Table).to_owned()).await
    }
}
