use crate::{at_column, id_column, ref_column, Accounts};
use sea_orm_migration::prelude::*;

/// Lifecycle events out: the outbox of key events (written in the change's own transaction), the
/// accounts' webhook endpoints and one delivery row per event and endpoint; on each key, which
/// time-based events were already announced (so each is produced once); and the server's own
/// secrets (the fallback key that protects webhook secrets at rest).
#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum KeyEvents {
    Table,
    Id,
    AccountId,
    Type,
    Key,
    Actor,
    At,
    Body,
}

#[derive(DeriveIden)]
enum WebhookEndpoints {
    Table,
    Id,
    AccountId,
    Url,
    Events,
    Secret,
    CreatedAt,
    CreatedBy,
}

#[derive(DeriveIden)]
enum WebhookDeliveries {
    Table,
    Id,
    AccountId,
    EndpointId,
    EventId,
    Status,
    Attempts,
    NextAttemptAt,
    LastAttemptAt,
    LastStatusCode,
    LastError,
    CreatedAt,
    DeliveredAt,
}

#[derive(DeriveIden)]
enum AppKeys {
    Table,
    ExpiringAnnouncedFor,
    ExpiredAnnouncedFor,
    RenewalDueAnnouncedFor,
}

#[derive(DeriveIden)]
enum ServerSecrets {
    Table,
    Name,
    Value,
    CreatedAt,
}

async fn add(manager: &SchemaManager<'_>, column: AppKeys) -> Result<(), DbErr> {
    let column = ColumnDef::new(column).timestamp_with_time_zone().null().take();
    manager.alter_table(Table::alter().table(AppKeys::Table).add_column(column).to_owned()).await
}

async fn drop(manager: &SchemaManager<'_>, column: AppKeys) -> Result<(), DbErr> {
    manager.alter_table(Table::alter().table(AppKeys::Table).drop_column(column).to_owned()).await
}

fn account_fk(table: impl IntoIden) -> ForeignKeyCreateStatement {
    ForeignKey::create()
        .from(table, Alias::new("account_id"))
        .to(Accounts::Table, Accounts::Id)
        .on_delete(ForeignKeyAction::Cascade)
        .to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(KeyEvents::Table)
                    .col(id_column(KeyEvents::Id))
                    .col(ref_column(KeyEvents::AccountId))
                    .col(ColumnDef::new(KeyEvents::Type).string_len(40).not_null())
                    .col(ColumnDef::new(KeyEvents::Key).string_len(300).not_null())
                    .col(ColumnDef::new(KeyEvents::Actor).string_len(300).not_null())
                    .col(at_column(KeyEvents::At))
                    .col(ColumnDef::new(KeyEvents::Body).text().not_null())
                    .foreign_key(&mut account_fk(KeyEvents::Table))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_key_events_account")
                    .table(KeyEvents::Table)
                    .col(KeyEvents::AccountId)
                    .col(KeyEvents::Id)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(WebhookEndpoints::Table)
                    .col(id_column(WebhookEndpoints::Id))
                    .col(ref_column(WebhookEndpoints::AccountId))
                    .col(ColumnDef::new(WebhookEndpoints::Url).string_len(2048).not_null())
                    .col(ColumnDef::new(WebhookEndpoints::Events).text().null())
                    .col(ColumnDef::new(WebhookEndpoints::Secret).text().not_null())
                    .col(at_column(WebhookEndpoints::CreatedAt))
                    .col(ColumnDef::new(WebhookEndpoints::CreatedBy).string_len(300).not_null())
                    .foreign_key(&mut account_fk(WebhookEndpoints::Table))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_webhook_endpoints_account")
                    .table(WebhookEndpoints::Table)
                    .col(WebhookEndpoints::AccountId)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(WebhookDeliveries::Table)
                    .col(id_column(WebhookDeliveries::Id))
                    .col(ref_column(WebhookDeliveries::AccountId))
                    .col(ref_column(WebhookDeliveries::EndpointId))
                    .col(ref_column(WebhookDeliveries::EventId))
                    .col(ColumnDef::new(WebhookDeliveries::Status).string_len(16).not_null())
                    .col(ColumnDef::new(WebhookDeliveries::Attempts).integer().not_null().default(0))
                    .col(at_column(WebhookDeliveries::NextAttemptAt))
                    .col(ColumnDef::new(WebhookDeliveries::LastAttemptAt).timestamp_with_time_zone().null())
                    .col(ColumnDef::new(WebhookDeliveries::LastStatusCode).integer().null())
                    .col(ColumnDef::new(WebhookDeliveries::LastError).string_len(300).null())
                    .col(at_column(WebhookDeliveries::CreatedAt))
                    .col(ColumnDef::new(WebhookDeliveries::DeliveredAt).timestamp_with_time_zone().null())
                    .foreign_key(&mut account_fk(WebhookDeliveries::Table))
                    .foreign_key(
                        ForeignKey::create()
                            .from(WebhookDeliveries::Table, WebhookDeliveries::EndpointId)
                            .to(WebhookEndpoints::Table, WebhookEndpoints::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(WebhookDeliveries::Table, WebhookDeliveries::EventId)
                            .to(KeyEvents::Table, KeyEvents::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        for (name, columns) in [
            ("idx_webhook_deliveries_due", vec![WebhookDeliveries::Status, WebhookDeliveries::NextAttemptAt]),
            ("idx_webhook_deliveries_account", vec![WebhookDeliveries::AccountId, WebhookDeliveries::Id]),
            ("idx_webhook_deliveries_endpoint", vec![WebhookDeliveries::EndpointId]),
            ("idx_webhook_deliveries_event", vec![WebhookDeliveries::EventId]),
        ] {
            let mut index = Index::create().name(name).table(WebhookDeliveries::Table).to_owned();
            for column in columns {
                index.col(column);
            }
            manager.create_index(index).await?;
        }
        add(manager, AppKeys::ExpiringAnnouncedFor).await?;
        add(manager, AppKeys::ExpiredAnnouncedFor).await?;
        add(manager, AppKeys::RenewalDueAnnouncedFor).await?;
        manager
            .create_table(
                Table::create()
                    .table(ServerSecrets::Table)
                    .col(ColumnDef::new(ServerSecrets::Name).string_len(64).not_null().primary_key())
                    .col(ColumnDef::new(ServerSecrets::Value).string_len(200).not_null())
                    .col(at_column(ServerSecrets::CreatedAt))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(ServerSecrets::Table).to_owned()).await?;
        drop(manager, AppKeys::RenewalDueAnnouncedFor).await?;
        drop(manager, AppKeys::ExpiredAnnouncedFor).await?;
        drop(manager, AppKeys::ExpiringAnnouncedFor).await?;
        manager.drop_table(Table::drop().table(WebhookDeliveries::Table).to_owned()).await?;
        manager.drop_table(Table::drop().table(WebhookEndpoints::Table).to_owned()).await?;
        manager.drop_table(Table::drop().table(KeyEvents::Table).to_owned()).await
    }
}
