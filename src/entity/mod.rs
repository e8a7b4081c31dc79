//! SeaORM entities, one file per table. They never leave `service/`.
pub mod account;
pub mod account_setting;
pub mod app_key;
pub mod audit_event;
pub mod download_ticket;
pub mod key_access;
pub mod key_access_role;
pub mod key_event;
pub mod resource;
pub mod role;
pub mod role_resource;
pub mod server_secret;
pub mod session;
pub mod user;
pub mod user_role;
pub mod webhook_delivery;
pub mod webhook_endpoint;
