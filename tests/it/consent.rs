//! The hosted consent flow on both stores: flow configurations over gRPC,
//! signed consent links (the seed's algorithm) that consent once, expire
//! after 30 days, survive a rotation of their secret and are refused when
//! tampered with; and the pages in the user's language.

use latchkey::crypto::{hex, mac::hmac_sha256};
use latchkey::domain::signing::formats::{format_iso8601, strict_url_canonical};
use latchkey::pb;
use latchkey::ports::Clock;
use tonic::Code;

use crate::backend_tests;
use crate::common::{Backend, TestServer};
use crate::tokens::{Http, form, http};

const REDIRECT: &str = "https://shop.example/oauth/callback";
const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";

fn consent_api(
    s: &TestServer,
) -> pb::consent_service_client::ConsentServiceClient<tonic::transport::Channel> {
    pb::consent_service_client::ConsentServiceClient::new(s.channel.clone())
}

fn tokens_api(
    s: &TestServer,
) -> pb::token_service_client::TokenServiceClient<tonic::transport::Channel> {
    pb::token_service_client::TokenServiceClient::new(s.channel.clone())
}

fn signing_api(
    s: &TestServer,
) -> pb::signing_service_client::SigningServiceClient<tonic::transport::Channel> {
    pb::signing_service_client::SigningServiceClient::new(s.channel.clone())
}

struct Setup {
    client_id: String,
    client_secret: String,
    secret_id: String,
    secret: String,
}

async fn setup(s: &TestServer) -> Setup {
    setup_as(s, pb::SignedUrlForm::Unspecified).await
}

