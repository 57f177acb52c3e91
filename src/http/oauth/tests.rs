use axum::http::{StatusCode, header};

use super::page::{consent_policy, describe_scope, escape, page};
use super::params;

#[test]
fn repeated_parameters_are_refused() {
    assert!(params(b"a=1&b=2").is_ok());
    assert!(params(b"a=1&a=2").unwrap_err().contains("`a`"));
}

#[test]
fn scopes_read_as_plain_words() {
    assert_eq!(describe_scope("surveys.read"), "View your surveys");
    assert_eq!(
        describe_scope("feeds.write"),
        "Create and change your feeds"
    );
    assert_eq!(describe_scope("orders.*"), "Full access to your orders");
    assert_eq!(describe_scope("*"), "Everything your plan allows");
}

#[test]
fn html_is_escaped() {
    assert_eq!(
        escape("<a href=\"x\">'&"),
        "&lt;a href=&quot;x&quot;&gt;&#39;&amp;"
    );
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
        let policy = consent_policy(uri).to_str().unwrap().to_owned();
        let base = page(StatusCode::OK, "t", "b");
        let base = base.headers()[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap();
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
