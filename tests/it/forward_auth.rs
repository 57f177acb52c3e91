//! The forward-auth endpoint itself, asked over plain HTTP/1.1 with the
//! header sets nginx (and ingress-nginx), Traefik and Caddy send: each
//! flavor, the trusted-proxy rule, the client-address rule, and every
//! answer (200, 401, 403, 400, 503). The real proxies are in
//! tests/blackbox/test_forward_auth.py.

use std::net::SocketAddr;

use latchkey::config::Config;
use latchkey::pb;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::backend_tests;
use crate::common::{Backend, TestServer, eventually, key_request};
use crate::ext_authz::{Http, denial, ext_check, rule};
use crate::signing::{new_secret, now_secs, request_header, set_key_signing};

/// One answer, as a proxy reads it.
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        let mut values = self.headers.iter().filter(|(k, _)| k == name);
        let first = values.next().map(|(_, v)| v.as_str());
        assert!(values.next().is_none(), "{name} repeats: {self:?}");
        first
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {self:?}"))
    }

    fn reason(&self) -> String {
        self.json()["reason"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }
}

/// `METHOD path` to the forward-auth listener with exactly these headers
/// (and a Host, unless one is given).
async fn ask_raw(addr: SocketAddr, line: &str, headers: &[(&str, &str)]) -> Answer {
    let mut req = format!("{line} HTTP/1.1\r\nConnection: close\r\n");
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        req.push_str("Host: latchkey:8081\r\n");
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .map(|l| {
            let (k, v) = l.split_once(':').unwrap();
            (k.trim().to_ascii_lowercase(), v.trim().to_owned())
        })
        .collect();
    Answer {
        status,
        headers,
        body: body.to_owned(),
    }
}

async fn ask(addr: SocketAddr, headers: &[(&str, &str)]) -> Answer {
    ask_raw(addr, "GET /forward-auth", headers).await
}

fn addr(s: &TestServer) -> SocketAddr {
    s.running().forward_auth_addr.expect("forward auth is on")
}

/// Forward auth on `flavor`, trusting loopback; `GET /v2/public/**` is public.
fn forward_auth(flavor: &str) -> impl FnOnce(&mut Config) {
    let flavor = flavor.to_owned();
    move |c: &mut Config| {
        c.forward_auth.enabled = true;
        c.forward_auth.addr = "127.0.0.1:0".into();
        c.forward_auth.flavor = flavor;
        c.forward_auth.trusted_proxies = vec!["127.0.0.1/32".into()];
        c.ext_authz.public_routes = vec!["GET /v2/public/**".into()];
    }
}

/// nginx's `auth_request` subrequest as deploy/nginx/nginx.conf sends it.
fn nginx<'a>(
    method: &'a str,
    uri: &'a str,
    extra: &[(&'a str, &'a str)],
) -> Vec<(&'a str, &'a str)> {
    let mut h = vec![
        ("X-Original-URI", uri),
        ("X-Original-Method", method),
        ("X-Forwarded-Host", "api.shop.example"),
        ("X-Forwarded-Proto", "https"),
        ("X-Forwarded-For", "203.0.113.9"),
    ];
    h.extend_from_slice(extra);
    h
}

/// Traefik's (and Caddy's) `X-Forwarded-*` set.
fn forwarded<'a>(
    method: &'a str,
    uri: &'a str,
    extra: &[(&'a str, &'a str)],
) -> Vec<(&'a str, &'a str)> {
    let mut h = vec![
        ("X-Forwarded-Method", method),
        ("X-Forwarded-Proto", "https"),
        ("X-Forwarded-Host", "api.shop.example"),
        ("X-Forwarded-Uri", uri),
        ("X-Forwarded-For", "203.0.113.9"),
    ];
    h.extend_from_slice(extra);
    h
}

const PRINCIPAL: [&str; 5] = [
    "x-latchkey-account-id",
    "x-latchkey-key-id",
    "x-latchkey-mode",
    "x-latchkey-scopes",
    "x-latchkey-plan",
];

fn assert_principal(a: &Answer, key: &pb::Key) {
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(
        a.header("x-latchkey-account-id"),
        Some(key.account_id.as_str())
    );
    assert_eq!(a.header("x-latchkey-key-id"), Some(key.id.as_str()));
    assert_eq!(a.header("x-latchkey-mode"), Some("test"));
    assert_eq!(a.header("x-latchkey-scopes"), Some("surveys.read"));
    assert_eq!(a.header("x-latchkey-plan"), Some("PRIME"));
}

