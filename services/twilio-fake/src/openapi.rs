//! Request checking against Twilio's official OpenAPI descriptions: finds the operation a
//! request is for and lists every way the request departs from it. Nothing is rejected here:
//! the violations are recorded beside the request so tests can assert there are none.
//!
//! Covered: path template match (with Twilio's `.json` suffix rule), path and query parameters
//! (required, repeated, array items, type, enum, minLength/maxLength, pattern, minimum/maximum,
//! `format: uri`), unknown query parameters, the form body of `application/x-www-form-urlencoded`
//! operations (required properties, unknown properties, arrays as repeated keys, the same value
//! checks), the `x-twilio.conditional` one-of groups, the `Content-Type`, and the presence of
//! Basic credentials for operations secured by HTTP basic.
//!
//! Not covered: formats other than `uri` (`phone-number`, `date-time` are documented loosely
//! and Twilio's own examples break them), `oneOf`/`anyOf`/`allOf` schemas (none of the
//! Messages and Lookups operations use them), header parameters, JSON request bodies, and
//! responses.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use percent_encoding::percent_decode_str;
use regex::Regex;
use serde::Serialize;
use serde_json::Value;

/// The spec files looked for in the OpenAPI directory.
pub const SPEC_FILES: &[&str] = &[
    "twilio_api_v2010.json",
    "twilio_lookups_v1.json",
    "twilio_lookups_v2.json",
];

/// Twilio's official descriptions built into the binary, as `(file name, text)`: the copy in
/// this crate's `openapi/` directory (origin and licence in its README), so the sandbox checks
/// requests wherever it runs, with no file to mount.
pub const EMBEDDED: &[(&str, &str)] = &[
    (
        "twilio_api_v2010.json",
        include_str!("../openapi/twilio_api_v2010.json"),
    ),
    (
        "twilio_lookups_v1.json",
        include_str!("../openapi/twilio_lookups_v1.json"),
    ),
    (
        "twilio_lookups_v2.json",
        include_str!("../openapi/twilio_lookups_v2.json"),
    ),
];

/// One way a request departs from the OpenAPI description.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Violation {
    /// Where: `path`, `query`, `body`, `header` or `operation`.
    pub location: &'static str,
    /// The parameter, property or header concerned (the path itself for `operation`).
    pub name: String,
    /// What is wrong.
    pub message: String,
}

impl Violation {
    fn new(location: &'static str, name: impl Into<String>, message: impl Into<String>) -> Self {
        Violation {
            location,
            name: name.into(),
            message: message.into(),
        }
    }
}

/// The parts of a request the checker looks at.
#[derive(Debug, Clone, Copy)]
pub struct CheckRequest<'a> {
    /// `GET`, `POST`…
    pub method: &'a str,
    /// The path as received, still percent-encoded.
    pub path: &'a str,
    /// Decoded query parameters in order (keys may repeat).
    pub query: &'a [(String, String)],
    /// The `Content-Type` header, if any.
    pub content_type: Option<&'a str>,
    /// Decoded form fields in order (keys may repeat); empty for other bodies.
    pub form: &'a [(String, String)],
    /// Whether the body is empty (a POST without a body still needs a content type check).
    pub body_is_empty: bool,
    /// Whether the request carries `Authorization: Basic …`.
    pub has_basic_auth: bool,
}

/// What the checker found for one request.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CheckOutcome {
    /// `operationId` of the operation the request matched, if any.
    pub operation: Option<String>,
    /// The spec's path template it matched.
    pub template: Option<String>,
    /// Every departure from the description.
    pub violations: Vec<Violation>,
}

/// Loaded OpenAPI descriptions, ready to check requests.
pub struct OpenApi {
    specs: Vec<Spec>,
    patterns: Mutex<HashMap<String, Option<Regex>>>,
}

