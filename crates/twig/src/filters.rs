//! Twig's core filters and Cerb's extra filters and functions, written to produce PHP's output byte
//! for byte (escapers, `url_encode` as `http_build_query`, `json_encode` with PHP's defaults, PHP's
//! `round`, `number_format`, `sprintf`, `strip_tags`, …), registered under their Twig names.

use std::cmp::Ordering;
use std::fmt::Write as _;

use base64::Engine as _;
use hmac::Mac as _;
use md5::Digest as _;
use minijinja::value::{Rest, ValueKind};
use minijinja::{Environment, Error, ErrorKind, State, Value};

use crate::php::{self, Num, to_php_string as s};
use crate::runtime::{entries, is_empty};

/// The characters of Cerb's `random_string` (`CerberusApplication::generatePassword`): upper-case
/// letters without I and O, digits without 0.
pub(crate) const RANDOM_ALPHABET: &[u8; 33] = b"ABCDEFGHJKLMNPQRSTUVWXYZ123456789";

fn fail(msg: impl Into<String>) -> Error {
    Error::new(ErrorKind::InvalidOperation, msg.into())
}

fn arg(args: &[Value], i: usize) -> Value {
    args.get(i).cloned().unwrap_or(Value::UNDEFINED)
}

fn is_null(v: &Value) -> bool {
    v.is_undefined() || v.is_none()
}

fn is_array(v: &Value) -> bool {
    matches!(
        v.kind(),
        ValueKind::Seq | ValueKind::Map | ValueKind::Iterable
    )
}

/// Builds a PHP array back into a value: a list when its keys are 0..n, a map otherwise.
pub(crate) fn from_entries(items: Vec<(Value, Value)>) -> Value {
    let is_list = items
        .iter()
        .enumerate()
        .all(|(i, (k, _))| k.is_integer() && k.as_i64() == Some(i as i64));
    if is_list {
        items.into_iter().map(|(_, v)| v).collect()
    } else {
        Value::from_pairs(items)
    }
}

/// The entries of an array with PHP-normalised keys.
fn php_entries(v: &Value) -> Vec<(Value, Value)> {
    entries(v)
        .into_iter()
        .map(|(k, v)| (php::array_key(&k), v))
        .collect()
}

/// Charges fuel in proportion to the size of a produced string, so filters that multiply their
/// input cannot outrun the work limit.
fn charge(state: &State, len: usize) -> Result<(), Error> {
    state.consume_fuel((len / 64) as u64)
}

/// Registers every filter and function on the environment.
pub(crate) fn register(env: &mut Environment<'static>) {
    env.add_filter("raw", |v: Value| v);
    env.add_filter("escape", escape);
    env.add_filter("e", escape);
    env.add_filter("lower", |v: Value| {
        Ok::<_, Error>(str_arg(&v, "mb_strtolower")?.to_lowercase())
    });
    env.add_filter("upper", |v: Value| {
        Ok::<_, Error>(str_arg(&v, "mb_strtoupper")?.to_uppercase())
    });
    env.add_filter("title", |v: Value| {
        Ok::<_, Error>(title(&str_arg(&v, "mb_convert_case")?))
    });
    env.add_filter("capitalize", |v: Value| -> Result<String, Error> {
        let st = str_arg(&v, "mb_substr")?;
        let mut chars = st.chars();
        Ok(match chars.next() {
            Some(first) => {
                first.to_uppercase().collect::<String>() + &chars.as_str().to_lowercase()
            }
            None => String::new(),
        })
    });
    env.add_filter("trim", trim);
    env.add_filter("default", |v: Value, d: Option<Value>| {
        if is_empty(&v) {
            d.unwrap_or_else(|| Value::from(""))
        } else {
            v
        }
    });
    env.add_filter("replace", replace);
    env.add_filter("split", split);
    env.add_filter("join", join);
    env.add_filter("length", |v: Value| -> Value {
        match v.kind() {
            ValueKind::Undefined | ValueKind::None => Value::from(0),
            ValueKind::Seq | ValueKind::Map | ValueKind::Iterable => Value::from(entries(&v).len()),
            _ => Value::from(s(&v).chars().count()),
        }
    });
    env.add_filter("keys", |v: Value| -> Value {
        php_entries(&v).into_iter().map(|(k, _)| k).collect()
    });
    env.add_filter("first", |v: Value| first_last(&v, true));
    env.add_filter("last", |v: Value| first_last(&v, false));
    env.add_filter("merge", merge);
    env.add_filter("slice", |v: Value, args: Rest<Value>| {
        slice(
            &v,
            &arg(&args, 0),
            &arg(&args, 1),
            runtime_truthy(&arg(&args, 2)),
        )
    });
    env.add_filter("sort", sort);
    env.add_filter("reverse", |v: Value, preserve: Option<Value>| -> Value {
        if is_array(&v) {
            let preserve = preserve.is_some_and(|p| runtime_truthy(&p));
            let items: Vec<_> = php_entries(&v).into_iter().rev().collect();
            from_entries(renumber(items, preserve))
        } else {
            Value::from(s(&v).chars().rev().collect::<String>())
        }
    });
    env.add_filter("round", |v: Value, args: Rest<Value>| -> Result<Value, Error> {
        let precision = if is_null(&arg(&args, 0)) { 0 } else { php::to_num(&arg(&args, 0))?.as_int() };
        let method = if is_null(&arg(&args, 1)) { "common".to_string() } else { s(&arg(&args, 1)) };
        let x = php::to_float_cast(&v);
        let r = match method.as_str() {
            "common" => php_round(x, precision),
            "ceil" | "floor" => {
                // Twig computes `10 ** $precision` with the precision as given (floats too).
                let p = 10f64.powf(php::to_float_cast(&arg(&args, 0)).clamp(-400.0, 400.0));
                if method == "ceil" { (x * p).ceil() / p } else { (x * p).floor() / p }
            }
            _ => return Err(fail("The round filter only supports the \"common\", \"ceil\", and \"floor\" methods.")),
        };
        Ok(Value::from(r))
    });
    env.add_filter("abs", |v: Value| -> Result<Value, Error> {
        Ok(match php::to_num_param(&v, "abs")? {
            Num::I(i) => i
                .checked_abs()
                .map_or(Value::from((i as f64).abs()), Value::from),
            Num::F(f) => Value::from(f.abs()),
        })
    });
    env.add_filter(
        "number_format",
        |v: Value, args: Rest<Value>| -> Result<String, Error> {
            let decimals = if is_null(&arg(&args, 0)) {
                0
            } else {
                php::to_num(&arg(&args, 0))?.as_int()
            };
            let point = if is_null(&arg(&args, 1)) {
                ".".to_string()
            } else {
                s(&arg(&args, 1))
            };
            let sep = if is_null(&arg(&args, 2)) {
                ",".to_string()
            } else {
                s(&arg(&args, 2))
            };
            Ok(number_format(
                php::to_float_cast(&v),
                decimals,
                &point,
                &sep,
            ))
        },
    );
    env.add_filter(
        "format",
        |state: &State, v: Value, args: Rest<Value>| -> Result<String, Error> {
            let out = sprintf(&str_arg(&v, "sprintf")?, &args)?;
            charge(state, out.len())?;
            Ok(out)
        },
    );
    // Twig: whitespace between tags removed, then the whole trimmed.
    env.add_filter("spaceless", |v: Value| -> Result<String, Error> {
        let text = str_arg(&v, "preg_replace")?;
        let re = regex::Regex::new(r">\s+<").map_err(|e| fail(e.to_string()))?;
        Ok(re
            .replace_all(&text, "><")
            .trim_matches([' ', '\t', '\n', '\r', '\0', '\x0B'])
            .to_string())
    });
    env.add_filter("striptags", |v: Value| {
        Ok::<_, Error>(strip_tags(&str_arg(&v, "strip_tags")?))
    });
    // Twig pre-escapes the input of nl2br and spaceless for HTML (even with autoescape off)
    // unless it is already HTML-safe; the translator inserts that `escape`.
    env.add_filter("nl2br", |v: Value| -> Result<String, Error> {
        if is_array(&v) {
            return Err(fail(
                "nl2br(): Argument #1 ($string) must be of type string, array given",
            ));
        }
        Ok(nl2br(&s(&v)))
    });
    env.add_filter("url_encode", |v: Value| {
        if is_array(&v) {
            http_build_query(&v)
        } else {
            rawurlencode(&s(&v))
        }
    });
    env.add_filter("url_decode", |v: Value| {
        cerb_str(&v).map(|t| rawurldecode(&t)).unwrap_or_default()
    });
    env.add_filter(
        "json_encode",
        |v: Value, flags: Option<Value>| -> Result<Value, Error> {
            let flags = flags
                .map(|f| php::to_num(&f).map(Num::as_int))
                .transpose()?
                .unwrap_or(0);
            let mut out = String::new();
            // PHP's json_encode returns false (printed as nothing) when it cannot encode.
            Ok(match json::encode(&v, flags, 0, &mut out) {
                Ok(()) => Value::from(out),
                Err(_) => Value::from(false),
            })
        },
    );
    env.add_filter("json_pretty", |v: Value| -> Result<String, Error> {
        let Some(text) = cerb_str(&v) else {
            return Ok(String::new());
        };
        let decoded = json::decode(&text);
        let mut out = String::new();
        match json::encode(
            &decoded,
            json::PRETTY_PRINT | json::UNESCAPED_SLASHES,
            0,
            &mut out,
        ) {
            Ok(()) => Ok(out),
            Err(_) => Ok(String::new()),
        }
    });
    // Cerb's own filters return "" for anything that is not a string.
    env.add_filter("base64_encode", |v: Value| {
        cerb_str(&v)
            .map(|t| base64::engine::general_purpose::STANDARD.encode(t))
            .unwrap_or_default()
    });
    env.add_filter("base64_decode", |v: Value| {
        cerb_str(&v).map(|t| base64_decode(&t)).unwrap_or_default()
    });
    env.add_filter("md5", |v: Value| {
        cerb_str(&v)
            .map(|t| hex::encode(md5::Md5::digest(t.as_bytes())))
            .unwrap_or_default()
    });
    env.add_filter("sha1", |v: Value| {
        cerb_str(&v)
            .map(|t| hex::encode(sha1::Sha1::digest(t.as_bytes())))
            .unwrap_or_default()
    });
    env.add_filter(
        "hash_hmac",
        |v: Value, key: Option<Value>, algo: Option<Value>| -> Result<String, Error> {
            let key = key.unwrap_or_else(|| Value::from(""));
            let algo = algo.unwrap_or_else(|| Value::from("sha256"));
            match (cerb_str(&v), cerb_str(&key), cerb_str(&algo)) {
                (Some(t), Some(k), Some(a)) if !t.is_empty() && t != "0" => {
                    hmac_hex(&a.to_lowercase(), k.as_bytes(), t.as_bytes())
                }
                _ => Ok(String::new()),
            }
        },
    );
    env.add_filter("truncate", truncate);
    env.add_filter(
        "regexp",
        |v: Value, pattern: Value, group: Option<Value>| -> Result<String, Error> {
            let Ok(re) = compile_pcre(&s(&pattern)) else {
                return Ok(String::new());
            };
            let group = group.map(|g| s(&g)).unwrap_or_else(|| "0".into());
            let Some(text) = cerb_str(&v) else {
                return Ok(String::new());
            };
            let Some(caps) = re.captures(&text) else {
                return Ok(String::new());
            };
            let m = match group.parse::<usize>() {
                Ok(i) => caps.get(i),
                Err(_) => caps.name(&group),
            };
            Ok(m.map(|m| m.as_str().to_string()).unwrap_or_default())
        },
    );
    env.add_filter(
        "batch",
        |state: &State, v: Value, size: Value, fill: Option<Value>| -> Result<Value, Error> {
            if !is_array(&v) {
                return Err(fail(format!(
                    "The \"batch\" filter expects an array or \"Traversable\", got \"{}\".",
                    php::php_type(&v)
                )));
            }
            let size = php::to_num(&size)?.as_f64().ceil();
            if size.is_nan() || size < 1.0 {
                return Err(fail("Argument #2 ($length) must be greater than 0"));
            }
            let size = size.min(1e9) as usize;
            // Padding with `fill` creates up to `size` items: pay for them first.
            if fill.as_ref().is_some_and(|f| !is_null(f)) {
                state.consume_fuel(size as u64)?;
            }
            let items = php_entries(&v);
            let mut out: Vec<Value> = Vec::new();
            for chunk in items.chunks(size) {
                let mut chunk = chunk.to_vec();
                if let Some(fill) = &fill
                    && !is_null(fill)
                {
                    let mut next = chunk
                        .iter()
                        .filter_map(|(k, _)| k.as_i64())
                        .max()
                        .map_or(0, |m| m.saturating_add(1));
                    while chunk.len() < size {
                        chunk.push((Value::from(next), fill.clone()));
                        next = next.saturating_add(1);
                    }
                }
                out.push(from_entries(chunk));
            }
            Ok(Value::from(out))
        },
    );
    env.add_filter(
        "date",
        |v: Value, args: Rest<Value>| -> Result<String, Error> {
            let format = if is_null(&arg(&args, 0)) {
                "F j, Y H:i".to_string()
            } else {
                s(&arg(&args, 0))
            };
            crate::date::format_value(&v, &format, &arg(&args, 1))
        },
    );

    env.add_function("range", range);
    env.add_function("min", |args: Rest<Value>| min_max(&args, Ordering::Less));
    env.add_function("max", |args: Rest<Value>| min_max(&args, Ordering::Greater));
    env.add_function(
        "cycle",
        |values: Value, pos: Value| -> Result<Value, Error> {
            let items = php_entries(&values);
            if items.is_empty() {
                return Ok(values);
            }
            let p = php::to_num(&pos)?.as_int().rem_euclid(items.len() as i64);
            Ok(items[p as usize].1.clone())
        },
    );
    env.add_function(
        "date",
        |v: Option<Value>, tz: Option<Value>| -> Result<Value, Error> {
            crate::date::timestamp(
                &v.unwrap_or(Value::UNDEFINED),
                &tz.unwrap_or(Value::UNDEFINED),
            )
            .map(Value::from)
        },
    );
    env.add_function(
        "random",
        |v: Option<Value>, max: Option<Value>| -> Result<Value, Error> { random(v, max) },
    );
    env.add_function("json_decode", |v: Value| -> Result<Value, Error> {
        if is_array(&v) {
            return Err(fail(
                "json_decode(): Argument #1 ($json) must be of type string, array given",
            ));
        }
        Ok(json::decode(&s(&v)))
    });
    env.add_function("dict_set", dict_set);
    env.add_function(
        "random_string",
        |args: Rest<Value>| -> Result<String, Error> {
            use rand::Rng as _;
            // Cerb: `intClamp($length, 1, 255)` (an `intval`, so null and other strings are 0,
            // arrays 0 or 1), then `generatePassword`, whose alphabet has no I, O or 0. `Rest`
            // because an `Option` would read an explicit null as the default 8.
            let n = args
                .first()
                .map(|l| match php::to_num(l) {
                    Ok(n) => php::int_operand(l, n),
                    Err(_) => php::to_float_cast(l) as i64,
                })
                .unwrap_or(8)
                .clamp(1, 255) as usize;
            // The thread RNG is a CSPRNG (ChaCha): random strings serve as bearer secrets (webhook
            // guids), where Cerb's mt_rand would be guessable (docs/semantics.md, Decision 5).
            let mut rng = rand::rng();
            Ok((0..n)
                .map(|_| RANDOM_ALPHABET[rng.random_range(0..RANDOM_ALPHABET.len())] as char)
                .collect())
        },
    );
    env.add_function("attribute", |obj: Value, key: Value| {
        crate::runtime::get(&obj, &key)
    });
    cerb_array_functions(env);
}

