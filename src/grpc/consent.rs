//! `latchkey.v1.ConsentService`: flow configurations (named branding of an
//! account's consent pages).

use std::sync::Arc;

use tonic::{Request, Response, Status};
use tracing::instrument;

use super::auth::authorize;
use super::convert::{self, timestamp};
use super::state::GrpcState;
use crate::domain::consent::{FLOW_CONFIG_ID_PREFIX, FlowConfigFields, FlowConfigRecord};
use crate::pb;
use crate::pb::consent_service_server::ConsentService;

pub struct ConsentApi(pub Arc<GrpcState>);

fn out(r: &FlowConfigRecord) -> pb::FlowConfig {
    pb::FlowConfig {
        id: r.id.clone(),
        account_id: r.account_id.clone(),
        name: r.name.clone(),
        display_name: r.display_name.clone(),
        logo_url: r.logo_url.clone().unwrap_or_default(),
        primary_color: r.primary_color.clone().unwrap_or_default(),
        support_url: r.support_url.clone().unwrap_or_default(),
        default_language: r.default_language.clone(),
        created_at: Some(timestamp(r.created_at)),
        updated_at: Some(timestamp(r.updated_at)),
    }
}

#[tonic::async_trait]
impl ConsentService for ConsentApi {
    #[instrument(skip_all)]
    async fn create_flow_config(
        &self,
        req: Request<pb::CreateFlowConfigRequest>,
    ) -> Result<Response<pb::FlowConfig>, Status> {
        authorize(&self.0, &req, &self.0.admin.tokens_write).await?;
        let r = req.into_inner();
        let account_id = convert::account_id("account_id", &r.account_id)?;
        let record = self
            .0
            .services
            .consent
            .create(
                &account_id,
                &r.name,
                FlowConfigFields {
                    display_name: Some(r.display_name),
                    logo_url: Some(r.logo_url),
                    primary_color: Some(r.primary_color),
                    support_url: Some(r.support_url),
                    default_language: Some(r.default_language),
                },
            )
            .await?;
        tracing::info!(flow_config = %record.id, account_id = %record.account_id, "flow configuration created");
        Ok(Response::new(out(&record)))
    }

    #[instrument(skip_all)]
    async fn get_flow_config(
        &self,
        req: Request<pb::GetFlowConfigRequest>,
    ) -> Result<Response<pb::FlowConfig>, Status> {
        authorize(&self.0, &req, &self.0.admin.tokens_read).await?;
        let record = self.0.services.consent.get(&req.get_ref().id).await?;
        Ok(Response::new(out(&record)))
    }

    #[instrument(skip_all)]
    async fn list_flow_configs(
        &self,
        req: Request<pb::ListFlowConfigsRequest>,
    ) -> Result<Response<pb::ListFlowConfigsResponse>, Status> {
        authorize(&self.0, &req, &self.0.admin.tokens_read).await?;
        let r = req.get_ref();
        let account = if r.account_id.is_empty() {
            None
        } else {
            Some(convert::account_id("account_id", &r.account_id)?)
        };
        let (limit, after) = convert::page(r.page_size, &r.page_token, FLOW_CONFIG_ID_PREFIX)?;
        let rows = self
            .0
            .services
            .consent
            .list(account.as_deref(), after.as_deref(), limit + 1)
            .await?;
        let (rows, next_page_token) = convert::next_page(rows, limit, |c| &c.id);
        Ok(Response::new(pb::ListFlowConfigsResponse {
            flow_configs: rows.iter().map(out).collect(),
            next_page_token,
        }))
    }

    #[instrument(skip_all)]
    async fn update_flow_config(
        &self,
        req: Request<pb::UpdateFlowConfigRequest>,
    ) -> Result<Response<pb::FlowConfig>, Status> {
        authorize(&self.0, &req, &self.0.admin.tokens_write).await?;
        let r = req.into_inner();
        let record = self
            .0
            .services
            .consent
            .update(
                &r.id,
                FlowConfigFields {
                    display_name: r.display_name,
                    logo_url: r.logo_url,
                    primary_color: r.primary_color,
                    support_url: r.support_url,
                    default_language: r.default_language,
                },
            )
            .await?;
        tracing::info!(flow_config = %record.id, "flow configuration updated");
        Ok(Response::new(out(&record)))
    }

    #[instrument(skip_all)]
    async fn delete_flow_config(
        &self,
        req: Request<pb::DeleteFlowConfigRequest>,
    ) -> Result<Response<pb::DeleteFlowConfigResponse>, Status> {
        authorize(&self.0, &req, &self.0.admin.tokens_write).await?;
        let id = &req.get_ref().id;
        self.0.services.consent.delete(id).await?;
        tracing::info!(flow_config = %id, "flow configuration deleted");
        Ok(Response::new(pb::DeleteFlowConfigResponse {}))
    }
}
