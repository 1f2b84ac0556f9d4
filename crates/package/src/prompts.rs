//! `package.configure`: prompts (what the operator must answer), their validation with Cerb's
//! messages (docs/semantics.md §1.2), and placeholders (§1.3) generated with the injected
//! CSPRNG.

use indexmap::IndexMap;
use rand::Rng;
use serde_json::Value as Json;

use crate::locate::package_issue;
use crate::{ImportIssue, PromptAnswers};

/// Cerb's password alphabet: A–Z without I and O, digits 1–9 (no 0).
pub const RANDOM_ALPHABET: &[u8; 33] = b"ABCDEFGHJKLMNPQRSTUVWXYZ123456789";
/// Length of a `random` placeholder without `params.length`.
pub const RANDOM_DEFAULT_LENGTH: usize = 8;
/// Longest `random` placeholder accepted (a sanity bound, not a Cerb rule).
pub const RANDOM_MAX_LENGTH: usize = 4096;

/// One question the operator answers before import (`package.configure.prompts[]`).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Prompt {
    pub key: String,
    /// Shown to the operator and quoted in "'<label>' (<key>) is required.".
    pub label: String,
    pub kind: PromptKind,
    /// UI-only: the prompt is not shown in Cerb's dialog (still validated).
    pub hidden: bool,
    /// For a connected-account chooser, the service it asks an account for, lower-case
    /// (`twilio`, `slack`...), from its params ([`account_service`]); `None` when it does not
    /// say (any account is then accepted, and its allowed hosts are checked at run time).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
}

/// The service a connected-account chooser prompt asks for, from what Cerb packages write:
/// `params.service` / `service_uri` / `service_id` (a name, not a record id), or the chooser's
/// search `params.query` (`service:slack`, `service:(uri:slack)`, `service.uri:slack`,
/// `uri:slack`, and `name:twilio`, which the Twilio bot package uses); else a key or label
/// naming Twilio (`twilio_account_id`). `None` when it does not say.
pub fn account_service(key: &str, label: &str, params: Option<&Json>) -> Option<String> {
    let word = |text: &str| -> Option<String> {
        let w: String = text
            .trim_start_matches(['"', '\'', ' '])
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
            .collect::<String>()
            .to_ascii_lowercase();
        (!w.is_empty() && !w.bytes().all(|b| b.is_ascii_digit())).then_some(w)
    };
    let param = |name: &str| params.and_then(|p| p.get(name)).and_then(Json::as_str);
    for name in ["service", "service_uri", "service_id"] {
        if let Some(found) = param(name).and_then(word) {
            return Some(found);
        }
    }
    if let Some(query) = param("query") {
        let q = query.to_ascii_lowercase();
        for prefix in ["service:(uri:", "service.uri:", "service:", "uri:"] {
            if let Some(at) = q.find(prefix)
                && let Some(found) = word(&q[at + prefix.len()..])
            {
                return Some(found);
            }
        }
        if let Some(at) = q.find("name:")
            && word(&q[at + 5..]).as_deref() == Some("twilio")
        {
            return Some("twilio".into());
        }
    }
    let named_twilio = |t: &str| t.to_ascii_lowercase().contains("twilio");
    (named_twilio(key) || named_twilio(label)).then(|| "twilio".to_owned())
}

/// How a prompt is answered and validated.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub enum PromptKind {
    /// Free text; the answer must be non-empty.
    Text,
    /// A record picker. `single`: one id (non-empty string or number), else a non-empty array.
    /// `context` is the record type (`cerberusweb.contexts.connected_account`).
    Chooser {
        single: bool,
        context: Option<String>,
    },
    /// One of `options`.
    Picklist { options: Vec<String> },
    /// A type Cerb ignores (no validation, no placeholder).
    Other(String),
}

/// One generated value (`package.configure.placeholders[]`).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PlaceholderDef {
    pub key: String,
    /// `random` with this many characters.
    pub length: usize,
}

