//! `X-Twilio-Signature`: computing and checking the HMAC Twilio puts on every webhook, exactly as
//! the official helper libraries do (form mode, `bodySHA256` mode, the port quirk).
//!
//! The URL is hashed as the string Twilio requested (scheme, host, optional port, path and query
//! verbatim). It is never re-encoded through a URL parser: Twilio signs the configured string, and
//! re-encoding (`'` → `%27`, IDNA, path normalisation) would change the bytes that were signed.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The request header that carries the signature.
pub const HEADER: &str = "X-Twilio-Signature";

/// The request header that switches signing to a "Webhooks Rules" shared key and algorithm.
pub const SETTINGS_HEADER: &str = "X-Twilio-Webhooks-Signature-Settings";

/// The query parameter that carries the hex SHA-256 of a non-form (JSON) body.
pub const BODY_SHA256_PARAM: &str = "bodySHA256";

/// Which HMAC signs the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// The classic scheme: HMAC-SHA1 keyed with the account's Auth Token.
    HmacSha1,
    /// "Webhooks Rules" signing: HMAC-SHA256 keyed with a SharedKey secret, same signed string.
    HmacSha256,
}

/// The settings header names an algorithm this crate does not know; the request must be refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown signature algorithm in {SETTINGS_HEADER}: {0:?}")]
pub struct UnknownAlgorithm(pub String);

impl Algorithm {
    /// The algorithm a request asks for, from its `X-Twilio-Webhooks-Signature-Settings` header
    /// (`key=<sharedKeyId>,algorithm=HMAC_SHA256`). No header, or no `algorithm` in it, means
    /// HMAC-SHA1 with the Auth Token; an algorithm that is not recognised is an error, never a
    /// silent fallback to SHA-1.
    pub fn from_settings_header(value: Option<&str>) -> Result<Algorithm, UnknownAlgorithm> {
        let Some(value) = value else {
            return Ok(Algorithm::HmacSha1);
        };
        for part in value.split(',') {
            let Some((name, alg)) = part.split_once('=') else {
                continue;
            };
            if name.trim().eq_ignore_ascii_case("algorithm") {
                return match alg.trim() {
                    a if a.eq_ignore_ascii_case("HMAC_SHA256") => Ok(Algorithm::HmacSha256),
                    a if a.eq_ignore_ascii_case("HMAC_SHA1") => Ok(Algorithm::HmacSha1),
                    other => Err(UnknownAlgorithm(other.to_owned())),
                };
            }
        }
        Ok(Algorithm::HmacSha1)
    }
}

/// The classic signature (HMAC-SHA1, Auth Token) of `url` plus decoded form `params`.
///
/// Keys are sorted by their raw bytes (case-sensitive: `CALLSID` < `CallSid` < `callSid`); each
/// key is followed by each of its *distinct* values in ascending order; nothing separates them.
/// Keys with an empty value still contribute their name.
pub fn compute<K: AsRef<str>, V: AsRef<str>>(
    auth_token: &str,
    url: &str,
    params: &[(K, V)],
) -> String {
    compute_with(Algorithm::HmacSha1, auth_token, url, params)
}

/// [`compute`] with an explicit algorithm (`key` is the Auth Token for SHA-1, the SharedKey
/// secret for SHA-256).
pub fn compute_with<K: AsRef<str>, V: AsRef<str>>(
    algorithm: Algorithm,
    key: &str,
    url: &str,
    params: &[(K, V)],
) -> String {
    let message = signed_string(url, params);
    let mac = match algorithm {
        Algorithm::HmacSha1 => hmac_bytes::<Hmac<Sha1>>(key, &message),
        Algorithm::HmacSha256 => hmac_bytes::<Hmac<Sha256>>(key, &message),
    };
    BASE64.encode(mac)
}

/// Validates a form-encoded (or GET, pass no params) webhook against its `X-Twilio-Signature`.
///
/// `params` are the decoded form fields in any order; keys may repeat. The URL is tried as given
/// with any explicit port removed, and with `:443`/`:80` added when it had none (kept when it
/// had one), as all official libraries do. An empty signature never validates.
pub fn validate_form<K: AsRef<str>, V: AsRef<str>>(
    auth_token: &str,
    url: &str,
    params: &[(K, V)],
    signature: &str,
) -> bool {
    validate_form_with(Algorithm::HmacSha1, auth_token, url, params, signature)
}

/// [`validate_form`] with an explicit algorithm (see [`Algorithm::from_settings_header`]).
pub fn validate_form_with<K: AsRef<str>, V: AsRef<str>>(
    algorithm: Algorithm,
    key: &str,
    url: &str,
    params: &[(K, V)],
    signature: &str,
) -> bool {
    if signature.is_empty() {
        return false;
    }
    let (without_port, with_port) = port_variants(url);
    let a = compute_with(algorithm, key, &without_port, params);
    let b = compute_with(algorithm, key, &with_port, params);
    let given = signature.as_bytes();
    // Both candidates are always computed and compared; `|` on `Choice` does not short-circuit.
    bool::from(a.as_bytes().ct_eq(given) | b.as_bytes().ct_eq(given))
}

