//! Planning an import: answer the prompts, generate the placeholders, reserve ids in Cerb's order,
//! render the import-time templates, validate the result and build the typed [`ImportPlan`].

use indexmap::IndexMap;
use serde_json::{Map, Value as Json};

use crate::locate::{JsonPath, issue};
use crate::prompts::{php_truthy, random_string};
use crate::render::Renderer;
use crate::validate::{self, Validator};
use crate::{
    BehaviorDef, BehaviorSection, BotDef, CreatedRecord, ImportError, ImportIssue, ImportPlan,
    NodeDef, Owner, Package, PlanOptions, RecordId, VariableDef, WebhookListenerDef,
};

/// PHP's `(int)` of a JSON scalar that is a number or a numeric string (else `None`).
pub(crate) fn php_int(v: &Json) -> Option<i64> {
    match v {
        Json::Number(n) => n.as_i64().or_else(|| {
            n.as_f64()
                .filter(|f| f.is_finite() && f.abs() < 9.0e18)
                .map(|f| f as i64)
        }),
        Json::String(s) => {
            let t = s.trim();
            t.parse::<i64>().ok().or_else(|| {
                t.parse::<f64>()
                    .ok()
                    .filter(|f| f.is_finite() && f.abs() < 9.0e18)
                    .map(|f| f as i64)
            })
        }
        Json::Bool(b) => Some(i64::from(*b)),
        Json::Null => Some(0),
        _ => None,
    }
}

/// A Cerb flag written as `"0"`/`"1"`, `0`/`1` or a boolean.
pub(crate) fn parse_flag(v: &Json) -> Option<bool> {
    match v {
        Json::Bool(b) => Some(*b),
        Json::String(s) if s == "1" => Some(true),
        Json::String(s) if s == "0" || s.is_empty() => Some(false),
        Json::Number(n) if n.as_i64() == Some(1) => Some(true),
        Json::Number(n) if n.as_i64() == Some(0) => Some(false),
        Json::Null => Some(false),
        _ => None,
    }
}

fn items(v: Option<&Json>) -> &[Json] {
    match v {
        Some(Json::Array(a)) => a,
        _ => &[],
    }
}

fn str_field(obj: &Json, key: &str) -> String {
    obj.get(key)
        .and_then(crate::prompts::php_string)
        .unwrap_or_default()
}

fn uid_field(obj: &Json) -> String {
    match obj.get("uid") {
        Some(Json::String(s)) => s.clone(),
        Some(Json::Number(n)) => n.to_string(),
        _ => String::new(),
    }
}

fn object_or_empty(v: Option<&Json>) -> Json {
    match v {
        Some(Json::Object(o)) => Json::Object(o.clone()),
        _ => Json::Object(Map::new()),
    }
}

