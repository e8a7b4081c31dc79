//! Reading credentials from headers, strictly: a header that is present must be well-formed, and two
//! ways of saying the same thing must agree.
use axum::http::{HeaderMap, HeaderName};

use crate::domain::{AccountName, AppKeyValue, AppToken, SessionToken};
use crate::error::{AppError, AppResult};

// Names as `HeaderName`s, so a lookup does not parse its name again on every request.
pub const APP_KEY_HEADERS: [HeaderName; 2] =
    [HeaderName::from_static("x-api-appkey"), HeaderName::from_static("x-vtex-api-appkey")];
pub const APP_TOKEN_HEADERS: [HeaderName; 2] =
    [HeaderName::from_static("x-api-apptoken"), HeaderName::from_static("x-vtex-api-apptoken")];
pub const ACCOUNT_HEADER: HeaderName = HeaderName::from_static("x-account");
const AUTHORIZATION: [HeaderName; 1] = [axum::http::header::AUTHORIZATION];

/// The credentials a request presents, already checked for shape (not yet against the database).
pub enum Presented {
    Nothing,
    Session { token: SessionToken, account: Option<AccountName> },
    AppKey { key: AppKeyValue, token: AppToken, account: Option<AccountName> },
}

impl Presented {
    pub fn from_headers(headers: &HeaderMap) -> AppResult<Self> {
        let authorization = single(headers, &AUTHORIZATION)?;
        let key = single(headers, &APP_KEY_HEADERS)?;
        let token = single(headers, &APP_TOKEN_HEADERS)?;
        let account = single(headers, &[ACCOUNT_HEADER])?
            .map(|raw| AccountName::parse(raw).map_err(|_| AppError::Unauthenticated))
            .transpose()?;
        match (authorization, key, token) {
            (None, None, None) => Ok(Presented::Nothing),
            (Some(value), None, None) => {
                let (scheme, token) = value.split_once(' ').ok_or(AppError::Unauthenticated)?;
                if !scheme.eq_ignore_ascii_case("bearer") {
                    return Err(AppError::Unauthenticated);
                }
                let token = SessionToken::parse(token.trim()).map_err(|_| AppError::Unauthenticated)?;
                Ok(Presented::Session { token, account })
            }
            (None, Some(key), Some(token)) => {
                let key = AppKeyValue::parse(key).map_err(|_| AppError::Unauthenticated)?;
                let token = AppToken::parse(token.trim()).map_err(|_| AppError::Unauthenticated)?;
                Ok(Presented::AppKey { key, token, account })
            }
            // Half an app key, or a session and an app key at once: ambiguous, so refused.
            _ => Err(AppError::Unauthenticated),
        }
    }
}

/// The one value of a header (under any of its names). Repeated values that differ, or a value that
/// is not visible ASCII, are refused.
fn single<'h>(headers: &'h HeaderMap, names: &[HeaderName]) -> AppResult<Option<&'h str>> {
    let mut found: Option<&str> = None;
    for name in names {
        for value in headers.get_all(name) {
            let value = value.to_str().map_err(|_| AppError::Unauthenticated)?.trim();
            match found {
                Some(previous) if previous != value => return Err(AppError::Unauthenticated),
                _ => found = Some(value),
            }
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

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
