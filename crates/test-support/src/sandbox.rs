//! The Twilio sandbox (`twilio-fake`) knowing the test account ([`ACCOUNT_SID`],
//! [`AUTH_TOKEN`]).

use crate::{ACCOUNT_SID, AUTH_TOKEN};

/// The test account as the sandbox knows it.
pub fn sandbox_account() -> twilio_fake::Account {
    twilio_fake::Account::new(
        switchboard_twilio::AccountSid::parse(ACCOUNT_SID).expect("ACCOUNT_SID is a valid sid"),
        AUTH_TOKEN,
    )
}

/// The sandbox's test configuration (port 0, the test account), checking every API request
/// against Twilio's official OpenAPI descriptions (the copy built into `twilio-fake`).
pub fn sandbox_config() -> twilio_fake::Config {
    twilio_fake::Config::for_tests(vec![sandbox_account()])
}

/// Like [`sandbox_config`], without the OpenAPI check (its directory holds no description):
/// for tests about the sandbox's answers, and benchmarks.
pub fn unchecked_sandbox_config() -> twilio_fake::Config {
    twilio_fake::Config {
        openapi_dir: Some(std::env::temp_dir().join("no-twilio-oai")),
        ..sandbox_config()
    }
}

/// A running sandbox with [`sandbox_config`].
pub async fn sandbox() -> anyhow::Result<twilio_fake::Running> {
    Ok(twilio_fake::spawn(sandbox_config()).await?)
}
