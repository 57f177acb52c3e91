use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use minijinja::context;

use super::page::{
    BASE_POLICY, Brand, Lang, catalogues, consent_policy, describe_scope, negotiate, render, tr,
};
use super::params;

#[test]
fn repeated_parameters_are_refused() {
    assert!(params(b"a=1&b=2").is_ok());
    assert!(params(b"a=1&a=2").unwrap_err().contains("`a`"));
}

#[test]
fn scopes_read_as_plain_words() {
    let en = |s| describe_scope(Lang::En, s, None);
    assert_eq!(en("surveys.read"), "View your surveys");
    assert_eq!(en("feeds.write"), "Create and change your feeds");
    assert_eq!(en("orders.*"), "Full access to your orders");
    assert_eq!(en("*"), "Everything your plan allows");
    assert_eq!(
        describe_scope(Lang::De, "surveys.read", None),
        "Ihre surveys ansehen"
    );
    // Configured wording wins over the built-in one.
    assert_eq!(
        describe_scope(Lang::De, "feedback.read", Some("Ihr Feedback lesen")),
        "Ihr Feedback lesen"
    );
}

#[test]
fn the_catalogues_cover_the_same_messages() {
    let (en, de) = catalogues();
    assert!(en.len() > 40, "{en:?}");
    assert_eq!(en, de, "en.toml and de.toml must hold the same keys");
}

#[test]
fn the_language_follows_accept_language_then_the_fallback() {
    let with = |v: &str| {
        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT_LANGUAGE, HeaderValue::from_str(v).unwrap());
        h
    };
    assert_eq!(negotiate(&with("de-DE,de;q=0.9,en;q=0.8"), None), Lang::De);
    assert_eq!(negotiate(&with("en-US,de;q=0.5"), None), Lang::En);
    assert_eq!(
        negotiate(&with("fr;q=1, de;q=0.3, en;q=0.2"), None),
        Lang::De
    );
    assert_eq!(negotiate(&with("en;q=0, DE"), None), Lang::De);
    assert_eq!(negotiate(&with("fr-FR"), Some(Lang::De)), Lang::De);
    assert_eq!(negotiate(&with("*"), Some(Lang::De)), Lang::De);
    assert_eq!(negotiate(&HeaderMap::new(), Some(Lang::De)), Lang::De);
    assert_eq!(negotiate(&HeaderMap::new(), None), Lang::En);
    assert_eq!(negotiate(&with("de;q=abc"), None), Lang::En);
}

#[test]
fn messages_fill_their_placeholders() {
    assert_eq!(
        tr(Lang::De, "error_duplicate_parameter", &[("name", "state")]),
        "Der Parameter state wurde mehr als einmal angegeben."
    );
    assert_eq!(tr(Lang::En, "no_such_key", &[]), "no_such_key");
}

async fn body(r: axum::response::Response) -> String {
    let bytes = axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap();
    String::from_utf8(bytes.to_vec()).unwrap()
}

const HOSTILE: &str = "<script>alert(1)</script>\"'&{client}";

/// Client names, scopes, users and every flow-configuration field are
/// escaped wherever the consent page shows them.
#[tokio::test]
async fn hostile_names_are_escaped_on_the_consent_page() {
    let brand = Brand::new(
        Some(HOSTILE.into()),
        Some("https://cdn.example/l.png?a=\"><script>x</script>".into()),
        Some("#123456;}</style><script>x</script>"),
        Some("https://help.example/\"onmouseover=\"x".into()),
    );
    let scope = serde_json::json!({"scope": HOSTILE, "description": HOSTILE, "admin": true});
    let r = render(
        StatusCode::OK,
        "consent.html",
        Lang::En,
        HOSTILE,
        &brand,
        context! {
            client => HOSTILE,
            account => HOSTILE,
            test_mode => true,
            user => HOSTILE,
            read_scopes => vec![scope.clone()],
            change_scopes => vec![scope],
            action => "/oauth2/authorize",
            fields => vec![(HOSTILE.to_owned(), HOSTILE.to_owned())],
            redirect_host => HOSTILE,
        },
    );
    assert_eq!(r.status(), StatusCode::OK);
    let html = body(r).await;
    assert!(!html.contains("<script"), "{html}");
    assert!(!html.contains("\"onmouseover"), "{html}");
    assert!(
        html.contains("&lt;script&gt;alert(1)&lt;/script&gt;&quot;&#39;&amp;"),
        "{html}"
    );
    // An invalid colour never reaches the style sheet.
    assert!(html.contains("--primary: #1d4ed8"), "{html}");
    assert!(html.contains("<html lang=\"en\">"), "{html}");
}

#[tokio::test]
async fn pages_carry_their_protections_and_language() {
    let r = render(
        StatusCode::NOT_FOUND,
        "error.html",
        Lang::De,
        "t",
        &Brand::default(),
        context! { heading => "h", message => "m" },
    );
    let h = r.headers();
    assert_eq!(h[header::CACHE_CONTROL], "no-store");
    assert_eq!(h[header::X_FRAME_OPTIONS], "DENY");
    assert_eq!(h[header::REFERRER_POLICY], "no-referrer");
    assert_eq!(h[header::CONTENT_LANGUAGE], "de");
    assert_eq!(h[header::CONTENT_SECURITY_POLICY], BASE_POLICY);
    assert!(body(r).await.contains("<html lang=\"de\">"));
}

#[test]
fn a_logo_widens_img_src_to_its_https_host_only() {
    let p = |logo| {
        consent_policy("https://app.example/cb", logo)
            .to_str()
            .unwrap()
            .to_owned()
    };
    assert!(
        p(Some("https://cdn.example.com/logo.png")).ends_with("; img-src https://cdn.example.com")
    );
    assert!(!p(Some("http://cdn.example.com/logo.png")).contains("img-src"));
    assert!(!p(Some("https://a.example;script-src/x.png")).contains("script-src"));
    assert!(!p(None).contains("img-src"));
}

