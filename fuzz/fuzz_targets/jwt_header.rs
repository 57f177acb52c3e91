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
    // Through jsonwebtoken's header parser and the lenient classifier
    // behind it; a header that parses came from a token of three parts.
    if jwt::header(token).is_ok() {
        assert_eq!(token.bytes().filter(|&b| b == b'.').count(), 2);
    }
});
