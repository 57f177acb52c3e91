//! `Services`: the domain's managers and the clock, one instance per process.
//!
//! What both `serve` and the one-shot CLI commands build (the composition
//! root, `app`, does); each adapter holds it beside its own settings
//! (`grpc::GrpcState`, `http::HttpState`), as Kanidm's `ServerState` holds
//! its query engines.

use std::sync::Arc;

use super::accounts::AccountManager;
use super::analytics::Analytics;
use super::audit::AuditManager;
use super::check::Checker;
use super::keys::KeyManager;
use super::limits::{Descriptors, KeyLimits};
use super::resolver::KeyResolver;
use super::reveal::RevealManager;
use super::routes::RouteTable;
use super::signing::SigningManager;
use super::tokens::TokenManager;
use super::usage::UsageRecorder;
use super::vault::integrations::IntegrationManager;
use super::webhooks::WebhookManager;
use crate::ports::Clock;

pub struct Services {
    pub accounts: AccountManager,
    pub keys: KeyManager,
    pub routes: RouteTable,
    pub checker: Checker,
    pub signing: Arc<SigningManager>,
    pub reveals: RevealManager,
    /// Stored remote credentials and their connection tests.
    pub integrations: Arc<IntegrationManager>,
    /// Flow configurations and signed consent links.
    pub consent: Arc<super::consent::ConsentManager>,
    /// The audit trail: reading, outcome batches (`append_batch`), retention.
    pub audit: Arc<AuditManager>,
    /// Event webhooks: the outbox (`enqueue`), endpoints, deliveries.
    pub webhooks: Arc<WebhookManager>,
    /// JWT access tokens and OAuth2 clients. `None` in one-shot CLI
    /// commands: the token issuer is the bound HTTP address, and they bind none.
    pub tokens: Option<Arc<TokenManager>>,
    /// The principal cache every manager invalidates.
    pub resolver: Arc<KeyResolver>,
    /// Last-used times waiting to be written.
    pub usage: Arc<UsageRecorder>,
    pub clock: Arc<dyn Clock>,
    /// Per-key limits (also enforced by `checker`) and their counters.
    pub limits: Arc<KeyLimits>,
    /// Descriptor limits for Envoy's rate-limit service, on the same counters.
    pub descriptors: Arc<Descriptors>,
    /// Outcome recording, usage analytics and the least-privilege advisor.
    pub analytics: Arc<Analytics>,
}
