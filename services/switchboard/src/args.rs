//! Command-line argument types shared by subcommands.

/// A `NAME=VALUE` argument (`--param`, `--header`, `--prompt`, `--var`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: String,
}

impl std::str::FromStr for KeyValue {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => Ok(KeyValue {
                key: k.to_string(),
                value: v.to_string(),
            }),
            Some(_) => Err(format!("'{s}' has an empty name; expected NAME=VALUE")),
            None => Err(format!("'{s}' is not NAME=VALUE")),
        }
    }
}