/// A denial as Traefik and Caddy pass it on: the real status, the JSON body.
fn assert_plain(a: &Answer, status: u16, reason: &str) {
    assert_eq!((a.status, a.reason().as_str()), (status, reason), "{a:?}");
    assert_eq!(a.header("content-type"), Some("application/json"));
    assert_eq!(a.header("x-latchkey-status"), None, "{a:?}");
    assert_eq!(a.header("x-latchkey-denial"), None, "{a:?}");
    assert_eq!(
        a.header("www-authenticate").is_some(),
        status == 401,
        "{a:?}"
    );
}

/// A denial for nginx: 401, 403 or 503, the real status and the body in headers.
fn assert_nginx(a: &Answer, sent: u16, real: u16, reason: &str) {
    assert_eq!((a.status, a.reason().as_str()), (sent, reason), "{a:?}");
    assert_eq!(
        a.header("x-latchkey-status"),
        Some(real.to_string().as_str()),
        "{a:?}"
    );
    assert_eq!(
        a.header("x-latchkey-denial"),
        Some(a.body.as_str()),
        "{a:?}"
    );
}

async fn setup(s: &TestServer) -> (pb::Key, String) {
    rule(s, "", "GET", "/v2/surveys/{id}", "surveys.read").await;
    rule(s, "", "DELETE", "/v2/surveys/{id}", "surveys.delete").await;
    s.simple_key("PRIME", &["surveys.read"]).await
}

async fn nginx_flavor(backend: Backend) {
    let s = TestServer::start_with(backend, forward_auth("nginx")).await;
    let fa = addr(&s);
    let (key, secret) = setup(&s).await;
    let auth = format!("Bearer {secret}");
    let bearer = [("Authorization", auth.as_str())];

    let a = ask(fa, &nginx("GET", "/v2/surveys/42?x=1", &bearer)).await;
    assert_principal(&a, &key);
    assert_eq!(a.body, "");
    let a = ask(
        fa,
        &nginx("GET", "/v2/surveys/42", &[("X-Api-Key", secret.as_str())]),
    )
    .await;
    assert_principal(&a, &key);
    // Public: the five headers, empty.
    let a = ask(fa, &nginx("GET", "/v2/public/status", &[])).await;
    assert_eq!(a.status, 200, "{a:?}");
    for h in PRINCIPAL {
        assert_eq!(a.header(h), Some(""), "{h}");
    }

    let a = ask(fa, &nginx("GET", "/v2/surveys/42", &[])).await;
    assert_nginx(&a, 401, 401, "CREDENTIAL_MISSING");
    assert_eq!(
        a.header("www-authenticate"),
        Some("Bearer realm=\"latchkey\"")
    );
    assert_eq!(
        a.body,
        r#"{"error":"unauthorized","message":"no credential was presented","reason":"CREDENTIAL_MISSING"}"#
    );
    let a = ask(fa, &nginx("DELETE", "/v2/surveys/42", &bearer)).await;
    assert_nginx(&a, 403, 403, "PERMISSION_DENIED");
    let a = ask(fa, &nginx("GET", "/v2/public/../admin", &[])).await;
    assert_nginx(&a, 403, 403, "ROUTE_NOT_ALLOWED");
    // A 400 does not pass auth_request: 403, and the real status beside it.
    let a = ask(fa, &nginx("GET", "/v2/surveys/a%2Fb", &bearer)).await;
    assert_nginx(&a, 403, 400, "PATH_INVALID");
    assert_eq!(a.json()["error"], "bad_request");
    // A client's header in Latchkey's namespace cannot be removed by nginx:
    // refused, even on a public route.
    for forged in ["x-latchkey-account-id", "x-latchkey-admin"] {
        let a = ask(fa, &nginx("GET", "/v2/public/x", &[(forged, "forged")])).await;
        assert_nginx(&a, 403, 400, "REQUEST_INVALID");
        assert!(
            a.json()["message"].as_str().unwrap().contains(forged),
            "{a:?}"
        );
    }

    // ingress-nginx: the absolute X-Original-URL, host included.
    let ingress = |method: &'static str, url: &'static str| {
        vec![
            ("X-Original-URL", url),
            ("X-Original-Method", method),
            ("X-Forwarded-For", "203.0.113.9"),
            ("X-Real-IP", "203.0.113.9"),
            ("X-Sent-From", "nginx-ingress-controller"),
        ]
    };
    let mut h = ingress("GET", "https://api.shop.example/v2/surveys/42?x=1");
    h.extend_from_slice(&bearer);
    assert_principal(&ask(fa, &h).await, &key);
    let h = ingress("GET", "https://api.shop.example/v2/public/../surveys/1");
    assert_nginx(&ask(fa, &h).await, 401, 401, "CREDENTIAL_MISSING");

    // Described twice, or the other flavor's way, or not at all: refused.
    let mut both = nginx("GET", "/v2/public/x", &[]);
    both.push(("X-Original-URL", "https://api.shop.example/v2/admin"));
    assert_nginx(&ask(fa, &both).await, 403, 400, "REQUEST_INVALID");
    let a = ask(fa, &forwarded("GET", "/v2/public/x", &[])).await;
    assert_nginx(&a, 403, 400, "REQUEST_INVALID");
    let a = ask(fa, &[("X-Original-URI", "/v2/public/x")]).await;
    assert_nginx(&a, 403, 400, "REQUEST_INVALID");
    s.stop().await;
}