/// As [`setup`], with a signing secret in `url_form`.
async fn setup_as(s: &TestServer, url_form: pb::SignedUrlForm) -> Setup {
    let account = s.account("PRIME").await;
    let created = signing_api(s)
        .create_secret(s.admin(pb::CreateSecretRequest {
            account_id: account.id.clone(),
            mode: pb::Mode::Test.into(),
            name: "consent links".into(),
            url_form: url_form.into(),
        }))
        .await
        .unwrap()
        .into_inner();
    let client = tokens_api(s)
        .create_client(s.admin(pb::CreateClientRequest {
            account_id: account.id.clone(),
            mode: pb::Mode::Test.into(),
            name: "<b>FeedBackPro</b>".into(),
            redirect_uris: vec![REDIRECT.into()],
            grant_types: vec!["authorization_code".into()],
            scopes: vec!["feedback.read".into(), "feedback.write".into()],
            signing_secret_id: created.secret_id.clone(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    let c = client.client.unwrap();
    assert_eq!(c.signing_secret_id, created.secret_id);
    consent_api(s)
        .create_flow_config(s.admin(pb::CreateFlowConfigRequest {
            account_id: account.id,
            name: "shop-de".into(),
            display_name: "Schuhhaus \"<Müller>\"".into(),
            primary_color: "#ffeb3b".into(),
            default_language: "de".into(),
            ..Default::default()
        }))
        .await
        .unwrap();
    Setup {
        client_id: c.client_id,
        client_secret: client.client_secret,
        secret_id: created.secret_id,
        secret: created.secret,
    }
}

/// The seed's algorithm, written out as an integrator would.
fn link(key: &str, params: &[(&str, &str)]) -> String {
    let mut sorted: Vec<_> = params.to_vec();
    sorted.sort();
    let canonical = sorted
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    let signature = hex(&hmac_sha256(key.as_bytes(), &[canonical.as_bytes()]));
    let mut all = params.to_vec();
    all.push(("signature", &signature));
    format!("/oauth2/consent?{}", form(&all))
}

fn params<'a>(setup: &'a Setup, timestamp: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("client_id", setup.client_id.as_str()),
        ("redirect_uri", REDIRECT),
        ("state", "s-1"),
        ("timestamp", timestamp),
        ("uid", "merchant-7"),
        ("flow_config", "shop-de"),
        ("scope", "feedback.read feedback.write"),
        ("code_challenge", CHALLENGE),
        ("code_challenge_method", "S256"),
    ]
}

async fn get(s: &TestServer, path: &str, lang: &str) -> Http {
    http(
        s.running().http_addr,
        "GET",
        path,
        &[("Accept-Language", lang)],
        "",
    )
    .await
}

fn hidden(body: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = body
        .find(&marker)
        .unwrap_or_else(|| panic!("{name}: {body}"))
        + marker.len();
    let end = start + body[start..].find('"').unwrap();
    // minijinja's HTML escapes, undone.
    body[start..end]
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

async fn decide(s: &TestServer, page: &Http, decision: &str) -> Http {
    let body = form(&[
        ("link", &hidden(&page.body, "link")),
        ("csrf_token", &hidden(&page.body, "csrf_token")),
        ("decision", decision),
    ]);
    http(s.running().http_addr, "POST", "/oauth2/consent", &[], &body).await
}

fn refused(page: &Http, status: u16, words: &str) {
    assert_eq!(page.status, status, "{}", page.body);
    assert_eq!(page.header("location"), "", "never redirected");
    assert!(page.body.contains(words), "{words:?} not in {}", page.body);
}

backend_tests!(
    a_signed_link_consents_once_and_its_code_works,
    bad_links_get_a_page_that_names_the_problem,
    links_expire_after_30_days_and_survive_a_rotation,
    flow_configs_are_stored_and_checked,
    a_link_without_a_challenge_needs_no_verifier_and_authorize_still_does,
    strict_secrets_sign_the_link_for_the_configured_public_url,
    client_links_are_written_with_the_client_and_checked_on_update,
);

async fn a_link_without_a_challenge_needs_no_verifier_and_authorize_still_does(backend: Backend) {
    let s = TestServer::start(backend).await;
    let setup = setup(&s).await;
    let now = format_iso8601(s.clock.now());
    let no_pkce: Vec<_> = params(&setup, &now)
        .into_iter()
        .filter(|(k, _)| !k.starts_with("code_challenge"))
        .collect();
    let page = get(&s, &link(&setup.secret, &no_pkce), "en").await;
    assert_eq!(page.status, 200, "{}", page.body);
    let allowed = decide(&s, &page, "allow").await;
    assert_eq!(allowed.status, 302, "{}", allowed.body);
    let location = allowed.header("location").to_owned();
    let code = location
        .split(['?', '&'])
        .find_map(|p| p.strip_prefix("code="))
        .unwrap();
    let addr = s.running().http_addr;
    let auth = crate::tokens::basic(&setup.client_id, &setup.client_secret);
    let exchange = |code: String| {
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
                ]),
            )
            .await
        }
    };
    let r = exchange(code.to_owned()).await;
    assert_eq!(r.status, 200, "{}", r.body);

    // A signed challenge is enforced: no verifier, no tokens.
    let page = get(&s, &link(&setup.secret, &params(&setup, &now)), "en").await;
    let allowed = decide(&s, &page, "allow").await;
    let location = allowed.header("location").to_owned();
    let code = location
        .split(['?', '&'])
        .find_map(|p| p.strip_prefix("code="))
        .unwrap();
    let r = exchange(code.to_owned()).await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("code_verifier"), "{}", r.body);

    // The login-header flow still requires PKCE.
    let query = form(&[
        ("response_type", "code"),
        ("client_id", &setup.client_id),
        ("redirect_uri", REDIRECT),
        ("scope", "feedback.read"),
    ]);
    let r = http(
        s.running().http_addr,
        "GET",
        &format!("/oauth2/authorize?{query}"),
        &[("X-Forwarded-User", "alice")],
        "",
    )
    .await;
    assert_eq!(r.status, 302, "{}", r.body);
    assert!(
        r.header("location").contains("PKCE"),
        "{}",
        r.header("location")
    );
    s.stop().await;
}

