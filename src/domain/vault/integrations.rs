//! `IntegrationManager`: stored remote credentials (sealed under the master
//! key, bound to their row), their connection tests, and the one call that
//! hands the plaintext to an internal service.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::crypto::envelope::MasterKey;
use crate::domain::audit::{self, Change};
use crate::domain::error::{Error, Result};
use crate::domain::model::{
    ConnectionTestRecord, IntegrationFilter, IntegrationRecord, Millis, Mode, ProbeError,
    integration_context, new_id, valid_id,
};
use crate::ports::{Clock, IntegrationStore, RemoteProbe, Store, StoreError};

use super::kinds;

pub const INTEGRATION_ID_PREFIX: &str = "int";
pub const TEST_ID_PREFIX: &str = "ctest";
const MAX_NAME_LEN: usize = 200;

/// What the manager needs, from the composition root.
pub struct IntegrationDeps {
    pub store: Arc<dyn IntegrationStore>,
    pub accounts: Arc<dyn Store>,
    pub master_key: Arc<MasterKey>,
    pub probe: Arc<dyn RemoteProbe>,
    pub clock: Arc<dyn Clock>,
    /// `integrations.allow_insecure_targets`.
    pub allow_insecure_targets: bool,
    /// How long connection-test records are kept.
    pub retention_days: u32,
}

pub struct IntegrationManager {
    deps: IntegrationDeps,
}

/// What `CreateIntegration` asks for (already parsed from the wire).
#[derive(Clone)]
pub struct NewIntegration {
    pub account_id: String,
    pub mode: Mode,
    pub store_id: Option<String>,
    pub kind: String,
    pub name: String,
    pub base_url: String,
    pub credentials: BTreeMap<String, String>,
    pub settings: BTreeMap<String, String>,
}

/// What `UpdateIntegration` changes; `None` leaves a part as it is.
#[derive(Clone, Default)]
pub struct IntegrationChange {
    pub name: Option<String>,
    pub base_url: Option<String>,
    /// Replaces every credential field.
    pub credentials: Option<BTreeMap<String, String>>,
    pub settings: Option<BTreeMap<String, String>>,
}

/// The plaintext, for `UseCredentials`.
pub struct Plain {
    pub record: IntegrationRecord,
    pub credentials: BTreeMap<String, String>,
}

pub fn valid_integration_id(id: &str) -> bool {
    valid_id(id, INTEGRATION_ID_PREFIX)
}

fn check_name(name: &str) -> Result<()> {
    if name.trim().is_empty() {
        return Err(Error::invalid("name", "is required"));
    }
    if name.len() > MAX_NAME_LEN || name.chars().any(char::is_control) {
        return Err(Error::invalid(
            "name",
            format!("must be at most {MAX_NAME_LEN} bytes without control characters"),
        ));
    }
    Ok(())
}

impl IntegrationManager {
    pub fn new(deps: IntegrationDeps) -> Self {
        Self { deps }
    }

    fn seal(&self, id: &str, credentials: &BTreeMap<String, String>) -> Result<Vec<u8>> {
        let plain = zeroize::Zeroizing::new(
            serde_json::to_vec(credentials)
                .map_err(|e| Error::internal("encoding integration credentials", e))?,
        );
        self.deps
            .master_key
            .seal(&plain, integration_context(id).as_bytes())
            .map_err(|e| Error::internal("sealing integration credentials", format!("{id}: {e}")))
    }

    fn open(&self, record: &IntegrationRecord) -> Result<BTreeMap<String, String>> {
        let plain = self
            .deps
            .master_key
            .open(
                &record.sealed_credentials,
                integration_context(&record.id).as_bytes(),
            )
            .map_err(|e| {
                Error::internal(
                    "opening integration credentials",
                    format!("{}: {e}", record.id),
                )
            })?;
        serde_json::from_slice(&plain).map_err(|_| {
            Error::internal(
                "opening integration credentials",
                format!("{}: not a JSON map", record.id),
            )
        })
    }

    pub async fn create(&self, new: NewIntegration) -> Result<IntegrationRecord> {
        kinds::validate_kind(&new.kind)?;
        check_name(&new.name)?;
        let base_url = kinds::validate_base_url(&new.base_url, self.deps.allow_insecure_targets)?;
        kinds::validate_credentials(&new.kind, &new.credentials)?;
        kinds::validate_settings(&new.settings)?;
        let account = self
            .deps
            .accounts
            .get_account(&new.account_id)
            .await?
            .filter(|a| !a.is_operator)
            .ok_or_else(|| Error::not_found("account", &new.account_id))?;
        if let Some(store) = &new.store_id
            && !account.store_ids.iter().any(|s| s == store)
        {
            return Err(Error::invalid(
                "store_id",
                format!(
                    "store `{store}` does not belong to account `{}`",
                    account.id
                ),
            ));
        }
        let now = self.deps.clock.now();
        let id = new_id(INTEGRATION_ID_PREFIX);
        let record = IntegrationRecord {
            sealed_credentials: self.seal(&id, &new.credentials)?,
            hints: kinds::hints(&new.credentials),
            id,
            account_id: account.id,
            mode: new.mode,
            store_id: new.store_id,
            kind: new.kind,
            name: new.name,
            base_url,
            settings: new.settings,
            created_at: now,
            updated_at: now,
            version: 1,
        };
        audit::record(
            now,
            integration_change("integration.created", &record, None),
        );
        self.deps.store.insert_integration(&record).await?;
        tracing::info!(integration_id = %record.id, account_id = %record.account_id, kind = %record.kind, "integration created");
        Ok(record)
    }

