//! `switchboard simulate`: run one behavior of a package file with no server at all, the way
//! Cerb's simulator does, and print its trace and result (text or one JSON object).

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::{Context, bail};
use indexmap::IndexMap;
use serde::Serialize;
use switchboard_engine::{
    BotInfo, BotKeyWrite, CompiledBehavior, ConnectedAccount, Host, HttpOutcome, HttpRequest,
    HttpResponse, MemoryBotKeys, RunOptions, RunOutput, WebhookRequest, run_macro, run_webhook,
};
use switchboard_package::{EVENT_MACRO, EVENT_WEBHOOK, ImportPlan, Package, PromptKind, RecordId};

use crate::args::KeyValue;

/// Hosts a Twilio connected account may authenticate to (docs/semantics.md, Decision 11).
pub const TWILIO_HOSTS: &[&str] = &["api.twilio.com", "lookups.twilio.com"];

/// What to simulate.
#[derive(Debug, Clone, Default)]
pub struct SimulateRequest {
    pub package_json: String,
    pub behavior_uid: String,
    pub prompts: Vec<KeyValue>,
    pub params: Vec<KeyValue>,
    pub headers: Vec<KeyValue>,
    pub method: Option<String>,
    pub body: Option<String>,
    pub vars: Vec<KeyValue>,
    pub run_http: bool,
}

/// A simulation's result plus the notes worth telling the operator (sample prompt values).
pub struct Simulation {
    pub output: RunOutput,
    pub notes: Vec<String>,
    /// The behavior's event (`event.webhook.received` or `event.macro.bot`).
    pub event: String,
}

/// The `--json` document.
#[derive(Serialize)]
pub struct JsonReport<'a> {
    pub status: u16,
    pub headers: &'a IndexMap<String, String>,
    pub body: &'a str,
    pub vars: &'a IndexMap<String, serde_json::Value>,
    pub http_requests: &'a [switchboard_engine::HttpRequestRecord],
    /// The bot keys the run set (`_set_key`; kept in memory, gone when the simulation ends).
    pub bot_keys: &'a [BotKeyWrite],
    pub trace: &'a [switchboard_engine::TraceEvent],
    pub errors: &'a [switchboard_engine::RunError],
}

impl<'a> From<&'a RunOutput> for JsonReport<'a> {
    fn from(o: &'a RunOutput) -> Self {
        JsonReport {
            status: o.status,
            headers: &o.headers,
            body: &o.body,
            vars: &o.vars,
            http_requests: &o.http_requests,
            bot_keys: &o.bot_keys,
            trace: &o.trace,
            errors: &o.errors,
        }
    }
}

/// A sample value for a prompt the operator did not answer: harmless and recognisable.
fn sample_answer(key: &str, kind: &PromptKind, next_account: &mut RecordId) -> serde_json::Value {
    let k = key.to_ascii_lowercase();
    match kind {
        PromptKind::Chooser { .. } => {
            *next_account += 1;
            serde_json::Value::String(next_account.to_string())
        }
        PromptKind::Picklist { options } => {
            serde_json::Value::String(options.first().cloned().unwrap_or_default())
        }
        _ if k.ends_with("sid") => serde_json::Value::String(format!("AC{}", "0".repeat(32))),
        _ if k.contains("from")
            || k.contains("phone")
            || k.contains("number")
            || k.ends_with("_to") =>
        {
            // Twilio's documented magic test number: valid, never delivered.
            serde_json::Value::String("+15005550006".into())
        }
        _ => serde_json::Value::String(format!("sample-{}", key.replace('_', "-"))),
    }
}

