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
}
