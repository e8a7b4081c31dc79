//! Usage: every decision about a known key counted by outcome per hour, on two replicas, read back
//! as dense series, rolled up into days and kept for a while; the resources a key needs.
use crate::helpers::{Auth, Gql, TestApp};
use appkeys::service::keys::meter;
use serde_json::{json, Value};

const USAGE: &str = "query($k: String!, $from: DateTime!, $to: DateTime!, $g: UsageGranularity) { appKey(key: $k) { \
                     usage(from: $from, to: $to, granularity: $g) { at valid forbidden ipNotAllowed rateLimited \
                     usageExceeded disabled invalidToken } } }";
const SET: &str = "mutation($k: String!, $p: AppKeyPolicyInput!) { setAppKeyPolicy(key: $k, input: $p) { key } }";
const OUTCOMES: [&str; 7] =
    ["valid", "forbidden", "ipNotAllowed", "rateLimited", "usageExceeded", "disabled", "invalidToken"];

async fn status(app: &TestApp, address: &str, auth: &Auth, query: &str) -> u16 {
    auth.apply(app.client.get(format!("{address}/auth{query}"))).send().await.expect("sent").status().as_u16()
}

/// The sums of a key's hourly series over the last and next hour, by outcome, as this account sees it.
async fn totals(app: &TestApp, viewer: &Auth, key: &str) -> Value {
    let now = app.store().now();
    let variables = json!({
        "k": key,
        "from": now - chrono::Duration::hours(1),
        "to": now + chrono::Duration::hours(1),
        "g": "HOUR",
    });
    let points = app.graphql(viewer, USAGE, variables).await.data("appKey.usage");
    let mut sums = serde_json::Map::new();
    for outcome in OUTCOMES {
        let sum: u64 = points.as_array().expect("points").iter().map(|p| p[outcome].as_u64().expect("a count")).sum();
        if sum > 0 {
            sums.insert(outcome.into(), sum.into());
        }
    }
    Value::Object(sums)
}

/// A well-formed token that is no key's (a malformed one is refused before any lookup).
fn wrong_token() -> String {
    appkeys::domain::AppToken::generate().expose_secret().to_owned()
}

async fn flush(app: &TestApp) {
    app.state.auth.usage().flush(app.store()).await.expect("the usage is written");
}

/// How many usage changes this replica has heard of (`UsageVersion`).
fn usage_version(app: &TestApp) -> u64 {
    app.store().part::<appkeys::service::store::versions::UsageVersion>().current()
}

/// Waits until this replica has heard of a usage change after `before` (on PostgreSQL another
/// replica's flush arrives as a notification; SQLite serves one process and has no feed).
async fn heard_usage_change(app: &TestApp, before: u64) {
    if app.store().backend() != sea_orm::DatabaseBackend::Postgres {
        return;
    }
    let heard = crate::helpers::process::poll_until(std::time::Duration::from_secs(5), || async {
        usage_version(app) > before
    })
    .await;
    assert!(heard, "the other replica's flush was announced here");
}

