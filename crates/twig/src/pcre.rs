//! PHP's PCRE pattern syntax (`/body/flags`, `#body#flags`, bracket pairs `(…)`, `{…}`, `[…]`,
//! `<…>`): split into body and modifiers. Shared by the `regexp`/`matches` template features and
//! the behavior engine's `regexp` condition, which compile the body with their own flags.

/// A pattern split into its body and modifier letters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parts<'a> {
    pub body: &'a str,
    pub flags: &'a str,
}

/// Splits a PHP-style delimited pattern, or says what is wrong with it.
pub fn split(pattern: &str) -> Result<Parts<'_>, String> {
    let trimmed = pattern.trim_start();
    let open = trimmed.chars().next().ok_or("empty pattern")?;
    if open.is_alphanumeric() || open == '\\' {
        return Err("delimiter must not be alphanumeric or backslash".into());
    }
    let close = match open {
        '(' => ')',
        '[' => ']',
        '{' => '}',
        '<' => '>',
        c => c,
    };
    let rest = &trimmed[open.len_utf8()..];
    let end = rest
        .rfind(close)
        .ok_or_else(|| format!("no ending delimiter '{close}' found"))?;
    Ok(Parts {
        body: &rest[..end],
        flags: &rest[end + close.len_utf8()..],
    })
}

/// PCRE's `A` modifier (the match must start at the start of the subject): `body` wrapped in
/// `\A(?:…)`. A newline closes an `x`-mode comment the body may end with; without `x` it would be
/// text, so it is added only then.
pub fn anchored<'a>(body: std::borrow::Cow<'a, str>, flags: &str) -> std::borrow::Cow<'a, str> {
    if !flags.contains('A') {
        return body;
    }
    let end = if flags.contains('x') { "\n)" } else { ")" };
    std::borrow::Cow::Owned(format!("\\A(?:{body}{end}"))
}

/// PCRE's `$` outside multi-line mode matches at the very end of the subject *or just before a
/// final newline* (unless the `D` modifier is given); the `regex` crate's `$` is the very end
/// only. So that a match *test* gives PCRE's answer (`/^help$/` matches `"help\n"`, as in Cerb),
/// this rewrites each such `$` into `(?:\n?\z)`. That is exact wherever nothing that consumes
/// text follows the `$` (the end of the pattern or of an alternative, as nearly always), but the
/// rewritten pattern's match can include the newline: use it for yes/no questions only, never
/// for the matched text.
///
/// `body` comes back unchanged when there is no `$`, when `m` or `D` is among `flags`, when an
/// inline group could turn multi-line mode on, or when it does not parse (compiling it then
/// reports the error).
pub fn dollar_as_pcre<'a>(body: &'a str, flags: &str) -> std::borrow::Cow<'a, str> {
    use regex_syntax::ast::{self, Ast};
    use std::borrow::Cow;

    if !body.contains('$') || flags.contains('m') || flags.contains('D') {
        return Cow::Borrowed(body);
    }
    let parsed = ast::parse::ParserBuilder::new()
        .ignore_whitespace(flags.contains('x'))
        .nest_limit(250)
        .build()
        .parse(body);
    let Ok(parsed) = parsed else {
        return Cow::Borrowed(body);
    };
    // Byte ranges of the `$` assertions; `None` if an inline flag may set multi-line mode.
    fn walk(node: &Ast, out: &mut Vec<std::ops::Range<usize>>) -> Option<()> {
        let sets_multi_line = |flags: &ast::Flags| {
            let mut negated = false;
            flags.items.iter().any(|item| match item.kind {
                ast::FlagsItemKind::Negation => {
                    negated = true;
                    false
                }
                ast::FlagsItemKind::Flag(ast::Flag::MultiLine) => !negated,
                _ => false,
            })
        };
        match node {
            Ast::Assertion(a) if a.kind == ast::AssertionKind::EndLine => {
                out.push(a.span.start.offset..a.span.end.offset);
            }
            Ast::Flags(f) if sets_multi_line(&f.flags) => return None,
            Ast::Group(g) => {
                if let ast::GroupKind::NonCapturing(flags) = &g.kind
                    && sets_multi_line(flags)
                {
                    return None;
                }
                walk(&g.ast, out)?;
            }
            Ast::Repetition(r) => walk(&r.ast, out)?,
            Ast::Alternation(a) => a.asts.iter().try_for_each(|x| walk(x, out))?,
            Ast::Concat(c) => c.asts.iter().try_for_each(|x| walk(x, out))?,
            _ => {}
        }
        Some(())
    }
    let mut dollars = Vec::new();
    if walk(&parsed, &mut dollars).is_none() || dollars.is_empty() {
        return Cow::Borrowed(body);
    }
    let mut out = String::with_capacity(body.len() + dollars.len() * 8);
    let mut at = 0;
    for range in dollars {
        out.push_str(&body[at..range.start]);
        out.push_str("(?:\\n?\\z)");
        at = range.end;
    }
    out.push_str(&body[at..]);
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delimiters() {
        assert_eq!(
            split("/^a$/i"),
            Ok(Parts {
                body: "^a$",
                flags: "i"
            })
        );
        assert_eq!(
            split("  #a/b#"),
            Ok(Parts {
                body: "a/b",
                flags: ""
            })
        );
        assert_eq!(
            split("{x{1}}m"),
            Ok(Parts {
                body: "x{1}",
                flags: "m"
            })
        );
        assert!(split("abc").is_err());
        assert!(split("\\x\\").is_err());
        assert!(split("/open").is_err());
        assert!(split("").is_err());
    }

    #[test]
    fn dollar_follows_pcre_for_match_tests() {
        let test = |pattern: &str, subject: &str| {
            let Parts { body, flags } = split(pattern).unwrap();
            regex::RegexBuilder::new(&anchored(dollar_as_pcre(body, flags), flags))
                .multi_line(flags.contains('m'))
                .ignore_whitespace(flags.contains('x'))
                .build()
                .unwrap()
                .is_match(subject)
        };
        // PHP: preg_match('/^help$/', "help\n") === 1, but not before an inner newline or two.
        assert!(test("/^help$/", "help"));
        assert!(test("/^help$/", "help\n"));
        assert!(!test("/^help$/", "help\n\n"));
        assert!(!test("/^help$/", "help\nme"));
        assert!(!test("/^help$/", "help\r\n"));
        assert!(test("/^(yes|no$)/", "no\n"));
        assert!(test("/a$|b$/", "b\n"));
        // D: the very end only.
        assert!(!test("/^help$/D", "help\n"));
        // Multi-line mode (a flag or inline) already matches before any newline.
        assert!(test("/^help$/m", "help\nme"));
        assert!(test("/(?m)^help$/", "help\nme"));
        // Escaped, in a class, in an x-mode comment: not an assertion.
        assert_eq!(dollar_as_pcre(r"a\$", ""), r"a\$");
        assert_eq!(dollar_as_pcre("a[$]", ""), "a[$]");
        assert_eq!(
            dollar_as_pcre("a # costs $5\n$", "x"),
            "a # costs $5\n(?:\\n?\\z)"
        );
        assert_eq!(dollar_as_pcre("^a$", ""), "^a(?:\\n?\\z)");
        // A: anchored at the start, also after an x-mode comment.
        assert!(test("/help/A", "help me"));
        assert!(!test("/help/A", "say help"));
        assert!(test("/help # a comment/Ax", "help"));
        assert!(!test("/help # a comment/Ax", "a help"));
        // Unparsable bodies are left to the compiler's error.
        assert_eq!(dollar_as_pcre("(a$", ""), "(a$");
    }
}
