//! The hosted consent flow's own state: flow configurations (the seed's
//! `flow_config`, named branding per account, shown on the consent page),
//! the signed consent links already decided on (a link consents once), and
//! the signing secret a client signs its consent links with.
//!
//! The signature check itself is `SigningManager::verify_url` (the seed's
//! canonical form, and whatever form the secret asks for); this module only
//! keeps what the consent page needs beside it.

use std::sync::Arc;

use crate::domain::audit::{self, Change};
use crate::domain::error::{Error, Result};
pub use crate::domain::model::FlowConfigRecord;
use crate::domain::model::{ClientRecord, Millis, new_id, valid_id};
use crate::ports::{Clock, ConsentStore, Store, StoreError};

pub const FLOW_CONFIG_ID_PREFIX: &str = "fc";
pub const LANGUAGES: [&str; 2] = ["en", "de"];
const MAX_NAME_LEN: usize = 64;
const MAX_DISPLAY_NAME_CHARS: usize = 100;
const MAX_URL_LEN: usize = 2048;

/// The fields of a flow configuration as a caller sends them: `None` keeps
/// (on update) or leaves empty (on create); `Some("")` clears an optional one.
#[derive(Debug, Clone, Default)]
pub struct FlowConfigFields {
    pub display_name: Option<String>,
    pub logo_url: Option<String>,
    pub primary_color: Option<String>,
    pub support_url: Option<String>,
    pub default_language: Option<String>,
}

pub fn valid_flow_config_id(id: &str) -> bool {
    valid_id(id, FLOW_CONFIG_ID_PREFIX)
}

/// `[A-Za-z0-9_-]{1,64}`: what may stand in a link unencoded.
pub fn check_name(name: &str) -> Result<String> {
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return Err(Error::invalid(
            "name",
            format!("must be 1 to {MAX_NAME_LEN} characters"),
        ));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(Error::invalid(
            "name",
            "may hold only letters, digits, `-` and `_`",
        ));
    }
    Ok(name.to_owned())
}

fn check_display_name(s: &str) -> Result<String> {
    let s = s.trim();
    if s.is_empty() || s.chars().count() > MAX_DISPLAY_NAME_CHARS {
        return Err(Error::invalid(
            "display_name",
            format!("must be 1 to {MAX_DISPLAY_NAME_CHARS} characters"),
        ));
    }
    if s.chars().any(char::is_control) {
        return Err(Error::invalid(
            "display_name",
            "must not hold control characters",
        ));
    }
    Ok(s.to_owned())
}

