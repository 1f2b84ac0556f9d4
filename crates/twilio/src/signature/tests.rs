//! Signature tests driven by the vectors from the official helper libraries
//! (`tests/data/signature_vectors.json`, origin in `tests/data/README.md`), plus the negative
//! checks of docs/twilio.md §2.6.

use super::*;
use serde_json::Value as Json;

/// The vectors, embedded at compile time from this crate's test data.
const VECTORS: &str = include_str!("../../tests/data/signature_vectors.json");

fn vectors() -> Json {
    serde_json::from_str(VECTORS).expect("signature_vectors.json is valid JSON")
}

fn s<'a>(v: &'a Json, key: &str) -> &'a str {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("vector field {key} missing in {v}"))
}

/// The params of a vector as (key, value) pairs: `"default_params"`, an object, or `params_multi`.
fn params_of(all: &Json, v: &Json) -> Vec<(String, String)> {
    let object = |o: &Json| -> Vec<(String, String)> {
        o.as_object()
            .expect("params object")
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().expect("string value").to_owned()))
            .collect()
    };
    if let Some(multi) = v.get("params_multi") {
        return multi
            .as_array()
            .expect("params_multi array")
            .iter()
            .map(|p| {
                (
                    p[0].as_str().unwrap().to_owned(),
                    p[1].as_str().unwrap().to_owned(),
                )
            })
            .collect();
    }
    match &v["params"] {
        Json::String(name) => object(&all[name.as_str()]),
        o @ Json::Object(_) => object(o),
        other => panic!("unexpected params {other}"),
    }
}

fn request_url(v: &Json) -> &str {
    v.get("request_url")
        .and_then(Json::as_str)
        .unwrap_or_else(|| s(v, "signed_url"))
}

#[test]
fn every_form_vector_computes_and_validates() {
    let all = vectors();
    let list = all["vectors"].as_array().expect("vectors");
    assert!(
        list.len() >= 21,
        "expected the full vector set, found {}",
        list.len()
    );
    for v in list {
        let name = s(v, "name");
        let token = s(v, "auth_token");
        let params = params_of(&all, v);
        let expected = s(v, "expected");
        assert_eq!(
            compute(token, s(v, "signed_url"), &params),
            expected,
            "compute: {name}"
        );

        if name == "apostrophe_reencoded_by_whatwg" {
            // Deliberate: the URL is hashed as given, not re-encoded the WHATWG way, so only
            // node's re-encoded signature fails and the raw-string signature passes.
            let raw_sig = "dsq4Ehbj6cs+KdTkpF5sSSplOWw=";
            assert!(
                !validate_form(token, request_url(v), &params, expected),
                "{name}: no WHATWG re-encoding"
            );
            assert!(
                validate_form(token, request_url(v), &params, raw_sig),
                "{name}: raw string signature"
            );
            assert!(
                validate_form(token, s(v, "signed_url"), &params, expected),
                "{name}: signed url as given"
            );
            continue;
        }
        assert!(
            validate_form(token, request_url(v), &params, expected),
            "validate_form: {name}"
        );
        // Parameter order never matters.
        let mut reversed = params.clone();
        reversed.reverse();
        assert!(
            validate_form(token, request_url(v), &reversed, expected),
            "reversed params: {name}"
        );
    }
}

#[test]
fn every_json_body_vector_validates() {
    let all = vectors();
    let list = all["json_body_vectors"]
        .as_array()
        .expect("json_body_vectors");
    assert_eq!(list.len(), 3);
    for v in list {
        let name = s(v, "name");
        let token = s(v, "auth_token");
        let body = s(v, "raw_body").as_bytes();
        let expected = s(v, "expected");
        assert_eq!(
            compute::<&str, &str>(token, s(v, "signed_url"), &[]),
            expected,
            "compute: {name}"
        );
        if let Some(hash) = v.get("body_sha256_hex").and_then(Json::as_str) {
            assert_eq!(hex::encode(Sha256::digest(body)), hash, "body hash: {name}");
        }
        assert!(
            validate_body(token, request_url(v), body, expected),
            "validate_body: {name}"
        );
        assert!(
            validate(
                token,
                request_url(v),
                Some("application/json"),
                body,
                expected
            ),
            "validate picks body mode: {name}"
        );
    }
}

