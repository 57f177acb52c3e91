//! JWT access tokens and OAuth2: every grant, the error paths, refresh
//! rotation with family revocation, and Check accepting (and refusing) JWTs.
//! HTTP is spoken with a bare HTTP/1.1 client, so nothing here depends on
//! the server's own libraries.

use std::collections::HashMap;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD as B64};
use latchkey::pb;
use pb::Reason;
use sea_orm::ConnectionTrait;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::Code;

use crate::backend_tests;
use crate::common::{Backend, TestServer, key_request, reason};

pub struct Http {
    pub status: u16,
    pub headers: HashMap<String, String>,
    pub body: String,
}

impl Http {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }

    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).map_or("", String::as_str)
    }
}

pub async fn http(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Http {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if method == "POST" {
        req.push_str("Content-Type: application/x-www-form-urlencoded\r\n");
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    stream.write_all(req.as_bytes()).await.unwrap();
    let mut buf = String::new();
    stream.read_to_string(&mut buf).await.unwrap();
    let (head, body) = buf.split_once("\r\n\r\n").unwrap();
    let mut lines = head.lines();
    let status = lines
        .next()
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Http {
        status,
        headers,
        body: body.to_owned(),
    }
}

pub fn form(pairs: &[(&str, &str)]) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        s.append_pair(k, v);
    }
    s.finish()
}

pub fn basic(id: &str, secret: &str) -> String {
    format!("Basic {}", STANDARD.encode(format!("{id}:{secret}")))
}

pub fn tokens(
    s: &TestServer,
) -> pb::token_service_client::TokenServiceClient<tonic::transport::Channel> {
    pb::token_service_client::TokenServiceClient::new(s.channel.clone())
}

pub const REDIRECT: &str = "https://app.example.com/callback";

/// The JWK Set, as `TokenService/GetJwks` returns it.
pub async fn jwks(s: &TestServer) -> serde_json::Value {
    let text = tokens(s)
        .get_jwks(pb::GetJwksRequest {})
        .await
        .unwrap()
        .into_inner()
        .jwks_json;
    serde_json::from_str(&text).unwrap()
}

/// A client-credentials token with all the client's scopes, over gRPC.
pub async fn issue(s: &TestServer, client_id: &str, client_secret: &str) -> String {
    tokens(s)
        .issue_token(pb::IssueTokenRequest {
            client_id: client_id.to_owned(),
            client_secret: client_secret.to_owned(),
            scopes: vec![],
        })
        .await
        .unwrap()
        .into_inner()
        .access_token
}

/// An account on PRIME and a client allowed every grant and `catalog.*`, `chat.read`.
pub async fn client(s: &TestServer) -> (pb::Client, String) {
    let account = s.account("PRIME").await;
    let r = tokens(s)
        .create_client(s.admin(pb::CreateClientRequest {
            account_id: account.id.clone(),
            mode: pb::Mode::Test.into(),
            name: "Survey Dashboard".into(),
            redirect_uris: vec![REDIRECT.into()],
            grant_types: vec![
                "client_credentials".into(),
                "authorization_code".into(),
                "refresh_token".into(),
            ],
            scopes: vec!["catalog.*".into(), "chat.read".into()],
            reveal_link: false,
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    (r.client.unwrap(), r.client_secret)
}

pub fn claims(token: &str) -> serde_json::Value {
    let part = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&B64.decode(part).unwrap()).unwrap()
}

pub fn header(token: &str) -> serde_json::Value {
    let part = token.split('.').next().unwrap();
    serde_json::from_slice(&B64.decode(part).unwrap()).unwrap()
}

async fn client_credentials_token_passes_check(backend: Backend) {
    let s = TestServer::start(backend).await;
    let (c, secret) = client(&s).await;
    let addr = s.running().http_addr;
    // client_secret_basic
    let r = http(
        addr,
        "POST",
        "/oauth2/token",
        &[("Authorization", &basic(&c.client_id, &secret))],
        &form(&[
            ("grant_type", "client_credentials"),
            ("scope", "catalog.read"),
        ]),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("cache-control"), "no-store");
    let body = r.json();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3600);
    assert_eq!(body["scope"], "catalog.read");
    assert!(body.get("refresh_token").is_none());
    let token = body["access_token"].as_str().unwrap().to_owned();
    let c_ = claims(&token);
    for claim in ["iss", "aud", "sub", "scope", "exp", "iat", "jti"] {
        assert!(c_.get(claim).is_some(), "missing {claim}: {c_}");
    }
    assert_eq!(c_["iss"], format!("http://{addr}"));
    assert_eq!(c_["aud"], "latchkey");
    assert_eq!(c_["sub"], c.client_id);
    assert_eq!(header(&token)["alg"], "RS256");
    assert!(header(&token)["kid"].is_string());

    let ok = s.check_perm(&token, "catalog.read").await;
    assert!(ok.allowed, "{ok:?}");
    let p = ok.principal.unwrap();
    assert_eq!(p.account_id, c.account_id);
    assert_eq!(p.key_id, c.client_id);
    assert_eq!(p.scopes, ["catalog.read"]);
    assert_eq!(p.plan, "PRIME");
    // The token carries only what was asked for.
    let denied = s.check_perm(&token, "chat.read").await;
    assert_eq!(reason(&denied), Reason::PermissionDenied);

    // client_secret_post, and the gRPC IssueToken for internal callers.
    let r = http(
        addr,
        "POST",
        "/oauth2/token",
        &[],
        &form(&[
            ("grant_type", "client_credentials"),
            ("client_id", &c.client_id),
            ("client_secret", &secret),
        ]),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["scope"], "catalog.* chat.read");
    let issued = tokens(&s)
        .issue_token(pb::IssueTokenRequest {
            client_id: c.client_id.clone(),
            client_secret: secret.clone(),
            scopes: vec!["chat.read".into()],
        })
        .await
        .unwrap()
        .into_inner();
    assert!(
        s.check_perm(&issued.access_token, "chat.read")
            .await
            .allowed
    );
    s.stop().await;
}

async fn token_endpoint_errors_follow_rfc_6749(backend: Backend) {
    let s = TestServer::start(backend).await;
    let (c, secret) = client(&s).await;
    let addr = s.running().http_addr;
    let post = |headers: Vec<(&'static str, String)>, body: String| async move {
        let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        http(addr, "POST", "/oauth2/token", &h, &body).await
    };
    let r = post(
        vec![("Authorization", basic(&c.client_id, "lkcs_wrong"))],
        form(&[("grant_type", "client_credentials")]),
    )
    .await;
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["error"], "invalid_client");
    assert!(
        r.header("www-authenticate").starts_with("Basic"),
        "{:?}",
        r.headers
    );
    assert_eq!(r.header("cache-control"), "no-store");
    assert!(!r.body.contains("lkcs_wrong"));

    let auth = basic(&c.client_id, &secret);
    let cases = [
        (
            form(&[("grant_type", "password")]),
            400,
            "unsupported_grant_type",
        ),
        (form(&[]), 400, "invalid_request"),
        (
            form(&[
                ("grant_type", "client_credentials"),
                ("scope", "offers.read"),
            ]),
            400,
            "invalid_scope",
        ),
        (
            "grant_type=client_credentials&grant_type=client_credentials".to_owned(),
            400,
            "invalid_request",
        ),
        (
            form(&[("grant_type", "authorization_code"), ("code", "nope")]),
            400,
            "invalid_grant",
        ),
        (
            form(&[("grant_type", "refresh_token"), ("refresh_token", "nope")]),
            400,
            "invalid_grant",
        ),
    ];
    for (body, status, error) in cases {
        let r = post(vec![("Authorization", auth.clone())], body.clone()).await;
        assert_eq!(r.status, status, "{body}: {}", r.body);
        assert_eq!(r.json()["error"], error, "{body}");
        assert!(r.json()["error_description"].is_string());
    }
    // Both methods at once is ambiguous.
    let r = post(
        vec![("Authorization", auth.clone())],
        form(&[
            ("grant_type", "client_credentials"),
            ("client_secret", &secret),
        ]),
    )
    .await;
    assert_eq!(r.json()["error"], "invalid_request");
    s.stop().await;
}

