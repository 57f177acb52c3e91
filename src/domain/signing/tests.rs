//! The wire formats (`formats.rs`): round trips, every refusal named, and the
//! edges of the ISO 8601 profile signed URLs carry.

use super::formats::*;
use crate::crypto::hex;
use crate::crypto::mac::hmac_sha256;

#[test]
fn header_round_trip_and_match() {
    let h = sign_header(1_700_000_000, &[b"new", b"old"], b"{\"a\":1}");
    let parsed = parse_header(&h).unwrap();
    assert_eq!(parsed.t, 1_700_000_000);
    assert_eq!(parsed.v1.len(), 2);
    assert_eq!(match_header(&parsed, &[b"old"], b"{\"a\":1}"), Some(0));
    assert_eq!(
        match_header(&parsed, &[b"x", b"new"], b"{\"a\":1}"),
        Some(1)
    );
    assert_eq!(match_header(&parsed, &[b"new"], b"{\"a\":2}"), None);
}

#[test]
fn header_parsing_names_what_is_wrong() {
    let sig = "ab".repeat(32);
    assert_eq!(
        parse_header(&format!("v1={sig}")),
        Err(FormatError::MissingTimestamp)
    );
    assert_eq!(parse_header("t=1"), Err(FormatError::MissingSignature));
    assert_eq!(
        parse_header(&format!("t=1,t=2,v1={sig}")),
        Err(FormatError::DuplicateTimestamp)
    );
    assert_eq!(
        parse_header(&format!("t=-1,v1={sig}")),
        Err(FormatError::BadTimestamp)
    );
    assert_eq!(
        parse_header(&format!("t=1x,v1={sig}")),
        Err(FormatError::BadTimestamp)
    );
    assert_eq!(parse_header("t=1,v1=abc"), Err(FormatError::BadSignature));
    assert!(matches!(
        parse_header(&format!("t=1,junk,v1={sig}")),
        Err(FormatError::BadElement(_))
    ));
    assert_eq!(
        parse_header(&"x".repeat(2000)),
        Err(FormatError::HeaderTooLong)
    );
    let many = format!("t=1{}", format!(",v1={sig}").repeat(9));
    assert_eq!(parse_header(&many), Err(FormatError::TooManySignatures));
    // Unknown schemes are skipped; spaces around elements are tolerated.
    let text = format!(" t=5 , v0=zz, v1={sig} ");
    let ok = parse_header(&text).unwrap();
    assert_eq!((ok.t, ok.v1.len()), (5, 1));
}

#[test]
fn tolerance_is_inclusive_on_both_sides() {
    let now = 1_000_000_000;
    assert!(within_tolerance(1_000_000 - 300, now, 300));
    assert!(within_tolerance(1_000_000 + 300, now, 300));
    assert!(!within_tolerance(1_000_000 - 301, now, 300));
    assert!(!within_tolerance(1_000_000 + 301, now, 300));
}

