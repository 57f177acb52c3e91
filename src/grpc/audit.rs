//! `latchkey.v1.AuditService`, and the layer that gives every management
//! call its audit scope (`ports::audit_scope`): the admin check fills in
//! who is calling, the domain stages each change's event, and the store
//! writes it in the change's own transaction.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::Either;
use tonic::{Request, Response, Status};
use tracing::instrument;

use super::auth::authorize;
use super::convert::{self, timestamp};
use super::state::GrpcState;
use crate::domain::audit::{self, Caller};
use crate::domain::error::{Error, Result as DomainResult};
use crate::domain::model::{
    AUDIT_EVENT_ID_PREFIX, AuditCursor, AuditEvent, AuditFilter, AuditOutcome, Millis, Mode,
    valid_id,
};
use crate::pb;
use crate::pb::audit_service_server::AuditService;

pub struct AuditApi(pub Arc<GrpcState>);

/// Longest `action_prefix`, `actor` or correlation id accepted.
const MAX_FIELD_LEN: usize = 128;

fn event_out(e: &AuditEvent) -> pb::AuditEvent {
    pb::AuditEvent {
        id: e.id.clone(),
        time: Some(timestamp(e.time)),
        actor: e.actor.clone(),
        action: e.action.clone(),
        account_id: e.account_id.clone().unwrap_or_default(),
        mode: e
            .mode
            .as_deref()
            .and_then(Mode::from_tag)
            .map_or(pb::Mode::Unspecified, convert::mode_out) as i32,
        target_type: e.target_type.clone(),
        target_id: e.target_id.clone().unwrap_or_default(),
        summary: e.summary.clone(),
        client_ip: e.client_ip.clone().unwrap_or_default(),
        correlation_id: e.correlation_id.clone().unwrap_or_default(),
        count: e.count,
        outcome: e.outcome.tag().to_owned(),
        user_agent: e.user_agent.clone().unwrap_or_default(),
    }
}

fn millis(field: &'static str, t: Option<&prost_types::Timestamp>) -> DomainResult<Option<Millis>> {
    let Some(t) = t else { return Ok(None) };
    if !(0..1_000_000_000).contains(&t.nanos) {
        return Err(Error::invalid(
            field,
            "nanos must be between 0 and 999999999",
        ));
    }
    t.seconds
        .checked_mul(1000)
        .and_then(|ms| ms.checked_add(i64::from(t.nanos / 1_000_000)))
        .map(Some)
        .ok_or_else(|| Error::invalid(field, "is out of range"))
}

fn text(field: &'static str, s: &str) -> DomainResult<Option<String>> {
    if s.is_empty() {
        return Ok(None);
    }
    if s.len() > MAX_FIELD_LEN || s.chars().any(char::is_control) {
        return Err(Error::invalid(
            field,
            format!("must be at most {MAX_FIELD_LEN} bytes without control characters"),
        ));
    }
    Ok(Some(s.to_owned()))
}

/// `<time>.<id>` of the last event of a page.
fn cursor_token(e: &AuditEvent) -> String {
    format!("{}.{}", e.time, e.id)
}

fn cursor(token: &str) -> DomainResult<Option<AuditCursor>> {
    if token.is_empty() {
        return Ok(None);
    }
    let bad = || Error::invalid("page_token", "is not a token from a previous page");
    let (time, id) = token.split_once('.').ok_or_else(bad)?;
    let time: Millis = time.parse().map_err(|_| bad())?;
    if !valid_id(id, AUDIT_EVENT_ID_PREFIX) {
        return Err(bad());
    }
    Ok(Some(AuditCursor {
        time,
        id: id.to_owned(),
    }))
}

fn filter(r: &pb::ListEventsRequest) -> DomainResult<AuditFilter> {
    let account_id = match r.account_id.as_str() {
        "" => None,
        id => Some(convert::account_id("account_id", id)?),
    };
    let key_id = match r.key_id.as_str() {
        "" => None,
        id => Some(convert::key_id("key_id", id)?),
    };
    let outcome = match r.outcome.as_str() {
        "" => None,
        o => Some(AuditOutcome::from_tag(o).ok_or_else(|| {
            Error::invalid("outcome", "must be `success`, `denied` or `allowed`")
        })?),
    };
    let from = millis("from", r.from.as_ref())?;
    let to = millis("to", r.to.as_ref())?;
    if let (Some(f), Some(t)) = (from, to)
        && f > t
    {
        return Err(Error::invalid("to", "must not be before `from`"));
    }
    Ok(AuditFilter {
        account_id,
        key_id,
        action_prefix: text("action_prefix", &r.action_prefix)?,
        actor: text("actor", &r.actor)?,
        from,
        to,
        outcome,
    })
}