async fn every_outcome_is_counted_exactly_across_two_replicas(app: &TestApp) {
    let owner = app.owner().await;
    let (b, replica) = app.another_server().await;
    let b_state = replica.state().clone();
    tokio::spawn(replica.run_until_stopped(std::future::pending()));
    let viewer = app.custom_role(&owner, "Viewer", &["ApiKeys.View"]).await;
    let key = |policy: Value| {
        let (owner, viewer) = (owner.clone(), viewer.clone());
        async move {
            let (key, token) = app.generate_key(&owner, None, &[viewer]).await;
            app.graphql(&owner, SET, json!({ "k": key, "p": policy })).await.data("setAppKeyPolicy");
            (key, token)
        }
    };
    let (v, v_token) = key(json!({})).await;
    let (l, l_token) = key(json!({ "rateLimits": [{ "name": "m", "limit": 2, "periodSeconds": 60 }] })).await;
    let (c, c_token) = key(json!({ "credits": { "remaining": 1 } })).await;
    let (i, i_token) = key(json!({ "allowedIps": ["10.0.0.0/8"] })).await;
    let (d, d_token) = key(json!({})).await;
    let deactivate = "mutation($k: String!) { deactivateAppKey(key: $k) { key } }";
    app.graphql(&owner, deactivate, json!({ "k": d })).await.data("deactivateAppKey");
    let a = app.address.clone();
    let as_v = Auth::key(&v, &v_token);
    for (address, auth, query, expected) in [
        (&a, &as_v, "", 200),
        (&a, &as_v, "", 200),
        (&b, &as_v, "", 200),
        (&b, &as_v, "", 200),
        (&a, &as_v, "?resource=ApiKeys.View", 200),
        (&a, &as_v, "?resource=ApiKeys.Edit", 403),
        (&b, &as_v, "?resource=ApiKeys.Edit", 403),
        (&b, &Auth::key(&v, &wrong_token()), "", 401),
        (&a, &Auth::key(&l, &l_token), "", 200),
        (&a, &Auth::key(&l, &l_token), "", 200),
        (&a, &Auth::key(&l, &l_token), "", 429),
        (&b, &Auth::key(&c, &c_token), "", 200),
        (&b, &Auth::key(&c, &c_token), "", 429),
        (&a, &Auth::key(&i, &i_token), "", 403),
        (&b, &Auth::key(&i, &i_token), "", 403),
        (&b, &Auth::key(&d, &d_token), "", 401),
        (&a, &Auth::key(&d, &d_token), "", 401),
    ] {
        assert_eq!(status(app, address, auth, query).await, expected, "{address}/auth{query}");
    }
    // An unknown key is counted in /metrics only: no row per guessed key.
    let rows_before: i64 = app.scalar("SELECT COUNT(*) FROM key_usage").await;
    assert_eq!(rows_before, 0, "nothing is written before a flush");
    let unknown = Auth::key("appkey-main-ZZZZZZ", &wrong_token());
    assert_eq!(status(app, &a, &unknown, "").await, 401);
    flush(app).await;
    b_state.auth.usage().flush(&b_state.store).await.expect("replica B writes its own");
    let valid_and = |more: Value| {
        let mut all = json!({ "valid": 1 });
        all.as_object_mut().expect("object").extend(more.as_object().expect("object").clone());
        all
    };
    assert_eq!(totals(app, &owner, &v).await, json!({ "valid": 5, "forbidden": 2, "invalidToken": 1 }));
    assert_eq!(totals(app, &owner, &l).await, json!({ "valid": 2, "rateLimited": 1 }));
    assert_eq!(totals(app, &owner, &c).await, valid_and(json!({ "usageExceeded": 1 })));
    assert_eq!(totals(app, &owner, &i).await, json!({ "ipNotAllowed": 2 }));
    assert_eq!(totals(app, &owner, &d).await, json!({ "disabled": 2 }));
    let hours: i64 = app.scalar("SELECT COUNT(*) FROM key_usage WHERE granularity = 1").await;
    assert!(hours <= 10, "one row per key access and hour, whichever replica wrote: {hours}");
    // Every count is added to its hour and to its day.
    for column in
        ["valid", "forbidden", "ip_not_allowed", "rate_limited", "usage_exceeded", "disabled", "invalid_token"]
    {
        let by = |granularity: i32| {
            format!(
                "SELECT CAST(COALESCE(SUM({column}), 0) AS BIGINT) FROM key_usage WHERE granularity = {granularity}"
            )
        };
        let (in_hours, in_days): (i64, i64) = (app.scalar(by(1)).await, app.scalar(by(2)).await);
        assert_eq!(in_hours, in_days, "{column}: the days hold their hours");
        assert!(column != "valid" || in_hours > 0);
    }
    // A second flush adds: replicas' and flushes' counts are additive.
    assert_eq!(status(app, &b, &as_v, "").await, 200);
    let before = usage_version(app);
    b_state.auth.usage().flush(&b_state.store).await.expect("written");
    heard_usage_change(app, before).await;
    assert_eq!(totals(app, &owner, &v).await["valid"], 6);
    let summary = "query($from: DateTime!, $to: DateTime!) { accountUsage(from: $from, to: $to, granularity: HOUR) \
                   { totals { valid forbidden ipNotAllowed rateLimited usageExceeded disabled invalidToken } \
                   topKeys { key totals { valid } } } }";
    let now = app.store().now();
    let variables = json!({ "from": now - chrono::Duration::hours(1), "to": now + chrono::Duration::hours(1) });
    let account = app.graphql(&owner, summary, variables).await.data("accountUsage");
    assert_eq!(
        account["totals"],
        json!({ "valid": 9, "forbidden": 2, "ipNotAllowed": 2, "rateLimited": 1, "usageExceeded": 1, "disabled": 2, "invalidToken": 1 })
    );
    assert_eq!(account["topKeys"][0]["key"], v.as_str(), "the busiest key first");
    let metrics = app.get("/metrics", &Auth::None).await.text().await.expect("text");
    assert!(metrics.contains("appkeys_usage_pending"), "{metrics}");
}

/// A wrong token for a real key is its owner's to see; an external key's use in an account is that
/// account's.
/// Last use, inactivity and the counters read the same record: only a `valid` decision is a use.
/// Refused requests (a missing resource, a rate limit) are counted but move no `lastUsedAt`, so
/// they keep no key alive; a key with a valid use inside the window is never deactivated.
async fn last_use_and_inactivity_agree_with_the_valid_count(app: &TestApp) {
    let owner = app.owner().await;
    let viewer = app.custom_role(&owner, "Viewer", &["ApiKeys.View"]).await;
    let (key, token) = app.generate_key(&owner, None, &[viewer]).await;
    let policy = json!({ "rateLimits": [{ "name": "daily", "limit": 1, "periodSeconds": 86_400 }] });
    app.graphql(&owner, SET, json!({ "k": key, "p": policy })).await.data("setAppKeyPolicy");
    let as_key = Auth::key(&key, &token);
    let settings =
        "mutation { updateAppKeySettings(input: {deactivateUnusedAfterDays: 1}) { deactivateUnusedAfterDays } }";
    app.graphql(&owner, settings, json!({})).await.data("updateAppKeySettings");

    let used_at = app.store().now();
    assert_eq!(status(app, &app.address, &as_key, "").await, 200, "the one valid use");
    app.advance_clock(chrono::Duration::hours(20));
    assert_eq!(status(app, &app.address, &as_key, "").await, 429, "rate limited");
    assert_eq!(status(app, &app.address, &as_key, "?resource=ApiKeys.Edit").await, 403, "forbidden");
    app.state.auth.last_use().flush(app.store()).await.expect("last uses written");
    flush(app).await;
    let query = "query($k: String!) { appKey(key: $k) { lastUsedAt status deactivationReason } }";
    let seen = app.graphql(&owner, query, json!({ "k": key })).await.data("appKey");
    let last: chrono::DateTime<chrono::Utc> =
        seen["lastUsedAt"].as_str().expect("a last use").parse().expect("an instant");
    assert!((last - used_at).num_seconds().abs() <= 1, "the valid use, not the refused ones: {last} vs {used_at}");
    let from = used_at - chrono::Duration::hours(1);
    let to = app.store().now() + chrono::Duration::hours(1);
    let points = app.graphql(&owner, USAGE, json!({ "k": key, "from": from, "to": to, "g": "DAY" })).await;
    let points = points.data("appKey.usage");
    let sum = |outcome: &str| -> u64 {
        points.as_array().expect("points").iter().map(|p| p[outcome].as_u64().expect("n")).sum()
    };
    assert_eq!((sum("valid"), sum("rateLimited"), sum("forbidden")), (1, 1, 1));

    // Within the window of its valid use the sweeper leaves it; refused requests do not extend it.
    let swept = appkeys::service::keys::deactivate_unused(app.store(), app.store().now()).await.expect("swept");
    assert_eq!(swept, 0, "20 h after a valid use: kept");
    app.advance_clock(chrono::Duration::hours(5));
    assert_eq!(status(app, &app.address, &as_key, "?resource=ApiKeys.Edit").await, 403);
    app.state.auth.last_use().flush(app.store()).await.expect("last uses written");
    let swept = appkeys::service::keys::deactivate_unused(app.store(), app.store().now()).await.expect("swept");
    assert_eq!(swept, 1, "25 h after its last valid use, refused requests since or not");
    let owner = app.owner().await; // the first session is over (24 h)
    let seen = app.graphql(&owner, query, json!({ "k": key })).await.data("appKey");
    assert_eq!((seen["status"].as_str(), seen["deactivationReason"].as_str()), (Some("INACTIVE"), Some("INACTIVITY")));
}

