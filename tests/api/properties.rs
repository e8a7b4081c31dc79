//! Property tests over every input field: whatever a client sends — labels, key values, role ids,
//! emails, account names, header values, cursors — the server answers without a 5xx and a refused
//! mutation leaves the database exactly as it was.
use crate::helpers::{Auth, TestApp};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{json, Value};

const CASES: usize = 24;

/// Builds a mutation's variables around one hostile input.
type Variables = Box<dyn Fn(String) -> Value>;

/// Deterministic samples of a strategy (shrinking is traded for driving a live server).
fn samples<S: Strategy>(strategy: S, seed: &str) -> Vec<S::Value> {
    let mut runner = TestRunner::new_with_rng(
        Config::default(),
        proptest::test_runner::TestRng::from_seed(proptest::test_runner::RngAlgorithm::ChaCha, &{
            let mut bytes = [0u8; 32];
            for (i, b) in seed.bytes().enumerate() {
                bytes[i % 32] ^= b;
            }
            bytes
        }),
    );
    (0..CASES).map(|_| strategy.new_tree(&mut runner).expect("a value").current()).collect()
}

/// Hostile strings: any Unicode, control characters, SQL and CSV metacharacters, long runs.
fn hostile() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "\\PC{0,300}",
        "[\\x00-\\x1f'\";%_=+@\\-\\\\]{0,40}",
        Just("'; DROP TABLE app_keys; --".to_owned()),
        Just("x".repeat(5000)),
    ]
}

async fn send(app: &TestApp, auth: &Auth, query: &str, variables: Value) -> Value {
    let request =
        app.client.post(format!("{}/graphql", app.address)).json(&json!({ "query": query, "variables": variables }));
    let response = auth.apply(request).send().await.expect("sent");
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    assert!(status.as_u16() < 500, "HTTP {status} for {variables}: {body}");
    assert!(!body.to_string().contains("INTERNAL_SERVER_ERROR"), "internal error for {variables}: {body}");
    body
}

async fn hostile_input_never_breaks_the_server_or_half_writes(app: &TestApp) {
    let owner = app.owner().await;
    let restricted = app.restricted_role(&owner).await;
    let (key, _) = app.generate_key(&owner, None, std::slice::from_ref(&restricted)).await;

    let mutations: Vec<(&str, Variables)> = vec![
        (
            "mutation($l: String) { generateAppKey(input: {label: $l, roleIds: [\"ghost\"]}) { appToken } }",
            Box::new(|s| json!({ "l": s })),
        ),
        (
            "mutation($k: String!, $r: [ID!]!) { addExternalAppKey(input: {key: $k, roleIds: $r}) { key } }",
            Box::new(|s| json!({ "k": s, "r": ["ghost"] })),
        ),
        (
            "mutation($k: String!) { setAppKeyRoles(key: $k, roleIds: [\"ghost\"]) { key } }",
            Box::new(|s| json!({ "k": s })),
        ),
        ("mutation($k: String!, $r: [ID!]!) { addAppKeyRoles(key: $k, roleIds: $r) { key } }", {
            let key = key.clone();
            Box::new(move |s| json!({ "k": key, "r": [s] }))
        }),
        ("mutation($k: String!) { deactivateAppKey(key: $k) { key } }", Box::new(|s| json!({ "k": format!("{s}!") }))),
        (
            "mutation($e: String!) { addUser(input: {email: $e, roleIds: [\"ghost\"]}) { oneTimePassword } }",
            Box::new(|s| json!({ "e": s })),
        ),
        (
            "mutation($n: String!) { createRole(input: {name: $n, resourceIds: [\"No.Such\"]}) { id } }",
            Box::new(|s| json!({ "n": s })),
        ),
        (
            "mutation($r: [String!]!) { createRole(input: {name: \"r\", resourceIds: $r}) { id } }",
            Box::new(|s| json!({ "r": [s] })),
        ),
        ("mutation($u: ID!) { removeUser(userId: $u) }", Box::new(|s| json!({ "u": s }))),
        ("mutation($r: ID!) { deleteRole(id: $r) }", Box::new(|s| json!({ "r": s }))),
    ];
    for (i, (mutation, variables)) in mutations.iter().enumerate() {
        for input in samples(hostile(), &format!("mutation-{i}")) {
            let before = app.snapshot().await;
            let body = send(app, &owner, mutation, variables(input.clone())).await;
            assert!(body["errors"].is_array(), "a hostile {input:?} was accepted by {mutation}: {body}");
            assert_eq!(app.snapshot().await, before, "{mutation} with {input:?} changed the database");
        }
    }

    for input in samples(hostile(), "queries") {
        let body = send(
            app,
            &owner,
            "query($s: String, $c: String, $k: String!) { myKeys(filter: {search: $s}, after: $c) { totalCount } appKeys(filter: {search: $s}) { totalCount } appKey(key: $k) { key } auditEvents(filter: {action: $s, actor: $s, target: $s}) { totalCount } }",
            json!({ "s": input, "c": input, "k": input }),
        )
        .await;
        assert!(body.is_object());
        let nul = send(
            app,
            &owner,
            "query($s: String) { myKeys(filter: {search: $s}) { totalCount } }",
            json!({ "s": format!("{input}\u{0}") }),
        )
        .await;
        assert_eq!(nul["errors"][0]["extensions"]["code"], "BAD_USER_INPUT", "{nul}");
        let login = send(
            app,
            &Auth::None,
            "mutation($a: String!, $e: String!, $p: String!) { login(input: {account: $a, email: $e, password: $p}) { token } }",
            json!({ "a": input, "e": input, "p": input }),
        )
        .await;
        assert_eq!(login["errors"][0]["extensions"]["code"], "UNAUTHENTICATED", "{login}");
    }

    // Header values: any visible ASCII in every credential header.
    for (i, value) in samples("[\\x20-\\x7e]{0,120}", "headers").into_iter().enumerate() {
        let name = ["authorization", "x-api-appkey", "x-api-apptoken", "x-account", "x-vtex-api-apptoken"][i % 5];
        let auth = Auth::Raw(vec![(name.into(), value.clone()), ("x-api-apptoken".into(), value)]);
        let body = send(app, &auth, "{ viewer { account } }", json!({})).await;
        assert!(body["errors"].is_array());
        let status = app.get("/auth", &auth).await.status().as_u16();
        assert!(status == 401 || status == 429, "GET /auth answered {status}");
    }
}

proptest! {
    #![proptest_config(Config::with_cases(512))]

    #[test]
    fn parsers_never_panic(input in "\\PC{0,120}") {
        let _ = appkeys::domain::AppToken::parse(&input);
        let _ = appkeys::domain::SessionToken::parse(&input);
        let _ = appkeys::domain::AppKeyValue::parse(&input);
        let _ = appkeys::domain::KeyLabel::parse(Some(&input));
        let _ = appkeys::domain::Email::parse(&input);
        let _ = appkeys::domain::AccountName::parse(&input);
        let _ = appkeys::domain::ResourceId::parse(&input);
        let _ = appkeys::domain::RoleName::parse(&input);
    }

    #[test]
    fn only_generated_tokens_parse(input in "akt_[0-9A-Za-z]{46}") {
        // A random string with the right shape passes the checksum about once in 56 billion.
        prop_assert!(appkeys::domain::AppToken::parse(&input).is_err());
    }
}

crate::backend_tests!(hostile_input_never_breaks_the_server_or_half_writes);
