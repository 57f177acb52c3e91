//! Limits not bound to a key, as Envoy's rate-limit filter describes a
//! request: a domain and a descriptor, a list of `(key, value)` entries
//! (`remote_address = 10.0.0.7`, `path = /login`). A rule matches a
//! descriptor with the same keys in the same order whose values equal the
//! rule's where it gives one; an entry without a value counts each distinct
//! value on its own (per client address, per header value), as Envoy's
//! reference service and Limitador count.

use std::fmt::Write as _;

use super::gcra::{Quota, RatePolicy};

/// One entry of a descriptor as a caller holds it (a pair, or a message).
pub trait DescriptorEntry {
    fn key(&self) -> &str;
    fn value(&self) -> &str;
}

impl DescriptorEntry for (&str, &str) {
    fn key(&self) -> &str {
        self.0
    }
    fn value(&self) -> &str {
        self.1
    }
}

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

    fn matches<E: DescriptorEntry>(&self, domain: &str, entries: &[E]) -> bool {
        *self.domain == *domain
            && self.entries.len() == entries.len()
            && self
                .entries
                .iter()
                .zip(entries)
                .all(|((k, v), e)| **k == *e.key() && v.as_deref().is_none_or(|v| v == e.value()))
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
        let mut counter = String::new();
        let rule = self.find_into(domain, entries, &mut counter)?;
        Some((rule, counter))
    }

    /// [`Descriptors::find`] without allocating: the entries as the caller
    /// holds them, the counter's name written into `counter` (cleared first),
    /// so a caller can reuse one buffer for every request.
    pub fn find_into<E: DescriptorEntry>(
        &self,
        domain: &str,
        entries: &[E],
        counter: &mut String,
    ) -> Option<&DescriptorRule> {
        let (i, rule) = self
            .rules
            .iter()
            .enumerate()
            .find(|(_, r)| r.matches(domain, entries))?;
        counter.clear();
        let _ = write!(counter, "{i}");
        for ((_, fixed), e) in rule.entries.iter().zip(entries) {
            if fixed.is_none() {
                counter.push('\u{1f}');
                counter.push_str(e.value());
            }
        }
        Some(rule)
    }
}