#[test]
fn hmac_sha256_vector() {
    let all = vectors();
    let v = all["computed_vectors"]
        .as_array()
        .expect("computed_vectors")
        .iter()
        .find(|v| v["name"] == "hmac_sha256_variant")
        .expect("hmac_sha256_variant vector");
    let params = params_of(&all, v);
    let (secret, url, expected) = (s(v, "secret"), s(v, "signed_url"), s(v, "expected"));
    assert_eq!(
        compute_with(Algorithm::HmacSha256, secret, url, &params),
        expected
    );
    assert!(validate_form_with(
        Algorithm::HmacSha256,
        secret,
        url,
        &params,
        expected
    ));
    // The same secret under SHA-1 is a different signature.
    assert!(!validate_form(secret, url, &params, expected));
    let alg = Algorithm::from_settings_header(Some("key=KS123,algorithm=HMAC_SHA256")).unwrap();
    assert_eq!(alg, Algorithm::HmacSha256);
    assert!(validate_with(
        alg,
        secret,
        url,
        None,
        b"",
        &compute_with(alg, secret, url, &[] as &[(&str, &str)])
    ));
}

#[test]
fn settings_header_parsing() {
    assert_eq!(
        Algorithm::from_settings_header(None),
        Ok(Algorithm::HmacSha1)
    );
    assert_eq!(
        Algorithm::from_settings_header(Some("key=KS1")),
        Ok(Algorithm::HmacSha1)
    );
    assert_eq!(
        Algorithm::from_settings_header(Some("algorithm=hmac_sha256, key=KS1")),
        Ok(Algorithm::HmacSha256)
    );
    assert_eq!(
        Algorithm::from_settings_header(Some("key=KS1,algorithm=HMAC_MD5")),
        Err(UnknownAlgorithm("HMAC_MD5".into()))
    );
}

#[test]
fn inbound_sms_form_body_vector() {
    let all = vectors();
    let v = all["computed_vectors"]
        .as_array()
        .expect("computed_vectors")
        .iter()
        .find(|v| v["name"] == "inbound_sms_shaped")
        .expect("inbound_sms_shaped vector");
    let (token, url, expected) = (s(v, "auth_token"), s(v, "signed_url"), s(v, "expected"));
    let body = s(v, "form_body").as_bytes();
    let form = "application/x-www-form-urlencoded; charset=UTF-8";
    assert!(validate(token, url, Some(form), body, expected));
    assert!(validate(
        token,
        "https://bot.example.com:443/twilio/sms",
        Some(form),
        body,
        expected
    ));
    let params = parse_form(body);
    assert!(
        params.contains(&("Body".into(), "Hi & bye +1".into())),
        "+ decodes to space: {params:?}"
    );
    assert_eq!(compute(token, url, &params), expected);
    // The same body sent as something other than a form is not a form webhook.
    assert!(!validate(token, url, Some("text/plain"), body, expected));
    assert!(!validate(token, url, None, body, expected));
    // A tampered field breaks it.
    let tampered = String::from_utf8(body.to_vec())
        .unwrap()
        .replace("Hi+%26+bye", "Hi+%26+BYE");
    assert!(!validate(
        token,
        url,
        Some(form),
        tampered.as_bytes(),
        expected
    ));
}

fn default_params() -> Vec<(String, String)> {
    let all = vectors();
    params_of(&all, &serde_json::json!({"params": "default_params"}))
}

const URL: &str = "https://mycompany.com/myapp.php?foo=1&bar=2";
const GOOD: &str = "RSOYDt4T1cUTdK1PDd93/VVr8B8=";

#[test]
fn negative_tampered_signature_fails() {
    let params = default_params();
    assert!(validate_form("12345", URL, &params, GOOD));
    assert!(!validate_form(
        "12345",
        URL,
        &params,
        "NOTRSOYDt4T1cUTdK1PDd93/VVr8B8="
    ));
    assert!(
        !validate_form("12345", URL, &params, "RSOYDt4T1cUTdK1PDd93/VVr8B8"),
        "truncated"
    );
    assert!(
        !validate_form("54321", URL, &params, GOOD),
        "wrong auth token"
    );
}

#[test]
fn negative_empty_signature_fails() {
    let params = default_params();
    assert!(!validate_form("12345", URL, &params, ""));
    assert!(!validate("12345", URL, None, b"", ""));
    // Even when the signed string would be trivially reproducible.
    assert!(!validate_form::<&str, &str>("", "", &[], ""));
}