async fn traefik_and_caddy_flavors(backend: Backend) {
    for flavor in ["traefik", "caddy"] {
        let s = TestServer::start_with(backend, forward_auth(flavor)).await;
        let fa = addr(&s);
        let (key, secret) = setup(&s).await;
        let auth = format!("Bearer {secret}");
        let bearer = [("Authorization", auth.as_str())];

        assert_principal(
            &ask(fa, &forwarded("GET", "/v2/surveys/42", &bearer)).await,
            &key,
        );
        // Traefik asks with GET whatever the request; nginx with the request's method.
        let a = ask_raw(
            fa,
            "POST /forward-auth",
            &forwarded("GET", "/v2/surveys/42", &bearer),
        )
        .await;
        assert_principal(&a, &key);
        let a = ask(fa, &forwarded("GET", "/v2/public/x", &[])).await;
        assert_eq!(a.status, 200, "{a:?}");

        assert_plain(
            &ask(fa, &forwarded("GET", "/v2/surveys/42", &[])).await,
            401,
            "CREDENTIAL_MISSING",
        );
        let a = ask(
            fa,
            &forwarded(
                "GET",
                "/v2/surveys/42",
                &[("Authorization", "Bearer lk_test_sk_nope")],
            ),
        )
        .await;
        assert_plain(&a, 401, "CREDENTIAL_MALFORMED");
        assert!(
            a.header("www-authenticate")
                .unwrap()
                .contains("error=\"invalid_token\"")
        );
        assert_plain(
            &ask(fa, &forwarded("DELETE", "/v2/surveys/42", &bearer)).await,
            403,
            "PERMISSION_DENIED",
        );
        assert_plain(
            &ask(fa, &forwarded("GET", "/v2/public/%2e%2e/admin", &[])).await,
            403,
            "ROUTE_NOT_ALLOWED",
        );
        assert_plain(
            &ask(fa, &forwarded("GET", "/v2/surveys/a%5Cb", &bearer)).await,
            400,
            "PATH_INVALID",
        );
        // The nginx headers are not read: a client could add them.
        let mut h = forwarded("GET", "/v2/admin", &[]);
        h.push(("X-Original-URI", "/v2/public/x"));
        h.push(("X-Original-Method", "GET"));
        assert_plain(&ask(fa, &h).await, 403, "ROUTE_NOT_ALLOWED");
        assert_plain(
            &ask(fa, &[("X-Forwarded-Method", "GET")]).await,
            400,
            "REQUEST_INVALID",
        );
        // Headers in Latchkey's namespace are Traefik's and Caddy's to strip.
        let a = ask(
            fa,
            &forwarded("GET", "/v2/public/x", &[("X-Latchkey-Admin", "1")]),
        )
        .await;
        assert_eq!(a.status, 200, "{a:?}");
        s.stop().await;
    }
}

