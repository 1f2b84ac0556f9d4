//! Structural validation of the importable sections (`bots`, `behaviors`, `records`) with Cerb's
//! required-key messages, and the refusal of every feature Switchboard does not emulate
//! (docs/semantics.md, Decision 3). Runs twice: on the raw document at parse time (values still
//! holding import-time templates are skipped, as Cerb does) and on the rendered document while
//! planning.

use std::collections::HashMap;

use serde_json::{Map, Value as Json};

use crate::locate::{JsonPath, issue};
use crate::{EVENT_MACRO, EVENT_WEBHOOK, ImportIssue};

/// Deepest node tree accepted (a hostile package must not exhaust the stack).
pub const MAX_NODE_DEPTH: usize = 32;

/// Record contexts accepted in `records[]`.
pub const WEBHOOK_LISTENER_CONTEXTS: [&str; 2] =
    ["webhook_listener", "cerberusweb.contexts.webhook_listener"];

/// The listener engine that runs a bot behavior (the only one Switchboard emulates).
pub const WEBHOOK_ENGINE_BEHAVIOR: &str = "cerb.webhooks.listener.engine.va";

/// Every record context of Cerb 9.6.8, as (id, alias): the `devblocks.context` extensions of its
/// `plugin.xml` files. A record of any of them but `webhook_listener` is "unsupported here",
/// whichever spelling the package uses.
pub const CERB_CONTEXTS: [(&str, &str); 70] = [
    ("cerb.contexts.card.widget", "card_widget"),
    ("cerb.contexts.gpg.private.key", "gpg_private_key"),
    ("cerberusweb.contexts.activity_log", "activity_log"),
    ("cerberusweb.contexts.address", "address"),
    ("cerberusweb.contexts.app", "app"),
    ("cerberusweb.contexts.attachment", "attachment"),
    ("cerberusweb.contexts.behavior", "behavior"),
    (
        "cerberusweb.contexts.behavior.scheduled",
        "scheduled_behavior",
    ),
    ("cerberusweb.contexts.bot", "bot"),
    ("cerberusweb.contexts.bucket", "bucket"),
    ("cerberusweb.contexts.calendar", "calendar"),
    ("cerberusweb.contexts.calendar_event", "calendar_event"),
    (
        "cerberusweb.contexts.calendar_event.recurring",
        "calendar_recurring_event",
    ),
    ("cerberusweb.contexts.call", "call"),
    ("cerberusweb.contexts.classifier", "classifier"),
    ("cerberusweb.contexts.classifier.class", "classifier_class"),
    (
        "cerberusweb.contexts.classifier.entity",
        "classifier_entity",
    ),
    (
        "cerberusweb.contexts.classifier.example",
        "classifier_example",
    ),
    ("cerberusweb.contexts.comment", "comment"),
    (
        "cerberusweb.contexts.connected_account",
        "connected_account",
    ),
    (
        "cerberusweb.contexts.connected_service",
        "connected_service",
    ),
    ("cerberusweb.contexts.contact", "contact"),
    ("cerberusweb.contexts.context.saved.search", "saved_search"),
    ("cerberusweb.contexts.currency", "currency"),
    ("cerberusweb.contexts.custom_field", "custom_field"),
    ("cerberusweb.contexts.custom_fieldset", "custom_fieldset"),
    ("cerberusweb.contexts.custom_record", "custom_record"),
    ("cerberusweb.contexts.datacenter.domain", "domain"),
    ("cerberusweb.contexts.datacenter.sensor", "sensor"),
    ("cerberusweb.contexts.datacenter.server", "server"),
    ("cerberusweb.contexts.email.signature", "email_signature"),
    ("cerberusweb.contexts.feed", "feed"),
    ("cerberusweb.contexts.feed.item", "feed_item"),
    ("cerberusweb.contexts.file_bundle", "file_bundle"),
    ("cerberusweb.contexts.gpg_public_key", "gpg_public_key"),
    ("cerberusweb.contexts.group", "group"),
    ("cerberusweb.contexts.jira.issue", "jira_issue"),
    ("cerberusweb.contexts.jira.project", "jira_project"),
    ("cerberusweb.contexts.kb_article", "kb_article"),
    ("cerberusweb.contexts.kb_category", "kb_category"),
    ("cerberusweb.contexts.mail.draft", "draft"),
    ("cerberusweb.contexts.mail.html_template", "html_template"),
    ("cerberusweb.contexts.mail.transport", "mail_transport"),
    ("cerberusweb.contexts.mailbox", "mailbox"),
    ("cerberusweb.contexts.message", "message"),
    ("cerberusweb.contexts.notification", "notification"),
    ("cerberusweb.contexts.oauth.app", "oauth_app"),
    ("cerberusweb.contexts.opportunity", "opportunity"),
    ("cerberusweb.contexts.org", "org"),
    ("cerberusweb.contexts.package.library", "package"),
    ("cerberusweb.contexts.portal", "community_portal"),
    ("cerberusweb.contexts.profile.tab", "profile_tab"),
    ("cerberusweb.contexts.profile.widget", "profile_widget"),
    ("cerberusweb.contexts.project.board", "project_board"),
    (
        "cerberusweb.contexts.project.board.column",
        "project_board_column",
    ),
    ("cerberusweb.contexts.reminder", "reminder"),
    ("cerberusweb.contexts.role", "role"),
    ("cerberusweb.contexts.snippet", "snippet"),
    ("cerberusweb.contexts.task", "task"),
    ("cerberusweb.contexts.ticket", "ticket"),
    ("cerberusweb.contexts.timetracking", "time_entry"),
    (
        "cerberusweb.contexts.timetracking.activity",
        "timetracking_activity",
    ),
    ("cerberusweb.contexts.twitter.message", "twitter_message"),
    (
        "cerberusweb.contexts.webapi.credential",
        "webapi_credentials",
    ),
    ("cerberusweb.contexts.webhook_listener", "webhook_listener"),
    ("cerberusweb.contexts.worker", "worker"),
    ("cerberusweb.contexts.workspace.list", "workspace_list"),
    ("cerberusweb.contexts.workspace.page", "workspace_page"),
    ("cerberusweb.contexts.workspace.tab", "workspace_tab"),
    ("cerberusweb.contexts.workspace.widget", "workspace_widget"),
];

