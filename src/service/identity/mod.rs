//! Who acts: accounts, their users and roles (the resource catalogue, predefined roles, no
//! escalation), sessions and passwords (argon2, bounded).
pub mod accounts;
pub mod passwords;
pub mod roles;
pub mod sessions;
pub mod users;