/// Cerb's `array_*` helpers and friends (`_DevblocksTwigExtensions`): anything that is not an
/// array gives null, as in Cerb.
fn cerb_array_functions(env: &mut Environment<'static>) {
    // Cerb treats a null argument of array_diff/array_intersect as an empty array.
    fn arr_or_null(v: &Value) -> Option<Vec<(Value, Value)>> {
        if is_array(v) {
            Some(php_entries(v))
        } else if is_null(v) {
            Some(Vec::new())
        } else {
            None
        }
    }
    env.add_function("array_values", |v: Value| -> Value {
        if !is_array(&v) {
            return Value::from(());
        }
        entries(&v).into_iter().map(|(_, x)| x).collect()
    });
    env.add_function("array_unique", |v: Value| -> Value {
        if !is_array(&v) {
            return Value::from(());
        }
        // PHP compares the string forms (SORT_STRING) and keeps the first of each.
        let mut seen = std::collections::HashSet::new();
        let kept: Vec<_> = php_entries(&v)
            .into_iter()
            .filter(|(_, x)| seen.insert(s(x)))
            .collect();
        from_entries(kept)
    });
    env.add_function("array_diff", |a: Value, b: Value| -> Value {
        let (Some(a), Some(b)) = (arr_or_null(&a), arr_or_null(&b)) else {
            return Value::from(());
        };
        let other: std::collections::HashSet<String> = b.iter().map(|(_, x)| s(x)).collect();
        from_entries(
            a.into_iter()
                .filter(|(_, x)| !other.contains(&s(x)))
                .collect(),
        )
    });
    env.add_function("array_intersect", |a: Value, b: Value| -> Value {
        let (Some(a), Some(b)) = (arr_or_null(&a), arr_or_null(&b)) else {
            return Value::from(());
        };
        let other: std::collections::HashSet<String> = b.iter().map(|(_, x)| s(x)).collect();
        from_entries(
            a.into_iter()
                .filter(|(_, x)| other.contains(&s(x)))
                .collect(),
        )
    });
    env.add_function("array_sort_keys", |v: Value| -> Value {
        if !is_array(&v) {
            return Value::from(());
        }
        let mut items = php_entries(&v);
        items.sort_by(|a, b| php::compare(&a.0, &b.0));
        from_entries(items)
    });
    env.add_function("array_combine", |keys: Value, values: Value| -> Result<Value, Error> {
        if !is_array(&keys) || !is_array(&values) {
            return Ok(Value::from(()));
        }
        let (k, v) = (entries(&keys), entries(&values));
        if k.len() != v.len() {
            return Err(fail(
                "array_combine(): Argument #1 ($keys) and argument #2 ($values) must have the same number of elements",
            ));
        }
        let mut out: indexmap::IndexMap<Value, Value> = indexmap::IndexMap::new();
        for ((_, key), (_, value)) in k.into_iter().zip(v) {
            out.insert(php::array_key(&Value::from(s(&key))), value);
        }
        Ok(from_entries(out.into_iter().collect()))
    });
    env.add_function(
        "array_column",
        |v: Value, column: Value, index: Option<Value>| -> Value {
            if !is_array(&v) || column.kind() != ValueKind::String {
                return Value::from(());
            }
            let index = index.filter(|i| !is_null(i));
            let mut out: Vec<(Value, Value)> = Vec::new();
            let mut next = 0i64;
            for (_, row) in entries(&v) {
                if !is_array(&row) {
                    continue;
                }
                let cell = crate::runtime::get(&row, &column);
                if cell.is_undefined() {
                    continue;
                }
                let key = index
                    .as_ref()
                    .map(|i| crate::runtime::get(&row, i))
                    .filter(|k| !k.is_undefined() && !is_null(k));
                match key {
                    Some(k) => {
                        let k = php::array_key(&k);
                        if let Some(n) = k.as_i64().filter(|_| k.is_integer()) {
                            next = next.max(n.saturating_add(1));
                        }
                        match out.iter().position(|(x, _)| *x == k) {
                            Some(p) => out[p].1 = cell,
                            None => out.push((k, cell)),
                        }
                    }
                    None => {
                        out.push((Value::from(next), cell));
                        next = next.saturating_add(1);
                    }
                }
            }
            from_entries(out)
        },
    );
    env.add_function("validate_number", |v: Value| match v.kind() {
        ValueKind::Number => true,
        ValueKind::String => php::numeric_str(v.as_str().unwrap_or("")).is_some(),
        _ => false,
    });
    env.add_function("shuffle", |v: Value| -> Value {
        use rand::seq::SliceRandom as _;
        if !is_array(&v) {
            return Value::from(false);
        }
        let mut items: Vec<Value> = entries(&v).into_iter().map(|(_, x)| x).collect();
        items.shuffle(&mut rand::rng());
        Value::from(items)
    });
    env.add_function(
        "regexp_match_all",
        |pattern: Value, text: Value, group: Option<Value>| -> Value {
            let group = group
                .map(|g| php::to_num(&g).map(Num::as_int).unwrap_or(0))
                .unwrap_or(0);
            let Ok(re) = compile_pcre(&s(&pattern)) else {
                return Value::from(Vec::<Value>::new());
            };
            let text = s(&text);
            let names: Vec<Option<&str>> = re.capture_names().collect();
            let mut columns: Vec<Vec<Value>> = vec![Vec::new(); names.len()];
            for caps in re.captures_iter(&text) {
                for (i, col) in columns.iter_mut().enumerate() {
                    col.push(Value::from(caps.get(i).map_or("", |m| m.as_str())));
                }
            }
            if group == 0 {
                // PREG_PATTERN_ORDER: named groups appear under their name and their number.
                let mut out: Vec<(Value, Value)> = Vec::new();
                for (i, col) in columns.into_iter().enumerate() {
                    if let Some(Some(name)) = names.get(i) {
                        out.push((Value::from(*name), Value::from(col.clone())));
                    }
                    out.push((Value::from(i as i64), Value::from(col)));
                }
                return from_entries(out);
            }
            columns
                .into_iter()
                .nth(group as usize)
                .map(Value::from)
                .unwrap_or_else(|| Value::from(Vec::<Value>::new()))
        },
    );
    env.add_function(
        "jsonpath_set",
        |var: Value, path: Value, val: Value| -> Value {
            // Cerb: `a.b[]` appends under b; missing levels become arrays.
            fn set(node: Value, parts: &[String], val: Value) -> Value {
                let Some((part, rest)) = parts.split_first() else {
                    return val;
                };
                let (name, append) = match part.strip_suffix("[]") {
                    Some(n) => (n.trim_end_matches(['[', ']']).to_string(), true),
                    None => (part.clone(), false),
                };
                let mut items = if is_array(&node) {
                    php_entries(&node)
                } else {
                    Vec::new()
                };
                let key = php::array_key(&Value::from(name.as_str()));
                let pos = match items.iter().position(|(k, _)| *k == key) {
                    Some(p) => p,
                    None => {
                        items.push((key, Value::from(Vec::<Value>::new())));
                        items.len() - 1
                    }
                };
                let child = items[pos].1.clone();
                items[pos].1 = if append {
                    let mut list = if is_array(&child) {
                        php_entries(&child)
                    } else {
                        Vec::new()
                    };
                    let next = list
                        .iter()
                        .filter_map(|(k, _)| k.as_i64())
                        .max()
                        .map_or(0, |m| m.saturating_add(1));
                    list.push((Value::from(next), set(Value::from(()), rest, val)));
                    from_entries(list)
                } else {
                    set(child, rest, val)
                };
                from_entries(items)
            }
            let parts: Vec<String> = s(&path).split('.').map(str::to_string).collect();
            let start = if is_empty(&var) {
                Value::from(Vec::<Value>::new())
            } else {
                var
            };
            set(start, &parts, val)
        },
    );
}

