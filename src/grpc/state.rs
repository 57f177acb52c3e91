//! What every gRPC service shares: the domain's services and this
//! transport's own settings (built by the composition root from the config).

use std::sync::Arc;

use super::auth::AdminPermissions;
use super::ext_authz::ExtAuthzSettings;
use crate::domain::gate::Gate;
use crate::domain::services::Services;
use crate::domain::tokens::TokenManager;

pub struct GrpcState {
    pub services: Arc<Services>,
    /// `latchkey.v1.TokenService`'s manager (always loaded when serving).
    pub tokens: Arc<TokenManager>,
    pub admin: AdminPermissions,
    /// Require `admin.check` on `CheckService/Check`.
    pub check_requires_auth: bool,
    /// The header naming a store, checked against the key's account.
    pub store_header: Option<String>,
    /// Most scopes, CIDRs or origins one key may carry.
    pub max_list_items: usize,
    /// Largest request message accepted.
    pub max_message_bytes: usize,
    /// Prefix of reveal links (`https://…`); `None` = the path alone.
    pub reveal_base_url: Option<String>,
    pub ext_authz: ExtAuthzSettings,
    /// Judges the requests Envoy describes (shared with forward auth).
    pub gate: Arc<Gate>,
}
