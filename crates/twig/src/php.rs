//! PHP's conversions of values to strings and numbers, as Twig applies them when printing or
//! passing values to filters (`echo` of a float, `(string)` of a bool, `Array`).

use std::cmp::Ordering;

use minijinja::Value;
use minijinja::value::ValueKind;

/// A float as PHP's `(string)` prints it: `precision=14` significant digits, `%G`-style.
pub fn float_to_string(f: f64) -> String {
    if f.is_nan() {
        return "NAN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "INF".into() } else { "-INF".into() };
    }
    format_g(f, 14)
}

/// `%.{precision}G` as PHP's `zend_gcvt` writes it (`1.0E+25`, `1.5E-7`).
pub fn format_g(f: f64, precision: usize) -> String {
    if f == 0.0 {
        return if f.is_sign_negative() {
            "-0".into()
        } else {
            "0".into()
        };
    }
    let sci = format!("{:.*e}", precision - 1, f);
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if exp < -4 || exp >= precision as i32 {
        let mut m = trim_zeros(mantissa).to_string();
        if !m.contains('.') {
            m.push_str(".0");
        }
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{m}E{sign}{}", exp.abs())
    } else {
        let decimals = (precision as i32 - 1 - exp).max(0) as usize;
        let fixed = format!("{f:.decimals$}");
        trim_zeros(&fixed).to_string()
    }
}

fn trim_zeros(s: &str) -> &str {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.')
    } else {
        s
    }
}

/// A value converted to a string the way PHP's `(string)` cast does inside Twig.
pub fn to_php_string(value: &Value) -> String {
    match value.kind() {
        ValueKind::Undefined | ValueKind::None => String::new(),
        ValueKind::Bool => {
            if value.is_true() {
                "1".into()
            } else {
                String::new()
            }
        }
        ValueKind::Number => number_to_string(value),
        ValueKind::String | ValueKind::Bytes => value
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| value.to_string()),
        ValueKind::Seq | ValueKind::Map | ValueKind::Iterable => "Array".into(),
        _ => value.to_string(),
    }
}

/// A number value printed like PHP (integers plainly, floats with [`float_to_string`]).
pub fn number_to_string(value: &Value) -> String {
    if value.is_integer() {
        return value.to_string();
    }
    match f64::try_from(value.clone()) {
        Ok(f) => float_to_string(f),
        Err(_) => value.to_string(),
    }
}

/// A PHP number: integer or float.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Num {
    I(i64),
    F(f64),
}

impl Num {
    pub fn as_f64(self) -> f64 {
        match self {
            Num::I(i) => i as f64,
            Num::F(f) => f,
        }
    }

    /// PHP's `(int)` of the number (NaN and infinities are 0).
    pub fn as_int(self) -> i64 {
        match self {
            Num::I(i) => i,
            // Out of range: PHP wraps modulo 2^64 (zend_dval_to_lval on 64-bit).
            Num::F(f) if f.is_finite() && f.abs() < 9.2e18 => f as i64,
            Num::F(f) if f.is_finite() => {
                let m = f.trunc().rem_euclid(18_446_744_073_709_551_616.0);
                (m as u64) as i64
            }
            Num::F(_) => 0,
        }
    }
}

/// PHP 8's integer operand of `%` and the bitwise operators (`zendi_try_get_long`): a numeric
/// string beyond the integer range saturates (`"12345678901234567890" % 3` is
/// `PHP_INT_MAX % 3`), a float value wraps as [`Num::as_int`] does.
pub fn int_operand(v: &Value, n: Num) -> i64 {
    match (v.kind(), n) {
        // `as` saturates, and NaN becomes 0.
        (ValueKind::String, Num::F(f)) => f as i64,
        _ => n.as_int(),
    }
}

impl From<Num> for Value {
    fn from(n: Num) -> Value {
        match n {
            Num::I(i) => Value::from(i),
            Num::F(f) => Value::from(f),
        }
    }
}

