use crate::helpers::{Auth, TestApp, OWNER_EMAIL, OWNER_PASSWORD};
use serde_json::json;

async fn login_with_the_bootstrap_password_returns_a_24h_session(app: &TestApp) {
    let login = app.login("main", OWNER_EMAIL, OWNER_PASSWORD).await;
    let token = login.data("login.token");
    assert!(token.as_str().is_some_and(|t| t.starts_with("aks_") && t.len() == 50));
    assert_eq!(login.data("login.account"), "main");
    let expires: chrono::DateTime<chrono::Utc> =
        login.data("login.expiresAt").as_str().expect("expiresAt").parse().expect("a timestamp");
    let hours = (expires - chrono::Utc::now()).num_minutes() as f64 / 60.0;
    assert!((23.9..=24.0).contains(&hours), "expires in {hours} h");
    let auth = Auth::Bearer(token.as_str().expect("token").to_owned());
    let viewer = app.graphql(&auth, "{ viewer { type account user { email } } }", json!({})).await;
    assert_eq!(viewer.data("viewer.type"), "USER");
    assert_eq!(viewer.data("viewer.user.email"), OWNER_EMAIL);
}

async fn wrong_password_unknown_email_and_unknown_account_fail_alike(app: &TestApp) {
    let attempts = [
        ("main", OWNER_EMAIL, "wrong password!!"),
        ("main", "nobody@example.com", OWNER_PASSWORD),
        ("nosuchaccount", OWNER_EMAIL, OWNER_PASSWORD),
        ("Not An Account", "not an email", ""),
    ];
    let mut messages = Vec::new();
    for (account, email, password) in attempts {
        let failed = app.login(account, email, password).await;
        failed.assert_code("UNAUTHENTICATED");
        messages.push(failed.message());
    }
    assert!(messages.windows(2).all(|w| w[0] == w[1]), "messages differ: {messages:?}");
}

async fn a_failed_login_is_audited_without_the_password(app: &TestApp) {
    app.login("main", OWNER_EMAIL, "not-the-password-123").await.assert_code("UNAUTHENTICATED");
    let owner = app.owner().await;
    let events = app
        .graphql(
            &owner,
            "{ auditEvents(filter: {action: \"login.failed\"}) { totalCount edges { node { target actor after } } } }",
            json!({}),
        )
        .await;
    assert_eq!(events.data("auditEvents.totalCount"), 1);
    assert_eq!(events.data("auditEvents.edges")[0]["node"]["target"], OWNER_EMAIL);
    assert!(!events.0.to_string().contains("not-the-password-123"));
}

async fn logout_revokes_the_session_at_once(app: &TestApp) {
    let owner = app.owner().await;
    let out = app.graphql(&owner, "mutation { logout }", json!({})).await;
    assert_eq!(out.data("logout"), true);
    app.graphql(&owner, "{ viewer { account } }", json!({})).await.assert_code("UNAUTHENTICATED");
}

async fn an_expired_session_is_refused(app: &TestApp) {
    let owner = app.owner().await;
    app.graphql(&owner, "{ viewer { account } }", json!({})).await.data("viewer");
    app.advance_clock(chrono::Duration::hours(23));
    app.graphql(&owner, "{ viewer { account } }", json!({})).await.data("viewer");
    app.advance_clock(chrono::Duration::hours(1));
    app.graphql(&owner, "{ viewer { account } }", json!({})).await.assert_code("UNAUTHENTICATED");
}

async fn a_session_is_bound_to_its_account(app: &TestApp) {
    app.account_with_owner("other").await;
    let owner = app.owner().await;
    let Auth::Bearer(token) = owner else { unreachable!() };
    let elsewhere =
        Auth::Raw(vec![("authorization".into(), format!("Bearer {token}")), ("x-account".into(), "other".into())]);
    app.graphql(&elsewhere, "{ viewer { account } }", json!({})).await.assert_code("UNAUTHENTICATED");
}

crate::backend_tests!(
    login_with_the_bootstrap_password_returns_a_24h_session,
    wrong_password_unknown_email_and_unknown_account_fail_alike,
    a_failed_login_is_audited_without_the_password,
    logout_revokes_the_session_at_once,
    a_session_is_bound_to_its_account,
    an_expired_session_is_refused,
);
