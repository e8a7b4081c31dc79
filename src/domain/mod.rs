//! Plain types that validate themselves. Input is parsed into these once, at the edge; the services
//! only ever see values that already obey the rules.
mod account_name;
mod days;
mod email;
pub mod instant;
mod key;
mod label;
mod name;
mod password;
pub mod policy;
mod resource;
mod token;

pub use account_name::AccountName;
pub use days::Days;
pub use email::Email;
pub use key::{AppKeyValue, KeyPrefix};
pub use label::KeyLabel;
pub use name::{ResourceName, RoleName};
pub use password::{HashMemory, Password};
pub use policy::{KeyPolicy, PolicyInput, PolicyInvalid};
pub use resource::{PredefinedRole, Resource, ResourceId};
pub use token::{sha256_of, AppToken, DownloadToken, SessionToken, Token, TokenDigest, TokenFormatError, TokenKind};

/// A value that failed its own rules; the message is safe to show to the caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub String);

pub(crate) fn has_control_chars(s: &str) -> bool {
    s.chars().any(char::is_control)
}
