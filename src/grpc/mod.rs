//! gRPC adapters: parse, call one domain method, map the result. Each
//! service holds the shared [`GrpcState`]; [`Server`] assembles them with
//! health and reflection; `status.rs` is the one error table.

pub mod account;
pub mod audit;
pub mod auth;
pub mod check;
pub mod conn;
pub mod consent;
pub mod convert;
pub mod ext_authz;
mod health;
pub mod integration;
pub mod key;
pub mod ratelimit;
pub mod route;
pub mod server;
pub mod signing;
pub mod state;
pub mod status;
pub mod token;
pub mod usage;
pub mod webhook;

pub use account::AccountApi;
pub use audit::AuditApi;
pub use check::CheckApi;
pub use consent::ConsentApi;
pub use ext_authz::ExtAuthzApi;
pub use integration::IntegrationApi;
pub use key::KeyApi;
pub use ratelimit::RateLimitApi;
pub use route::RouteApi;
pub use server::{Health, Server};
pub use signing::{RevealApi, SigningApi};
pub use state::GrpcState;
pub use token::TokenApi;
pub use usage::UsageApi;
pub use webhook::WebhookApi;
