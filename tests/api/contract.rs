//! The frontend contract: one error shape everywhere (codes, one-line messages, no `data` on request
//! errors, `extensions.field` on bad input), no-op changes that write nothing, `/auth`'s answers to
//! gateway mistakes, CORS exposure, a first start that cannot lock the operator out, and a CLI that
//! says what is wrong.
use crate::helpers::process::{free_port, poll_until, ChildGuard};
use crate::helpers::{Auth, Backend, TestApp};
use serde_json::{json, Value};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// POSTs a GraphQL body with this `Accept`; returns the status and the JSON.
async fn post(app: &TestApp, auth: &Auth, accept: &str, body: Value) -> (u16, Value) {
    let request = app.client.post(format!("{}/graphql", app.address)).header("accept", accept).json(&body);
    let response = auth.apply(request).send().await.expect("sent");
    let status = response.status().as_u16();
    (status, response.json().await.expect("a JSON body"))
}

fn assert_request_error(body: &Value, code: &str) {
    assert!(body.get("data").is_none(), "no data entry on a request error: {body}");
    let error = &body["errors"][0];
    assert_eq!(error["extensions"]["code"], code, "{body}");
    let message = error["message"].as_str().expect("a message");
    assert!(!message.contains('\n'), "one line: {message:?}");
}

async fn parse_and_validation_errors_have_codes_one_line_and_no_data(app: &TestApp) {
    let json_accept = "application/json";
    let graphql_accept = "application/graphql-response+json";
    let (status, body) = post(app, &Auth::None, json_accept, json!({ "query": "{ viewer { account " })).await;
    assert_eq!(status, 200);
    assert_request_error(&body, "GRAPHQL_PARSE_FAILED");
    assert!(body["errors"][0]["message"].as_str().is_some_and(|m| m.starts_with("Syntax error at line 1")), "{body}");
    let (status, body) = post(app, &Auth::None, graphql_accept, json!({ "query": "{ viewer { account " })).await;
    assert_eq!(status, 400, "graphql-response+json: 400 for a document that does not parse");
    assert_request_error(&body, "GRAPHQL_PARSE_FAILED");

    let (status, body) = post(app, &Auth::None, graphql_accept, json!({ "query": "{ noSuchField }" })).await;
    assert_eq!(status, 400);
    assert_request_error(&body, "GRAPHQL_VALIDATION_FAILED");
    let (_, body) = post(app, &Auth::None, json_accept, json!({ "query": "{ appKey(key: 5) { key } }" })).await;
    assert_request_error(&body, "GRAPHQL_VALIDATION_FAILED");

    // A field error keeps `data` (with its null) and its own code.
    let (status, body) = post(app, &Auth::None, json_accept, json!({ "query": "{ viewer { account } }" })).await;
    assert_eq!(status, 200);
    assert!(body.get("data").is_some(), "{body}");
    assert_eq!(body["errors"][0]["extensions"]["code"], "UNAUTHENTICATED");
}

async fn http_level_errors_share_the_graphql_shape(app: &TestApp) {
    let client = &app.client;
    let base = &app.address;
    let checks = [
        (client.post(format!("{base}/graphql")).header("content-type", "text/plain").body("{}"), 415, "BAD_REQUEST"),
        (
            client
                .post(format!("{base}/graphql"))
                .header("content-type", "application/json")
                .body(vec![b' '; 300 * 1024]),
            413,
            "BAD_REQUEST",
        ),
        (client.put(format!("{base}/graphql")), 405, "BAD_REQUEST"),
        (client.get(format!("{base}/no/such/route")), 404, "NOT_FOUND"),
        (client.get(format!("{base}/auth")), 401, "UNAUTHENTICATED"),
        (client.get(format!("{base}/export/app-keys.csv")), 401, "UNAUTHENTICATED"),
        (client.get(format!("{base}/graphql?query=mutation%20%7B%20logout%20%7D")), 405, "BAD_REQUEST"),
    ];
    for (request, status, code) in checks {
        let response = request.send().await.expect("sent");
        assert_eq!(response.status().as_u16(), status);
        let body: Value = response.json().await.expect("a JSON body");
        assert_request_error(&body, code);
    }
}

