//! `latchkey.v1.UsageService`, and the wire form of `KeyService/AdviseKey`.

use std::sync::Arc;

use tonic::{Request, Response, Status};
use tracing::instrument;

use super::auth::authorize;
use super::convert;
use super::state::GrpcState;
use crate::domain::advisor::Advice;
use crate::domain::error::Error;
use crate::domain::model::Millis;
use crate::domain::usage_reports::{Granularity, UsagePoint, UsageSubject};
use crate::pb;
use crate::pb::get_usage_request::Subject;
use crate::pb::usage_service_server::UsageService;

pub struct UsageApi(pub Arc<GrpcState>);

/// A required timestamp, in milliseconds.
fn millis(field: &'static str, t: Option<&prost_types::Timestamp>) -> Result<Millis, Error> {
    let t = t.ok_or_else(|| Error::invalid(field, "is required"))?;
    if !(0..1_000_000_000).contains(&t.nanos) {
        return Err(Error::invalid(field, "has nanos out of range"));
    }
    t.seconds
        .checked_mul(1000)
        .and_then(|ms| ms.checked_add(i64::from(t.nanos / 1_000_000)))
        .filter(|ms| *ms >= 0)
        .ok_or_else(|| Error::invalid(field, "is out of range"))
}

fn granularity(g: i32) -> Result<Granularity, Error> {
    match pb::Granularity::try_from(g) {
        Ok(pb::Granularity::Minute) => Ok(Granularity::Minute),
        Ok(pb::Granularity::Hour) => Ok(Granularity::Hour),
        Ok(pb::Granularity::Day) => Ok(Granularity::Day),
        _ => Err(Error::invalid(
            "granularity",
            "is required: GRANULARITY_MINUTE, GRANULARITY_HOUR or GRANULARITY_DAY",
        )),
    }
}

fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

fn point_out(p: UsagePoint) -> pb::UsagePoint {
    pb::UsagePoint {
        start: Some(convert::timestamp(p.start)),
        key_id: p.key_id,
        permission: p.permission,
        allowed: count(p.allowed),
        denied: p.denied.into_iter().map(|(k, v)| (k, count(v))).collect(),
        countries: p
            .countries
            .into_iter()
            .map(|(k, v)| (k, count(v)))
            .collect(),
    }
}

pub fn advice_out(a: Advice) -> pb::AdviseKeyResponse {
    pb::AdviseKeyResponse {
        granted: a.granted,
        exercised: a.exercised,
        suggested: a.suggested,
        unused_since: a.unused_since.map(convert::timestamp),
    }
}

#[tonic::async_trait]
impl UsageService for UsageApi {
    #[instrument(skip_all)]
    async fn get_usage(
        &self,
        req: Request<pb::GetUsageRequest>,
    ) -> Result<Response<pb::GetUsageResponse>, Status> {
        authorize(&self.0, &req, &self.0.admin.usage_read).await?;
        let r = req.into_inner();
        let subject = match &r.subject {
            Some(Subject::KeyId(id)) => UsageSubject::Key(convert::key_id("key_id", id)?),
            Some(Subject::AccountId(id)) => {
                UsageSubject::Account(convert::account_id("account_id", id)?)
            }
            None => return Err(Error::invalid("key_id", "key_id or account_id is required").into()),
        };
        let from = millis("from", r.from.as_ref())?;
        let to = millis("to", r.to.as_ref())?;
        let granularity = granularity(r.granularity)?;
        let points = self
            .0
            .services
            .analytics
            .reports
            .series(subject, from, to, granularity)
            .await?;
        Ok(Response::new(pb::GetUsageResponse {
            points: points.into_iter().map(point_out).collect(),
        }))
    }
}