/// Actions every supported event offers.
const COMMON_ACTIONS: [&str; 7] = [
    "core.va.action.http_request",
    "_set_custom_var",
    "_exit",
    "_run_subroutine",
    "_run_behavior",
    "_get_key",
    "_set_key",
];
/// Actions only `event.webhook.received` offers.
const WEBHOOK_ACTIONS: [&str; 3] = ["set_http_body", "set_http_header", "set_http_status"];
/// Conditions every supported event offers (plus `var_*`).
const COMMON_CONDITIONS: [&str; 1] = ["_custom_script"];
/// Conditions only `event.webhook.received` offers.
const WEBHOOK_CONDITIONS: [&str; 6] = [
    "http_param",
    "http_header",
    "http_verb",
    "http_body",
    "http_client_ip",
    "http_path",
];
/// The string operator family (docs/semantics.md §2.5), each negatable with a leading `!`; `=` is
/// `compareStrings`' spelling of `is`. Other families (`gt`, `bool`, `in`, `between`, ...) are not
/// emulated, so a condition using one is refused (semantics Decision 3) instead of silently
/// failing.
const STRING_OPERATORS: [&str; 5] = ["is", "=", "contains", "like", "regexp"];
/// Behavior variable types (docs/semantics.md §6.3); `ctx_<context>` is accepted too.
const VARIABLE_TYPES: [&str; 15] = [
    "S", "T", "U", "D", "C", "N", "O", "Y", "E", "L", "W", "M", "X", "F", "I",
];

/// Does `s` contain an import-time template (`{{{`, `{{%` or `{{#`, Cerb's `\{\{[#%{]`)?
pub fn has_template(s: &str) -> bool {
    s.contains("{{{") || s.contains("{{%") || s.contains("{{#")
}

/// Cerb's missing-property check: the required keys absent from `obj`, in the required order.
fn missing_keys(obj: &Map<String, Json>, required: &[&str]) -> Vec<String> {
    required
        .iter()
        .filter(|k| !obj.contains_key(**k))
        .map(|k| (*k).to_owned())
        .collect()
}

/// PHP's notion of an empty array: `null`, `[]` or `{}`.
pub fn is_empty_collection(v: &Json) -> bool {
    match v {
        Json::Null => true,
        Json::Array(a) => a.is_empty(),
        Json::Object(o) => o.is_empty(),
        _ => false,
    }
}

/// PHP's `empty()` of a parameter: missing, `null`, `""`, `"0"`, `false`, `0` or an empty array.
fn is_empty_value(v: &Json) -> bool {
    match v {
        Json::String(s) => s.is_empty() || s == "0",
        Json::Bool(b) => !b,
        Json::Number(n) => n.as_f64() == Some(0.0),
        other => is_empty_collection(other),
    }
}

/// Sections, as they iterate: a JSON array, or an empty object (PHP exports `[]` either way).
fn as_items(v: &Json) -> Option<&[Json]> {
    match v {
        Json::Array(a) => Some(a.as_slice()),
        Json::Object(o) if o.is_empty() => Some(&[]),
        Json::Null => Some(&[]),
        _ => None,
    }
}

/// PHP's `gettype` of a JSON value, as Cerb's validation messages print it.
fn php_type(v: &Json) -> &'static str {
    match v {
        Json::Null => "NULL",
        Json::Bool(_) => "boolean",
        Json::Number(n) if n.is_f64() => "double",
        Json::Number(_) => "integer",
        Json::String(_) => "string",
        Json::Array(_) | Json::Object(_) => "array",
    }
}

