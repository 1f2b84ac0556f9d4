//! Translates Twig source into the minijinja syntax. Line endings are folded to LF, the text is
//! cut into text and tags like Twig's lexer does (whitespace control `-` and `~`, the one newline
//! Twig drops after `%}` and `#}`, `verbatim`), and every expression is parsed with Twig's grammar
//! and precedence table and re-emitted as a minijinja expression whose operators are calls to the
//! `_tw_*` helpers of [`crate::runtime`], so PHP semantics (truthiness, loose comparison,
//! arithmetic on strings, `~` of floats) survive. Text and string contents are never rewritten.

use std::borrow::Cow;
use std::fmt::Write as _;

use crate::Delims;

/// Whitespace characters that Twig's `-` modifier trims (PHP `trim()`'s default set).
const WS_ALL: &[char] = &[' ', '\t', '\n', '\r', '\0', '\x0B'];
/// Whitespace characters that Twig's `~` modifier trims (the newline survives).
const WS_LINE: &[char] = &[' ', '\t', '\0', '\x0B'];

/// Tests a Twig template may use (`is defined`, `is divisible by(3)`, …).
const TESTS: &[&str] = &[
    "defined",
    "null",
    "none",
    "empty",
    "iterable",
    "odd",
    "even",
    "divisible by",
    "same as",
    "numeric",
];

/// Tags Cerb's sandbox allows that this dialect implements (plus their end tags).
const TAGS: &[&str] = &["if", "for", "set", "apply", "verbatim", "do", "with"];

/// Folds CRLF and lone CR to LF, then translates the Twig template into minijinja syntax.
pub(crate) fn normalize(source: &str, delims: Delims) -> Cow<'_, str> {
    let folded: Cow<'_, str> = if source.contains('\r') {
        Cow::Owned(source.replace("\r\n", "\n").replace('\r', "\n"))
    } else {
        Cow::Borrowed(source)
    };
    match translate_folded(&folded, delims) {
        Ok(out) => Cow::Owned(out),
        // An untranslatable template becomes one minijinja template that fails to compile with
        // Twig's message and line, so callers see a syntax error at `add_template` time.
        Err(e) => Cow::Owned(format!(
            "{}{}{} {}",
            "\n".repeat(e.line.saturating_sub(1)),
            delims.block.0,
            " _tw_syntax_error",
            lit(&e.message)
        )),
    }
}

/// A translation failure, reported by Twig's wording where there is one.
#[derive(Debug)]
pub(crate) struct SyntaxError {
    pub message: String,
    pub line: usize,
}

/// Folds line endings and translates; `Err` carries Twig's message and line.
pub(crate) fn translate(source: &str, delims: Delims) -> Result<String, SyntaxError> {
    if source.contains('\r') {
        translate_folded(&source.replace("\r\n", "\n").replace('\r', "\n"), delims)
    } else {
        translate_folded(source, delims)
    }
}

type Res<T> = Result<T, SyntaxError>;

