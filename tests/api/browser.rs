//! A real browser (Debian's chromium, driven through chromedriver with WebDriver) against the real
//! server: GraphiQL loads from the binary alone — no request leaves the server's origin — and runs a
//! query through its UI with a session header. Runs when `APPKEYS_TEST_CHROMEDRIVER` names the
//! chromedriver binary at build time (CI installs chromium and chromium-driver and sets it).
use crate::helpers::process::{free_port, listening, ChildGuard};
use crate::helpers::{Auth, Backend, TestApp};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const CHROMEDRIVER_ENV: &str = "APPKEYS_TEST_CHROMEDRIVER";

/// chromedriver on a free port; killed when dropped.
pub struct Driver {
    _child: ChildGuard,
    pub url: String,
}

impl Driver {
    pub async fn start() -> Self {
        let binary =
            std::env::var(CHROMEDRIVER_ENV).unwrap_or_else(|_| panic!("{CHROMEDRIVER_ENV} names chromedriver"));
        let port = free_port();
        let child = ChildGuard::spawn(
            Command::new(&binary).arg(format!("--port={port}")).stdout(Stdio::null()).stderr(Stdio::null()),
            &format!("chromedriver ({CHROMEDRIVER_ENV})"),
        );
        let driver = Self { _child: child, url: format!("http://127.0.0.1:{port}") };
        assert!(listening(port, Duration::from_secs(5)).await, "chromedriver did not listen on {port}");
        driver
    }

    /// A headless chromium session.
    pub async fn browser(&self) -> Client {
        self.browser_with(&[]).await
    }

    /// A headless chromium session with more command-line switches (a color scheme, a size).
    pub async fn browser_with(&self, switches: &[&str]) -> Client {
        // Two TLS backends are linked in (the WebDriver client's and the database driver's): pick one.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut capabilities = serde_json::Map::new();
        let mut args = vec![
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--window-size=1280,900",
        ];
        args.extend_from_slice(switches);
        let mut options = json!({ "args": args });
        if let Ok(binary) = std::env::var("APPKEYS_TEST_CHROMIUM") {
            options["binary"] = Value::String(binary);
        }
        capabilities.insert("goog:chromeOptions".into(), options);
        ClientBuilder::rustls()
            .expect("a TLS setup")
            .capabilities(capabilities)
            .connect(&self.url)
            .await
            .expect("a browser session")
    }
}

/// Waits up to 20 s for the script to return something other than null.
pub async fn wait_for(browser: &Client, script: &str) -> Value {
    let started = Instant::now();
    loop {
        let value = browser.execute(script, vec![]).await.expect("the script runs");
        if !value.is_null() {
            return value;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "timed out waiting for: {script}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every URL the page loaded, from the browser's own record.
pub async fn loaded_urls(browser: &Client) -> Vec<String> {
    let entries = browser
        .execute("return performance.getEntriesByType('resource').map(e => e.name).concat([location.href]);", vec![])
        .await
        .expect("the script runs");
    entries.as_array().expect("a list").iter().filter_map(|v| v.as_str().map(str::to_owned)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(appkeys_browser_tests), ignore = "needs APPKEYS_TEST_CHROMEDRIVER at build time")]
async fn graphiql_runs_a_query_offline_in_a_real_browser() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let Auth::Bearer(session) = app.owner().await else { unreachable!() };
    let driver = Driver::start().await;
    let browser = driver.browser().await;
    browser.goto(&format!("{}/", app.address)).await.expect("the page opens");
    browser.wait().for_element(Locator::Css(".graphiql-container")).await.expect("GraphiQL renders");

    // The query editor and the headers editor are CodeMirror instances: fill them, then press Run.
    let query = "{ viewer { account user { email } } }";
    wait_for(&browser, "return document.querySelector('.graphiql-query-editor .CodeMirror') ? true : null;").await;
    browser
        .execute(
            "document.querySelector('.graphiql-query-editor .CodeMirror').CodeMirror.setValue(arguments[0]);",
            vec![json!(query)],
        )
        .await
        .expect("the query is typed");
    let headers_tab =
        browser.find(Locator::XPath("//button[normalize-space()='Headers']")).await.expect("a Headers tab");
    headers_tab.click().await.expect("the Headers tab opens");
    wait_for(&browser, "return document.querySelector('.graphiql-editor-tool .graphiql-editor:not(.hidden) .CodeMirror') ? true : null;").await;
    let headers = json!({ "Authorization": format!("Bearer {session}") }).to_string();
    browser
        .execute(
            "document.querySelector('.graphiql-editor-tool .graphiql-editor:not(.hidden) .CodeMirror').CodeMirror.setValue(arguments[0]);",
            vec![json!(headers)],
        )
        .await
        .expect("the headers are typed");
    browser.find(Locator::Css(".graphiql-execute-button")).await.expect("a Run button").click().await.expect("Run");
    let result = wait_for(
        &browser,
        "const r = document.querySelector('.result-window .CodeMirror'); \
         const t = r && r.CodeMirror.getValue(); return t && t.includes('\"data\"') ? t : null;",
    )
    .await;
    let result: Value = serde_json::from_str(result.as_str().expect("text")).expect("JSON in the result pane");
    assert_eq!(result["data"]["viewer"]["account"], "main", "{result}");
    assert_eq!(result["data"]["viewer"]["user"]["email"], crate::helpers::OWNER_EMAIL);

    for url in loaded_urls(&browser).await {
        assert!(url.starts_with(&app.address), "the page loaded {url}, outside the server");
    }
    browser.close().await.expect("the browser closes");
    app.cleanup().await;
}
