//! Registered OAuth2 clients (RFC 6749 §2): registration with its redirect
//! URIs (§3.1.2, RFC 8252 §7.3), look-up, deletion, and client
//! authentication by secret (§2.3.1).

use std::sync::Arc;

use super::OAuthError;
use super::{CLIENT_ID_PREFIX, TokenManager, random_token, split_scopes};
use crate::crypto::secret::Secret;
use crate::crypto::{self, ct_eq};
use crate::domain::accounts::validate_name;
use crate::domain::audit::{self, Change};
use crate::domain::cache::CacheUse;
use crate::domain::error::{Error, Result};
use crate::domain::model::{ClientRecord, GRANT_TYPES, LiveStatus, Mode, new_id, valid_id};
use crate::domain::permissions::Scope;
use crate::ports::StoreError;

const MAX_REDIRECT_URIS: usize = 20;
const MAX_SCOPES: usize = 100;

fn parse_scopes(field: &'static str, scopes: &[String]) -> Result<Vec<String>> {
    if scopes.len() > MAX_SCOPES {
        return Err(Error::invalid(
            field,
            format!("at most {MAX_SCOPES} scopes are allowed"),
        ));
    }
    for s in scopes {
        Scope::parse(s).map_err(|e| Error::invalid(field, format!("scope {e}")))?;
    }
    Ok(scopes.to_vec())
}

/// A redirect URI we accept: absolute, no fragment (RFC 6749 §3.1.2), no
/// userinfo (`http://localhost:80@evil.com/cb` is a URI for `evil.com`),
/// https unless it is a native app's loopback redirect, `http://127.0.0.1`
/// or `http://[::1]` (RFC 8252 §7.3), or `http://localhost`.
pub(super) fn check_redirect_uri(uri: &str) -> std::result::Result<(), String> {
    if uri.len() > 2000 || uri.chars().any(|c| c.is_control() || c == ' ') {
        return Err(format!("`{uri}` is not a valid URI"));
    }
    if uri.contains('#') {
        return Err(format!("`{uri}` must not contain a fragment"));
    }
    let parsed = url::Url::parse(uri).map_err(|_| format!("`{uri}` is not an absolute URI"))?;
    // `@` anywhere in the authority (even an empty userinfo, `http://@x`)
    // is refused: what a reader takes for the host is not the host.
    let authority = uri
        .split_once("://")
        .map_or("", |(_, rest)| rest.split(['/', '?']).next().unwrap_or(""));
    if authority.contains('@') || !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(format!(
            "`{uri}` must not contain userinfo (`user@`): the host is what follows the `@`"
        ));
    }
    let https = parsed.scheme() == "https" && parsed.host_str().is_some_and(|h| !h.is_empty());
    let loopback = parsed.scheme() == "http"
        && (is_loopback_literal(&parsed) || parsed.host_str() == Some("localhost"));
    if https || loopback {
        return Ok(());
    }
    Err(format!(
        "`{uri}` must be an https URL (plain http only for 127.0.0.1, [::1] or localhost)"
    ))
}

/// `http://127.0.0.1…` or `http://[::1]…`: a native app's loopback redirect.
fn is_loopback_literal(u: &url::Url) -> bool {
    u.scheme() == "http"
        && match u.host() {
            Some(url::Host::Ipv4(ip)) => ip == std::net::Ipv4Addr::LOCALHOST,
            Some(url::Host::Ipv6(ip)) => ip == std::net::Ipv6Addr::LOCALHOST,
            _ => false,
        }
}

/// Does the redirect URI an authorization request names match `registered`?
/// Exactly, string for string (RFC 6749 §3.1.2.3) — except that for a
/// loopback IP literal the port may be any (RFC 8252 §7.3: a native app
/// listens on whatever port the OS gives it), scheme, host, path and query
/// staying exact.
pub(super) fn redirect_matches(registered: &str, requested: &str) -> bool {
    if registered == requested {
        return true;
    }
    let (Ok(reg), Ok(req)) = (url::Url::parse(registered), url::Url::parse(requested)) else {
        return false;
    };
    is_loopback_literal(&reg)
        && check_redirect_uri(requested).is_ok()
        && reg.scheme() == req.scheme()
        && reg.host() == req.host()
        && reg.path() == req.path()
        && reg.query() == req.query()
        // The original's spelling after the port, so that a parser's
        // normalisation (`/a/../b`) cannot make two different strings equal.
        && after_port(registered) == after_port(requested)
}

/// The URI from its path on, as written.
fn after_port(uri: &str) -> &str {
    let rest = uri.split_once("://").map_or(uri, |(_, r)| r);
    rest.find(['/', '?']).map_or("", |i| &rest[i..])
}

/// A verified client, cached by the SHA-256 of its id.
pub(super) struct ClientEntry {
    client: ClientRecord,
    epoch: u64,
}