fn err<T>(line: usize, message: impl Into<String>) -> Res<T> {
    Err(SyntaxError {
        message: message.into(),
        line,
    })
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Trim {
    None,
    All,
    Line,
}

fn modifier(c: Option<char>) -> Trim {
    match c {
        Some('-') => Trim::All,
        Some('~') => Trim::Line,
        _ => Trim::None,
    }
}

/// Output under construction: the minijinja source, and where the current run of text began (so
/// a `{%-` trims text but never reaches back into an emitted tag).
struct Out {
    buf: String,
    text_start: usize,
    pending: Trim,
}

impl Out {
    fn text(&mut self, text: &str) {
        let text = match self.pending {
            Trim::None => text,
            Trim::All => text.trim_start_matches(WS_ALL),
            Trim::Line => text.trim_start_matches(WS_LINE),
        };
        // A trim applies to the whitespace right after its tag only, even when that is nothing.
        self.pending = Trim::None;
        self.buf.push_str(text);
    }

    fn trim_back(&mut self, trim: Trim) {
        let chars = match trim {
            Trim::None => return,
            Trim::All => WS_ALL,
            Trim::Line => WS_LINE,
        };
        let keep = self.buf[self.text_start..].trim_end_matches(chars).len();
        self.buf.truncate(self.text_start + keep);
    }

    fn tag(&mut self, tag: &str) {
        self.buf.push_str(tag);
        self.text_start = self.buf.len();
    }
}

fn translate_folded(src: &str, d: Delims) -> Res<String> {
    let mut out = Out {
        buf: String::with_capacity(src.len() + 32),
        text_start: 0,
        pending: Trim::None,
    };
    let mut pos = 0;
    let mut stack: Vec<Open> = Vec::new();
    let mut counter = 0usize;
    // The scope object every variable read and write goes through (see `block_tag`).
    out.tag(&format!(
        "{} set _tw_s = _tw_scope() +{}",
        d.block.0, d.block.1
    ));
    let line_at = |p: usize| src[..p].matches('\n').count() + 1;
    loop {
        let next = [(d.comment.0, 0u8), (d.block.0, 1), (d.variable.0, 2)]
            .iter()
            .filter_map(|(m, k)| src[pos..].find(m).map(|i| (pos + i, *k, m.len())))
            // The earliest marker wins; on a tie the longest (ImportTime `{{{` vs text).
            .min_by_key(|(i, _, len)| (*i, usize::MAX - len));
        let Some((start, kind, mlen)) = next else {
            out.text(&src[pos..]);
            break;
        };
        out.text(&src[pos..start]);
        let line = line_at(start);
        let mut p = start + mlen;
        let lead = modifier(src[p..].chars().next());
        if lead != Trim::None {
            p += 1;
        }
        out.trim_back(lead);
        match kind {
            0 => {
                let Some(end) = src[p..].find(d.comment.1) else {
                    return err(line, "Unclosed comment.");
                };
                let body = &src[p..p + end];
                let tail = modifier(body.chars().last());
                pos = p + end + d.comment.1.len();
                // The newline Twig drops after the tag moves inside it, so lines stay aligned.
                let newlines =
                    body.matches('\n').count() + usize::from(eats_newline(src, pos, tail));
                out.tag(&format!(
                    "{}{} +{}",
                    d.comment.0,
                    "\n".repeat(newlines),
                    d.comment.1
                ));
                pos = after_tag(src, pos, tail, &mut out);
            }
            _ => {
                let end_delim = if kind == 1 { d.block.1 } else { d.variable.1 };
                let mut lx = Lexer {
                    src,
                    pos: p,
                    end: end_delim,
                    line,
                    interp: d.interp,
                    tail: Trim::None,
                    depth: 0,
                };
                let toks = lx.tokens_until_end()?;
                let tail = lx.tail;
                pos = lx.pos;
                let newlines = src[start..pos].matches('\n').count();
                let mut pad = "\n".repeat(newlines);
                if kind == 1 && eats_newline(src, pos, tail) {
                    pad.push('\n');
                }
                if kind == 2 {
                    if toks.is_empty() {
                        return err(
                            line,
                            "Unexpected token \"end of print statement\" of value \"\".",
                        );
                    }
                    let mut ps = Parser {
                        toks: &toks,
                        i: 0,
                        line,
                        depth: 0,
                    };
                    let e = ps.expression(0)?;
                    ps.expect_end("print statement")?;
                    out.tag(&format!(
                        "{} {} {}{}",
                        d.variable.0,
                        emit(&e),
                        pad,
                        d.variable.1
                    ));
                    out.pending = tail;
                } else {
                    let mut ps = Parser {
                        toks: &toks,
                        i: 0,
                        line,
                        depth: 0,
                    };
                    let tags = block_tag(&mut ps, &mut stack, &mut counter, line)?;
                    if tags.len() == 1 && tags[0] == "verbatim" {
                        let (body, body_end, end_tail) = verbatim_body(src, pos, d, line)?;
                        // The opening tag's `-`/`~` trims the start of the raw text.
                        let body = match tail {
                            Trim::All => body.trim_start_matches(WS_ALL),
                            Trim::Line => body.trim_start_matches(WS_LINE),
                            Trim::None => body,
                        };
                        // Pad with the block's newlines so later error lines stay right.
                        let lines = "\n".repeat(src[pos..body_end].matches('\n').count());
                        out.tag(&format!(
                            "{} {} {lines}{}",
                            d.variable.0,
                            lit(body),
                            d.variable.1
                        ));
                        // The newline after `{% endverbatim %}` is kept, as in Twig.
                        pos = after_tag_no_newline(src, body_end, end_tail, &mut out);
                        continue;
                    }
                    let last = tags.len() - 1;
                    for (i, tag) in tags.iter().enumerate() {
                        let pad = if i == last { pad.as_str() } else { "" };
                        out.tag(&format!("{} {} {}+{}", d.block.0, tag, pad, d.block.1));
                    }
                    pos = after_tag(src, pos, tail, &mut out);
                }
            }
        }
    }
    if let Some(open) = stack.pop() {
        return err(
            open.line,
            format!(
                "Unexpected end of template (the \"{}\" tag is not closed).",
                open.tag
            ),
        );
    }
    Ok(out.buf)
}

/// Whether Twig drops the newline right after a block or comment tag.
fn eats_newline(src: &str, pos: usize, tail: Trim) -> bool {
    tail == Trim::None && src[pos..].starts_with('\n')
}

/// After `%}` / `#}`: Twig drops exactly one newline; after `-%}` / `~%}` the trim applies instead.
fn after_tag(src: &str, pos: usize, tail: Trim, out: &mut Out) -> usize {
    match tail {
        Trim::None if src[pos..].starts_with('\n') => pos + 1,
        Trim::None => pos,
        t => {
            out.pending = t;
            pos
        }
    }
}

fn after_tag_no_newline(_src: &str, pos: usize, tail: Trim, out: &mut Out) -> usize {
    out.pending = tail;
    pos
}

/// The raw text of a verbatim block: up to `{% endverbatim %}`, with that tag's `-`/`~` applied.
fn verbatim_body(src: &str, pos: usize, d: Delims, line: usize) -> Res<(&str, usize, Trim)> {
    let mut search = pos;
    while let Some(i) = src[search..].find(d.block.0) {
        let start = search + i;
        let mut p = start + d.block.0.len();
        let lead = modifier(src[p..].chars().next());
        if lead != Trim::None {
            p += 1;
        }
        let rest = src[p..].trim_start();
        if let Some(after) = rest.strip_prefix("endverbatim") {
            let after_ws = after.trim_start();
            let (tail, after_mod) = match after_ws.chars().next() {
                Some(c @ ('-' | '~')) => (modifier(Some(c)), &after_ws[1..]),
                _ => (Trim::None, after_ws),
            };
            if let Some(rest_end) = after_mod.strip_prefix(d.block.1)
                && (after.is_empty()
                    || !after.starts_with(|c: char| c.is_alphanumeric() || c == '_'))
            {
                let mut body = &src[pos..start];
                body = match lead {
                    Trim::All => body.trim_end_matches(WS_ALL),
                    Trim::Line => body.trim_end_matches(WS_LINE),
                    Trim::None => body,
                };
                return Ok((body, src.len() - rest_end.len(), tail));
            }
        }
        search = start + d.block.0.len();
    }
    err(line, "Unexpected end of file: Unclosed \"verbatim\" block.")
}

// ---------------------------------------------------------------------------------------------
// Tokens

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Name(String),
    Num(String),
    Str(String),
    /// A double-quoted string with `#{…}` parts: literal text and token lists.
    Interp(Vec<Part>),
    Op(&'static str),
    Punct(char),
    Arrow,
}

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Text(String),
    Expr(Vec<Tok>),
}

/// Symbolic operators, longest first so `<=>` wins over `<=` and `//` over `/`.
const SYM_OPS: &[&str] = &[
    "<=>", "==", "!=", "<=", ">=", "//", "**", "??", "..", "<", ">", "+", "-", "*", "/", "%", "~",
];

struct Lexer<'a> {
    src: &'a str,
    pos: usize,
    end: &'a str,
    line: usize,
    interp: (&'static str, &'static str),
    /// The `-` / `~` modifier of the closing delimiter.
    tail: Trim,
    /// Nesting of string interpolations.
    depth: usize,
}

