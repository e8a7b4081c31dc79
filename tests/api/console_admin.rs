//! The console's administration pages in a real browser: Users, Roles, Settings and Webhooks, and a
//! key's policy, usage chart, permission hints and leaked banner. Walked as the owner and as a
//! RESTRICTED administrator (the buttons the roles do not allow are absent, and the API refuses
//! them anyway), each page checked with axe-core (vendored in `tests/assets`, never served), in the
//! light and the dark scheme and at 375 px. Screenshots go to `APPKEYS_CONSOLE_SCREENSHOTS`.
use fantoccini::{Client, Locator};
use serde_json::{json, Value};
use std::time::Duration;

use crate::browser::{wait_for, Driver};
use crate::console::{click_when_shown, error_at, fill, follow, press, screenshot, shows, tick_role};
use crate::helpers::receiver::Receiver;
use crate::helpers::{Auth, Backend, TestApp, OWNER_EMAIL, OWNER_PASSWORD};

const AXE: &str = include_str!("../assets/axe.min.js");

/// axe-core's violations on the page as it is now (WCAG 2.0/2.1 A and AA, and best practices).
async fn violations(browser: &Client) -> Vec<Value> {
    let present = browser.execute("return typeof axe !== 'undefined';", vec![]).await.expect("a check");
    if present != json!(true) {
        browser.execute(&format!("{AXE}\nreturn true;"), vec![]).await.expect("axe-core is injected");
    }
    let script = "const done = arguments[arguments.length - 1];
        axe.run(document, { runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'best-practice'] } })
          .then(r => done(r.violations.map(v => ({ id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.map(n => n.target.join(' ')).slice(0, 5) }))))
          .catch(e => done([{ id: 'axe-error', help: String(e) }]));";
    let found = browser.execute_async(script, vec![]).await.expect("axe runs");
    found.as_array().cloned().unwrap_or_default()
}

async fn accessible(browser: &Client, page: &str) {
    let found = violations(browser).await;
    assert!(found.is_empty(), "{page}: axe-core found {}", serde_json::to_string_pretty(&found).unwrap_or_default());
}

async fn sign_in(browser: &Client, app: &TestApp, email: &str, password: &str) {
    browser.goto(&format!("{}/console", app.address)).await.expect("the console opens");
    fill(browser, "input[name=account]", "main").await;
    fill(browser, "input[name=email]", email).await;
    fill(browser, "input[name=password]", password).await;
    press(browser, "Sign in").await;
    wait_for(browser, "return document.querySelector('header.top nav') ? true : null;").await;
}

async fn visit(browser: &Client, app: &TestApp, route: &str, heading: &str) {
    browser.goto(&format!("{}/console#{route}", app.address)).await.expect("navigated");
    let script = format!(
        "const h = document.querySelector('main h1'); return h && h.textContent === {} ? true : null;",
        json!(heading)
    );
    wait_for(browser, &script).await;
}

async fn press_in_dialog(browser: &Client, label: &str) {
    click_when_shown(browser, &format!("//dialog//button[normalize-space()='{label}']"), label).await;
}

async fn count(browser: &Client, css: &str) -> usize {
    browser.find_all(Locator::Css(css)).await.expect("found").len()
}

async fn nav_links(browser: &Client) -> Vec<String> {
    let links = browser
        .execute("return [...document.querySelectorAll('header.top nav a')].map(a => a.textContent);", vec![])
        .await;
    links.expect("links").as_array().expect("a list").iter().filter_map(|v| v.as_str().map(str::to_owned)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(appkeys_browser_tests), ignore = "needs APPKEYS_TEST_CHROMEDRIVER at build time")]
