use super::clients::{check_redirect_uri, redirect_matches};
use super::mint::within;
use super::split_scopes;
use crate::domain::permissions::ScopeSet;

#[test]
fn redirect_uris_must_be_https_or_loopback_without_fragment() {
    assert!(check_redirect_uri("https://app.example.com/cb").is_ok());
    assert!(check_redirect_uri("http://127.0.0.1:8000/cb").is_ok());
    assert!(check_redirect_uri("http://localhost/cb").is_ok());
    assert!(check_redirect_uri("http://example.com/cb").is_err());
    assert!(check_redirect_uri("http://localhost.evil.com/cb").is_err());
    assert!(check_redirect_uri("https://app.example.com/cb#x").is_err());
    assert!(check_redirect_uri("javascript:alert(1)").is_err());
    assert!(check_redirect_uri("http://[::1]:8000/cb").is_ok());
}

#[test]
fn redirect_uris_with_userinfo_are_refused() {
    for uri in [
        "http://localhost:80@evil.com/cb",
        "http://127.0.0.1@evil.com/cb",
        "http://127.0.0.1:8000@evil.com/cb",
        "https://app.example.com@evil.com/cb",
        "https://user:pw@app.example.com/cb",
        "https://@app.example.com/cb",
        "http://[::1]@evil.com/cb",
    ] {
        let e = check_redirect_uri(uri).unwrap_err();
        assert!(e.contains("userinfo"), "{uri}: {e}");
    }
    // An `@` after the authority is the path's business.
    assert!(check_redirect_uri("https://app.example.com/cb?u=a@b").is_ok());
}

#[test]
fn loopback_redirects_match_on_any_port_and_nothing_else() {
    let v4 = "http://127.0.0.1/cb";
    assert!(redirect_matches(v4, "http://127.0.0.1/cb"));
    assert!(redirect_matches(v4, "http://127.0.0.1:51004/cb"));
    assert!(redirect_matches(
        "http://127.0.0.1:8000/cb",
        "http://127.0.0.1:9/cb"
    ));
    assert!(redirect_matches("http://[::1]/cb", "http://[::1]:61000/cb"));
    assert!(redirect_matches(
        "http://127.0.0.1/cb?x=1",
        "http://127.0.0.1:5/cb?x=1"
    ));
    for other in [
        "http://127.0.0.1:51004/cb2",
        "http://127.0.0.1:51004/cb?x=1",
        "http://127.0.0.1:51004/x/../cb",
        "http://[::1]:51004/cb",
        "http://127.0.0.2:51004/cb",
        "https://127.0.0.1:51004/cb",
        "http://127.0.0.1:51004@evil.com/cb",
        "http://127.0.0.1:51004/cb#f",
    ] {
        assert!(!redirect_matches(v4, other), "{other}");
    }
    // Anything else: exactly, port included.
    assert!(redirect_matches(
        "https://app.example/cb",
        "https://app.example/cb"
    ));
    assert!(!redirect_matches(
        "https://app.example/cb",
        "https://app.example:444/cb"
    ));
    assert!(!redirect_matches(
        "http://localhost/cb",
        "http://localhost:8000/cb"
    ));
    assert!(!redirect_matches(
        "https://app.example/cb",
        "https://APP.example/cb"
    ));
}

#[test]
fn requested_scopes_must_stay_within_the_allowed_ones() {
    let allowed = vec!["surveys.*".to_owned(), "feeds.read".to_owned()];
    let set = ScopeSet::parse_all(&allowed).unwrap();
    assert!(within(&["surveys.read".into()], &set, &allowed));
    assert!(within(
        &["surveys.*".into(), "feeds.read".into()],
        &set,
        &allowed
    ));
    assert!(!within(&["feeds.write".into()], &set, &allowed));
    assert!(!within(&["*".into()], &set, &allowed));
    assert_eq!(
        split_scopes(&["b a", "a"]),
        vec!["a".to_owned(), "b".to_owned()]
    );
}
