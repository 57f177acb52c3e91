//! JSON Web Tokens (RFC 7519) in compact JWS form, signed with keys that are
//! parsed once: RS256 (RSA-2048, PKCS#1 v1.5), ES256 (P-256) and EdDSA
//! (Ed25519), on aws-lc. Verification checks the signature only; claims are
//! the caller's business. `alg` is never trusted to pick the algorithm: the
//! key named by `kid` decides it, and a token whose `alg` differs is refused.

use std::fmt;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{KeyPair as RsaKeyPair, KeySize};
use aws_lc_rs::signature::{
    self, ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair, ParsedPublicKey,
};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    Rs256,
    Es256,
    EdDsa,
}

impl Algorithm {
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Rs256 => "RS256",
            Algorithm::Es256 => "ES256",
            Algorithm::EdDsa => "EdDSA",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "RS256" => Some(Algorithm::Rs256),
            "ES256" => Some(Algorithm::Es256),
            "EdDSA" => Some(Algorithm::EdDsa),
            _ => None,
        }
    }

    pub const ALL: [Algorithm; 3] = [Algorithm::Rs256, Algorithm::Es256, Algorithm::EdDsa];
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    #[error("the token is not three base64url parts")]
    Malformed,
    #[error("the token header is not valid JSON")]
    BadHeader,
    #[error("the signature does not verify")]
    BadSignature,
    #[error("key material rejected: {0}")]
    BadKey(&'static str),
    #[error("signing failed")]
    SigningFailed,
}

enum Pair {
    Rsa(RsaKeyPair),
    Ec(EcdsaKeyPair),
    Ed(Ed25519KeyPair),
}

/// A private signing key, parsed once. Never printed.
pub struct SigningKey {
    pub kid: String,
    pub alg: Algorithm,
    pair: Pair,
    rng: SystemRandom,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

/// The JOSE header we read. Unknown members are ignored, as RFC 7515 allows
/// for members this implementation does not understand (`crit` is refused).
#[derive(Debug, Deserialize)]
pub struct Header {
    pub alg: String,
    #[serde(default)]
    pub kid: Option<String>,
    #[serde(default)]
    pub crit: Option<serde_json::Value>,
}

#[derive(Serialize)]
struct OutHeader<'a> {
    alg: &'static str,
    typ: &'static str,
    kid: &'a str,
}

impl SigningKey {
    /// A new key and its PKCS#8 document (to be sealed and stored).
    pub fn generate(alg: Algorithm, kid: String) -> Result<(Self, Zeroizing<Vec<u8>>), JwtError> {
        let pkcs8 = match alg {
            Algorithm::Rs256 => {
                use aws_lc_rs::encoding::AsDer;
                let pair = RsaKeyPair::generate(KeySize::Rsa2048)
                    .map_err(|_| JwtError::BadKey("RSA generation failed"))?;
                let der = pair
                    .as_der()
                    .map_err(|_| JwtError::BadKey("RSA export failed"))?;
                Zeroizing::new(der.as_ref().to_vec())
            }
            Algorithm::Es256 => {
                let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING)
                    .map_err(|_| JwtError::BadKey("P-256 generation failed"))?;
                let doc = pair
                    .to_pkcs8v1()
                    .map_err(|_| JwtError::BadKey("P-256 export failed"))?;
                Zeroizing::new(doc.as_ref().to_vec())
            }
            Algorithm::EdDsa => {
                let pair = Ed25519KeyPair::generate()
                    .map_err(|_| JwtError::BadKey("Ed25519 generation failed"))?;
                let doc = pair
                    .to_pkcs8()
                    .map_err(|_| JwtError::BadKey("Ed25519 export failed"))?;
                Zeroizing::new(doc.as_ref().to_vec())
            }
        };
        let key = Self::from_pkcs8(alg, kid, &pkcs8)?;
        Ok((key, pkcs8))
    }

    pub fn from_pkcs8(alg: Algorithm, kid: String, der: &[u8]) -> Result<Self, JwtError> {
        let pair = match alg {
            Algorithm::Rs256 => Pair::Rsa(
                RsaKeyPair::from_pkcs8(der).map_err(|_| JwtError::BadKey("not an RSA key"))?,
            ),
            Algorithm::Es256 => Pair::Ec(
                EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der)
                    .map_err(|_| JwtError::BadKey("not a P-256 key"))?,
            ),
            Algorithm::EdDsa => Pair::Ed(
                Ed25519KeyPair::from_pkcs8(der)
                    .map_err(|_| JwtError::BadKey("not an Ed25519 key"))?,
            ),
        };
        Ok(Self {
            kid,
            alg,
            pair,
            rng: SystemRandom::new(),
        })
    }

    /// The public key in the form [`VerifyingKey::new`] takes.
    pub fn public_key_bytes(&self) -> Vec<u8> {
        match &self.pair {
            Pair::Rsa(p) => p.public_key().as_ref().to_vec(),
            Pair::Ec(p) => p.public_key().as_ref().to_vec(),
            Pair::Ed(p) => p.public_key().as_ref().to_vec(),
        }
    }

    /// `header.claims.signature` for these claims.
    pub fn sign<C: Serialize>(&self, claims: &C) -> Result<String, JwtError> {
        let header = serde_json::to_vec(&OutHeader {
            alg: self.alg.name(),
            // RFC 9068 §2.1: an OAuth 2.0 access token in JWT form.
            typ: "at+jwt",
            kid: &self.kid,
        })
        .map_err(|_| JwtError::SigningFailed)?;
        let body = serde_json::to_vec(claims).map_err(|_| JwtError::SigningFailed)?;
        let mut out = String::with_capacity(64 + body.len() * 2 + 350);
        B64.encode_string(&header, &mut out);
        out.push('.');
        B64.encode_string(&body, &mut out);
        let sig = match &self.pair {
            Pair::Rsa(p) => {
                let mut sig = vec![0u8; p.public_modulus_len()];
                p.sign(
                    &signature::RSA_PKCS1_SHA256,
                    &self.rng,
                    out.as_bytes(),
                    &mut sig,
                )
                .map_err(|_| JwtError::SigningFailed)?;
                sig
            }
            Pair::Ec(p) => p
                .sign(&self.rng, out.as_bytes())
                .map_err(|_| JwtError::SigningFailed)?
                .as_ref()
                .to_vec(),
            Pair::Ed(p) => p.sign(out.as_bytes()).as_ref().to_vec(),
        };
        out.push('.');
        B64.encode_string(&sig, &mut out);
        Ok(out)
    }
}