const NUM_WS: &[char] = &[' ', '\t', '\n', '\r', '\x0B', '\x0C'];

/// PHP's `is_numeric` on a string, with its value.
pub fn numeric_str(s: &str) -> Option<Num> {
    let t = s.trim_matches(NUM_WS);
    let (len, is_int) = numeric_prefix(t);
    if len == 0 || len != t.len() {
        return None;
    }
    Some(parse_num(t, is_int))
}

/// The length of the longest numeric prefix of `s`, and whether it is an integer.
fn numeric_prefix(s: &str) -> (usize, bool) {
    let b = s.as_bytes();
    let mut i = 0;
    if matches!(b.first(), Some(b'+' | b'-')) {
        i = 1;
    }
    let int_digits = b[i..].iter().take_while(|c| c.is_ascii_digit()).count();
    i += int_digits;
    let mut is_int = true;
    let mut frac_digits = 0;
    if b.get(i) == Some(&b'.') {
        frac_digits = b[i + 1..].iter().take_while(|c| c.is_ascii_digit()).count();
        if int_digits > 0 || frac_digits > 0 {
            i += 1 + frac_digits;
            is_int = false;
        }
    }
    if int_digits == 0 && frac_digits == 0 {
        return (0, true);
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        let mut j = i + 1;
        if matches!(b.get(j), Some(b'+' | b'-')) {
            j += 1;
        }
        let exp_digits = b[j.min(b.len())..]
            .iter()
            .take_while(|c| c.is_ascii_digit())
            .count();
        if exp_digits > 0 {
            i = j + exp_digits;
            is_int = false;
        }
    }
    (i, is_int)
}

fn parse_num(t: &str, is_int: bool) -> Num {
    if is_int && let Ok(i) = t.parse::<i64>() {
        return Num::I(i);
    }
    Num::F(t.parse::<f64>().unwrap_or(0.0))
}

/// PHP's numeric conversion for arithmetic: numeric strings and leading-numeric strings
/// (`"12abc"` is 12), null is 0, bools are 0/1; arrays cannot take part.
pub fn to_num(v: &Value) -> Result<Num, minijinja::Error> {
    Ok(match v.kind() {
        ValueKind::Undefined | ValueKind::None => Num::I(0),
        ValueKind::Bool => Num::I(i64::from(v.is_true())),
        ValueKind::Number => match v.as_i64() {
            Some(i) if v.is_integer() => Num::I(i),
            _ => Num::F(f64::try_from(v.clone()).unwrap_or(0.0)),
        },
        ValueKind::String => {
            let s = v.as_str().unwrap_or("");
            let t = s.trim_start_matches(NUM_WS);
            let (len, is_int) = numeric_prefix(t);
            if len == 0 {
                Num::I(0)
            } else {
                parse_num(&t[..len], is_int)
            }
        }
        _ => {
            return Err(minijinja::Error::new(
                minijinja::ErrorKind::InvalidOperation,
                format!("Unsupported operand types: {}", php_type(v)),
            ));
        }
    })
}

/// PHP 8 arithmetic operands and `int|float` parameters: numeric and leading-numeric strings
/// convert, other strings and arrays are a TypeError.
pub fn to_num_strict(v: &Value, what: &str) -> Result<Num, minijinja::Error> {
    if v.kind() == ValueKind::String {
        let t = v.as_str().unwrap_or("").trim_start_matches(NUM_WS);
        if numeric_prefix(t).0 == 0 {
            return Err(minijinja::Error::new(
                minijinja::ErrorKind::InvalidOperation,
                format!("Unsupported operand types: string ({what})"),
            ));
        }
    }
    to_num(v)
}

