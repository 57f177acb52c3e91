//! JSON Web Tokens (RFC 7519) as OAuth 2.0 access tokens (RFC 9068), through
//! the `jsonwebtoken` crate on its aws-lc backend: RS256 (RSA-2048, PKCS#1
//! v1.5), ES256 (P-256) and EdDSA (Ed25519). Encoding, decoding, signature
//! and claim validation (`iss`, `aud`, and the presence of `exp`, `iss`,
//! `aud`, `sub`) are the crate's; the JWKS is its `jwk` types.
//!
//! `alg` is never trusted to pick the algorithm: the key named by `kid`
//! decides it, and a token whose `alg` differs is refused before anything
//! is verified (each key's `Validation` allows its own algorithm only).
//! Time (`exp`, `nbf`, `iat`) is left to the caller, who owns the clock.
//!
//! Keys are parsed once. `jsonwebtoken`'s aws-lc backend re-parses the DER
//! private key on every `encode` (for RSA a key check, Montgomery set-up
//! and blinding each time; for P-256 a scalar multiplication to recover the
//! public point), which on the issuance path costs a good part of a
//! signature. So this module installs, as the process's `jsonwebtoken`
//! [`CryptoProvider`], the crate's own aws-lc provider with one change: a
//! signer for a key that [`SigningKey`] parsed uses that parsed key. Any
//! other key takes the crate's path unchanged.

use std::fmt;
use std::sync::{Arc, OnceLock, PoisonError, RwLock, Weak};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{KeyPair as RsaKeyPair, KeySize};
use aws_lc_rs::signature::{
    self, ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, ParsedPublicKey,
};
use jsonwebtoken::crypto::{CryptoProvider, JwtSigner, aws_lc};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{Jwk, PublicKeyUse};
use jsonwebtoken::{DecodingKey, EncodingKey, Header, Validation};
use serde::Serialize;
use serde::de::DeserializeOwned;
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

    /// The same algorithm as `jsonwebtoken` names it.
    pub fn jws(self) -> jsonwebtoken::Algorithm {
        match self {
            Algorithm::Rs256 => jsonwebtoken::Algorithm::RS256,
            Algorithm::Es256 => jsonwebtoken::Algorithm::ES256,
            Algorithm::EdDsa => jsonwebtoken::Algorithm::EdDSA,
        }
    }

    pub const ALL: [Algorithm; 3] = [Algorithm::Rs256, Algorithm::Es256, Algorithm::EdDsa];
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// RFC 9068 §2.1: the `typ` of an OAuth 2.0 access token in JWT form.
pub const ACCESS_TOKEN_TYP: &str = "at+jwt";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    #[error("the token is not three base64url parts")]
    Malformed,
    #[error("the token header is not valid JSON")]
    BadHeader,
    #[error("the token is unsigned (alg `none`)")]
    Unsigned,
    #[error("the token names an algorithm this server does not use")]
    UnknownAlgorithm,
    #[error("the signature does not verify")]
    BadSignature,
    #[error("the token lacks the `{0}` claim")]
    MissingClaim(String),
    #[error("the token was issued by another issuer")]
    WrongIssuer,
    #[error("the token was issued for another audience")]
    WrongAudience,
    #[error("the token's claims are not the ones this server issues")]
    BadClaims,
    #[error("key material rejected: {0}")]
    BadKey(&'static str),
    #[error("signing failed")]
    SigningFailed,
}

/// What the caller of [`VerifyingKey::decode`] requires of every token.
#[derive(Debug, Clone)]
pub struct Expected {
    pub issuer: String,
    pub audience: String,
}

// ---------------------------------------------------------------- provider

/// A private key parsed once, for every signature it will make.
enum Pair {
    Rsa(RsaKeyPair),
    Ec(EcdsaKeyPair),
    Ed(Ed25519KeyPair),
}

impl Pair {
    fn sign(&self, rng: &SystemRandom, msg: &[u8]) -> Result<Vec<u8>, ()> {
        match self {
            Pair::Rsa(p) => {
                let mut sig = vec![0u8; p.public_modulus_len()];
                p.sign(&signature::RSA_PKCS1_SHA256, rng, msg, &mut sig)
                    .map_err(|_| ())?;
                Ok(sig)
            }
            Pair::Ec(p) => Ok(p.sign(rng, msg).map_err(|_| ())?.as_ref().to_vec()),
            Pair::Ed(p) => Ok(p.sign(msg).as_ref().to_vec()),
        }
    }
}

