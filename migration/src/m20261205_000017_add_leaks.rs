use sea_orm_migration::prelude::*;

/// Leaked tokens: why a key was switched off (`deactivation_reason`: MANUAL, INACTIVITY or LEAKED;
/// NULL for keys switched off before this change, read as MANUAL), the last leak reported of it
/// (when, where, by which source), and the digests of every token reported leaked or revoked, so a
/// report of one again is answered as known and changes nothing. The previous token of a renewal
/// gets an index: a leaked token is looked up by its digest alone.
#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum AppKeys {
    Table,
    PreviousTokenDigest,
    DeactivationReason,
    LeakedAt,
    LeakUrl,
    LeakSource,
}

#[derive(DeriveIden)]
enum RevokedTokens {
    Table,
    TokenDigest,
    Kind,
    SubjectId,
    RevokedAt,
}

const PREVIOUS_TOKEN: &str = "idx_app_keys_previous_token_digest";

/// SQLite adds one column per statement.
async fn add(manager: &SchemaManager<'_>, column: ColumnDef) -> Result<(), DbErr> {
    manager.alter_table(Table::alter().table(AppKeys::Table).add_column(column).to_owned()).await
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        add(manager, ColumnDef::new(AppKeys::DeactivationReason).string_len(16).null().take()).await?;
        add(manager, ColumnDef::new(AppKeys::LeakedAt).timestamp_with_time_zone().null().take()).await?;
        add(manager, ColumnDef::new(AppKeys::LeakUrl).text().null().take()).await?;
        add(manager, ColumnDef::new(AppKeys::LeakSource).string_len(64).null().take()).await?;
        manager
            .create_index(
                Index::create().name(PREVIOUS_TOKEN).table(AppKeys::Table).col(AppKeys::PreviousTokenDigest).to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(RevokedTokens::Table)
                    .col(ColumnDef::new(RevokedTokens::TokenDigest).string_len(64).not_null().primary_key())
                    // `app` or `session`.
                    .col(ColumnDef::new(RevokedTokens::Kind).string_len(16).not_null())
                    // The key's or the session's id (no foreign key: the record outlives them).
                    .col(ColumnDef::new(RevokedTokens::SubjectId).string_len(36).not_null())
                    .col(ColumnDef::new(RevokedTokens::RevokedAt).timestamp_with_time_zone().not_null())
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(RevokedTokens::Table).to_owned()).await?;
        manager.drop_index(Index::drop().name(PREVIOUS_TOKEN).table(AppKeys::Table).to_owned()).await?;
        for column in [AppKeys::LeakSource, AppKeys::LeakUrl, AppKeys::LeakedAt, AppKeys::DeactivationReason] {
            manager.alter_table(Table::alter().table(AppKeys::Table).drop_column(column).to_owned()).await?;
        }
        Ok(())
    }
}
