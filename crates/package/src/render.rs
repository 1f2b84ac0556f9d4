//! Import-time substitution (cerb-semantics §1.4, Decision 4): every string key or value holding
//! `{{{`, `{{%` or `{{#` in every section but `package` is rendered with the prompts, placeholders,
//! `uid.*` and `default.*`. Strict: a template that does not compile, fails, or looks up a name
//! that is not defined fails the import naming it. Lookups are recorded by the scope object itself,
//! so the check is exact for what the template evaluates.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use indexmap::IndexMap;
use minijinja::value::{Enumerator, Object, Value};
use serde_json::{Map, Value as Json};
use switchboard_twig::{Dialect, Limits};

use crate::ImportIssue;
use crate::locate::{JsonPath, issue};
use crate::validate::has_template;

/// The names a template may use; records every lookup of a missing name.
#[derive(Debug)]
struct Scope {
    /// `uid.` for the uid map, `default.` for defaults, empty at the top level.
    prefix: &'static str,
    values: IndexMap<String, Value>,
    misses: Arc<Mutex<BTreeSet<String>>>,
}

impl Object for Scope {
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        let name = key.as_str()?;
        match self.values.get(name) {
            Some(v) => Some(v.clone()),
            None => {
                if let Ok(mut misses) = self.misses.lock() {
                    misses.insert(format!("{}{name}", self.prefix));
                }
                None
            }
        }
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::Values(
            self.values
                .keys()
                .map(|k| Value::from(k.as_str()))
                .collect(),
        )
    }
}

/// Renders import-time templates with a fixed set of names.
pub(crate) struct Renderer {
    env: minijinja::Environment<'static>,
    limits: Limits,
    ctx: Value,
    misses: Arc<Mutex<BTreeSet<String>>>,
    /// Names the environment defines itself (functions such as `random_string`): a context miss
    /// on them is not an undefined name.
    globals: BTreeSet<String>,
}

impl Renderer {
    pub fn new(
        names: &IndexMap<String, Json>,
        uids: &IndexMap<String, crate::RecordId>,
        defaults: &Json,
    ) -> Self {
        let limits = Limits::default();
        let env = switchboard_twig::environment(Dialect::ImportTime, &limits);
        let globals = env.globals().map(|(name, _)| name.to_owned()).collect();
        let misses = Arc::new(Mutex::new(BTreeSet::new()));
        let uid_scope = Scope {
            prefix: "uid.",
            values: uids
                .iter()
                .map(|(k, id)| (k.clone(), Value::from(*id)))
                .collect(),
            misses: misses.clone(),
        };
        let default_scope = Scope {
            prefix: "default.",
            values: match defaults {
                Json::Object(map) => map.iter().map(|(k, v)| (k.clone(), to_value(v))).collect(),
                _ => IndexMap::new(),
            },
            misses: misses.clone(),
        };
        let mut values: IndexMap<String, Value> = names
            .iter()
            .map(|(k, v)| (k.clone(), to_value(v)))
            .collect();
        values.insert("uid".into(), Value::from_object(uid_scope));
        values.insert("default".into(), Value::from_object(default_scope));
        let ctx = Value::from_object(Scope {
            prefix: "",
            values,
            misses: misses.clone(),
        });
        Renderer {
            env,
            limits,
            ctx,
            misses,
            globals,
        }
    }

    /// Renders one template; on failure returns the issue messages.
    pub fn render(&self, source: &str) -> Result<String, Vec<String>> {
        if let Ok(mut misses) = self.misses.lock() {
            misses.clear();
        }
        let result = switchboard_twig::render_str(&self.env, source, &self.ctx, &self.limits);
        let undefined: Vec<String> = match self.misses.lock() {
            Ok(misses) => misses
                .iter()
                .filter(|name| !self.globals.contains(*name))
                .cloned()
                .collect(),
            Err(_) => Vec::new(),
        };
        let mut errors: Vec<String> = undefined
            .iter()
            .map(|name| format!("Import-time template uses undefined name '{name}' (not a prompt, placeholder, uid or default)"))
            .collect();
        match result {
            Ok(out) if errors.is_empty() => Ok(out),
            Ok(_) => Err(errors),
            Err(e) => {
                if errors.is_empty() {
                    errors.push(format!("Invalid import-time template: {e}"));
                }
                Err(errors)
            }
        }
    }

    /// Renders every templated key and string value in every section but `package`, in place.
    pub fn render_document(&self, doc: &mut Json) -> Vec<ImportIssue> {
        let original = doc.clone();
        let mut issues = Vec::new();
        if let Json::Object(top) = doc {
            for (section, value) in top.iter_mut() {
                if section == "package" {
                    continue;
                }
                let path = JsonPath::root().key(section);
                self.walk(value, &path, &original, &mut issues);
            }
        }
        issues
    }

    fn walk(&self, value: &mut Json, path: &JsonPath, doc: &Json, issues: &mut Vec<ImportIssue>) {
        match value {
            Json::String(s) if has_template(s) => match self.render(s) {
                Ok(out) => *s = out,
                Err(errors) => issues.extend(errors.into_iter().map(|m| issue(doc, path, m))),
            },
            Json::Array(items) => {
                for (i, item) in items.iter_mut().enumerate() {
                    self.walk(item, &path.idx(i), doc, issues);
                }
            }
            Json::Object(map) => {
                if map.keys().any(|k| has_template(k)) {
                    let old = std::mem::take(map);
                    let mut new = Map::new();
                    for (key, mut val) in old {
                        let key = if has_template(&key) {
                            match self.render(&key) {
                                Ok(out) => out,
                                Err(errors) => {
                                    issues.extend(
                                        errors.into_iter().map(|m| issue(doc, &path.key(&key), m)),
                                    );
                                    key
                                }
                            }
                        } else {
                            key
                        };
                        self.walk(&mut val, &path.key(&key), doc, issues);
                        new.insert(key, val);
                    }
                    *map = new;
                } else {
                    for (key, val) in map.iter_mut() {
                        self.walk(val, &path.key(key), doc, issues);
                    }
                }
            }
            _ => {}
        }
    }
}

fn to_value(v: &Json) -> Value {
    Value::from(minijinja::value::Serde(v))
}
