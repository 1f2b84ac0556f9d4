//! The Cerb package format: parse and validate a package document, answer its prompts, generate
//! its placeholders, render its `{{{ }}}` import-time templates and produce an [`ImportPlan`] that
//! a store writes in one transaction. Pure: no IO, no clock, randomness injected.

mod locate;
pub mod model;
mod plan;
mod prompts;
mod render;
mod validate;
mod version;

pub use model::*;
pub use prompts::{
    Prompt, PromptKind, RANDOM_ALPHABET, RANDOM_DEFAULT_LENGTH, account_service, random_string,
};
pub use validate::{MAX_NODE_DEPTH, WEBHOOK_ENGINE_BEHAVIOR, WEBHOOK_LISTENER_CONTEXTS};
pub use version::version_compare;

use indexmap::IndexMap;
use serde_json::Value as Json;

/// One thing wrong with a package, located by section, uid and field (docs/semantics.md,
/// Decision 2).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ImportIssue {
    /// Top-level section: `package`, `bots`, `records`, `behaviors`, ...
    pub section: String,
    /// The uid of the record, bot, behavior or prompt key concerned, if any.
    pub uid: Option<String>,
    /// JSON path of the field inside that item, e.g. `nodes[0].nodes[2].params.actions[0].action`.
    #[serde(rename = "path")]
    pub field: Option<String>,
    /// The title of the behavior node the field is in, if it is in one.
    pub node: Option<String>,
    /// What the issue is about, for grouping (`action 'send_email'`, `record context`,
    /// `package structure`, ...): see [`feature_of`].
    pub feature: String,
    pub message: String,
}

impl ImportIssue {
    /// An issue with its feature worked out from the message.
    pub fn new(
        section: impl Into<String>,
        uid: Option<String>,
        field: Option<String>,
        node: Option<String>,
        message: impl Into<String>,
    ) -> ImportIssue {
        let message = message.into();
        ImportIssue {
            section: section.into(),
            uid,
            field,
            node,
            feature: feature_of(&message),
            message,
        }
    }
}

impl std::fmt::Display for ImportIssue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.section)?;
        if let Some(uid) = &self.uid {
            write!(f, " ({uid})")?;
        }
        if let Some(field) = &self.field {
            write!(f, " {field}")?;
        }
        if let Some(node) = &self.node {
            write!(f, " [node '{node}']")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// The feature an issue message is about, the heading it is grouped under: the unsupported
/// action, condition, event or section by name, or a kind of problem.
pub fn feature_of(message: &str) -> String {
    let quoted = |prefix: &str| {
        message
            .strip_prefix(prefix)
            .and_then(|rest| rest.split('\'').next())
            .map(str::to_owned)
    };
    for (prefix, what) in [
        ("Unsupported action '", "action"),
        ("Unsupported condition '", "condition"),
        ("Unsupported event '", "event"),
        ("Unsupported section '", "section"),
        ("Unsupported variable type '", "variable type"),
    ] {
        if let Some(name) = quoted(prefix) {
            return format!("{what} '{name}'");
        }
    }
    let starts = |p: &str| message.starts_with(p);
    let kind = if starts("Unsupported operator") || starts("Condition has no operator") {
        "condition operator"
    } else if starts("Unsupported node type") || starts("Unknown node status") {
        "node type"
    } else if starts("Unsupported record context") || starts("Unknown context") {
        "record context"
    } else if starts("Unsupported webhook listener engine") {
        "webhook listener engine"
    } else if starts("Unsupported feature on record") {
        "record links"
    } else if message.contains("invalid regexp") {
        "regexp"
    } else if starts("This package requires") {
        "requirements"
    } else if starts("This is a behavior export") {
        "behavior export"
    } else if starts("Invalid JSON") || starts("Invalid package JSON") || starts("Package is") {
        "package structure"
    } else if message.contains("template") || message.contains("(not a prompt") {
        "import-time template"
    } else if message.contains("prompt")
        || message.contains("Prompt")
        || message.contains("required.")
    {
        "prompts"
    } else if starts("Unsupported") {
        "other unsupported feature"
    } else {
        "package structure"
    };
    kind.to_owned()
}

/// Why a package cannot be imported: every issue found, not just the first.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", display_issues(.issues))]
pub struct ImportError {
    pub issues: Vec<ImportIssue>,
}

impl ImportError {
    /// The issues grouped by feature, in order of first appearance, each group with its issues in
    /// package order.
    pub fn by_feature(&self) -> Vec<(&str, Vec<&ImportIssue>)> {
        let mut groups: Vec<(&str, Vec<&ImportIssue>)> = Vec::new();
        for issue in &self.issues {
            match groups.iter_mut().find(|(f, _)| *f == issue.feature) {
                Some((_, list)) => list.push(issue),
                None => groups.push((&issue.feature, vec![issue])),
            }
        }
        groups
    }

    /// `{"errors": [{"section", "uid", "node", "path", "feature", "message"}, ...]}`.
    pub fn to_json(&self) -> Json {
        serde_json::json!({ "errors": self.issues })
    }
}

/// One issue: on one line. Several: a count, then one line per issue under its feature with the
/// group's count.
fn display_issues(issues: &[ImportIssue]) -> String {
    if let [one] = issues {
        return one.to_string();
    }
    let err = ImportError {
        issues: issues.to_vec(),
    };
    let mut out = format!("{} issues", issues.len());
    for (feature, list) in err.by_feature() {
        out.push_str(&format!("\n  {feature} ({}):", list.len()));
        for issue in list {
            out.push_str(&format!("\n    {issue}"));
        }
    }
    out
}

/// The prompt answers given by the operator, by prompt key.
pub type PromptAnswers = IndexMap<String, Json>;

/// The Cerb version Switchboard emulates (`package.requires.cerb_version` is compared with it).
pub const CERB_VERSION: &str = "9.6.8";

/// Plugins whose features Switchboard emulates (`package.requires.plugins[]`).
pub const EMULATED_PLUGINS: [&str; 2] = ["cerb.webhooks", "cerberusweb.core"];

/// Largest package document accepted, in bytes (Cerb's own library packages are < 100 KiB).
pub const MAX_PACKAGE_BYTES: usize = 8 * 1024 * 1024;

/// A behavior as listed before planning (for `--behavior` lookups).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BehaviorSummary {
    pub uid: String,
    pub title: String,
    /// `event.key` as written (templates not rendered).
    pub event: String,
    /// The uid of the bot it belongs to (`bots[].uid`), or the raw `bot_id` of a top-level
    /// behavior.
    pub bot: String,
}

