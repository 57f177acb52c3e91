use super::request::{client_ip, credential, query_value};
use super::{CredentialSource, GateSettings, Headers};

struct List(Vec<(&'static str, &'static str)>);

impl Headers for List {
    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| *v)
    }
}

fn settings(query_param: Option<&str>) -> GateSettings {
    GateSettings {
        api_key_header: "x-api-key".to_owned(),
        query_param: query_param.map(str::to_owned),
        public_routes: Vec::new(),
        trusted_hops: 0,
        store_header: None,
    }
}

#[test]
fn credential_sources_in_order() {
    let s = settings(Some("api_key"));
    let both = List(vec![
        ("authorization", "Bearer lk_a"),
        ("x-api-key", "lk_b"),
    ]);
    assert_eq!(
        credential(&both, "/p?api_key=lk_c", &s),
        (Some(CredentialSource::Authorization), Some("lk_a"))
    );
    // `Authorization` without the Bearer scheme is not ours: the next source is.
    let basic = List(vec![("authorization", "Basic dTpw"), ("x-api-key", "lk_b")]);
    assert_eq!(
        credential(&basic, "/p", &s),
        (Some(CredentialSource::ApiKeyHeader), Some("lk_b"))
    );
    let none = List(vec![]);
    assert_eq!(
        credential(&none, "/p?x=1&api_key=lk_c", &s),
        (Some(CredentialSource::QueryParam), Some("lk_c"))
    );
    assert_eq!(
        credential(&none, "/p?api_key=lk_c", &settings(None)),
        (None, None)
    );
    assert_eq!(credential(&none, "/p?api_key=", &s), (None, None));
}

#[test]
fn query_values_are_raw_and_first() {
    assert_eq!(query_value("/p?a=1&a=2", "a"), Some("1"));
    assert_eq!(query_value("/p?a=%41#frag", "a"), Some("%41"));
    assert_eq!(query_value("/p?ab=1", "a"), None);
    assert_eq!(query_value("/p", "a"), None);
}

#[test]
fn client_address_by_hops() {
    let xff = List(vec![(
        "x-forwarded-for",
        "198.51.100.1, 203.0.113.9,10.0.0.2",
    )]);
    // 0: the asking proxy's own view; X-Forwarded-For is not read.
    assert_eq!(
        client_ip(Some("192.0.2.7:5000"), &xff, 0),
        Some("192.0.2.7".parse().unwrap())
    );
    assert_eq!(client_ip(None, &xff, 0), None);
    // N: the N-th entry from the right.
    assert_eq!(client_ip(None, &xff, 1), Some("10.0.0.2".parse().unwrap()));
    assert_eq!(
        client_ip(None, &xff, 2),
        Some("203.0.113.9".parse().unwrap())
    );
    assert_eq!(
        client_ip(None, &xff, 3),
        Some("198.51.100.1".parse().unwrap())
    );
    // More hops than entries: the client cannot be told.
    assert_eq!(client_ip(None, &xff, 4), None);
    assert_eq!(client_ip(Some("192.0.2.7"), &List(vec![]), 1), None);
    // IPv4-mapped IPv6 is the IPv4 address.
    let mapped = List(vec![("x-forwarded-for", "::ffff:203.0.113.9")]);
    assert_eq!(
        client_ip(None, &mapped, 1),
        Some("203.0.113.9".parse().unwrap())
    );
}
