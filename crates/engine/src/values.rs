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

/// PHP's `(int)` of a string: leading whitespace, then the longest numeric prefix (sign,
/// digits, fraction, exponent: `"1e3"` is 1000, `"41.9"` 41, `"200 OK"` 200), truncated toward
/// zero and saturated at the `i64` bounds; 0 when there is no numeric prefix.
pub fn intval(s: &str) -> i64 {
    let t = s.trim_start_matches([' ', '\t', '\n', '\r', '\x0B', '\x0C']);
    let len = numeric_prefix_len(t);
    let prefix = &t[..len];
    if prefix
        .bytes()
        .all(|b| b.is_ascii_digit() || b == b'-' || b == b'+')
    {
        let (sign, digits) = match prefix.as_bytes().first() {
            Some(b'-') => (-1, &prefix[1..]),
            Some(b'+') => (1, &prefix[1..]),
            _ => (1, prefix),
        };
        return match digits.parse::<i64>() {
            Ok(n) => sign * n,
            Err(_) if digits.is_empty() => 0,
            Err(_) => sign * i64::MAX,
        };
    }
    // `as` truncates toward zero and saturates, as PHP's string-to-int conversion does.
    prefix.parse::<f64>().map(|f| f as i64).unwrap_or(0)
}

/// Length of the numeric prefix of `s` (PHP's numeric-string grammar: `[+-]? (digits [. digits?]
/// | . digits) ([eE] [+-]? digits)?`), or 0.
fn numeric_prefix_len(s: &str) -> usize {
    let b = s.as_bytes();
    let digits = |mut i: usize| {
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        i
    };
    let mut i = usize::from(matches!(b.first(), Some(b'+' | b'-')));
    let int_end = digits(i);
    let mut end = int_end;
    if b.get(end) == Some(&b'.') {
        let frac_end = digits(end + 1);
        if frac_end > end + 1 || int_end > i {
            end = frac_end;
        }
    }
    if end == i || (end == i + 1 && b[i] == b'.') {
        return 0;
    }
    i = end;
    if matches!(b.get(i), Some(b'e' | b'E')) {
        let mut j = i + 1;
        if matches!(b.get(j), Some(b'+' | b'-')) {
            j += 1;
        }
        let exp_end = digits(j);
        if exp_end > j {
            end = exp_end;
        }
    }
    end
}

/// PHP's `is_numeric` on a string: a numeric string with optional leading and trailing
/// whitespace (`" 12"`, `"1.5"`, `"1e3"`, `".5"`; not `"0x1A"`, `"12abc"` or `""`).
pub fn is_numeric(s: &str) -> bool {
    let ws = [' ', '\t', '\n', '\r', '\x0B', '\x0C'];
    let t = s.trim_start_matches(ws).trim_end_matches(ws);
    !t.is_empty() && numeric_prefix_len(t) == t.len()
}

/// PHP's `trim()` with its default characters (space, `\t`, `\n`, `\r`, NUL, vertical tab);
/// not Unicode whitespace.
pub fn php_trim(s: &str) -> &str {
    s.trim_matches([' ', '\t', '\n', '\r', '\0', '\x0B'])
}

/// A dictionary value as condition text: `None` for arrays/maps (docs/semantics.md,
/// Decision 9), `""` for missing/null, PHP's string form otherwise.
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
            ("\n\t7", 7),
            ("-3", -3),
            ("+3", 3),
            ("OK", 0),
            ("", 0),
            ("-", 0),
            ("3.9", 3),
            ("-3.9", -3),
            ("41.9", 41),
            (".5", 0),
            ("1e3", 1000),
            ("1.5e2x", 150),
            ("2e", 2),
            ("0x1A", 0),
            ("99999999999999999999", i64::MAX),
            ("-99999999999999999999", -i64::MAX),
            ("1e30", i64::MAX),
        ] {
            assert_eq!(intval(s), n, "{s:?}");
        }
    }

    #[test]
    fn php_is_numeric_and_trim() {
        for (s, numeric) in [
            ("12", true),
            (" 12", true),
            ("12 ", true),
            ("-1.5", true),
            (".5", true),
            ("5.", true),
            ("1e3", true),
            ("1700000000", true),
            ("", false),
            (" ", false),
            (".", false),
            ("12abc", false),
            ("0x1A", false),
            ("2024-01-01", false),
            ("1e", false),
        ] {
            assert_eq!(is_numeric(s), numeric, "{s:?}");
        }
        assert_eq!(php_trim(" \t\n\r\0\x0Bx y\n"), "x y");
        assert_eq!(
            php_trim("\u{a0}x\u{a0}"),
            "\u{a0}x\u{a0}",
            "not Unicode whitespace"
        );
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
