//! Steps that need the HTTP request itself: feed keys stay under their path
//! prefix, and keys that must sign have their request's signature verified.

use super::*;

impl Checker {
    /// The feed-path and signed-request steps; `None` = they pass.
    pub(super) async fn request_checks(
        &self,
        key: &Arc<ResolvedKey>,
        request: Option<&RequestFacts<'_>>,
    ) -> Option<Decision> {
        let record = &key.record;
        if record.kind == KeyKind::Feed {
            let prefix = self
                .signing
                .as_ref()
                .and_then(|s| s.settings().feed_path_prefix.as_deref());
            let path = request.and_then(|r| normalize_path(r.path).ok());
            let inside = match (prefix, path.as_deref()) {
                (Some(prefix), Some(path)) => feed_path_allowed(prefix, path),
                _ => false,
            };
            if !inside {
                return Some(Decision::deny_key(
                    Reason::PathNotAllowed,
                    key,
                    "feed keys are accepted only under the configured feed path",
                ));
            }
        }
        let secret_id = record.signing_secret_id.as_deref()?;
        if request.is_some_and(|r| r.body_withheld) {
            return Some(Decision::deny_key(
                Reason::BodyUnavailable,
                key,
                "the key's requests must be signed over their body, which forward auth never \
                 receives; send them through Envoy's ext_authz with the request body",
            ));
        }
        let (Some(signing), Some(request)) = (self.signing.as_ref(), request) else {
            return Some(Decision::deny_key(
                Reason::SignatureMissing,
                key,
                "the key requires signed requests; no request details were given to verify",
            ));
        };
        let body = request
            .body_sha256
            .unwrap_or_else(|| crypto::sha256(request.body.unwrap_or_default()));
        let verified = signing
            .verify_request(
                secret_id,
                request.signature,
                request.method,
                request.path,
                &body,
            )
            .await;
        match verified {
            Ok(v) => match v.reason {
                VerifyReason::Valid => None,
                VerifyReason::Missing => {
                    Some(Decision::deny_key(Reason::SignatureMissing, key, v.message))
                }
                VerifyReason::Expired => {
                    Some(Decision::deny_key(Reason::SignatureExpired, key, v.message))
                }
                _ => Some(Decision::deny_key(Reason::SignatureInvalid, key, v.message)),
            },
            Err(e) => {
                tracing::error!(error = %e, key_id = %record.id, "request signature check failed; denying");
                Some(Decision::deny_key(
                    Reason::InternalError,
                    key,
                    "the decision could not be made; denied",
                ))
            }
        }
    }
}

/// Is the normalised `path` under `prefix`? A prefix without a trailing slash
/// still ends at a segment boundary: `/feeds` covers `/feeds/x`, not `/feedsx`.
pub fn feed_path_allowed(prefix: &str, path: &str) -> bool {
    if prefix.ends_with('/') {
        return path.starts_with(prefix);
    }
    path == prefix
        || path
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('/'))
}

#[cfg(test)]
mod feed_tests {
    use super::feed_path_allowed;

    #[test]
    fn feed_prefixes_end_at_segment_boundaries() {
        assert!(feed_path_allowed("/feeds/", "/feeds/products.xml"));
        assert!(!feed_path_allowed("/feeds/", "/feeds"));
        assert!(!feed_path_allowed("/feeds/", "/admin/feeds/x"));
        assert!(feed_path_allowed("/feeds", "/feeds"));
        assert!(feed_path_allowed("/feeds", "/feeds/a"));
        assert!(!feed_path_allowed("/feeds", "/feedsx"));
    }
}
