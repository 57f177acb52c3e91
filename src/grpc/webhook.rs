//! `latchkey.v1.WebhookService`: endpoints, their secrets and deliveries
//! (conversion and wire checks in `convert/webhook.rs`).

use std::sync::Arc;

use tonic::{Request, Response, Status};
use tracing::instrument;

use super::auth::authorize;
use super::convert;
use super::convert::webhook::{
    delivery_id, delivery_out, delivery_status_in, endpoint_change, endpoint_id, endpoint_out,
    new_endpoint, optional_account, overlap,
};
use super::state::GrpcState;
use crate::domain::model::{WEBHOOK_DELIVERY_ID_PREFIX, WEBHOOK_ENDPOINT_ID_PREFIX};
use crate::pb;
use crate::pb::webhook_service_server::WebhookService;

pub struct WebhookApi(pub Arc<GrpcState>);

#[tonic::async_trait]
impl WebhookService for WebhookApi {
    #[instrument(skip_all)]
    async fn create_endpoint(
        &self,
        req: Request<pb::CreateEndpointRequest>,
    ) -> Result<Response<pb::CreateEndpointResponse>, Status> {
        authorize(&self.0, &req, &self.0.admin.webhooks_write).await?;
        let new = new_endpoint(req.into_inner())?;
        let (endpoint, secret) = self.0.services.webhooks.create_endpoint(new).await?;
        let (endpoint, secrets) = self.0.services.webhooks.get_endpoint(&endpoint.id).await?;
        Ok(Response::new(pb::CreateEndpointResponse {
            endpoint: Some(endpoint_out(&endpoint, &secrets)),
            secret: secret.expose().clone(),
        }))
    }

    #[instrument(skip_all)]
    async fn get_endpoint(
        &self,
        req: Request<pb::GetEndpointRequest>,
    ) -> Result<Response<pb::WebhookEndpoint>, Status> {
        authorize(&self.0, &req, &self.0.admin.webhooks_read).await?;
        let id = endpoint_id("id", &req.get_ref().id)?;
        let (endpoint, secrets) = self.0.services.webhooks.get_endpoint(&id).await?;
        Ok(Response::new(endpoint_out(&endpoint, &secrets)))
    }

    #[instrument(skip_all)]
    async fn list_endpoints(
        &self,
        req: Request<pb::ListEndpointsRequest>,
    ) -> Result<Response<pb::ListEndpointsResponse>, Status> {
        authorize(&self.0, &req, &self.0.admin.webhooks_read).await?;
        let r = req.get_ref();
        let account = optional_account("account_id", &r.account_id)?;
        let (limit, after) = convert::page(r.page_size, &r.page_token, WEBHOOK_ENDPOINT_ID_PREFIX)?;
        let rows = self
            .0
            .services
            .webhooks
            .list_endpoints(account.as_deref(), after.as_deref(), limit + 1)
            .await?;
        let (rows, next_page_token) = convert::next_page(rows, limit, |e| &e.id);
        Ok(Response::new(pb::ListEndpointsResponse {
            endpoints: rows.iter().map(|e| endpoint_out(e, &[])).collect(),
            next_page_token,
        }))
    }

    #[instrument(skip_all)]
    async fn update_endpoint(
        &self,
        req: Request<pb::UpdateEndpointRequest>,
    ) -> Result<Response<pb::WebhookEndpoint>, Status> {
        authorize(&self.0, &req, &self.0.admin.webhooks_write).await?;
        let (id, change) = endpoint_change(req.into_inner())?;
        let endpoint = self
            .0
            .services
            .webhooks
            .update_endpoint(&id, change)
            .await?;
        Ok(Response::new(endpoint_out(&endpoint, &[])))
    }

    #[instrument(skip_all)]
    async fn delete_endpoint(
        &self,
        req: Request<pb::DeleteEndpointRequest>,
    ) -> Result<Response<pb::DeleteEndpointResponse>, Status> {
        authorize(&self.0, &req, &self.0.admin.webhooks_write).await?;
        let id = endpoint_id("id", &req.get_ref().id)?;
        self.0.services.webhooks.delete_endpoint(&id).await?;
        Ok(Response::new(pb::DeleteEndpointResponse {}))
    }

    #[instrument(skip_all)]
    async fn rotate_endpoint_secret(
        &self,
        req: Request<pb::RotateEndpointSecretRequest>,
    ) -> Result<Response<pb::RotateEndpointSecretResponse>, Status> {
        authorize(&self.0, &req, &self.0.admin.webhooks_write).await?;
        let r = req.get_ref();
        let id = endpoint_id("id", &r.id)?;
        let webhooks = &self.0.services.webhooks;
        let secret = webhooks
            .rotate_secret(&id, overlap(r.overlap_seconds))
            .await?;
        let (endpoint, secrets) = webhooks.get_endpoint(&id).await?;
        Ok(Response::new(pb::RotateEndpointSecretResponse {
            secret: secret.expose().clone(),
            endpoint: Some(endpoint_out(&endpoint, &secrets)),
        }))
    }

    #[instrument(skip_all)]
    async fn list_deliveries(
        &self,
        req: Request<pb::ListDeliveriesRequest>,
    ) -> Result<Response<pb::ListDeliveriesResponse>, Status> {
        authorize(&self.0, &req, &self.0.admin.webhooks_read).await?;
        let r = req.get_ref();
        let id = endpoint_id("endpoint_id", &r.endpoint_id)?;
        let status = delivery_status_in(r.status)?;
        let (limit, after) = convert::page(r.page_size, &r.page_token, WEBHOOK_DELIVERY_ID_PREFIX)?;
        let webhooks = &self.0.services.webhooks;
        // An unknown endpoint is NOT_FOUND, not an empty page.
        webhooks.get_endpoint(&id).await?;
        let rows = webhooks
            .list_deliveries(&id, status, after.as_deref(), limit + 1)
            .await?;
        let (rows, next_page_token) = convert::next_page(rows, limit, |d| &d.id);
        Ok(Response::new(pb::ListDeliveriesResponse {
            deliveries: rows.iter().map(delivery_out).collect(),
            next_page_token,
        }))
    }

    #[instrument(skip_all)]
    async fn retry_delivery(
        &self,
        req: Request<pb::RetryDeliveryRequest>,
    ) -> Result<Response<pb::RetryDeliveryResponse>, Status> {
        authorize(&self.0, &req, &self.0.admin.webhooks_write).await?;
        let id = delivery_id("id", &req.get_ref().id)?;
        self.0.services.webhooks.retry_delivery(&id).await?;
        Ok(Response::new(pb::RetryDeliveryResponse {}))
    }

    #[instrument(skip_all)]
    async fn send_test_event(
        &self,
        req: Request<pb::SendTestEventRequest>,
    ) -> Result<Response<pb::SendTestEventResponse>, Status> {
        authorize(&self.0, &req, &self.0.admin.webhooks_write).await?;
        let id = endpoint_id("endpoint_id", &req.get_ref().endpoint_id)?;
        let (event, delivery) = self.0.services.webhooks.send_test_event(&id).await?;
        Ok(Response::new(pb::SendTestEventResponse {
            event_id: event.id,
            delivery: Some(delivery_out(&delivery)),
        }))
    }
}
