//! `latchkey.v1.IntegrationService`: stored remote credentials, their
//! connection tests, and `UseCredentials` for internal services. The wire
//! checks for these messages live here, beside the only handlers using them.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use tonic::{Request, Response, Status};
use tracing::instrument;

use super::auth::authorize;
use super::convert::{self, mode_out, timestamp};
use super::state::GrpcState;
use crate::domain::error::{Error, Result as DomainResult};
use crate::domain::model::{ConnectionTestRecord, IntegrationFilter, IntegrationRecord};
use crate::domain::vault::integrations::{
    INTEGRATION_ID_PREFIX, IntegrationChange, NewIntegration, valid_integration_id,
};
use crate::pb;
use crate::pb::integration_service_server::IntegrationService;

pub struct IntegrationApi(pub Arc<GrpcState>);

const MAX_TESTS_PAGE: u64 = 100;
const MAX_STORE_ID_LEN: usize = 128;

fn integration_id(id: &str) -> DomainResult<String> {
    if id.is_empty() {
        return Err(Error::invalid("id", "is required"));
    }
    if !valid_integration_id(id) {
        return Err(Error::invalid("id", "is not an integration id (int_…)"));
    }
    Ok(id.to_owned())
}

fn store_id(id: &str) -> DomainResult<Option<String>> {
    if id.is_empty() {
        return Ok(None);
    }
    if id.len() > MAX_STORE_ID_LEN || id.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(Error::invalid(
            "store_id",
            format!("must be at most {MAX_STORE_ID_LEN} bytes without spaces"),
        ));
    }
    Ok(Some(id.to_owned()))
}

