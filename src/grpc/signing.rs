//! `latchkey.v1.SigningService` and `latchkey.v1.RevealService`. The wire
//! checks for these messages live here rather than in `convert.rs`, beside
//! the only handlers that use them.

use std::sync::Arc;

use tonic::{Request, Response, Status};
use tracing::instrument;

use super::auth::authorize;
use super::convert::{self, timestamp};
use super::state::GrpcState;
use crate::domain::error::{Error, Result as DomainResult};
use crate::domain::keys::KEY_ID_PREFIX;
use crate::domain::model::UrlForm;
use crate::domain::model::{
    Millis, Mode, SecretStatus, SecretVersionRecord, SigningSecretRecord, valid_id,
};
use crate::domain::reveal::RevealLink;
use crate::domain::signing::{SECRET_ID_PREFIX, SecretWithVersions, Verification, valid_secret_id};
use crate::pb;
use crate::pb::reveal_service_server::RevealService;
use crate::pb::signing_service_server::SigningService;

/// Longest URL SignUrl / VerifyUrl accept.
const MAX_URL_LEN: usize = 8192;

pub struct SigningApi(pub Arc<GrpcState>);
pub struct RevealApi(pub Arc<GrpcState>);

fn secret_id(field: &'static str, id: &str) -> DomainResult<String> {
    if id.is_empty() {
        return Err(Error::invalid(field, "is required"));
    }
    if !valid_secret_id(id) {
        return Err(Error::invalid(field, "is not a signing secret id (sig_…)"));
    }
    Ok(id.to_owned())
}

fn url_in(url: &str) -> DomainResult<&str> {
    if url.is_empty() {
        return Err(Error::invalid("url", "is required"));
    }
    if url.len() > MAX_URL_LEN {
        return Err(Error::invalid(
            "url",
            format!("must be at most {MAX_URL_LEN} bytes"),
        ));
    }
    if url.chars().any(|c| c.is_control() || c == ' ') {
        return Err(Error::invalid(
            "url",
            "must not contain spaces or control characters",
        ));
    }
    Ok(url)
}

/// `url_form` from the wire; `None` when unspecified.
fn url_form_in(field: &'static str, v: i32) -> DomainResult<Option<UrlForm>> {
    match pb::SignedUrlForm::try_from(v) {
        Ok(pb::SignedUrlForm::Unspecified) => Ok(None),
        Ok(pb::SignedUrlForm::Seed) => Ok(Some(UrlForm::Seed)),
        Ok(pb::SignedUrlForm::Strict) => Ok(Some(UrlForm::Strict)),
        Err(_) => Err(Error::invalid(
            field,
            "is not a signed-URL form (SIGNED_URL_FORM_SEED or SIGNED_URL_FORM_STRICT)",
        )),
    }
}

fn url_form_out(f: UrlForm) -> pb::SignedUrlForm {
    match f {
        UrlForm::Seed => pb::SignedUrlForm::Seed,
        UrlForm::Strict => pb::SignedUrlForm::Strict,
    }
}

fn mode_out(m: Mode) -> pb::Mode {
    match m {
        Mode::Test => pb::Mode::Test,
        Mode::Live => pb::Mode::Live,
    }
}

fn secret_out(s: &SigningSecretRecord, versions: &[SecretVersionRecord]) -> pb::SigningSecret {
    pb::SigningSecret {
        id: s.id.clone(),
        account_id: s.account_id.clone(),
        mode: mode_out(s.mode).into(),
        name: s.name.clone(),
        status: match s.status {
            SecretStatus::Active => pb::SecretStatus::Active,
            SecretStatus::Revoked => pb::SecretStatus::Revoked,
        }
        .into(),
        current_version: s.current_version,
        url_form: url_form_out(s.url_form).into(),
        created_at: Some(timestamp(s.created_at)),
        versions: versions
            .iter()
            .map(|v| pb::SecretVersion {
                version: v.version,
                created_at: Some(timestamp(v.created_at)),
                retired_at: v.retired_at.map(timestamp),
                overlap_ends_at: v.overlap_ends_at.map(timestamp),
            })
            .collect(),
    }
}

fn full_out(s: &SecretWithVersions) -> pb::SigningSecret {
    secret_out(&s.secret, &s.versions)
}

fn verify_out(v: &Verification) -> pb::VerifyResponse {
    pb::VerifyResponse {
        valid: v.valid(),
        reason: v.reason.code().to_owned(),
        version: v.version.unwrap_or_default(),
        message: v.message.clone(),
    }
}

