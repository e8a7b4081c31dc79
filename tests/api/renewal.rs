//! Token renewal without downtime: renew, finish, undo, a bounded overlap, renewal alerts and the
//! settings behind them.
use crate::helpers::{Auth, Gql, TestApp};
use serde_json::{json, Value};

const RENEW: &str = "mutation($k: String!, $input: RenewAppKeyTokenInput) { renewAppKeyToken(key: $k, input: $input) \
                     { appToken appKey { key tokenCreatedAt renewal { startedAt oldTokenExpiresAt } renewalAlert } } }";
const FINISH: &str = "mutation($k: String!) { finishAppKeyRenewal(key: $k) { key renewal { startedAt } } }";
const UNDO: &str = "mutation($k: String!) { undoAppKeyRenewal(key: $k) { key tokenCreatedAt renewal { startedAt } } }";
const KEY: &str =
    "query($k: String!) { appKey(key: $k) { tokenCreatedAt renewalAlert renewal { startedAt oldTokenExpiresAt } } }";

async fn renew(app: &TestApp, auth: &Auth, key: &str, input: Value) -> Gql {
    app.graphql(auth, RENEW, json!({ "k": key, "input": input })).await
}

/// The new token of a successful renewal.
async fn renewed_token(app: &TestApp, auth: &Auth, key: &str, input: Value) -> String {
    let renewed = renew(app, auth, key, input).await;
    renewed.data("renewAppKeyToken.appToken").as_str().expect("a token").to_owned()
}

/// Whether `/auth` and GraphQL both let this key and token in (and agree about it).
async fn passes(app: &TestApp, key: &str, token: &str) -> bool {
    let auth = Auth::key(key, token);
    let gateway = app.get("/auth", &auth).await.status();
    let graphql = app.graphql(&auth, "{ viewer { appKey } }", json!({})).await;
    let through_graphql = graphql.0.get("errors").is_none();
    match gateway.as_u16() {
        200 => assert!(through_graphql, "/auth passes but GraphQL refuses: {:#}", graphql.0),
        401 => graphql.assert_code("UNAUTHENTICATED"),
        other => panic!("/auth answered {other}"),
    }
    through_graphql
}

async fn a_key_with_access(app: &TestApp, owner: &Auth) -> (String, String) {
    let restricted = app.restricted_role(owner).await;
    app.generate_key(owner, Some("rotating"), &[restricted]).await
}

async fn renew_then_finish_stops_the_old_token_and_keeps_the_new(app: &TestApp) {
    let owner = app.owner().await;
    let (key, old) = a_key_with_access(app, &owner).await;
    let renewed = renew(app, &owner, &key, json!(null)).await;
    let new = renewed.data("renewAppKeyToken.appToken").as_str().expect("token").to_owned();
    assert!(new.starts_with("akt_") && new != old);
    let renewal = renewed.data("renewAppKeyToken.appKey.renewal");
    assert!(renewal["startedAt"].is_string());
    assert_eq!(renewal["oldTokenExpiresAt"], Value::Null, "no overlap bound: until finished or undone");
    assert_eq!(renewed.data("renewAppKeyToken.appKey.tokenCreatedAt"), renewal["startedAt"]);
    assert!(passes(app, &key, &old).await, "the old token works while the renewal is pending");
    assert!(passes(app, &key, &new).await, "the new token works at once");

    let finished = app.graphql(&owner, FINISH, json!({ "k": key })).await;
    assert_eq!(finished.data("finishAppKeyRenewal.renewal"), Value::Null);
    assert!(!passes(app, &key, &old).await, "finish stops the old token at once");
    assert!(passes(app, &key, &new).await);
    // The new token is shown once: no query returns it, and it is not stored in plain text.
    let listed = app.graphql(&owner, "{ myKeys { edges { node { key } } } }", json!({})).await;
    assert!(!listed.0.to_string().contains(&new));
    assert!(!app.sqlite_bytes().windows(new.len()).any(|w| w == new.as_bytes()), "token stored in plain text");
}