async fn auto_flavor_takes_one_description(backend: Backend) {
    let s = TestServer::start_with(backend, forward_auth("auto")).await;
    let fa = addr(&s);
    let (key, secret) = setup(&s).await;
    let auth = format!("Bearer {secret}");
    let bearer = [("Authorization", auth.as_str())];
    assert_principal(
        &ask(fa, &nginx("GET", "/v2/surveys/1", &bearer)).await,
        &key,
    );
    assert_principal(
        &ask(fa, &forwarded("GET", "/v2/surveys/1", &bearer)).await,
        &key,
    );
    // Each answered in its proxy's style.
    assert_nginx(
        &ask(fa, &nginx("GET", "/v2/a%2Fb", &[])).await,
        403,
        400,
        "PATH_INVALID",
    );
    assert_plain(
        &ask(fa, &forwarded("GET", "/v2/a%2Fb", &[])).await,
        400,
        "PATH_INVALID",
    );
    // A client that adds the other set gets a refusal, never the other reading.
    let mut h = nginx("GET", "/v2/admin", &bearer);
    h.push(("X-Forwarded-Uri", "/v2/surveys/1"));
    h.push(("X-Forwarded-Method", "GET"));
    assert_nginx(&ask(fa, &h).await, 403, 400, "REQUEST_INVALID");
    let mut h = forwarded("GET", "/v2/admin", &bearer);
    h.push(("X-Original-URI", "/v2/surveys/1"));
    assert_nginx(&ask(fa, &h).await, 403, 400, "REQUEST_INVALID");
    assert_plain(&ask(fa, &[]).await, 400, "REQUEST_INVALID");
    s.stop().await;
}

async fn only_trusted_proxies_may_ask(backend: Backend) {
    let s = TestServer::start_with(backend, |c| {
        forward_auth("traefik")(c);
        c.forward_auth.trusted_proxies = vec!["10.0.0.0/8".into(), "::1/128".into()];
    })
    .await;
    let fa = addr(&s);
    let (_, secret) = setup(&s).await;
    let auth = format!("Bearer {secret}");
    for h in [
        forwarded("GET", "/v2/surveys/42", &[("Authorization", auth.as_str())]),
        forwarded("GET", "/v2/public/x", &[]),
    ] {
        assert_plain(&ask(fa, &h).await, 403, "PROXY_NOT_TRUSTED");
    }
    s.stop().await;
    // The default trusts loopback.
    let s = TestServer::start_with(backend, |c| {
        c.forward_auth.enabled = true;
        c.forward_auth.addr = "127.0.0.1:0".into();
        c.ext_authz.public_routes = vec!["GET /v2/public/**".into()];
    })
    .await;
    let a = ask(addr(&s), &forwarded("GET", "/v2/public/x", &[])).await;
    assert_eq!(a.status, 200, "{a:?}");
    s.stop().await;
}

async fn the_client_is_the_address_the_proxy_appended(backend: Backend) {
    for hops in [0u8, 1] {
        let s = TestServer::start_with(backend, |c| {
            forward_auth("caddy")(c);
            c.ext_authz.trusted_hops = hops;
        })
        .await;
        let fa = addr(&s);
        rule(&s, "", "GET", "/v2/surveys/{id}", "surveys.read").await;
        let account = s.account("PRIME").await;
        let mut req = key_request(&account.id, &["surveys.read"]);
        req.allowed_cidrs = vec!["203.0.113.0/24".into()];
        let (_, secret) = s.create_key(req).await;
        let auth = format!("Bearer {secret}");
        let with_xff = |xff: &'static str| {
            let mut h = forwarded("GET", "/v2/surveys/1", &[("Authorization", auth.as_str())]);
            h.retain(|(k, _)| *k != "X-Forwarded-For");
            h.push(("X-Forwarded-For", xff));
            h
        };
        // With 0 hops the rightmost entry (the proxy's peer) is the client;
        // with 1, the one the proxy in front of it appended.
        let (inside, outside) = if hops == 0 {
            ("198.51.100.7, 203.0.113.9", "203.0.113.9, 198.51.100.7")
        } else {
            (
                "198.51.100.7, 203.0.113.9, 10.0.0.5",
                "203.0.113.9, 198.51.100.7, 10.0.0.5",
            )
        };
        let a = ask(fa, &with_xff(inside)).await;
        assert_eq!(a.status, 200, "hops={hops}: {a:?}");
        assert_plain(&ask(fa, &with_xff(outside)).await, 403, "IP_NOT_ALLOWED");
        let mut none = with_xff("x");
        none.retain(|(k, _)| *k != "X-Forwarded-For");
        assert_plain(&ask(fa, &none).await, 403, "IP_NOT_ALLOWED");
        s.stop().await;
    }
}

