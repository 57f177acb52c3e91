//! The gRPC server: every service, health and reflection on one router, on
//! connections set up as `conn.rs` explains.

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::transport::server::Router;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;
use tower::layer::util::{Identity, Stack};

use super::WebhookApi;
use super::audit::AuditScopeLayer;
use super::conn::{GrpcConn, TlsConn};
use super::ext_authz::{AuthorizationService, ExtAuthzApi};
use super::health::DrainingHealth;
use super::state::GrpcState;
use super::{
    AccountApi, AuditApi, CheckApi, ConsentApi, IntegrationApi, KeyApi, RateLimitApi, RevealApi,
    RouteApi, SigningApi, TokenApi, UsageApi,
};
use crate::pb;
use crate::telemetry::traces::GrpcTraceLayer;
use crate::tls::MaybeTls;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_server::RateLimitServiceServer;

/// Every service `grpc.health.v1.Health` reports on ("" = the server).
const SERVICES: [&str; 15] = [
    "",
    "latchkey.v1.TokenService",
    "latchkey.v1.AccountService",
    "latchkey.v1.KeyService",
    "latchkey.v1.CheckService",
    "latchkey.v1.RouteService",
    "envoy.service.auth.v3.Authorization",
    "latchkey.v1.SigningService",
    "latchkey.v1.IntegrationService",
    "latchkey.v1.RevealService",
    "envoy.service.ratelimit.v3.RateLimitService",
    "latchkey.v1.ConsentService",
    "latchkey.v1.UsageService",
    "latchkey.v1.AuditService",
    "latchkey.v1.WebhookService",
];

/// The liveness service: SERVING for as long as the process answers,
/// whatever the store does. Kubernetes' livenessProbe asks for it, so a
/// store outage (which turns every service above NOT_SERVING, and the
/// readinessProbe with them) takes pods out of rotation without restarting them.
pub const LIVENESS: &str = "latchkey.liveness";

/// Concurrent calls per HTTP/2 connection.
pub const MAX_STREAMS: u32 = 1024;
/// The HTTP/2 header list a call may send (decoded size).
pub const MAX_HEADER_LIST_BYTES: u32 = 16 * 1024;
const KEEPALIVE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(30);
const KEEPALIVE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// Streams a client may open and reset before the server accepts them.
const MAX_PENDING_RESETS: usize = 64;
/// Streams the server resets for a client's protocol errors before it closes the connection.
const MAX_LOCAL_RESETS: usize = 256;

/// Envoy's ext_authz and rate-limit APIs, compiled by build.rs from the
/// envoy-types package.
const ENVOY_FILE_DESCRIPTOR_SET: &[u8] =
    tonic::include_file_descriptor_set!("envoy_ext_authz_descriptor");

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("{0}")]
    Reflection(#[from] tonic_reflection::server::Error),
}

/// Sets what `grpc.health.v1.Health` answers for every service.
#[derive(Clone)]
pub struct Health(HealthReporter, Arc<tokio::sync::watch::Sender<bool>>);

impl Health {
    /// Ends every open Watch stream (and any opened later): the server drains.
    pub fn end_watches(&self) {
        self.1.send_replace(true);
    }

    pub async fn set_serving(&self, serving: bool) {
        let status = if serving {
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        };
        for service in SERVICES {
            self.0.set_service_status(service, status).await;
        }
    }

    /// Turns [`LIVENESS`] SERVING; nothing turns it off again.
    pub async fn set_live(&self) {
        self.0
            .set_service_status(LIVENESS, ServingStatus::Serving)
            .await;
    }
}

/// The assembled server, not yet listening.
pub struct Server(Router<Stack<AuditScopeLayer, Stack<GrpcTraceLayer, Identity>>>);

