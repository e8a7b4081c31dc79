//! Static files embedded in the binary: the vendored GraphiQL (see `assets/graphiql/README.md`) and
//! the console (see `assets/console/README.md`). Nothing is loaded from elsewhere, so the pages work
//! offline under a `'self'`-only policy.
use axum::extract::Path;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};

/// (name, content type, bytes) of every file under `/assets/graphiql/`.
const GRAPHIQL: &[(&str, &str, &[u8])] = &[
    ("graphiql.min.js", JS, include_bytes!("../../assets/graphiql/graphiql.min.js")),
    ("graphiql.min.css", CSS, include_bytes!("../../assets/graphiql/graphiql.min.css")),
    ("react.production.min.js", JS, include_bytes!("../../assets/graphiql/react.production.min.js")),
    ("react-dom.production.min.js", JS, include_bytes!("../../assets/graphiql/react-dom.production.min.js")),
    ("graphiql-start.js", JS, include_bytes!("../../assets/graphiql/graphiql-start.js")),
    ("graphiql-page.css", CSS, include_bytes!("../../assets/graphiql/graphiql-page.css")),
];

/// (name, content type, bytes) of every file under `/assets/console/`.
const CONSOLE: &[(&str, &str, &[u8])] = &[
    ("preact-htm.js", JS, include_bytes!("../../assets/console/preact-htm.js")),
    ("console.js", JS, include_bytes!("../../assets/console/console.js")),
    ("console.css", CSS, include_bytes!("../../assets/console/console.css")),
];

const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

/// The policy of every page appkeys serves: its own scripts, styles and requests only. Fonts and
/// images may also be `data:` URLs, which is how GraphiQL's stylesheet embeds its fonts.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; font-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; \
     form-action 'self'";

/// A page of ours: never cached, never framed, under the policy above.
fn page(html: &'static str) -> Response {
    (
        [
            (header::CACHE_CONTROL, "no-store"),
            (header::X_FRAME_OPTIONS, "DENY"),
            (header::REFERRER_POLICY, "no-referrer"),
            (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
        ],
        Html(html),
    )
        .into_response()
}

/// `GET /`: GraphiQL.
pub async fn graphiql() -> Response {
    page(include_str!("graphiql.html"))
}

/// `GET /console`: the web console.
pub async fn console() -> Response {
    page(include_str!("../../assets/console/index.html"))
}

pub async fn graphiql_asset(Path(name): Path<String>) -> Response {
    asset(GRAPHIQL, &name)
}

pub async fn console_asset(Path(name): Path<String>) -> Response {
    asset(CONSOLE, &name)
}

fn asset(files: &[(&str, &'static str, &'static [u8])], name: &str) -> Response {
    let Some((_, content_type, bytes)) = files.iter().find(|(file, _, _)| *file == name) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            // Revalidated hourly: the files change only with a new appkeys.
            (header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=3600")),
        ],
        *bytes,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    /// The vendored files are the ones the READMEs name, byte for byte.
    #[test]
    fn vendored_files_match_their_recorded_hashes() {
        let vendored = |name: &str| name.ends_with(".min.js") || name.ends_with(".min.css");
        assert_hashes(GRAPHIQL, vendored, include_str!("../../assets/graphiql/README.md"), "assets/graphiql");
        assert_hashes(
            CONSOLE,
            |name| name == "preact-htm.js",
            include_str!("../../assets/console/README.md"),
            "assets/console",
        );
    }

    fn assert_hashes(files: &[(&str, &str, &[u8])], vendored: impl Fn(&str) -> bool, readme: &str, dir: &str) {
        for (name, _, bytes) in files.iter().filter(|(name, _, _)| vendored(name)) {
            let digest: String = Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect();
            assert!(readme.contains(&digest), "{name}: sha256 {digest} is not the one in {dir}/README.md");
        }
    }
}