fn sorted(map: &HashMap<String, String>) -> BTreeMap<String, String> {
    map.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

fn unsorted(map: &BTreeMap<String, String>) -> HashMap<String, String> {
    map.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

fn out(r: &IntegrationRecord) -> pb::Integration {
    pb::Integration {
        id: r.id.clone(),
        account_id: r.account_id.clone(),
        mode: mode_out(r.mode).into(),
        store_id: r.store_id.clone().unwrap_or_default(),
        kind: r.kind.clone(),
        name: r.name.clone(),
        base_url: r.base_url.clone(),
        credential_hints: unsorted(&r.hints),
        settings: unsorted(&r.settings),
        created_at: Some(timestamp(r.created_at)),
        updated_at: Some(timestamp(r.updated_at)),
        version: r.version,
    }
}

fn test_out(t: &ConnectionTestRecord) -> pb::ConnectionTest {
    pb::ConnectionTest {
        id: t.id.clone(),
        integration_id: t.integration_id.clone(),
        ok: t.ok,
        http_status: t.http_status.unwrap_or(0),
        latency_ms: t.latency_ms,
        error: t.error.clone().unwrap_or_default(),
        tested_at: Some(timestamp(t.tested_at)),
        response_excerpt: t.excerpt.clone(),
    }
}

#[tonic::async_trait]
impl IntegrationService for IntegrationApi {
    #[instrument(skip_all)]
    async fn create_integration(
        &self,
        req: Request<pb::CreateIntegrationRequest>,
    ) -> Result<Response<pb::Integration>, Status> {
        authorize(&self.0, &req, &self.0.admin.integrations_write).await?;
        let r = req.into_inner();
        let new = NewIntegration {
            account_id: convert::account_id("account_id", &r.account_id)?,
            mode: convert::required_mode("mode", r.mode)?,
            store_id: store_id(&r.store_id)?,
            kind: r.kind,
            name: r.name,
            base_url: r.base_url,
            credentials: sorted(&r.credentials),
            settings: sorted(&r.settings),
        };
        let record = self.0.services.integrations.create(new).await?;
        Ok(Response::new(out(&record)))
    }

    #[instrument(skip_all)]
    async fn get_integration(
        &self,
        req: Request<pb::GetIntegrationRequest>,
    ) -> Result<Response<pb::Integration>, Status> {
        authorize(&self.0, &req, &self.0.admin.integrations_read).await?;
        let id = integration_id(&req.get_ref().id)?;
        let record = self.0.services.integrations.get(&id).await?;
        Ok(Response::new(out(&record)))
    }

    #[instrument(skip_all)]
    async fn list_integrations(
        &self,
        req: Request<pb::ListIntegrationsRequest>,
    ) -> Result<Response<pb::ListIntegrationsResponse>, Status> {
        authorize(&self.0, &req, &self.0.admin.integrations_read).await?;
        let r = req.get_ref();
        let (limit, after) = convert::page(r.page_size, &r.page_token, INTEGRATION_ID_PREFIX)?;
        let filter = IntegrationFilter {
            account_id: if r.account_id.is_empty() {
                None
            } else {
                Some(convert::account_id("account_id", &r.account_id)?)
            },
            kind: (!r.kind.is_empty()).then(|| r.kind.clone()),
            store_id: store_id(&r.store_id)?,
        };
        let rows = self
            .0
            .services
            .integrations
            .list(&filter, after.as_deref(), limit + 1)
            .await?;
        let (rows, next_page_token) = convert::next_page(rows, limit, |i| &i.id);
        Ok(Response::new(pb::ListIntegrationsResponse {
            integrations: rows.iter().map(out).collect(),
            next_page_token,
        }))
    }

    #[instrument(skip_all)]
    async fn update_integration(
        &self,
        req: Request<pb::UpdateIntegrationRequest>,
    ) -> Result<Response<pb::Integration>, Status> {
        authorize(&self.0, &req, &self.0.admin.integrations_write).await?;
        let r = req.into_inner();
        let id = integration_id(&r.id)?;
        let change = IntegrationChange {
            name: r.name,
            base_url: r.base_url,
            credentials: r.credentials.map(|m| sorted(&m.values)),
            settings: r.settings.map(|m| sorted(&m.values)),
        };
        let record = self.0.services.integrations.update(&id, change).await?;
        Ok(Response::new(out(&record)))
    }

    #[instrument(skip_all)]
    async fn delete_integration(
        &self,
        req: Request<pb::DeleteIntegrationRequest>,
    ) -> Result<Response<pb::DeleteIntegrationResponse>, Status> {
        authorize(&self.0, &req, &self.0.admin.integrations_write).await?;
        let id = integration_id(&req.get_ref().id)?;
        self.0.services.integrations.delete(&id).await?;
        Ok(Response::new(pb::DeleteIntegrationResponse {}))
    }

    #[instrument(skip_all)]
    async fn test_connection(
        &self,
        req: Request<pb::TestConnectionRequest>,
    ) -> Result<Response<pb::ConnectionTest>, Status> {
        authorize(&self.0, &req, &self.0.admin.integrations_write).await?;
        let id = integration_id(&req.get_ref().id)?;
        let test = self.0.services.integrations.test_connection(&id).await?;
        Ok(Response::new(test_out(&test)))
    }

    #[instrument(skip_all)]
    async fn list_connection_tests(
        &self,
        req: Request<pb::ListConnectionTestsRequest>,
    ) -> Result<Response<pb::ListConnectionTestsResponse>, Status> {
        authorize(&self.0, &req, &self.0.admin.integrations_read).await?;
        let r = req.get_ref();
        let id = integration_id(&r.id)?;
        let limit = match u64::from(r.page_size) {
            0 => 20,
            n if n > MAX_TESTS_PAGE => {
                return Err(Error::invalid(
                    "page_size",
                    format!("must be at most {MAX_TESTS_PAGE}"),
                )
                .into());
            }
            n => n,
        };
        let tests = self.0.services.integrations.list_tests(&id, limit).await?;
        Ok(Response::new(pb::ListConnectionTestsResponse {
            tests: tests.iter().map(test_out).collect(),
        }))
    }

    #[instrument(skip_all)]
    async fn use_credentials(
        &self,
        req: Request<pb::UseCredentialsRequest>,
    ) -> Result<Response<pb::UseCredentialsResponse>, Status> {
        // Only `admin.integrations.use`: `admin.integrations.write` does not read secrets back.
        authorize(&self.0, &req, &self.0.admin.integrations_use).await?;
        let id = integration_id(&req.get_ref().id)?;
        let plain = self.0.services.integrations.use_credentials(&id).await?;
        Ok(Response::new(pb::UseCredentialsResponse {
            kind: plain.record.kind.clone(),
            base_url: plain.record.base_url.clone(),
            credentials: unsorted(&plain.credentials),
            settings: unsorted(&plain.record.settings),
        }))
    }
}
