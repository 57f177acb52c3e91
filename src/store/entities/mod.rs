//! SeaORM entities. Times are unix milliseconds (`BIGINT`) on every backend,
//! so ordering and comparison never depend on a backend's date handling.

pub mod account;
pub mod account_store;
pub mod api_key;
pub mod audit_event;
pub mod auth_code;
pub mod consent_link_use;
pub mod flow_config;
pub mod integration;
pub mod integration_test;
pub mod key_notice;
pub mod key_usage;
pub mod meta;
pub mod oauth_client;
pub mod refresh_token;
pub mod reveal;
pub mod revoked_token;
pub mod route_rule;
pub mod signing_key;
pub mod signing_secret;
pub mod signing_secret_version;
pub mod webhook_delivery;
pub mod webhook_endpoint;
pub mod webhook_event;
pub mod webhook_secret;
