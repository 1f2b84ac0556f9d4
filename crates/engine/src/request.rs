//! A webhook request as the behavior sees it (docs/semantics.md §3.1): `http_verb`, `http_body`,
//! `http_params` (query, then a POSTed urlencoded or multipart form, keys folded),
//! `http_headers` (lower-case, `_` for `-`, without Content-Type/Length), `http_path` and
//! `http_client_ip`.

use std::sync::Arc;

use indexmap::IndexMap;
use minijinja::Value;
use minijinja::value::{Enumerator, Object};
use serde::{Deserialize, Serialize};

/// An insertion-ordered map with a fast, per-process-seeded hasher (keys come from requests,
/// so not a fixed-seed hash).
pub type FastMap<K, V> = IndexMap<K, V, foldhash::fast::RandomState>;

/// A webhook request as received (what ingress forwards).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WebhookRequest {
    /// HTTP method as sent (any case).
    pub method: String,
    /// Path segments after `/webhooks/<guid>/`, joined by `/` (empty for the plain URL).
    #[serde(default)]
    pub path: String,
    /// Raw query string without `?`.
    #[serde(default)]
    pub query: String,
    /// Request headers in arrival order, names as sent.
    #[serde(default)]
    pub headers: Vec<(String, String)>,
    /// Raw body bytes.
    #[serde(default)]
    pub body: Vec<u8>,
    /// Client address (first entry when a list was given).
    #[serde(default)]
    pub client_ip: String,
}

/// A parameter value: PHP turns `a[]=1` into arrays and `a[k]=1` into maps.
#[derive(Debug, Clone, PartialEq)]
pub enum Param {
    Text(String),
    List(IndexMap<String, Param>),
}

impl Param {
    fn to_value(&self) -> Value {
        match self {
            Param::Text(s) => Value::from(s.as_str()),
            Param::List(map) => {
                let is_list = map.keys().enumerate().all(|(i, k)| k == &i.to_string());
                if is_list {
                    Value::from(map.values().map(Param::to_value).collect::<Vec<_>>())
                } else {
                    Value::from_pairs(map.iter().map(|(k, v)| (k.clone(), v.to_value())))
                }
            }
        }
    }
}

/// The request after Cerb's normalisation.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NormalizedRequest {
    pub verb: String,
    pub body: String,
    pub params: Arc<FastMap<String, Param>>,
    pub headers: Arc<FastMap<String, String>>,
    pub path: String,
    pub client_ip: String,
}

impl NormalizedRequest {
    /// A param as text: `Some("")` when missing, `None` when it is an array
    /// (docs/semantics.md, Decision 9).
    pub fn param_text(&self, name: &str) -> Option<&str> {
        match self.params.get(folded(name).as_ref()) {
            None => Some(""),
            Some(Param::Text(s)) => Some(s),
            Some(Param::List(_)) => None,
        }
    }

    /// A header as text (`""` when missing).
    pub fn header_text(&self, name: &str) -> &str {
        self.headers
            .get(folded(name).as_ref())
            .map(String::as_str)
            .unwrap_or("")
    }

    /// `http_params` as a template value.
    pub fn params_value(&self) -> Value {
        Value::from_object(ParamsObject(self.params.clone()))
    }

    /// `http_headers` as a template value.
    pub fn headers_value(&self) -> Value {
        Value::from_object(HeadersObject(self.headers.clone()))
    }
}

/// `http_params` for templates: values are converted only when a template reads them.
#[derive(Debug)]
struct ParamsObject(Arc<FastMap<String, Param>>);

impl Object for ParamsObject {
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        self.0.get(key.as_str()?).map(Param::to_value)
    }
    fn get_value_by_str(self: &Arc<Self>, key: &str) -> Option<Value> {
        self.0.get(key).map(Param::to_value)
    }
    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::Values(self.0.keys().map(|k| Value::from(k.as_str())).collect())
    }
    fn enumerator_len(self: &Arc<Self>) -> Option<usize> {
        Some(self.0.len())
    }
}

