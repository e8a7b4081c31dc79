//! Reading credentials from headers, strictly: a header that is present must be well-formed, and two
//! ways of saying the same thing must agree.
use axum::http::{HeaderMap, HeaderName, HeaderValue};

use super::cache::Credential;

use crate::domain::{sha256_of, AccountName, AppKeyValue, AppToken, SessionToken};
use crate::error::{AppError, AppResult};

// Names as `HeaderName`s, so a lookup does not parse its name again on every request.
pub const APP_KEY_HEADERS: [HeaderName; 2] =
    [HeaderName::from_static("x-api-appkey"), HeaderName::from_static("x-vtex-api-appkey")];
pub const APP_TOKEN_HEADERS: [HeaderName; 2] =
    [HeaderName::from_static("x-api-apptoken"), HeaderName::from_static("x-vtex-api-apptoken")];
pub const ACCOUNT_HEADER: HeaderName = HeaderName::from_static("x-account");
const AUTHORIZATION: HeaderName = axum::http::header::AUTHORIZATION;

/// The credentials a request presents, already checked for shape (not yet against the database).
pub enum Presented {
    Nothing,
    Session { token: SessionToken, account: Option<AccountName> },
    AppKey { key: AppKeyValue, token: AppToken, account: Option<AccountName> },
}

/// The credential headers' values, read in one pass and checked to agree, not yet parsed.
pub struct Raw<'h> {
    authorization: Option<&'h str>,
    key: Option<&'h str>,
    token: Option<&'h str>,
    account: Option<&'h str>,
}

impl<'h> Raw<'h> {
    pub fn read(headers: &'h HeaderMap) -> AppResult<Self> {
        // One pass over the request's headers, each compared with the names read here: cheaper than
        // a hashed lookup of each of the six names, most of them absent from any one request.
        let [mut authorization, mut key, mut token, mut account] = [None; 4];
        for (name, value) in headers {
            let slot = if name == AUTHORIZATION {
                &mut authorization
            } else if APP_KEY_HEADERS.contains(name) {
                &mut key
            } else if APP_TOKEN_HEADERS.contains(name) {
                &mut token
            } else if name == ACCOUNT_HEADER {
                &mut account
            } else {
                continue;
            };
            agree(slot, value)?;
        }
        Ok(Self { authorization, key, token, account })
    }

    /// Which credential the values name, by their arrangement alone (`None`: an ambiguous mix or a
    /// scheme other than Bearer). The one decision `credential` and `parse` share, so values that
    /// `parse` refuses for their arrangement never name a cache key.
    fn shape(&self) -> Option<Shape<'h>> {
        match (self.authorization, self.key, self.token) {
            (None, None, None) => Some(Shape::Nothing),
            (Some(value), None, None) => {
                let (scheme, token) = value.split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| Shape::Session(token.trim()))
            }
            (None, Some(key), Some(token)) => Some(Shape::AppKey(key, token)),
            // Half an app key, or a session and an app key at once: ambiguous.
            _ => None,
        }
    }

    /// What the credential cache would hold these values under, were they well-formed: the
    /// SHA-256 of the token's text, the key and the account as written. `None` for nothing or an
    /// ambiguous mix, which `parse` refuses.
    ///
    /// A cache entry is stored only under values that parsed (`Presented::credential`), so values
    /// that find one are well-formed: a cached request skips parsing (its checks, copies and
    /// checksum) and a miss parses before anything else is done.
    pub fn credential(&self) -> Option<Credential<'h>> {
        let (key, token) = match self.shape()? {
            Shape::Nothing => return None,
            Shape::Session(token) => (None, token),
            Shape::AppKey(key, token) => (Some(key), token),
        };
        Some(Credential { digest: sha256_of(token), key, account: self.account })
    }

    /// Checks the values' shapes (not yet against the database).
    pub fn parse(self) -> AppResult<Presented> {
        let account =
            self.account.map(|raw| AccountName::parse(raw).map_err(|_| AppError::Unauthenticated)).transpose()?;
        match self.shape().ok_or(AppError::Unauthenticated)? {
            Shape::Nothing => Ok(Presented::Nothing),
            Shape::Session(token) => {
                let token = SessionToken::parse(token).map_err(|_| AppError::Unauthenticated)?;
                Ok(Presented::Session { token, account })
            }
            Shape::AppKey(key, token) => {
                let key = AppKeyValue::parse(key).map_err(|_| AppError::Unauthenticated)?;
                let token = AppToken::parse(token).map_err(|_| AppError::Unauthenticated)?;
                Ok(Presented::AppKey { key, token, account })
            }
        }
    }
}

/// The credential a request's headers name: none, a session's token, or an app key and its token
/// (each value already trimmed).
enum Shape<'h> {
    Nothing,
    Session(&'h str),
    AppKey(&'h str, &'h str),
}

impl Presented {
    pub fn from_headers(headers: &HeaderMap) -> AppResult<Self> {
        Raw::read(headers)?.parse()
    }

    /// The cache key of parsed credentials (`None`: nothing presented).
    pub fn credential(&self) -> Option<Credential<'_>> {
        match self {
            Presented::Nothing => None,
            Presented::Session { token, account } => Some(Credential {
                digest: token.sha256(),
                key: None,
                account: account.as_ref().map(AccountName::as_str),
            }),
            Presented::AppKey { key, token, account } => Some(Credential {
                digest: token.sha256(),
                key: Some(key.as_str()),
                account: account.as_ref().map(AccountName::as_str),
            }),
        }
    }
}

