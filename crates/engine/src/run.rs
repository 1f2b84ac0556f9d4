//! Walks a compiled behavior's decision tree (docs/semantics.md §2) and runs its actions (§4),
//! within the run limits of its Decision 10. Pure: HTTP requests and other behaviors come from the
//! caller's [`Host`].

use std::sync::Arc;

use indexmap::IndexMap;
use minijinja::Value;
use minijinja::value::{Enumerator, Object};
use serde::Serialize;
use switchboard_package::{NodeKind, NodeStatus, RecordId, VariableDef};

use crate::compile::{
    ActionKind, AuthSpec, CBody, CCondition, CompiledBehavior, HttpAction, Subject, Tpl,
};
use crate::keys::{BotKeyWrite, MAX_KEY_CHARS, php_empty};
use crate::request::{FastMap, NormalizedRequest, WebhookRequest};
use crate::stack::{LoopStack, PhpKey};
use crate::trace::TraceEvent;
use crate::values::{as_condition_text, intval, php_string, truthy, truthy_json};

/// docs/semantics.md, Decision 10: nodes visited in one run.
pub const MAX_VISITED_NODES: usize = 10_000;
/// docs/semantics.md, Decision 10: iterations of one loop.
pub const MAX_LOOP_ITERATIONS: usize = 1_000;
/// docs/semantics.md, Decision 10: `_run_behavior` calls nested below the top-level behavior
/// (depth 0).
pub const MAX_BEHAVIOR_DEPTH: usize = 8;
/// Nesting of `_run_subroutine` calls, so a subroutine calling itself cannot exhaust the stack
/// before the node limit stops it.
pub const MAX_SUBROUTINE_DEPTH: usize = 64;

/// A real run, or the simulator (status `simulator` nodes run, side effects are described).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    Real,
    Simulator,
}

#[derive(Debug, Clone, Copy)]
pub struct RunOptions {
    pub mode: Mode,
    /// In the simulator, perform HTTP requests whose `run_in_simulator` is set (`--run-http`).
    pub simulator_http: bool,
}

impl RunOptions {
    pub fn real() -> RunOptions {
        RunOptions {
            mode: Mode::Real,
            simulator_http: false,
        }
    }
    pub fn simulator(run_http: bool) -> RunOptions {
        RunOptions {
            mode: Mode::Simulator,
            simulator_http: run_http,
        }
    }
}

/// A connected account as the engine needs it: a name to show, its kind and the hosts it may
/// authenticate.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectedAccount {
    pub id: RecordId,
    pub name: String,
    /// How the host attaches its secret: `twilio`, `bearer`, `basic` or `api-key`
    /// (`switchboard accounts add --kind`); named in the refusal for a host it does not allow.
    pub kind: String,
    /// Hosts (lower-case) the credentials may be sent to (docs/semantics.md, Decision 11).
    pub allowed_hosts: Vec<String>,
}

impl ConnectedAccount {
    /// The run error when the account is used for `url`, outside its allowed hosts: what kind of
    /// account it is and which hosts it allows; for a Twilio account used for another service,
    /// how to connect an account for that service.
    pub fn refusal(&self, url: &str) -> String {
        let kind = match self.kind.as_str() {
            "twilio" => "a Twilio account".to_owned(),
            "bearer" => "a bearer-token account".to_owned(),
            "basic" => "a Basic-auth account".to_owned(),
            "api-key" => "an API-key account".to_owned(),
            other => format!("a '{other}' account"),
        };
        let hosts = if self.allowed_hosts.is_empty() {
            "no host".to_owned()
        } else {
            self.allowed_hosts.join(", ")
        };
        let mut text = format!(
            "connected account {} ('{}') is not allowed for {url}: it is {kind}, allowed only for {hosts}",
            self.id, self.name
        );
        let host = url_host(url).unwrap_or_else(|| "<host>".into());
        let twilio_host = host == "twilio.com" || host.ends_with(".twilio.com");
        if self.kind == "twilio" && !twilio_host {
            text.push_str(&format!(
                "; connected accounts are Twilio accounts unless added with a kind of their own: for {host}, add one with `switchboard accounts add --kind bearer|basic|api-key --allowed-host {host}` and answer the package's prompt with its id"
            ));
        }
        text
    }
}

/// An HTTP request a behavior makes. Credentials are not in it: the host attaches the account's
/// credentials when `account` is set.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HttpRequest {
    pub method: String,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
    /// Connected account whose credentials go with the request (host already checked).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account: Option<RecordId>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub ignore_ssl_validation: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Final URL after redirects.
    pub url: String,
}

/// What became of an HTTP request.
#[derive(Debug, Clone, PartialEq)]
pub enum HttpOutcome {
    Response(HttpResponse),
    /// Transport failure (DNS, connect, TLS, timeout, refused by policy).
    Error(String),
    /// The host would not attach the connected account's credentials (unknown account, or a host
    /// outside its allowed hosts): nothing was sent, the placeholder is `false` as in Cerb
    /// (docs/semantics.md, Decision 11). The engine checks the allowed hosts first; this is the
    /// host's own check.
    CredentialsRefused(String),
}

/// What the engine needs from its surroundings.
pub trait Host {
    /// A connected account by id, for `auth: connected_account`.
    fn connected_account(&self, id: RecordId) -> Option<ConnectedAccount>;
    /// Performs an HTTP request (through the outbound service in production).
    fn http_request(&self, request: &HttpRequest) -> HttpOutcome;
    /// Another behavior, for `_run_behavior`.
    fn behavior(&self, id: RecordId) -> Option<Arc<CompiledBehavior>>;
    /// The value of bot `bot`'s key `key` (`_get_key`, docs/semantics.md §4.5): `None` when it
    /// is missing or expired. An error (the store is unreachable) is recorded in the run log.
    /// By default there is no store.
    fn bot_key_get(&self, bot: RecordId, key: &str) -> Result<Option<String>, String> {
        let _ = (bot, key);
        Err(NO_BOT_KEYS.into())
    }
    /// Stores `value` under bot `bot`'s key `key` until `expires_at` (Unix seconds; 0: never),
    /// or deletes the key when `value` is empty (`_set_key`, docs/semantics.md §4.5).
    fn bot_key_set(
        &self,
        bot: RecordId,
        key: &str,
        value: &str,
        expires_at: i64,
    ) -> Result<(), String> {
        let _ = (bot, key, value, expires_at);
        Err(NO_BOT_KEYS.into())
    }
    /// The current time in Unix seconds: `_set_key`'s relative expiry dates (`+1 day`) count
    /// from it.
    fn now(&self) -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0)
    }
}

/// The error of a host without a bot key store.
const NO_BOT_KEYS: &str = "bot keys are not available here";

/// A host with no accounts, no behaviors, no network and no bot keys: requests, `_get_key` and
/// `_set_key` fail (recorded in the run log).
pub struct OfflineHost;

impl Host for OfflineHost {
    fn connected_account(&self, _: RecordId) -> Option<ConnectedAccount> {
        None
    }
    fn http_request(&self, _: &HttpRequest) -> HttpOutcome {
        HttpOutcome::Error("HTTP requests are not available here".into())
    }
    fn behavior(&self, _: RecordId) -> Option<Arc<CompiledBehavior>> {
        None
    }
}

/// An HTTP request as recorded in the run output.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HttpRequestRecord {
    pub method: String,
    pub url: String,
    /// Headers as sent, lower-case names; credentials are never listed.
    pub headers: IndexMap<String, String>,
    pub body: String,
    pub sent: bool,
    /// Name of the connected account whose credentials were attached.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub authenticated_with: Option<String>,
}

