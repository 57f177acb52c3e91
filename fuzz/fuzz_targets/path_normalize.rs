//! Request path normalisation: never a panic; a normal path is absolute,
//! normalises to itself, and carries no dot segment or repeated slash.
#![no_main]

use latchkey::domain::routes::{PathParams, normalize_path, normalize_request_path};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(normal) = normalize_path(raw) {
        assert!(normal.starts_with('/'), "{raw:?} -> {normal:?}");
        assert!(!normal.contains("//"), "{raw:?} -> {normal:?}");
        assert!(
            !normal.split('/').any(|s| s == "." || s == ".."),
            "{raw:?} -> {normal:?}"
        );
        let again = normalize_path(&normal).expect("a normal path normalises");
        assert_eq!(again, normal, "not idempotent for {raw:?}");
    }
    for params in [PathParams::Refuse, PathParams::Strip] {
        let _ = normalize_request_path(raw, params);
    }
});
