//! Decisions, keys and accounts. Pure: no tonic, axum or sea_orm here; the
//! outside world comes in through `crate::ports`.

pub mod accounts;
pub mod advisor;
pub mod analytics;
pub mod audit;
pub mod cache;
pub mod check;
pub mod consent;
pub mod credential;
pub mod error;
pub mod gate;
pub mod keys;
pub mod limits;
pub mod loader;
pub mod model;
pub mod network;
pub mod observe;
pub mod origin;
pub mod outcomes;
pub mod pace;
pub mod permissions;
pub mod reason;
pub mod resolver;
pub mod reveal;
pub mod routes;
pub mod services;
pub mod signing;
pub mod tokens;
pub mod usage;
pub mod usage_reports;
pub mod vault;
pub mod webhooks;