/// Validates a request whose URL carries `bodySHA256` (JSON and other non-form bodies).
///
/// The signature covers the URL alone (which includes `bodySHA256`); the body is bound by
/// comparing its lowercase hex SHA-256 with that query value in constant time. Returns false
/// when the URL has no `bodySHA256`, when the signature is empty, or when either check fails.
pub fn validate_body(auth_token: &str, url: &str, raw_body: &[u8], signature: &str) -> bool {
    validate_body_with(Algorithm::HmacSha1, auth_token, url, raw_body, signature)
}

/// [`validate_body`] with an explicit algorithm.
pub fn validate_body_with(
    algorithm: Algorithm,
    key: &str,
    url: &str,
    raw_body: &[u8],
    signature: &str,
) -> bool {
    let Some(expected_hash) = body_sha256_param(url) else {
        return false;
    };
    let url_ok = validate_form_with::<&str, &str>(algorithm, key, url, &[], signature);
    let actual_hash = hex::encode(Sha256::digest(raw_body));
    let body_ok = bool::from(actual_hash.as_bytes().ct_eq(expected_hash.as_bytes()));
    url_ok & body_ok
}

/// Validates any webhook, picking the mode the way the official middleware does:
/// - the URL carries `bodySHA256` → body mode ([`validate_body`]);
/// - the body is `application/x-www-form-urlencoded` → its decoded fields (`+` is a space) are
///   signed with the URL ([`validate_form`]);
/// - otherwise only an empty body is acceptable (a GET, or a POST without a body), signed by URL
///   alone: a non-form body that no `bodySHA256` binds would be unauthenticated, so it fails.
pub fn validate(
    auth_token: &str,
    url: &str,
    content_type: Option<&str>,
    raw_body: &[u8],
    signature: &str,
) -> bool {
    validate_with(
        Algorithm::HmacSha1,
        auth_token,
        url,
        content_type,
        raw_body,
        signature,
    )
}

/// [`validate`] with an explicit algorithm.
pub fn validate_with(
    algorithm: Algorithm,
    key: &str,
    url: &str,
    content_type: Option<&str>,
    raw_body: &[u8],
    signature: &str,
) -> bool {
    if body_sha256_param(url).is_some() {
        return validate_body_with(algorithm, key, url, raw_body, signature);
    }
    if content_type.is_some_and(is_form_content_type) {
        let params = parse_form(raw_body);
        return validate_form_with(algorithm, key, url, &params, signature);
    }
    raw_body.is_empty() && validate_form_with::<&str, &str>(algorithm, key, url, &[], signature)
}

/// [`validate`] for a request whose form body the caller has already decoded with
/// [`parse_form`] (`fields`; read only when the body is a form): the same answer, without
/// decoding the body again. The behavior worker decodes a webhook once and shares the fields
/// between the signature check, its `MessageSid` and what it records.
pub fn validate_decoded<K: AsRef<str>, V: AsRef<str>>(
    auth_token: &str,
    url: &str,
    content_type: Option<&str>,
    raw_body: &[u8],
    fields: &[(K, V)],
    signature: &str,
) -> bool {
    if body_sha256_param(url).is_some() {
        return validate_body(auth_token, url, raw_body, signature);
    }
    if content_type.is_some_and(is_form_content_type) {
        return validate_form(auth_token, url, fields, signature);
    }
    raw_body.is_empty() && validate_form::<&str, &str>(auth_token, url, &[], signature)
}

/// The URL Twilio requested, rebuilt from the configured public base URL and the request's
/// path and query as received: behind a TLS-terminating proxy the server sees `http://internal`
/// while Twilio signed `https://public-host/…`. Only the slash between the two is adjusted; the
/// path and query are kept byte for byte.
///
/// ```
/// use switchboard_twilio::signature::public_url;
/// assert_eq!(public_url("https://bot.example.com/", "/twilio/sms?a=1"), "https://bot.example.com/twilio/sms?a=1");
/// assert_eq!(public_url("https://example.com/bots", "twilio/sms"), "https://example.com/bots/twilio/sms");
/// ```
pub fn public_url(base_url: &str, path_and_query: &str) -> String {
    let base = base_url.trim_end_matches('/');
    if path_and_query.starts_with('/') {
        format!("{base}{path_and_query}")
    } else {
        format!("{base}/{path_and_query}")
    }
}

/// Decodes an `application/x-www-form-urlencoded` body into its fields, in order, `+` as space.
pub fn parse_form(raw_body: &[u8]) -> Vec<(String, String)> {
    form_urlencoded::parse(raw_body)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// A webhook request signed the way Twilio signs it, for tests of services that receive them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedRequest {
    /// The URL to POST to (for [`sign_json`] it carries the `bodySHA256` parameter).
    pub url: String,
    /// The exact request body.
    pub body: String,
    /// The `Content-Type` header to send.
    pub content_type: &'static str,
    /// The `X-Twilio-Signature` header to send.
    pub signature: String,
}

