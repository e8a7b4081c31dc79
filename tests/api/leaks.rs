//! Leaked tokens: GitHub's secret-scanning partner endpoint (signatures made here with the test's own
//! P-256 keys, in a keys file: no network), self-revocation through `POST /revoke`, what a leak does
//! to a key (every replica, renewal, activation), and the scanner rules the README publishes.
use crate::helpers::process::poll_until;
use crate::helpers::{captured_logs, Auth, Backend, TestApp};
use appkeys::domain::{AppToken, SessionToken, TokenDigest};
use base64::Engine as _;
use p256::ecdsa::signature::Signer as _;
use p256::ecdsa::{Signature, SigningKey};
use p256::pkcs8::{EncodePublicKey as _, LineEnding};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// One of "GitHub's" signing keys, made by the test.
struct GithubKey {
    id: String,
    signing: SigningKey,
}

impl GithubKey {
    fn new(id: &str) -> Self {
        let signing = loop {
            if let Ok(key) = SigningKey::from_slice(&rand::random::<[u8; 32]>()) {
                break key;
            }
        };
        Self { id: id.to_owned(), signing }
    }

    fn pem(&self) -> String {
        self.signing.verifying_key().to_public_key_pem(LineEnding::LF).expect("a PEM")
    }

    fn sign(&self, body: &[u8]) -> String {
        let signature: Signature = self.signing.sign(body);
        base64::engine::general_purpose::STANDARD.encode(signature.to_der().as_bytes())
    }
}

/// Writes GitHub's key list: each key and whether it is current.
fn write_keys(path: &Path, keys: &[(&GithubKey, bool)]) {
    let list: Vec<Value> = keys
        .iter()
        .map(|(key, current)| json!({ "key_identifier": key.id, "key": key.pem(), "is_current": current }))
        .collect();
    std::fs::write(path, json!({ "public_keys": list }).to_string()).expect("the keys file is written");
}

/// A keys file in a temporary folder kept for the test's life.
fn keys_file(keys: &[(&GithubKey, bool)]) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let path = dir.path().join("github-keys.json");
    write_keys(&path, keys);
    (dir, path)
}

async fn scanning_app(backend: Backend, keys: &Path) -> TestApp {
    let source = keys.to_string_lossy().into_owned();
    TestApp::spawn_with(backend, |settings| settings.github_scanning_keys = Some(source)).await
}

/// Posts `body` to the partner endpoint at `address`, signed by `signer` (or with the headers given).
async fn report_at(app: &TestApp, address: &str, id: &str, signature: &str, body: &str) -> reqwest::Response {
    app.client
        .post(format!("{address}/secret-scanning/github"))
        .header("content-type", "application/json")
        .header("Github-Public-Key-Identifier", id)
        .header("Github-Public-Key-Signature", signature)
        .body(body.to_owned())
        .send()
        .await
        .expect("sent")
}

async fn report(app: &TestApp, signer: &GithubKey, body: &str) -> reqwest::Response {
    report_at(app, &app.address, &signer.id, &signer.sign(body.as_bytes()), body).await
}

fn found(tokens: &[&str]) -> String {
    let entries: Vec<Value> = tokens
        .iter()
        .map(|token| {
            json!({ "token": token, "type": "appkeys_app_token", "url": "https://github.com/o/r/blob/main/.env", "source": "content" })
        })
        .collect();
    Value::Array(entries).to_string()
}

/// The label GitHub is told for each token, in order.
async fn labels(response: reqwest::Response) -> Vec<String> {
    assert_eq!(response.status(), 200);
    let feedback: Value = response.json().await.expect("JSON");
    feedback.as_array().expect("an array").iter().map(|f| f["label"].as_str().expect("a label").to_owned()).collect()
}

async fn auth_status(app: &TestApp, address: &str, key: &str, token: &str) -> u16 {
    app.get_at(address, "/auth", &Auth::key(key, token)).await.status().as_u16()
}

const KEY: &str = "query($k: String!) { appKey(key: $k) { status deactivationReason leak { at url source } \
                   tokenCreatedAt renewal { startedAt } } }";
const RENEW: &str = "mutation($k: String!, $input: RenewAppKeyTokenInput) { renewAppKeyToken(key: $k, input: $input) \
                     { appToken appKey { status deactivationReason renewal { startedAt } } } }";
const ACTIVATE: &str = "mutation($k: String!) { activateAppKey(key: $k) { status deactivationReason } }";