async fn bad_input_names_its_field(app: &TestApp) {
    let owner = app.owner().await;
    let generate = "mutation($i: GenerateAppKeyInput!) { generateAppKey(input: $i) { appToken } }";
    let cases = [
        (generate, json!({ "i": { "label": "x".repeat(201) } }), "input.label"),
        (generate, json!({ "i": { "roleIds": ["nope"] } }), "input.roleIds"),
        (generate, json!({ "i": { "expiresAt": "2000-01-01T00:00:00Z" } }), "input.expiresAt"),
        (
            "mutation($k: String!) { setAppKeyRoles(key: $k, roleIds: [\"nope\"]) { key } }",
            json!({ "k": "appkey-main-AAAAAA" }),
            "roleIds",
        ),
        ("mutation { addAppKeyRoles(key: \"appkey-main-AAAAAA\", roleIds: []) { key } }", json!({}), "roleIds"),
        ("mutation { deactivateAppKey(key: \"not a key\") { key } }", json!({}), "key"),
        (
            "mutation { addExternalAppKey(input: {key: \"appkey-main-AAAAAA\", roleIds: []}) { key } }",
            json!({}),
            "input.roleIds",
        ),
        (
            "mutation { updateAppKeySettings(input: {renewalPeriodDays: 0}) { renewalPeriodDays } }",
            json!({}),
            "input.renewalPeriodDays",
        ),
        ("mutation { createRole(input: {name: \" \", resourceIds: []}) { id } }", json!({}), "input.name"),
        ("mutation { addUser(input: {email: \"nope\", roleIds: []}) { oneTimePassword } }", json!({}), "input.email"),
        ("{ myKeys(after: \"garbage\") { totalCount } }", json!({}), "after"),
        ("{ myKeys(filter: {search: \"a\\u0000b\"}) { totalCount } }", json!({}), "filter.search"),
    ];
    let before = app.snapshot().await;
    for (query, variables, field) in cases {
        let refused = app.graphql(&owner, query, variables).await;
        refused.assert_code("BAD_USER_INPUT");
        assert_eq!(refused.0["errors"][0]["extensions"]["field"], field, "{query}: {:#}", refused.0);
    }
    assert_eq!(app.snapshot().await, before);
}