/// Is `s` a node status Switchboard knows (`live`, `disabled`, `simulator`, or Cerb's 0/1/2)?
pub fn parse_status(v: Option<&Json>) -> Option<crate::NodeStatus> {
    use crate::NodeStatus::*;
    match v {
        None | Some(Json::Null) => Some(Live),
        Some(Json::String(s)) => match s.as_str() {
            "live" | "" | "0" => Some(Live),
            "disabled" | "1" => Some(Disabled),
            "simulator" | "2" => Some(Simulator),
            _ => None,
        },
        Some(Json::Number(n)) => match n.as_i64() {
            Some(0) => Some(Live),
            Some(1) => Some(Disabled),
            Some(2) => Some(Simulator),
            _ => None,
        },
        _ => None,
    }
}

/// Parses a node type.
pub fn parse_node_kind(s: &str) -> Option<crate::NodeKind> {
    use crate::NodeKind::*;
    Some(match s {
        "switch" => Switch,
        "outcome" => Outcome,
        "action" => Action,
        "loop" => Loop,
        "subroutine" => Subroutine,
        _ => return None,
    })
}

/// Walks a document and collects issues.
pub(crate) struct Validator<'a> {
    doc: &'a Json,
    /// `true` on the rendered document: nothing is skipped any more.
    rendered: bool,
    issues: Vec<ImportIssue>,
    /// Every uid seen, with the path of its first occurrence.
    uids: HashMap<String, JsonPath>,
    /// The variables (key → type) of the behavior being walked; `None` while a key or type is
    /// still an import-time template (checked on the rendered document).
    variables: Option<HashMap<String, String>>,
}

impl<'a> Validator<'a> {
    pub fn new(doc: &'a Json, rendered: bool) -> Self {
        Validator {
            doc,
            rendered,
            issues: Vec::new(),
            uids: HashMap::new(),
            variables: None,
        }
    }

    fn push(&mut self, path: &JsonPath, message: impl Into<String>) {
        self.issues.push(issue(self.doc, path, message));
    }

    /// A string value still holding a template is not checked before rendering.
    fn deferred(&self, v: &Json) -> bool {
        !self.rendered && matches!(v, Json::String(s) if has_template(s))
    }

    /// Validates every section but `package` and returns the issues found.
    pub fn run(mut self) -> Vec<ImportIssue> {
        let Json::Object(top) = self.doc else {
            return vec![crate::locate::package_issue(
                None,
                None,
                "Invalid package JSON",
            )];
        };
        for (section, value) in top {
            let path = JsonPath::root().key(section);
            match section.as_str() {
                "package" => {}
                "records" => self.records(value, &path),
                "bots" => self.bots(value, &path),
                "behaviors" => self.top_behaviors(value, &path),
                _ if !self.rendered && has_template(section) => {}
                _ => {
                    if !is_empty_collection(value) {
                        self.push(
                            &path,
                            format!(
                                "Unsupported section '{section}': Switchboard imports only bots, behaviors and webhook_listener records"
                            ),
                        );
                    }
                }
            }
        }
        self.issues
    }

