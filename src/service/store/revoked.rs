//! Tokens reported leaked or revoked, by their digest (`revoked_tokens`): a report of one again is
//! known at once and changes nothing.
use sea_orm::sea_query::OnConflict;
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QuerySelect, Set};
use std::collections::HashSet;

use super::WriteTxn;
use crate::entity::revoked_token;
use crate::error::AppResult;

/// What a report of a token found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reported {
    /// Not a token appkeys knows.
    Unknown,
    /// A live token, revoked by this report.
    Revoked,
    /// A token of appkeys that no longer works: revoked or reported before, or run out.
    Known,
}

/// Which of `digests` were revoked already.
pub(in crate::service) async fn known<C: ConnectionTrait>(db: &C, digests: &[String]) -> AppResult<HashSet<String>> {
    let mut found = HashSet::new();
    for chunk in digests.chunks(500) {
        let rows: Vec<String> = revoked_token::Entity::find()
            .select_only()
            .column(revoked_token::Column::TokenDigest)
            .filter(revoked_token::Column::TokenDigest.is_in(chunk.iter().map(String::as_str)))
            .into_tuple()
            .all(db)
            .await?;
        found.extend(rows);
    }
    Ok(found)
}

/// Remembers a revoked token (`kind`: `app` or `session`) in the revoking transaction.
pub(in crate::service) async fn remember(txn: &WriteTxn, digest: &str, kind: &str, subject_id: &str) -> AppResult<()> {
    let row = revoked_token::ActiveModel {
        token_digest: Set(digest.to_owned()),
        kind: Set(kind.to_owned()),
        subject_id: Set(subject_id.to_owned()),
        revoked_at: Set(txn.now()),
    };
    revoked_token::Entity::insert(row)
        .on_conflict(OnConflict::column(revoked_token::Column::TokenDigest).do_nothing().to_owned())
        .try_insert()
        .exec(&**txn)
        .await?;
    Ok(())
}
