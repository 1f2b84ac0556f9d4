//! Turns a behavior definition into a compiled behavior: node tree in an arena, conditions and
//! actions parsed, every template compiled once into the behavior's own template environment.

use std::collections::HashMap;
use std::sync::Arc;

use indexmap::IndexMap;
use minijinja::Value;
use serde_json::Value as Json;
use switchboard_package::{
    BehaviorDef, BotDef, ImportIssue, NodeKind, NodeStatus, Owner, RecordId, VariableDef,
};
use switchboard_twig::{Dialect, Limits};

use crate::ops::{Operator, PatternError};
use crate::request::FastMap;
use crate::values::{intval, truthy_json};

/// The owning bot as behaviors see it (`va_*`, `behavior_bot_config`).
#[derive(Debug, Clone, PartialEq)]
pub struct BotInfo {
    pub id: RecordId,
    pub uid: String,
    pub name: String,
    pub is_disabled: bool,
    pub owner: Owner,
    /// `params.config`.
    pub config: Json,
}

impl BotInfo {
    pub fn from_def(bot: &BotDef) -> BotInfo {
        BotInfo {
            id: bot.id,
            uid: bot.uid.clone(),
            name: bot.name.clone(),
            is_disabled: bot.is_disabled,
            owner: bot.owner.clone(),
            config: bot.config(),
        }
    }
}

/// A template field: nothing, literal text, a compiled template, or one that failed to compile
/// (recorded when the action runs, docs/semantics.md, Decision 10).
#[derive(Debug, Clone)]
pub(crate) enum Tpl {
    Empty,
    Literal(String),
    Compiled(String),
    Broken(String),
}

#[derive(Debug)]
pub(crate) struct CNode {
    pub id: RecordId,
    pub kind: NodeKind,
    pub title: String,
    pub status: NodeStatus,
    pub children: Vec<usize>,
    pub body: CBody,
}

#[derive(Debug)]
pub(crate) enum CBody {
    None,
    Outcome(Vec<Group>),
    Actions(Vec<CAction>),
    Loop {
        foreach: Tpl,
        as_placeholder: String,
    },
}

#[derive(Debug)]
pub(crate) struct Group {
    pub any: bool,
    pub conditions: Vec<CCondition>,
}

#[derive(Debug)]
pub(crate) struct CCondition {
    /// The condition token (`http_param`, `var_x`, ...).
    pub token: String,
    pub subject: Subject,
    pub op: Operator,
    pub oper: String,
    pub value: String,
}

#[derive(Debug)]
pub(crate) enum Subject {
    HttpParam(String),
    HttpHeader(String),
    HttpVerb,
    HttpBody,
    HttpClientIp,
    HttpPath,
    Var(String),
    Script(Tpl),
    Invalid,
}

#[derive(Debug)]
pub(crate) struct CAction {
    pub name: String,
    pub kind: ActionKind,
}

#[derive(Debug)]
pub(crate) enum ActionKind {
    SetBody(Tpl),
    SetHeader {
        name: Tpl,
        value: Tpl,
    },
    SetStatus(Tpl),
    Http(Box<HttpAction>),
    SetCustomVar {
        var: String,
        value: Tpl,
        json: bool,
        simulator_only: bool,
    },
    SetVar {
        var: String,
        value: Tpl,
    },
    Exit {
        suspend: bool,
    },
    RunSubroutine(String),
    RunBehavior {
        behavior_id: Tpl,
        var: String,
        inputs: Vec<(String, Tpl)>,
        run_in_simulator: bool,
    },
    /// `_get_key` (docs/semantics.md §4.5).
    GetKey {
        key: Tpl,
        var: String,
    },
    /// `_set_key` (docs/semantics.md §4.5). `key_given`: the unrendered key is not empty in
    /// PHP's sense (Cerb checks it before rendering).
    SetKey {
        key_given: bool,
        key: Tpl,
        value: Tpl,
        expires_at: Tpl,
    },
    Unsupported,
}

#[derive(Debug)]
pub(crate) struct HttpAction {
    pub verb: String,
    pub url: Tpl,
    pub headers: Tpl,
    pub body: Tpl,
    pub auth: AuthSpec,
    pub raw_response_body: bool,
    pub ignore_ssl_validation: bool,
    pub run_in_simulator: bool,
    pub placeholder: String,
}

#[derive(Debug)]
pub(crate) enum AuthSpec {
    None,
    Account(RecordId),
    Placeholder(Tpl),
}

