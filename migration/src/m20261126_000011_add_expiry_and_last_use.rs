use sea_orm_migration::prelude::*;

/// Expiry and last use: when a key stops by itself, when it last changed; per account it acts on,
/// when, from where and with which client it was last used; and the settings that bound lifetimes,
/// deactivate unused keys and warn before expiry.
#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum AppKeys {
    Table,
    CreatedAt,
    ExpiresAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum KeyAccess {
    Table,
    AddedAt,
    UpdatedAt,
    LastUsedAt,
    LastUsedIp,
    LastUsedUserAgent,
}

#[derive(DeriveIden)]
enum AccountSettings {
    Table,
    MaxLifetimeDays,
    DeactivateUnusedAfterDays,
    ExpiryWarningDays,
}

const EPOCH: &str = "1970-01-01 00:00:00+00:00";

/// SQLite adds one column per statement.
async fn add(manager: &SchemaManager<'_>, table: impl IntoIden, column: ColumnDef) -> Result<(), DbErr> {
    manager.alter_table(Table::alter().table(table).add_column(column).to_owned()).await
}

async fn drop(manager: &SchemaManager<'_>, table: impl IntoIden, column: impl IntoIden) -> Result<(), DbErr> {
    manager.alter_table(Table::alter().table(table).drop_column(column).to_owned()).await
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        add(manager, AppKeys::Table, ColumnDef::new(AppKeys::ExpiresAt).timestamp_with_time_zone().null().take())
            .await?;
        // A NOT NULL column needs a constant default in SQLite; existing rows get their real value next.
        add(
            manager,
            AppKeys::Table,
            ColumnDef::new(AppKeys::UpdatedAt).timestamp_with_time_zone().not_null().default(EPOCH).take(),
        )
        .await?;
        manager
            .exec_stmt(
                Query::update()
                    .table(AppKeys::Table)
                    .value(AppKeys::UpdatedAt, Expr::col(AppKeys::CreatedAt))
                    .to_owned(),
            )
            .await?;
        add(
            manager,
            KeyAccess::Table,
            ColumnDef::new(KeyAccess::UpdatedAt).timestamp_with_time_zone().not_null().default(EPOCH).take(),
        )
        .await?;
        manager
            .exec_stmt(
                Query::update()
                    .table(KeyAccess::Table)
                    .value(KeyAccess::UpdatedAt, Expr::col(KeyAccess::AddedAt))
                    .to_owned(),
            )
            .await?;
        add(manager, KeyAccess::Table, ColumnDef::new(KeyAccess::LastUsedAt).timestamp_with_time_zone().null().take())
            .await?;
        add(manager, KeyAccess::Table, ColumnDef::new(KeyAccess::LastUsedIp).string_len(64).null().take()).await?;
        add(manager, KeyAccess::Table, ColumnDef::new(KeyAccess::LastUsedUserAgent).string_len(300).null().take())
            .await?;
        add(manager, AccountSettings::Table, ColumnDef::new(AccountSettings::MaxLifetimeDays).integer().null().take())
            .await?;
        add(
            manager,
            AccountSettings::Table,
            ColumnDef::new(AccountSettings::DeactivateUnusedAfterDays).integer().null().take(),
        )
        .await?;
        add(
            manager,
            AccountSettings::Table,
            ColumnDef::new(AccountSettings::ExpiryWarningDays).integer().not_null().default(7).take(),
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        drop(manager, AccountSettings::Table, AccountSettings::ExpiryWarningDays).await?;
        drop(manager, AccountSettings::Table, AccountSettings::DeactivateUnusedAfterDays).await?;
        drop(manager, AccountSettings::Table, AccountSettings::MaxLifetimeDays).await?;
        drop(manager, KeyAccess::Table, KeyAccess::LastUsedUserAgent).await?;
        drop(manager, KeyAccess::Table, KeyAccess::LastUsedIp).await?;
        drop(manager, KeyAccess::Table, KeyAccess::LastUsedAt).await?;
        drop(manager, KeyAccess::Table, KeyAccess::UpdatedAt).await?;
        drop(manager, AppKeys::Table, AppKeys::UpdatedAt).await?;
        drop(manager, AppKeys::Table, AppKeys::ExpiresAt).await
    }
}