impl std::fmt::Debug for OpenApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenApi")
            .field(
                "specs",
                &self.specs.iter().map(|s| &s.file).collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// A matched operation's spec, path template and decoded path parameters.
type Match<'a> = (&'a Spec, &'a Template, Vec<(String, String)>);

struct Spec {
    file: String,
    doc: Value,
    templates: Vec<Template>,
}

/// A path template cut into segments such as `Messages`, `{AccountSid}` or `{Sid}.json`.
struct Template {
    text: String,
    segments: Vec<Segment>,
}

struct Segment {
    prefix: String,
    param: Option<String>,
    suffix: String,
}

/// Why the descriptions could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The directory holds none of [`SPEC_FILES`].
    #[error("no OpenAPI description found in {0}")]
    Missing(PathBuf),
    /// A file is there but cannot be read or parsed.
    #[error("cannot load {path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
}

impl OpenApi {
    /// Loads the spec files found in `dir`. Loading is cached per directory for the life of the
    /// process: the 2010 API description is 1.8 MB, and tests start many servers.
    pub fn load(dir: &Path) -> Result<Arc<OpenApi>, LoadError> {
        static CACHE: OnceLock<Mutex<HashMap<PathBuf, Arc<OpenApi>>>> = OnceLock::new();
        let key = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
        let cache = CACHE.get_or_init(Default::default);
        if let Some(found) = cache.lock().expect("cache lock").get(&key) {
            return Ok(found.clone());
        }
        let mut specs = Vec::new();
        for file in SPEC_FILES {
            let path = dir.join(file);
            if !path.exists() {
                continue;
            }
            let invalid = |reason: String| LoadError::Invalid {
                path: path.clone(),
                reason,
            };
            let text = std::fs::read(&path).map_err(|e| invalid(e.to_string()))?;
            let doc: Value = serde_json::from_slice(&text).map_err(|e| invalid(e.to_string()))?;
            specs.push(Spec::new(file, doc));
        }
        if specs.is_empty() {
            return Err(LoadError::Missing(dir.to_path_buf()));
        }
        let api = Arc::new(OpenApi::from_specs(specs));
        cache.lock().expect("cache lock").insert(key, api.clone());
        Ok(api)
    }

    /// The checker of the [`EMBEDDED`] descriptions, parsed once per process (the 2010 API
    /// description is 1.8 MB, and tests start many servers).
    pub fn embedded() -> Arc<OpenApi> {
        static EMBEDDED_API: OnceLock<Arc<OpenApi>> = OnceLock::new();
        EMBEDDED_API
            .get_or_init(|| {
                Arc::new(OpenApi::from_specs(
                    EMBEDDED
                        .iter()
                        .map(|(file, text)| {
                            let doc = serde_json::from_str(text)
                                .unwrap_or_else(|e| panic!("the embedded {file} is not JSON: {e}"));
                            Spec::new(file, doc)
                        })
                        .collect(),
                ))
            })
            .clone()
    }

    /// Builds a checker from documents already in memory (`(file name, document)`).
    pub fn from_documents(docs: Vec<(String, Value)>) -> OpenApi {
        OpenApi::from_specs(
            docs.into_iter()
                .map(|(file, doc)| Spec::new(&file, doc))
                .collect(),
        )
    }

    fn from_specs(specs: Vec<Spec>) -> OpenApi {
        OpenApi {
            specs,
            patterns: Mutex::new(HashMap::new()),
        }
    }

    /// Checks one request.
    pub fn check(&self, request: &CheckRequest<'_>) -> CheckOutcome {
        let mut outcome = CheckOutcome::default();
        let path = request.path.split('?').next().unwrap_or(request.path);
        // The 2010 API answers XML when the `.json` suffix is missing; the description only
        // lists the `.json` paths, which describe the same operations.
        let found = self.find(path).or_else(|| {
            (path.starts_with("/2010-04-01/") && !path.ends_with(".json"))
                .then(|| self.find(&format!("{path}.json")))
                .flatten()
        });
        let Some((spec, template, path_params)) = found else {
            outcome.violations.push(Violation::new(
                "operation",
                path,
                format!(
                    "no path of the OpenAPI description matches {} {path}",
                    request.method
                ),
            ));
            return outcome;
        };
        outcome.template = Some(template.text.clone());
        let doc = &spec.doc;
        let item = &doc["paths"][&template.text];
        let method = request.method.to_ascii_lowercase();
        let Some(operation) = item.get(&method) else {
            outcome.violations.push(Violation::new(
                "operation",
                path,
                format!(
                    "{} is not an operation of {}",
                    request.method, template.text
                ),
            ));
            return outcome;
        };
        outcome.operation = operation
            .get("operationId")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let v = &mut outcome.violations;
        self.check_parameters(doc, item, operation, &path_params, request, v);
        self.check_body(doc, operation, request, v);
        check_security(doc, operation, request, v);
        outcome
    }

