//! The life of a created message after the API answered: its status moves on (queued → sent →
//! delivered, or to failed/undelivered when a number rule says so) and each change is POSTed
//! to the message's `StatusCallback`, signed with the account's auth token as Twilio signs.
//!
//! As docs/twilio.md §1.4 says, the initial status (`queued`, or `accepted` with a Messaging
//! Service) gets no callback; every later change gets one.

use std::sync::Arc;

use rand::Rng;
use switchboard_twilio::signature;
use time::OffsetDateTime;

use crate::AppState;
use crate::error::default_message;
use crate::faults::{DeliveryFailure, FailedStatus};
use crate::store::{API_VERSION, CallbackAttempt, StoredMessage, rfc3339};

/// The sender a Messaging Service "picks" when the create named none.
pub const SERVICE_SENDER: &str = "+15005550006";

/// The statuses a message goes through after creation, each with its error code.
pub fn steps(
    via_service: bool,
    delivery: Option<&DeliveryFailure>,
) -> Vec<(&'static str, Option<u32>)> {
    let mut steps = Vec::new();
    if via_service {
        steps.push(("queued", None));
    }
    match delivery {
        None => steps.extend([("sent", None), ("delivered", None)]),
        Some(DeliveryFailure {
            status: FailedStatus::Failed,
            error_code,
        }) => steps.push(("failed", Some(*error_code))),
        Some(DeliveryFailure {
            status: FailedStatus::Undelivered,
            error_code,
        }) => steps.extend([("sent", None), ("undelivered", Some(*error_code))]),
    }
    steps
}

/// Moves the message `sid` through its statuses in the background.
pub fn start_lifecycle(
    state: &Arc<AppState>,
    account: &str,
    sid: &str,
    via_service: bool,
    delivery: Option<DeliveryFailure>,
) {
    let state = state.clone();
    let account = account.to_owned();
    let sid = sid.to_owned();
    let steps = steps(via_service, delivery.as_ref());
    tokio::spawn(async move {
        let mut shutdown = state.shutdown.clone();
        for (status, error_code) in steps {
            tokio::select! {
                () = tokio::time::sleep(state.callback_delay) => {}
                _ = shutdown.wait_for(|stopped| *stopped) => return,
            }
            let Some(callback) = advance(&state, &account, &sid, status, error_code) else {
                // The message is gone (reset): nothing more to report.
                return;
            };
            if let Some((url, params)) = callback {
                deliver(&state, &account, &sid, status, &url, params).await;
            }
        }
    });
}

/// Updates the stored message; returns the callback to send, if the message has a URL.
/// `None` when the message no longer exists.
#[allow(clippy::type_complexity)]
fn advance(
    state: &AppState,
    account: &str,
    sid: &str,
    status: &str,
    error_code: Option<u32>,
) -> Option<Option<(String, Vec<(String, String)>)>> {
    let mut store = state.store();
    let message = store.message_mut(account, sid)?;
    let now = OffsetDateTime::now_utc();
    message.status = status.to_owned();
    message.date_updated = now;
    if message.from.is_none() {
        message.from = Some(SERVICE_SENDER.to_owned());
    }
    if message.num_segments == 0 {
        message.num_segments = switchboard_twilio::segments::count(&message.body)
            .segments
            .max(1);
    }
    if status == "sent" {
        message.date_sent = Some(now);
    }
    if let Some(code) = error_code {
        message.error_code = Some(code);
        message.error_message = Some(default_message(code));
    }
    let Some(url) = message.status_callback.clone() else {
        return Some(None);
    };
    Some(Some((
        url,
        callback_params(message, status, error_code, now),
    )))
}