/// PHP truthiness of a JSON value (`"0"`, `""`, `0`, `null`, `false`, `[]` are false).
pub fn php_truthy(v: &Json) -> bool {
    match v {
        Json::Null => false,
        Json::Bool(b) => *b,
        Json::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Json::String(s) => !(s.is_empty() || s == "0"),
        Json::Array(a) => !a.is_empty(),
        Json::Object(o) => !o.is_empty(),
    }
}

/// A JSON scalar as PHP would print it (`true` → `1`, `false`/`null` → empty).
pub fn php_string(v: &Json) -> Option<String> {
    match v {
        Json::Null => Some(String::new()),
        Json::Bool(true) => Some("1".into()),
        Json::Bool(false) => Some(String::new()),
        Json::Number(n) => Some(n.to_string()),
        Json::String(s) => Some(s.clone()),
        _ => None,
    }
}

/// Names a package may not use for prompts or placeholders: they are set by the import itself.
const RESERVED_NAMES: [&str; 2] = ["uid", "default"];

/// Parses `package.configure`: prompts and placeholders, with Cerb's messages for missing keys.
pub(crate) fn parse_configure(
    package: &Json,
    issues: &mut Vec<ImportIssue>,
) -> (Vec<Prompt>, Vec<PlaceholderDef>) {
    let configure = package.get("configure");
    let mut prompts = Vec::new();
    let mut placeholders = Vec::new();
    let mut seen: IndexMap<String, String> = IndexMap::new();

    let mut check_name = |key: &str, field: String, issues: &mut Vec<ImportIssue>| {
        if RESERVED_NAMES.contains(&key) {
            issues.push(package_issue(
                Some(key),
                Some(field),
                format!("'{key}' is a reserved name"),
            ));
        } else if let Some(first) = seen.get(key) {
            issues.push(package_issue(
                Some(key),
                Some(field),
                format!("Duplicate prompt or placeholder key '{key}' (first in {first})"),
            ));
        } else {
            seen.insert(key.to_owned(), field);
        }
    };

    match configure.and_then(|c| c.get("prompts")) {
        None | Some(Json::Null) => {}
        Some(Json::Array(list)) => {
            for (i, prompt) in list.iter().enumerate() {
                let field = format!("configure.prompts[{i}]");
                let key = match prompt.get("key") {
                    Some(Json::String(k)) if !k.is_empty() => k.clone(),
                    _ => {
                        issues.push(package_issue(None, Some(field), "Prompt key is missing."));
                        continue;
                    }
                };
                check_name(&key, field.clone(), issues);
                let label = prompt.get("label").and_then(php_string).unwrap_or_default();
                let params = prompt.get("params");
                let param = |name: &str| params.and_then(|p| p.get(name));
                let kind = match prompt.get("type").and_then(Json::as_str).unwrap_or("") {
                    "text" => PromptKind::Text,
                    "chooser" => PromptKind::Chooser {
                        single: param("single").is_some_and(php_truthy),
                        context: param("context").and_then(Json::as_str).map(str::to_owned),
                    },
                    "picklist" if param("multiple").is_some_and(php_truthy) => {
                        // Cerb validates it and then stores nothing: a prompt that cannot be used.
                        issues.push(package_issue(
                            Some(&key),
                            Some(format!("{field}.params.multiple")),
                            "Unsupported prompt: picklist with params.multiple",
                        ));
                        continue;
                    }
                    "picklist" => PromptKind::Picklist {
                        options: match param("options") {
                            Some(Json::Array(opts)) => opts.iter().filter_map(php_string).collect(),
                            _ => Vec::new(),
                        },
                    },
                    other => PromptKind::Other(other.to_owned()),
                };
                let hidden = prompt.get("hidden").is_some_and(php_truthy);
                let service = match &kind {
                    PromptKind::Chooser {
                        context: Some(c), ..
                    } if c.contains("connected_account") => account_service(&key, &label, params),
                    _ => None,
                };
                prompts.push(Prompt {
                    key,
                    label,
                    kind,
                    hidden,
                    service,
                });
            }
        }
        Some(_) => issues.push(package_issue(
            None,
            Some("configure.prompts".into()),
            "'prompts' must be an array",
        )),
    }

    match configure.and_then(|c| c.get("placeholders")) {
        None | Some(Json::Null) => {}
        Some(Json::Array(list)) => {
            for (i, placeholder) in list.iter().enumerate() {
                let field = format!("configure.placeholders[{i}]");
                let key = match placeholder.get("key") {
                    Some(Json::String(k)) if !k.is_empty() => k.clone(),
                    _ => {
                        issues.push(package_issue(
                            None,
                            Some(field),
                            "Placeholder key is missing.",
                        ));
                        continue;
                    }
                };
                check_name(&key, field.clone(), issues);
                match placeholder.get("type").and_then(Json::as_str).unwrap_or("") {
                    "random" => {
                        let raw = placeholder.get("params").and_then(|p| p.get("length"));
                        match random_length(raw) {
                            Ok(length) => placeholders.push(PlaceholderDef { key, length }),
                            Err(msg) => issues.push(package_issue(Some(&key), Some(format!("{field}.params.length")), msg)),
                        }
                    }
                    "data_query" => issues.push(package_issue(
                        Some(&key),
                        Some(format!("{field}.type")),
                        "Unsupported placeholder type 'data_query' (Switchboard has no data queries)",
                    )),
                    // Cerb ignores other types; a template naming the key then fails
                    // (docs/semantics.md, Decision 4).
                    _ => {}
                }
            }
        }
        Some(_) => issues.push(package_issue(
            None,
            Some("configure.placeholders".into()),
            "'placeholders' must be an array",
        )),
    }
    (prompts, placeholders)
}

