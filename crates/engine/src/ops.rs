//! Cerb's string operator family (`is`, `contains`, `like`, `regexp`, each negatable with `!`),
//! with Cerb's folding rules, and PCRE-style `/pattern/flags` compiled to linear-time regexes.

use regex::bytes::{Regex, RegexBuilder};

/// Upper bound on a compiled pattern's size, so a hostile pattern cannot exhaust memory.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// A parsed condition operator.
#[derive(Debug, Clone)]
pub struct Operator {
    pub negate: bool,
    pub kind: OpKind,
}

#[derive(Debug, Clone)]
pub enum OpKind {
    /// Case-insensitive (ASCII folding) equality.
    Is,
    /// Case-insensitive (ASCII folding) substring.
    Contains,
    /// `*` wildcard, anchored both ends, ASCII case-insensitive, `*` does not cross newlines.
    Like(Regex),
    /// A PCRE-style pattern with delimiters and flags.
    Regexp(Regex),
    /// The pattern could not be compiled: never matches (Cerb: invalid pattern is no match).
    InvalidRegexp,
    /// Any other operator string: false (negated: true).
    Unknown,
}

/// Why a `regexp` value could not be compiled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid regexp `{pattern}`: {reason}")]
pub struct PatternError {
    pub pattern: String,
    pub reason: String,
}

impl Operator {
    /// Parses `oper` (e.g. `!contains`) with the condition's comparison `value`.
    /// A `regexp` that does not compile yields `Err` so import can refuse it (docs/semantics.md,
    /// Decision 8); callers that must stay lenient use [`OpKind::InvalidRegexp`].
    pub fn parse(oper: &str, value: &str) -> Result<Operator, PatternError> {
        let (negate, name) = match oper.strip_prefix('!') {
            Some(rest) => (true, rest),
            None => (false, oper),
        };
        let kind = match name {
            "is" | "=" => OpKind::Is,
            "contains" => OpKind::Contains,
            "like" => OpKind::Like(like_regex(value)),
            "regexp" => OpKind::Regexp(compile_pcre(value)?),
            _ => OpKind::Unknown,
        };
        Ok(Operator { negate, kind })
    }

    /// Like [`Operator::parse`] but an invalid pattern becomes a never-matching operator.
    pub fn parse_lenient(oper: &str, value: &str) -> Operator {
        Operator::parse(oper, value).unwrap_or_else(|_| Operator {
            negate: oper.starts_with('!'),
            kind: OpKind::InvalidRegexp,
        })
    }

    /// Applies the operator. `actual` is `None` when the value is an array (docs/semantics.md,
    /// Decision 9: every string operator treats arrays as a non-match, so negated operators
    /// match).
    pub fn eval(&self, actual: Option<&str>, value: &str) -> bool {
        let matched = match actual {
            None => false,
            Some(actual) => match &self.kind {
                OpKind::Is => actual.eq_ignore_ascii_case(value),
                OpKind::Contains => contains_ignore_ascii_case(actual, value),
                OpKind::Like(re) | OpKind::Regexp(re) => re.is_match(actual.as_bytes()),
                OpKind::InvalidRegexp | OpKind::Unknown => false,
            },
        };
        matched != self.negate
    }

    /// The operator as Cerb's log writes it (`is`, `!contains`, ...).
    pub fn describe(&self) -> &'static str {
        match (&self.kind, self.negate) {
            (OpKind::Is, false) => "is",
            (OpKind::Is, true) => "is not",
            (OpKind::Contains, false) => "contains",
            (OpKind::Contains, true) => "does not contain",
            (OpKind::Like(_), false) => "is like",
            (OpKind::Like(_), true) => "is not like",
            (OpKind::Regexp(_) | OpKind::InvalidRegexp, false) => "matches regexp",
            (OpKind::Regexp(_) | OpKind::InvalidRegexp, true) => "does not match regexp",
            (OpKind::Unknown, _) => "(unknown operator)",
        }
    }
}

fn contains_ignore_ascii_case(haystack: &str, needle: &str) -> bool {
    if needle.is_empty() {
        // PHP 8: the empty needle is contained in everything.
        return true;
    }
    let (h, n) = (haystack.as_bytes(), needle.as_bytes());
    h.windows(n.len()).any(|w| w.eq_ignore_ascii_case(n))
}

/// `like`: `*` is any run of characters except newline; everything else literal; anchored at both
/// ends (docs/semantics.md §2.5). Cerb builds `/^…$/i` for `preg_match`, and PCRE's `$` (no `D`
/// modifier) also matches before one final newline: `like "help"` matches `"help\n"`, so the end
/// anchor here is `\n?\z`.
fn like_regex(value: &str) -> Regex {
    let mut pattern = String::from("(?i-u)\\A");
    for (i, part) in value.split('*').enumerate() {
        if i > 0 {
            pattern.push_str(".*");
        }
        for b in part.bytes() {
            // Byte-oriented like PHP without the u flag: escape every byte as \xNN.
            pattern.push_str(&format!("\\x{b:02X}"));
        }
    }
    pattern.push_str("\\n?\\z");
    RegexBuilder::new(&pattern)
        .size_limit(REGEX_SIZE_LIMIT)
        .build()
        .expect("escaped like pattern always compiles")
}

