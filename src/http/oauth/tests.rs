use super::page::{describe_scope, escape};
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
