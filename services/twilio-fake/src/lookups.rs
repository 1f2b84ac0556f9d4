//! The Lookup API: v1 (`?Type=carrier&Type=caller-name`, invalid numbers are a 404 / 20404)
//! and v2 (`?Fields=…`, invalid numbers are a 200 with `valid: false`). Answers are made up
//! from the number itself, unless a number rule (`/_fake/numbers`) says otherwise.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::error::TwilioError;
use crate::faults::LookupRule;
use crate::{AppState, apply_faults, authenticate, with_note};

/// A number that parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    /// `+` and digits.
    pub e164: String,
    /// Country calling code (`1`, `44`…).
    pub calling_code: &'static str,
    /// ISO country, when the calling code is one the fake knows.
    pub country: Option<&'static str>,
    /// The national format (`(510) 867-5310` for NANP).
    pub national: String,
}

/// Calling codes the fake knows, with their country and national number lengths. None is a
/// prefix of another, so the first match is the only one.
const COUNTRIES: &[(&str, &str, usize, usize)] = &[
    // (calling code, ISO country, fewest national digits, most national digits)
    ("1", "US", 10, 10),
    ("44", "GB", 9, 10),
    ("33", "FR", 9, 9),
    ("49", "DE", 6, 13),
    ("34", "ES", 9, 9),
    ("39", "IT", 6, 11),
    ("31", "NL", 9, 9),
    ("61", "AU", 9, 9),
    ("81", "JP", 9, 10),
    ("91", "IN", 10, 10),
    ("52", "MX", 10, 10),
    ("55", "BR", 10, 11),
];

/// Parses a number given in E.164 or, with `country` (default US), in national format.
/// The error is v2's validation error name.
pub fn parse_number(raw: &str, country: Option<&str>) -> Result<Parsed, &'static str> {
    let raw = raw.trim();
    let digits: String = if let Some(rest) = raw.strip_prefix('+') {
        if rest.is_empty() || !rest.chars().all(|c| c.is_ascii_digit()) {
            return Err("NOT_A_NUMBER");
        }
        rest.to_owned()
    } else {
        if raw.is_empty() || !raw.chars().all(|c| c.is_ascii_digit()) {
            return Err("NOT_A_NUMBER");
        }
        let iso = country.unwrap_or("US").to_ascii_uppercase();
        let Some((code, ..)) = COUNTRIES
            .iter()
            .find(|(_, c, ..)| *c == iso || (iso == "CA" && *c == "US"))
        else {
            return Err("INVALID_COUNTRY_CODE");
        };
        let national = if *code == "1" {
            raw.strip_prefix('1')
                .filter(|r| r.len() == 10)
                .unwrap_or(raw)
        } else {
            raw.strip_prefix('0').unwrap_or(raw)
        };
        format!("{code}{national}")
    };
    if digits.starts_with('0') {
        return Err("INVALID_COUNTRY_CODE");
    }
    if digits.len() > 15 {
        return Err("TOO_LONG");
    }
    match COUNTRIES.iter().find(|(code, ..)| digits.starts_with(code)) {
        Some(&(code, iso, min, max)) => {
            let national = &digits[code.len()..];
            if national.len() < min {
                return Err("TOO_SHORT");
            }
            if national.len() > max {
                return Err("TOO_LONG");
            }
            if code == "1" && (national.starts_with('0') || national.starts_with('1')) {
                return Err("INVALID_BUT_POSSIBLE");
            }
            let national_format = if code == "1" {
                format!(
                    "({}) {}-{}",
                    &national[..3],
                    &national[3..6],
                    &national[6..]
                )
            } else {
                format!("0{national}")
            };
            Ok(Parsed {
                e164: format!("+{digits}"),
                calling_code: code,
                country: Some(iso),
                national: national_format,
            })
        }
        None => {
            if digits.len() < 8 {
                return Err("TOO_SHORT");
            }
            Ok(Parsed {
                e164: format!("+{digits}"),
                calling_code: "",
                country: None,
                national: digits.clone(),
            })
        }
    }
}

