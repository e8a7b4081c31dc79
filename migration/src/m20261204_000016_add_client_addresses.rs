use sea_orm_migration::prelude::*;

/// The client addresses a key's valid requests in an account came from, per day: at most 100
/// addresses a key a day, the rest counted under `other`.
#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum KeyClientAddresses {
    Table,
    AccessId,
    Day,
    Address,
    Count,
    LastSeenAt,
}

#[derive(DeriveIden)]
enum KeyAccess {
    Table,
    Id,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(KeyClientAddresses::Table)
                    .col(ColumnDef::new(KeyClientAddresses::AccessId).string_len(36).not_null())
                    // The day's start, seconds since the Unix epoch (UTC).
                    .col(ColumnDef::new(KeyClientAddresses::Day).big_integer().not_null())
                    .col(ColumnDef::new(KeyClientAddresses::Address).string_len(45).not_null())
                    .col(ColumnDef::new(KeyClientAddresses::Count).big_integer().not_null().default(0))
                    .col(ColumnDef::new(KeyClientAddresses::LastSeenAt).timestamp_with_time_zone().not_null())
                    .primary_key(
                        Index::create()
                            .col(KeyClientAddresses::AccessId)
                            .col(KeyClientAddresses::Day)
                            .col(KeyClientAddresses::Address),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(KeyClientAddresses::Table, KeyClientAddresses::AccessId)
                            .to(KeyAccess::Table, KeyAccess::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_key_client_addresses_day")
                    .table(KeyClientAddresses::Table)
                    .col(KeyClientAddresses::Day)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(KeyClientAddresses::Table).to_owned()).await
    }
}
