//! `envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit`: Envoy's
//! rate-limit service API (the job Limitador does), on the same counters as
//! the per-key limits. Limits not bound to a key — per client address, per
//! route, per header value — are configured as `[[rate_limits.descriptors]]`
//! and enforced by Envoy's `ratelimit` filter with Latchkey as its service.
//!
//! Each descriptor the filter sends is matched against the rules
//! (`domain::limits::Descriptors`); one without a rule is `OK` and counts
//! nothing. The answer is `OVER_LIMIT` when any descriptor is, and carries
//! the rate-limit fields of the tightest descriptor in
//! `response_headers_to_add`.

use std::sync::Arc;

use envoy_types::pb::envoy::config::core::v3::HeaderValue;
use envoy_types::pb::envoy::extensions::common::ratelimit::v3::rate_limit_descriptor::Entry;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::rate_limit::Unit;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::{
    Code, DescriptorStatus, RateLimit,
};
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_server::RateLimitService;
use envoy_types::pb::envoy::service::ratelimit::v3::{RateLimitRequest, RateLimitResponse};
use envoy_types::pb::google::protobuf::Duration;
use tonic::{Request, Response, Status};

use super::state::GrpcState;
use crate::domain::limits::{DescriptorEntry, RateState, Space, rate_limit_headers};

thread_local! {
    /// The counter's name, built per descriptor into one buffer per thread
    /// (no allocation per call once it has grown).
    static COUNTER: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
}

impl DescriptorEntry for Entry {
    fn key(&self) -> &str {
        &self.key
    }
    fn value(&self) -> &str {
        &self.value
    }
}

/// Most descriptors one request may carry (Envoy sends a handful).
const MAX_DESCRIPTORS: usize = 64;

pub struct RateLimitApi(pub Arc<GrpcState>);

fn unit(per_seconds: u64) -> (u64, Unit) {
    match per_seconds {
        1 => (1, Unit::Second),
        60 => (1, Unit::Minute),
        3600 => (1, Unit::Hour),
        86_400 => (1, Unit::Day),
        _ => (per_seconds, Unit::Unknown),
    }
}

fn status(state: &RateState) -> DescriptorStatus {
    let (_, unit) = unit(state.policy.per_seconds);
    DescriptorStatus {
        code: if state.allowed {
            Code::Ok
        } else {
            Code::OverLimit
        } as i32,
        current_limit: Some(RateLimit {
            name: String::new(),
            requests_per_unit: u32::try_from(state.policy.requests).unwrap_or(u32::MAX),
            unit: unit as i32,
        }),
        limit_remaining: u32::try_from(state.remaining).unwrap_or(u32::MAX),
        duration_until_reset: Some(Duration {
            seconds: i64::try_from(state.reset_seconds).unwrap_or(i64::MAX),
            nanos: 0,
        }),
        ..Default::default()
    }
}

#[tonic::async_trait]
impl RateLimitService for RateLimitApi {
    async fn should_rate_limit(
        &self,
        req: Request<RateLimitRequest>,
    ) -> Result<Response<RateLimitResponse>, Status> {
        let r = req.into_inner();
        if r.domain.is_empty() {
            return Err(Status::invalid_argument("domain: must not be empty"));
        }
        if r.descriptors.len() > MAX_DESCRIPTORS {
            return Err(Status::invalid_argument(format!(
                "descriptors: at most {MAX_DESCRIPTORS}"
            )));
        }
        let services = &self.0.services;
        let hits = u64::from(r.hits_addend.max(1));
        let mut statuses = Vec::with_capacity(r.descriptors.len());
        // The descriptor that says the most: over limit, else least remaining.
        let mut tightest: Option<RateState> = None;
        for d in &r.descriptors {
            let cost = d.hits_addend.as_ref().map_or(hits, |h| h.value);
            let limiter = &services.limits.limiter;
            let found = if limiter.is_strict() {
                // Strict mode asks Redis: the counter's name must outlive the await.
                let mut counter = String::new();
                match services
                    .descriptors
                    .find_into(&r.domain, &d.entries, &mut counter)
                {
                    Some(rule) => Some(
                        limiter
                            .take_n_strict(Space::Descriptor, &counter, &rule.quota, cost)
                            .await,
                    ),
                    None => None,
                }
            } else {
                COUNTER.with_borrow_mut(|counter| {
                    let rule = services
                        .descriptors
                        .find_into(&r.domain, &d.entries, counter)?;
                    Some(limiter.take_n(Space::Descriptor, counter, &rule.quota, cost))
                })
            };
            let Some(state) = found else {
                statuses.push(DescriptorStatus {
                    code: Code::Ok as i32,
                    ..Default::default()
                });
                continue;
            };
            if tightest.is_none_or(|t| {
                (t.allowed && !state.allowed)
                    || (t.allowed == state.allowed && state.remaining < t.remaining)
            }) {
                tightest = Some(state);
            }
            statuses.push(status(&state));
        }
        let over = tightest.is_some_and(|t| !t.allowed);
        let response_headers_to_add = tightest
            .map(|t| {
                rate_limit_headers("descriptor", &t)
                    .into_iter()
                    .map(|(key, value)| HeaderValue {
                        key: key.to_owned(),
                        value,
                        raw_value: Vec::new(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(Response::new(RateLimitResponse {
            overall_code: if over { Code::OverLimit } else { Code::Ok } as i32,
            statuses,
            response_headers_to_add,
            ..Default::default()
        }))
    }
}