/// A behavior ready to run many times. Cheap to share (`Arc`), immutable.
pub struct CompiledBehavior {
    /// The behavior's fields; its node tree is compiled into `nodes` and not kept here.
    pub def: BehaviorDef,
    pub bot: Arc<BotInfo>,
    pub(crate) env: minijinja::Environment<'static>,
    pub(crate) limits: Limits,
    pub(crate) nodes: Vec<CNode>,
    pub(crate) roots: Vec<usize>,
    pub(crate) subroutines: HashMap<String, usize>,
    /// `behavior_*` and `va_*` placeholders, computed once.
    pub(crate) base: Arc<FastMap<String, Value>>,
    /// Whether a run may call the host (HTTP requests, `_run_behavior`, bot keys).
    uses_host: bool,
}

impl std::fmt::Debug for CompiledBehavior {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompiledBehavior")
            .field("id", &self.def.id)
            .field("title", &self.def.title)
            .field("nodes", &self.nodes.len())
            .finish()
    }
}

impl CompiledBehavior {
    /// Compiles with the default limits.
    pub fn compile(
        def: &BehaviorDef,
        bot: Arc<BotInfo>,
    ) -> Result<CompiledBehavior, Vec<ImportIssue>> {
        CompiledBehavior::compile_with(def, bot, Limits::default())
    }

    /// Compiles a behavior. Fails only on what Decision 8 of docs/semantics.md refuses at import
    /// (an uncompilable `regexp`); template syntax errors are kept and reported when the action
    /// runs.
    pub fn compile_with(
        def: &BehaviorDef,
        bot: Arc<BotInfo>,
        limits: Limits,
    ) -> Result<CompiledBehavior, Vec<ImportIssue>> {
        let mut c = Compiler::new(def, &limits, true);
        let roots = def
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| c.node(n, &format!("nodes[{i}]")))
            .collect();
        if !c.issues.is_empty() {
            return Err(c.issues);
        }
        let base = Arc::new(base_placeholders(def, &bot));
        let uses_host = c.nodes.iter().any(|n| match &n.body {
            CBody::Actions(actions) => actions.iter().any(|a| {
                matches!(
                    a.kind,
                    ActionKind::Http(_)
                        | ActionKind::RunBehavior { .. }
                        | ActionKind::GetKey { .. }
                        | ActionKind::SetKey { .. }
                )
            }),
            _ => false,
        });
        Ok(CompiledBehavior {
            uses_host,
            def: without_nodes(def),
            bot,
            env: c.env,
            limits,
            nodes: c.nodes,
            roots,
            subroutines: c.subroutines,
            base,
        })
    }

    /// What [`CompiledBehavior::compile`] would refuse (docs/semantics.md, Decision 8), found
    /// without compiling any template: an import checks every behavior this way, and a caller
    /// compiles only the behaviors it runs.
    pub fn check(def: &BehaviorDef) -> Result<(), Vec<ImportIssue>> {
        let mut c = Compiler::new(def, &Limits::default(), false);
        for (i, n) in def.nodes.iter().enumerate() {
            c.node(n, &format!("nodes[{i}]"));
        }
        if c.issues.is_empty() {
            Ok(())
        } else {
            Err(c.issues)
        }
    }

    /// Whether running this behavior may call the [`crate::Host`] (HTTP requests, other
    /// behaviors, bot keys): callers on an async runtime run those on a blocking thread.
    pub fn uses_host(&self) -> bool {
        self.uses_host
    }

    /// Declared variables.
    pub fn variables(&self) -> &IndexMap<String, VariableDef> {
        &self.def.variables
    }

    /// The variables' keys as an error message lists them (`var_to, var_body`, or `none`).
    pub fn variable_list(&self) -> String {
        if self.def.variables.is_empty() {
            return "none".to_owned();
        }
        let keys: Vec<&str> = self.def.variables.keys().map(String::as_str).collect();
        keys.join(", ")
    }
}

struct Compiler {
    env: minijinja::Environment<'static>,
    nodes: Vec<CNode>,
    subroutines: HashMap<String, usize>,
    issues: Vec<ImportIssue>,
    behavior_uid: String,
    /// The package section the behavior came from, for error locations.
    section: &'static str,
    templates: usize,
    /// The output limit of a render (docs/semantics.md, Decision 10), which literal text obeys
    /// too.
    max_output: usize,
    /// `false` when only checking: templates are not compiled.
    templates_on: bool,
}

