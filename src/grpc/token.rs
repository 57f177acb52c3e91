//! `latchkey.v1.TokenService`.

use std::sync::Arc;

use tonic::{Request, Response, Status};
use tracing::instrument;

use super::auth::authorize;
use super::convert;
use super::state::GrpcState;
use crate::domain::error::Error;
use crate::domain::model::ClientRecord;
use crate::domain::tokens::{CLIENT_ID_PREFIX, IssuedTokens};
use crate::pb;
use crate::pb::token_service_server::TokenService;
use crate::telemetry::metrics::{Grant, metrics};

pub struct TokenApi(pub Arc<GrpcState>);

fn client_out(c: &ClientRecord) -> pb::Client {
    pb::Client {
        client_id: c.client_id.clone(),
        account_id: c.account_id.clone(),
        mode: convert::mode_out(c.mode).into(),
        name: c.name.clone(),
        redirect_uris: c.redirect_uris.clone(),
        grant_types: c.grant_types.clone(),
        scopes: c.scopes.clone(),
        created_at: Some(convert::timestamp(c.created_at)),
        signing_secret_id: c.signing_secret_id.clone().unwrap_or_default(),
    }
}

fn tokens_out(t: IssuedTokens) -> pb::TokenResponse {
    pb::TokenResponse {
        access_token: t.access_token.expose().clone(),
        token_type: t.token_type.to_owned(),
        expires_in: u32::try_from(t.expires_in).unwrap_or(u32::MAX),
        refresh_token: t
            .refresh_token
            .as_ref()
            .map(|r| r.expose().clone())
            .unwrap_or_default(),
        scope: t.scope,
    }
}

#[tonic::async_trait]
impl TokenService for TokenApi {
    #[instrument(skip_all)]
    async fn create_client(
        &self,
        req: Request<pb::CreateClientRequest>,
    ) -> Result<Response<pb::CreateClientResponse>, Status> {
        authorize(&self.0, &req, &self.0.admin.tokens_write).await?;
        let r = req.get_ref();
        let account_id = convert::account_id("account_id", &r.account_id)?;
        let mode = convert::required_mode("mode", r.mode)?;
        // Checked before the client exists, so that a bad one changes
        // nothing; then the client is written once, with its link.
        let signing_secret_id = self
            .0
            .services
            .signing
            .for_client(&account_id, mode, &r.signing_secret_id)
            .await?;
        let (client, secret) = self
            .0
            .tokens
            .create_client(
                &account_id,
                mode,
                &r.name,
                &r.redirect_uris,
                &r.grant_types,
                &r.scopes,
                signing_secret_id,
            )
            .await?;
        tracing::info!(client_id = %client.client_id, account_id = %client.account_id, "OAuth2 client created");
        let (client_secret, reveal) = if r.reveal_link {
            let link = self
                .0
                .services
                .reveals
                .create(&secret, "oauth_client_secret", &client.client_id)
                .await?;
            (
                String::new(),
                Some(super::signing::reveal_out(&self.0, &link)),
            )
        } else {
            (secret.expose().clone(), None)
        };
        Ok(Response::new(pb::CreateClientResponse {
            client: Some(client_out(&client)),
            client_secret,
            reveal,
        }))
    }

    #[instrument(skip_all)]
    async fn get_client(
        &self,
        req: Request<pb::GetClientRequest>,
    ) -> Result<Response<pb::Client>, Status> {
        authorize(&self.0, &req, &self.0.admin.tokens_read).await?;
        let client = self.0.tokens.get_client(&req.get_ref().client_id).await?;
        Ok(Response::new(client_out(&client)))
    }

    #[instrument(skip_all)]
    async fn list_clients(
        &self,
        req: Request<pb::ListClientsRequest>,
    ) -> Result<Response<pb::ListClientsResponse>, Status> {
        authorize(&self.0, &req, &self.0.admin.tokens_read).await?;
        let r = req.get_ref();
        let account = if r.account_id.is_empty() {
            None
        } else {
            Some(convert::account_id("account_id", &r.account_id)?)
        };
        let (limit, after) = convert::page(r.page_size, &r.page_token, CLIENT_ID_PREFIX)?;
        let rows = self
            .0
            .tokens
            .list_clients(account.as_deref(), after.as_deref(), limit + 1)
            .await?;
        let (rows, next_page_token) = convert::next_page(rows, limit, |c| &c.client_id);
        Ok(Response::new(pb::ListClientsResponse {
            clients: rows.iter().map(client_out).collect(),
            next_page_token,
        }))
    }

