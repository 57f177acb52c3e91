use std::borrow::Cow;

use proptest::prelude::*;

use super::normalize::{is_normal, rebuild};
use super::*;

fn rule(id: &str, host: Option<&str>, method: &str, path: &str, permission: &str) -> RouteRule {
    RouteRule {
        id: id.to_owned(),
        host: host.map(str::to_owned),
        method: method.to_owned(),
        path: path.to_owned(),
        permission: permission.to_owned(),
        case_insensitive: false,
    }
}

fn on_any_host(id: &str, method: &str, path: &str) -> RouteRule {
    rule(id, None, method, path, &format!("{id}.x"))
}

fn hit<'a>(m: &'a RouteMatcher, host: Option<&str>, method: &str, path: &str) -> Option<&'a str> {
    m.find(host, method, path).map(|r| r.rule_id)
}

// --- normalize_path ------------------------------------------------------

#[test]
fn normalises_examples() {
    for (raw, want) in [
        ("/", "/"),
        ("/v2/public/../admin", "/v2/admin"),
        ("/v2/%2e%2e/admin", "/admin"),
        ("/v2/%2E%2E/admin", "/admin"),
        ("/v2/.%2e/admin", "/admin"),
        ("/a/./b/", "/a/b/"),
        ("/a/b/..", "/a/"),
        ("/a/b/.", "/a/b/"),
        ("//a///b", "/a/b"),
        ("/a//", "/a/"),
        ("/..", "/"),
        ("/../../x", "/x"),
        ("/a/../..//b/", "/b/"),
        ("/v2/surveys?x=/../admin", "/v2/surveys"),
        ("/v2/surveys#frag", "/v2/surveys"),
        ("/v2/s%75rveys", "/v2/surveys"),
        ("/caf%C3%A9", "/café"),
        ("/café", "/café"),
        ("/a%20b", "/a b"),
        ("/100%25", "/100%25"),
        ("/a%3Fb%23c", "/a%3Fb%23c"),
        ("/%252F", "/%252F"),
        ("/...", "/..."),
        ("/..a/.b", "/..a/.b"),
    ] {
        assert_eq!(normalize_path(raw).as_deref(), Ok(want), "{raw}");
    }
}

#[test]
fn refuses_bad_paths() {
    for (raw, want) in [
        ("", PathError::NotAbsolute),
        ("v2/x", PathError::NotAbsolute),
        ("*", PathError::NotAbsolute),
        ("?/a", PathError::NotAbsolute),
        ("http://h/a", PathError::NotAbsolute),
        ("/a%G1", PathError::BadEscape),
        ("/a%4", PathError::BadEscape),
        ("/a%", PathError::BadEscape),
        ("/a%%41", PathError::BadEscape),
        ("/%FF", PathError::BadEscape),
        ("/%C3", PathError::BadEscape),
        ("/%C3/", PathError::BadEscape),
        ("/a%2Fb", PathError::EncodedSeparator),
        ("/a%2fb", PathError::EncodedSeparator),
        ("/a%5Cb", PathError::EncodedSeparator),
        ("/a%5cb", PathError::EncodedSeparator),
        ("/a%00", PathError::EncodedSeparator),
        ("/a\\b", PathError::BadCharacter),
        ("/a\0b", PathError::BadCharacter),
        ("/a\nb", PathError::BadCharacter),
        ("/a\tb", PathError::BadCharacter),
        ("/a\x7fb", PathError::BadCharacter),
        ("/a%0Ab", PathError::BadCharacter),
        ("/a%0d%0aX:1", PathError::BadCharacter),
    ] {
        assert_eq!(normalize_path(raw), Err(want), "{raw:?}");
    }
}

#[test]
fn length_limit_is_on_the_path_only() {
    let long = format!("/{}", "a".repeat(MAX_PATH_LEN - 1));
    assert!(normalize_path(&long).is_ok());
    assert_eq!(normalize_path(&format!("{long}b")), Err(PathError::TooLong));
    let query = format!("/a?{}", "q".repeat(MAX_PATH_LEN * 2));
    assert_eq!(normalize_path(&query).as_deref(), Ok("/a"));
}

