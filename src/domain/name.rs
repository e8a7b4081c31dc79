use super::{has_control_chars, Invalid};

/// A custom role's name: trimmed, 1–100 characters, no control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleName(String);

impl RoleName {
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        let name = raw.trim();
        if name.is_empty() || name.chars().count() > 100 || has_control_chars(name) {
            return Err(Invalid("a role name is 1 to 100 characters, without control characters".into()));
        }
        Ok(Self(name.to_owned()))
    }

    pub fn into_inner(self) -> String {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::RoleName;

    #[test]
    fn a_role_name_is_trimmed_and_bounded() {
        assert_eq!(RoleName::parse(" Support ").map(RoleName::into_inner), Ok("Support".into()));
        assert!(RoleName::parse("  ").is_err());
        assert!(RoleName::parse(&"r".repeat(101)).is_err());
        assert!(RoleName::parse("tab\there").is_err());
    }
}