/// Runs the simulation. Errors are operator mistakes (bad file, unknown uid, invalid package).
pub fn simulate(req: &SimulateRequest) -> anyhow::Result<Simulation> {
    let package = Package::parse(&req.package_json).map_err(crate::refusal::invalid_package)?;
    let mut notes = Vec::new();
    let mut answers = crate::args::prompt_answers(&package, &req.prompts)?;
    // Chooser prompts for connected accounts become sample accounts with these ids.
    let mut account_ids = Vec::new();
    let mut next_account: RecordId = 0;
    for prompt in package.prompts() {
        let given = answers.get(&prompt.key).cloned();
        let value = match given {
            Some(v) => v,
            None => {
                let v = sample_answer(&prompt.key, &prompt.kind, &mut next_account);
                notes.push(format!(
                    "prompt '{}' ({}) not given: using sample value {}",
                    prompt.label, prompt.key, v
                ));
                answers.insert(prompt.key.clone(), v.clone());
                v
            }
        };
        if let PromptKind::Chooser { context, .. } = &prompt.kind
            && context
                .as_deref()
                .is_some_and(|c| c.contains("connected_account"))
            && let Some(id) = value
                .as_str()
                .and_then(|s| s.trim().parse::<RecordId>().ok())
                .or(value.as_i64())
        {
            account_ids.push((id, prompt.service.clone()));
        }
    }
    let mut counter: RecordId = 0;
    let mut next_id = || {
        counter += 1;
        counter
    };
    let mut rng = rand::rng();
    let package_hosts = http_hosts(&package.raw);
    let plan = package
        .into_plan(switchboard_package::PlanOptions {
            answers: &answers,
            next_id: &mut next_id,
            rng: &mut rng,
            defaults: serde_json::json!({ "base_url": "http://localhost:8080/" }),
        })
        .map_err(crate::refusal::invalid_package)?;
    check_plan(&plan)?;
    let Some((_, def)) = plan.behavior_by_uid(&req.behavior_uid) else {
        let known: Vec<String> = plan
            .bots
            .iter()
            .flat_map(|b| {
                b.behaviors
                    .iter()
                    .map(|x| format!("{} ({})", x.uid, x.title))
            })
            .collect();
        bail!(
            "unknown behavior uid '{}'; the package has: {}",
            req.behavior_uid,
            known.join(", ")
        );
    };
    let (event, uid, id) = (def.event.clone(), def.uid.clone(), def.id);
    let behaviors = LazyBehaviors::new(plan);
    let behavior = behaviors.get(id).context("behavior compiles")?;
    let inputs = check_inputs(req, &uid, &event, &behavior)?;
    let host = SimulatorHost {
        behaviors,
        accounts: account_ids
            .into_iter()
            .map(|(id, service)| (id, sample_account(id, service.as_deref(), &package_hosts)))
            .collect(),
        keys: MemoryBotKeys::default(),
        client: if req.run_http {
            Some(http_client()?)
        } else {
            None
        },
    };
    let opts = RunOptions::simulator(req.run_http);
    let output = match event.as_str() {
        EVENT_WEBHOOK => run_webhook(&behavior, &webhook_request(req), &host, &opts),
        EVENT_MACRO => run_macro(&behavior, &inputs, &host, &opts),
        other => bail!("behavior '{uid}' answers event '{other}', which cannot be simulated"),
    };
    Ok(Simulation {
        output,
        notes,
        event,
    })
}

/// Refuses inputs the behavior would never see, rather than ignoring them: `--var` for a webhook
/// behavior; `--param`, `--header`, `--method` or `--body` for a macro behavior; a variable the
/// macro does not have, or one given twice. Returns a macro's `--var` inputs.
fn check_inputs(
    req: &SimulateRequest,
    uid: &str,
    event: &str,
    behavior: &CompiledBehavior,
) -> anyhow::Result<IndexMap<String, String>> {
    if event == EVENT_WEBHOOK {
        if let Some(kv) = req.vars.first() {
            bail!(
                "--var {}: behavior '{uid}' is a webhook behavior ({EVENT_WEBHOOK}); give its request with --param, --header, --method and --body",
                kv.key
            );
        }
        if let Some(method) = &req.method {
            crate::args::http_method(method).map_err(|e| anyhow::anyhow!("--method: {e}"))?;
        }
        return Ok(IndexMap::new());
    }
    let webhook_only = [
        (!req.params.is_empty(), "--param"),
        (!req.headers.is_empty(), "--header"),
        (req.method.is_some(), "--method"),
        (req.body.is_some(), "--body"),
    ];
    if let Some((_, flag)) = webhook_only.iter().find(|(given, _)| *given) {
        bail!(
            "{flag}: behavior '{uid}' is a macro behavior ({event}); give its inputs with --var (its variables: {})",
            behavior.variable_list()
        );
    }
    let inputs = crate::args::var_inputs(&req.vars)?;
    if let Some(name) = inputs
        .keys()
        .find(|k| !behavior.variables().contains_key(*k))
    {
        bail!(
            "--var {name}: behavior '{uid}' has no variable '{name}' (its variables: {})",
            behavior.variable_list()
        );
    }
    Ok(inputs)
}