/// Encodes `params` as a form body and signs it for `url`, as Twilio does for SMS webhooks and
/// status callbacks.
pub fn sign_form<K: AsRef<str>, V: AsRef<str>>(
    auth_token: &str,
    url: &str,
    params: &[(K, V)],
) -> SignedRequest {
    let body = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params.iter().map(|(k, v)| (k.as_ref(), v.as_ref())))
        .finish();
    SignedRequest {
        url: url.to_owned(),
        body,
        content_type: "application/x-www-form-urlencoded",
        signature: compute(auth_token, url, params),
    }
}

/// Appends `bodySHA256=<hex sha256 of body>` to `url` and signs the result, as Twilio does for
/// products that POST JSON.
pub fn sign_json(auth_token: &str, url: &str, body: &str) -> SignedRequest {
    let hash = hex::encode(Sha256::digest(body.as_bytes()));
    let separator = if url.contains('?') { '&' } else { '?' };
    let url = format!("{url}{separator}{BODY_SHA256_PARAM}={hash}");
    let signature = compute::<&str, &str>(auth_token, &url, &[]);
    SignedRequest {
        url,
        body: body.to_owned(),
        content_type: "application/json",
        signature,
    }
}

/// The string that is HMACed: the URL, then each sorted key with its sorted distinct values.
fn signed_string<K: AsRef<str>, V: AsRef<str>>(url: &str, params: &[(K, V)]) -> Vec<u8> {
    let mut pairs: Vec<(&str, &str)> = params
        .iter()
        .map(|(k, v)| (k.as_ref(), v.as_ref()))
        .collect();
    // Sorting pairs sorts keys by raw bytes and, within a key, values ascending; dedup then
    // drops repeated (key, value) pairs, which is "distinct values per key".
    pairs.sort_unstable();
    pairs.dedup();
    let len = url.len() + pairs.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>();
    let mut out = Vec::with_capacity(len);
    out.extend_from_slice(url.as_bytes());
    for (k, v) in pairs {
        out.extend_from_slice(k.as_bytes());
        out.extend_from_slice(v.as_bytes());
    }
    out
}

fn hmac_bytes<M: Mac + hmac::digest::KeyInit>(key: &str, message: &[u8]) -> Vec<u8> {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = <M as hmac::digest::KeyInit>::new_from_slice(key.as_bytes())
        .expect("HMAC takes any key length");
    mac.update(message);
    mac.finalize().into_bytes().to_vec()
}

fn is_form_content_type(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or("").trim();
    essence.eq_ignore_ascii_case("application/x-www-form-urlencoded")
}

/// The decoded value of the first `bodySHA256` query parameter, if any.
fn body_sha256_param(url: &str) -> Option<String> {
    let without_fragment = url.split('#').next().unwrap_or(url);
    let (_, query) = without_fragment.split_once('?')?;
    form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == BODY_SHA256_PARAM)
        .map(|(_, v)| v.into_owned())
}

/// The two URLs the official validators try: (any explicit port removed, default port added
/// unless a port was there). A string without `scheme://` is returned unchanged twice.
fn port_variants(url: &str) -> (String, String) {
    let Some(parts) = Authority::split(url) else {
        return (url.to_owned(), url.to_owned());
    };
    let without = format!("{}{}{}", parts.before_host, parts.host, parts.rest);
    let with = match parts.port {
        Some(_) => url.to_owned(),
        None => {
            let default = if parts.scheme.eq_ignore_ascii_case("https") {
                "443"
            } else {
                "80"
            };
            format!(
                "{}{}:{}{}",
                parts.before_host, parts.host, default, parts.rest
            )
        }
    };
    (without, with)
}

/// A URL cut around its host and port, every piece borrowed verbatim from the input.
struct Authority<'a> {
    scheme: &'a str,
    /// `scheme://` plus any `userinfo@`.
    before_host: &'a str,
    host: &'a str,
    /// The text after `:` (possibly empty), when the authority has a port separator.
    port: Option<&'a str>,
    /// Path, query and fragment.
    rest: &'a str,
}

impl<'a> Authority<'a> {
    fn split(url: &'a str) -> Option<Authority<'a>> {
        let scheme_end = url.find("://")?;
        let scheme = &url[..scheme_end];
        let auth_start = scheme_end + 3;
        let auth_len = url[auth_start..]
            .find(['/', '?', '#'])
            .unwrap_or(url.len() - auth_start);
        let auth_end = auth_start + auth_len;
        let authority = &url[auth_start..auth_end];
        let host_start = auth_start + authority.rfind('@').map_or(0, |i| i + 1);
        let hostport = &url[host_start..auth_end];
        // An IPv6 literal keeps its colons inside brackets; the port colon comes after `]`.
        let search_from = if hostport.starts_with('[') {
            hostport.find(']').unwrap_or(0)
        } else {
            0
        };
        let colon = hostport[search_from..].rfind(':').map(|i| search_from + i);
        let (host, port) = match colon {
            Some(i) => (&hostport[..i], Some(&hostport[i + 1..])),
            None => (hostport, None),
        };
        Some(Authority {
            scheme,
            before_host: &url[..host_start],
            host,
            port,
            rest: &url[auth_end..],
        })
    }
}

#[cfg(test)]
mod tests;