/// GET the consent page, POST the decision, return the redirect's query.
pub async fn consent(
    s: &TestServer,
    query: &[(&str, &str)],
    decision: &str,
) -> HashMap<String, String> {
    let addr = s.running().http_addr;
    let page = http(
        addr,
        "GET",
        &format!("/oauth2/authorize?{}", form(query)),
        &[("X-Forwarded-User", "alice")],
        "",
    )
    .await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("Survey Dashboard"), "client not named");
    assert!(
        page.body.contains("View your chat"),
        "scope not in plain words"
    );
    let mut fields: Vec<(String, String)> = Vec::new();
    for input in page.body.split("<input ").skip(1) {
        let attr = |name: &str| {
            let start = input.find(&format!("{name}=\"")).unwrap() + name.len() + 2;
            let end = start + input[start..].find('"').unwrap();
            input[start..end]
                .replace("&lt;", "<")
                .replace("&gt;", ">")
                .replace("&quot;", "\"")
                .replace("&#39;", "'")
                .replace("&amp;", "&")
        };
        fields.push((attr("name"), attr("value")));
    }
    assert!(fields.iter().any(|(k, _)| k == "csrf_token"));
    fields.push(("decision".into(), decision.into()));
    let body: Vec<(&str, &str)> = fields
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let r = http(
        addr,
        "POST",
        "/oauth2/authorize",
        &[("X-Forwarded-User", "alice")],
        &form(&body),
    )
    .await;
    assert_eq!(r.status, 302, "{}", r.body);
    let location = r.header("location");
    let (base, q) = location.split_once('?').unwrap();
    assert_eq!(base, REDIRECT);
    form_urlencoded::parse(q.as_bytes()).into_owned().collect()
}

pub fn pkce() -> (String, String) {
    let verifier = B64.encode([7u8; 48]);
    let challenge = B64.encode(latchkey::crypto::sha256(verifier.as_bytes()));
    (verifier, challenge)
}

/// Consent as alice for `chat.read`, then trade the code: the token response.
pub async fn code_flow(s: &TestServer, client_id: &str, client_secret: &str) -> Http {
    let (verifier, challenge) = pkce();
    let back = consent(
        s,
        &[
            ("response_type", "code"),
            ("client_id", client_id),
            ("redirect_uri", REDIRECT),
            ("scope", "chat.read"),
            ("code_challenge", challenge.as_str()),
            ("code_challenge_method", "S256"),
        ],
        "allow",
    )
    .await;
    http(
        s.running().http_addr,
        "POST",
        "/oauth2/token",
        &[("Authorization", &basic(client_id, client_secret))],
        &form(&[
            ("grant_type", "authorization_code"),
            ("code", &back["code"]),
            ("redirect_uri", REDIRECT),
            ("code_verifier", &verifier),
        ]),
    )
    .await
}

