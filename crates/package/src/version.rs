//! PHP's `version_compare` (the rules Cerb uses for `package.requires.cerb_version`).

use std::cmp::Ordering;

/// Splits a version the way PHP canonicalises it: `-`, `_`, `+` become separators, and a
/// separator is inserted wherever a run of digits meets a run of non-digits (`1.0rc1` → `1.0.rc.1`).
fn canonical_parts(version: &str) -> Vec<String> {
    let mut parts: Vec<String> = Vec::new();
    let mut current = String::new();
    let mut prev: Option<char> = None;
    for c in version.chars() {
        if matches!(c, '-' | '_' | '+' | '.') {
            if !current.is_empty() {
                parts.push(std::mem::take(&mut current));
            }
            prev = None;
            continue;
        }
        if let Some(p) = prev
            && p.is_ascii_digit() != c.is_ascii_digit()
            && !current.is_empty()
        {
            parts.push(std::mem::take(&mut current));
        }
        current.push(c);
        prev = Some(c);
    }
    if !current.is_empty() {
        parts.push(current);
    }
    parts
}

/// Rank of a special version form; PHP matches a form when the part starts with its name.
fn special_form_rank(part: &str) -> i32 {
    const FORMS: [(&str, i32); 10] = [
        ("dev", 0),
        ("alpha", 1),
        ("a", 1),
        ("beta", 2),
        ("b", 2),
        ("RC", 3),
        ("rc", 3),
        ("#", 4),
        ("pl", 5),
        ("p", 5),
    ];
    FORMS
        .iter()
        .find(|(name, _)| part.starts_with(name))
        .map(|(_, rank)| *rank)
        .unwrap_or(-6)
}

fn is_number(part: &str) -> bool {
    part.starts_with(|c: char| c.is_ascii_digit())
}

fn compare_numbers(a: &str, b: &str) -> Ordering {
    let a = a.trim_start_matches('0');
    let b = b.trim_start_matches('0');
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

fn compare_parts(a: &str, b: &str) -> Ordering {
    match (is_number(a), is_number(b)) {
        (true, true) => compare_numbers(a, b),
        (false, false) => special_form_rank(a).cmp(&special_form_rank(b)),
        (true, false) => special_form_rank("#").cmp(&special_form_rank(b)),
        (false, true) => special_form_rank(a).cmp(&special_form_rank("#")),
    }
}

/// `version_compare($a, $b)` as an [`Ordering`].
pub fn version_compare(a: &str, b: &str) -> Ordering {
    let pa = canonical_parts(a);
    let pb = canonical_parts(b);
    for (x, y) in pa.iter().zip(pb.iter()) {
        let ord = compare_parts(x, y);
        if ord != Ordering::Equal {
            return ord;
        }
    }
    match pa.len().cmp(&pb.len()) {
        Ordering::Equal => Ordering::Equal,
        // The longer version wins if its next part is a number (1.0 < 1.0.0), otherwise that
        // part is compared with the "number" form (1.0 > 1.0rc1, 1.0 < 1.0pl1).
        Ordering::Greater => {
            let next = &pa[pb.len()];
            if is_number(next) {
                Ordering::Greater
            } else {
                compare_parts(next, "#")
            }
        }
        Ordering::Less => {
            let next = &pb[pa.len()];
            if is_number(next) {
                Ordering::Less
            } else {
                compare_parts("#", next)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Ordering::*;

    #[test]
    fn php_examples() {
        assert_eq!(version_compare("9.6.8", "9.1.0"), Greater);
        assert_eq!(version_compare("9.6.8", "9.6.8"), Equal);
        assert_eq!(version_compare("9.6.8", "10.0"), Less);
        assert_eq!(version_compare("9.6.8", "9.10"), Less);
        assert_eq!(version_compare("1.0", "1.0.0"), Less);
        assert_eq!(version_compare("1.0rc1", "1.0"), Less);
        assert_eq!(version_compare("1.0", "1.0pl1"), Less);
        assert_eq!(version_compare("1.0-dev", "1.0alpha"), Less);
        assert_eq!(version_compare("1.0alpha", "1.0beta"), Less);
        assert_eq!(version_compare("1.0b1", "1.0RC1"), Less);
        assert_eq!(version_compare("9.06.8", "9.6.8"), Equal);
        assert_eq!(version_compare("", "1"), Less);
    }
}
