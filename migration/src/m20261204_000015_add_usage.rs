use sea_orm_migration::prelude::*;

/// Usage: per key access (a key in one account), per hour and per day, how many decisions had each
/// outcome (written as additive upserts, so replicas add up); and when each resource the key holds
/// there was last needed by one of its requests.
#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum KeyUsage {
    Table,
    AccessId,
    AccountId,
    Granularity,
    Bucket,
    Valid,
    Forbidden,
    IpNotAllowed,
    RateLimited,
    UsageExceeded,
    Disabled,
    InvalidToken,
}

#[derive(DeriveIden)]
enum KeyPermissionUse {
    Table,
    AccessId,
    Resource,
    LastUsedAt,
}

#[derive(DeriveIden)]
enum KeyAccess {
    Table,
    Id,
}

const ACCOUNT_INDEX: &str = "idx_key_usage_account";

fn count(column: KeyUsage) -> ColumnDef {
    ColumnDef::new(column).big_integer().not_null().default(0).take()
}

fn access_fk(table: impl IntoIden, column: impl IntoIden) -> ForeignKeyCreateStatement {
    ForeignKey::create()
        .from(table, column)
        .to(KeyAccess::Table, KeyAccess::Id)
        .on_delete(ForeignKeyAction::Cascade)
        .to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(KeyUsage::Table)
                    .col(ColumnDef::new(KeyUsage::AccessId).string_len(36).not_null())
                    .col(ColumnDef::new(KeyUsage::AccountId).string_len(36).not_null())
                    // 1: an hour, 2: a day; `bucket`: its start, in seconds since the Unix epoch (UTC).
                    .col(ColumnDef::new(KeyUsage::Granularity).small_integer().not_null())
                    .col(ColumnDef::new(KeyUsage::Bucket).big_integer().not_null())
                    .col(count(KeyUsage::Valid))
                    .col(count(KeyUsage::Forbidden))
                    .col(count(KeyUsage::IpNotAllowed))
                    .col(count(KeyUsage::RateLimited))
                    .col(count(KeyUsage::UsageExceeded))
                    .col(count(KeyUsage::Disabled))
                    .col(count(KeyUsage::InvalidToken))
                    // One key's series over any range is one range read of this key.
                    .primary_key(
                        Index::create().col(KeyUsage::AccessId).col(KeyUsage::Granularity).col(KeyUsage::Bucket),
                    )
                    .foreign_key(&mut access_fk(KeyUsage::Table, KeyUsage::AccessId))
                    .to_owned(),
            )
            .await?;
        // An account's totals and top keys, and retention by time.
        manager
            .create_index(
                Index::create()
                    .name(ACCOUNT_INDEX)
                    .table(KeyUsage::Table)
                    .col(KeyUsage::AccountId)
                    .col(KeyUsage::Granularity)
                    .col(KeyUsage::Bucket)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_key_usage_bucket")
                    .table(KeyUsage::Table)
                    .col(KeyUsage::Granularity)
                    .col(KeyUsage::Bucket)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(KeyPermissionUse::Table)
                    .col(ColumnDef::new(KeyPermissionUse::AccessId).string_len(36).not_null())
                    .col(ColumnDef::new(KeyPermissionUse::Resource).string_len(100).not_null())
                    .col(ColumnDef::new(KeyPermissionUse::LastUsedAt).timestamp_with_time_zone().not_null())
                    .primary_key(Index::create().col(KeyPermissionUse::AccessId).col(KeyPermissionUse::Resource))
                    .foreign_key(&mut access_fk(KeyPermissionUse::Table, KeyPermissionUse::AccessId))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(KeyPermissionUse::Table).to_owned()).await?;
        manager.drop_table(Table::drop().table(KeyUsage::Table).to_owned()).await
    }
}
