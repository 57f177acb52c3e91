use super::request::{credential, query_value};
use super::{CredentialSource, Field, GateSettings, Headers, Presented};

struct List(Vec<(&'static str, &'static str)>);

impl Headers for List {
    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| *v)
    }

    fn only(&self, name: &str) -> Field<'_> {
        let mut all = self.0.iter().filter(|(k, _)| k.eq_ignore_ascii_case(name));
        match (all.next(), all.next()) {
            (None, _) => Field::Absent,
            (Some(_), Some(_)) => Field::Repeated,
            (Some((_, v)), None) => Field::One(v),
        }
    }
}

fn settings(query_param: Option<&str>) -> GateSettings {
    GateSettings {
        api_key_header: "x-api-key".to_owned(),
        query_param: query_param.map(str::to_owned),
        public_routes: Vec::new(),
        store_header: None,
        path_params: Default::default(),
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
        Presented::Credential(CredentialSource::Authorization, "Bearer lk_a")
    );
    // `Authorization` without the Bearer scheme is not ours: the next source is.
    let basic = List(vec![("authorization", "Basic dTpw"), ("x-api-key", "lk_b")]);
    assert_eq!(
        credential(&basic, "/p", &s),
        Presented::Credential(CredentialSource::ApiKeyHeader, "lk_b")
    );
    let none = List(vec![]);
    assert_eq!(
        credential(&none, "/p?x=1&api_key=lk_c", &s),
        Presented::Credential(CredentialSource::QueryParam, "lk_c")
    );
    assert_eq!(
        credential(&none, "/p?api_key=lk_c", &settings(None)),
        Presented::None
    );
    assert_eq!(credential(&none, "/p?api_key=", &s), Presented::None);
}

#[test]
fn repeated_or_untrimmed_credential_headers_are_malformed() {
    let s = settings(Some("api_key"));
    let malformed = |headers: Vec<(&'static str, &'static str)>| {
        matches!(
            credential(&List(headers), "/p", &s),
            Presented::Malformed(..)
        )
    };
    // Neither the first nor the last of two decides.
    assert!(malformed(vec![
        ("authorization", "Bearer lk_a"),
        ("authorization", "Bearer lk_b"),
    ]));
    assert!(malformed(vec![
        ("authorization", "Bearer lk_a"),
        ("Authorization", "Bearer lk_a"),
    ]));
    assert!(malformed(vec![
        ("x-api-key", "lk_a"),
        ("x-api-key", "lk_b")
    ]));
    // Even a repeated non-Bearer Authorization: whichever the upstream
    // reads, it is not for us to pick.
    assert!(malformed(vec![
        ("authorization", "Basic dTpw"),
        ("authorization", "Bearer lk_a"),
    ]));
    // A value is never trimmed into a key.
    assert!(malformed(vec![("x-api-key", " lk_a")]));
    assert!(malformed(vec![("x-api-key", "lk_a\r\n")]));
    assert!(malformed(vec![("x-api-key", "Bearer lk_a")]));
    assert!(malformed(vec![("x-api-key", "lk_a,lk_b")]));
    // A badly written Bearer scheme is ours to refuse, not the next source's.
    assert_eq!(
        credential(
            &List(vec![
                ("authorization", "Bearer  lk_a"),
                ("x-api-key", "lk_b")
            ]),
            "/p",
            &s
        ),
        Presented::Credential(CredentialSource::Authorization, "Bearer  lk_a")
    );
    assert_eq!(
        credential(&List(vec![]), "/p?api_key=lk%20a", &s),
        Presented::Malformed(
            CredentialSource::QueryParam,
            "the API-key query parameter is not a key"
        )
    );
}

#[test]
fn query_values_are_raw_and_first() {
    assert_eq!(query_value("/p?a=1&a=2", "a"), Some("1"));
    assert_eq!(query_value("/p?a=%41#frag", "a"), Some("%41"));
    assert_eq!(query_value("/p?ab=1", "a"), None);
    assert_eq!(query_value("/p", "a"), None);
}
