//! Expiry and the account's maximum lifetime; who made a key and when it last changed.
use crate::helpers::{Auth, TestApp};
use chrono::{DateTime, Utc};
use serde_json::{json, Value};

const GENERATE: &str = "mutation($input: GenerateAppKeyInput!) { generateAppKey(input: $input) \
                        { appToken appKey { key createdAt expiresAt status } } }";
const KEY: &str = "query($k: String!) { appKey(key: $k) { status hasAccess expiresAt createdBy createdAt updatedAt } }";
const SETTINGS: &str = "mutation($i: AppKeySettingsInput!) { updateAppKeySettings(input: $i) \
                        { renewalPeriodDays maxLifetimeDays deactivateUnusedAfterDays expiryWarningDays } }";

fn time(value: &Value) -> DateTime<Utc> {
    value.as_str().expect("a timestamp").parse().expect("RFC 3339")
}

async fn generate(app: &TestApp, auth: &Auth, input: Value) -> (String, String, Value) {
    let made = app.graphql(auth, GENERATE, json!({ "input": input })).await;
    let key = made.data("generateAppKey.appKey.key").as_str().expect("key").to_owned();
    let token = made.data("generateAppKey.appToken").as_str().expect("token").to_owned();
    (key, token, made.data("generateAppKey.appKey"))
}

async fn a_key_past_its_expiry_is_expired_and_refused_everywhere(app: &TestApp) {
    let owner = app.owner().await;
    let restricted = app.restricted_role(&owner).await;
    let now = app.store().now();
    let expires = now + chrono::Duration::hours(1);
    let (key, token, made) = generate(app, &owner, json!({ "roleIds": [restricted], "expiresAt": expires })).await;
    assert_eq!(time(&made["expiresAt"]), expires);
    let as_key = Auth::key(&key, &token);
    // Warm the caches: expiry must reach a cached credential too.
    assert_eq!(app.get("/auth", &as_key).await.status(), 200);
    app.graphql(&as_key, "{ viewer { appKey } }", json!({})).await.data("viewer");

    app.advance_clock(chrono::Duration::minutes(61));
    assert_eq!(app.get("/auth", &as_key).await.status(), 401);
    app.graphql(&as_key, "{ viewer { appKey } }", json!({})).await.assert_code("UNAUTHENTICATED");
    let owner = app.owner().await;
    let view = app.graphql(&owner, KEY, json!({ "k": key })).await;
    assert_eq!(view.data("appKey.status"), "EXPIRED");
    assert_eq!(view.data("appKey.hasAccess"), false);
    let counts = "query($s: AppKeyStatus) { myKeys(filter: {status: $s}) { totalCount } appKeys(filter: {status: $s}) { totalCount } }";
    let expired = app.graphql(&owner, counts, json!({ "s": "EXPIRED" })).await;
    assert_eq!((expired.data("myKeys.totalCount"), expired.data("appKeys.totalCount")), (json!(1), json!(1)));
    let active = app.graphql(&owner, counts, json!({ "s": "ACTIVE" })).await;
    assert_eq!((active.data("myKeys.totalCount"), active.data("appKeys.totalCount")), (json!(0), json!(0)));
    let csv = app.get("/export/app-keys.csv", &owner).await.text().await.expect("csv");
    assert!(csv.contains(",EXPIRED,"), "{csv}");

    // A renewal with a new expiry brings it back, with a new token.
    let later = app.store().now() + chrono::Duration::days(30);
    let renew = "mutation($k: String!, $at: DateTime) { renewAppKeyToken(key: $k, input: {oldTokenValidFor: 0, expiresAt: $at}) \
                 { appToken appKey { status expiresAt } } }";
    let renewed = app.graphql(&owner, renew, json!({ "k": key, "at": later })).await;
    assert_eq!(renewed.data("renewAppKeyToken.appKey.status"), "ACTIVE");
    let new = renewed.data("renewAppKeyToken.appToken").as_str().expect("token").to_owned();
    assert_eq!(app.get("/auth", &Auth::key(&key, &new)).await.status(), 200);
}

async fn an_expiry_in_the_past_is_refused_and_nothing_is_written(app: &TestApp) {
    let owner = app.owner().await;
    let before = app.snapshot().await;
    for past in [app.store().now() - chrono::Duration::seconds(1), app.store().now()] {
        let refused = app.graphql(&owner, GENERATE, json!({ "input": { "expiresAt": past } })).await;
        refused.assert_code("BAD_USER_INPUT");
        assert!(refused.message().contains("expiresAt"), "{}", refused.message());
    }
    assert_eq!(app.snapshot().await, before);
}

