//! API key format (`<prefix>_<mode>_<kind>_<body><checksum>`): never a panic;
//! what parses has a known mode and kind and is the prefix it was asked for.
#![no_main]

use latchkey::crypto::keyfmt;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(key) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(parts) = keyfmt::parse(key, "lk") {
        assert!(key.starts_with("lk_"));
        assert!(matches!(parts.mode, "test" | "live"));
        assert!(matches!(parts.kind, "sk" | "pk" | "rk" | "fk"));
    }
    let _ = keyfmt::last4(key);
    let _ = keyfmt::valid_prefix(key);
});