    /// The most specific template matching `path`, with its decoded path parameters.
    fn find(&self, path: &str) -> Option<Match<'_>> {
        let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let mut best: Option<(usize, Match<'_>)> = None;
        for spec in &self.specs {
            for template in &spec.templates {
                let Some(params) = template.matches(&segments) else {
                    continue;
                };
                let literal = template.literal_len();
                if best.as_ref().is_none_or(|(len, _)| literal > *len) {
                    best = Some((literal, (spec, template, params)));
                }
            }
        }
        best.map(|(_, found)| found)
    }

    fn check_parameters(
        &self,
        doc: &Value,
        item: &Value,
        operation: &Value,
        path_params: &[(String, String)],
        request: &CheckRequest<'_>,
        v: &mut Vec<Violation>,
    ) {
        let declared: Vec<&Value> = [item.get("parameters"), operation.get("parameters")]
            .into_iter()
            .flatten()
            .filter_map(Value::as_array)
            .flatten()
            .map(|p| resolve(doc, p))
            .collect();
        let mut known_query = Vec::new();
        let mut map_prefixes: Vec<String> = Vec::new();
        for param in declared {
            let name = param["name"].as_str().unwrap_or_default();
            let required = param["required"].as_bool().unwrap_or(false);
            let schema = resolve(doc, &param["schema"]);
            match param["in"].as_str() {
                Some("path") => {
                    if let Some((_, value)) = path_params.iter().find(|(n, _)| n == name)
                        && let Some(problem) = self.check_value(doc, schema, value)
                    {
                        v.push(Violation::new("path", name, problem));
                    }
                }
                Some("query") => {
                    known_query.push(name);
                    // Twilio's `prefixed-collapsible-map-X` objects travel as `Name.key=value`.
                    if schema["format"]
                        .as_str()
                        .is_some_and(|f| f.starts_with("prefixed-collapsible-map-"))
                    {
                        map_prefixes.push(format!("{name}."));
                    }
                    let values: Vec<&str> = request
                        .query
                        .iter()
                        .filter(|(k, _)| k == name)
                        .map(|(_, value)| value.as_str())
                        .collect();
                    if values.is_empty() && required {
                        v.push(Violation::new(
                            "query",
                            name,
                            "required parameter is missing",
                        ));
                    }
                    self.check_values(doc, schema, &values, "query", name, v);
                }
                _ => {}
            }
        }
        let mut reported = Vec::new();
        for (key, _) in request.query {
            let in_map = map_prefixes.iter().any(|p| key.starts_with(p.as_str()));
            if !known_query.contains(&key.as_str()) && !in_map && !reported.contains(key) {
                reported.push(key.clone());
                v.push(Violation::new(
                    "query",
                    key.as_str(),
                    "unknown query parameter",
                ));
            }
        }
    }

