//! The steps after authentication, the same for API keys and tokens: live
//! mode, required mode, network, Origin, store, request checks, operator
//! confinement, scopes and plan, rate limit; then usage is noted and the
//! caller allowed. Each step reports to the run's [`Trace`] (a no-op for
//! Check; see `trace`).

use super::trace::list;
use super::*;

impl Checker {
    /// The steps after authentication, the same for keys and tokens.
    pub(super) async fn authorize<T: Trace>(
        &self,
        key: Arc<ResolvedKey>,
        input: &CheckInput<'_>,
        extra: &[Permission<'_>],
        trace: &mut T,
    ) -> Decision {
        let record = &key.record;
        let now = self.clock.now();
        if record.mode != Mode::Live {
            trace.step(Step::LiveMode, Outcome::Skipped, || {
                "a test-mode key".into()
            });
        } else if key.account.is_operator {
            trace.step(Step::LiveMode, Outcome::Skipped, || {
                "an operator key: no live-mode review".into()
            });
        } else if key.account.live_status != LiveStatus::Active {
            trace.step(Step::LiveMode, Outcome::Failed, || {
                format!(
                    "account {} live mode is `{}`, not active",
                    key.account.id,
                    key.account.live_status.tag()
                )
            });
            return Decision::deny_key(
                Reason::LiveModeInactive,
                &key,
                "live mode is not active for this account",
            );
        } else {
            trace.step(Step::LiveMode, Outcome::Passed, || {
                format!("account {} live mode is active", key.account.id)
            });
        }
        match input.required_mode {
            None => trace.step(Step::Mode, Outcome::Skipped, || {
                "the request requires no mode".into()
            }),
            Some(required) if required != record.mode => {
                let msg = format!(
                    "a {} key was presented where {} is required",
                    record.mode.tag(),
                    required.tag()
                );
                trace.step(Step::Mode, Outcome::Failed, || msg.clone());
                return Decision::deny_key(Reason::ModeMismatch, &key, msg);
            }
            Some(required) => trace.step(Step::Mode, Outcome::Passed, || {
                format!("a {} key, as required", required.tag())
            }),
        }
        if key.cidrs.is_empty() {
            trace.step(Step::Network, Outcome::Skipped, || {
                "the key has no IP allowlist".into()
            });
        } else {
            let client =
                self.client_ip
                    .client_ip(input.peer_ip, input.forwarded_for, input.own_hops);
            let shown = || client.map_or_else(|| "no client address".into(), |ip| ip.to_string());
            if !client.is_some_and(|ip| network::allowed(ip, &key.cidrs)) {
                trace.step(Step::Network, Outcome::Failed, || {
                    format!("{} is not in the allowlist [{}]", shown(), list(&key.cidrs))
                });
                return Decision::deny_key(
                    Reason::IpNotAllowed,
                    &key,
                    "the client address is not in the key's allowlist",
                );
            }
            trace.step(Step::Network, Outcome::Passed, || {
                format!("{} is in the allowlist [{}]", shown(), list(&key.cidrs))
            });
        }
        if key.origins.is_empty() && record.kind != KeyKind::Publishable {
            trace.step(Step::Origin, Outcome::Skipped, || {
                "the key has no Origin allowlist".into()
            });
        } else {
            let shown = || input.origin.unwrap_or("no Origin").to_owned();
            if !origin::allowed(input.origin, &key.origins) {
                trace.step(Step::Origin, Outcome::Failed, || {
                    format!(
                        "{} is not in the allowlist [{}]",
                        shown(),
                        list(&key.origins)
                    )
                });
                return Decision::deny_key(
                    Reason::OriginNotAllowed,
                    &key,
                    "the request Origin is not in the key's allowlist",
                );
            }
            trace.step(Step::Origin, Outcome::Passed, || {
                format!("{} is in the allowlist [{}]", shown(), list(&key.origins))
            });
        }
        match input.store_id {
            None => trace.step(Step::Store, Outcome::Skipped, || {
                "the request names no store".into()
            }),
            Some(store)
                if key
                    .account
                    .store_ids
                    .binary_search_by(|s| s.as_str().cmp(store))
                    .is_err() =>
            {
                trace.step(Step::Store, Outcome::Failed, || {
                    format!(
                        "store {store} is not one of account {}'s [{}]",
                        key.account.id,
                        list(&key.account.store_ids)
                    )
                });
                return Decision::deny_key(
                    Reason::StoreNotAllowed,
                    &key,
                    "the store named by the request does not belong to the key's account",
                );
            }
            Some(store) => trace.step(Step::Store, Outcome::Passed, || {
                format!("store {store} belongs to account {}", key.account.id)
            }),
        }
        if record.signing_secret_id.is_some() || record.kind == KeyKind::Feed {
            if let Some(denied) = self.request_checks(&key, input.request, trace).await {
                return denied;
            }
        } else {
            trace.step(Step::FeedPath, Outcome::Skipped, || "not a feed key".into());
            trace.step(Step::Signature, Outcome::Skipped, || {
                "the key's requests need no signature".into()
            });
        }
        // Explain's what-if may ask for several permissions; Check for one.
        let management = || {
            input.permission.is_some_and(Permission::is_admin)
                && extra.iter().all(Permission::is_admin)
        };
        if !key.account.is_operator {
            trace.step(Step::Operator, Outcome::Skipped, || {
                "not an operator key".into()
            });
        } else if !management() {
            trace.step(Step::Operator, Outcome::Failed, || {
                "an operator key, asked for something other than management permissions".into()
            });
            return Decision::deny_key(
                Reason::PermissionDenied,
                &key,
                "operator keys authorize management calls only",
            );
        } else {
            trace.step(Step::Operator, Outcome::Passed, || {
                "an operator key, asked for management permissions".into()
            });
        }
        if input.permission.is_none() {
            trace.step(Step::Scopes, Outcome::Skipped, || {
                "no permission asked: authentication only".into()
            });
            trace.step(Step::Plan, Outcome::Skipped, || {
                "no permission asked: authentication only".into()
            });
        }
        for permission in input.permission.into_iter().chain(extra) {
            if !key.scopes.grants(permission) {
                let msg = format!("the key's scopes do not include `{permission}`");
                trace.step(Step::Scopes, Outcome::Failed, || {
                    format!("{msg} (scopes: [{}])", list(&key.scope_strings))
                });
                return Decision::deny_key(Reason::PermissionDenied, &key, msg);
            }
            trace.step(Step::Scopes, Outcome::Passed, || {
                format!(
                    "`{permission}` is within the key's scopes [{}]",
                    list(&key.scope_strings)
                )
            });
            let entitled = match &key.entitlements {
                Some(plan) => {
                    (key.account.is_operator || !permission.is_admin()) && plan.grants(permission)
                }
                None => false,
            };
            if !entitled {
                let msg = format!(
                    "the account's plan `{}` does not include `{permission}`",
                    key.account.plan
                );
                trace.step(Step::Plan, Outcome::Failed, || msg.clone());
                return Decision::deny_key(Reason::PlanNotEntitled, &key, msg);
            }
            trace.step(Step::Plan, Outcome::Passed, || {
                if key.account.is_operator {
                    format!("`{permission}` is a management permission of the operator account")
                } else {
                    format!(
                        "the account's plan `{}` includes `{permission}`",
                        key.account.plan
                    )
                }
            });
        }
        // Last, so that a request denied for any other reason consumes
        // nothing; Explain only looks.
        let rate_limit = match &self.limits {
            Some(l) if T::DRY_RUN => l.peek(&key),
            Some(l) => l.take_checked(&key).await,
            None => None,
        };
        match &rate_limit {
            None => trace.step(Step::RateLimit, Outcome::Skipped, || {
                "the key's rate limit is unlimited".into()
            }),
            Some(state) if !state.allowed => {
                trace.step(Step::RateLimit, Outcome::Failed, || {
                    format!(
                        "spent: 0 of {} left; the next request is allowed in {} s",
                        state.limit, state.retry_after_seconds
                    )
                });
                return Decision {
                    reason: Reason::RateLimited,
                    key: Some(key),
                    message: Cow::Borrowed(
                        "the key's rate limit is spent; retry after the time given",
                    ),
                    rate_limit,
                };
            }
            Some(state) => trace.step(Step::RateLimit, Outcome::Passed, || {
                format!(
                    "{} of {} left (Explain consumed none)",
                    state.remaining, state.limit
                )
            }),
        }
        if !T::DRY_RUN && key.note_use(now) {
            self.usage.record(&record.id, now);
        }
        Decision {
            reason: Reason::Allowed,
            key: Some(key),
            message: Cow::Borrowed(""),
            rate_limit,
        }
    }
}