#[test]
fn button_text_contrasts_with_the_brand_colour() {
    assert_eq!(
        Brand::new(None, None, Some("#ffeb3b"), None).on_primary,
        "#000000"
    );
    assert_eq!(
        Brand::new(None, None, Some("#1a237e"), None).on_primary,
        "#ffffff"
    );
    assert_eq!(Brand::new(None, None, Some("red"), None).primary, "#1d4ed8");
}

mod csrf {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use zeroize::Zeroizing;

    use super::super::csrf::CsrfKey;
    use crate::domain::model::{ClientRecord, Mode};
    use crate::domain::tokens::AuthorizeRequest;

    fn request(state: Option<&str>) -> AuthorizeRequest {
        AuthorizeRequest {
            client: ClientRecord {
                client_id: "cli_1".into(),
                account_id: "acct_1".into(),
                mode: Mode::Test,
                name: "App".into(),
                secret_hash: [0; 32],
                redirect_uris: vec!["https://app.example/cb".into()],
                grant_types: vec!["authorization_code".into()],
                scopes: vec!["orders.read".into()],
                created_at: 0,
                signing_secret_id: None,
            },
            redirect_uri: "https://app.example/cb".into(),
            scope: vec!["orders.read".into(), "orders.write".into()],
            state: state.map(str::to_owned),
            code_challenge: "challenge".into(),
        }
    }

    const NOW: i64 = 1_700_000_000_000;

    #[test]
    fn a_token_holds_for_ten_minutes_for_its_user_and_request_only() {
        let key = CsrfKey::new(&Zeroizing::new([7u8; 32]));
        let r = request(Some("xyz"));
        let token = key.token(NOW, "ada", &r);
        assert!(key.verify(NOW, "ada", &r, &token));
        assert!(key.verify(NOW + 600_000, "ada", &r, &token));
        assert!(!key.verify(NOW + 601_000, "ada", &r, &token));
        assert!(!key.verify(NOW - 1000, "ada", &r, &token));
        assert!(!key.verify(NOW, "bob", &r, &token));
        assert!(!key.verify(NOW, "ada", &request(Some("xyz2")), &token));
        assert!(!key.verify(NOW, "ada", &request(None), &token));
        let other = CsrfKey::new(&Zeroizing::new([8u8; 32]));
        assert!(!other.verify(NOW, "ada", &r, &token));
        assert!(!key.verify(NOW, "ada", &r, "garbage"));
        assert!(!key.verify(NOW, "ada", &r, &format!("x{token}")));
    }

    /// Forms shown before the MAC moved to `crypto::mac` still verify: the
    /// bytes are the same HMAC-SHA256 that aws-lc computed.
    #[test]
    fn the_mac_is_the_one_aws_lc_computed() {
        use aws_lc_rs::hmac;
        let secret = [7u8; 32];
        let r = request(Some("xyz"));
        let token = CsrfKey::new(&Zeroizing::new(secret)).token(NOW, "ada", &r);
        let issued = NOW / 1000;
        let msg = format!(
            "10:consent-v13:ada5:cli_122:https://app.example/cb24:orders.read orders.write3:xyz9:challenge10:{issued}"
        );
        let key = hmac::Key::new(hmac::HMAC_SHA256, &secret);
        let mac = URL_SAFE_NO_PAD.encode(hmac::sign(&key, msg.as_bytes()).as_ref());
        assert_eq!(token, format!("{issued}.{mac}"));
    }
}

#[test]
fn consent_policy_lets_the_form_reach_the_redirect_origin_only() {
    let form_action = |uri: &str| {
        let policy = consent_policy(uri, None).to_str().unwrap().to_owned();
        let base = BASE_POLICY;
        let (head, tail) = base.split_once("form-action 'self'").unwrap();
        let middle = policy
            .strip_prefix(head)
            .unwrap()
            .strip_suffix(tail)
            .unwrap();
        middle
            .strip_prefix("form-action 'self'")
            .unwrap()
            .to_owned()
    };
    assert_eq!(
        form_action("https://app.example.com/cb?x=1"),
        " https://app.example.com"
    );
    assert_eq!(
        form_action("https://App.Example.COM:443/cb"),
        " https://app.example.com"
    );
    assert_eq!(
        form_action("https://app.example.com:8443/cb"),
        " https://app.example.com:8443"
    );
    assert_eq!(
        form_action("http://127.0.0.1:8000/cb"),
        " http://127.0.0.1:8000"
    );
    assert_eq!(form_action("http://localhost/cb"), " http://localhost");
    assert_eq!(
        form_action("https://bücher.example/cb"),
        " https://xn--bcher-kva.example"
    );
    // Where the browser really goes, not what the URI seems to say.
    assert_eq!(
        form_action("https://app.example\\@evil.example/"),
        " https://app.example"
    );
    assert_eq!(
        form_action("http://localhost:80@evil.example/cb"),
        " http://evil.example"
    );
    // CSP has no syntax for an IPv6 literal: the scheme stands in.
    assert_eq!(form_action("http://[::1]:8000/cb"), " http:");
    // Nothing in a URI becomes CSP syntax.
    for hostile in [
        "https://a.example;script-src/cb",
        "https://a.example,script-src/cb",
        "https://a.example'unsafe-inline'/cb",
        "https://a.example%20*/cb",
        "https://*.example/cb",
        "https://a_b.example/cb",
        "com.example.app:/cb",
        "javascript:alert(1)",
        "not a uri",
    ] {
        assert_eq!(form_action(hostile), "", "{hostile}");
    }
}
