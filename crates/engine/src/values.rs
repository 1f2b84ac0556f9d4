//! PHP's value rules that behaviors depend on: truthiness, `intval`, and how a template value
//! reads as condition text.

use minijinja::Value;
use minijinja::value::ValueKind;

/// Any serializable value as a template value.
pub fn to_value<T: serde::Serialize>(value: T) -> Value {
    Value::from(minijinja::value::Serde(value))
}

/// PHP truthiness for the flag strings Cerb stores (`"0"`, `""` are false; `"0.0"`, `" "` true).
pub fn truthy_json(v: &serde_json::Value) -> bool {
    match v {
        serde_json::Value::Null => false,
        serde_json::Value::Bool(b) => *b,
        serde_json::Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        serde_json::Value::String(s) => !(s.is_empty() || s == "0"),
        serde_json::Value::Array(a) => !a.is_empty(),
        serde_json::Value::Object(o) => !o.is_empty(),
    }
}

/// PHP truthiness of a template value.
pub fn truthy(v: &Value) -> bool {
    match v.kind() {
        ValueKind::Undefined | ValueKind::None => false,
        ValueKind::String => v.as_str().is_some_and(|s| !(s.is_empty() || s == "0")),
        _ => v.is_true(),
    }
}

/// PHP `intval` of a string: optional sign and leading digits, else 0.
pub fn intval(s: &str) -> i64 {
    let t = s.trim_start();
    let (sign, digits) = match t.as_bytes().first() {
        Some(b'-') => (-1, &t[1..]),
        Some(b'+') => (1, &t[1..]),
        _ => (1, t),
    };
    let end = digits
        .bytes()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(digits.len());
    digits[..end]
        .parse::<i64>()
        .map(|n| sign * n)
        .unwrap_or(if end > 0 { sign * i64::MAX } else { 0 })
}

/// A dictionary value as condition text: `None` for arrays/maps (Decision 9), `""` for
/// missing/null, PHP's string form otherwise.
pub fn as_condition_text(v: Option<&Value>) -> Option<String> {
    let Some(v) = v else {
        return Some(String::new());
    };
    match v.kind() {
        ValueKind::Undefined | ValueKind::None => Some(String::new()),
        ValueKind::Bool => Some(if v.is_true() {
            "1".into()
        } else {
            String::new()
        }),
        ValueKind::Seq | ValueKind::Map | ValueKind::Iterable | ValueKind::Plain => None,
        ValueKind::String => Some(v.as_str().unwrap_or_default().to_string()),
        _ => Some(php_string(v)),
    }
}

/// PHP's string conversion of a scalar (floats without a trailing `.0`).
pub fn php_string(v: &Value) -> String {
    match v.kind() {
        ValueKind::Undefined | ValueKind::None => String::new(),
        ValueKind::Bool => {
            if v.is_true() {
                "1".into()
            } else {
                String::new()
            }
        }
        ValueKind::Number => {
            if !v.is_integer()
                && let Ok(f) = f64::try_from(v.clone())
            {
                if f.fract() == 0.0 && f.abs() < 1e15 {
                    return format!("{}", f as i64);
                }
                return format!("{f}");
            }
            v.to_string()
        }
        ValueKind::String => v.as_str().unwrap_or_default().to_string(),
        _ => v.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn php_truthiness() {
        for (s, t) in [
            ("0", false),
            ("", false),
            ("1", true),
            ("0.0", true),
            (" ", true),
            ("false", true),
        ] {
            assert_eq!(truthy(&Value::from(s)), t, "{s:?}");
            assert_eq!(truthy_json(&serde_json::json!(s)), t, "{s:?}");
        }
        assert!(!truthy(&Value::from(0)));
        assert!(!truthy(&Value::from(())));
        assert!(!truthy(&Value::UNDEFINED));
        assert!(!truthy(&Value::from(Vec::<Value>::new())));
        assert!(truthy(&Value::from(vec![1])));
        assert!(!truthy_json(&serde_json::json!(null)));
        assert!(!truthy_json(&serde_json::json!([])));
    }

    #[test]
    fn php_intval() {
        for (s, n) in [
            ("200 OK", 200),
            ("404", 404),
            (" 12x", 12),
            ("-3", -3),
            ("OK", 0),
            ("", 0),
            ("3.9", 3),
        ] {
            assert_eq!(intval(s), n, "{s:?}");
        }
    }

    #[test]
    fn condition_text() {
        assert_eq!(as_condition_text(None), Some(String::new()));
        assert_eq!(
            as_condition_text(Some(&Value::from(()))),
            Some(String::new())
        );
        assert_eq!(as_condition_text(Some(&Value::from(5))), Some("5".into()));
        assert_eq!(as_condition_text(Some(&Value::from(1.0))), Some("1".into()));
        assert_eq!(
            as_condition_text(Some(&Value::from(true))),
            Some("1".into())
        );
        assert_eq!(as_condition_text(Some(&Value::from(vec!["a"]))), None);
    }
}
