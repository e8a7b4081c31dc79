//! The read model of a key as one account sees it — its access row there (`key_access`) joined
//! with the key (`app_keys`) — declared once. The listings (`listing`: both pages and their three
//! read paths) and both exports (`export`: SQLite's folded chunks and PostgreSQL's COPY lines) read
//! it, so a new field of a key is one line here, then its place in the view (`view_of`) and, to be
//! exported, its cell (`export::cells`).
use sea_orm::sea_query::{Expr, ExprTrait, IntoIden};
use serde::de::{self, Deserializer};
use serde::Deserialize;

use crate::entity::{app_key, key_access};
use crate::service::store::folded::{read_model, Flag, Instant};

/// Where a column of `KeyRow` is read from.
#[derive(Debug, Clone, Copy)]
pub(super) enum KeySource {
    /// A column of the key's access row in the account.
    Access(key_access::Column),
    /// A column of the key.
    Key(app_key::Column),
    /// Whether a column of the key is set.
    KeyHas(app_key::Column),
    /// The ids of the roles the key holds in the account: a JSON array in a listing, one per line
    /// in an export (`RoleIds` reads either).
    RoleIds,
    /// The owner account's name: a listing joins it; an export fills it in from the names it read.
    OwnerName,
    /// A listing's sort value, folded on SQLite so the page can be sorted after the fold.
    SortValue,
}

read_model! {
    /// A key in one account. An export reads the columns up to `expires_at` (`EXPORTED`); a
    /// listing reads them all, `sort` only on SQLite when its order has a sort value.
    pub(super) struct KeyRow from KeySource {
        access_id: String = KeySource::Access(key_access::Column::Id),
        key: String = KeySource::Key(app_key::Column::Key),
        owner_id: String = KeySource::Key(app_key::Column::AccountId),
        external: Flag = KeySource::Access(key_access::Column::External),
        removed: Flag = KeySource::Access(key_access::Column::Removed),
        active: Flag = KeySource::Key(app_key::Column::Active),
        created_at: Instant = KeySource::Key(app_key::Column::CreatedAt),
        roles: RoleIds = KeySource::RoleIds,
        label: String = KeySource::Key(app_key::Column::Label),
        token_created_at: Instant = KeySource::Key(app_key::Column::TokenCreatedAt),
        renewal_started_at: Option<Instant> = KeySource::Key(app_key::Column::RenewalStartedAt),
        previous_token_expires_at: Option<Instant> = KeySource::Key(app_key::Column::PreviousTokenExpiresAt),
        last_used_at: Option<Instant> = KeySource::Access(key_access::Column::LastUsedAt),
        expires_at: Option<Instant> = KeySource::Key(app_key::Column::ExpiresAt),
        #[serde(default)]
        id: String = KeySource::Key(app_key::Column::Id),
        #[serde(default)]
        access_updated_at: Instant = KeySource::Access(key_access::Column::UpdatedAt),
        #[serde(default)]
        last_used_ip: Option<String> = KeySource::Access(key_access::Column::LastUsedIp),
        #[serde(default)]
        last_used_user_agent: Option<String> = KeySource::Access(key_access::Column::LastUsedUserAgent),
        #[serde(default)]
        created_by: String = KeySource::Key(app_key::Column::CreatedBy),
        #[serde(default)]
        previous_token: Flag = KeySource::KeyHas(app_key::Column::PreviousTokenDigest),
        #[serde(default)]
        updated_at: Instant = KeySource::Key(app_key::Column::UpdatedAt),
        #[serde(default)]
        deactivation_reason: Option<String> = KeySource::Key(app_key::Column::DeactivationReason),
        #[serde(default)]
        leaked_at: Option<Instant> = KeySource::Key(app_key::Column::LeakedAt),
        #[serde(default)]
        leak_url: Option<String> = KeySource::Key(app_key::Column::LeakUrl),
        #[serde(default)]
        leak_source: Option<String> = KeySource::Key(app_key::Column::LeakSource),
        #[serde(default)]
        owner: String = KeySource::OwnerName,
        #[serde(default)]
        sort: Option<String> = KeySource::SortValue,
    }
}

/// How many of `KeyRow::COLUMNS` an export reads (through `expires_at`).
pub(super) const EXPORTED: usize = 14;

impl KeySource {
    /// The column as an expression over `access` (the access rows' table or alias) and `app_keys`;
    /// `None` for the sources a reader supplies itself (role ids, the owner's name, the sort value).
    pub(super) fn column(self, access: &'static str) -> Option<Expr> {
        let key = |column: app_key::Column| Expr::col((app_key::Entity, column));
        Some(match self {
            KeySource::Access(column) => Expr::col((access, column.into_iden())),
            KeySource::Key(column) => key(column),
            KeySource::KeyHas(column) => key(column).is_not_null(),
            KeySource::RoleIds | KeySource::OwnerName | KeySource::SortValue => return None,
        })
    }
}

/// The ids of the roles a key holds: a JSON array of them (a listing), or one (an export's line).
#[derive(Debug, Default)]
pub(super) struct RoleIds(pub Vec<String>);

impl<'de> Deserialize<'de> for RoleIds {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> de::Visitor<'de> for Visitor {
            type Value = RoleIds;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a role id, or an array of them")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RoleIds, E> {
                Ok(RoleIds(vec![v.to_owned()]))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<RoleIds, A::Error> {
                let mut ids = Vec::with_capacity(seq.size_hint().unwrap_or(0));
                while let Some(id) = seq.next_element::<String>()? {
                    ids.push(id);
                }
                Ok(RoleIds(ids))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_export_reads_the_columns_through_expires_at_and_the_rest_default() {
        assert_eq!(KeyRow::COLUMNS[EXPORTED - 1].0, "expires_at");
        let exported = r#"["a1","appkey-x","o1",0,0,1,"2026-01-02T03:04:05Z","r1","lbl","2026-01-02T03:04:05Z",null,null,null,null]"#;
        let rows: Vec<KeyRow> = serde_json::from_str(&format!("[{exported}]")).expect("a prefix reads");
        assert_eq!(rows[0].roles.0, ["r1"]);
        assert!(rows[0].active.0 && !rows[0].external.0);
        assert_eq!((rows[0].id.as_str(), rows[0].owner.as_str(), rows[0].sort.as_deref()), ("", "", None));
    }

    #[test]
    fn a_copied_line_reads_as_the_same_row() {
        let line = "a1,appkey-x,o1,t,f,t,2026-01-02 03:04:05.123456+00,r1,\"a, label\",2026-01-02 03:04:05+00,,,,\n";
        let mut reader = csv::ReaderBuilder::new().has_headers(false).from_reader(line.as_bytes());
        let record = reader.records().next().expect("a line").expect("CSV");
        let row: KeyRow = record.deserialize(None).expect("the row");
        assert!(row.external.0 && !row.removed.0 && row.active.0);
        assert_eq!(row.label, "a, label");
        assert_eq!(row.created_at.0.timestamp_subsec_micros(), 123_456);
        assert_eq!(row.roles.0, ["r1"]);
        assert!(row.expires_at.is_none() && row.last_used_at.is_none());
    }

    #[test]
    fn a_listing_reads_role_ids_as_an_array() {
        let roles: RoleIds = serde_json::from_str(r#"["r1","r2"]"#).expect("an array");
        assert_eq!(roles.0, ["r1", "r2"]);
    }
}