impl Lexer<'_> {
    fn rest(&self) -> &str {
        &self.src[self.pos..]
    }

    /// Tokens up to the closing delimiter (only recognised outside brackets, as in Twig).
    fn tokens_until_end(&mut self) -> Res<Vec<Tok>> {
        let (toks, tail) = self.tokens(Some(self.end))?;
        self.tail = tail;
        Ok(toks)
    }

    fn tokens(&mut self, end: Option<&str>) -> Res<(Vec<Tok>, Trim)> {
        let mut toks = Vec::new();
        let mut brackets: Vec<char> = Vec::new();
        loop {
            let ws = self.rest().len() - self.rest().trim_start_matches(WS_ALL).len();
            self.pos += ws;
            let rest = &self.src[self.pos..];
            if rest.is_empty() {
                return err(self.line, "Unexpected end of file: Unclosed tag.");
            }
            if brackets.is_empty() {
                match end {
                    Some(end) => {
                        for (m, t) in [("-", Trim::All), ("~", Trim::Line), ("", Trim::None)] {
                            if rest.starts_with(m) && rest[m.len()..].starts_with(end) {
                                self.pos += m.len() + end.len();
                                return Ok((toks, t));
                            }
                        }
                    }
                    None => {
                        if rest.starts_with(self.interp.1) {
                            self.pos += self.interp.1.len();
                            return Ok((toks, Trim::None));
                        }
                    }
                }
            }
            let c = rest.chars().next().unwrap_or(' ');
            if c.is_ascii_alphabetic() || c == '_' || !c.is_ascii() {
                let len =
                    rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || !c.is_ascii()));
                let name = &rest[..len.unwrap_or(rest.len())];
                self.pos += name.len();
                toks.push(Tok::Name(name.to_string()));
                continue;
            }
            if c.is_ascii_digit() {
                toks.push(Tok::Num(self.number()));
                continue;
            }
            if c == '"' || c == '\'' {
                toks.push(self.string(c)?);
                continue;
            }
            if rest.starts_with("=>") {
                self.pos += 2;
                toks.push(Tok::Arrow);
                continue;
            }
            if let Some(op) = SYM_OPS.iter().find(|op| rest.starts_with(**op)) {
                self.pos += op.len();
                toks.push(Tok::Op(op));
                continue;
            }
            if "([{".contains(c) {
                brackets.push(c);
            } else if ")]}".contains(c) {
                let want = match c {
                    ')' => '(',
                    ']' => '[',
                    _ => '{',
                };
                if brackets.pop() != Some(want) {
                    return err(self.line, format!("Unexpected \"{c}\"."));
                }
            } else if !"?:.,|=".contains(c) {
                return err(self.line, format!("Unexpected character \"{c}\"."));
            }
            self.pos += c.len_utf8();
            toks.push(Tok::Punct(c));
        }
    }

    fn number(&mut self) -> String {
        let b = self.rest().as_bytes();
        let mut i = b.iter().take_while(|c| c.is_ascii_digit()).count();
        if b.get(i) == Some(&b'.') && b.get(i + 1).is_some_and(u8::is_ascii_digit) {
            i += 1 + b[i + 1..].iter().take_while(|c| c.is_ascii_digit()).count();
        }
        if matches!(b.get(i), Some(b'e' | b'E'))
            && matches!(b.get(i + 1), Some(b'+' | b'-'))
            && b.get(i + 2).is_some_and(u8::is_ascii_digit)
        {
            i += 2 + b[i + 2..].iter().take_while(|c| c.is_ascii_digit()).count();
        }
        let n = self.rest()[..i].to_string();
        self.pos += i;
        n
    }

    /// A quoted string; double-quoted ones may interpolate `#{…}`.
    fn string(&mut self, q: char) -> Res<Tok> {
        let line = self.line;
        self.pos += 1;
        let mut parts = Vec::new();
        let mut raw = String::new();
        loop {
            let rest = self.rest();
            let Some(c) = rest.chars().next() else {
                return err(line, "Unclosed string.");
            };
            if c == q {
                self.pos += 1;
                break;
            }
            if c == '\\' {
                let next = rest[1..].chars().next();
                let Some(n) = next else {
                    return err(line, "Unclosed string.");
                };
                raw.push('\\');
                raw.push(n);
                self.pos += 1 + n.len_utf8();
                continue;
            }
            if q == '"' && rest.starts_with(self.interp.0) {
                self.pos += self.interp.0.len();
                self.depth += 1;
                if self.depth > MAX_DEPTH {
                    return err(line, "String interpolation is nested too deeply.");
                }
                parts.push(Part::Text(stripcslashes(&std::mem::take(&mut raw))));
                let (toks, _) = self.tokens(None)?;
                if toks.is_empty() {
                    return err(line, "Unexpected token \"interpolation end\".");
                }
                parts.push(Part::Expr(toks));
                self.depth -= 1;
                continue;
            }
            raw.push(c);
            self.pos += c.len_utf8();
        }
        if parts.is_empty() {
            Ok(Tok::Str(stripcslashes(&raw)))
        } else {
            parts.push(Part::Text(stripcslashes(&raw)));
            Ok(Tok::Interp(parts))
        }
    }
}