fn query_values(uri: &Uri, name: &str) -> Vec<String> {
    switchboard_twilio::signature::parse_form(uri.query().unwrap_or("").as_bytes())
        .into_iter()
        .filter(|(k, _)| k == name)
        .map(|(_, v)| v)
        .collect()
}

/// The number's rule and parse result; a rule can force it invalid.
fn resolve(state: &AppState, raw: &str, uri: &Uri) -> (Result<Parsed, &'static str>, LookupRule) {
    let country = query_values(uri, "CountryCode").into_iter().next();
    let parsed = parse_number(raw, country.as_deref());
    let key = parsed.as_ref().map(|p| p.e164.as_str()).unwrap_or(raw);
    let rule = {
        let store = state.store();
        store
            .numbers
            .get(key)
            .or_else(|| store.numbers.get(raw))
            .and_then(|r| r.lookup.clone())
            .unwrap_or_default()
    };
    let parsed = match (rule.valid, parsed) {
        (Some(false), Ok(_)) => Err("INVALID_BUT_POSSIBLE"),
        (_, parsed) => parsed,
    };
    (parsed, rule)
}

fn base_url(state: &AppState) -> String {
    state
        .public_base_url
        .clone()
        .unwrap_or_else(|| "https://lookups.twilio.com".to_owned())
}

fn line_type_v1(rule: &LookupRule) -> &str {
    match rule.line_type.as_deref() {
        None | Some("mobile") => "mobile",
        Some("fixedVoip" | "nonFixedVoip" | "voip") => "voip",
        Some(_) => "landline",
    }
}

fn line_type_v2(rule: &LookupRule) -> &str {
    match rule.line_type.as_deref() {
        None => "mobile",
        Some("voip") => "nonFixedVoip",
        Some(other) => other,
    }
}

fn caller_name(rule: &LookupRule) -> Value {
    json!({
        "caller_name": rule.caller_name.clone().unwrap_or_else(|| "SWITCHBOARD FAKE".to_owned()),
        "caller_type": rule.caller_type.clone().unwrap_or_else(|| "CONSUMER".to_owned()),
        "error_code": null,
    })
}

fn network_codes(mobile: bool) -> (Value, Value) {
    if mobile {
        (json!("310"), json!("456"))
    } else {
        (Value::Null, Value::Null)
    }
}

/// `GET /v1/PhoneNumbers/{PhoneNumber}`.
#[tracing::instrument(skip_all)]
pub async fn v1(
    State(state): State<Arc<AppState>>,
    Path(number): Path<String>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    if let Err(e) = authenticate(&state, &headers, None) {
        return e.into_response();
    }
    if let Err((error, note)) = apply_faults(&state, Some(&number)).await {
        return with_note(error, note);
    }
    if let Some(forced) = crate::take_forced_error(&state, &number) {
        let note = format!("forced {}", forced.code);
        return with_note(forced.to_error(), note);
    }
    let (parsed, rule) = resolve(&state, &number, &uri);
    let Ok(parsed) = parsed else {
        return TwilioError::not_found(&format!("/PhoneNumbers/{number}")).into_response();
    };
    let types = query_values(&uri, "Type");
    let carrier = types.iter().any(|t| t == "carrier").then(|| {
        let kind = line_type_v1(&rule);
        let (mcc, mnc) = network_codes(kind == "mobile");
        json!({
            "mobile_country_code": mcc,
            "mobile_network_code": mnc,
            "name": rule.carrier_name.clone().unwrap_or_else(|| "Fake Wireless".to_owned()),
            "type": kind,
            "error_code": null,
        })
    });
    let caller = types
        .iter()
        .any(|t| t == "caller-name")
        .then(|| caller_name(&rule));
    axum::Json(json!({
        "caller_name": caller,
        "carrier": carrier,
        "country_code": parsed.country,
        "national_format": parsed.national,
        "phone_number": parsed.e164,
        "add_ons": null,
        "url": format!("{}/v1/PhoneNumbers/{}", base_url(&state), parsed.e164),
    }))
    .into_response()
}

