//! One integration-test binary. Each module proves one part of the service
//! against real servers; store-facing tests run on SQLite and PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

mod accounts;
mod admin_auth;
mod advisor;
mod audit;
mod bad_input;
mod binary;
mod check;
mod consent;
mod explain;
mod ext_authz;
mod forward_auth;
mod integrations;
mod keys;
mod layers;
mod limits;
mod limits_http;
mod lookup;
mod master_keys;
mod mmdb;
mod observe;
mod outage;
mod replicas;
mod server;
mod signing;
mod store_pool;
mod throwaway;
mod tokens;
mod usage;
mod usage_analytics;
mod webhook_api;
mod webhook_events;
mod webhooks;
