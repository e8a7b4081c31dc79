//! User passwords: low-entropy secrets, so they are stored as argon2id hashes (OWASP: m = 19 MiB,
//! t = 2, p = 1). Hashing and verifying are CPU-heavy and must run off the async threads.
use argon2::password_hash::{
    rand_core::OsRng as HashOsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString,
};
use argon2::{Algorithm, Argon2, Params, Version};
use rand::distr::Alphanumeric;
use rand::rngs::OsRng;
use rand::{Rng, TryRngCore};
use secrecy::{ExposeSecret, SecretString};
use std::fmt;

use super::Invalid;

/// A plaintext password. `Debug` never shows it.
#[derive(Clone)]
pub struct Password(SecretString);

impl Password {
    pub const MIN_CHARS: usize = 12;
    pub const MAX_CHARS: usize = 1024;

    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        let len = raw.chars().count();
        if !(Self::MIN_CHARS..=Self::MAX_CHARS).contains(&len) {
            return Err(Invalid(format!("a password is {} to {} characters", Self::MIN_CHARS, Self::MAX_CHARS)));
        }
        Ok(Self(raw.to_owned().into()))
    }

    /// Accepts whatever the caller typed, for verification only (a login must not say which rule failed).
    pub fn for_verification(raw: &str) -> Self {
        let bounded: String = raw.chars().take(Self::MAX_CHARS).collect();
        Self(bounded.into())
    }

    /// A random 24-character one-time password.
    pub fn generate() -> Self {
        let random: String = OsRng.unwrap_err().sample_iter(Alphanumeric).take(24).map(char::from).collect();
        Self(random.into())
    }

    /// A valid hash of a random password, verified against when the email is unknown so that an
    /// unknown email costs the same one argon2 verification as a wrong password.
    pub fn dummy_hash() -> &'static str {
        static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
        DUMMY.get_or_init(|| Password::generate().hash().unwrap_or_default())
    }

    pub fn expose_secret(&self) -> &str {
        self.0.expose_secret()
    }

    /// An argon2id PHC string with a fresh salt. Blocking: call from `spawn_blocking`.
    pub fn hash(&self) -> anyhow::Result<String> {
        let salt = SaltString::generate(&mut HashOsRng);
        let hash = hasher()
            .hash_password(self.expose_secret().as_bytes(), &salt)
            .map_err(|e| anyhow::anyhow!("hashing a password failed: {e}"))?;
        Ok(hash.to_string())
    }

    /// Blocking: call from `spawn_blocking`. A malformed stored hash verifies as false.
    pub fn verify(&self, phc: &str) -> bool {
        PasswordHash::new(phc)
            .map(|parsed| hasher().verify_password(self.expose_secret().as_bytes(), &parsed).is_ok())
            .unwrap_or(false)
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password([REDACTED])")
    }
}

fn hasher() -> Argon2<'static> {
    let params = Params::new(19 * 1024, 2, 1, None).unwrap_or_default();
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hashed_password_verifies_and_a_wrong_one_does_not() {
        let password = Password::parse("correct horse battery").expect("valid");
        let hash = password.hash().expect("hash");
        assert!(hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert!(password.verify(&hash));
        assert!(!Password::for_verification("wrong password!").verify(&hash));
    }

    #[test]
    fn passwords_shorter_than_twelve_chars_are_rejected() {
        assert!(Password::parse("short").is_err());
        assert!(Password::parse(&"x".repeat(12)).is_ok());
    }

    #[test]
    fn a_generated_password_is_accepted_by_parse_and_never_debug_printed() {
        let password = Password::generate();
        assert!(Password::parse(password.expose_secret()).is_ok());
        assert!(!format!("{password:?}").contains(password.expose_secret()));
    }

    #[test]
    fn a_malformed_stored_hash_never_verifies() {
        assert!(!Password::for_verification("anything").verify("not-a-hash"));
    }
}