/// An error recorded during a run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunError {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_id: Option<RecordId>,
    pub message: String,
}

/// How the run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ExitState {
    Complete,
    Stop,
    Suspend,
    /// A run limit was reached.
    Aborted,
}

/// The result of a run.
#[derive(Debug, Clone, Serialize)]
pub struct RunOutput {
    pub status: u16,
    /// Response headers, lower-case names, in the order set.
    pub headers: IndexMap<String, String>,
    pub body: String,
    /// Final values of behavior variables and placeholders the run set.
    pub vars: IndexMap<String, serde_json::Value>,
    pub http_requests: Vec<HttpRequestRecord>,
    /// The `_set_key`s the run made, in order (docs/semantics.md §4.5).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub bot_keys: Vec<BotKeyWrite>,
    pub trace: Vec<TraceEvent>,
    pub errors: Vec<RunError>,
    /// Ids of the nodes that passed, in order.
    pub path: Vec<RecordId>,
    pub exit: ExitState,
}

/// The behavior dictionary: the behavior's base placeholders (shared, never copied) under the
/// run's own values. Shared with templates without copying.
#[derive(Debug, Default, Clone)]
struct Dict {
    base: Arc<FastMap<String, Value>>,
    run: Arc<FastMap<String, Value>>,
}

impl Dict {
    fn new(base: Arc<FastMap<String, Value>>) -> Dict {
        Dict {
            base,
            run: Arc::default(),
        }
    }
    fn get(&self, key: &str) -> Option<&Value> {
        self.run.get(key).or_else(|| self.base.get(key))
    }
    fn set(&mut self, key: &str, value: Value) {
        Arc::make_mut(&mut self.run).insert(key.to_string(), value);
    }
    fn remove(&mut self, key: &str) {
        Arc::make_mut(&mut self.run).shift_remove(key);
    }
    fn context(&self) -> Value {
        Value::from_object(self.clone())
    }
    /// Every key and value, run values winning (the `_run_behavior` result).
    fn to_value(&self) -> Value {
        let mut all: FastMap<String, Value> = (*self.base).clone();
        for (k, v) in self.run.iter() {
            all.insert(k.clone(), v.clone());
        }
        Value::from_pairs(all)
    }
}

impl Object for Dict {
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        self.get(key.as_str()?).cloned()
    }
    fn get_value_by_str(self: &Arc<Self>, key: &str) -> Option<Value> {
        self.get(key).cloned()
    }
    fn enumerate(self: &Arc<Self>) -> Enumerator {
        let keys = self
            .run
            .keys()
            .chain(self.base.keys().filter(|k| !self.run.contains_key(*k)));
        Enumerator::Values(keys.map(|k| Value::from(k.as_str())).collect())
    }
}

/// Internal dictionary keys that make up the webhook response (docs/semantics.md §10.2).
const KEY_BODY: &str = "_http_response_body";
const KEY_STATUS: &str = "_http_status";
const KEY_HEADERS: &str = "_http_response_headers";

/// Runs an `event.webhook.received` behavior for one request.
pub fn run_webhook(
    behavior: &CompiledBehavior,
    request: &WebhookRequest,
    host: &dyn Host,
    opts: &RunOptions,
) -> RunOutput {
    let normalized = request.normalize();
    let mut dict = Dict::new(behavior.base.clone());
    {
        let d = Arc::make_mut(&mut dict.run);
        d.insert("http_verb".into(), Value::from(normalized.verb.as_str()));
        d.insert("http_body".into(), Value::from(normalized.body.as_str()));
        d.insert("http_params".into(), normalized.params_value());
        d.insert("http_headers".into(), normalized.headers_value());
        d.insert("http_path".into(), Value::from(normalized.path.as_str()));
        d.insert(
            "http_client_ip".into(),
            Value::from(normalized.client_ip.as_str()),
        );
    }
    let mut run = Runner::new(host, *opts, Some(normalized));
    run.behavior(behavior, dict, 0).finish(run)
}

/// Runs an `event.macro.bot` behavior with variable inputs (by variable key, as text).
pub fn run_macro(
    behavior: &CompiledBehavior,
    inputs: &IndexMap<String, String>,
    host: &dyn Host,
    opts: &RunOptions,
) -> RunOutput {
    let mut run = Runner::new(host, *opts, None);
    let dict = run.macro_dict(behavior, inputs, 0);
    run.behavior(behavior, dict, 0).finish(run)
}

struct Finished {
    dict: Dict,
}

impl Finished {
    fn finish(self, run: Runner<'_>) -> RunOutput {
        let dict = self.dict;
        let (status, headers, body) = response_of(&dict);
        let vars = run
            .set_keys
            .iter()
            .filter(|k| ![KEY_BODY, KEY_STATUS, KEY_HEADERS].contains(&k.as_str()))
            .filter_map(|k| {
                dict.get(k)
                    .map(|v| (k.clone(), serde_json::to_value(v).unwrap_or_default()))
            })
            .collect();
        RunOutput {
            status,
            headers,
            body,
            vars,
            http_requests: run.http_requests,
            bot_keys: run.bot_keys,
            trace: run.trace,
            errors: run.errors,
            path: run.path,
            exit: run.exit.unwrap_or(ExitState::Complete),
        }
    }
}

/// Status, headers and body of a webhook response (docs/semantics.md §8, Decisions 6-7).
fn response_of(dict: &Dict) -> (u16, IndexMap<String, String>, String) {
    let body = dict.get(KEY_BODY).map(php_string).unwrap_or_default();
    let status = dict
        .get(KEY_STATUS)
        .map(|v| intval(&php_string(v)))
        .filter(|s| (100..=599).contains(s))
        .map(|s| s as u16)
        .unwrap_or(200);
    let mut headers = IndexMap::new();
    if let Some(map) = dict.get(KEY_HEADERS)
        && let Ok(keys) = map.try_iter()
    {
        for k in keys {
            let value = map.get_item(&k).map(|v| php_string(&v)).unwrap_or_default();
            let name = php_string(&k).trim().to_ascii_lowercase();
            if !name.is_empty() {
                headers.insert(name, value);
            }
        }
    }
    if !headers.contains_key("content-type") {
        let xml = body.starts_with("<?xml") || body.starts_with("<Response");
        let ct = if xml {
            "text/xml; charset=utf-8"
        } else {
            "text/html; charset=utf-8"
        };
        headers.insert("content-type".into(), ct.into());
    }
    (status, headers, body)
}

struct Runner<'h> {
    host: &'h dyn Host,
    opts: RunOptions,
    request: Option<NormalizedRequest>,
    trace: Vec<TraceEvent>,
    errors: Vec<RunError>,
    http_requests: Vec<HttpRequestRecord>,
    bot_keys: Vec<BotKeyWrite>,
    path: Vec<RecordId>,
    set_keys: indexmap::IndexSet<String, foldhash::fast::RandomState>,
    visited: usize,
    exit: Option<ExitState>,
    /// Behaviors on the current `_run_behavior` call stack.
    stack: Vec<RecordId>,
    subroutine_depth: usize,
}

/// What visiting a node did.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Visit {
    Passed,
    NotPassed,
}