async fn key_state(app: &TestApp, owner: &Auth, key: &str) -> Value {
    app.graphql(owner, KEY, json!({ "k": key })).await.data("appKey")
}

async fn leaked_audits(app: &TestApp) -> i64 {
    app.scalar("SELECT count(*) FROM audit_events WHERE action = 'key.leaked'").await
}

/// A live token reported by GitHub stops at once on every replica; the key is switched off as
/// LEAKED with where it was found, audited and announced; only a renewal (no overlap) and then an
/// activation bring the key back.
async fn a_reported_token_stops_everywhere_and_the_key_comes_back_only_through_renewal(backend: Backend) {
    let github = GithubKey::new("github-1");
    let (_dir, keys) = keys_file(&[(&github, true)]);
    let app = scanning_app(backend, &keys).await;
    let source = keys.to_string_lossy().into_owned();
    let (b, replica) = app.another_server_with(|settings| settings.github_scanning_keys = Some(source)).await;
    tokio::spawn(replica.run_until_stopped(std::future::pending()));
    let owner = app.owner().await;
    let role = app.restricted_role(&owner).await;
    let (key, token) = app.generate_key(&owner, Some("ci deploy"), std::slice::from_ref(&role)).await;
    let (other_key, other_token) = app.generate_key(&owner, None, std::slice::from_ref(&role)).await;
    assert_eq!(auth_status(&app, &b, &key, &token).await, 200, "cached as valid on replica B");

    let unknown = AppToken::generate();
    let body = found(&[&token, unknown.expose_secret(), "ghp_notoursatall0000000000000000000000"]);
    let response = report(&app, &github, &body).await;
    let feedback: Value = response.json().await.expect("JSON");
    assert_eq!(
        feedback,
        json!([
            { "token_hash": TokenDigest::of(&token).as_str(), "token_type": "appkeys_app_token", "label": "true_positive" },
            { "token_hash": unknown.digest().as_str(), "token_type": "appkeys_app_token", "label": "false_positive" },
            { "token_hash": TokenDigest::of("ghp_notoursatall0000000000000000000000").as_str(), "token_type": "appkeys_app_token", "label": "false_positive" },
        ])
    );
    assert_eq!(auth_status(&app, &app.address, &key, &token).await, 401, "refused at once here");
    let stopped =
        poll_until(Duration::from_secs(1), || async { auth_status(&app, &b, &key, &token).await == 401 }).await;
    assert!(stopped, "refused on replica B within 1 s");
    assert_eq!(auth_status(&app, &b, &other_key, &other_token).await, 200, "other keys are untouched");

    let state = key_state(&app, &owner, &key).await;
    assert_eq!((state["status"].as_str(), state["deactivationReason"].as_str()), (Some("INACTIVE"), Some("LEAKED")));
    assert_eq!(state["leak"]["url"], "https://github.com/o/r/blob/main/.env");
    assert_eq!(state["leak"]["source"], "content");
    let audit =
        app.graphql(&owner, "{ auditEvents(first: 1) { nodes { action actor target after } } }", json!({})).await;
    let entry = audit.data("auditEvents.nodes")[0].clone();
    assert_eq!(
        (entry["action"].as_str(), entry["actor"].as_str()),
        (Some("key.leaked"), Some("github-secret-scanning"))
    );
    assert_eq!(entry["target"], key.as_str());
    let events: i64 =
        app.scalar(format!("SELECT count(*) FROM key_events WHERE type = 'app_key.leaked' AND key = '{key}'")).await;
    assert_eq!(events, 1, "the event app_key.leaked is in the outbox");

    // Reported again (GitHub finds a token in many places): known, nothing changes.
    assert_eq!(labels(report(&app, &github, &found(&[&token])).await).await, ["true_positive"]);
    assert_eq!(leaked_audits(&app).await, 1);

    // No way back without a new token.
    app.graphql(&owner, ACTIVATE, json!({ "k": key })).await.assert_code("CONFLICT");
    let renewed = app.graphql(&owner, RENEW, json!({ "k": key, "input": { "oldTokenValidFor": 3600 } })).await;
    assert_eq!(renewed.data("renewAppKeyToken.appKey.renewal"), Value::Null, "a leaked token gets no overlap");
    assert_eq!(renewed.data("renewAppKeyToken.appKey.status"), "INACTIVE", "renewal does not switch it on");
    let new = renewed.data("renewAppKeyToken.appToken").as_str().expect("a token").to_owned();
    assert_eq!(auth_status(&app, &app.address, &key, &new).await, 401, "still off");
    let activated = app.graphql(&owner, ACTIVATE, json!({ "k": key })).await;
    assert_eq!(activated.data("activateAppKey"), json!({ "status": "ACTIVE", "deactivationReason": null }));
    assert_eq!(auth_status(&app, &app.address, &key, &new).await, 200);
    assert_eq!(auth_status(&app, &app.address, &key, &token).await, 401, "the leaked token never comes back");
    let comes_back =
        poll_until(Duration::from_secs(1), || async { auth_status(&app, &b, &key, &new).await == 200 }).await;
    assert!(comes_back, "replica B lets the new token in");
    // The leaked token, renewed away, is still known to be ours.
    assert_eq!(labels(report(&app, &github, &found(&[&token])).await).await, ["true_positive"]);
    assert_eq!(key_state(&app, &owner, &key).await["leak"]["source"], "content", "the leak stays on record");

    // The tokens are nowhere in plain text: not in the logs, the audit log or the events.
    let logs = captured_logs();
    for secret in [&token, &new] {
        assert!(!logs.contains(secret.as_str()), "a token was logged");
        let audits: i64 = app
            .scalar(format!(
                "SELECT count(*) FROM audit_events WHERE after LIKE '%{secret}%' OR before LIKE '%{secret}%'"
            ))
            .await;
        let events: i64 = app.scalar(format!("SELECT count(*) FROM key_events WHERE body LIKE '%{secret}%'")).await;
        assert_eq!((audits, events), (0, 0));
    }
    app.cleanup().await;
}

