//! The request / webhook signature header (`t=…,v1=…`): never a panic;
//! what parses can be matched, and a header we make parses back.
#![no_main]

use latchkey::domain::signing::formats;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(header) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(parsed) = formats::parse_header(header) {
        let _ = formats::match_header(&parsed, &[b"key"], b"payload");
        let made = formats::sign_header(parsed.t, &[b"key"], header.as_bytes());
        let back = formats::parse_header(&made).expect("our own header parses");
        assert_eq!(back.t, parsed.t);
        assert_eq!(
            formats::match_header(&back, &[b"key"], header.as_bytes()),
            Some(0)
        );
    }
    let _ = formats::parse_iso8601(header);
});