pub(crate) fn plan(
    package: &Package,
    raw: Option<Json>,
    opts: PlanOptions<'_>,
) -> Result<ImportPlan, ImportError> {
    // 1. Prompts, then placeholders (docs/semantics.md §1.2, §1.3).
    let mut issues: Vec<ImportIssue> = Vec::new();
    let mut names = crate::prompts::answer(&package.prompts, opts.answers, &mut issues);
    if !issues.is_empty() {
        return Err(ImportError { issues });
    }
    for placeholder in &package.placeholders {
        names.insert(
            placeholder.key.clone(),
            Json::String(random_string(&mut *opts.rng, placeholder.length)),
        );
    }

    // 2. `_exclude` (§1.5 step 2): rendered with prompts and placeholders only (no `uid.*` or
    // `default.*` yet, as in Cerb); a truthy result drops the item.
    // One working copy of the document: `_exclude` filters it and the renderer renders it in
    // place (issues are located in the raw document, which it started as).
    let mut filtered = raw.unwrap_or_else(|| package.raw.clone());
    let issues = apply_excludes(
        &mut filtered,
        &Renderer::new(&names, &IndexMap::new(), &Json::Null),
    );
    if !issues.is_empty() {
        return Err(ImportError { issues });
    }

    // 3. Reserve ids (§1.5 step 4): records, then each bot followed by its behaviors, then
    // top-level behaviors. Node ids follow when the trees are built, like Cerb's import step.
    let doc = &filtered;
    let mut uids: IndexMap<String, RecordId> = IndexMap::new();
    for record in items(doc.get("records")) {
        uids.insert(uid_field(record), (opts.next_id)());
    }
    for bot in items(doc.get("bots")) {
        uids.insert(uid_field(bot), (opts.next_id)());
        for behavior in items(bot.get("behaviors")) {
            uids.insert(uid_field(behavior), (opts.next_id)());
        }
    }
    for behavior in items(doc.get("behaviors")) {
        uids.insert(uid_field(behavior), (opts.next_id)());
    }

    // 4. Render (§1.4) and validate what the templates produced.
    let renderer = Renderer::new(&names, &uids, &opts.defaults);
    let mut rendered = filtered;
    let mut issues = renderer.render_document(&mut rendered);
    if !issues.is_empty() {
        return Err(ImportError { issues });
    }
    issues = Validator::new(&rendered, true).run();
    if !issues.is_empty() {
        return Err(ImportError { issues });
    }

    // 5. Build. The nodes' params move into the plan rather than being copied.
    let params = take_node_params(&mut rendered);
    let mut builder = Builder {
        doc: &rendered,
        uids: &uids,
        next_id: opts.next_id,
        issues: Vec::new(),
        params,
    };
    let plan = builder.build(package.name.clone());
    if builder.issues.is_empty() {
        Ok(plan)
    } else {
        Err(ImportError {
            issues: builder.issues,
        })
    }
}

/// Removes every item of every section but `package` whose `_exclude` renders truthy.
fn apply_excludes(doc: &mut Json, renderer: &Renderer) -> Vec<ImportIssue> {
    let mut issues = Vec::new();
    let Json::Object(top) = doc else {
        return issues;
    };
    for (section, value) in top.iter_mut() {
        let Json::Array(list) = value else { continue };
        if section == "package" {
            continue;
        }
        let mut kept = Vec::with_capacity(list.len());
        for (i, mut item) in std::mem::take(list).into_iter().enumerate() {
            let exclude = item
                .as_object_mut()
                .and_then(|o| o.shift_remove("_exclude"));
            let drop = match exclude {
                None => false,
                Some(Json::String(template)) => match renderer.render(&template) {
                    Ok(out) => php_truthy(&Json::String(out)),
                    Err(errors) => {
                        // Located here: earlier items of the list may be gone already.
                        let uid = uid_field(&item);
                        let (at, field) = match &uid {
                            u if u.is_empty() => (None, format!("[{i}]._exclude")),
                            u => (Some(u.clone()), "_exclude".to_owned()),
                        };
                        issues.push(ImportIssue::new(
                            section.as_str(),
                            at,
                            Some(field),
                            None,
                            format!(
                                "Invalid _exclude template: record ({uid}) {}",
                                errors.join(",")
                            ),
                        ));
                        false
                    }
                },
                Some(other) => php_truthy(&other),
            };
            if !drop {
                kept.push(item);
            }
        }
        *list = kept;
    }
    issues
}

