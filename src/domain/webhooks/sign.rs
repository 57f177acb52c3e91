//! Signatures on deliveries.
//!
//! - Standard Webhooks (<https://www.standardwebhooks.com/>): the secret is
//!   `whsec_<base64 key>`; headers `webhook-id`, `webhook-timestamp` (unix
//!   seconds) and `webhook-signature: v1,<base64 HMAC-SHA256(key,
//!   "<id>.<timestamp>.<body>")>`, one space-separated entry per live secret
//!   version, so receivers verify with the `standardwebhooks` libraries.
//! - The seed format (`domain::signing::formats`): `X-Webhook-Signature:
//!   t=<secs>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`, the whole
//!   `whsec_…` string being the HMAC key, plus the same `webhook-id`.

use base64::Engine;

use crate::crypto::mac::hmac_sha256;
use crate::crypto::secret::Secret;
use crate::domain::model::SignatureFormat;
use crate::domain::signing::formats::sign_header;

pub const SECRET_PREFIX: &str = "whsec_";

/// A new secret: `whsec_` and 32 random bytes in standard base64.
pub fn new_secret() -> Result<Secret<String>, getrandom::Error> {
    let mut key = zeroize::Zeroizing::new([0u8; 32]);
    getrandom::fill(key.as_mut())?;
    let mut s = String::from(SECRET_PREFIX);
    base64::engine::general_purpose::STANDARD.encode_string(key.as_ref(), &mut s);
    Ok(Secret::new(s))
}

/// The HMAC key of a Standard Webhooks secret.
fn standard_key(secret: &str) -> Option<zeroize::Zeroizing<Vec<u8>>> {
    let b64 = secret.strip_prefix(SECRET_PREFIX)?;
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .ok()
        .map(zeroize::Zeroizing::new)
}

/// The headers of one delivery, signed with every secret given (newest first).
pub fn headers(
    format: SignatureFormat,
    id: &str,
    t_secs: i64,
    body: &[u8],
    secrets: &[&str],
) -> Vec<(&'static str, String)> {
    let mut out = vec![
        ("webhook-id", id.to_owned()),
        ("webhook-timestamp", t_secs.to_string()),
    ];
    match format {
        SignatureFormat::Standard => {
            let t = t_secs.to_string();
            let sigs: Vec<String> = secrets
                .iter()
                .filter_map(|s| standard_key(s))
                .map(|key| {
                    let mac = hmac_sha256(&key, &[id.as_bytes(), b".", t.as_bytes(), b".", body]);
                    format!(
                        "v1,{}",
                        base64::engine::general_purpose::STANDARD.encode(mac)
                    )
                })
                .collect();
            out.push(("webhook-signature", sigs.join(" ")));
        }
        SignatureFormat::Seed => {
            let keys: Vec<&[u8]> = secrets.iter().map(|s| s.as_bytes()).collect();
            out.push(("x-webhook-signature", sign_header(t_secs, &keys, body)));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The Standard Webhooks specification's own test vector.
    #[test]
    fn standard_signature_matches_the_spec_vector() {
        let h = headers(
            SignatureFormat::Standard,
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1_614_265_330,
            br#"{"test": 2432232314}"#,
            &["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"],
        );
        assert_eq!(
            h[2],
            (
                "webhook-signature",
                "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=".to_owned()
            )
        );
    }

    #[test]
    fn new_secrets_decode_to_32_bytes() {
        let s = new_secret().unwrap();
        assert_eq!(standard_key(s.expose()).unwrap().len(), 32);
    }
}