/// A bot as listed before planning.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BotSummary {
    pub uid: String,
    pub name: String,
    /// Uids of its behaviors, in package order.
    pub behaviors: Vec<String>,
}

/// What planning needs besides the package: answers, an id source, randomness and defaults.
pub struct PlanOptions<'a> {
    /// Answers by prompt key.
    pub answers: &'a PromptAnswers,
    /// Hands out one fresh id per call (a database sequence in production).
    pub next_id: &'a mut dyn FnMut() -> RecordId,
    /// Source of random placeholders: a cryptographically secure generator, required by the type
    /// (the webhook guid is a bearer secret, semantics Decision 5). Production passes
    /// `rand::rng()`; tests pass a seeded `StdRng` (also a CSPRNG) to get reproducible values.
    pub rng: &'a mut dyn rand::CryptoRng,
    /// The `default.*` names, as a JSON object, e.g. `{"base_url": "https://sb.example.com/"}`.
    /// Cerb provides `base_url`, `group_id`, `bucket_id`, `replyto_id`, `replyto_email` and
    /// `mail_transport_id`; a name not given here is undefined (semantics Decision 4).
    pub defaults: Json,
}

/// A package document, parsed and validated structurally (before prompts are answered).
#[derive(Debug, Clone)]
pub struct Package {
    /// The document as parsed (templates not rendered).
    #[doc(hidden)]
    pub raw: Json,
    name: String,
    prompts: Vec<Prompt>,
    placeholders: Vec<prompts::PlaceholderDef>,
    bots: Vec<BotSummary>,
    behaviors: Vec<BehaviorSummary>,
}

