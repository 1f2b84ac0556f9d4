//! Inbound SMS webhooks as Twilio sends them: the form, fresh message sids, and (with the
//! `harness` feature) a POST signed with `X-Twilio-Signature`.

/// A realistic inbound SMS form (docs/twilio.md §1.2), in Twilio's key order, to the test account.
pub fn inbound_sms(message_sid: &str, from: &str, body: &str) -> Vec<(String, String)> {
    [
        ("ToCountry", "US"),
        ("ToState", "CA"),
        ("SmsMessageSid", message_sid),
        ("NumMedia", "0"),
        ("ToCity", ""),
        ("FromZip", ""),
        ("SmsSid", message_sid),
        ("FromState", "CA"),
        ("SmsStatus", "received"),
        ("FromCity", ""),
        ("Body", body),
        ("FromCountry", "US"),
        ("To", "+15557654321"),
        ("ToZip", ""),
        ("NumSegments", "1"),
        ("ReferralNumMedia", "0"),
        ("MessageSid", message_sid),
        ("AccountSid", crate::ACCOUNT_SID),
        ("From", from),
        ("ApiVersion", "2010-04-01"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// A fresh `SM…` sid, unique to this process and call.
pub fn message_sid() -> String {
    let n = crate::next() as u128 + (std::process::id() as u128) * 1_000_000;
    format!("SM{:032x}", n)
}

/// POSTs `params` to `url` as Twilio delivers a webhook configured as `signed_url`: a form
/// signed with `token`, Twilio's User-Agent.
#[cfg(feature = "harness")]
pub async fn post_signed_form(
    http: &reqwest::Client,
    url: &str,
    signed_url: &str,
    params: &[(String, String)],
    token: &str,
) -> reqwest::Response {
    let signed = switchboard_twilio::signature::sign_form(token, signed_url, params);
    http.post(url)
        .header("content-type", signed.content_type)
        .header("x-twilio-signature", signed.signature)
        .header("user-agent", "TwilioProxy/1.1")
        .body(signed.body)
        .send()
        .await
        .expect("the webhook endpoint answers")
}