fn escapes(s: &str) -> Vec<&str> {
    s.match_indices('%')
        .map(|(i, _)| s.get(i..i + 3).unwrap_or("%"))
        .collect()
}

fn check_normal_form(out: &str) -> Result<(), TestCaseError> {
    prop_assert!(out.starts_with('/'));
    prop_assert!(!out.contains("//"), "{out}");
    prop_assert!(!out.contains(['\\', '?', '#', '\0']), "{out}");
    prop_assert!(!out.chars().any(|c| c.is_ascii_control()), "{out}");
    for segment in out.split('/') {
        prop_assert!(segment != "." && segment != "..", "{out}");
    }
    for escape in escapes(out) {
        prop_assert!(matches!(escape, "%25" | "%3F" | "%23"), "{out}: {escape}");
    }
    Ok(())
}

proptest! {
    #[test]
    fn normalising_is_idempotent_any_text(raw in "\\PC{0,200}") {
        if let Ok(once) = normalize_path(&raw) {
            check_normal_form(&once)?;
            prop_assert_eq!(normalize_path(&once), Ok(once.clone()));
        }
    }

    #[test]
    fn normalising_is_idempotent_tricky_alphabet(tail in "[/.%2eEfF a-z5cC0-3?#]{0,60}") {
        let raw = format!("/{tail}");
        if let Ok(once) = normalize_path(&raw) {
            check_normal_form(&once)?;
            prop_assert_eq!(normalize_path(&once), Ok(once.clone()));
        }
        let _ = normalize_path(&tail);
    }

    /// The shortcut for paths already normal agrees with normalising them.
    #[test]
    fn the_fast_path_is_the_normal_form(tail in "[/.%2eEfF a-z5cC0-3?#\\\\\t\u{7f}é]{0,40}") {
        let raw = format!("/{tail}");
        let path = raw.split(['?', '#']).next().unwrap_or_default();
        if is_normal(path) {
            prop_assert_eq!(rebuild(path), Ok(path.to_owned()));
        }
        prop_assert_eq!(
            normalize_path(&raw).map(Cow::into_owned),
            rebuild(path),
        );
    }

    #[test]
    fn dot_segments_never_climb_out(prefix in "[a-z]{1,5}", hops in 1usize..6, name in "[a-z]{1,5}") {
        let raw = format!("/{prefix}{}/{name}", "/%2e%2e".repeat(hops));
        prop_assert_eq!(normalize_path(&raw).map(Cow::into_owned), Ok(format!("/{name}")));
    }
}

// --- templates, methods, hosts ------------------------------------------

#[test]
fn templates() {
    for ok in [
        "/",
        "/v2",
        "/v2/",
        "/v2/surveys/{id}",
        "/v2/{a}/{b_2}/x",
        "/v2/feeds/**",
        "/**",
        "/a-b.c~d/!$&'()*+,;=:@",
        "/v1/*x",
        "/{_}",
    ] {
        assert_eq!(validate_template(ok), Ok(()), "{ok}");
    }
    for (bad, reason) in [
        ("", "must start with `/`"),
        ("v2", "must start with `/`"),
        ("//", "empty segment"),
        ("/a//b", "empty segment"),
        ("/a//", "empty segment"),
        ("/**/x", "`**` must be the last segment"),
        ("/a/**/**", "`**` must be the last segment"),
        ("/{Bad}", "`{Bad}` is not a parameter name"),
        ("/{}", "`{}` is not a parameter name"),
        ("/{1a}", "`{1a}` is not a parameter name"),
        ("/{a", "`{a` is not a parameter name"),
        ("/a}", "`a}` is not a parameter name"),
        ("/{a}/{a}", "parameter `{a}` appears twice"),
        ("/a/./b", "`.` is not allowed"),
        ("/a/..", "`..` is not allowed"),
        ("/*/x", "`*` is not a wildcard"),
        ("/a/***", "`***` is not a wildcard"),
        ("/a%2Fb", "`a%2Fb` has `%`"),
        ("/a b", "has ` `"),
        ("/café", "has `\\u{e9}`"),
        ("/a?b", "has `?`"),
    ] {
        match validate_template(bad) {
            Err(RouteError::Template {
                template,
                reason: got,
            }) => {
                assert_eq!(template, bad);
                assert!(got.contains(reason), "{bad}: {got}");
            }
            other => panic!("{bad}: {other:?}"),
        }
    }
    let long = format!("/{}", "a".repeat(MAX_TEMPLATE_LEN));
    assert!(validate_template(&long).is_err());
}