async fn the_maximum_lifetime_caps_and_supplies_the_expiry(app: &TestApp) {
    let owner = app.owner().await;
    let updated = app.graphql(&owner, SETTINGS, json!({ "i": { "maxLifetimeDays": 1 } })).await;
    assert_eq!(updated.data("updateAppKeySettings.maxLifetimeDays"), 1);
    assert_eq!(updated.data("updateAppKeySettings.expiryWarningDays"), 7, "the default");
    let before = app.snapshot().await;
    let two_days = app.store().now() + chrono::Duration::days(2);
    let refused = app.graphql(&owner, GENERATE, json!({ "input": { "expiresAt": two_days } })).await;
    refused.assert_code("BAD_USER_INPUT");
    assert!(refused.message().contains("maxLifetimeDays"), "{}", refused.message());
    assert_eq!(app.snapshot().await, before, "a refused generate writes nothing");

    let (_, _, made) = generate(app, &owner, json!({})).await;
    assert_eq!(time(&made["expiresAt"]) - time(&made["createdAt"]), chrono::Duration::days(1), "supplied");
    let shorter = app.store().now() + chrono::Duration::hours(2);
    let (key, _, made) = generate(app, &owner, json!({ "expiresAt": shorter })).await;
    assert_eq!(time(&made["expiresAt"]), shorter, "a shorter one stays");
    // Renewal is capped too.
    let renew =
        "mutation($k: String!, $at: DateTime) { renewAppKeyToken(key: $k, input: {expiresAt: $at}) { appToken } }";
    app.graphql(&owner, renew, json!({ "k": key, "at": two_days })).await.assert_code("BAD_USER_INPUT");
    // Lifting the maximum (null) lets keys live forever again.
    let lifted = app.graphql(&owner, SETTINGS, json!({ "i": { "maxLifetimeDays": null } })).await;
    assert_eq!(lifted.data("updateAppKeySettings.maxLifetimeDays"), Value::Null);
    let (_, _, made) = generate(app, &owner, json!({})).await;
    assert_eq!(made["expiresAt"], Value::Null);
    for bad in [
        json!({ "maxLifetimeDays": 0 }),
        json!({ "expiryWarningDays": 366 }),
        json!({ "deactivateUnusedAfterDays": -1 }),
    ] {
        app.graphql(&owner, SETTINGS, json!({ "i": bad })).await.assert_code("BAD_USER_INPUT");
    }
}

async fn keys_say_who_made_them_and_when_they_last_changed(app: &TestApp) {
    let owner = app.owner().await;
    let restricted = app.restricted_role(&owner).await;
    let (key, token, _) = generate(app, &owner, json!({ "roleIds": [restricted] })).await;
    let view = app.graphql(&owner, KEY, json!({ "k": key })).await;
    assert_eq!(view.data("appKey.createdBy"), "owner@example.com");
    assert_eq!(view.data("appKey.updatedAt"), view.data("appKey.createdAt"));
    // A key made by a key says so.
    let as_key = Auth::key(&key, &token);
    let (child, _, _) = generate(app, &as_key, json!({})).await;
    assert_eq!(app.graphql(&owner, KEY, json!({ "k": child })).await.data("appKey.createdBy"), key.as_str());

    app.advance_clock(chrono::Duration::minutes(5));
    let deactivate = "mutation($k: String!) { deactivateAppKey(key: $k) { updatedAt } }";
    let changed = app.graphql(&owner, deactivate, json!({ "k": key })).await;
    let moved = time(&changed.data("deactivateAppKey.updatedAt")) - time(&view.data("appKey.createdAt"));
    assert!(moved >= chrono::Duration::minutes(5) && moved < chrono::Duration::minutes(6), "{moved}");
    // Another account sees neither who made the key nor its label.
    let partner = app.account_with_owner("partner").await;
    let partner_role = app.restricted_role(&partner).await;
    let (external, _, _) = generate(app, &partner, json!({ "roleIds": [partner_role] })).await;
    let add =
        "mutation($k: String!, $r: [ID!]!) { addExternalAppKey(input: {key: $k, roleIds: $r}) { createdBy label } }";
    let owner_restricted = app.restricted_role(&owner).await;
    let added = app.graphql(&owner, add, json!({ "k": external, "r": [owner_restricted] })).await;
    assert_eq!(added.data("addExternalAppKey.createdBy"), Value::Null);
    assert_eq!(added.data("addExternalAppKey.label"), Value::Null);
}

crate::backend_tests!(
    a_key_past_its_expiry_is_expired_and_refused_everywhere,
    an_expiry_in_the_past_is_refused_and_nothing_is_written,
    the_maximum_lifetime_caps_and_supplies_the_expiry,
    keys_say_who_made_them_and_when_they_last_changed,
);