/// The string a Cerb filter works on: only strings qualify (Cerb returns "" otherwise).
fn cerb_str(v: &Value) -> Option<String> {
    (v.kind() == ValueKind::String).then(|| v.as_str().unwrap_or("").to_string())
}

/// PHP's non-strict `base64_decode`: characters outside the alphabet are skipped.
fn base64_decode(text: &str) -> String {
    let clean: String = text
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '+' || *c == '/')
        .collect();
    let usable = if clean.len() % 4 == 1 {
        &clean[..clean.len() - 1]
    } else {
        &clean[..]
    };
    let bytes = base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(usable.as_bytes())
        .unwrap_or_default();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// A PHP `string` parameter: scalars convert, arrays are a TypeError (as in PHP 8).
fn str_arg(v: &Value, function: &str) -> Result<String, Error> {
    if is_array(v) {
        return Err(fail(format!(
            "{function}(): Argument #1 ($string) must be of type string, array given"
        )));
    }
    Ok(s(v))
}

fn runtime_truthy(v: &Value) -> bool {
    crate::runtime::truthy(v)
}

/// Twig's `escape` with the html (default), js, css, url and html_attr strategies.
fn escape(v: Value, strategy: Option<Value>) -> Result<Value, Error> {
    let strategy = strategy.map(|st| s(&st)).unwrap_or_else(|| "html".into());
    if !matches!(
        strategy.as_str(),
        "html" | "js" | "css" | "url" | "html_attr"
    ) {
        return Err(fail(format!(
            "Invalid escaping strategy \"{strategy}\" (valid ones: html, js, url, css, html_attr)."
        )));
    }
    // Twig returns anything that is not a string unchanged.
    if v.kind() != ValueKind::String {
        return Ok(v);
    }
    let text = s(&v);
    let mut out = String::with_capacity(text.len());
    match strategy.as_str() {
        "html" => {
            for c in text.chars() {
                match c {
                    '&' => out.push_str("&amp;"),
                    '<' => out.push_str("&lt;"),
                    '>' => out.push_str("&gt;"),
                    '"' => out.push_str("&quot;"),
                    '\'' => out.push_str("&#039;"),
                    c => out.push(c),
                }
            }
        }
        "js" => {
            for c in text.chars() {
                match c {
                    c if c.is_ascii_alphanumeric() || matches!(c, ',' | '.' | '_') => out.push(c),
                    '\\' => out.push_str("\\\\"),
                    '/' => out.push_str("\\/"),
                    '\x08' => out.push_str("\\b"),
                    '\x0C' => out.push_str("\\f"),
                    '\n' => out.push_str("\\n"),
                    '\r' => out.push_str("\\r"),
                    '\t' => out.push_str("\\t"),
                    c => {
                        let mut buf = [0u16; 2];
                        for unit in c.encode_utf16(&mut buf) {
                            let _ = write!(out, "\\u{:04X}", unit);
                        }
                    }
                }
            }
        }
        "css" => {
            for c in text.chars() {
                if c.is_ascii_alphanumeric() {
                    out.push(c);
                } else {
                    let _ = write!(out, "\\{:X} ", c as u32);
                }
            }
        }
        "url" => out = rawurlencode(&text),
        "html_attr" => {
            for c in text.chars() {
                let o = c as u32;
                match c {
                    c if c.is_ascii_alphanumeric() || matches!(c, ',' | '.' | '-' | '_') => {
                        out.push(c)
                    }
                    '\t' | '\n' | '\r' => {
                        let _ = write!(out, "&#x{o:02X};");
                    }
                    _ if o <= 0x1f || o == 0x7f => out.push_str("&#xFFFD;"),
                    '"' => out.push_str("&quot;"),
                    '&' => out.push_str("&amp;"),
                    '<' => out.push_str("&lt;"),
                    '>' => out.push_str("&gt;"),
                    _ if o < 0x80 => {
                        let _ = write!(out, "&#x{o:02X};");
                    }
                    _ => {
                        let _ = write!(out, "&#x{o:04X};");
                    }
                }
            }
        }
        other => {
            return Err(fail(format!(
                "Invalid escaping strategy \"{other}\" (valid ones: html, js, url, css, html_attr)."
            )));
        }
    }
    Ok(Value::from(out))
}

/// `mb_convert_case(…, MB_CASE_TITLE)` as in PHP 8.2: a character is title-cased unless the last
/// character before it that is not case-ignorable (apostrophes, periods, colons, combining marks,
/// format characters such as U+200B, modifier letters) was cased; then it is lowered. Digits and
/// uncased letters (CJK, for one) therefore start a new word.
fn title(text: &str) -> String {
    use std::sync::LazyLock;
    static IGNORABLE: LazyLock<regex::Regex> =
        LazyLock::new(|| regex::Regex::new(r"^\p{Case_Ignorable}$").expect("valid class"));
    static CASED: LazyLock<regex::Regex> =
        LazyLock::new(|| regex::Regex::new(r"^\p{Cased}$").expect("valid class"));
    let mut out = String::with_capacity(text.len());
    let mut in_word = false;
    let mut buf = [0u8; 4];
    for c in text.chars() {
        if in_word {
            out.extend(c.to_lowercase());
        } else {
            title_case(c, &mut out);
        }
        let one = c.encode_utf8(&mut buf);
        if c.is_ascii() {
            if !matches!(c, '\'' | '.' | ':' | '^' | '`') {
                in_word = c.is_ascii_alphabetic();
            }
        } else if !IGNORABLE.is_match(one) {
            in_word = CASED.is_match(one);
        }
    }
    out
}

/// Unicode title case of one character (differs from upper case for digraphs and ligatures).
fn title_case(c: char, out: &mut String) {
    let t = match c {
        'ß' => "Ss",
        '\u{01C4}'..='\u{01C6}' => "\u{01C5}",
        '\u{01C7}'..='\u{01C9}' => "\u{01C8}",
        '\u{01CA}'..='\u{01CC}' => "\u{01CB}",
        '\u{01F1}'..='\u{01F3}' => "\u{01F2}",
        '\u{FB00}' => "Ff",
        '\u{FB01}' => "Fi",
        '\u{FB02}' => "Fl",
        '\u{FB03}' => "Ffi",
        '\u{FB04}' => "Ffl",
        '\u{FB05}' | '\u{FB06}' => "St",
        '\u{0587}' => "\u{0535}\u{0582}",
        _ => {
            out.extend(c.to_uppercase());
            return;
        }
    };
    out.push_str(t);
}

/// PHP `trim` with an optional character mask (`a..z` ranges) and Twig's side argument.
fn trim(v: Value, mask: Option<Value>, side: Option<Value>) -> Result<String, Error> {
    let text = str_arg(&v, "trim")?;
    // PHP trims bytes: the mask is a set of bytes with `a..z` ranges.
    let mut set = [false; 256];
    match mask.filter(|m| !is_null(m)) {
        None => {
            for b in [b' ', b'\t', b'\n', b'\r', 0, 0x0B] {
                set[b as usize] = true;
            }
        }
        Some(m) => {
            let m = s(&m).into_bytes();
            let mut i = 0;
            while i < m.len() {
                if i + 3 < m.len() && m[i + 1] == b'.' && m[i + 2] == b'.' && m[i + 3] >= m[i] {
                    for b in m[i]..=m[i + 3] {
                        set[b as usize] = true;
                    }
                    i += 4;
                } else {
                    set[m[i] as usize] = true;
                    i += 1;
                }
            }
        }
    }
    let side = side
        .filter(|x| !is_null(x))
        .map(|x| s(&x))
        .unwrap_or_else(|| "both".into());
    let bytes = text.as_bytes();
    let keep = |b: &u8| !set[*b as usize];
    let start = bytes.iter().position(keep).unwrap_or(bytes.len());
    let end = bytes.iter().rposition(keep).map_or(0, |p| p + 1);
    let (from, to) = match side.as_str() {
        "both" => (start, end.max(start)),
        "left" => (start, bytes.len()),
        "right" => (0, end),
        _ => {
            return Err(fail(
                "Trimming side must be \"left\", \"right\" or \"both\".",
            ));
        }
    };
    Ok(String::from_utf8_lossy(&bytes[from..to]).into_owned())
}

/// Twig's `replace`: PHP `strtr` with a hash (longest key first at each position).
fn replace(state: &State, v: Value, from: Value) -> Result<String, Error> {
    if !is_array(&from) {
        return Err(fail(format!(
            "The \"replace\" filter expects an array or \"Traversable\" as replace values, got \"{}\".",
            php::php_type(&from)
        )));
    }
    let text = str_arg(&v, "strtr")?;
    let mut pairs: Vec<(String, String)> = php_entries(&from)
        .iter()
        .map(|(k, v)| (s(k), s(v)))
        .filter(|(k, _)| !k.is_empty())
        .collect();
    pairs.sort_by_key(|p| std::cmp::Reverse(p.0.len()));
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    'outer: while i < text.len() {
        for (k, r) in &pairs {
            if text[i..].starts_with(k.as_str()) {
                out.push_str(r);
                i += k.len();
                continue 'outer;
            }
        }
        let c = text[i..].chars().next().unwrap_or(' ');
        out.push(c);
        i += c.len_utf8();
    }
    charge(state, out.len())?;
    Ok(out)
}

/// Twig's `split`: PHP `explode` with a limit; an empty delimiter cuts into chunks of `limit`.
fn split(v: Value, delim: Value, limit: Option<Value>) -> Result<Value, Error> {
    let text = str_arg(&v, "explode")?;
    let delim = s(&delim);
    let limit = limit
        .filter(|l| !is_null(l))
        .map(|l| php::to_num(&l).map(Num::as_int))
        .transpose()?;
    if delim.is_empty() {
        let chars: Vec<char> = text.chars().collect();
        let size = limit.unwrap_or(1).max(1) as usize;
        // Twig returns the value itself (not its string) when it is shorter than the chunk.
        if size > 1 && chars.len() < size {
            return Ok(Value::from(vec![if is_null(&v) {
                Value::from("")
            } else {
                v
            }]));
        }
        if chars.is_empty() {
            return Ok(Value::from(vec![Value::from("")]));
        }
        return Ok(chars
            .chunks(size)
            .map(|c| Value::from(c.iter().collect::<String>()))
            .collect());
    }
    let parts: Vec<&str> = text.split(delim.as_str()).collect();
    let out: Vec<String> = match limit {
        None => parts.iter().map(|p| p.to_string()).collect(),
        Some(l) if l > 0 => text
            .splitn(l as usize, delim.as_str())
            .map(str::to_string)
            .collect(),
        Some(0) => vec![text.clone()],
        Some(l) => {
            let keep = parts.len() as i64 + l;
            parts
                .iter()
                .take(keep.max(0) as usize)
                .map(|p| p.to_string())
                .collect()
        }
    };
    Ok(out.into_iter().map(Value::from).collect())
}