#[test]
fn methods() {
    assert_eq!(validate_method("get").as_deref(), Ok("GET"));
    assert_eq!(validate_method("Options").as_deref(), Ok("OPTIONS"));
    assert_eq!(validate_method("*").as_deref(), Ok("*"));
    for bad in ["", "ANY", "GETX", " GET", "CONNECT", "**"] {
        assert_eq!(
            validate_method(bad),
            Err(RouteError::Method(bad.to_owned()))
        );
    }
}

#[test]
fn hosts() {
    assert_eq!(validate_host(""), Ok(None));
    assert_eq!(
        validate_host("API.Shop.example"),
        Ok(Some("api.shop.example".to_owned()))
    );
    assert_eq!(validate_host("10.0.0.1"), Ok(Some("10.0.0.1".to_owned())));
    for bad in [
        "*.shop.example",
        "api.shop.example:443",
        "::1",
        "a..b",
        ".a",
        "a.",
        "-a.b",
        "a_b.c",
        "a b",
        "api/x",
    ] {
        assert!(
            matches!(validate_host(bad), Err(RouteError::Host { .. })),
            "{bad}"
        );
    }
    assert!(validate_host(&"a".repeat(64)).is_err());
    assert!(validate_host(&["a"; 130].join(".")).is_err());
}

// --- matching ------------------------------------------------------------

#[test]
fn specificity_table() {
    let m = RouteMatcher::new(&[
        rule("read", None, "GET", "/v2/surveys/{id}", "surveys.read"),
        rule(
            "export",
            None,
            "GET",
            "/v2/surveys/export",
            "surveys.export",
        ),
        rule("v2", None, "*", "/v2/**", "v2.any"),
        rule("shop", Some("api.shop.example"), "*", "/v2/**", "shop.any"),
    ])
    .unwrap();
    assert_eq!(m.len(), 4);
    for (host, method, path, want) in [
        (
            None,
            "GET",
            "/v2/surveys/42",
            Some(("read", "surveys.read")),
        ),
        (
            None,
            "GET",
            "/v2/surveys/42/",
            Some(("read", "surveys.read")),
        ),
        (
            None,
            "GET",
            "/v2/surveys/export",
            Some(("export", "surveys.export")),
        ),
        (
            Some("other.example"),
            "GET",
            "/v2/surveys/export",
            Some(("export", "surveys.export")),
        ),
        (None, "POST", "/v2/surveys/42", Some(("v2", "v2.any"))),
        (None, "DELETE", "/v2/surveys/export", Some(("v2", "v2.any"))),
        (None, "GET", "/v2/surveys", Some(("v2", "v2.any"))),
        (
            None,
            "GET",
            "/v2/surveys/42/answers",
            Some(("v2", "v2.any")),
        ),
        (None, "GET", "/v2", Some(("v2", "v2.any"))),
        (
            Some("api.shop.example"),
            "GET",
            "/v2/surveys/42",
            Some(("shop", "shop.any")),
        ),
        (
            Some("API.Shop.Example:8443"),
            "GET",
            "/v2/surveys/export",
            Some(("shop", "shop.any")),
        ),
        (
            Some("api.shop.example."),
            "GET",
            "/v2/x",
            Some(("shop", "shop.any")),
        ),
        (Some("api.shop.example"), "GET", "/v3/x", None),
        (None, "GET", "/v3", None),
        (None, "GET", "/", None),
        (None, "GET", "/v2x", None),
        (None, "GET", "v2/surveys/42", None),
    ] {
        let got = m
            .find(host, method, path)
            .map(|r| (r.rule_id, r.permission));
        assert_eq!(got, want, "{host:?} {method} {path}");
    }
}

