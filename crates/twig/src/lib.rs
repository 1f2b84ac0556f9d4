//! Cerb's Twig dialect on minijinja: the syntax (Twig templates translated for minijinja, CRLF
//! folding, Twig's whitespace rules), Cerb's filters and functions with Cerb's exact output, and
//! the run limits of a template (fuel and rendered size). See README.md for the supported dialect
//! and the known differences from Cerb.

mod date;
mod filters;
pub mod pcre;
mod php;
mod runtime;
mod syntax;

use std::borrow::Cow;
use std::io;

pub use minijinja::Value;
use minijinja::syntax::SyntaxConfig;
use minijinja::{Environment, ErrorKind, UndefinedBehavior};

/// Which delimiters a template uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// Behavior templates evaluated at run time: `{{ }}`, `{% %}`, `{# #}`.
    Runtime,
    /// Package import templates: `{{{ }}}`, `{{% %}}`, `{{# #}}`; plain `{{ }}` is literal text.
    ImportTime,
}

/// Work limits for one render (docs/semantics.md, Decision 10).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// minijinja fuel for one render.
    pub fuel: u64,
    /// Maximum rendered output in bytes.
    pub max_output_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            fuel: 100_000,
            max_output_bytes: 256 * 1024,
        }
    }
}

/// Why a template could not be compiled or rendered.
#[derive(Debug, thiserror::Error)]
pub enum TwigError {
    #[error("template syntax error: {0}")]
    Syntax(String),
    #[error("template error: {0}")]
    Render(String),
    #[error("template ran out of fuel (work limit reached)")]
    OutOfFuel,
    #[error("template output exceeded {0} bytes")]
    OutputTooLarge(usize),
}

/// The delimiters of a dialect, in the order the lexer of [`normalize_source`] needs them.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Delims {
    pub block: (&'static str, &'static str),
    pub variable: (&'static str, &'static str),
    pub comment: (&'static str, &'static str),
    /// String interpolation inside double-quoted literals.
    pub interp: (&'static str, &'static str),
}

impl Dialect {
    pub(crate) fn delims(self) -> Delims {
        match self {
            Dialect::Runtime => Delims {
                block: ("{%", "%}"),
                variable: ("{{", "}}"),
                comment: ("{#", "#}"),
                interp: ("#{", "}"),
            },
            Dialect::ImportTime => Delims {
                block: ("{{%", "%}}"),
                variable: ("{{{", "}}}"),
                comment: ("{{#", "#}}"),
                interp: ("#{{", "}}"),
            },
        }
    }
}

/// Which dialect an environment was built for, read back from its delimiters (a global would be
/// visible to templates).
fn dialect_of(env: &Environment<'_>) -> Dialect {
    if env.syntax().variable_delimiters().0 == "{{{" {
        Dialect::ImportTime
    } else {
        Dialect::Runtime
    }
}

/// A minijinja environment configured for the dialect, with every Cerb filter and function.
///
/// The fuel of [`Limits`] is fixed here (minijinja keeps it on the environment); the output cap is
/// applied per render from the limits given to [`render`] / [`render_str`].
pub fn environment(dialect: Dialect, limits: &Limits) -> Environment<'static> {
    let mut env = Environment::new();
    let d = dialect.delims();
    let syntax = SyntaxConfig::builder()
        .block_delimiters(d.block.0, d.block.1)
        .variable_delimiters(d.variable.0, d.variable.1)
        .comment_delimiters(d.comment.0, d.comment.1)
        .trim_blocks(true)
        .keep_trailing_newline(true)
        .build()
        .expect("static delimiters are valid");
    env.set_syntax(syntax);
    env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
    env.set_undefined_behavior(UndefinedBehavior::Chainable);
    env.set_fuel(Some(limits.fuel));
    runtime::register(&mut env);
    filters::register(&mut env);
    env.set_formatter(|out, state, value| {
        // Printing costs fuel by size too: `{% set x %}{{ x }}{{ x }}{% endset %}` in a loop
        // would otherwise double a captured string for free.
        runtime::charge(state, value)?;
        out.write_str(&php::to_php_string(value))
            .map_err(|_| minijinja::Error::from(ErrorKind::WriteFailure))
    });
    env
}

