use super::Invalid;
use std::fmt;

/// An account (tenant) name: 2–40 characters of `[a-z0-9]`, starting with a letter.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AccountName(String);

impl AccountName {
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        let len = raw.chars().count();
        let starts_with_letter = raw.chars().next().is_some_and(|c| c.is_ascii_lowercase());
        let allowed = raw.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
        if !(2..=40).contains(&len) || !starts_with_letter || !allowed {
            return Err(Invalid("an account name is 2 to 40 characters of a-z and 0-9, starting with a letter".into()));
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for AccountName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::AccountName;

    #[test]
    fn a_lowercase_name_starting_with_a_letter_is_accepted() {
        assert_eq!(AccountName::parse("mystore2").map(|a| a.to_string()), Ok("mystore2".into()));
    }

    #[test]
    fn names_outside_two_to_forty_chars_are_rejected() {
        assert!(AccountName::parse("a").is_err());
        assert!(AccountName::parse(&"a".repeat(41)).is_err());
        assert!(AccountName::parse(&"a".repeat(40)).is_ok());
    }

    #[test]
    fn uppercase_symbols_and_leading_digits_are_rejected() {
        for bad in ["MyStore", "my-store", "1store", "my store", "", "störe"] {
            assert!(AccountName::parse(bad).is_err(), "{bad} should be rejected");
        }
    }
}