/// The behavior's fields without its node tree (compiled into [`CompiledBehavior::nodes`]), so a
/// compiled behavior does not keep a second copy of the tree.
fn without_nodes(def: &BehaviorDef) -> BehaviorDef {
    BehaviorDef {
        uid: def.uid.clone(),
        id: def.id,
        bot_id: def.bot_id,
        title: def.title.clone(),
        event: def.event.clone(),
        is_disabled: def.is_disabled,
        is_private: def.is_private,
        priority: def.priority,
        variables: def.variables.clone(),
        nodes: Vec::new(),
        uri: def.uri.clone(),
        section: def.section,
    }
}

impl Compiler {
    fn new(def: &BehaviorDef, limits: &Limits, templates_on: bool) -> Compiler {
        Compiler {
            env: if templates_on {
                switchboard_twig::environment(Dialect::Runtime, limits)
            } else {
                minijinja::Environment::empty()
            },
            nodes: Vec::new(),
            subroutines: HashMap::new(),
            issues: Vec::new(),
            behavior_uid: def.uid.clone(),
            section: def.section.as_str(),
            templates: 0,
            max_output: limits.max_output_bytes,
            templates_on,
        }
    }
}

fn str_param<'a>(params: &'a Json, key: &str) -> &'a str {
    params.get(key).and_then(Json::as_str).unwrap_or("")
}

impl Compiler {
    fn node(&mut self, def: &switchboard_package::NodeDef, path: &str) -> usize {
        let body = match def.kind {
            NodeKind::Outcome => CBody::Outcome(self.groups(def, path)),
            NodeKind::Action => CBody::Actions(self.actions(def)),
            NodeKind::Loop => CBody::Loop {
                foreach: self.tpl(
                    def.id,
                    "foreach_json",
                    str_param(&def.params, "foreach_json"),
                ),
                as_placeholder: str_param(&def.params, "as_placeholder").to_string(),
            },
            NodeKind::Switch | NodeKind::Subroutine => CBody::None,
        };
        let index = self.nodes.len();
        self.nodes.push(CNode {
            id: def.id,
            kind: def.kind,
            title: def.title.clone(),
            status: def.status,
            children: Vec::new(),
            body,
        });
        if def.kind == NodeKind::Subroutine {
            // First by position wins (depth-first document order).
            self.subroutines.entry(def.title.clone()).or_insert(index);
        }
        let children = def
            .nodes
            .iter()
            .enumerate()
            .map(|(i, child)| self.node(child, &format!("{path}.nodes[{i}]")))
            .collect();
        self.nodes[index].children = children;
        index
    }

    fn tpl(&mut self, node_id: RecordId, field: &str, source: &str) -> Tpl {
        if source.is_empty() || !self.templates_on {
            return Tpl::Empty;
        }
        if !(source.contains("{{") || source.contains("{%") || source.contains("{#")) {
            let text = source.replace("\r\n", "\n").replace('\r', "\n");
            // The output limit holds for text without template tags as for any render.
            if text.len() > self.max_output {
                return Tpl::Broken(
                    switchboard_twig::TwigError::OutputTooLarge(self.max_output).to_string(),
                );
            }
            return Tpl::Literal(text);
        }
        self.templates += 1;
        let name = format!("{node_id}/{}/{field}", self.templates);
        match switchboard_twig::add_template(&mut self.env, &name, source) {
            Ok(()) => Tpl::Compiled(name),
            Err(e) => Tpl::Broken(e.to_string()),
        }
    }

