//! The consent flow's port (split out of `ports.rs`, which stays under the
//! layer rule's 400 lines).

use async_trait::async_trait;

use crate::domain::model::Millis;
use crate::ports::StoreError;

/// Persistence for the hosted consent flow (`domain::consent`).
#[async_trait]
pub trait ConsentStore: Send + Sync + 'static {
    /// `AlreadyExists` when the account has a configuration of that name.
    async fn insert_flow_config(
        &self,
        record: &crate::domain::model::FlowConfigRecord,
    ) -> Result<(), StoreError>;
    async fn get_flow_config(
        &self,
        id: &str,
    ) -> Result<Option<crate::domain::model::FlowConfigRecord>, StoreError>;
    async fn find_flow_config(
        &self,
        account_id: &str,
        name: &str,
    ) -> Result<Option<crate::domain::model::FlowConfigRecord>, StoreError>;
    /// Ordered by id, after `after`.
    async fn list_flow_configs(
        &self,
        account_id: Option<&str>,
        after: Option<&str>,
        limit: u64,
    ) -> Result<Vec<crate::domain::model::FlowConfigRecord>, StoreError>;
    /// `false` if there is none.
    async fn update_flow_config(
        &self,
        record: &crate::domain::model::FlowConfigRecord,
    ) -> Result<bool, StoreError>;
    /// `false` if there was none.
    async fn delete_flow_config(&self, id: &str) -> Result<bool, StoreError>;
    /// Records the link (by the SHA-256 of its signature) as decided on at
    /// `now`, and forgets links expired before `now`; `false` if it was
    /// already recorded (exactly one caller ever gets `true`).
    async fn use_consent_link(
        &self,
        signature_hash: &[u8; 32],
        client_id: &str,
        now: Millis,
        expires_at: Millis,
    ) -> Result<bool, StoreError>;
    async fn consent_link_used(&self, signature_hash: &[u8; 32]) -> Result<bool, StoreError>;
    /// Sets (or, with `None`, clears) the client's `signing_secret_id`; `false` if there is no such client.
    async fn set_client_signing_secret(
        &self,
        client_id: &str,
        secret_id: Option<&str>,
    ) -> Result<bool, StoreError>;
}
