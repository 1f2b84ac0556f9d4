//! Fuzzes X-Twilio-Signature validation with hostile URLs, params, bodies and headers: it must
//! never panic, and a signature this crate computes must always validate.

#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use switchboard_twilio::signature::{self, Algorithm};

#[derive(Arbitrary, Debug)]
struct Input {
    auth_token: String,
    url: String,
    params: Vec<(String, String)>,
    content_type: Option<String>,
    body: Vec<u8>,
    signature: String,
    settings_header: Option<String>,
}

fuzz_target!(|input: Input| {
    let Input { auth_token, url, params, content_type, body, signature, settings_header } = input;

    let _ = signature::validate_form(&auth_token, &url, &params, &signature);
    let _ = signature::validate_body(&auth_token, &url, &body, &signature);
    let _ = signature::validate(&auth_token, &url, content_type.as_deref(), &body, &signature);
    let algorithm = Algorithm::from_settings_header(settings_header.as_deref()).unwrap_or(Algorithm::HmacSha256);
    let _ = signature::validate_with(algorithm, &auth_token, &url, content_type.as_deref(), &body, &signature);

    // An empty signature never validates.
    assert!(!signature::validate(&auth_token, &url, content_type.as_deref(), &body, ""));

    // Whatever the URL looks like, it is always one of the candidates tried, so a signature
    // computed over it validates, in any parameter order.
    let computed = signature::compute(&auth_token, &url, &params);
    assert!(signature::validate_form(&auth_token, &url, &params, &computed));
    let mut reversed = params.clone();
    reversed.reverse();
    assert!(signature::validate_form(&auth_token, &url, &reversed, &computed));

    // Signing a request as Twilio does and reading its body back agrees with the signature.
    let signed = signature::sign_form(&auth_token, &url, &params);
    let decoded = signature::parse_form(signed.body.as_bytes());
    assert!(signature::validate_form(&auth_token, &signed.url, &decoded, &signed.signature));
});