/// PHP's `stripcslashes`, which Twig applies to every string literal.
fn stripcslashes(s: &str) -> String {
    let mut out: Vec<u8> = Vec::with_capacity(s.len());
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'\\' || i + 1 >= b.len() {
            out.push(b[i]);
            i += 1;
            continue;
        }
        i += 1;
        let c = b[i];
        i += 1;
        match c {
            b'n' => out.push(b'\n'),
            b't' => out.push(b'\t'),
            b'r' => out.push(b'\r'),
            b'a' => out.push(7),
            b'v' => out.push(11),
            b'b' => out.push(8),
            b'f' => out.push(12),
            b'x' if i < b.len() && b[i].is_ascii_hexdigit() => {
                let mut v = 0u32;
                let mut n = 0;
                while n < 2 && i < b.len() && b[i].is_ascii_hexdigit() {
                    v = v * 16 + (b[i] as char).to_digit(16).unwrap_or(0);
                    i += 1;
                    n += 1;
                }
                out.push(v as u8);
            }
            b'0'..=b'7' => {
                let mut v = u32::from(c - b'0');
                let mut n = 1;
                while n < 3 && i < b.len() && (b'0'..=b'7').contains(&b[i]) {
                    v = v * 8 + u32::from(b[i] - b'0');
                    i += 1;
                    n += 1;
                }
                out.push((v & 0xff) as u8);
            }
            other => out.push(other),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A minijinja string literal with the same contents.
pub(crate) fn lit(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c == '\x7f' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

// ---------------------------------------------------------------------------------------------
// Expressions

#[derive(Debug, Clone)]
enum Expr {
    /// Already-emitted minijinja source (literals).
    Raw(String),
    Name(String),
    Str(String),
    Interp(Vec<Expr>),
    Array(Vec<Expr>),
    Hash(Vec<(Expr, Expr)>),
    Unary(&'static str, Box<Expr>),
    Binary(&'static str, Box<Expr>, Box<Expr>),
    Cond(Box<Expr>, Box<Expr>, Box<Expr>),
    Get(Box<Expr>, Box<Expr>),
    Method(Box<Expr>, String, Vec<Expr>),
    Slice(Box<Expr>, Option<Box<Expr>>, Option<Box<Expr>>),
    Filter(Box<Expr>, String, Vec<Expr>),
    Call(String, Vec<Expr>),
    Test(Box<Expr>, String, Vec<Expr>),
}

/// Twig's binary operators: (token, precedence, right associative).
fn binary_op(toks: &[Tok], i: usize) -> Option<(&'static str, u32, bool, usize)> {
    let name = |j: usize| match toks.get(j) {
        Some(Tok::Name(n)) => Some(n.as_str()),
        _ => None,
    };
    let op = |j: usize| match toks.get(j) {
        Some(Tok::Op(o)) => Some(*o),
        _ => None,
    };
    let (op, width) = match (name(i), op(i)) {
        (Some("or"), _) => ("or", 1),
        (Some("and"), _) => ("and", 1),
        (Some("not"), _) if name(i + 1) == Some("in") => ("not in", 2),
        (Some("in"), _) => ("in", 1),
        (Some("matches"), _) => ("matches", 1),
        (Some("starts"), _) if name(i + 1) == Some("with") => ("starts with", 2),
        (Some("ends"), _) if name(i + 1) == Some("with") => ("ends with", 2),
        (Some("is"), _) if name(i + 1) == Some("not") => ("is not", 2),
        (Some("is"), _) => ("is", 1),
        (Some("b"), _) if op(i + 1) == Some("-") => match name(i + 2) {
            Some("and") => ("b-and", 3),
            Some("or") => ("b-or", 3),
            Some("xor") => ("b-xor", 3),
            _ => return None,
        },
        (_, Some(o)) => (o, 1),
        _ => return None,
    };
    let (prec, right) = match op {
        "or" => (10, false),
        "and" => (15, false),
        "b-or" => (16, false),
        "b-xor" => (17, false),
        "b-and" => (18, false),
        "==" | "!=" | "<=>" | "<" | ">" | ">=" | "<=" | "not in" | "in" | "matches"
        | "starts with" | "ends with" => (20, false),
        ".." => (25, false),
        "+" | "-" => (30, false),
        "~" => (40, false),
        "*" | "/" | "//" | "%" => (60, false),
        "is" | "is not" => (100, false),
        "**" => (200, true),
        "??" => (300, true),
        _ => return None,
    };
    Some((op, prec, right, width))
}

struct Parser<'t> {
    toks: &'t [Tok],
    i: usize,
    line: usize,
    /// Nesting of expressions, bounded so hostile templates cannot overflow the stack.
    depth: usize,
}

/// How deeply expressions (and string interpolations) may nest.
const MAX_DEPTH: usize = 64;

impl Parser<'_> {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.i)
    }

    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.i).cloned();
        self.i += 1;
        t
    }

    fn is_punct(&self, c: char) -> bool {
        self.peek() == Some(&Tok::Punct(c))
    }

    fn eat_punct(&mut self, c: char) -> bool {
        let yes = self.is_punct(c);
        if yes {
            self.i += 1;
        }
        yes
    }

    fn is_name(&self, n: &str) -> bool {
        matches!(self.peek(), Some(Tok::Name(x)) if x == n)
    }

    fn unexpected<T>(&self) -> Res<T> {
        let what = match self.peek() {
            None => "end of tag".to_string(),
            Some(t) => describe(t),
        };
        err(self.line, format!("Unexpected token {what}."))
    }

    fn expect_punct(&mut self, c: char) -> Res<()> {
        if self.eat_punct(c) {
            Ok(())
        } else {
            self.unexpected()
        }
    }

    fn expect_end(&self, what: &str) -> Res<()> {
        match self.peek() {
            None => Ok(()),
            Some(t) => err(
                self.line,
                format!("Unexpected token {} in {what}.", describe(t)),
            ),
        }
    }

    fn name(&mut self) -> Res<String> {
        match self.next() {
            Some(Tok::Name(n)) => Ok(n),
            _ => {
                self.i -= 1;
                self.unexpected()
            }
        }
    }

    fn expression(&mut self, min_prec: u32) -> Res<Expr> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return err(self.line, "Expression is nested too deeply.");
        }
        let res = self.expression_inner(min_prec);
        self.depth -= 1;
        res
    }

    fn expression_inner(&mut self, min_prec: u32) -> Res<Expr> {
        let mut left = self.primary()?;
        while let Some((op, prec, right_assoc, width)) = binary_op(self.toks, self.i) {
            if prec < min_prec {
                break;
            }
            self.i += width;
            if op == "is" || op == "is not" {
                let test = self.test(left)?;
                left = if op == "is not" {
                    Expr::Unary("not", Box::new(test))
                } else {
                    test
                };
                continue;
            }
            if op == "??" {
                self.check_defined_subject(&left)?;
            }
            let rhs = self.expression(if right_assoc { prec } else { prec + 1 })?;
            left = if op == "not in" {
                // Twig compiles `not in` as `!twig_in_filter(…)`, a negation PHP binds looser
                // than `**`: keep it a unary node so the `**` rule in `emit` applies.
                Expr::Unary(
                    "not",
                    Box::new(Expr::Binary("in", Box::new(left), Box::new(rhs))),
                )
            } else {
                Expr::Binary(op, Box::new(left), Box::new(rhs))
            };
        }
        if min_prec == 0 {
            left = self.conditional(left)?;
        }
        Ok(left)
    }

    fn conditional(&mut self, mut expr: Expr) -> Res<Expr> {
        while self.eat_punct('?') {
            let (then, other) = if self.eat_punct(':') {
                (expr.clone(), self.expression(0)?)
            } else {
                let then = self.expression(0)?;
                let other = if self.eat_punct(':') {
                    self.expression(0)?
                } else {
                    Expr::Str(String::new())
                };
                (then, other)
            };
            expr = Expr::Cond(Box::new(expr), Box::new(then), Box::new(other));
        }
        Ok(expr)
    }

    fn test(&mut self, subject: Expr) -> Res<Expr> {
        let mut name = self.name()?;
        if !TESTS.contains(&name.as_str())
            && let Some(Tok::Name(second)) = self.peek()
        {
            let two = format!("{name} {second}");
            if TESTS.contains(&two.as_str()) {
                self.i += 1;
                name = two;
            }
        }
        if !TESTS.contains(&name.as_str()) {
            return err(self.line, format!("Unknown \"{name}\" test."));
        }
        let args = if self.is_punct('(') {
            self.arguments(&name)?
        } else {
            Vec::new()
        };
        if name == "defined" {
            self.check_defined_subject(&subject)?;
        }
        Ok(Expr::Test(Box::new(subject), name.replace(' ', "_"), args))
    }

    /// Twig's `defined` test (and so `??`) takes a variable, an attribute, a method call or a
    /// literal; anything else is a syntax error.
    fn check_defined_subject(&self, e: &Expr) -> Res<()> {
        match e {
            Expr::Name(_)
            | Expr::Get(..)
            | Expr::Method(..)
            | Expr::Raw(_)
            | Expr::Str(_)
            | Expr::Array(_)
            | Expr::Hash(_) => Ok(()),
            _ => err(
                self.line,
                "The \"defined\" test only works with simple variables.",
            ),
        }
    }

    fn primary(&mut self) -> Res<Expr> {
        match self.peek().cloned() {
            Some(Tok::Name(n)) if n == "not" => {
                self.i += 1;
                let e = self.expression(50)?;
                self.postfix(Expr::Unary("not", Box::new(e)))
            }
            Some(Tok::Op(op @ ("-" | "+"))) => {
                self.i += 1;
                let e = self.expression(500)?;
                self.postfix(Expr::Unary(op, Box::new(e)))
            }
            Some(Tok::Punct('(')) => {
                self.i += 1;
                let e = self.expression(0)?;
                self.expect_punct(')')?;
                self.postfix(e)
            }
            _ => {
                let e = self.atom()?;
                self.postfix(e)
            }
        }
    }

    fn atom(&mut self) -> Res<Expr> {
        let Some(tok) = self.next() else {
            self.i -= 1;
            return self.unexpected();
        };
        Ok(match tok {
            Tok::Name(n) => match n.as_str() {
                "true" | "TRUE" => Expr::Raw("true".into()),
                "false" | "FALSE" => Expr::Raw("false".into()),
                "null" | "NULL" | "none" | "NONE" => Expr::Raw("none".into()),
                _ if self.is_punct('(') => {
                    if !crate::runtime::FUNCTIONS.contains(&n.as_str()) {
                        return err(self.line, format!("Unknown \"{n}\" function."));
                    }
                    let args = self.arguments(&n)?;
                    Expr::Call(n, args)
                }
                _ => {
                    if matches!(self.peek(), Some(Tok::Arrow)) {
                        return err(self.line, "Arrow functions are not supported.");
                    }
                    Expr::Name(n)
                }
            },
            Tok::Num(n) => Expr::Raw(n),
            Tok::Str(s) => Expr::Str(s),
            Tok::Interp(parts) => {
                let mut items = Vec::new();
                for part in parts {
                    match part {
                        Part::Text(t) if t.is_empty() => {}
                        Part::Text(t) => items.push(Expr::Str(t)),
                        Part::Expr(toks) => {
                            let mut sub = Parser {
                                toks: &toks,
                                i: 0,
                                line: self.line,
                                depth: self.depth,
                            };
                            let e = sub.expression(0)?;
                            sub.expect_end("string interpolation")?;
                            items.push(e);
                        }
                    }
                }
                Expr::Interp(items)
            }
            Tok::Punct('[') => {
                let mut items = Vec::new();
                while !self.eat_punct(']') {
                    if !items.is_empty() {
                        self.expect_punct(',')?;
                        if self.eat_punct(']') {
                            break;
                        }
                    }
                    items.push(self.expression(0)?);
                }
                Expr::Array(items)
            }
            Tok::Punct('{') => {
                let mut items = Vec::new();
                while !self.eat_punct('}') {
                    if !items.is_empty() {
                        self.expect_punct(',')?;
                        if self.eat_punct('}') {
                            break;
                        }
                    }
                    let key = match self.next() {
                        Some(Tok::Str(s)) => Expr::Str(s),
                        Some(Tok::Name(n)) => Expr::Str(n),
                        Some(Tok::Num(n)) => Expr::Raw(n),
                        Some(Tok::Punct('(')) => {
                            let k = self.expression(0)?;
                            self.expect_punct(')')?;
                            k
                        }
                        _ => {
                            self.i -= 1;
                            return err(
                                self.line,
                                "A hash key must be a quoted string, a number, a name, or an \
                                 expression enclosed in parentheses.",
                            );
                        }
                    };
                    self.expect_punct(':')?;
                    let value = self.expression(0)?;
                    items.push((key, value));
                }
                Expr::Hash(items)
            }
            _ => {
                self.i -= 1;
                return self.unexpected();
            }
        })
    }

    fn postfix(&mut self, mut e: Expr) -> Res<Expr> {
        loop {
            if self.eat_punct('.') {
                let attr = match self.next() {
                    Some(Tok::Name(n)) => Expr::Str(n),
                    Some(Tok::Num(n)) if !n.contains(['.', 'e', 'E']) => Expr::Raw(n),
                    _ => {
                        self.i -= 1;
                        return self.unexpected();
                    }
                };
                if self.is_punct('(') {
                    let args = self.arguments("")?;
                    let (Expr::Str(name) | Expr::Raw(name)) = attr else {
                        unreachable!()
                    };
                    e = Expr::Method(Box::new(e), name, args);
                } else {
                    e = Expr::Get(Box::new(e), Box::new(attr));
                }
            } else if self.eat_punct('[') {
                let start = if self.is_punct(':') {
                    None
                } else {
                    Some(Box::new(self.expression(0)?))
                };
                if self.eat_punct(':') {
                    let len = if self.is_punct(']') {
                        None
                    } else {
                        Some(Box::new(self.expression(0)?))
                    };
                    self.expect_punct(']')?;
                    e = Expr::Slice(Box::new(e), start, len);
                } else {
                    self.expect_punct(']')?;
                    let Some(key) = start else {
                        return self.unexpected();
                    };
                    e = Expr::Get(Box::new(e), key);
                }
            } else if self.eat_punct('|') {
                let (name, args) = self.filter_call()?;
                e = Expr::Filter(Box::new(e), name, args);
            } else {
                return Ok(e);
            }
        }
    }

    fn filter_call(&mut self) -> Res<(String, Vec<Expr>)> {
        let name = self.name()?;
        if !crate::runtime::FILTERS.contains(&name.as_str()) {
            return err(self.line, format!("Unknown \"{name}\" filter."));
        }
        let args = if self.is_punct('(') {
            self.arguments(&format!("|{name}"))?
        } else {
            Vec::new()
        };
        Ok((name, args))
    }

    /// `(a, b, name = c)`: named arguments are mapped to positions by the filter's signature.
    /// `(a, b, name = c)`; named arguments are placed by the callee's Twig signature.
    fn arguments(&mut self, callee: &str) -> Res<Vec<Expr>> {
        self.expect_punct('(')?;
        let mut args: Vec<(Option<String>, Expr)> = Vec::new();
        while !self.eat_punct(')') {
            if !args.is_empty() {
                self.expect_punct(',')?;
            }
            if matches!(self.toks.get(self.i + 1), Some(Tok::Arrow))
                || (self.is_punct('(') && self.toks[self.i..].contains(&Tok::Arrow))
            {
                return err(self.line, "Arrow functions are not supported.");
            }
            let name = match (self.peek(), self.toks.get(self.i + 1)) {
                (Some(Tok::Name(n)), Some(Tok::Punct('='))) => {
                    let n = n.clone();
                    self.i += 2;
                    Some(n)
                }
                _ => None,
            };
            if name.is_none() && args.iter().any(|(n, _)| n.is_some()) {
                return err(
                    self.line,
                    "Positional arguments cannot be used after named arguments.",
                );
            }
            args.push((name, self.expression(0)?));
        }
        self.place_arguments(callee, args)
    }

    fn place_arguments(&self, callee: &str, args: Vec<(Option<String>, Expr)>) -> Res<Vec<Expr>> {
        if args.iter().all(|(n, _)| n.is_none()) {
            return Ok(args.into_iter().map(|(_, e)| e).collect());
        }
        let Some(sig) = signature(callee) else {
            return err(
                self.line,
                format!("Named arguments are not supported for \"{callee}\"."),
            );
        };
        let mut slots: Vec<Option<Expr>> = vec![None; sig.len()];
        for (i, (name, e)) in args.into_iter().enumerate() {
            let pos = match name {
                None => i,
                Some(n) => match sig.iter().position(|(p, _)| *p == n) {
                    Some(p) => p,
                    None => {
                        return err(
                            self.line,
                            format!("Unknown argument \"{n}\" for \"{callee}\"."),
                        );
                    }
                },
            };
            if pos >= slots.len() || slots[pos].is_some() {
                return err(
                    self.line,
                    format!("Argument for \"{callee}\" is defined twice or too many."),
                );
            }
            slots[pos] = Some(e);
        }
        let last = slots.iter().rposition(Option::is_some).map_or(0, |p| p + 1);
        let mut out = Vec::new();
        for (i, slot) in slots.into_iter().take(last).enumerate() {
            match slot {
                Some(e) => out.push(e),
                None => match sig[i].1 {
                    Some(default) => out.push(Expr::Raw(default.to_string())),
                    None => {
                        return err(
                            self.line,
                            format!(
                                "Value for argument \"{}\" is required for \"{callee}\".",
                                sig[i].0
                            ),
                        );
                    }
                },
            }
        }
        Ok(out)
    }
}

