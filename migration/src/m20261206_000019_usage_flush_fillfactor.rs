use sea_orm_migration::prelude::*;

/// PostgreSQL: the pages of the two other tables each usage flush updates, `key_permission_use` (a
/// resource's last use moved forward) and `key_client_addresses` (an address's count and last seen),
/// are filled to 60 % (`fillfactor`), as `key_usage`'s are: an update then finds room on its own page
/// and is HOT (no new index entry), as every flush after a key's first one is. SQLite has no such
/// setting.
#[derive(DeriveMigrationName)]
pub struct Migration;

const TABLES: [&str; 2] = ["key_permission_use", "key_client_addresses"];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        if db.get_database_backend() == sea_orm::DatabaseBackend::Postgres {
            for table in TABLES {
                db.execute_unprepared(&format!("ALTER TABLE {table} SET (fillfactor = 60)")).await?;
            }
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        if db.get_database_backend() == sea_orm::DatabaseBackend::Postgres {
            for table in TABLES {
                db.execute_unprepared(&format!("ALTER TABLE {table} RESET (fillfactor)")).await?;
            }
        }
        Ok(())
    }
}