/// Twig source as minijinja parses it: line endings folded to LF and the template translated
/// (operators become calls to this crate's helpers, so the result only runs in an
/// [`environment`]). A template that does not translate becomes one that fails to compile at the
/// offending line; [`add_template`] reports Twig's message instead.
///
/// Uses the run-time delimiters; [`add_template`] and [`render_str`] pick the environment's own.
pub fn normalize_source(source: &str) -> Cow<'_, str> {
    syntax::normalize(source, Dialect::Runtime.delims())
}

/// Compiles `source` once into `env` under `name`.
pub fn add_template(
    env: &mut Environment<'static>,
    name: &str,
    source: &str,
) -> Result<(), TwigError> {
    let src = syntax::translate(source, dialect_of(env).delims()).map_err(syntax_error)?;
    env.add_template_owned(name.to_string(), src)
        .map_err(map_error)
}

/// Renders a template previously added with [`add_template`].
pub fn render(
    env: &Environment<'static>,
    name: &str,
    ctx: &Value,
    limits: &Limits,
) -> Result<String, TwigError> {
    let tmpl = env.get_template(name).map_err(map_error)?;
    let mut w = CappedWriter::new(limits.max_output_bytes);
    let res = tmpl.render_captured_to(ctx.clone(), &mut w).map(|_| ());
    finish(res, w)
}

/// Compiles and renders a one-off template (import-time templates, tests).
pub fn render_str(
    env: &Environment<'static>,
    source: &str,
    ctx: &Value,
    limits: &Limits,
) -> Result<String, TwigError> {
    let src = syntax::translate(source, dialect_of(env).delims()).map_err(syntax_error)?;
    let tmpl = env.template_from_str(&src).map_err(map_error)?;
    let mut w = CappedWriter::new(limits.max_output_bytes);
    let res = tmpl.render_captured_to(ctx.clone(), &mut w).map(|_| ());
    finish(res, w)
}

fn finish(res: Result<(), minijinja::Error>, w: CappedWriter) -> Result<String, TwigError> {
    if w.overflowed {
        return Err(TwigError::OutputTooLarge(w.cap));
    }
    res.map_err(map_error)?;
    // The writer only ever receives whole `str` fragments, so the bytes are valid UTF-8.
    String::from_utf8(w.buf).map_err(|e| TwigError::Render(e.to_string()))
}

fn syntax_error(e: syntax::SyntaxError) -> TwigError {
    TwigError::Syntax(format!("{} (line {})", e.message, e.line))
}

fn map_error(err: minijinja::Error) -> TwigError {
    match err.kind() {
        ErrorKind::OutOfFuel => TwigError::OutOfFuel,
        ErrorKind::SyntaxError => TwigError::Syntax(match (err.detail(), err.line()) {
            (Some(detail), Some(line)) => format!("{detail} (line {line})"),
            _ => err.to_string(),
        }),
        _ => {
            let mut msg = err.to_string();
            let mut src = std::error::Error::source(&err);
            while let Some(cause) = src {
                msg.push_str(": ");
                msg.push_str(&cause.to_string());
                src = cause.source();
            }
            TwigError::Render(msg)
        }
    }
}

/// An output buffer that refuses to grow past `cap` bytes, so an output bomb stops early instead
/// of exhausting memory.
struct CappedWriter {
    buf: Vec<u8>,
    cap: usize,
    overflowed: bool,
}

impl CappedWriter {
    fn new(cap: usize) -> Self {
        CappedWriter {
            buf: Vec::new(),
            cap,
            overflowed: false,
        }
    }
}