/// `params.length ?: 8`, as an integer within sane bounds.
fn random_length(raw: Option<&Json>) -> Result<usize, String> {
    let Some(raw) = raw.filter(|v| php_truthy(v)) else {
        return Ok(RANDOM_DEFAULT_LENGTH);
    };
    let n = match raw {
        Json::Number(n) => n
            .as_u64()
            .or_else(|| n.as_f64().filter(|f| *f >= 1.0).map(|f| f as u64)),
        Json::String(s) => s.trim().parse::<u64>().ok(),
        Json::Bool(true) => Some(1),
        _ => None,
    };
    match n {
        Some(n) if n >= 1 && n <= RANDOM_MAX_LENGTH as u64 => Ok(n as usize),
        _ => Err(format!(
            "Invalid random placeholder length {raw}: must be an integer from 1 to {RANDOM_MAX_LENGTH}"
        )),
    }
}

/// A random string from [`RANDOM_ALPHABET`], each character drawn uniformly (no modulo bias)
/// from `rng`, which must be cryptographically secure (docs/semantics.md, Decision 5; Cerb used
/// `mt_rand`).
pub fn random_string(rng: &mut dyn rand::CryptoRng, length: usize) -> String {
    (0..length)
        .map(|_| RANDOM_ALPHABET[rng.random_range(0..RANDOM_ALPHABET.len())] as char)
        .collect()
}