async fn renew_then_undo_stops_the_new_token_and_keeps_the_old(app: &TestApp) {
    let owner = app.owner().await;
    let (key, old) = a_key_with_access(app, &owner).await;
    let made = app.graphql(&owner, KEY, json!({ "k": key })).await.data("appKey.tokenCreatedAt");
    let new = renewed_token(app, &owner, &key, json!({})).await;
    assert!(passes(app, &key, &new).await);
    let undone = app.graphql(&owner, UNDO, json!({ "k": key })).await;
    assert_eq!(undone.data("undoAppKeyRenewal.renewal"), Value::Null);
    assert_eq!(undone.data("undoAppKeyRenewal.tokenCreatedAt"), made, "back to the old token's age");
    assert!(!passes(app, &key, &new).await, "undo stops the new token at once");
    assert!(passes(app, &key, &old).await, "the old token stays");
    // And the key can be renewed again afterwards.
    let again = renewed_token(app, &owner, &key, json!({})).await;
    assert!(passes(app, &key, &again).await);
}

async fn the_overlap_ends_by_itself(app: &TestApp) {
    let owner = app.owner().await;
    let (key, old) = a_key_with_access(app, &owner).await;
    let renewed = renew(app, &owner, &key, json!({ "oldTokenValidFor": 3600 })).await;
    let new = renewed.data("renewAppKeyToken.appToken").as_str().expect("token").to_owned();
    let renewal = renewed.data("renewAppKeyToken.appKey.renewal");
    let started: chrono::DateTime<chrono::Utc> = renewal["startedAt"].as_str().expect("started").parse().expect("time");
    let ends: chrono::DateTime<chrono::Utc> =
        renewal["oldTokenExpiresAt"].as_str().expect("an end").parse().expect("time");
    assert_eq!(ends - started, chrono::Duration::hours(1));
    assert!(passes(app, &key, &old).await);
    app.advance_clock(chrono::Duration::minutes(59));
    assert!(passes(app, &key, &old).await, "still inside the overlap");
    app.advance_clock(chrono::Duration::minutes(2));
    assert!(!passes(app, &key, &old).await, "the overlap ran out without any further call");
    assert!(passes(app, &key, &new).await);
    // An overlap that ran out is over: nothing is pending, and a new renewal may start.
    assert_eq!(app.graphql(&owner, KEY, json!({ "k": key })).await.data("appKey.renewal"), Value::Null);
    app.graphql(&owner, FINISH, json!({ "k": key })).await.assert_code("CONFLICT");
    renewed_token(app, &owner, &key, json!({})).await;
}

async fn zero_overlap_stops_the_old_token_now(app: &TestApp) {
    let owner = app.owner().await;
    let (key, old) = a_key_with_access(app, &owner).await;
    assert!(passes(app, &key, &old).await, "warm every cache with the old token first");
    let renewed = renew(app, &owner, &key, json!({ "oldTokenValidFor": 0 })).await;
    assert_eq!(renewed.data("renewAppKeyToken.appKey.renewal"), Value::Null);
    let new = renewed.data("renewAppKeyToken.appToken").as_str().expect("token").to_owned();
    assert!(!passes(app, &key, &old).await);
    assert!(passes(app, &key, &new).await);
}

async fn every_refusal_has_its_code_and_changes_nothing(app: &TestApp) {
    let owner = app.owner().await;
    let (key, token) = a_key_with_access(app, &owner).await;
    let partner = app.account_with_owner("partner").await;
    let partner_role = app.restricted_role(&partner).await;
    let (external, _) = app.generate_key(&partner, None, &[partner_role]).await;
    let restricted = app.restricted_role(&owner).await;
    let add = "mutation($k: String!, $r: [ID!]!) { addExternalAppKey(input: {key: $k, roleIds: $r}) { key } }";
    app.graphql(&owner, add, json!({ "k": external, "r": [restricted] })).await.data("addExternalAppKey");

    let before = app.snapshot().await;
    app.graphql(&owner, FINISH, json!({ "k": key })).await.assert_code("CONFLICT");
    app.graphql(&owner, UNDO, json!({ "k": key })).await.assert_code("CONFLICT");
    renew(app, &owner, &external, json!({})).await.assert_code("BAD_USER_INPUT");
    app.graphql(&owner, FINISH, json!({ "k": external })).await.assert_code("BAD_USER_INPUT");
    renew(app, &owner, "appkey-main-NOSUCH", json!({})).await.assert_code("NOT_FOUND");
    for bad in [-1, 90 * 86_400 + 1] {
        renew(app, &owner, &key, json!({ "oldTokenValidFor": bad })).await.assert_code("BAD_USER_INPUT");
    }
    // A key may not rotate itself, even holding RenewToken.
    let itself = Auth::key(&key, &token);
    let refused = renew(app, &itself, &key, json!({})).await;
    refused.assert_code("FORBIDDEN");
    assert!(refused.message().contains("own token"), "{}", refused.message());
    assert_eq!(app.snapshot().await, before, "refused renewals write nothing");

    renew(app, &owner, &key, json!({ "oldTokenValidFor": 90 * 86_400 })).await.data("renewAppKeyToken");
    renew(app, &owner, &key, json!({})).await.assert_code("CONFLICT");
    app.graphql(&itself, FINISH, json!({ "k": key })).await.assert_code("FORBIDDEN");
    app.graphql(&itself, UNDO, json!({ "k": key })).await.assert_code("FORBIDDEN");
}

