//! The real `appkeys` binary as a child process, for tests that kill it (SIGKILL) or stop it
//! (SIGTERM) and start it again on the same database.
use serde_json::{json, Value};
use std::process::{Command, Stdio};
use std::time::Duration;

use super::process::{free_port, ready, ChildGuard};
use super::{Auth, OWNER_EMAIL, OWNER_PASSWORD};

/// A running binary; dropping it kills it with SIGKILL.
pub struct Server {
    child: ChildGuard,
    pub address: String,
}

impl Server {
    /// Starts the binary on a free port over `database_url`, with extra environment variables, and
    /// waits until it is ready.
    pub async fn start(database_url: &str, env: &[(&str, &str)]) -> Self {
        let port = free_port();
        let mut command = Command::new(env!("CARGO_BIN_EXE_appkeys"));
        command
            .args(["serve", "--bind", &format!("127.0.0.1:{port}"), "--database-url", database_url])
            .env("APPKEYS_BOOTSTRAP_EMAIL", OWNER_EMAIL)
            .env("APPKEYS_BOOTSTRAP_PASSWORD", OWNER_PASSWORD)
            .env("APPKEYS_FAILURES_PER_MINUTE", "1000")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        for (name, value) in env {
            command.env(name, value);
        }
        let child = ChildGuard::spawn(&mut command, "the appkeys binary");
        let server = Server { child, address: format!("http://127.0.0.1:{port}") };
        assert!(ready(&server.address, Duration::from_secs(10)).await, "the appkeys binary did not become ready");
        server
    }

    /// Asks the binary to stop (SIGTERM) and waits until it has.
    pub async fn terminate(mut self) {
        assert!(self.child.terminate(Duration::from_secs(10)).await, "the appkeys binary did not stop on SIGTERM");
    }

    /// Asks the binary to stop (SIGTERM); whether it did within `grace` (it is killed otherwise).
    pub async fn terminate_within(&mut self, grace: Duration) -> bool {
        self.child.terminate(grace).await
    }
}

/// A GraphQL request that tolerates a server that is gone (`None`).
pub async fn gql(client: &reqwest::Client, address: &str, auth: &Auth, query: &str, variables: Value) -> Option<Value> {
    let request = client.post(format!("{address}/graphql")).json(&json!({ "query": query, "variables": variables }));
    let response = auth.apply(request).send().await.ok()?;
    response.json().await.ok()
}

/// Logs the bootstrap owner in to `main`.
pub async fn owner_session(client: &reqwest::Client, address: &str) -> Auth {
    let login = gql(
        client,
        address,
        &Auth::None,
        "mutation($i: LoginInput!) { login(input: $i) { token } }",
        json!({ "i": { "account": "main", "email": OWNER_EMAIL, "password": OWNER_PASSWORD } }),
    )
    .await
    .expect("login");
    Auth::Bearer(login["data"]["login"]["token"].as_str().expect("token").to_owned())
}

/// The id of the account's second predefined role (User Administrator - RESTRICTED).
pub async fn restricted_role(client: &reqwest::Client, address: &str, owner: &Auth) -> String {
    let roles = gql(client, address, owner, "{ roles { id } }", json!({})).await.expect("roles");
    roles["data"]["roles"][1]["id"].as_str().expect("a role").to_owned()
}

/// Generates a key holding `role`: its value and token.
pub async fn generate_key(client: &reqwest::Client, address: &str, owner: &Auth, role: &str) -> (String, String) {
    let generate = "mutation($r: [ID!]!) { generateAppKey(input: {roleIds: $r}) { appKey { key } appToken } }";
    let made = gql(client, address, owner, generate, json!({ "r": [role] })).await.expect("a key");
    let made = &made["data"]["generateAppKey"];
    (made["appKey"]["key"].as_str().expect("key").to_owned(), made["appToken"].as_str().expect("token").to_owned())
}
