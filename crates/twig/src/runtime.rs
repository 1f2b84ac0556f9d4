//! The `_tw_*` helpers that translated Twig expressions call: PHP 8 truthiness, loose comparison,
//! arithmetic and concatenation, Twig's attribute lookup and loop iteration, and Twig's tests.
//! Together with [`crate::filters`] this is everything registered on the environment.

use std::cmp::Ordering;
use std::sync::Mutex;

use indexmap::IndexMap;
use minijinja::value::Object;

use minijinja::value::{Rest, ValueKind};
use minijinja::{Environment, Error, ErrorKind, State, Value};

use crate::php::{self, Num};

/// Filters the translator accepts; each is registered by [`crate::filters::register`].
pub(crate) const FILTERS: &[&str] = &[
    "abs",
    "base64_decode",
    "base64_encode",
    "batch",
    "capitalize",
    "date",
    "default",
    "e",
    "escape",
    "first",
    "format",
    "hash_hmac",
    "join",
    "json_encode",
    "json_pretty",
    "keys",
    "last",
    "length",
    "lower",
    "md5",
    "merge",
    "nl2br",
    "number_format",
    "raw",
    "regexp",
    "replace",
    "reverse",
    "round",
    "sha1",
    "slice",
    "sort",
    "spaceless",
    "split",
    "striptags",
    "title",
    "trim",
    "truncate",
    "upper",
    "url_decode",
    "url_encode",
];

/// Functions the translator accepts; each is registered by [`crate::filters::register`].
pub(crate) const FUNCTIONS: &[&str] = &[
    "range",
    "min",
    "max",
    "cycle",
    "date",
    "random",
    "json_decode",
    "dict_set",
    "random_string",
    "attribute",
    "array_column",
    "array_combine",
    "array_diff",
    "array_intersect",
    "array_sort_keys",
    "array_unique",
    "array_values",
    "jsonpath_set",
    "regexp_match_all",
    "shuffle",
    "validate_number",
];

