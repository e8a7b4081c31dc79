//! A real gateway: nginx (`auth_request`) in front of a tiny upstream, asking appkeys' `GET /auth`.
//! Runs when `APPKEYS_TEST_NGINX` names the nginx binary at build time (CI installs it and sets it);
//! otherwise it is reported as ignored.
use crate::helpers::{Auth, Backend, TestApp};
use axum::http::HeaderMap;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};
use std::process::Command;
use std::time::Duration;

use crate::helpers::process::{free_port, listening, ChildGuard};

const NGINX_ENV: &str = "APPKEYS_TEST_NGINX";

struct Nginx {
    _child: ChildGuard,
    port: u16,
    _dir: tempfile::TempDir,
}

/// The upstream echoes the identity headers the gateway added.
async fn start_upstream() -> u16 {
    async fn echo(headers: HeaderMap) -> Json<Value> {
        let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
        Json(json!({
            "account": get("x-account"),
            "appKey": get("x-appkey"),
            "resources": get("x-resources"),
            "tokenSeen": headers.contains_key("x-api-apptoken"),
        }))
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("upstream binds");
    let port = listener.local_addr().expect("address").port();
    let router = Router::new().fallback(get(echo));
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    port
}

/// The snippet the README ships, with this test's ports.
fn nginx_conf(dir: &std::path::Path, port: u16, appkeys: &str, upstream: u16) -> String {
    let d = dir.display();
    format!(
        r#"
worker_processes 1;
error_log {d}/error.log warn;
pid {d}/nginx.pid;
events {{ worker_connections 256; }}
http {{
  access_log off;
  client_body_temp_path {d}/body; proxy_temp_path {d}/proxy; fastcgi_temp_path {d}/fastcgi;
  uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;
  server {{
    listen 127.0.0.1:{port};

    location / {{
      auth_request /_appkeys;
      auth_request_set $appkeys_account $upstream_http_x_account;
      auth_request_set $appkeys_key $upstream_http_x_appkey;
      auth_request_set $appkeys_resources $upstream_http_x_resources;
      proxy_set_header X-Account $appkeys_account;
      proxy_set_header X-AppKey $appkeys_key;
      proxy_set_header X-Resources $appkeys_resources;
      proxy_set_header X-API-AppToken "";
      proxy_set_header X-VTEX-API-AppToken "";
      proxy_pass http://127.0.0.1:{upstream};
    }}

    location /orders/ {{
      auth_request /_appkeys_orders;
      auth_request_set $appkeys_account $upstream_http_x_account;
      proxy_set_header X-Account $appkeys_account;
      proxy_set_header X-API-AppToken "";
      proxy_pass http://127.0.0.1:{upstream};
    }}

    location = /_appkeys {{
      internal;
      proxy_pass {appkeys}/auth;
      proxy_pass_request_body off;
      proxy_set_header Content-Length "";
    }}

    location = /_appkeys_orders {{
      internal;
      proxy_pass {appkeys}/auth?resource=Orders.Read;
      proxy_pass_request_body off;
      proxy_set_header Content-Length "";
    }}
  }}
}}
"#
    )
}

async fn start_nginx(binary: &str, appkeys: &str, upstream: u16) -> Nginx {
    start_nginx_with(binary, appkeys, upstream, nginx_conf).await
}

/// nginx with the configuration `conf` writes for its directory, port, appkeys and upstream.
async fn start_nginx_with(
    binary: &str,
    appkeys: &str,
    upstream: u16,
    conf: fn(&std::path::Path, u16, &str, u16) -> String,
) -> Nginx {
    let dir = tempfile::tempdir().expect("nginx dir");
    let port = free_port();
    let conf_path = dir.path().join("nginx.conf");
    std::fs::write(&conf_path, conf(dir.path(), port, appkeys, upstream)).expect("nginx.conf");
    let child = ChildGuard::spawn(
        Command::new(binary)
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(&conf_path)
            .arg("-g")
            .arg("daemon off; master_process off;")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null()),
        &format!("nginx ({NGINX_ENV})"),
    );
    let nginx = Nginx { _child: child, port, _dir: dir };
    assert!(listening(port, Duration::from_secs(5)).await, "nginx did not listen on {port}");
    nginx
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(appkeys_nginx_tests), ignore = "needs APPKEYS_TEST_NGINX at build time")]
async fn nginx_auth_request_passes_valid_keys_and_stops_the_rest() {
    let binary = std::env::var(NGINX_ENV).unwrap_or_else(|_| panic!("{NGINX_ENV} names the nginx binary"));
    let app = TestApp::spawn(Backend::Sqlite).await;
    let owner = app.owner().await;
    let registered = app
        .graphql(&owner, "mutation { registerResource(id: \"Orders.Read\", name: \"Read orders\") { id } }", json!({}))
        .await;
    assert_eq!(registered.data("registerResource.id"), "Orders.Read");
    let orders = app.custom_role(&owner, "Orders reader", &["Orders.Read"]).await;
    let restricted = app.restricted_role(&owner).await;
    let (key, token) = app.generate_key(&owner, None, &[restricted]).await;
    let (reader, reader_token) = app.generate_key(&owner, None, &[orders]).await;

    let upstream = start_upstream().await;
    let nginx = start_nginx(&binary, &app.address, upstream).await;
    let gateway = format!("http://127.0.0.1:{}", nginx.port);
    let call = |path: &str, auth: Auth| {
        let request = app.client.get(format!("{gateway}{path}"));
        async move { auth.apply(request).send().await.expect("through nginx") }
    };

    let passed = call("/hello", Auth::key(&key, &token)).await;
    assert_eq!(passed.status(), 200);
    let seen: Value = passed.json().await.expect("echo");
    assert_eq!(seen["account"], "main");
    assert_eq!(seen["appKey"], key.as_str());
    assert!(seen["resources"].as_str().is_some_and(|r| r.contains("LicenseManager.SaveUser")));
    assert_eq!(seen["tokenSeen"], false, "the gateway strips the token before the upstream");

    assert_eq!(call("/hello", Auth::None).await.status(), 401);
    assert_eq!(call("/hello", Auth::key(&key, "akt_wrong")).await.status(), 401);
    assert_eq!(call("/orders/1", Auth::key(&key, &token)).await.status(), 403, "missing Orders.Read");
    let allowed = call("/orders/1", Auth::key(&reader, &reader_token)).await;
    assert_eq!(allowed.status(), 200);

    app.graphql(&owner, "mutation($k: String!) { deactivateAppKey(key: $k) { key } }", json!({ "k": key }))
        .await
        .data("deactivateAppKey");
    assert_eq!(call("/hello", Auth::key(&key, &token)).await.status(), 401, "a deactivated key is stopped");
    drop(nginx);
    app.cleanup().await;
}