/// `http_headers` for templates.
#[derive(Debug)]
struct HeadersObject(Arc<FastMap<String, String>>);

impl Object for HeadersObject {
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        self.0.get(key.as_str()?).map(|v| Value::from(v.as_str()))
    }
    fn get_value_by_str(self: &Arc<Self>, key: &str) -> Option<Value> {
        self.0.get(key).map(|v| Value::from(v.as_str()))
    }
    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::Values(self.0.keys().map(|k| Value::from(k.as_str())).collect())
    }
    fn enumerator_len(self: &Arc<Self>) -> Option<usize> {
        Some(self.0.len())
    }
}

/// Adds a header value under `key`, joining repeated headers with `", "` as PHP's server
/// variables and Cerb's HTTP client do.
pub(crate) fn append_header<S: std::hash::BuildHasher>(
    map: &mut IndexMap<String, String, S>,
    key: String,
    value: &str,
) {
    match map.get_mut(&key) {
        Some(existing) => {
            existing.push_str(", ");
            existing.push_str(value);
        }
        None => {
            map.insert(key, value.to_string());
        }
    }
}

/// [`condition_key`] without an allocation when `name` is folded already (the usual case).
fn folded(name: &str) -> std::borrow::Cow<'_, str> {
    if name
        .bytes()
        .any(|b| b.is_ascii_uppercase() || b == b'-' || !b.is_ascii())
    {
        std::borrow::Cow::Owned(condition_key(name))
    } else {
        std::borrow::Cow::Borrowed(name)
    }
}

/// How a condition's `name` is folded before lookup: lower-case and `-` → `_` only.
pub fn condition_key(name: &str) -> String {
    name.to_lowercase().replace('-', "_")
}

/// How Cerb folds a param key: `-` → `_`, drop everything outside `[A-Za-z0-9_]`, lower-case.
pub fn param_key(name: &str) -> String {
    name.chars()
        .map(|c| if c == '-' { '_' } else { c })
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

impl WebhookRequest {
    /// Applies docs/semantics.md §3.1.
    pub fn normalize(&self) -> NormalizedRequest {
        let mut params = FastMap::default();
        merge_query(&mut params, self.query.as_bytes());
        let content_type = self
            .headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("content-type"))
            .map(|(_, v)| v.as_str())
            .unwrap_or_default();
        // PHP fills `$_POST` only for POST requests (PUT/PATCH bodies stay in `http_body`), and
        // only for the two form media types, compared without their parameters. The body wins
        // over the query string on the same key.
        if self.method.eq_ignore_ascii_case("POST") {
            match media_type(content_type).as_str() {
                "application/x-www-form-urlencoded" => merge_query(&mut params, &self.body),
                "multipart/form-data" => {
                    if let Some(boundary) = multipart_boundary(content_type) {
                        for (name, value) in multipart_fields(&self.body, boundary.as_bytes()) {
                            insert_param(&mut params, &name, value);
                        }
                    }
                }
                _ => {}
            }
        }
        let mut headers: FastMap<String, String> = FastMap::default();
        for (name, value) in &self.headers {
            let lower = name.to_ascii_lowercase();
            if lower == "content-type" || lower == "content-length" {
                continue;
            }
            append_header(&mut headers, lower.replace('-', "_"), value);
        }
        let client_ip = self
            .client_ip
            .split(',')
            .next()
            .unwrap_or("")
            .trim()
            .to_string();
        NormalizedRequest {
            verb: self.method.to_ascii_uppercase(),
            // from_utf8 checks ASCII a word at a time; the lossy decoder is only for bad input.
            body: match std::str::from_utf8(&self.body) {
                Ok(text) => text.to_owned(),
                Err(_) => String::from_utf8_lossy(&self.body).into_owned(),
            },
            params: Arc::new(params),
            headers: Arc::new(headers),
            path: self.path.clone(),
            client_ip,
        }
    }
}