/// Checks every behavior of a plan for what compiling would refuse (an invalid `regexp`,
/// docs/semantics.md, Decision 8) without compiling their templates: an import and the simulator
/// refuse the same packages, and only the behaviors that run are compiled.
pub fn check_plan(plan: &ImportPlan) -> anyhow::Result<()> {
    let mut issues = Vec::new();
    for bot in &plan.bots {
        for b in &bot.behaviors {
            if let Err(mut e) = CompiledBehavior::check(b) {
                issues.append(&mut e);
            }
        }
    }
    if !issues.is_empty() {
        return Err(crate::refusal::invalid_package(
            switchboard_package::ImportError { issues },
        ));
    }
    Ok(())
}

/// The planned behaviors, each compiled the first time it runs (the simulated one, and those it
/// calls with `_run_behavior`), so a large package costs what its running behaviors need.
struct LazyBehaviors {
    /// By id: (bot index, behavior index) in `plan.bots`.
    index: HashMap<RecordId, (usize, usize)>,
    bots: Vec<Arc<BotInfo>>,
    plan: ImportPlan,
    compiled: std::sync::Mutex<HashMap<RecordId, Arc<CompiledBehavior>>>,
}

impl LazyBehaviors {
    fn new(plan: ImportPlan) -> LazyBehaviors {
        let mut index = HashMap::new();
        for (i, bot) in plan.bots.iter().enumerate() {
            for (j, b) in bot.behaviors.iter().enumerate() {
                index.insert(b.id, (i, j));
            }
        }
        LazyBehaviors {
            index,
            bots: plan
                .bots
                .iter()
                .map(|b| Arc::new(BotInfo::from_def(b)))
                .collect(),
            plan,
            compiled: Default::default(),
        }
    }

    fn get(&self, id: RecordId) -> Option<Arc<CompiledBehavior>> {
        let mut compiled = self.compiled.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(b) = compiled.get(&id) {
            return Some(b.clone());
        }
        let &(i, j) = self.index.get(&id)?;
        let def = &self.plan.bots[i].behaviors[j];
        // Checked by `check_plan`: compiling cannot fail.
        let b = Arc::new(CompiledBehavior::compile(def, self.bots[i].clone()).ok()?);
        compiled.insert(id, b.clone());
        Some(b)
    }
}

/// The webhook request the simulator sends: `--param`s as a form body, or as the query string
/// when `--body` gives the body or the method is GET or HEAD; `--header`s as given.
pub fn webhook_request(req: &SimulateRequest) -> WebhookRequest {
    let encode = |kvs: &[KeyValue]| {
        let mut ser = form_urlencoded_serializer();
        for kv in kvs {
            ser.append_pair(&kv.key, &kv.value);
        }
        ser.finish()
    };
    let mut headers: Vec<(String, String)> = req
        .headers
        .iter()
        .map(|kv| (kv.key.clone(), kv.value.clone()))
        .collect();
    let method = req.method.clone().unwrap_or_else(|| "POST".into());
    // A GET or HEAD request has no form body: its params are in the query string.
    let bodiless = ["GET", "HEAD"].contains(&method.to_ascii_uppercase().as_str());
    let (query, body) = match &req.body {
        Some(body) => (encode(&req.params), body.clone().into_bytes()),
        None if bodiless => (encode(&req.params), Vec::new()),
        None => {
            if !headers
                .iter()
                .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
            {
                headers.push((
                    "Content-Type".into(),
                    "application/x-www-form-urlencoded".into(),
                ));
            }
            (String::new(), encode(&req.params).into_bytes())
        }
    };
    WebhookRequest {
        method,
        path: String::new(),
        query,
        headers,
        body,
        client_ip: "127.0.0.1".into(),
    }
}

fn form_urlencoded_serializer() -> FormSerializer {
    FormSerializer(String::new())
}

/// `application/x-www-form-urlencoded` as browsers and Twilio write it (space → `+`).
struct FormSerializer(String);

