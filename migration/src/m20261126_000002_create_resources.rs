use crate::{at_column, Resources};
use sea_orm_migration::prelude::*;

/// The resource catalogue. Built-in rows are upserted from the `Resource` enum at start-up, so the
/// enum stays the single source of truth; operators add their own rows (`builtin = false`).
#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Resources::Table)
                    .col(ColumnDef::new(Resources::Id).string_len(100).not_null().primary_key())
                    .col(ColumnDef::new(Resources::Name).string_len(200).not_null())
                    .col(ColumnDef::new(Resources::Builtin).boolean().not_null())
                    .col(at_column(Resources::CreatedAt))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(Resources::Table).to_owned()).await
    }
}
