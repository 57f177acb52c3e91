//! Steps that need the HTTP request itself: feed keys stay under their path
//! prefix, and keys that must sign have their request's signature verified.

use super::*;

impl Checker {
    /// The feed-path and signed-request steps; `None` = they pass.
    pub(super) async fn request_checks<T: Trace>(
        &self,
        key: &Arc<ResolvedKey>,
        request: Option<&RequestFacts<'_>>,
        trace: &mut T,
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
            let shown = || {
                format!(
                    "path {} against the feed prefix {}",
                    path.as_deref()
                        .map_or("(none, or not normalisable)", without_query),
                    prefix.unwrap_or("(none configured)")
                )
            };
            if !inside {
                trace.step(Step::FeedPath, Outcome::Failed, || {
                    format!("outside: {}", shown())
                });
                return Some(Decision::deny_key(
                    Reason::PathNotAllowed,
                    key,
                    "feed keys are accepted only under the configured feed path",
                ));
            }
            trace.step(Step::FeedPath, Outcome::Passed, || {
                format!("inside: {}", shown())
            });
        } else {
            trace.step(Step::FeedPath, Outcome::Skipped, || "not a feed key".into());
        }
        let Some(secret_id) = record.signing_secret_id.as_deref() else {
            trace.step(Step::Signature, Outcome::Skipped, || {
                "the key's requests need no signature".into()
            });
            return None;
        };
        // `from`: where the secret's versions were read, when they were.
        let denied = |trace: &mut T, reason, message: Cow<'static, str>, from: &str| {
            trace.step(Step::Signature, Outcome::Failed, || {
                format!("{message} (signing secret {secret_id}{from})")
            });
            Some(Decision::deny_key(reason, key, message))
        };
        if request.is_some_and(|r| r.body_withheld) {
            return denied(
                trace,
                Reason::BodyUnavailable,
                Cow::Borrowed(
                    "the key's requests must be signed over their body, which forward auth never \
                     receives; send them through Envoy's ext_authz with the request body",
                ),
                "",
            );
        }
        let (Some(signing), Some(request)) = (self.signing.as_ref(), request) else {
            return denied(
                trace,
                Reason::SignatureMissing,
                Cow::Borrowed(
                    "the key requires signed requests; no request details were given to verify",
                ),
                "",
            );
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
                trace.cache_use(),
            )
            .await;
        let from = secret_source(trace.cache_use());
        match verified {
            Ok(v) => match v.reason {
                VerifyReason::Valid => {
                    trace.step(Step::Signature, Outcome::Passed, || {
                        format!(
                            "{} {} signed by version {} of signing secret {secret_id}{from}",
                            request.method,
                            without_query(request.path),
                            v.version.unwrap_or_default(),
                        )
                    });
                    None
                }
                // Decided before any version is read.
                VerifyReason::Missing => {
                    denied(trace, Reason::SignatureMissing, v.message.into(), "")
                }
                VerifyReason::Expired => {
                    denied(trace, Reason::SignatureExpired, v.message.into(), from)
                }
                _ => denied(trace, Reason::SignatureInvalid, v.message.into(), from),
            },
            Err(e) => {
                tracing::error!(error = %e, key_id = %record.id, "request signature check failed; denying");
                denied(
                    trace,
                    Reason::InternalError,
                    Cow::Borrowed("the decision could not be made; denied"),
                    ", which could not be read: the server log has the cause",
                )
            }
        }
    }
}

/// Where the signing secret's versions were read, for a detail.
fn secret_source(cache: CacheUse) -> &'static str {
    match cache {
        CacheUse::Fill => "",
        CacheUse::Bypass => ", versions read from the store",
        CacheUse::Peek => ", versions as this replica's cache holds them",
    }
}

/// A path for a detail: its query may carry credentials (`?api_key=`,
/// a signed URL's `signature`), so it is never shown.
fn without_query(path: &str) -> &str {
    path.split_once('?').map_or(path, |(p, _)| p)
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
