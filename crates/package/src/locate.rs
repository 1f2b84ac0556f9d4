//! Locating an issue in a package document: a JSON path is turned into the section, the uid of
//! the nearest record/bot/behavior that has one, and the field path inside that item.

use serde_json::Value as Json;

use crate::ImportIssue;

/// One step of a JSON path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Seg {
    Key(String),
    Idx(usize),
}

/// A JSON path from the document root, built up while walking.
#[derive(Debug, Clone, Default)]
pub(crate) struct JsonPath(pub Vec<Seg>);

impl JsonPath {
    pub fn root() -> Self {
        JsonPath(Vec::new())
    }

    pub fn key(&self, key: &str) -> Self {
        let mut segs = self.0.clone();
        segs.push(Seg::Key(key.to_owned()));
        JsonPath(segs)
    }

    pub fn idx(&self, idx: usize) -> Self {
        let mut segs = self.0.clone();
        segs.push(Seg::Idx(idx));
        JsonPath(segs)
    }
}

/// Renders path segments as `nodes[0].params.actions[1].action`.
fn render_segments(segs: &[Seg]) -> String {
    let mut out = String::new();
    for seg in segs {
        match seg {
            Seg::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
            Seg::Idx(i) => {
                out.push('[');
                out.push_str(&i.to_string());
                out.push(']');
            }
        }
    }
    out
}

/// The whole path as text (`bots[0].behaviors[1]`).
pub(crate) fn render_path(path: &JsonPath) -> String {
    render_segments(&path.0)
}

fn uid_of(item: Option<&Json>) -> Option<String> {
    match item?.get("uid")? {
        Json::String(s) if !s.is_empty() => Some(s.clone()),
        Json::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Builds an [`ImportIssue`] for `path` in `doc`. The uid is the innermost of
/// `<section>[i].uid` and `bots[i].behaviors[j].uid`; the field is the rest of the path.
pub(crate) fn issue(doc: &Json, path: &JsonPath, message: impl Into<String>) -> ImportIssue {
    let segs = &path.0;
    let section = match segs.first() {
        Some(Seg::Key(k)) => k.clone(),
        _ => String::from("package"),
    };
    // `anchor`: index into `segs` after which the field path starts.
    let mut uid = None;
    let mut anchor = 1;
    if let (Some(Seg::Key(sec)), Some(Seg::Idx(i))) = (segs.first(), segs.get(1)) {
        let item = doc.get(sec.as_str()).and_then(|s| s.get(*i));
        if let Some(u) = uid_of(item) {
            uid = Some(u);
            anchor = 2;
        }
        if sec == "bots"
            && let (Some(Seg::Key(b)), Some(Seg::Idx(j))) = (segs.get(2), segs.get(3))
            && b == "behaviors"
        {
            let behavior = item
                .and_then(|bot| bot.get("behaviors"))
                .and_then(|bs| bs.get(*j));
            if let Some(u) = uid_of(behavior) {
                uid = Some(u);
                anchor = 4;
            }
        }
    }
    let rest = segs.get(anchor.min(segs.len())..).unwrap_or(&[]);
    let field = if rest.is_empty() {
        None
    } else {
        Some(render_segments(rest))
    };
    ImportIssue::new(section, uid, field, node_title(doc, segs), message)
}

/// The title of the innermost behavior node (`…nodes[i]`) on the path, if any.
fn node_title(doc: &Json, segs: &[Seg]) -> Option<String> {
    let mut at = Some(doc);
    let mut title = None;
    let mut after_nodes = false;
    for seg in segs {
        at = match seg {
            Seg::Key(k) => at.and_then(|v| v.get(k.as_str())),
            Seg::Idx(i) => at.and_then(|v| v.get(*i)),
        };
        if after_nodes
            && let Seg::Idx(_) = seg
            && let Some(Json::String(t)) = at.and_then(|n| n.get("title"))
        {
            title = Some(t.clone());
        }
        after_nodes = matches!(seg, Seg::Key(k) if k == "nodes");
    }
    title
}

/// An issue about the package as a whole (no item, no field).
pub(crate) fn package_issue(
    uid: Option<&str>,
    field: Option<String>,
    message: impl Into<String>,
) -> ImportIssue {
    ImportIssue::new("package", uid.map(str::to_owned), field, None, message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn locates_behavior_inside_bot() {
        let doc = json!({"bots": [{"uid": "bot_a", "behaviors": [{"uid": "beh_1"}]}]});
        let path = JsonPath::root()
            .key("bots")
            .idx(0)
            .key("behaviors")
            .idx(0)
            .key("nodes")
            .idx(2)
            .key("type");
        let issue = issue(&doc, &path, "x");
        assert_eq!(issue.section, "bots");
        assert_eq!(issue.uid.as_deref(), Some("beh_1"));
        assert_eq!(issue.field.as_deref(), Some("nodes[2].type"));
    }

    #[test]
    fn falls_back_to_bot_uid_then_index() {
        let doc = json!({"bots": [{"uid": "bot_a", "behaviors": [{}]}], "records": [{}]});
        let path = JsonPath::root()
            .key("bots")
            .idx(0)
            .key("behaviors")
            .idx(0)
            .key("title");
        let found = issue(&doc, &path, "x");
        assert_eq!(found.uid.as_deref(), Some("bot_a"));
        assert_eq!(found.field.as_deref(), Some("behaviors[0].title"));

        let found = issue(&doc, &JsonPath::root().key("records").idx(0), "x");
        assert_eq!(found.uid, None);
        assert_eq!(found.field.as_deref(), Some("[0]"));

        let found = issue(&doc, &JsonPath::root().key("workspaces"), "x");
        assert_eq!(
            (found.section.as_str(), found.uid, found.field),
            ("workspaces", None, None)
        );
    }
}