/// The previous token of a pending renewal leaking ends the overlap: the new token lives on.
async fn a_leaked_previous_token_ends_the_overlap_and_the_new_token_lives(backend: Backend) {
    let github = GithubKey::new("github-1");
    let (_dir, keys) = keys_file(&[(&github, true)]);
    let app = scanning_app(backend, &keys).await;
    let owner = app.owner().await;
    let role = app.restricted_role(&owner).await;
    let (key, old) = app.generate_key(&owner, None, &[role]).await;
    let renewed = app.graphql(&owner, RENEW, json!({ "k": key, "input": null })).await;
    let new = renewed.data("renewAppKeyToken.appToken").as_str().expect("a token").to_owned();
    assert_eq!(auth_status(&app, &app.address, &key, &old).await, 200, "the overlap lets the old token in");

    assert_eq!(labels(report(&app, &github, &found(&[&old])).await).await, ["true_positive"]);
    assert_eq!(auth_status(&app, &app.address, &key, &old).await, 401, "the old token stops");
    assert_eq!(auth_status(&app, &app.address, &key, &new).await, 200, "the new token lives on");
    let state = key_state(&app, &owner, &key).await;
    assert_eq!((state["status"].as_str(), &state["deactivationReason"]), (Some("ACTIVE"), &Value::Null));
    assert_eq!(state["renewal"], Value::Null, "the overlap is over");
    assert_eq!(state["leak"]["source"], "content");
    let after: String = app.scalar("SELECT after FROM audit_events WHERE action = 'key.leaked'").await;
    assert!(after.contains("\"previous\""), "{after}");

    // The current token leaking during a renewal stops both tokens.
    let again = app.graphql(&owner, RENEW, json!({ "k": key, "input": null })).await;
    let newest = again.data("renewAppKeyToken.appToken").as_str().expect("a token").to_owned();
    assert_eq!(labels(report(&app, &github, &found(&[&newest])).await).await, ["true_positive"]);
    for token in [&new, &newest] {
        assert_eq!(auth_status(&app, &app.address, &key, token).await, 401);
    }
    let state = key_state(&app, &owner, &key).await;
    assert_eq!((state["deactivationReason"].as_str(), &state["renewal"]), (Some("LEAKED"), &Value::Null));
    app.cleanup().await;
}