async fn a_signed_link_consents_once_and_its_code_works(backend: Backend) {
    let s = TestServer::start(backend).await;
    let setup = setup(&s).await;
    let now = format_iso8601(s.clock.now());
    let url = link(&setup.secret, &params(&setup, &now));

    let page = get(&s, &url, "").await;
    assert_eq!(page.status, 200, "{}", page.body);
    // The flow config's default language, German, with its branding, escaped.
    assert!(page.body.contains("<html lang=\"de\">"), "{}", page.body);
    assert!(page.body.contains("Erlauben"));
    assert!(page.body.contains("Schuhhaus &quot;&lt;Müller&gt;&quot;"));
    assert!(page.body.contains("&lt;b&gt;FeedBackPro&lt;"));
    assert!(!page.body.contains("<b>FeedBackPro"));
    assert!(page.body.contains("merchant-7"));
    // Yellow: black text on the button.
    assert!(page.body.contains("--on-primary: #000000"));
    let english = get(&s, &url, "en-US,en;q=0.8").await;
    assert!(english.body.contains("<html lang=\"en\">") && english.body.contains(">Allow<"));

    let allowed = decide(&s, &page, "allow").await;
    assert_eq!(allowed.status, 302, "{}", allowed.body);
    let location = allowed.header("location");
    assert!(
        location.starts_with(&format!("{REDIRECT}?code=")),
        "{location}"
    );
    let code = location
        .split(['?', '&'])
        .find_map(|p| p.strip_prefix("code="))
        .unwrap();
    let token = http(
        s.running().http_addr,
        "POST",
        "/oauth2/token",
        &[(
            "Authorization",
            &crate::tokens::basic(&setup.client_id, &setup.client_secret),
        )],
        &form(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", VERIFIER),
        ]),
    )
    .await;
    assert_eq!(token.status, 200, "{}", token.body);

    // Once only: opened or posted again, the link is used.
    refused(&get(&s, &url, "en").await, 410, "already used");
    refused(&decide(&s, &page, "allow").await, 410, "already used");
    refused(&get(&s, &url, "de").await, 410, "bereits verwendet");
    s.stop().await;
}

async fn bad_links_get_a_page_that_names_the_problem(backend: Backend) {
    let s = TestServer::start(backend).await;
    let setup = setup(&s).await;
    let now = format_iso8601(s.clock.now());
    let good = params(&setup, &now);
    let url = link(&setup.secret, &good);

    // Tampered after signing.
    let tampered = url.replace("uid=merchant-7", "uid=admin");
    refused(
        &get(&s, &tampered, "en").await,
        403,
        "changed after it was signed",
    );
    refused(&get(&s, &tampered, "de").await, 403, "verändert");
    // Signed by someone else.
    refused(
        &get(&s, &link("whsec_guess", &good), "en").await,
        403,
        "changed after it was signed",
    );
    // Unsigned.
    refused(
        &get(&s, &format!("/oauth2/consent?{}", form(&good)), "en").await,
        400,
        "not signed",
    );
    // The CSRF check stays: a forged token uses nothing up.
    let page = get(&s, &url, "en").await;
    let forged = form(&[
        ("link", &hidden(&page.body, "link")),
        ("csrf_token", "1.forged"),
        ("decision", "allow"),
    ]);
    let r = http(
        s.running().http_addr,
        "POST",
        "/oauth2/consent",
        &[],
        &forged,
    )
    .await;
    // No Accept-Language: the flow configuration's German.
    refused(&r, 403, "Formular ist abgelaufen");
    assert_eq!(get(&s, &url, "en").await.status, 200);
    // An unregistered redirect URI, correctly signed: a page, no redirect.
    let mut evil = good.clone();
    evil[1] = ("redirect_uri", "https://evil.example/cb");
    refused(
        &get(&s, &link(&setup.secret, &evil), "en").await,
        400,
        "redirect_uri",
    );
    // No uid.
    let no_uid: Vec<_> = good.iter().filter(|(k, _)| *k != "uid").copied().collect();
    refused(
        &get(&s, &link(&setup.secret, &no_uid), "en").await,
        400,
        "uid",
    );
    // An unknown flow configuration.
    let mut other = good.clone();
    other[5] = ("flow_config", "nope");
    refused(
        &get(&s, &link(&setup.secret, &other), "en").await,
        400,
        "flow_config",
    );
    // A client without a signing secret: unlinked by UpdateClient.
    tokens_api(&s)
        .update_client(s.admin(pb::UpdateClientRequest {
            client_id: setup.client_id.clone(),
            signing_secret_id: Some(String::new()),
        }))
        .await
        .unwrap();
    refused(&get(&s, &url, "en").await, 400, "no signing secret");
    s.stop().await;
}