/// Registers the operator helpers and tests.
pub(crate) fn register(env: &mut Environment<'static>) {
    env.add_function("_tw_bool", |v: Value| truthy(&v));
    env.add_function("_tw_eq", |a: Value, b: Value| php::loose_eq(&a, &b));
    env.add_function("_tw_cmp", |a: Value, b: Value| match php::compare(&a, &b) {
        Ordering::Less => -1,
        Ordering::Equal => 0,
        Ordering::Greater => 1,
    });
    env.add_function("_tw_in", |a: Value, b: Value| contains(&a, &b));
    env.add_function(
        "_tw_cat",
        |state: &State, parts: Rest<Value>| -> Result<String, Error> {
            let out = parts.iter().map(php::to_php_string).collect::<String>();
            charge(state, &Value::from(out.as_str()))?;
            Ok(out)
        },
    );
    env.add_filter(
        "_tw_charge",
        |state: &State, v: Value| -> Result<Value, Error> {
            charge(state, &v)?;
            Ok(v)
        },
    );
    env.add_function("_tw_op", |op: String, a: Value, b: Value| {
        arith(&op, &a, &b)
    });
    env.add_function("_tw_neg", |a: Value| arith("*", &a, &Value::from(-1)));
    env.add_function("_tw_pos", |a: Value| arith("*", &a, &Value::from(1)));
    env.add_function("_tw_isset", |a: Value| !a.is_undefined() && !a.is_none());
    env.add_function("_tw_get", |obj: Value, key: Value| get(&obj, &key));
    env.add_function(
        "_tw_method",
        |_obj: Value, _name: Value, _args: Rest<Value>| Value::UNDEFINED,
    );
    env.add_function("_tw_hash", |pairs: Vec<Value>| {
        Value::from_pairs(pairs.iter().map(|p| {
            (
                php::array_key(&p.get_item_by_index(0).unwrap_or_default()),
                p.get_item_by_index(1).unwrap_or_default(),
            )
        }))
    });
    env.add_function("_tw_values", |v: Value| -> Value {
        entries(&v).into_iter().map(|(_, v)| v).collect()
    });
    env.add_function("_tw_pairs", |v: Value| -> Value {
        entries(&v)
            .into_iter()
            .map(|(k, v)| Value::from(vec![k, v]))
            .collect()
    });
    env.add_function("_tw_scope", || Value::from_object(Scope::default()));
    env.add_function("_tw_v", |state: &State, scope: Value, name: &str| {
        scope_of(&scope)
            .and_then(|s| s.get(name))
            // minijinja's global functions and this crate's helpers are not Twig variables; plain
            // objects of the render context are.
            .or_else(|| {
                state.lookup(name).filter(|v| {
                    v.kind() != ValueKind::Plain
                        || !(name.starts_with("_tw_")
                            || state.env().globals().any(|(g, _)| g == name))
                })
            })
            .unwrap_or_default()
    });
    env.add_function(
        "_tw_set",
        |scope: Value, name: &str, value: Value| -> Result<(), Error> {
            match scope_of(&scope) {
                Some(s) => s.set(name, value),
                None => Ok(()),
            }
        },
    );
    env.add_function(
        "_tw_set_many",
        |scope: Value, names: Vec<String>, values: Vec<Value>| -> Result<(), Error> {
            if let Some(s) = scope_of(&scope) {
                for (name, value) in names.iter().zip(values) {
                    s.set(name, value)?;
                }
            }
            Ok(())
        },
    );
    env.add_function("_tw_snap", |scope: Value| -> Value {
        scope_of(&scope)
            .map(|s| Value::from_object(s.snapshot()))
            .unwrap_or_default()
    });
    env.add_function(
        "_tw_loop_end",
        |scope: Value, snap: Value, targets: Vec<String>| {
            if let (Some(s), Some(before)) = (scope_of(&scope), scope_of(&snap)) {
                s.end_loop(before, &targets);
            }
        },
    );
    env.add_function(
        "_tw_with",
        |scope: Value, vars: Value| -> Result<(), Error> {
            if !matches!(vars.kind(), ValueKind::Seq | ValueKind::Map) {
                return Err(Error::new(
                    ErrorKind::InvalidOperation,
                    "Variables passed to the \"with\" tag must be a hash.",
                ));
            }
            if let Some(s) = scope_of(&scope) {
                for (k, v) in entries(&vars) {
                    s.set(&php::to_php_string(&k), v)?;
                }
            }
            Ok(())
        },
    );
    env.add_function("_tw_restore", |scope: Value, snap: Value| {
        if let (Some(s), Some(before)) = (scope_of(&scope), scope_of(&snap)) {
            s.restore(before);
        }
    });
    env.add_function(
        "_tw_matches",
        |s: Value, pattern: Value| -> Result<bool, Error> {
            if matches!(s.kind(), ValueKind::Seq | ValueKind::Map) {
                return Err(Error::new(
                    ErrorKind::InvalidOperation,
                    "matches: Argument #2 ($str) must be of type ?string, array given",
                ));
            }
            let re = crate::filters::compile_pcre_test(&php::to_php_string(&pattern))?;
            Ok(re.is_match(&php::to_php_string(&s)))
        },
    );
    env.add_function("_tw_starts_with", |a: Value, b: Value| {
        match (a.as_str(), b.as_str()) {
            (Some(a), Some(b)) => a.starts_with(b),
            _ => false,
        }
    });
    env.add_function("_tw_ends_with", |a: Value, b: Value| {
        match (a.as_str(), b.as_str()) {
            (Some(a), Some(b)) => a.ends_with(b),
            _ => false,
        }
    });
    env.add_function("_tw_slice", |v: Value, start: Value, len: Value| {
        crate::filters::slice(&v, &start, &len, false)
    });
    env.add_function("_tw_discard", |_v: Value| ());
    env.add_function("_tw_is_string", |v: Value| v.kind() == ValueKind::String);
    env.add_function("_tw_is_defined", |v: Value| !v.is_undefined());
    env.add_function("_tw_is_null", |v: Value| v.is_undefined() || v.is_none());
    env.add_function("_tw_is_none", |v: Value| v.is_undefined() || v.is_none());
    env.add_function("_tw_is_empty", |v: Value| is_empty(&v));
    env.add_function("_tw_is_iterable", |v: Value| {
        matches!(v.kind(), ValueKind::Seq | ValueKind::Map)
    });
    env.add_function("_tw_is_odd", |v: Value| -> Result<bool, Error> {
        Ok(int_mod(&v, 2)? != 0)
    });
    env.add_function("_tw_is_even", |v: Value| -> Result<bool, Error> {
        Ok(int_mod(&v, 2)? == 0)
    });
    env.add_function(
        "_tw_is_divisible_by",
        |v: Value, n: Value| -> Result<bool, Error> {
            let n = php::to_num(&n)?.as_int();
            if n == 0 {
                return Err(Error::new(ErrorKind::InvalidOperation, "Modulo by zero"));
            }
            Ok(int_mod(&v, n)? == 0)
        },
    );
    env.add_function("_tw_is_numeric", |v: Value| match v.kind() {
        ValueKind::Number => true,
        ValueKind::String => php::numeric_str(v.as_str().unwrap_or("")).is_some(),
        _ => false,
    });
    env.add_function("_tw_is_same_as", |a: Value, b: Value| {
        php::identical(&a, &b)
    });
}