    fn check_body(
        &self,
        doc: &Value,
        operation: &Value,
        request: &CheckRequest<'_>,
        v: &mut Vec<Violation>,
    ) {
        let Some(body) = operation.get("requestBody").map(|b| resolve(doc, b)) else {
            if !request.body_is_empty {
                v.push(Violation::new(
                    "body",
                    "",
                    "the operation takes no request body",
                ));
            }
            return;
        };
        let content = body["content"].as_object();
        let essence = request.content_type.map(|ct| {
            ct.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        });
        let accepted = |ct: &str| content.is_some_and(|c| c.contains_key(ct));
        match essence.as_deref() {
            Some(ct) if accepted(ct) => {}
            Some(ct) => v.push(Violation::new(
                "header",
                "Content-Type",
                format!(
                    "{ct} is not a media type of the operation (expected {})",
                    content
                        .map(|c| c.keys().cloned().collect::<Vec<_>>().join(", "))
                        .unwrap_or_default()
                ),
            )),
            None => v.push(Violation::new(
                "header",
                "Content-Type",
                "missing; the operation takes a request body",
            )),
        }
        let Some(schema) = content
            .and_then(|c| c.get("application/x-www-form-urlencoded"))
            .map(|media| resolve(doc, &media["schema"]))
        else {
            return;
        };
        if body["required"].as_bool() == Some(true) && request.body_is_empty {
            v.push(Violation::new("body", "", "a request body is required"));
        }
        let properties = schema["properties"].as_object();
        for required in schema["required"].as_array().into_iter().flatten() {
            let name = required.as_str().unwrap_or_default();
            if !request.form.iter().any(|(k, _)| k == name) {
                v.push(Violation::new("body", name, "required property is missing"));
            }
        }
        let mut keys: Vec<&str> = Vec::new();
        for (key, _) in request.form {
            if !keys.contains(&key.as_str()) {
                keys.push(key);
            }
        }
        for key in keys {
            let values: Vec<&str> = request
                .form
                .iter()
                .filter(|(k, _)| k == key)
                .map(|(_, value)| value.as_str())
                .collect();
            match properties.and_then(|p| p.get(key)) {
                Some(property) => {
                    let property = resolve(doc, property);
                    self.check_values(doc, property, &values, "body", key, v);
                }
                None => v.push(Violation::new("body", key, "unknown property")),
            }
        }
        // Twilio's own extension: groups of which at least one property must be given
        // (`From`/`MessagingServiceSid`, `Body`/`MediaUrl`/`ContentSid`).
        let groups = operation["x-twilio"]["conditional"].as_array();
        for group in groups.into_iter().flatten().filter_map(Value::as_array) {
            let names: Vec<String> = group
                .iter()
                .filter_map(Value::as_str)
                .map(|snake| {
                    properties
                        .and_then(|p| p.keys().find(|k| to_snake(k) == snake))
                        .cloned()
                        .unwrap_or_else(|| snake.to_owned())
                })
                .collect();
            if !names
                .iter()
                .any(|n| request.form.iter().any(|(k, _)| k == n))
            {
                v.push(Violation::new(
                    "body",
                    names.join("|"),
                    format!(
                        "one of {} is required (x-twilio conditional)",
                        names.join(", ")
                    ),
                ));
            }
        }
    }

    /// Checks the values given for one parameter or property: arrays take every value as an
    /// item (repeated keys), anything else must be given once.
    fn check_values(
        &self,
        doc: &Value,
        schema: &Value,
        values: &[&str],
        location: &'static str,
        name: &str,
        v: &mut Vec<Violation>,
    ) {
        if schema["type"].as_str() == Some("array") {
            let items = resolve(doc, &schema["items"]);
            for (i, value) in values.iter().enumerate() {
                if let Some(problem) = self.check_value(doc, items, value) {
                    v.push(Violation::new(
                        location,
                        name,
                        format!("item {i}: {problem}"),
                    ));
                }
            }
            if let Some(max) = schema["maxItems"].as_u64()
                && values.len() as u64 > max
            {
                v.push(Violation::new(
                    location,
                    name,
                    format!("{} items, at most {max} allowed", values.len()),
                ));
            }
            return;
        }
        if values.len() > 1 {
            v.push(Violation::new(
                location,
                name,
                format!("given {} times but is not an array", values.len()),
            ));
        }
        for value in values {
            if let Some(problem) = self.check_value(doc, schema, value) {
                v.push(Violation::new(location, name, problem));
            }
        }
    }

