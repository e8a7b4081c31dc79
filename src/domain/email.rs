use super::{has_control_chars, Invalid};
use std::fmt;

/// A user's email, trimmed and lower-cased so that `Ann@X.com` and `ann@x.com` are one user.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Email(String);

impl Email {
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        let email = raw.trim().to_lowercase();
        let invalid = || Invalid("an email looks like name@example.com (at most 254 characters)".into());
        if email.len() > 254 || has_control_chars(&email) || email.chars().any(char::is_whitespace) {
            return Err(invalid());
        }
        let (local, domain) = email.split_once('@').ok_or_else(invalid)?;
        if local.is_empty() || domain.is_empty() || domain.contains('@') || !domain.contains('.') {
            return Err(invalid());
        }
        if domain.starts_with('.') || domain.ends_with('.') {
            return Err(invalid());
        }
        Ok(Self(email))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::Email;

    #[test]
    fn an_email_is_trimmed_and_lowercased() {
        assert_eq!(Email::parse("  Ann@Example.COM ").map(|e| e.to_string()), Ok("ann@example.com".into()));
    }

    #[test]
    fn malformed_emails_are_rejected() {
        for bad in ["", "ann", "@example.com", "ann@", "ann@example", "a b@example.com", "a@b@c.com", "ann@.com"] {
            assert!(Email::parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn an_email_longer_than_254_chars_is_rejected() {
        let long = format!("{}@example.com", "a".repeat(250));
        assert!(Email::parse(&long).is_err());
    }
}