/// A bad or missing signature is 401 in the one error shape and changes nothing; so is a body that
/// is too big or too long; the signature is checked before the body is read as JSON.
async fn only_a_report_signed_by_a_current_github_key_is_read(backend: Backend) {
    let github = GithubKey::new("github-1");
    let stranger = GithubKey::new("github-1");
    let (_dir, keys) = keys_file(&[(&github, true)]);
    let app = scanning_app(backend, &keys).await;
    let owner = app.owner().await;
    let role = app.restricted_role(&owner).await;
    let (key, token) = app.generate_key(&owner, None, &[role]).await;
    let body = found(&[&token]);
    let before = app.snapshot().await;

    let refused = [
        (
            "another key under the same id",
            report_at(&app, &app.address, "github-1", &stranger.sign(body.as_bytes()), &body).await,
        ),
        ("an unknown key id", report_at(&app, &app.address, "github-9", &github.sign(body.as_bytes()), &body).await),
        ("a tampered body", report_at(&app, &app.address, "github-1", &github.sign(b"[]"), &body).await),
        ("DER garbage", report_at(&app, &app.address, "github-1", "AAECAwQF", &body).await),
        ("not base64", report_at(&app, &app.address, "github-1", "%%%", &body).await),
        (
            "no signature",
            app.client
                .post(format!("{}/secret-scanning/github", app.address))
                .body(body.clone())
                .send()
                .await
                .expect("sent"),
        ),
    ];
    for (what, response) in refused {
        assert_eq!(response.status(), 401, "{what}");
        let error: Value = response.json().await.expect("JSON");
        assert_eq!(error["errors"][0]["extensions"]["code"], "UNAUTHENTICATED", "{what}: {error}");
    }
    // Not JSON at all, yet signed: the signature passes and the body is refused as a bad request.
    let response = report(&app, &github, "this is not json").await;
    assert_eq!(response.status(), 400);
    let oversized = format!("[{}]", " ".repeat(1 << 20));
    let response = report(&app, &github, &oversized).await;
    assert_eq!(response.status(), 413);
    let too_many: Vec<String> = (0..1001).map(|_| AppToken::generate().expose_secret().to_owned()).collect();
    let too_many: Vec<&str> = too_many.iter().map(String::as_str).collect();
    let response = report(&app, &github, &found(&too_many)).await;
    assert_eq!(response.status(), 413, "at most 1000 tokens a report");

    assert_eq!(app.snapshot().await, before, "nothing changed");
    assert_eq!(auth_status(&app, &app.address, &key, &token).await, 200, "the token still works");
    let metrics = app.get("/metrics", &Auth::None).await.text().await.expect("text");
    let failures = metrics
        .lines()
        .find(|line| line.starts_with("appkeys_secret_scanning_signature_failures_total"))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|n| n.parse::<f64>().ok());
    assert!(failures.is_some_and(|n| n >= 6.0), "{metrics}");

    // A 1 000-token batch: ten live tokens among well-formed strangers, all answered in order.
    let role = app.restricted_role(&owner).await;
    let mut live = Vec::new();
    for _ in 0..10 {
        live.push(app.generate_key(&owner, None, std::slice::from_ref(&role)).await);
    }
    let mut batch: Vec<String> = (0..990).map(|_| AppToken::generate().expose_secret().to_owned()).collect();
    for (i, (_, token)) in live.iter().enumerate() {
        batch.insert(i * 99, token.clone());
    }
    let batch_refs: Vec<&str> = batch.iter().map(String::as_str).collect();
    let answered = labels(report(&app, &github, &found(&batch_refs)).await).await;
    assert_eq!(answered.len(), 1000);
    for (i, label) in answered.iter().enumerate() {
        let expected =
            if live.iter().any(|(_, token)| *token == batch[i]) { "true_positive" } else { "false_positive" };
        assert_eq!(label, expected, "entry {i}");
    }
    for (key, token) in &live {
        assert_eq!(auth_status(&app, &app.address, key, token).await, 401);
    }
    let metrics = app.get("/metrics", &Auth::None).await.text().await.expect("text");
    for name in [
        "appkeys_secret_scanning_reports_total",
        "appkeys_secret_scanning_true_positives_total",
        "appkeys_secret_scanning_false_positives_total",
    ] {
        assert!(metrics.contains(name), "{name} in {metrics}");
    }
    app.cleanup().await;
}