fn join(v: Value, glue: Option<Value>, and: Option<Value>) -> String {
    let items: Vec<String> = if is_array(&v) {
        entries(&v).iter().map(|(_, x)| s(x)).collect()
    } else if is_null(&v) {
        Vec::new()
    } else {
        vec![s(&v)]
    };
    let glue = glue
        .filter(|g| !is_null(g))
        .map(|g| s(&g))
        .unwrap_or_default();
    let and = and.filter(|a| !is_null(a)).map(|a| s(&a));
    match and {
        Some(and) if and != glue && items.len() > 1 => {
            format!(
                "{}{}{}",
                items[..items.len() - 1].join(&glue),
                and,
                items[items.len() - 1]
            )
        }
        _ => items.join(&glue),
    }
}

fn first_last(v: &Value, first: bool) -> Value {
    if is_array(v) {
        let items = entries(v);
        let item = if first {
            items.into_iter().next()
        } else {
            items.into_iter().last()
        };
        item.map_or(Value::from(false), |(_, x)| x)
    } else {
        let text = s(v);
        let c = if first {
            text.chars().next()
        } else {
            text.chars().last()
        };
        Value::from(c.map(String::from).unwrap_or_default())
    }
}

/// PHP `array_merge`: integer keys are appended and renumbered, string keys overwrite.
fn merge(a: Value, b: Value) -> Result<Value, Error> {
    for (v, which) in [(&a, "first"), (&b, "second")] {
        if !is_array(v) {
            return Err(fail(format!(
                "The merge filter only works with arrays or \"Traversable\", got \"{}\" as {which} argument.",
                php::php_type(v)
            )));
        }
    }
    let mut out: indexmap::IndexMap<Value, Value> = indexmap::IndexMap::new();
    let mut next = 0i64;
    for (k, v) in php_entries(&a).into_iter().chain(php_entries(&b)) {
        if k.is_integer() {
            out.insert(Value::from(next), v);
            next = next.saturating_add(1);
        } else {
            out.insert(k, v);
        }
    }
    Ok(from_entries(out.into_iter().collect()))
}

/// Renumbers integer keys from 0 unless keys are preserved (string keys always survive).
fn renumber(items: Vec<(Value, Value)>, preserve: bool) -> Vec<(Value, Value)> {
    if preserve {
        return items;
    }
    let mut next = 0i64;
    items
        .into_iter()
        .map(|(k, v)| {
            if k.is_integer() {
                next = next.saturating_add(1);
                (Value::from(next - 1), v)
            } else {
                (k, v)
            }
        })
        .collect()
}

/// Twig's `slice`: `array_slice` on arrays, `mb_substr` on anything else.
pub(crate) fn slice(v: &Value, start: &Value, len: &Value, preserve: bool) -> Result<Value, Error> {
    let start = php::to_num(start)?.as_int();
    let len = if is_null(len) {
        None
    } else {
        Some(php::to_num(len)?.as_int())
    };
    if is_array(v) {
        let items = php_entries(v);
        let (a, b) = slice_bounds(items.len(), start, len);
        let picked = items[a..b].to_vec();
        return Ok(from_entries(renumber(picked, preserve)));
    }
    let chars: Vec<char> = s(v).chars().collect();
    let (a, b) = slice_bounds(chars.len(), start, len);
    Ok(Value::from(chars[a..b].iter().collect::<String>()))
}

/// PHP's offset/length rules shared by `array_slice` and `mb_substr`.
fn slice_bounds(n: usize, start: i64, len: Option<i64>) -> (usize, usize) {
    let n = n as i64;
    let a = if start < 0 {
        (n + start).max(0)
    } else {
        start.min(n)
    };
    let b = match len {
        None => n,
        Some(l) if l < 0 => (n + l).max(a),
        Some(l) => a.saturating_add(l).min(n),
    };
    (a as usize, b.max(a) as usize)
}

/// Twig's `sort` without an arrow: PHP `asort` (keys kept, stable, PHP 8 comparison).
fn sort(v: Value) -> Result<Value, Error> {
    if !is_array(&v) {
        return Err(fail(format!(
            "The sort filter only works with arrays or \"Traversable\", got \"{}\".",
            php::php_type(&v)
        )));
    }
    let mut items = php_entries(&v);
    items.sort_by(|a, b| php::compare(&a.1, &b.1));
    Ok(from_entries(items))
}

/// PHP 8's `round()` (half away from zero, with PHP's pre-rounding to 15 significant digits).
pub(crate) fn php_round(x: f64, places: i64) -> f64 {
    if !x.is_finite() || x == 0.0 {
        return x;
    }
    let places = places.clamp(-308, 308);
    // Where the requested places lie beyond the 15 digits a double holds, PHP returns the value
    // as it is (`_php_math_round`: "rounding it is pointless").
    let precision_places = 14 - x.abs().log10().floor() as i64;
    if !(precision_places > places && precision_places - 15 < places) {
        let scaled = if places >= 0 {
            x * 10f64.powi(places as i32)
        } else {
            x / 10f64.powi((-places) as i32)
        };
        if scaled.abs() >= 1e15 {
            return x;
        }
    }
    let sci = format!("{:.14e}", x.abs());
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i64 = exp.parse().unwrap_or(0);
    let digits: Vec<u8> = mantissa
        .bytes()
        .filter(u8::is_ascii_digit)
        .map(|d| d - b'0')
        .collect();
    // Number = 0.d1d2d3… × 10^(exp+1); keep (exp + 1 + places) digits.
    let keep = exp + 1 + places;
    if keep < 0 {
        return 0.0 * x.signum();
    }
    let keep = keep as usize;
    let mut kept: Vec<u8> = digits.iter().take(keep).copied().collect();
    while kept.len() < keep {
        kept.push(0);
    }
    let round_up = digits.get(keep).is_some_and(|d| *d >= 5);
    let mut shift = exp + 1 - keep as i64;
    if round_up {
        let mut i = kept.len();
        loop {
            if i == 0 {
                kept.insert(0, 1);
                break;
            }
            i -= 1;
            if kept[i] == 9 {
                kept[i] = 0;
            } else {
                kept[i] += 1;
                break;
            }
        }
    }
    if kept.is_empty() {
        return 0.0 * x.signum();
    }
    let text: String = kept.iter().map(|d| (d + b'0') as char).collect();
    if shift > 400 {
        shift = 400;
    }
    let r: f64 = format!("{text}e{shift}").parse().unwrap_or(0.0);
    if x < 0.0 { -r } else { r }
}

/// PHP's `number_format`.
fn number_format(x: f64, decimals: i64, point: &str, sep: &str) -> String {
    let decimals = decimals.clamp(0, 100) as usize;
    let r = php_round(x, decimals as i64);
    if !r.is_finite() {
        return php::float_to_string(r);
    }
    let fixed = format!("{:.*}", decimals, r.abs());
    let (int_part, frac) = fixed.split_once('.').unwrap_or((&fixed, ""));
    let mut grouped = String::new();
    for (i, c) in int_part.chars().enumerate() {
        if i > 0 && (int_part.len() - i) % 3 == 0 {
            grouped.push_str(sep);
        }
        grouped.push(c);
    }
    let is_zero = fixed.bytes().all(|b| b == b'0' || b == b'.');
    let mut out = String::new();
    if r < 0.0 && !is_zero {
        out.push('-');
    }
    out.push_str(&grouped);
    if decimals > 0 {
        out.push_str(point);
        out.push_str(frac);
    }
    out
}

/// PHP's `sprintf` for `%%`, `%s`, `%d`, `%u`, `%f`/`%F`, `%e`, `%x`/`%X`, `%o`, `%b`, `%c`, with
/// flags (`-`, `+`, `0`, space, `'c` padding), width, precision and `n$` argument numbers.
pub(crate) fn sprintf(format: &str, args: &[Value]) -> Result<String, Error> {
    let mut out = String::new();
    let mut chars = format.chars().peekable();
    let mut next_arg = 0usize;
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        if chars.peek() == Some(&'%') {
            chars.next();
            out.push('%');
            continue;
        }
        // argnum$
        let mut spec = String::new();
        while let Some(&d) = chars.peek() {
            if d.is_ascii_digit() {
                spec.push(d);
                chars.next();
            } else {
                break;
            }
        }
        let mut argnum = None;
        if chars.peek() == Some(&'$') && !spec.is_empty() {
            chars.next();
            argnum = spec.parse::<usize>().ok().filter(|n| *n > 0).map(|n| n - 1);
            if argnum.is_none() {
                return Err(fail(
                    "Argument number specifier must be greater than zero and less than 2147483647",
                ));
            }
            spec.clear();
        }
        let mut left = false;
        let mut plus = false;
        let mut pad = ' ';
        // Flags come before width; digits already read are the width unless they start with 0.
        if spec.is_empty() {
            loop {
                match chars.peek() {
                    Some('-') => left = true,
                    Some('+') => plus = true,
                    Some('0') => pad = '0',
                    Some(' ') => pad = ' ',
                    Some('\'') => {
                        chars.next();
                        pad = chars
                            .next()
                            .ok_or_else(|| fail("Missing padding character"))?;
                        continue;
                    }
                    _ => break,
                }
                chars.next();
            }
            while let Some(&d) = chars.peek() {
                if d.is_ascii_digit() {
                    spec.push(d);
                    chars.next();
                } else {
                    break;
                }
            }
        } else if spec.starts_with('0') {
            pad = '0';
        }
        let width: usize = spec.parse().unwrap_or(0).min(10_000);
        let mut precision = None;
        if chars.peek() == Some(&'.') {
            chars.next();
            let mut p = String::new();
            while let Some(&d) = chars.peek() {
                if d.is_ascii_digit() {
                    p.push(d);
                    chars.next();
                } else {
                    break;
                }
            }
            precision = Some(p.parse::<usize>().unwrap_or(0).min(500));
        }
        let conv = chars
            .next()
            .ok_or_else(|| fail("Missing format specifier at end of string"))?;
        let idx = argnum.unwrap_or_else(|| {
            next_arg += 1;
            next_arg - 1
        });
        let Some(a) = args.get(idx) else {
            return Err(fail(format!(
                "{} arguments are required, {} given",
                idx.saturating_add(2),
                args.len() + 1
            )));
        };
        let (body, numeric_neg) = match conv {
            's' => {
                let mut t = s(a);
                if let Some(p) = precision {
                    t = t.chars().take(p).collect();
                }
                (t, false)
            }
            'd' | 'i' => {
                let n = php::to_num(a)?.as_int();
                let mut t = n.unsigned_abs().to_string();
                if n < 0 {
                    t.insert(0, '-');
                } else if plus {
                    t.insert(0, '+');
                }
                (t, n < 0 || plus)
            }
            'u' => (format!("{}", php::to_num(a)?.as_int() as u64), false),
            'f' | 'F' => {
                let f = php::to_num(a)?.as_f64();
                let p = precision.unwrap_or(6);
                let mut t = format!("{:.*}", p, php_round(f, p as i64).abs());
                if f < 0.0 && t.bytes().any(|b| (b'1'..=b'9').contains(&b)) {
                    t.insert(0, '-');
                } else if plus {
                    t.insert(0, '+');
                }
                (t, f < 0.0 || plus)
            }
            'e' | 'E' => {
                let f = php::to_num(a)?.as_f64();
                let p = precision.unwrap_or(6);
                let t = format!("{:.*e}", p, f);
                let (m, e) = t.split_once('e').unwrap_or((&t, "0"));
                let e: i64 = e.parse().unwrap_or(0);
                let mut t = format!("{m}e{}{}", if e < 0 { '-' } else { '+' }, e.abs());
                if conv == 'E' {
                    t = t.to_uppercase();
                }
                if plus && f >= 0.0 {
                    t.insert(0, '+');
                }
                (t, f < 0.0 || plus)
            }
            'x' => (format!("{:x}", php::to_num(a)?.as_int()), false),
            'X' => (format!("{:X}", php::to_num(a)?.as_int()), false),
            'o' => (format!("{:o}", php::to_num(a)?.as_int()), false),
            'b' => (format!("{:b}", php::to_num(a)?.as_int()), false),
            'c' => (
                char::from_u32(php::to_num(a)?.as_int() as u32 & 0xff)
                    .map(String::from)
                    .unwrap_or_default(),
                false,
            ),
            other => return Err(fail(format!("Unknown format specifier \"{other}\""))),
        };
        let len = body.chars().count();
        if len >= width {
            out.push_str(&body);
        } else if left {
            out.push_str(&body);
            let fill = if pad == '0' { ' ' } else { pad };
            out.extend(std::iter::repeat_n(fill, width - len));
        } else if pad == '0' && numeric_neg && matches!(conv, 'd' | 'i' | 'f' | 'F' | 'e' | 'E') {
            let (sign, digits) = body.split_at(1);
            out.push_str(sign);
            out.extend(std::iter::repeat_n('0', width - len));
            out.push_str(digits);
        } else {
            out.extend(std::iter::repeat_n(pad, width - len));
            out.push_str(&body);
        }
    }
    Ok(out)
}

