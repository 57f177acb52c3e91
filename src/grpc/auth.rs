//! Management calls carry `authorization: Bearer <admin token>` metadata.
//! Admin tokens are Latchkey keys of the operator account holding `admin.*`
//! scopes, decided by the same engine as every other credential.

use tonic::Request;

use super::state::GrpcState;
use crate::domain::check::CheckInput;
use crate::domain::permissions::Permission;
use crate::domain::reason::Reason;

/// Admin permissions, parsed once.
pub struct AdminPermissions {
    pub accounts_read: Permission<'static>,
    pub accounts_write: Permission<'static>,
    pub live_mode_review: Permission<'static>,
    pub keys_read: Permission<'static>,
    pub keys_write: Permission<'static>,
    pub routes_read: Permission<'static>,
    pub routes_write: Permission<'static>,
    pub tokens_read: Permission<'static>,
    pub tokens_write: Permission<'static>,
    pub check: Permission<'static>,
    pub signing_read: Permission<'static>,
    pub signing_write: Permission<'static>,
    pub signing_sign: Permission<'static>,
    pub signing_verify: Permission<'static>,
    pub integrations_read: Permission<'static>,
    pub integrations_write: Permission<'static>,
    pub integrations_use: Permission<'static>,
    pub check_explain: Permission<'static>,
    pub usage_read: Permission<'static>,
    pub audit_read: Permission<'static>,
    pub webhooks_read: Permission<'static>,
    pub webhooks_write: Permission<'static>,
}

impl AdminPermissions {
    pub fn new() -> Result<Self, crate::domain::permissions::PermissionError> {
        Ok(Self {
            accounts_read: Permission::parse("admin.accounts.read")?,
            accounts_write: Permission::parse("admin.accounts.write")?,
            live_mode_review: Permission::parse("admin.live_mode.review")?,
            keys_read: Permission::parse("admin.keys.read")?,
            keys_write: Permission::parse("admin.keys.write")?,
            routes_read: Permission::parse("admin.routes.read")?,
            routes_write: Permission::parse("admin.routes.write")?,
            tokens_read: Permission::parse("admin.tokens.read")?,
            tokens_write: Permission::parse("admin.tokens.write")?,
            check: Permission::parse("admin.check")?,
            signing_read: Permission::parse("admin.signing.read")?,
            signing_write: Permission::parse("admin.signing.write")?,
            signing_sign: Permission::parse("admin.signing.sign")?,
            signing_verify: Permission::parse("admin.signing.verify")?,
            integrations_read: Permission::parse("admin.integrations.read")?,
            integrations_write: Permission::parse("admin.integrations.write")?,
            integrations_use: Permission::parse("admin.integrations.use")?,
            check_explain: Permission::parse("admin.check.explain")?,
            usage_read: Permission::parse("admin.usage.read")?,
            audit_read: Permission::parse("admin.audit.read")?,
            webhooks_read: Permission::parse("admin.webhooks.read")?,
            webhooks_write: Permission::parse("admin.webhooks.write")?,
        })
    }
}

/// Why a management call's admin token did not pass (`grpc/status.rs` maps it).
#[derive(Debug)]
pub enum AdminAuthError {
    /// No `authorization` metadata.
    Missing,
    NotAscii,
    /// The decision could not be made (the store is unreachable).
    Undecided,
    /// The token does not authenticate: unknown, revoked, expired…
    Rejected(Reason),
    /// A valid token without this permission.
    NotGranted(String),
}

pub async fn authorize<T>(
    state: &GrpcState,
    request: &Request<T>,
    permission: &Permission<'_>,
) -> Result<(), AdminAuthError> {
    let Some(value) = request.metadata().get("authorization") else {
        return Err(AdminAuthError::Missing);
    };
    let Ok(credential) = value.to_str() else {
        return Err(AdminAuthError::NotAscii);
    };
    let decision = state
        .services
        .checker
        .decide(CheckInput {
            credential,
            permission: Some(permission),
            peer_ip: request.remote_addr().map(|a| a.ip()),
            ..CheckInput::default()
        })
        .await;
    match decision.reason {
        Reason::Allowed => {
            // Who the audit events of this call's changes name.
            if let Some(key) = &decision.key {
                crate::domain::audit::set_caller(super::audit::caller_of(request, &key.record.id));
            }
            Ok(())
        }
        Reason::InternalError => Err(AdminAuthError::Undecided),
        // An address past its failed-authentication budget is refused
        // before its token is even looked at: rejected, not "not granted".
        r if r.is_authentication_failure() || r == Reason::TooManyFailures => {
            Err(AdminAuthError::Rejected(r))
        }
        _ => Err(AdminAuthError::NotGranted(permission.to_string())),
    }
}