#[tonic::async_trait]
impl AuditService for AuditApi {
    #[instrument(skip_all)]
    async fn list_events(
        &self,
        req: Request<pb::ListEventsRequest>,
    ) -> Result<Response<pb::ListEventsResponse>, Status> {
        authorize(&self.0, &req, &self.0.admin.audit_read).await?;
        let r = req.get_ref();
        let filter = filter(r)?;
        let (limit, _) = convert::page(r.page_size, "", AUDIT_EVENT_ID_PREFIX)?;
        let before = cursor(&r.page_token)?;
        let mut rows = self
            .0
            .services
            .audit
            .list(&filter, before.as_ref(), limit + 1)
            .await?;
        let more = rows.len() as u64 > limit;
        rows.truncate(limit as usize);
        let next_page_token = match rows.last() {
            Some(last) if more => cursor_token(last),
            _ => String::new(),
        };
        Ok(Response::new(pb::ListEventsResponse {
            events: rows.iter().map(event_out).collect(),
            next_page_token,
        }))
    }

    #[instrument(skip_all)]
    async fn get_event(
        &self,
        req: Request<pb::GetEventRequest>,
    ) -> Result<Response<pb::AuditEvent>, Status> {
        authorize(&self.0, &req, &self.0.admin.audit_read).await?;
        let id = &req.get_ref().id;
        if !valid_id(id, AUDIT_EVENT_ID_PREFIX) {
            return Err(Error::invalid("id", "is not an audit event id (evt_…)").into());
        }
        let event = self.0.services.audit.get(id).await?;
        Ok(Response::new(event_out(&event)))
    }
}

/// Who is calling, from the call's metadata (the actor is added once the
/// admin token passes): the peer address, `user-agent`, and the caller's
/// `x-request-id` (or `x-correlation-id`) when it sends a sane one, else a
/// fresh id.
pub fn caller_of<T>(request: &Request<T>, actor: &str) -> Caller {
    let header = |name: &str| {
        request
            .metadata()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty() && v.len() <= MAX_FIELD_LEN)
            .map(str::to_owned)
    };
    let correlation_id = header("x-request-id")
        .or_else(|| header("x-correlation-id"))
        .filter(|v| {
            v.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
        })
        .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
    Caller {
        actor: Some(actor.to_owned()),
        client_ip: request.remote_addr().map(|a| a.ip().to_string()),
        user_agent: header("user-agent"),
        correlation_id: Some(correlation_id),
    }
}

/// Opens an audit scope around every management call. Check, ext_authz and
/// rate-limit calls pass straight through (one branch on the path): they
/// mutate nothing, and the hot path gets no allocation.
#[derive(Debug, Clone, Copy, Default)]
pub struct AuditScopeLayer;

impl<S> tower::Layer<S> for AuditScopeLayer {
    type Service = AuditScope<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AuditScope { inner }
    }
}

#[derive(Debug, Clone)]
pub struct AuditScope<S> {
    inner: S,
}

type Boxed<R, E> = Pin<Box<dyn Future<Output = Result<R, E>> + Send>>;

/// Services that never mutate: decisions, and the protocol's own services.
fn unaudited(path: &str) -> bool {
    path.starts_with("/latchkey.v1.CheckService/")
        || path.starts_with("/envoy.")
        || path.starts_with("/grpc.")
}

impl<S, B> tower::Service<axum::http::Request<B>> for AuditScope<S>
where
    S: tower::Service<axum::http::Request<B>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Either<S::Future, Boxed<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: axum::http::Request<B>) -> Self::Future {
        if unaudited(req.uri().path()) {
            return Either::Left(self.inner.call(req));
        }
        let fut = self.inner.call(req);
        Either::Right(Box::pin(audit::scope(Caller::default(), fut)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_tokens_round_trip_and_junk_is_refused() {
        let mut e = AuditEvent::new(1_700_000_000_123, "system", "key.created", "key");
        e.id = "evt_0190f0e0a0b0c0d0e0f0a0b0c0d0e0f0".to_owned();
        let token = cursor_token(&e);
        let c = cursor(&token).unwrap().unwrap();
        assert_eq!((c.time, c.id.as_str()), (e.time, e.id.as_str()));
        for junk in [
            "x",
            "12",
            "12.key_1",
            "a.evt_0190f0e0a0b0c0d0e0f0a0b0c0d0e0f0",
        ] {
            assert!(cursor(junk).is_err(), "{junk}");
        }
    }

    #[test]
    fn the_hot_path_gets_no_scope() {
        assert!(unaudited("/latchkey.v1.CheckService/Check"));
        assert!(unaudited("/envoy.service.auth.v3.Authorization/Check"));
        assert!(!unaudited("/latchkey.v1.KeyService/RevokeKey"));
    }
}