/// The form fields of a status callback about `message`, in the order Twilio sends them.
fn callback_params(
    message: &StoredMessage,
    status: &str,
    error_code: Option<u32>,
    now: OffsetDateTime,
) -> Vec<(String, String)> {
    let mut params: Vec<(String, String)> = Vec::new();
    let mut put = |k: &str, v: &str| params.push((k.to_owned(), v.to_owned()));
    put("SmsSid", &message.sid);
    put("SmsStatus", status);
    put("MessageStatus", status);
    put("To", &message.to);
    if let Some(service) = &message.messaging_service_sid {
        put("MessagingServiceSid", service);
    }
    put("MessageSid", &message.sid);
    put("AccountSid", &message.account_sid);
    put("From", message.from.as_deref().unwrap_or(SERVICE_SENDER));
    put("ApiVersion", API_VERSION);
    if let Some(code) = error_code {
        put("ErrorCode", &code.to_string());
    }
    if matches!(status, "delivered" | "undelivered") {
        // The carrier's DLR time, YYMMDDhhmm.
        let format =
            time::macros::format_description!("[year repr:last_two][month][day][hour][minute]");
        put("RawDlrDoneDate", &now.format(format).unwrap_or_default());
    }
    params
}

/// Why a callback asked for through the admin API was not sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManualCallbackError {
    /// No message has that SID.
    #[error("no message {0}")]
    UnknownMessage(String),
    /// The message was created without a `StatusCallback`.
    #[error("message {0} has no StatusCallback")]
    NoStatusCallback(String),
}

/// Sends one status callback about message `sid` now, with any status, without changing the
/// stored message: how Twilio's out-of-order or repeated callbacks are reproduced.
pub async fn send_now(
    state: &AppState,
    sid: &str,
    status: &str,
    error_code: Option<u32>,
) -> Result<CallbackAttempt, ManualCallbackError> {
    let (account, url, params) = {
        let store = state.store();
        let message = store
            .messages
            .iter()
            .find(|m| m.sid == sid)
            .ok_or_else(|| ManualCallbackError::UnknownMessage(sid.to_owned()))?;
        let url = message
            .status_callback
            .clone()
            .ok_or_else(|| ManualCallbackError::NoStatusCallback(sid.to_owned()))?;
        let params = callback_params(message, status, error_code, OffsetDateTime::now_utc());
        (message.account_sid.clone(), url, params)
    };
    Ok(deliver(state, &account, sid, status, &url, params).await)
}

#[tracing::instrument(skip_all, fields(message_sid = %sid, %status))]
async fn deliver(
    state: &AppState,
    account: &str,
    sid: &str,
    status: &str,
    url: &str,
    params: Vec<(String, String)>,
) -> CallbackAttempt {
    // Accounts are fixed at start-up and messages only exist for configured ones.
    let token = state
        .accounts
        .get(account)
        .map(|t| t.expose())
        .unwrap_or_default();
    let signed = signature::sign_form(token, url, &params);
    let idempotency_token = hex::encode(rand::rng().random::<[u8; 16]>());
    let _permit = state.callback_slots.acquire().await;
    let result = state
        .http
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, signed.content_type)
        .header(signature::HEADER, &signed.signature)
        .header("I-Twilio-Idempotency-Token", idempotency_token)
        .body(signed.body)
        .send()
        .await;
    let (response_status, error) = match result {
        Ok(response) => (Some(response.status().as_u16()), None),
        Err(e) => {
            tracing::info!(%url, error = %e, "status callback failed");
            (None, Some(e.to_string()))
        }
    };
    let attempt = CallbackAttempt {
        message_sid: sid.to_owned(),
        url: url.to_owned(),
        status: status.to_owned(),
        params,
        signature: signed.signature,
        timestamp: rfc3339(OffsetDateTime::now_utc()),
        response_status,
        error,
    };
    state.store().push_callback(attempt.clone());
    attempt
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_sequences() {
        let names = |s: Vec<(&'static str, Option<u32>)>| -> Vec<&'static str> {
            s.into_iter().map(|(n, _)| n).collect()
        };
        assert_eq!(names(steps(false, None)), ["sent", "delivered"]);
        assert_eq!(names(steps(true, None)), ["queued", "sent", "delivered"]);
        let undelivered = DeliveryFailure {
            status: FailedStatus::Undelivered,
            error_code: 30005,
        };
        assert_eq!(
            steps(false, Some(&undelivered)),
            [("sent", None), ("undelivered", Some(30005))]
        );
        let failed = DeliveryFailure {
            status: FailedStatus::Failed,
            error_code: 30007,
        };
        assert_eq!(
            steps(true, Some(&failed)),
            [("queued", None), ("failed", Some(30007))]
        );
    }
}