/// Parses `a=1&b[]=2` the way PHP's `parse_str` builds `$_GET`/`$_POST`, then folds the
/// top-level keys the way Cerb does, inserting into `params` (later keys win). Decoding is
/// `application/x-www-form-urlencoded` (`+` is a space, `%XX` a byte, a bad escape stays
/// literal, invalid UTF-8 becomes U+FFFD), done here in one pass and one allocation per
/// component because it is most of the work of a webhook run.
fn merge_query(params: &mut FastMap<String, Param>, raw: &[u8]) {
    // A Twilio webhook has about 20 fields; the cap keeps a huge body from reserving much.
    params.reserve((raw.len() / 16 + 1).min(64));
    for pair in raw.split(|&b| b == b'&') {
        if pair.is_empty() {
            continue;
        }
        let (name, value) = match memchr::memchr(b'=', pair) {
            Some(i) => (&pair[..i], &pair[i + 1..]),
            None => (pair, &pair[..0]),
        };
        // Fast path for plain names (every Twilio field): no PHP bracket or dot handling needed.
        match plain_key(name) {
            Some(key) => {
                params.insert(key, Param::Text(decode_component(value)));
            }
            None => insert_param(params, &decode_component(name), decode_component(value)),
        }
    }
}

/// The folded key of a name made only of ASCII letters, digits, `_` and `-` (lower case, `-` →
/// `_`, what [`param_key`] gives for it), in one pass; `None` for any other name, which takes
/// PHP's full treatment.
fn plain_key(name: &[u8]) -> Option<String> {
    if name.is_empty() {
        return None;
    }
    let mut key = name.to_vec();
    for b in key.iter_mut() {
        *b = match *b {
            b'a'..=b'z' | b'0'..=b'9' | b'_' => *b,
            b'A'..=b'Z' => b.to_ascii_lowercase(),
            b'-' => b'_',
            _ => return None,
        };
    }
    String::from_utf8(key).ok()
}

/// Inserts one decoded `name=value` pair the way PHP registers a request variable (brackets
/// make arrays, ` ` and `.` in the base name become `_`), folding the top-level key like Cerb.
fn insert_param(params: &mut FastMap<String, Param>, name: &str, value: String) {
    let (base, path) = php_name(name);
    let key = param_key(&base);
    if key.is_empty() && path.is_empty() {
        return;
    }
    if path.is_empty() {
        params.insert(key, Param::Text(value));
    } else {
        let slot = params
            .entry(key)
            .or_insert_with(|| Param::List(IndexMap::new()));
        insert_path(slot, &path, value);
    }
}

/// A Content-Type without its parameters, lower-case, as PHP's SAPI compares it (cut at the
/// first `;`, `,` or space).
fn media_type(content_type: &str) -> String {
    content_type
        .trim_start()
        .split([';', ',', ' '])
        .next()
        .unwrap_or("")
        .to_ascii_lowercase()
}

/// The `boundary` parameter of a `multipart/form-data` Content-Type (quoted or not).
fn multipart_boundary(content_type: &str) -> Option<String> {
    let lower = content_type.to_ascii_lowercase();
    let at = lower.find("boundary")?;
    let rest = content_type[at + "boundary".len()..].trim_start();
    let rest = rest.strip_prefix('=')?.trim_start();
    let boundary = match rest.strip_prefix('"') {
        Some(quoted) => &quoted[..quoted.find('"')?],
        None => rest.split([',', ';']).next().unwrap_or("").trim_end(),
    };
    (!boundary.is_empty()).then(|| boundary.to_string())
}

