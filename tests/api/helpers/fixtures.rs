//! Actors and things a test needs, made through the public API as a client would: sessions,
//! accounts, roles, users and keys.
use serde_json::json;

use super::{Auth, Gql, TestApp, OWNER_EMAIL, OWNER_PASSWORD};
use appkeys::service::identity::accounts;

impl TestApp {
    pub async fn login(&self, account: &str, email: &str, password: &str) -> Gql {
        self.graphql(
            &Auth::None,
            "mutation($input: LoginInput!) { login(input: $input) { token expiresAt account user { id email } } }",
            json!({ "input": { "account": account, "email": email, "password": password } }),
        )
        .await
    }

    pub async fn login_token(&self, account: &str, email: &str, password: &str) -> String {
        let token = self.login(account, email, password).await.data("login.token");
        token.as_str().expect("a token").to_owned()
    }

    /// The app with a session of the bootstrap owner of `main`, in one call.
    pub async fn with_owner(self) -> (Self, Auth) {
        let owner = self.owner().await;
        (self, owner)
    }

    /// A session of the bootstrap owner of `main`.
    pub async fn owner(&self) -> Auth {
        Auth::Bearer(self.login_token("main", OWNER_EMAIL, OWNER_PASSWORD).await)
    }

    /// Creates another account (as `appkeys account create` does) and logs its owner in.
    pub async fn account_with_owner(&self, name: &str) -> Auth {
        let email = format!("owner@{name}.example.com");
        accounts::create(self.store(), name, &email, Some(OWNER_PASSWORD)).await.expect("account created");
        Auth::Bearer(self.login_token(name, &email, OWNER_PASSWORD).await)
    }

    /// The id of a role by name, as `auth` sees it.
    pub async fn role_id(&self, auth: &Auth, name: &str) -> String {
        let roles = self.graphql(auth, "{ roles { id name } }", json!({})).await.data("roles");
        roles
            .as_array()
            .expect("roles")
            .iter()
            .find(|r| r["name"] == name)
            .and_then(|r| r["id"].as_str())
            .unwrap_or_else(|| panic!("no role {name}: {roles}"))
            .to_owned()
    }

    pub async fn owner_role(&self, auth: &Auth) -> String {
        self.role_id(auth, "Owner (Admin Super)").await
    }

    pub async fn restricted_role(&self, auth: &Auth) -> String {
        self.role_id(auth, "User Administrator - RESTRICTED").await
    }

    /// Creates a custom role holding these resources.
    pub async fn custom_role(&self, auth: &Auth, name: &str, resources: &[&str]) -> String {
        let created = self
            .graphql(
                auth,
                "mutation($input: CreateRoleInput!) { createRole(input: $input) { id } }",
                json!({ "input": { "name": name, "resourceIds": resources } }),
            )
            .await;
        created.data("createRole.id").as_str().expect("role id").to_owned()
    }

    /// Adds a user with these roles and returns a session of theirs.
    pub async fn user_with_roles(&self, auth: &Auth, email: &str, role_ids: &[String]) -> Auth {
        let added = self
            .graphql(
                auth,
                "mutation($input: AddUserInput!) { addUser(input: $input) { user { id } oneTimePassword } }",
                json!({ "input": { "email": email, "roleIds": role_ids } }),
            )
            .await;
        let password = added.data("addUser.oneTimePassword");
        let account = self.graphql(auth, "{ viewer { account } }", json!({})).await.data("viewer.account");
        Auth::Bearer(
            self.login_token(account.as_str().expect("account"), email, password.as_str().expect("password")).await,
        )
    }

    /// Generates a key with these roles; returns (key, token).
    pub async fn generate_key(&self, auth: &Auth, label: Option<&str>, role_ids: &[String]) -> (String, String) {
        let generated = self
            .graphql(
                auth,
                "mutation($input: GenerateAppKeyInput!) { generateAppKey(input: $input) { appKey { key } appToken } }",
                json!({ "input": { "label": label, "roleIds": role_ids } }),
            )
            .await;
        (
            generated.data("generateAppKey.appKey.key").as_str().expect("key").to_owned(),
            generated.data("generateAppKey.appToken").as_str().expect("token").to_owned(),
        )
    }
}