/// Validates the answers (collecting every problem) and returns the template names they define:
/// each answered prompt, plus `<key minus _id>__context` for single choosers with a context.
pub(crate) fn answer(
    prompts: &[Prompt],
    answers: &PromptAnswers,
    issues: &mut Vec<ImportIssue>,
) -> IndexMap<String, Json> {
    let mut names = IndexMap::new();
    for (i, prompt) in prompts.iter().enumerate() {
        let value = answers.get(&prompt.key).unwrap_or(&Json::Null);
        let required = || {
            package_issue(
                Some(&prompt.key),
                Some(format!("configure.prompts[{i}]")),
                format!("'{}' ({}) is required.", prompt.label, prompt.key),
            )
        };
        match &prompt.kind {
            PromptKind::Text => match value {
                Json::String(s) if !s.is_empty() => {
                    names.insert(prompt.key.clone(), value.clone());
                }
                Json::Number(_) => {
                    names.insert(prompt.key.clone(), value.clone());
                }
                _ => issues.push(required()),
            },
            PromptKind::Chooser { single, context } => {
                let ok = if *single {
                    matches!(value, Json::String(s) if !s.is_empty()) || value.is_number()
                } else {
                    matches!(value, Json::Array(a) if !a.is_empty())
                };
                if !ok {
                    issues.push(required());
                    continue;
                }
                names.insert(prompt.key.clone(), value.clone());
                if let (true, Some(ctx), Some(stem)) =
                    (*single, context, prompt.key.strip_suffix("_id"))
                {
                    names.insert(format!("{stem}__context"), Json::String(ctx.clone()));
                }
            }
            PromptKind::Picklist { options } => {
                let given = php_string(value).filter(|_| !value.is_null());
                match given {
                    Some(v) if options.contains(&v) => {
                        names.insert(prompt.key.clone(), value.clone());
                    }
                    _ => issues.push(required()),
                }
            }
            PromptKind::Other(_) => {}
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use serde_json::json;

    #[test]
    fn random_strings_use_the_alphabet_and_length() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let s = random_string(&mut rng, 1000);
        assert_eq!(s.len(), 1000);
        assert!(s.bytes().all(|b| RANDOM_ALPHABET.contains(&b)), "{s}");
        // Every character of the alphabet shows up in 1000 uniform draws.
        assert!(RANDOM_ALPHABET.iter().all(|c| s.as_bytes().contains(c)));
    }

    #[test]
    fn random_length_rules() {
        assert_eq!(random_length(None), Ok(8));
        assert_eq!(random_length(Some(&json!(0))), Ok(8));
        assert_eq!(random_length(Some(&json!(""))), Ok(8));
        assert_eq!(random_length(Some(&json!(40))), Ok(40));
        assert_eq!(random_length(Some(&json!("12"))), Ok(12));
        assert!(random_length(Some(&json!(1_000_000))).is_err());
        assert!(random_length(Some(&json!("abc"))).is_err());
    }

    #[test]
    fn truthiness_is_php() {
        for falsy in [
            json!(null),
            json!(false),
            json!(0),
            json!("0"),
            json!(""),
            json!([]),
            json!({}),
        ] {
            assert!(!php_truthy(&falsy), "{falsy}");
        }
        for truthy in [
            json!(true),
            json!(1),
            json!("0.0"),
            json!(" "),
            json!([0]),
            json!("1"),
        ] {
            assert!(php_truthy(&truthy), "{truthy}");
        }
    }

    #[test]
    fn account_prompts_say_which_service_they_ask_for() {
        use serde_json::json;
        let svc = |key: &str, label: &str, params: Json| account_service(key, label, Some(&params));
        // The seed package: `name:twilio`, and its key names Twilio anyway.
        assert_eq!(
            svc(
                "twilio_account_id",
                "Twilio account:",
                json!({"query": "name:twilio"})
            )
            .as_deref(),
            Some("twilio")
        );
        assert_eq!(
            svc("account_id", "Account", json!({"query": "name:twilio"})).as_deref(),
            Some("twilio")
        );
        assert_eq!(
            svc("x", "Account", json!({"service": "Slack"})).as_deref(),
            Some("slack")
        );
        assert_eq!(
            svc("x", "Account", json!({"service_id": "stripe"})).as_deref(),
            Some("stripe")
        );
        assert_eq!(
            svc("x", "Account", json!({"service_id": "12"})),
            None,
            "a record id says nothing"
        );
        assert_eq!(
            svc("x", "Account", json!({"query": "service:(uri:slack)"})).as_deref(),
            Some("slack")
        );
        assert_eq!(
            svc("x", "Account", json!({"query": "service.uri:stripe"})).as_deref(),
            Some("stripe")
        );
        assert_eq!(
            svc("x", "Account", json!({"query": "name:\"My Slack\""})),
            None
        );
        assert_eq!(svc("slack_account_id", "Slack account:", json!({})), None);
        assert_eq!(
            account_service("twilio", "", None).as_deref(),
            Some("twilio")
        );
    }
}