#[test]
fn negative_wrong_body_hash_fails() {
    let body = br#"{"property": "value", "boolean": true}"#;
    let url = format!("{URL}&bodySHA256=WRONG");
    // A correctly signed URL whose hash does not match the body.
    let sig = compute::<&str, &str>("12345", &url, &[]);
    assert!(!validate_body("12345", &url, body, &sig));
    assert!(!validate(
        "12345",
        &url,
        Some("application/json"),
        body,
        &sig
    ));
    // The right URL with a different body.
    let good_url = "https://mycompany.com/myapp.php?foo=1&bar=2&bodySHA256=0a1ff7634d9ab3b95db5c9a2dfe9416e41502b283a80c7cf19632632f96e6620";
    assert!(validate_body(
        "12345",
        good_url,
        body,
        "a9nBmqA0ju/hNViExpshrM61xv4="
    ));
    assert!(!validate_body(
        "12345",
        good_url,
        br#"{"property": "value", "boolean": false}"#,
        "a9nBmqA0ju/hNViExpshrM61xv4="
    ));
    // Uppercase hex is not the lowercase digest Twilio sends.
    let upper = good_url.to_uppercase().replace(
        "HTTPS://MYCOMPANY.COM/MYAPP.PHP?FOO=1&BAR=2&BODYSHA256=",
        "",
    );
    let upper_url = format!("{URL}&bodySHA256={upper}");
    let upper_sig = compute::<&str, &str>("12345", &upper_url, &[]);
    assert!(!validate_body("12345", &upper_url, body, &upper_sig));
}

#[test]
fn negative_missing_body_hash_fails() {
    let sig = compute::<&str, &str>("12345", URL, &[]);
    assert!(
        validate_form::<&str, &str>("12345", URL, &[], &sig),
        "URL-only signature itself is fine"
    );
    assert!(
        !validate_body("12345", URL, b"{}", &sig),
        "body mode needs bodySHA256"
    );
    assert!(
        !validate("12345", URL, Some("application/json"), b"{}", &sig),
        "unbound JSON body"
    );
}

#[test]
fn negative_extra_query_param_fails() {
    let params = default_params();
    let url = format!("{URL}&somethingUnexpected=true");
    assert!(!validate_form("12345", &url, &params, GOOD));
    let body_url = "https://mycompany.com/myapp.php?foo=1&bar=2&bodySHA256=0a1ff7634d9ab3b95db5c9a2dfe9416e41502b283a80c7cf19632632f96e6620";
    let body = br#"{"property": "value", "boolean": true}"#;
    assert!(!validate_body(
        "12345",
        &format!("{body_url}&somethingUnexpected=true"),
        body,
        "a9nBmqA0ju/hNViExpshrM61xv4="
    ));
}

#[test]
fn negative_added_or_changed_param_fails() {
    let mut params = default_params();
    params.push(("Extra".into(), String::new()));
    assert!(
        !validate_form("12345", URL, &params, GOOD),
        "an empty extra key is signed too"
    );
    let mut params = default_params();
    params[0].1.push('x');
    assert!(!validate_form("12345", URL, &params, GOOD));
}

#[test]
fn port_variants_follow_the_official_libraries() {
    assert_eq!(
        port_variants("https://a.example/x?y=1"),
        (
            "https://a.example/x?y=1".into(),
            "https://a.example:443/x?y=1".into()
        )
    );
    assert_eq!(
        port_variants("http://a.example"),
        ("http://a.example".into(), "http://a.example:80".into())
    );
    assert_eq!(
        port_variants("https://u:p@a.example:8443/x"),
        (
            "https://u:p@a.example/x".into(),
            "https://u:p@a.example:8443/x".into()
        )
    );
    assert_eq!(
        port_variants("https://[::1]:8080/x"),
        ("https://[::1]/x".into(), "https://[::1]:8080/x".into())
    );
    assert_eq!(
        port_variants("https://[::1]/x"),
        ("https://[::1]/x".into(), "https://[::1]:443/x".into())
    );
    // A path or query colon is not a port.
    assert_eq!(
        port_variants("https://a.example/p:1?q=a:b").1,
        "https://a.example:443/p:1?q=a:b"
    );
    assert_eq!(
        port_variants("not a url"),
        ("not a url".into(), "not a url".into())
    );
}

