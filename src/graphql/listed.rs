//! How each node type of a `Page` is written out (`written`): a key and its roles, field by
//! field as the schema shows them; the other listings are resolved field by field.
use async_graphql::parser::types::SelectionSet;
use async_graphql::ContextSelectionSet;

use super::types::AppKey;
use super::written::{
    fields, push_bool, push_enum, push_list, push_object, push_optional_str, push_str, push_time, Listed,
};

/// Node types whose pages are always resolved field by field.
macro_rules! resolved_field_by_field {
    ($($node:ty),*) => {$(
        impl Listed for $node {
            type Plan = std::convert::Infallible;

            fn plan(_: &ContextSelectionSet<'_>, _: &SelectionSet) -> Option<Self::Plan> {
                None
            }

            fn write(&self, plan: &Self::Plan, _: &mut String) {
                match *plan {}
            }
        }
    )*};
}

resolved_field_by_field!(super::types::User, super::types::AuditEvent, super::events::WebhookDelivery);

/// What one selected field of a key shows.
pub enum KeyField {
    Typename,
    Id,
    Key,
    Type,
    Account,
    Label,
    Status,
    Roles(Vec<(String, RoleField)>),
    CreatedAt,
    HasAccess,
    TokenCreatedAt,
    RenewalAlert,
    ExpiresAt,
    LastUsedAt,
    LastUsedIp,
    LastUsedUserAgent,
    CreatedBy,
    UpdatedAt,
}

/// What one selected field of a key's role shows.
pub enum RoleField {
    Typename,
    Id,
    Name,
    Predefined,
}

impl Listed for AppKey {
    type Plan = Vec<(String, KeyField)>;

    fn plan(ctx: &ContextSelectionSet<'_>, set: &SelectionSet) -> Option<Self::Plan> {
        let mut plan = Vec::new();
        let mut known = |name: &str, set: &SelectionSet| {
            Some(match name {
                "__typename" => KeyField::Typename,
                "id" => KeyField::Id,
                "key" => KeyField::Key,
                "type" => KeyField::Type,
                "account" => KeyField::Account,
                "label" => KeyField::Label,
                "status" => KeyField::Status,
                "roles" => {
                    let mut roles = Vec::new();
                    let mut role = |name: &str, _: &SelectionSet| {
                        Some(match name {
                            "__typename" => RoleField::Typename,
                            "id" => RoleField::Id,
                            "name" => RoleField::Name,
                            "predefined" => RoleField::Predefined,
                            _ => return None,
                        })
                    };
                    fields(ctx, set, &mut role, &mut roles)?;
                    KeyField::Roles(roles)
                }
                "createdAt" => KeyField::CreatedAt,
                "hasAccess" => KeyField::HasAccess,
                "tokenCreatedAt" => KeyField::TokenCreatedAt,
                "renewalAlert" => KeyField::RenewalAlert,
                "expiresAt" => KeyField::ExpiresAt,
                "lastUsedAt" => KeyField::LastUsedAt,
                "lastUsedIp" => KeyField::LastUsedIp,
                "lastUsedUserAgent" => KeyField::LastUsedUserAgent,
                "createdBy" => KeyField::CreatedBy,
                "updatedAt" => KeyField::UpdatedAt,
                _ => return None,
            })
        };
        fields(ctx, set, &mut known, &mut plan)?;
        Some(plan)
    }

    fn write(&self, plan: &Self::Plan, json: &mut String) {
        push_object(json, plan, |json, field| match field {
            KeyField::Typename => json.push_str("\"AppKey\""),
            KeyField::Id => push_str(json, &self.id),
            KeyField::Key => push_str(json, &self.key),
            KeyField::Type => push_enum(json, self.key_type),
            KeyField::Account => push_str(json, &self.account),
            KeyField::Label => push_optional_str(json, self.label.as_deref()),
            KeyField::Status => push_enum(json, self.status),
            KeyField::Roles(fields) => push_list(json, &self.roles, |json, role| {
                push_object(json, fields, |json, field| match field {
                    RoleField::Typename => json.push_str("\"Role\""),
                    RoleField::Id => push_str(json, &role.id),
                    RoleField::Name => push_str(json, &role.name),
                    RoleField::Predefined => push_bool(json, role.predefined),
                })
            }),
            KeyField::CreatedAt => push_time(json, Some(&self.created_at)),
            KeyField::HasAccess => push_bool(json, self.has_access),
            KeyField::TokenCreatedAt => push_time(json, Some(&self.token_created_at)),
            KeyField::RenewalAlert => push_enum(json, self.renewal_alert),
            KeyField::ExpiresAt => push_time(json, self.expires_at.as_ref()),
            KeyField::LastUsedAt => push_time(json, self.last_used_at.as_ref()),
            KeyField::LastUsedIp => push_optional_str(json, self.last_used_ip.as_deref()),
            KeyField::LastUsedUserAgent => push_optional_str(json, self.last_used_user_agent.as_deref()),
            KeyField::CreatedBy => push_optional_str(json, self.created_by.as_deref()),
            KeyField::UpdatedAt => push_time(json, Some(&self.updated_at)),
        });
    }
}