    fn groups(&mut self, def: &switchboard_package::NodeDef, path: &str) -> Vec<Group> {
        let Some(groups) = def.params.get("groups").and_then(Json::as_array) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (gi, group) in groups.iter().enumerate() {
            // PHP's `intval($group['any'])`: 0 is ALL, anything else ANY (`0.5` is 0).
            let any = match group.get("any") {
                Some(Json::String(s)) => intval(s) != 0,
                Some(Json::Number(n)) => n.as_f64().is_some_and(|f| f.trunc() != 0.0),
                Some(v) => truthy_json(v),
                None => false,
            };
            let mut conditions = Vec::new();
            for (ci, cond) in group
                .get("conditions")
                .and_then(Json::as_array)
                .into_iter()
                .flatten()
                .enumerate()
            {
                let Some(token) = cond.get("condition").and_then(Json::as_str) else {
                    continue;
                };
                let oper = str_param(cond, "oper").to_string();
                let value = match cond.get("value") {
                    Some(Json::String(s)) => s.clone(),
                    Some(Json::Null) | None => String::new(),
                    Some(other) => other.to_string(),
                };
                let op = match Operator::parse(&oper, &value) {
                    Ok(op) => op,
                    Err(PatternError { pattern, reason }) => {
                        self.issues.push(ImportIssue::new(
                            self.section,
                            Some(self.behavior_uid.clone()),
                            Some(format!("{path}.params.groups[{gi}].conditions[{ci}].value")),
                            Some(def.title.clone()),
                            format!("invalid regexp `{pattern}`: {reason}"),
                        ));
                        Operator::parse_lenient(&oper, &value)
                    }
                };
                let subject = match token {
                    "http_param" => Subject::HttpParam(str_param(cond, "name").to_string()),
                    "http_header" => Subject::HttpHeader(str_param(cond, "name").to_string()),
                    "http_verb" => Subject::HttpVerb,
                    "http_body" => Subject::HttpBody,
                    "http_client_ip" => Subject::HttpClientIp,
                    "http_path" => Subject::HttpPath,
                    "_custom_script" => {
                        Subject::Script(self.tpl(def.id, "tpl", str_param(cond, "tpl")))
                    }
                    t if t.starts_with("var_") => Subject::Var(t.to_string()),
                    _ => Subject::Invalid,
                };
                conditions.push(CCondition {
                    token: token.to_string(),
                    subject,
                    op,
                    oper,
                    value,
                });
            }
            out.push(Group { any, conditions });
        }
        out
    }

    fn actions(&mut self, def: &switchboard_package::NodeDef) -> Vec<CAction> {
        let Some(actions) = def.params.get("actions").and_then(Json::as_array) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for a in actions {
            // Entries without `action` are skipped (Cerb).
            let Some(name) = a.get("action").and_then(Json::as_str) else {
                continue;
            };
            let id = def.id;
            let kind = match name {
                "set_http_body" => {
                    ActionKind::SetBody(self.tpl(id, "value", str_param(a, "value")))
                }
                "set_http_header" => ActionKind::SetHeader {
                    name: self.tpl(id, "name", str_param(a, "name")),
                    value: self.tpl(id, "value", str_param(a, "value")),
                },
                "set_http_status" => {
                    ActionKind::SetStatus(self.tpl(id, "value", str_param(a, "value")))
                }
                "core.va.action.http_request" => {
                    let options = a.get("options").cloned().unwrap_or(Json::Null);
                    let flag = |k: &str| options.get(k).is_some_and(truthy_json);
                    let auth = match str_param(a, "auth") {
                        "connected_account" => {
                            AuthSpec::Account(intval(str_param(a, "auth_connected_account_id")))
                        }
                        "placeholder" => AuthSpec::Placeholder(self.tpl(
                            id,
                            "auth_placeholder",
                            str_param(a, "auth_placeholder"),
                        )),
                        _ => AuthSpec::None,
                    };
                    ActionKind::Http(Box::new(HttpAction {
                        verb: str_param(a, "http_verb").to_ascii_uppercase(),
                        url: self.tpl(id, "http_url", str_param(a, "http_url")),
                        headers: self.tpl(id, "http_headers", str_param(a, "http_headers")),
                        body: self.tpl(id, "http_body", str_param(a, "http_body")),
                        auth,
                        raw_response_body: flag("raw_response_body"),
                        ignore_ssl_validation: flag("ignore_ssl_validation"),
                        run_in_simulator: a.get("run_in_simulator").is_some_and(truthy_json),
                        placeholder: str_param(a, "response_placeholder").to_string(),
                    }))
                }
                "_set_custom_var" => {
                    let raw = str_param(a, "value");
                    // PHP emptiness: "" and "0" mean "no value" (Cerb skips the action).
                    let value = if raw.is_empty() || raw == "0" {
                        Tpl::Empty
                    } else {
                        self.tpl(id, "value", raw)
                    };
                    ActionKind::SetCustomVar {
                        var: str_param(a, "var").to_string(),
                        value,
                        json: str_param(a, "format") == "json",
                        simulator_only: a.get("is_simulator_only").is_some_and(truthy_json),
                    }
                }
                "_exit" => ActionKind::Exit {
                    suspend: str_param(a, "mode") == "suspend",
                },
                "_run_subroutine" => {
                    ActionKind::RunSubroutine(str_param(a, "subroutine").to_string())
                }
                "_run_behavior" => {
                    let behavior_id = match a.get("behavior_id") {
                        Some(Json::Number(n)) => Tpl::Literal(n.to_string()),
                        _ => self.tpl(id, "behavior_id", str_param(a, "behavior_id")),
                    };
                    let mut inputs = Vec::new();
                    if let Some(obj) = a.as_object() {
                        for (k, v) in obj {
                            if k.starts_with("var_") {
                                let src = match v {
                                    Json::String(s) => s.clone(),
                                    Json::Null => String::new(),
                                    other => other.to_string(),
                                };
                                let t = self.tpl(id, k, &src);
                                inputs.push((k.clone(), t));
                            }
                        }
                    }
                    ActionKind::RunBehavior {
                        behavior_id,
                        var: str_param(a, "var").to_string(),
                        inputs,
                        run_in_simulator: a.get("run_in_simulator").is_some_and(truthy_json),
                    }
                }
                // Cerb 9.6: `DevblocksEventHelper::runActionGetKey` / `runActionSetKey`.
                "_get_key" => ActionKind::GetKey {
                    key: self.tpl(id, "key", str_param(a, "key")),
                    var: str_param(a, "var").to_string(),
                },
                "_set_key" => {
                    let raw = str_param(a, "key");
                    ActionKind::SetKey {
                        key_given: !(raw.is_empty() || raw == "0"),
                        key: self.tpl(id, "key", raw),
                        value: self.tpl(id, "value", str_param(a, "value")),
                        expires_at: self.tpl(id, "expires_at", str_param(a, "expires_at")),
                    }
                }
                n if n.starts_with("var_") => ActionKind::SetVar {
                    var: n.to_string(),
                    value: self.tpl(id, "value", str_param(a, "value")),
                },
                _ => ActionKind::Unsupported,
            };
            out.push(CAction {
                name: name.to_string(),
                kind,
            });
        }
        out
    }
}

