//! The steps after authentication, the same for API keys and tokens: live
//! mode, required mode, network, Origin, store, request checks, operator
//! confinement, scopes and plan, rate limit; then usage is noted and the
//! caller allowed.

use super::*;

impl Checker {
    /// The steps after authentication, the same for keys and tokens.
    pub(super) async fn authorize(
        &self,
        key: Arc<ResolvedKey>,
        input: &CheckInput<'_>,
    ) -> Decision {
        let record = &key.record;
        let now = self.clock.now();
        if record.mode == Mode::Live
            && !key.account.is_operator
            && key.account.live_status != LiveStatus::Active
        {
            return Decision::deny_key(
                Reason::LiveModeInactive,
                &key,
                "live mode is not active for this account",
            );
        }
        if let Some(required) = input.required_mode
            && required != record.mode
        {
            let msg = format!(
                "a {} key was presented where {} is required",
                record.mode.tag(),
                required.tag()
            );
            return Decision::deny_key(Reason::ModeMismatch, &key, msg);
        }
        if !key.cidrs.is_empty() {
            let client =
                self.client_ip
                    .client_ip(input.peer_ip, input.forwarded_for, input.own_hops);
            if !client.is_some_and(|ip| network::allowed(ip, &key.cidrs)) {
                return Decision::deny_key(
                    Reason::IpNotAllowed,
                    &key,
                    "the client address is not in the key's allowlist",
                );
            }
        }
        if (!key.origins.is_empty() || record.kind == KeyKind::Publishable)
            && !origin::allowed(input.origin, &key.origins)
        {
            return Decision::deny_key(
                Reason::OriginNotAllowed,
                &key,
                "the request Origin is not in the key's allowlist",
            );
        }
        if let Some(store) = input.store_id
            && key
                .account
                .store_ids
                .binary_search_by(|s| s.as_str().cmp(store))
                .is_err()
        {
            return Decision::deny_key(
                Reason::StoreNotAllowed,
                &key,
                "the store named by the request does not belong to the key's account",
            );
        }
        if (record.signing_secret_id.is_some() || record.kind == KeyKind::Feed)
            && let Some(denied) = self.request_checks(&key, input.request).await
        {
            return denied;
        }
        if key.account.is_operator && !input.permission.is_some_and(Permission::is_admin) {
            return Decision::deny_key(
                Reason::PermissionDenied,
                &key,
                "operator keys authorize management calls only",
            );
        }
        if let Some(permission) = input.permission {
            if !key.scopes.grants(permission) {
                let msg = format!("the key's scopes do not include `{permission}`");
                return Decision::deny_key(Reason::PermissionDenied, &key, msg);
            }
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
                return Decision::deny_key(Reason::PlanNotEntitled, &key, msg);
            }
        }
        // Last, so that a request denied for any other reason consumes nothing.
        let rate_limit = match &self.limits {
            Some(l) => l.take_checked(&key).await,
            None => None,
        };
        if let Some(state) = rate_limit
            && !state.allowed
        {
            return Decision {
                reason: Reason::RateLimited,
                key: Some(key),
                message: Cow::Borrowed("the key's rate limit is spent; retry after the time given"),
                rate_limit,
            };
        }
        let reported = key.last_reported.load(Ordering::Relaxed);
        if now.saturating_sub(reported) >= USAGE_RESOLUTION_MS
            && key
                .last_reported
                .compare_exchange(reported, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
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