async fn usage_belongs_to_the_account_it_happened_in(app: &TestApp) {
    let owner = app.owner().await;
    let partner = app.account_with_owner("partner").await;
    let partner_role = app.restricted_role(&partner).await;
    let (external, token) = app.generate_key(&partner, None, &[partner_role]).await;
    let restricted = app.restricted_role(&owner).await;
    let add = "mutation($k: String!, $r: [ID!]!) { addExternalAppKey(input: {key: $k, roleIds: $r}) { key } }";
    app.graphql(&owner, add, json!({ "k": external, "r": [restricted] })).await.data("addExternalAppKey");
    let in_main = Auth::key_for(&external, &token, "main");
    for _ in 0..3 {
        assert_eq!(status(app, &app.address, &in_main, "").await, 200);
    }
    assert_eq!(status(app, &app.address, &Auth::key(&external, &token), "").await, 200, "in its own account");
    let wrong = Auth::key_for(&external, &wrong_token(), "main");
    assert_eq!(status(app, &app.address, &wrong, "").await, 401);
    flush(app).await;
    assert_eq!(totals(app, &owner, &external).await, json!({ "valid": 3 }), "main sees its own only");
    assert_eq!(totals(app, &partner, &external).await, json!({ "valid": 1, "invalidToken": 1 }));
}

async fn series_are_dense_across_a_day_and_a_month_end(app: &TestApp) {
    let start: chrono::DateTime<chrono::Utc> = "2027-01-31T22:30:00Z".parse().expect("instant");
    app.advance_clock(start - app.store().now());
    let owner = app.owner().await;
    let role = app.restricted_role(&owner).await;
    let (key, token) = app.generate_key(&owner, None, &[role]).await;
    let as_key = Auth::key(&key, &token);
    assert_eq!(status(app, &app.address, &as_key, "").await, 200); // 22:30 on 31 January
    app.advance_clock(chrono::Duration::hours(2)); // 00:30 on 1 February
    assert_eq!(status(app, &app.address, &as_key, "").await, 200);
    assert_eq!(status(app, &app.address, &as_key, "").await, 200);
    flush(app).await;
    let owner = app.owner().await;
    let hours = app
        .graphql(
            &owner,
            USAGE,
            json!({ "k": key, "from": "2027-01-31T21:10:00Z", "to": "2027-02-01T01:59:59Z", "g": "HOUR" }),
        )
        .await
        .data("appKey.usage");
    let valid: Vec<(String, u64)> = hours
        .as_array()
        .expect("points")
        .iter()
        .map(|p| (p["at"].as_str().expect("at").to_owned(), p["valid"].as_u64().expect("valid")))
        .collect();
    let at = |h: &str| format!("2027-{h}:00:00+00:00");
    let expected =
        vec![(at("01-31T21"), 0), (at("01-31T22"), 1), (at("01-31T23"), 0), (at("02-01T00"), 2), (at("02-01T01"), 0)];
    let normalise = |v: Vec<(String, u64)>| {
        v.into_iter()
            .map(|(t, n)| (chrono::DateTime::parse_from_rfc3339(&t).expect("rfc3339").to_utc(), n))
            .collect::<Vec<_>>()
    };
    assert_eq!(normalise(valid), normalise(expected));
    let days = app
        .graphql(
            &owner,
            USAGE,
            json!({ "k": key, "from": "2027-01-30T00:00:00Z", "to": "2027-02-01T12:00:00Z", "g": "DAY" }),
        )
        .await
        .data("appKey.usage");
    let valid: Vec<u64> = days.as_array().expect("points").iter().map(|p| p["valid"].as_u64().expect("n")).collect();
    assert_eq!(valid, vec![0, 1, 2]);
    // More than 1000 points: refused, naming `to`.
    let refused = app
        .graphql(
            &owner,
            USAGE,
            json!({ "k": key, "from": "2026-01-01T00:00:00Z", "to": "2027-02-01T00:00:00Z", "g": "HOUR" }),
        )
        .await;
    refused.assert_code("BAD_USER_INPUT");
    assert_eq!(refused.0["errors"][0]["extensions"]["field"], "to");
}

