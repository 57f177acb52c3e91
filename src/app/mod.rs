//! Composition root: builds the domain's services and each adapter's state
//! from the validated settings, starts gRPC and HTTP, runs the background
//! tasks, and drains on shutdown.
//!
//! - `build`: the store and the services (also for one-shot CLI commands);
//! - `start`: listeners, adapters and the running server;
//! - `global_limits`: rate limits shared across replicas through Redis;
//! - `tasks`: store health, usage flushing, route and signing-key reloads;
//! - `shutdown`: the signal and the drain;
//! - `master_key`: where `LATCHKEY_MASTER_KEY` comes from, and its check.

mod build;
mod global_limits;
pub mod master_key;
mod observe;
mod secure;
mod shutdown;
mod start;
mod tasks;
mod usage_tasks;

use std::net::SocketAddr;

use crate::ports::StoreError;

pub use build::{FeatureStores, Parts, build, offline_services, open_store};
pub use shutdown::shutdown_signal;
pub use start::{Running, start};

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Domain(#[from] crate::domain::error::Error),
    #[error("cannot create data directory {path}: {source}")]
    DataDir {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("master key: {0}")]
    MasterKey(#[from] master_key::MasterKeyError),
    #[error("{0}")]
    Server(String),
}
