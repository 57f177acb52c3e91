//! Latchkey: a gRPC authorization service. API keys, the Check decision,
//! and (in later work) Envoy ext_authz, OAuth2 and HMAC signatures.
//!
//! Data flows one way: `grpc`/`http`/`cli` adapters call `domain`, which
//! depends only on the traits in `ports`; `store` implements those traits.
#![forbid(unsafe_code)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod app;
pub mod cli;
pub mod config;
pub mod crypto;
pub mod domain;
pub mod grpc;
pub mod http;
pub mod ports;
pub mod store;
pub mod telemetry;

/// Generated protobuf and gRPC types for `latchkey.v1`.
pub mod pb {
    #![allow(clippy::all, clippy::pedantic, missing_docs)]
    tonic::include_proto!("latchkey.v1");

    /// Encoded descriptor set of every `latchkey.v1` file (for reflection).
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        tonic::include_file_descriptor_set!("latchkey_descriptor");
}
