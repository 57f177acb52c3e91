//! gRPC adapters: parse, call one domain method, map the result.

pub mod account;
pub mod auth;
pub mod check;
pub mod convert;
pub mod key;
pub mod status;

pub use account::AccountApi;
pub use check::CheckApi;
pub use key::KeyApi;