    pub async fn get(&self, id: &str) -> Result<IntegrationRecord> {
        self.deps
            .store
            .get_integration(id)
            .await?
            .ok_or_else(|| Error::not_found("integration", id))
    }

    pub async fn list(
        &self,
        filter: &IntegrationFilter,
        after: Option<&str>,
        limit: u64,
    ) -> Result<Vec<IntegrationRecord>> {
        if let Some(kind) = &filter.kind {
            kinds::validate_kind(kind)?;
        }
        Ok(self
            .deps
            .store
            .list_integrations(filter, after, limit)
            .await?)
    }

    pub async fn update(&self, id: &str, change: IntegrationChange) -> Result<IntegrationRecord> {
        let mut record = self.get(id).await?;
        if let Some(name) = change.name {
            check_name(&name)?;
            record.name = name;
        }
        if let Some(url) = change.base_url {
            record.base_url = kinds::validate_base_url(&url, self.deps.allow_insecure_targets)?;
        }
        if let Some(settings) = change.settings {
            kinds::validate_settings(&settings)?;
            record.settings = settings;
        }
        let credentials_replaced = change.credentials.is_some();
        if let Some(credentials) = change.credentials {
            // Replaced whole: a missing field is an error, never kept from before.
            kinds::validate_credentials(&record.kind, &credentials)?;
            record.sealed_credentials = self.seal(&record.id, &credentials)?;
            record.hints = kinds::hints(&credentials);
        }
        record.updated_at = self.deps.clock.now();
        record.version += 1;
        audit::record(
            record.updated_at,
            integration_change("integration.updated", &record, Some(credentials_replaced)),
        );
        match self.deps.store.update_integration(&record).await {
            Err(StoreError::Conflict) => Err(Error::Conflict("integration")),
            other => other.map_err(Error::from),
        }?;
        tracing::info!(integration_id = %record.id, "integration updated");
        Ok(record)
    }

    pub async fn delete(&self, id: &str) -> Result<()> {
        audit::record(
            self.deps.clock.now(),
            Change::new("integration.deleted", "integration", id),
        );
        if !self.deps.store.delete_integration(id).await? {
            return Err(Error::not_found("integration", id));
        }
        tracing::info!(integration_id = %id, "integration deleted");
        Ok(())
    }

    /// The plaintext credentials. Logged (who asked is the caller's audit).
    pub async fn use_credentials(&self, id: &str) -> Result<Plain> {
        let record = self.get(id).await?;
        let credentials = self.open(&record)?;
        tracing::info!(
            integration_id = %record.id,
            account_id = %record.account_id,
            kind = %record.kind,
            "integration credentials handed out"
        );
        Ok(Plain {
            record,
            credentials,
        })
    }

    /// Makes the kind's real request and records the result. A target the
    /// outbound safety rule refuses is an `InvalidArgument` on `base_url`,
    /// and nothing is recorded.
    pub async fn test_connection(&self, id: &str) -> Result<ConnectionTestRecord> {
        let record = self.get(id).await?;
        let credentials = self.open(&record)?;
        let now = self.deps.clock.now();
        let request = kinds::probe_request(
            &record.kind,
            &record.base_url,
            &credentials,
            &record.settings,
            now.div_euclid(1000),
        );
        let outcome = self.deps.probe.get(&request).await;
        let mut test = ConnectionTestRecord {
            id: new_id(TEST_ID_PREFIX),
            integration_id: record.id.clone(),
            ok: false,
            http_status: None,
            latency_ms: 0,
            error: None,
            excerpt: String::new(),
            tested_at: now,
        };
        match outcome {
            Ok(response) => {
                test.ok = (200..300).contains(&response.status);
                test.http_status = Some(i32::from(response.status));
                test.latency_ms = response.latency_ms;
                test.excerpt = kinds::excerpt(&response.body, &credentials);
                if !test.ok {
                    test.error = Some(match response.status {
                        401 | 403 => format!(
                            "the remote service rejected the credentials (HTTP {})",
                            response.status
                        ),
                        s if (300..400).contains(&s) => format!(
                            "the remote service redirected (HTTP {s}); redirects are not followed"
                        ),
                        s => format!("the remote service answered HTTP {s}"),
                    });
                }
            }
            Err(ProbeError::Refused(why)) => return Err(Error::invalid("base_url", why)),
            Err(ProbeError::Failed {
                message,
                latency_ms,
            }) => {
                test.latency_ms = latency_ms;
                test.error = Some(kinds::excerpt(message.as_bytes(), &credentials));
            }
        }
        let keep_after: Millis = now - i64::from(self.deps.retention_days) * 86_400_000;
        self.deps
            .store
            .insert_connection_test(&test, keep_after)
            .await?;
        tracing::info!(
            integration_id = %record.id,
            ok = test.ok,
            http_status = test.http_status,
            latency_ms = test.latency_ms,
            "connection tested"
        );
        Ok(test)
    }

    pub async fn list_tests(&self, id: &str, limit: u64) -> Result<Vec<ConnectionTestRecord>> {
        // Not found is an error, not an empty list.
        self.get(id).await?;
        Ok(self.deps.store.list_connection_tests(id, limit).await?)
    }
}

/// The audit record of a change to an integration: its public fields; of
/// the credentials only whether they were replaced, never a value or hint.
fn integration_change(
    action: &'static str,
    record: &IntegrationRecord,
    credentials_replaced: Option<bool>,
) -> Change {
    Change::new(action, "integration", &record.id)
        .account(&record.account_id)
        .mode(record.mode.tag())
        .summary(serde_json::json!({
            "name": record.name,
            "kind": record.kind,
            "base_url": record.base_url,
            "store_id": record.store_id,
            "credentials_replaced": credentials_replaced,
        }))
}