impl<'h> Runner<'h> {
    fn new(host: &'h dyn Host, opts: RunOptions, request: Option<NormalizedRequest>) -> Runner<'h> {
        Runner {
            host,
            opts,
            request,
            trace: Vec::new(),
            errors: Vec::new(),
            http_requests: Vec::new(),
            bot_keys: Vec::new(),
            path: Vec::new(),
            set_keys: Default::default(),
            visited: 0,
            exit: None,
            stack: Vec::new(),
            subroutine_depth: 0,
        }
    }

    fn simulator(&self) -> bool {
        self.opts.mode == Mode::Simulator
    }

    fn error(&mut self, depth: usize, node_id: Option<RecordId>, message: String) {
        self.trace.push(TraceEvent::Error {
            depth,
            node_id,
            message: message.clone(),
        });
        self.errors.push(RunError { node_id, message });
    }

    fn abort(&mut self, depth: usize, node_id: Option<RecordId>, message: String) {
        self.error(depth, node_id, message);
        self.exit = Some(ExitState::Aborted);
    }

    fn stopped(&self) -> bool {
        self.exit.is_some()
    }

    /// The dictionary of a macro run: base placeholders plus coerced variables.
    fn macro_dict(
        &mut self,
        behavior: &CompiledBehavior,
        inputs: &IndexMap<String, String>,
        depth: usize,
    ) -> Dict {
        let mut dict = Dict::new(behavior.base.clone());
        for (key, raw) in inputs {
            match behavior.variables().get(key) {
                // Cerb swallows coercion errors (the variable stays unset); we record them.
                Some(def) => {
                    if let Err(e) = self.set_variable(&mut dict, def, raw) {
                        self.error(depth, None, e);
                    }
                }
                None => self.error(depth, None, format!("the behavior has no variable '{key}'")),
            }
        }
        dict
    }

    /// Coerces and sets a declared variable, with its `__context` companion (Cerb's
    /// `formatVariable` given the dictionary). A worker variable may name another `var_*`.
    fn set_variable(
        &mut self,
        dict: &mut Dict,
        def: &VariableDef,
        raw: &str,
    ) -> Result<(), String> {
        let referenced;
        let mut raw = raw;
        if def.kind == "W"
            && raw.starts_with("var_")
            && let Some(v) = dict.get(raw)
        {
            // An array value stands for its first key (Cerb: `key($value)`).
            referenced = match v.kind() {
                minijinja::value::ValueKind::Seq | minijinja::value::ValueKind::Map => v
                    .try_iter()
                    .ok()
                    .and_then(|mut keys| keys.next())
                    .map(|k| php_string(&k))
                    .unwrap_or_default(),
                _ => php_string(v),
            };
            raw = &referenced;
        }
        let value = coerce_variable(def, raw)?;
        if let Some((key, context)) = variable_companion(def) {
            self.set(dict, &key, context);
        }
        self.set(dict, &def.key, value);
        Ok(())
    }

    fn behavior(&mut self, behavior: &CompiledBehavior, mut dict: Dict, depth: usize) -> Finished {
        self.trace.push(TraceEvent::Behavior {
            depth,
            behavior_id: behavior.def.id,
            title: behavior.def.title.clone(),
            event_point: behavior.def.event.clone(),
        });
        self.stack.push(behavior.def.id);
        for &root in &behavior.roots {
            if self.stopped() {
                break;
            }
            self.visit(behavior, root, &mut dict, depth + 1);
        }
        self.stack.pop();
        Finished { dict }
    }

    fn visit(
        &mut self,
        b: &CompiledBehavior,
        index: usize,
        dict: &mut Dict,
        depth: usize,
    ) -> Visit {
        if self.stopped() {
            return Visit::NotPassed;
        }
        let node = &b.nodes[index];
        let skip = match node.status {
            NodeStatus::Disabled => Some("disabled"),
            NodeStatus::Simulator if !self.simulator() => Some("simulator only"),
            _ if node.kind == NodeKind::Subroutine => Some("subroutines run only when called"),
            _ => None,
        };
        if let Some(reason) = skip {
            self.trace.push(TraceEvent::Skip {
                depth,
                node_id: node.id,
                node_type: node.kind.as_str(),
                title: node.title.clone(),
                reason: reason.into(),
            });
            return Visit::NotPassed;
        }
        self.visited += 1;
        if self.visited > MAX_VISITED_NODES {
            self.abort(
                depth,
                Some(node.id),
                format!("run limit: more than {MAX_VISITED_NODES} nodes visited"),
            );
            return Visit::NotPassed;
        }
        self.trace.push(TraceEvent::Enter {
            depth,
            node_id: node.id,
            node_type: node.kind.as_str(),
            title: node.title.clone(),
        });
        match node.kind {
            NodeKind::Switch => {
                self.path.push(node.id);
                for &child in &node.children {
                    if self.stopped() {
                        break;
                    }
                    let is_action = b.nodes[child].kind == NodeKind::Action;
                    // First match: the first non-action child that passes ends the switch.
                    if self.visit(b, child, dict, depth + 1) == Visit::Passed && !is_action {
                        break;
                    }
                }
                Visit::Passed
            }
            NodeKind::Outcome => {
                let CBody::Outcome(groups) = &node.body else {
                    unreachable!()
                };
                let mut pass = true;
                for group in groups {
                    self.trace.push(TraceEvent::Group {
                        depth: depth + 1,
                        node_id: node.id,
                        any: group.any,
                    });
                    if !self.group(b, group.any, &group.conditions, node.id, dict, depth + 1) {
                        pass = false;
                        break;
                    }
                }
                self.trace.push(TraceEvent::Outcome {
                    depth: depth + 1,
                    node_id: node.id,
                    title: node.title.clone(),
                    used: pass,
                });
                if !pass {
                    return Visit::NotPassed;
                }
                self.path.push(node.id);
                self.children(b, &node.children, dict, depth + 1);
                Visit::Passed
            }
            NodeKind::Action => {
                self.path.push(node.id);
                self.actions(b, index, dict, depth + 1);
                Visit::Passed
            }
            NodeKind::Loop => {
                if self.run_loop(b, index, dict, depth + 1) {
                    Visit::Passed
                } else {
                    Visit::NotPassed
                }
            }
            NodeKind::Subroutine => unreachable!("skipped above"),
        }
    }

    fn children(
        &mut self,
        b: &CompiledBehavior,
        children: &[usize],
        dict: &mut Dict,
        depth: usize,
    ) {
        for &child in children {
            if self.stopped() {
                break;
            }
            self.visit(b, child, dict, depth);
        }
    }

    fn group(
        &mut self,
        b: &CompiledBehavior,
        any: bool,
        conditions: &[CCondition],
        node_id: RecordId,
        dict: &Dict,
        depth: usize,
    ) -> bool {
        if conditions.is_empty() {
            return true;
        }
        let mut last = false;
        for c in conditions {
            last = self.condition(b, c, node_id, dict, depth);
            if any && last {
                return true;
            }
            if !any && !last {
                return false;
            }
        }
        last
    }

    fn condition(
        &mut self,
        b: &CompiledBehavior,
        c: &CCondition,
        node_id: RecordId,
        dict: &Dict,
        depth: usize,
    ) -> bool {
        let req = self.request.as_ref();
        let (name, actual): (Option<String>, Option<String>) = match &c.subject {
            Subject::HttpParam(n) => (
                Some(n.clone()),
                match req {
                    Some(r) => r.param_text(n).map(str::to_string),
                    None => Some(String::new()),
                },
            ),
            Subject::HttpHeader(n) => (
                Some(n.clone()),
                Some(
                    req.map(|r| r.header_text(n).to_string())
                        .unwrap_or_default(),
                ),
            ),
            Subject::HttpVerb | Subject::HttpBody | Subject::HttpClientIp | Subject::HttpPath => {
                (None, as_condition_text(dict.get(&c.token)))
            }
            Subject::Var(key) => (None, as_condition_text(dict.get(key))),
            Subject::Script(tpl) => {
                let text = self
                    .render(b, tpl, dict, node_id, depth)
                    .map(|s| crate::values::php_trim(&s).to_string())
                    .unwrap_or_default();
                (None, Some(text))
            }
            Subject::Invalid => {
                self.trace.push(TraceEvent::Condition {
                    depth,
                    node_id,
                    condition: c.token.clone(),
                    name: None,
                    oper: c.oper.clone(),
                    value: c.value.clone(),
                    actual: Some(String::new()),
                    pass: false,
                });
                self.error(
                    depth,
                    Some(node_id),
                    format!("invalid condition `{}`", c.token),
                );
                return false;
            }
        };
        let pass = c.op.eval(actual.as_deref(), &c.value);
        self.trace.push(TraceEvent::Condition {
            depth,
            node_id,
            condition: c.token.clone(),
            name,
            oper: c.op.describe().to_string(),
            value: c.value.clone(),
            actual,
            pass,
        });
        pass
    }

    /// Renders a template field. `None` (with the error recorded) when it fails.
    fn render(
        &mut self,
        b: &CompiledBehavior,
        tpl: &Tpl,
        dict: &Dict,
        node_id: RecordId,
        depth: usize,
    ) -> Option<String> {
        match tpl {
            Tpl::Empty => Some(String::new()),
            Tpl::Literal(s) => Some(s.clone()),
            Tpl::Broken(e) => {
                self.error(depth, Some(node_id), e.clone());
                None
            }
            Tpl::Compiled(name) => {
                match switchboard_twig::render(&b.env, name, &dict.context(), &b.limits) {
                    Ok(s) => Some(s),
                    Err(e) => {
                        self.error(depth, Some(node_id), e.to_string());
                        None
                    }
                }
            }
        }
    }

    fn set(&mut self, dict: &mut Dict, key: &str, value: Value) {
        dict.set(key, value);
        self.set_keys.insert(key.to_string());
    }

    fn action_output(
        &mut self,
        depth: usize,
        node_id: RecordId,
        node_title: &str,
        action: &str,
        output: String,
    ) {
        self.trace.push(TraceEvent::Action {
            depth,
            node_id,
            node_title: node_title.to_string(),
            action: action.to_string(),
            output,
        });
    }

    fn actions(&mut self, b: &CompiledBehavior, index: usize, dict: &mut Dict, depth: usize) {
        let node = &b.nodes[index];
        let CBody::Actions(actions) = &node.body else {
            unreachable!()
        };
        for action in actions {
            if self.stopped() {
                return;
            }
            let (id, title) = (node.id, node.title.as_str());
            match &action.kind {
                ActionKind::SetBody(tpl) => {
                    if let Some(body) = self.render(b, tpl, dict, id, depth) {
                        self.action_output(
                            depth,
                            id,
                            title,
                            &action.name,
                            format!(">>> Setting HTTP response body:\n{body}"),
                        );
                        self.set(dict, KEY_BODY, Value::from(body));
                    }
                }
                ActionKind::SetHeader { name, value } => {
                    let (Some(n), Some(v)) = (
                        self.render(b, name, dict, id, depth),
                        self.render(b, value, dict, id, depth),
                    ) else {
                        continue;
                    };
                    self.action_output(
                        depth,
                        id,
                        title,
                        &action.name,
                        format!(">>> Setting HTTP response header:\n{n}: {v}"),
                    );
                    let mut headers: IndexMap<String, Value> = IndexMap::new();
                    if let Some(existing) = dict.get(KEY_HEADERS)
                        && let Ok(keys) = existing.try_iter()
                    {
                        for k in keys {
                            let val = existing.get_item(&k).unwrap_or_default();
                            headers.insert(php_string(&k), val);
                        }
                    }
                    headers.insert(n, Value::from(v));
                    self.set(dict, KEY_HEADERS, Value::from_pairs(headers));
                }
                ActionKind::SetStatus(tpl) => {
                    if let Some(s) = self.render(b, tpl, dict, id, depth) {
                        let code = intval(&s);
                        if !(100..=599).contains(&code) {
                            self.error(
                                depth,
                                Some(id),
                                format!("set_http_status: `{s}` is not an HTTP status (100-599)"),
                            );
                            continue;
                        }
                        self.action_output(
                            depth,
                            id,
                            title,
                            &action.name,
                            format!(">>> Setting HTTP response status:\n{s}"),
                        );
                        self.set(dict, KEY_STATUS, Value::from(s));
                    }
                }
                ActionKind::Http(http) => self.http(b, http, dict, id, title, &action.name, depth),
                ActionKind::SetCustomVar {
                    var,
                    value,
                    json,
                    simulator_only,
                } => {
                    if *simulator_only && !self.simulator() {
                        continue;
                    }
                    if var.is_empty() || matches!(value, Tpl::Empty) {
                        continue;
                    }
                    let Some(text) = self.render(b, value, dict, id, depth) else {
                        continue;
                    };
                    let v = if *json {
                        serde_json::from_str::<serde_json::Value>(&text)
                            .map(|j| crate::values::to_value(&j))
                            .unwrap_or(Value::from(()))
                    } else {
                        Value::from(text)
                    };
                    let shown = if *json {
                        pretty_json(&v)
                    } else {
                        php_string(&v)
                    };
                    self.action_output(
                        depth,
                        id,
                        title,
                        &action.name,
                        format!(">>> Setting placeholder {{{{{var}}}}}:\n{shown}"),
                    );
                    self.set(dict, var, v);
                }
                ActionKind::SetVar { var, value } => {
                    let Some(text) = self.render(b, value, dict, id, depth) else {
                        continue;
                    };
                    match b.variables().get(var) {
                        Some(def) => {
                            if let Err(e) = self.set_variable(dict, def, &text) {
                                self.error(depth, Some(id), e);
                                continue;
                            }
                        }
                        None => self.set(dict, var, Value::from(text)),
                    }
                    let shown = dict.get(var).map(php_string).unwrap_or_default();
                    self.action_output(
                        depth,
                        id,
                        title,
                        &action.name,
                        format!(">>> Setting variable {{{{{var}}}}}:\n{shown}"),
                    );
                }
                ActionKind::Exit { suspend } => {
                    let mode = if *suspend { "suspend" } else { "stop" };
                    self.trace.push(TraceEvent::Exit {
                        depth,
                        node_id: id,
                        mode: mode.into(),
                    });
                    self.exit = Some(if *suspend {
                        ExitState::Suspend
                    } else {
                        ExitState::Stop
                    });
                    return;
                }
                ActionKind::RunSubroutine(name) => {
                    let Some(&target) = b.subroutines.get(name) else {
                        self.error(
                            depth,
                            Some(id),
                            format!("_run_subroutine: no subroutine titled '{name}'"),
                        );
                        continue;
                    };
                    if self.subroutine_depth >= MAX_SUBROUTINE_DEPTH {
                        self.abort(
                            depth,
                            Some(id),
                            format!(
                                "run limit: subroutines nested deeper than {MAX_SUBROUTINE_DEPTH}"
                            ),
                        );
                        return;
                    }
                    let sub = &b.nodes[target];
                    // A disabled (or, in a real run, simulator-only) subroutine is not entered,
                    // and the jump still ends this action node, as in Cerb.
                    let skip = match sub.status {
                        NodeStatus::Disabled => Some("disabled"),
                        NodeStatus::Simulator if !self.simulator() => Some("simulator only"),
                        _ => None,
                    };
                    if let Some(reason) = skip {
                        self.trace.push(TraceEvent::Skip {
                            depth,
                            node_id: sub.id,
                            node_type: sub.kind.as_str(),
                            title: sub.title.clone(),
                            reason: reason.into(),
                        });
                        return;
                    }
                    self.trace.push(TraceEvent::Enter {
                        depth,
                        node_id: sub.id,
                        node_type: sub.kind.as_str(),
                        title: sub.title.clone(),
                    });
                    self.path.push(sub.id);
                    self.subroutine_depth += 1;
                    self.children(b, &sub.children, dict, depth + 1);
                    self.subroutine_depth -= 1;
                    // The rest of this action node is skipped (docs/semantics.md §2.3).
                    return;
                }
                ActionKind::RunBehavior {
                    behavior_id,
                    var,
                    inputs,
                    run_in_simulator,
                } => {
                    self.run_behavior(
                        b,
                        dict,
                        id,
                        title,
                        &action.name,
                        depth,
                        behavior_id,
                        var,
                        inputs,
                        *run_in_simulator,
                    );
                }
                ActionKind::GetKey { key, var } => {
                    self.get_key(b, dict, id, title, &action.name, depth, key, var)
                }
                ActionKind::SetKey {
                    key_given,
                    key,
                    value,
                    expires_at,
                } => self.set_key(
                    b,
                    dict,
                    id,
                    title,
                    &action.name,
                    depth,
                    *key_given,
                    [key, value, expires_at],
                ),
                ActionKind::Unsupported => {
                    self.error(
                        depth,
                        Some(id),
                        format!("unsupported action `{}`", action.name),
                    );
                }
            }
        }
    }

    /// `_get_key` (docs/semantics.md §4.5): Cerb 9.6 `DevblocksEventHelper::runActionGetKey`
    /// and `simulateActionGetKey` (`libs/devblocks/api/services/event/event_helper.php`), which
    /// run in the simulator too. A missing or expired key sets the placeholder to `false`
    /// (`DAO_BotDatastore::get` returns the empty result set's `false`).
    #[allow(clippy::too_many_arguments)]
    fn get_key(
        &mut self,
        b: &CompiledBehavior,
        dict: &mut Dict,
        id: RecordId,
        title: &str,
        action: &str,
        depth: usize,
        key: &Tpl,
        var: &str,
    ) {
        let Some(key) = self.render(b, key, dict, id, depth) else {
            return;
        };
        let value = if php_empty(&key) {
            None
        } else if key.chars().count() > MAX_KEY_CHARS {
            self.error(
                depth,
                Some(id),
                format!("_get_key: the key is longer than {MAX_KEY_CHARS} characters"),
            );
            return;
        } else {
            match self.host.bot_key_get(b.bot.id, &key) {
                Ok(v) => v,
                Err(e) => {
                    self.error(depth, Some(id), format!("_get_key: {e}"));
                    return;
                }
            }
        };
        self.action_output(
            depth,
            id,
            title,
            action,
            format!(
                ">> Getting value for persistent key: {key}\n\n{}\n",
                value.as_deref().unwrap_or("")
            ),
        );
        if !var.is_empty() {
            let v = value.map(Value::from).unwrap_or(Value::from(false));
            self.set(dict, var, v);
        }
    }

    /// `_set_key` (docs/semantics.md §4.5): Cerb 9.6 `DevblocksEventHelper::runActionSetKey`
    /// and `simulateActionSetKey` (`libs/devblocks/api/services/event/event_helper.php`), which
    /// run in the simulator too. `key`, `value` and `expires_at` are rendered; `expires_at`
    /// goes through `strtotime` (empty or not understood: never expires).
    #[allow(clippy::too_many_arguments)]
    fn set_key(
        &mut self,
        b: &CompiledBehavior,
        dict: &mut Dict,
        id: RecordId,
        title: &str,
        action: &str,
        depth: usize,
        key_given: bool,
        [key, value, expires_at]: [&Tpl; 3],
    ) {
        let (Some(key), Some(value), Some(expires_text)) = (
            self.render(b, key, dict, id, depth),
            self.render(b, value, dict, id, depth),
            self.render(b, expires_at, dict, id, depth),
        ) else {
            return;
        };
        let now = self.host.now();
        let expires_at = if expires_text.trim().is_empty() {
            0
        } else {
            match crate::strtotime::strtotime(&expires_text, now) {
                // Cerb's column is unsigned: a date before 1970 has expired too.
                Some(t) => t.max(1),
                None => {
                    self.error(
                        depth,
                        Some(id),
                        format!(
                            "_set_key: expires_at `{expires_text}` is not a date Switchboard understands; the key never expires (docs/semantics.md §4.5)"
                        ),
                    );
                    0
                }
            }
        };
        let expires_shown = if expires_at == 0 {
            "Never".to_string()
        } else {
            time::OffsetDateTime::from_unix_timestamp(expires_at)
                .ok()
                .and_then(|t| {
                    t.format(&time::format_description::well_known::Rfc2822)
                        .ok()
                })
                .unwrap_or_else(|| expires_at.to_string())
        };
        self.action_output(
            depth,
            id,
            title,
            action,
            format!(
                ">> Setting value for persistent key: {key}\nExpires: {expires_shown}\n\n{value}\n"
            ),
        );
        if !key_given || php_empty(&key) {
            return;
        }
        if key.chars().count() > MAX_KEY_CHARS {
            self.error(
                depth,
                Some(id),
                format!("_set_key: the key is longer than {MAX_KEY_CHARS} characters"),
            );
            return;
        }
        match self.host.bot_key_set(b.bot.id, &key, &value, expires_at) {
            Ok(()) => self.bot_keys.push(BotKeyWrite {
                bot_id: b.bot.id,
                key,
                value,
                expires_at: (expires_at != 0).then_some(expires_at),
            }),
            Err(e) => self.error(depth, Some(id), format!("_set_key: {e}")),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn run_behavior(
        &mut self,
        b: &CompiledBehavior,
        dict: &mut Dict,
        id: RecordId,
        title: &str,
        action: &str,
        depth: usize,
        behavior_id: &Tpl,
        var: &str,
        inputs: &[(String, Tpl)],
        run_in_simulator: bool,
    ) {
        let Some(target_id) = self
            .render(b, behavior_id, dict, id, depth)
            .map(|s| intval(&s))
        else {
            return;
        };
        if self.simulator() && !run_in_simulator {
            self.action_output(
                depth,
                id,
                title,
                action,
                format!(
                    ">>> Would run behavior {target_id} (not configured to run in the simulator)"
                ),
            );
            return;
        }
        if self.stack.contains(&target_id) {
            self.error(
                depth,
                Some(id),
                format!("_run_behavior: behavior {target_id} is already running (no recursion)"),
            );
            return;
        }
        // The called behavior would run at nesting depth `stack.len()` (the top-level behavior
        // is depth 0); past the limit the whole run stops (docs/semantics.md, Decision 10).
        if self.stack.len() > MAX_BEHAVIOR_DEPTH {
            self.abort(
                depth,
                Some(id),
                format!("run limit: _run_behavior nested deeper than {MAX_BEHAVIOR_DEPTH}"),
            );
            return;
        }
        let Some(target) = self.host.behavior(target_id) else {
            self.error(
                depth,
                Some(id),
                format!("_run_behavior: behavior {target_id} not found"),
            );
            return;
        };
        if target.def.is_disabled || target.bot.is_disabled {
            self.error(
                depth,
                Some(id),
                format!("_run_behavior: behavior {target_id} or its bot is disabled"),
            );
            return;
        }
        let mut rendered = IndexMap::new();
        for (key, tpl) in inputs {
            if let Some(v) = self.render(b, tpl, dict, id, depth) {
                rendered.insert(key.clone(), v);
            }
        }
        let outer_keys = std::mem::take(&mut self.set_keys);
        let target_dict = self.macro_dict(&target, &rendered, depth + 1);
        let finished = self.behavior(&target, target_dict, depth + 1);
        self.set_keys = outer_keys;
        // A nested `_exit` ends the nested behavior only.
        if matches!(self.exit, Some(ExitState::Stop | ExitState::Suspend)) {
            self.exit = None;
        }
        self.action_output(
            depth,
            id,
            title,
            action,
            format!(">>> Ran behavior {target_id}; results saved to {{{{{var}}}}}"),
        );
        if !var.is_empty() {
            let result = finished.dict.to_value();
            self.set(dict, var, result);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn http(
        &mut self,
        b: &CompiledBehavior,
        http: &HttpAction,
        dict: &mut Dict,
        id: RecordId,
        title: &str,
        action: &str,
        depth: usize,
    ) {
        let Some(url) = self.render(b, &http.url, dict, id, depth) else {
            return;
        };
        let url = url.trim().to_string();
        if http.verb.is_empty() || url.is_empty() || http.placeholder.is_empty() {
            self.action_output(
                depth,
                id,
                title,
                action,
                ">>> HTTP request skipped: verb, URL or response placeholder is empty".into(),
            );
            return;
        }
        let headers_text = self
            .render(b, &http.headers, dict, id, depth)
            .unwrap_or_default();
        let body = self
            .render(b, &http.body, dict, id, depth)
            .unwrap_or_default();
        let mut headers = parse_header_lines(&headers_text);
        if matches!(http.verb.as_str(), "POST" | "PUT" | "PATCH")
            && !headers
                .iter()
                .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
        {
            headers.push((
                "Content-Type".into(),
                "application/x-www-form-urlencoded".into(),
            ));
        }
        let mut text = format!(">>> Sending HTTP request:\n{} {url}\n", http.verb);
        for (k, v) in &headers {
            text.push_str(&format!("{k}: {v}\n"));
        }
        if !body.is_empty() {
            text.push('\n');
            text.push_str(&body);
            text.push('\n');
        }

        // docs/semantics.md, Decision 11: credentials only for the account's allowed hosts; else
        // `false`.
        let account_id = match &http.auth {
            AuthSpec::None => 0,
            AuthSpec::Account(id) => *id,
            AuthSpec::Placeholder(tpl) => self
                .render(b, tpl, dict, id, depth)
                .map(|s| intval(&s))
                .unwrap_or(0),
        };
        let mut account = None;
        if account_id != 0 {
            match self.host.connected_account(account_id) {
                Some(acc) if host_allowed(&url, &acc.allowed_hosts) => {
                    text.push_str(&format!(">>> Authenticating with {}\n", acc.name));
                    account = Some(acc);
                }
                Some(acc) => {
                    text.push_str(&format!(
                        "[ERROR] The connected account '{}' may not be used with this host.\n>>> Saving `false` to {{{{{}}}}}\n",
                        acc.name, http.placeholder
                    ));
                    self.action_output(depth, id, title, action, text);
                    self.error(depth, Some(id), acc.refusal(&url));
                    self.set(dict, &http.placeholder, Value::from(false));
                    return;
                }
                None => {
                    text.push_str(&format!(
                        "[ERROR] This behavior is attempting to use an unknown connected account ({account_id}).\n>>> Saving `false` to {{{{{}}}}}\n",
                        http.placeholder
                    ));
                    self.action_output(depth, id, title, action, text);
                    self.error(
                        depth,
                        Some(id),
                        format!("connected account {account_id} not found"),
                    );
                    self.set(dict, &http.placeholder, Value::from(false));
                    return;
                }
            }
        }
        let request = HttpRequest {
            method: http.verb.clone(),
            url: url.clone(),
            headers: headers.clone(),
            body: body.clone(),
            account: account.as_ref().map(|a| a.id),
            ignore_ssl_validation: http.ignore_ssl_validation,
        };
        let send = !self.simulator() || (self.opts.simulator_http && http.run_in_simulator);
        self.http_requests.push(HttpRequestRecord {
            method: request.method.clone(),
            url: request.url.clone(),
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
                .collect(),
            body: request.body.clone(),
            sent: send,
            authenticated_with: account.as_ref().map(|a| a.name.clone()),
        });
        text.push_str(&format!(
            ">>> Saving response to {{{{{}}}}}\n",
            http.placeholder
        ));
        if !send {
            let note = if !http.run_in_simulator {
                ">>> NOTE: This HTTP request is not configured to run in the simulator."
            } else {
                ">>> NOTE: HTTP requests are not sent by the simulator without --run-http."
            };
            text.push_str(note);
            self.action_output(depth, id, title, action, text);
            return;
        }
        let outcome = self.host.http_request(&request);
        let placeholder = response_placeholder(&outcome, &request.body, http.raw_response_body);
        match &outcome {
            HttpOutcome::Response(r) => {
                text.push_str(&format!(
                    ">>> Response info: HTTP {} from {}\n",
                    r.status, r.url
                ));
                text.push_str(">>> Response body:\n");
                text.push_str(&String::from_utf8_lossy(&r.body));
            }
            HttpOutcome::Error(e) => {
                text.push_str(&format!(">>> Error in response:\n{e}"));
                self.error(
                    depth,
                    Some(id),
                    format!("HTTP request to {url} failed: {e}"),
                );
            }
            HttpOutcome::CredentialsRefused(e) => {
                text.push_str(&format!(
                    "[ERROR] {e}\n>>> Saving `false` to {{{{{}}}}}\n",
                    http.placeholder
                ));
                self.error(
                    depth,
                    Some(id),
                    format!("HTTP request to {url} refused: {e}"),
                );
            }
        }
        self.action_output(depth, id, title, action, text);
        self.set(dict, &http.placeholder, placeholder);
    }

    /// Runs a loop node; `false` when it does not pass (its `foreach_json` is not a non-empty
    /// array or object, or `as_placeholder` is empty), so a switch goes on to its next child.
    /// A loop node as Cerb 9.6 runs it (`_recurseRunTree` in `trigger_event.php`): the decoded
    /// items go into the dictionary as `<as>__stack` and `<as>__counter` is 0; every iteration
    /// reads the stack **from the dictionary**, so a behavior that empties or replaces it (Cerb's
    /// "break out of a loop" idiom) changes what follows. Returns whether the loop passed.
    fn run_loop(
        &mut self,
        b: &CompiledBehavior,
        index: usize,
        dict: &mut Dict,
        depth: usize,
    ) -> bool {
        let node = &b.nodes[index];
        let CBody::Loop {
            foreach,
            as_placeholder,
        } = &node.body
        else {
            unreachable!()
        };
        if as_placeholder.is_empty() {
            self.error(depth, Some(node.id), "loop: as_placeholder is empty".into());
            return false;
        }
        let keys = LoopKeys::new(as_placeholder);
        let passed = match self.render(b, foreach, dict, node.id, depth) {
            None => false,
            Some(text) => match serde_json::from_str::<serde_json::Value>(&text) {
                Ok(json @ serde_json::Value::Array(_))
                | Ok(json @ serde_json::Value::Object(_))
                    if truthy_json(&json) =>
                {
                    self.set(dict, &keys.stack, crate::values::to_value(&json));
                    self.set(dict, &keys.counter, Value::from(0));
                    true
                }
                _ => {
                    self.error(
                        depth,
                        Some(node.id),
                        "loop: foreach_json is not a non-empty JSON array".into(),
                    );
                    false
                }
            },
        };
        if !passed {
            // Cerb still goes through whatever `<as>__stack` holds (nothing, unless an enclosing
            // loop uses the same placeholder), without running the children, then unsets.
            self.drain_loop(&keys, dict);
            return false;
        }
        self.path.push(node.id);
        let mut iterations = 0;
        loop {
            if self.stopped() {
                break;
            }
            if iterations >= MAX_LOOP_ITERATIONS && peek_stack(&keys, dict).is_some() {
                self.abort(
                    depth,
                    Some(node.id),
                    format!("run limit: more than {MAX_LOOP_ITERATIONS} loop iterations"),
                );
                return true;
            }
            let Some(counter) = self.next_iteration(&keys, dict) else {
                break;
            };
            iterations += 1;
            self.trace.push(TraceEvent::Iteration {
                depth,
                node_id: node.id,
                key: dict.get(&keys.key).map(php_string).unwrap_or_default(),
                counter: usize::try_from(counter).unwrap_or(0),
            });
            for &child in &node.children {
                if self.stopped() {
                    break;
                }
                self.visit(b, child, dict, depth + 1);
                // An `_exit` in an action directly under the loop returns at once in Cerb: the
                // item, its key and the stack stay in the dictionary.
                if self.stopped() && b.nodes[child].kind == NodeKind::Action {
                    return true;
                }
            }
        }
        if self.exit == Some(ExitState::Aborted) {
            return true;
        }
        // The stack is empty, or an `_exit` further down ended the run: Cerb then goes on taking
        // items without visiting anything until the stack is empty, and unsets.
        self.drain_loop(&keys, dict);
        true
    }

    /// Takes the next item off `<as>__stack` into `<as>`, `<as>__key` and `<as>__counter`
    /// (Cerb: `key()`, `current()`, `intval(counter) + 1`, then `array_shift` unless the item is
    /// the string `*`). `None`, with the three unset, when the stack is not a non-empty array.
    fn next_iteration(&mut self, keys: &LoopKeys, dict: &mut Dict) -> Option<i64> {
        let Some((stack, key, item)) = peek_stack(keys, dict) else {
            dict.remove(&keys.item);
            dict.remove(&keys.key);
            dict.remove(&keys.stack);
            return None;
        };
        let counter = dict.get(&keys.counter).map(php_intval).unwrap_or(0) + 1;
        let star = item.as_str() == Some("*");
        self.set(dict, &keys.key, key.to_value());
        self.set(dict, &keys.item, item);
        self.set(dict, &keys.counter, Value::from(counter));
        if !star {
            self.set(dict, &keys.stack, Value::from_object(stack.shifted()));
        }
        Some(counter)
    }

    /// Cerb's loop after the run was exited from below an action: items are taken off without
    /// visiting anything until the stack is empty (then `<as>`, `<as>__key` and `<as>__stack` are
    /// unset). A `*` item would make Cerb spin for ever; here the loop is left as it is then.
    fn drain_loop(&mut self, keys: &LoopKeys, dict: &mut Dict) {
        loop {
            if let Some((_, _, item)) = peek_stack(keys, dict)
                && item.as_str() == Some("*")
            {
                return;
            }
            if self.next_iteration(keys, dict).is_none() {
                return;
            }
        }
    }
}

/// The stack of a loop when it is a non-empty array, with its first key and item.
fn peek_stack(keys: &LoopKeys, dict: &Dict) -> Option<(Arc<LoopStack>, PhpKey, Value)> {
    let stack = dict.get(&keys.stack).and_then(LoopStack::of)?;
    let (key, item) = stack.first()?;
    Some((stack, key, item))
}

/// The dictionary keys of one loop (`<as>`, `<as>__key`, `<as>__stack`, `<as>__counter`).
struct LoopKeys {
    item: String,
    key: String,
    stack: String,
    counter: String,
}

impl LoopKeys {
    fn new(as_placeholder: &str) -> LoopKeys {
        LoopKeys {
            item: as_placeholder.to_string(),
            key: format!("{as_placeholder}__key"),
            stack: format!("{as_placeholder}__stack"),
            counter: format!("{as_placeholder}__counter"),
        }
    }
}

/// PHP's `intval` of a dictionary value (arrays: 1 when non-empty).
fn php_intval(v: &Value) -> i64 {
    match v.kind() {
        minijinja::value::ValueKind::Number => {
            i64::try_from(v.clone()).unwrap_or_else(|_| intval(&php_string(v)))
        }
        minijinja::value::ValueKind::Seq | minijinja::value::ValueKind::Map => i64::from(truthy(v)),
        _ => intval(&php_string(v)),
    }
}

/// Cerb's header text: CRLF folded, split on lines, trimmed, blank lines dropped, split at the
/// first `:`; a line without `:` is a header with an empty value.
pub fn parse_header_lines(text: &str) -> Vec<(String, String)> {
    text.replace("\r\n", "\n")
        .split(['\n', '\r'])
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|l| match l.split_once(':') {
            Some((k, v)) => (k.trim().to_string(), v.trim().to_string()),
            None => (l.to_string(), String::new()),
        })
        .collect()
}

/// Whether `url`'s host equals one of `allowed` (case-insensitive; scheme, port, path ignored).
fn host_allowed(url: &str, allowed: &[String]) -> bool {
    let Some(host) = url_host(url) else {
        return false;
    };
    allowed.iter().any(|a| a.eq_ignore_ascii_case(&host))
}

/// The host of an absolute http(s) URL, without credentials or port.
pub fn url_host(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split(['/', '?', '#']).next()?;
    let hostport = authority
        .rsplit_once('@')
        .map(|(_, h)| h)
        .unwrap_or(authority);
    let host = if let Some(v6) = hostport.strip_prefix('[') {
        v6.split(']').next()?
    } else {
        hostport.split(':').next()?
    };
    (!host.is_empty()).then(|| host.to_ascii_lowercase())
}

/// The response placeholder map of `core.va.action.http_request` (docs/semantics.md §4.2).
fn response_placeholder(outcome: &HttpOutcome, request_body: &str, raw: bool) -> Value {
    match outcome {
        HttpOutcome::CredentialsRefused(_) => Value::from(false),
        HttpOutcome::Error(e) => Value::from_pairs([
            ("content_type".to_string(), Value::from(())),
            (
                "headers".to_string(),
                Value::from_pairs(std::iter::empty::<(String, Value)>()),
            ),
            // Cerb's quirk: on transport failure `body` is the request body.
            ("body".to_string(), Value::from(request_body)),
            (
                "info".to_string(),
                Value::from_pairs(std::iter::empty::<(String, Value)>()),
            ),
            ("error".to_string(), Value::from(e.as_str())),
        ]),
        HttpOutcome::Response(r) => {
            let mut headers: IndexMap<String, String> = IndexMap::new();
            for (k, v) in &r.headers {
                crate::request::append_header(&mut headers, k.to_ascii_lowercase(), v);
            }
            let content_type = headers.get("content-type").map(|ct| {
                ct.split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase()
            });
            let text = String::from_utf8_lossy(&r.body).into_owned();
            let body = if raw {
                Value::from(text)
            } else {
                match content_type.as_deref() {
                    Some("application/json" | "text/javascript") => {
                        serde_json::from_str::<serde_json::Value>(&text)
                            .map(|j| crate::values::to_value(&j))
                            .unwrap_or(Value::from(()))
                    }
                    Some(
                        "application/octet-stream"
                        | "application/pdf"
                        | "application/zip"
                        | "audio/mpeg"
                        | "audio/ogg"
                        | "image/gif"
                        | "image/jpeg"
                        | "image/jpg"
                        | "image/png",
                    ) => Value::from(base64_encode(&r.body)),
                    _ => Value::from(text),
                }
            };
            Value::from_pairs([
                (
                    "content_type".to_string(),
                    content_type.map(Value::from).unwrap_or(Value::from(())),
                ),
                (
                    "headers".to_string(),
                    Value::from_pairs(headers.into_iter().map(|(k, v)| (k, Value::from(v)))),
                ),
                ("body".to_string(), body),
                (
                    "info".to_string(),
                    Value::from_pairs([
                        ("url".to_string(), Value::from(r.url.as_str())),
                        ("http_code".to_string(), Value::from(r.status)),
                    ]),
                ),
                ("error".to_string(), Value::from(())),
            ])
        }
    }
}

/// JSON as Cerb's simulator shows it: pretty-printed with a 4-space indent (slashes are not
/// escaped, as with PHP's `JSON_UNESCAPED_SLASHES`).
fn pretty_json(v: &Value) -> String {
    let mut out = Vec::new();
    let formatter = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(&mut out, formatter);
    match v.serialize(&mut ser) {
        Ok(()) => String::from_utf8(out).unwrap_or_default(),
        Err(_) => String::new(),
    }
}

fn base64_encode(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = (chunk[0] as u32) << 16
            | (*chunk.get(1).unwrap_or(&0) as u32) << 8
            | *chunk.get(2).unwrap_or(&0) as u32;
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Coerces a variable input by its type (docs/semantics.md §6.3, Cerb's `formatVariable`).
///
/// Records are not loaded: a `ctx_*` list keeps the ids it names, `W` (worker) keeps the integer
/// (Switchboard has no workers to check it against). The `<key>__context` companion of an `L`
/// variable whose key ends in `_id` is [`variable_companion`].
pub fn coerce_variable(def: &VariableDef, raw: &str) -> Result<Value, String> {
    let key = &def.key;
    match def.kind.as_str() {
        "S" | "T" | "U" => Ok(Value::from(raw)),
        "D" => {
            // Cerb splits the options on line breaks and trims them, keeping blank lines.
            let options: Vec<&str> = def
                .params
                .get("options")
                .and_then(|o| o.as_str())
                .map(|o| o.split("\r\n").flat_map(|l| l.split(['\r', '\n'])))
                .map(|lines| lines.map(str::trim).collect())
                .unwrap_or_default();
            // PHP's `in_array` compares loosely: numeric strings as numbers (`"1.0"` is `"1"`).
            let loose_eq = |option: &&str| {
                *option == raw
                    || (crate::values::is_numeric(option)
                        && crate::values::is_numeric(raw)
                        && option.trim().parse::<f64>().ok() == raw.trim().parse::<f64>().ok())
            };
            if options.iter().any(loose_eq) {
                Ok(Value::from(raw))
            } else {
                Err(format!(
                    "The picklist variable '{key}' has no option '{raw}'. Valid options are: {}",
                    options.join(", ")
                ))
            }
        }
        "C" => Ok(Value::from(if truthy(&Value::from(raw)) { 1 } else { 0 })),
        "N" | "O" | "Y" | "L" | "W" => Ok(Value::from(intval(raw))),
        "E" => {
            // A numeric value is kept as given; anything else goes through `strtotime`, whose
            // `false` (and, by Cerb's loose comparison, a result of 0) is an error.
            if crate::values::is_numeric(raw) {
                return Ok(Value::from(raw));
            }
            match strtotime(raw) {
                Some(ts) if ts != 0 => Ok(Value::from(ts)),
                _ => Err(format!("The date variable '{key}' has an invalid value.")),
            }
        }
        "M" | "X" | "F" | "I" => Ok(Value::from(raw)),
        k if k.starts_with("ctx_") => {
            let ids: Option<Vec<i64>> = match serde_json::from_str::<serde_json::Value>(raw) {
                Ok(serde_json::Value::Array(a)) => Some(a.iter().filter_map(record_id).collect()),
                Ok(serde_json::Value::Object(o)) => {
                    Some(o.values().filter_map(record_id).collect())
                }
                _ => None,
            };
            ids.map(Value::from)
                .ok_or_else(|| format!("The list variable '{key}' must be set to an array of IDs."))
        }
        _ => Ok(Value::from(raw)),
    }
}

/// The extra placeholder Cerb sets with a variable: `<key minus _id>__context` = the context of
/// an `L` (link) variable whose key ends in `_id`.
pub fn variable_companion(def: &VariableDef) -> Option<(String, Value)> {
    let context = def.params.get("context").and_then(|c| c.as_str())?;
    let stem = def.key.strip_suffix("_id")?;
    (def.kind == "L" && !context.is_empty())
        .then(|| (format!("{stem}__context"), Value::from(context)))
}

/// An element of a `ctx_*` list as a record id; what cannot name a record is dropped (Cerb
/// drops the ids it cannot load).
fn record_id(v: &serde_json::Value) -> Option<i64> {
    match v {
        serde_json::Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
        serde_json::Value::String(s) if crate::values::is_numeric(s) => Some(intval(s)),
        _ => None,
    }
}

/// PHP's `strtotime` as far as the template dialect's `date` filter parses dates (`now`,
/// `@<timestamp>`, ISO-8601 dates and times with an optional offset; UTC otherwise).
fn strtotime(s: &str) -> Option<i64> {
    use std::sync::OnceLock;
    use switchboard_twig::{Dialect, Limits};
    static ENV: OnceLock<minijinja::Environment<'static>> = OnceLock::new();
    let limits = Limits::default();
    let env = ENV.get_or_init(|| {
        let mut env = switchboard_twig::environment(Dialect::Runtime, &limits);
        switchboard_twig::add_template(&mut env, "strtotime", "{{ v|date('U') }}")
            .expect("a static template compiles");
        env
    });
    if s.trim().is_empty() {
        // `strtotime("")` is false, while the `date` filter reads an empty string as now.
        return None;
    }
    let ctx = Value::from_pairs([("v", Value::from(s))]);
    switchboard_twig::render(env, "strtotime", &ctx, &limits)
        .ok()?
        .trim()
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_lines_like_cerb() {
        assert_eq!(
            parse_header_lines("X-A: 1\r\n\r\n  User-Agent : bot:1 \nNoColon\n"),
            vec![
                ("X-A".to_string(), "1".to_string()),
                ("User-Agent".to_string(), "bot:1".to_string()),
                ("NoColon".to_string(), String::new())
            ]
        );
    }

    #[test]
    fn hosts() {
        assert_eq!(
            url_host("https://Lookups.Twilio.com/v1/x?y"),
            Some("lookups.twilio.com".into())
        );
        assert_eq!(
            url_host("https://u:p@api.twilio.com:443/x"),
            Some("api.twilio.com".into())
        );
        assert_eq!(url_host("http://[::1]:8080/"), Some("::1".into()));
        assert_eq!(url_host("not a url"), None);
        assert!(host_allowed(
            "https://api.twilio.com/2010",
            &["api.twilio.com".into()]
        ));
        assert!(!host_allowed(
            "https://api.twilio.com.evil.test/",
            &["api.twilio.com".into()]
        ));
    }

    #[test]
    fn base64() {
        assert_eq!(base64_encode(b"Hello"), "SGVsbG8=");
        assert_eq!(base64_encode(b"Hi!"), "SGkh");
        assert_eq!(base64_encode(b""), "");
    }
}
