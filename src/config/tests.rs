use super::*;

#[test]
fn defaults_validate() {
    let s = Config::default().validate().unwrap();
    assert_eq!(s.grpc_addr.to_string(), "127.0.0.1:50051");
    assert!(s.database_url.expose().starts_with("sqlite://"));
    assert_eq!(s.keys.default_ttl_secs, 90 * 86_400);
    assert!(s.policy.plan("PRIME").is_some());
}

#[test]
fn key_expiry_notices_default_to_seven_days_ahead() {
    let s = Config::default().validate().unwrap();
    assert_eq!(s.webhooks.key_expiring_days, 7);
    assert_eq!(s.webhooks.key_expiry_interval.as_secs(), 60);
    let c: Config = toml::from_str("[webhooks]\nkey_expiring_days = 0").unwrap();
    assert_eq!(c.validate().unwrap().webhooks.key_expiring_days, 0);
}

#[test]
fn webhook_deliveries_are_kept_thirty_days_by_default() {
    let s = Config::default().validate().unwrap();
    assert_eq!(s.webhooks.retention_days, 30);
    let c: Config = toml::from_str("[webhooks]\nretention_days = 2").unwrap();
    assert_eq!(c.validate().unwrap().webhooks.retention_days, 2);
}

#[test]
fn unknown_fields_are_refused() {
    let err = toml::from_str::<Config>("grpc_adr = \"x\"")
        .unwrap_err()
        .to_string();
    assert!(err.contains("grpc_adr"), "{err}");
    let err = toml::from_str::<Config>("[keys]\nprefx = \"x\"")
        .unwrap_err()
        .to_string();
    assert!(err.contains("prefx"), "{err}");
}

#[test]
fn bad_values_name_their_field() {
    let mut c = Config::default();
    c.keys.prefix = "Bad_Prefix".into();
    assert!(
        c.validate()
            .unwrap_err()
            .to_string()
            .starts_with("keys.prefix")
    );
    let mut c = Config::default();
    c.check.trusted_proxies = vec!["not-an-ip".into()];
    assert!(
        c.validate()
            .unwrap_err()
            .to_string()
            .starts_with("check.trusted_proxies")
    );
    let c = Config {
        database_url: Some("mysql://x".into()),
        ..Config::default()
    };
    assert!(
        c.validate()
            .unwrap_err()
            .to_string()
            .starts_with("database_url")
    );
}

#[test]
fn signing_section_is_validated() {
    let s = Config::default().validate().unwrap();
    assert_eq!(s.signing.signing.tolerance_secs, 300);
    assert_eq!(s.signing.signing.url_validity_secs, 30 * 86_400);
    assert_eq!(s.signing.reveal_ttl_secs, 3600);
    let c: Config = toml::from_str(
        "[signing]\ntolerance_seconds = 60\nfeed_path_prefix = \"/feeds/\"\nwebhook_headers = [\"X-Hook-Sig\"]",
    )
    .unwrap();
    let s = c.validate().unwrap();
    assert_eq!(s.signing.signing.tolerance_secs, 60);
    assert_eq!(s.signing.signing.webhook_headers, ["x-hook-sig"]);
    assert_eq!(
        s.signing.signing.feed_path_prefix.as_deref(),
        Some("/feeds/")
    );
    for (toml, field) in [
        (
            "[signing]\ntolerance_seconds = 0",
            "signing.tolerance_seconds",
        ),
        (
            "[signing]\nfeed_path_prefix = \"feeds\"",
            "signing.feed_path_prefix",
        ),
        (
            "[signing]\nreveal_base_url = \"ftp://x\"",
            "signing.reveal_base_url",
        ),
        (
            "[signing]\ndefault_overlap_seconds = -1",
            "signing.default_overlap_seconds",
        ),
        ("[signing]\nwebhook_headers = []", "signing.webhook_headers"),
        (
            "[webhooks]\nkey_expiring_days = 366",
            "webhooks.key_expiring_days",
        ),
        (
            "[webhooks]\nkey_expiry_interval_seconds = 0",
            "webhooks.key_expiry_interval_seconds",
        ),
        ("[webhooks]\nretention_days = 0", "webhooks.retention_days"),
    ] {
        let err = toml::from_str::<Config>(toml)
            .unwrap()
            .validate()
            .unwrap_err();
        assert!(err.to_string().starts_with(field), "{toml}: {err}");
    }
    assert!(toml::from_str::<Config>("[signing]\ntolerance = 1").is_err());
}