/// PHP's `strip_tags` (no allowed tags): removes tags, comments and PHP blocks, honouring quotes
/// inside tags.
fn strip_tags(text: &str) -> String {
    let b: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c == '<' {
            let next = b.get(i + 1).copied();
            // `<` followed by whitespace is text in PHP's state machine.
            if next.is_none_or(|n| n.is_whitespace()) {
                out.push(c);
                i += 1;
                continue;
            }
            if b[i..].starts_with(&['<', '!', '-', '-']) {
                let mut j = i + 4;
                while j < b.len() && !(b[j] == '>' && j >= 2 && b[j - 1] == '-' && b[j - 2] == '-')
                {
                    j += 1;
                }
                i = j + 1;
                continue;
            }
            let mut j = i + 1;
            let mut quote: Option<char> = None;
            let mut depth = 1;
            while j < b.len() {
                let d = b[j];
                match quote {
                    Some(q) if d == q => quote = None,
                    Some(_) => {}
                    None => match d {
                        '"' | '\'' => quote = Some(d),
                        '<' => depth += 1,
                        '>' => {
                            depth -= 1;
                            if depth == 0 {
                                break;
                            }
                        }
                        _ => {}
                    },
                }
                j += 1;
            }
            i = j + 1;
            continue;
        }
        // PHP's state machine drops NUL bytes everywhere.
        if c != '\0' {
            out.push(c);
        }
        i += 1;
    }
    out
}