/// Twig signatures (argument name, default as minijinja source) after the filtered value, for
/// named arguments. Filters are prefixed with `|`.
fn signature(callee: &str) -> Option<&'static [(&'static str, Option<&'static str>)]> {
    Some(match callee {
        "|trim" => &[("character_mask", Some("none")), ("side", Some("\"both\""))],
        "|round" => &[("precision", Some("0")), ("method", Some("\"common\""))],
        "|number_format" => &[
            ("decimal", Some("none")),
            ("decimal_point", Some("none")),
            ("thousand_sep", Some("none")),
        ],
        "|slice" => &[
            ("start", None),
            ("length", Some("none")),
            ("preserve_keys", Some("false")),
        ],
        "|split" => &[("delimiter", None), ("limit", Some("none"))],
        "|join" => &[("glue", Some("\"\"")), ("and", Some("none"))],
        "|default" => &[("default", Some("\"\""))],
        "|escape" | "|e" => &[("strategy", Some("\"html\"")), ("charset", Some("none"))],
        "|replace" => &[("from", None)],
        "|date" => &[("format", Some("none")), ("timezone", Some("none"))],
        "|json_encode" => &[("options", Some("0"))],
        "|reverse" => &[("preserve_keys", Some("false"))],
        "|batch" => &[
            ("size", None),
            ("fill", Some("none")),
            ("preserve_keys", Some("true")),
        ],
        "|truncate" => &[
            ("length", Some("30")),
            ("preserve", Some("false")),
            ("separator", Some("\"...\"")),
        ],
        "|regexp" => &[("pattern", None), ("group", Some("0"))],
        "|hash_hmac" => &[
            ("key", Some("\"\"")),
            ("algo", Some("\"sha256\"")),
            ("raw", Some("false")),
        ],
        "|merge" => &[("arr2", None)],
        "range" => &[("low", None), ("high", None), ("step", Some("1"))],
        "date" => &[("date", Some("none")), ("timezone", Some("none"))],
        "cycle" => &[("values", None), ("position", None)],
        "random" => &[("values", Some("none")), ("max", Some("none"))],
        "dict_set" => &[("var", None), ("path", None), ("val", None)],
        "json_decode" => &[("str", None)],
        "random_string" => &[("length", Some("8"))],
        "attribute" => &[("object", None), ("item", None)],
        _ => return None,
    })
}