    #[instrument(skip_all)]
    async fn update_client(
        &self,
        req: Request<pb::UpdateClientRequest>,
    ) -> Result<Response<pb::Client>, Status> {
        authorize(&self.0, &req, &self.0.admin.tokens_write).await?;
        let r = req.get_ref();
        let mut client = self.0.tokens.get_client(&r.client_id).await?;
        if let Some(id) = &r.signing_secret_id {
            let id = self
                .0
                .services
                .signing
                .for_client(&client.account_id, client.mode, id)
                .await?;
            self.0
                .services
                .consent
                .set_client_signing_secret(&client, id.as_deref())
                .await?;
            client.signing_secret_id = id;
        }
        tracing::info!(client_id = %client.client_id, "OAuth2 client updated");
        Ok(Response::new(client_out(&client)))
    }

    #[instrument(skip_all)]
    async fn delete_client(
        &self,
        req: Request<pb::DeleteClientRequest>,
    ) -> Result<Response<pb::DeleteClientResponse>, Status> {
        authorize(&self.0, &req, &self.0.admin.tokens_write).await?;
        let id = &req.get_ref().client_id;
        self.0.tokens.delete_client(id).await?;
        tracing::info!(client_id = %id, "OAuth2 client deleted");
        Ok(Response::new(pb::DeleteClientResponse {}))
    }

    /// Authenticated by the client secret it carries.
    #[instrument(skip_all)]
    async fn issue_token(
        &self,
        req: Request<pb::IssueTokenRequest>,
    ) -> Result<Response<pb::TokenResponse>, Status> {
        let r = req.get_ref();
        let client = self
            .0
            .tokens
            .authenticate_client(&r.client_id, &r.client_secret)
            .await?;
        let issued = self.0.tokens.client_credentials(&client, &r.scopes).await?;
        metrics().token_issued(Grant::ClientCredentials);
        Ok(Response::new(tokens_out(issued)))
    }

    /// Authenticated by the API key it carries.
    #[instrument(skip_all)]
    async fn exchange_secret(
        &self,
        req: Request<pb::ExchangeSecretRequest>,
    ) -> Result<Response<pb::TokenResponse>, Status> {
        let r = req.get_ref();
        let issued = self.0.tokens.exchange_secret(&r.api_key, &r.scopes).await?;
        metrics().token_issued(Grant::KeyExchange);
        Ok(Response::new(tokens_out(issued)))
    }

    #[instrument(skip_all)]
    async fn introspect(
        &self,
        req: Request<pb::IntrospectRequest>,
    ) -> Result<Response<pb::IntrospectResponse>, Status> {
        authorize(&self.0, &req, &self.0.admin.tokens_read).await?;
        let Some(i) = self.0.tokens.introspect(&req.get_ref().token).await? else {
            return Ok(Response::new(pb::IntrospectResponse::default()));
        };
        Ok(Response::new(pb::IntrospectResponse {
            active: true,
            scope: i.scope,
            client_id: i.client_id,
            sub: i.sub,
            token_type: i.token_type.to_owned(),
            exp: i.exp,
            iat: i.iat,
            iss: i.iss,
            aud: i.aud,
            jti: i.jti,
            account_id: i.account_id,
        }))
    }

    #[instrument(skip_all)]
    async fn revoke_token(
        &self,
        req: Request<pb::RevokeTokenRequest>,
    ) -> Result<Response<pb::RevokeTokenResponse>, Status> {
        authorize(&self.0, &req, &self.0.admin.tokens_write).await?;
        if req.get_ref().token.is_empty() {
            return Err(Error::invalid("token", "must not be empty").into());
        }
        self.0.tokens.revoke(&req.get_ref().token, None).await?;
        Ok(Response::new(pb::RevokeTokenResponse {}))
    }

    #[instrument(skip_all)]
    async fn get_jwks(
        &self,
        _req: Request<pb::GetJwksRequest>,
    ) -> Result<Response<pb::GetJwksResponse>, Status> {
        // Public keys: the same document the HTTP side serves to anyone.
        Ok(Response::new(pb::GetJwksResponse {
            jwks_json: self.0.tokens.jwks_json(),
        }))
    }

    #[instrument(skip_all)]
    async fn rotate_signing_key(
        &self,
        req: Request<pb::RotateSigningKeyRequest>,
    ) -> Result<Response<pb::SigningKey>, Status> {
        authorize(&self.0, &req, &self.0.admin.tokens_write).await?;
        let key = self
            .0
            .tokens
            .rotate_signing_key(Some(&req.get_ref().algorithm))
            .await?;
        Ok(Response::new(pb::SigningKey {
            kid: key.kid,
            algorithm: key.algorithm,
            created_at: Some(convert::timestamp(key.created_at)),
        }))
    }
}
