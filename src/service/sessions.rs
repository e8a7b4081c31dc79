//! User sessions: login with argon2id, 24 h bearer tokens stored as SHA-256 digests, logout.
use sea_orm::{ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, Set};
use serde_json::json;

use super::audit::{self, AuditEntry};
use super::users::{self, UserView};
use super::{accounts, new_id, Ctx, RequestMeta, Store};
use crate::domain::{AccountName, Email, Password, SessionToken};
use crate::entity::{session, user};
use crate::error::{AppError, AppResult};

pub struct LoginOutcome {
    pub token: SessionToken,
    pub expires_at: chrono::DateTime<chrono::Utc>,
    pub user: UserView,
    pub account: String,
}

/// Logs a user in. Unknown account, unknown email and wrong password all cost one argon2
/// verification and fail with the same error; failures in a known account are audited.
pub async fn login(
    store: &Store,
    meta: &RequestMeta,
    ttl: chrono::Duration,
    account: &str,
    email: &str,
    password: &str,
) -> AppResult<LoginOutcome> {
    let password = Password::for_verification(password);
    let account = match AccountName::parse(account) {
        Ok(name) => accounts::find_by_name(&store.db, name.as_str()).await?,
        Err(_) => None,
    };
    let email = Email::parse(email).ok();
    let user = match (&account, &email) {
        (Some(account), Some(email)) => {
            user::Entity::find()
                .filter(user::Column::AccountId.eq(account.id.as_str()))
                .filter(user::Column::Email.eq(email.as_str()))
                .one(&store.db)
                .await?
        }
        _ => None,
    };
    let verified = store.verify_password(password, user.as_ref().map(|u| u.password_hash.clone())).await?;
    let (Some(account), Some(user), true) = (account.as_ref(), user, verified) else {
        if let Some(account) = &account {
            let txn = store.begin_write().await?;
            let target = email.as_ref().map_or("(invalid email)", Email::as_str);
            audit::record(
                &txn,
                meta,
                AuditEntry {
                    account_id: &account.id,
                    actor: target,
                    action: "login.failed",
                    target,
                    before: None,
                    after: None,
                },
            )
            .await?;
            txn.commit_without_credential_change().await?;
        }
        return Err(AppError::Unauthenticated);
    };
    let token = SessionToken::generate();
    let txn = store.begin_write().await?;
    let expires_at = txn.now() + ttl;
    let model = session::ActiveModel {
        id: Set(new_id()),
        token_digest: Set(token.digest().as_str().to_owned()),
        user_id: Set(user.id.clone()),
        created_at: Set(txn.now()),
        expires_at: Set(expires_at),
        revoked_at: Set(None),
    }
    .insert(&*txn)
    .await?;
    audit::record(
        &txn,
        meta,
        AuditEntry {
            account_id: &account.id,
            actor: &format!("user:{}", user.email),
            action: "session.login",
            target: &model.id,
            before: None,
            after: Some(json!({ "expiresAt": expires_at })),
        },
    )
    .await?;
    let view = users::get(&*txn, &account.id, &user.id).await?;
    txn.commit_without_credential_change().await?;
    Ok(LoginOutcome { token, expires_at, user: view, account: account.name.clone() })
}

/// The live (unexpired, unrevoked) session behind a token, with its user.
pub async fn resolve<C: ConnectionTrait>(
    db: &C,
    token: &SessionToken,
    now: chrono::DateTime<chrono::Utc>,
) -> AppResult<Option<(session::Model, user::Model)>> {
    let Some(session) =
        session::Entity::find().filter(session::Column::TokenDigest.eq(token.digest().as_str())).one(db).await?
    else {
        return Ok(None);
    };
    if session.revoked_at.is_some() || session.expires_at <= now {
        return Ok(None);
    }
    let user = user::Entity::find_by_id(session.user_id.as_str()).one(db).await?;
    Ok(user.map(|user| (session, user)))
}

pub async fn logout(store: &Store, ctx: &Ctx<'_>, session_id: &str) -> AppResult<()> {
    let mut txn = store.begin_write().await?;
    txn.affects_account(&ctx.principal.account_id);
    let Some(model) = session::Entity::find_by_id(session_id).one(&*txn).await? else {
        return Err(AppError::Unauthenticated);
    };
    let mut active: session::ActiveModel = model.into();
    active.revoked_at = Set(Some(txn.now()));
    active.update(&*txn).await?;
    ctx.audit(&txn, "session.logout", session_id, None, None).await?;
    txn.commit().await?;
    Ok(())
}