#[test]
fn canonical_request_sorts_the_raw_query() {
    let body = crate::crypto::sha256(b"");
    let c = canonical_request("post", "/v1/items?b=2&a=%2F&a_b=1&a=1#frag", &body);
    assert_eq!(
        c,
        format!(
            "LATCHKEY-HMAC-SHA256\nPOST\n/v1/items\na=%2F&a=1&a_b=1&b=2\n{}",
            hex(&body)
        )
    );
    assert!(
        canonical_request("GET", "/x", &body)
            .ends_with("\n/x\n\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
    );
}

#[test]
fn url_canonical_form_uses_decoded_sorted_values() {
    let p = parse_url("https://x.test/c?state=a%20b&client_id=c1&redirect_uri=https%3A%2F%2Fapp%2Fcb&uid=u+1&signature=zz").unwrap();
    assert_eq!(
        url_canonical(&p.params),
        "client_id=c1&redirect_uri=https://app/cb&state=a b&uid=u 1"
    );
    assert!(
        matches!(parse_url("https://x/?a=1&a=2"), Err(FormatError::DuplicateParameter(k)) if k == "a")
    );
    assert!(matches!(
        parse_url("https://x/?a=%zz"),
        Err(FormatError::BadEncoding(_))
    ));
    assert_eq!(
        parse_url("https://x/?a=1#f").unwrap_err(),
        FormatError::Fragment
    );
    assert_eq!(parse_url("https://x/").unwrap_err(), FormatError::NoQuery);
}

/// `a=1%26b%3D2` and `a=1&b=2` have the same seed-form canonical string:
/// a value (or key) whose decoding holds `&` or `=` is refused, signing or
/// verifying, so one cannot be passed off as the other.
#[test]
fn values_that_decode_to_a_boundary_are_refused() {
    for url in [
        "https://x/?a=1%26b%3D2",
        "https://x/?a=1%26b",
        "https://x/?a=%3D",
        "https://x/?a%3Db=1",
        "https://x/?a%26b=1",
        "https://x/?redirect_uri=https%3A%2F%2Fapp%2Fcb%3Fx%3D1",
    ] {
        assert!(
            matches!(parse_url(url), Err(FormatError::Ambiguous(_))),
            "{url}"
        );
        assert!(
            matches!(sign_url(url, b"k", 0), Err(FormatError::Ambiguous(_))),
            "{url}"
        );
    }
    // What the form can tell apart still signs.
    assert!(sign_url("https://x/?a=1&b=2&c=%2B%20%3F", b"k", 0).is_ok());
}

#[test]
fn a_url_without_a_query_gets_one() {
    let now = parse_iso8601("2024-01-15T10:30:00.000Z").unwrap();
    let url = sign_url("https://c.test/consent", b"k", now).unwrap();
    assert!(
        url.starts_with("https://c.test/consent?timestamp="),
        "{url}"
    );
    let parsed = parse_url(&url).unwrap();
    let canonical = url_canonical(&parsed.params);
    assert_eq!(canonical, "timestamp=2024-01-15T10:30:00.000Z");
    let signature = &parsed
        .params
        .iter()
        .find(|(k, _)| k == "signature")
        .unwrap()
        .1;
    assert_eq!(*signature, hex(&hmac_sha256(b"k", &[canonical.as_bytes()])));
}

#[test]
fn signed_url_round_trips() {
    let now = parse_iso8601("2024-01-15T10:30:00.000Z").unwrap();
    let url = sign_url("https://c.test/consent?client_id=c1&state=s", b"k", now).unwrap();
    assert!(url.starts_with("https://c.test/consent?client_id=c1&state=s&timestamp=2024-01-15T10%3A30%3A00.000Z&signature="));
    let sig = url_signature(&url).unwrap();
    assert_eq!(sig.timestamp, now);
    assert_eq!(
        sig.canonical,
        "client_id=c1&state=s&timestamp=2024-01-15T10:30:00.000Z"
    );
    assert_eq!(
        sig.signature,
        hmac_sha256(b"k", &[sig.canonical.as_bytes()])
    );
    assert_eq!(
        sign_url(&url, b"k", now).unwrap_err(),
        FormatError::Reserved("timestamp")
    );
}

#[test]
fn iso8601_round_trips_and_rejects_nonsense() {
    for ms in [0, 1_705_314_600_123, 951_782_400_000, 4_102_444_799_999] {
        assert_eq!(parse_iso8601(&format_iso8601(ms)), Some(ms));
    }
    assert_eq!(
        format_iso8601(1_705_314_600_000),
        "2024-01-15T10:30:00.000Z"
    );
    assert_eq!(
        parse_iso8601("2024-01-15T12:30:00+02:00"),
        Some(1_705_314_600_000)
    );
    assert_eq!(
        parse_iso8601("2024-01-15T10:30:00.5Z"),
        Some(1_705_314_600_500)
    );
    for bad in [
        "2024-02-30T00:00:00Z",
        "2024-01-15 10:30:00Z",
        "2024-01-15T10:30:00",
        "2024-13-01T00:00:00Z",
        "2024-01-15T24:00:00Z",
        "2024-01-15T10:30:00.Z",
        "x",
    ] {
        assert_eq!(parse_iso8601(bad), None, "{bad}");
    }
}

#[test]
fn iso8601_leap_years_follow_the_gregorian_rules() {
    for (text, valid) in [
        ("2024-02-29T00:00:00Z", true),
        ("2000-02-29T00:00:00Z", true),
        ("2023-02-29T00:00:00Z", false),
        ("1900-02-29T00:00:00Z", false),
        ("2100-02-29T00:00:00Z", false),
        ("2024-04-31T00:00:00Z", false),
        ("2024-00-10T00:00:00Z", false),
        ("2024-01-00T00:00:00Z", false),
        ("2024-12-31T23:59:59.999Z", true),
    ] {
        assert_eq!(parse_iso8601(text).is_some(), valid, "{text}");
    }
    assert_eq!(
        parse_iso8601("2024-02-29T00:00:00Z"),
        Some(1_709_164_800_000)
    );
    assert_eq!(
        format_iso8601(1_709_164_800_000),
        "2024-02-29T00:00:00.000Z"
    );
    let feb_28 = parse_iso8601("2023-02-28T12:00:00Z").unwrap();
    assert_eq!(
        format_iso8601(feb_28 + 86_400_000),
        "2023-03-01T12:00:00.000Z"
    );
}

#[test]
fn iso8601_offsets_are_converted_to_utc() {
    let want = Some(1_705_314_600_000);
    for text in [
        "2024-01-15T10:30:00Z",
        "2024-01-15t10:30:00z",
        "2024-01-15T10:30:00+00:00",
        "2024-01-15T10:30:00-00:00",
        "2024-01-15T05:00:00-05:30",
        "2024-01-16T10:29:00+23:59",
        "2024-01-14T10:31:00-23:59",
    ] {
        assert_eq!(parse_iso8601(text), want, "{text}");
    }
    // An offset can move the instant across a year boundary.
    let new_year = parse_iso8601("2024-01-01T00:30:00+01:00").unwrap();
    assert_eq!(format_iso8601(new_year), "2023-12-31T23:30:00.000Z");
    for bad in [
        "2024-01-15T10:30:00+24:00",
        "2024-01-15T10:30:00+01:60",
        "2024-01-15T10:30:00+0100",
        "2024-01-15T10:30:00+01",
        "2024-01-15T10:30:00+01:00:00",
        "2024-01-15T10:30:00\u{2212}01:00",
        "2024-01-15T10:30:00UTC",
        "2024-01-15T10:30:00 Z",
        "2024-01-15T10:30:00Z ",
        " 2024-01-15T10:30:00Z",
    ] {
        assert_eq!(parse_iso8601(bad), None, "{bad}");
    }
}

#[test]
fn iso8601_fractions_are_cut_to_milliseconds() {
    let base = 1_705_314_600_000;
    for (fraction, millis) in [
        (".5", 500),
        (".05", 50),
        (".123", 123),
        (".9999", 999),
        (".123456789", 123),
    ] {
        let text = format!("2024-01-15T10:30:00{fraction}Z");
        assert_eq!(parse_iso8601(&text), Some(base + millis), "{text}");
    }
    assert_eq!(parse_iso8601("2024-01-15T10:30:00.1234567891Z"), None);
    assert_eq!(parse_iso8601("2024-01-15T10:30:00.+01:00"), None);
    // Before 1970 the fraction still counts forward from the second.
    assert_eq!(parse_iso8601("1969-12-31T23:59:59.999Z"), Some(-1));
    assert_eq!(format_iso8601(-1), "1969-12-31T23:59:59.999Z");
}

#[test]
fn iso8601_edges_of_the_range() {
    // No leap second: a signed URL's timestamp never has one.
    assert_eq!(parse_iso8601("2016-12-31T23:59:60Z"), None);
    assert_eq!(parse_iso8601("2024-01-15T10:60:00Z"), None);
    assert_eq!(parse_iso8601("2024-01-15T10:30:61Z"), None);
    let first = -62_167_219_200_000;
    let last = 253_402_300_799_999;
    assert_eq!(parse_iso8601("0000-01-01T00:00:00Z"), Some(first));
    assert_eq!(format_iso8601(first), "0000-01-01T00:00:00.000Z");
    assert_eq!(parse_iso8601("9999-12-31T23:59:59.999Z"), Some(last));
    assert_eq!(format_iso8601(last), "9999-12-31T23:59:59.999Z");
    // Past year 9999 the text has five digits and no `+`, as it always had;
    // it is outside the accepted shape.
    assert_eq!(format_iso8601(last + 1), "10000-01-01T00:00:00.000Z");
    assert_eq!(parse_iso8601(&format_iso8601(last + 1)), None);
    assert_eq!(parse_iso8601("+10000-01-01T00:00:00Z"), None);
    assert_eq!(format_iso8601(first - 1), "-001-12-31T23:59:59.999Z");
    // Beyond chrono's range the nearest end is written, without a panic.
    let max = chrono::DateTime::<chrono::Utc>::MAX_UTC.timestamp_millis();
    let min = chrono::DateTime::<chrono::Utc>::MIN_UTC.timestamp_millis();
    assert_eq!(format_iso8601(i64::MAX), format_iso8601(max));
    assert_eq!(format_iso8601(i64::MIN), format_iso8601(min));
    assert_ne!(format_iso8601(max), format_iso8601(min));
}

proptest::proptest! {
    #[test]
    fn iso8601_round_trips_over_years_0000_to_9999(
        ms in -62_167_219_200_000i64..253_402_300_800_000,
    ) {
        proptest::prop_assert_eq!(parse_iso8601(&format_iso8601(ms)), Some(ms));
    }

    #[test]
    fn iso8601_local_times_with_an_offset_name_the_same_instant(
        ms in 0i64..4_102_444_800_000,
        offset_minutes in -1439i64..=1439,
    ) {
        let local = format_iso8601(ms + offset_minutes * 60_000);
        let sign = if offset_minutes < 0 { '-' } else { '+' };
        let (h, m) = (offset_minutes.abs() / 60, offset_minutes.abs() % 60);
        let text = format!("{}{sign}{h:02}:{m:02}", local.trim_end_matches('Z'));
        proptest::prop_assert_eq!(parse_iso8601(&text), Some(ms), "{}", text);
    }
}

proptest::proptest! {
    #[test]
    fn header_parser_never_panics(s in "\\PC{0,200}") {
        let _ = parse_header(&s);
    }

    #[test]
    fn signed_urls_round_trip_any_parameters(
        params in proptest::collection::btree_map("[a-z_]{1,8}", "[^&=\\p{C}]{0,12}", 0..6),
        now in 0i64..4_102_444_800_000,
    ) {
        let params: Vec<(String, String)> = params
            .into_iter()
            .filter(|(k, _)| k != "timestamp" && k != "signature")
            .collect();
        let query: Vec<String> = params
            .iter()
            .map(|(k, v)| format!("{k}={}", form_encode(v)))
            .collect();
        let url = format!("https://c.test/p?{}", query.join("&"));
        let signed = sign_url(&url, b"key", now).unwrap();
        let sig = url_signature(&signed).unwrap();
        let mut expected: Vec<String> = params.iter().map(|(k, v)| format!("{k}={v}")).collect();
        expected.push(format!("timestamp={}", format_iso8601(now)));
        expected.sort();
        proptest::prop_assert_eq!(&sig.canonical, &expected.join("&"));
        proptest::prop_assert_eq!(sig.timestamp, now);
        proptest::prop_assert_eq!(sig.signature, hmac_sha256(b"key", &[sig.canonical.as_bytes()]));
    }

    #[test]
    fn url_parser_never_panics(s in "\\PC{0,200}") {
        let _ = parse_url(&s);
        let _ = url_signature(&s);
        let _ = parse_iso8601(&s);
    }
}

#[test]
fn the_strict_url_form_binds_scheme_host_and_path() {
    use super::formats::{UrlForm, sign_url_as, strict_url_canonical, url_signature_as};
    let key = b"whsec_k";
    let signed = sign_url_as(
        UrlForm::Strict,
        "https://consent.example/flow?redirect_uri=https%3A%2F%2Fa.example%2Fcb%3Fx%3D1%26y%3D2",
        key,
        1_705_314_600_000,
    )
    .unwrap();
    let sig = url_signature_as(UrlForm::Strict, &signed).unwrap();
    // The same query elsewhere: another canonical string, so another MAC.
    for moved in [
        signed.replace("https://consent.example/flow", "https://evil.example/flow"),
        signed.replace(
            "https://consent.example/flow",
            "https://consent.example/other",
        ),
        signed.replace(
            "https://consent.example/flow",
            "http://consent.example/flow",
        ),
        signed.replace(
            "https://consent.example/flow",
            "https://consent.example:8443/flow",
        ),
    ] {
        let other = url_signature_as(UrlForm::Strict, &moved).unwrap();
        assert_ne!(other.canonical, sig.canonical, "{moved}");
    }
    // Spelling does not matter; meaning does.
    let same = signed.replace(
        "https://consent.example/flow",
        "HTTPS://Consent.EXAMPLE:443/fl%6Fw",
    );
    assert_eq!(
        url_signature_as(UrlForm::Strict, &same).unwrap().canonical,
        sig.canonical
    );
    // A value with `&` and `=` stays one value (the seed form refuses it) …
    assert!(url_signature_as(UrlForm::Seed, &signed).is_err());
    // … and cannot be split into two parameters that verify.
    let split = strict_url_canonical("https://h.example/p?a=1&b=2").unwrap();
    let merged = strict_url_canonical("https://h.example/p?a=1%26b%3D2").unwrap();
    assert_ne!(split, merged);
    // `/` escaped inside a segment is not a segment boundary.
    assert_ne!(
        strict_url_canonical("https://h.example/a%2Fb").unwrap(),
        strict_url_canonical("https://h.example/a/b").unwrap()
    );
}

#[test]
fn the_strict_url_form_needs_an_absolute_http_url() {
    use super::formats::{FormatError, strict_url_canonical};
    for url in [
        "/consent?x=1",
        "consent.example/flow?x=1",
        "ftp://h.example/x?y=1",
        "https://user@h.example/x?y=1",
        "https://h.example:0/x",
        "https://h.example:99999/x",
        "https://h.example:ab/x",
        "https:///x",
        "https://hé.example/x",
    ] {
        assert!(
            matches!(strict_url_canonical(url), Err(FormatError::NotAbsolute(_))),
            "{url}: {:?}",
            strict_url_canonical(url)
        );
    }
    assert!(matches!(
        strict_url_canonical("https://h.example/x?a=1&a=2"),
        Err(FormatError::DuplicateParameter(_))
    ));
    assert!(matches!(
        strict_url_canonical("https://h.example/x#f"),
        Err(FormatError::Fragment)
    ));
}
