//! Import-time substitution (docs/semantics.md §1.4, Decision 4): every string key or value holding
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
use crate::locate::{JsonPath, Seg, issue};
use crate::validate::has_template;

/// Work limit of one import-time template (they are short substitutions; Cerb's own packages
/// need a few hundred units).
pub const IMPORT_FUEL: u64 = 50_000;
/// Largest output of one import-time template.
pub const MAX_TEMPLATE_OUTPUT: usize = 256 * 1024;
/// Most import-time templates one package may hold (a hostile package must not keep the
/// importer busy for minutes).
pub const MAX_TEMPLATES: usize = 5_000;

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
    /// Templates rendered so far (bounded by [`MAX_TEMPLATES`]).
    rendered: std::cell::Cell<usize>,
}

impl Renderer {
    pub fn new(
        names: &IndexMap<String, Json>,
        uids: &IndexMap<String, crate::RecordId>,
        defaults: &Json,
    ) -> Self {
        let limits = Limits {
            fuel: IMPORT_FUEL,
            max_output_bytes: MAX_TEMPLATE_OUTPUT,
        };
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
            rendered: std::cell::Cell::new(0),
        }
    }

    /// Renders one template; on failure returns the issue messages.
    pub fn render(&self, source: &str) -> Result<String, Vec<String>> {
        let count = self.rendered.get() + 1;
        self.rendered.set(count);
        if count > MAX_TEMPLATES {
            // Reported once; later templates are left alone (the import fails anyway).
            return Err(if count == MAX_TEMPLATES + 1 {
                vec![format!(
                    "Too many import-time templates (more than {MAX_TEMPLATES})"
                )]
            } else {
                Vec::new()
            });
        }
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
        // Errors are located once the walk is done (uids are never templates), so the document
        // is not copied.
        let mut errors: Vec<(JsonPath, String)> = Vec::new();
        if let Json::Object(top) = doc {
            for (section, value) in top.iter_mut() {
                if section == "package" {
                    continue;
                }
                let mut path = JsonPath::root().key(section);
                self.walk(value, &mut path, &mut errors);
            }
        }
        errors
            .into_iter()
            .map(|(path, message)| issue(doc, &path, message))
            .collect()
    }

    /// `path` is where `value` is; it is extended and restored on the way down, and copied only
    /// for an error.
    fn walk(&self, value: &mut Json, path: &mut JsonPath, issues: &mut Vec<(JsonPath, String)>) {
        match value {
            Json::String(s) if has_template(s) => match self.render(s) {
                Ok(out) => *s = out,
                Err(errors) => issues.extend(errors.into_iter().map(|m| (path.clone(), m))),
            },
            Json::Array(items) => {
                for (i, item) in items.iter_mut().enumerate() {
                    path.0.push(Seg::Idx(i));
                    self.walk(item, path, issues);
                    path.0.pop();
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
                                    issues.extend(errors.into_iter().map(|m| (path.key(&key), m)));
                                    key
                                }
                            }
                        } else {
                            key
                        };
                        path.0.push(Seg::Key(key.clone()));
                        self.walk(&mut val, path, issues);
                        path.0.pop();
                        new.insert(key, val);
                    }
                    *map = new;
                } else {
                    for (key, val) in map.iter_mut() {
                        if !matches!(val, Json::String(s) if !has_template(s)) {
                            path.0.push(Seg::Key(key.clone()));
                            self.walk(val, path, issues);
                            path.0.pop();
                        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn renderer() -> Renderer {
        let names: IndexMap<String, Json> =
            serde_json::from_value(json!({"region": "eu", "n": 3, "list": [1, 2]})).unwrap();
        let uids: IndexMap<String, crate::RecordId> =
            [("bot_a".to_owned(), 12)].into_iter().collect();
        Renderer::new(&names, &uids, &json!({"base_url": "https://x/"}))
    }

    #[test]
    fn renders_known_names() {
        let r = renderer();
        assert_eq!(
            r.render("{{{region|upper}}}-{{{uid.bot_a}}}-{{{default.base_url}}}"),
            Ok("EU-12-https://x/".into())
        );
        assert_eq!(
            r.render("{{% for x in list %}}{{{x * n}}}{{% endfor %}}"),
            Ok("36".into())
        );
        assert_eq!(
            r.render("{{% set local = 'l' %}}{{{local}}}"),
            Ok("l".into())
        );
        // Globals of the environment (functions) are not undefined names.
        assert_eq!(r.render("{{{range(0, 3)|length > 2}}}"), Ok("1".into()));
    }

    #[test]
    fn records_each_missing_name_once_per_render() {
        let r = renderer();
        let err = r
            .render("{{{nope}}}{{{nope}}}{{{uid.ghost}}}{{{default.x}}}")
            .unwrap_err();
        assert_eq!(err.len(), 3);
        assert!(err[0].contains("'default.x'"), "{err:?}");
        assert!(err[1].contains("'nope'"), "{err:?}");
        assert!(err[2].contains("'uid.ghost'"), "{err:?}");
        // The next render starts clean.
        assert_eq!(r.render("{{{region}}}"), Ok("eu".into()));
    }

    #[test]
    fn caps_the_number_of_templates() {
        let r = renderer();
        for _ in 0..MAX_TEMPLATES {
            r.render("{{{n}}}").unwrap();
        }
        assert_eq!(
            r.render("{{{n}}}"),
            Err(vec![format!(
                "Too many import-time templates (more than {MAX_TEMPLATES})"
            )])
        );
        assert_eq!(r.render("{{{n}}}"), Err(vec![]));
    }
}
