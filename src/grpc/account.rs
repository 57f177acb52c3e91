//! `latchkey.v1.AccountService`.

use std::sync::Arc;

use tonic::{Request, Response, Status};
use tracing::instrument;

use super::auth::authorize;
use super::convert;
use super::state::GrpcState;
use crate::domain::accounts::ACCOUNT_ID_PREFIX;
use crate::pb;
use crate::pb::account_service_server::AccountService;

pub struct AccountApi(pub Arc<GrpcState>);

#[tonic::async_trait]
impl AccountService for AccountApi {
    #[instrument(skip_all)]
    async fn create_account(
        &self,
        req: Request<pb::CreateAccountRequest>,
    ) -> Result<Response<pb::Account>, Status> {
        authorize(&self.0, &req, &self.0.admin.accounts_write).await?;
        let r = req.into_inner();
        let account = self.0.services.accounts.create(&r.name, &r.plan).await?;
        tracing::info!(account_id = %account.id, plan = %account.plan, "account created");
        Ok(Response::new(convert::account_out(&account)))
    }

    #[instrument(skip_all)]
    async fn get_account(
        &self,
        req: Request<pb::GetAccountRequest>,
    ) -> Result<Response<pb::Account>, Status> {
        authorize(&self.0, &req, &self.0.admin.accounts_read).await?;
        let id = convert::account_id("id", &req.get_ref().id)?;
        let account = self.0.services.accounts.get(&id).await?;
        Ok(Response::new(convert::account_out(&account)))
    }

    #[instrument(skip_all)]
    async fn list_accounts(
        &self,
        req: Request<pb::ListAccountsRequest>,
    ) -> Result<Response<pb::ListAccountsResponse>, Status> {
        authorize(&self.0, &req, &self.0.admin.accounts_read).await?;
        let r = req.get_ref();
        let (limit, after) = convert::page(r.page_size, &r.page_token, ACCOUNT_ID_PREFIX)?;
        let rows = self
            .0
            .services
            .accounts
            .list(after.as_deref(), limit + 1)
            .await?;
        let (rows, next_page_token) = convert::next_page(rows, limit, |a| &a.id);
        Ok(Response::new(pb::ListAccountsResponse {
            accounts: rows.iter().map(convert::account_out).collect(),
            next_page_token,
        }))
    }

    #[instrument(skip_all)]
    async fn add_store(
        &self,
        req: Request<pb::AddStoreRequest>,
    ) -> Result<Response<pb::Account>, Status> {
        authorize(&self.0, &req, &self.0.admin.accounts_write).await?;
        let r = req.get_ref();
        let id = convert::account_id("account_id", &r.account_id)?;
        let account = self.0.services.accounts.add_store(&id, &r.store_id).await?;
        tracing::info!(account_id = %account.id, store_id = %r.store_id, "store added");
        Ok(Response::new(convert::account_out(&account)))
    }

    #[instrument(skip_all)]
    async fn remove_store(
        &self,
        req: Request<pb::RemoveStoreRequest>,
    ) -> Result<Response<pb::Account>, Status> {
        authorize(&self.0, &req, &self.0.admin.accounts_write).await?;
        let r = req.get_ref();
        let id = convert::account_id("account_id", &r.account_id)?;
        let account = self
            .0
            .services
            .accounts
            .remove_store(&id, &r.store_id)
            .await?;
        tracing::info!(account_id = %account.id, store_id = %r.store_id, "store removed");
        Ok(Response::new(convert::account_out(&account)))
    }

    #[instrument(skip_all)]
    async fn request_live_mode(
        &self,
        req: Request<pb::RequestLiveModeRequest>,
    ) -> Result<Response<pb::Account>, Status> {
        authorize(&self.0, &req, &self.0.admin.accounts_write).await?;
        let id = convert::account_id("id", &req.get_ref().id)?;
        let account = self.0.services.accounts.request_live(&id).await?;
        tracing::info!(account_id = %account.id, "live mode requested");
        Ok(Response::new(convert::account_out(&account)))
    }

    #[instrument(skip_all)]
    async fn review_live_mode(
        &self,
        req: Request<pb::ReviewLiveModeRequest>,
    ) -> Result<Response<pb::Account>, Status> {
        authorize(&self.0, &req, &self.0.admin.live_mode_review).await?;
        let r = req.get_ref();
        let id = convert::account_id("id", &r.id)?;
        let account = self.0.services.accounts.review_live(&id, r.approve).await?;
        tracing::info!(account_id = %account.id, live_status = %account.live_status, "live mode reviewed");
        Ok(Response::new(convert::account_out(&account)))
    }
}