#[test]
fn host_rules_fall_back_to_any_host() {
    let m = RouteMatcher::new(&[
        rule(
            "shop-get",
            Some("api.shop.example"),
            "GET",
            "/v2/orders",
            "orders.read",
        ),
        rule("all", None, "*", "/v2/orders", "orders.any"),
        rule("root", None, "GET", "/", "root.read"),
    ])
    .unwrap();
    assert_eq!(
        hit(&m, Some("api.shop.example"), "GET", "/v2/orders"),
        Some("shop-get")
    );
    // No host rule for POST: the any-host rule applies.
    assert_eq!(
        hit(&m, Some("api.shop.example"), "POST", "/v2/orders"),
        Some("all")
    );
    assert_eq!(hit(&m, Some("api.shop.example"), "GET", "/"), Some("root"));
    assert_eq!(hit(&m, None, "GET", "/v2/orders"), Some("all"));
    assert_eq!(hit(&m, Some("[::1]:443"), "GET", "/v2/orders"), Some("all"));
}

#[test]
fn method_misses_backtrack_to_less_specific_paths() {
    let m = RouteMatcher::new(&[
        on_any_host("export", "GET", "/v2/export"),
        on_any_host("item", "POST", "/v2/{id}"),
        on_any_host("item-any", "*", "/v2/{id}/x"),
        on_any_host("item-get", "GET", "/v2/{id}/x"),
    ])
    .unwrap();
    assert_eq!(hit(&m, None, "GET", "/v2/export"), Some("export"));
    assert_eq!(hit(&m, None, "POST", "/v2/export"), Some("item"));
    assert_eq!(hit(&m, None, "PUT", "/v2/export"), None);
    assert_eq!(hit(&m, None, "GET", "/v2/export/x"), Some("item-get"));
    assert_eq!(hit(&m, None, "PUT", "/v2/export/x"), Some("item-any"));
    // Methods are case-sensitive on the wire.
    assert_eq!(hit(&m, None, "get", "/v2/export/x"), Some("item-any"));
}

#[test]
fn literal_beats_param_at_the_leftmost_difference() {
    let m = RouteMatcher::new(&[
        on_any_host("lit-param", "GET", "/a/{x}/c"),
        on_any_host("param-lit", "GET", "/{x}/b/c"),
        on_any_host("lit-rest", "GET", "/a/**"),
    ])
    .unwrap();
    // `/a/{x}/c` wins over `/{x}/b/c` (literal in the first segment),
    // and `/a/{x}/c` over `/a/**` (param before catch-all).
    assert_eq!(hit(&m, None, "GET", "/a/b/c"), Some("lit-param"));
    assert_eq!(hit(&m, None, "GET", "/z/b/c"), Some("param-lit"));
    assert_eq!(hit(&m, None, "GET", "/a/b/d"), Some("lit-rest"));
}

#[test]
fn catch_all_and_trailing_slashes() {
    let m = RouteMatcher::new(&[
        on_any_host("feeds", "GET", "/v2/feeds/**"),
        on_any_host("surveys", "GET", "/v2/surveys/"),
        on_any_host("root", "GET", "/"),
    ])
    .unwrap();
    for path in ["/v2/feeds", "/v2/feeds/", "/v2/feeds/a", "/v2/feeds/a/b/"] {
        assert_eq!(hit(&m, None, "GET", path), Some("feeds"), "{path}");
    }
    assert_eq!(hit(&m, None, "GET", "/v2/feedsx"), None);
    assert_eq!(hit(&m, None, "GET", "/v2"), None);
    assert_eq!(hit(&m, None, "GET", "/v2/surveys"), Some("surveys"));
    assert_eq!(hit(&m, None, "GET", "/v2/surveys/"), Some("surveys"));
    assert_eq!(hit(&m, None, "GET", "/v2/surveys/1"), None);
    assert_eq!(hit(&m, None, "GET", "/"), Some("root"));
    assert_eq!(hit(&m, None, "GET", "/x"), None);

    let all = RouteMatcher::new(&[on_any_host("all", "*", "/**")]).unwrap();
    assert_eq!(hit(&all, None, "GET", "/"), Some("all"));
    assert_eq!(hit(&all, None, "GET", "/a/b"), Some("all"));
}