/// Takes every behavior node's `params` out of the document, by the node's JSON path
/// (`bots[0].behaviors[1].nodes[0].nodes[2]`), leaving `null`.
fn take_node_params(doc: &mut Json) -> std::collections::HashMap<String, Json> {
    fn walk(
        nodes: Option<&mut Json>,
        path: &str,
        out: &mut std::collections::HashMap<String, Json>,
    ) {
        let Some(Json::Array(nodes)) = nodes else {
            return;
        };
        for (i, node) in nodes.iter_mut().enumerate() {
            let npath = format!("{path}[{i}]");
            if let Some(params) = node.get_mut("params") {
                out.insert(npath.clone(), std::mem::take(params));
            }
            walk(node.get_mut("nodes"), &format!("{npath}.nodes"), out);
        }
    }
    let mut out = std::collections::HashMap::new();
    if let Some(Json::Array(bots)) = doc.get_mut("bots") {
        for (i, bot) in bots.iter_mut().enumerate() {
            if let Some(Json::Array(behaviors)) = bot.get_mut("behaviors") {
                for (j, behavior) in behaviors.iter_mut().enumerate() {
                    let path = format!("bots[{i}].behaviors[{j}].nodes");
                    walk(behavior.get_mut("nodes"), &path, &mut out);
                }
            }
        }
    }
    if let Some(Json::Array(behaviors)) = doc.get_mut("behaviors") {
        for (i, behavior) in behaviors.iter_mut().enumerate() {
            walk(
                behavior.get_mut("nodes"),
                &format!("behaviors[{i}].nodes"),
                &mut out,
            );
        }
    }
    out
}

struct Builder<'a, 'b> {
    doc: &'a Json,
    uids: &'a IndexMap<String, RecordId>,
    next_id: &'b mut dyn FnMut() -> RecordId,
    issues: Vec<ImportIssue>,
    /// Node params taken out of `doc` by [`take_node_params`].
    params: std::collections::HashMap<String, Json>,
}

impl Builder<'_, '_> {
    fn id_of(&self, item: &Json) -> RecordId {
        self.uids.get(&uid_field(item)).copied().unwrap_or_default()
    }

    fn build(&mut self, package_name: String) -> ImportPlan {
        let doc = self.doc;
        let mut records = Vec::new();

        let mut webhooks = Vec::new();
        for record in items(doc.get("records")) {
            let listener = self.webhook(record);
            records.push(CreatedRecord {
                context: "webhook_listener".into(),
                uid: listener.uid.clone(),
                id: listener.id,
                label: listener.name.clone(),
            });
            webhooks.push(listener);
        }

        let mut bots = Vec::new();
        for (i, bot) in items(doc.get("bots")).iter().enumerate() {
            let bot_id = self.id_of(bot);
            let owner = bot.get("owner");
            let owner_context = owner
                .and_then(|o| o.get("context"))
                .filter(|c| php_truthy(c));
            let owner_id = owner.and_then(|o| o.get("id")).filter(|c| php_truthy(c));
            let name = str_field(bot, "name");
            records.push(CreatedRecord {
                context: "bot".into(),
                uid: uid_field(bot),
                id: bot_id,
                label: name.clone(),
            });
            let mut behaviors = Vec::new();
            for (j, behavior) in items(bot.get("behaviors")).iter().enumerate() {
                let path = JsonPath::root().key("bots").idx(i).key("behaviors").idx(j);
                let built = self.behavior(behavior, bot_id, &path, BehaviorSection::Bots);
                records.push(CreatedRecord {
                    context: "behavior".into(),
                    uid: built.uid.clone(),
                    id: built.id,
                    label: built.title.clone(),
                });
                behaviors.push(built);
            }
            bots.push(BotDef {
                uid: uid_field(bot),
                id: bot_id,
                name,
                is_disabled: bot.get("is_disabled").is_some_and(php_truthy),
                owner: Owner {
                    context: owner_context
                        .and_then(Json::as_str)
                        .unwrap_or("cerberusweb.contexts.app")
                        .to_owned(),
                    id: owner_id.cloned().unwrap_or(Json::from(0)),
                },
                params: object_or_empty(bot.get("params")),
                image: bot
                    .get("image")
                    .and_then(Json::as_str)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned),
                behaviors,
            });
        }
        // Top-level behaviors attach to a bot of this package (Switchboard has no other bots at
        // import time); `bot_id` is usually `{{{uid.bot_x}}}`.
        for (i, behavior) in items(doc.get("behaviors")).iter().enumerate() {
            let path = JsonPath::root().key("behaviors").idx(i);
            let bot_id = behavior.get("bot_id").and_then(php_int);
            let Some(bot) = bots.iter_mut().find(|b| Some(b.id) == bot_id) else {
                let shown = behavior
                    .get("bot_id")
                    .map(|v| v.to_string())
                    .unwrap_or_default();
                self.issues.push(issue(
                    doc,
                    &path.key("bot_id"),
                    format!("bot_id {shown} is not a bot created by this package (adding behaviors to existing bots is not supported)"),
                ));
                continue;
            };
            let built = self.behavior(behavior, bot.id, &path, BehaviorSection::Behaviors);
            records.push(CreatedRecord {
                context: "behavior".into(),
                uid: built.uid.clone(),
                id: built.id,
                label: built.title.clone(),
            });
            bot.behaviors.push(built);
        }

