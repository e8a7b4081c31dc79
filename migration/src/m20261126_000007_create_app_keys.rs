use crate::{at_column, id_column, ref_column, Accounts, Roles};
use sea_orm_migration::prelude::*;

/// Application keys (owned by one account) and their access grants: one `key_access` row per account
/// the key may act on (its own account: internal; another account: external), with that account's roles.
#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum AppKeys {
    Table,
    Id,
    Key,
    AccountId,
    Label,
    TokenDigest,
    Active,
    CreatedAt,
    CreatedBy,
}

#[derive(DeriveIden)]
enum KeyAccess {
    Table,
    Id,
    AppKeyId,
    AccountId,
    External,
    Removed,
    AddedAt,
    AddedBy,
}

#[derive(DeriveIden)]
enum KeyAccessRoles {
    Table,
    KeyAccessId,
    RoleId,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(AppKeys::Table)
                    .col(id_column(AppKeys::Id))
                    .col(ColumnDef::new(AppKeys::Key).string_len(100).not_null().unique_key())
                    .col(ref_column(AppKeys::AccountId))
                    .col(ColumnDef::new(AppKeys::Label).string_len(200).not_null())
                    .col(ColumnDef::new(AppKeys::TokenDigest).string_len(64).not_null().unique_key())
                    .col(ColumnDef::new(AppKeys::Active).boolean().not_null())
                    .col(at_column(AppKeys::CreatedAt))
                    .col(ColumnDef::new(AppKeys::CreatedBy).string_len(300).not_null())
                    .foreign_key(
                        ForeignKey::create()
                            .from(AppKeys::Table, AppKeys::AccountId)
                            .to(Accounts::Table, Accounts::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_app_keys_account_id_id")
                    .table(AppKeys::Table)
                    .col(AppKeys::AccountId)
                    .col(AppKeys::Id)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(KeyAccess::Table)
                    .col(id_column(KeyAccess::Id))
                    .col(ref_column(KeyAccess::AppKeyId))
                    .col(ref_column(KeyAccess::AccountId))
                    .col(ColumnDef::new(KeyAccess::External).boolean().not_null())
                    .col(ColumnDef::new(KeyAccess::Removed).boolean().not_null())
                    .col(at_column(KeyAccess::AddedAt))
                    .col(ColumnDef::new(KeyAccess::AddedBy).string_len(300).not_null())
                    .foreign_key(
                        ForeignKey::create()
                            .from(KeyAccess::Table, KeyAccess::AppKeyId)
                            .to(AppKeys::Table, AppKeys::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(KeyAccess::Table, KeyAccess::AccountId)
                            .to(Accounts::Table, Accounts::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .index(Index::create().unique().col(KeyAccess::AppKeyId).col(KeyAccess::AccountId))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_key_access_account_id_id")
                    .table(KeyAccess::Table)
                    .col(KeyAccess::AccountId)
                    .col(KeyAccess::Id)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(KeyAccessRoles::Table)
                    .col(ref_column(KeyAccessRoles::KeyAccessId))
                    .col(ref_column(KeyAccessRoles::RoleId))
                    .primary_key(Index::create().col(KeyAccessRoles::KeyAccessId).col(KeyAccessRoles::RoleId))
                    .foreign_key(
                        ForeignKey::create()
                            .from(KeyAccessRoles::Table, KeyAccessRoles::KeyAccessId)
                            .to(KeyAccess::Table, KeyAccess::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(KeyAccessRoles::Table, KeyAccessRoles::RoleId)
                            .to(Roles::Table, Roles::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(KeyAccessRoles::Table).to_owned()).await?;
        manager.drop_table(Table::drop().table(KeyAccess::Table).to_owned()).await?;
        manager.drop_table(Table::drop().table(AppKeys::Table).to_owned()).await
    }
}