    /// What is wrong with one scalar value, if anything.
    fn check_value(&self, doc: &Value, schema: &Value, value: &str) -> Option<String> {
        let schema = resolve(doc, schema);
        let number = match schema["type"].as_str() {
            Some("integer") => match value.trim().parse::<i64>() {
                Ok(n) => Some(n as f64),
                Err(_) => return Some(format!("{value:?} is not an integer")),
            },
            Some("number") => match value.trim().parse::<f64>() {
                Ok(n) if n.is_finite() => Some(n),
                _ => return Some(format!("{value:?} is not a number")),
            },
            Some("boolean") => {
                if value.eq_ignore_ascii_case("true") || value.eq_ignore_ascii_case("false") {
                    None
                } else {
                    return Some(format!("{value:?} is not a boolean"));
                }
            }
            _ => None,
        };
        if let Some(options) = schema["enum"].as_array() {
            let ok = options.iter().any(|o| match o {
                Value::String(s) => s == value,
                other => value.parse::<Value>().ok().as_ref() == Some(other),
            });
            if !ok {
                let list: Vec<String> = options
                    .iter()
                    .map(|o| o.as_str().map_or_else(|| o.to_string(), str::to_owned))
                    .collect();
                return Some(format!("{value:?} is not one of {}", list.join(", ")));
            }
        }
        let chars = value.chars().count() as u64;
        if let Some(min) = schema["minLength"].as_u64()
            && chars < min
        {
            return Some(format!("{chars} characters, at least {min} required"));
        }
        if let Some(max) = schema["maxLength"].as_u64()
            && chars > max
        {
            return Some(format!("{chars} characters, at most {max} allowed"));
        }
        if let Some(pattern) = schema["pattern"].as_str()
            && !self.pattern_matches(pattern, value)
        {
            return Some(format!("does not match the pattern {pattern}"));
        }
        if let Some(n) = number {
            if let Some(min) = schema["minimum"].as_f64()
                && n < min
            {
                return Some(format!("{value} is below the minimum {min}"));
            }
            if let Some(max) = schema["maximum"].as_f64()
                && n > max
            {
                return Some(format!("{value} is above the maximum {max}"));
            }
        }
        let ignore_format = schema["x-twilio"]["ignoreFormat"].as_bool() == Some(true);
        if schema["format"].as_str() == Some("uri") && !ignore_format && !is_uri(value) {
            return Some(format!("{value:?} is not a URI"));
        }
        None
    }

    fn pattern_matches(&self, pattern: &str, value: &str) -> bool {
        let mut cache = self.patterns.lock().expect("pattern cache lock");
        let compiled = cache
            .entry(pattern.to_owned())
            .or_insert_with(|| Regex::new(pattern).ok());
        // A pattern the regex crate cannot compile is not held against the request.
        compiled.as_ref().is_none_or(|re| re.is_match(value))
    }
}

impl Spec {
    fn new(file: &str, doc: Value) -> Spec {
        let templates = doc["paths"]
            .as_object()
            .map(|paths| paths.keys().map(|t| Template::parse(t)).collect())
            .unwrap_or_default();
        Spec {
            file: file.to_owned(),
            doc,
            templates,
        }
    }
}

impl Template {
    fn parse(text: &str) -> Template {
        let segments = text
            .trim_start_matches('/')
            .split('/')
            .map(|segment| match (segment.find('{'), segment.find('}')) {
                (Some(open), Some(close)) if open < close => Segment {
                    prefix: segment[..open].to_owned(),
                    param: Some(segment[open + 1..close].to_owned()),
                    suffix: segment[close + 1..].to_owned(),
                },
                _ => Segment {
                    prefix: segment.to_owned(),
                    param: None,
                    suffix: String::new(),
                },
            })
            .collect();
        Template {
            text: text.to_owned(),
            segments,
        }
    }

    fn literal_len(&self) -> usize {
        self.segments
            .iter()
            .map(|s| s.prefix.len() + s.suffix.len())
            .sum()
    }

