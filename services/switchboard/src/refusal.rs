//! How `import` and `simulate` report a package they refuse (docs/semantics.md, Decision 3): one
//! issue per line, grouped by feature with counts, each with its JSON path and node title; with
//! `--json`, one object `{"errors": [...]}` on stdout. Either way the command exits non-zero.

use switchboard_package::ImportError;

/// The error for a refused package, keeping the issues for [`report`].
pub fn invalid_package(err: ImportError) -> anyhow::Error {
    anyhow::Error::new(err).context("invalid package")
}

/// The refused package's issues as the CLI prints them (without `error: `).
pub fn text(err: &ImportError) -> String {
    format!("invalid package: {err}")
}

/// Prints a refused package's issues (text on stderr, or `--json` on stdout) and returns the
/// "already reported" error that makes the command exit non-zero; other errors pass through.
pub fn report(err: anyhow::Error, json: bool) -> anyhow::Error {
    let Some(refused) = err.downcast_ref::<ImportError>() else {
        return err;
    };
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&refused.to_json()).unwrap_or_default()
        );
    } else {
        eprintln!("error: {}", text(refused));
    }
    crate::jobs::Unsuccessful("was refused".into()).into()
}