async fn restricted_users_renew_view_only_users_cannot_and_nobody_escalates(app: &TestApp) {
    let owner = app.owner().await;
    let restricted = app.restricted_role(&owner).await;
    let admin = app.user_with_roles(&owner, "admin@example.com", std::slice::from_ref(&restricted)).await;
    let (key, _) = app.generate_key(&owner, None, std::slice::from_ref(&restricted)).await;
    renewed_token(app, &admin, &key, json!({})).await;
    app.graphql(&admin, FINISH, json!({ "k": key })).await.data("finishAppKeyRenewal");

    let view_role = app.custom_role(&owner, "Viewers", &["ApiKeys.View"]).await;
    let viewer = app.user_with_roles(&owner, "viewer@example.com", &[view_role]).await;
    let refused = renew(app, &viewer, &key, json!({})).await;
    refused.assert_code("FORBIDDEN");
    assert_eq!(refused.0["errors"][0]["extensions"]["missingResources"], json!(["ApiKeys.RenewToken"]));

    // Renewing hands out a working token: only for keys whose roles the caller could grant.
    let owner_role = app.owner_role(&owner).await;
    let (mighty, _) = app.generate_key(&owner, None, &[owner_role]).await;
    let refused = renew(app, &admin, &mighty, json!({})).await;
    refused.assert_code("FORBIDDEN");
    assert!(refused.message().contains("LicenseManager.SaveAccessProfile"), "{}", refused.message());
}

async fn renewal_alerts_follow_the_token_age_and_the_account_period(app: &TestApp) {
    let owner = app.owner().await;
    let (key, _) = a_key_with_access(app, &owner).await;
    async fn alert_of(app: &TestApp, owner: &Auth, key: &str) -> Value {
        app.graphql(owner, KEY, json!({ "k": key })).await.data("appKey.renewalAlert")
    }
    async fn counted(app: &TestApp, owner: &Auth, alert: &str) -> (Value, Value) {
        let query = "query($a: RenewalAlert) { myKeys(filter: {renewalAlert: $a}) { totalCount } \
                     appKeys(filter: {renewalAlert: $a}) { totalCount } }";
        let lists = app.graphql(owner, query, json!({ "a": alert })).await;
        (lists.data("myKeys.totalCount"), lists.data("appKeys.totalCount"))
    }
    let settings = app.graphql(&owner, "{ appKeySettings { renewalPeriodDays } }", json!({})).await;
    assert_eq!(settings.data("appKeySettings.renewalPeriodDays"), 90, "the default period");
    assert_eq!(alert_of(app, &owner, &key).await, "NONE");
    assert_eq!(counted(app, &owner, "NONE").await, (json!(1), json!(1)));

    app.advance_clock(chrono::Duration::days(91));
    let owner = app.owner().await; // sessions last a day
    assert_eq!(alert_of(app, &owner, &key).await, "RECOMMENDED");
    assert_eq!(counted(app, &owner, "RECOMMENDED").await, (json!(1), json!(1)));
    assert_eq!(counted(app, &owner, "NONE").await, (json!(0), json!(0)));

    app.advance_clock(chrono::Duration::days(90));
    let owner = app.owner().await;
    assert_eq!(alert_of(app, &owner, &key).await, "HIGHLY_RECOMMENDED");
    assert_eq!(counted(app, &owner, "HIGHLY_RECOMMENDED").await, (json!(1), json!(1)));

    // A longer period calms the alert; renewing resets it.
    let update = "mutation($i: AppKeySettingsInput!) { updateAppKeySettings(input: $i) { renewalPeriodDays } }";
    let updated = app.graphql(&owner, update, json!({ "i": { "renewalPeriodDays": 365 } })).await;
    assert_eq!(updated.data("updateAppKeySettings.renewalPeriodDays"), 365);
    assert_eq!(alert_of(app, &owner, &key).await, "NONE");
    app.graphql(&owner, update, json!({ "i": { "renewalPeriodDays": 30 } })).await.data("updateAppKeySettings");
    assert_eq!(alert_of(app, &owner, &key).await, "HIGHLY_RECOMMENDED");
    renewed_token(app, &owner, &key, json!({ "oldTokenValidFor": 0 })).await;
    assert_eq!(alert_of(app, &owner, &key).await, "NONE");
}

