//! Envoy's external authorization, driven through the `envoy-types` client
//! exactly as Envoy would call it (there is no Envoy binary here).

use std::collections::HashMap;

use envoy_types::ext_authz::v3::pb::{Address, CheckRequest, CheckResponse, HttpResponse};
use envoy_types::pb::envoy::config::core::v3::SocketAddress;
use envoy_types::pb::envoy::config::core::v3::socket_address::PortSpecifier;
use envoy_types::pb::envoy::service::auth::v3::AttributeContext;
use envoy_types::pb::envoy::service::auth::v3::attribute_context::{HttpRequest, Peer, Request};
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use envoy_types::pb::google::protobuf::value::Kind;
use latchkey::pb;
use tonic::Code;

use crate::backend_tests;
use crate::common::{Backend, TestServer, key_request};

pub struct Http<'a> {
    method: &'a str,
    path: &'a str,
    host: &'a str,
    pub source: &'a str,
    headers: Vec<(&'a str, String)>,
}

impl<'a> Http<'a> {
    pub fn get(path: &'a str) -> Self {
        Self {
            method: "GET",
            path,
            host: "api.shop.example",
            source: "203.0.113.9",
            headers: vec![],
        }
    }

    pub fn bearer(mut self, key: &str) -> Self {
        self.headers
            .push(("authorization", format!("Bearer {key}")));
        self
    }

    pub fn header(mut self, name: &'a str, value: &str) -> Self {
        self.headers.push((name, value.to_owned()));
        self
    }

    pub fn method(mut self, m: &'a str) -> Self {
        self.method = m;
        self
    }

