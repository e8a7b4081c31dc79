//! User sessions: login with argon2id, 24 h bearer tokens stored as SHA-256 digests, logout.
use sea_orm::{ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, Set};
use serde_json::json;

use crate::domain::{AccountName, Email, Password, SessionToken};
use crate::entity::{session, user};
use crate::error::{AppError, AppResult};
use crate::service::events::audit::Ctx;
use crate::service::events::audit::RequestMeta;
use crate::service::events::audit::{self, AuditEntry};
use crate::service::identity::accounts;
use crate::service::identity::passwords;
use crate::service::identity::roles;
use crate::service::identity::users::{self, UserView};
use crate::service::store::account_name;
use crate::service::store::new_id;
use crate::service::store::revoked::{self, Reported};
use crate::service::store::Store;

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
        Ok(name) => accounts::find_by_name(store.db(), name.as_str()).await?,
        Err(_) => None,
    };
    let email = Email::parse(email).ok();
    let user = match (&account, &email) {
        (Some(account), Some(email)) => {
            user::Entity::find()
                .filter(user::Column::AccountId.eq(account.id.as_str()))
                .filter(user::Column::Email.eq(email.as_str()))
                .one(store.db())
                .await?
        }
        _ => None,
    };
    let verified = passwords::verify(store, password, user.as_ref().map(|u| u.password_hash.clone())).await?;
    let (Some(account), Some(user), true) = (account.as_ref(), user.as_ref(), verified) else {
        // The caller gets one generic answer; the server's log says which check failed.
        let cause = match (&account, &user) {
            (None, _) => "no such account",
            (Some(_), None) => "no such user in the account",
            (Some(_), Some(_)) => "wrong password",
        };
        tracing::debug!(cause, "login refused");
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
    let view = users::get_in(&*txn, &account.id, &user.id).await?;
    txn.commit_without_credential_change().await?;
    Ok(LoginOutcome { token, expires_at, user: view, account: account.name.clone() })
}

/// What a live session grants: its user, the account and the resources the user's roles hold there.
pub struct SessionGrant {
    pub session_id: String,
    pub user_id: String,
    pub email: String,
    pub account_id: String,
    pub account_name: String,
    pub resources: std::collections::BTreeSet<String>,
    pub expires_at: chrono::DateTime<chrono::Utc>,
}

/// The grant of a live session token, in `account` if one is asked for (`None` for every kind of
/// failure, as for keys).
pub async fn grant(
    store: &Store,
    token: &SessionToken,
    account: Option<&AccountName>,
) -> AppResult<Option<SessionGrant>> {
    let Some((session, user)) = resolve(store.db(), token, store.now()).await? else {
        return Ok(None);
    };
    let account_name = account_name(store.db(), &user.account_id).await?;
    if account.is_some_and(|requested| requested.as_str() != account_name) {
        return Ok(None);
    }
    let view = users::get_in(store.db(), &user.account_id, &user.id).await?;
    Ok(Some(SessionGrant {
        session_id: session.id,
        user_id: user.id,
        email: user.email,
        account_id: user.account_id,
        account_name,
        resources: roles::union_resources(&view.roles),
        expires_at: session.expires_at,
    }))
}

/// The live (unexpired, unrevoked) session behind a token, with its user.
async fn resolve<C: ConnectionTrait>(
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

/// Ends the session behind a leaked or revoked token (by digest), reported by `actor`
/// (`github-secret-scanning`, `self-revocation`), audited as `session.leaked` in its account.
pub async fn report_leaked(
    store: &Store,
    meta: &RequestMeta,
    actor: &str,
    digest: &crate::domain::TokenDigest,
) -> AppResult<Reported> {
    let digest = digest.as_str();
    if !revoked::known(store.db(), &[digest.to_owned()]).await?.is_empty() {
        return Ok(Reported::Known);
    }
    let Some(found) = session::Entity::find().filter(session::Column::TokenDigest.eq(digest)).one(store.db()).await?
    else {
        return Ok(Reported::Unknown);
    };
    let Some(owner) = user::Entity::find_by_id(found.user_id.as_str()).one(store.db()).await? else {
        return Ok(Reported::Unknown); // its user was removed: the session went with it
    };
    let mut txn = store.begin_write().await?;
    revoked::remember(&txn, digest, "session", &found.id).await?;
    let Some(session) = session::Entity::find_by_id(found.id.as_str()).one(&*txn).await? else {
        txn.commit_without_credential_change().await?;
        return Ok(Reported::Known);
    };
    if session.revoked_at.is_some() || session.expires_at <= txn.now() {
        txn.commit_without_credential_change().await?;
        return Ok(Reported::Known);
    }
    txn.affects_account(&owner.account_id);
    let id = session.id.clone();
    let mut active: session::ActiveModel = session.into();
    active.revoked_at = Set(Some(txn.now()));
    active.update(&*txn).await?;
    let entry = AuditEntry {
        account_id: &owner.account_id,
        actor,
        action: "session.leaked",
        target: &id,
        before: None,
        after: Some(json!({ "user": owner.email })),
    };
    audit::record(&txn, meta, entry).await?;
    txn.commit().await?;
    tracing::warn!(actor, "a leaked session token was revoked");
    Ok(Reported::Revoked)
}