impl TokenManager {
    /// Registers a client in one write, with the signing secret of its
    /// consent links (`signing_secret_id`, checked by the caller with
    /// `SigningManager::for_client`) already on the record and in the
    /// `client.created` event: no failure leaves a client without its link.
    #[allow(clippy::too_many_arguments)]
    pub async fn create_client(
        &self,
        account_id: &str,
        mode: Mode,
        name: &str,
        redirect_uris: &[String],
        grant_types: &[String],
        scopes: &[String],
        signing_secret_id: Option<String>,
    ) -> Result<(ClientRecord, Secret<String>)> {
        let name = validate_name("name", name)?;
        let account = match self.store.get_account(account_id).await? {
            Some(a) if !a.is_operator => a,
            _ => return Err(Error::not_found("account", account_id)),
        };
        if mode == Mode::Live && account.live_status != LiveStatus::Active {
            return Err(Error::FailedPrecondition(format!(
                "live clients need live mode to be active for the account; it is `{}`",
                account.live_status
            )));
        }
        if grant_types.is_empty() {
            return Err(Error::invalid(
                "grant_types",
                format!("name at least one of {}", GRANT_TYPES.join(", ")),
            ));
        }
        for g in grant_types {
            if !GRANT_TYPES.contains(&g.as_str()) {
                return Err(Error::invalid(
                    "grant_types",
                    format!("`{g}` is not one of {}", GRANT_TYPES.join(", ")),
                ));
            }
        }
        if redirect_uris.len() > MAX_REDIRECT_URIS {
            return Err(Error::invalid(
                "redirect_uris",
                format!("at most {MAX_REDIRECT_URIS} are allowed"),
            ));
        }
        for uri in redirect_uris {
            check_redirect_uri(uri).map_err(|m| Error::invalid("redirect_uris", m))?;
        }
        if grant_types.iter().any(|g| g == "authorization_code") && redirect_uris.is_empty() {
            return Err(Error::invalid(
                "redirect_uris",
                "the authorization_code grant needs at least one redirect URI",
            ));
        }
        let scopes = parse_scopes("scopes", &split_scopes(scopes))?;
        if scopes.is_empty() {
            return Err(Error::invalid("scopes", "name at least one scope"));
        }
        let mut grants = grant_types.to_vec();
        grants.sort();
        grants.dedup();
        let secret = Secret::new(format!("lkcs_{}", random_token(32)?));
        let client = ClientRecord {
            client_id: new_id(CLIENT_ID_PREFIX),
            account_id: account.id,
            mode,
            name,
            secret_hash: crypto::sha256(secret.expose().as_bytes()),
            redirect_uris: redirect_uris.to_vec(),
            grant_types: grants,
            scopes,
            created_at: self.clock.now(),
            signing_secret_id,
        };
        audit::record(
            client.created_at,
            Change::new("client.created", "client", &client.client_id)
                .account(&client.account_id)
                .mode(client.mode.tag())
                .summary(serde_json::json!({
                    "name": client.name,
                    "redirect_uris": client.redirect_uris,
                    "grant_types": client.grant_types,
                    "scopes": client.scopes,
                    "signing_secret_id": client.signing_secret_id,
                })),
        );
        self.tokens.insert_client(&client).await?;
        Ok((client, secret))
    }

    pub async fn get_client(&self, client_id: &str) -> Result<ClientRecord> {
        if !valid_id(client_id, CLIENT_ID_PREFIX) {
            return Err(Error::invalid("client_id", "is not a client id"));
        }
        self.tokens
            .get_client(client_id)
            .await?
            .ok_or_else(|| Error::not_found("client", client_id))
    }

    pub async fn list_clients(
        &self,
        account_id: Option<&str>,
        after: Option<&str>,
        limit: u64,
    ) -> Result<Vec<ClientRecord>> {
        Ok(self.tokens.list_clients(account_id, after, limit).await?)
    }

    pub async fn delete_client(&self, client_id: &str) -> Result<()> {
        if !valid_id(client_id, CLIENT_ID_PREFIX) {
            return Err(Error::invalid("client_id", "is not a client id"));
        }
        audit::record(
            self.clock.now(),
            Change::new("client.deleted", "client", client_id),
        );
        if !self
            .tokens
            .delete_client(client_id, self.clock.now())
            .await?
        {
            return Err(Error::not_found("client", client_id));
        }
        // Cached tokens of this client are re-checked (and now refused).
        self.resolver.invalidate_all();
        Ok(())
    }

    /// The client, if the secret is its own. Client secrets are 256 random
    /// bits, so a SHA-256 compare in constant time is the right check.
    pub async fn authenticate_client(
        &self,
        client_id: &str,
        secret: &str,
    ) -> std::result::Result<ClientRecord, OAuthError> {
        let unknown = || OAuthError::InvalidClient("client authentication failed".into());
        if !valid_id(client_id, CLIENT_ID_PREFIX) {
            return Err(unknown());
        }
        let client = self
            .client(client_id, CacheUse::Fill)
            .await?
            .ok_or_else(unknown)?;
        if !ct_eq(&crypto::sha256(secret.as_bytes()), &client.secret_hash) {
            return Err(unknown());
        }
        Ok(client)
    }

    /// A client by id, cached until the next invalidation (a deleted client
    /// invalidates everything, on every replica).
    pub(super) async fn client(
        &self,
        client_id: &str,
        cache: CacheUse,
    ) -> std::result::Result<Option<ClientRecord>, StoreError> {
        let epoch = self.resolver.epoch();
        let slot = crypto::sha256(client_id.as_bytes());
        if cache != CacheUse::Bypass
            && let Some(hit) = self.clients.get(&slot)
            && hit.epoch == epoch
        {
            return Ok(Some(hit.client.clone()));
        }
        let Some(client) = self.tokens.get_client(client_id).await? else {
            return Ok(None);
        };
        if cache != CacheUse::Fill {
            return Ok(Some(client));
        }
        self.clients.insert(
            slot,
            Arc::new(ClientEntry {
                client: client.clone(),
                epoch,
            }),
        );
        Ok(Some(client))
    }
}
