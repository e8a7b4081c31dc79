//! User passwords: low-entropy secrets, so they are stored as argon2id hashes (OWASP: m = 19 MiB,
//! t = 2, p = 1). Hashing and verifying are CPU-heavy and must run off the async threads, each in a
//! `HashMemory` the caller keeps and reuses.
use argon2::password_hash::{
    self, rand_core::OsRng as HashOsRng, Decimal, Ident, Output, ParamsString, PasswordHash, PasswordHasher,
    PasswordVerifier, Salt, SaltString,
};
use argon2::{Algorithm, Argon2, Block, Params, Version};
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
    /// unknown email costs the same one argon2 verification as a wrong password. Computed once, in
    /// `memory`, by the first caller.
    pub fn dummy_hash(memory: &mut HashMemory) -> &'static str {
        static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
        DUMMY.get_or_init(|| Password::generate().hash(memory).unwrap_or_default())
    }

    pub fn expose_secret(&self) -> &str {
        self.0.expose_secret()
    }

    /// An argon2id PHC string with a fresh salt. Blocking: call from `spawn_blocking`.
    pub fn hash(&self, memory: &mut HashMemory) -> anyhow::Result<String> {
        let salt = SaltString::generate(&mut HashOsRng);
        let hash = InMemory::new(memory)
            .hash_password_customized(self.expose_secret().as_bytes(), None, None, params(), &salt)
            .map_err(|e| anyhow::anyhow!("hashing a password failed: {e}"))?;
        Ok(hash.to_string())
    }

    /// Blocking: call from `spawn_blocking`. A malformed stored hash verifies as false. The stored
    /// hash's own algorithm and parameters are used, as its PHC string names them.
    pub fn verify(&self, phc: &str, memory: &mut HashMemory) -> bool {
        PasswordHash::new(phc)
            .map(|parsed| InMemory::new(memory).verify_password(self.expose_secret().as_bytes(), &parsed).is_ok())
            .unwrap_or(false)
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password([REDACTED])")
    }
}

/// The cost every new hash is made with (argon2's defaults are these same OWASP figures).
fn params() -> Params {
    Params::new(19 * 1024, 2, 1, None).unwrap_or_default()
}

/// argon2's working memory for one hash at this module's cost: 19 MiB, allocated once and reused, so
/// what a process holds for logins is fixed at start (one per permitted concurrent login) instead of
/// depending on what the allocator keeps of each freed buffer.
pub struct HashMemory(Vec<Block>);

impl HashMemory {
    /// Allocates the blocks and writes to every one, so the memory is resident from the start (a
    /// zeroed allocation would be mapped lazily, page by page, at the first login that reaches it).
    pub fn new() -> Self {
        let mut blocks = vec![Block::default(); params().block_count()];
        for block in &mut blocks {
            AsMut::<[u64]>::as_mut(block)[0] = 1;
        }
        Self(blocks)
    }

    /// Where the blocks are, for tests that check a buffer is reused.
    #[cfg(test)]
    pub(crate) fn address(&self) -> usize {
        self.0.as_ptr() as usize
    }
}

impl Default for HashMemory {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for HashMemory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HashMemory({} blocks)", self.0.len())
    }
}

/// argon2 computing in a `HashMemory`. argon2 fills every block it reads before reading it, so what
/// an earlier hash left there changes nothing. A stored hash that asks for more memory than the
/// buffer holds (never one made here) is computed in memory allocated for it.
struct InMemory<'m> {
    memory: std::cell::RefCell<&'m mut HashMemory>,
}

impl<'m> InMemory<'m> {
    fn new(memory: &'m mut HashMemory) -> Self {
        Self { memory: std::cell::RefCell::new(memory) }
    }
}