async fn settings_are_validated_guarded_and_audited(app: &TestApp) {
    let owner = app.owner().await;
    let update = "mutation($i: AppKeySettingsInput!) { updateAppKeySettings(input: $i) { renewalPeriodDays } }";
    let before = app.snapshot().await;
    for bad in [0, -5, 3651] {
        let refused = app.graphql(&owner, update, json!({ "i": { "renewalPeriodDays": bad } })).await;
        refused.assert_code("BAD_USER_INPUT");
        assert!(refused.message().contains("renewalPeriodDays"), "{}", refused.message());
    }
    let restricted = app.restricted_role(&owner).await;
    let admin = app.user_with_roles(&owner, "admin@example.com", &[restricted]).await;
    let snapshot = app.snapshot().await;
    let refused = app.graphql(&admin, update, json!({ "i": { "renewalPeriodDays": 180 } })).await;
    refused.assert_code("FORBIDDEN");
    assert_eq!(refused.0["errors"][0]["extensions"]["missingResources"], json!(["ApiKeys.EditSettings"]));
    assert_eq!(app.snapshot().await, snapshot);
    assert_ne!(before, snapshot, "only the added user differs");
    // RESTRICTED reads them (ApiKeys.View).
    let read = app.graphql(&admin, "{ appKeySettings { renewalPeriodDays } }", json!({})).await;
    assert_eq!(read.data("appKeySettings.renewalPeriodDays"), 90);

    app.graphql(&owner, update, json!({ "i": { "renewalPeriodDays": 180 } })).await.data("updateAppKeySettings");
    // Changing nothing writes nothing.
    let unchanged = app.snapshot().await;
    app.graphql(&owner, update, json!({ "i": { "renewalPeriodDays": 180 } })).await.data("updateAppKeySettings");
    assert_eq!(app.snapshot().await, unchanged);
    let events = app
        .graphql(
            &owner,
            "{ auditEvents(filter: {action: \"settings.update\"}) { edges { node { target before after } } } }",
            json!({}),
        )
        .await
        .data("auditEvents.edges");
    assert_eq!(events.as_array().map(Vec::len), Some(1));
    assert_eq!(events[0]["node"]["target"], "main");
    assert_eq!(events[0]["node"]["before"]["renewalPeriodDays"], 90, "before and after are JSON values");
    assert_eq!(events[0]["node"]["after"]["renewalPeriodDays"], 180);
}

async fn renewals_are_audited_without_tokens(app: &TestApp) {
    let owner = app.owner().await;
    let (key, old) = a_key_with_access(app, &owner).await;
    let first = renewed_token(app, &owner, &key, json!({ "oldTokenValidFor": 600 })).await;
    app.graphql(&owner, FINISH, json!({ "k": key })).await.data("finishAppKeyRenewal");
    let second = renewed_token(app, &owner, &key, json!({})).await;
    app.graphql(&owner, UNDO, json!({ "k": key })).await.data("undoAppKeyRenewal");
    let query =
        "query($k: String!) { auditEvents(filter: {target: $k}) { edges { node { action actor before after } } } }";
    let events = app.graphql(&owner, query, json!({ "k": key })).await.data("auditEvents.edges");
    let actions: Vec<&str> =
        events.as_array().expect("events").iter().filter_map(|e| e["node"]["action"].as_str()).collect();
    assert_eq!(actions, ["key.renew_undo", "key.renew", "key.renew_finish", "key.renew", "key.generate"]);
    let text = events.to_string();
    for token in [&old, &first, &second] {
        assert!(!text.contains(token.as_str()), "a token in the audit log");
    }
    assert!(!crate::helpers::captured_logs().contains(&second), "a token in the logs");
}

crate::backend_tests!(
    renew_then_finish_stops_the_old_token_and_keeps_the_new,
    renew_then_undo_stops_the_new_token_and_keeps_the_old,
    the_overlap_ends_by_itself,
    zero_overlap_stops_the_old_token_now,
    every_refusal_has_its_code_and_changes_nothing,
    restricted_users_renew_view_only_users_cannot_and_nobody_escalates,
    renewal_alerts_follow_the_token_age_and_the_account_period,
    settings_are_validated_guarded_and_audited,
    renewals_are_audited_without_tokens,
);