async fn authorization_code_with_pkce_and_refresh_rotation(backend: Backend) {
    let s = TestServer::start(backend).await;
    let (c, secret) = client(&s).await;
    let addr = s.running().http_addr;
    let auth = basic(&c.client_id, &secret);
    let (verifier, challenge) = pkce();
    let query = [
        ("response_type", "code"),
        ("client_id", c.client_id.as_str()),
        ("redirect_uri", REDIRECT),
        ("scope", "chat.read"),
        ("state", "xyz & <state>"),
        ("code_challenge", challenge.as_str()),
        ("code_challenge_method", "S256"),
    ];
    let back = consent(&s, &query, "allow").await;
    assert_eq!(
        back["state"], "xyz & <state>",
        "state must come back unchanged"
    );
    let code = back["code"].clone();

    // A wrong verifier fails (and uses up the code).
    let exchange = |code: String, verifier: String| {
        let auth = auth.clone();
        async move {
            http(
                addr,
                "POST",
                "/oauth2/token",
                &[("Authorization", &auth)],
                &form(&[
                    ("grant_type", "authorization_code"),
                    ("code", &code),
                    ("redirect_uri", REDIRECT),
                    ("code_verifier", &verifier),
                ]),
            )
            .await
        }
    };
    let r = exchange(code.clone(), verifier.clone()).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let first = r.json();
    let access = first["access_token"].as_str().unwrap().to_owned();
    let refresh = first["refresh_token"].as_str().unwrap().to_owned();
    assert_eq!(claims(&access)["sub"], "alice");
    assert!(s.check_perm(&access, "chat.read").await.allowed);

    // Refresh rotates.
    let refresh_with = |token: String| {
        let auth = auth.clone();
        async move {
            http(
                addr,
                "POST",
                "/oauth2/token",
                &[("Authorization", &auth)],
                &form(&[("grant_type", "refresh_token"), ("refresh_token", &token)]),
            )
            .await
        }
    };
    let r = refresh_with(refresh.clone()).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let second = r.json();
    let refresh2 = second["refresh_token"].as_str().unwrap().to_owned();
    let access2 = second["access_token"].as_str().unwrap().to_owned();
    assert_ne!(refresh2, refresh);
    assert!(s.check_perm(&access2, "chat.read").await.allowed);
    // A refresh may not widen the grant, even within the client's scopes.
    let r = http(
        addr,
        "POST",
        "/oauth2/token",
        &[("Authorization", &auth)],
        &form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", &refresh2),
            ("scope", "catalog.read"),
        ]),
    )
    .await;
    assert_eq!(r.json()["error"], "invalid_scope", "{}", r.body);

    // The rotated-out token again: refused, and the whole family is revoked.
    let r = refresh_with(refresh.clone()).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"], "invalid_grant");
    let r = refresh_with(refresh2.clone()).await;
    assert_eq!(r.json()["error"], "invalid_grant", "family not revoked");
    assert_eq!(
        reason(&s.check_perm(&access2, "chat.read").await),
        Reason::TokenRevoked
    );
    assert_eq!(
        reason(&s.check_perm(&access, "chat.read").await),
        Reason::TokenRevoked
    );

    // A second use of a code revokes what the first use issued.
    let back = consent(&s, &query, "allow").await;
    let r = exchange(back["code"].clone(), verifier.clone()).await;
    let access3 = r.json()["access_token"].as_str().unwrap().to_owned();
    assert!(s.check_perm(&access3, "chat.read").await.allowed);
    let r = exchange(back["code"].clone(), verifier.clone()).await;
    assert_eq!(r.json()["error"], "invalid_grant");
    assert_eq!(
        reason(&s.check_perm(&access3, "chat.read").await),
        Reason::TokenRevoked
    );

    // A wrong verifier, and an expired code (60 s).
    let back = consent(&s, &query, "allow").await;
    let r = exchange(back["code"].clone(), B64.encode([9u8; 48])).await;
    assert_eq!(r.json()["error"], "invalid_grant");
    let back = consent(&s, &query, "allow").await;
    s.clock.advance_secs(61);
    let r = exchange(back["code"].clone(), verifier.clone()).await;
    assert_eq!(r.json()["error"], "invalid_grant");
    assert!(
        r.json()["error_description"]
            .as_str()
            .unwrap()
            .contains("expired")
    );
    s.stop().await;
}

async fn authorize_errors_redirect_or_stay_on_the_page(backend: Backend) {
    let s = TestServer::start(backend).await;
    let (c, _) = client(&s).await;
    let addr = s.running().http_addr;
    let (_, challenge) = pkce();
    let get = |query: String, user: bool| async move {
        let headers: &[(&str, &str)] = if user {
            &[("X-Forwarded-User", "alice")]
        } else {
            &[]
        };
        http(
            addr,
            "GET",
            &format!("/oauth2/authorize?{query}"),
            headers,
            "",
        )
        .await
    };
    let good = |extra: &[(&str, &str)]| {
        let mut q = vec![
            ("response_type", "code"),
            ("client_id", c.client_id.as_str()),
            ("redirect_uri", REDIRECT),
            ("state", "s1"),
            ("code_challenge", challenge.as_str()),
            ("code_challenge_method", "S256"),
        ];
        for (k, v) in extra {
            q.retain(|(key, _)| key != k);
            if !v.is_empty() {
                q.push((k, v));
            }
        }
        form(&q)
    };
    // Not signed in.
    assert_eq!(get(good(&[]), false).await.status, 401);
    // Unknown client and unregistered redirect: on the page, never redirected.
    for extra in [
        [("client_id", "client_00000000000000000000000000000000")],
        [("redirect_uri", "https://evil.example.com/cb")],
    ] {
        let r = get(good(&extra), true).await;
        assert_eq!(r.status, 400, "{extra:?}");
        assert!(r.header("location").is_empty());
    }
    // Other errors go back to the client with the state.
    for (extra, error) in [
        (vec![("code_challenge", "")], "invalid_request"),
        (vec![("code_challenge_method", "plain")], "invalid_request"),
        (
            vec![("response_type", "token")],
            "unsupported_response_type",
        ),
        (vec![("scope", "offers.read")], "invalid_scope"),
    ] {
        let r = get(good(&extra), true).await;
        assert_eq!(r.status, 302, "{extra:?}: {}", r.body);
        let location = r.header("location");
        assert!(location.starts_with(REDIRECT), "{location}");
        assert!(location.contains(&format!("error={error}")), "{location}");
        assert!(location.contains("state=s1"), "{location}");
    }
    // Deny.
    let mut query: Vec<(&str, &str)> = vec![
        ("response_type", "code"),
        ("client_id", c.client_id.as_str()),
        ("redirect_uri", REDIRECT),
        ("state", "s2"),
        ("code_challenge", challenge.as_str()),
        ("code_challenge_method", "S256"),
    ];
    let back = consent(&s, &query, "deny").await;
    assert_eq!(back["error"], "access_denied");
    assert_eq!(back["state"], "s2");
    // A forged decision (no valid CSRF token) is refused.
    query.push(("csrf_token", "1.forged"));
    query.push(("decision", "allow"));
    let r = http(
        addr,
        "POST",
        "/oauth2/authorize",
        &[("X-Forwarded-User", "alice")],
        &form(&query),
    )
    .await;
    assert_eq!(r.status, 403);
    s.stop().await;
}

/// A JWT with this header and these claims, signed by `sign`.
pub fn forge(header: serde_json::Value, claims: &serde_json::Value, sig: &[u8]) -> String {
    format!(
        "{}.{}.{}",
        B64.encode(header.to_string()),
        B64.encode(claims.to_string()),
        B64.encode(sig)
    )
}