impl FormSerializer {
    fn append_pair(&mut self, k: &str, v: &str) {
        if !self.0.is_empty() {
            self.0.push('&');
        }
        encode_form_component(&mut self.0, k);
        self.0.push('=');
        encode_form_component(&mut self.0, v);
    }
    fn finish(self) -> String {
        self.0
    }
}

fn encode_form_component(out: &mut String, s: &str) {
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'*' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
}

/// The sample account for a connected-account prompt (issue 12): a Twilio account for a prompt
/// asking for Twilio; otherwise an account of kind `sample` allowed for the hosts the package's
/// HTTP actions name (and Twilio's, when the prompt does not say which service it is for).
fn sample_account(
    id: RecordId,
    service: Option<&str>,
    package_hosts: &[String],
) -> ConnectedAccount {
    let twilio = || TWILIO_HOSTS.iter().map(|h| h.to_string());
    match service {
        Some("twilio") => ConnectedAccount {
            id,
            name: format!("Sample connected account #{id} (simulator: no credentials)"),
            kind: "twilio".into(),
            allowed_hosts: twilio().collect(),
        },
        _ => {
            let mut hosts: Vec<String> = package_hosts.to_vec();
            if service.is_none() {
                hosts.extend(twilio().filter(|h| !package_hosts.contains(h)));
            }
            ConnectedAccount {
                id,
                name: format!(
                    "Sample {} connected account #{id} (simulator: no credentials)",
                    service.unwrap_or("HTTP")
                ),
                kind: "sample".into(),
                allowed_hosts: hosts,
            }
        }
    }
}