/// The non-file fields of a `multipart/form-data` body, in order: what PHP puts in `$_POST`
/// (parts with a `filename` go to `$_FILES`, which Cerb does not read). A part's value is its
/// raw content up to the line break before the next delimiter.
fn multipart_fields(body: &[u8], boundary: &[u8]) -> Vec<(String, String)> {
    let mut delimiter = b"--".to_vec();
    delimiter.extend_from_slice(boundary);
    let mut next_delimiter = b"\n".to_vec();
    next_delimiter.extend_from_slice(&delimiter);
    let mut fields = Vec::new();
    let Some(first) = find(body, &delimiter, 0) else {
        return fields;
    };
    let mut pos = first + delimiter.len();
    loop {
        if body[pos..].starts_with(b"--") {
            break;
        }
        // The rest of the delimiter line.
        let Some(eol) = find(body, b"\n", pos) else {
            break;
        };
        pos = eol + 1;
        // Part headers, up to an empty line.
        let mut disposition = None;
        loop {
            let Some(eol) = find(body, b"\n", pos) else {
                return fields;
            };
            let line = String::from_utf8_lossy(&body[pos..eol]);
            let line = line.trim_end_matches('\r');
            pos = eol + 1;
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':')
                && name.trim().eq_ignore_ascii_case("content-disposition")
            {
                disposition = Some(value.trim().to_string());
            }
        }
        let Some(end) = find(body, &next_delimiter, pos) else {
            return fields;
        };
        let mut content = &body[pos..end];
        if let Some(stripped) = content.strip_suffix(b"\r") {
            content = stripped;
        }
        pos = end + next_delimiter.len();
        let Some(disposition) = disposition else {
            continue;
        };
        let name = disposition_param(&disposition, "name");
        if disposition_param(&disposition, "filename").is_some() {
            continue;
        }
        if let Some(name) = name {
            fields.push((name, String::from_utf8_lossy(content).into_owned()));
        }
    }
    fields
}

/// A parameter of a Content-Disposition value (`form-data; name="a"; filename="b"`).
fn disposition_param(disposition: &str, wanted: &str) -> Option<String> {
    let mut rest = disposition;
    while let Some(semi) = rest.find(';') {
        rest = rest[semi + 1..].trim_start();
        let Some((name, value)) = rest.split_once('=') else {
            break;
        };
        let (value, tail) = match value.strip_prefix('"') {
            Some(quoted) => {
                let end = quoted.find('"').unwrap_or(quoted.len());
                (&quoted[..end], &quoted[(end + 1).min(quoted.len())..])
            }
            None => {
                let end = value.find(';').unwrap_or(value.len());
                (value[..end].trim(), &value[end..])
            }
        };
        if name.trim().eq_ignore_ascii_case(wanted) {
            return Some(value.to_string());
        }
        rest = tail;
    }
    None
}

fn find(haystack: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    haystack
        .get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|i| i + from)
}

