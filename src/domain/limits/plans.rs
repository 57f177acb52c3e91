//! Which limit a principal runs under: its key's own policy, else its
//! plan's for its mode, else the deployment default (live mode only: test
//! mode is unlimited unless a plan says otherwise).

use std::collections::HashMap;

use super::gcra::{Quota, RatePolicy};
use crate::domain::model::{KeyRecord, Mode};

/// One plan's limits, as configured.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PlanRate {
    /// Live mode; `None` = the deployment default, `Some(None)` = unlimited.
    pub live: Option<Option<RatePolicy>>,
    /// Test mode; `None` = unlimited.
    pub test: Option<RatePolicy>,
}

/// Every plan's limits, compiled once from configuration.
#[derive(Debug, Clone, Default)]
pub struct PlanLimits {
    plans: HashMap<String, (Option<Quota>, Option<Quota>)>,
    default_live: Option<Quota>,
}

impl PlanLimits {
    pub fn new<'a>(
        plans: impl IntoIterator<Item = (&'a str, PlanRate)>,
        default_live: Option<RatePolicy>,
    ) -> Self {
        let default_live = default_live.map(|p| p.quota());
        let plans = plans
            .into_iter()
            .map(|(name, rate)| {
                let live = match rate.live {
                    Some(own) => own.map(|p| p.quota()),
                    None => default_live,
                };
                (name.to_owned(), (live, rate.test.map(|p| p.quota())))
            })
            .collect();
        Self {
            plans,
            default_live,
        }
    }

    /// The limit for a plan and mode; `None` = unlimited.
    pub fn plan(&self, plan: &str, mode: Mode) -> Option<Quota> {
        match (self.plans.get(plan), mode) {
            (Some((live, _)), Mode::Live) => *live,
            (Some((_, test)), Mode::Test) => *test,
            (None, Mode::Live) => self.default_live,
            (None, Mode::Test) => None,
        }
    }

    /// The limit a key (or a token minted from it) runs under: its own
    /// policy beats its plan's.
    pub fn for_key(&self, record: &KeyRecord, plan: &str) -> Option<Quota> {
        self.for_policy(record.rate_limit.as_ref(), record.mode, plan)
    }

    /// As [`PlanLimits::for_key`], from the key's own policy and mode.
    pub fn for_policy(&self, own: Option<&RatePolicy>, mode: Mode, plan: &str) -> Option<Quota> {
        match own {
            Some(own) => Some(own.quota()),
            None => self.plan(plan, mode),
        }
    }
}
