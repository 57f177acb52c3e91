//! `latchkey.v1.CheckService`: the hot path. A denial is a normal response;
//! an invalid request (bad permission syntax, bad address) is INVALID_ARGUMENT.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::auth::authorize;
use super::convert;
use super::state::GrpcState;
use crate::domain::check::{CheckInput, RequestFacts};
use crate::domain::observe;
use crate::pb;
use crate::pb::check_service_server::CheckService;
use crate::telemetry::metrics::Api;

pub struct CheckApi(pub Arc<GrpcState>);

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
        let headers = r.context.as_ref().map(|c| &c.headers);
        let header = |name: &str| headers.and_then(|h| h.get(name)).map(String::as_str);
        let credential = if r.credential.is_empty() {
            header("authorization").unwrap_or_default()
        } else {
            &r.credential
        };
        let origin = match r.context.as_ref().map(|c| c.origin.as_str()) {
            Some(o) if !o.is_empty() => Some(o),
            _ => header("origin"),
        };
        let request = r.context.as_ref().map(|c| RequestFacts {
            method: &c.method,
            path: &c.path,
            body_sha256: parts.body_sha256,
            body: None,
            body_withheld: false,
            signature: header(&self.0.services.signing.settings().request_header),
        });
        let decision = self
            .0
            .services
            .checker
            .decide(CheckInput {
                credential,
                permission: parts.permission.as_ref(),
                required_mode: parts.mode,
                peer_ip: parts.peer_ip,
                forwarded_for: header("x-forwarded-for"),
                own_hops: 0,
                origin,
                store_id: self.0.store_header.as_deref().and_then(header),
                request: request.as_ref(),
            })
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
}