async fn the_admin_pages_work_for_an_owner_and_a_restricted_admin_and_pass_axe() {
    let app = TestApp::spawn_with(Backend::Sqlite, |s| s.webhook_allow_private = true).await;
    let owner = app.owner().await;
    let receiver = Receiver::start(0).await;
    let driver = Driver::start().await;
    let browser = driver.browser().await;
    browser.goto(&format!("{}/console", app.address)).await.expect("the console opens");
    wait_for(&browser, "return document.querySelector('input[name=account]') ? true : null;").await;
    accessible(&browser, "Sign in").await;
    sign_in(&browser, &app, OWNER_EMAIL, OWNER_PASSWORD).await;
    assert_eq!(
        nav_links(&browser).await,
        ["My Keys", "Application Keys", "Users", "Roles", "Settings", "Webhooks", "Audit log", "GraphiQL"]
    );
    accessible(&browser, "My Keys").await;

    visit(&browser, &app, "/app-keys", "Application Keys").await;
    accessible(&browser, "Application Keys").await;
    visit(&browser, &app, "/audit", "Audit log").await;
    accessible(&browser, "Audit log").await;

    // Users: add one with a role; the one-time password is shown once.
    follow(&browser, "Users").await;
    shows(&browser, OWNER_EMAIL).await;
    accessible(&browser, "Users").await;
    // By keyboard alone: Enter opens the dialog with the focus in its first field, Escape closes it
    // and the focus is back on the button that opened it.
    browser
        .execute(
            "[...document.querySelectorAll('main button')].find(b => b.textContent === 'Add user').focus();",
            vec![],
        )
        .await
        .expect("focused");
    browser.active_element().await.expect("the focus").send_keys("\u{E007}").await.expect("Enter");
    let focused =
        wait_for(&browser, "return document.querySelector('dialog[open]') ? document.activeElement.id : null;").await;
    assert_eq!(focused, json!("f-input-email"), "the dialog's first field has the focus");
    browser.active_element().await.expect("the focus").send_keys("\u{E00C}").await.expect("Escape");
    let back = wait_for(
        &browser,
        "return document.querySelector('dialog[open]') ? null : document.activeElement.textContent;",
    )
    .await;
    assert_eq!(back, json!("Add user"), "the focus returns to the opener");
    press(&browser, "Add user").await;
    fill(&browser, "dialog input#f-input-email", "not an email").await;
    press(&browser, "Create user").await;
    assert!(!error_at(&browser, "f-input-email-error").await.is_empty(), "the error shows at the email field");
    fill(&browser, "dialog input#f-input-email", "admin2@example.com").await;
    tick_role(&browser, "User Administrator - RESTRICTED").await;
    press(&browser, "Create user").await;
    shows(&browser, "You will not see it again").await;
    let password = wait_for(
        &browser,
        "const t = document.querySelector('#one-time-password'); return t && t.value ? t.value : null;",
    )
    .await;
    let password = password.as_str().expect("the one-time password").to_owned();
    accessible(&browser, "Users: the one-time password").await;
    press(&browser, "Done").await;
    shows(&browser, "admin2@example.com").await;
    fill(&browser, "input#user-search", "admin2").await;
    press(&browser, "Search").await;
    wait_for(&browser, "return document.querySelectorAll('main tbody tr').length === 1 ? true : null;").await;
    screenshot(&browser, "users").await;

    // Roles: a custom role from the catalogue's grouped checkboxes.
    follow(&browser, "Roles").await;
    shows(&browser, "Owner (Admin Super)").await;
    accessible(&browser, "Roles").await;
    press(&browser, "New role").await;
    fill(&browser, "dialog input#f-input-name", "Key readers").await;
    let view = "//dialog//fieldset[legend='ApiKeys']//input[@value='ApiKeys.View']";
    click_when_shown(&browser, view, "ApiKeys.View").await;
    accessible(&browser, "Roles: new role").await;
    press(&browser, "Create role").await;
    shows(&browser, "Key readers").await;
    // Who holds each role: the owner holds Owner (Admin Super); admin2 the RESTRICTED role.
    let held =
        "const row = [...document.querySelectorAll('main tbody tr')].find(r => r.textContent.includes('RESTRICTED'));
        return row ? row.querySelector('td.holders').textContent : null;";
    let held = wait_for(&browser, held).await;
    assert!(held.as_str().unwrap_or_default().contains("1 user"), "{held}");
    screenshot(&browser, "roles").await;

    // Settings: each field's effect beside it; saved.
    follow(&browser, "Settings").await;
    shows(&browser, "Renewal period (days)").await;
    accessible(&browser, "Settings").await;
    fill(&browser, "input#f-input-renewalPeriodDays", "30").await;
    press(&browser, "Save settings").await;
    shows(&browser, "Saved.").await;
    let settings = app.graphql(&owner, "{ appKeySettings { renewalPeriodDays } }", json!({})).await;
    assert_eq!(settings.data("appKeySettings.renewalPeriodDays"), 30);
    screenshot(&browser, "settings").await;

    // Webhooks: an endpoint (its secret shown once), a delivery, sent again on request.
    follow(&browser, "Webhooks").await;
    shows(&browser, "No endpoints yet.").await;
    accessible(&browser, "Webhooks").await;
    press(&browser, "Add endpoint").await;
    fill(&browser, "dialog input#f-input-url", &receiver.url).await;
    press(&browser, "Save endpoint").await;
    shows(&browser, "Copy the signing secret now").await;
    press(&browser, "Done, I stored it").await;
    let role = app.restricted_role(&owner).await;
    let (hooked, _) = app.generate_key(&owner, Some("hooked"), std::slice::from_ref(&role)).await;
    receiver.wait_for(1, Duration::from_secs(5)).await;
    follow(&browser, "Webhooks").await;
    browser.refresh().await.expect("reloaded");
    let redeliver = format!("//button[@aria-label='Redeliver app_key.generated for {hooked}']");
    click_when_shown(&browser, &redeliver, "Redeliver").await;
    receiver.wait_for(2, Duration::from_secs(5)).await;
    let audit =
        app.graphql(&owner, "{ auditEvents(filter: {action: \"webhook.redeliver\"}) { totalCount } }", json!({})).await;
    assert_eq!(audit.data("auditEvents.totalCount"), 1);
    accessible(&browser, "Webhooks with deliveries").await;
    screenshot(&browser, "webhooks").await;

    // A key's page: usage chart, permission hints, the policy editor with errors at their fields.
    let profiles = app.custom_role(&owner, "Profiles", &["LicenseManager.SaveAccessProfile"]).await;
    let (key, token) = app.generate_key(&owner, Some("gated"), &[role.clone(), profiles]).await;
    let as_key = Auth::key(&key, &token);
    for resource in ["", "?resource=ApiKeys.View"] {
        assert_eq!(app.get(&format!("/auth{resource}"), &as_key).await.status(), 200);
    }
    app.state.auth.usage().flush(app.store()).await.expect("usage written");
    visit(&browser, &app, &format!("/keys/{key}"), "gated").await;
    wait_for(&browser, "return document.querySelector('svg.chart rect') ? true : null;").await;
    press(&browser, "By hour").await;
    shows(&browser, "Usage, last 48 hours").await;
    wait_for(&browser, "return document.querySelector('svg.chart rect') ? true : null;").await;
    press(&browser, "By day").await;
    shows(&browser, "Usage, last 30 days").await;
    shows(&browser, "permissions unused for 90 days").await;
    shows(&browser, "Remove unused roles").await;
    press(&browser, "Remove unused roles").await;
    press_in_dialog(&browser, "Remove unused roles").await;
    wait_for(&browser, "return document.querySelector('dialog') ? null : true;").await;
    let roles =
        app.graphql(&owner, "query($k: String!) { appKey(key: $k) { roles { name } } }", json!({ "k": key })).await;
    assert_eq!(
        roles.data("appKey.roles"),
        json!([{ "name": "User Administrator - RESTRICTED" }]),
        "the unused role is gone"
    );
    // The allowlist suggested from the addresses the key was used from.
    press(&browser, "Suggest from the last 30 days").await;
    shows(&browser, "Used from 127.0.0.1").await;
    press(&browser, "Use these").await;
    let suggested = wait_for(
        &browser,
        "const t = document.querySelector('textarea#f-input-allowedIps'); return t && t.value ? t.value : null;",
    )
    .await;
    assert_eq!(suggested, json!("127.0.0.1"));
    press(&browser, "Add a rate limit").await;
    fill(&browser, "input#f-input-rateLimits-0--limit", "0").await;
    press(&browser, "Save policy").await;
    let error = error_at(&browser, "f-input-rateLimits-0--limit-error").await;
    assert!(!error.is_empty(), "the error shows at the limit's field");
    fill(&browser, "input#f-input-rateLimits-0--limit", "100").await;
    fill(&browser, "textarea#f-input-allowedIps", "127.0.0.1").await;
    press(&browser, "Save policy").await;
    shows(&browser, "Policy saved.").await;
    let policy = app
        .graphql(
            &owner,
            "query($k: String!) { appKey(key: $k) { policy { allowedIps rateLimits { limit } } } }",
            json!({ "k": key }),
        )
        .await;
    assert_eq!(
        policy.data("appKey.policy"),
        json!({ "allowedIps": ["127.0.0.1/32"], "rateLimits": [{ "limit": 100 }] })
    );
    accessible(&browser, "A key's page").await;
    browser.execute("document.querySelector('#usage-title').scrollIntoView();", vec![]).await.expect("scrolled");
    screenshot(&browser, "key-policy-usage").await;

    // Leaked: revoked by whoever held it; the banner says what to do.
    let revoked = app
        .client
        .post(format!("{}/revoke", app.address))
        .form(&[("token", token.as_str())])
        .send()
        .await
        .expect("sent");
    assert_eq!(revoked.status(), 200);
    browser.refresh().await.expect("reloaded");
    shows(&browser, "This key's token leaked.").await;
    accessible(&browser, "A leaked key").await;
    screenshot(&browser, "key-leaked").await;

    // At 375 px wide, and in the dark scheme.
    browser.set_window_size(375, 812).await.expect("resized");
    visit(&browser, &app, "/my-keys", "My Keys").await;
    accessible(&browser, "My Keys at 375 px").await;
    let overflow = browser
        .execute("return document.documentElement.scrollWidth - document.documentElement.clientWidth;", vec![])
        .await;
    assert_eq!(overflow.expect("measured"), json!(0), "nothing wider than the screen");
    screenshot(&browser, "my-keys-375").await;
    browser.close().await.expect("closed");

    let dark = driver.browser_with(&["--force-dark-mode", "--blink-settings=preferredColorScheme=0"]).await;
    sign_in(&dark, &app, OWNER_EMAIL, OWNER_PASSWORD).await;
    let scheme = dark.execute("return matchMedia('(prefers-color-scheme: dark)').matches;", vec![]).await;
    assert_eq!(scheme.expect("a scheme"), json!(true), "the browser prefers dark");
    visit(&dark, &app, &format!("/keys/{key}"), "gated").await;
    wait_for(&dark, "return document.querySelector('svg.chart') ? true : null;").await;
    accessible(&dark, "A key's page, dark").await;
    screenshot(&dark, "key-dark").await;
    visit(&dark, &app, "/webhooks", "Webhooks").await;
    accessible(&dark, "Webhooks, dark").await;
    dark.close().await.expect("closed");

    // The RESTRICTED administrator: the same pages, without what the role does not allow.
    let restricted = driver.browser().await;
    sign_in(&restricted, &app, "admin2@example.com", &password).await;
    visit(&restricted, &app, "/roles", "Roles").await;
    shows(&restricted, "Key readers").await;
    assert_eq!(count(&restricted, "main .title-row button").await, 0, "no New role");
    assert_eq!(count(&restricted, "main td.row-actions button").await, 0, "no Edit or Delete");
    accessible(&restricted, "Roles, restricted").await;
    visit(&restricted, &app, "/settings", "Settings").await;
    shows(&restricted, "Changing settings needs ApiKeys.EditSettings.").await;
    assert_eq!(count(&restricted, "main input:not([disabled])").await, 0, "read-only");
    visit(&restricted, &app, "/webhooks", "Webhooks").await;
    shows(&restricted, "app_key.generated").await;
    assert_eq!(count(&restricted, "main button.primary").await, 0, "no Add endpoint");
    assert_eq!(count(&restricted, "main td.row-actions button").await, 0, "no Redeliver, no Delete");
    visit(&restricted, &app, "/users", "Users").await;
    accessible(&restricted, "Users, restricted").await;
    // Taking the Owner role away would take resources this administrator lacks: refused at the roles.
    let owner_roles = format!("//button[@aria-label='Change roles of {OWNER_EMAIL}']");
    click_when_shown(&restricted, &owner_roles, "Roles").await;
    tick_role(&restricted, "Owner (Admin Super)").await;
    press(&restricted, "Save roles").await;
    let refused = error_at(&restricted, "roles-error").await;
    assert!(refused.contains("LicenseManager.SaveAccessProfile"), "{refused}");
    accessible(&restricted, "Users, a refused role change").await;
    restricted.close().await.expect("closed");
    let session = app.login_token("main", "admin2@example.com", &password).await;
    let as_restricted = Auth::Bearer(session);
    let create = "mutation { createRole(input: {name: \"sneaky\", resourceIds: [\"ApiKeys.View\"]}) { id } }";
    app.graphql(&as_restricted, create, json!({})).await.assert_code("FORBIDDEN");
    let settings = "mutation { updateAppKeySettings(input: {renewalPeriodDays: 5}) { renewalPeriodDays } }";
    app.graphql(&as_restricted, settings, json!({})).await.assert_code("FORBIDDEN");
    app.cleanup().await;
}
