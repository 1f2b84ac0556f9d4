//! `X-Twilio-Signature` (docs/semantics.md, Decision 13): a listener's webhook is verified only
//! with the accounts its bot uses; a status callback with the account whose SID it posts.

use secrecy::ExposeSecret as _;

use crate::config::Signer;
use crate::webhook::Webhook;
use crate::{Worker, header};

/// The `X-Twilio-Signature` and the posted `AccountSid` (form, else query), which must be a
/// well-formed Account SID (`AC` and 32 hex digits).
pub(crate) fn signature_and_account(hook: &Webhook) -> Result<(&str, String), &'static str> {
    let req = &hook.req;
    let signature =
        header(&req.headers, "x-twilio-signature").ok_or("missing X-Twilio-Signature")?;
    let account_sid = match hook.param("AccountSid") {
        Some(sid) => sid.to_owned(),
        None => switchboard_twilio::signature::parse_form(req.query.as_bytes())
            .into_iter()
            .find(|(k, _)| k == "AccountSid")
            .map(|(_, v)| v)
            .ok_or("no AccountSid in the request")?,
    };
    switchboard_twilio::AccountSid::parse(&account_sid)
        .map_err(|_| "AccountSid is not an Account SID (AC and 32 hex digits)")?;
    Ok((signature, account_sid))
}

/// Whether `signature` is the request's, signed with `token`; a form POST's fields are the
/// ones decoded already.
pub(crate) fn signature_matches(hook: &Webhook, signature: &str, token: &str) -> bool {
    let req = &hook.req;
    let content_type = header(&req.headers, "content-type");
    if hook.is_form_post() {
        switchboard_twilio::signature::validate_decoded(
            token,
            &req.public_url,
            content_type,
            &req.body,
            &hook.form,
            signature,
        )
    } else {
        switchboard_twilio::signature::validate(
            token,
            &req.public_url,
            content_type,
            &req.body,
            signature,
        )
    }
}

impl Worker {
    /// docs/semantics.md, Decision 13: the signature of a listener's webhook must validate with
    /// the auth token of an account its bot uses whose SID is the posted `AccountSid`. Answers
    /// that account's id. Nothing is queried: the signers came with the listener.
    pub(crate) fn webhook_signature_ok(
        hook: &Webhook,
        signers: &[Signer],
    ) -> Result<i64, &'static str> {
        let (signature, account_sid) = signature_and_account(hook)?;
        let mut of_account = signers
            .iter()
            .filter(|s| s.account_sid == account_sid)
            .peekable();
        if of_account.peek().is_none() {
            return Err(if signers.is_empty() {
                "the listener's bot uses no connected Twilio account"
            } else {
                "AccountSid is not an account the listener's bot uses"
            });
        }
        of_account
            .find(|s| signature_matches(hook, signature, s.token.expose_secret()))
            .map(|s| s.id)
            .ok_or("signature does not match")
    }

    /// The signature of a status callback (not tied to a listener) must validate with the
    /// token of a connected account whose SID is the posted `AccountSid`; only that account's
    /// messages are then updated. A malformed SID costs no query and no cache entry.
    pub(crate) async fn callback_signature_ok(
        &self,
        hook: &Webhook,
    ) -> anyhow::Result<Result<i64, &'static str>> {
        let (signature, account_sid) = match signature_and_account(hook) {
            Ok(found) => found,
            Err(reason) => return Ok(Err(reason)),
        };
        let tokens = self.tokens(&account_sid).await?;
        if tokens.is_empty() {
            return Ok(Err("no connected account has this AccountSid"));
        }
        Ok(tokens
            .iter()
            .find(|(_, t)| signature_matches(hook, signature, t.expose_secret()))
            .map(|(id, _)| *id)
            .ok_or("signature does not match"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::webhook::tests::request;

    #[test]
    fn the_posted_account_sid_must_be_well_formed_before_anything_is_looked_up() {
        let mut req = request("POST", "application/x-www-form-urlencoded");
        req.headers
            .push(("x-twilio-signature".into(), "sig".into()));
        let form = |sid: &str| {
            let mut req = req.clone();
            req.body = format!("AccountSid={sid}").into_bytes();
            Webhook::decode(req)
        };
        for bad in [
            "",
            "AC123",
            "ac0123456789abcdef0123456789abcdef",
            "SM0123456789abcdef0123456789abcdef",
        ] {
            assert!(signature_and_account(&form(bad)).is_err(), "{bad:?}");
        }
        let good = "AC0123456789abcdef0123456789abcdef";
        assert_eq!(
            signature_and_account(&form(good)),
            Ok(("sig", good.to_string()))
        );
        let signers = [Signer {
            id: 7,
            account_sid: good.into(),
            token: "token".into(),
        }];
        let other = form("AC99999999999999999999999999999999");
        assert_eq!(
            Worker::webhook_signature_ok(&other, &signers),
            Err("AccountSid is not an account the listener's bot uses")
        );
        assert_eq!(
            Worker::webhook_signature_ok(&form(good), &[]),
            Err("the listener's bot uses no connected Twilio account")
        );
        assert_eq!(
            Worker::webhook_signature_ok(&form(good), &signers),
            Err("signature does not match")
        );
    }
}