/// A variable declared and not sent (what a JavaScript client does with `undefined`) leaves its
/// argument or input field out, so the schema's default applies, as the GraphQL specification
/// reads it; a `null` sent for a non-null argument is bad input naming the argument.
async fn a_variable_left_out_takes_the_arguments_default(app: &TestApp) {
    let owner = app.owner().await;
    let (key, _) = app.generate_key(&owner, Some("probe"), &[]).await;
    let query = "query($k: String!, $days: Int, $g: UsageGranularity, $field: AppKeyOrderField) {
        appKey(key: $k) { clientAddresses(days: $days) { count }
          usage(from: \"2027-03-01T00:00:00Z\", to: \"2027-03-01T05:00:00Z\", granularity: $g) { at } }
        myKeys(first: 5, orderBy: { field: $field, direction: ASC }) { totalCount }
      }";
    let answered = app.graphql(&owner, query, json!({ "k": key })).await;
    assert_eq!(answered.data("appKey.clientAddresses"), json!([]), "days: its default 30");
    assert_eq!(answered.data("appKey.usage").as_array().map(Vec::len), Some(6), "HOUR, the default: six points");
    assert!(answered.data("myKeys.totalCount").as_i64().is_some());
    let days = answered.clone();
    let sent = app.graphql(&owner, query, json!({ "k": key, "g": "DAY", "days": 30 })).await;
    assert_eq!(sent.data("appKey.usage").as_array().map(Vec::len), Some(1), "DAY, sent: one point");
    assert_eq!(days.data("appKey.clientAddresses"), sent.data("appKey.clientAddresses"));

    // `null` is a value, and not one a non-null argument takes; nor may a non-null variable be left
    // out: both are refused before anything runs, the second naming the variable.
    let (_, body) =
        post(app, &owner, "application/json", json!({ "query": query, "variables": { "k": key, "g": null } })).await;
    assert_request_error(&body, "GRAPHQL_VALIDATION_FAILED");
    let (status, body) = post(app, &owner, "application/graphql-response+json", json!({ "query": query })).await;
    assert_eq!(status, 400, "a request error");
    assert_request_error(&body, "BAD_USER_INPUT");
    assert_eq!(body["errors"][0]["extensions"]["field"], "$k", "{body}");
    assert_eq!(body["errors"][0]["message"], "variable $k of required type String! was not provided");
    // A document of several operations is run as async-graphql reads it (the variable is `null`):
    // its refusal of the argument is bad input like any other, with the argument named.
    let several = format!("{} query Other {{ viewer {{ account }} }}", query.replacen("query(", "query Probe(", 1));
    let body = json!({ "query": several, "operationName": "Probe", "variables": { "k": key } });
    let (_, body) = post(app, &owner, "application/json", body).await;
    let errors = body["errors"].as_array().expect("errors");
    assert!(errors.iter().all(|e| e["extensions"]["code"] == "BAD_USER_INPUT"), "{body:#}");
    let mut fields: Vec<&str> = errors.iter().filter_map(|e| e["extensions"]["field"].as_str()).collect();
    fields.sort_unstable(); // the fields resolve concurrently
    assert_eq!(fields, ["days", "granularity", "orderBy"], "{body:#}");
}

async fn changes_that_change_nothing_write_nothing(app: &TestApp) {
    let owner = app.owner().await;
    let restricted = app.restricted_role(&owner).await;
    let (key, _) = app.generate_key(&owner, None, std::slice::from_ref(&restricted)).await;
    let before = app.snapshot().await;
    let set = "mutation($k: String!, $r: [ID!]!) { setAppKeyRoles(key: $k, roleIds: $r) { key } }";
    app.graphql(&owner, set, json!({ "k": key, "r": [restricted] })).await.data("setAppKeyRoles");
    let add = "mutation($k: String!, $r: [ID!]!) { addAppKeyRoles(key: $k, roleIds: $r) { key } }";
    app.graphql(&owner, add, json!({ "k": key, "r": [restricted] })).await.data("addAppKeyRoles");
    app.graphql(&owner, "mutation($k: String!) { activateAppKey(key: $k) { status } }", json!({ "k": key }))
        .await
        .data("activateAppKey");
    assert_eq!(app.snapshot().await, before, "no row and no audit event for a change that changes nothing");
    let deactivate = "mutation($k: String!) { deactivateAppKey(key: $k) { status } }";
    app.graphql(&owner, deactivate, json!({ "k": key })).await.data("deactivateAppKey");
    let once = app.snapshot().await;
    assert_ne!(once, before);
    app.graphql(&owner, deactivate, json!({ "k": key })).await.data("deactivateAppKey");
    assert_eq!(app.snapshot().await, once, "deactivating an inactive key changes nothing");
}

async fn auth_names_unknown_resources_and_takes_keys_only(app: &TestApp) {
    let owner = app.owner().await;
    let restricted = app.restricted_role(&owner).await;
    let (key, token) = app.generate_key(&owner, None, &[restricted]).await;
    let as_key = Auth::key(&key, &token);
    let typo = app.get("/auth?resource=Orders.Raed", &as_key).await;
    assert_eq!(typo.status(), 400, "a gateway typo is not a missing permission");
    let body: Value = typo.json().await.expect("json");
    assert_request_error(&body, "BAD_USER_INPUT");
    assert!(body["errors"][0]["message"].as_str().is_some_and(|m| m.contains("Orders.Raed")), "{body}");
    let missing = app.get("/auth?resource=LicenseManager.SaveAccessProfile", &as_key).await;
    assert_eq!(missing.status(), 403);
    assert_eq!(app.get("/auth?resource=ApiKeys.View", &as_key).await.status(), 200);
    // A user session is not for gateways unless the operator says so.
    assert_eq!(app.get("/auth", &owner).await.status(), 401);
}

async fn sessions_pass_auth_only_when_allowed(backend: Backend) {
    let app = TestApp::spawn_with(backend, |s| s.auth_allow_sessions = true).await;
    let owner = app.owner().await;
    let allowed = app.get("/auth", &owner).await;
    assert_eq!(allowed.status(), 200);
    assert_eq!(allowed.headers()["x-user"], crate::helpers::OWNER_EMAIL);
    app.cleanup().await;
}

async fn cors_exposes_what_a_frontend_reads(backend: Backend) {
    let app = TestApp::spawn_with(backend, |s| s.cors_origins = vec!["https://admin.example.com".into()]).await;
    let response = app
        .client
        .get(format!("{}/healthz", app.address))
        .header("origin", "https://admin.example.com")
        .send()
        .await
        .expect("sent");
    let exposed = response.headers()["access-control-expose-headers"].to_str().expect("text").to_lowercase();
    for header in ["x-request-id", "retry-after", "content-disposition"] {
        assert!(exposed.contains(header), "{header} is not exposed: {exposed}");
    }
    app.cleanup().await;
}

/// Runs the binary to completion with these arguments; returns (success, stdout, stderr).
fn appkeys(args: &[&str], dir: &std::path::Path) -> (bool, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_appkeys"))
        .args(args)
        .current_dir(dir)
        .env_remove("APPKEYS_BOOTSTRAP_PASSWORD")
        .env_remove("DATABASE_URL")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .expect("the binary runs");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into(),
        String::from_utf8_lossy(&output.stderr).into(),
    )
}

