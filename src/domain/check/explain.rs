//! Explain (issue 14 item 3): every step of the decision for one request,
//! what each looked at, and the final answer, read from the store as it is
//! now (no cache), writing nothing; and whether the answer Check would give
//! from its cache differs. The steps are the pipeline's own (`trace`), not
//! a copy of them.

use super::trace::Recorder;
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

/// What Check would answer from this replica's caches.
#[derive(Debug)]
pub enum CacheView {
    /// The caches hold nothing for the credential, or nothing that changes
    /// the answer: Check would answer as Explain did.
    Absent,
    /// No cache entry is involved (why).
    NotApplicable(&'static str),
    /// The key cache holds an entry (or remembers the hash as unknown), or
    /// the verified-token cache holds the token, or a cache behind them (a
    /// signing secret's versions, the signing keys, a client) holds what
    /// changes the answer: the decision Check would make, by the same steps.
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
    /// written, consumed or cached, so asking changes no answer.
    pub async fn explain(&self, input: CheckInput<'_>, extra: &[Permission<'_>]) -> Explanation {
        let mut fresh = Recorder::new(CacheUse::Bypass);
        let decision = self.run(input, extra, &mut fresh).await;
        let cache = match self.cache_holds(input.credential) {
            Err(why) => CacheView::NotApplicable(why),
            Ok(holds) => {
                // The same steps from what the caches hold (the key or the
                // verified token, and the signing secrets, signing keys and
                // clients behind them); where they hold nothing, the store.
                let mut held = Recorder::new(CacheUse::Peek);
                let cached = self.run(input, extra, &mut held).await;
                if holds || cached.reason != decision.reason {
                    CacheView::Held {
                        reason: cached.reason,
                        steps: held.finish(),
                    }
                } else {
                    CacheView::Absent
                }
            }
        };
        Explanation {
            steps: fresh.finish(),
            decision,
            cache,
        }
    }

    /// Does the credential's own cache (the shared key cache, or the
    /// verified-token cache) hold an entry for it?
    fn cache_holds(&self, credential: &str) -> Result<bool, &'static str> {
        match Credential::classify(credential) {
            Credential::ApiKey(key) if keyfmt::parse(key, &self.key_prefix).is_ok() => Ok(self
                .resolver
                .cached(&crypto::sha256(key.as_bytes()))
                .is_some()),
            Credential::Jwt(token) => match &self.tokens {
                Some(tokens) => Ok(tokens.holds_verified(token)),
                None => Err("a JWT access token, and this server verifies none"),
            },
            _ => Err("the credential is refused before any cache is read"),
        }
    }
}
