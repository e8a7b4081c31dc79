//! What a test request carries (`Auth`) and what it gets back (`Gql`).
use serde_json::Value;

/// Credentials a test request carries.
#[derive(Debug, Clone)]
pub enum Auth {
    None,
    Bearer(String),
    Key { key: String, token: String, account: Option<String> },
    Raw(Vec<(String, String)>),
}

impl Auth {
    pub fn key(key: &str, token: &str) -> Self {
        Auth::Key { key: key.into(), token: token.into(), account: None }
    }

    pub fn key_for(key: &str, token: &str, account: &str) -> Self {
        Auth::Key { key: key.into(), token: token.into(), account: Some(account.into()) }
    }

    pub fn apply(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match self {
            Auth::None => request,
            Auth::Bearer(token) => request.bearer_auth(token),
            Auth::Key { key, token, account } => {
                let request = request.header("x-api-appkey", key).header("x-api-apptoken", token);
                match account {
                    Some(account) => request.header("x-account", account),
                    None => request,
                }
            }
            Auth::Raw(headers) => headers.iter().fold(request, |r, (k, v)| r.header(k.as_str(), v.as_str())),
        }
    }
}

/// A GraphQL response with assertions that print the whole body when they fail.
#[derive(Debug, Clone)]
pub struct Gql(pub Value);

impl Gql {
    /// `data.<path>` of a response that must have no errors.
    pub fn data(&self, path: &str) -> Value {
        assert!(self.0.get("errors").is_none(), "unexpected errors: {:#}", self.0);
        let mut value = &self.0["data"];
        for part in path.split('.').filter(|p| !p.is_empty()) {
            value = &value[part];
        }
        value.clone()
    }

    /// The `extensions.code` of the first error; fails when there is none.
    pub fn code(&self) -> String {
        self.0["errors"][0]["extensions"]["code"]
            .as_str()
            .unwrap_or_else(|| panic!("expected an error with a code: {:#}", self.0))
            .to_owned()
    }

    pub fn message(&self) -> String {
        self.0["errors"][0]["message"].as_str().unwrap_or_default().to_owned()
    }

    /// Fails unless the first error has `code`; an unexpected internal error shows the servers'
    /// latest error lines, which hold its cause (the client only ever sees "internal server error").
    pub fn assert_code(&self, code: &str) {
        let got = self.code();
        if got != code && got == "INTERNAL_SERVER_ERROR" {
            let logs = super::captured_logs();
            let errors: Vec<&str> = logs.lines().filter(|line| line.contains("ERROR")).collect();
            let latest = errors[errors.len().saturating_sub(5)..].join("\n");
            panic!(
                "expected {code}, got an internal error: {:#}\nlatest server errors in this test binary:\n{latest}",
                self.0
            );
        }
        assert_eq!(got, code, "response: {:#}", self.0);
    }
}

/// The database row id inside a global id from the API (`base64("Role:<uuid>")`), for tests that
/// compare what the API said with the rows themselves.
pub fn row_id(global: &str) -> String {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(global).expect("a global id");
    let text = String::from_utf8(bytes).expect("utf-8");
    text.split_once(':').map(|(_, id)| id.to_owned()).expect("kind:id")
}