/// Keys rotate: an unknown id reads the keys again (at most once a minute), a key this replica saw
/// current verifies for an hour after GitHub marks it not current, and one never seen current never.
async fn github_keys_rotate_with_one_refetch_and_an_hour_of_grace(backend: Backend) {
    let first = GithubKey::new("github-1");
    let second = GithubKey::new("github-2");
    let old = GithubKey::new("github-0");
    let (_dir, keys) = keys_file(&[(&first, true), (&old, false)]);
    let app = scanning_app(backend, &keys).await;
    let body = found(&[AppToken::generate().expose_secret()]);
    assert_eq!(report(&app, &first, &body).await.status(), 200);
    assert_eq!(report(&app, &old, &body).await.status(), 401, "never current here: refused");

    write_keys(&keys, &[(&first, false), (&second, true), (&old, false)]);
    // The keys were read less than a minute ago: an unknown id does not read them again yet.
    assert_eq!(report(&app, &second, &body).await.status(), 401);
    app.advance_clock(chrono::Duration::seconds(61));
    assert_eq!(report(&app, &second, &body).await.status(), 200, "the unknown id read the keys again");
    assert_eq!(report(&app, &first, &body).await.status(), 200, "the retired key within its hour");
    app.advance_clock(chrono::Duration::minutes(59));
    assert_eq!(report(&app, &first, &body).await.status(), 200, "still within the hour");
    app.advance_clock(chrono::Duration::seconds(61));
    assert_eq!(report(&app, &first, &body).await.status(), 401, "the hour since it was seen retired is over");
    assert_eq!(report(&app, &second, &body).await.status(), 200);
    app.cleanup().await;
}

/// Off unless `--github-scanning-keys` is set.
async fn the_partner_endpoint_is_off_without_keys(app: &TestApp) {
    let response =
        app.client.post(format!("{}/secret-scanning/github", app.address)).body("[]").send().await.expect("sent");
    assert_eq!(response.status(), 404);
    let error: Value = response.json().await.expect("the one error shape");
    assert_eq!(error["errors"][0]["extensions"]["code"], "NOT_FOUND");
}

async fn revoke(app: &TestApp, body: &str) -> reqwest::Response {
    app.client
        .post(format!("{}/revoke", app.address))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body.to_owned())
        .send()
        .await
        .expect("sent")
}

/// `POST /revoke`: a real app token stops (LEAKED, by self-revocation), a session ends, an unknown
/// or malformed token changes nothing; every one is answered 200.
async fn whoever_holds_a_token_can_revoke_it(app: &TestApp) {
    let owner = app.owner().await;
    let role = app.restricted_role(&owner).await;
    let (key, token) = app.generate_key(&owner, None, std::slice::from_ref(&role)).await;
    let (kept, kept_token) = app.generate_key(&owner, None, &[role]).await;
    let before = app.snapshot().await;
    for body in [
        format!("token={}", AppToken::generate().expose_secret()),
        format!("token={}&token_type_hint=access_token", SessionToken::generate().expose_secret()),
        "token=akt_malformed".to_owned(),
    ] {
        let response = revoke(app, &body).await;
        assert_eq!(response.status(), 200, "{body}");
    }
    assert_eq!(app.snapshot().await, before, "unknown and malformed tokens change nothing");

    assert_eq!(revoke(app, &format!("token={token}&token_type_hint=access_token")).await.status(), 200);
    assert_eq!(auth_status(app, &app.address, &key, &token).await, 401);
    assert_eq!(auth_status(app, &app.address, &kept, &kept_token).await, 200);
    let state = key_state(app, &owner, &key).await;
    assert_eq!(state["deactivationReason"], "LEAKED");
    assert_eq!((state["leak"]["source"].as_str(), &state["leak"]["url"]), (Some("self-revocation"), &Value::Null));
    let actor: String = app.scalar("SELECT actor FROM audit_events WHERE action = 'key.leaked'").await;
    assert_eq!(actor, "self-revocation");
    assert_eq!(revoke(app, &format!("token={token}")).await.status(), 200, "again: still 200");
    assert_eq!(leaked_audits(app).await, 1);

    // A session token: the session ends.
    let session = app.login_token("main", crate::helpers::OWNER_EMAIL, crate::helpers::OWNER_PASSWORD).await;
    let as_session = Auth::Bearer(session.clone());
    app.graphql(&as_session, "{ viewer { account } }", json!({})).await.data("viewer");
    assert_eq!(revoke(app, &format!("token={session}")).await.status(), 200);
    app.graphql(&as_session, "{ viewer { account } }", json!({})).await.assert_code("UNAUTHENTICATED");
    let ended: i64 = app.scalar("SELECT count(*) FROM audit_events WHERE action = 'session.leaked'").await;
    assert_eq!(ended, 1);

    // Only a form, with a token.
    let json = app
        .client
        .post(format!("{}/revoke", app.address))
        .header("content-type", "application/json")
        .body(json!({ "token": kept_token }).to_string())
        .send()
        .await
        .expect("sent");
    assert_eq!(json.status(), 415);
    let missing = revoke(app, "token_type_hint=access_token").await;
    assert_eq!(missing.status(), 400);
    let error: Value = missing.json().await.expect("JSON");
    assert_eq!(error["errors"][0]["extensions"]["field"], "token");
    assert_eq!(auth_status(app, &app.address, &kept, &kept_token).await, 200);
    let logs = captured_logs();
    assert!(!logs.contains(&token) && !logs.contains(&session), "a revoked token was logged");
}