/// Decodes one `application/x-www-form-urlencoded` component.
fn decode_component(raw: &[u8]) -> String {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(raw.len());
    let mut rest = raw;
    // Copy the runs between `+` and `%` whole; most components have neither.
    while let Some(i) = memchr::memchr2(b'+', b'%', rest) {
        out.extend_from_slice(&rest[..i]);
        if rest[i] == b'+' {
            out.push(b' ');
            rest = &rest[i + 1..];
            continue;
        }
        match (
            rest.get(i + 1).and_then(|&b| hex(b)),
            rest.get(i + 2).and_then(|&b| hex(b)),
        ) {
            (Some(h), Some(l)) => {
                out.push(h << 4 | l);
                rest = &rest[i + 3..];
            }
            _ => {
                out.push(b'%');
                rest = &rest[i + 1..];
            }
        }
    }
    out.extend_from_slice(rest);
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// Splits a PHP variable name into its base (with ` ` and `.` turned into `_`, as PHP does) and
/// its bracket path (`a[x][]` → `a`, `["x", ""]`). An unclosed `[` is kept as `_` like PHP.
fn php_name(name: &str) -> (String, Vec<String>) {
    let (base_raw, rest) = match name.find('[') {
        Some(i) if name[i..].contains(']') => (&name[..i], &name[i..]),
        _ => (name, ""),
    };
    let base: String = base_raw
        .trim_start_matches(' ')
        .chars()
        .map(|c| {
            if c == ' ' || c == '.' || c == '[' {
                '_'
            } else {
                c
            }
        })
        .collect();
    let mut path = Vec::new();
    let mut rest = rest;
    while let Some(stripped) = rest.strip_prefix('[') {
        match stripped.find(']') {
            Some(end) => {
                path.push(stripped[..end].to_string());
                rest = &stripped[end + 1..];
            }
            None => break,
        }
    }
    (base, path)
}

fn insert_path(slot: &mut Param, path: &[String], value: String) {
    if !matches!(slot, Param::List(_)) {
        *slot = Param::List(IndexMap::new());
    }
    let Param::List(map) = slot else {
        unreachable!()
    };
    let key = if path[0].is_empty() {
        let next = map
            .keys()
            .filter_map(|k| k.parse::<usize>().ok())
            .map(|n| n + 1)
            .max()
            .unwrap_or(0);
        next.to_string()
    } else {
        path[0].clone()
    };
    if path.len() == 1 {
        map.insert(key, Param::Text(value));
    } else {
        let child = map
            .entry(key)
            .or_insert_with(|| Param::List(IndexMap::new()));
        insert_path(child, &path[1..], value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(body: &str) -> WebhookRequest {
        WebhookRequest {
            method: "post".into(),
            headers: vec![
                (
                    "Content-Type".into(),
                    "application/x-www-form-urlencoded".into(),
                ),
                ("Content-Length".into(), body.len().to_string()),
                ("X-Twilio-Signature".into(), "abc=".into()),
                ("User-Agent".into(), "TwilioProxy/1.1".into()),
            ],
            body: body.as_bytes().to_vec(),
            client_ip: "203.0.113.5, 10.0.0.1".into(),
            ..Default::default()
        }
    }

    #[test]
    fn twilio_form_is_folded_like_cerb() {
        let n =
            form("Body=Hi+%26+bye&From=%2B15551234567&MessageSid=SM1&raw-Request.x=1").normalize();
        assert_eq!(n.verb, "POST");
        assert_eq!(n.param_text("body"), Some("Hi & bye"));
        assert_eq!(n.param_text("From"), Some("+15551234567"));
        assert_eq!(n.param_text("messagesid"), Some("SM1"));
        // `.` becomes `_` (PHP), then `-` becomes `_` (Cerb)
        assert!(n.params.contains_key("raw_request_x"));
        assert_eq!(n.param_text("missing"), Some(""));
        assert_eq!(n.client_ip, "203.0.113.5");
        assert_eq!(n.header_text("x-twilio-signature"), "abc=");
        assert_eq!(
            n.headers.get("user_agent").map(String::as_str),
            Some("TwilioProxy/1.1")
        );
        assert!(!n.headers.contains_key("content_type"));
        assert!(!n.headers.contains_key("content_length"));
        assert_eq!(
            n.body,
            "Body=Hi+%26+bye&From=%2B15551234567&MessageSid=SM1&raw-Request.x=1"
        );
    }

    #[test]
    fn form_wins_over_query_and_json_bodies_are_not_params() {
        let mut r = form("Body=form");
        r.query = "Body=query&Extra=1".into();
        let n = r.normalize();
        assert_eq!(n.param_text("body"), Some("form"));
        assert_eq!(n.param_text("extra"), Some("1"));

        let json = WebhookRequest {
            method: "POST".into(),
            headers: vec![("content-type".into(), "application/json".into())],
            body: br#"{"Body":"x"}"#.to_vec(),
            ..Default::default()
        };
        let n = json.normalize();
        assert!(n.params.is_empty());
        assert_eq!(n.body, r#"{"Body":"x"}"#);
    }

    #[test]
    fn bracket_params_become_arrays() {
        let n = form("a[]=1&a[]=2&m[x]=3&m[y][]=4").normalize();
        assert_eq!(n.param_text("a"), None);
        assert_eq!(n.params_value().get_attr("a").unwrap().len(), Some(2));
        let m = n.params_value().get_attr("m").unwrap();
        assert_eq!(m.get_attr("x").unwrap().as_str(), Some("3"));
    }

    #[test]
    fn decoding_matches_the_form_urlencoded_crate() {
        let cases = [
            "a=1&b=2",
            "Body=Hi+%26+bye",
            "x=%",
            "x=%2",
            "x=%zz",
            "x=%41%42",
            "x=%e2%82%ac",
            "x=%ff%fe",
            "&&a=&=b&c",
            "k%20ey=v+al",
            "To=%2B15551234567",
            "emoji=%F0%9F%98%80+ok",
            "a=b=c",
            "=",
            "%",
            "+=+",
        ];
        for raw in cases {
            let ours: Vec<(String, String)> = raw
                .as_bytes()
                .split(|&b| b == b'&')
                .filter(|p| !p.is_empty())
                .map(|p| match p.iter().position(|&b| b == b'=') {
                    Some(i) => (decode_component(&p[..i]), decode_component(&p[i + 1..])),
                    None => (decode_component(p), String::new()),
                })
                .collect();
            let theirs: Vec<(String, String)> = form_urlencoded::parse(raw.as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect();
            assert_eq!(ours, theirs, "{raw:?}");
        }
    }

    #[test]
    fn only_post_form_bodies_become_params() {
        let mut put = form("Body=put");
        put.method = "PUT".into();
        put.query = "q=1".into();
        let n = put.normalize();
        assert_eq!(
            n.param_text("body"),
            Some(""),
            "PHP fills $_POST for POST only"
        );
        assert_eq!(n.param_text("q"), Some("1"));
        assert_eq!(n.body, "Body=put");

        for (content_type, parsed) in [
            ("application/x-www-form-urlencoded; charset=UTF-8", true),
            ("Application/X-WWW-Form-Urlencoded", true),
            ("application/x-www-form-urlencodedx", false),
            ("text/plain", false),
            ("", false),
        ] {
            let mut r = form("Body=x");
            r.headers[0].1 = content_type.into();
            let expected = if parsed { Some("x") } else { Some("") };
            assert_eq!(
                r.normalize().param_text("body"),
                expected,
                "{content_type:?}"
            );
        }
    }

    #[test]
    fn multipart_fields_are_params_and_files_are_not() {
        let body = concat!(
            "preamble\r\n",
            "--XyZ\r\n",
            "Content-Disposition: form-data; name=\"Body\"\r\n",
            "\r\n",
            "line 1\r\nline 2\r\n",
            "--XyZ\r\n",
            "content-disposition: form-data; name=\"upload\"; filename=\"a.txt\"\r\n",
            "Content-Type: text/plain\r\n",
            "\r\n",
            "file content\r\n",
            "--XyZ\r\n",
            "Content-Disposition: form-data; name=\"tags[]\"\r\n",
            "\r\n",
            "a\r\n",
            "--XyZ\r\n",
            "Content-Disposition: form-data; name=\"Media-Url.0\"\r\n",
            "\r\n",
            "\r\n",
            "--XyZ--\r\n",
        );
        let r = WebhookRequest {
            method: "POST".into(),
            query: "Body=query&q=1".into(),
            headers: vec![(
                "Content-Type".into(),
                "multipart/form-data; boundary=\"XyZ\"".into(),
            )],
            body: body.as_bytes().to_vec(),
            ..Default::default()
        };
        let n = r.normalize();
        assert_eq!(n.param_text("body"), Some("line 1\r\nline 2"));
        assert_eq!(n.param_text("q"), Some("1"));
        assert_eq!(n.param_text("tags"), None, "tags[] is an array");
        assert_eq!(n.param_text("media_url_0"), Some(""));
        assert!(!n.params.contains_key("upload"), "file parts go to $_FILES");
        assert_eq!(n.params.len(), 4);
        assert_eq!(n.body, body, "the raw body is kept");
    }

    #[test]
    fn repeated_headers_are_joined() {
        let r = WebhookRequest {
            method: "GET".into(),
            headers: vec![("X-A".into(), "1".into()), ("x-a".into(), "2".into())],
            ..Default::default()
        };
        assert_eq!(r.normalize().header_text("X-A"), "1, 2");
    }
}