impl PasswordHasher for InMemory<'_> {
    type Params = Params;

    fn hash_password_customized<'a>(
        &self,
        password: &[u8],
        algorithm: Option<Ident<'a>>,
        version: Option<Decimal>,
        params: Params,
        salt: impl Into<Salt<'a>>,
    ) -> password_hash::Result<PasswordHash<'a>> {
        let algorithm = algorithm.map(Algorithm::try_from).transpose()?.unwrap_or(Algorithm::Argon2id);
        let version = version.map(Version::try_from).transpose()?.unwrap_or_default();
        let salt = salt.into();
        let mut salt_buffer = [0u8; Salt::MAX_LENGTH];
        let salt_bytes = salt.decode_b64(&mut salt_buffer)?;
        let argon2 = Argon2::new(algorithm, version, params.clone());
        let mut memory = self.memory.borrow_mut();
        let output = Output::init_with(params.output_len().unwrap_or(Params::DEFAULT_OUTPUT_LEN), |out| {
            let blocks = &mut memory.0;
            Ok(if blocks.len() >= params.block_count() {
                argon2.hash_password_into_with_memory(password, salt_bytes, out, &mut blocks[..])
            } else {
                argon2.hash_password_into(password, salt_bytes, out)
            }?)
        })?;
        Ok(PasswordHash {
            algorithm: algorithm.ident(),
            version: Some(version.into()),
            params: ParamsString::try_from(&params)?,
            salt: Some(salt),
            hash: Some(output),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hashed_password_verifies_and_a_wrong_one_does_not() {
        let memory = &mut HashMemory::new();
        let password = Password::parse("correct horse battery").expect("valid");
        let hash = password.hash(memory).expect("hash");
        assert!(hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        // It was computed in the given memory: argon2 wrote every block over `new`'s mark.
        assert!(memory.0.iter().all(|block| AsRef::<[u64]>::as_ref(block)[0] != 1));
        assert!(password.verify(&hash, memory));
        assert!(!Password::for_verification("wrong password!").verify(&hash, memory));
    }

    #[test]
    fn hashes_made_in_reused_memory_are_argon2s_own() {
        let memory = &mut HashMemory::new();
        let password = Password::parse("correct horse battery").expect("valid");
        let other = Password::parse("another password entirely").expect("valid");
        let reference = Argon2::new(Algorithm::Argon2id, Version::V0x13, params());
        // Made here (after another hash filled the memory), verified by argon2's own allocating path.
        let _ = other.hash(memory).expect("hash");
        let ours = password.hash(memory).expect("hash");
        let parsed = PasswordHash::new(&ours).expect("PHC");
        assert!(reference.verify_password(password.expose_secret().as_bytes(), &parsed).is_ok());
        assert!(reference.verify_password(other.expose_secret().as_bytes(), &parsed).is_err());
        // Made by argon2's own path, verified here.
        let salt = SaltString::generate(&mut HashOsRng);
        let theirs = reference.hash_password(password.expose_secret().as_bytes(), &salt).expect("hash").to_string();
        assert!(password.verify(&theirs, memory));
        assert!(!other.verify(&theirs, memory));
    }

    #[test]
    fn a_stored_hash_is_verified_with_its_own_parameters_smaller_or_larger_than_the_memory() {
        let memory = &mut HashMemory::new();
        let password = Password::parse("correct horse battery").expect("valid");
        for (m, t) in [(8 * 1024, 3), (24 * 1024, 1)] {
            let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, Params::new(m, t, 1, None).expect("params"));
            let salt = SaltString::generate(&mut HashOsRng);
            let phc = argon2.hash_password(password.expose_secret().as_bytes(), &salt).expect("hash").to_string();
            assert!(phc.contains(&format!("m={m},t={t},p=1")), "{phc}");
            assert!(password.verify(&phc, memory), "m={m}");
            assert!(!Password::for_verification("wrong password!").verify(&phc, memory), "m={m}");
        }
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
        assert!(!Password::for_verification("anything").verify("not-a-hash", &mut HashMemory::new()));
    }
}