    fn matches(&self, segments: &[&str]) -> Option<Vec<(String, String)>> {
        if segments.len() != self.segments.len() {
            return None;
        }
        let mut params = Vec::new();
        for (pattern, segment) in self.segments.iter().zip(segments) {
            match &pattern.param {
                None => {
                    if pattern.prefix != *segment {
                        return None;
                    }
                }
                Some(name) => {
                    let inner = segment
                        .strip_prefix(pattern.prefix.as_str())?
                        .strip_suffix(pattern.suffix.as_str())?;
                    if inner.is_empty() {
                        return None;
                    }
                    let decoded = percent_decode_str(inner).decode_utf8_lossy().into_owned();
                    params.push((name.clone(), decoded));
                }
            }
        }
        Some(params)
    }
}

/// Follows `$ref`s (`#/components/...`) to the schema or parameter they name.
fn resolve<'a>(doc: &'a Value, mut value: &'a Value) -> &'a Value {
    for _ in 0..16 {
        let Some(reference) = value.get("$ref").and_then(Value::as_str) else {
            break;
        };
        match reference
            .strip_prefix('#')
            .and_then(|pointer| doc.pointer(pointer))
        {
            Some(target) => value = target,
            None => break,
        }
    }
    value
}

fn check_security(
    doc: &Value,
    operation: &Value,
    request: &CheckRequest<'_>,
    v: &mut Vec<Violation>,
) {
    let requirements = operation
        .get("security")
        .or_else(|| doc.get("security"))
        .and_then(Value::as_array);
    let schemes = &doc["components"]["securitySchemes"];
    let needs_basic = requirements.into_iter().flatten().any(|requirement| {
        requirement.as_object().is_some_and(|names| {
            names.keys().any(|name| {
                let scheme = &schemes[name];
                scheme["type"] == "http" && scheme["scheme"].as_str() == Some("basic")
            })
        })
    });
    if needs_basic && !request.has_basic_auth {
        v.push(Violation::new(
            "header",
            "Authorization",
            "HTTP Basic credentials are required by the operation's security scheme",
        ));
    }
}

