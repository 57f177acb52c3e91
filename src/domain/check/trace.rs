//! How the decision's steps report, for Explain (issue 14 item 3).
//!
//! The pipeline is one generic body over a [`Trace`]: `decide` runs it with
//! [`Untraced`], whose `step` is an inlined no-op that never calls its
//! detail closure (no allocation, nothing to branch on at run time: the
//! dry-run switch is an associated constant); Explain runs the very same
//! steps with a [`Recorder`], which keeps each step's outcome and what it
//! looked at, reads keys, tokens and signing secrets from the store (or,
//! for the comparison, from what the caches hold) and writes nothing: no
//! usage, no rate-limit or failed-authentication count, no automatic
//! suspension, no cache entry.

use crate::domain::cache::CacheUse;
use crate::domain::model::Millis;

/// The decision's steps, in the order they run (DESIGN.md §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Step {
    /// The client address's failed-authentication budget.
    FailureBudget,
    /// Parse and checksum (or, for a JWT, its verification).
    Credential,
    /// The key behind the credential.
    Lookup,
    /// Revoked, suspended, expired, rotated out.
    Status,
    LiveMode,
    Mode,
    Network,
    Origin,
    Store,
    FeedPath,
    Signature,
    /// Operator keys authorize management calls only.
    Operator,
    Scopes,
    Plan,
    RateLimit,
}

impl Step {
    pub const ALL: [Step; 15] = [
        Step::FailureBudget,
        Step::Credential,
        Step::Lookup,
        Step::Status,
        Step::LiveMode,
        Step::Mode,
        Step::Network,
        Step::Origin,
        Step::Store,
        Step::FeedPath,
        Step::Signature,
        Step::Operator,
        Step::Scopes,
        Step::Plan,
        Step::RateLimit,
    ];

    /// The name Explain shows (stable: scripts match on it).
    pub fn name(self) -> &'static str {
        match self {
            Step::FailureBudget => "failure_budget",
            Step::Credential => "credential",
            Step::Lookup => "lookup",
            Step::Status => "status",
            Step::LiveMode => "live_mode",
            Step::Mode => "mode",
            Step::Network => "network",
            Step::Origin => "origin",
            Step::Store => "store",
            Step::FeedPath => "feed_path",
            Step::Signature => "signature",
            Step::Operator => "operator",
            Step::Scopes => "scopes",
            Step::Plan => "plan",
            Step::RateLimit => "rate_limit",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Passed,
    Failed,
    /// Did not apply to this request or key, or was not reached.
    Skipped,
}

/// One step as Explain reports it. `detail` names what the step looked at,
/// masked where secret: never a credential, signature or secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepReport {
    pub step: Step,
    pub outcome: Outcome,
    pub detail: String,
}

pub(super) trait Trace: Send {
    /// Explain: read, never write or consume anything.
    const DRY_RUN: bool;
    fn step(&mut self, step: Step, outcome: Outcome, detail: impl FnOnce() -> String);
    /// How the run reads keys, tokens and signing secrets.
    fn cache_use(&self) -> CacheUse;
}

/// Check: no reporting at all.
pub(super) struct Untraced;

impl Trace for Untraced {
    const DRY_RUN: bool = false;

    #[inline(always)]
    fn step(&mut self, _: Step, _: Outcome, _: impl FnOnce() -> String) {}

    #[inline(always)]
    fn cache_use(&self) -> CacheUse {
        CacheUse::Fill
    }
}

/// Explain: keeps every report.
pub(super) struct Recorder {
    steps: Vec<StepReport>,
    /// `Bypass` (the store as it is now) or `Peek` (what the caches hold).
    cache: CacheUse,
}

impl Recorder {
    pub(super) fn new(cache: CacheUse) -> Self {
        Self {
            steps: Vec::with_capacity(Step::ALL.len() + 2),
            cache,
        }
    }

    /// Every step in order: those the run did not report (an earlier one
    /// decided) are listed as skipped where they belong. Reported steps keep
    /// the order they ran in (with several permissions: scopes and plan of
    /// the first, then of the next).
    pub(super) fn finish(self) -> Vec<StepReport> {
        let decided = self
            .steps
            .iter()
            .find(|s| s.outcome == Outcome::Failed)
            .map(|s| s.step);
        let missing: Vec<Step> = Step::ALL
            .into_iter()
            .filter(|step| !self.steps.iter().any(|s| s.step == *step))
            .collect();
        let mut missing = missing.into_iter().peekable();
        let skipped = |step| StepReport {
            step,
            outcome: Outcome::Skipped,
            detail: match decided {
                Some(by) => format!("not reached: `{}` decided", by.name()),
                None => "not reached".to_owned(),
            },
        };
        let mut out = Vec::with_capacity(Step::ALL.len() + 2);
        for reported in self.steps {
            while let Some(step) = missing.next_if(|m| *m < reported.step) {
                out.push(skipped(step));
            }
            out.push(reported);
        }
        out.extend(missing.map(skipped));
        out
    }
}

impl Trace for Recorder {
    const DRY_RUN: bool = true;

    fn step(&mut self, step: Step, outcome: Outcome, detail: impl FnOnce() -> String) {
        self.steps.push(StepReport {
            step,
            outcome,
            detail: detail(),
        });
    }

    fn cache_use(&self) -> CacheUse {
        self.cache
    }
}

/// `at` against `now`, for a detail: `in 89 d`, `3 h ago`, `never`.
pub(super) fn when(at: Millis, now: Millis) -> String {
    if at == Millis::MAX {
        return "never".into();
    }
    let span = |ms: i64| {
        let s = ms / 1000;
        if s < 120 {
            format!("{s} s")
        } else if s < 7200 {
            format!("{} min", s / 60)
        } else if s < 172_800 {
            format!("{} h", s / 3600)
        } else {
            format!("{} d", s / 86_400)
        }
    };
    if at >= now {
        format!("in {}", span(at.saturating_sub(now)))
    } else {
        format!("{} ago", span(now.saturating_sub(at)))
    }
}

/// Items for a detail: `a, b, c`.
pub(super) fn list<D: std::fmt::Display>(items: &[D]) -> String {
    items
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unreached_steps_are_listed_skipped_in_order() {
        let mut r = Recorder::new(CacheUse::Bypass);
        r.step(Step::FailureBudget, Outcome::Skipped, || "none".into());
        r.step(Step::Credential, Outcome::Passed, || "ok".into());
        r.step(Step::Lookup, Outcome::Failed, || "no such key".into());
        let steps = r.finish();
        let order: Vec<_> = steps.iter().map(|s| s.step).collect();
        assert_eq!(order, Step::ALL);
        assert_eq!(steps[3].outcome, Outcome::Skipped);
        assert_eq!(steps[3].detail, "not reached: `lookup` decided");
    }

    #[test]
    fn times_read_as_spans() {
        assert_eq!(when(Millis::MAX, 0), "never");
        assert_eq!(when(90 * 86_400_000, 0), "in 90 d");
        assert_eq!(when(0, 3 * 3_600_000), "3 h ago");
        assert_eq!(when(5_000, 0), "in 5 s");
    }

    #[test]
    fn the_untraced_run_never_builds_a_detail() {
        let mut t = Untraced;
        t.step(Step::Credential, Outcome::Passed, || {
            panic!("Check must not build Explain's details")
        });
    }
}
