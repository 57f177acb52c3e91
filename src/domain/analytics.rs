//! Usage analytics as one service: the outcome recorder the checker feeds,
//! what the worker needs to write, the reports and the advisor.

use std::sync::Arc;

use super::advisor::Advisor;
use super::outcomes::OutcomeRecorder;
use super::usage_reports::UsageReports;
use crate::ports::{GeoLookup, OutcomeEvents, UsageStore};

pub struct Analytics {
    /// `None` when `usage.record_outcomes` is off.
    pub recorder: Option<Arc<OutcomeRecorder>>,
    pub store: Arc<dyn UsageStore>,
    pub events: Arc<dyn OutcomeEvents>,
    pub geo: Option<Arc<dyn GeoLookup>>,
    pub reports: UsageReports,
    pub advisor: Advisor,
}
