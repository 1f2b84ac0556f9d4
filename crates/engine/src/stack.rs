//! A loop's remaining items as Cerb keeps them in the dictionary under `<as>__stack`
//! (docs/semantics.md §2.3): a PHP array from which every iteration takes the first element with
//! `array_shift`, so a behavior that changes or empties the placeholder changes what the loop does
//! next.

use std::sync::Arc;

use minijinja::Value;
use minijinja::value::{Enumerator, Object, ObjectRepr, ValueKind};

/// A PHP array key: an integer or a string (PHP turns canonical decimal strings into integers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PhpKey {
    Int(i64),
    Str(Arc<str>),
}

impl PhpKey {
    fn from_value(key: &Value) -> PhpKey {
        if key.kind() == ValueKind::Number
            && let Ok(n) = i64::try_from(key.clone())
        {
            return PhpKey::Int(n);
        }
        let s = crate::values::php_string(key);
        match canonical_int(&s) {
            Some(n) => PhpKey::Int(n),
            None => PhpKey::Str(s.into()),
        }
    }

    pub(crate) fn to_value(&self) -> Value {
        match self {
            PhpKey::Int(n) => Value::from(*n),
            PhpKey::Str(s) => Value::from(&**s),
        }
    }
}

/// PHP's rule for array keys: `"5"` and `"-5"` are integers, `"05"`, `"5.0"` and `" 5"` are not.
fn canonical_int(s: &str) -> Option<i64> {
    let digits = s.strip_prefix('-').unwrap_or(s);
    if digits.is_empty()
        || !digits.bytes().all(|b| b.is_ascii_digit())
        || (digits.len() > 1 && digits.starts_with('0'))
        || s == "-0"
    {
        return None;
    }
    s.parse().ok()
}

/// The remaining elements of a loop. Shifting shares the elements (no copy), so a long loop costs
/// nothing per iteration; templates see an ordinary list or map.
#[derive(Debug)]
pub(crate) struct LoopStack {
    entries: Arc<[(PhpKey, Value)]>,
    start: usize,
    /// Whether the keys are 0, 1, 2, … (a PHP list): then it reads as a sequence.
    list: bool,
}

impl LoopStack {
    /// The dictionary value as a PHP array, or `None` when it is not one (Cerb's `is_array`).
    pub(crate) fn of(value: &Value) -> Option<Arc<LoopStack>> {
        if let Some(stack) = value.downcast_object::<LoopStack>() {
            return Some(stack);
        }
        match value.kind() {
            ValueKind::Seq => {
                let entries: Vec<(PhpKey, Value)> = value
                    .try_iter()
                    .ok()?
                    .enumerate()
                    .map(|(i, v)| (PhpKey::Int(i as i64), v))
                    .collect();
                Some(Arc::new(LoopStack {
                    entries: entries.into(),
                    start: 0,
                    list: true,
                }))
            }
            ValueKind::Map => {
                let mut entries: Vec<(PhpKey, Value)> = Vec::new();
                for key in value.try_iter().ok()? {
                    let item = value.get_item(&key).unwrap_or_default();
                    let key = PhpKey::from_value(&key);
                    // A later duplicate (`"1"` and `1`) replaces the earlier value in place.
                    match entries.iter_mut().find(|(k, _)| *k == key) {
                        Some(slot) => slot.1 = item,
                        None => entries.push((key, item)),
                    }
                }
                let list = entries
                    .iter()
                    .enumerate()
                    .all(|(i, (k, _))| *k == PhpKey::Int(i as i64));
                Some(Arc::new(LoopStack {
                    entries: entries.into(),
                    start: 0,
                    list,
                }))
            }
            _ => None,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len() - self.start
    }

    /// The first element with its key as PHP's `key()` gives it: after a shift, integer keys are
    /// numbered again from 0 (`array_shift`), string keys stay.
    pub(crate) fn first(&self) -> Option<(PhpKey, Value)> {
        let (key, value) = self.entries.get(self.start)?;
        let key = match key {
            PhpKey::Int(_) if self.start > 0 || self.list => PhpKey::Int(0),
            other => other.clone(),
        };
        Some((key, value.clone()))
    }

    /// `array_shift`: the same elements without the first.
    pub(crate) fn shifted(&self) -> LoopStack {
        let start = (self.start + 1).min(self.entries.len());
        let list = self.list
            || self.entries[start..]
                .iter()
                .all(|(k, _)| matches!(k, PhpKey::Int(_)));
        LoopStack {
            entries: self.entries.clone(),
            start,
            list,
        }
    }

    /// Keys as PHP has them now (integer keys renumbered from 0 once something was shifted).
    fn keys(&self) -> Vec<PhpKey> {
        let mut next = 0;
        self.entries[self.start..]
            .iter()
            .map(|(k, _)| match k {
                PhpKey::Int(n) if self.start == 0 && !self.list => PhpKey::Int(*n),
                PhpKey::Int(_) => {
                    next += 1;
                    PhpKey::Int(next - 1)
                }
                s => s.clone(),
            })
            .collect()
    }
}

impl Object for LoopStack {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        if self.list {
            ObjectRepr::Seq
        } else {
            ObjectRepr::Map
        }
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        if self.list {
            let i = usize::try_from(key.clone()).ok()?;
            return self.entries.get(self.start + i).map(|(_, v)| v.clone());
        }
        let wanted = PhpKey::from_value(key);
        self.keys()
            .iter()
            .position(|k| *k == wanted)
            .map(|i| self.entries[self.start + i].1.clone())
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        if self.list {
            Enumerator::Seq(self.len())
        } else {
            Enumerator::Values(self.keys().iter().map(PhpKey::to_value).collect())
        }
    }

