use super::{has_control_chars, Invalid};

/// A display name: trimmed, 1–100 characters, no control characters. `what` names the thing in the
/// error message.
fn display_name(raw: &str, what: &str) -> Result<String, Invalid> {
    let name = raw.trim();
    if name.is_empty() || name.chars().count() > 100 || has_control_chars(name) {
        return Err(Invalid(format!("a {what} name is 1 to 100 characters, without control characters")));
    }
    Ok(name.to_owned())
}

/// A custom role's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleName(String);

impl RoleName {
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        display_name(raw, "role").map(Self)
    }

    pub fn into_inner(self) -> String {
        self.0
    }
}

/// The human-readable name of a resource an operator registers, e.g. `Read orders`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceName(String);

impl ResourceName {
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        display_name(raw, "resource").map(Self)
    }

    pub fn into_inner(self) -> String {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::{ResourceName, RoleName};

    #[test]
    fn a_role_name_is_trimmed_and_bounded() {
        assert_eq!(RoleName::parse(" Support ").map(RoleName::into_inner), Ok("Support".into()));
        assert!(RoleName::parse("  ").is_err());
        assert!(RoleName::parse(&"r".repeat(101)).is_err());
        assert!(RoleName::parse("tab\there").is_err());
    }

    #[test]
    fn a_resource_name_follows_the_same_rules_and_says_it_is_a_resource() {
        assert_eq!(ResourceName::parse(" Read orders ").map(ResourceName::into_inner), Ok("Read orders".into()));
        let error = ResourceName::parse("").expect_err("blank");
        assert!(error.0.starts_with("a resource name"), "{error}");
    }
}