impl Package {
    /// Parses and validates package JSON: JSON syntax, the `package` key, requirements (Cerb
    /// version, plugins), prompts and placeholders, the structure of every section and the
    /// features Switchboard supports. Every issue is reported, not just the first.
    pub fn parse(json: &str) -> Result<Package, ImportError> {
        let fail = |message: String| ImportError {
            issues: vec![locate::package_issue(None, None, message)],
        };
        if json.len() > MAX_PACKAGE_BYTES {
            return Err(fail(format!(
                "Package is too large ({} bytes, at most {MAX_PACKAGE_BYTES})",
                json.len()
            )));
        }
        let raw: Json = serde_json::from_str(json)
            .map_err(|e| fail(format!("Invalid JSON: {}", json_error(json, &e))))?;
        let package = match raw.get("package") {
            Some(p @ Json::Object(_)) => p.clone(),
            None if raw.get("behavior").is_some_and(Json::is_object) => {
                return Err(fail(
                    "This is a behavior export, not a package: it holds one behavior (a top-level 'behavior' object) and no 'package'. Wrap it in a package: a 'package' object, and a 'bots' entry whose 'behaviors' list holds the behavior with a 'uid'".into(),
                ));
            }
            _ => return Err(fail("Invalid package JSON".into())),
        };

        let mut issues = Vec::new();
        requirements(&package, &mut issues);
        let (prompts, placeholders) = prompts::parse_configure(&package, &mut issues);
        issues.extend(validate::Validator::new(&raw, false).run());
        nul_characters(&raw, &raw, &locate::JsonPath::root(), &mut issues, &mut 20);
        if !issues.is_empty() {
            return Err(ImportError { issues });
        }

        let name = package
            .get("name")
            .or_else(|| package.get("library").and_then(|l| l.get("name")))
            .and_then(Json::as_str)
            .unwrap_or_default()
            .to_owned();
        let (bots, behaviors) = summaries(&raw);
        Ok(Package {
            raw,
            name,
            prompts,
            placeholders,
            bots,
            behaviors,
        })
    }

    /// `package.name` (or `package.library.name`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The prompts the operator must answer, in package order.
    pub fn prompts(&self) -> &[Prompt] {
        &self.prompts
    }

    /// The bots the package creates.
    pub fn bots(&self) -> &[BotSummary] {
        &self.bots
    }

    /// Every behavior (bot behaviors, then top-level ones), in package order.
    pub fn behaviors(&self) -> &[BehaviorSummary] {
        &self.behaviors
    }

    /// Finds a behavior by uid or, failing that, by exact title.
    pub fn behavior(&self, uid_or_title: &str) -> Option<&BehaviorSummary> {
        self.behaviors
            .iter()
            .find(|b| b.uid == uid_or_title)
            .or_else(|| self.behaviors.iter().find(|b| b.title == uid_or_title))
    }

    /// Plans an import: validates the answers, generates placeholders, reserves ids, renders the
    /// `{{{ }}}` templates strictly and builds the typed plan. Each call yields new ids and new
    /// random values, like a second import in Cerb.
    pub fn plan(&self, opts: PlanOptions<'_>) -> Result<ImportPlan, ImportError> {
        plan::plan(self, None, opts)
    }

    /// [`Package::plan`] for a package that is not needed afterwards: its document becomes the
    /// plan's working copy instead of being copied (a large package then needs about half the
    /// memory).
    pub fn into_plan(mut self, opts: PlanOptions<'_>) -> Result<ImportPlan, ImportError> {
        let raw = std::mem::take(&mut self.raw);
        plan::plan(&self, Some(raw), opts)
    }
}

/// A JSON syntax error as a message. A `\u` escape of half a UTF-16 surrogate pair without its
/// other half is named as PHP's `json_decode` names it, with where it starts (serde_json calls it
/// "unexpected end of hex escape" or "lone leading surrogate", after the escape).
pub fn json_error(src: &str, err: &serde_json::Error) -> String {
    if err.to_string().contains("hex escape")
        && let Some((line, column)) = unpaired_surrogate(src)
    {
        return format!(
            "Single unpaired UTF-16 surrogate in unicode escape at line {line} column {column}"
        );
    }
    err.to_string()
}