/// A first start on a busy port creates nothing; the next start creates the owner and prints how to
/// log in; if that output is lost (a crash before anyone read it), the start after that prints a new
/// password; once the owner has logged in, starts print nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_start_cannot_lock_the_owner_out() {
    let dir = tempfile::tempdir().expect("a directory");
    let busy = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
    let busy_port = busy.local_addr().expect("an address").port().to_string();
    let (ok, stdout, stderr) = appkeys(&["serve", "--bind", &format!("127.0.0.1:{busy_port}")], dir.path());
    assert!(!ok, "a busy port fails the start");
    assert!(stderr.contains(&busy_port), "{stderr}");
    assert!(stdout.is_empty(), "nothing to tell: nothing was created: {stdout}");
    assert!(!dir.path().join("appkeys.db").exists(), "nothing is created before the server can serve");

    let mut starts = 0;
    let mut start = || {
        starts += 1;
        start_serving(dir.path().to_owned(), dir.path().join(format!("start-{starts}.out")))
    };
    let login = |address: String, password: String| async move {
        let body = json!({ "query": "mutation($p: String!) { login(input: {account: \"main\", email: \"admin@example.com\", password: $p}) { token } }", "variables": { "p": password } });
        let response = reqwest::Client::new().post(format!("{address}/graphql")).json(&body).send().await;
        response.expect("the server answers").json::<Value>().await.expect("json")
    };

    let (mut first, _, first_out) = start().await;
    let lost = one_time_password(&first_out);
    first.kill();

    let (mut second, address, second_out) = start().await;
    let password = one_time_password(&second_out);
    assert_ne!(password, lost, "a fresh password, since nobody logged in with the first");
    let refused = login(address.clone(), lost).await;
    assert_eq!(refused["errors"][0]["extensions"]["code"], "UNAUTHENTICATED");
    let logged_in = login(address, password).await;
    assert!(logged_in["data"]["login"]["token"].is_string(), "{logged_in}");
    second.kill();

    // Once the owner has logged in, a start prints no password.
    let (mut third, _, third_out) = start().await;
    third.kill();
    let printed = std::fs::read_to_string(third_out).expect("its output");
    assert!(!printed.contains("password"), "{printed}");
    drop(busy);
}

/// Starts `appkeys serve` in `dir` on a free port, its stdout in `out`, and waits until it serves.
/// A port taken by someone else in the meantime just means another try.
async fn start_serving(dir: std::path::PathBuf, out: std::path::PathBuf) -> (ChildGuard, String, std::path::PathBuf) {
    start_serving_url(dir, out, "sqlite://appkeys.db?mode=rwc").await
}

/// `start_serving` over this database.
async fn start_serving_url(
    dir: std::path::PathBuf,
    out: std::path::PathBuf,
    url: &str,
) -> (ChildGuard, String, std::path::PathBuf) {
    for _ in 0..5 {
        let port = free_port();
        let mut child = ChildGuard::spawn(
            Command::new(env!("CARGO_BIN_EXE_appkeys"))
                .args(["serve", "--bind", &format!("127.0.0.1:{port}"), "--database-url", url])
                .current_dir(&dir)
                .env_remove("APPKEYS_BOOTSTRAP_PASSWORD")
                .env_remove("DATABASE_URL")
                .env("RUST_LOG", "warn")
                .stdin(Stdio::null())
                .stdout(std::fs::File::create(&out).expect("an output file"))
                .stderr(Stdio::null()),
            "appkeys serve",
        );
        let address = format!("http://127.0.0.1:{port}");
        let client = reqwest::Client::new();
        let mut exited = false;
        let serving = poll_until(Duration::from_secs(60), || {
            // A start that exited could not bind (the port was taken): try another.
            exited = child.has_exited();
            let request = (!exited).then(|| client.get(format!("{address}/readyz")).send());
            async move {
                match request {
                    Some(request) => request.await.is_ok_and(|r| r.status().is_success()),
                    None => true,
                }
            }
        })
        .await;
        if serving && !exited {
            return (child, address, out);
        }
    }
    panic!("appkeys serve did not start");
}

