//! PHP's conversions of values to strings and numbers, as Twig applies them when printing or
//! passing values to filters (`echo` of a float, `(string)` of a bool, `Array`).

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
            (3.14159265358979, "3.1415926535898"),
            (-2.5, "-2.5"),
            (f64::INFINITY, "INF"),
            (f64::NAN, "NAN"),
        ];
        for (f, want) in cases {
            assert_eq!(float_to_string(*f), *want, "float {f:e}");
        }
    }
}