/// A reveal link as the wire shows it (also used by `KeyService/RotateKey`).
pub fn reveal_out(state: &GrpcState, link: &RevealLink) -> pb::RevealLink {
    let path = format!("/reveal/{}", link.token.expose());
    pb::RevealLink {
        token: link.token.expose().clone(),
        url: match &state.reveal_base_url {
            Some(base) => format!("{base}{path}"),
            None => path,
        },
        expires_at: Some(timestamp(link.expires_at)),
    }
}

fn expires(ms: Millis) -> String {
    crate::domain::signing::formats::format_iso8601(ms)
}

#[tonic::async_trait]
impl SigningService for SigningApi {
    #[instrument(skip_all)]
    async fn create_secret(
        &self,
        req: Request<pb::CreateSecretRequest>,
    ) -> Result<Response<pb::CreateSecretResponse>, Status> {
        authorize(&self.0, &req, &self.0.admin.signing_write).await?;
        let r = req.get_ref();
        let account = convert::account_id("account_id", &r.account_id)?;
        let mode = convert::mode_in("mode", r.mode).and_then(|m| {
            m.ok_or_else(|| Error::invalid("mode", "is required (MODE_TEST or MODE_LIVE)"))
        })?;
        let url_form = url_form_in("url_form", r.url_form)?.unwrap_or_default();
        let issued = self
            .0
            .services
            .signing
            .create_as(&account, mode, &r.name, url_form)
            .await?;
        tracing::info!(secret_id = %issued.secret.secret.id, account_id = %account, "signing secret created");
        Ok(Response::new(pb::CreateSecretResponse {
            secret_id: issued.secret.secret.id.clone(),
            secret: issued.plaintext.expose().clone(),
            signing_secret: Some(full_out(&issued.secret)),
        }))
    }

    #[instrument(skip_all)]
    async fn rotate_secret(
        &self,
        req: Request<pb::RotateSecretRequest>,
    ) -> Result<Response<pb::RotateSecretResponse>, Status> {
        authorize(&self.0, &req, &self.0.admin.signing_write).await?;
        let r = req.get_ref();
        let id = secret_id("secret_id", &r.secret_id)?;
        let issued = self
            .0
            .services
            .signing
            .rotate(&id, r.overlap_seconds)
            .await?;
        tracing::info!(secret_id = %id, version = issued.secret.secret.current_version, "signing secret rotated");
        let (secret, reveal) = if r.reveal_link {
            let link = self
                .0
                .services
                .reveals
                .create(&issued.plaintext, "signing_secret", &id)
                .await?;
            tracing::info!(secret_id = %id, expires = %expires(link.expires_at), "reveal link issued");
            (String::new(), Some(reveal_out(&self.0, &link)))
        } else {
            (issued.plaintext.expose().clone(), None)
        };
        Ok(Response::new(pb::RotateSecretResponse {
            secret,
            signing_secret: Some(full_out(&issued.secret)),
            reveal,
        }))
    }

    #[instrument(skip_all)]
    async fn list_secrets(
        &self,
        req: Request<pb::ListSecretsRequest>,
    ) -> Result<Response<pb::ListSecretsResponse>, Status> {
        authorize(&self.0, &req, &self.0.admin.signing_read).await?;
        let r = req.get_ref();
        let account = if r.account_id.is_empty() {
            None
        } else {
            Some(convert::account_id("account_id", &r.account_id)?)
        };
        let mode = convert::mode_in("mode", r.mode)?;
        let (limit, after) = convert::page(r.page_size, &r.page_token, SECRET_ID_PREFIX)?;
        let rows = self
            .0
            .services
            .signing
            .list(account.as_deref(), mode, after.as_deref(), limit + 1)
            .await?;
        let (rows, next_page_token) = convert::next_page(rows, limit, |s| &s.id);
        Ok(Response::new(pb::ListSecretsResponse {
            secrets: rows.iter().map(|s| secret_out(s, &[])).collect(),
            next_page_token,
        }))
    }

    #[instrument(skip_all)]
    async fn revoke_secret(
        &self,
        req: Request<pb::RevokeSecretRequest>,
    ) -> Result<Response<pb::SigningSecret>, Status> {
        authorize(&self.0, &req, &self.0.admin.signing_write).await?;
        let id = secret_id("secret_id", &req.get_ref().secret_id)?;
        let s = self.0.services.signing.revoke(&id).await?;
        tracing::info!(secret_id = %id, "signing secret revoked");
        Ok(Response::new(full_out(&s)))
    }

    #[instrument(skip_all)]
    async fn update_secret(
        &self,
        req: Request<pb::UpdateSecretRequest>,
    ) -> Result<Response<pb::SigningSecret>, Status> {
        authorize(&self.0, &req, &self.0.admin.signing_write).await?;
        let r = req.get_ref();
        let id = secret_id("secret_id", &r.secret_id)?;
        let url_form = url_form_in("url_form", r.url_form)?.ok_or_else(|| {
            Error::invalid(
                "url_form",
                "is required (SIGNED_URL_FORM_SEED or SIGNED_URL_FORM_STRICT)",
            )
        })?;
        let s = self.0.services.signing.set_url_form(&id, url_form).await?;
        tracing::info!(secret_id = %id, url_form = url_form.tag(), "signing secret updated");
        Ok(Response::new(full_out(&s)))
    }

