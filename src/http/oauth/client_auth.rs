//! Client authentication at the token, introspection and revocation
//! endpoints: HTTP Basic (RFC 6749 §2.3.1) or `client_secret` in the body,
//! never both.

use std::collections::HashMap;

use axum::http::{HeaderMap, header};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use zeroize::Zeroizing;

use crate::domain::model::ClientRecord;
use crate::domain::tokens::{OAuthError, TokenManager};

/// Client credentials from `Authorization: Basic` (RFC 6749 §2.3.1: each
/// half form-urlencoded, then base64) or from the body; never both.
pub(super) enum ClientAuth {
    None,
    Basic(String, Zeroizing<String>),
    Post(String, Zeroizing<String>),
}

fn form_decode(s: &str) -> String {
    form_urlencoded::parse(format!("x={s}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

pub(super) fn client_auth(
    headers: &HeaderMap,
    p: &mut HashMap<String, String>,
) -> Result<ClientAuth, OAuthError> {
    let basic = match headers.get(header::AUTHORIZATION) {
        Some(value) => {
            let text = value.to_str().unwrap_or_default();
            let Some(encoded) = text
                .get(..6)
                .filter(|s| s.eq_ignore_ascii_case("basic "))
                .map(|_| text[6..].trim())
            else {
                return Err(OAuthError::InvalidClient(
                    "only HTTP Basic client authentication is accepted in the Authorization header"
                        .into(),
                ));
            };
            let decoded = Zeroizing::new(
                STANDARD
                    .decode(encoded)
                    .ok()
                    .and_then(|b| String::from_utf8(b).ok())
                    .ok_or_else(|| {
                        OAuthError::InvalidClient(
                            "the Basic credentials are not valid base64".into(),
                        )
                    })?,
            );
            let (id, secret) = decoded.split_once(':').ok_or_else(|| {
                OAuthError::InvalidClient("the Basic credentials have no `:`".into())
            })?;
            Some((form_decode(id), Zeroizing::new(form_decode(secret))))
        }
        None => None,
    };
    let posted_secret = p.remove("client_secret").map(Zeroizing::new);
    match (basic, posted_secret) {
        (Some(_), Some(_)) => Err(OAuthError::InvalidRequest(
            "use one client authentication method, not Basic and client_secret together".into(),
        )),
        (Some((id, secret)), None) => {
            if p.get("client_id").is_some_and(|c| *c != id) {
                return Err(OAuthError::InvalidRequest(
                    "client_id differs from the authenticated client".into(),
                ));
            }
            Ok(ClientAuth::Basic(id, secret))
        }
        (None, Some(secret)) => {
            let id = p.get("client_id").cloned().unwrap_or_default();
            Ok(ClientAuth::Post(id, secret))
        }
        (None, None) => Ok(ClientAuth::None),
    }
}

impl ClientAuth {
    pub(super) fn is_basic(&self) -> bool {
        matches!(self, ClientAuth::Basic(..))
    }

    pub(super) async fn client(
        &self,
        tokens: &TokenManager,
    ) -> Result<Option<ClientRecord>, OAuthError> {
        match self {
            ClientAuth::None => Ok(None),
            ClientAuth::Basic(id, secret) | ClientAuth::Post(id, secret) => {
                tokens.authenticate_client(id, secret).await.map(Some)
            }
        }
    }
}

pub(super) fn required(client: Option<ClientRecord>) -> Result<ClientRecord, OAuthError> {
    client.ok_or_else(|| OAuthError::InvalidClient("client authentication is required".into()))
}
