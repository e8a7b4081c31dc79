use crate::{at_column, id_column, ref_column, Accounts};
use sea_orm_migration::prelude::*;

/// The audit log. Rows are written in the same transaction as the change they describe.
#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum AuditEvents {
    Table,
    Id,
    AccountId,
    At,
    Actor,
    Action,
    Target,
    Before,
    After,
    ClientIp,
    RequestId,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(AuditEvents::Table)
                    .col(id_column(AuditEvents::Id))
                    .col(ref_column(AuditEvents::AccountId))
                    .col(at_column(AuditEvents::At))
                    .col(ColumnDef::new(AuditEvents::Actor).string_len(300).not_null())
                    .col(ColumnDef::new(AuditEvents::Action).string_len(60).not_null())
                    .col(ColumnDef::new(AuditEvents::Target).string_len(300).not_null())
                    .col(ColumnDef::new(AuditEvents::Before).text().null())
                    .col(ColumnDef::new(AuditEvents::After).text().null())
                    .col(ColumnDef::new(AuditEvents::ClientIp).string_len(64).null())
                    .col(ColumnDef::new(AuditEvents::RequestId).string_len(64).null())
                    .foreign_key(
                        ForeignKey::create()
                            .from(AuditEvents::Table, AuditEvents::AccountId)
                            .to(Accounts::Table, Accounts::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_audit_events_account_id_id")
                    .table(AuditEvents::Table)
                    .col(AuditEvents::AccountId)
                    .col(AuditEvents::Id)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(AuditEvents::Table).to_owned()).await
    }
}