#[test]
fn path_specificity_comes_before_method() {
    let m = RouteMatcher::new(&[
        on_any_host("any-method", "*", "/v2/feeds"),
        on_any_host("get-rest", "GET", "/v2/feeds/**"),
    ])
    .unwrap();
    assert_eq!(hit(&m, None, "GET", "/v2/feeds"), Some("any-method"));
    assert_eq!(hit(&m, None, "GET", "/v2/feeds/1"), Some("get-rest"));
}

#[test]
fn duplicates_are_refused() {
    for (a, b) in [
        (
            on_any_host("a", "GET", "/x/{id}"),
            on_any_host("b", "get", "/x/{other}/"),
        ),
        (
            on_any_host("a", "*", "/x/**"),
            on_any_host("b", "*", "/x/**/"),
        ),
        (on_any_host("a", "GET", "/"), on_any_host("b", "GET", "/")),
        (
            rule("a", Some("h.example"), "GET", "/x", "x.read"),
            rule("b", Some("H.example"), "GET", "/x", "x.read"),
        ),
        (
            rule("a", Some(""), "GET", "/x", "x.read"),
            rule("b", None, "GET", "/x", "x.read"),
        ),
    ] {
        assert_eq!(
            RouteMatcher::new(&[a, b]).err(),
            Some(RouteError::Duplicate {
                first: "a".to_owned(),
                second: "b".to_owned()
            })
        );
    }
    // Not duplicates: method, host, `**` versus end, or literal versus param differ.
    let m = RouteMatcher::new(&[
        on_any_host("a", "GET", "/x/{id}"),
        on_any_host("b", "*", "/x/{id}"),
        on_any_host("c", "POST", "/x/{id}"),
        on_any_host("d", "GET", "/x/id"),
        on_any_host("e", "GET", "/x/{id}/**"),
        rule("f", Some("h.example"), "GET", "/x/{id}", "x.read"),
    ]);
    assert_eq!(m.map(|m| m.len()).ok(), Some(6));
}

#[test]
fn new_reports_bad_rules() {
    assert!(matches!(
        RouteMatcher::new(&[on_any_host("a", "GET", "/a//b")]),
        Err(RouteError::Template { .. })
    ));
    assert_eq!(
        RouteMatcher::new(&[on_any_host("a", "FETCH", "/a")]).err(),
        Some(RouteError::Method("FETCH".to_owned()))
    );
    assert!(matches!(
        RouteMatcher::new(&[rule("a", Some("*.x.example"), "GET", "/a", "a.read")]),
        Err(RouteError::Host { .. })
    ));
    for permission in ["", "surveys", "surveys.*", "Surveys.Read"] {
        assert!(
            matches!(
                RouteMatcher::new(&[rule("a", None, "GET", "/a", permission)]),
                Err(RouteError::Permission { ref rule, .. }) if rule == "a"
            ),
            "{permission}"
        );
    }
}

#[test]
fn empty_matcher() {
    let m = RouteMatcher::empty();
    assert!(m.is_empty());
    assert_eq!(m.len(), 0);
    assert_eq!(m.find(Some("a.example"), "GET", "/"), None);
    assert!(RouteMatcher::new(&[]).unwrap().is_empty());
}