/// Variables by name, in the order they were set. Hashed with foldhash (randomly seeded), like
/// the engine's request params: SipHash was a visible share of a seed webhook run.
type ScopeVars = IndexMap<String, Value, foldhash::fast::RandomState>;

/// The variables a template sets (Twig's `$context` minus the render context, which is read
/// through [`State::lookup`]). Shared by reference, so writes inside loops and blocks are seen
/// everywhere, as in Twig.
#[derive(Debug, Default)]
pub(crate) struct Scope {
    vars: Mutex<ScopeVars>,
}

impl Object for Scope {
    fn repr(self: &std::sync::Arc<Self>) -> minijinja::value::ObjectRepr {
        minijinja::value::ObjectRepr::Plain
    }
}

fn scope_of(v: &Value) -> Option<&Scope> {
    v.downcast_object_ref::<Scope>()
}

impl Scope {
    fn lock(&self) -> std::sync::MutexGuard<'_, ScopeVars> {
        self.vars.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn get(&self, name: &str) -> Option<Value> {
        self.lock().get(name).cloned()
    }

    /// Twig stores null for an undefined value: the name is then defined. Values nested deeper
    /// than [`MAX_NESTING`] are refused: building them needs a loop, and their recursive drop,
    /// comparison or encoding would overflow the stack.
    fn set(&self, name: &str, value: Value) -> Result<(), Error> {
        if nested_deeper_than(&value, MAX_NESTING) {
            return Err(Error::new(
                ErrorKind::InvalidOperation,
                format!("value of \"{name}\" is nested more than {MAX_NESTING} levels deep"),
            ));
        }
        let value = if value.is_undefined() {
            Value::from(())
        } else {
            value
        };
        self.lock().insert(name.to_string(), value);
        Ok(())
    }

    fn snapshot(&self) -> Scope {
        Scope {
            vars: Mutex::new(self.lock().clone()),
        }
    }

    /// After a loop: variables created inside are dropped, the loop targets get their value from
    /// before the loop back, every other variable keeps what the loop made of it.
    fn end_loop(&self, before: &Scope, targets: &[String]) {
        let before = before.lock().clone();
        let mut vars = self.lock();
        vars.retain(|k, _| before.contains_key(k));
        for t in targets {
            match before.get(t) {
                Some(v) => {
                    vars.insert(t.clone(), v.clone());
                }
                None => {
                    vars.shift_remove(t);
                }
            }
        }
    }

    /// After a `with` block: everything is as before it.
    fn restore(&self, before: &Scope) {
        let before = before.lock().clone();
        *self.lock() = before;
    }
}

/// How deeply arrays may nest in a template's variables.
pub(crate) const MAX_NESTING: usize = 128;

/// Whether arrays nest more than `limit` levels (descends at most `limit + 1` levels).
fn nested_deeper_than(v: &Value, limit: usize) -> bool {
    if !is_arr(v) {
        return false;
    }
    if limit == 0 {
        return true;
    }
    match v.try_iter() {
        Ok(it) => {
            if v.kind() == ValueKind::Map {
                it.filter_map(|k| v.get_item(&k).ok())
                    .any(|x| nested_deeper_than(&x, limit - 1))
            } else {
                it.into_iter().any(|x| nested_deeper_than(&x, limit - 1))
            }
        }
        Err(_) => false,
    }
}

/// Charges fuel for a produced value: one unit per 64 bytes of a string or per item of an array,
/// so work that builds large values is bounded by the template's fuel.
pub(crate) fn charge(state: &State, v: &Value) -> Result<(), Error> {
    let units = match v.kind() {
        ValueKind::String => v.as_str().map_or(0, |s| s.len() / 64),
        ValueKind::Seq | ValueKind::Map => v.len().unwrap_or(0),
        _ => 0,
    };
    if units > 0 {
        state.consume_fuel(units as u64)
    } else {
        Ok(())
    }
}

