//! The web console in a real browser (Debian's chromium through chromedriver), offline: sign in as
//! the bootstrap owner, generate a key with a role and copy its token once, see it in both
//! listings, deactivate and activate it, add another account's key (after a refused attempt whose
//! error shows at its field), export, read the audit log, sign out. Screenshots of each page go to
//! `APPKEYS_CONSOLE_SCREENSHOTS` when set (README's images come from there).
use fantoccini::{Client, Locator};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

use crate::browser::{loaded_urls, wait_for, Driver};
use crate::helpers::{Auth, Backend, TestApp, OWNER_EMAIL, OWNER_PASSWORD};

pub(crate) async fn fill(browser: &Client, css: &str, text: &str) {
    let field = browser.wait().for_element(Locator::Css(css)).await.unwrap_or_else(|e| panic!("{css}: {e}"));
    shown(&field, css).await;
    field.clear().await.expect("cleared");
    field.send_keys(text).await.expect("typed");
}

/// Clicks the button labelled `label` once it is shown: a dialog's buttons are in the page a moment
/// before the dialog opens (`showModal` runs after the render), and a click then would miss.
pub(crate) async fn press(browser: &Client, label: &str) {
    click_when_shown(browser, &format!("//button[normalize-space()='{label}']"), label).await;
}

/// Clicks the element at `xpath` (called `label` in failures) once it is shown.
pub(crate) async fn click_when_shown(browser: &Client, xpath: &str, label: &str) {
    let element = browser.wait().for_element(Locator::XPath(xpath)).await.unwrap_or_else(|e| panic!("{label}: {e}"));
    shown(&element, label).await;
    element.click().await.unwrap_or_else(|e| panic!("clicking {label}: {e}"));
}