/// The keys [`SigningKey`] parsed, by the SHA-256 of the DER its
/// `EncodingKey` holds. Weak: an entry dies with its key.
type Parsed = Vec<([u8; 32], jsonwebtoken::Algorithm, Weak<Pair>)>;
static PARSED: RwLock<Parsed> = RwLock::new(Vec::new());

fn remember(der: &[u8], alg: jsonwebtoken::Algorithm, pair: &Arc<Pair>) {
    let mut parsed = PARSED.write().unwrap_or_else(PoisonError::into_inner);
    parsed.retain(|(_, _, p)| p.strong_count() > 0);
    parsed.push((super::sha256(der), alg, Arc::downgrade(pair)));
}

fn parsed_for(der: &[u8], alg: jsonwebtoken::Algorithm) -> Option<Arc<Pair>> {
    let digest = super::sha256(der);
    PARSED
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
        .find(|(d, a, _)| *d == digest && *a == alg)
        .and_then(|(_, _, p)| p.upgrade())
}

struct ParsedSigner {
    pair: Arc<Pair>,
    alg: jsonwebtoken::Algorithm,
    rng: SystemRandom,
}

impl jsonwebtoken::signature::Signer<Vec<u8>> for ParsedSigner {
    fn try_sign(&self, msg: &[u8]) -> Result<Vec<u8>, jsonwebtoken::signature::Error> {
        self.pair
            .sign(&self.rng, msg)
            .map_err(|()| jsonwebtoken::signature::Error::new())
    }
}

impl JwtSigner for ParsedSigner {
    fn algorithm(&self) -> jsonwebtoken::Algorithm {
        self.alg
    }
}

fn signer(
    alg: &jsonwebtoken::Algorithm,
    key: &EncodingKey,
) -> jsonwebtoken::errors::Result<Box<dyn JwtSigner>> {
    match parsed_for(key.as_bytes(), *alg) {
        Some(pair) => Ok(Box::new(ParsedSigner {
            pair,
            alg: *alg,
            rng: SystemRandom::new(),
        })),
        None => (aws_lc::DEFAULT_PROVIDER.signer_factory)(alg, key),
    }
}

/// Installs the provider once per process. If another one was installed
/// first, that one is used: every key here is also a valid `EncodingKey`
/// for the crate's own path, only slower.
fn install_provider() {
    static PROVIDER: OnceLock<CryptoProvider> = OnceLock::new();
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        let provider = PROVIDER.get_or_init(|| CryptoProvider {
            signer_factory: signer,
            verifier_factory: aws_lc::DEFAULT_PROVIDER.verifier_factory,
            key_utils: aws_lc::DEFAULT_PROVIDER.key_utils.clone(),
        });
        if provider.install_default().is_err() {
            tracing::warn!(
                "another jsonwebtoken crypto provider is installed; signing re-parses keys"
            );
        }
    });
}

// ---------------------------------------------------------------- signing

