//! The integration suite: every test drives the real server over HTTP, on SQLite and (when
//! `APPKEYS_TEST_POSTGRES_URL` is set) on PostgreSQL.
mod helpers;

mod audit;
mod bootstrap;
mod browser;
mod console;
mod contract;
mod crash;
mod deletion;
mod expiry;
mod export;
mod external_keys;
mod faults;
mod gateway;
mod guards;
mod hardening;
mod http;
mod isolation;
mod keys;
mod last_use;
mod lifecycle_events;
mod listings;
mod metrics;
mod migrations;
mod plans;
mod policies;
mod properties;
mod renewal;
mod roles;
mod scale;
mod schema;
mod secrets;
mod sessions;
mod subscriptions;
mod users;
mod webhooks;