/// Each flush adds to an hour and to its day; hours older than 35 days go (their day holds them),
/// days older than the retention go.
async fn hours_roll_up_into_days_and_old_days_are_pruned(app: &TestApp) {
    let owner = app.owner().await;
    let role = app.restricted_role(&owner).await;
    let (key, token) = app.generate_key(&owner, None, &[role]).await;
    let as_key = Auth::key(&key, &token);
    let used_at = app.store().now();
    for _ in 0..4 {
        assert_eq!(status(app, &app.address, &as_key, "").await, 200);
    }
    flush(app).await;
    app.advance_clock(chrono::Duration::hours(1));
    assert_eq!(status(app, &app.address, &as_key, "").await, 200);
    flush(app).await;
    let series = |granularity: &'static str| {
        let key = key.clone();
        async move {
            let owner = app.owner().await;
            let variables = json!({
                "k": key,
                "from": used_at - chrono::Duration::days(1),
                "to": used_at + chrono::Duration::days(1),
                "g": granularity,
            });
            let points = app.graphql(&owner, USAGE, variables).await.data("appKey.usage");
            points.as_array().expect("points").iter().map(|p| p["valid"].as_u64().expect("n")).collect::<Vec<u64>>()
        }
    };
    let hourly = series("HOUR").await;
    assert_eq!(hourly.iter().filter(|n| **n > 0).copied().collect::<Vec<_>>(), vec![4, 1], "two hours");
    let daily = series("DAY").await;
    assert_eq!(daily.iter().sum::<u64>(), 5, "their days hold both flushes: {daily:?}");
    app.advance_clock(chrono::Duration::days(33));
    meter::prune(app.store(), app.store().now(), 400).await.expect("a round");
    assert_eq!(series("HOUR").await, hourly, "hours younger than 35 days stay");
    app.advance_clock(chrono::Duration::days(4));
    let pruned = meter::prune(app.store(), app.store().now(), 400).await.expect("a round");
    assert!(pruned >= 2, "{pruned}");
    let hours: i64 = app.scalar("SELECT COUNT(*) FROM key_usage WHERE granularity = 1").await;
    assert_eq!(hours, 0, "hours older than 35 days are deleted");
    assert_eq!(series("HOUR").await.iter().sum::<u64>(), 0, "an hourly series shows the hours kept");
    assert_eq!(series("DAY").await, daily, "the days keep the totals");
    app.advance_clock(chrono::Duration::days(400));
    meter::prune(app.store(), app.store().now(), 400).await.expect("a round");
    let rows: i64 = app.scalar("SELECT COUNT(*) FROM key_usage").await;
    assert_eq!(rows, 0, "days older than the retention are pruned");
}

async fn permission_usage_marks_exactly_the_resources_used(app: &TestApp) {
    let owner = app.owner().await;
    let reader = app.custom_role(&owner, "Reader", &["ApiKeys.View"]).await;
    let editor = app.custom_role(&owner, "Editor", &["ApiKeys.View", "ApiKeys.Edit"]).await;
    let (key, token) = app.generate_key(&owner, None, &[reader, editor]).await;
    assert_eq!(status(app, &app.address, &Auth::key(&key, &token), "?resource=ApiKeys.View").await, 200);
    flush(app).await;
    let query =
        "query($k: String!) { appKey(key: $k) { permissionUsage { resource { id } lastUsedAt grantedBy { name } } } }";
    let usage = app.graphql(&owner, query, json!({ "k": key })).await.data("appKey.permissionUsage");
    let by_id =
        |id: &str| usage.as_array().expect("list").iter().find(|p| p["resource"]["id"] == id).cloned().expect(id);
    let view = by_id("ApiKeys.View");
    assert!(view["lastUsedAt"].is_string(), "{view}");
    let mut granted: Vec<&str> =
        view["grantedBy"].as_array().expect("roles").iter().filter_map(|r| r["name"].as_str()).collect();
    granted.sort_unstable();
    assert_eq!(granted, ["Editor", "Reader"]);
    let edit = by_id("ApiKeys.Edit");
    assert_eq!(edit["lastUsedAt"], Value::Null, "never needed");
    assert_eq!(edit["grantedBy"], json!([{ "name": "Editor" }]));
    assert_eq!(usage.as_array().expect("list").len(), 2, "every resource held, no other");
}