async fn signed_keys_are_refused_for_want_of_the_body(backend: Backend) {
    let s = TestServer::start_with(backend, forward_auth("nginx")).await;
    let fa = addr(&s);
    rule(&s, "", "GET", "/v2/responses", "feedback.read").await;
    let account = s.account("PRIME").await;
    let (key, secret) = s
        .create_key(key_request(&account.id, &["feedback.*"]))
        .await;
    let auth = format!("Bearer {secret}");
    let path = "/v2/responses?page=2";
    assert_eq!(
        ask(fa, &nginx("GET", path, &[("Authorization", auth.as_str())]))
            .await
            .status,
        200
    );
    let (sid, signing_secret) = new_secret(&s, &account.id).await;
    set_key_signing(&s, &key.id, &sid).await.unwrap();
    // Even a good signature of a GET with no body: the body is never seen
    // here, so no signature over it can be trusted.
    let sig = request_header(&signing_secret, now_secs(&s), "GET", path, b"");
    let h = nginx(
        "GET",
        path,
        &[
            ("Authorization", auth.as_str()),
            ("X-Latchkey-Signature", sig.as_str()),
        ],
    );
    let a = eventually("the key's signing mark is seen", || {
        let h = h.clone();
        async move {
            let a = ask(fa, &h).await;
            (a.status != 200).then_some(a)
        }
    })
    .await;
    assert_nginx(&a, 403, 403, "BODY_UNAVAILABLE");
    assert!(
        a.json()["message"].as_str().unwrap().contains("body"),
        "{a:?}"
    );
    s.stop().await;
}

/// The same requests get the same decisions through ext_authz and forward auth.
async fn decisions_match_ext_authz(backend: Backend) {
    let s = TestServer::start_with(backend, forward_auth("traefik")).await;
    let fa = addr(&s);
    let (_, secret) = setup(&s).await;
    let auth = format!("Bearer {secret}");
    for (method, path, credential) in [
        ("GET", "/v2/surveys/1", Some(auth.as_str())),
        ("GET", "/v2/surveys/1", None),
        ("GET", "/v2/surveys/1", Some("Bearer lk_test_sk_nope")),
        ("DELETE", "/v2/surveys/1", Some(auth.as_str())),
        ("GET", "/v2/public/x", None),
        ("GET", "/v2/public/../admin", None),
        ("GET", "//v2//surveys/./1", Some(auth.as_str())),
        ("GET", "/v2/surveys/%2e%2e", Some(auth.as_str())),
        ("GET", "/v2/surveys/a%2Fb", Some(auth.as_str())),
        ("GET", "relative", Some(auth.as_str())),
    ] {
        let mut envoy = Http::get(path).method(method);
        let mut h = forwarded(method, path, &[]);
        if let Some(c) = credential {
            envoy = envoy.header("authorization", c);
            h.push(("Authorization", c));
        }
        let e = ext_check(&s, &envoy).await;
        let f = ask(fa, &h).await;
        if f.status == 200 {
            assert!(
                e.status.as_ref().unwrap().code == 0,
                "{method} {path}: {e:?}"
            );
        } else {
            let (status, body, _) = denial(&e);
            assert_eq!(i32::from(f.status), status, "{method} {path}");
            assert_eq!(f.json(), body, "{method} {path}");
        }
    }
    s.stop().await;
}

async fn off_by_default_and_only_at_its_path(backend: Backend) {
    let s = TestServer::start(backend).await;
    assert!(s.running().forward_auth_addr.is_none());
    s.stop().await;
    let s = TestServer::start_with(backend, forward_auth("caddy")).await;
    let fa = addr(&s);
    assert_ne!(fa, s.running().http_addr, "never the public port");
    let a = ask_raw(
        fa,
        "GET /oauth2/token",
        &forwarded("GET", "/v2/public/x", &[]),
    )
    .await;
    assert_eq!(a.status, 404, "{a:?}");
    s.stop().await;
}

