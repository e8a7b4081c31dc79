//! Secret bearer tokens: `{prefix}` + 40 base62 characters from the OS CSPRNG (≥ 238 bits) + 6 base62
//! characters of CRC32 over everything before them. The checksum lets the server (and secret scanners)
//! reject a malformed token before any lookup. Only the SHA-256 digest is ever stored.
use rand::distr::Alphanumeric;
use rand::rngs::OsRng;
use rand::{Rng, TryRngCore};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use std::fmt;
use std::marker::PhantomData;
use subtle::ConstantTimeEq;

const RANDOM_CHARS: usize = 40;
const CHECKSUM_CHARS: usize = 6;
const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// What a token is for: its prefix tells a reader (and a secret scanner) at a glance.
pub trait TokenKind {
    const PREFIX: &'static str;
}

#[derive(Debug)]
pub enum AppTokenKind {}
impl TokenKind for AppTokenKind {
    const PREFIX: &'static str = "akt_";
}

#[derive(Debug)]
pub enum SessionTokenKind {}
impl TokenKind for SessionTokenKind {
    const PREFIX: &'static str = "aks_";
}

#[derive(Debug)]
pub enum DownloadTokenKind {}
impl TokenKind for DownloadTokenKind {
    const PREFIX: &'static str = "akd_";
}

/// An application key's secret token.
pub type AppToken = Token<AppTokenKind>;
/// A user's session token.
pub type SessionToken = Token<SessionTokenKind>;
/// A single-use export download ticket.
pub type DownloadToken = Token<DownloadTokenKind>;

/// Why a presented token was refused before any lookup. Never contains the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenFormatError {
    #[error("the token has the wrong prefix or length")]
    Shape,
    #[error("the token contains characters outside base62")]
    Alphabet,
    #[error("the token's checksum does not match")]
    Checksum,
}

/// A plaintext secret token. `Debug` and `Display` never show it; `expose_secret` is the one way out.
pub struct Token<K: TokenKind> {
    secret: SecretString,
    kind: PhantomData<K>,
}

impl<K: TokenKind> Token<K> {
    pub fn generate() -> Self {
        let mut rng = OsRng.unwrap_err();
        let mut body = String::with_capacity(K::PREFIX.len() + RANDOM_CHARS + CHECKSUM_CHARS);
        body.push_str(K::PREFIX);
        body.extend((&mut rng).sample_iter(Alphanumeric).take(RANDOM_CHARS).map(char::from));
        let checksum = checksum(&body);
        body.extend(checksum.map(char::from));
        Self { secret: body.into(), kind: PhantomData }
    }

    /// Checks prefix, length, alphabet and checksum; does not touch the database.
    pub fn parse(raw: &str) -> Result<Self, TokenFormatError> {
        let expected_len = K::PREFIX.len() + RANDOM_CHARS + CHECKSUM_CHARS;
        if raw.len() != expected_len || !raw.starts_with(K::PREFIX) {
            return Err(TokenFormatError::Shape);
        }
        let rest = &raw[K::PREFIX.len()..];
        if !rest.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(TokenFormatError::Alphabet);
        }
        let (body, sum) = raw.split_at(expected_len - CHECKSUM_CHARS);
        if !bool::from(checksum(body)[..].ct_eq(sum.as_bytes())) {
            return Err(TokenFormatError::Checksum);
        }
        Ok(Self { secret: raw.to_owned().into(), kind: PhantomData })
    }

    pub fn digest(&self) -> TokenDigest {
        TokenDigest::of(self.secret.expose_secret())
    }

    /// The SHA-256 as bytes: the digest `digest` writes out as hex, for a lookup in memory.
    pub fn sha256(&self) -> [u8; 32] {
        sha256_of(self.secret.expose_secret())
    }

    /// The plaintext, for the one response that reveals it.
    pub fn expose_secret(&self) -> &str {
        self.secret.expose_secret()
    }
}

impl<K: TokenKind> fmt::Debug for Token<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Token({}[REDACTED])", K::PREFIX)
    }
}

