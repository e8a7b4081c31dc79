use crate::helpers::{captured_logs, Auth, TestApp, OWNER_EMAIL, OWNER_PASSWORD};
use serde_json::json;

/// A full scenario, then a search for every secret it produced: in later responses, in the log, and
/// (SQLite) in the database file and its WAL. Tokens and passwords may appear only in their reveal.
async fn no_token_or_password_is_stored_logged_or_shown_again(app: &TestApp) {
    let session = app.login_token("main", OWNER_EMAIL, OWNER_PASSWORD).await;
    let owner = Auth::Bearer(session.clone());
    let restricted = app.restricted_role(&owner).await;
    let (key, app_token) = app.generate_key(&owner, Some("secret scan"), std::slice::from_ref(&restricted)).await;
    let added = app
        .graphql(
            &owner,
            "mutation($i: AddUserInput!) { addUser(input: $i) { oneTimePassword } }",
            json!({ "i": { "email": "scan@example.com", "roleIds": [restricted] } }),
        )
        .await;
    let one_time = added.data("addUser.oneTimePassword").as_str().expect("password").to_owned();
    let user_session = app.login_token("main", "scan@example.com", &one_time).await;
    let ticket_url = app
        .graphql(&owner, "mutation { createAppKeysExport { url } }", json!({}))
        .await
        .data("createAppKeysExport.url");
    let ticket = ticket_url.as_str().and_then(|u| u.split("ticket=").nth(1)).expect("ticket").to_owned();
    app.get(ticket_url.as_str().expect("url"), &Auth::None).await;
    app.graphql(&Auth::key(&key, &app_token), "{ viewer { account } }", json!({})).await.data("viewer");
    app.login("main", OWNER_EMAIL, "a wrong password guess").await.assert_code("UNAUTHENTICATED");
    let create = "mutation { createWebhookEndpoint(input: {url: \"https://hooks.example.com/x\"}) { secret } }";
    let webhook_secret = app.graphql(&owner, create, json!({})).await.data("createWebhookEndpoint.secret");
    let webhook_secret = webhook_secret.as_str().expect("a secret").to_owned();
    // Its bytes, not only its text form, must not be stored in the clear.
    let webhook_key = webhook_secret.trim_start_matches("whsec_").to_owned();

    let secrets = [
        ("session token", session.as_str()),
        ("user session token", user_session.as_str()),
        ("app token", app_token.as_str()),
        ("one-time password", one_time.as_str()),
        ("owner password", OWNER_PASSWORD),
        ("download ticket", ticket.as_str()),
        ("failed password", "a wrong password guess"),
        ("webhook secret", webhook_secret.as_str()),
        ("webhook signing key", webhook_key.as_str()),
    ];

    let everything = app
        .graphql(
            &owner,
            "{ viewer { account } myKeys { edges { node { key label } } } appKeys { edges { node { key } } } users { edges { node { email } } } auditEvents(first: 100) { edges { node { actor action target before after } } } webhookEndpoints { id url events } }",
            json!({}),
        )
        .await
        .0
        .to_string();
    let csv = app.get("/export/app-keys.csv", &owner).await.text().await.expect("csv");
    let logs = captured_logs();
    let database = app.sqlite_bytes();
    for (what, secret) in secrets {
        assert!(!everything.contains(secret), "{what} appears in a query result");
        assert!(!csv.contains(secret), "{what} appears in the export");
        assert!(!logs.contains(secret), "{what} appears in the log");
        assert!(!contains(&database, secret.as_bytes()), "{what} appears in the SQLite file");
    }
    if app.backend == crate::helpers::Backend::Sqlite {
        assert!(!database.is_empty(), "the database file was read");
        assert!(contains(&database, key.as_bytes()), "the scan sees what is stored (the key value)");
        assert!(contains(&database, b"$argon2id$"), "passwords are stored as argon2id hashes");
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

crate::backend_tests!(no_token_or_password_is_stored_logged_or_shown_again);
