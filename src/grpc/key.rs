//! `latchkey.v1.KeyService`.

use std::sync::Arc;

use tonic::{Request, Response, Status};
use tracing::instrument;

use super::auth::authorize;
use super::convert;
use super::state::GrpcState;
use crate::domain::keys::KEY_ID_PREFIX;
use crate::domain::model::KeyRecord;
use crate::pb;
use crate::pb::key_service_server::KeyService;

pub struct KeyApi(pub Arc<GrpcState>);

impl KeyApi {
    fn out(&self, key: &KeyRecord) -> pb::Key {
        convert::key_out(key, self.0.services.clock.now())
    }

    async fn by_id<F, Fut>(
        &self,
        id: &str,
        action: &'static str,
        op: F,
    ) -> Result<Response<pb::Key>, Status>
    where
        F: FnOnce(String) -> Fut,
        Fut: Future<Output = crate::domain::error::Result<KeyRecord>>,
    {
        let id = convert::key_id("id", id)?;
        let key = op(id).await?;
        tracing::info!(key_id = %key.id, account_id = %key.account_id, action, "key changed");
        Ok(Response::new(self.out(&key)))
    }
}

#[tonic::async_trait]
impl KeyService for KeyApi {
    #[instrument(skip_all)]
    async fn create_key(
        &self,
        req: Request<pb::CreateKeyRequest>,
    ) -> Result<Response<pb::CreateKeyResponse>, Status> {
        authorize(&self.0, &req, &self.0.admin.keys_write).await?;
        let new = convert::new_key(req.into_inner(), self.0.max_list_items)?;
        let issued = self.0.services.keys.create(new).await?;
        tracing::info!(key_id = %issued.record.id, account_id = %issued.record.account_id, masked = %issued.record.masked, "key created");
        Ok(Response::new(pb::CreateKeyResponse {
            key: Some(self.out(&issued.record)),
            secret: issued.secret.expose().clone(),
        }))
    }

    #[instrument(skip_all)]
    async fn get_key(&self, req: Request<pb::GetKeyRequest>) -> Result<Response<pb::Key>, Status> {
        authorize(&self.0, &req, &self.0.admin.keys_read).await?;
        let id = convert::key_id("id", &req.get_ref().id)?;
        let key = self.0.services.keys.get(&id).await?;
        Ok(Response::new(self.out(&key)))
    }

    #[instrument(skip_all)]
    async fn list_keys(
        &self,
        req: Request<pb::ListKeysRequest>,
    ) -> Result<Response<pb::ListKeysResponse>, Status> {
        authorize(&self.0, &req, &self.0.admin.keys_read).await?;
        let r = req.get_ref();
        let filter = convert::key_filter(r)?;
        let (limit, after) = convert::page(r.page_size, &r.page_token, KEY_ID_PREFIX)?;
        let rows = self
            .0
            .services
            .keys
            .list(&filter, after.as_deref(), limit + 1)
            .await?;
        let (rows, next_page_token) = convert::next_page(rows, limit, |k| &k.id);
        Ok(Response::new(pb::ListKeysResponse {
            keys: rows.iter().map(|k| self.out(k)).collect(),
            next_page_token,
        }))
    }

    #[instrument(skip_all)]
    async fn update_key(
        &self,
        req: Request<pb::UpdateKeyRequest>,
    ) -> Result<Response<pb::Key>, Status> {
        authorize(&self.0, &req, &self.0.admin.keys_write).await?;
        let r = req.get_ref();
        let changes = convert::key_changes(r, self.0.max_list_items)?;
        self.by_id(&r.id, "updated", |id| async move {
            self.0.services.keys.update(&id, changes).await
        })
        .await
    }

    #[instrument(skip_all)]
    async fn rotate_key(
        &self,
        req: Request<pb::RotateKeyRequest>,
    ) -> Result<Response<pb::RotateKeyResponse>, Status> {
        authorize(&self.0, &req, &self.0.admin.keys_write).await?;
        let r = req.get_ref();
        let id = convert::key_id("id", &r.id)?;
        let (issued, previous) = self.0.services.keys.rotate(&id, r.overlap_seconds).await?;
        tracing::info!(key_id = %previous.id, successor_id = %issued.record.id, "key rotated");
        let (secret, reveal) = if r.reveal_link {
            let link = self
                .0
                .services
                .reveals
                .create(&issued.secret, "api_key", &issued.record.id)
                .await?;
            (
                String::new(),
                Some(super::signing::reveal_out(&self.0, &link)),
            )
        } else {
            (issued.secret.expose().clone(), None)
        };
        Ok(Response::new(pb::RotateKeyResponse {
            key: Some(self.out(&issued.record)),
            secret,
            previous: Some(self.out(&previous)),
            reveal,
        }))
    }

    #[instrument(skip_all)]
    async fn revoke_key(
        &self,
        req: Request<pb::RevokeKeyRequest>,
    ) -> Result<Response<pb::Key>, Status> {
        authorize(&self.0, &req, &self.0.admin.keys_write).await?;
        self.by_id(&req.get_ref().id, "revoked", |id| async move {
            self.0.services.keys.revoke(&id).await
        })
        .await
    }

    #[instrument(skip_all)]
    async fn suspend_key(
        &self,
        req: Request<pb::SuspendKeyRequest>,
    ) -> Result<Response<pb::Key>, Status> {
        authorize(&self.0, &req, &self.0.admin.keys_write).await?;
        self.by_id(&req.get_ref().id, "suspended", |id| async move {
            self.0.services.keys.suspend(&id).await
        })
        .await
    }

    #[instrument(skip_all)]
    async fn resume_key(
        &self,
        req: Request<pb::ResumeKeyRequest>,
    ) -> Result<Response<pb::Key>, Status> {
        authorize(&self.0, &req, &self.0.admin.keys_write).await?;
        self.by_id(&req.get_ref().id, "resumed", |id| async move {
            self.0.services.keys.resume(&id).await
        })
        .await
    }

    #[instrument(skip_all)]
    async fn advise_key(
        &self,
        req: Request<pb::AdviseKeyRequest>,
    ) -> Result<Response<pb::AdviseKeyResponse>, Status> {
        authorize(&self.0, &req, &self.0.admin.keys_read).await?;
        let id = convert::key_id("id", &req.get_ref().id)?;
        let advice = self.0.services.analytics.advisor.advise(&id).await?;
        Ok(Response::new(super::usage::advice_out(advice)))
    }
}
