//! `[scopes."feedback.read"] description = { en = "…", de = "…" }`: how the
//! consent page describes a scope, per language; the built-in wording
//! stands in for a scope or a language left out.

use std::collections::{BTreeMap, HashMap};

use serde::Deserialize;

use super::{ConfigError, invalid};
use crate::http::ScopeText;

const MAX_DESCRIPTION_CHARS: usize = 200;

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScopeConfig {
    #[serde(default)]
    pub description: DescriptionConfig,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DescriptionConfig {
    pub en: Option<String>,
    pub de: Option<String>,
}

fn text(scope: &str, t: &Option<String>) -> Result<Option<String>, ConfigError> {
    let Some(t) = t else { return Ok(None) };
    let t = t.trim();
    if t.is_empty() || t.chars().count() > MAX_DESCRIPTION_CHARS || t.chars().any(char::is_control)
    {
        return Err(invalid(
            "scopes",
            format!(
                "the description of `{scope}` must be 1 to {MAX_DESCRIPTION_CHARS} characters without control characters"
            ),
        ));
    }
    Ok(Some(t.to_owned()))
}

pub fn validate(
    scopes: &BTreeMap<String, ScopeConfig>,
) -> Result<HashMap<String, ScopeText>, ConfigError> {
    scopes
        .iter()
        .map(|(scope, c)| {
            if scope.is_empty() || scope.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(invalid("scopes", format!("`{scope}` is not a scope name")));
            }
            Ok((
                scope.clone(),
                ScopeText {
                    en: text(scope, &c.description.en)?,
                    de: text(scope, &c.description.de)?,
                },
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptions_are_read_per_language_and_checked() {
        let c: BTreeMap<String, ScopeConfig> = toml::from_str(
            r#"
            [scopes."feedback.read"]
            description = { en = "Read your feedback", de = "Ihr Feedback lesen" }
            "#,
        )
        .map(|mut t: BTreeMap<String, BTreeMap<String, ScopeConfig>>| t.remove("scopes").unwrap())
        .unwrap();
        let v = validate(&c).unwrap();
        assert_eq!(v["feedback.read"].de.as_deref(), Some("Ihr Feedback lesen"));
        let bad: BTreeMap<String, ScopeConfig> = [(
            "x.read".to_owned(),
            ScopeConfig {
                description: DescriptionConfig {
                    en: Some("a\u{7}".into()),
                    de: None,
                },
            },
        )]
        .into();
        assert!(validate(&bad).unwrap_err().to_string().contains("scopes"));
        assert!(
            toml::from_str::<ScopeConfig>("description = { fr = \"x\" }").is_err(),
            "unknown languages are refused"
        );
    }
}