/// A PHP `int|float` parameter: only numeric strings convert, other strings and arrays are a
/// TypeError (`abs("12abc")` fails although `"12abc" + 1` is 13).
pub fn to_num_param(v: &Value, what: &str) -> Result<Num, minijinja::Error> {
    if v.kind() == ValueKind::String && numeric_str(v.as_str().unwrap_or("")).is_none() {
        return Err(minijinja::Error::new(
            minijinja::ErrorKind::InvalidOperation,
            format!("{what}(): Argument #1 ($num) must be of type int|float, string given"),
        ));
    }
    to_num(v)
}

/// PHP's `(float)` cast, which never fails (arrays are 0 or 1).
pub fn to_float_cast(v: &Value) -> f64 {
    match v.kind() {
        ValueKind::Seq | ValueKind::Map | ValueKind::Iterable => {
            if v.len().unwrap_or(0) > 0 {
                1.0
            } else {
                0.0
            }
        }
        _ => to_num(v).map(Num::as_f64).unwrap_or(0.0),
    }
}

/// The PHP type name of a value, for error messages.
pub fn php_type(v: &Value) -> &'static str {
    match v.kind() {
        ValueKind::Undefined | ValueKind::None => "null",
        ValueKind::Bool => "bool",
        ValueKind::Number if v.is_integer() => "int",
        ValueKind::Number => "float",
        ValueKind::String => "string",
        ValueKind::Seq | ValueKind::Map => "array",
        _ => "object",
    }
}

#[derive(PartialEq)]
enum Kind {
    Null,
    Bool,
    Num,
    Str,
    Arr,
}

fn kind(v: &Value) -> Kind {
    match v.kind() {
        ValueKind::Undefined | ValueKind::None => Kind::Null,
        ValueKind::Bool => Kind::Bool,
        ValueKind::Number => Kind::Num,
        ValueKind::Seq | ValueKind::Map | ValueKind::Iterable => Kind::Arr,
        _ => Kind::Str,
    }
}

fn num_cmp(a: Num, b: Num) -> Ordering {
    match (a, b) {
        (Num::I(x), Num::I(y)) => x.cmp(&y),
        _ => a
            .as_f64()
            .partial_cmp(&b.as_f64())
            .unwrap_or(Ordering::Greater),
    }
}

/// PHP 8's `<=>` (which Twig's comparisons and `in` use); uncomparable arrays are "greater".
pub fn compare(a: &Value, b: &Value) -> Ordering {
    let truthy = crate::runtime::truthy;
    match (kind(a), kind(b)) {
        (Kind::Null, Kind::Null) => Ordering::Equal,
        (Kind::Bool, _) | (_, Kind::Bool) => truthy(a).cmp(&truthy(b)),
        (Kind::Null, Kind::Str) => {
            if to_php_string(b).is_empty() {
                Ordering::Equal
            } else {
                Ordering::Less
            }
        }
        (Kind::Str, Kind::Null) => {
            if to_php_string(a).is_empty() {
                Ordering::Equal
            } else {
                Ordering::Greater
            }
        }
        (Kind::Null, _) | (_, Kind::Null) => truthy(a).cmp(&truthy(b)),
        (Kind::Num, Kind::Num) => num_cmp(
            to_num(a).unwrap_or(Num::I(0)),
            to_num(b).unwrap_or(Num::I(0)),
        ),
        (Kind::Str, Kind::Str) => {
            let (x, y) = (to_php_string(a), to_php_string(b));
            match (numeric_str(&x), numeric_str(&y)) {
                (Some(p), Some(q)) => num_cmp(p, q),
                _ => x.as_bytes().cmp(y.as_bytes()),
            }
        }
        (Kind::Num, Kind::Str) => {
            let y = to_php_string(b);
            match numeric_str(&y) {
                Some(q) => num_cmp(to_num(a).unwrap_or(Num::I(0)), q),
                None => to_php_string(a).as_bytes().cmp(y.as_bytes()),
            }
        }
        (Kind::Str, Kind::Num) => compare(b, a).reverse(),
        (Kind::Arr, Kind::Arr) => {
            let (x, y) = (crate::runtime::entries(a), crate::runtime::entries(b));
            if x.len() != y.len() {
                return x.len().cmp(&y.len());
            }
            for (k, v) in &x {
                let Some((_, w)) = y.iter().find(|(k2, _)| array_key(k2) == array_key(k)) else {
                    return Ordering::Greater;
                };
                match compare(v, w) {
                    Ordering::Equal => {}
                    other => return other,
                }
            }
            Ordering::Equal
        }
        (Kind::Arr, _) => Ordering::Greater,
        (_, Kind::Arr) => Ordering::Less,
    }
}

