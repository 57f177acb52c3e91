//! JWT compact form and its header (`alg`, `kid`, `typ`) as the verifier
//! reads them before any key is chosen: never a panic.
#![no_main]

use latchkey::crypto::jwt;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(token) = std::str::from_utf8(data) else {
        return;
    };
    let _ = jwt::looks_like_jwt(token);
    if let Ok(parts) = jwt::split(token) {
        // The signed part is the first two segments as sent.
        assert!(token.starts_with(parts.signed));
    }
});