#[test]
fn plans_from_a_file_replace_the_defaults() {
    let c: Config = toml::from_str(
        r#"
        [[plans]]
        name = "basic"
        permissions = ["feedback.read"]
        [[plans]]
        name = "pro"
        extends = "basic"
        permissions = ["feedback.*", "webhooks.manage"]
        "#,
    )
    .unwrap();
    let s = c.validate().unwrap();
    assert!(s.policy.plan("PRIME").is_none());
    assert_eq!(s.policy.plan_names(), ["basic", "pro"]);
}

#[test]
fn forward_auth_is_off_by_default_and_validated_when_on() {
    assert!(Config::default().validate().unwrap().forward_auth.is_none());
    let on: Config = toml::from_str(
        "[forward_auth]\nenabled = true\nflavor = \"traefik\"\ntrusted_proxies = [\"10.42.0.0/16\"]\n\
         [ext_authz]\nheader_prefix = \"x-acme-\"",
    )
    .unwrap();
    let fa = on.validate().unwrap().forward_auth.unwrap();
    assert_eq!(fa.addr.to_string(), "127.0.0.1:8081");
    assert_eq!(
        fa.settings.flavor,
        crate::http::forward_auth::Flavor::Traefik
    );
    assert_eq!(fa.settings.trusted_proxies.len(), 1);
    assert_eq!(fa.settings.header_prefix, "x-acme-");
    let defaults = ForwardAuthConfig::default();
    assert_eq!(defaults.trusted_proxies, ["127.0.0.0/8", "::1/128"]);
    assert_eq!(defaults.flavor, "auto");

    let field = |tweak: fn(&mut Config)| {
        let mut c = Config::default();
        c.forward_auth.enabled = true;
        tweak(&mut c);
        c.validate().unwrap_err().to_string()
    };
    assert!(field(|c| c.forward_auth.flavor = "envoy".into()).starts_with("forward_auth.flavor"));
    assert!(field(|c| c.forward_auth.addr = "8081".into()).starts_with("forward_auth.addr"));
    assert!(
        field(|c| c.forward_auth.trusted_proxies = vec!["proxy".into()])
            .starts_with("forward_auth.trusted_proxies")
    );
    assert!(
        field(|c| c.forward_auth.trusted_proxies = Vec::new())
            .starts_with("forward_auth.trusted_proxies")
    );
    // Never the public port.
    assert!(field(|c| c.forward_auth.addr = c.http_addr.clone()).starts_with("forward_auth.addr"));
    // Off, nothing in it is read.
    let mut c = Config::default();
    c.forward_auth.flavor = "envoy".into();
    assert!(c.validate().is_ok());
}

#[test]
fn redis_settings_are_validated_and_never_printed() {
    let field = |c: Config| c.validate().unwrap_err().to_string();
    let mut c = Config::default();
    c.rate_limits.strict = true;
    assert!(field(c).starts_with("rate_limits.strict"));
    let mut c = Config::default();
    c.rate_limits.redis_url = Some("http://redis:6379".into());
    assert!(field(c).starts_with("rate_limits.redis_url"));
    let mut c = Config::default();
    c.rate_limits.redis_url = Some("redis://redis:6379".into());
    c.rate_limits.replicas = 0;
    assert!(field(c).starts_with("rate_limits.replicas"));
    let mut c = Config::default();
    c.rate_limits.redis_url = Some("redis://:hunter2@redis:6379".into());
    let s = c.validate().unwrap();
    let global = s.rate_limits.global.as_ref().unwrap();
    assert_eq!(global.replicas, 2);
    assert!(!format!("{s:?}").contains("hunter2"));
    assert!(
        Config::default()
            .validate()
            .unwrap()
            .rate_limits
            .global
            .is_none()
    );
}

#[test]
fn the_store_pool_floor_defaults_to_the_pool_and_may_not_exceed_it() {
    let settings = Config::default().validate().unwrap();
    assert_eq!(settings.store.max_connections, 16);
    assert_eq!(
        settings.store.min_connections, 16,
        "opened whole by default"
    );
    let config = Config {
        store_max_connections: 8,
        store_min_connections: Some(2),
        ..Config::default()
    };
    let settings = config.validate().unwrap();
    assert_eq!(
        (
            settings.store.max_connections,
            settings.store.min_connections
        ),
        (8, 2)
    );
    let err = Config {
        store_max_connections: 4,
        store_min_connections: Some(5),
        ..Config::default()
    }
    .validate()
    .unwrap_err();
    assert!(err.to_string().contains("store_min_connections"), "{err}");
    let err = Config {
        store_max_connections: 0,
        ..Config::default()
    }
    .validate()
    .unwrap_err();
    assert!(err.to_string().contains("store_max_connections"), "{err}");
}
