//! Limits not bound to a key, as Envoy's rate-limit filter describes a
//! request: a domain and a descriptor, a list of `(key, value)` entries
//! (`remote_address = 10.0.0.7`, `path = /login`). A rule matches a
//! descriptor with the same keys in the same order whose values equal the
//! rule's where it gives one; an entry without a value counts each distinct
//! value on its own (per client address, per header value), as Envoy's
//! reference service and Limitador count.

use std::fmt::Write as _;

use super::gcra::{Quota, RatePolicy};

/// One entry of a rule: its key, and its value if the rule fixes one.
type RuleEntry = (Box<str>, Option<Box<str>>);

#[derive(Debug, Clone)]
pub struct DescriptorRule {
    domain: Box<str>,
    entries: Box<[RuleEntry]>,
    pub quota: Quota,
}

impl DescriptorRule {
    pub fn new<'a>(
        domain: &str,
        entries: impl IntoIterator<Item = (&'a str, Option<&'a str>)>,
        policy: RatePolicy,
    ) -> Self {
        Self {
            domain: domain.into(),
            entries: entries
                .into_iter()
                .map(|(k, v)| (k.into(), v.map(Into::into)))
                .collect(),
            quota: policy.quota(),
        }
    }

    fn matches<'a>(&self, domain: &str, entries: &[(&'a str, &'a str)]) -> bool {
        *self.domain == *domain
            && self.entries.len() == entries.len()
            && self
                .entries
                .iter()
                .zip(entries)
                .all(|((k, v), (ek, ev))| **k == **ek && v.as_deref().is_none_or(|v| v == *ev))
    }
}

/// Every configured descriptor rule.
#[derive(Debug, Clone, Default)]
pub struct Descriptors {
    rules: Vec<DescriptorRule>,
}

impl Descriptors {
    pub fn new(rules: Vec<DescriptorRule>) -> Self {
        Self { rules }
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The first rule for this descriptor, and the name of its counter:
    /// the rule's position, then each value the rule leaves open (a unit
    /// separator between them, which no header value contains).
    pub fn find(
        &self,
        domain: &str,
        entries: &[(&str, &str)],
    ) -> Option<(&DescriptorRule, String)> {
        let (i, rule) = self
            .rules
            .iter()
            .enumerate()
            .find(|(_, r)| r.matches(domain, entries))?;
        let mut counter = i.to_string();
        for ((_, fixed), (_, value)) in rule.entries.iter().zip(entries) {
            if fixed.is_none() {
                let _ = write!(counter, "\u{1f}{value}");
            }
        }
        Some((rule, counter))
    }
}