/// PHP 8's `==`.
pub fn loose_eq(a: &Value, b: &Value) -> bool {
    if let (Ok(Num::F(x)), Ok(Num::F(y))) = (to_num(a), to_num(b))
        && (x.is_nan() || y.is_nan())
        && kind(a) == Kind::Num
        && kind(b) == Kind::Num
    {
        return false;
    }
    compare(a, b) == Ordering::Equal
}

/// PHP's `===`.
pub fn identical(a: &Value, b: &Value) -> bool {
    match (kind(a), kind(b)) {
        (Kind::Null, Kind::Null) => true,
        (Kind::Bool, Kind::Bool) => a.is_true() == b.is_true(),
        (Kind::Num, Kind::Num) => match (to_num(a), to_num(b)) {
            (Ok(Num::I(x)), Ok(Num::I(y))) => x == y,
            (Ok(Num::F(x)), Ok(Num::F(y))) => x == y,
            _ => false,
        },
        (Kind::Str, Kind::Str) => a.as_str() == b.as_str(),
        (Kind::Arr, Kind::Arr) => {
            let (x, y) = (crate::runtime::entries(a), crate::runtime::entries(b));
            x.len() == y.len()
                && x.iter()
                    .zip(y.iter())
                    .all(|((k1, v1), (k2, v2))| array_key(k1) == array_key(k2) && identical(v1, v2))
        }
        _ => false,
    }
}

/// A value as a PHP array key: canonical integer strings, bools and floats become integers,
/// null becomes `""`.
pub fn array_key(key: &Value) -> Value {
    match key.kind() {
        ValueKind::Undefined | ValueKind::None => Value::from(""),
        ValueKind::Bool => Value::from(i64::from(key.is_true())),
        ValueKind::Number => match to_num(key) {
            Ok(n) => Value::from(n.as_int()),
            Err(_) => key.clone(),
        },
        ValueKind::String => {
            let s = key.as_str().unwrap_or("");
            let canonical = !s.is_empty()
                && (s == "0"
                    || (s
                        .strip_prefix('-')
                        .unwrap_or(s)
                        .starts_with(|c: char| ('1'..='9').contains(&c))
                        && s.strip_prefix('-')
                            .unwrap_or(s)
                            .bytes()
                            .all(|c| c.is_ascii_digit())));
            match s.parse::<i64>() {
                Ok(i) if canonical => Value::from(i),
                _ => key.clone(),
            }
        }
        _ => key.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_print_like_php() {
        let cases: &[(f64, &str)] = &[
            (1.0, "1"),
            (0.5, "0.5"),
            (-0.0, "-0"),
            (0.1 + 0.2, "0.3"),
            (1e14, "1.0E+14"),
            (1e13, "10000000000000"),
            (123456789012345.0, "1.2345678901234E+14"),
            (1.5e-7, "1.5E-7"),
            (0.0001, "0.0001"),
            (0.00001, "1.0E-5"),
            (98765.4321098765, "98765.432109877"),
            (-2.5, "-2.5"),
            (f64::INFINITY, "INF"),
            (f64::NAN, "NAN"),
        ];
        for (f, want) in cases {
            assert_eq!(float_to_string(*f), *want, "float {f:e}");
        }
    }
}