/// `unusedPermissionDays` lists the keys holding a resource that none of their requests needed for
/// that long — custom roles, the predefined roles' resources from code, the Owner's whole catalogue
/// (a registered resource included) — and not a key that has used all it holds, nor one added since.
async fn the_unused_permission_filter_finds_keys_whose_roles_could_shrink(app: &TestApp) {
    let owner = app.owner().await;
    let reader = app.custom_role(&owner, "Reader", &["ApiKeys.View"]).await;
    let restricted = app.restricted_role(&owner).await;
    let owner_role = app.owner_role(&owner).await;
    let (all_used, all_used_token) = app.generate_key(&owner, Some("all used"), std::slice::from_ref(&reader)).await;
    let (partly, partly_token) = app.generate_key(&owner, Some("partly"), std::slice::from_ref(&restricted)).await;
    let (idle, _) = app.generate_key(&owner, Some("idle"), std::slice::from_ref(&reader)).await;
    let (admin, admin_token) = app.generate_key(&owner, Some("admin"), &[owner_role]).await;
    // Used long ago only: counts as unused now.
    assert_eq!(status(app, &app.address, &Auth::key(&all_used, &all_used_token), "?resource=ApiKeys.View").await, 200);
    flush(app).await;
    app.advance_clock(chrono::Duration::days(100));
    let owner = app.owner().await;
    for (key, token, resource) in [
        (&all_used, &all_used_token, "ApiKeys.View"),
        (&partly, &partly_token, "ApiKeys.View"),
        (&admin, &admin_token, "ApiKeys.View"),
    ] {
        assert_eq!(status(app, &app.address, &Auth::key(key, token), &format!("?resource={resource}")).await, 200);
    }
    flush(app).await;
    let (_fresh, _) = app.generate_key(&owner, Some("fresh"), &[reader]).await;
    let query = "query($d: Int) { myKeys(filter: {unusedPermissionDays: $d}, first: 50) { edges { node { key } } }                  appKeys(filter: {unusedPermissionDays: $d}, first: 50) { edges { node { key } } } }";
    let listed = |lists: &Gql, list: &str| -> Vec<String> {
        let mut keys: Vec<String> = lists.data(list)["edges"]
            .as_array()
            .expect("edges")
            .iter()
            .filter_map(|e| e["node"]["key"].as_str().map(str::to_owned))
            .collect();
        keys.sort_unstable();
        keys
    };
    let mut expected = vec![partly.clone(), idle.clone(), admin.clone()];
    expected.sort_unstable();
    let lists = app.graphql(&owner, query, json!({ "d": 90 })).await;
    assert_eq!(listed(&lists, "myKeys"), expected, "myKeys");
    assert_eq!(listed(&lists, "appKeys"), expected, "appKeys");
    // The Owner role holds the whole catalogue: once the admin key has needed every resource in it,
    // it holds nothing unused.
    let catalogue = app.graphql(&owner, "{ resources { id } }", json!({})).await.data("resources");
    for resource in catalogue.as_array().expect("resources").iter().filter_map(|r| r["id"].as_str()) {
        let auth = Auth::key(&admin, &admin_token);
        assert_eq!(status(app, &app.address, &auth, &format!("?resource={resource}")).await, 200, "{resource}");
    }
    flush(app).await;
    let lists = app.graphql(&owner, query, json!({ "d": 90 })).await;
    assert!(!listed(&lists, "myKeys").contains(&admin), "the admin key used everything it holds");
    for bad in [0, 401] {
        let refused = app.graphql(&owner, query, json!({ "d": bad })).await;
        refused.assert_code("BAD_USER_INPUT");
        assert_eq!(refused.0["errors"][0]["extensions"]["field"], "filter.unusedPermissionDays");
    }
}

/// A key's series is written out in one pass (its selection read once); it answers exactly as the
/// field-by-field resolution of the same points does (`accountUsage.series` of an account with one
/// key): aliases, fragments, `__typename`, `@skip` and `@include` by variable.
async fn a_series_answers_as_field_by_field_resolution_would(app: &TestApp) {
    let owner = app.owner().await;
    let role = app.restricted_role(&owner).await;
    let (key, token) = app.generate_key(&owner, None, &[role]).await;
    for query in ["", "?resource=ApiKeys.View", "?resource=LicenseManager.SaveAccessProfile"] {
        status(app, &app.address, &Auth::key(&key, &token), query).await;
    }
    app.advance_clock(chrono::Duration::hours(20)); // the owner's session lasts 24 h
    status(app, &app.address, &Auth::key(&key, &wrong_token()), "").await;
    flush(app).await;
    let selection = "__typename when: at ok: valid ...counts ... on UsagePoint { invalidToken } \
                     forbidden @skip(if: $hide) disabled @include(if: $hide) rateLimited @include(if: $show)";
    let query = format!(
        "query($k: String!, $from: DateTime!, $to: DateTime!, $hide: Boolean!, $show: Boolean!) {{ \
         appKey(key: $k) {{ usage(from: $from, to: $to, granularity: HOUR) {{ {selection} }} }} \
         accountUsage(from: $from, to: $to, granularity: HOUR) {{ series {{ {selection} }} }} }} \
         fragment counts on UsagePoint {{ valid ipNotAllowed }}"
    );
    // With an error beside it, the answer is reshaped before it is written (partial data); in a
    // batch, each answer is written in a list.
    let with_error = query.replacen(
        "accountUsage(",
        "gone: appKey(key: $k) { usage(from: $to, to: $from) { at } } accountUsage(",
        1,
    );
    let now = app.store().now();
    for (hide, show, query, batch) in [
        (true, false, &query, false),
        (false, true, &query, false),
        (true, true, &with_error, false),
        (false, false, &query, true),
    ] {
        let variables = json!({
            "k": key, "from": now - chrono::Duration::hours(30), "to": now, "hide": hide, "show": show,
        });
        // As text, so the order of each point's keys is compared too.
        let request = owner.apply(app.client.post(format!("{}/graphql", app.address)));
        let one = json!({ "query": query, "variables": variables });
        let body = if batch { json!([one, one]).to_string() } else { one.to_string() };
        let text = request.header("content-type", "application/json").body(body).send().await.expect("sent");
        let text = text.text().await.expect("a body");
        // A point holds no list: each series' text ends at its first `]`.
        let array_after = |label: &str| text.split(label).nth(1).and_then(|t| t.split(']').next()).map(str::to_owned);
        let (one_pass_text, by_field_text) = (array_after("\"usage\":"), array_after("\"series\":"));
        assert!(one_pass_text.is_some() && one_pass_text == by_field_text, "hide: {hide}: {text}");
        let mut answer: serde_json::Value = serde_json::from_str(&text).expect("JSON");
        if batch {
            assert_eq!(answer[0], answer[1], "{text}");
            answer = answer[0].take();
        }
        assert_eq!(answer["errors"].is_array(), query.contains("gone:"), "{text}");
        let (one_pass, by_field) =
            (answer["data"]["appKey"]["usage"].clone(), answer["data"]["accountUsage"]["series"].clone());
        assert_eq!(one_pass, by_field, "hide: {hide}");
        let points = one_pass.as_array().expect("points");
        assert_eq!(points.len(), 31);
        assert!(points.iter().any(|p| p["ok"].as_u64() == Some(2)), "{one_pass}");
        assert!(points.iter().any(|p| p["invalidToken"].as_u64() == Some(1)), "{one_pass}");
        let mut keys: Vec<&str> = points[0].as_object().expect("a point").keys().map(String::as_str).collect();
        keys.sort_unstable();
        let mut expected = vec!["__typename", "when", "ok", "valid", "ipNotAllowed", "invalidToken"];
        expected.extend(if hide { ["disabled"] } else { ["forbidden"] });
        expected.extend(if show { vec!["rateLimited"] } else { vec![] });
        expected.sort_unstable();
        assert_eq!(keys, expected, "the response keys asked for, no other");
    }
}