fn is_arr(v: &Value) -> bool {
    matches!(v.kind(), ValueKind::Seq | ValueKind::Map)
}

/// PHP truthiness: `""`, `"0"`, `0`, `0.0`, null, false and empty arrays are false.
pub(crate) fn truthy(v: &Value) -> bool {
    match v.kind() {
        ValueKind::Undefined | ValueKind::None => false,
        ValueKind::String => !matches!(v.as_str(), Some("" | "0")),
        ValueKind::Number => match php::to_num(v) {
            Ok(Num::I(i)) => i != 0,
            Ok(Num::F(f)) => f != 0.0,
            Err(_) => true,
        },
        ValueKind::Seq | ValueKind::Map => v.len().unwrap_or(0) > 0,
        _ => v.is_true(),
    }
}

/// Twig's `empty` test: null, false, `""` and `[]` only (`0` and `"0"` are not empty).
pub(crate) fn is_empty(v: &Value) -> bool {
    match v.kind() {
        ValueKind::Undefined | ValueKind::None => true,
        ValueKind::Bool => !v.is_true(),
        ValueKind::String => v.as_str() == Some(""),
        ValueKind::Seq | ValueKind::Map => v.len().unwrap_or(0) == 0,
        _ => false,
    }
}

fn int_mod(v: &Value, n: i64) -> Result<i64, Error> {
    let i = php::to_num_strict(v, "%")?.as_int();
    Ok(i.wrapping_rem(n))
}

/// Twig's `in`: substring search in strings, loose membership among an array's values.
fn contains(needle: &Value, haystack: &Value) -> bool {
    match haystack.kind() {
        ValueKind::String => match needle.kind() {
            ValueKind::String | ValueKind::Number => {
                let n = php::to_php_string(needle);
                n.is_empty() || haystack.as_str().unwrap_or("").contains(&n)
            }
            _ => false,
        },
        ValueKind::Seq | ValueKind::Map => entries(haystack)
            .iter()
            .any(|(_, item)| php::compare(needle, item) == Ordering::Equal),
        _ => false,
    }
}

/// The key/value pairs of a PHP array (a list's keys are its indexes); scalars have none.
pub(crate) fn entries(v: &Value) -> Vec<(Value, Value)> {
    match v.kind() {
        ValueKind::Seq => v
            .try_iter()
            .map(|it| it.enumerate().map(|(i, x)| (Value::from(i), x)).collect())
            .unwrap_or_default(),
        ValueKind::Map => v
            .try_iter()
            .map(|it| {
                it.map(|k| {
                    let val = v.get_item(&k).unwrap_or_default();
                    (k, val)
                })
                .collect()
            })
            .unwrap_or_default(),
        ValueKind::Iterable => v
            .try_iter()
            .map(|it| it.enumerate().map(|(i, x)| (Value::from(i), x)).collect())
            .unwrap_or_default(),
        _ => Vec::new(),
    }
}

/// Twig's `a.b` / `a[b]` on arrays: PHP key lookup (`"1"` and `1` are the same key); anything
/// that is not there is undefined, which prints as empty.
pub(crate) fn get(obj: &Value, key: &Value) -> Value {
    match obj.kind() {
        ValueKind::Map => {
            let k = php::array_key(key);
            if let Some(v) = obj.get_item_opt_public(&k) {
                return v;
            }
            // Maps from JSON keep numeric keys as strings.
            if k.kind() == ValueKind::Number
                && let Some(v) = obj.get_item_opt_public(&Value::from(php::to_php_string(&k)))
            {
                return v;
            }
            Value::UNDEFINED
        }
        ValueKind::Seq => match php::array_key(key).as_i64() {
            Some(i) if i >= 0 => obj
                .get_item_opt_public(&Value::from(i))
                .unwrap_or(Value::UNDEFINED),
            _ => Value::UNDEFINED,
        },
        ValueKind::Plain | ValueKind::Iterable => match key.as_str() {
            Some(name) => obj.get_attr(name).unwrap_or(Value::UNDEFINED),
            None => Value::UNDEFINED,
        },
        _ => Value::UNDEFINED,
    }
}

/// Extension so lookups never error (an undefined parent is handled by the caller).
trait GetOpt {
    fn get_item_opt_public(&self, key: &Value) -> Option<Value>;
}

