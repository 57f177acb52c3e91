use super::clients::check_redirect_uri;
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
