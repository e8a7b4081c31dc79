//! Schema migrations for appkeys: one date-stamped file per change, each with `up` and `down`.
//!
//! Identifiers are UUIDv7 strings (time-ordered, opaque), timestamps are `timestamp with time zone`,
//! token digests are lowercase hex SHA-256. Foreign keys and unique constraints live here, in the
//! database, not only in code.
pub use sea_orm_migration::prelude::*;

mod m20261126_000001_create_accounts;
mod m20261126_000002_create_resources;
mod m20261126_000003_create_roles;
mod m20261126_000004_create_users;
mod m20261126_000005_create_sessions;
mod m20261126_000006_create_audit_events;
mod m20261126_000007_create_app_keys;
mod m20261126_000008_create_download_tickets;
mod m20261126_000009_add_app_key_label_search;
mod m20261126_000010_add_token_renewal;
mod m20261126_000011_add_expiry_and_last_use;
mod m20261126_000012_add_events;
mod m20261126_000013_add_retention_indexes;
mod m20261204_000014_add_key_policies;
mod m20261204_000015_add_usage;
mod m20261204_000016_add_client_addresses;
mod m20261205_000017_add_leaks;
mod m20261205_000018_add_usage_day_sums;
mod m20261206_000019_usage_flush_fillfactor;
mod m20261207_000020_usage_clustered_by_key;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261126_000001_create_accounts::Migration),
            Box::new(m20261126_000002_create_resources::Migration),
            Box::new(m20261126_000003_create_roles::Migration),
            Box::new(m20261126_000004_create_users::Migration),
            Box::new(m20261126_000005_create_sessions::Migration),
            Box::new(m20261126_000006_create_audit_events::Migration),
            Box::new(m20261126_000007_create_app_keys::Migration),
            Box::new(m20261126_000008_create_download_tickets::Migration),
            Box::new(m20261126_000009_add_app_key_label_search::Migration),
            Box::new(m20261126_000010_add_token_renewal::Migration),
            Box::new(m20261126_000011_add_expiry_and_last_use::Migration),
            Box::new(m20261126_000012_add_events::Migration),
            Box::new(m20261126_000013_add_retention_indexes::Migration),
            Box::new(m20261204_000014_add_key_policies::Migration),
            Box::new(m20261204_000015_add_usage::Migration),
            Box::new(m20261204_000016_add_client_addresses::Migration),
            Box::new(m20261205_000017_add_leaks::Migration),
            Box::new(m20261205_000018_add_usage_day_sums::Migration),
            Box::new(m20261206_000019_usage_flush_fillfactor::Migration),
            Box::new(m20261207_000020_usage_clustered_by_key::Migration),
        ]
    }
}

/// Identifiers shared by several migrations.
#[derive(DeriveIden)]
pub(crate) enum Accounts {
    Table,
    Id,
    Name,
    CreatedAt,
}

#[derive(DeriveIden)]
pub(crate) enum Resources {
    Table,
    Id,
    Name,
    Builtin,
    CreatedAt,
}

#[derive(DeriveIden)]
pub(crate) enum Roles {
    Table,
    Id,
    AccountId,
    Name,
    Predefined,
    CreatedAt,
}

#[derive(DeriveIden)]
pub(crate) enum Users {
    Table,
    Id,
    AccountId,
    Email,
    PasswordHash,
    CreatedAt,
}

pub(crate) fn id_column<T: IntoIden>(name: T) -> ColumnDef {
    ColumnDef::new(name).string_len(36).not_null().primary_key().take()
}

pub(crate) fn ref_column<T: IntoIden>(name: T) -> ColumnDef {
    ColumnDef::new(name).string_len(36).not_null().take()
}

pub(crate) fn at_column<T: IntoIden>(name: T) -> ColumnDef {
    ColumnDef::new(name).timestamp_with_time_zone().not_null().take()
}