/// Compiles a PCRE-style `/pattern/flags` (any non-alphanumeric, non-backslash, non-space
/// delimiter; bracket pairs `()[]{}<>`) with modifiers `i m s x u` (docs/semantics.md, Decision 8)
/// and also `U` (ungreedy), `A` (anchored) and `D` (`$` at the very end only), as the Twig dialect
/// reads them.
pub fn compile_pcre(value: &str) -> Result<Regex, PatternError> {
    let err = |reason: &str| PatternError {
        pattern: value.to_string(),
        reason: reason.to_string(),
    };
    let switchboard_twig::pcre::Parts { body, flags } =
        switchboard_twig::pcre::split(value).map_err(|reason| err(&reason))?;
    // Conditions only ask whether it matches, so PCRE's `$` can be emulated (see dollar_as_pcre).
    let body = switchboard_twig::pcre::anchored(
        switchboard_twig::pcre::dollar_as_pcre(body, flags),
        flags,
    );
    let mut builder = RegexBuilder::new(&body);
    builder.size_limit(REGEX_SIZE_LIMIT).unicode(false);
    for flag in flags.chars() {
        match flag {
            'i' => builder.case_insensitive(true),
            'm' => builder.multi_line(true),
            's' => builder.dot_matches_new_line(true),
            'x' => builder.ignore_whitespace(true),
            'u' => builder.unicode(true),
            'U' => builder.swap_greed(true),
            // Applied to the body above.
            'A' | 'D' => &mut builder,
            '\n' | ' ' | '\r' => &mut builder,
            other => return Err(err(&format!("unsupported modifier '{other}'"))),
        };
    }
    builder
        .build()
        .map_err(|e| err(&first_line(&e.to_string())))
}

fn first_line(s: &str) -> String {
    // regex errors are multi-line with a caret diagram; keep the explanation line.
    s.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or(s)
        .trim()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(oper: &str, value: &str, actual: Option<&str>) -> bool {
        Operator::parse(oper, value).unwrap().eval(actual, value)
    }

    #[test]
    fn operator_table() {
        let cases: &[(&str, &str, Option<&str>, bool)] = &[
            ("is", "help", Some("help"), true),
            ("is", "help", Some("HELP"), true),
            ("is", "help", Some("Help"), true),
            ("is", "help", Some("help "), false),
            ("is", "help", Some(" help"), false),
            ("is", "help", Some("please help"), false),
            ("!is", "help", Some("help"), false),
            ("!is", "help", Some("hi"), true),
            ("=", "a", Some("A"), true),
            // missing values are the empty string
            ("is", "", Some(""), true),
            ("!is", "", Some(""), false),
            // ASCII-only folding: É and é differ
            ("is", "é", Some("É"), false),
            ("is", "e", Some("E"), true),
            ("contains", "elp", Some("HELP me"), true),
            ("contains", "xyz", Some("HELP me"), false),
            ("!contains", "xyz", Some("HELP me"), true),
            ("contains", "", Some("anything"), true),
            ("like", "h*p", Some("HELP"), true),
            ("like", "h*p", Some("help me"), false),
            ("like", "*help*", Some("please help me"), true),
            ("like", "a.c", Some("abc"), false),
            ("like", "a.c", Some("a.c"), true),
            ("like", "a*c", Some("a\nc"), false),
            ("like", "a?c", Some("abc"), false),
            ("!like", "h*", Some("hello"), false),
            ("regexp", "/^help\\b/i", Some("HELP me"), true),
            ("regexp", "/^help\\b/", Some("HELP me"), false),
            ("regexp", "#a.c#s", Some("a\nc"), true),
            ("regexp", "#a.c#", Some("a\nc"), false),
            ("regexp", "{^x$}m", Some("a\nx\nb"), true),
            ("!regexp", "/foo/", Some("bar"), true),
            ("bogus", "x", Some("x"), false),
            ("!bogus", "x", Some("x"), true),
        ];
        for (oper, value, actual, expected) in cases {
            assert_eq!(
                check(oper, value, *actual),
                *expected,
                "{actual:?} {oper} {value:?}"
            );
        }
    }

    #[test]
    fn arrays_never_match_and_negations_do() {
        for oper in ["is", "contains", "like", "regexp"] {
            let value = if oper == "regexp" { "/.*/" } else { "*" };
            assert!(!check(oper, value, None), "{oper}");
            assert!(check(&format!("!{oper}"), value, None), "!{oper}");
        }
    }

    #[test]
    fn invalid_regexp_is_refused_or_never_matches() {
        for bad in [
            "help",
            "/unterminated",
            "/(a/",
            "/x/q",
            "",
            "/a(?=b)/",
            "/(a)\\1/",
        ] {
            assert!(
                Operator::parse("regexp", bad).is_err(),
                "{bad:?} should not compile"
            );
            let op = Operator::parse_lenient("regexp", bad);
            assert!(!op.eval(Some("a"), bad));
            let neg = Operator::parse_lenient("!regexp", bad);
            assert!(neg.eval(Some("a"), bad));
        }
    }

    #[test]
    fn catastrophic_pattern_is_linear() {
        let re = compile_pcre("/^(a+)+$/").unwrap();
        let hostile = "a".repeat(50_000) + "!";
        // The regex crate matches in linear time: this returns instead of backtracking forever.
        assert!(!re.is_match(hostile.as_bytes()));
    }

    #[test]
    fn unicode_flag() {
        assert!(compile_pcre("/^\\w$/u").unwrap().is_match("é".as_bytes()));
        assert!(!compile_pcre("/^\\w$/").unwrap().is_match("é".as_bytes()));
    }
}
