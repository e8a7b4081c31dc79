//! Coverage-guided fuzzing of everything that parses untrusted text before any lookup: tokens, key
//! values, labels, emails, account names, resource ids and role names. Nothing may panic, and
//! whatever parses must satisfy the type's own rules.
//!
//!     cargo +nightly fuzz run parsers -- -max_total_time=60
#![no_main]

use appkeys::domain::{AccountName, AppKeyValue, AppToken, Email, KeyLabel, ResourceId, RoleName, SessionToken};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(input) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(token) = AppToken::parse(input) {
        assert_eq!(token.expose_secret(), input);
        assert!(input.starts_with("akt_") && input.len() == 50);
    }
    if let Ok(token) = SessionToken::parse(input) {
        assert!(token.expose_secret().starts_with("aks_"));
    }
    if let Ok(key) = AppKeyValue::parse(input) {
        assert!(key.as_str().len() <= AppKeyValue::MAX_LEN);
        assert!(key.as_str().bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
    }
    if let Ok(Some(label)) = KeyLabel::parse(Some(input)) {
        let label = label.into_inner();
        assert!(label.chars().count() <= KeyLabel::MAX_CHARS);
        assert!(!label.chars().any(char::is_control));
    }
    if let Ok(email) = Email::parse(input) {
        assert!(email.as_str().contains('@'));
    }
    if let Ok(account) = AccountName::parse(input) {
        assert!((2..=40).contains(&account.as_str().len()));
    }
    let _ = ResourceId::parse(input);
    let _ = RoleName::parse(input);
});
