//! The records every port speaks, one file per aggregate. Nothing here
//! imports other domain modules: `ports` and `store` may depend on this alone.

/// Unix time in milliseconds. The store keeps times in this form on every backend.
pub type Millis = i64;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    Test,
    Live,
}

impl Mode {
    /// The tag used in key strings and the store.
    pub fn tag(self) -> &'static str {
        match self {
            Mode::Test => "test",
            Mode::Live => "live",
        }
    }

    pub fn from_tag(tag: &str) -> Option<Self> {
        match tag {
            "test" => Some(Mode::Test),
            "live" => Some(Mode::Live),
            _ => None,
        }
    }
}

/// A new id: a readable prefix and a time-ordered UUIDv7, so ids sort by creation.
pub fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::now_v7().simple())
}

/// Is `id` shaped like one of ours (`<prefix>_<32 hex>`)? Checked before any lookup.
pub fn valid_id(id: &str, prefix: &str) -> bool {
    id.strip_prefix(prefix)
        .and_then(|rest| rest.strip_prefix('_'))
        .is_some_and(|hex| hex.len() == 32 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

mod accounts;
mod audit;
mod integrations;
mod keys;
mod rate;
mod reveal;
mod rules;
mod signing;
mod tokens;
mod webhooks;

pub use accounts::*;
pub use audit::*;
pub use integrations::*;
pub use keys::*;
pub use rate::*;
pub use reveal::*;
pub use rules::*;
pub use signing::*;
pub use tokens::*;
pub use webhooks::*;