async fn check_refuses_forged_and_stale_tokens_with_distinct_reasons(backend: Backend) {
    let s = TestServer::start(backend).await;
    let (c, secret) = client(&s).await;
    let issued = issue(&s, &c.client_id, &secret).await;
    let h = header(&issued);
    let body = claims(&issued);
    let kid = h["kid"].as_str().unwrap();

    // alg none.
    let none = forge(serde_json::json!({"alg": "none", "kid": kid}), &body, b"");
    let none = none.trim_end_matches('.').to_owned() + ".";
    // HS256 keyed with the public key (the classic algorithm confusion).
    let jwks = jwks(&s).await;
    let public = jwks["keys"][0].to_string();
    let hs_header = serde_json::json!({"alg": "HS256", "kid": kid});
    let signing_input = format!(
        "{}.{}",
        B64.encode(hs_header.to_string()),
        B64.encode(body.to_string())
    );
    let mac = aws_lc_rs::hmac::sign(
        &aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, public.as_bytes()),
        signing_input.as_bytes(),
    );
    let hs256 = format!("{signing_input}.{}", B64.encode(mac.as_ref()));
    // Unknown kid, and a tampered payload under a real signature.
    let sig = issued.rsplit('.').next().unwrap();
    let unknown_kid = format!(
        "{}.{}.{sig}",
        B64.encode(serde_json::json!({"alg": "RS256", "kid": "sk_nope"}).to_string()),
        issued.split('.').nth(1).unwrap()
    );
    let mut widened = body.clone();
    widened["scope"] = "*".into();
    let tampered = format!(
        "{}.{}.{sig}",
        issued.split('.').next().unwrap(),
        B64.encode(widened.to_string())
    );
    for (token, want) in [
        (none, Reason::TokenUnsigned),
        (hs256, Reason::TokenAlgorithmMismatch),
        (unknown_kid, Reason::TokenKeyUnknown),
        (tampered, Reason::TokenSignatureInvalid),
    ] {
        let r = s.check_perm(&token, "catalog.read").await;
        assert_eq!(reason(&r), want, "{}", r.message);
        assert!(!r.allowed);
    }
    // Signed by our key, but for another audience: a replica configured for
    // `billing` on the same database refuses it.
    let other =
        TestServer::start_on(s.db.clone(), |c| c.tokens.audience = "billing".into(), None).await;
    assert_eq!(
        reason(&other.check_perm(&issued, "catalog.read").await),
        Reason::TokenClaimsInvalid
    );
    other.stop_keep_db().await;
    // Not valid yet: a clock 2 minutes behind the issuer's (leeway 30 s).
    s.clock.advance_secs(-120);
    assert_eq!(
        reason(&s.check_perm(&issued, "catalog.read").await),
        Reason::TokenNotYetValid
    );
    s.clock.advance_secs(120);
    assert!(s.check_perm(&issued, "catalog.read").await.allowed);
    // Expiry, with the 30 s leeway.
    s.clock.advance_secs(3600 + 29);
    assert!(s.check_perm(&issued, "catalog.read").await.allowed);
    s.clock.advance_secs(2);
    assert_eq!(
        reason(&s.check_perm(&issued, "catalog.read").await),
        Reason::TokenExpired
    );
    s.stop().await;
}

