//! The Cerb package format: parse and validate a package document, answer its prompts, generate
//! its placeholders, render its `{{{ }}}` import-time templates and produce an [`ImportPlan`] that
//! a store writes in one transaction. Pure: no IO, no clock, randomness injected.

pub mod model;

pub use model::*;

use indexmap::IndexMap;
use serde_json::Value as Json;

/// One thing wrong with a package, located by section, uid and field (Decision 2).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ImportIssue {
    /// Top-level section: `package`, `bots`, `records`, `behaviors`, ...
    pub section: String,
    /// The uid of the record, bot, behavior or prompt key concerned, if any.
    pub uid: Option<String>,
    /// JSON path of the field inside that item, e.g. `nodes[0].nodes[2].params.actions[0].action`.
    pub field: Option<String>,
    pub message: String,
}

impl std::fmt::Display for ImportIssue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.section)?;
        if let Some(uid) = &self.uid {
            write!(f, " ({uid})")?;
        }
        if let Some(field) = &self.field {
            write!(f, " {field}")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Why a package cannot be imported: every issue found, not just the first.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", display_issues(.issues))]
pub struct ImportError {
    pub issues: Vec<ImportIssue>,
}

fn display_issues(issues: &[ImportIssue]) -> String {
    issues.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
}

/// The prompt answers given by the operator, by prompt key.
pub type PromptAnswers = IndexMap<String, Json>;

/// A package document, parsed and validated structurally (before prompts are answered).
#[derive(Debug, Clone)]
pub struct Package {
    // filled in by the implementation
    #[doc(hidden)]
    pub raw: Json,
}

impl Package {
    /// Parses and validates package JSON.
    pub fn parse(json: &str) -> Result<Package, ImportError> {
        let _ = json;
        todo!("switchboard-package: parse")
    }
}