    fn enumerator_len(self: &Arc<Self>) -> Option<usize> {
        Some(self.len())
    }

    fn is_true(self: &Arc<Self>) -> bool {
        self.len() > 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(v: serde_json::Value) -> Value {
        crate::values::to_value(v)
    }

    #[test]
    fn a_list_keeps_key_zero_as_php_renumbers_it() {
        let s = LoopStack::of(&json(serde_json::json!(["a", "b", "c"]))).unwrap();
        assert_eq!(s.first().unwrap().0, PhpKey::Int(0));
        let s = Arc::new(s.shifted());
        let (k, v) = s.first().unwrap();
        assert_eq!((k, v.as_str()), (PhpKey::Int(0), Some("b")));
        let value = Value::from_dyn_object(s.clone());
        assert_eq!(value.kind(), ValueKind::Seq);
        assert_eq!(
            serde_json::to_value(&value).unwrap(),
            serde_json::json!(["b", "c"])
        );
        let empty = s.shifted().shifted();
        assert_eq!(empty.len(), 0);
        assert!(empty.first().is_none());
    }

    #[test]
    fn maps_keep_string_keys_and_renumber_integer_keys() {
        let s = LoopStack::of(&json(serde_json::json!({"7": "a", "x": "b", "9": "c"}))).unwrap();
        assert_eq!(s.first().unwrap().0, PhpKey::Int(7), "before any shift");
        let s = Arc::new(s.shifted());
        assert_eq!(s.first().unwrap().0, PhpKey::Str("x".into()));
        assert_eq!(
            serde_json::to_value(Value::from_dyn_object(s.clone())).unwrap(),
            serde_json::json!({"x": "b", "0": "c"})
        );
        let s = s.shifted();
        assert_eq!(s.first().unwrap().0, PhpKey::Int(0));
    }

    #[test]
    fn only_arrays_are_stacks() {
        for v in [
            json(serde_json::json!("[]")),
            Value::from(3),
            Value::from(()),
        ] {
            assert!(LoopStack::of(&v).is_none(), "{v:?}");
        }
        assert_eq!(canonical_int("12"), Some(12));
        assert_eq!(canonical_int("-3"), Some(-3));
        for s in ["012", "1.0", " 1", "-0", "", "-"] {
            assert_eq!(canonical_int(s), None, "{s:?}");
        }
    }
}
