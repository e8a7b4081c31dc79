//! Link tables (a role's resources, a user's roles, a key's roles in an account) are always
//! replaced whole: one helper for all three.
use sea_orm::{ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter};

use crate::error::AppResult;

/// Replaces every link row of `owner_id` (matched on `owner_column`) with `rows`.
pub(crate) async fn replace<C, E, A>(db: &C, owner_column: E::Column, owner_id: &str, rows: Vec<A>) -> AppResult<()>
where
    C: ConnectionTrait,
    E: EntityTrait,
    A: ActiveModelTrait<Entity = E> + Send,
{
    E::delete_many().filter(owner_column.eq(owner_id)).exec(db).await?;
    if !rows.is_empty() {
        E::insert_many(rows).exec(db).await?;
    }
    Ok(())
}
