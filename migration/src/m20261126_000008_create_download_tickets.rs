use crate::{at_column, id_column, ref_column, Accounts};
use sea_orm_migration::prelude::*;

/// Short-lived, single-use download tickets for the CSV export (browsers cannot send auth headers on
/// a plain link). Kept in the database so any replica can redeem a ticket another one issued.
#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum DownloadTickets {
    Table,
    Id,
    TokenDigest,
    AccountId,
    Actor,
    CreatedAt,
    ExpiresAt,
    UsedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(DownloadTickets::Table)
                    .col(id_column(DownloadTickets::Id))
                    .col(ColumnDef::new(DownloadTickets::TokenDigest).string_len(64).not_null().unique_key())
                    .col(ref_column(DownloadTickets::AccountId))
                    .col(ColumnDef::new(DownloadTickets::Actor).string_len(300).not_null())
                    .col(at_column(DownloadTickets::CreatedAt))
                    .col(at_column(DownloadTickets::ExpiresAt))
                    .col(ColumnDef::new(DownloadTickets::UsedAt).timestamp_with_time_zone().null())
                    .foreign_key(
                        ForeignKey::create()
                            .from(DownloadTickets::Table, DownloadTickets::AccountId)
                            .to(Accounts::Table, Accounts::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(DownloadTickets::Table).to_owned()).await
    }
}
