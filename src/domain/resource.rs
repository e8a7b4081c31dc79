//! The resource catalogue (docs/walkthrough.md: "Resources and roles") and the predefined roles built from it.
use super::Invalid;

/// A built-in resource. Its id is a stable string stored in the database; operators may register
/// further resources, which exist only as `ResourceId`s.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Resource {
    /// Manage users and every application-key operation.
    SaveUser,
    /// Create, edit and delete custom roles.
    SaveAccessProfile,
    /// Read-only: list, search and export keys, read the audit log and the key settings.
    ApiKeysView,
    /// Generate and add keys, change their roles, activate, deactivate and delete them.
    ApiKeysEdit,
    /// Renew a key's token: start, finish or undo a renewal.
    ApiKeysRenewToken,
    /// Change the account's key settings.
    ApiKeysEditSettings,
}

impl Resource {
    pub const ALL: [Resource; 6] = [
        Resource::SaveUser,
        Resource::SaveAccessProfile,
        Resource::ApiKeysView,
        Resource::ApiKeysEdit,
        Resource::ApiKeysRenewToken,
        Resource::ApiKeysEditSettings,
    ];

    /// Who may read keys (listings, lookups, the export): any one of these.
    pub const READ_KEYS: &'static [Resource] = &[Resource::ApiKeysView, Resource::ApiKeysEdit, Resource::SaveUser];
    /// Who may change keys: Edit API keys, or Save user (the original product's rule).
    pub const EDIT_KEYS: &'static [Resource] = &[Resource::ApiKeysEdit, Resource::SaveUser];
    /// Who may read the account's roles.
    pub const READ_ROLES: &'static [Resource] =
        &[Resource::SaveUser, Resource::SaveAccessProfile, Resource::ApiKeysView];
    /// Who may read the audit log.
    pub const READ_AUDIT: &'static [Resource] = &[Resource::SaveUser, Resource::ApiKeysView];
    /// Who may read the key settings.
    pub const READ_SETTINGS: &'static [Resource] =
        &[Resource::ApiKeysView, Resource::ApiKeysEdit, Resource::ApiKeysEditSettings, Resource::SaveUser];

    pub fn id(self) -> &'static str {
        match self {
            Resource::SaveUser => "LicenseManager.SaveUser",
            Resource::SaveAccessProfile => "LicenseManager.SaveAccessProfile",
            Resource::ApiKeysView => "ApiKeys.View",
            Resource::ApiKeysEdit => "ApiKeys.Edit",
            Resource::ApiKeysRenewToken => "ApiKeys.RenewToken",
            Resource::ApiKeysEditSettings => "ApiKeys.EditSettings",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Resource::SaveUser => "Save user",
            Resource::SaveAccessProfile => "Save access profile",
            Resource::ApiKeysView => "View API keys",
            Resource::ApiKeysEdit => "Edit API keys",
            Resource::ApiKeysRenewToken => "Renew API token",
            Resource::ApiKeysEditSettings => "Edit API keys settings",
        }
    }
}

/// A resource id as stored: built-in or registered by an operator, e.g. `Orders.Read`. Dot-separated
/// segments of ASCII letters and digits, each starting with a letter; at most 100 characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ResourceId(String);

impl ResourceId {
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        let segments_ok = raw.split('.').all(|segment| {
            segment.starts_with(|c: char| c.is_ascii_alphabetic()) && segment.bytes().all(|b| b.is_ascii_alphanumeric())
        });
        if raw.len() > 100 || !raw.contains('.') || !segments_ok {
            return Err(Invalid(
                "a resource id is dot-separated words of letters and digits, like Orders.Read (at most 100 characters)"
                    .into(),
            ));
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The roles every account has; they cannot be edited or deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PredefinedRole {
    /// Every resource in the catalogue, including ones registered later.
    Owner,
    /// Users, keys and token renewal, but not roles or key settings.
    UserAdministratorRestricted,
}

impl PredefinedRole {
    pub const ALL: [PredefinedRole; 2] = [PredefinedRole::Owner, PredefinedRole::UserAdministratorRestricted];

    pub fn name(self) -> &'static str {
        match self {
            PredefinedRole::Owner => "Owner (Admin Super)",
            PredefinedRole::UserAdministratorRestricted => "User Administrator - RESTRICTED",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|role| role.name() == name)
    }

    /// `None` means "every resource in the catalogue".
    pub fn fixed_resources(self) -> Option<&'static [Resource]> {
        match self {
            PredefinedRole::Owner => None,
            PredefinedRole::UserAdministratorRestricted => {
                Some(&[Resource::SaveUser, Resource::ApiKeysView, Resource::ApiKeysEdit, Resource::ApiKeysRenewToken])
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_builtin_id_is_a_valid_resource_id() {
        for resource in Resource::ALL {
            assert_eq!(ResourceId::parse(resource.id()).map(|r| r.0), Ok(resource.id().to_owned()));
        }
    }

    #[test]
    fn operator_resource_ids_need_dotted_alphanumeric_segments() {
        assert!(ResourceId::parse("Orders.Read").is_ok());
        for bad in ["Orders", "Orders.", ".Read", "Orders.Read!", "Orders..Read", "1Orders.Read", "Or ders.Read"] {
            assert!(ResourceId::parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn predefined_roles_are_found_by_name() {
        for role in PredefinedRole::ALL {
            assert_eq!(PredefinedRole::from_name(role.name()), Some(role));
        }
        assert_eq!(PredefinedRole::from_name("Owner"), None);
    }
}