impl io::Write for CappedWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.buf.len() + data.len() > self.cap {
            self.overflowed = true;
            return Err(io::Error::other("output limit reached"));
        }
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use minijinja::context;

    fn run(src: &str, ctx: Value) -> Result<String, TwigError> {
        let limits = Limits::default();
        render_str(&environment(Dialect::Runtime, &limits), src, &ctx, &limits)
    }

    fn ok(src: &str) -> String {
        run(
            src,
            context! { t => true, f => false, n => (), s => "str", m => context!{ a => 1 } },
        )
        .unwrap()
    }

    #[test]
    fn prints_like_php() {
        let cases = [
            ("{{ n }}", ""),
            ("{{ undefined_name }}", ""),
            ("{{ t }}|{{ f }}", "1|"),
            ("{{ 1.0 }} {{ 0.5 }} {{ 3 }} {{ -7 }}", "1 0.5 3 -7"),
            ("{{ undefined_name.attr.deeper }}", ""),
            ("{{ n.attr }}", ""),
            ("{{ s.attr }}", ""),
            ("{{ m.missing.x }}", ""),
            ("{{ '<b>' }}", "<b>"),
            ("{{ [1, 2] }}", "Array"),
        ];
        for (src, want) in cases {
            assert_eq!(ok(src), want, "template {src:?}");
        }
    }

    /// Twig string literals (PHP `stripcslashes` in both quote styles, `#{…}` only in double
    /// quotes) and `~`, which binds tighter than `+` and `-`.
    #[test]
    fn string_escapes_and_concatenation() {
        let cases = [
            (
                r#"{{ "a\tb\\c\"d\'e\x41\101\q\n" }}|{{ 'x\'y\\z\n' }}"#,
                "a\tb\\c\"d'eAAq\n|x'y\\z\n",
            ),
            (r#"{{ "\e\v\f\r\0" }}"#, "e\u{b}\u{c}\r\0"),
            (
                r#"{{ 'a\\tb' }}|{{ 'no #{interp}' }}"#,
                "a\\tb|no #{interp}",
            ),
            (
                r##"{{ "#{1 + 2}#{'a' ~ 'b'}" ~ 'c' ~ 1.0 ~ true ~ null ~ false ~ [1]|length }}"##,
                "3abc111",
            ),
            ("{{ 1 + 2 ~ 3 }}|{{ 5 - 1 ~ 1 }}", "24|-6"),
            ("{{ s ~ n ~ missing ~ 0.5 }}", "str0.5"),
        ];
        for (src, want) in cases {
            assert_eq!(ok(src), want, "template {src:?}");
        }
        // `'a' ~ 1 + 2` is `('a' ~ 1) + 2`: a TypeError in PHP 8.
        assert!(matches!(
            run("{{ 'a' ~ 1 + 2 }}", Value::UNDEFINED),
            Err(TwigError::Render(_))
        ));
    }

    #[test]
    fn newline_after_block_and_comment_tags_is_dropped_once() {
        let cases = [
            ("{% if true %}\nx\n{% endif %}\n", "x\n"),
            ("{# c #}\nhttps://x\n", "https://x\n"),
            ("{# c #}\r\nhttps://x", "https://x"),
            ("{% set a = 1 %}\n\nb", "\nb"),
            ("{{ 'a' }}\nb", "a\nb"),
            ("a\r\nb\rc\n", "a\nb\nc\n"),
        ];
        for (src, want) in cases {
            assert_eq!(ok(src), want, "template {src:?}");
        }
    }

    #[test]
    fn import_time_delimiters_leave_runtime_tags_alone() {
        let limits = Limits::default();
        let env = environment(Dialect::ImportTime, &limits);
        let ctx = context! { guid => "ABC" };
        let out = render_str(
            &env,
            "{{{guid|lower}}} {{ x }} {% if a %}{{%if true%}}y{{%endif%}}",
            &ctx,
            &limits,
        );
        assert_eq!(out.unwrap(), "abc {{ x }} {% if a %}y");
    }

    #[test]
    fn render_errors_name_the_source_line() {
        let src = "a\n{% verbatim %}\nx\ny\n{% endverbatim %}\n{{ 'b'\n ~ 'c' }}\n{# x\n #}\n{{ 1 // 0 }}";
        match run(src, Value::UNDEFINED) {
            Err(TwigError::Render(msg)) => assert!(msg.contains(":10)"), "{msg}"),
            other => panic!("expected a render error, got {other:?}"),
        }
    }

    #[test]
    fn syntax_errors_name_the_line() {
        match run("a\n{% if %}", Value::UNDEFINED) {
            Err(TwigError::Syntax(msg)) => assert!(msg.contains("line 2"), "{msg}"),
            other => panic!("expected a syntax error, got {other:?}"),
        }
    }

    #[test]
    fn limits_stop_runaway_templates() {
        let limits = Limits::default();
        let env = environment(Dialect::Runtime, &limits);
        for src in [
            "{% for i in range(0, 100000000) %}x{% endfor %}",
            "{% for i in 0..100000000 %}{% endfor %}",
            // no big list anywhere: the loop bodies themselves burn the fuel
            "{% for i in range(1, 1000) %}{% for j in range(1, 1000) %}{% endfor %}{% endfor %}",
            "{% set n = 0 %}{% for i in 1..1000 %}{% for j in 1..1000 %}{% set n = n + 1 %}{% endfor %}{% endfor %}{{ n }}",
        ] {
            let started = std::time::Instant::now();
            let res = render_str(&env, src, &Value::UNDEFINED, &limits);
            assert!(matches!(res, Err(TwigError::OutOfFuel)), "{src}: {res:?}");
            assert!(started.elapsed().as_secs() < 5, "{src}");
        }

        let small = Limits {
            fuel: 1_000_000,
            max_output_bytes: 1000,
        };
        let env = environment(Dialect::Runtime, &small);
        let res = render_str(
            &env,
            "{% for i in range(0, 500) %}xxxxxxxxxx{% endfor %}",
            &Value::UNDEFINED,
            &small,
        );
        assert!(
            matches!(res, Err(TwigError::OutputTooLarge(1000))),
            "{res:?}"
        );
    }

    #[test]
    fn seed_templates_render_exactly() {
        let limits = Limits::default();
        let env = environment(Dialect::Runtime, &limits);
        let twiml = "{% set msg = \"You can say:\\n* HELP\\n* LOGO\\n* LINK\\n\" %}\r\n<?xml version=\"1.0\" encoding=\"UTF-8\"?>\r\n<Response>\r\n    <Message>{{msg|escape}}</Message>\r\n</Response>";
        assert_eq!(
            render_str(&env, twiml, &Value::UNDEFINED, &limits).unwrap(),
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response>\n    <Message>You can say:\n* HELP\n* LOGO\n* LINK\n</Message>\n</Response>"
        );
        let params = "{% set params = {\r\n\t\"To\": var_to,\r\n\t\"From\": behavior_bot_config.default_from,\r\n\t\"Body\": var_body\r\n} %}\r\n{{params|url_encode}}";
        let ctx = context! {
            var_to => "+15551234567",
            var_body => "Hello world",
            behavior_bot_config => context! { default_from => "+15557654321" },
        };
        assert_eq!(
            render_str(&env, params, &ctx, &limits).unwrap(),
            "To=%2B15551234567&From=%2B15557654321&Body=Hello%20world"
        );
    }

    /// Templates that try to exhaust memory or time end with an error, quickly.
    #[test]
    fn hostile_templates_stop_quickly() {
        let limits = Limits::default();
        let env = environment(Dialect::Runtime, &limits);
        let hostile = context! { body => "a".repeat(5000) + "!" };
        let cases = [
            // output bomb
            "{% for i in 1..100000 %}{{ 'x'|format }}xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx{% endfor %}",
            // string doubling in a variable
            "{% set s = 'abcdefgh' %}{% for i in 1..60 %}{% set s = s ~ s %}{% endfor %}{{ s|length }}",
            // doubling through a capture block
            "{% set s = 'abcdefgh' %}{% for i in 1..60 %}{% set s %}{{ s }}{{ s }}{% endset %}{% endfor %}{{ s|length }}",
            // array doubling
            "{% set a = [1] %}{% for i in 1..60 %}{% set a = a|merge(a) %}{% endfor %}{{ a|length }}",
            // escaper chains multiply their input
            "{% set s = body %}{% for i in 1..30 %}{% set s = s|e('js') %}{% endfor %}{{ s|length }}",
            "{% set s = body %}{% for i in 1..30 %}{% set s = s|url_encode %}{% endfor %}{{ s|length }}",
            // huge ranges and batches
            "{{ range(0, 9000000000000000000)|length }}",
            "{{ range(0, 1e+300)|length }}",
            "{{ [1]|batch(1000000000, 'x')|length }}",
            "{{ 'x'|format('%1000000000s') }}",
        ];
        for src in cases {
            let started = std::time::Instant::now();
            let res = render_str(&env, src, &hostile, &limits);
            assert!(
                matches!(
                    res,
                    Err(TwigError::OutOfFuel) | Err(TwigError::OutputTooLarge(_))
                ) || res
                    .as_ref()
                    .is_ok_and(|o| o.len() <= limits.max_output_bytes),
                "{src}: {res:?}"
            );
            assert!(
                started.elapsed().as_secs() < 5,
                "{src} took {:?}",
                started.elapsed()
            );
        }
    }

    /// Extreme numbers end in an output or an error, never in an arithmetic overflow.
    #[test]
    fn extreme_numbers_do_not_overflow() {
        let limits = Limits::default();
        let env = environment(Dialect::Runtime, &limits);
        for src in [
            "{{ range(-9223372036854775807, 9223372036854775807, 9223372036854775807)|join(',') }}",
            "{{ [1]|slice(1, 9223372036854775807)|length }}",
            "{{ 'abc'|slice(-9223372036854775807, 9223372036854775807) }}",
            "{{ '%9223372036854775807$s'|format('x') }}",
            "{{ {9223372036854775807: 'a'}|merge(['b'])|json_encode }}",
            "{{ dict_set({9223372036854775807: 1}, '[]', 2)|json_encode }}",
            "{{ -9223372036854775807 - 1 - 1 }}|{{ 9223372036854775807 * 9223372036854775807 }}",
            "{{ (-9223372036854775807 - 1) // -1 }}|{{ (-9223372036854775807 - 1) % -1 }}|{{ 2 ** 64 }}",
            "{{ 1e+308 * 10 }}|{{ (1e+308 * 10)|json_encode }}|{{ 0 ** -1 }}|{{ (1e+308 * 10)|round(2) }}",
            "{{ 1e+300|number_format(100) }}|{{ 1e+300|date('Y') }}|{{ -1e+300|abs }}",
        ] {
            let res = render_str(&env, src, &Value::UNDEFINED, &limits);
            assert!(
                res.is_ok() || matches!(res, Err(TwigError::Render(_))),
                "{src}: {res:?}"
            );
        }
    }

    /// `regexp` and `matches` use a linear-time engine: catastrophic patterns finish fast.
    #[test]
    fn catastrophic_regex_is_linear() {
        let limits = Limits::default();
        let env = environment(Dialect::Runtime, &limits);
        let ctx = context! { body => "a".repeat(50_000) + "!" };
        let started = std::time::Instant::now();
        let out = render_str(
            &env,
            "{{ body|regexp('/(a+)+$/') }}|{{ body matches '/^(a|aa)+$/' ? 'y' : 'n' }}",
            &ctx,
            &limits,
        );
        assert_eq!(out.unwrap(), "|n");
        assert!(
            started.elapsed().as_secs() < 2,
            "took {:?}",
            started.elapsed()
        );

        // Other classic ReDoS shapes, on input built to trigger them.
        let ctx = context! {
            words => "word ".repeat(20_000) + "!",
            xs => "x".repeat(50_000),
        };
        let started = std::time::Instant::now();
        let out = render_str(
            &env,
            "{{ words|regexp('/^(\\w+\\s?)*$/') }}|{{ xs|regexp('/(x+x+)+y/') }}|{{ xs matches '/^(x|x?)+$/' ? 'y' : 'n' }}",
            &ctx,
            &limits,
        );
        assert_eq!(out.unwrap(), "||y");
        assert!(started.elapsed().as_secs() < 2, "{:?}", started.elapsed());

        // A pattern whose compiled program is too big is refused, not built: `regexp` gives ""
        // (as Cerb's `@preg_match` on a bad pattern) and `matches` fails the render.
        let bomb = "/((a{100}){100}){100}/";
        let started = std::time::Instant::now();
        let out = render_str(
            &env,
            &format!("{{{{ 'aaa'|regexp('{bomb}') }}}}"),
            &Value::UNDEFINED,
            &limits,
        );
        assert_eq!(out.unwrap(), "");
        let res = render_str(
            &env,
            &format!("{{{{ 'aaa' matches '{bomb}' }}}}"),
            &Value::UNDEFINED,
            &limits,
        );
        assert!(matches!(res, Err(TwigError::Render(_))), "{res:?}");
        assert!(started.elapsed().as_secs() < 2, "{:?}", started.elapsed());
    }

    /// Values nested as deep as the fuel allows (built in a loop) do not overflow the stack in
    /// any filter, comparison or test.
    #[test]
    fn deeply_nested_values_are_safe() {
        let limits = Limits {
            fuel: 1_000_000,
            max_output_bytes: 1 << 20,
        };
        let env = environment(Dialect::Runtime, &limits);
        let build = |depth: usize| {
            format!(
                "{{% set a = [] %}}{{% set m = {{}} %}}{{% for i in 1..{depth} %}}{{% set a = [a] %}}{{% set m = {{k: m}} %}}{{% endfor %}}"
            )
        };
        let res = render_str(
            &env,
            &format!("{}{{{{ a|json_encode|length }}}}", build(20_000)),
            &Value::UNDEFINED,
            &limits,
        );
        assert!(
            matches!(res, Err(TwigError::Render(ref m)) if m.contains("nested")),
            "{res:?}"
        );
        let build = build(120);
        for op in [
            "{{ a|url_encode|length }}",
            "{{ m|url_encode|length }}",
            "{{ a|json_encode|length }}",
            "{{ a == a }}",
            "{{ a is same as(a) }}",
            "{{ a < m }}",
            "{{ a in [a] }}",
            "{{ [a, m]|sort|length }}",
            "{{ max(a, m)|length }}",
            "{{ a|length }}",
            "{{ a ~ '' }}",
        ] {
            let res = render_str(&env, &format!("{build}{op}"), &Value::UNDEFINED, &limits);
            assert!(res.is_ok(), "{op}: {res:?}");
        }
    }

    /// Deeply nested expressions are a syntax error, not a stack overflow.
    #[test]
    fn nesting_is_bounded() {
        let limits = Limits::default();
        let env = environment(Dialect::Runtime, &limits);
        let deep = format!("{{{{ {}1{} }}}}", "(".repeat(10_000), ")".repeat(10_000));
        assert!(matches!(
            render_str(&env, &deep, &Value::UNDEFINED, &limits),
            Err(TwigError::Syntax(_))
        ));
        let interp = format!("{{{{ {}x{} }}}}", "\"#{".repeat(5_000), "}\"".repeat(5_000));
        assert!(matches!(
            render_str(&env, &interp, &Value::UNDEFINED, &limits),
            Err(TwigError::Syntax(_))
        ));
        let unary = format!("{{{{ {}1 }}}}", "-".repeat(10_000));
        assert!(matches!(
            render_str(&env, &unary, &Value::UNDEFINED, &limits),
            Err(TwigError::Syntax(_))
        ));
    }

    /// Random templates built from Twig fragments, rendered with attacker-chosen `http_params`,
    /// never panic: every outcome is an output or a `TwigError`.
    #[test]
    fn random_templates_never_panic() {
        const FRAGMENTS: &[&str] = &[
            "{{",
            "}}",
            "{%",
            "%}",
            "{#",
            "#}",
            "{{-",
            "-}}",
            "~%}",
            "{%~",
            " if ",
            " for ",
            " in ",
            " set ",
            " = ",
            " endif ",
            " endfor ",
            " else ",
            " elseif ",
            "verbatim",
            "endverbatim",
            " apply ",
            " endapply ",
            " with ",
            " endwith ",
            " do ",
            "x",
            "http_params",
            ".",
            "body",
            "[",
            "]",
            "(",
            ")",
            "{",
            "}",
            ":",
            ",",
            "?",
            "??",
            "?:",
            "|",
            "e",
            "escape('js')",
            "upper",
            "url_encode",
            "json_encode",
            "split(',')",
            "join",
            "slice(1,-1)",
            "round(2)",
            "format('%05d')",
            "regexp('/a+/')",
            "date('Y')",
            "replace({'a':'b'})",
            "..",
            "~",
            "+",
            "-",
            "*",
            "/",
            "//",
            "%",
            "**",
            " and ",
            " or ",
            " not ",
            " is ",
            " defined",
            " empty",
            " null",
            "==",
            "<=>",
            " matches ",
            "'str'",
            "\"dq #{x} \"",
            "\"#{",
            "1",
            "0",
            "1.5",
            "-1",
            "\\",
            "\r\n",
            "\n",
            " ",
            "é😀",
            "\u{0}",
            "'",
            "\"",
            "#{",
            "loop.index",
        ];
        let limits = Limits {
            fuel: 20_000,
            max_output_bytes: 4096,
        };
        let env = environment(Dialect::Runtime, &limits);
        let import_env = environment(Dialect::ImportTime, &limits);
        let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let (mut ok, mut failed) = (0, 0);
        for _ in 0..4000 {
            let n = (next() % 24) as usize + 1;
            let src: String = (0..n)
                .map(|_| FRAGMENTS[(next() % FRAGMENTS.len() as u64) as usize])
                .collect();
            let params = context! {
                http_params => context! {
                    body => FRAGMENTS[(next() % FRAGMENTS.len() as u64) as usize],
                    x => vec!["a[]", "{{ x }}"],
                },
                x => "& < > ' \" \\ %",
            };
            for env in [&env, &import_env] {
                match render_str(env, &src, &params, &limits) {
                    Ok(_) => ok += 1,
                    Err(_) => failed += 1,
                }
            }
        }
        // Most random soups are syntax errors; enough must render to exercise the runtime.
        assert!(
            ok > 100,
            "only {ok} of {} random templates rendered",
            ok + failed
        );
    }

    /// A context object sees lookups only for the names a template reads and does not set (the
    /// package importer relies on this to report undefined names); helpers are globals.
    #[test]
    fn context_objects_see_only_real_lookups() {
        use std::collections::BTreeSet;
        use std::sync::{Arc, Mutex};

        #[derive(Debug, Default)]
        struct Recorder(Mutex<BTreeSet<String>>);
        impl minijinja::value::Object for Recorder {
            fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
                let name = key.as_str()?;
                if name == "a" {
                    return Some(Value::from("A"));
                }
                self.0.lock().unwrap().insert(name.to_string());
                None
            }
        }
        let limits = Limits::default();
        for dialect in [Dialect::Runtime, Dialect::ImportTime] {
            let env = environment(dialect, &limits);
            let globals: BTreeSet<String> = env.globals().map(|(n, _)| n.to_string()).collect();
            let recorder = Arc::new(Recorder::default());
            let ctx = Value::from_dyn_object(recorder.clone());
            let src =
                "{{ a }}{% set b = 1 %}{{ b }}{% for i in [1] %}{{ i }}{% endfor %}{{ missing.x }}";
            let src = if dialect == Dialect::ImportTime {
                src.replace("{{", "{{{")
                    .replace("}}", "}}}")
                    .replace("{%", "{{%")
                    .replace("%}", "%}}")
            } else {
                src.to_string()
            };
            assert_eq!(render_str(&env, &src, &ctx, &limits).unwrap(), "A11");
            let misses: Vec<String> = recorder
                .0
                .lock()
                .unwrap()
                .iter()
                .filter(|n| !globals.contains(*n))
                .cloned()
                .collect();
            assert_eq!(misses, vec!["missing".to_string()], "{dialect:?}");
        }
    }

    #[test]
    fn add_template_then_render() {
        let limits = Limits::default();
        let mut env = environment(Dialect::Runtime, &limits);
        add_template(&mut env, "t", "Hi {{ name }}!\r\n").unwrap();
        let out = render(&env, "t", &context! { name => "Ann" }, &limits).unwrap();
        assert_eq!(out, "Hi Ann!\n");
        assert!(render(&env, "missing", &Value::UNDEFINED, &limits).is_err());
    }
}