        ImportPlan {
            package_name,
            bots,
            webhooks,
            records,
        }
    }

    fn webhook(&mut self, record: &Json) -> WebhookListenerDef {
        let extension_params = object_or_empty(record.get("extension_params"));
        let behavior_id = extension_params.get("behavior_id").and_then(|v| match v {
            Json::Number(n) => n.as_i64(),
            Json::String(s) => s.trim().parse::<i64>().ok(),
            _ => None,
        });
        WebhookListenerDef {
            uid: uid_field(record),
            id: self.id_of(record),
            name: str_field(record, "name"),
            guid: str_field(record, "guid"),
            extension_id: str_field(record, "extension_id"),
            extension_params,
            behavior_id,
            verify_signature: true,
        }
    }

    fn behavior(
        &mut self,
        behavior: &Json,
        bot_id: RecordId,
        path: &JsonPath,
        section: BehaviorSection,
    ) -> BehaviorDef {
        let mut variables = IndexMap::new();
        let vars: Vec<&Json> = match behavior.get("variables") {
            Some(Json::Object(map)) => map.values().collect(),
            Some(Json::Array(list)) => list.iter().collect(),
            _ => Vec::new(),
        };
        for var in vars {
            let key = str_field(var, "key");
            variables.insert(
                key.clone(),
                VariableDef {
                    key,
                    label: str_field(var, "label"),
                    kind: str_field(var, "type"),
                    is_private: var.get("is_private").and_then(parse_flag).unwrap_or(false),
                    params: object_or_empty(var.get("params")),
                },
            );
        }
        let id = self.id_of(behavior);
        let nodes = self.nodes(behavior.get("nodes"), &path.key("nodes"));
        BehaviorDef {
            uid: uid_field(behavior),
            id,
            bot_id,
            title: str_field(behavior, "title"),
            event: behavior
                .get("event")
                .map(|e| str_field(e, "key"))
                .unwrap_or_default(),
            is_disabled: behavior.get("is_disabled").is_some_and(php_truthy),
            is_private: behavior.get("is_private").is_some_and(php_truthy),
            priority: behavior.get("priority").and_then(php_int).unwrap_or(0),
            variables,
            nodes,
            uri: behavior
                .get("uri")
                .and_then(Json::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_owned),
            section,
        }
    }

    /// Builds a node list depth-first in document order, each parent's id before its children's.
    fn nodes(&mut self, nodes: Option<&Json>, path: &JsonPath) -> Vec<NodeDef> {
        let mut out = Vec::new();
        for (i, node) in items(nodes).iter().enumerate() {
            let npath = path.idx(i);
            let (Some(kind), Some(status)) = (
                node.get("type")
                    .and_then(Json::as_str)
                    .and_then(validate::parse_node_kind),
                validate::parse_status(node.get("status")),
            ) else {
                // The validator reported it already; keep going to report everything.
                self.issues
                    .push(issue(self.doc, &npath, "Failed to import behavior nodes"));
                continue;
            };
            let id = (self.next_id)();
            let params = match self.params.remove(&crate::locate::render_path(&npath)) {
                Some(p) if !p.is_null() => p,
                _ => Json::Object(Map::new()),
            };
            let children = self.nodes(node.get("nodes"), &npath.key("nodes"));
            out.push(NodeDef {
                id,
                kind,
                title: str_field(node, "title"),
                status,
                params,
                nodes: children,
            });
        }
        out
    }
}
