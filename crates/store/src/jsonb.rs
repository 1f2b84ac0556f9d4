//! PostgreSQL's `jsonb` cannot hold U+0000 (`unsupported Unicode escape sequence`), but text from
//! outside can contain it (`Body=a%00b`). Logs and run records keep U+FFFD in its place, so a
//! message with a NUL is recorded and answered instead of failing every write, and every retry.

use std::borrow::Cow;

use serde_json::Value;

/// JSON text for a `::jsonb` cast: each `\u0000` escape becomes `\ufffd`. Only escapes count: an
/// escaped backslash followed by `u0000` (the text `\u0000` itself) is left alone.
pub fn text(json: &str) -> Cow<'_, str> {
    if !json.contains("\\u0000") {
        return Cow::Borrowed(json);
    }
    let mut out = String::with_capacity(json.len());
    let mut rest = json;
    let mut replaced = false;
    while let Some(i) = rest.find('\\') {
        out.push_str(&rest[..i]);
        let escape = &rest[i..];
        if let Some(after) = escape.strip_prefix("\\u0000") {
            out.push_str("\\ufffd");
            replaced = true;
            rest = after;
        } else {
            // Copy the backslash and the character it escapes as they are (`\\`, `\"`, `\n`...).
            let width = escape[1..].chars().next().map_or(0, char::len_utf8);
            out.push_str(&escape[..1 + width]);
            rest = &escape[1 + width..];
        }
    }
    out.push_str(rest);
    if replaced {
        Cow::Owned(out)
    } else {
        Cow::Borrowed(json)
    }
}

/// A value for a `jsonb` bind: every U+0000 in a string or an object key becomes U+FFFD.
pub fn value(v: &Value) -> Cow<'_, Value> {
    fn has_nul(v: &Value) -> bool {
        match v {
            Value::String(s) => s.contains('\0'),
            Value::Array(items) => items.iter().any(has_nul),
            Value::Object(map) => map.iter().any(|(k, v)| k.contains('\0') || has_nul(v)),
            _ => false,
        }
    }
    fn clean(v: &mut Value) {
        match v {
            Value::String(s) if s.contains('\0') => *s = s.replace('\0', "\u{FFFD}"),
            Value::Array(items) => items.iter_mut().for_each(clean),
            Value::Object(map) => {
                let entries = std::mem::take(map);
                for (k, mut v) in entries {
                    clean(&mut v);
                    map.insert(k.replace('\0', "\u{FFFD}"), v);
                }
            }
            _ => {}
        }
    }
    if !has_nul(v) {
        return Cow::Borrowed(v);
    }
    let mut owned = v.clone();
    clean(&mut owned);
    Cow::Owned(owned)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn nul_escapes_become_replacement_characters() {
        let s =
            serde_json::to_string(&json!({"a\u{0}": ["x\u{0}y", "\\u0000", "\\\u{0}"]})).unwrap();
        let cleaned = text(&s);
        let back: Value = serde_json::from_str(&cleaned).unwrap();
        assert_eq!(
            back,
            json!({"a\u{FFFD}": ["x\u{FFFD}y", "\\u0000", "\\\u{FFFD}"]})
        );
        // Nothing to do: the same text, not a copy.
        assert!(matches!(text(r#"{"a":"\\u0000 \n é"}"#), Cow::Borrowed(_)));
        assert!(matches!(text("{}"), Cow::Borrowed(_)));
    }

    #[test]
    fn values_lose_only_their_nuls() {
        let v = json!({"k\u{0}": {"deep": ["a\u{0}", 1, null, "\\u0000"]}, "n": 2});
        assert_eq!(
            value(&v).into_owned(),
            json!({"k\u{FFFD}": {"deep": ["a\u{FFFD}", 1, null, "\\u0000"]}, "n": 2})
        );
        let clean = json!({"a": ["b", {"c": "d"}]});
        assert!(matches!(value(&clean), Cow::Borrowed(_)));
    }
}