async fn links_expire_after_30_days_and_survive_a_rotation(backend: Backend) {
    let s = TestServer::start(backend).await;
    let setup = setup(&s).await;
    let then = format_iso8601(s.clock.now());
    let url = link(&setup.secret, &params(&setup, &then));

    // Rotated: a link signed before still works, for its own validity.
    s.clock.advance_secs(60);
    let rotated = signing_api(&s)
        .rotate_secret(s.admin(pb::RotateSecretRequest {
            secret_id: setup.secret_id.clone(),
            overlap_seconds: Some(0),
            reveal_link: false,
        }))
        .await
        .unwrap()
        .into_inner();
    s.clock.advance_secs(60);
    assert_eq!(get(&s, &url, "en").await.status, 200);
    // The old version signs nothing new; the new one does.
    let later = format_iso8601(s.clock.now());
    refused(
        &get(&s, &link(&setup.secret, &params(&setup, &later)), "en").await,
        403,
        "changed after it was signed",
    );
    assert_eq!(
        get(&s, &link(&rotated.secret, &params(&setup, &later)), "en")
            .await
            .status,
        200
    );

    // 30 days and a bit later, the old link is expired.
    s.clock.advance_secs(30 * 86_400);
    refused(&get(&s, &url, "en").await, 410, "expired");
    refused(&get(&s, &url, "de").await, 410, "abgelaufen");
    s.stop().await;
}