    #[instrument(skip_all)]
    async fn sign(
        &self,
        req: Request<pb::SignRequest>,
    ) -> Result<Response<pb::SignResponse>, Status> {
        authorize(&self.0, &req, &self.0.admin.signing_sign).await?;
        let r = req.get_ref();
        let id = secret_id("secret_id", &r.secret_id)?;
        let header = self.0.services.signing.sign(&id, &r.payload).await?;
        Ok(Response::new(pb::SignResponse { header }))
    }

    #[instrument(skip_all)]
    async fn verify(
        &self,
        req: Request<pb::VerifyRequest>,
    ) -> Result<Response<pb::VerifyResponse>, Status> {
        authorize(&self.0, &req, &self.0.admin.signing_verify).await?;
        let r = req.get_ref();
        let id = secret_id("secret_id", &r.secret_id)?;
        let v = self
            .0
            .services
            .signing
            .verify(&id, &r.payload, &r.header)
            .await?;
        Ok(Response::new(verify_out(&v)))
    }

    #[instrument(skip_all)]
    async fn sign_url(
        &self,
        req: Request<pb::SignUrlRequest>,
    ) -> Result<Response<pb::SignUrlResponse>, Status> {
        authorize(&self.0, &req, &self.0.admin.signing_sign).await?;
        let r = req.get_ref();
        let id = secret_id("secret_id", &r.secret_id)?;
        let url = url_in(&r.url)?;
        let url = self.0.services.signing.sign_url(&id, url).await?;
        Ok(Response::new(pb::SignUrlResponse { url }))
    }

    #[instrument(skip_all)]
    async fn verify_url(
        &self,
        req: Request<pb::VerifyUrlRequest>,
    ) -> Result<Response<pb::VerifyResponse>, Status> {
        authorize(&self.0, &req, &self.0.admin.signing_verify).await?;
        let r = req.get_ref();
        let id = secret_id("secret_id", &r.secret_id)?;
        let url = url_in(&r.url)?;
        let v = self.0.services.signing.verify_url(&id, url).await?;
        Ok(Response::new(verify_out(&v)))
    }

    #[instrument(skip_all)]
    async fn verify_webhook(
        &self,
        req: Request<pb::VerifyWebhookRequest>,
    ) -> Result<Response<pb::VerifyResponse>, Status> {
        authorize(&self.0, &req, &self.0.admin.signing_verify).await?;
        let r = req.get_ref();
        let id = secret_id("secret_id", &r.secret_id)?;
        let v = self
            .0
            .services
            .signing
            .verify_webhook(&id, &r.body, &r.headers)
            .await?;
        Ok(Response::new(verify_out(&v)))
    }

    #[instrument(skip_all)]
    async fn set_key_signing(
        &self,
        req: Request<pb::SetKeySigningRequest>,
    ) -> Result<Response<pb::SetKeySigningResponse>, Status> {
        authorize(&self.0, &req, &self.0.admin.signing_write).await?;
        let r = req.get_ref();
        if !valid_id(&r.key_id, KEY_ID_PREFIX) {
            return Err(Error::invalid("key_id", "is not a key id (key_…)").into());
        }
        let secret = if r.secret_id.is_empty() {
            None
        } else {
            Some(secret_id("secret_id", &r.secret_id)?)
        };
        let key = self
            .0
            .services
            .signing
            .require_signed_requests(&r.key_id, secret.as_deref())
            .await?;
        tracing::info!(key_id = %key.id, signing_secret_id = ?key.signing_secret_id, "key signing requirement changed");
        Ok(Response::new(pb::SetKeySigningResponse {
            key_id: key.id,
            signing_secret_id: key.signing_secret_id.unwrap_or_default(),
        }))
    }
}

#[tonic::async_trait]
impl RevealService for RevealApi {
    #[instrument(skip_all)]
    async fn reveal_secret(
        &self,
        req: Request<pb::RevealSecretRequest>,
    ) -> Result<Response<pb::RevealSecretResponse>, Status> {
        let revealed = self.0.services.reveals.redeem(&req.get_ref().token).await?;
        tracing::info!(kind = %revealed.kind, subject_id = %revealed.subject_id, "reveal link redeemed");
        Ok(Response::new(pb::RevealSecretResponse {
            secret: revealed.secret.expose().clone(),
            kind: revealed.kind,
            subject_id: revealed.subject_id,
        }))
    }
}