fn describe(t: &Tok) -> String {
    match t {
        Tok::Name(n) => format!("name \"{n}\""),
        Tok::Num(n) => format!("number \"{n}\""),
        Tok::Str(s) => format!("string \"{s}\""),
        Tok::Interp(_) => "string".into(),
        Tok::Op(o) => format!("operator \"{o}\""),
        Tok::Punct(c) => format!("punctuation \"{c}\""),
        Tok::Arrow => "arrow \"=>\"".into(),
    }
}

fn emit_args(args: &[Expr]) -> String {
    args.iter().map(emit).collect::<Vec<_>>().join(", ")
}

/// The minijinja source of a Twig expression; every operator becomes a PHP-faithful helper call.
fn emit(e: &Expr) -> String {
    match e {
        Expr::Raw(s) => s.clone(),
        Expr::Name(n) => {
            // minijinja keywords cannot be plain names; Twig allows them as variables.
            // `loop` is minijinja's loop object; everything else is looked up in the template's
            // scope, then in the render context.
            if n == "loop" {
                n.clone()
            } else {
                format!("_tw_v(_tw_s, {})", lit(n))
            }
        }
        Expr::Str(s) => lit(s),
        Expr::Interp(items) => format!("_tw_cat({})", emit_args(items)),
        Expr::Array(items) => format!("[{}]", emit_args(items)),
        Expr::Hash(items) => {
            // Built from `[key, value]` pairs so integer-like keys and insertion order follow
            // PHP's array rules.
            let pairs: Vec<String> = items
                .iter()
                .map(|(k, v)| format!("[{}, {}]", emit(k), emit(v)))
                .collect();
            format!("_tw_hash([{}])", pairs.join(", "))
        }
        Expr::Unary("not", a) => format!("(not _tw_bool({}))", emit(a)),
        Expr::Unary("-", a) => format!("_tw_neg({})", emit(a)),
        Expr::Unary(_, a) => format!("_tw_pos({})", emit(a)),
        // Twig compiles unary operators without parentheses, so PHP applies `**` first:
        // `-2 ** 2` is -4 and `a is not empty ** 2` is `not (empty(a) ** 2)`.
        Expr::Binary("**", a, b) if matches!(**a, Expr::Unary(..)) => {
            let Expr::Unary(op, inner) = &**a else {
                unreachable!()
            };
            emit(&Expr::Unary(
                op,
                Box::new(Expr::Binary("**", inner.clone(), b.clone())),
            ))
        }
        Expr::Binary("~", ..) => {
            // `a ~ b ~ c` is one call: every operand becomes a string, so the grouping of a
            // concatenation chain never changes its result (evaluated left to right as Twig does).
            fn operands<'e>(e: &'e Expr, out: &mut Vec<&'e Expr>) {
                match e {
                    Expr::Binary("~", a, b) => {
                        operands(a, out);
                        operands(b, out);
                    }
                    other => out.push(other),
                }
            }
            let mut parts = Vec::new();
            operands(e, &mut parts);
            let parts: Vec<String> = parts.into_iter().map(emit).collect();
            format!("_tw_cat({})", parts.join(", "))
        }
        Expr::Binary(op, a, b) => {
            let (a, b) = (emit(a), emit(b));
            match *op {
                "or" => format!("(_tw_bool({a}) or _tw_bool({b}))"),
                "and" => format!("(_tw_bool({a}) and _tw_bool({b}))"),
                "==" => format!("_tw_eq({a}, {b})"),
                "!=" => format!("(not _tw_eq({a}, {b}))"),
                "<" | "<=" => format!("(_tw_cmp({a}, {b}) {op} 0)"),
                // PHP evaluates `a > b` as `b < a`: it matters for uncomparable arrays.
                ">" => format!("(_tw_cmp({b}, {a}) < 0)"),
                ">=" => format!("(_tw_cmp({b}, {a}) <= 0)"),
                "<=>" => format!("_tw_cmp({a}, {b})"),
                "in" => format!("_tw_in({a}, {b})"),
                "not in" => format!("(not _tw_in({a}, {b}))"),
                "matches" => format!("_tw_matches({a}, {b})"),
                // Twig only evaluates the right side when the left one is a string.
                "starts with" => {
                    format!("(_tw_starts_with({a}, {b}) if _tw_is_string({a}) else false)")
                }
                "ends with" => {
                    format!("(_tw_ends_with({a}, {b}) if _tw_is_string({a}) else false)")
                }
                ".." => format!("range({a}, {b})"),
                "??" => format!("({a} if _tw_isset({a}) else {b})"),
                op => format!("_tw_op({}, {a}, {b})", lit(op)),
            }
        }
        Expr::Cond(c, a, b) => format!("({} if _tw_bool({}) else {})", emit(a), emit(c), emit(b)),
        Expr::Get(a, k) => format!("_tw_get({}, {})", emit(a), emit(k)),
        Expr::Method(a, name, args) => {
            let mut all = vec![emit(a), lit(name)];
            all.extend(args.iter().map(emit));
            format!("_tw_method({})", all.join(", "))
        }
        Expr::Slice(a, start, len) => format!(
            "_tw_slice({}, {}, {})",
            emit(a),
            start.as_ref().map_or("0".into(), |s| emit(s)),
            len.as_ref().map_or("none".into(), |s| emit(s))
        ),
        // Every filter goes through one dispatcher that charges fuel for the size of its result,
        // so chains that multiply their input (`|e('js')|e('js')…`) hit the work limit.
        Expr::Filter(a, name, args) if pre_escapes(name) && !is_html_safe(a) => {
            let escaped = Expr::Filter(a.clone(), "escape".into(), Vec::new());
            emit(&Expr::Filter(Box::new(escaped), name.clone(), args.clone()))
        }
        Expr::Filter(a, name, args) => {
            if args.is_empty() {
                format!("(({})|{}|_tw_charge)", emit(a), filter_name(name))
            } else {
                format!(
                    "(({})|{}({})|_tw_charge)",
                    emit(a),
                    filter_name(name),
                    emit_args(args)
                )
            }
        }
        Expr::Call(name, args) => format!("{}({})", function_name(name), emit_args(args)),
        Expr::Test(a, name, args) => {
            let mut all = vec![emit(a)];
            all.extend(args.iter().map(emit));
            format!("_tw_is_{}({})", name, all.join(", "))
        }
    }
}

