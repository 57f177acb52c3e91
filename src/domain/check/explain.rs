//! Explain (issue 14 item 3): every step of the decision for one request,
//! what each looked at, and the final answer, read from the store as it is
//! now (no cache), writing nothing; and whether the answer Check would give
//! from its cache differs. The steps are the pipeline's own (`trace`), not
//! a copy of them.

use super::trace::{Recorder, Source};
use super::*;

#[derive(Debug)]
pub struct Explanation {
    /// Every step in order (`Step::ALL`; the permission steps once per
    /// permission asked).
    pub steps: Vec<StepReport>,
    /// The decision from the store as it is now.
    pub decision: Decision,
    pub cache: CacheView,
}

/// What Check would answer from this replica's shared key cache.
#[derive(Debug)]
pub enum CacheView {
    /// The cache holds nothing for the credential: Check would read the
    /// store, as Explain did.
    Absent,
    /// No cache entry is involved (why).
    NotApplicable(&'static str),
    /// The cache holds an entry (or remembers the hash as unknown): the
    /// decision Check would make from it, by the same steps.
    Held {
        reason: Reason,
        steps: Vec<StepReport>,
    },
}

impl CacheView {
    /// Would the cached answer differ from `fresh`?
    pub fn differs_from(&self, fresh: Reason) -> bool {
        matches!(self, CacheView::Held { reason, .. } if *reason != fresh)
    }
}

impl Checker {
    /// Explains the decision for `input` (plus `extra` permissions, all of
    /// which must be granted): read-only, from the store. Nothing is
    /// written or consumed, so asking changes no answer.
    pub async fn explain(&self, input: CheckInput<'_>, extra: &[Permission<'_>]) -> Explanation {
        let mut fresh = Recorder::new(Source::Store);
        let decision = self.run(input, extra, &mut fresh).await;
        let cache = match self.cache_entry(input.credential) {
            Err(why) => CacheView::NotApplicable(why),
            Ok(None) => CacheView::Absent,
            Ok(Some(entry)) => {
                let mut held = Recorder::new(Source::Held(entry));
                let cached = self.run(input, extra, &mut held).await;
                CacheView::Held {
                    reason: cached.reason,
                    steps: held.finish(),
                }
            }
        };
        Explanation {
            steps: fresh.finish(),
            decision,
            cache,
        }
    }

    /// The shared cache's entry for an API key credential: `Ok(None)` = none.
    #[allow(clippy::type_complexity)]
    fn cache_entry(
        &self,
        credential: &str,
    ) -> Result<Option<Option<Arc<ResolvedKey>>>, &'static str> {
        match Credential::classify(credential) {
            Credential::ApiKey(key) if keyfmt::parse(key, &self.key_prefix).is_ok() => {
                Ok(self.resolver.cached(&crypto::sha256(key.as_bytes())))
            }
            Credential::Jwt(_) => Err("a JWT access token: verified per token, not by key cache"),
            _ => Err("the credential is refused before any cache is read"),
        }
    }
}