/// `MessagingServiceSid` → `messaging_service_sid`, as Twilio's extension names properties.
fn to_snake(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 4);
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// An absolute URI as RFC 3986 has it: a scheme, `:`, and no characters that are never allowed
/// (spaces, controls, `"<>\^{|}` and the backtick); with `//`, a non-empty authority.
pub fn is_uri(value: &str) -> bool {
    let Some((scheme, rest)) = value.split_once(':') else {
        return false;
    };
    let mut chars = scheme.chars();
    let scheme_ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
    if !scheme_ok || rest.is_empty() {
        return false;
    }
    if rest
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || "\"<>\\^`{|}".contains(c))
    {
        return false;
    }
    match rest.strip_prefix("//") {
        Some(after) => {
            let authority = after.split(['/', '?', '#']).next().unwrap_or("");
            !authority.is_empty()
        }
        None => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn load_errors() {
        let dir = std::env::temp_dir().join(format!("twilio-fake-oai-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        assert!(matches!(OpenApi::load(&dir), Err(LoadError::Missing(_))));
        std::fs::write(dir.join("twilio_lookups_v1.json"), b"{not json").unwrap();
        let error = OpenApi::load(&dir).unwrap_err();
        assert!(matches!(error, LoadError::Invalid { .. }), "{error}");
        std::fs::write(
            dir.join("twilio_lookups_v1.json"),
            br#"{"paths": {"/v1/X": {"get": {"operationId": "FetchX"}}}}"#,
        )
        .unwrap();
        let api = OpenApi::load(&dir).unwrap();
        let outcome = api.check(&CheckRequest {
            method: "GET",
            path: "/v1/X",
            query: &[],
            content_type: None,
            form: &[],
            body_is_empty: true,
            has_basic_auth: false,
        });
        assert_eq!(outcome.operation.as_deref(), Some("FetchX"));
        assert_eq!(outcome.violations, vec![]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_embedded_descriptions_are_the_spec_files() {
        let names: Vec<&str> = EMBEDDED.iter().map(|(file, _)| *file).collect();
        assert_eq!(names, SPEC_FILES);
        let api = OpenApi::embedded();
        assert_eq!(api.specs.len(), SPEC_FILES.len());
        assert!(Arc::ptr_eq(&api, &OpenApi::embedded()), "parsed once");
    }

    #[test]
    fn uris() {
        assert!(is_uri("https://example.com/status?x=1"));
        assert!(is_uri("http://127.0.0.1:8080/cb"));
        assert!(is_uri("urn:isbn:0451450523"));
        assert!(!is_uri("not a url"));
        assert!(!is_uri("example.com/status"));
        assert!(!is_uri("https://"));
        assert!(!is_uri("1http://x"));
    }

    #[test]
    fn snake_names() {
        assert_eq!(to_snake("MessagingServiceSid"), "messaging_service_sid");
        assert_eq!(to_snake("MediaUrl"), "media_url");
        assert_eq!(to_snake("To"), "to");
    }

    #[test]
    fn templates_match_suffixed_segments() {
        let t = Template::parse("/2010-04-01/Accounts/{AccountSid}/Messages/{Sid}.json");
        let path = "2010-04-01/Accounts/AC1/Messages/SM%41.json";
        let segments: Vec<&str> = path.split('/').collect();
        assert_eq!(
            t.matches(&segments),
            Some(vec![
                ("AccountSid".to_owned(), "AC1".to_owned()),
                ("Sid".to_owned(), "SMA".to_owned())
            ])
        );
        let other: Vec<&str> = "2010-04-01/Accounts/AC1/Messages/SM1".split('/').collect();
        assert_eq!(t.matches(&other), None);
    }

    #[test]
    fn small_document() {
        let doc = serde_json::json!({
            "paths": {"/v1/Things/{Sid}": {"post": {
                "operationId": "CreateThing",
                "parameters": [{"name": "Sid", "in": "path", "required": true,
                                "schema": {"type": "string", "pattern": "^TH[0-9]+$"}}],
                "requestBody": {"content": {"application/x-www-form-urlencoded": {"schema":
                    {"$ref": "#/components/schemas/req"}}}}
            }}},
            "components": {"schemas": {"req": {"type": "object", "required": ["Name"],
                "properties": {"Name": {"type": "string", "maxLength": 3},
                               "Kind": {"$ref": "#/components/schemas/kind"},
                               "Tag": {"type": "array", "items": {"type": "integer"}}}},
                "kind": {"type": "string", "enum": ["a", "b"]}}}
        });
        let api = OpenApi::from_documents(vec![("x.json".into(), doc)]);
        let form = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let check = |path: &str, body: &[(String, String)]| {
            api.check(&CheckRequest {
                method: "POST",
                path,
                query: &[],
                content_type: Some("application/x-www-form-urlencoded"),
                form: body,
                body_is_empty: body.is_empty(),
                has_basic_auth: true,
            })
        };
        let ok = check(
            "/v1/Things/TH1",
            &form(&[("Name", "abc"), ("Tag", "1"), ("Tag", "2"), ("Kind", "a")]),
        );
        assert_eq!(ok.operation.as_deref(), Some("CreateThing"));
        assert_eq!(ok.violations, vec![]);
        let bad = check(
            "/v1/Things/XX",
            &form(&[
                ("Name", "abcd"),
                ("Tag", "x"),
                ("Kind", "c"),
                ("Kind", "a"),
                ("Other", "1"),
            ]),
        );
        let names: Vec<(&str, &str)> = bad
            .violations
            .iter()
            .map(|v| (v.location, v.name.as_str()))
            .collect();
        assert_eq!(
            names,
            vec![
                ("path", "Sid"),
                ("body", "Name"),
                ("body", "Tag"),
                ("body", "Kind"),
                ("body", "Kind"),
                ("body", "Other"),
            ]
        );
        let missing = check("/v1/Things/TH1", &[]);
        assert_eq!(missing.violations[0].name, "Name");
        let nowhere = check("/v2/Nothing", &[]);
        assert_eq!(nowhere.violations[0].location, "operation");
    }
}