/// Waits until the element is shown (at most 10 s).
async fn shown(element: &fantoccini::elements::Element, label: &str) {
    let started = Instant::now();
    while !element.is_displayed().await.unwrap_or(false) {
        assert!(started.elapsed() < Duration::from_secs(10), "{label} is never shown");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

pub(crate) async fn follow(browser: &Client, text: &str) {
    click_when_shown(browser, &format!("//a[normalize-space()='{text}']"), text).await;
}

/// Waits until the page shows `text`.
pub(crate) async fn shows(browser: &Client, text: &str) {
    let script = format!("return document.body.innerText.includes({}) ? true : null;", json!(text));
    wait_for(browser, &script).await;
}

/// The message shown at a field, once one is (`id`: the error element's, e.g. `f-input-key-error`).
pub(crate) async fn error_at(browser: &Client, id: &str) -> String {
    let script = format!("const e = document.getElementById({}); return e ? e.textContent : null;", json!(id));
    wait_for(browser, &script).await.as_str().unwrap_or_default().to_owned()
}

/// Ticks the checkbox of a role by name (inside the open dialog).
pub(crate) async fn tick_role(browser: &Client, role: &str) {
    click_when_shown(browser, &format!("//dialog//label[normalize-space()='{role}']/input"), role).await;
}

pub(crate) async fn screenshot(browser: &Client, name: &str) {
    let png = browser.screenshot().await.expect("a screenshot");
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    if let Ok(dir) = std::env::var("APPKEYS_CONSOLE_SCREENSHOTS") {
        std::fs::create_dir_all(&dir).expect("the screenshot directory");
        std::fs::write(format!("{dir}/{name}.png"), png).expect("the screenshot is written");
    }
}

/// How many reads `/graphql` answered from a persisted query's hash alone (this process's count).
async fn persisted_hits(app: &TestApp) -> f64 {
    let metrics = app.get("/metrics", &Auth::None).await.text().await.expect("the metrics");
    metrics
        .lines()
        .filter(|line| line.starts_with("appkeys_graphql_persisted_queries_total") && line.contains("outcome=\"hit\""))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

async fn body_text(browser: &Client) -> String {
    let value = browser.execute("return document.documentElement.outerHTML + JSON.stringify([...document.querySelectorAll('input')].map(i => i.value));", vec![]).await.expect("the page");
    value.as_str().unwrap_or_default().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(appkeys_browser_tests), ignore = "needs APPKEYS_TEST_CHROMEDRIVER at build time")]
async fn the_console_walks_the_seed_flows_in_a_real_browser() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let partner = app.account_with_owner("partner").await;
    let partner_role = app.restricted_role(&partner).await;
    let (partner_key, _) = app.generate_key(&partner, Some("partner's"), &[partner_role]).await;
    let driver = Driver::start().await;
    let browser = driver.browser().await;
    let hits_before = persisted_hits(&app).await;

    // Sign in.
    browser.goto(&format!("{}/console", app.address)).await.expect("the console opens");
    fill(&browser, "input[name=account]", "main").await;
    fill(&browser, "input[name=email]", OWNER_EMAIL).await;
    fill(&browser, "input[name=password]", "not the password").await;
    screenshot(&browser, "login").await;
    press(&browser, "Sign in").await;
    shows(&browser, "authentication failed").await;
    fill(&browser, "input[name=password]", OWNER_PASSWORD).await;
    press(&browser, "Sign in").await;
    shows(&browser, "No keys yet.").await;

    // Generate New: label, a role; the token is shown once, copied, then gone from the page.
    press(&browser, "Generate New").await;
    fill(&browser, "dialog input#f-input-label", "ERP integration").await;
    tick_role(&browser, "User Administrator - RESTRICTED").await;
    press(&browser, "Generate").await;
    shows(&browser, "You will not see it again").await;
    let token =
        wait_for(&browser, "const t = document.querySelector('#token'); return t && t.value ? t.value : null;").await;
    let token = token.as_str().expect("the token").to_owned();
    let key =
        wait_for(&browser, "const k = document.querySelector('dialog .key-value'); return k ? k.textContent : null;")
            .await;
    let key = key.as_str().expect("the key").to_owned();
    press(&browser, "Copy").await;
    shows(&browser, "Copied").await;
    screenshot(&browser, "generate-new").await;
    press(&browser, "Done, I stored it").await;
    shows(&browser, "ERP integration").await;
    // Focus goes back to what opened the dialog (keyboard users stay where they were).
    let focused = browser.execute("return document.activeElement.textContent;", vec![]).await.expect("focus");
    assert_eq!(focused, json!("Generate New"));
    assert!(!body_text(&browser).await.contains(&token), "the token left the page with its reveal");
    // The token works, with the role chosen in the form.
    let as_key = Auth::key(&key, &token);
    let viewer = app.graphql(&as_key, "{ viewer { account appKey } }", json!({})).await.data("viewer");
    assert_eq!(viewer, json!({ "account": "main", "appKey": key }));
    screenshot(&browser, "my-keys").await;

    // Application Keys lists it too; add another account's key (a malformed one first).
    follow(&browser, "Application Keys").await;
    shows(&browser, &key).await;
    press(&browser, "Add 3rd Party Key").await;
    fill(&browser, "dialog input#f-input-key", "not a key").await;
    tick_role(&browser, "User Administrator - RESTRICTED").await;
    press(&browser, "Add key").await;
    assert!(!error_at(&browser, "f-input-key-error").await.is_empty(), "the error shows at the key field");
    fill(&browser, "dialog input#f-input-key", &partner_key).await;
    press(&browser, "Add key").await;
    shows(&browser, "3rd party").await;
    shows(&browser, &partner_key).await;
    screenshot(&browser, "application-keys").await;

    // Key details: deactivate, then activate.
    follow(&browser, &key).await;
    shows(&browser, "Can call APIs").await;
    press(&browser, "Deactivate").await;
    wait_for(&browser, "return document.querySelector('.title-row .status-inactive') ? true : null;").await;
    let refused = app.graphql(&as_key, "{ viewer { account } }", json!({})).await;
    refused.assert_code("UNAUTHENTICATED");
    screenshot(&browser, "key-details").await;
    press(&browser, "Activate").await;
    wait_for(&browser, "return document.querySelector('.title-row .status-active') ? true : null;").await;
    assert_eq!(app.graphql(&as_key, "{ viewer { account } }", json!({})).await.data("viewer.account"), "main");

    // Export through the single-use link.
    follow(&browser, "My Keys").await;
    press(&browser, "Export CSV").await;
    let started = Instant::now();
    loop {
        let used: i64 = app.scalar("SELECT COUNT(*) FROM download_tickets WHERE used_at IS NOT NULL").await;
        if used == 1 {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "the export link was not fetched");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The audit log shows what happened.
    browser.goto(&format!("{}/console#/audit", app.address)).await.expect("the audit page");
    shows(&browser, "key.activate").await;
    shows(&browser, "key.add_external").await;
    screenshot(&browser, "audit-log").await;

    // Edit roles, renew and finish, then delete (with its typed confirmation).
    follow(&browser, "My Keys").await;
    follow(&browser, "ERP integration").await;
    press(&browser, "Edit roles").await;
    tick_role(&browser, "Owner (Admin Super)").await;
    press(&browser, "Save roles").await;
    shows(&browser, "Owner (Admin Super), User Administrator - RESTRICTED").await;
    press(&browser, "Renew token").await;
    press(&browser, "Renew").await;
    let renewed =
        wait_for(&browser, "const t = document.querySelector('#token'); return t && t.value ? t.value : null;").await;
    let renewed = renewed.as_str().expect("the new token").to_owned();
    assert_ne!(renewed, token);
    press(&browser, "Done, I stored it").await;
    shows(&browser, "pending since").await;
    press(&browser, "Finish renewal").await;
    wait_for(&browser, "return document.body.innerText.includes('pending since') ? null : true;").await;
    app.graphql(&as_key, "{ viewer { account } }", json!({})).await.assert_code("UNAUTHENTICATED");
    let as_renewed = Auth::key(&key, &renewed);
    assert_eq!(app.graphql(&as_renewed, "{ viewer { account } }", json!({})).await.data("viewer.account"), "main");
    press(&browser, "Delete").await;
    let confirm = "//dialog//button[normalize-space()='Delete key']";
    let disabled = browser.find(Locator::XPath(confirm)).await.expect("the confirm button").attr("disabled").await;
    assert!(disabled.expect("an attribute").is_some(), "disabled until the key is typed");
    fill(&browser, "dialog input#f-confirm", &key).await;
    press(&browser, "Delete key").await;
    shows(&browser, "No keys yet.").await;
    app.graphql(&as_renewed, "{ viewer { account } }", json!({})).await.assert_code("UNAUTHENTICATED");

    // The session is in sessionStorage, nothing in localStorage; nothing came from elsewhere.
    let storage = browser
        .execute("return [sessionStorage.getItem('appkeys.session') !== null, localStorage.length];", vec![])
        .await
        .expect("storage");
    assert_eq!(storage, json!([true, 0]));
    for url in loaded_urls(&browser).await {
        assert!(url.starts_with(&app.address), "the console loaded {url}, outside the server");
    }
    // Its reads went as persisted queries: a hash alone, the text sent once per document.
    let hits = persisted_hits(&app).await - hits_before;
    assert!(hits >= 5.0, "{hits} reads answered from a persisted query's hash");
    press(&browser, "Sign out").await;
    shows(&browser, "You signed out.").await;
    let gone: Value =
        browser.execute("return sessionStorage.getItem('appkeys.session');", vec![]).await.expect("storage");
    assert_eq!(gone, Value::Null);
    browser.close().await.expect("the browser closes");
    app.cleanup().await;
}