/// JWK integers are unsigned big-endian without leading zero octets (RFC 7518 §6.3.1).
fn strip_zeros(bytes: &[u8]) -> &[u8] {
    let first = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
    &bytes[first..]
}

/// One DER element: (tag, contents, rest).
fn der(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        (len, &rest[n..])
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

/// `RSAPublicKey ::= SEQUENCE { modulus INTEGER, publicExponent INTEGER }` (RFC 8017 A.1.1).
fn rsa_components(pkcs1: &[u8]) -> Option<(&[u8], &[u8])> {
    let (0x30, seq, _) = der(pkcs1)? else {
        return None;
    };
    let (0x02, n, rest) = der(seq)? else {
        return None;
    };
    let (0x02, e, _) = der(rest)? else {
        return None;
    };
    Some((n, e))
}

/// A public key, parsed once, for one `kid`.
pub struct VerifyingKey {
    pub kid: String,
    pub alg: Algorithm,
    key: ParsedPublicKey,
    jwk: serde_json::Value,
}

impl fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyingKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

impl VerifyingKey {
    /// From [`SigningKey::public_key_bytes`]: PKCS#1 for RSA, the SEC1
    /// uncompressed point for P-256, the raw 32 bytes for Ed25519.
    pub fn new(alg: Algorithm, kid: String, public: &[u8]) -> Result<Self, JwtError> {
        let (verify_alg, jwk): (&'static dyn signature::VerificationAlgorithm, _) = match alg {
            Algorithm::Rs256 => {
                let (n, e) =
                    rsa_components(public).ok_or(JwtError::BadKey("not an RSA public key"))?;
                let jwk = serde_json::json!({
                    "kty": "RSA",
                    "n": B64.encode(strip_zeros(n)),
                    "e": B64.encode(strip_zeros(e)),
                });
                (&signature::RSA_PKCS1_2048_8192_SHA256, jwk)
            }
            Algorithm::Es256 => {
                if public.len() != 65 || public[0] != 4 {
                    return Err(JwtError::BadKey("not an uncompressed P-256 point"));
                }
                let jwk = serde_json::json!({
                    "kty": "EC",
                    "crv": "P-256",
                    "x": B64.encode(&public[1..33]),
                    "y": B64.encode(&public[33..65]),
                });
                (&signature::ECDSA_P256_SHA256_FIXED, jwk)
            }
            Algorithm::EdDsa => {
                let jwk = serde_json::json!({
                    "kty": "OKP",
                    "crv": "Ed25519",
                    "x": B64.encode(public),
                });
                (&signature::ED25519, jwk)
            }
        };
        let key = ParsedPublicKey::new(verify_alg, public)
            .map_err(|_| JwtError::BadKey("public key rejected"))?;
        let mut jwk = jwk;
        if let Some(map) = jwk.as_object_mut() {
            map.insert("kid".into(), kid.clone().into());
            map.insert("alg".into(), alg.name().into());
            map.insert("use".into(), "sig".into());
        }
        Ok(Self { kid, alg, key, jwk })
    }

    /// This key as a JWK (RFC 7517), with `kid`, `alg` and `use`.
    pub fn jwk(&self) -> &serde_json::Value {
        &self.jwk
    }

    /// Checks the signature of a token split by [`split`].
    pub fn verify(&self, parts: &Parts<'_>) -> Result<(), JwtError> {
        let sig = B64
            .decode(parts.signature)
            .map_err(|_| JwtError::Malformed)?;
        self.key
            .verify_sig(parts.signed.as_bytes(), &sig)
            .map_err(|_| JwtError::BadSignature)
    }
}

/// A compact JWS, split but not yet trusted.
#[derive(Debug)]
pub struct Parts<'a> {
    pub header: Header,
    /// `header.claims`, the signed input.
    pub signed: &'a str,
    /// The decoded claims JSON (unverified until `verify` succeeds).
    pub claims: Vec<u8>,
    signature: &'a str,
}

