//! The account a job names: its id and Twilio credentials ([`credentials`], read from the store
//! for every job), and the master key that does not decrypt them ([`is_wrong_master_key`],
//! reported once per account by [`WrongKeyAccounts`]).

use std::collections::HashSet;
use std::sync::Mutex;

use secrecy::ExposeSecret;
use switchboard_store::StoreError;
use switchboard_twilio::AccountSid;
use switchboard_twilio::client::Credentials;
use switchboard_wire::outbound::{AccountRef, codes};

use crate::Ctx;

/// The account's id and Twilio credentials; `None` when there is no such account.
pub(crate) async fn credentials(
    ctx: &Ctx,
    account: &AccountRef,
) -> anyhow::Result<Option<(i64, Credentials)>> {
    let found = match account {
        AccountRef::Id(id) => ctx.store.credentials(*id).await?,
        AccountRef::Name(name) => ctx.store.credentials_by_name(name).await?,
    };
    let Some(found) = found else {
        return Ok(None);
    };
    // SMS and lookups are Twilio's: an account of another kind (issue 12) has no Account SID.
    let Some(sid) = found
        .account
        .account_sid
        .as_deref()
        .filter(|_| found.account.is_twilio())
    else {
        return Err(NotTwilio {
            account_id: found.account.id,
            name: found.account.name.clone(),
            kind: found.account.kind,
        }
        .into());
    };
    let sid = AccountSid::parse(sid).map_err(|e| {
        anyhow::anyhow!(
            "account {} has an invalid Account SID: {e}",
            found.account.id
        )
    })?;
    Ok(Some((
        found.account.id,
        Credentials::auth_token(sid, found.auth_token.expose_secret()),
    )))
}

/// The accounts whose stored credentials the master key did not decrypt, so the error is logged
/// once per account rather than once per job.
#[derive(Debug, Default)]
pub(crate) struct WrongKeyAccounts(Mutex<HashSet<i64>>);

impl WrongKeyAccounts {
    /// Whether `account_id` is reported for the first time (then log it).
    pub(crate) fn first(&self, account_id: i64) -> bool {
        self.0.lock().unwrap().insert(account_id)
    }

    /// The message of `error` (see [`is_wrong_master_key`]), logged the first time for its
    /// account.
    pub(crate) fn report(&self, error: &anyhow::Error) -> String {
        let message = format!("{error:#}");
        if let Some(StoreError::WrongMasterKey { account_id, .. }) = error.downcast_ref()
            && self.first(*account_id)
        {
            tracing::error!(
                account_id,
                "{message}; its jobs fail with {} without calling Twilio (logged once per account)",
                codes::CREDENTIALS_UNREADABLE
            );
        }
        message
    }
}

/// A job for Twilio (SMS, lookup) names an account of another kind: it fails at once
/// ([`codes::UNKNOWN_ACCOUNT`]), retrying cannot help.
#[derive(Debug)]
pub(crate) struct NotTwilio {
    pub account_id: i64,
    pub name: String,
    pub kind: switchboard_store::AccountKind,
}

impl std::fmt::Display for NotTwilio {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "connected account {} ('{}') is {}, not a Twilio account: SMS and lookups need a Twilio account (`switchboard accounts list`)",
            self.account_id,
            self.name,
            self.kind.describe()
        )
    }
}

impl std::error::Error for NotTwilio {}

/// The message when `error` is [`NotTwilio`].
pub(crate) fn not_twilio(error: &anyhow::Error) -> Option<String> {
    error.downcast_ref::<NotTwilio>().map(ToString::to_string)
}

/// Whether `error` is the master key failing to decrypt an account's stored credentials: no
/// retry can help until the service runs with the right key.
pub(crate) fn is_wrong_master_key(error: &anyhow::Error) -> bool {
    error
        .downcast_ref::<StoreError>()
        .is_some_and(StoreError::is_wrong_master_key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wrong_master_key_is_recognised_and_reported_once_per_account() {
        let wrong = |id: i64| {
            anyhow::Error::from(StoreError::WrongMasterKey {
                account_id: id,
                account_name: "acme".into(),
            })
        };
        assert!(is_wrong_master_key(&wrong(1)));
        assert!(!is_wrong_master_key(&anyhow::Error::from(
            StoreError::NotFound("x".into())
        )));
        assert!(!is_wrong_master_key(&anyhow::anyhow!("other")));
        let accounts = WrongKeyAccounts::default();
        let text = accounts.report(&wrong(1));
        assert!(
            text.starts_with(
                "SWITCHBOARD_MASTER_KEY does not decrypt the stored credentials of account 1 ('acme'): it differs from the key they were saved with"
            ),
            "{text}"
        );
        assert!(!accounts.first(1), "account 1 was reported already");
        assert_eq!(accounts.report(&wrong(1)), text);
        assert!(accounts.first(2));
    }
}
