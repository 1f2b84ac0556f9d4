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

/// The `--prompt KEY=VALUE` answers for a package: every key must be one of the package's
/// prompts and be given once (`import` and `simulate` alike).
pub fn prompt_answers(
    package: &switchboard_package::Package,
    prompts: &[KeyValue],
) -> anyhow::Result<switchboard_package::PromptAnswers> {
    let mut answers = switchboard_package::PromptAnswers::new();
    for kv in prompts {
        if !package.prompts().iter().any(|p| p.key == kv.key) {
            let keys: Vec<&str> = package.prompts().iter().map(|p| p.key.as_str()).collect();
            anyhow::bail!(
                "--prompt {}: the package has no prompt '{}' (its prompts: {})",
                kv.key,
                kv.key,
                if keys.is_empty() {
                    "none".to_owned()
                } else {
                    keys.join(", ")
                }
            );
        }
        let value = serde_json::Value::String(kv.value.clone());
        if answers.insert(kv.key.clone(), value).is_some() {
            anyhow::bail!("--prompt {} is given more than once", kv.key);
        }
    }
    Ok(answers)
}

/// `--var NAME=VALUE` inputs in the order given; a name given twice is an error (`run` and
/// `simulate` alike).
pub fn var_inputs(vars: &[KeyValue]) -> anyhow::Result<indexmap::IndexMap<String, String>> {
    let mut map = indexmap::IndexMap::new();
    for kv in vars {
        if map.insert(kv.key.clone(), kv.value.clone()).is_some() {
            anyhow::bail!("--var {} is given more than once", kv.key);
        }
    }
    Ok(map)
}

/// An HTTP method as `--method` takes it: an RFC 9110 token (`GET`, `POST`, `PURGE`...).
pub fn http_method(s: &str) -> Result<String, String> {
    const TCHAR: &[u8] = b"!#$%&'*+-.^_`|~";
    if s.is_empty() {
        return Err("the method is empty".into());
    }
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || (c.is_ascii() && TCHAR.contains(&(*c as u8)))))
    {
        return Err(format!(
            "'{s}' is not an HTTP method: {c:?} is not allowed (letters, digits and !#$%&'*+-.^_`|~ are)"
        ));
    }
    Ok(s.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_are_http_tokens() {
        assert_eq!(http_method("GET").unwrap(), "GET");
        assert_eq!(http_method("purge").unwrap(), "purge");
        assert!(http_method("").unwrap_err().contains("empty"));
        assert!(http_method("GE T").unwrap_err().contains("' '"));
        assert!(http_method("POST\r\n").unwrap_err().contains("'\\r'"));
        assert!(http_method("PÖST").unwrap_err().contains("'Ö'"));
    }

    #[test]
    fn key_values_need_a_name_and_an_equals_sign() {
        let kv: KeyValue = "Body=a=b".parse().unwrap();
        assert_eq!((kv.key.as_str(), kv.value.as_str()), ("Body", "a=b"));
        let kv: KeyValue = "Body=".parse().unwrap();
        assert_eq!(kv.value, "");
        assert!(
            "Body"
                .parse::<KeyValue>()
                .unwrap_err()
                .contains("not NAME=VALUE")
        );
        assert!(
            " =x"
                .parse::<KeyValue>()
                .unwrap_err()
                .contains("empty name")
        );
    }
}