/// Does this look like a JWT at all (three dot-separated base64url parts)?
pub fn looks_like_jwt(token: &str) -> bool {
    token.starts_with("eyJ") && token.bytes().filter(|&b| b == b'.').count() == 2
}

pub fn split(token: &str) -> Result<Parts<'_>, JwtError> {
    let (signed, signature) = token.rsplit_once('.').ok_or(JwtError::Malformed)?;
    let (header, claims) = signed.split_once('.').ok_or(JwtError::Malformed)?;
    let header = B64.decode(header).map_err(|_| JwtError::Malformed)?;
    let header: Header = serde_json::from_slice(&header).map_err(|_| JwtError::BadHeader)?;
    let claims = B64.decode(claims).map_err(|_| JwtError::Malformed)?;
    Ok(Parts {
        header,
        signed,
        claims,
        signature,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize, Deserialize, PartialEq, Debug)]
    struct Claims {
        sub: String,
        exp: i64,
    }

    #[test]
    fn every_algorithm_signs_and_verifies_and_refuses_tampering() {
        for alg in Algorithm::ALL {
            let (key, pkcs8) = SigningKey::generate(alg, format!("k-{alg}")).unwrap();
            let again = SigningKey::from_pkcs8(alg, key.kid.clone(), &pkcs8).unwrap();
            let verifier =
                VerifyingKey::new(alg, key.kid.clone(), &key.public_key_bytes()).unwrap();
            let claims = Claims {
                sub: "c1".into(),
                exp: 99,
            };
            let token = again.sign(&claims).unwrap();
            assert!(looks_like_jwt(&token), "{token}");
            let parts = split(&token).unwrap();
            assert_eq!(parts.header.alg, alg.name());
            assert_eq!(parts.header.kid.as_deref(), Some(key.kid.as_str()));
            verifier.verify(&parts).unwrap();
            let back: Claims = serde_json::from_slice(&parts.claims).unwrap();
            assert_eq!(back, claims);

            // Another payload under the same signature does not verify.
            let forged_claims = B64.encode(br#"{"sub":"admin","exp":99}"#);
            let mut pieces: Vec<&str> = token.split('.').collect();
            pieces[1] = &forged_claims;
            let forged = pieces.join(".");
            assert_eq!(
                verifier.verify(&split(&forged).unwrap()),
                Err(JwtError::BadSignature)
            );
            assert_eq!(verifier.jwk()["alg"], alg.name());
        }
    }

    #[test]
    fn malformed_tokens_are_named() {
        assert_eq!(split("abc").unwrap_err(), JwtError::Malformed);
        assert_eq!(split("a.b").unwrap_err(), JwtError::Malformed);
        let not_json = format!("{}.{}.x", B64.encode("nope"), B64.encode("{}"));
        assert_eq!(split(&not_json).unwrap_err(), JwtError::BadHeader);
    }
}