/// An https URL whose host CSP can name (a DNS name or IPv4), without
/// credentials; `""` = none.
fn check_https(field: &'static str, s: &str) -> Result<Option<String>> {
    if s.is_empty() {
        return Ok(None);
    }
    if s.len() > MAX_URL_LEN {
        return Err(Error::invalid(
            field,
            format!("must be at most {MAX_URL_LEN} bytes"),
        ));
    }
    let url =
        url::Url::parse(s).map_err(|e| Error::invalid(field, format!("is not a URL: {e}")))?;
    if url.scheme() != "https" {
        return Err(Error::invalid(field, "must be an https URL"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(Error::invalid(field, "must not carry credentials"));
    }
    match url.host() {
        Some(url::Host::Domain(d))
            if d.split('.').all(|l| {
                !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            }) => {}
        Some(url::Host::Ipv4(_)) => {}
        _ => {
            return Err(Error::invalid(
                field,
                "needs a DNS name or IPv4 address as its host",
            ));
        }
    }
    Ok(Some(url.to_string()))
}

fn check_color(s: &str) -> Result<Option<String>> {
    if s.is_empty() {
        return Ok(None);
    }
    let ok = s
        .strip_prefix('#')
        .is_some_and(|h| h.len() == 6 && h.bytes().all(|b| b.is_ascii_hexdigit()));
    if !ok {
        return Err(Error::invalid(
            "primary_color",
            "must be a colour as #rrggbb",
        ));
    }
    Ok(Some(s.to_ascii_lowercase()))
}

fn check_language(s: &str) -> Result<String> {
    if s.is_empty() {
        return Ok("en".into());
    }
    let lower = s.to_ascii_lowercase();
    if LANGUAGES.contains(&lower.as_str()) {
        Ok(lower)
    } else {
        Err(Error::invalid(
            "default_language",
            format!("must be one of {}", LANGUAGES.join(", ")),
        ))
    }
}

/// The audit event of a flow configuration written whole: its public fields.
fn flow_config_change(action: &'static str, r: &FlowConfigRecord) -> Change {
    Change::new(action, "flow_config", &r.id)
        .account(&r.account_id)
        .summary(serde_json::json!({
            "name": r.name,
            "display_name": r.display_name,
            "logo_url": r.logo_url,
            "primary_color": r.primary_color,
            "support_url": r.support_url,
            "default_language": r.default_language,
        }))
}

pub struct ConsentManager {
    store: Arc<dyn ConsentStore>,
    accounts: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
}

impl ConsentManager {
    pub fn new(
        store: Arc<dyn ConsentStore>,
        accounts: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            store,
            accounts,
            clock,
        }
    }

    fn apply(r: &mut FlowConfigRecord, f: FlowConfigFields) -> Result<()> {
        if let Some(d) = f.display_name {
            r.display_name = check_display_name(&d)?;
        }
        if let Some(u) = f.logo_url {
            r.logo_url = check_https("logo_url", &u)?;
        }
        if let Some(c) = f.primary_color {
            r.primary_color = check_color(&c)?;
        }
        if let Some(u) = f.support_url {
            r.support_url = check_https("support_url", &u)?;
        }
        if let Some(l) = f.default_language {
            r.default_language = check_language(&l)?;
        }
        Ok(())
    }

    pub async fn create(
        &self,
        account_id: &str,
        name: &str,
        fields: FlowConfigFields,
    ) -> Result<FlowConfigRecord> {
        let name = check_name(name)?;
        if fields.display_name.as_deref().is_none_or(str::is_empty) {
            return Err(Error::invalid("display_name", "is required"));
        }
        match self.accounts.get_account(account_id).await? {
            Some(a) if !a.is_operator => {}
            _ => return Err(Error::not_found("account", account_id)),
        }
        let now = self.clock.now();
        let mut record = FlowConfigRecord {
            id: new_id(FLOW_CONFIG_ID_PREFIX),
            account_id: account_id.to_owned(),
            name,
            display_name: String::new(),
            logo_url: None,
            primary_color: None,
            support_url: None,
            default_language: "en".into(),
            created_at: now,
            updated_at: now,
        };
        Self::apply(&mut record, fields)?;
        audit::record(now, flow_config_change("flow_config.created", &record));
        match self.store.insert_flow_config(&record).await {
            Ok(()) => Ok(record),
            Err(StoreError::AlreadyExists) => Err(Error::invalid(
                "name",
                format!(
                    "the account has a flow configuration named `{}` already",
                    record.name
                ),
            )),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn get(&self, id: &str) -> Result<FlowConfigRecord> {
        if !valid_flow_config_id(id) {
            return Err(Error::invalid(
                "id",
                "is not a flow configuration id (fc_…)",
            ));
        }
        self.store
            .get_flow_config(id)
            .await?
            .ok_or_else(|| Error::not_found("flow configuration", id))
    }

    /// The configuration `name` of `account_id`, for a consent page.
    pub async fn find(&self, account_id: &str, name: &str) -> Result<Option<FlowConfigRecord>> {
        if check_name(name).is_err() {
            return Ok(None);
        }
        Ok(self.store.find_flow_config(account_id, name).await?)
    }

    pub async fn list(
        &self,
        account_id: Option<&str>,
        after: Option<&str>,
        limit: u64,
    ) -> Result<Vec<FlowConfigRecord>> {
        Ok(self
            .store
            .list_flow_configs(account_id, after, limit)
            .await?)
    }

    pub async fn update(&self, id: &str, fields: FlowConfigFields) -> Result<FlowConfigRecord> {
        let mut record = self.get(id).await?;
        Self::apply(&mut record, fields)?;
        record.updated_at = self.clock.now();
        audit::record(
            record.updated_at,
            flow_config_change("flow_config.updated", &record),
        );
        if !self.store.update_flow_config(&record).await? {
            return Err(Error::not_found("flow configuration", id));
        }
        Ok(record)
    }

    pub async fn delete(&self, id: &str) -> Result<()> {
        // Read first (which checks the id): the event names the account.
        let record = self.get(id).await?;
        audit::record(
            self.clock.now(),
            Change::new("flow_config.deleted", "flow_config", id)
                .account(&record.account_id)
                .summary(serde_json::json!({ "name": record.name })),
        );
        if !self.store.delete_flow_config(id).await? {
            return Err(Error::not_found("flow configuration", id));
        }
        Ok(())
    }

    /// Has the link signed `signature` been decided on?
    pub async fn link_used(&self, signature: &[u8; 32]) -> Result<bool> {
        Ok(self
            .store
            .consent_link_used(&crate::crypto::sha256(signature))
            .await?)
    }

    /// Marks the link signed `signature` decided on; `false` if it was
    /// already (exactly one caller gets `true`). Kept until `expires_at`.
    pub async fn use_link(
        &self,
        signature: &[u8; 32],
        client_id: &str,
        expires_at: Millis,
    ) -> Result<bool> {
        Ok(self
            .store
            .use_consent_link(
                &crate::crypto::sha256(signature),
                client_id,
                self.clock.now(),
                expires_at,
            )
            .await?)
    }

    /// Links `client` to the signing secret of its consent links (`None`
    /// unlinks; the caller has checked it with `SigningManager::for_client`),
    /// with its `client.signing_secret_set` event in the same transaction.
    pub async fn set_client_signing_secret(
        &self,
        client: &ClientRecord,
        secret_id: Option<&str>,
    ) -> Result<()> {
        audit::record(
            self.clock.now(),
            Change::new("client.signing_secret_set", "client", &client.client_id)
                .account(&client.account_id)
                .mode(client.mode.tag())
                .summary(serde_json::json!({ "signing_secret_id": secret_id })),
        );
        if !self
            .store
            .set_client_signing_secret(&client.client_id, secret_id)
            .await?
        {
            return Err(Error::not_found("client", &client.client_id));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_checked_and_named() {
        assert!(check_name("shop-de_1").is_ok());
        for bad in ["", "a b", "a&b", "<x>", &"x".repeat(65)] {
            let e = check_name(bad).unwrap_err().to_string();
            assert!(e.starts_with("name:"), "{e}");
        }
        assert!(check_https("logo_url", "https://cdn.example.com/l.png").is_ok());
        for bad in [
            "http://cdn.example.com/l.png",
            "javascript:alert(1)",
            "https://u:p@cdn.example.com/",
            "https://[::1]/x.png",
            "data:image/png;base64,AAAA",
        ] {
            let e = check_https("logo_url", bad).unwrap_err().to_string();
            assert!(e.starts_with("logo_url:"), "{bad}: {e}");
        }
        assert_eq!(check_color("#A1b2C3").unwrap().as_deref(), Some("#a1b2c3"));
        for bad in ["red", "#fff", "#12345g", "#1234567", "#123456;}"] {
            assert!(check_color(bad).is_err(), "{bad}");
        }
        assert_eq!(check_language("DE").unwrap(), "de");
        assert!(check_language("fr").is_err());
        assert!(check_display_name("  ").is_err());
        assert!(check_display_name("a\u{7}b").is_err());
    }
}