async fn exchanged_tokens_die_with_their_key(backend: Backend) {
    let s = TestServer::start(backend).await;
    let (key, api_key) = s.simple_key("PRIME", &["catalog.read", "chat.*"]).await;
    let exchanged = tokens(&s)
        .exchange_secret(pb::ExchangeSecretRequest {
            api_key: api_key.clone(),
            scopes: vec!["chat.read".into()],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(exchanged.expires_in, 900);
    assert!(!exchanged.refresh_token.is_empty());
    let r = s.check_perm(&exchanged.access_token, "chat.read").await;
    assert!(r.allowed, "{r:?}");
    assert_eq!(r.principal.unwrap().key_id, key.id);
    assert_eq!(
        reason(&s.check_perm(&exchanged.access_token, "catalog.read").await),
        Reason::PermissionDenied,
        "the token is narrower than its key"
    );
    // Wider than the key: refused.
    let err = tokens(&s)
        .exchange_secret(pb::ExchangeSecretRequest {
            api_key: api_key.clone(),
            scopes: vec!["offers.read".into()],
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("invalid_scope"));

    // Refreshed before it expires, without the secret.
    let addr = s.running().http_addr;
    let r = http(
        addr,
        "POST",
        "/oauth2/token",
        &[],
        &form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", &exchanged.refresh_token),
        ]),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let refreshed = r.json()["access_token"].as_str().unwrap().to_owned();
    assert!(s.check_perm(&refreshed, "chat.read").await.allowed);

    // Suspend the key: every token it minted is refused at once.
    s.keys()
        .suspend_key(s.admin(pb::SuspendKeyRequest { id: key.id.clone() }))
        .await
        .unwrap();
    assert_eq!(
        reason(&s.check_perm(&refreshed, "chat.read").await),
        Reason::KeySuspended
    );
    s.keys()
        .revoke_key(s.admin(pb::RevokeKeyRequest { id: key.id.clone() }))
        .await
        .unwrap();
    assert_eq!(
        reason(&s.check_perm(&exchanged.access_token, "chat.read").await),
        Reason::KeyRevoked
    );
    // And a wrong key gets nothing.
    let err = tokens(&s)
        .exchange_secret(pb::ExchangeSecretRequest {
            api_key: api_key.clone(),
            scopes: vec![],
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    s.stop().await;
}

async fn rotation_keeps_old_tokens_valid_and_keys_sealed(backend: Backend) {
    let s = TestServer::start(backend).await;
    let (c, secret) = client(&s).await;
    let before = issue(&s, &c.client_id, &secret).await;
    for alg in ["ES256", "EdDSA", "RS256"] {
        let key = tokens(&s)
            .rotate_signing_key(s.admin(pb::RotateSigningKeyRequest {
                algorithm: alg.into(),
            }))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(key.algorithm, alg);
        let after = issue(&s, &c.client_id, &secret).await;
        assert_eq!(header(&after)["alg"], alg);
        assert_eq!(header(&after)["kid"], key.kid.as_str());
        assert!(s.check_perm(&after, "catalog.read").await.allowed, "{alg}");
    }
    assert!(s.check_perm(&before, "catalog.read").await.allowed);
    let jwks = jwks(&s).await;
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 4);
    let err = tokens(&s)
        .rotate_signing_key(s.admin(pb::RotateSigningKeyRequest {
            algorithm: "HS256".into(),
        }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    // Private keys are stored sealed: no run of the public modulus/point appears.
    let db = sea_orm::Database::connect(&s.db.url).await.unwrap();
    let rows = db
        .query_all_raw(sea_orm::Statement::from_string(
            db.get_database_backend(),
            "SELECT private_sealed, public_key FROM signing_keys",
        ))
        .await
        .unwrap();
    assert_eq!(rows.len(), 4);
    for row in rows {
        let sealed: Vec<u8> = row.try_get("", "private_sealed").unwrap();
        let public: Vec<u8> = row.try_get("", "public_key").unwrap();
        assert_eq!(
            sealed[0], 2,
            "not in the envelope (v2: it names its master key)"
        );
        let probe = &public[public.len() - 24..];
        assert!(
            !sealed.windows(24).any(|w| w == probe),
            "private key stored in clear"
        );
    }
    db.close().await.unwrap();
    // Retired keys leave the JWKS once their last token has expired.
    s.clock.advance_secs(3600 + 31);
    s.running().tokens.reload_keys().await.unwrap();
    let jwks: serde_json::Value = serde_json::from_str(&s.running().tokens.jwks_json()).unwrap();
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 1);
    s.stop().await;
}

async fn clients_are_validated_and_deleting_one_ends_its_tokens(backend: Backend) {
    let s = TestServer::start(backend).await;
    let account = s.account("PRIME").await;
    let base = pb::CreateClientRequest {
        account_id: account.id.clone(),
        mode: pb::Mode::Test.into(),
        name: "x".into(),
        redirect_uris: vec![REDIRECT.into()],
        grant_types: vec!["authorization_code".into()],
        scopes: vec!["chat.read".into()],
        reveal_link: false,
        ..Default::default()
    };
    for (change, field) in [
        (
            pb::CreateClientRequest {
                redirect_uris: vec!["http://example.com/cb".into()],
                ..base.clone()
            },
            "redirect_uris",
        ),
        (
            pb::CreateClientRequest {
                redirect_uris: vec![],
                ..base.clone()
            },
            "redirect_uris",
        ),
        (
            pb::CreateClientRequest {
                grant_types: vec!["implicit".into()],
                ..base.clone()
            },
            "grant_types",
        ),
        (
            pb::CreateClientRequest {
                scopes: vec!["Not A Scope".into()],
                ..base.clone()
            },
            "scopes",
        ),
        (
            pb::CreateClientRequest {
                mode: 0,
                ..base.clone()
            },
            "mode",
        ),
    ] {
        let err = tokens(&s).create_client(s.admin(change)).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
        assert!(err.message().contains(field), "{}", err.message());
    }
    let err = tokens(&s)
        .create_client(s.admin(pb::CreateClientRequest {
            mode: pb::Mode::Live.into(),
            ..base.clone()
        }))
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        Code::FailedPrecondition,
        "live client before live mode"
    );
    // Without the refresh_token grant, the code brings an access token only.
    let only_code = tokens(&s)
        .create_client(s.admin(pb::CreateClientRequest {
            name: "Survey Dashboard".into(),
            redirect_uris: vec![REDIRECT.into()],
            scopes: vec!["chat.read".into()],
            ..base.clone()
        }))
        .await
        .unwrap()
        .into_inner();
    let oc = only_code.client.unwrap();
    let r = code_flow(&s, &oc.client_id, &only_code.client_secret).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.json().get("refresh_token").is_none(), "{}", r.body);
    tokens(&s)
        .delete_client(s.admin(pb::DeleteClientRequest {
            client_id: oc.client_id,
        }))
        .await
        .unwrap();
    let listed = tokens(&s)
        .list_clients(s.admin(pb::ListClientsRequest::default()))
        .await
        .unwrap()
        .into_inner();
    assert!(listed.clients.is_empty(), "a refused client was stored");

    let (c, secret) = client(&s).await;
    let got = tokens(&s)
        .get_client(s.admin(pb::GetClientRequest {
            client_id: c.client_id.clone(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.name, "Survey Dashboard");
    let token = issue(&s, &c.client_id, &secret).await;
    assert!(s.check_perm(&token, "chat.read").await.allowed);
    tokens(&s)
        .delete_client(s.admin(pb::DeleteClientRequest {
            client_id: c.client_id.clone(),
        }))
        .await
        .unwrap();
    assert!(!s.check_perm(&token, "chat.read").await.allowed);
    let err = tokens(&s)
        .issue_token(pb::IssueTokenRequest {
            client_id: c.client_id.clone(),
            client_secret: secret,
            scopes: vec![],
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    // Management needs an admin token.
    let err = tokens(&s)
        .list_clients(pb::ListClientsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    s.stop().await;
}

async fn introspection_and_revocation(backend: Backend) {
    let s = TestServer::start(backend).await;
    let (c, secret) = client(&s).await;
    let addr = s.running().http_addr;
    let auth = basic(&c.client_id, &secret);
    let r = http(
        addr,
        "POST",
        "/oauth2/token",
        &[("Authorization", &auth)],
        &form(&[("grant_type", "client_credentials")]),
    )
    .await;
    let token = r.json()["access_token"].as_str().unwrap().to_owned();
    let introspect = |token: String| {
        let auth = auth.clone();
        async move {
            http(
                addr,
                "POST",
                "/oauth2/introspect",
                &[("Authorization", &auth)],
                &form(&[("token", &token)]),
            )
            .await
            .json()
        }
    };
    let i = introspect(token.clone()).await;
    assert_eq!(i["active"], true, "{i}");
    assert_eq!(i["client_id"], c.client_id);
    assert_eq!(i["scope"], "catalog.* chat.read");
    assert_eq!(introspect("garbage".into()).await["active"], false);
    // Unauthenticated introspection is refused.
    let r = http(
        addr,
        "POST",
        "/oauth2/introspect",
        &[],
        &form(&[("token", &token)]),
    )
    .await;
    assert_eq!(r.status, 401);

    let r = http(
        addr,
        "POST",
        "/oauth2/revoke",
        &[("Authorization", &auth)],
        &form(&[("token", &token)]),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(introspect(token.clone()).await["active"], false);
    assert_eq!(
        reason(&s.check_perm(&token, "chat.read").await),
        Reason::TokenRevoked
    );
    // Unknown tokens revoke fine (RFC 7009 §2.2).
    let r = http(
        addr,
        "POST",
        "/oauth2/revoke",
        &[("Authorization", &auth)],
        &form(&[("token", "unknown")]),
    )
    .await;
    assert_eq!(r.status, 200);

    // Discovery.
    let meta = http(
        addr,
        "GET",
        "/.well-known/oauth-authorization-server",
        &[],
        "",
    )
    .await;
    let meta = meta.json();
    assert_eq!(meta["issuer"], format!("http://{addr}"));
    assert_eq!(meta["code_challenge_methods_supported"][0], "S256");
    assert!(
        meta["jwks_uri"]
            .as_str()
            .unwrap()
            .ends_with("/.well-known/jwks.json")
    );
    let jwks = http(addr, "GET", "/.well-known/jwks.json", &[], "")
        .await
        .json();
    assert_eq!(jwks["keys"][0]["kty"], "RSA");
    assert!(jwks["keys"][0].get("d").is_none(), "private part published");
    s.stop().await;
}

async fn envoy_accepts_the_same_tokens(backend: Backend) {
    use crate::ext_authz::{Http, allow, denial, ext_check, rule};
    let s = TestServer::start(backend).await;
    let (c, secret) = client(&s).await;
    rule(&s, "", "GET", "/v2/catalog/{id}", "catalog.read").await;
    rule(&s, "", "GET", "/v2/offers/{id}", "offers.read").await;
    let token = issue(&s, &c.client_id, &secret).await;
    let (headers, _) = allow(&ext_check(&s, &Http::get("/v2/catalog/7").bearer(&token)).await);
    assert_eq!(headers["x-latchkey-key-id"], c.client_id);
    assert_eq!(headers["x-latchkey-account-id"], c.account_id);
    let (status, body, _) = denial(&ext_check(&s, &Http::get("/v2/offers/7").bearer(&token)).await);
    assert_eq!(
        (status, body["reason"].as_str()),
        (403, Some("PERMISSION_DENIED"))
    );
    // One character inside the signature changed.
    let mut forged = token.clone().into_bytes();
    let i = forged.len() - 10;
    forged[i] = if forged[i] == b'A' { b'B' } else { b'A' };
    let forged = String::from_utf8(forged).unwrap();
    let (status, body, headers) =
        denial(&ext_check(&s, &Http::get("/v2/catalog/7").bearer(&forged)).await);
    assert_eq!(status, 401);
    assert_eq!(body["reason"], "TOKEN_SIGNATURE_INVALID");
    assert!(headers.contains_key("www-authenticate"));
    s.stop().await;
}

async fn expired_token_records_are_pruned(backend: Backend) {
    let s = TestServer::start(backend).await;
    let (c, secret) = client(&s).await;
    let r = code_flow(&s, &c.client_id, &secret).await;
    let access = r.json()["access_token"].as_str().unwrap().to_owned();
    tokens(&s)
        .revoke_token(s.admin(pb::RevokeTokenRequest { token: access }))
        .await
        .unwrap();
    let count = |table: &'static str| {
        let url = s.db.url.clone();
        async move {
            let db = sea_orm::Database::connect(&url).await.unwrap();
            let row = db
                .query_one_raw(sea_orm::Statement::from_string(
                    db.get_database_backend(),
                    format!("SELECT COUNT(*) AS n FROM {table}"),
                ))
                .await
                .unwrap()
                .unwrap();
            let n: i64 = row.try_get("", "n").unwrap();
            db.close().await.unwrap();
            n
        }
    };
    let tables = ["oauth_codes", "oauth_refresh_tokens", "revoked_tokens"];
    for t in tables {
        assert_eq!(count(t).await, 1, "{t}");
    }
    let tokens_ = &s.running().tokens;
    // The code (60 s) and the revocation (1 h) are long past their grace
    // day; the refresh token (30 days) is still within its.
    s.clock.advance_secs(30 * 86_400);
    assert_eq!(tokens_.prune().await.unwrap(), 2);
    assert_eq!(count("oauth_refresh_tokens").await, 1);
    s.clock.advance_secs(2 * 86_400);
    assert_eq!(tokens_.prune().await.unwrap(), 1);
    for t in tables {
        assert_eq!(count(t).await, 0, "{t}");
    }
    s.stop().await;
}

/// Two replicas starting at once on an empty database each try to create the
/// first signing key: the store lets exactly one become active.
async fn only_one_signing_key_is_ever_active(backend: Backend) {
    use latchkey::domain::model::SigningKeyRecord;
    use latchkey::ports::TokenStore;
    let s = TestServer::start(backend).await;
    let store = latchkey::store::SqlStore::connect(&latchkey::crypto::secret::Secret::new(
        s.db.url.clone(),
    ))
    .await
    .unwrap();
    let record = |kid: &str| SigningKeyRecord {
        kid: kid.into(),
        algorithm: "RS256".into(),
        private_sealed: vec![1],
        public_key: vec![2],
        created_at: 1,
        retired_at: None,
    };
    // The server made the first one at start-up; a racing second one loses.
    assert!(
        !store
            .insert_first_signing_key(&record("sk_late"))
            .await
            .unwrap()
    );
    let active = |keys: Vec<SigningKeyRecord>| {
        keys.into_iter()
            .filter(|k| k.retired_at.is_none())
            .map(|k| k.kid)
            .collect::<Vec<_>>()
    };
    let before = active(store.signing_keys().await.unwrap());
    assert_eq!(before.len(), 1);
    assert_ne!(before[0], "sk_late");
    // A rotation retires it and takes the slot.
    let rotated = tokens(&s)
        .rotate_signing_key(s.admin(pb::RotateSigningKeyRequest {
            algorithm: "ES256".into(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(active(store.signing_keys().await.unwrap()), [rotated.kid]);
    store.close().await;
    s.stop().await;
}

backend_tests!(
    codes_are_bound_to_their_client_and_a_racing_replay_revokes,
    registration_refuses_userinfo_and_loopback_takes_any_port,
    only_one_signing_key_is_ever_active,
    expired_token_records_are_pruned,
    envoy_accepts_the_same_tokens,
    client_credentials_token_passes_check,
    token_endpoint_errors_follow_rfc_6749,
    authorization_code_with_pkce_and_refresh_rotation,
    authorize_errors_redirect_or_stay_on_the_page,
    check_refuses_forged_and_stale_tokens_with_distinct_reasons,
    exchanged_tokens_die_with_their_key,
    rotation_keeps_old_tokens_valid_and_keys_sealed,
    clients_are_validated_and_deleting_one_ends_its_tokens,
    introspection_and_revocation,
    client_secret_can_come_as_a_one_time_reveal_link,
    check_refuses_well_signed_tokens_that_are_not_access_tokens,
);

async fn client_secret_can_come_as_a_one_time_reveal_link(backend: Backend) {
    let s = TestServer::start(backend).await;
    let account = s.account("PRIME").await;
    let created = tokens(&s)
        .create_client(s.admin(pb::CreateClientRequest {
            account_id: account.id.clone(),
            mode: pb::Mode::Test.into(),
            name: "Partner".into(),
            redirect_uris: vec![],
            grant_types: vec!["client_credentials".into()],
            scopes: vec!["catalog.read".into()],
            reveal_link: true,
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert!(
        created.client_secret.is_empty(),
        "plaintext beside a reveal link"
    );
    let client = created.client.unwrap();
    let link = created.reveal.unwrap();
    let mut reveals = pb::reveal_service_client::RevealServiceClient::new(s.channel.clone());
    let revealed = reveals
        .reveal_secret(pb::RevealSecretRequest {
            token: link.token.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(revealed.kind, "oauth_client_secret");
    assert_eq!(revealed.subject_id, client.client_id);
    let issued = tokens(&s)
        .issue_token(pb::IssueTokenRequest {
            client_id: client.client_id.clone(),
            client_secret: revealed.secret.clone(),
            scopes: vec![],
        })
        .await
        .unwrap()
        .into_inner();
    assert!(
        s.check_perm(&issued.access_token, "catalog.read")
            .await
            .allowed
    );
    // Once only.
    let again = reveals
        .reveal_secret(pb::RevealSecretRequest { token: link.token })
        .await
        .unwrap_err();
    assert_eq!(again.code(), Code::NotFound);
    s.stop().await;
}

/// Redirect URIs with userinfo are refused at registration; a registered
/// loopback IP literal matches on any port at authorization time (RFC 8252
/// §7.3) and exactly otherwise; an allowlist that admits everyone is refused.
async fn registration_refuses_userinfo_and_loopback_takes_any_port(backend: Backend) {
    let s = TestServer::start(backend).await;
    let account = s.account("PRIME").await;
    let base = pb::CreateClientRequest {
        account_id: account.id.clone(),
        mode: pb::Mode::Test.into(),
        name: "Survey Dashboard".into(),
        redirect_uris: vec![REDIRECT.into()],
        grant_types: vec!["authorization_code".into()],
        scopes: vec!["chat.read".into()],
        reveal_link: false,
        ..Default::default()
    };
    for uri in [
        "http://localhost:80@evil.com/cb",
        "http://127.0.0.1:8000@evil.com/cb",
        "https://app.example.com@evil.com/cb",
    ] {
        let err = tokens(&s)
            .create_client(s.admin(pb::CreateClientRequest {
                redirect_uris: vec![uri.into()],
                ..base.clone()
            }))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{uri}");
        assert!(err.message().contains("redirect_uris"), "{}", err.message());
        assert!(err.message().contains("userinfo"), "{}", err.message());
    }
    let native = tokens(&s)
        .create_client(s.admin(pb::CreateClientRequest {
            redirect_uris: vec![
                "http://127.0.0.1/native-cb".into(),
                "http://[::1]/cb".into(),
            ],
            ..base.clone()
        }))
        .await
        .unwrap()
        .into_inner()
        .client
        .unwrap();
    let (_, challenge) = pkce();
    let addr = s.running().http_addr;
    let authorize = |redirect: &'static str| {
        let query = form(&[
            ("response_type", "code"),
            ("client_id", native.client_id.as_str()),
            ("redirect_uri", redirect),
            ("scope", "chat.read"),
            ("code_challenge", challenge.as_str()),
            ("code_challenge_method", "S256"),
        ]);
        async move {
            http(
                addr,
                "GET",
                &format!("/oauth2/authorize?{query}"),
                &[("X-Forwarded-User", "alice")],
                "",
            )
            .await
        }
    };
    for ok in [
        "http://127.0.0.1/native-cb",
        "http://127.0.0.1:53124/native-cb",
        "http://[::1]:61000/cb",
    ] {
        let page = authorize(ok).await;
        assert_eq!(page.status, 200, "{ok}: {}", page.body);
        assert!(page.body.contains("Survey Dashboard"), "{ok}");
    }
    for refused in [
        "http://127.0.0.1:53124/other",
        "http://127.0.0.1:53124@evil.com/native-cb",
        "http://localhost:53124/native-cb",
        "http://[::1]:61000/native-cb",
    ] {
        let page = authorize(refused).await;
        assert_ne!(page.status, 200, "{refused}");
        assert_ne!(page.status, 302, "{refused}: never redirected to");
        assert!(
            page.body.contains("not registered"),
            "{refused}: {}",
            page.body
        );
    }
    // allowed_cidrs that admit every address are no allowlist.
    for everything in [&["0.0.0.0/0"][..], &["::/0"], &["0.0.0.0/1", "128.0.0.0/1"]] {
        let mut req = key_request(&account.id, &["chat.read"]);
        req.allowed_cidrs = everything.iter().map(|s| (*s).to_owned()).collect();
        let err = s.keys().create_key(s.admin(req)).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{everything:?}");
        assert!(err.message().contains("allowed_cidrs"), "{}", err.message());
    }
    s.stop().await;
}

/// Another client's attempt at a code consumes nothing; a replay noted
/// while the first exchange is still minting leaves that exchange nothing.
async fn codes_are_bound_to_their_client_and_a_racing_replay_revokes(backend: Backend) {
    let s = TestServer::start(backend).await;
    let (a, a_secret) = client(&s).await;
    let (b, b_secret) = client(&s).await;
    let addr = s.running().http_addr;
    let (verifier, challenge) = pkce();
    let query = [
        ("response_type", "code"),
        ("client_id", a.client_id.as_str()),
        ("redirect_uri", REDIRECT),
        ("scope", "chat.read"),
        ("code_challenge", challenge.as_str()),
        ("code_challenge_method", "S256"),
    ];
    let code_for_a = || consent(&s, &query, "allow");
    let exchange = |auth: String, code: String| {
        let verifier = verifier.clone();
        async move {
            http(
                addr,
                "POST",
                "/oauth2/token",
                &[("Authorization", &auth)],
                &form(&[
                    ("grant_type", "authorization_code"),
                    ("code", &code),
                    ("redirect_uri", REDIRECT),
                    ("code_verifier", &verifier),
                ]),
            )
            .await
        }
    };
    let code = code_for_a().await["code"].clone();
    let r = exchange(basic(&b.client_id, &b_secret), code.clone()).await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.json()["error"], "invalid_grant");
    assert!(r.body.contains("another client"), "{}", r.body);
    // The code was never consumed by the other client's attempt.
    let r = exchange(basic(&a.client_id, &a_secret), code.clone()).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let access = r.json()["access_token"].as_str().unwrap().to_owned();
    // A replay afterwards revokes what the first exchange issued.
    let r = exchange(basic(&a.client_id, &a_secret), code).await;
    assert_eq!(r.json()["error"], "invalid_grant");
    assert_eq!(
        reason(&s.check_perm(&access, "chat.read").await),
        Reason::TokenRevoked
    );

    // The race: a replay noted after this exchange used the code but before
    // it minted (the state a concurrent replay leaves) revokes what it mints.
    let code = code_for_a().await["code"].clone();
    let db = sea_orm::Database::connect(&s.db.url).await.unwrap();
    db.execute_unprepared("UPDATE oauth_codes SET replayed_at = 1 WHERE used_at IS NULL")
        .await
        .unwrap();
    let r = exchange(basic(&a.client_id, &a_secret), code).await;
    assert_eq!(
        r.status, 400,
        "tokens handed out after a replay: {}",
        r.body
    );
    assert_eq!(r.json()["error"], "invalid_grant");
    s.stop().await;
}

/// The token endpoint mints from its cached client without asking the
/// store; a client deleted on another replica must still get no token there
/// (the store's notification drops the cached client well before its TTL).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_deleted_on_another_replica_gets_no_token() {
    use crate::common::{TestDb, eventually};
    use std::sync::Arc;

    let db = Arc::new(TestDb::new(Backend::Postgres).await);
    let a = TestServer::start_on(db.clone(), |c| c.cache.ttl_seconds = 3600, None).await;
    let b = TestServer::start_on(db, |c| c.cache.ttl_seconds = 3600, None).await;
    let (c, secret) = client(&a).await;
    let auth = basic(&c.client_id, &secret);
    let grant = form(&[("grant_type", "client_credentials")]);
    let token_on_b = || async {
        http(
            b.running().http_addr,
            "POST",
            "/oauth2/token",
            &[("authorization", &auth)],
            &grant,
        )
        .await
    };
    let r = token_on_b().await;
    assert_eq!(r.status, 200, "cached on b: {}", r.body);
    tokens(&a)
        .delete_client(a.admin(pb::DeleteClientRequest {
            client_id: c.client_id.clone(),
        }))
        .await
        .unwrap();
    eventually("b to refuse the deleted client", || async {
        let r = token_on_b().await;
        (r.status == 401).then(|| r.json())
    })
    .await
    .get("error")
    .map(|e| assert_eq!(e, "invalid_client"))
    .unwrap();
    a.stop_keep_db().await;
    b.stop().await;
}

/// The server's active signing key, opened from the store with the test
/// database's master key, after rotating to an EdDSA key (whose PKCS#8 is
/// what `jsonwebtoken` takes as it is).
pub async fn server_eddsa_key(s: &TestServer) -> (String, jsonwebtoken::EncodingKey) {
    let key = tokens(s)
        .rotate_signing_key(s.admin(pb::RotateSigningKeyRequest {
            algorithm: "EdDSA".into(),
        }))
        .await
        .unwrap()
        .into_inner();
    let db = sea_orm::Database::connect(&s.db.url).await.unwrap();
    let row = db
        .query_one_raw(sea_orm::Statement::from_string(
            db.get_database_backend(),
            format!(
                "SELECT private_sealed FROM signing_keys WHERE kid = '{}'",
                key.kid
            ),
        ))
        .await
        .unwrap()
        .unwrap();
    let sealed: Vec<u8> = row.try_get("", "private_sealed").unwrap();
    db.close().await.unwrap();
    let master = latchkey::crypto::envelope::MasterKey::from_list(&s.db.master_key).unwrap();
    let pkcs8 = master
        .open(
            &sealed,
            latchkey::domain::model::signing_key_context(&key.kid).as_bytes(),
        )
        .unwrap();
    (key.kid, jsonwebtoken::EncodingKey::from_ed_der(&pkcs8))
}

/// Signed by the server's own key, so only the claims and header can be
/// what Check refuses: `typ` other than `at+jwt`, a missing `iat`, `sub` or
/// `exp`, an `iat` in the future, `crit`. Each has its reason.
async fn check_refuses_well_signed_tokens_that_are_not_access_tokens(backend: Backend) {
    use jsonwebtoken::{Algorithm, Header};

    let s = TestServer::start(backend).await;
    let (c, secret) = client(&s).await;
    let (kid, key) = server_eddsa_key(&s).await;
    let good = claims(&issue(&s, &c.client_id, &secret).await);
    let now = good["iat"].as_i64().unwrap();
    let header = |typ: Option<&str>| {
        let mut h = Header::new(Algorithm::EdDSA);
        h.kid = Some(kid.clone());
        h.typ = typ.map(str::to_owned);
        h
    };
    let sign = |h: &Header, c: &serde_json::Value| jsonwebtoken::encode(h, c, &key).unwrap();
    let without = |name: &str| {
        let mut c = good.clone();
        c.as_object_mut().unwrap().remove(name);
        c
    };
    let at = header(Some("at+jwt"));
    // The forging itself is sound: the same path with good claims passes.
    let control = {
        let mut c = good.clone();
        c["jti"] = "forged-but-fine".into();
        sign(&at, &c)
    };
    assert!(s.check_perm(&control, "catalog.read").await.allowed);
    assert!(
        s.check_perm(
            &sign(&header(Some("application/at+jwt")), &good),
            "catalog.read"
        )
        .await
        .allowed
    );
    let mut future = good.clone();
    future["iat"] = (now + 120).into();
    let mut crit = at.clone();
    crit.crit = Some(vec!["exp".into()]);
    for (token, want, what) in [
        (
            sign(&header(Some("JWT")), &good),
            Reason::TokenClaimsInvalid,
            "typ JWT",
        ),
        (
            sign(&header(None), &good),
            Reason::TokenClaimsInvalid,
            "no typ",
        ),
        (
            sign(&at, &without("iat")),
            Reason::TokenClaimsInvalid,
            "no iat",
        ),
        (
            sign(&at, &without("sub")),
            Reason::TokenClaimsInvalid,
            "no sub",
        ),
        (
            sign(&at, &without("exp")),
            Reason::TokenClaimsInvalid,
            "no exp",
        ),
        (
            sign(&at, &without("iss")),
            Reason::TokenClaimsInvalid,
            "no iss",
        ),
        (
            sign(&at, &without("aud")),
            Reason::TokenClaimsInvalid,
            "no aud",
        ),
        (
            sign(&at, &future),
            Reason::TokenNotYetValid,
            "iat in the future",
        ),
        (sign(&crit, &good), Reason::CredentialMalformed, "crit"),
    ] {
        let r = s.check_perm(&token, "catalog.read").await;
        assert_eq!(reason(&r), want, "{what}: {}", r.message);
        assert!(!r.allowed, "{what}");
    }
    // Within the leeway, a slightly early `iat` is clock skew, not a forgery.
    let mut skewed = good.clone();
    skewed["iat"] = (now + 20).into();
    skewed["jti"] = "skewed".into();
    assert!(
        s.check_perm(&sign(&at, &skewed), "catalog.read")
            .await
            .allowed
    );
    s.stop().await;
}
