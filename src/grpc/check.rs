//! `latchkey.v1.CheckService`: the hot path. A denial is a normal response;
//! an invalid request (bad permission syntax, bad address) is INVALID_ARGUMENT.
//! `Explain` is the operators' view of the same decision (admin only).

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::auth::authorize;
use super::convert::{self, CheckParts};
use super::state::GrpcState;
use crate::domain::check::{CheckInput, RequestFacts};
use crate::domain::observe;
use crate::pb;
use crate::pb::check_service_server::CheckService;
use crate::telemetry::metrics::Api;

pub struct CheckApi(pub Arc<GrpcState>);

/// A request header (lower-case name) from the request's context.
fn header<'a>(r: &'a pb::CheckRequest, name: &str) -> Option<&'a str> {
    r.context
        .as_ref()
        .and_then(|c| c.headers.get(name))
        .map(String::as_str)
}

/// What signed-request and feed-key checks need, when a context was sent.
fn request_facts<'a>(
    state: &'a GrpcState,
    r: &'a pb::CheckRequest,
    parts: &CheckParts<'_>,
) -> Option<RequestFacts<'a>> {
    r.context.as_ref().map(|c| RequestFacts {
        method: &c.method,
        path: &c.path,
        body_sha256: parts.body_sha256,
        body: None,
        body_withheld: false,
        signature: header(r, &state.services.signing.settings().request_header),
    })
}

/// The question `decide` is asked, borrowed from the request.
fn check_input<'a>(
    state: &'a GrpcState,
    r: &'a pb::CheckRequest,
    parts: &'a CheckParts<'a>,
    request: Option<&'a RequestFacts<'a>>,
) -> CheckInput<'a> {
    let credential = if r.credential.is_empty() {
        header(r, "authorization").unwrap_or_default()
    } else {
        &r.credential
    };
    let origin = match r.context.as_ref().map(|c| c.origin.as_str()) {
        Some(o) if !o.is_empty() => Some(o),
        _ => header(r, "origin"),
    };
    CheckInput {
        credential,
        permission: parts.permission.as_ref(),
        required_mode: parts.mode,
        peer_ip: parts.peer_ip,
        forwarded_for: header(r, "x-forwarded-for"),
        own_hops: 0,
        origin,
        store_id: state.store_header.as_deref().and_then(|h| header(r, h)),
        request,
    }
}

#[tonic::async_trait]
impl CheckService for CheckApi {
    async fn check(
        &self,
        req: Request<pb::CheckRequest>,
    ) -> Result<Response<pb::CheckResponse>, Status> {
        let started = std::time::Instant::now();
        if self.0.check_requires_auth {
            authorize(&self.0, &req, &self.0.admin.check).await?;
        }
        let r = req.into_inner();
        let parts = convert::check_parts(&r)?;
        let request = request_facts(&self.0, &r, &parts);
        let decision = self
            .0
            .services
            .checker
            .decide(check_input(&self.0, &r, &parts, request.as_ref()))
            .await;
        observe::decided(
            Api::Check,
            decision.reason,
            decision.key.as_deref(),
            started,
        );
        if !decision.allowed() {
            tracing::debug!(
                reason = decision.reason.code(),
                key_id = decision.key.as_ref().map(|k| k.record.id.as_str()),
                "check denied"
            );
        }
        Ok(Response::new(convert::decision_out(&decision)))
    }

    /// Not a decision: nothing is observed, counted or consumed.
    async fn explain(
        &self,
        req: Request<pb::ExplainRequest>,
    ) -> Result<Response<pb::ExplainResponse>, Status> {
        authorize(&self.0, &req, &self.0.admin.check_explain).await?;
        let r = req.into_inner();
        let (check, parts) = convert::explain_parts(&r)?;
        let request = request_facts(&self.0, check, &parts.check);
        let mut input = check_input(&self.0, check, &parts.check, request.as_ref());
        if parts.origin.is_some() {
            input.origin = parts.origin;
        }
        let explanation = self.0.services.checker.explain(input, &parts.extra).await;
        tracing::info!(
            reason = explanation.decision.reason.code(),
            key_id = explanation
                .decision
                .key
                .as_ref()
                .map(|k| k.record.id.as_str()),
            "check explained"
        );
        Ok(Response::new(convert::explanation_out(&explanation)))
    }
}