/// A response's errors without their locations (the queries compared differ in length).
fn errors_of(answer: &crate::helpers::Gql) -> Value {
    let mut errors = answer.0["errors"].clone();
    for error in errors.as_array_mut().into_iter().flatten() {
        error.as_object_mut().map(|e| e.remove("locations"));
    }
    errors
}

/// `appKey(key) { usage }` alone (the usage chart's query) reads the key and its usage in one
/// statement; it answers exactly as the key read whole does: for its own key, another account's key
/// added here, one removed here, a deleted one, one never added, and a malformed value; through
/// variables, literals and fragments, and with the granularity variable left out (its default, alike).
async fn usage_alone_answers_as_the_whole_key_does(app: &TestApp) {
    let owner = app.owner().await;
    let role = app.restricted_role(&owner).await;
    let (own, own_token) = app.generate_key(&owner, None, std::slice::from_ref(&role)).await;
    let partner = app.account_with_owner("partner").await;
    let partner_role = app.restricted_role(&partner).await;
    let (added, added_token) = app.generate_key(&partner, None, std::slice::from_ref(&partner_role)).await;
    let (removed, removed_token) = app.generate_key(&partner, None, std::slice::from_ref(&partner_role)).await;
    let (never_added, _) = app.generate_key(&partner, None, std::slice::from_ref(&partner_role)).await;
    let (deleted, deleted_token) = app.generate_key(&owner, None, std::slice::from_ref(&role)).await;
    let add = "mutation($k: String!, $r: [ID!]!) { addExternalAppKey(input: {key: $k, roleIds: $r}) { key } }";
    for key in [&added, &removed] {
        app.graphql(&owner, add, json!({ "k": key, "r": [role] })).await.data("addExternalAppKey");
    }
    for (key, token) in
        [(&own, &own_token), (&added, &added_token), (&removed, &removed_token), (&deleted, &deleted_token)]
    {
        let here = Auth::key_for(key, token, "main");
        assert_eq!(status(app, &app.address, &here, "").await, 200);
        status(app, &app.address, &Auth::key_for(key, &wrong_token(), "main"), "").await;
    }
    app.advance_clock(chrono::Duration::hours(1));
    status(app, &app.address, &Auth::key(&own, &own_token), "?resource=LicenseManager.SaveAccessProfile").await;
    flush(app).await;
    let deactivate = "mutation($k: String!) { deactivateAppKey(key: $k) { key } }";
    app.graphql(&owner, deactivate, json!({ "k": removed })).await.data("deactivateAppKey");
    let delete = "mutation($k: String!) { deleteAppKey(key: $k) }";
    app.graphql(&owner, delete, json!({ "k": deleted })).await.data("deleteAppKey");

    let now = app.store().now();
    let (from, to) = ((now - chrono::Duration::hours(3)).to_rfc3339(), (now + chrono::Duration::hours(1)).to_rfc3339());
    let points = "at valid forbidden invalidToken";
    let whole = format!(
        "query($k: String!, $from: DateTime!, $to: DateTime!, $g: UsageGranularity) {{ appKey(key: $k) {{ \
         key usage(from: $from, to: $to, granularity: $g) {{ {points} }} }} }}"
    );
    let alone = [
        format!(
            "query($k: String!, $from: DateTime!, $to: DateTime!, $g: UsageGranularity) {{ appKey(key: $k) {{ \
             usage(from: $from, to: $to, granularity: $g) {{ {points} }} }} }}"
        ),
        format!(
            "query($k: String!, $g: UsageGranularity) {{ appKey(key: $k) {{ __typename \
             usage(from: \"{from}\", to: \"{to}\", granularity: $g) {{ {points} }} }} }}"
        ),
        format!(
            "query($k: String!, $from: DateTime!, $to: DateTime!, $g: UsageGranularity) {{ appKey(key: $k) {{ ...u }} }} \
             fragment u on AppKey {{ ... on AppKey {{ usage(from: $from, to: $to, granularity: $g) {{ {points} }} }} }}"
        ),
    ];
    let mut counted = 0;
    for key in [&own, &added, &removed, &deleted, &never_added, &"not a key".to_owned()] {
        for granularity in [json!("HOUR"), json!("DAY"), Value::Null] {
            let mut variables = json!({ "k": key, "from": from, "to": to, "g": granularity });
            if granularity.is_null() {
                // Left out: the argument is left out, so its default (HOUR) applies on both paths.
                variables.as_object_mut().expect("variables").remove("g");
            }
            let expected = app.graphql(&owner, &whole, variables.clone()).await;
            for query in &alone {
                let got = app.graphql(&owner, query, variables.clone()).await;
                assert_eq!(errors_of(&got), errors_of(&expected), "{key} {query}");
                assert_eq!(got.0["data"]["appKey"]["usage"], expected.0["data"]["appKey"]["usage"], "{key} {query}");
                if expected.0["errors"].is_null() {
                    assert_eq!(got.0["data"]["appKey"].is_null(), expected.0["data"]["appKey"].is_null(), "{key}");
                }
                if query.contains("__typename") && !got.0["data"]["appKey"].is_null() {
                    assert_eq!(got.0["data"]["appKey"]["__typename"], "AppKey");
                }
            }
            let series = &expected.0["data"]["appKey"]["usage"];
            let sum = |p: &Value| p["valid"].as_u64().unwrap_or(0) + p["invalidToken"].as_u64().unwrap_or(0);
            counted += series.as_array().map_or(0, |points| points.iter().map(sum).sum::<u64>());
        }
    }
    // Per granularity (HOUR, DAY, HOUR by default): the own key's valid and invalid-token requests,
    // and a valid request of each external key (their wrong tokens count in their owner's account).
    assert_eq!(counted, 3 * 4, "the series compared were not empty");
    for key in [&deleted, &never_added] {
        let variables = json!({ "k": key, "from": from, "to": to, "g": "DAY" });
        assert!(app.graphql(&owner, &alone[0], variables).await.data("appKey").is_null(), "{key}");
    }
    let malformed =
        app.graphql(&owner, &alone[0], json!({ "k": "not a key", "from": from, "to": to, "g": "DAY" })).await;
    malformed.assert_code("BAD_USER_INPUT");
    assert_eq!(malformed.0["errors"][0]["path"], json!(["appKey"]));
    // A range `usage` refuses is the field's own error, at its path.
    let backwards = app.graphql(&owner, &alone[0], json!({ "k": own, "from": to, "to": from, "g": "DAY" })).await;
    backwards.assert_code("BAD_USER_INPUT");
    assert_eq!(backwards.0["errors"][0]["path"], json!(["appKey", "usage"]));
    assert_eq!(backwards.0["errors"][0]["extensions"]["field"], "to");
}

