//! Cerb's Twig dialect on minijinja: the syntax (Twig tags rewritten for minijinja, CRLF folding,
//! newline trimming after block and comment tags), Cerb's filters and functions with Cerb's exact
//! output, and the run limits of a template (fuel and rendered size).

use std::borrow::Cow;

pub use minijinja::Value;
use minijinja::Environment;

/// Which delimiters a template uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// Behavior templates evaluated at run time: `{{ }}`, `{% %}`, `{# #}`.
    Runtime,
    /// Package import templates: `{{{ }}}`, `{{% %}}`, `{{# #}}`; plain `{{ }}` is literal text.
    ImportTime,
}

/// Work limits for one render (cerb-semantics Decision 10).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// minijinja fuel for one render.
    pub fuel: u64,
    /// Maximum rendered output in bytes.
    pub max_output_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { fuel: 100_000, max_output_bytes: 256 * 1024 }
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

/// A minijinja environment configured for the dialect, with every Cerb filter and function.
pub fn environment(dialect: Dialect, limits: &Limits) -> Environment<'static> {
    let _ = (dialect, limits);
    todo!("switchboard-twig: environment")
}

/// Twig source as minijinja parses it: line endings folded to LF, Twig-only syntax rewritten.
pub fn normalize_source(source: &str) -> Cow<'_, str> {
    Cow::Borrowed(source)
}

/// Compiles `source` once into `env` under `name`.
pub fn add_template(env: &mut Environment<'static>, name: &str, source: &str) -> Result<(), TwigError> {
    let _ = (env, name, source);
    todo!("switchboard-twig: add_template")
}

/// Renders a template previously added with [`add_template`].
pub fn render(env: &Environment<'static>, name: &str, ctx: &Value, limits: &Limits) -> Result<String, TwigError> {
    let _ = (env, name, ctx, limits);
    todo!("switchboard-twig: render")
}

/// Compiles and renders a one-off template (import-time templates, tests).
pub fn render_str(env: &Environment<'static>, source: &str, ctx: &Value, limits: &Limits) -> Result<String, TwigError> {
    let _ = (env, source, ctx, limits);
    todo!("switchboard-twig: render_str")
}