/// A private signing key, parsed once. Never printed.
pub struct SigningKey {
    pub kid: String,
    pub alg: Algorithm,
    header: Header,
    encoding: EncodingKey,
    /// Keeps this key's entry in the provider's table alive.
    _pair: Arc<Pair>,
    public: Vec<u8>,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
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

/// The `RSAPrivateKey` (PKCS#1, what `EncodingKey::from_rsa_der` takes)
/// inside a `PrivateKeyInfo` (PKCS#8, RFC 5208 §5: version, algorithm,
/// then the key as an OCTET STRING).
fn pkcs1_in_pkcs8(pkcs8: &[u8]) -> Option<&[u8]> {
    let (0x30, info, _) = der(pkcs8)? else {
        return None;
    };
    let (0x02, _, rest) = der(info)? else {
        return None;
    };
    let (0x30, _, rest) = der(rest)? else {
        return None;
    };
    let (0x04, key, _) = der(rest)? else {
        return None;
    };
    Some(key)
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
        use aws_lc_rs::signature::KeyPair;
        install_provider();
        let (pair, encoding, public) = match alg {
            Algorithm::Rs256 => {
                let pair =
                    RsaKeyPair::from_pkcs8(der).map_err(|_| JwtError::BadKey("not an RSA key"))?;
                let pkcs1 = pkcs1_in_pkcs8(der).ok_or(JwtError::BadKey("not an RSA key"))?;
                let public = pair.public_key().as_ref().to_vec();
                (Pair::Rsa(pair), EncodingKey::from_rsa_der(pkcs1), public)
            }
            Algorithm::Es256 => {
                let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der)
                    .map_err(|_| JwtError::BadKey("not a P-256 key"))?;
                let public = pair.public_key().as_ref().to_vec();
                (Pair::Ec(pair), EncodingKey::from_ec_der(der), public)
            }
            Algorithm::EdDsa => {
                let pair = Ed25519KeyPair::from_pkcs8(der)
                    .map_err(|_| JwtError::BadKey("not an Ed25519 key"))?;
                let public = pair.public_key().as_ref().to_vec();
                (Pair::Ed(pair), EncodingKey::from_ed_der(der), public)
            }
        };
        let pair = Arc::new(pair);
        remember(encoding.as_bytes(), alg.jws(), &pair);
        let mut header = Header::new(alg.jws());
        header.typ = Some(ACCESS_TOKEN_TYP.to_owned());
        header.kid = Some(kid.clone());
        Ok(Self {
            kid,
            alg,
            header,
            encoding,
            _pair: pair,
            public,
        })
    }

    /// The public key in the form [`VerifyingKey::new`] takes.
    pub fn public_key_bytes(&self) -> Vec<u8> {
        self.public.clone()
    }

    /// `header.claims.signature` for these claims, `typ` `at+jwt`.
    pub fn sign<C: Serialize>(&self, claims: &C) -> Result<String, JwtError> {
        jsonwebtoken::encode(&self.header, claims, &self.encoding)
            .map_err(|_| JwtError::SigningFailed)
    }
}

// ---------------------------------------------------------------- verifying

/// A public key for one `kid`, with the validation every token it signed
/// must pass, built once.
pub struct VerifyingKey {
    pub kid: String,
    pub alg: Algorithm,
    decoding: DecodingKey,
    validation: Validation,
    jwk: Jwk,
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
    pub fn new(
        alg: Algorithm,
        kid: String,
        public: &[u8],
        expected: &Expected,
    ) -> Result<Self, JwtError> {
        install_provider();
        let (check, decoding): (&'static dyn signature::VerificationAlgorithm, _) = match alg {
            Algorithm::Rs256 => (
                &signature::RSA_PKCS1_2048_8192_SHA256,
                DecodingKey::from_rsa_der(public),
            ),
            Algorithm::Es256 => (
                &signature::ECDSA_P256_SHA256_FIXED,
                DecodingKey::from_ec_der(public),
            ),
            Algorithm::EdDsa => (&signature::ED25519, DecodingKey::from_ed_der(public)),
        };
        // Refuse a bad key when it is loaded, not at its first token.
        ParsedPublicKey::new(check, public).map_err(|_| JwtError::BadKey("public key rejected"))?;
        let mut jwk = Jwk::from_decoding_key(&decoding, Some(alg.jws()))
            .map_err(|_| JwtError::BadKey("public key rejected"))?;
        jwk.common.key_id = Some(kid.clone());
        jwk.common.public_key_use = Some(PublicKeyUse::Signature);
        let mut validation = Validation::new(alg.jws());
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.set_issuer(&[&expected.issuer]);
        validation.set_audience(&[&expected.audience]);
        // Time is the caller's, on its own clock.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        Ok(Self {
            kid,
            alg,
            decoding,
            validation,
            jwk,
        })
    }

    /// This key as a JWK (RFC 7517), with `kid`, `alg` and `use`.
    pub fn jwk(&self) -> &Jwk {
        &self.jwk
    }

    /// Verifies the signature (with this key's algorithm only), then `iss`,
    /// `aud` and the presence of `exp`, `iss`, `aud`, `sub`, and decodes the
    /// claims. The caller has read the header with [`header`] and matched
    /// its `kid` and `alg` to this key.
    pub fn decode<C: DeserializeOwned>(&self, token: &str) -> Result<(Header, C), JwtError> {
        match jsonwebtoken::decode::<C>(token, &self.decoding, &self.validation) {
            Ok(data) => Ok((data.header, data.claims)),
            Err(e) => Err(match e.into_kind() {
                ErrorKind::InvalidSignature => JwtError::BadSignature,
                ErrorKind::InvalidAlgorithm => JwtError::UnknownAlgorithm,
                ErrorKind::MissingRequiredClaim(c) | ErrorKind::InvalidClaimFormat(c) => {
                    JwtError::MissingClaim(c)
                }
                ErrorKind::InvalidIssuer => JwtError::WrongIssuer,
                ErrorKind::InvalidAudience => JwtError::WrongAudience,
                // Only the claims are left to fail after the signature held.
                ErrorKind::Json(_) | ErrorKind::Utf8(_) => JwtError::BadClaims,
                _ => JwtError::Malformed,
            }),
        }
    }
}

