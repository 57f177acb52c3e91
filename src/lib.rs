//! Latchkey: a gRPC authorization service. API keys and the Check decision,
//! Envoy ext_authz, OAuth2 with JWT access tokens, and HMAC signatures
//! (webhooks, signed URLs, signed requests).
//!
//! Data flows one way: `grpc`/`http`/`cli` adapters call `domain` (through
//! `domain::services::Services`), which depends only on the traits in
//! `ports`; `store` implements those traits. `app` and `config` are the
//! composition root: they build the domain's settings and services and each
//! adapter's state. `crypto`, `telemetry` and `tls` are leaves.

pub mod app;
pub mod cli;
pub mod config;
pub mod crypto;
pub mod domain;
pub mod geoip;
pub mod grpc;
pub mod http;
pub mod outbound;
pub mod ports;
pub mod store;
pub mod telemetry;
pub mod tls;

/// Generated protobuf and gRPC types for `latchkey.v1`.
pub mod pb {
    #![allow(clippy::all, clippy::pedantic, missing_docs)]
    tonic::include_proto!("latchkey.v1");

    /// Encoded descriptor set of every `latchkey.v1` file (for reflection).
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        tonic::include_file_descriptor_set!("latchkey_descriptor");
}