/// Filters Twig declares `pre_escape => html`.
fn pre_escapes(name: &str) -> bool {
    matches!(name, "nl2br" | "spaceless")
}

/// Filters whose output Twig marks safe for HTML (`escape` only with the html strategy).
fn html_safe_filter(name: &str, args: &[Expr]) -> bool {
    match name {
        "raw" | "nl2br" | "spaceless" => true,
        "escape" | "e" => match args.first() {
            None => true,
            Some(Expr::Str(s)) => s == "html",
            Some(_) => false,
        },
        _ => false,
    }
}

/// Twig's safety analysis: literals are safe, a ternary when both branches are, a filter when it
/// declares so; everything else is escaped before `nl2br` and `spaceless`.
fn is_html_safe(e: &Expr) -> bool {
    match e {
        Expr::Str(_) | Expr::Raw(_) => true,
        Expr::Cond(_, a, b) => is_html_safe(a) && is_html_safe(b),
        Expr::Filter(_, name, args) => html_safe_filter(name, args),
        _ => false,
    }
}

/// Filters whose Twig name collides with a minijinja builtin keep their name: the environment
/// replaces the builtin with the Twig version.
fn filter_name(name: &str) -> String {
    match name {
        "e" => "escape".into(),
        n => n.into(),
    }
}

fn function_name(name: &str) -> String {
    name.into()
}

// ---------------------------------------------------------------------------------------------
// Tags

/// An open block tag: its name, line, and for `set`/`for`/`with` the helper variable that closes it.
struct Open {
    tag: &'static str,
    line: usize,
    /// `set` capture: (capture variable, target name); `for`: (snapshot, targets); `with`: snapshot.
    close: Vec<String>,
}