/// Notes one value of a header (under any of its names) in `slot`: a value that is not visible
/// ASCII, or one that differs from a value already noted, is refused.
fn agree<'h>(slot: &mut Option<&'h str>, value: &'h HeaderValue) -> AppResult<()> {
    let value = value.to_str().map_err(|_| AppError::Unauthenticated)?.trim();
    match slot {
        Some(previous) if *previous != value => Err(AppError::Unauthenticated),
        _ => {
            *slot = Some(value);
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_str(value).expect("header value"));
        }
        map
    }

    #[test]
    fn no_credentials_is_nothing() {
        assert!(matches!(Presented::from_headers(&HeaderMap::new()), Ok(Presented::Nothing)));
    }

    #[test]
    fn a_bearer_session_token_is_read() {
        let token = SessionToken::generate();
        let value = format!("Bearer {}", token.expose_secret());
        assert!(matches!(
            Presented::from_headers(&headers(&[("authorization", &value)])),
            Ok(Presented::Session { .. })
        ));
    }

    #[test]
    fn malformed_authorization_headers_are_refused() {
        let token = SessionToken::generate();
        for value in ["Bearer", "Bearer x", "Basic abc", &format!("Token {}", token.expose_secret()), "Bearer akt_xyz"]
        {
            assert!(Presented::from_headers(&headers(&[("authorization", value)])).is_err(), "{value:?}");
        }
    }

    #[test]
    fn unparsed_values_name_the_cache_key_their_parse_gives_and_nothing_for_a_mix() {
        let token = AppToken::generate();
        let session = SessionToken::generate();
        let bearer = format!("Bearer  {} ", session.expose_secret());
        let key = ("x-api-appkey", "appkey-main-ABCDEF");
        for map in [
            headers(&[key, ("x-api-apptoken", token.expose_secret())]),
            headers(&[key, ("x-api-apptoken", token.expose_secret()), ("x-account", "other")]),
            headers(&[("authorization", &bearer)]),
            headers(&[("authorization", &bearer), ("x-account", "other")]),
        ] {
            let raw = Raw::read(&map).expect("agreeing headers");
            let unparsed = raw.credential().expect("a cacheable credential");
            let presented = Raw::read(&map).and_then(Raw::parse).expect("well-formed");
            assert!(presented.credential() == Some(unparsed), "one cache key either way");
        }
        for mix in [
            headers(&[]),
            headers(&[key]),
            headers(&[("x-api-apptoken", token.expose_secret())]),
            headers(&[("authorization", &bearer), key, ("x-api-apptoken", token.expose_secret())]),
            headers(&[("authorization", &format!("Basic {}", session.expose_secret()))]),
            headers(&[("authorization", "Bearer")]),
        ] {
            assert!(Raw::read(&mix).expect("agreeing headers").credential().is_none());
        }
    }

    #[test]
    fn vtex_aliases_are_accepted_and_must_agree() {
        let token = AppToken::generate();
        let ok =
            headers(&[("x-vtex-api-appkey", "appkey-main-ABCDEF"), ("x-vtex-api-apptoken", token.expose_secret())]);
        assert!(matches!(Presented::from_headers(&ok), Ok(Presented::AppKey { .. })));
        let clash = headers(&[
            ("x-api-appkey", "appkey-main-ABCDEF"),
            ("x-vtex-api-appkey", "appkey-main-ZZZZZZ"),
            ("x-api-apptoken", token.expose_secret()),
        ]);
        assert!(Presented::from_headers(&clash).is_err());
    }

    #[test]
    fn a_repeated_header_must_repeat_one_value() {
        let token = AppToken::generate();
        let key = ("x-api-appkey", "appkey-main-ABCDEF");
        let same = headers(&[key, key, ("x-api-apptoken", token.expose_secret()), ("x-account", "main")]);
        assert!(matches!(Presented::from_headers(&same), Ok(Presented::AppKey { .. })));
        let accounts =
            headers(&[key, ("x-api-apptoken", token.expose_secret()), ("x-account", "main"), ("x-account", "other")]);
        assert!(Presented::from_headers(&accounts).is_err());
        let session = SessionToken::generate();
        let bearer = format!("Bearer {}", session.expose_secret());
        let two = headers(&[("authorization", &bearer), ("authorization", "Bearer other")]);
        assert!(Presented::from_headers(&two).is_err());
        // Unrelated headers, before and after, change nothing.
        let noisy = headers(&[("user-agent", "x"), ("authorization", &bearer), ("x-forwarded-for", "10.0.0.1")]);
        assert!(matches!(Presented::from_headers(&noisy), Ok(Presented::Session { .. })));
    }

    #[test]
    fn half_an_app_key_or_a_bad_account_is_refused() {
        let token = AppToken::generate();
        assert!(Presented::from_headers(&headers(&[("x-api-appkey", "appkey-main-ABCDEF")])).is_err());
        assert!(Presented::from_headers(&headers(&[("x-api-apptoken", token.expose_secret())])).is_err());
        let bad_account = headers(&[
            ("x-api-appkey", "appkey-main-ABCDEF"),
            ("x-api-apptoken", token.expose_secret()),
            ("x-account", "Not An Account"),
        ]);
        assert!(Presented::from_headers(&bad_account).is_err());
    }
}