/// Line and column (1-based, in characters) of the first `\uD800`–`\uDFFF` escape in a JSON
/// string that is not half of a high-low pair.
fn unpaired_surrogate(src: &str) -> Option<(usize, usize)> {
    let hex = |at: usize| -> Option<u16> {
        let digits = src.get(at + 2..at + 6)?;
        (src.get(at..at + 2) == Some("\\u"))
            .then(|| u16::from_str_radix(digits, 16).ok())
            .flatten()
    };
    let bytes = src.as_bytes();
    let (mut i, mut in_string) = (0, false);
    while i < bytes.len() {
        match bytes[i] {
            b'"' => in_string = !in_string,
            b'\\' if in_string => {
                if let Some(unit) = hex(i) {
                    let unpaired = match unit {
                        0xD800..=0xDBFF => match hex(i + 6) {
                            Some(0xDC00..=0xDFFF) => {
                                i += 12;
                                continue;
                            }
                            _ => true,
                        },
                        0xDC00..=0xDFFF => true,
                        _ => false,
                    };
                    if unpaired {
                        let before = &src[..i];
                        let line = before.matches('\n').count() + 1;
                        let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
                        return Some((line, column));
                    }
                    i += 6;
                    continue;
                }
                i += 2;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    None
}

/// `package.requires`: Cerb version and plugins (docs/semantics.md §1.1).
fn requirements(package: &Json, issues: &mut Vec<ImportIssue>) {
    let Some(Json::Object(requires)) = package.get("requires") else {
        return;
    };
    if let Some(Json::String(wanted)) = requires.get("cerb_version")
        && !wanted.is_empty()
        && version_compare(CERB_VERSION, wanted) == std::cmp::Ordering::Less
    {
        issues.push(locate::package_issue(
            None,
            Some("requires.cerb_version".into()),
            format!("This package requires Cerb version {wanted} or later."),
        ));
    }
    if let Some(Json::Array(plugins)) = requires.get("plugins") {
        for (i, plugin) in plugins.iter().enumerate() {
            let id = plugin
                .as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| plugin.to_string());
            if !EMULATED_PLUGINS.contains(&id.as_str()) {
                issues.push(locate::package_issue(
                    None,
                    Some(format!("requires.plugins[{i}]")),
                    format!("This package requires the {id} plugin to be installed and enabled."),
                ));
            }
        }
    }
}

fn summaries(raw: &Json) -> (Vec<BotSummary>, Vec<BehaviorSummary>) {
    let text = |v: Option<&Json>| v.and_then(prompts::php_string).unwrap_or_default();
    // Borrowed: the sections are not copied.
    fn list(v: Option<&Json>) -> &[Json] {
        v.and_then(Json::as_array).map_or(&[], Vec::as_slice)
    }
    let mut bots = Vec::new();
    let mut behaviors = Vec::new();
    for bot in list(raw.get("bots")) {
        let bot_uid = text(bot.get("uid"));
        let mut uids = Vec::new();
        for behavior in list(bot.get("behaviors")) {
            let uid = text(behavior.get("uid"));
            uids.push(uid.clone());
            behaviors.push(BehaviorSummary {
                uid,
                title: text(behavior.get("title")),
                event: text(behavior.get("event").and_then(|e| e.get("key"))),
                bot: bot_uid.clone(),
            });
        }
        bots.push(BotSummary {
            uid: bot_uid,
            name: text(bot.get("name")),
            behaviors: uids,
        });
    }
    for behavior in list(raw.get("behaviors")) {
        behaviors.push(BehaviorSummary {
            uid: text(behavior.get("uid")),
            title: text(behavior.get("title")),
            event: text(behavior.get("event").and_then(|e| e.get("key"))),
            bot: text(behavior.get("bot_id")),
        });
    }
    (bots, behaviors)
}

/// Refuses U+0000 anywhere in the package, naming each place (at most `budget` of them):
/// PostgreSQL cannot store it, and nothing in a Cerb package needs it.
fn nul_characters(
    doc: &Json,
    v: &Json,
    path: &locate::JsonPath,
    issues: &mut Vec<ImportIssue>,
    budget: &mut usize,
) {
    const MESSAGE: &str = "contains a NUL character (U+0000), which cannot be stored";
    let report = |at: &locate::JsonPath, issues: &mut Vec<ImportIssue>, budget: &mut usize| {
        if *budget > 0 {
            *budget -= 1;
            issues.push(locate::issue(doc, at, MESSAGE));
        }
    };
    match v {
        Json::String(s) if s.contains('\0') => report(path, issues, budget),
        Json::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                nul_characters(doc, item, &path.idx(i), issues, budget);
            }
        }
        Json::Object(map) => {
            for (k, item) in map {
                let at = path.key(k);
                if k.contains('\0') {
                    report(&at, issues, budget);
                }
                nul_characters(doc, item, &at, issues, budget);
            }
        }
        _ => {}
    }
}