async fn flow_configs_are_stored_and_checked(backend: Backend) {
    let s = TestServer::start(backend).await;
    let account = s.account("PRIME").await;
    let mut api = consent_api(&s);
    let fc = api
        .create_flow_config(s.admin(pb::CreateFlowConfigRequest {
            account_id: account.id.clone(),
            name: "brand".into(),
            display_name: "Brand".into(),
            logo_url: "https://cdn.example/logo.png".into(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(fc.default_language, "en");
    let got = api
        .get_flow_config(s.admin(pb::GetFlowConfigRequest { id: fc.id.clone() }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got, fc);
    let dup = api
        .create_flow_config(s.admin(pb::CreateFlowConfigRequest {
            account_id: account.id.clone(),
            name: "brand".into(),
            display_name: "Again".into(),
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert_eq!(dup.code(), Code::InvalidArgument);
    assert!(dup.message().starts_with("name:"), "{}", dup.message());
    let bad = api
        .update_flow_config(s.admin(pb::UpdateFlowConfigRequest {
            id: fc.id.clone(),
            logo_url: Some("http://cdn.example/logo.png".into()),
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert!(bad.message().starts_with("logo_url:"), "{}", bad.message());
    let updated = api
        .update_flow_config(s.admin(pb::UpdateFlowConfigRequest {
            id: fc.id.clone(),
            primary_color: Some("#0B6E4F".into()),
            default_language: Some("de".into()),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(updated.primary_color, "#0b6e4f");
    assert_eq!(updated.logo_url, fc.logo_url, "absent fields are kept");
    let listed = api
        .list_flow_configs(s.admin(pb::ListFlowConfigsRequest {
            account_id: account.id.clone(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.flow_configs, vec![updated]);
    api.delete_flow_config(s.admin(pb::DeleteFlowConfigRequest { id: fc.id.clone() }))
        .await
        .unwrap();
    let gone = api
        .get_flow_config(s.admin(pb::GetFlowConfigRequest { id: fc.id.clone() }))
        .await
        .unwrap_err();
    assert_eq!(gone.code(), Code::NotFound);
    // Each write left its event (newest first): the duplicate, the bad
    // update and the delete of what is gone already left none.
    let again = api
        .delete_flow_config(s.admin(pb::DeleteFlowConfigRequest { id: fc.id.clone() }))
        .await
        .unwrap_err();
    assert_eq!(again.code(), Code::NotFound);
    let events = audit_events(&s, &account.id, "flow_config.").await;
    let actions: Vec<&str> = events.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(
        actions,
        [
            "flow_config.deleted",
            "flow_config.updated",
            "flow_config.created"
        ]
    );
    assert!(events.iter().all(|e| e.target_id == fc.id));
    let summary: serde_json::Value = serde_json::from_str(&events[1].summary).unwrap();
    assert_eq!(summary["primary_color"], "#0b6e4f");
    assert_eq!(summary["logo_url"], "https://cdn.example/logo.png");
    // Without an admin token: refused.
    let anon = api
        .list_flow_configs(pb::ListFlowConfigsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(anon.code(), Code::Unauthenticated);
    s.stop().await;
}

/// The public base the strict-form tests configure as `tokens.issuer`:
/// not the address the test connects to.
const PUBLIC: &str = "https://auth.example.com";

/// A strict-form link (`LATCHKEY-URL-V2`) for `base` + `path`, signed with
/// `key`; returned as the path and query the test requests.
fn strict_link(key: &str, base: &str, path: &str, params: &[(&str, &str)]) -> String {
    let query = form(params);
    let canonical = strict_url_canonical(&format!("{base}{path}?{query}")).unwrap();
    let signature = hex(&hmac_sha256(key.as_bytes(), &[canonical.as_bytes()]));
    format!("/oauth2/consent?{query}&signature={signature}")
}

async fn strict_secrets_sign_the_link_for_the_configured_public_url(backend: Backend) {
    let s = TestServer::start_with(backend, |c| c.tokens.issuer = Some(format!("{PUBLIC}/"))).await;
    let setup = setup_as(&s, pb::SignedUrlForm::Strict).await;
    let now = format_iso8601(s.clock.now());
    let mut good = params(&setup, &now);
    // The strict form signs values with `&` and `=` unambiguously.
    good[2] = ("state", "s-1&next=/home");
    let url = strict_link(&setup.secret, PUBLIC, "/oauth2/consent", &good);

    // Signed for somewhere else: the request's own host, another public
    // host, another path, or changed after signing.
    let own_host = format!("http://{}", s.running().http_addr);
    for (bad, why) in [
        (
            strict_link(&setup.secret, &own_host, "/oauth2/consent", &good),
            "the Host the request came to",
        ),
        (
            strict_link(
                &setup.secret,
                "https://evil.example",
                "/oauth2/consent",
                &good,
            ),
            "another host",
        ),
        (
            strict_link(&setup.secret, PUBLIC, "/oauth2/authorize", &good),
            "another path",
        ),
        (
            url.replace("uid=merchant-7", "uid=admin"),
            "a changed parameter",
        ),
    ] {
        let page = get(&s, &bad, "en").await;
        assert_eq!(page.status, 403, "{why}: {}", page.body);
        refused(&page, 403, "changed after it was signed");
    }
    // The seed form's signature is not the strict secret's.
    let seed: Vec<_> = params(&setup, &now);
    refused(
        &get(&s, &link(&setup.secret, &seed), "en").await,
        403,
        "changed after it was signed",
    );

    // The valid link: its page, the POSTed decision (verified again), the
    // code, the token.
    let page = get(&s, &url, "en").await;
    assert_eq!(page.status, 200, "{}", page.body);
    let allowed = decide(&s, &page, "allow").await;
    assert_eq!(allowed.status, 302, "{}", allowed.body);
    let location = allowed.header("location");
    assert!(
        location.starts_with(&format!("{REDIRECT}?code=")),
        "{location}"
    );
    let back: std::collections::HashMap<String, String> =
        form_urlencoded::parse(location.split_once('?').unwrap().1.as_bytes())
            .into_owned()
            .collect();
    assert_eq!(back["state"], "s-1&next=/home");
    let code = location
        .split(['?', '&'])
        .find_map(|p| p.strip_prefix("code="))
        .unwrap();
    let token = http(
        s.running().http_addr,
        "POST",
        "/oauth2/token",
        &[(
            "Authorization",
            &crate::tokens::basic(&setup.client_id, &setup.client_secret),
        )],
        &form(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", VERIFIER),
        ]),
    )
    .await;
    assert_eq!(token.status, 200, "{}", token.body);
    refused(&get(&s, &url, "en").await, 410, "already used");
    s.stop().await;
}

/// A new signing secret of `account_id` in `mode`: its id.
async fn secret_of(s: &TestServer, account_id: &str, mode: pb::Mode) -> String {
    signing_api(s)
        .create_secret(s.admin(pb::CreateSecretRequest {
            account_id: account_id.to_owned(),
            mode: mode.into(),
            name: "other".into(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner()
        .secret_id
}

async fn client_events(s: &TestServer, account_id: &str) -> Vec<pb::AuditEvent> {
    audit_events(s, account_id, "client.").await
}

async fn audit_events(s: &TestServer, account_id: &str, prefix: &str) -> Vec<pb::AuditEvent> {
    pb::audit_service_client::AuditServiceClient::new(s.channel.clone())
        .list_events(s.admin(pb::ListEventsRequest {
            account_id: account_id.to_owned(),
            action_prefix: prefix.into(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner()
        .events
}

async fn client_links_are_written_with_the_client_and_checked_on_update(backend: Backend) {
    let s = TestServer::start(backend).await;
    let setup = setup(&s).await;
    let get_client = || async {
        tokens_api(&s)
            .get_client(s.admin(pb::GetClientRequest {
                client_id: setup.client_id.clone(),
            }))
            .await
            .unwrap()
            .into_inner()
    };
    let client = get_client().await;
    assert_eq!(client.signing_secret_id, setup.secret_id);
    // One write: the creation's own event carries the link.
    let events = client_events(&s, &client.account_id).await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].action, "client.created");
    let summary: serde_json::Value = serde_json::from_str(&events[0].summary).unwrap();
    assert_eq!(summary["signing_secret_id"], setup.secret_id.as_str());

    // UpdateClient changes only the link; a bad one is refused, naming
    // the field, and changes nothing.
    let live = s.live_account("PRIME").await;
    let other_account = secret_of(&s, &live.id, pb::Mode::Test).await;
    let own = secret_of(&s, &client.account_id, pb::Mode::Test).await;
    let revoked = secret_of(&s, &client.account_id, pb::Mode::Test).await;
    signing_api(&s)
        .revoke_secret(s.admin(pb::RevokeSecretRequest {
            secret_id: revoked.clone(),
        }))
        .await
        .unwrap();
    let live_client = tokens_api(&s)
        .create_client(s.admin(pb::CreateClientRequest {
            account_id: live.id.clone(),
            mode: pb::Mode::Live.into(),
            name: "Live app".into(),
            redirect_uris: vec![REDIRECT.into()],
            grant_types: vec!["authorization_code".into()],
            scopes: vec!["feedback.read".into()],
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner()
        .client
        .unwrap();
    for (client_id, bad, why) in [
        (&setup.client_id, "sig_nope".to_owned(), "malformed"),
        (
            &setup.client_id,
            "sig_0193d2b8c5a07c3e9b1f4a2d6e8c0b11".to_owned(),
            "unknown",
        ),
        (&setup.client_id, other_account.clone(), "another account's"),
        (&setup.client_id, revoked.clone(), "revoked"),
        (
            &live_client.client_id,
            other_account.clone(),
            "another mode's",
        ),
    ] {
        let e = tokens_api(&s)
            .update_client(s.admin(pb::UpdateClientRequest {
                client_id: client_id.clone(),
                signing_secret_id: Some(bad),
            }))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{why}: {e:?}");
        assert!(
            e.message().starts_with("signing_secret_id:"),
            "{why}: {}",
            e.message()
        );
    }
    assert_eq!(get_client().await.signing_secret_id, setup.secret_id);
    assert_eq!(client_events(&s, &client.account_id).await.len(), 1);
    // Nothing asked for, nothing changed.
    let same = tokens_api(&s)
        .update_client(s.admin(pb::UpdateClientRequest {
            client_id: setup.client_id.clone(),
            signing_secret_id: None,
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(same, client);

    // A good one is linked, with its event in the same transaction.
    let linked = tokens_api(&s)
        .update_client(s.admin(pb::UpdateClientRequest {
            client_id: setup.client_id.clone(),
            signing_secret_id: Some(own.clone()),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(linked.signing_secret_id, own);
    assert_eq!(get_client().await.signing_secret_id, own);
    let events = client_events(&s, &client.account_id).await;
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(events[0].action, "client.signing_secret_set");
    assert_eq!(events[0].target_id, setup.client_id);
    let summary: serde_json::Value = serde_json::from_str(&events[0].summary).unwrap();
    assert_eq!(summary["signing_secret_id"], own.as_str());
    s.stop().await;
}
