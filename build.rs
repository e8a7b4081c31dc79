//! Tells the test suite which tests that need something outside Rust can run: PostgreSQL
//! (`APPKEYS_TEST_POSTGRES_URL`), nginx (`APPKEYS_TEST_NGINX`), a browser
//! (`APPKEYS_TEST_CHROMEDRIVER`) and the reference GraphQL clients from npm
//! (`APPKEYS_TEST_NODE_CLIENTS`: `tests/node` after `npm ci`). A test whose variable is unset at build time is compiled as
//! ignored, so `cargo test` reports it as ignored instead of counting a test that did nothing as
//! passed. Cargo rebuilds when a variable changes.
const GATES: [(&str, &str); 4] = [
    ("APPKEYS_TEST_POSTGRES_URL", "appkeys_postgres_tests"),
    ("APPKEYS_TEST_NGINX", "appkeys_nginx_tests"),
    ("APPKEYS_TEST_CHROMEDRIVER", "appkeys_browser_tests"),
    ("APPKEYS_TEST_NODE_CLIENTS", "appkeys_node_tests"),
];

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    for (variable, cfg) in GATES {
        println!("cargo:rustc-check-cfg=cfg({cfg})");
        println!("cargo:rerun-if-env-changed={variable}");
        if std::env::var(variable).is_ok_and(|value| !value.is_empty()) {
            println!("cargo:rustc-cfg={cfg}");
        }
    }
}