/// The SHA-256 of a token's text, parsed or not (`Token::sha256` of a parsed one).
pub fn sha256_of(text: &str) -> [u8; 32] {
    Sha256::digest(text.as_bytes()).into()
}

/// The checksum's characters (base62, so ASCII), written where they are needed rather than allocated.
fn checksum(body: &str) -> [u8; CHECKSUM_CHARS] {
    let mut n = u64::from(crc32fast::hash(body.as_bytes()));
    let mut out = [b'0'; CHECKSUM_CHARS];
    for slot in out.iter_mut().rev() {
        *slot = BASE62[(n % 62) as usize];
        n /= 62;
    }
    out
}

/// Lowercase hex SHA-256 of a token: what the database holds instead of the token.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenDigest(String);

impl TokenDigest {
    pub fn of(token: &str) -> Self {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let hash = Sha256::digest(token.as_bytes());
        let mut hex = String::with_capacity(64);
        for byte in hash {
            hex.push(char::from(HEX[usize::from(byte >> 4)]));
            hex.push(char::from(HEX[usize::from(byte & 0x0f)]));
        }
        Self(hex)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The hex text, moved out (a cache key keeps it without copying).
    pub fn into_string(self) -> String {
        self.0
    }

    /// Constant-time comparison with a stored digest.
    pub fn matches(&self, stored: &str) -> bool {
        bool::from(self.0.as_bytes().ct_eq(stored.as_bytes()))
    }
}

impl fmt::Debug for TokenDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenDigest(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_token_has_prefix_forty_random_chars_and_a_checksum() {
        let token = AppToken::generate();
        let raw = token.expose_secret();
        assert!(raw.starts_with("akt_"));
        assert_eq!(raw.len(), 4 + 40 + 6);
        assert!(raw[4..].bytes().all(|b| b.is_ascii_alphanumeric()));
        assert!(AppToken::parse(raw).is_ok());
    }

    #[test]
    fn two_generated_tokens_differ() {
        assert_ne!(AppToken::generate().expose_secret(), AppToken::generate().expose_secret());
    }

    #[test]
    fn a_token_with_one_changed_character_fails_its_checksum() {
        let token = AppToken::generate();
        let mut raw = token.expose_secret().to_owned().into_bytes();
        raw[10] = if raw[10] == b'a' { b'b' } else { b'a' };
        let raw = String::from_utf8(raw).expect("ascii");
        assert_eq!(AppToken::parse(&raw).err(), Some(TokenFormatError::Checksum));
    }

    #[test]
    fn a_token_of_another_kind_or_shape_is_refused() {
        let session = SessionToken::generate();
        assert_eq!(AppToken::parse(session.expose_secret()).err(), Some(TokenFormatError::Shape));
        assert_eq!(AppToken::parse("akt_short").err(), Some(TokenFormatError::Shape));
        assert_eq!(AppToken::parse("").err(), Some(TokenFormatError::Shape));
        let bad = format!("akt_{}", "-".repeat(46));
        assert_eq!(AppToken::parse(&bad).err(), Some(TokenFormatError::Alphabet));
        let multibyte = format!("akt_{}é", "a".repeat(44));
        assert!(AppToken::parse(&multibyte).is_err());
    }

    #[test]
    fn debug_output_never_shows_the_secret() {
        let token = AppToken::generate();
        let shown = format!("{token:?} {:?}", token.digest());
        assert!(!shown.contains(&token.expose_secret()[4..]));
    }

    #[test]
    fn the_digest_is_sha256_hex_and_compares_exactly() {
        let digest = TokenDigest::of("abc");
        assert_eq!(digest.as_str(), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert!(digest.matches("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"));
        assert!(!digest.matches("00"));
        let token = AppToken::generate();
        let hex: String = token.sha256().iter().map(|byte| format!("{byte:02x}")).collect();
        assert_eq!(hex, token.digest().as_str(), "the bytes are the digest the database holds");
    }
}
