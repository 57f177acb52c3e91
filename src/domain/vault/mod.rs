//! Secrets the service must read back: master-key rotation over every sealed
//! value.

pub mod integrations;
pub mod kinds;
pub mod master_keys;
