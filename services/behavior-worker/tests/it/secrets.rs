//! What the `behavior-worker` binary must not do with secrets: run with the test suite's public key
//! (without SWITCHBOARD_ALLOW_TEST_KEY=1, tests only), or show a password from DATABASE_URL or
//! NATS_URL in `--help` or in an error (the checks: `switchboard_test_support::secrets`).

use switchboard_test_support::secrets;

const BIN: &str = env!("CARGO_BIN_EXE_behavior-worker");

#[test]
fn the_test_key_is_refused_unless_tests_allow_it() {
    secrets::the_test_key_is_refused(BIN);
}

#[test]
fn passwords_in_urls_are_never_shown() {
    secrets::passwords_are_never_shown(BIN);
}