    fn request(&self) -> CheckRequest {
        CheckRequest {
            attributes: Some(AttributeContext {
                source: Some(Peer {
                    address: Some(envoy_types::pb::envoy::config::core::v3::Address {
                        address: Some(Address::SocketAddress(SocketAddress {
                            address: self.source.to_owned(),
                            port_specifier: Some(PortSpecifier::PortValue(50_000)),
                            ..Default::default()
                        })),
                    }),
                    ..Default::default()
                }),
                request: Some(Request {
                    http: Some(HttpRequest {
                        method: self.method.to_owned(),
                        path: self.path.to_owned(),
                        host: self.host.to_owned(),
                        headers: self
                            .headers
                            .iter()
                            .map(|(k, v)| ((*k).to_owned(), v.clone()))
                            .collect::<HashMap<_, _>>(),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
        }
    }
}

pub async fn ext_check(s: &TestServer, http: &Http<'_>) -> CheckResponse {
    AuthorizationClient::new(s.channel.clone())
        .check(http.request())
        .await
        .unwrap()
        .into_inner()
}

/// (HTTP status, body JSON) of a denial; panics on an allow.
pub fn denial(r: &CheckResponse) -> (i32, serde_json::Value, HashMap<String, String>) {
    match r.http_response.as_ref().unwrap() {
        HttpResponse::DeniedResponse(d) => (
            d.status.as_ref().unwrap().code,
            serde_json::from_str(&d.body).unwrap(),
            d.headers
                .iter()
                .map(|h| {
                    let h = h.header.as_ref().unwrap();
                    (h.key.clone(), h.value.clone())
                })
                .collect(),
        ),
        HttpResponse::OkResponse(_) => panic!("expected a denial, got an allow: {r:?}"),
        other => panic!("unexpected response {other:?}"),
    }
}

/// (added headers, removed headers) of an allow; panics on a denial.
pub fn allow(r: &CheckResponse) -> (HashMap<String, String>, Vec<String>) {
    assert_eq!(r.status.as_ref().unwrap().code, 0);
    match r.http_response.as_ref().unwrap() {
        HttpResponse::OkResponse(ok) => (
            ok.headers
                .iter()
                .map(|h| {
                    let h = h.header.as_ref().unwrap();
                    (h.key.clone(), h.value.clone())
                })
                .collect(),
            ok.headers_to_remove.clone(),
        ),
        other => panic!("expected an allow, got {other:?}"),
    }
}

pub async fn rule(
    s: &TestServer,
    host: &str,
    method: &str,
    path: &str,
    permission: &str,
) -> pb::Rule {
    pb::route_service_client::RouteServiceClient::new(s.channel.clone())
        .create_rule(s.admin(pb::CreateRuleRequest {
            host: host.into(),
            method: method.into(),
            path: path.into(),
            permission: permission.into(),
            case_insensitive: false,
        }))
        .await
        .unwrap()
        .into_inner()
}

async fn allowed_requests_carry_the_principal(backend: Backend) {
    let s = TestServer::start(backend).await;
    rule(&s, "", "GET", "/v2/surveys/{id}", "surveys.read").await;
    let (key, secret) = s.simple_key("PRIME", &["surveys.read"]).await;
    let r = ext_check(
        &s,
        &Http::get("/v2/surveys/42?x=1")
            .bearer(&secret)
            .header("x-latchkey-account-id", "acct_forged")
            .header("x-latchkey-admin", "yes"),
    )
    .await;
    let (added, removed) = allow(&r);
    assert_eq!(added["x-latchkey-account-id"], key.account_id);
    assert_eq!(added["x-latchkey-key-id"], key.id);
    assert_eq!(added["x-latchkey-mode"], "test");
    assert_eq!(added["x-latchkey-scopes"], "surveys.read");
    assert_eq!(added["x-latchkey-plan"], "PRIME");
    // A forged principal header is overwritten or removed, never passed on.
    assert!(
        removed.contains(&"x-latchkey-admin".to_owned()),
        "{removed:?}"
    );
    let meta = r.dynamic_metadata.unwrap();
    assert!(meta.fields.contains_key("account_id"));
    // The API-key header works too.
    let r = ext_check(&s, &Http::get("/v2/surveys/7").header("x-api-key", &secret)).await;
    allow(&r);
    s.stop().await;
}

async fn denials_have_the_right_status(backend: Backend) {
    let s = TestServer::start(backend).await;
    rule(&s, "", "GET", "/v2/surveys/{id}", "surveys.read").await;
    rule(&s, "", "DELETE", "/v2/surveys/{id}", "surveys.delete").await;
    let (key, secret) = s.simple_key("PRIME", &["surveys.read"]).await;

    let (status, body, headers) = denial(&ext_check(&s, &Http::get("/v2/surveys/1")).await);
    assert_eq!(status, 401);
    assert_eq!(body["reason"], "CREDENTIAL_MISSING");
    assert_eq!(
        headers["www-authenticate"], "Bearer realm=\"latchkey\"",
        "RFC 6750 §3.1"
    );

    let (status, body, headers) =
        denial(&ext_check(&s, &Http::get("/v2/surveys/1").bearer("lk_test_sk_nope")).await);
    assert_eq!(
        (status, body["reason"].as_str()),
        (401, Some("CREDENTIAL_MALFORMED"))
    );
    assert!(headers["www-authenticate"].contains("error=\"invalid_token\""));

    let r = ext_check(
        &s,
        &Http::get("/v2/surveys/1").method("DELETE").bearer(&secret),
    )
    .await;
    let (status, body, _) = denial(&r);
    assert_eq!((status, body["error"].as_str()), (403, Some("forbidden")));
    assert_eq!(body["reason"], "PERMISSION_DENIED");
    assert!(body["message"].as_str().unwrap().contains("surveys.delete"));

    // No rule covers it: denied, whatever the credential.
    let (status, body, _) = denial(&ext_check(&s, &Http::get("/v2/admin").bearer(&secret)).await);
    assert_eq!(
        (status, body["reason"].as_str()),
        (403, Some("ROUTE_NOT_ALLOWED"))
    );

    s.keys()
        .revoke_key(s.admin(pb::RevokeKeyRequest { id: key.id.clone() }))
        .await
        .unwrap();
    let (status, body, _) =
        denial(&ext_check(&s, &Http::get("/v2/surveys/1").bearer(&secret)).await);
    assert_eq!(
        (status, body["reason"].as_str()),
        (401, Some("KEY_REVOKED"))
    );
    s.stop().await;
}

async fn paths_are_normalised_before_matching(backend: Backend) {
    let s = TestServer::start(backend).await;
    rule(&s, "", "GET", "/v2/public/**", "public.read").await;
    rule(&s, "", "GET", "/v2/admin/**", "admin_area.read").await;
    let (_, public_only) = s.simple_key("PRIME", &["public.read"]).await;
    allow(&ext_check(&s, &Http::get("/v2/public/docs").bearer(&public_only)).await);
    for sneaky in [
        "/v2/public/../admin/users",
        "/v2/public/%2e%2e/admin/users",
        "/v2/public/%2E%2E/admin/users",
        "//v2//admin/users",
        "/v2/./admin/users",
    ] {
        let (status, body, _) =
            denial(&ext_check(&s, &Http::get(sneaky).bearer(&public_only)).await);
        assert_eq!(status, 403, "{sneaky}");
        assert_eq!(
            body["reason"], "PERMISSION_DENIED",
            "{sneaky}: judged as the admin route"
        );
    }
    let (status, body, _) =
        denial(&ext_check(&s, &Http::get("/v2/public/a%2Fb").bearer(&public_only)).await);
    assert_eq!(
        (status, body["reason"].as_str()),
        (400, Some("PATH_INVALID"))
    );
    s.stop().await;
}

async fn most_specific_rule_wins_and_hosts_are_separate(backend: Backend) {
    let s = TestServer::start(backend).await;
    rule(&s, "", "*", "/v2/**", "v2.any").await;
    rule(&s, "", "GET", "/v2/surveys/export", "surveys.export").await;
    rule(&s, "partner.example", "GET", "/v2/**", "partner.read").await;
    let (_, export_only) = s.simple_key("PRIME", &["surveys.export"]).await;
    let (_, v2_any) = s.simple_key("PRIME", &["v2.any"]).await;
    allow(&ext_check(&s, &Http::get("/v2/surveys/export").bearer(&export_only)).await);
    denial(&ext_check(&s, &Http::get("/v2/surveys/export").bearer(&v2_any)).await);
    allow(&ext_check(&s, &Http::get("/v2/anything").bearer(&v2_any)).await);
    let mut partner = Http::get("/v2/anything").bearer(&v2_any);
    partner.host = "partner.example:443";
    let (_, body, _) = denial(&ext_check(&s, &partner).await);
    assert!(
        body["message"].as_str().unwrap().contains("partner.read"),
        "{body}"
    );
    s.stop().await;
}

async fn rules_are_managed_and_validated(backend: Backend) {
    let s = TestServer::start(backend).await;
    let mut routes = pb::route_service_client::RouteServiceClient::new(s.channel.clone());
    let created = rule(&s, "", "get", "/v2/feeds/{feed}", "feeds.read").await;
    assert_eq!(created.method, "GET");
    let err = routes
        .create_rule(s.admin(pb::CreateRuleRequest {
            host: String::new(),
            method: "GET".into(),
            path: "/v2/feeds/{other}".into(),
            permission: "feeds.read".into(),
            case_insensitive: false,
        }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{}", err.message());
    for (field, req) in [
        (
            "path",
            pb::CreateRuleRequest {
                method: "GET".into(),
                path: "/a/**/b".into(),
                permission: "a.b".into(),
                case_insensitive: false,
                ..Default::default()
            },
        ),
        (
            "method",
            pb::CreateRuleRequest {
                method: "FETCH".into(),
                path: "/a".into(),
                permission: "a.b".into(),
                case_insensitive: false,
                ..Default::default()
            },
        ),
        (
            "permission",
            pb::CreateRuleRequest {
                method: "GET".into(),
                path: "/a".into(),
                permission: "a.*".into(),
                case_insensitive: false,
                ..Default::default()
            },
        ),
    ] {
        let err = routes.create_rule(s.admin(req)).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
        assert!(
            err.message().starts_with(field),
            "{field}: {}",
            err.message()
        );
    }
    let listed = routes
        .list_rules(s.admin(pb::ListRulesRequest::default()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.rules.len(), 1);
    let (_, secret) = s.simple_key("PRIME", &["feeds.read"]).await;
    allow(&ext_check(&s, &Http::get("/v2/feeds/main").bearer(&secret)).await);
    routes
        .delete_rule(s.admin(pb::DeleteRuleRequest {
            id: created.id.clone(),
        }))
        .await
        .unwrap();
    let (status, _, _) = denial(&ext_check(&s, &Http::get("/v2/feeds/main").bearer(&secret)).await);
    assert_eq!(status, 403, "a deleted rule stops matching at once");
    let err = routes
        .delete_rule(s.admin(pb::DeleteRuleRequest { id: created.id }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    s.stop().await;
}

async fn public_routes_trusted_hops_and_stripping(backend: Backend) {
    let s = TestServer::start_with(backend, |c| {
        c.ext_authz.public_routes = vec!["GET /v2/status".into()];
        c.ext_authz.trusted_hops = 1;
        c.ext_authz.strip_credential = true;
    })
    .await;
    allow(&ext_check(&s, &Http::get("/v2/status")).await);
    rule(&s, "", "GET", "/v2/orders", "orders.read").await;
    let account = s.account("PRIME").await;
    let mut req = key_request(&account.id, &["orders.read"]);
    req.allowed_cidrs = vec!["198.51.100.0/24".into()];
    let (_, secret) = s.create_key(req).await;
    // Envoy's source is the load balancer; the client is what it appended.
    let through_lb = Http::get("/v2/orders")
        .bearer(&secret)
        .header("x-forwarded-for", "10.9.9.9, 198.51.100.7");
    let (_, removed) = allow(&ext_check(&s, &through_lb).await);
    assert!(
        removed.contains(&"authorization".to_owned()),
        "credential stripped: {removed:?}"
    );
    let spoofed = Http::get("/v2/orders")
        .bearer(&secret)
        .header("x-forwarded-for", "198.51.100.7, 10.9.9.9");
    let (status, body, _) = denial(&ext_check(&s, &spoofed).await);
    assert_eq!(
        (status, body["reason"].as_str()),
        (403, Some("IP_NOT_ALLOWED"))
    );
    s.stop().await;
}

backend_tests!(
    allowed_requests_carry_the_principal,
    denials_have_the_right_status,
    paths_are_normalised_before_matching,
    most_specific_rule_wins_and_hosts_are_separate,
    rules_are_managed_and_validated,
    public_routes_trusted_hops_and_stripping,
    store_header_is_checked_and_passed_through,
    dynamic_metadata_can_be_turned_off,
    the_principal_follows_key_updates,
    raw_header_map_is_read_like_the_headers_map,
    credentials_are_never_normalised_or_chosen,
    route_rules_cannot_break_the_service,
    path_parameters_are_refused_or_stripped,
    rules_can_be_case_insensitive,
);

/// For upstreams that route case-insensitively, a rule can say so; others
/// stay exact.
async fn rules_can_be_case_insensitive(backend: Backend) {
    let s = TestServer::start(backend).await;
    let created = pb::route_service_client::RouteServiceClient::new(s.channel.clone())
        .create_rule(s.admin(pb::CreateRuleRequest {
            host: String::new(),
            method: "GET".into(),
            path: "/v2/Reports/{id}".into(),
            permission: "reports.read".into(),
            case_insensitive: true,
        }))
        .await
        .unwrap()
        .into_inner();
    assert!(created.case_insensitive);
    rule(&s, "", "GET", "/v2/exact", "reports.read").await;
    let (_, secret) = s.simple_key("PRIME", &["reports.read"]).await;
    for path in ["/v2/reports/1", "/V2/REPORTS/1", "/v2/rEpOrTs/1"] {
        allow(&ext_check(&s, &Http::get(path).bearer(&secret)).await);
    }
    let (_, body, _) = denial(&ext_check(&s, &Http::get("/v2/EXACT").bearer(&secret)).await);
    assert_eq!(body["reason"], "ROUTE_NOT_ALLOWED");
    s.stop().await;
}

/// Concurrent creations of one route store one rule (a unique constraint,
/// not a check before the write); a stored set with a duplicate (as the
/// race left it before the constraint) never stops `serve`: the duplicated
/// route is denied, the others work, rules can still be changed.
async fn route_rules_cannot_break_the_service(backend: Backend) {
    use sea_orm::ConnectionTrait;
    let s = TestServer::start(backend).await;
    let (_, secret) = s
        .simple_key("PRIME", &["feeds.read", "orders.read", "users.read"])
        .await;
    let attempts = (0..8).map(|i| {
        let mut routes = pb::route_service_client::RouteServiceClient::new(s.channel.clone());
        let req = s.admin(pb::CreateRuleRequest {
            host: String::new(),
            method: "GET".into(),
            path: format!("/v2/feeds/{{p{i}}}"),
            permission: "feeds.read".into(),
            case_insensitive: false,
        });
        async move { routes.create_rule(req).await }
    });
    let results = futures::future::join_all(attempts).await;
    let created = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(created, 1, "{results:?}");
    for r in results.iter().filter_map(|r| r.as_ref().err()) {
        assert_eq!(r.code(), Code::FailedPrecondition, "{}", r.message());
    }
    rule(&s, "", "GET", "/v2/orders", "orders.read").await;

    // A duplicate written behind the service's back, as before the constraint.
    let db = sea_orm::Database::connect(&s.db.url).await.unwrap();
    db.execute_unprepared(
        "INSERT INTO route_rules (id, host, method, path, permission, created_at, match_key) \
         VALUES ('rule_00000000000000000000000000000d00', '', 'GET', '/v2/feeds/{x}', 'public.read', 1, NULL)",
    )
    .await
    .unwrap();
    let stored = s.db.clone();
    s.stop_keep_db().await;
    let s = TestServer::start_on(stored, |_| {}, None).await;
    let (_, body, _) = denial(&ext_check(&s, &Http::get("/v2/feeds/7").bearer(&secret)).await);
    assert_eq!(body["reason"], "ROUTE_NOT_ALLOWED", "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("broken"),
        "{body}"
    );
    allow(&ext_check(&s, &Http::get("/v2/orders").bearer(&secret)).await);
    assert!(
        s.running()
            .services
            .routes
            .broken()
            .iter()
            .any(|e| e.contains("rule_00000000000000000000000000000d00")),
        "the duplicate is reported"
    );
    // Later rule changes still work, and deleting the duplicate heals the route.
    rule(&s, "", "GET", "/v2/users", "users.read").await;
    allow(&ext_check(&s, &Http::get("/v2/users").bearer(&secret)).await);
    pb::route_service_client::RouteServiceClient::new(s.channel.clone())
        .delete_rule(s.admin(pb::DeleteRuleRequest {
            id: "rule_00000000000000000000000000000d00".into(),
        }))
        .await
        .unwrap();
    allow(&ext_check(&s, &Http::get("/v2/feeds/7").bearer(&secret)).await);
    s.stop().await;
}

/// `;` parameters: refused by default (the upstream may strip them and
/// read another path than the rule saw), or stripped when configured.
async fn path_parameters_are_refused_or_stripped(backend: Backend) {
    for strip in [false, true] {
        let s = TestServer::start_with(backend, |c| {
            if strip {
                c.ext_authz.path_parameters = "strip".into();
            }
        })
        .await;
        rule(&s, "", "GET", "/v2/public/**", "public.read").await;
        rule(&s, "", "GET", "/v2/admin/**", "admin_area.read").await;
        let (_, public_only) = s.simple_key("PRIME", &["public.read"]).await;
        for path in [
            "/v2/public;x=1/docs",
            "/v2/public/docs;jsessionid=1",
            "/v2/public%3B/docs",
        ] {
            let r = ext_check(&s, &Http::get(path).bearer(&public_only)).await;
            if strip && !path.contains("%3B") {
                allow(&r);
            } else if strip {
                assert_eq!(denial(&r).1["reason"], "ROUTE_NOT_ALLOWED", "{path}");
            } else {
                let (status, body, _) = denial(&r);
                assert_eq!(
                    (status, body["reason"].as_str()),
                    (400, Some("PATH_INVALID")),
                    "{path}"
                );
            }
        }
        // Stripped, `/v2/admin;x=/secret` is the admin route, as the upstream reads it.
        let r = ext_check(&s, &Http::get("/v2/admin;x=1/secret").bearer(&public_only)).await;
        if strip {
            assert_eq!(denial(&r).1["reason"], "PERMISSION_DENIED");
        } else {
            assert_eq!(denial(&r).0, 400);
        }
        s.stop().await;
    }
}

/// A credential with whitespace or control characters is malformed, never
/// trimmed; a repeated credential header (in `headers` or in `header_map`)
/// is refused, never decided by its first or last value.
async fn credentials_are_never_normalised_or_chosen(backend: Backend) {
    use envoy_types::pb::envoy::config::core::v3::{HeaderMap, HeaderValue};
    let s = TestServer::start(backend).await;
    rule(&s, "", "GET", "/v2/products", "products.read").await;
    let (_, secret) = s.simple_key("PRIME", &["products.read"]).await;
    let malformed = |r: &CheckResponse| {
        let (status, body, _) = denial(r);
        assert_eq!(
            (status, body["reason"].as_str()),
            (401, Some("CREDENTIAL_MALFORMED")),
            "{body}"
        );
    };
    for bad in [
        format!("Bearer {secret} "),
        format!("Bearer {secret}\r\n"),
        format!("Bearer  {secret}"),
        format!("Bearer\t{secret}"),
        format!(" Bearer {secret}"),
        format!("Bearer {secret}\u{7f}"),
        format!("Bearer {secret}, Bearer {secret}"),
    ] {
        malformed(&ext_check(&s, &Http::get("/v2/products").header("authorization", &bad)).await);
    }
    for bad in [
        format!(" {secret}"),
        format!("{secret}\n"),
        format!("Bearer {secret}"),
    ] {
        malformed(&ext_check(&s, &Http::get("/v2/products").header("x-api-key", &bad)).await);
    }
    // `header_map` (`encode_raw_headers`): each repeat is its own entry.
    let raw = |entries: &[(&str, Vec<u8>)]| {
        let mut req = Http::get("/v2/products").request();
        let http = req
            .attributes
            .as_mut()
            .and_then(|a| a.request.as_mut())
            .and_then(|r| r.http.as_mut())
            .unwrap();
        http.header_map = Some(HeaderMap {
            headers: entries
                .iter()
                .map(|(k, v)| HeaderValue {
                    key: (*k).into(),
                    value: String::new(),
                    raw_value: v.clone(),
                })
                .collect(),
        });
        req
    };
    let bearer = format!("Bearer {secret}").into_bytes();
    let mut client = AuthorizationClient::new(s.channel.clone());
    allow(
        &client
            .check(raw(&[("authorization", bearer.clone())]))
            .await
            .unwrap()
            .into_inner(),
    );
    for entries in [
        vec![
            ("authorization", bearer.clone()),
            ("authorization", bearer.clone()),
        ],
        vec![
            ("authorization", bearer.clone()),
            ("Authorization", b"Bearer lk_x".to_vec()),
        ],
        vec![
            ("authorization", b"Bearer lk_x".to_vec()),
            ("authorization", bearer.clone()),
        ],
        // Bytes that are not UTF-8 still count as a second header.
        vec![
            ("authorization", bearer.clone()),
            ("authorization", vec![0xff, 0xfe]),
        ],
        vec![
            ("x-api-key", secret.clone().into_bytes()),
            ("x-api-key", secret.clone().into_bytes()),
        ],
        vec![("authorization", format!("Bearer {secret}\r").into_bytes())],
    ] {
        malformed(&client.check(raw(&entries)).await.unwrap().into_inner());
    }
    let mut req = Http::get("/v2/products").bearer(&secret).request();
    if let Some(http) = req
        .attributes
        .as_mut()
        .and_then(|a| a.request.as_mut())
        .and_then(|r| r.http.as_mut())
    {
        http.headers.insert("x-api-key".into(), secret.clone());
    }
    // Two sources at once is fine: Authorization is read first.
    allow(&client.check(req).await.unwrap().into_inner());
    s.stop().await;
}

/// Envoy's `encode_raw_headers` sends headers in `header_map`, values as bytes.
async fn raw_header_map_is_read_like_the_headers_map(backend: Backend) {
    use envoy_types::pb::envoy::config::core::v3::{HeaderMap, HeaderValue};
    let s = TestServer::start(backend).await;
    rule(&s, "", "GET", "/v2/products", "products.read").await;
    let (key, secret) = s.simple_key("PRIME", &["products.read"]).await;
    let raw = |credential: &str| {
        let mut req = Http::get("/v2/products").request();
        let http = req
            .attributes
            .as_mut()
            .and_then(|a| a.request.as_mut())
            .and_then(|r| r.http.as_mut())
            .unwrap();
        http.header_map = Some(HeaderMap {
            headers: vec![
                HeaderValue {
                    key: "authorization".into(),
                    value: String::new(),
                    raw_value: format!("Bearer {credential}").into_bytes(),
                },
                HeaderValue {
                    key: "x-latchkey-admin".into(),
                    value: String::new(),
                    raw_value: b"true".to_vec(),
                },
            ],
        });
        req
    };
    let mut client = AuthorizationClient::new(s.channel.clone());
    let r = client.check(raw(&secret)).await.unwrap().into_inner();
    let (headers, removed) = allow(&r);
    assert_eq!(headers["x-latchkey-account-id"], key.account_id);
    assert!(
        removed.contains(&"x-latchkey-admin".to_owned()),
        "{removed:?}"
    );
    let r = client
        .check(raw("lk_test_sk_nope"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(denial(&r).0, 401);
    s.stop().await;
}

async fn store_header_is_checked_and_passed_through(backend: Backend) {
    let s = TestServer::start_with(backend, |c| {
        c.check.store_header = Some("x-beep-store-id".into())
    })
    .await;
    rule(&s, "", "GET", "/v2/products", "products.read").await;
    let (key, secret) = s.simple_key("PRIME", &["products.read"]).await;
    s.accounts()
        .add_store(s.admin(pb::AddStoreRequest {
            account_id: key.account_id.clone(),
            store_id: "store-1".into(),
        }))
        .await
        .unwrap();
    let own = Http::get("/v2/products")
        .bearer(&secret)
        .header("x-beep-store-id", "store-1");
    let (_, removed) = allow(&ext_check(&s, &own).await);
    assert!(
        !removed.contains(&"x-beep-store-id".to_owned()),
        "the store header goes upstream"
    );
    let other = Http::get("/v2/products")
        .bearer(&secret)
        .header("x-beep-store-id", "store-9");
    let (status, body, _) = denial(&ext_check(&s, &other).await);
    assert_eq!(
        (status, body["reason"].as_str()),
        (403, Some("STORE_NOT_ALLOWED"))
    );
    s.stop().await;
}

async fn dynamic_metadata_can_be_turned_off(backend: Backend) {
    let s = TestServer::start_with(backend, |c| c.ext_authz.dynamic_metadata = false).await;
    rule(&s, "", "GET", "/v2/products", "products.read").await;
    let (key, secret) = s.simple_key("PRIME", &["products.read"]).await;
    let r = ext_check(&s, &Http::get("/v2/products").bearer(&secret)).await;
    assert!(r.dynamic_metadata.is_none());
    let (added, _) = allow(&r);
    assert_eq!(added["x-latchkey-key-id"], key.id, "the headers stay");
    s.stop().await;
}

/// The encoded principal is cached per key: an update must show in the next allow.
async fn the_principal_follows_key_updates(backend: Backend) {
    let s = TestServer::start(backend).await;
    rule(&s, "", "GET", "/v2/products", "products.read").await;
    let (key, secret) = s.simple_key("PRIME", &["products.read"]).await;
    let req = Http::get("/v2/products").bearer(&secret);
    let scopes = |r: &CheckResponse| {
        let meta = match r.dynamic_metadata.as_ref().unwrap().fields["scopes"].kind {
            Some(Kind::StringValue(ref v)) => v.clone(),
            ref other => panic!("scopes metadata is {other:?}"),
        };
        (allow(r).0["x-latchkey-scopes"].clone(), meta)
    };
    for _ in 0..3 {
        let r = ext_check(&s, &req).await;
        assert_eq!(scopes(&r), ("products.read".into(), "products.read".into()));
    }
    s.keys()
        .update_key(s.admin(pb::UpdateKeyRequest {
            id: key.id.clone(),
            scopes: Some(pb::StringList {
                values: vec!["products.read".into(), "products.write".into()],
            }),
            ..Default::default()
        }))
        .await
        .unwrap();
    for _ in 0..3 {
        let (header, meta) = scopes(&ext_check(&s, &req).await);
        assert!(header.contains("products.write"), "{header}");
        assert_eq!(header, meta);
    }
    s.stop().await;
}