#[test]
fn error_messages_name_the_problem() {
    let err = validate_template("/a/**/b").unwrap_err();
    assert_eq!(
        err.to_string(),
        "route template `/a/**/b`: `**` must be the last segment"
    );
    let err = RouteMatcher::new(&[
        on_any_host("one", "GET", "/a/{x}"),
        on_any_host("two", "GET", "/a/{y}"),
    ])
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "routes `one` and `two` have the same host, method and path template"
    );
    assert_eq!(
        PathError::EncodedSeparator.to_string(),
        "the path has an encoded `/`, `\\` or NUL (`%2F`, `%5C`, `%00`), which makes its segments ambiguous"
    );
}

fn literal_segments() -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec("[a-z0-9_~-][a-z0-9._~-]{0,7}", 1..6)
}

proptest! {
    #[test]
    fn exact_template_beats_param_and_catch_all(
        segments in literal_segments(),
        param_at in any::<prop::sample::Index>(),
        exact_method in prop::sample::select(vec!["GET", "*"]),
        other_method in prop::sample::select(vec!["GET", "*"]),
        trailing in any::<bool>(),
    ) {
        let exact = format!("/{}", segments.join("/"));
        prop_assume!(validate_template(&exact).is_ok());
        let i = param_at.index(segments.len());
        let mut with_param = segments.clone();
        if let Some(s) = with_param.get_mut(i) {
            *s = "{p}".to_owned();
        }
        let with_param = format!("/{}", with_param.join("/"));
        let mut rules = vec![
            on_any_host("rest", other_method, "/**"),
            on_any_host("param", other_method, &with_param),
            on_any_host("exact", exact_method, &exact),
        ];
        let path = if trailing { format!("{exact}/") } else { exact.clone() };
        for _ in 0..3 {
            let m = RouteMatcher::new(&rules).unwrap();
            prop_assert_eq!(hit(&m, None, "GET", &path), Some("exact"));
            rules.rotate_left(1);
        }
        let m = RouteMatcher::new(&rules[..2]).unwrap();
        prop_assert_eq!(hit(&m, None, "GET", &path), Some("param"));
    }

    #[test]
    fn find_never_panics(
        host in proptest::option::of("\\PC{0,30}"),
        method in "\\PC{0,10}",
        path in "\\PC{0,100}",
        tricky in "[/a{}*.:]{0,30}",
    ) {
        let m = RouteMatcher::new(&[
            on_any_host("a", "GET", "/a/{x}/**"),
            on_any_host("b", "*", "/**"),
            rule("c", Some("a.example"), "GET", "/a/{x}", "c.read"),
        ]).unwrap();
        let _ = m.find(host.as_deref(), &method, &path);
        let _ = m.find(host.as_deref(), &method, &tricky);
        let _ = m.find(Some(&tricky), "GET", &tricky);
        let _ = validate_template(&path);
        let _ = validate_host(&path);
        let _ = validate_method(&method);
    }

    #[test]
    fn normalised_paths_match_like_their_templates(segments in literal_segments(), junk in "[a-z]{1,5}") {
        let exact = format!("/{}", segments.join("/"));
        prop_assume!(validate_template(&exact).is_ok());
        let m = RouteMatcher::new(&[on_any_host("exact", "GET", &exact)]).unwrap();
        // A detour through `..` and doubled slashes normalises back to the template.
        let raw = format!("/{junk}/..//{}", segments.join("//"));
        let path = normalize_path(&raw).unwrap();
        prop_assert_eq!(hit(&m, None, "GET", &path), Some("exact"));
    }
}

// --- hardening: broken sets, rule keys, `;` parameters ---------------------

fn r(id: &str, method: &str, path: &str, permission: &str) -> RouteRule {
    RouteRule {
        id: id.into(),
        host: None,
        method: method.into(),
        path: path.into(),
        permission: permission.into(),
        case_insensitive: false,
    }
}