/// The gate is shared, so forward auth refuses a spent limit as ext_authz
/// does: 429 with Retry-After and both header conventions (for nginx, a 403
/// carrying the real status), and an allow carries the limit's fields.
async fn a_spent_limit_is_429_in_every_style(backend: Backend) {
    for flavor in ["traefik", "nginx"] {
        let s = TestServer::start_with(backend, forward_auth(flavor)).await;
        let fa = addr(&s);
        rule(&s, "", "GET", "/v2/surveys/{id}", "surveys.read").await;
        let account = s.account("PRIME").await;
        let (_, secret) = s
            .create_key(pb::CreateKeyRequest {
                rate_limit: Some(pb::RateLimitPolicy {
                    requests: 1,
                    per_seconds: 60,
                    burst: 0,
                }),
                ..key_request(&account.id, &["surveys.read"])
            })
            .await;
        let auth = format!("Bearer {secret}");
        let bearer = [("Authorization", auth.as_str())];
        let headers = if flavor == "nginx" {
            nginx("GET", "/v2/surveys/42", &bearer)
        } else {
            forwarded("GET", "/v2/surveys/42", &bearer)
        };
        let a = ask(fa, &headers).await;
        assert_eq!(a.status, 200, "{a:?}");
        assert_eq!(a.header("x-ratelimit-limit"), Some("1"));
        assert_eq!(a.header("x-ratelimit-remaining"), Some("0"));
        assert_eq!(a.header("retry-after"), None);
        let a = ask(fa, &headers).await;
        if flavor == "nginx" {
            assert_nginx(&a, 403, 429, "RATE_LIMITED");
        } else {
            assert_plain(&a, 429, "RATE_LIMITED");
        }
        assert_eq!(a.header("retry-after"), Some("60"), "{a:?}");
        assert_eq!(a.header("x-ratelimit-remaining"), Some("0"));
        assert_eq!(a.header("ratelimit-policy"), Some("\"key\";q=1;w=60"));
        assert_eq!(a.header("ratelimit"), Some("\"key\";r=0;t=60"));
        s.stop().await;
    }
}

backend_tests!(
    a_spent_limit_is_429_in_every_style,
    nginx_flavor,
    traefik_and_caddy_flavors,
    auto_flavor_takes_one_description,
    only_trusted_proxies_may_ask,
    the_client_is_the_address_the_proxy_appended,
    signed_keys_are_refused_for_want_of_the_body,
    decisions_match_ext_authz,
    off_by_default_and_only_at_its_path,
);

/// PostgreSQL only: the store can be taken away for real. A key that must
/// be looked up cannot be: 503, which every proxy turns into a refusal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_outage_is_503() {
    let s = TestServer::start_with(Backend::Postgres, forward_auth("auto")).await;
    let fa = addr(&s);
    let (key, cached) = setup(&s).await;
    let (_, cold) = s.simple_key("PRIME", &["surveys.read"]).await;
    let warm = format!("Bearer {cached}");
    assert_principal(
        &ask(
            fa,
            &nginx("GET", "/v2/surveys/1", &[("Authorization", warm.as_str())]),
        )
        .await,
        &key,
    );
    let name = s.db.pg_name().to_owned();
    s.db.admin_sql(&format!(
        "ALTER DATABASE {name} ALLOW_CONNECTIONS false; \
         SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"
    ))
    .await;
    let cold = format!("Bearer {cold}");
    let a = ask(
        fa,
        &nginx("GET", "/v2/surveys/1", &[("Authorization", cold.as_str())]),
    )
    .await;
    assert_nginx(&a, 503, 503, "INTERNAL_ERROR");
    assert_eq!(a.json()["error"], "unavailable");
    let a = ask(
        fa,
        &forwarded("GET", "/v2/surveys/1", &[("Authorization", cold.as_str())]),
    )
    .await;
    assert_eq!(
        (a.status, a.reason().as_str()),
        (503, "INTERNAL_ERROR"),
        "{a:?}"
    );
    assert_eq!(a.header("x-latchkey-denial"), None);
    // A cached key needs no I/O.
    assert_principal(
        &ask(
            fa,
            &nginx("GET", "/v2/surveys/1", &[("Authorization", warm.as_str())]),
        )
        .await,
        &key,
    );
    s.db.admin_sql(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS true"))
        .await;
    s.stop().await;
}