/// PHP's `nl2br`: `<br />` before every `\r\n`, `\n\r`, `\n` or `\r`.
fn nl2br(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 16);
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\n' || c == '\r' {
            out.push_str("<br />");
            out.push(c);
            if let Some(&n) = chars.peek()
                && (n == '\n' || n == '\r')
                && n != c
            {
                out.push(n);
                chars.next();
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// PHP's `rawurlencode` (RFC 3986: only `A-Z a-z 0-9 - _ . ~` stay).
pub(crate) fn rawurlencode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// PHP's `rawurldecode` (`%XX` decoded, `+` kept; invalid UTF-8 replaced).
fn rawurldecode(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len()
                && b[i + 1].is_ascii_hexdigit()
                && b[i + 2].is_ascii_hexdigit() =>
            {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("00");
                out.push(u8::from_str_radix(hex, 16).unwrap_or(0));
                i += 2;
            }
            other => out.push(other),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// PHP's `http_build_query($v, '', '&', PHP_QUERY_RFC3986)`.
fn http_build_query(v: &Value) -> String {
    let mut parts = Vec::new();
    build_query(v, None, &mut parts);
    parts.join("&")
}

fn build_query(v: &Value, prefix: Option<&str>, parts: &mut Vec<String>) {
    for (k, val) in php_entries(v) {
        let key = rawurlencode(&s(&k));
        let name = match prefix {
            None => key,
            Some(p) => format!("{p}%5B{key}%5D"),
        };
        match val.kind() {
            ValueKind::Undefined | ValueKind::None => {}
            ValueKind::Seq | ValueKind::Map | ValueKind::Iterable => {
                build_query(&val, Some(&name), parts)
            }
            ValueKind::Bool => parts.push(format!("{name}={}", if val.is_true() { 1 } else { 0 })),
            _ => parts.push(format!("{name}={}", rawurlencode(&s(&val)))),
        }
    }
}

fn hmac_hex(algo: &str, key: &[u8], data: &[u8]) -> Result<String, Error> {
    macro_rules! mac {
        ($t:ty) => {{
            let mut m = <hmac::Hmac<$t>>::new_from_slice(key).map_err(|e| fail(e.to_string()))?;
            m.update(data);
            Ok(hex::encode(m.finalize().into_bytes()))
        }};
    }
    match algo {
        "sha256" => mac!(sha2::Sha256),
        "sha1" => mac!(sha1::Sha1),
        "sha512" => mac!(sha2::Sha512),
        "sha384" => mac!(sha2::Sha384),
        "sha224" => mac!(sha2::Sha224),
        "md5" => mac!(md5::Md5),
        other => Err(fail(format!(
            "hash_hmac(): Argument #1 ($algo) must be a valid cryptographic hashing algorithm, \"{other}\" given"
        ))),
    }
}

/// Cerb's `truncate(length=30, preserve=false, separator='...')` (Twig-extensions' Text).
fn truncate(v: Value, args: Rest<Value>) -> Result<String, Error> {
    let Some(text) = cerb_str(&v) else {
        return Ok(String::new());
    };
    let sep = if arg(&args, 2).is_undefined() {
        "...".to_string()
    } else {
        s(&arg(&args, 2))
    };
    let length_arg = arg(&args, 0);
    if length_arg.is_none() {
        // PHP: `mb_strlen($v) > null` holds for any non-empty string; with preserve the cut is at
        // the first space (`mb_strpos` from offset null = 0), else a null length takes all.
        if text.is_empty() {
            return Ok(text);
        }
        let cut = if runtime_truthy(&arg(&args, 1)) {
            text.find(' ')
        } else {
            None
        };
        return Ok(match cut {
            Some(p) => text[..p].to_string() + &sep,
            None => text + &sep,
        });
    }
    let mut length = if length_arg.is_undefined() {
        30
    } else {
        php::to_num(&length_arg)?.as_int()
    };
    let preserve = runtime_truthy(&arg(&args, 1));
    let chars: Vec<char> = text.chars().collect();
    let n = chars.len() as i64;
    if n <= length {
        return Ok(text);
    }
    if preserve {
        // mb_strpos($value, ' ', $length): the offset must lie inside the string.
        if length > n || length < -n {
            return Err(fail(
                "mb_strpos(): Argument #3 ($offset) must be contained in argument #1 ($haystack)",
            ));
        }
        let from = if length < 0 { n + length } else { length } as usize;
        if let Some(pos) = chars.iter().skip(from).position(|c| *c == ' ') {
            length = (from + pos) as i64;
        }
    }
    let (a, b) = slice_bounds(chars.len(), 0, Some(length));
    Ok(chars[a..b].iter().collect::<String>() + &sep)
}

/// A PCRE pattern with delimiters and flags (`/x/i`, `#x#s`) compiled with the `regex` crate,
/// whose matching is linear in the input (no catastrophic backtracking).
pub(crate) fn compile_pcre(pattern: &str) -> Result<regex::Regex, Error> {
    compile_pcre_cached(pattern, false)
}

/// [`compile_pcre`] for a yes/no question (the `matches` operator): PCRE's `$` also matches
/// before a final newline there (see [`crate::pcre::dollar_as_pcre`]).
pub(crate) fn compile_pcre_test(pattern: &str) -> Result<regex::Regex, Error> {
    compile_pcre_cached(pattern, true)
}

fn compile_pcre_cached(pattern: &str, for_test: bool) -> Result<regex::Regex, Error> {
    // One cache per reading of `$`, so that a hit is looked up by `&str` without a key to build.
    type Cache = std::collections::HashMap<String, Option<regex::Regex>>;
    thread_local! {
        static CACHES: std::cell::RefCell<[Cache; 2]> = std::cell::RefCell::default();
    }
    let invalid = || {
        fail(format!(
            "Regexp \"{pattern}\" passed to \"matches\" is not valid"
        ))
    };
    let slot = usize::from(for_test);
    if let Some(hit) = CACHES.with(|c| c.borrow()[slot].get(pattern).cloned()) {
        return hit.ok_or_else(invalid);
    }
    let compiled = compile_pcre_uncached(pattern, for_test).ok_or_else(invalid);
    CACHES.with(|c| {
        let cache = &mut c.borrow_mut()[slot];
        if cache.len() >= 256 {
            cache.clear();
        }
        cache.insert(pattern.to_string(), compiled.as_ref().ok().cloned());
    });
    compiled
}

/// Modifiers: `i m s x` as PCRE's, `U` swaps greediness, `A` anchors at the start, `D` keeps `$`
/// at the very end (it matters only with `for_test`), `u` is accepted (the `regex` crate always
/// reads UTF-8).
fn compile_pcre_uncached(pattern: &str, for_test: bool) -> Option<regex::Regex> {
    let crate::pcre::Parts { body, flags } = crate::pcre::split(pattern).ok()?;
    let body = if for_test {
        crate::pcre::dollar_as_pcre(body, flags)
    } else {
        std::borrow::Cow::Borrowed(body)
    };
    let body = crate::pcre::anchored(body, flags);
    let mut builder = regex::RegexBuilder::new(&body);
    builder
        .size_limit(1 << 20)
        .dfa_size_limit(1 << 20)
        .nest_limit(64);
    for f in flags.chars() {
        match f {
            'i' => {
                builder.case_insensitive(true);
            }
            'm' => {
                builder.multi_line(true);
            }
            's' => {
                builder.dot_matches_new_line(true);
            }
            'x' => {
                builder.ignore_whitespace(true);
            }
            'U' => {
                builder.swap_greed(true);
            }
            'u' | 'D' | 'A' | '\n' | ' ' => {}
            _ => return None,
        }
    }
    builder.build().ok()
}

/// Twig's `range(low, high, step=1)`: PHP 8.2 `range` over integers, floats or letters (two
/// non-numeric strings range over their first bytes). A step larger than the range is an error.
fn range(state: &State, low: Value, high: Value, step: Option<Value>) -> Result<Value, Error> {
    let too_big = || fail("range(): Argument #3 ($step) must not exceed the specified range");
    let step_num = step
        .map(|st| php::to_num(&st))
        .transpose()?
        .unwrap_or(Num::I(1));
    let letter = |v: &Value| {
        v.as_str()
            .filter(|t| !t.is_empty() && php::numeric_str(t).is_none())
            .map(|t| t.as_bytes()[0])
    };
    if let (Some(a), Some(b)) = (letter(&low), letter(&high)) {
        let st = step_num.as_int().unsigned_abs();
        if st == 0 || (a != b && (a.abs_diff(b) as u64) < st) {
            return Err(too_big());
        }
        let st = st.min(256) as usize;
        let chars = |c: u8| Value::from((c as char).to_string());
        let out: Vec<Value> = if a <= b {
            (a..=b).step_by(st).map(chars).collect()
        } else {
            (b..=a).rev().step_by(st).map(chars).collect()
        };
        return Ok(Value::from(out));
    }
    // PHP 8.2 picks integers unless a bound or the step is a float (or, when both bounds are
    // strings, a float-looking numeric string); arrays count as 1 or 0.
    let is_float = |v: &Value| v.kind() == ValueKind::Number && !v.is_integer();
    let float_str = |v: &Value| {
        v.as_str()
            .and_then(php::numeric_str)
            .is_some_and(|n| matches!(n, Num::F(_)))
    };
    let both_strings = low.kind() == ValueKind::String && high.kind() == ValueKind::String;
    let step_float = matches!(step_num, Num::F(_));
    let use_float = is_float(&low)
        || is_float(&high)
        || step_float
        || (both_strings && (float_str(&low) || float_str(&high)));
    let cast = |v: &Value| -> Num {
        if is_array(v) {
            Num::I(php::to_float_cast(v) as i64)
        } else {
            php::to_num(v).unwrap_or(Num::I(0))
        }
    };
    let (a, b) = (cast(&low), cast(&high));
    if !use_float {
        let (a, b, st) = (a.as_int(), b.as_int(), step_num.as_int());
        let st = st.unsigned_abs();
        if st == 0 || (a != b && a.abs_diff(b) < st) {
            return Err(too_big());
        }
        let count = (a.abs_diff(b) / st).saturating_add(1);
        state.consume_fuel(count)?;
        let out: Vec<Value> = if a <= b {
            (0..count)
                .map(|i| Value::from((i128::from(a) + i128::from(i) * i128::from(st)) as i64))
                .collect()
        } else {
            (0..count)
                .map(|i| Value::from((i128::from(a) - i128::from(i) * i128::from(st)) as i64))
                .collect()
        };
        return Ok(Value::from(out));
    }
    let (a, b, st) = (a.as_f64(), b.as_f64(), step_num.as_f64().abs());
    if st.is_nan()
        || st <= 0.0
        || !a.is_finite()
        || !b.is_finite()
        || (a != b && (a - b).abs() < st)
    {
        return Err(too_big());
    }
    let count = (((a - b).abs() / st).floor() as u64).saturating_add(1);
    state.consume_fuel(count)?;
    let out: Vec<Value> = (0..count)
        .map(|i| {
            Value::from(if a <= b {
                a + i as f64 * st
            } else {
                a - i as f64 * st
            })
        })
        .collect();
    Ok(Value::from(out))
}

/// PHP `min`/`max`: one array argument or several values.
fn min_max(args: &[Value], want: Ordering) -> Result<Value, Error> {
    let items: Vec<Value> = if args.len() == 1 && is_array(&args[0]) {
        entries(&args[0]).into_iter().map(|(_, v)| v).collect()
    } else {
        args.to_vec()
    };
    let mut best: Option<Value> = None;
    for v in items {
        best = Some(match best {
            None => v,
            Some(b) => {
                if php::compare(&v, &b) == want {
                    v
                } else {
                    b
                }
            }
        });
    }
    best.ok_or_else(|| fail("min(): Argument #1 ($value) must contain at least one element"))
}

fn random(v: Option<Value>, max: Option<Value>) -> Result<Value, Error> {
    use rand::Rng as _;
    let mut rng = rand::rng();
    let v = v.unwrap_or(Value::UNDEFINED);
    if let Some(max) = max.filter(|m| !is_null(m)) {
        let (a, b) = (php::to_num(&v)?.as_int(), php::to_num(&max)?.as_int());
        let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
        return Ok(Value::from(rng.random_range(lo..=hi)));
    }
    match v.kind() {
        ValueKind::Undefined | ValueKind::None => {
            Ok(Value::from(rng.random_range(0..=i32::MAX as i64)))
        }
        ValueKind::Seq | ValueKind::Map => {
            let items = entries(&v);
            if items.is_empty() {
                return Err(fail("The random function cannot pick from an empty array."));
            }
            Ok(items[rng.random_range(0..items.len())].1.clone())
        }
        ValueKind::Number | ValueKind::Bool => {
            let n = php::to_num(&v)?.as_int();
            let (lo, hi) = if n < 0 { (n, 0) } else { (0, n) };
            Ok(Value::from(rng.random_range(lo..=hi)))
        }
        _ => {
            let chars: Vec<char> = s(&v).chars().collect();
            if chars.is_empty() {
                return Ok(Value::from(""));
            }
            Ok(Value::from(
                chars[rng.random_range(0..chars.len())].to_string(),
            ))
        }
    }
}

/// Cerb's `dict_set(obj, 'a.b', value)` (`DevblocksPlatform::arrayDictSet`): dots nest, `{DOT}`
/// is a literal dot, `[]` appends. Cerb walks a reference down the path: through arrays only
/// (a missing or null key becomes `[]`), and once it reaches anything else, or the new element of
/// a `[]`, the rest of the path is skipped and the value replaces what the reference points at.
/// So `dict_set({a: 'x'}, 'a.b', 1)` is `{a: 1}` and `dict_set('text', 'a', 1)` is `1`.
fn dict_set(obj: Value, path: Value, val: Value) -> Result<Value, Error> {
    let parts: Vec<String> = s(&path)
        .split('.')
        .map(|p| p.replace("{DOT}", "."))
        .collect();
    fn set(node: Value, parts: &[String], val: Value) -> Result<Value, Error> {
        let Some((part, rest)) = parts.split_first() else {
            return Ok(val);
        };
        if !is_array(&node) {
            return Ok(val);
        }
        let mut items = php_entries(&node);
        if part == "[]" {
            let next = match items.iter().filter_map(|(k, _)| k.as_i64()).max() {
                None => 0,
                Some(m) => m.checked_add(1).ok_or_else(|| {
                    fail("Cannot add element to the array as the next element is already occupied")
                })?,
            };
            items.push((Value::from(next), val));
        } else {
            let key = php::array_key(&Value::from(part.as_str()));
            let empty = || Value::from(Vec::<Value>::new());
            match items.iter().position(|(k, _)| *k == key) {
                Some(i) => {
                    let child = items[i].1.clone();
                    let child = if is_null(&child) { empty() } else { child };
                    items[i].1 = set(child, rest, val)?;
                }
                None => items.push((key, set(empty(), rest, val)?)),
            }
        }
        Ok(from_entries(items))
    }
    if is_array(&obj) || crate::runtime::truthy(&obj) {
        return set(obj, &parts, val);
    }
    // A value PHP calls `empty()` that is not an array starts as a stdClass object in Cerb; an
    // empty array stands in for it here (README.md lists where the two differ). `[]` does
    // nothing to an object, so the leading ones are skipped, and a path of nothing else leaves
    // the reference on the variable itself.
    let rest: Vec<String> = parts.into_iter().skip_while(|p| p == "[]").collect();
    if rest.is_empty() {
        return Ok(val);
    }
    set(Value::from(Vec::<Value>::new()), &rest, val)
}

/// PHP's `json_encode` / `json_decode(…, true)`.
pub(crate) mod json {
    use super::*;

    pub const HEX_TAG: i64 = 1;
    pub const HEX_AMP: i64 = 2;
    pub const HEX_APOS: i64 = 4;
    pub const HEX_QUOT: i64 = 8;
    pub const FORCE_OBJECT: i64 = 16;
    pub const UNESCAPED_SLASHES: i64 = 64;
    pub const PRETTY_PRINT: i64 = 128;
    pub const UNESCAPED_UNICODE: i64 = 256;

    /// How deep `decode` nests arrays before it gives up (PHP: 512). Values deeper than this
    /// cannot be held by a template variable anyway (`runtime::MAX_NESTING`).
    const MAX_DEPTH: usize = 128;

    /// `json_decode($s, true)` as PHP's parser reads it: integers that fit 64 bits are integers
    /// (`-0` is 0), other numbers are doubles (`1e400` is INF), object keys follow PHP's array
    /// key rules (`"1"` is 1) and a repeated key keeps its first place with its last value.
    /// Invalid JSON, a lone surrogate or nesting deeper than [`MAX_DEPTH`] is null.
    pub fn decode(text: &str) -> Value {
        let mut p = Parser {
            b: text.as_bytes(),
            i: 0,
        };
        match p.value(0) {
            Some(v) if p.skip_ws() == p.b.len() => v,
            _ => Value::from(()),
        }
    }

    struct Parser<'a> {
        b: &'a [u8],
        i: usize,
    }

    impl Parser<'_> {
        /// Skips JSON whitespace; returns the new position.
        fn skip_ws(&mut self) -> usize {
            while matches!(self.b.get(self.i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
                self.i += 1;
            }
            self.i
        }

        fn eat(&mut self, lit: &[u8]) -> bool {
            if self.b[self.i..].starts_with(lit) {
                self.i += lit.len();
                true
            } else {
                false
            }
        }

        fn value(&mut self, depth: usize) -> Option<Value> {
            self.skip_ws();
            match *self.b.get(self.i)? {
                b'{' => {
                    if depth >= MAX_DEPTH {
                        return None;
                    }
                    self.i += 1;
                    let mut items: indexmap::IndexMap<Value, Value> = indexmap::IndexMap::new();
                    if self.skip_ws() < self.b.len() && self.b[self.i] == b'}' {
                        self.i += 1;
                        return Some(Value::from(Vec::<Value>::new()));
                    }
                    loop {
                        self.skip_ws();
                        if self.b.get(self.i) != Some(&b'"') {
                            return None;
                        }
                        let key = php::array_key(&Value::from(self.string()?));
                        self.skip_ws();
                        if !self.eat(b":") {
                            return None;
                        }
                        let v = self.value(depth + 1)?;
                        items.insert(key, v);
                        self.skip_ws();
                        if self.eat(b",") {
                            continue;
                        }
                        if self.eat(b"}") {
                            break;
                        }
                        return None;
                    }
                    Some(from_entries(items.into_iter().collect()))
                }
                b'[' => {
                    if depth >= MAX_DEPTH {
                        return None;
                    }
                    self.i += 1;
                    let mut items = Vec::new();
                    if self.skip_ws() < self.b.len() && self.b[self.i] == b']' {
                        self.i += 1;
                        return Some(Value::from(items));
                    }
                    loop {
                        items.push(self.value(depth + 1)?);
                        self.skip_ws();
                        if self.eat(b",") {
                            continue;
                        }
                        if self.eat(b"]") {
                            break;
                        }
                        return None;
                    }
                    Some(Value::from(items))
                }
                b'"' => self.string().map(Value::from),
                b't' if self.eat(b"true") => Some(Value::from(true)),
                b'f' if self.eat(b"false") => Some(Value::from(false)),
                b'n' if self.eat(b"null") => Some(Value::from(())),
                b'-' | b'0'..=b'9' => self.number(),
                _ => None,
            }
        }

        /// A number in JSON's grammar (no leading zeros, no `+`, digits after `.` and `e`).
        fn number(&mut self) -> Option<Value> {
            let start = self.i;
            self.eat(b"-");
            let digits = |p: &mut Self| {
                let from = p.i;
                while p.b.get(p.i).is_some_and(u8::is_ascii_digit) {
                    p.i += 1;
                }
                p.i - from
            };
            let int_start = self.i;
            let n = digits(self);
            if n == 0 || (n > 1 && self.b[int_start] == b'0') {
                return None;
            }
            let mut is_int = true;
            if self.eat(b".") {
                is_int = false;
                if digits(self) == 0 {
                    return None;
                }
            }
            if matches!(self.b.get(self.i), Some(b'e' | b'E')) {
                is_int = false;
                self.i += 1;
                if matches!(self.b.get(self.i), Some(b'+' | b'-')) {
                    self.i += 1;
                }
                if digits(self) == 0 {
                    return None;
                }
            }
            let text = std::str::from_utf8(&self.b[start..self.i]).ok()?;
            if is_int && let Ok(i) = text.parse::<i64>() {
                return Some(Value::from(i));
            }
            // Rust's parser gives ±inf past the double range, as PHP's zend_strtod does.
            text.parse::<f64>().ok().map(Value::from)
        }

        /// A string literal at the current `"`; escapes decoded, surrogate pairs joined.
        fn string(&mut self) -> Option<String> {
            self.i += 1;
            let mut out = String::new();
            loop {
                let start = self.i;
                while self
                    .b
                    .get(self.i)
                    .is_some_and(|c| *c != b'"' && *c != b'\\' && *c >= 0x20)
                {
                    self.i += 1;
                }
                out.push_str(std::str::from_utf8(&self.b[start..self.i]).ok()?);
                match *self.b.get(self.i)? {
                    b'"' => {
                        self.i += 1;
                        return Some(out);
                    }
                    b'\\' => {
                        self.i += 1;
                        let c = *self.b.get(self.i)?;
                        self.i += 1;
                        match c {
                            b'"' => out.push('"'),
                            b'\\' => out.push('\\'),
                            b'/' => out.push('/'),
                            b'b' => out.push('\u{8}'),
                            b'f' => out.push('\u{c}'),
                            b'n' => out.push('\n'),
                            b'r' => out.push('\r'),
                            b't' => out.push('\t'),
                            b'u' => {
                                let hi = self.hex4()?;
                                let code = if (0xD800..0xDC00).contains(&hi) {
                                    if !self.eat(b"\\u") {
                                        return None;
                                    }
                                    let lo = self.hex4()?;
                                    if !(0xDC00..0xE000).contains(&lo) {
                                        return None;
                                    }
                                    0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
                                } else if (0xDC00..0xE000).contains(&hi) {
                                    return None;
                                } else {
                                    hi
                                };
                                out.push(char::from_u32(code)?);
                            }
                            _ => return None,
                        }
                    }
                    // A raw control character.
                    _ => return None,
                }
            }
        }

        fn hex4(&mut self) -> Option<u32> {
            let digits = self.b.get(self.i..self.i + 4)?;
            let text = std::str::from_utf8(digits).ok()?;
            if !text.bytes().all(|c| c.is_ascii_hexdigit()) {
                return None;
            }
            self.i += 4;
            u32::from_str_radix(text, 16).ok()
        }
    }

    fn indent(out: &mut String, flags: i64, depth: usize) {
        if flags & PRETTY_PRINT != 0 {
            out.push('\n');
            for _ in 0..depth {
                out.push_str("    ");
            }
        }
    }

    pub fn encode(v: &Value, flags: i64, depth: usize, out: &mut String) -> Result<(), Error> {
        if depth > 512 {
            return Err(fail("Maximum stack depth exceeded"));
        }
        match v.kind() {
            ValueKind::Undefined | ValueKind::None => out.push_str("null"),
            ValueKind::Bool => out.push_str(if v.is_true() { "true" } else { "false" }),
            ValueKind::Number => match php::to_num(v)? {
                Num::I(i) => {
                    let _ = write!(out, "{i}");
                }
                Num::F(f) => {
                    if !f.is_finite() {
                        return Err(fail("Inf and NaN cannot be JSON encoded"));
                    }
                    out.push_str(&float17(f));
                }
            },
            ValueKind::Seq | ValueKind::Map | ValueKind::Iterable => {
                let items = php_entries(v);
                let is_list = items
                    .iter()
                    .enumerate()
                    .all(|(i, (k, _))| k.as_i64() == Some(i as i64) && k.is_integer());
                if items.is_empty() {
                    out.push_str(if flags & FORCE_OBJECT != 0 {
                        "{}"
                    } else {
                        "[]"
                    });
                    return Ok(());
                }
                let object = !is_list || flags & FORCE_OBJECT != 0;
                out.push(if object { '{' } else { '[' });
                for (i, (k, item)) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    indent(out, flags, depth + 1);
                    if object {
                        string(&s(k), flags, out);
                        out.push(':');
                        if flags & PRETTY_PRINT != 0 {
                            out.push(' ');
                        }
                    }
                    encode(item, flags, depth + 1, out)?;
                }
                indent(out, flags, depth);
                out.push(if object { '}' } else { ']' });
            }
            _ => string(&s(v), flags, out),
        }
        Ok(())
    }

    /// A float as PHP's json_encode writes it (`serialize_precision = -1`).
    fn float17(f: f64) -> String {
        if f == 0.0 {
            return if f.is_sign_negative() {
                "-0".into()
            } else {
                "0".into()
            };
        }
        let sci = format!("{f:e}");
        let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
        let exp: i32 = exp.parse().unwrap_or(0);
        let decpt = exp + 1;
        if !(-3..=17).contains(&decpt) {
            let m = if mantissa.contains('.') {
                mantissa.to_string()
            } else {
                format!("{mantissa}.0")
            };
            format!("{m}e{}{}", if exp < 0 { '-' } else { '+' }, exp.abs())
        } else {
            let t = format!("{f}");
            t
        }
    }

    fn string(text: &str, flags: i64, out: &mut String) {
        out.push('"');
        for c in text.chars() {
            match c {
                '"' if flags & HEX_QUOT != 0 => out.push_str("\\u0022"),
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '/' if flags & UNESCAPED_SLASHES == 0 => out.push_str("\\/"),
                '\x08' => out.push_str("\\b"),
                '\x0C' => out.push_str("\\f"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                '<' if flags & HEX_TAG != 0 => out.push_str("\\u003C"),
                '>' if flags & HEX_TAG != 0 => out.push_str("\\u003E"),
                '&' if flags & HEX_AMP != 0 => out.push_str("\\u0026"),
                '\'' if flags & HEX_APOS != 0 => out.push_str("\\u0027"),
                c if (c as u32) < 0x20 => {
                    let _ = write!(out, "\\u{:04x}", c as u32);
                }
                c if (c as u32) < 0x80 || flags & UNESCAPED_UNICODE != 0 => out.push(c),
                c => {
                    let mut buf = [0u16; 2];
                    for unit in c.encode_utf16(&mut buf) {
                        let _ = write!(out, "\\u{:04x}", unit);
                    }
                }
            }
        }
        out.push('"');
    }
}

#[cfg(test)]
mod tests {
    //! Each filter and function on the examples of the Twig and Cerb documentation; the expected
    //! strings are what PHP 8.2 with Twig 3.5 prints for the same template.
    use crate::{Dialect, Limits, environment, render_str};
    use minijinja::Value;

    const CASES: &[(&str, &str)] = &[
        (
            r#"{{ '<a href="x">O\'Neil & co</a>'|escape }}"#,
            r#"&lt;a href=&quot;x&quot;&gt;O&#039;Neil &amp; co&lt;/a&gt;"#,
        ),
        (
            r#"{{ '<b>'|e }}|{{ '<b> & é'|e('url') }}|{{ "it's"|e('html') }}|{{ 'a b'|e('html_attr') }}|{{ '</script>'|e('js') }}"#,
            r#"&lt;b&gt;|%3Cb%3E%20%26%20%C3%A9|it&#039;s|a&#x20;b|\u003C\/script\u003E"#,
        ),
        (
            r#"{{ 'a"b/c é <x>'|escape('js') }}"#,
            r#"a\u0022b\/c\u0020\u00E9\u0020\u003Cx\u003E"#,
        ),
        (
            r#"{{ 'a b/é?&=' |escape('url') }}"#,
            r#"a%20b%2F%C3%A9%3F%26%3D"#,
        ),
        (
            r#"{{ 'a b"<é' |escape('html_attr') }}"#,
            r#"a&#x20;b&quot;&lt;&#x00E9;"#,
        ),
        (
            r#"{{ 'ÀÉÎ ÕÜ'|lower }}|{{ 'straße ǆ'|upper }}"#,
            r#"àéî õü|STRASSE Ǆ"#,
        ),
        (
            r#"{{ 'my first car'|title }}|{{ 'my FIRST car'|capitalize }}"#,
            r#"My First Car|My first car"#,
        ),
        (
            r#"{{ '  I like Twig.  '|trim }}|{{ '  I like Twig.'|trim('.') }}|{{ '  I like Twig.  '|trim(side='left') }}|{{ '  I like Twig.  '|trim(' ', 'right') }}"#,
            r#"I like Twig.|  I like Twig|I like Twig.  |  I like Twig."#,
        ),
        (
            r#"{{ null|default('x') }}|{{ ''|default('x') }}|{{ 0|default('x') }}"#,
            r#"x|x|0"#,
        ),
        (
            r#"{{ 'I like %this% and %that%.'|replace({'%this%': 'foo', '%that%': 'bar'}) }}"#,
            r#"I like foo and bar."#,
        ),
        (
            r#"{{ 'one,two,three'|split(',')|join('|') }}|{{ 'one,two,three,four,five'|split(',', 3)|join('|') }}|{{ 'one,two,three,four,five'|split(',', -1)|join('|') }}|{{ '123'|split('')|join('|') }}|{{ 'aabbcc'|split('', 2)|join('|') }}"#,
            r#"one|two|three|one|two|three,four,five|one|two|three|four|1|2|3|aa|bb|cc"#,
        ),
        (
            r#"{{ [1, 2, 3]|join }}|{{ [1, 2, 3]|join('|') }}|{{ [1, 2, 3]|join(', ', ' and ') }}"#,
            r#"123|1|2|3|1, 2 and 3"#,
        ),
        (
            r#"{{ 'Ünïcödé'|length }}|{{ [1,2,3]|length }}|{{ {a:1}|length }}"#,
            r#"7|3|1"#,
        ),
        (
            r#"{{ {a: 1, b: 2}|keys|join(',') }}|{{ [1, 2, 3, 4]|first }}|{{ {a: 1, b: 2}|last }}|{{ '1234'|first }}|{{ '1234'|last }}"#,
            r#"a,b|1|2|1|4"#,
        ),
        (
            r#"{{ [1, 2]|merge(['apple', 'orange'])|join(',') }}|{{ {'apple': 'fruit', 'potato': 'unknown'}|merge({'potato': 'vegetable', 'carrot': 'vegetable'})|json_encode }}"#,
            r#"1,2,apple,orange|{"apple":"fruit","potato":"vegetable","carrot":"vegetable"}"#,
        ),
        (
            r#"{{ [1, 2, 3, 4, 5]|slice(1, 2)|join(',') }}|{{ '12345'|slice(1, 2) }}|{{ '12345'|slice(-2) }}|{{ 'Ünïcödé'|slice(1, 3) }}|{{ {a: 1, b: 2, c: 3}|slice(1)|json_encode }}|{{ [1, 2, 3]|slice(1, 1, true)|json_encode }}"#,
            r#"2,3|23|45|nïc|{"b":2,"c":3}|{"1":2}"#,
        ),
        (
            r#"{{ [3, 1, 2]|sort|join(',') }}|{{ {b: 2, a: 1}|sort|json_encode }}|{{ [1, 2, 3]|reverse|join(',') }}|{{ '1234'|reverse }}|{{ [1, 2, 3]|reverse(true)|json_encode }}"#,
            r#"1,2,3|{"a":1,"b":2}|3,2,1|4321|{"2":3,"1":2,"0":1}"#,
        ),
        (
            r#"{{ 42.55|round }}|{{ 42.55|round(1, 'floor') }}|{{ 42.55|round(1, 'ceil') }}|{{ -1.5|round }}|{{ 1.955|round(2) }}"#,
            r#"43|42.5|42.6|-2|1.96"#,
        ),
        (
            r#"{{ -7|abs }}|{{ -7.5|abs }}|{{ 9800.333|number_format }}|{{ 9800.333|number_format(2) }}|{{ 9800.333|number_format(2, ',', '.') }}|{{ 0.5|number_format }}"#,
            r#"-7|-7.5|9,800|9,800.33|9.800,33|1"#,
        ),
        (
            r#"{{ '%s has %d apples (%.2f%%) %05d|%-4s|%4s|%x|%X|%o|%b|%c|%+d|%e'|format('Ann', 3, 12.345, 42, 'ab', 'cd', 255, 255, 8, 5, 65, 7, 1234.5) }}"#,
            r#"Ann has 3 apples (12.35%) 00042|ab  |  cd|ff|FF|10|101|A|+7|1.234500e+3"#,
        ),
        (
            "{{ '<p>Hello <b>World</b><!-- c --></p> a < b'|striptags }}|{{ 'a\nb\r\nc\rd'|nl2br }}",
            "Hello World a < b|a<br />\nb<br />\nc<br />\nd",
        ),
        (
            r#"{{ 'path-segment & x'|url_encode }}|{{ {'param': 'value', 'foo': 'bar', 'n': null, 't': true, 'f': false, 'l': [1, 2], 'h': {'x': 'y z'}}|url_encode }}|{{ 'a%20b%2Bc+d'|url_decode }}"#,
            r#"path-segment%20%26%20x|param=value&foo=bar&t=1&f=0&l%5B0%5D=1&l%5B1%5D=2&h%5Bx%5D=y%20z|a b+c+d"#,
        ),
        (
            r#"{{ {'a': 'é/😀', 'b': [], 'c': {}, 'd': [1, {'e': null}], 'f': 1.5, 'g': true}|json_encode }}|{{ 'x/y'|json_encode(64) }}|{{ 'é'|json_encode(256) }}"#,
            r#"{"a":"\u00e9\/\ud83d\ude00","b":[],"c":[],"d":[1,{"e":null}],"f":1.5,"g":true}|"x/y"|"é""#,
        ),
        (
            r#"{{ '{"a":{"b":[1,2,"x/y","é"]},"e":{},"l":[]}'|json_pretty }}|{{ 'oops'|json_pretty }}|{{ 5|json_pretty }}"#,
            "{\n    \"a\": {\n        \"b\": [\n            1,\n            2,\n            \"x/y\",\n            \"\\u00e9\"\n        ]\n    },\n    \"e\": [],\n    \"l\": []\n}|null|",
        ),
        (
            r#"{{ 'hello world'|base64_encode }}|{{ 'aGVsbG8gd29ybGQ='|base64_decode }}|{{ 'hello'|md5 }}|{{ 'hello'|sha1 }}|{{ 'message'|hash_hmac('secret') }}|{{ 'message'|hash_hmac('secret', 'sha1') }}|{{ 'message'|hash_hmac('secret', 'md5') }}"#,
            r#"aGVsbG8gd29ybGQ=|hello world|5d41402abc4b2a76b9719d911017c592|aaf4c61ddcc5e8a2dabede0f3b482cd9aea9434d|8b5f48702995c1598c573db1e21866a9b825d4a794d169d7060a03605796360b|0caf649feee4953d87bf903ac1176c45e028df16|7e0d0767775312154ba16fd3af9771a2"#,
        ),
        (
            r#"{{ 'The quick brown fox'|truncate(10) }}|{{ 'The quick brown fox'|truncate(7, true) }}|{{ 'The quick brown fox'|truncate(10, false, '…') }}|{{ 'short'|truncate }}"#,
            r#"The quick ...|The quick...|The quick …|short"#,
        ),
        (
            r#"{{ 'Order 12345 shipped'|regexp('/(\\d+)/') }}|{{ 'Order 12345 shipped'|regexp('/order (\\d+)/i', 1) }}|{{ 'abc'|regexp('/(?P<word>b.)/', 'word') }}|{{ 'abc'|regexp('/z/') }}"#,
            r#"12345|12345|bc|"#,
        ),
        (
            r#"{{ 1700000000|date('Y-m-d H:i:s') }}|{{ 1700000000|date('D, d M Y') }}|{{ 1700000000|date('l jS \\o\\f F Y h:i:s A') }}|{{ 1700000000|date('N w z W t L o y a g G U u v e T P O p') }}|{{ 1700000000|date('c') }}|{{ 1700000000|date('r') }}|{{ 1700000000|date('H:i T', '+05:30') }}|{{ '2024-02-29T13:45:10Z'|date('Y-m-d H:i:s') }}|{{ '2024-02-29'|date('D jS') }}"#,
            r#"2023-11-14 22:13:20|Tue, 14 Nov 2023|Tuesday 14th of November 2023 10:13:20 PM|2 2 317 46 30 0 2023 23 pm 10 22 1700000000 000000 000 UTC UTC +00:00 +0000 Z|2023-11-14T22:13:20+00:00|Tue, 14 Nov 2023 22:13:20 +0000|03:43 GMT+0530|2024-02-29 13:45:10|Thu 29th"#,
        ),
        (
            r#"{{ json_decode('{"a":[1,2,{"b":"c"}]}').a[2].b }}|{{ dict_set({}, 'a.b.c', 1)|json_encode }}|{{ dict_set({'a': {'x': 1}}, 'a.y', 2)|json_encode }}|{{ dict_set({'list': []}, 'list.[]', 'z')|json_encode }}|{{ dict_set({}, 'a{DOT}b', 1)|json_encode }}"#,
            r#"c|{"a":{"b":{"c":1}}}|{"a":{"x":1,"y":2}}|{"list":["z"]}|{"a.b":1}"#,
        ),
        (
            r#"{{ dict_set({a: 'x'}, 'a.b', 1)|json_encode }}|{{ dict_set({}, 'l.[].x', 1)|json_encode }}|{{ dict_set(null, '[]', 1) }}|{{ dict_set('text', 'a', 1) }}|{{ dict_set(null, 'a.b', 1)|json_encode }}|{{ json_decode('[1,2') is null ? 'null' }}|{{ json_decode('"x\/y"') }}|{{ json_decode('{"a":{}}')|json_encode }}"#,
            r#"{"a":1}|{"l":[1]}|1|1|{"a":{"b":1}}|null|x/y|{"a":[]}"#,
        ),
        (
            "{{ '12345678901234567890'|number_format }}|{{ 0.12345678901234567|number_format(20) }}|{{ '日本語abc 1st x\\'y l·l a\u{200b}b'|title }}|{{ 'a\u{0}b<x>c'|striptags }}",
            "12,345,678,901,234,567,168|0.12345678901234566349|日本語Abc 1St X'y L·l A\u{200b}b|abc",
        ),
        (
            r#"{{ range(1, 5)|join(',') }}|{{ range(0, 10, 5)|join(',') }}|{{ range('a', 'e')|join }}|{{ min(1, 3, 2) }}|{{ max([1, 3, 2]) }}|{{ min({a: 5, b: 2}) }}|{{ cycle(['odd', 'even'], 5) }}"#,
            r#"1,2,3,4,5|0,5,10|abcde|1|3|2|even"#,
        ),
    ];

    /// `random_string` cannot be compared with a fixed output: its length rules and alphabet are
    /// Cerb's (`intClamp($length, 1, 255)`, `generatePassword`'s 33 characters).
    #[test]
    fn random_string_has_cerbs_length_and_alphabet() {
        let limits = Limits::default();
        let env = environment(Dialect::Runtime, &limits);
        let render = |t: &str| render_str(&env, t, &Value::UNDEFINED, &limits).unwrap();
        for (template, len) in [
            ("{{ random_string() }}", 8),
            ("{{ random_string(40) }}", 40),
            ("{{ random_string(length=12) }}", 12),
            ("{{ random_string(0) }}", 1),
            ("{{ random_string(-5) }}", 1),
            ("{{ random_string(300) }}", 255),
            ("{{ random_string('abc') }}", 1),
            ("{{ random_string('7x') }}", 7),
            ("{{ random_string('1e19') }}", 255),
            ("{{ random_string(2.9) }}", 2),
            ("{{ random_string([1, 2]) }}", 1),
            ("{{ random_string(null) }}", 1),
        ] {
            let out = render(template);
            assert_eq!(out.len(), len, "{template}: {out:?}");
            assert!(
                out.bytes().all(|b| super::RANDOM_ALPHABET.contains(&b)),
                "{template}: {out:?}"
            );
        }
        // 40 characters from 33: two equal draws mean the generator is broken.
        assert_ne!(
            render("{{ random_string(40) }}"),
            render("{{ random_string(40) }}")
        );
        // Every character of the alphabet turns up, and nothing else (I, O, 0 never do).
        let many = render("{% for i in 1..40 %}{{ random_string(255) }}{% endfor %}");
        let seen: std::collections::BTreeSet<u8> = many.bytes().collect();
        let alphabet: std::collections::BTreeSet<u8> =
            super::RANDOM_ALPHABET.iter().copied().collect();
        assert_eq!(seen, alphabet);
    }

    #[test]
    fn filters_print_what_twig_prints() {
        let limits = Limits::default();
        let env = environment(Dialect::Runtime, &limits);
        for (template, want) in CASES {
            let got = render_str(&env, template, &Value::UNDEFINED, &limits);
            assert_eq!(
                got.as_deref().map_err(|e| e.to_string()),
                Ok(*want),
                "template {template:?}"
            );
        }
    }
}