/// A JWKS document (RFC 7517 §5) of these keys.
pub fn jwks<'a>(keys: impl IntoIterator<Item = &'a VerifyingKey>) -> String {
    let set = jsonwebtoken::jwk::JwkSet {
        keys: keys.into_iter().map(|k| k.jwk.clone()).collect(),
    };
    serde_json::to_string(&set).unwrap_or_else(|_| r#"{"keys":[]}"#.to_owned())
}

/// Does this look like a JWT at all (three dot-separated base64url parts)?
pub fn looks_like_jwt(token: &str) -> bool {
    token.starts_with("eyJ") && token.bytes().filter(|&b| b == b'.').count() == 2
}

/// The token's header, unverified. An `alg` the crate does not know is
/// told apart from a broken header, and `none` from both.
pub fn header(token: &str) -> Result<Header, JwtError> {
    if token.bytes().filter(|&b| b == b'.').count() != 2 {
        return Err(JwtError::Malformed);
    }
    jsonwebtoken::decode_header(token).map_err(|_| classify_header(token))
}

/// Why a header did not parse: its `alg` alone, read leniently.
fn classify_header(token: &str) -> JwtError {
    use base64::Engine;
    #[derive(serde::Deserialize)]
    struct AlgOnly {
        alg: String,
    }
    let Some(first) = token.split('.').next() else {
        return JwtError::Malformed;
    };
    let Ok(json) = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(first) else {
        return JwtError::Malformed;
    };
    match serde_json::from_slice::<AlgOnly>(&json) {
        Err(_) => JwtError::BadHeader,
        Ok(h) if h.alg.eq_ignore_ascii_case("none") => JwtError::Unsigned,
        Ok(h) if h.alg.parse::<jsonwebtoken::Algorithm>().is_err() => JwtError::UnknownAlgorithm,
        Ok(_) => JwtError::BadHeader,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
    use serde::Deserialize;

    #[derive(Serialize, Deserialize, PartialEq, Debug)]
    struct Claims {
        iss: String,
        aud: String,
        sub: String,
        exp: i64,
    }

    fn expected() -> Expected {
        Expected {
            issuer: "https://issuer.example".into(),
            audience: "latchkey".into(),
        }
    }

    fn claims() -> Claims {
        Claims {
            iss: "https://issuer.example".into(),
            aud: "latchkey".into(),
            sub: "c1".into(),
            exp: 99,
        }
    }

    #[test]
    fn every_algorithm_signs_and_verifies_and_refuses_tampering() {
        for alg in Algorithm::ALL {
            let (key, pkcs8) = SigningKey::generate(alg, format!("k-{alg}")).unwrap();
            let again = SigningKey::from_pkcs8(alg, key.kid.clone(), &pkcs8).unwrap();
            let verifier =
                VerifyingKey::new(alg, key.kid.clone(), &key.public_key_bytes(), &expected())
                    .unwrap();
            let token = again.sign(&claims()).unwrap();
            assert!(looks_like_jwt(&token), "{token}");
            let header = header(&token).unwrap();
            assert_eq!(header.alg, alg.jws());
            assert_eq!(header.kid.as_deref(), Some(key.kid.as_str()));
            assert_eq!(header.typ.as_deref(), Some(ACCESS_TOKEN_TYP));
            let (_, back): (_, Claims) = verifier.decode(&token).unwrap();
            assert_eq!(back, claims());

            // Another payload under the same signature does not verify.
            let forged_claims = B64.encode(
                br#"{"iss":"https://issuer.example","aud":"latchkey","sub":"admin","exp":99}"#,
            );
            let mut pieces: Vec<&str> = token.split('.').collect();
            pieces[1] = &forged_claims;
            let forged = pieces.join(".");
            assert_eq!(
                verifier.decode::<Claims>(&forged).unwrap_err(),
                JwtError::BadSignature
            );
            assert_eq!(
                serde_json::to_value(verifier.jwk()).unwrap()["alg"],
                alg.name()
            );
        }
    }

    /// The crate's own path (what signing falls back to if another provider
    /// is installed) verifies what the pre-parsed key signed, and the other
    /// way round: both are the same key.
    #[test]
    fn the_parsed_key_and_the_crates_path_agree() {
        for alg in Algorithm::ALL {
            let (key, _) = SigningKey::generate(alg, "k".into()).unwrap();
            let verifier =
                VerifyingKey::new(alg, "k".into(), &key.public_key_bytes(), &expected()).unwrap();
            let signer =
                (aws_lc::DEFAULT_PROVIDER.signer_factory)(&alg.jws(), &key.encoding).unwrap();
            let signed = format!(
                "{}.{}",
                B64.encode(serde_json::to_vec(&key.header).unwrap()),
                B64.encode(serde_json::to_vec(&claims()).unwrap())
            );
            let sig =
                jsonwebtoken::signature::Signer::try_sign(&*signer, signed.as_bytes()).unwrap();
            let token = format!("{signed}.{}", B64.encode(sig));
            verifier.decode::<Claims>(&token).unwrap();
        }
    }

    #[test]
    fn claims_are_required_and_checked() {
        let (key, _) = SigningKey::generate(Algorithm::EdDsa, "k".into()).unwrap();
        let verifier = VerifyingKey::new(
            Algorithm::EdDsa,
            "k".into(),
            &key.public_key_bytes(),
            &expected(),
        )
        .unwrap();
        let full = serde_json::to_value(claims()).unwrap();
        for missing in ["exp", "iss", "aud", "sub"] {
            let mut c = full.clone();
            c.as_object_mut().unwrap().remove(missing);
            let token = key.sign(&c).unwrap();
            assert_eq!(
                verifier.decode::<serde_json::Value>(&token).unwrap_err(),
                JwtError::MissingClaim(missing.into()),
                "{missing}"
            );
        }
        let mut c = full.clone();
        c["iss"] = "https://other.example".into();
        assert_eq!(
            verifier
                .decode::<serde_json::Value>(&key.sign(&c).unwrap())
                .unwrap_err(),
            JwtError::WrongIssuer
        );
        let mut c = full.clone();
        c["aud"] = serde_json::json!(["billing"]);
        assert_eq!(
            verifier
                .decode::<serde_json::Value>(&key.sign(&c).unwrap())
                .unwrap_err(),
            JwtError::WrongAudience
        );
        let mut c = full;
        c["exp"] = "soon".into();
        assert!(matches!(
            verifier.decode::<Claims>(&key.sign(&c).unwrap()),
            Err(JwtError::MissingClaim(_) | JwtError::BadClaims)
        ));
    }

    #[test]
    fn malformed_and_unsigned_headers_are_named() {
        assert_eq!(header("abc").unwrap_err(), JwtError::Malformed);
        assert_eq!(header("a.b").unwrap_err(), JwtError::Malformed);
        let with = |h: &str| format!("{}.{}.x", B64.encode(h), B64.encode("{}"));
        assert_eq!(header(&with("nope")).unwrap_err(), JwtError::BadHeader);
        assert_eq!(
            header(&with(r#"{"alg":"none"}"#)).unwrap_err(),
            JwtError::Unsigned
        );
        assert_eq!(
            header(&with(r#"{"alg":"NoNe"}"#)).unwrap_err(),
            JwtError::Unsigned
        );
        assert_eq!(
            header(&with(r#"{"alg":"XS999"}"#)).unwrap_err(),
            JwtError::UnknownAlgorithm
        );
        assert_eq!(
            header(&with(r#"{"alg":"RS256","kid":7}"#)).unwrap_err(),
            JwtError::BadHeader
        );
        assert!(header(&with(r#"{"alg":"HS256"}"#)).is_ok());
    }

    #[test]
    fn pkcs1_is_found_inside_pkcs8() {
        let (_, pkcs8) = SigningKey::generate(Algorithm::Rs256, "k".into()).unwrap();
        let pkcs1 = pkcs1_in_pkcs8(&pkcs8).unwrap();
        RsaKeyPair::from_der(pkcs1).unwrap();
        assert!(pkcs1_in_pkcs8(b"\x30\x03\x02\x01\x00").is_none());
        assert!(pkcs1_in_pkcs8(&[]).is_none());
    }
}