impl GetOpt for Value {
    fn get_item_opt_public(&self, key: &Value) -> Option<Value> {
        match self.get_item(key) {
            Ok(v) if !v.is_undefined() => Some(v),
            _ => None,
        }
    }
}

/// PHP 8 arithmetic on two values (numeric strings count as numbers).
pub(crate) fn arith(op: &str, a: &Value, b: &Value) -> Result<Value, Error> {
    // PHP's bitwise operators on two strings work byte by byte.
    if let (Some(p), Some(q), "b-and" | "b-or" | "b-xor") = (a.as_str(), b.as_str(), op) {
        let (p, q) = (p.as_bytes(), q.as_bytes());
        let bytes: Vec<u8> = match op {
            "b-or" => (0..p.len().max(q.len()))
                .map(|i| p.get(i).copied().unwrap_or(0) | q.get(i).copied().unwrap_or(0))
                .collect(),
            "b-and" => p.iter().zip(q).map(|(x, y)| x & y).collect(),
            _ => p.iter().zip(q).map(|(x, y)| x ^ y).collect(),
        };
        return Ok(Value::from(String::from_utf8_lossy(&bytes).into_owned()));
    }
    // `+` of two arrays is PHP's union: the left array's keys win.
    if op == "+" && is_arr(a) && is_arr(b) {
        let mut out: Vec<(Value, Value)> = entries(a)
            .into_iter()
            .map(|(k, v)| (php::array_key(&k), v))
            .collect();
        for (k, v) in entries(b) {
            let k = php::array_key(&k);
            if !out.iter().any(|(x, _)| *x == k) {
                out.push((k, v));
            }
        }
        return Ok(crate::filters::from_entries(out));
    }
    let (x, y) = (php::to_num_strict(a, op)?, php::to_num_strict(b, op)?);
    let div_zero = || Error::new(ErrorKind::InvalidOperation, "Division by zero");
    let res = match op {
        "+" | "-" | "*" => match (x, y) {
            (Num::I(i), Num::I(j)) => {
                let r = match op {
                    "+" => i.checked_add(j),
                    "-" => i.checked_sub(j),
                    _ => i.checked_mul(j),
                };
                match r {
                    Some(r) => Num::I(r),
                    None => Num::F(float_op(op, i as f64, j as f64)),
                }
            }
            _ => Num::F(float_op(op, x.as_f64(), y.as_f64())),
        },
        "/" => {
            if y.as_f64() == 0.0 {
                return Err(div_zero());
            }
            match (x, y) {
                (Num::I(i), Num::I(j)) if j != 0 && i.checked_rem(j) == Some(0) => Num::I(i / j),
                _ => Num::F(x.as_f64() / y.as_f64()),
            }
        }
        "//" => {
            if y.as_f64() == 0.0 {
                return Err(div_zero());
            }
            let f = (x.as_f64() / y.as_f64()).floor();
            if f.is_finite() && f.abs() < 9.2e18 {
                Num::I(f as i64)
            } else {
                Num::F(f)
            }
        }
        "%" => {
            let (i, j) = (php::int_operand(a, x), php::int_operand(b, y));
            if j == 0 {
                return Err(Error::new(ErrorKind::InvalidOperation, "Modulo by zero"));
            }
            Num::I(i.wrapping_rem(j))
        }
        "**" => match (x, y) {
            (Num::I(i), Num::I(j)) if (0..=u32::MAX as i64).contains(&j) => {
                match i.checked_pow(j as u32) {
                    Some(r) => Num::I(r),
                    None => Num::F((i as f64).powf(j as f64)),
                }
            }
            _ => Num::F(x.as_f64().powf(y.as_f64())),
        },
        "b-and" => Num::I(php::int_operand(a, x) & php::int_operand(b, y)),
        "b-or" => Num::I(php::int_operand(a, x) | php::int_operand(b, y)),
        "b-xor" => Num::I(php::int_operand(a, x) ^ php::int_operand(b, y)),
        other => {
            return Err(Error::new(
                ErrorKind::InvalidOperation,
                format!("unknown operator {other}"),
            ));
        }
    };
    Ok(res.into())
}

fn float_op(op: &str, a: f64, b: f64) -> f64 {
    match op {
        "+" => a + b,
        "-" => a - b,
        _ => a * b,
    }
}