#[test]
fn a_set_that_does_not_compile_denies_only_what_it_covers() {
    let rules = [
        r("a", "GET", "/v2/feeds/{id}", "feeds.read"),
        r("b", "GET", "/v2/feeds/{other}", "public.read"),
        r("c", "GET", "/v2/bad", "Not A Permission"),
        r("d", "GET", "/v2/{", "x.read"),
        r("e", "GET", "/v2/**", "catalog.read"),
    ];
    assert!(RouteMatcher::new(&rules).is_err());
    let (m, errors) = RouteMatcher::lenient(&rules);
    assert_eq!(errors.len(), 3, "{errors:?}");
    // Both of a duplicate pair deny; nothing falls through to `/v2/**`.
    let dup = m.find(None, "GET", "/v2/feeds/1").unwrap();
    assert!(dup.broken);
    assert!(m.find(None, "GET", "/v2/bad").unwrap().broken);
    let fine = m.find(None, "GET", "/v2/other").unwrap();
    assert_eq!((fine.rule_id, fine.broken), ("e", false));
}

#[test]
fn rule_keys_ignore_parameter_names_only() {
    let k = |m: &str, p: &str| rule_key(None, m, p, false).unwrap();
    assert_eq!(k("GET", "/a/{id}"), k("get", "/a/{x}"));
    assert_ne!(k("GET", "/a/{id}"), k("GET", "/a/b"));
    assert_ne!(k("GET", "/a/**"), k("GET", "/a"));
    assert_ne!(k("GET", "/a"), k("*", "/a"));
    let ci = |p: &str| rule_key(None, "GET", p, true).unwrap();
    assert_eq!(ci("/V2/{id}"), ci("/v2/{x}"));
    assert_ne!(ci("/v2"), k("GET", "/v2"));
    assert_eq!(ci("/{id}"), k("GET", "/{x}"), "the same slot in the tree");
    assert_ne!(
        k("GET", "/a"),
        rule_key(Some("x.example"), "GET", "/a", false).unwrap()
    );
}

#[test]
fn semicolon_parameters_are_refused_or_stripped() {
    use super::{PathParams, normalize_request_path};
    for raw in ["/a;x=1/b", "/a/b;jsessionid=2", "/a%3Bx/b", "/a/b;"] {
        assert_eq!(
            normalize_request_path(raw, PathParams::Refuse),
            Err(PathError::Parameters),
            "{raw}"
        );
    }
    assert_eq!(
        normalize_request_path("/a/b?x=;", PathParams::Refuse).as_deref(),
        Ok("/a/b")
    );
    let strip = |raw| normalize_request_path(raw, PathParams::Strip).map(Cow::into_owned);
    assert_eq!(strip("/a;x=1/b").as_deref(), Ok("/a/b"));
    assert_eq!(strip("/a/b;jsessionid=2?q=1").as_deref(), Ok("/a/b"));
    assert_eq!(strip("/a;/../c").as_deref(), Ok("/c"));
    assert_eq!(strip("/a%3Bx/b").as_deref(), Ok("/a;x/b"));
}

#[test]
fn case_insensitive_rules_match_literals_in_any_case() {
    let mut users = r("ci", "GET", "/V2/Users/{id}", "users.read");
    users.case_insensitive = true;
    let exact = r("cs", "GET", "/v2/users/me", "me.read");
    let rest = r("any", "GET", "/v3/**", "catalog.read");
    let m = RouteMatcher::new(&[users, exact, rest]).unwrap();
    assert_eq!(hit(&m, None, "GET", "/v2/users/7"), Some("ci"));
    assert_eq!(hit(&m, None, "GET", "/V2/USERS/7"), Some("ci"));
    assert_eq!(hit(&m, None, "GET", "/v2/USERS/7"), Some("ci"));
    // An exact literal is more specific than a case-insensitive one.
    assert_eq!(hit(&m, None, "GET", "/v2/users/me"), Some("cs"));
    assert_eq!(hit(&m, None, "GET", "/v2/Users/me"), Some("ci"));
    // Exact rules stay exact.
    assert_eq!(hit(&m, None, "GET", "/V3/other"), None);
    assert_eq!(hit(&m, None, "GET", "/v3/other"), Some("any"));
}