/// The usage chart's answer, kept on PostgreSQL, is given again only while it is exact: it goes when
/// any replica flushes or prunes, and when the key or the account changes.
async fn a_kept_usage_answer_goes_when_what_it_read_changes(app: &TestApp) {
    use appkeys::service::keys::meter::UsageAnswers;
    let kept = app.store().backend() == sea_orm::DatabaseBackend::Postgres;
    let counts = || app.store().part::<UsageAnswers>().counts();
    let owner = app.owner().await;
    let partner = app.account_with_owner("partner").await;
    let partner_role = app.restricted_role(&partner).await;
    let (key, token) = app.generate_key(&partner, None, &[partner_role]).await;
    let role = app.restricted_role(&owner).await;
    let add = "mutation($k: String!, $r: [ID!]!) { addExternalAppKey(input: {key: $k, roleIds: $r}) { key } }";
    app.graphql(&owner, add, json!({ "k": key, "r": [role] })).await.data("addExternalAppKey");
    let (b, replica) = app.another_server().await;
    let b_state = replica.state().clone();
    tokio::spawn(replica.run_until_stopped(std::future::pending()));
    let here = Auth::key_for(&key, &token, "main");

    assert_eq!(totals(app, &owner, &key).await, json!({}));
    let (hits, misses) = counts();
    assert_eq!(totals(app, &owner, &key).await, json!({}));
    assert_eq!(counts(), if kept { (hits + 1, misses) } else { (0, 0) }, "asked again: the kept answer");

    // Another replica's flush: heard of here, and the next answer is read again.
    for _ in 0..2 {
        assert_eq!(status(app, &b, &here, "").await, 200);
    }
    let before = usage_version(app);
    b_state.auth.usage().flush(&b_state.store).await.expect("written");
    heard_usage_change(app, before).await;
    assert_eq!(totals(app, &owner, &key).await, json!({ "valid": 2 }));
    assert_eq!(totals(app, &owner, &key).await, json!({ "valid": 2 }));
    // This replica's own flush, and a prune that deletes: at once.
    assert_eq!(status(app, &app.address, &here, "").await, 200);
    flush(app).await;
    assert_eq!(totals(app, &owner, &key).await, json!({ "valid": 3 }));
    let before = usage_version(app);
    sea_orm::ConnectionTrait::execute_unprepared(
        app.db(),
        "UPDATE key_usage SET bucket = bucket - 86400 * 500 WHERE granularity = 2",
    )
    .await
    .expect("the days moved back past the retention");
    assert!(meter::prune(app.store(), app.store().now(), 400).await.expect("a round") >= 1);
    assert_eq!(usage_version(app), before + 1, "a prune that deleted announces it");
    // Its own announcement comes back through its listener and is not counted again (it would
    // drop answers kept since). Another replica's, sent after it, is heard after it (PostgreSQL
    // delivers notifications in commit order): once that one is heard, both were.
    assert_eq!(status(app, &b, &here, "").await, 200);
    b_state.auth.usage().flush(&b_state.store).await.expect("written");
    heard_usage_change(app, before + 1).await;
    assert_eq!(usage_version(app), if kept { before + 2 } else { before + 1 }, "each change counted once");

    // The key deleted by its owner, another account: its access here is gone with it.
    assert_eq!(totals(app, &owner, &key).await, json!({ "valid": 4 }));
    let (hits, _) = counts();
    assert_eq!(totals(app, &owner, &key).await, json!({ "valid": 4 }));
    assert_eq!(counts().0, if kept { hits + 1 } else { 0 });
    let delete = "mutation($k: String!) { deleteAppKey(key: $k) }";
    app.graphql(&partner, delete, json!({ "k": key })).await.data("deleteAppKey");
    let now = app.store().now();
    let variables = json!({ "k": key, "from": now - chrono::Duration::hours(1), "to": now + chrono::Duration::hours(1), "g": "HOUR" });
    assert!(app.graphql(&owner, USAGE, variables).await.data("appKey").is_null(), "a deleted key is unknown here");
}

