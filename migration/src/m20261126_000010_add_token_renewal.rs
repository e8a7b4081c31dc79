use crate::{at_column, Accounts};
use sea_orm_migration::prelude::*;

/// Token renewal: when the current token was made, and while a renewal is pending the previous
/// token's digest, its creation time and when its overlap ends (null: until finished or undone).
/// Plus each account's key settings (the renewal period behind renewal alerts).
#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum AppKeys {
    Table,
    CreatedAt,
    TokenCreatedAt,
    PreviousTokenDigest,
    PreviousTokenCreatedAt,
    PreviousTokenExpiresAt,
    RenewalStartedAt,
}

#[derive(DeriveIden)]
enum AccountSettings {
    Table,
    AccountId,
    RenewalPeriodDays,
    UpdatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // SQLite adds one column per statement, and a NOT NULL one needs a constant default: existing
        // keys get their creation time right after.
        manager
            .alter_table(
                Table::alter()
                    .table(AppKeys::Table)
                    .add_column(
                        ColumnDef::new(AppKeys::TokenCreatedAt)
                            .timestamp_with_time_zone()
                            .not_null()
                            .default("1970-01-01 00:00:00+00:00"),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .exec_stmt(
                Query::update()
                    .table(AppKeys::Table)
                    .value(AppKeys::TokenCreatedAt, Expr::col(AppKeys::CreatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(AppKeys::Table)
                    .add_column(ColumnDef::new(AppKeys::PreviousTokenDigest).string_len(64).null())
                    .to_owned(),
            )
            .await?;
        for column in [AppKeys::PreviousTokenCreatedAt, AppKeys::PreviousTokenExpiresAt, AppKeys::RenewalStartedAt] {
            manager
                .alter_table(
                    Table::alter()
                        .table(AppKeys::Table)
                        .add_column(ColumnDef::new(column).timestamp_with_time_zone().null())
                        .to_owned(),
                )
                .await?;
        }
        manager
            .create_table(
                Table::create()
                    .table(AccountSettings::Table)
                    .col(ColumnDef::new(AccountSettings::AccountId).string_len(36).not_null().primary_key())
                    .col(ColumnDef::new(AccountSettings::RenewalPeriodDays).integer().not_null())
                    .col(at_column(AccountSettings::UpdatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(AccountSettings::Table, AccountSettings::AccountId)
                            .to(Accounts::Table, Accounts::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(AccountSettings::Table).to_owned()).await?;
        for column in [
            AppKeys::RenewalStartedAt,
            AppKeys::PreviousTokenExpiresAt,
            AppKeys::PreviousTokenCreatedAt,
            AppKeys::PreviousTokenDigest,
            AppKeys::TokenCreatedAt,
        ] {
            manager.alter_table(Table::alter().table(AppKeys::Table).drop_column(column).to_owned()).await?;
        }
        Ok(())
    }
}
