use sea_orm_migration::prelude::*;

/// A key's policy in each account it acts on (kept with its access row, so an external key's
/// policy in an account is that account's): the allowlist, the rate limits and the credit rule as
/// JSON, and the credits left as a number a statement can decrement. Existing keys get the empty
/// policy (NULL: any address, no limit, unlimited).
#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum KeyAccess {
    Table,
    Policy,
    CreditsRemaining,
    CreditsResetAt,
    CreditsLowAnnouncedFor,
    CreditsExhaustedAnnouncedFor,
}

const CREDITS_RESET: &str = "idx_key_access_credits_reset_at";

/// SQLite adds one column per statement.
async fn add(manager: &SchemaManager<'_>, column: ColumnDef) -> Result<(), DbErr> {
    manager.alter_table(Table::alter().table(KeyAccess::Table).add_column(column).to_owned()).await
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        add(manager, ColumnDef::new(KeyAccess::Policy).text().null().take()).await?;
        add(manager, ColumnDef::new(KeyAccess::CreditsRemaining).big_integer().null().take()).await?;
        // When the credits were last set (by the policy or a refill): the anchor of the refill
        // and of the credits events, which are made once per anchor.
        add(manager, ColumnDef::new(KeyAccess::CreditsResetAt).timestamp_with_time_zone().null().take()).await?;
        add(manager, ColumnDef::new(KeyAccess::CreditsLowAnnouncedFor).timestamp_with_time_zone().null().take())
            .await?;
        add(manager, ColumnDef::new(KeyAccess::CreditsExhaustedAnnouncedFor).timestamp_with_time_zone().null().take())
            .await?;
        // The sweeper's refill round reads only the keys that have credits.
        manager
            .create_index(
                Index::create().name(CREDITS_RESET).table(KeyAccess::Table).col(KeyAccess::CreditsResetAt).to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_index(Index::drop().name(CREDITS_RESET).table(KeyAccess::Table).to_owned()).await?;
        for column in [
            KeyAccess::CreditsExhaustedAnnouncedFor,
            KeyAccess::CreditsLowAnnouncedFor,
            KeyAccess::CreditsResetAt,
            KeyAccess::CreditsRemaining,
            KeyAccess::Policy,
        ] {
            manager.alter_table(Table::alter().table(KeyAccess::Table).drop_column(column).to_owned()).await?;
        }
        Ok(())
    }
}