#[test]
fn sign_form_round_trips_through_validate() {
    let params = [
        ("Body", "Hi & bye +1 ñ 😀"),
        ("From", "+14155551234"),
        ("To", "+15005550006"),
    ];
    let req = sign_form(
        "secret-token",
        "https://bot.example.com/twilio/sms?bot=1",
        &params,
    );
    assert_eq!(req.content_type, "application/x-www-form-urlencoded");
    assert!(req.body.contains("Body=Hi+%26+bye+%2B1"), "{}", req.body);
    assert!(validate(
        "secret-token",
        &req.url,
        Some(req.content_type),
        req.body.as_bytes(),
        &req.signature
    ));
    assert!(!validate(
        "other-token",
        &req.url,
        Some(req.content_type),
        req.body.as_bytes(),
        &req.signature
    ));
}

#[test]
fn sign_json_round_trips_through_validate() {
    let req = sign_json(
        "12345",
        "https://mycompany.com/myapp.php?foo=1&bar=2",
        r#"{"property": "value", "boolean": true}"#,
    );
    assert_eq!(req.signature, "a9nBmqA0ju/hNViExpshrM61xv4=");
    assert!(validate(
        "12345",
        &req.url,
        Some(req.content_type),
        req.body.as_bytes(),
        &req.signature
    ));
    let no_query = sign_json(
        "12345",
        "https://mycompany.com/myapp.php",
        r#"{"property": "value", "boolean": true}"#,
    );
    assert_eq!(no_query.signature, "y77kIzt2vzLz71DgmJGsen2scGs=");
}

#[test]
fn hostile_inputs_do_not_panic() {
    for url in [
        "",
        "://",
        "https://",
        "https://@",
        "https://[",
        "https://[::1",
        "https://a:",
        "x://é:ü/ñ",
        "https://a:99999999999999999999/",
    ] {
        let _ = validate_form("t", url, &[("k", "v")], "sig");
        let _ = validate_body("t", url, b"body", "sig");
        let _ = validate(
            "t",
            &format!("{url}?bodySHA256=%zz"),
            Some("application/x-www-form-urlencoded"),
            b"%%%&&==",
            "s",
        );
        assert!(!validate("t", url, None, b"", ""));
    }
}

#[test]
fn public_url_rebuilds_what_twilio_signed() {
    // The inbound SMS vector, received behind a proxy as http://10.0.0.5:8080/twilio/sms.
    let url = public_url("https://bot.example.com", "/twilio/sms");
    assert_eq!(url, "https://bot.example.com/twilio/sms");
    assert_eq!(
        public_url("https://bot.example.com/", "/twilio/sms?x=%27"),
        "https://bot.example.com/twilio/sms?x=%27"
    );
    assert_eq!(
        public_url("https://bot.example.com/", "?only=query"),
        "https://bot.example.com/?only=query"
    );
    let params = default_params();
    let sig = compute(
        "12345",
        &public_url("https://mycompany.com/", "/myapp.php?foo=1&bar=2"),
        &params,
    );
    assert_eq!(sig, GOOD);
}

#[test]
fn validate_decoded_answers_as_validate_does() {
    let url = "https://bot.example.com/webhooks/g?x=1";
    let params = [
        ("Body", "hi there"),
        ("MessageSid", "SM1"),
        ("Body", "a+b%"),
    ];
    let signed = sign_form("token", url, &params);
    let form = "application/x-www-form-urlencoded";
    let cases = [
        ("token", Some(form), signed.body.as_str()),
        ("other", Some(form), signed.body.as_str()),
        ("token", Some(form), "Body=changed"),
        ("token", None, signed.body.as_str()),
        ("token", None, ""),
    ];
    for (token, ct, body) in cases {
        let fields = parse_form(body.as_bytes());
        assert_eq!(
            validate_decoded(token, url, ct, body.as_bytes(), &fields, &signed.signature),
            validate(token, url, ct, body.as_bytes(), &signed.signature),
            "{token} {ct:?} {body}"
        );
    }
    let fields = parse_form(signed.body.as_bytes());
    assert!(validate_decoded(
        "token",
        url,
        Some(form),
        signed.body.as_bytes(),
        &fields,
        &signed.signature
    ));
    let json = sign_json("token", url, "{}");
    assert!(validate_decoded::<&str, &str>(
        "token",
        &json.url,
        Some("application/json"),
        b"{}",
        &[],
        &json.signature
    ));
}