    fn section_items<'v>(&mut self, value: &'v Json, path: &JsonPath) -> &'v [Json] {
        match as_items(value) {
            Some(items) => items,
            None => {
                self.push(path, "Invalid JSON: section must be an array");
                &[]
            }
        }
    }

    fn see_uid(&mut self, obj: &Map<String, Json>, path: &JsonPath) {
        match obj.get("uid") {
            Some(Json::String(uid)) if has_template(uid) => self.push(
                &path.key("uid"),
                "'uid' must not contain an import-time template (ids are reserved by uid first)",
            ),
            Some(Json::String(uid)) if !uid.is_empty() => {
                if let Some(first) = self.uids.get(uid) {
                    let at = crate::locate::render_path(first);
                    self.push(
                        &path.key("uid"),
                        format!("Duplicate uid '{uid}' (first used at {at})"),
                    );
                } else {
                    self.uids.insert(uid.clone(), path.clone());
                }
            }
            Some(_) => self.push(&path.key("uid"), "'uid' must be a non-empty string"),
            None => {}
        }
    }

    fn expect_string(&mut self, obj: &Map<String, Json>, key: &str, path: &JsonPath) {
        if let Some(v) = obj.get(key)
            && !v.is_string()
        {
            self.push(&path.key(key), format!("'{key}' must be a string"));
        }
    }

    fn expect_scalar(&mut self, obj: &Map<String, Json>, key: &str, path: &JsonPath) {
        if let Some(v) = obj.get(key)
            && (v.is_array() || v.is_object())
        {
            self.push(
                &path.key(key),
                format!("'{key}' must be a boolean, number or string"),
            );
        }
    }

    fn expect_object(&mut self, obj: &Map<String, Json>, key: &str, path: &JsonPath) {
        if let Some(v) = obj.get(key)
            && !(v.is_object() || is_empty_collection(v))
        {
            self.push(&path.key(key), format!("'{key}' must be an object"));
        }
    }

    // ---- records ------------------------------------------------------------------------------

    fn records(&mut self, value: &Json, path: &JsonPath) {
        for (i, record) in self.section_items(value, path).iter().enumerate() {
            let path = path.idx(i);
            let Json::Object(obj) = record else {
                self.push(&path, "Invalid JSON: record must be an object");
                continue;
            };
            let uid_text = match obj.get("uid") {
                Some(Json::String(s)) => s.clone(),
                Some(Json::Number(n)) => n.to_string(),
                _ => String::new(),
            };
            let missing = missing_keys(obj, &["uid", "_context"]);
            if !missing.is_empty() {
                self.push(
                    &path,
                    format!(
                        "Invalid JSON: record ({uid_text}) is missing properties ({})",
                        missing.join(", ")
                    ),
                );
            }
            self.see_uid(obj, &path);
            let Some(context) = obj.get("_context") else {
                continue;
            };
            if self.deferred(context) {
                continue;
            }
            let ctx = match context {
                Json::String(s) => s.as_str(),
                other => {
                    self.push(
                        &path.key("_context"),
                        format!("Unknown context '{other}' on record ({uid_text})."),
                    );
                    continue;
                }
            };
            if WEBHOOK_LISTENER_CONTEXTS.contains(&ctx) {
                self.webhook_listener(obj, &uid_text, &path);
            } else {
                let known = CERB_CONTEXTS
                    .iter()
                    .find(|(id, alias)| *id == ctx || *alias == ctx);
                if let Some((_, alias)) = known {
                    let hint = if matches!(*alias, "connected_account" | "connected_service") {
                        "; add connected accounts with `switchboard accounts add` instead"
                    } else {
                        ""
                    };
                    self.push(
                        &path.key("_context"),
                        format!("Unsupported record context '{ctx}' on record ({uid_text}): Cerb's {alias} records are unsupported here (only webhook_listener records can be imported){hint}"),
                    );
                } else {
                    self.push(
                        &path.key("_context"),
                        format!("Unknown context '{ctx}' on record ({uid_text})."),
                    );
                }
            }
        }
    }

    fn webhook_listener(&mut self, obj: &Map<String, Json>, uid: &str, path: &JsonPath) {
        let err = |m: &str| format!("Error validating record ({uid}): {m}");
        for (key, value) in obj {
            let field = path.key(key);
            if !self.rendered && has_template(key) {
                continue;
            }
            match key.as_str() {
                "uid" | "_context" | "updated_at" | "_label" => {}
                "name" | "guid" | "extension_id" => {
                    if self.deferred(value) {
                        continue;
                    }
                    let max = if key == "guid" { 40 } else { 255 };
                    match value {
                        Json::String(s) if s.is_empty() => self.push(&field, err(&format!("'{key}' is required."))),
                        Json::String(s) if s.len() > max => {
                            self.push(&field, err(&format!("'{key}' must be no longer than {max} characters.")))
                        }
                        Json::String(s) if key == "extension_id" && s != WEBHOOK_ENGINE_BEHAVIOR => self.push(
                            &field,
                            format!("Unsupported webhook listener engine '{s}' on record ({uid}): only {WEBHOOK_ENGINE_BEHAVIOR} is supported"),
                        ),
                        Json::String(_) => {}
                        Json::Null => self.push(&field, err(&format!("'{key}' is required."))),
                        other => self.push(
                            &field,
                            err(&format!("'{key}' must be a string ({}).", php_type(other))),
                        ),
                    }
                }
                "extension_params" => {
                    if !(value.is_object() || is_empty_collection(value) || self.deferred(value)) {
                        self.push(&field, err("'extension_params' must be an object."));
                    }
                }
                "links" => {
                    if !is_empty_collection(value) {
                        self.push(
                            &field,
                            format!("Unsupported feature on record ({uid}): record links"),
                        );
                    }
                }
                // Handled (and removed) before ids are reserved.
                "_exclude" => {}
                _ => self.push(&field, err(&format!("'{key}' is not a valid field."))),
            }
        }
        for key in ["name", "guid", "extension_id"] {
            if !obj.contains_key(key) {
                self.push(&path.key(key), err(&format!("'{key}' is required.")));
            }
        }
    }

    // ---- bots and behaviors -------------------------------------------------------------------

    fn bots(&mut self, value: &Json, path: &JsonPath) {
        for (i, bot) in self.section_items(value, path).iter().enumerate() {
            let path = path.idx(i);
            let Json::Object(obj) = bot else {
                self.push(&path, "Invalid JSON: bot must be an object");
                continue;
            };
            let missing = missing_keys(
                obj,
                &["uid", "name", "owner", "is_disabled", "params", "behaviors"],
            );
            if !missing.is_empty() {
                self.push(
                    &path,
                    format!(
                        "Invalid JSON: bot is missing properties ({})",
                        missing.join(", ")
                    ),
                );
            }
            self.see_uid(obj, &path);
            self.expect_string(obj, "name", &path);
            self.expect_object(obj, "owner", &path);
            if let Some(Json::Object(owner)) = obj.get("owner") {
                let owner_path = path.key("owner");
                self.expect_string(owner, "context", &owner_path);
                self.expect_scalar(owner, "id", &owner_path);
            }
            self.expect_scalar(obj, "is_disabled", &path);
            self.expect_object(obj, "params", &path);
            if let Some(image) = obj.get("image")
                && !(image.is_string() || image.is_null())
            {
                self.push(&path.key("image"), "'image' must be a data URI string");
            }
            if let Some(behaviors) = obj.get("behaviors") {
                let bpath = path.key("behaviors");
                let Some(items) = as_items(behaviors) else {
                    self.push(&bpath, "'behaviors' must be an array");
                    continue;
                };
                for (j, behavior) in items.iter().enumerate() {
                    self.behavior(behavior, &bpath.idx(j), false);
                }
            }
        }
    }

    fn top_behaviors(&mut self, value: &Json, path: &JsonPath) {
        for (i, behavior) in self.section_items(value, path).iter().enumerate() {
            self.behavior(behavior, &path.idx(i), true);
        }
    }

    fn behavior(&mut self, behavior: &Json, path: &JsonPath, top_level: bool) {
        let Json::Object(obj) = behavior else {
            self.push(path, "Invalid JSON: behavior must be an object");
            return;
        };
        let required: &[&str] = if top_level {
            &[
                "uid",
                "bot_id",
                "title",
                "is_disabled",
                "is_private",
                "priority",
                "event",
                "nodes",
            ]
        } else {
            &[
                "uid",
                "title",
                "is_disabled",
                "is_private",
                "priority",
                "event",
                "nodes",
            ]
        };
        let missing = missing_keys(obj, required);
        if !missing.is_empty() {
            self.push(
                path,
                format!(
                    "Invalid JSON: behavior is missing properties ({})",
                    missing.join(", ")
                ),
            );
        }
        self.see_uid(obj, path);
        self.expect_string(obj, "title", path);
        self.expect_scalar(obj, "is_disabled", path);
        self.expect_scalar(obj, "is_private", path);
        self.expect_scalar(obj, "bot_id", path);
        if let Some(priority) = obj.get("priority")
            && !self.deferred(priority)
            && crate::plan::php_int(priority).is_none()
        {
            self.push(&path.key("priority"), "'priority' must be a number");
        }
        if let Some(uri) = obj.get("uri")
            && !(uri.is_string() || uri.is_null())
        {
            self.push(&path.key("uri"), "'uri' must be a string");
        }
        let event = self.event(obj.get("event"), path);
        if let Some(variables) = obj.get("variables") {
            self.variables(variables, &path.key("variables"));
        }
        self.variables = self.variable_types(obj.get("variables"));
        if let Some(nodes) = obj.get("nodes") {
            self.nodes(nodes, &path.key("nodes"), 1, event);
        }
    }

    /// Checks `event.key`; returns whether the behavior is a webhook behavior (`None` when the
    /// event is unknown, so that its actions are checked against everything supported).
    fn event(&mut self, event: Option<&Json>, path: &JsonPath) -> Option<bool> {
        let event = event?;
        let path = path.key("event");
        let Json::Object(obj) = event else {
            self.push(&path, "'event' must be an object with a 'key'");
            return None;
        };
        match obj.get("key") {
            Some(Json::String(key)) if key == EVENT_WEBHOOK => Some(true),
            Some(Json::String(key)) if key == EVENT_MACRO => Some(false),
            Some(v) if self.deferred(v) => None,
            Some(Json::String(key)) => {
                self.push(
                    &path.key("key"),
                    format!("Unsupported event '{key}': only {EVENT_WEBHOOK} and {EVENT_MACRO} behaviors can be imported"),
                );
                None
            }
            _ => {
                self.push(&path.key("key"), "'event.key' is required");
                None
            }
        }
    }

    fn variables(&mut self, variables: &Json, path: &JsonPath) {
        // (entry name, path, variable); a list (PHP's export of an empty map) has no names.
        let entries: Vec<(Option<&str>, JsonPath, &Json)> = match variables {
            Json::Object(map) => map
                .iter()
                .map(|(k, v)| (Some(k.as_str()), path.key(k), v))
                .collect(),
            Json::Array(list) => list
                .iter()
                .enumerate()
                .map(|(i, v)| (None, path.idx(i), v))
                .collect(),
            Json::Null => Vec::new(),
            _ => {
                self.push(path, "'variables' must be an object");
                return;
            }
        };
        for (name, vpath, var) in entries {
            let Json::Object(obj) = var else {
                self.push(&vpath, "Invalid variable: must be an object");
                continue;
            };
            match obj.get("key") {
                Some(Json::String(key)) if !key.starts_with("var_") || key.len() <= 4 => {
                    if !self.deferred(&Json::String(key.clone())) {
                        self.push(
                            &vpath.key("key"),
                            format!("Invalid variable key '{key}': must start with 'var_'"),
                        );
                    }
                }
                Some(Json::String(key))
                    if name.is_some_and(|n| n != key.as_str() && !has_template(n)) =>
                {
                    let name = name.unwrap_or_default();
                    self.push(
                        &vpath.key("key"),
                        format!("Variable key '{key}' does not match its entry '{name}'"),
                    );
                }
                Some(Json::String(_)) => {}
                _ => self.push(&vpath, "Invalid variable: 'key' is required"),
            }
            match obj.get("type") {
                Some(t) if self.deferred(t) => {}
                Some(Json::String(t)) if VARIABLE_TYPES.contains(&t.as_str()) => {}
                Some(Json::String(t)) if t.len() > 4 && t.starts_with("ctx_") => {}
                Some(Json::String(t)) => self.push(
                    &vpath.key("type"),
                    format!("Unsupported variable type '{t}'"),
                ),
                _ => self.push(&vpath, "Invalid variable: 'type' is required"),
            }
            self.expect_string(obj, "label", &vpath);
            if let Some(p) = obj.get("is_private")
                && !self.deferred(p)
                && crate::plan::parse_flag(p).is_none()
            {
                self.push(
                    &vpath.key("is_private"),
                    "'is_private' must be \"0\", \"1\" or a boolean",
                );
            }
            self.expect_object(obj, "params", &vpath);
        }
    }

    /// The behavior's variables by key with their type, or `None` when one is still a template.
    fn variable_types(&self, variables: Option<&Json>) -> Option<HashMap<String, String>> {
        let entries: Vec<&Json> = match variables {
            Some(Json::Object(map)) => map.values().collect(),
            Some(Json::Array(list)) => list.iter().collect(),
            _ => Vec::new(),
        };
        let mut types = HashMap::new();
        for var in entries {
            let (Some(key), Some(kind)) = (var.get("key"), var.get("type")) else {
                continue;
            };
            if self.deferred(key) || self.deferred(kind) {
                return None;
            }
            if let (Json::String(key), Json::String(kind)) = (key, kind) {
                types.insert(key.clone(), kind.clone());
            }
        }
        Some(types)
    }

    /// A `var_*` action (Cerb's `runActionSetVariable`) whose effect Switchboard would not
    /// reproduce: the message, or `None` when it is fine.
    fn set_variable_refusal(&self, name: &str, obj: &Map<String, Json>) -> Option<String> {
        let search = ["search_mode", "worklist_model", "quick_search"]
            .iter()
            .find(|k| obj.contains_key(**k));
        let variables = self.variables.as_ref();
        let kind = variables.and_then(|v| v.get(name)).map(String::as_str);
        if kind.is_some_and(|k| k.starts_with("ctx_")) || search.is_some() {
            let how = match (obj.get("search_mode"), obj.get("quick_search")) {
                (Some(Json::String(mode)), Some(Json::String(query))) if mode == "quick_search" => {
                    format!(" (quick search `{query}`)")
                }
                _ => match search {
                    Some(k) => format!(" ({k})"),
                    None => String::new(),
                },
            };
            let what = match kind {
                Some(k) => format!("list variable '{name}' ({k})"),
                None => format!("variable '{name}'"),
            };
            return Some(format!(
                "Unsupported action '{name}': fills the {what} from a record search{how}; Switchboard has no records to search (pass the list in as the variable's value instead)"
            ));
        }
        match kind {
            None if variables.is_some() => Some(format!(
                "Unsupported action '{name}': the behavior has no variable '{name}' (Cerb sets nothing)"
            )),
            Some("W") => Some(format!(
                "Unsupported action '{name}': assigns a worker (worker_id, group_id, vars, mode); Switchboard has no workers"
            )),
            Some("E") if obj.get("mode").and_then(Json::as_str) == Some("calendar") => {
                Some(format!(
                    "Unsupported action '{name}': sets a date from a calendar (calendar_id, calendar_reldate); Switchboard has no calendars"
                ))
            }
            Some(k @ ("M" | "X" | "F" | "I" | "O" | "Y")) => Some(format!(
                "Unsupported action '{name}': Cerb sets nothing for a variable of type {k} with an action; set it with _set_custom_var"
            )),
            _ => None,
        }
    }

    fn nodes(&mut self, nodes: &Json, path: &JsonPath, depth: usize, webhook: Option<bool>) {
        let Some(items) = as_items(nodes) else {
            self.push(path, "'nodes' must be an array");
            return;
        };
        if items.is_empty() {
            return;
        }
        if depth > MAX_NODE_DEPTH {
            self.push(
                path,
                format!("Node tree is nested deeper than {MAX_NODE_DEPTH} levels"),
            );
            return;
        }
        for (i, node) in items.iter().enumerate() {
            self.node(node, &path.idx(i), depth, webhook);
        }
    }

    fn node(&mut self, node: &Json, path: &JsonPath, depth: usize, webhook: Option<bool>) {
        let Json::Object(obj) = node else {
            self.push(
                path,
                "Failed to import behavior nodes: node must be an object",
            );
            return;
        };
        let missing = missing_keys(obj, &["type", "title"]);
        if !missing.is_empty() {
            self.push(
                path,
                format!(
                    "Failed to import behavior nodes: node is missing properties ({})",
                    missing.join(", ")
                ),
            );
        }
        let kind = match obj.get("type") {
            Some(v) if self.deferred(v) => None,
            Some(Json::String(t)) => {
                let kind = parse_node_kind(t);
                if kind.is_none() {
                    self.push(&path.key("type"), format!("Unsupported node type '{t}'"));
                }
                kind
            }
            Some(other) => {
                self.push(&path.key("type"), format!("Unsupported node type {other}"));
                None
            }
            None => None,
        };
        self.expect_string(obj, "title", path);
        if let Some(status) = obj.get("status")
            && !self.deferred(status)
            && parse_status(Some(status)).is_none()
        {
            self.push(
                &path.key("status"),
                format!("Unknown node status {status}: expected live, disabled or simulator"),
            );
        }
        self.expect_object(obj, "params", path);
        if let Some(Json::Object(params)) = obj.get("params") {
            let ppath = path.key("params");
            match kind {
                Some(crate::NodeKind::Action) => {
                    self.actions(params.get("actions"), &ppath.key("actions"), webhook)
                }
                Some(crate::NodeKind::Outcome) => {
                    self.groups(params.get("groups"), &ppath.key("groups"), webhook)
                }
                _ => {}
            }
        }
        if let Some(children) = obj.get("nodes") {
            self.nodes(children, &path.key("nodes"), depth + 1, webhook);
        }
    }

    fn actions(&mut self, actions: Option<&Json>, path: &JsonPath, webhook: Option<bool>) {
        let Some(actions) = actions else { return };
        let Some(items) = as_items(actions) else {
            self.push(path, "'actions' must be an array");
            return;
        };
        for (i, action) in items.iter().enumerate() {
            let apath = path.idx(i);
            let Json::Object(obj) = action else {
                self.push(&apath, "Invalid action: must be an object");
                continue;
            };
            // Cerb skips entries without `action`.
            let Some(name) = obj.get("action") else {
                continue;
            };
            if self.deferred(name) {
                continue;
            }
            let supported = match name {
                Json::String(n) => {
                    COMMON_ACTIONS.contains(&n.as_str())
                        || (n.starts_with("var_") && n.len() > 4)
                        || (webhook != Some(false) && WEBHOOK_ACTIONS.contains(&n.as_str()))
                }
                _ => false,
            };
            if !supported {
                let shown = name
                    .as_str()
                    .map(str::to_owned)
                    .unwrap_or_else(|| name.to_string());
                let msg = match (name.as_str(), webhook) {
                    (Some(n), Some(false)) if WEBHOOK_ACTIONS.contains(&n) => {
                        format!(
                            "Unsupported action '{shown}' in a {EVENT_MACRO} behavior (webhook behaviors only)"
                        )
                    }
                    _ => format!("Unsupported action '{shown}'"),
                };
                self.push(&apath.key("action"), msg);
            } else if let Some(n) = name.as_str().filter(|n| n.starts_with("var_"))
                && let Some(msg) = self.set_variable_refusal(n, obj)
            {
                self.push(&apath.key("action"), msg);
            } else if name.as_str() == Some("_run_behavior")
                && obj.get("on").is_none_or(is_empty_value)
            {
                // Cerb's `runActionRunBehavior` runs the behavior once per record of `on`, and
                // not at all when `on` is empty.
                self.push(
                    &apath.key("on"),
                    "Unsupported action '_run_behavior' without 'on': Cerb runs the behavior on the records 'on' names, so without it nothing runs",
                );
            }
        }
    }

    fn groups(&mut self, groups: Option<&Json>, path: &JsonPath, webhook: Option<bool>) {
        let Some(groups) = groups else { return };
        let Some(items) = as_items(groups) else {
            self.push(path, "'groups' must be an array");
            return;
        };
        for (g, group) in items.iter().enumerate() {
            let gpath = path.idx(g);
            let Json::Object(obj) = group else {
                self.push(&gpath, "Invalid condition group: must be an object");
                continue;
            };
            let Some(conditions) = obj.get("conditions") else {
                continue;
            };
            let cpath = gpath.key("conditions");
            let Some(conds) = as_items(conditions) else {
                self.push(&cpath, "'conditions' must be an array");
                continue;
            };
            for (c, cond) in conds.iter().enumerate() {
                let path = cpath.idx(c);
                let Json::Object(cobj) = cond else {
                    self.push(&path, "Invalid condition: must be an object");
                    continue;
                };
                let Some(name) = cobj.get("condition") else {
                    continue;
                };
                if self.deferred(name) {
                    continue;
                }
                let supported = match name {
                    Json::String(n) => {
                        COMMON_CONDITIONS.contains(&n.as_str())
                            || (n.starts_with("var_") && n.len() > 4)
                            || (webhook != Some(false) && WEBHOOK_CONDITIONS.contains(&n.as_str()))
                    }
                    _ => false,
                };
                if !supported {
                    let shown = name
                        .as_str()
                        .map(str::to_owned)
                        .unwrap_or_else(|| name.to_string());
                    let msg = match (name.as_str(), webhook) {
                        (Some(n), Some(false)) if WEBHOOK_CONDITIONS.contains(&n) => {
                            format!(
                                "Unsupported condition '{shown}' in a {EVENT_MACRO} behavior (webhook behaviors only)"
                            )
                        }
                        _ => format!("Unsupported condition '{shown}'"),
                    };
                    self.push(&path.key("condition"), msg);
                } else {
                    self.operator(cobj.get("oper"), &path.key("oper"));
                }
            }
        }
    }
}