/// The hosts of the package's HTTP actions' URLs whose host is written literally.
fn http_hosts(raw: &serde_json::Value) -> Vec<String> {
    fn walk(v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(map) => {
                for (k, v) in map {
                    if k == "http_url"
                        && let Some(url) = v.as_str()
                        && let Ok(parsed) = reqwest::Url::parse(url.trim())
                        && let Some(host) = parsed.host_str()
                        && !host.contains(['{', '%'])
                    {
                        let host = host.to_ascii_lowercase();
                        if !out.contains(&host) {
                            out.push(host);
                        }
                    }
                    walk(v, out);
                }
            }
            serde_json::Value::Array(items) => items.iter().for_each(|i| walk(i, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(raw, &mut out);
    out
}

struct SimulatorHost {
    behaviors: LazyBehaviors,
    accounts: HashMap<RecordId, ConnectedAccount>,
    /// Bot keys: `_set_key` and `_get_key` run in Cerb's simulator too (docs/semantics.md
    /// §4.5); here they live in memory for the one simulation, starting empty.
    keys: MemoryBotKeys,
    client: Option<reqwest::blocking::Client>,
}

fn http_client() -> anyhow::Result<reqwest::blocking::Client> {
    reqwest::blocking::Client::builder()
        .connect_timeout(std::time::Duration::from_secs(10))
        .timeout(std::time::Duration::from_secs(30))
        .redirect(reqwest::redirect::Policy::limited(5))
        .build()
        .context("building the HTTP client")
}

impl Host for SimulatorHost {
    fn connected_account(&self, id: RecordId) -> Option<ConnectedAccount> {
        self.accounts.get(&id).cloned()
    }

    fn http_request(&self, request: &HttpRequest) -> HttpOutcome {
        let Some(client) = &self.client else {
            return HttpOutcome::Error("HTTP requests are sent only with --run-http".into());
        };
        let method = match reqwest::Method::from_bytes(request.method.as_bytes()) {
            Ok(m) => m,
            Err(_) => {
                return HttpOutcome::Error(format!("invalid HTTP method '{}'", request.method));
            }
        };
        let mut builder = client.request(method, &request.url);
        for (k, v) in &request.headers {
            builder = builder.header(k, v);
        }
        if !request.body.is_empty() {
            builder = builder.body(request.body.clone());
        }
        match builder.send() {
            Ok(resp) => {
                let status = resp.status().as_u16();
                let url = resp.url().to_string();
                let headers = resp
                    .headers()
                    .iter()
                    .map(|(k, v)| {
                        (
                            k.as_str().to_string(),
                            String::from_utf8_lossy(v.as_bytes()).into_owned(),
                        )
                    })
                    .collect();
                match resp.bytes() {
                    Ok(body) => HttpOutcome::Response(HttpResponse {
                        status,
                        headers,
                        body: body.to_vec(),
                        url,
                    }),
                    Err(e) => HttpOutcome::Error(error_chain(&e)),
                }
            }
            Err(e) => HttpOutcome::Error(error_chain(&e)),
        }
    }

    fn behavior(&self, id: RecordId) -> Option<Arc<CompiledBehavior>> {
        self.behaviors.get(id)
    }

    fn bot_key_get(&self, bot: RecordId, key: &str) -> Result<Option<String>, String> {
        Ok(self.keys.get(bot, key, self.now()))
    }

    fn bot_key_set(
        &self,
        bot: RecordId,
        key: &str,
        value: &str,
        expires_at: i64,
    ) -> Result<(), String> {
        self.keys.set(bot, key, value, expires_at);
        Ok(())
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(cause) = src {
        s.push_str(": ");
        s.push_str(&cause.to_string());
        src = cause.source();
    }
    s
}

/// The trace section of the readable report, one or more lines per event (`switchboard runs
/// show` prints stored traces with it too).
pub fn render_trace(trace: &[switchboard_engine::TraceEvent]) -> String {
    let mut s = String::from("== Trace ==\n");
    for ev in trace {
        s.push_str(&ev.to_text());
        s.push('\n');
    }
    s
}

/// The errors section of the readable report (`switchboard runs show` too).
pub fn render_errors(errors: &[switchboard_engine::RunError]) -> String {
    let mut s = String::from("== Errors ==\n");
    for e in errors {
        match e.node_id {
            Some(id) => s.push_str(&format!("node {id}: {}\n", e.message)),
            None => s.push_str(&format!("{}\n", e.message)),
        }
    }
    s
}

/// The readable report: trace, HTTP requests, bot keys set, variables, errors, then the
/// response.
pub fn render_text(sim: &Simulation) -> String {
    let o = &sim.output;
    let mut s = String::new();
    for note in &sim.notes {
        s.push_str(&format!("# {note}\n"));
    }
    s.push_str(&render_trace(&o.trace));
    if !o.http_requests.is_empty() {
        s.push_str("\n== HTTP requests ==\n");
        for r in &o.http_requests {
            s.push_str(&format!(
                "{} {} ({})\n",
                r.method,
                r.url,
                if r.sent { "sent" } else { "not sent" }
            ));
            if let Some(name) = &r.authenticated_with {
                s.push_str(&format!("  authenticated with {name}\n"));
            }
            for (k, v) in &r.headers {
                s.push_str(&format!("  {k}: {v}\n"));
            }
            if !r.body.is_empty() {
                s.push_str(&format!("  body: {}\n", r.body));
            }
        }
    }
    if !o.bot_keys.is_empty() {
        s.push_str("\n== Bot keys (kept in memory for this simulation only) ==\n");
        for k in &o.bot_keys {
            let expires = match k.expires_at {
                Some(t) => time::OffsetDateTime::from_unix_timestamp(t)
                    .ok()
                    .and_then(|t| {
                        t.format(&time::format_description::well_known::Rfc3339)
                            .ok()
                    })
                    .unwrap_or_else(|| t.to_string()),
                None => "never".into(),
            };
            if k.value.is_empty() {
                s.push_str(&format!("{:?} deleted\n", k.key));
            } else {
                s.push_str(&format!(
                    "{:?} = {:?} (expires: {expires})\n",
                    k.key, k.value
                ));
            }
        }
    }
    if !o.vars.is_empty() {
        s.push_str("\n== Variables ==\n");
        for (k, v) in &o.vars {
            s.push_str(&format!("{k} = {v}\n"));
        }
    }
    if !o.errors.is_empty() {
        s.push('\n');
        s.push_str(&render_errors(&o.errors));
    }
    if sim.event != EVENT_WEBHOOK {
        // A macro behavior answers no HTTP request: its results are the variables above.
        return s;
    }
    s.push_str(&format!("\n== Response ==\nHTTP {}\n", o.status));
    for (k, v) in &o.headers {
        s.push_str(&format!("{k}: {v}\n"));
    }
    s.push('\n');
    s.push_str(&o.body);
    if !o.body.ends_with('\n') {
        s.push('\n');
    }
    s
}