/// The policy snippet the README ships: the client's address forwarded, and refusals by a key's
/// policy (429 with `Retry-After`, the `RateLimit` fields, `X-Credits-Remaining`) passed through
/// nginx's `auth_request`, which turns every answer but 2xx, 401 and 403 into 500 by itself.
fn nginx_policy_conf(dir: &std::path::Path, port: u16, appkeys: &str, upstream: u16) -> String {
    let d = dir.display();
    format!(
        r#"
worker_processes 1;
error_log {d}/error.log warn;
pid {d}/nginx.pid;
events {{ worker_connections 256; }}
http {{
  access_log off;
  client_body_temp_path {d}/body; proxy_temp_path {d}/proxy; fastcgi_temp_path {d}/fastcgi;
  uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;
  server {{
    listen 127.0.0.1:{port};

    location / {{
      auth_request /_appkeys;
      auth_request_set $appkeys_status $upstream_status;
      auth_request_set $appkeys_code $upstream_http_x_appkeys_code;
      auth_request_set $appkeys_retry_after $upstream_http_retry_after;
      auth_request_set $appkeys_ratelimit $upstream_http_ratelimit;
      auth_request_set $appkeys_ratelimit_policy $upstream_http_ratelimit_policy;
      auth_request_set $appkeys_credits $upstream_http_x_credits_remaining;
      add_header RateLimit $appkeys_ratelimit always;
      add_header RateLimit-Policy $appkeys_ratelimit_policy always;
      add_header X-Credits-Remaining $appkeys_credits always;
      error_page 500 = @appkeys_refused;
      proxy_set_header X-API-AppToken "";
      proxy_set_header X-VTEX-API-AppToken "";
      proxy_pass http://127.0.0.1:{upstream};
    }}

    location @appkeys_refused {{
      default_type application/json;
      add_header Retry-After $appkeys_retry_after always;
      add_header RateLimit $appkeys_ratelimit always;
      add_header RateLimit-Policy $appkeys_ratelimit_policy always;
      add_header X-Credits-Remaining $appkeys_credits always;
      if ($appkeys_status = 429) {{
        return 429 '{{"errors":[{{"message":"refused by the key\'s policy","extensions":{{"code":"$appkeys_code"}}}}]}}';
      }}
      return 503 '{{"errors":[{{"message":"unavailable","extensions":{{"code":"UNAVAILABLE"}}}}]}}';
    }}

    location = /_appkeys {{
      internal;
      proxy_pass {appkeys}/auth;
      proxy_pass_request_body off;
      proxy_set_header Content-Length "";
      proxy_set_header X-Real-IP $remote_addr;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
    }}
  }}
}}
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(appkeys_nginx_tests), ignore = "needs APPKEYS_TEST_NGINX at build time")]
async fn nginx_passes_policy_refusals_through() {
    let binary = std::env::var(NGINX_ENV).unwrap_or_else(|_| panic!("{NGINX_ENV} names the nginx binary"));
    // nginx (on 127.0.0.1) is the trusted proxy: the client is the address it forwards.
    let app =
        TestApp::spawn_with(Backend::Sqlite, |s| s.trusted_proxies = vec!["127.0.0.1/32".parse().expect("net")]).await;
    let owner = app.owner().await;
    let restricted = app.restricted_role(&owner).await;
    let set = "mutation($k: String!, $p: AppKeyPolicyInput!) { setAppKeyPolicy(key: $k, input: $p) { key } }";
    let (limited, limited_token) = app.generate_key(&owner, None, std::slice::from_ref(&restricted)).await;
    let policy = json!({ "rateLimits": [{ "name": "minute", "limit": 1, "periodSeconds": 60 }] });
    app.graphql(&owner, set, json!({ "k": limited, "p": policy })).await.data("setAppKeyPolicy");
    let (metered, metered_token) = app.generate_key(&owner, None, std::slice::from_ref(&restricted)).await;
    app.graphql(&owner, set, json!({ "k": metered, "p": { "credits": { "remaining": 1 } } }))
        .await
        .data("setAppKeyPolicy");
    let (fenced, fenced_token) = app.generate_key(&owner, None, &[restricted]).await;
    app.graphql(&owner, set, json!({ "k": fenced, "p": { "allowedIps": ["192.0.2.0/24"] } }))
        .await
        .data("setAppKeyPolicy");

    let upstream = start_upstream().await;
    let nginx = start_nginx_with(&binary, &app.address, upstream, nginx_policy_conf).await;
    let port = nginx.port;
    let call = |auth: Auth| {
        let request = app.client.get(format!("http://127.0.0.1:{port}/hello"));
        async move { auth.apply(request).send().await.expect("through nginx") }
    };

    let first = call(Auth::key(&limited, &limited_token)).await;
    assert_eq!(first.status(), 200);
    assert!(first.headers().get("ratelimit").is_some_and(|v| v.to_str().unwrap_or("").contains("r=0")));
    let refused = call(Auth::key(&limited, &limited_token)).await;
    assert_eq!(refused.status(), 429, "passed through, not turned into 500");
    assert!(refused.headers().get("retry-after").is_some());
    assert!(refused.headers().get("ratelimit-policy").is_some());
    let error: Value = refused.json().await.expect("a JSON body");
    assert_eq!(error["errors"][0]["extensions"]["code"], "RATE_LIMITED");

    assert_eq!(call(Auth::key(&metered, &metered_token)).await.status(), 200);
    let spent = call(Auth::key(&metered, &metered_token)).await;
    assert_eq!(spent.status(), 429);
    assert_eq!(spent.headers().get("x-credits-remaining").and_then(|v| v.to_str().ok()), Some("0"));
    let error: Value = spent.json().await.expect("a JSON body");
    assert_eq!(error["errors"][0]["extensions"]["code"], "USAGE_EXCEEDED");

    // The client's address (127.0.0.1 here) reaches appkeys through X-Forwarded-For.
    assert_eq!(call(Auth::key(&fenced, &fenced_token)).await.status(), 403, "not in the allowlist");
    let to_loopback = json!({ "k": fenced, "p": { "allowedIps": ["127.0.0.1"] } });
    app.graphql(&owner, set, to_loopback).await.data("setAppKeyPolicy");
    assert_eq!(call(Auth::key(&fenced, &fenced_token)).await.status(), 200);
    app.cleanup().await;
}