impl Validator<'_> {
    /// `oper` of a supported condition: one of [`STRING_OPERATORS`], optionally negated.
    fn operator(&mut self, oper: Option<&Json>, path: &JsonPath) {
        const SUPPORTED: &str = "only the string operators is, contains, like and regexp (each negatable with '!') are supported";
        match oper {
            Some(v) if self.deferred(v) => {}
            Some(Json::String(op))
                if STRING_OPERATORS.contains(&op.strip_prefix('!').unwrap_or(op)) => {}
            Some(Json::String(op)) => {
                self.push(path, format!("Unsupported operator '{op}': {SUPPORTED}"))
            }
            Some(other) => self.push(path, format!("Unsupported operator {other}: {SUPPORTED}")),
            None => self.push(path, format!("Condition has no operator: {SUPPORTED}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn operators_are_the_string_family() {
        let doc = json!({"package": {}});
        let mut v = Validator::new(&doc, true);
        let path = JsonPath::root().key("bots");
        for ok in [
            "is",
            "!is",
            "=",
            "!=",
            "contains",
            "!contains",
            "like",
            "!like",
            "regexp",
            "!regexp",
        ] {
            v.operator(Some(&json!(ok)), &path);
        }
        assert_eq!(v.issues, vec![]);
        for bad in [json!("gt"), json!("!!is"), json!("IS"), json!(""), json!(1)] {
            v.operator(Some(&bad), &path);
        }
        v.operator(None, &path);
        let messages: Vec<&str> = v.issues.iter().map(|i| i.message.as_str()).collect();
        assert_eq!(messages.len(), 6, "{messages:?}");
        assert!(
            messages[0].starts_with("Unsupported operator 'gt': "),
            "{messages:?}"
        );
        assert!(
            messages[4].starts_with("Unsupported operator 1: "),
            "{messages:?}"
        );
        assert!(
            messages[5].starts_with("Condition has no operator: "),
            "{messages:?}"
        );
        // Before rendering, a templated operator waits for its rendered value.
        let mut raw = Validator::new(&doc, false);
        raw.operator(Some(&json!("{{{op}}}")), &path);
        assert_eq!(raw.issues, vec![]);
    }

    #[test]
    fn php_types() {
        assert_eq!(
            [
                json!(null),
                json!(true),
                json!(1),
                json!(1.5),
                json!("s"),
                json!([]),
                json!({})
            ]
            .iter()
            .map(php_type)
            .collect::<Vec<_>>(),
            [
                "NULL", "boolean", "integer", "double", "string", "array", "array"
            ]
        );
    }

    #[test]
    fn template_markers_are_cerbs() {
        for yes in ["{{{x}}}", "a {{% if %}}", "{{# c #}}", "{{{"] {
            assert!(has_template(yes), "{yes}");
        }
        for no in ["{{ x }}", "{% if %}", "{# c #}", "{ {{x}} }", ""] {
            assert!(!has_template(no), "{no}");
        }
    }

    #[test]
    fn statuses_and_kinds() {
        use crate::NodeStatus::*;
        assert_eq!(parse_status(None), Some(Live));
        assert_eq!(parse_status(Some(&json!(null))), Some(Live));
        assert_eq!(parse_status(Some(&json!("disabled"))), Some(Disabled));
        assert_eq!(parse_status(Some(&json!(2))), Some(Simulator));
        assert_eq!(parse_status(Some(&json!("Live"))), None);
        assert_eq!(parse_node_kind("loop"), Some(crate::NodeKind::Loop));
        assert_eq!(parse_node_kind("Action"), None);
    }

    #[test]
    fn raw_pass_defers_templated_values_but_rendered_pass_does_not() {
        let doc = json!({"package": {}, "records": [{"uid": "h", "_context": "webhook_listener", "name": "n",
            "guid": "{{{g}}}", "extension_id": "cerb.webhooks.listener.engine.va"}]});
        assert!(Validator::new(&doc, false).run().is_empty());
        let issues = Validator::new(&doc, true).run();
        assert_eq!(
            issues.len(),
            0,
            "a short literal guid is fine in both passes"
        );
        let long = json!({"package": {}, "records": [{"uid": "h", "_context": "webhook_listener", "name": "n",
            "guid": format!("{{{{{{g}}}}}}{}", "x".repeat(40)), "extension_id": "cerb.webhooks.listener.engine.va"}]});
        assert!(Validator::new(&long, false).run().is_empty());
        assert_eq!(Validator::new(&long, true).run().len(), 1);
    }
}
