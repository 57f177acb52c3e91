//! The consent form's CSRF token: `<issued>.<mac>`, where the MAC
//! (HMAC-SHA256, `crypto::mac`) binds the signed-in user, the exact
//! authorization request and the time the form was shown. The key is shared
//! by every replica, so a form shown by one may be posted to another.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use zeroize::Zeroizing;

use crate::crypto::ct_eq;
use crate::crypto::mac::hmac_sha256;
use crate::crypto::secret::Secret;
use crate::domain::model::Millis;
use crate::domain::tokens::AuthorizeRequest;

/// How long a consent form may be submitted after it was shown.
const CSRF_TTL_SECS: i64 = 600;

pub struct CsrfKey(Secret<[u8; 32]>);

impl CsrfKey {
    pub fn new(secret: &Zeroizing<[u8; 32]>) -> Self {
        Self(Secret::new(**secret))
    }

    /// A token for a form shown at `now` to `user` for `r`.
    pub fn token(&self, now: Millis, user: &str, r: &AuthorizeRequest) -> String {
        let issued = now / 1000;
        format!("{issued}.{}", self.mac(user, r, issued))
    }

    /// Was `token` issued for this user and request, at most ten minutes before `now`?
    pub fn verify(&self, now: Millis, user: &str, r: &AuthorizeRequest, token: &str) -> bool {
        let Some((issued, mac)) = token.split_once('.') else {
            return false;
        };
        let Ok(issued) = issued.parse::<i64>() else {
            return false;
        };
        let now = now / 1000;
        (issued..=issued + CSRF_TTL_SECS).contains(&now)
            && ct_eq(self.mac(user, r, issued).as_bytes(), mac.as_bytes())
    }

    /// Each part length-prefixed, so that no two requests share a message.
    fn mac(&self, user: &str, r: &AuthorizeRequest, issued: i64) -> String {
        let mut msg = String::new();
        for part in [
            "consent-v1",
            user,
            &r.client.client_id,
            &r.redirect_uri,
            &r.scope.join(" "),
            r.state.as_deref().unwrap_or(""),
            &r.code_challenge,
            &issued.to_string(),
        ] {
            msg.push_str(&part.len().to_string());
            msg.push(':');
            msg.push_str(part);
        }
        URL_SAFE_NO_PAD.encode(hmac_sha256(self.0.expose(), &[msg.as_bytes()]))
    }
}