/// Cerb's context id of a bot record.
const BOT_CONTEXT: &str = "cerberusweb.contexts.bot";

/// `behavior_*` and `va_*` placeholders (docs/semantics.md §3.3, §6.4).
fn base_placeholders(def: &BehaviorDef, bot: &BotInfo) -> FastMap<String, Value> {
    let mut m = FastMap::default();
    let b = |x: bool| Value::from(x);
    m.insert(
        "behavior__context".into(),
        Value::from("cerberusweb.contexts.behavior"),
    );
    m.insert("behavior_id".into(), Value::from(def.id));
    m.insert("behavior__label".into(), Value::from(def.title.as_str()));
    m.insert("behavior_name".into(), Value::from(def.title.as_str()));
    m.insert(
        "behavior_event_point".into(),
        Value::from(def.event.as_str()),
    );
    m.insert("behavior_is_disabled".into(), b(def.is_disabled));
    m.insert("behavior_is_private".into(), b(def.is_private));
    m.insert("behavior_priority".into(), Value::from(def.priority));
    m.insert(
        "behavior_uri".into(),
        Value::from(def.uri.clone().unwrap_or_default()),
    );
    m.insert(
        "behavior_variables".into(),
        crate::values::to_value(&def.variables),
    );
    // The owning bot, as Cerb lazy-loads it through `behavior_bot__context`.
    m.insert("behavior_bot__context".into(), Value::from(BOT_CONTEXT));
    m.insert("behavior_bot_id".into(), Value::from(bot.id));
    m.insert("behavior_bot__label".into(), Value::from(bot.name.as_str()));
    m.insert("behavior_bot_name".into(), Value::from(bot.name.as_str()));
    m.insert(
        "behavior_bot_config".into(),
        crate::values::to_value(&bot.config),
    );
    m.insert("behavior_bot_is_disabled".into(), b(bot.is_disabled));
    m.insert(
        "behavior_bot_owner__context".into(),
        Value::from(bot.owner.context.as_str()),
    );
    m.insert(
        "behavior_bot_owner_id".into(),
        crate::values::to_value(&bot.owner.id),
    );
    m.insert("va__context".into(), Value::from(BOT_CONTEXT));
    m.insert("va_id".into(), Value::from(bot.id));
    m.insert("va__label".into(), Value::from(bot.name.as_str()));
    m.insert("va_name".into(), Value::from(bot.name.as_str()));
    m.insert("va_config".into(), crate::values::to_value(&bot.config));
    m.insert("va_is_disabled".into(), b(bot.is_disabled));
    m.insert(
        "va_owner__context".into(),
        Value::from(bot.owner.context.as_str()),
    );
    m.insert("va_owner_id".into(), crate::values::to_value(&bot.owner.id));
    m
}
