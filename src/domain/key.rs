//! Application key values: `{prefix}-{account}-{6 random A–Z}`. Public identifiers, safe to log.
use rand::rngs::OsRng;
use rand::{Rng, TryRngCore};
use std::fmt;

use super::{AccountName, Invalid};

/// The configurable first part of every generated key value: 1–20 characters of `[a-z0-9]`,
/// starting with a letter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPrefix(String);

impl KeyPrefix {
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        let ok = (1..=20).contains(&raw.len())
            && raw.starts_with(|c: char| c.is_ascii_lowercase())
            && raw.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
        if !ok {
            return Err(Invalid("a key prefix is 1 to 20 characters of a-z and 0-9, starting with a letter".into()));
        }
        Ok(Self(raw.to_owned()))
    }
}

impl Default for KeyPrefix {
    fn default() -> Self {
        Self("appkey".into())
    }
}

/// A key value as given by a caller or generated here.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AppKeyValue(String);

impl AppKeyValue {
    pub const MAX_LEN: usize = 100;

    pub fn generate(prefix: &KeyPrefix, account: &AccountName) -> Self {
        let mut rng = OsRng.unwrap_err();
        let suffix: String = (0..6).map(|_| char::from(rng.random_range(b'A'..=b'Z'))).collect();
        Self(format!("{}-{}-{}", prefix.0, account, suffix))
    }

    /// Accepts any plausible key value (prefixes may have changed since a key was made): 1–100
    /// characters of ASCII letters, digits and `-`. Whether it exists is the caller's question.
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        let raw = raw.trim();
        let ok =
            (1..=Self::MAX_LEN).contains(&raw.len()) && raw.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
        if !ok {
            return Err(Invalid("a key value is 1 to 100 characters of letters, digits and '-'".into()));
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for AppKeyValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_key_is_prefix_account_and_six_capital_letters() {
        let account = AccountName::parse("mystore").expect("valid");
        let key = AppKeyValue::generate(&KeyPrefix::default(), &account);
        let suffix = key.as_str().strip_prefix("appkey-mystore-").expect("prefix and account");
        assert_eq!(suffix.len(), 6);
        assert!(suffix.bytes().all(|b| b.is_ascii_uppercase()));
        assert_eq!(AppKeyValue::parse(key.as_str()), Ok(key));
    }

    #[test]
    fn key_values_with_other_characters_are_rejected() {
        for bad in ["", "appkey mystore", "appkey-mystore-ÄBC", "a;drop", &"a".repeat(101)] {
            assert!(AppKeyValue::parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn a_key_prefix_must_be_short_lowercase_and_start_with_a_letter() {
        assert!(KeyPrefix::parse("vtexappkey").is_ok());
        for bad in ["", "App", "1key", "key-x", &"k".repeat(21)] {
            assert!(KeyPrefix::parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }
}
