use crate::{at_column, id_column, ref_column, Accounts, Resources, Roles};
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum RoleResources {
    Table,
    RoleId,
    ResourceId,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Roles::Table)
                    .col(id_column(Roles::Id))
                    .col(ref_column(Roles::AccountId))
                    .col(ColumnDef::new(Roles::Name).string_len(100).not_null())
                    .col(ColumnDef::new(Roles::Predefined).boolean().not_null())
                    .col(at_column(Roles::CreatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(Roles::Table, Roles::AccountId)
                            .to(Accounts::Table, Accounts::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .index(Index::create().unique().col(Roles::AccountId).col(Roles::Name))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(RoleResources::Table)
                    .col(ref_column(RoleResources::RoleId))
                    .col(ColumnDef::new(RoleResources::ResourceId).string_len(100).not_null())
                    .primary_key(Index::create().col(RoleResources::RoleId).col(RoleResources::ResourceId))
                    .foreign_key(
                        ForeignKey::create()
                            .from(RoleResources::Table, RoleResources::RoleId)
                            .to(Roles::Table, Roles::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(RoleResources::Table, RoleResources::ResourceId)
                            .to(Resources::Table, Resources::Id)
                            .on_delete(ForeignKeyAction::Restrict),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(RoleResources::Table).to_owned()).await?;
        manager.drop_table(Table::drop().table(Roles::Table).to_owned()).await
    }
}