/// A graceful stop writes what was counted.
async fn a_graceful_stop_writes_the_usage(app: &TestApp) {
    let owner = app.owner().await;
    let role = app.restricted_role(&owner).await;
    let (key, token) = app.generate_key(&owner, None, &[role]).await;
    let (b, replica) = app.another_server().await;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(replica.run_until_stopped(async move {
        let _ = stopped.await;
    }));
    for _ in 0..3 {
        assert_eq!(status(app, &b, &Auth::key(&key, &token), "").await, 200);
    }
    let _ = stop.send(());
    running.await.expect("joined").expect("stopped cleanly");
    assert_eq!(totals(app, &owner, &key).await, json!({ "valid": 3 }));
}

/// The addresses a key's valid requests came from: 100 told apart a day, the rest as `other`.
async fn client_addresses_are_counted_and_capped(backend: crate::helpers::Backend) {
    let app = TestApp::spawn_with(backend, |s| s.trusted_proxies = vec!["127.0.0.1/32".parse().expect("net")]).await;
    let owner = app.owner().await;
    let role = app.restricted_role(&owner).await;
    let (key, token) = app.generate_key(&owner, None, &[role]).await;
    let from = |ip: String| {
        Auth::key(&key, &token).apply(app.client.get(format!("{}/auth", app.address))).header("x-forwarded-for", ip)
    };
    for _ in 0..3 {
        assert_eq!(from("203.0.113.9".into()).send().await.expect("sent").status(), 200);
    }
    assert_eq!(from("2001:db8::7".into()).send().await.expect("sent").status(), 200);
    // A wrong token from elsewhere is no valid request: not listed.
    let wrong = Auth::key(&key, &wrong_token()).apply(app.client.get(format!("{}/auth", app.address)));
    assert_eq!(wrong.header("x-forwarded-for", "198.51.100.66").send().await.expect("sent").status(), 401);
    flush(&app).await;
    // 100 more addresses: two of them (in whichever flush fills the day) are `other`.
    for i in 0..50 {
        assert_eq!(from(format!("10.0.0.{i}")).send().await.expect("sent").status(), 200);
    }
    flush(&app).await;
    for i in 50..100 {
        assert_eq!(from(format!("10.0.0.{i}")).send().await.expect("sent").status(), 200);
    }
    flush(&app).await;
    let query = "query($k: String!) { appKey(key: $k) { clientAddresses { address count lastSeenAt } } }";
    let list = app.graphql(&owner, query, json!({ "k": key })).await.data("appKey.clientAddresses");
    let list = list.as_array().expect("a list");
    assert_eq!(list[0]["address"], "203.0.113.9", "the busiest first");
    assert_eq!(list[0]["count"], 3);
    assert!(list.iter().any(|a| a["address"] == "2001:db8::7"));
    assert!(!list.iter().any(|a| a["address"] == "198.51.100.66"));
    assert_eq!(list.len(), 101, "100 addresses and other");
    assert_eq!(list[100]["address"], "other");
    assert_eq!(list[100]["count"], 2);
    let total: u64 = list.iter().map(|a| a["count"].as_u64().expect("n")).sum();
    assert_eq!(total, 104, "every valid request is counted");
    let refused = app
        .graphql(
            &owner,
            "query($k: String!) { appKey(key: $k) { clientAddresses(days: 36) { address } } }",
            json!({ "k": key }),
        )
        .await;
    refused.assert_code("BAD_USER_INPUT");
    app.cleanup().await;
}

mod addresses {
    crate::backend_cases!(client_addresses_are_counted_and_capped);
    use super::client_addresses_are_counted_and_capped;
}

crate::backend_tests!(
    every_outcome_is_counted_exactly_across_two_replicas,
    last_use_and_inactivity_agree_with_the_valid_count,
    usage_belongs_to_the_account_it_happened_in,
    series_are_dense_across_a_day_and_a_month_end,
    hours_roll_up_into_days_and_old_days_are_pruned,
    permission_usage_marks_exactly_the_resources_used,
    the_unused_permission_filter_finds_keys_whose_roles_could_shrink,
    a_series_answers_as_field_by_field_resolution_would,
    usage_alone_answers_as_the_whole_key_does,
    a_kept_usage_answer_goes_when_what_it_read_changes,
    a_graceful_stop_writes_the_usage,
);
