use crate::helpers::{Backend, TestApp, OWNER_EMAIL, OWNER_PASSWORD};
use serde_json::json;

/// Restarting on the same database bootstraps nothing more: one account, one owner, no new password.
async fn bootstrap_runs_once_and_a_restart_keeps_everything(backend: Backend) {
    let (app, owner) = TestApp::spawn(backend).await.with_owner().await;
    let (key, token) = app.generate_key(&owner, None, &[app.restricted_role(&owner).await]).await;
    let (address, mut restarted) = app.another_server().await;
    assert!(restarted.take_bootstrapped().is_none(), "a second start must not bootstrap again");
    tokio::spawn(async move {
        let _ = restarted.run_until_stopped(std::future::pending()).await;
    });
    let viewer =
        app.graphql_at(&address, &crate::helpers::Auth::key(&key, &token), "{ viewer { account } }", json!({})).await;
    assert_eq!(viewer.data("viewer.account"), "main");
    let login = app
        .graphql_at(
            &address,
            &crate::helpers::Auth::None,
            "mutation($i: LoginInput!) { login(input: $i) { token } }",
            json!({ "i": { "account": "main", "email": OWNER_EMAIL, "password": OWNER_PASSWORD } }),
        )
        .await;
    login.data("login.token");
    let users = app.graphql(&owner, "{ users { totalCount } }", json!({})).await;
    assert_eq!(users.data("users.totalCount"), 1);
    app.cleanup().await;
}

/// The resource catalogue in the database is the `Resource` enum.
async fn the_catalogue_is_seeded_from_the_enum(app: &TestApp) {
    let owner = app.owner().await;
    let resources = app.graphql(&owner, "{ resources { id name } }", json!({})).await.data("resources");
    let ids: Vec<&str> = resources.as_array().expect("resources").iter().filter_map(|r| r["id"].as_str()).collect();
    let mut expected: Vec<&str> = appkeys::domain::Resource::ALL.iter().map(|r| r.id()).collect();
    expected.sort_unstable();
    assert_eq!(ids, expected);
}

mod cases {
    use super::*;
    crate::backend_cases!(bootstrap_runs_once_and_a_restart_keeps_everything);
}

crate::backend_tests!(the_catalogue_is_seeded_from_the_enum);