/// The one-time password a start printed.
fn one_time_password(out: &std::path::Path) -> String {
    let printed = std::fs::read_to_string(out).expect("its output");
    printed
        .lines()
        .find_map(|line| line.trim().strip_prefix("One-time password (shown only now): "))
        .unwrap_or_else(|| panic!("no one-time password was printed: {printed}"))
        .to_owned()
}

#[test]
fn each_command_shows_its_own_flags_and_database_errors_say_where_and_why() {
    let dir = tempfile::tempdir().expect("a directory");
    let (ok, serve_help, _) = appkeys(&["serve", "--help"], dir.path());
    assert!(ok && serve_help.contains("--bind") && serve_help.contains("--last-used-flush-secs"));
    for command in [&["migrate", "--help"][..], &["account", "create", "--help"], &["resource", "register", "--help"]] {
        let (ok, help, _) = appkeys(command, dir.path());
        assert!(ok, "{command:?}");
        assert!(help.contains("--database-url"), "{command:?}: {help}");
        assert!(!help.contains("--bind") && !help.contains("--max-aliases"), "{command:?} lists serve's flags: {help}");
    }
    let (ok, _, stderr) =
        appkeys(&["migrate", "--database-url", "sqlite:///no/such/dir/appkeys.db?mode=rwc"], dir.path());
    assert!(!ok);
    assert!(stderr.contains("/no/such/dir/appkeys.db") && stderr.contains("does not exist"), "{stderr}");
    assert_eq!(stderr.matches("does not exist").count(), 1, "the cause once: {stderr}");

    let refused = format!("postgres://postgres@127.0.0.1:{}/appkeys", free_port());
    let started = Instant::now();
    let (ok, _, stderr) = appkeys(&["migrate", "--database-url", &refused], dir.path());
    assert!(!ok);
    assert!(stderr.contains("connection refused") && stderr.contains("127.0.0.1"), "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(8), "took {:?}", started.elapsed());
}

mod cases {
    use super::*;
    crate::backend_cases!(
        sessions_pass_auth_only_when_allowed,
        cors_exposes_what_a_frontend_reads,
        a_written_out_page_reads_as_one_resolved_field_by_field,
    );
}

/// A page of keys whose selection is all plain values is written out in one pass
/// (`graphql::written`); the same selection with a response key asked twice (which async-graphql
/// merges, so the answer is the same) is resolved field by field. The two answers are the same
/// text, byte for byte: every field written out, in order, through fragments and aliases, with
/// text that needs escaping, null and non-null values, both key types and an inactive key.
async fn a_written_out_page_reads_as_one_resolved_field_by_field(backend: Backend) {
    let app = TestApp::spawn_with(backend, |s| s.last_used_flush_secs = 1).await;
    let owner = app.owner().await;
    let restricted = app.restricted_role(&owner).await;
    let quoted = app.custom_role(&owner, "Ops \"night\" \\ shift é", &["ApiKeys.View"]).await;
    let roles = [restricted.clone(), quoted];
    let (used, token) = app.generate_key(&owner, Some("label with \"quotes\", a \\ and ünïcödé 🎉"), &roles).await;
    app.generate_key(&owner, None, std::slice::from_ref(&restricted)).await;
    let (inactive, _) = app.generate_key(&owner, Some("inactive"), std::slice::from_ref(&restricted)).await;
    let deactivate = "mutation($k: String!) { deactivateAppKey(key: $k) { key } }";
    app.graphql(&owner, deactivate, json!({ "k": inactive })).await.data("deactivateAppKey");
    let partner = app.account_with_owner("partner").await;
    let partner_role = app.restricted_role(&partner).await;
    let (external, _) = app.generate_key(&partner, Some("partner's"), &[partner_role]).await;
    let add = "mutation($k: String!, $r: [ID!]!) { addExternalAppKey(input: {key: $k, roleIds: $r}) { key } }";
    app.graphql(&owner, add, json!({ "k": external, "r": [restricted] })).await.data("addExternalAppKey");
    let agent = "probe \"quoted\" \\ agent/1.0";
    let used_once = Auth::key(&used, &token).apply(app.client.get(format!("{}/auth", app.address)));
    assert_eq!(used_once.header("user-agent", agent).send().await.expect("sent").status(), 200);
    let last_use = "query($k: String!) { appKey(key: $k) { lastUsedUserAgent } }";
    let seen = poll_until(Duration::from_secs(5), || async {
        app.graphql(&owner, last_use, json!({ "k": used })).await.data("appKey.lastUsedUserAgent") == agent
    })
    .await;
    assert!(seen, "the key's last use is recorded");

    // `More` brings `createdBy` and `hasAccess`.
    let fields = "__typename id key type account label status roles { __typename id name predefined n: name } \
                  createdAt tokenCreatedAt renewalAlert expiresAt lastUsedAt lastUsedIp lastUsedUserAgent \
                  updatedAt value: key ... on AppKey { t: type } ...More";
    // One listing per request: async-graphql 7.2 orders a query's root fields as they finish.
    let documents = |twice: bool| {
        let (key_twice, roles_twice) = if twice { ("key", "roles { name }") } else { ("", "") };
        [
            format!(
                "query {{ appKeys(first: 10) {{ edges {{ __typename cursor node {{ ...Key }} }} nodes {{ ...Key }} }} }} \
                 fragment Key on AppKey {{ {fields} {key_twice} {roles_twice} }} \
                 fragment More on AppKey {{ createdBy hasAccess }}"
            ),
            format!(
                "query {{ myKeys(first: 2) {{ nodes {{ key ...More {key_twice} }} e: edges {{ cursor }} }} }} \
                 fragment More on AppKey {{ createdBy hasAccess }}"
            ),
        ]
    };
    let text = |query: String| {
        let request = owner.apply(app.client.post(format!("{}/graphql", app.address)));
        async move {
            let response = request.json(&json!({ "query": query })).send().await.expect("sent");
            assert_eq!(response.status(), 200);
            response.text().await.expect("a body")
        }
    };
    let mut written = Vec::new();
    for (fast, slow) in documents(false).into_iter().zip(documents(true)) {
        let (fast, slow) = (text(fast).await, text(slow).await);
        assert_eq!(fast, slow, "written out and resolved field by field");
        written.push(fast);
    }
    let mine: Value = serde_json::from_str(&written[1]).expect("JSON");
    assert_eq!(mine["data"]["myKeys"]["nodes"].as_array().map(Vec::len), Some(2), "{mine}");
    let written = &written[0];
    let page: Value = serde_json::from_str(written).expect("JSON");
    assert!(page.get("errors").is_none(), "{page}");
    let nodes = page["data"]["appKeys"]["nodes"].as_array().expect("nodes");
    assert_eq!(nodes.len(), 4, "{page}");
    let node = |key: &str| nodes.iter().find(|n| n["key"] == key).unwrap_or_else(|| panic!("{key} listed: {page}"));
    assert_eq!(node(&used)["lastUsedUserAgent"], agent);
    assert_eq!(node(&used)["roles"].as_array().map(Vec::len), Some(2));
    assert_eq!(node(&inactive)["status"], "INACTIVE");
    assert_eq!(node(&external)["type"], "EXTERNAL");
    assert_eq!(page["data"]["appKeys"]["edges"][0]["__typename"], "AppKeyEdge");
    app.cleanup().await;
}

crate::backend_tests!(
    parse_and_validation_errors_have_codes_one_line_and_no_data,
    http_level_errors_share_the_graphql_shape,
    bad_input_names_its_field,
    a_variable_left_out_takes_the_arguments_default,
    changes_that_change_nothing_write_nothing,
    auth_names_unknown_resources_and_takes_keys_only,
);

/// A password the operator chose is never replaced, even before the owner's first login.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chosen_bootstrap_password_is_kept() {
    let dir = tempfile::tempdir().expect("a directory");
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("appkeys.db").display());
    let (ok, stdout, _) =
        appkeys(&["migrate", "--database-url", &url, "--bootstrap-password", "operator chose this one"], dir.path());
    assert!(ok && stdout.contains("the one you gave"), "{stdout}");
    let (mut child, address, out) = start_serving_url(dir.path().to_owned(), dir.path().join("serve.out"), &url).await;
    let printed = std::fs::read_to_string(out).expect("its output");
    assert!(!printed.contains("One-time password"), "{printed}");
    let body = json!({ "query": "mutation { login(input: {account: \"main\", email: \"admin@example.com\", password: \"operator chose this one\"}) { token } }" });
    let logged_in: Value = reqwest::Client::new()
        .post(format!("{address}/graphql"))
        .json(&body)
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    assert!(logged_in["data"]["login"]["token"].is_string(), "{logged_in}");
    child.kill();
}
