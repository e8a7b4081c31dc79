use sea_orm_migration::prelude::*;

/// The label as searched: lower-cased by the application (Unicode-aware), because SQLite's `lower()`
/// folds only ASCII while PostgreSQL's folds everything — searching a derived column keeps both
/// backends answering alike.
#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum AppKeys {
    Table,
    Label,
    LabelSearch,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(AppKeys::Table)
                    .add_column(ColumnDef::new(AppKeys::LabelSearch).string_len(800).not_null().default(""))
                    .to_owned(),
            )
            .await?;
        // Rows from before this column: the database's own lower() is the best available here.
        manager
            .exec_stmt(
                Query::update()
                    .table(AppKeys::Table)
                    .value(AppKeys::LabelSearch, Func::lower(Expr::col(AppKeys::Label)))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.alter_table(Table::alter().table(AppKeys::Table).drop_column(AppKeys::LabelSearch).to_owned()).await
    }
}
