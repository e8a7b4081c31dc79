use sea_orm::entity::prelude::*;

/// A token reported leaked or revoked (by its digest): a later report of it is known and changes
/// nothing.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "revoked_tokens")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub token_digest: String,
    /// `app` or `session`.
    pub kind: String,
    /// The key's or the session's id.
    pub subject_id: String,
    pub revoked_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
