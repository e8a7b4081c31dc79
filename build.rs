//! Tells the test suite whether PostgreSQL tests can run: with `APPKEYS_TEST_POSTGRES_URL` set at
//! build time they are compiled as ordinary tests, without it as ignored ones, so `cargo test`
//! reports them as ignored instead of counting tests that did nothing as passed.
fn main() {
    println!("cargo:rustc-check-cfg=cfg(appkeys_postgres_tests)");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=APPKEYS_TEST_POSTGRES_URL");
    if std::env::var("APPKEYS_TEST_POSTGRES_URL").is_ok_and(|url| !url.is_empty()) {
        println!("cargo:rustc-cfg=appkeys_postgres_tests");
    }
}