/// Unknown tokens sent to `/revoke` are throttled per client address, as failed logins are.
async fn revocations_of_unknown_tokens_are_throttled_per_address(backend: Backend) {
    let app = TestApp::spawn_with(backend, |settings| settings.failures_per_minute = 1).await;
    let mut statuses = Vec::new();
    for _ in 0..12 {
        let response = revoke(&app, &format!("token={}", AppToken::generate().expose_secret())).await;
        if response.status() == 429 {
            assert!(response.headers().get("retry-after").is_some());
        }
        statuses.push(response.status().as_u16());
    }
    assert_eq!(statuses[0], 200);
    assert!(statuses.contains(&429), "{statuses:?}");
    app.advance_clock(chrono::Duration::minutes(3));
    assert_eq!(revoke(&app, "token=akt_x").await.status(), 200, "the throttle ends");
    app.cleanup().await;
}

/// The regular expressions of a scanner rule file: gitleaks' `regex = '''…'''` lines, trufflehog's
/// `token: '…'` lines.
fn rule_patterns(file: &str) -> Vec<regex::Regex> {
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(file)).expect("the rule file");
    let patterns: Vec<regex::Regex> = text
        .lines()
        .map(str::trim)
        .filter_map(|line| {
            line.strip_prefix("regex = '''")
                .and_then(|rest| rest.strip_suffix("'''"))
                .or_else(|| line.strip_prefix("token: '").and_then(|rest| rest.strip_suffix('\'')))
        })
        .map(|pattern| regex::Regex::new(pattern).expect("a valid pattern"))
        .collect();
    assert_eq!(patterns.len(), 2, "{file}: one rule per kind of token");
    patterns
}

#[test]
fn the_published_scanner_rules_find_every_token_and_no_near_miss() {
    for file in ["docs/scanners/gitleaks.toml", "docs/scanners/trufflehog.yaml"] {
        let patterns = rule_patterns(file);
        let matches = |text: &str| patterns.iter().any(|p| p.is_match(text));
        for _ in 0..200 {
            let app = AppToken::generate();
            let session = SessionToken::generate();
            for token in [app.expose_secret(), session.expose_secret()] {
                assert!(matches(token), "{file}: {token}");
                assert!(matches(&format!("APPKEYS_TOKEN=\"{token}\"")), "{file}: in a line");
            }
        }
        let token = AppToken::generate().expose_secret().to_owned();
        let near_misses = [
            token[..token.len() - 1].to_owned(),               // one character short
            format!("{token}x"),                               // one too long
            token.replacen("akt_", "akx_", 1),                 // another prefix
            token.replacen("akt_", "AKT_", 1),                 // the prefix is lower case
            format!("akt_{}-{}", &token[4..20], &token[21..]), // outside base62
            format!("xakt_{}", &token[4..]),                   // inside a longer word
            "akd_0123456789012345678901234567890123456789ABCDEF".to_owned(), // a download ticket
        ];
        for miss in &near_misses {
            assert!(!matches(miss), "{file} matched the near miss {miss}");
        }
    }
}

crate::backend_tests!(the_partner_endpoint_is_off_without_keys, whoever_holds_a_token_can_revoke_it);

mod cases {
    use super::*;
    crate::backend_cases!(
        a_reported_token_stops_everywhere_and_the_key_comes_back_only_through_renewal,
        a_leaked_previous_token_ends_the_overlap_and_the_new_token_lives,
        only_a_report_signed_by_a_current_github_key_is_read,
        github_keys_rotate_with_one_refetch_and_an_hour_of_grace,
        revocations_of_unknown_tokens_are_throttled_per_address,
    );
}