/// Translates the inside of one `{% … %}` tag into minijinja tag bodies (a Twig tag may need
/// several). Variables live in one scope object (`_tw_s`) so `set` inside loops behaves as in
/// Twig: values of variables that existed before a loop survive it, new ones and loop targets do
/// not.
fn block_tag(
    ps: &mut Parser<'_>,
    stack: &mut Vec<Open>,
    counter: &mut usize,
    line: usize,
) -> Res<Vec<String>> {
    let tag = ps.name()?;
    let mut fresh = |prefix: &str| {
        *counter += 1;
        format!("_tw_{prefix}{counter}")
    };
    let close = |stack: &mut Vec<Open>, open: &str| -> Res<Open> {
        match stack.pop() {
            Some(o) if o.tag == open => Ok(o),
            _ => err(line, format!("Unexpected \"{tag}\" tag.")),
        }
    };
    let bodies: Vec<String> = match tag.as_str() {
        "if" => {
            let e = ps.expression(0)?;
            stack.push(Open {
                tag: "if",
                line,
                close: Vec::new(),
            });
            vec![format!("if _tw_bool({})", emit(&e))]
        }
        "elseif" => {
            if !matches!(stack.last(), Some(Open { tag: "if", .. })) {
                return err(line, "Unexpected \"elseif\" tag.");
            }
            let e = ps.expression(0)?;
            vec![format!("elif _tw_bool({})", emit(&e))]
        }
        "else" => {
            if !matches!(
                stack.last(),
                Some(Open {
                    tag: "if" | "for",
                    ..
                })
            ) {
                return err(line, "Unexpected \"else\" tag.");
            }
            vec!["else".into()]
        }
        "endif" => {
            close(stack, "if")?;
            vec!["endif".into()]
        }
        "for" => {
            let first = ps.name()?;
            let second = if ps.eat_punct(',') {
                Some(ps.name()?)
            } else {
                None
            };
            if !ps.is_name("in") {
                return ps.unexpected();
            }
            ps.i += 1;
            let seq = ps.expression(0)?;
            let snap = fresh("l");
            let item = fresh("i");
            let mut bodies = vec![format!("set {snap} = _tw_snap(_tw_s)")];
            let targets = match &second {
                None => {
                    bodies.push(format!("for {item} in _tw_values({})", emit(&seq)));
                    bodies.push(format!("do _tw_set(_tw_s, {}, {item})", lit(&first)));
                    vec![first.clone()]
                }
                Some(v) => {
                    let key = fresh("k");
                    bodies.push(format!("for {key}, {item} in _tw_pairs({})", emit(&seq)));
                    bodies.push(format!("do _tw_set(_tw_s, {}, {key})", lit(&first)));
                    bodies.push(format!("do _tw_set(_tw_s, {}, {item})", lit(v)));
                    vec![first.clone(), v.clone()]
                }
            };
            let mut close = vec![snap];
            close.extend(targets);
            stack.push(Open {
                tag: "for",
                line,
                close,
            });
            bodies
        }
        "endfor" => {
            let open = close(stack, "for")?;
            let targets: Vec<String> = open.close[1..].iter().map(|t| lit(t)).collect();
            vec![
                "endfor".into(),
                format!(
                    "do _tw_loop_end(_tw_s, {}, [{}])",
                    open.close[0],
                    targets.join(", ")
                ),
            ]
        }
        "set" => {
            let mut names = vec![ps.name()?];
            while ps.eat_punct(',') {
                names.push(ps.name()?);
            }
            if ps.eat_punct('=') {
                let mut values = vec![ps.expression(0)?];
                while ps.eat_punct(',') {
                    values.push(ps.expression(0)?);
                }
                if values.len() != names.len() {
                    return err(
                        line,
                        "When using set, you must have the same number of variables and assignments.",
                    );
                }
                ps.expect_end("set tag")?;
                let names: Vec<String> = names.iter().map(|n| lit(n)).collect();
                vec![format!(
                    "do _tw_set_many(_tw_s, [{}], [{}])",
                    names.join(", "),
                    emit_args(&values)
                )]
            } else {
                if names.len() != 1 {
                    return err(
                        line,
                        "When using set with a block, you cannot have a multi-target.",
                    );
                }
                let cap = fresh("c");
                stack.push(Open {
                    tag: "set",
                    line,
                    close: vec![cap.clone(), names[0].clone()],
                });
                vec![format!("set {cap}")]
            }
        }
        "endset" => {
            let open = close(stack, "set")?;
            vec![
                "endset".into(),
                format!(
                    "do _tw_set(_tw_s, {}, {})",
                    lit(&open.close[1]),
                    open.close[0]
                ),
            ]
        }
        "apply" => {
            let mut chain = Vec::new();
            // The captured body is HTML-safe; after a filter that is not, Twig escapes before
            // nl2br and spaceless.
            let mut safe = true;
            loop {
                let (name, args) = ps.filter_call()?;
                if pre_escapes(&name) && !safe {
                    chain.push("escape".to_string());
                }
                safe = html_safe_filter(&name, &args);
                chain.push(if args.is_empty() {
                    filter_name(&name)
                } else {
                    format!("{}({})", filter_name(&name), emit_args(&args))
                });
                if !ps.eat_punct('|') {
                    break;
                }
            }
            stack.push(Open {
                tag: "apply",
                line,
                close: Vec::new(),
            });
            vec![format!("filter {}|_tw_charge", chain.join("|"))]
        }
        "endapply" => {
            close(stack, "apply")?;
            vec!["endfilter".into()]
        }
        "verbatim" => {
            ps.expect_end("verbatim tag")?;
            return Ok(vec!["verbatim".into()]);
        }
        "do" => {
            // minijinja's `do` takes a call only: wrap the expression in one.
            let e = ps.expression(0)?;
            vec![format!("do _tw_discard({})", emit(&e))]
        }
        "with" => {
            let vars = if ps.peek().is_none() || ps.is_name("only") {
                None
            } else {
                Some(ps.expression(0)?)
            };
            if ps.is_name("only") {
                return err(line, "\"with … only\" is not supported.");
            }
            let snap = fresh("w");
            let mut bodies = vec![format!("set {snap} = _tw_snap(_tw_s)")];
            if let Some(vars) = vars {
                bodies.push(format!("do _tw_with(_tw_s, {})", emit(&vars)));
            }
            stack.push(Open {
                tag: "with",
                line,
                close: vec![snap],
            });
            bodies
        }
        "endwith" => {
            let open = close(stack, "with")?;
            vec![format!("do _tw_restore(_tw_s, {})", open.close[0])]
        }
        other => {
            if TAGS.contains(&other) {
                return ps.unexpected();
            }
            return err(line, format!("Unknown \"{other}\" tag."));
        }
    };
    ps.expect_end(&format!("\"{tag}\" tag"))?;
    Ok(bodies)
}