/// `GET /v2/PhoneNumbers/{PhoneNumber}`.
#[tracing::instrument(skip_all)]
pub async fn v2(
    State(state): State<Arc<AppState>>,
    Path(number): Path<String>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    if let Err(e) = authenticate(&state, &headers, None) {
        return e.into_response();
    }
    if let Err((error, note)) = apply_faults(&state, Some(&number)).await {
        return with_note(error, note);
    }
    if let Some(forced) = crate::take_forced_error(&state, &number) {
        let note = format!("forced {}", forced.code);
        return with_note(forced.to_error(), note);
    }
    let (parsed, rule) = resolve(&state, &number, &uri);
    let fields: Vec<String> = query_values(&uri, "Fields")
        .iter()
        .flat_map(|f| f.split(','))
        .map(|f| f.trim().to_owned())
        .filter(|f| !f.is_empty())
        .collect();
    let wants = |name: &str| fields.iter().any(|f| f == name);
    let mut body = json!({
        "calling_country_code": null,
        "country_code": null,
        "phone_number": number,
        "national_format": null,
        "valid": false,
        "validation_errors": null,
        "caller_name": null,
        "sim_swap": null,
        "call_forwarding": null,
        "line_status": null,
        "line_type_intelligence": null,
        "identity_match": null,
        "reassigned_number": null,
        "sms_pumping_risk": null,
        "phone_number_quality_score": null,
        "pre_fill": null,
        "url": format!("{}/v2/PhoneNumbers/{number}", base_url(&state)),
    });
    match parsed {
        Err(reason) => {
            body["validation_errors"] = json!([reason]);
        }
        Ok(parsed) => {
            body["calling_country_code"] = json!(parsed.calling_code);
            body["country_code"] = json!(parsed.country);
            body["phone_number"] = json!(parsed.e164);
            body["national_format"] = json!(parsed.national);
            body["valid"] = json!(true);
            body["url"] = json!(format!(
                "{}/v2/PhoneNumbers/{}",
                base_url(&state),
                parsed.e164
            ));
            if wants("caller_name") {
                body["caller_name"] = caller_name(&rule);
            }
            if wants("line_type_intelligence") {
                let kind = line_type_v2(&rule);
                let (mcc, mnc) = network_codes(kind == "mobile");
                body["line_type_intelligence"] = json!({
                    "mobile_country_code": mcc,
                    "mobile_network_code": mnc,
                    "carrier_name": rule.carrier_name.clone().unwrap_or_else(|| "Fake Wireless".to_owned()),
                    "type": kind,
                    "error_code": null,
                });
            }
        }
    }
    axum::Json(body).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers() {
        let p = parse_number("+15108675310", None).unwrap();
        assert_eq!(p.national, "(510) 867-5310");
        assert_eq!(p.country, Some("US"));
        assert_eq!(
            parse_number("5108675310", None).unwrap().e164,
            "+15108675310"
        );
        assert_eq!(
            parse_number("02077651182", Some("GB")).unwrap().e164,
            "+442077651182"
        );
        assert_eq!(parse_number("+141599299600", None), Err("TOO_LONG"));
        assert_eq!(parse_number("+1415", None), Err("TOO_SHORT"));
        assert_eq!(parse_number("+1 510 867 5310", None), Err("NOT_A_NUMBER"));
        assert_eq!(parse_number("hello", None), Err("NOT_A_NUMBER"));
        assert_eq!(
            parse_number("+0123456789", None),
            Err("INVALID_COUNTRY_CODE")
        );
        assert_eq!(
            parse_number("5108675310", Some("ZZ")),
            Err("INVALID_COUNTRY_CODE")
        );
        assert!(
            parse_number("+3725123456", None).is_ok(),
            "unknown codes are possible"
        );
    }
}
