//! `latchkey.v1.RouteService`.

use std::sync::Arc;

use tonic::{Request, Response, Status};
use tracing::instrument;

use super::auth::authorize;
use super::convert;
use super::state::GrpcState;
use crate::domain::error::Error;
use crate::domain::model::{RuleRecord, valid_id};
use crate::domain::routes::RULE_ID_PREFIX;
use crate::pb;
use crate::pb::route_service_server::RouteService;

pub struct RouteApi(pub Arc<GrpcState>);

fn rule_out(r: &RuleRecord) -> pb::Rule {
    pb::Rule {
        id: r.id.clone(),
        host: r.host.clone().unwrap_or_default(),
        method: r.method.clone(),
        path: r.path.clone(),
        permission: r.permission.clone(),
        created_at: Some(convert::timestamp(r.created_at)),
        case_insensitive: r.case_insensitive,
    }
}

#[tonic::async_trait]
impl RouteService for RouteApi {
    #[instrument(skip_all)]
    async fn create_rule(
        &self,
        req: Request<pb::CreateRuleRequest>,
    ) -> Result<Response<pb::Rule>, Status> {
        authorize(&self.0, &req, &self.0.admin.routes_write).await?;
        let r = req.get_ref();
        let rule = self
            .0
            .services
            .routes
            .create(
                &r.host,
                &r.method,
                &r.path,
                &r.permission,
                r.case_insensitive,
            )
            .await?;
        tracing::info!(rule_id = %rule.id, method = %rule.method, path = %rule.path, "route rule created");
        Ok(Response::new(rule_out(&rule)))
    }

    #[instrument(skip_all)]
    async fn list_rules(
        &self,
        req: Request<pb::ListRulesRequest>,
    ) -> Result<Response<pb::ListRulesResponse>, Status> {
        authorize(&self.0, &req, &self.0.admin.routes_read).await?;
        let r = req.get_ref();
        let (limit, after) = convert::page(r.page_size, &r.page_token, RULE_ID_PREFIX)?;
        let rows = self
            .0
            .services
            .routes
            .list(after.as_deref(), limit + 1)
            .await?;
        let (rows, next_page_token) = convert::next_page(rows, limit, |r| &r.id);
        Ok(Response::new(pb::ListRulesResponse {
            rules: rows.iter().map(rule_out).collect(),
            next_page_token,
        }))
    }

    #[instrument(skip_all)]
    async fn delete_rule(
        &self,
        req: Request<pb::DeleteRuleRequest>,
    ) -> Result<Response<pb::DeleteRuleResponse>, Status> {
        authorize(&self.0, &req, &self.0.admin.routes_write).await?;
        let id = &req.get_ref().id;
        if !valid_id(id, RULE_ID_PREFIX) {
            return Err(Error::invalid("id", "is not a rule id (rule_…)").into());
        }
        self.0.services.routes.delete(id).await?;
        tracing::info!(rule_id = %id, "route rule deleted");
        Ok(Response::new(pb::DeleteRuleResponse {}))
    }
}
