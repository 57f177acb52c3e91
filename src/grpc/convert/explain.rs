//! `CheckService/Explain` ⇄ domain: the request with its what-if applied,
//! and the explanation out.

use super::{CheckParts, check_parts, decision_out, mode_in, reason_out};
use crate::domain::check::{CacheView, Explanation, Outcome};
use crate::domain::error::{Error, Result};
use crate::domain::network::parse_ip_loose;
use crate::domain::permissions::Permission;
use crate::domain::reason::Reason;
use crate::pb;

/// An Explain request with its what-if applied.
pub struct ExplainParts<'a> {
    pub check: CheckParts<'a>,
    /// What-if permissions after the first (which is `check.permission`).
    pub extra: Vec<Permission<'a>>,
    /// `what_if.origin`, when set.
    pub origin: Option<&'a str>,
}

pub fn explain_parts(r: &pb::ExplainRequest) -> Result<(&pb::CheckRequest, ExplainParts<'_>)> {
    let Some(request) = r.request.as_ref() else {
        return Err(Error::invalid(
            "request",
            "is required (the CheckRequest to explain)",
        ));
    };
    let mut check = check_parts(request).map_err(under_request)?;
    let mut extra = Vec::new();
    let mut origin = None;
    if let Some(w) = &r.what_if {
        for (i, p) in w.permissions.iter().enumerate() {
            let parsed = Permission::parse(p)
                .map_err(|e| Error::invalid("what_if.permissions", format!("entry {i}: {e}")))?;
            if i == 0 {
                check.permission = Some(parsed);
            } else {
                extra.push(parsed);
            }
        }
        if let Some(mode) = mode_in("what_if.mode", w.mode)? {
            check.mode = Some(mode);
        }
        if !w.client_ip.is_empty() {
            check.peer_ip = Some(
                parse_ip_loose(&w.client_ip)
                    .ok_or_else(|| Error::invalid("what_if.client_ip", "is not an IP address"))?,
            );
        }
        if !w.origin.is_empty() {
            origin = Some(w.origin.as_str());
        }
    }
    Ok((
        request,
        ExplainParts {
            check,
            extra,
            origin,
        },
    ))
}

/// A `check_parts` error, named as the field inside `ExplainRequest`.
fn under_request(e: Error) -> Error {
    match e {
        Error::InvalidArgument { field, message } => Error::InvalidArgument {
            field: match field {
                "permission" => "request.permission",
                "mode" => "request.mode",
                "context.client_ip" => "request.context.client_ip",
                "context.body_sha256" => "request.context.body_sha256",
                other => other,
            },
            message,
        },
        other => other,
    }
}

fn outcome_out(o: Outcome) -> pb::StepOutcome {
    match o {
        Outcome::Passed => pb::StepOutcome::Passed,
        Outcome::Failed => pb::StepOutcome::Failed,
        Outcome::Skipped => pb::StepOutcome::Skipped,
    }
}

pub fn explanation_out(e: &Explanation) -> pb::ExplainResponse {
    let fresh = e.decision.reason;
    let cache = match &e.cache {
        CacheView::Absent => pb::CachedAnswer {
            detail: "nothing this replica caches for this credential changes the answer: Check \
                     would answer as Explain did from the store"
                .into(),
            ..Default::default()
        },
        CacheView::NotApplicable(why) => pb::CachedAnswer {
            detail: (*why).into(),
            ..Default::default()
        },
        CacheView::Held { reason, .. } => {
            let differs = e.cache.differs_from(fresh);
            pb::CachedAnswer {
                cached: true,
                allowed: *reason == Reason::Allowed,
                reason: reason_out(*reason).into(),
                differs,
                detail: if differs {
                    format!(
                        "the cache is stale: Check on this replica answers {} from it, the store \
                         says {}, until the entry is invalidated or expires",
                        reason.code(),
                        fresh.code()
                    )
                } else {
                    "the cached entry gives the same answer".into()
                },
            }
        }
    };
    pb::ExplainResponse {
        steps: e
            .steps
            .iter()
            .map(|s| pb::ExplainStep {
                name: s.step.name().into(),
                outcome: outcome_out(s.outcome).into(),
                detail: s.detail.clone(),
            })
            .collect(),
        decision: Some(decision_out(&e.decision)),
        cache: Some(cache),
    }
}