impl Server {
    /// Builds every service on `state`. Health starts as tonic-health's
    /// default until [`Health::set_serving`] is called.
    pub fn new(state: Arc<GrpcState>) -> Result<(Self, Health), ServerError> {
        let reporter = HealthReporter::new();
        let (ending_tx, ending) = tokio::sync::watch::channel(false);
        let health_service = DrainingHealth::server(&reporter, ending);
        let reflection = || {
            tonic_reflection::server::Builder::configure()
                .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(ENVOY_FILE_DESCRIPTOR_SET)
        };
        let reflection_v1 = reflection().build_v1()?;
        let reflection_v1alpha = reflection().build_v1alpha()?;
        let ext_authz = ExtAuthzApi::new(&state);
        let max = state.max_message_bytes;
        // HTTP/2 limits stated rather than inherited: a client may hold at
        // most MAX_STREAMS calls open per connection and send at most
        // 16 KiB of headers; idle connections are pinged and dropped when
        // the pings go unanswered; a burst of reset streams (CVE-2023-44487,
        // "rapid reset") closes the connection.
        let router = tonic::transport::Server::builder()
            .max_concurrent_streams(MAX_STREAMS)
            .http2_max_header_list_size(MAX_HEADER_LIST_BYTES)
            .http2_keepalive_interval(Some(KEEPALIVE_INTERVAL))
            .http2_keepalive_timeout(Some(KEEPALIVE_TIMEOUT))
            .http2_max_pending_accept_reset_streams(Some(MAX_PENDING_RESETS))
            .http2_max_local_error_reset_streams(Some(MAX_LOCAL_RESETS))
            .layer(GrpcTraceLayer)
            .layer(AuditScopeLayer)
            .add_service(health_service)
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha)
            .add_service(
                pb::account_service_server::AccountServiceServer::new(AccountApi(state.clone()))
                    .max_decoding_message_size(max),
            )
            .add_service(
                pb::key_service_server::KeyServiceServer::new(KeyApi(state.clone()))
                    .max_decoding_message_size(max),
            )
            .add_service(
                pb::check_service_server::CheckServiceServer::new(CheckApi(state.clone()))
                    .max_decoding_message_size(max),
            )
            .add_service(
                pb::route_service_server::RouteServiceServer::new(RouteApi(state.clone()))
                    .max_decoding_message_size(max),
            )
            .add_service(
                pb::token_service_server::TokenServiceServer::new(TokenApi(state.clone()))
                    .max_decoding_message_size(max),
            )
            .add_service(
                // Not the generated `AuthorizationServer`: this one encodes an
                // allow's principal once per key (see ext_authz/wire.rs).
                AuthorizationService::new(ext_authz, max),
            )
            .add_service(
                pb::signing_service_server::SigningServiceServer::new(SigningApi(state.clone()))
                    .max_decoding_message_size(max),
            )
            .add_service(
                RateLimitServiceServer::new(RateLimitApi(state.clone()))
                    .max_decoding_message_size(max),
            )
            .add_service(
                pb::integration_service_server::IntegrationServiceServer::new(IntegrationApi(
                    state.clone(),
                ))
                .max_decoding_message_size(max),
            )
            .add_service(
                pb::consent_service_server::ConsentServiceServer::new(ConsentApi(state.clone()))
                    .max_decoding_message_size(max),
            )
            .add_service(
                pb::usage_service_server::UsageServiceServer::new(UsageApi(state.clone()))
                    .max_decoding_message_size(max),
            )
            .add_service(
                pb::audit_service_server::AuditServiceServer::new(AuditApi(state.clone()))
                    .max_decoding_message_size(max),
            )
            .add_service(
                pb::webhook_service_server::WebhookServiceServer::new(WebhookApi(state.clone()))
                    .max_decoding_message_size(max),
            )
            .add_service(
                pb::reveal_service_server::RevealServiceServer::new(RevealApi(state))
                    .max_decoding_message_size(max),
            );
        Ok((Self(router), Health(reporter, Arc::new(ending_tx))))
    }

    /// Serves the TLS connections `incoming` hands over (see `crate::tls`)
    /// until `shutdown` completes, then lets in-flight calls finish.
    pub async fn serve_tls(
        self,
        incoming: tokio::sync::mpsc::Receiver<(MaybeTls, std::net::SocketAddr)>,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), tonic::transport::Error> {
        self.0
            .serve_with_incoming_shutdown(
                tokio_stream::wrappers::ReceiverStream::new(incoming)
                    .map(|(io, _)| Ok::<_, std::io::Error>(TlsConn(io))),
                shutdown,
            )
            .await
    }

    /// Serves on `listener` until `shutdown` completes, then lets in-flight
    /// calls finish.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), tonic::transport::Error> {
        self.0
            .serve_with_incoming_shutdown(
                // TCP_NODELAY, and small responses batched into shared writes: see conn.rs.
                TcpListenerStream::new(listener).map(|conn| conn.map(GrpcConn::new)),
                shutdown,
            )
            .await
    }
}
