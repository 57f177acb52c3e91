//! `WebhookService` over gRPC (issue 16, item 2): each RPC needs its
//! `admin.webhooks.*` permission; bad input is refused naming the field and
//! changes nothing; endpoints are updated, disabled and re-enabled; a test
//! event reaches its endpoint alone, signed, and its attempt is listed;
//! rotation signs with both secrets for the overlap; deliveries are retried.

use latchkey::config::Config;
use latchkey::domain::permissions::Scope;
use latchkey::pb;
use tonic::Code;
use tonic::transport::Channel;

use crate::backend_tests;
use crate::common::{Backend, TestServer, bearer, eventually};
use crate::webhooks::{receiver, verify_standard};

type Client = pb::webhook_service_client::WebhookServiceClient<Channel>;

fn hooks(s: &TestServer) -> Client {
    Client::new(s.channel.clone())
}

async fn insecure_server(backend: Backend) -> TestServer {
    TestServer::start_with(backend, |c: &mut Config| {
        c.webhooks.allow_insecure_targets = true;
        c.webhooks.poll_interval_ms = 20;
    })
    .await
}

fn create_request(url: &str) -> pb::CreateEndpointRequest {
    pb::CreateEndpointRequest {
        url: url.into(),
        description: "grpc test".into(),
        ..Default::default()
    }
}

async fn create(s: &TestServer, req: pb::CreateEndpointRequest) -> (pb::WebhookEndpoint, String) {
    let r = hooks(s)
        .create_endpoint(s.admin(req))
        .await
        .unwrap()
        .into_inner();
    (r.endpoint.unwrap(), r.secret)
}

async fn get(s: &TestServer, id: &str) -> pb::WebhookEndpoint {
    hooks(s)
        .get_endpoint(s.admin(pb::GetEndpointRequest { id: id.into() }))
        .await
        .unwrap()
        .into_inner()
}

async fn deliveries(s: &TestServer, endpoint_id: &str) -> Vec<pb::WebhookDelivery> {
    hooks(s)
        .list_deliveries(s.admin(pb::ListDeliveriesRequest {
            endpoint_id: endpoint_id.into(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner()
        .deliveries
}

/// Sends a test event to the endpoint and waits for its first attempt.
async fn first_attempt(s: &TestServer, endpoint_id: &str) -> pb::WebhookDelivery {
    hooks(s)
        .send_test_event(s.admin(pb::SendTestEventRequest {
            endpoint_id: endpoint_id.into(),
        }))
        .await
        .unwrap();
    eventually("the first attempt", || async {
        deliveries(s, endpoint_id)
            .await
            .into_iter()
            .find(|d| d.attempts == 1)
    })
    .await
}

async fn operator_token(s: &TestServer, scope: &str) -> String {
    s.running()
        .services
        .keys
        .create_operator_key(scope, vec![Scope::parse(scope).unwrap()], None)
        .await
        .unwrap()
        .secret
        .expose()
        .clone()
}

fn assert_field(err: &tonic::Status, field: &str) {
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(
        err.message().starts_with(&format!("{field}:")),
        "expected `{field}:`, got {}",
        err.message()
    );
}

/// Get/List* need `admin.webhooks.read`; every other RPC `admin.webhooks.write`.
async fn webhook_rpcs_need_their_admin_permissions(backend: Backend) {
    let s = insecure_server(backend).await;
    let (endpoint, _) = create(&s, create_request("http://127.0.0.1:9/hook")).await;
    let id = endpoint.id.clone();
    let none = operator_token(&s, "admin.keys.read").await;
    let reader = operator_token(&s, "admin.webhooks.read").await;
    let mut c = hooks(&s);

    for token in [&none, &reader] {
        let denied = [
            c.create_endpoint(bearer(token, create_request("http://127.0.0.1:9/x")))
                .await
                .map(|_| ()),
            c.update_endpoint(bearer(
                token,
                pb::UpdateEndpointRequest {
                    id: id.clone(),
                    enabled: Some(false),
                    ..Default::default()
                },
            ))
            .await
            .map(|_| ()),
            c.delete_endpoint(bearer(token, pb::DeleteEndpointRequest { id: id.clone() }))
                .await
                .map(|_| ()),
            c.rotate_endpoint_secret(bearer(
                token,
                pb::RotateEndpointSecretRequest {
                    id: id.clone(),
                    overlap_seconds: None,
                },
            ))
            .await
            .map(|_| ()),
            c.retry_delivery(bearer(
                token,
                pb::RetryDeliveryRequest {
                    id: "dlv_0190a1b2c3d4e5f60718293a4b5c6d7e".into(),
                },
            ))
            .await
            .map(|_| ()),
            c.send_test_event(bearer(
                token,
                pb::SendTestEventRequest {
                    endpoint_id: id.clone(),
                },
            ))
            .await
            .map(|_| ()),
        ];
        for (i, r) in denied.into_iter().enumerate() {
            let err = r.unwrap_err();
            assert_eq!(err.code(), Code::PermissionDenied, "call {i}: {err:?}");
            assert!(err.message().contains("admin.webhooks.write"), "{err:?}");
        }
    }
    let reads = [
        c.get_endpoint(bearer(&none, pb::GetEndpointRequest { id: id.clone() }))
            .await
            .map(|_| ()),
        c.list_endpoints(bearer(&none, pb::ListEndpointsRequest::default()))
            .await
            .map(|_| ()),
        c.list_deliveries(bearer(
            &none,
            pb::ListDeliveriesRequest {
                endpoint_id: id.clone(),
                ..Default::default()
            },
        ))
        .await
        .map(|_| ()),
    ];
    for r in reads {
        let err = r.unwrap_err();
        assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
        assert!(err.message().contains("admin.webhooks.read"), "{err:?}");
    }
    // The reader reads.
    let got = c
        .get_endpoint(bearer(&reader, pb::GetEndpointRequest { id: id.clone() }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.url, "http://127.0.0.1:9/hook");
    let listed = c
        .list_endpoints(bearer(&reader, pb::ListEndpointsRequest::default()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.endpoints.len(), 1);
    // Nothing the refused calls asked for happened.
    let after = get(&s, &id).await;
    assert!(after.enabled);
    assert_eq!(after.version, 1);
    assert_eq!(after.secret_versions.len(), 1);
    assert!(deliveries(&s, &id).await.is_empty());
    s.stop().await;
}

/// Private and http targets without `allow_insecure_targets`; then, with
/// it, unknown event types, accounts, endpoints and malformed ids: each
/// refused naming its field, nothing written.
async fn bad_webhook_input_names_the_field(backend: Backend) {
    let strict = TestServer::start(backend).await;
    for url in [
        "https://127.0.0.1/hook",
        "https://localhost:8443/hook",
        "https://10.0.0.7/hook",
        "https://[::1]/hook",
        "https://169.254.169.254/latest/meta-data",
        "http://example.com/hook",
        "ftp://example.com/hook",
        "no url at all",
        "",
    ] {
        let err = hooks(&strict)
            .create_endpoint(strict.admin(create_request(url)))
            .await
            .unwrap_err();
        assert_field(&err, "url");
    }
    let listed = hooks(&strict)
        .list_endpoints(strict.admin(pb::ListEndpointsRequest::default()))
        .await
        .unwrap()
        .into_inner();
    assert!(listed.endpoints.is_empty());
    strict.stop().await;

    let s = insecure_server(backend).await;
    let mut c = hooks(&s);
    let url = "http://127.0.0.1:9/hook";
    let bad = [
        (
            pb::CreateEndpointRequest {
                event_types: vec!["key.created".into(), "key.exploded".into()],
                ..create_request(url)
            },
            "event_types",
        ),
        (
            pb::CreateEndpointRequest {
                account_id: "acme".into(),
                ..create_request(url)
            },
            "account_id",
        ),
        (
            pb::CreateEndpointRequest {
                signature_format: 7,
                ..create_request(url)
            },
            "signature_format",
        ),
        (
            pb::CreateEndpointRequest {
                description: "x".repeat(501),
                ..create_request(url)
            },
            "description",
        ),
    ];
    for (req, field) in bad {
        let err = c.create_endpoint(s.admin(req)).await.unwrap_err();
        assert_field(&err, field);
    }
    // A well-formed id of an account that does not exist.
    let err = c
        .create_endpoint(s.admin(pb::CreateEndpointRequest {
            account_id: "acct_0190a1b2c3d4e5f60718293a4b5c6d7e".into(),
            ..create_request(url)
        }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    assert!(err.message().contains("account"), "{err:?}");
    let listed = c
        .list_endpoints(s.admin(pb::ListEndpointsRequest::default()))
        .await
        .unwrap()
        .into_inner();
    assert!(listed.endpoints.is_empty(), "{listed:?}");

    let (endpoint, _) = create(&s, create_request(url)).await;
    let id = endpoint.id.clone();
    let unknown = "whe_0190a1b2c3d4e5f60718293a4b5c6d7e";
    let err = c
        .get_endpoint(s.admin(pb::GetEndpointRequest { id: unknown.into() }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    let err = c
        .get_endpoint(s.admin(pb::GetEndpointRequest { id: "key_1".into() }))
        .await
        .unwrap_err();
    assert_field(&err, "id");
    let err = c
        .send_test_event(s.admin(pb::SendTestEventRequest {
            endpoint_id: unknown.into(),
        }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    let err = c
        .send_test_event(s.admin(pb::SendTestEventRequest::default()))
        .await
        .unwrap_err();
    assert_field(&err, "endpoint_id");
    let err = c
        .list_deliveries(s.admin(pb::ListDeliveriesRequest {
            endpoint_id: unknown.into(),
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    let err = c
        .list_deliveries(s.admin(pb::ListDeliveriesRequest {
            endpoint_id: id.clone(),
            status: 9,
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert_field(&err, "status");
    let err = c
        .retry_delivery(s.admin(pb::RetryDeliveryRequest { id: id.clone() }))
        .await
        .unwrap_err();
    assert_field(&err, "id");
    let err = c
        .retry_delivery(s.admin(pb::RetryDeliveryRequest {
            id: "dlv_0190a1b2c3d4e5f60718293a4b5c6d7e".into(),
        }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    let err = c
        .rotate_endpoint_secret(s.admin(pb::RotateEndpointSecretRequest {
            id: id.clone(),
            overlap_seconds: Some(-1),
        }))
        .await
        .unwrap_err();
    assert_field(&err, "overlap_seconds");
    let err = c
        .delete_endpoint(s.admin(pb::DeleteEndpointRequest { id: unknown.into() }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    // Bad updates change nothing, even beside a good field.
    for (req, field) in [
        (
            pb::UpdateEndpointRequest {
                id: id.clone(),
                description: Some("renamed".into()),
                event_types: Some(pb::StringList {
                    values: vec!["nope.nope".into()],
                }),
                ..Default::default()
            },
            "event_types",
        ),
        (
            pb::UpdateEndpointRequest {
                id: id.clone(),
                description: Some("renamed".into()),
                url: Some("gopher://127.0.0.1/".into()),
                ..Default::default()
            },
            "url",
        ),
        (
            pb::UpdateEndpointRequest {
                id: "whe_nope".into(),
                ..Default::default()
            },
            "id",
        ),
    ] {
        let err = c.update_endpoint(s.admin(req)).await.unwrap_err();
        assert_field(&err, field);
    }
    let after = get(&s, &id).await;
    assert_eq!(after.description, "grpc test");
    assert_eq!(after.version, 1);
    assert_eq!(after.secret_versions.len(), 1);
    s.stop().await;
}

/// UpdateEndpoint changes what it is given; disabling stops test events,
/// re-enabling clears the reason and the failing run; each change is audited.
async fn endpoints_are_updated_disabled_and_reenabled(backend: Backend) {
    let s = insecure_server(backend).await;
    let (rx, addr) = receiver(1).await;
    let account = s.account("GO").await;
    let (endpoint, _) = create(
        &s,
        pb::CreateEndpointRequest {
            account_id: account.id.clone(),
            event_types: vec!["key.created".into()],
            signature_format: pb::SignatureFormat::Seed.into(),
            ..create_request(&format!("http://{addr}/nothing-here"))
        },
    )
    .await;
    assert_eq!(endpoint.account_id, account.id);
    assert_eq!(endpoint.signature_format, pb::SignatureFormat::Seed as i32);
    let mut c = hooks(&s);
    let id = endpoint.id.clone();
    let updated = c
        .update_endpoint(s.admin(pb::UpdateEndpointRequest {
            id: id.clone(),
            url: Some(format!("http://{addr}/hook")),
            event_types: Some(pb::StringList {
                values: vec![
                    "key.revoked".into(),
                    "key.created".into(),
                    "key.revoked".into(),
                ],
            }),
            description: Some("the receiver".into()),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(updated.url, format!("http://{addr}/hook"));
    assert_eq!(updated.event_types, ["key.created", "key.revoked"]);
    assert_eq!(updated.description, "the receiver");
    assert_eq!(updated.version, 2);
    assert!(updated.enabled);
    // Unset fields stay; an empty list means every event type.
    let updated = c
        .update_endpoint(s.admin(pb::UpdateEndpointRequest {
            id: id.clone(),
            event_types: Some(pb::StringList { values: vec![] }),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert!(updated.event_types.is_empty());
    assert_eq!(updated.description, "the receiver");
    assert_eq!(updated.account_id, account.id);

    // A failed test delivery starts a failing run.
    c.send_test_event(s.admin(pb::SendTestEventRequest {
        endpoint_id: id.clone(),
    }))
    .await
    .unwrap();
    eventually("the failed attempt", || async {
        get(&s, &id).await.failing_since.map(|_| ())
    })
    .await;

    let disabled = c
        .update_endpoint(s.admin(pb::UpdateEndpointRequest {
            id: id.clone(),
            enabled: Some(false),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert!(!disabled.enabled);
    assert!(!disabled.disabled_reason.is_empty());
    let err = c
        .send_test_event(s.admin(pb::SendTestEventRequest {
            endpoint_id: id.clone(),
        }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");

    let enabled = c
        .update_endpoint(s.admin(pb::UpdateEndpointRequest {
            id: id.clone(),
            enabled: Some(true),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert!(enabled.enabled);
    assert_eq!(enabled.disabled_reason, "");
    assert_eq!(enabled.failing_since, None);
    assert_eq!(get(&s, &id).await.failing_since, None);
    c.send_test_event(s.admin(pb::SendTestEventRequest {
        endpoint_id: id.clone(),
    }))
    .await
    .unwrap();
    eventually("the test event after re-enabling", || async {
        (rx.got.lock().unwrap().len() >= 2).then_some(())
    })
    .await;

    let events = pb::audit_service_client::AuditServiceClient::new(s.channel.clone())
        .list_events(s.admin(pb::ListEventsRequest {
            action_prefix: "webhook_endpoint.".into(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner()
        .events;
    let actions: Vec<&str> = events.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(
        actions,
        [
            "webhook_endpoint.test_sent",
            "webhook_endpoint.updated",
            "webhook_endpoint.updated",
            "webhook_endpoint.test_sent",
            "webhook_endpoint.updated",
            "webhook_endpoint.updated",
            "webhook_endpoint.created",
        ]
    );
    assert!(events.iter().all(|e| e.target_id == id));
    assert!(events.iter().all(|e| e.account_id == account.id));
    assert!(
        events[1].summary.contains("\"enabled\":true"),
        "{}",
        events[1].summary
    );
    s.stop().await;
}

/// SendTestEvent reaches its endpoint alone, signed like any event, and
/// ListDeliveries shows the attempt: status, attempts, HTTP status, the
/// response body, the event id the receiver saw and the type.
async fn a_test_event_is_delivered_to_its_endpoint_alone(backend: Backend) {
    let s = insecure_server(backend).await;
    let (rx_a, addr_a) = receiver(0).await;
    let (rx_b, addr_b) = receiver(0).await;
    let (a, secret) = create(&s, create_request(&format!("http://{addr_a}/hook"))).await;
    let (b, _) = create(&s, create_request(&format!("http://{addr_b}/hook"))).await;
    let sent = hooks(&s)
        .send_test_event(s.admin(pb::SendTestEventRequest {
            endpoint_id: a.id.clone(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert!(sent.event_id.starts_with("msg_"), "{sent:?}");
    let queued = sent.delivery.unwrap();
    assert_eq!(queued.status, pb::DeliveryStatus::Pending as i32);
    assert_eq!(queued.event_type, "webhook.test");

    let listed = eventually("the delivery succeeded", || async {
        deliveries(&s, &a.id)
            .await
            .into_iter()
            .find(|d| d.status == pb::DeliveryStatus::Succeeded as i32)
    })
    .await;
    assert_eq!(listed.id, queued.id);
    assert_eq!(listed.event_id, sent.event_id);
    assert_eq!(listed.event_type, "webhook.test");
    assert_eq!(listed.attempts, 1);
    assert_eq!(listed.last_http_status, 200);
    assert_eq!(listed.response_body, "ok");
    assert_eq!(listed.next_attempt_at, None);

    let got = rx_a.got.lock().unwrap().clone();
    assert_eq!(got.len(), 1);
    let (headers, body) = &got[0];
    assert_eq!(headers.get("webhook-id").unwrap(), sent.event_id.as_str());
    assert!(verify_standard(&secret, headers, body), "{headers:?}");
    let body: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(body["type"], "webhook.test");
    assert_eq!(body["data"]["endpoint_id"], a.id.as_str());

    // B got nothing, and has no delivery.
    assert!(deliveries(&s, &b.id).await.is_empty());
    let pending = hooks(&s)
        .list_deliveries(s.admin(pb::ListDeliveriesRequest {
            endpoint_id: a.id.clone(),
            status: pb::DeliveryStatus::Pending.into(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert!(pending.deliveries.is_empty());
    // A later key change still fans out to both (the test event did not).
    s.simple_key("GO", &["feedback.read"]).await;
    eventually("the key event at both", || async {
        (rx_a.got.lock().unwrap().len() == 2 && rx_b.got.lock().unwrap().len() == 1).then_some(())
    })
    .await;
    assert!(rx_b.got.lock().unwrap()[0].1.contains("key.created"));
    s.stop().await;
}

/// After RotateEndpointSecret both secrets sign for the overlap; past it,
/// only the new one.
async fn rotation_signs_with_both_secrets_for_the_overlap(backend: Backend) {
    let s = insecure_server(backend).await;
    let (rx, addr) = receiver(0).await;
    let (endpoint, old) = create(&s, create_request(&format!("http://{addr}/hook"))).await;
    let rotated = hooks(&s)
        .rotate_endpoint_secret(s.admin(pb::RotateEndpointSecretRequest {
            id: endpoint.id.clone(),
            overlap_seconds: Some(3_600),
        }))
        .await
        .unwrap()
        .into_inner();
    let new = rotated.secret;
    assert!(new.starts_with("whsec_"));
    assert_ne!(new, old);
    let versions = rotated.endpoint.unwrap().secret_versions;
    assert_eq!(versions.len(), 2);
    assert_eq!(versions[0].version, 2);
    assert_eq!(versions[0].expires_at, None);
    assert!(versions[1].expires_at.is_some());

    let send = || async {
        hooks(&s)
            .send_test_event(s.admin(pb::SendTestEventRequest {
                endpoint_id: endpoint.id.clone(),
            }))
            .await
            .unwrap();
    };
    send().await;
    eventually("the first test event", || async {
        (rx.got.lock().unwrap().len() == 1).then_some(())
    })
    .await;
    {
        let got = rx.got.lock().unwrap();
        let (h, b) = &got[0];
        assert!(verify_standard(&old, h, b), "old secret, in the overlap");
        assert!(verify_standard(&new, h, b), "new secret");
    }
    s.clock.advance_secs(3_601);
    send().await;
    eventually("the second test event", || async {
        (rx.got.lock().unwrap().len() == 2).then_some(())
    })
    .await;
    let got = rx.got.lock().unwrap().clone();
    let (h, b) = &got[1];
    assert!(!verify_standard(&old, h, b), "old secret, past the overlap");
    assert!(verify_standard(&new, h, b));
    s.stop().await;
}

/// RetryDelivery makes a failed attempt due at once (no clock step), and
/// the retry keeps the event's webhook-id.
async fn a_delivery_is_retried_on_request(backend: Backend) {
    let s = insecure_server(backend).await;
    let (rx, addr) = receiver(1).await;
    let (endpoint, _) = create(&s, create_request(&format!("http://{addr}/hook"))).await;
    let failed = first_attempt(&s, &endpoint.id).await;
    assert_eq!(failed.status, pb::DeliveryStatus::Pending as i32);
    assert_eq!(failed.last_http_status, 500);
    assert_eq!(failed.response_body, "try later");
    assert!(failed.next_attempt_at.is_some());
    hooks(&s)
        .retry_delivery(s.admin(pb::RetryDeliveryRequest {
            id: failed.id.clone(),
        }))
        .await
        .unwrap();
    let done = eventually("the retried delivery", || async {
        deliveries(&s, &endpoint.id)
            .await
            .into_iter()
            .find(|d| d.status == pb::DeliveryStatus::Succeeded as i32)
    })
    .await;
    assert_eq!(done.attempts, 2);
    let got = rx.got.lock().unwrap().clone();
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].0.get("webhook-id"), got[1].0.get("webhook-id"));
    s.stop().await;
}

/// A disabled endpoint's pending deliveries wait: due or not, nothing is
/// sent and no attempt is spent until the endpoint is enabled again.
async fn a_disabled_endpoint_holds_its_deliveries(backend: Backend) {
    let s = insecure_server(backend).await;
    let (rx, addr) = receiver(1).await;
    let (endpoint, _) = create(&s, create_request(&format!("http://{addr}/hook"))).await;
    let failed = first_attempt(&s, &endpoint.id).await;
    let enabled = |on: bool| pb::UpdateEndpointRequest {
        id: endpoint.id.clone(),
        enabled: Some(on),
        ..Default::default()
    };
    hooks(&s)
        .update_endpoint(s.admin(enabled(false)))
        .await
        .unwrap();
    hooks(&s)
        .retry_delivery(s.admin(pb::RetryDeliveryRequest {
            id: failed.id.clone(),
        }))
        .await
        .unwrap();
    // Many polls of the worker (every 20 ms) pass with the delivery due.
    s.clock.advance_secs(60);
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(
        rx.got.lock().unwrap().len(),
        1,
        "nothing sent while disabled"
    );
    let held = deliveries(&s, &endpoint.id).await;
    assert_eq!(held.len(), 1);
    assert_eq!(held[0].attempts, 1, "no attempt spent while disabled");
    assert_eq!(held[0].status, pb::DeliveryStatus::Pending as i32);
    hooks(&s)
        .update_endpoint(s.admin(enabled(true)))
        .await
        .unwrap();
    let done = eventually("the delivery after re-enabling", || async {
        deliveries(&s, &endpoint.id)
            .await
            .into_iter()
            .find(|d| d.status == pb::DeliveryStatus::Succeeded as i32)
    })
    .await;
    assert_eq!(done.attempts, 2);
    s.stop().await;
}

/// A secret that does not open (here: one endpoint's ciphertext moved onto
/// another's row) never lets a delivery go out unsigned: the attempt fails
/// before anything is sent, says why, and is retried like any failure.
async fn nothing_is_sent_unsigned(backend: Backend) {
    use sea_orm::{ConnectionTrait, Database};

    let s = insecure_server(backend).await;
    let (rx, addr) = receiver(0).await;
    let (a, _) = create(&s, create_request(&format!("http://{addr}/a"))).await;
    let (b, _) = create(&s, create_request(&format!("http://{addr}/b"))).await;
    let sql = Database::connect(&s.db.url).await.unwrap();
    sql.execute_unprepared(&format!(
        "UPDATE webhook_secrets SET sealed = \
         (SELECT sealed FROM webhook_secrets WHERE endpoint_id = '{}') \
         WHERE endpoint_id = '{}'",
        b.id, a.id
    ))
    .await
    .unwrap();
    sql.close().await.unwrap();
    let failed = first_attempt(&s, &a.id).await;
    assert_eq!(failed.status, pb::DeliveryStatus::Pending as i32);
    assert!(
        failed.last_error.contains("signing secret"),
        "{}",
        failed.last_error
    );
    assert!(rx.got.lock().unwrap().is_empty(), "nothing was sent");
    s.stop().await;
}

/// ListEndpoints pages by id and narrows to an account; DeleteEndpoint
/// removes the endpoint with its deliveries.
async fn endpoints_are_listed_paged_and_deleted(backend: Backend) {
    let s = insecure_server(backend).await;
    let account = s.account("GO").await;
    let mut ids = Vec::new();
    for account_id in [account.id.as_str(), "", account.id.as_str()] {
        let (e, _) = create(
            &s,
            pb::CreateEndpointRequest {
                account_id: account_id.into(),
                ..create_request("http://127.0.0.1:9/hook")
            },
        )
        .await;
        ids.push(e.id);
    }
    let mut c = hooks(&s);
    let first = c
        .list_endpoints(s.admin(pb::ListEndpointsRequest {
            page_size: 2,
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.endpoints.len(), 2);
    assert!(!first.next_page_token.is_empty());
    let second = c
        .list_endpoints(s.admin(pb::ListEndpointsRequest {
            page_size: 2,
            page_token: first.next_page_token.clone(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(second.endpoints.len(), 1);
    assert!(second.next_page_token.is_empty());
    let mut all: Vec<String> = first
        .endpoints
        .iter()
        .chain(&second.endpoints)
        .map(|e| e.id.clone())
        .collect();
    let mut expected = ids.clone();
    expected.sort();
    all.sort();
    assert_eq!(all, expected);
    let theirs = c
        .list_endpoints(s.admin(pb::ListEndpointsRequest {
            account_id: account.id.clone(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(theirs.endpoints.len(), 2);
    assert!(theirs.endpoints.iter().all(|e| e.account_id == account.id));
    let err = c
        .list_endpoints(s.admin(pb::ListEndpointsRequest {
            page_token: "garbage".into(),
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert_field(&err, "page_token");

    c.send_test_event(s.admin(pb::SendTestEventRequest {
        endpoint_id: ids[1].clone(),
    }))
    .await
    .unwrap();
    c.delete_endpoint(s.admin(pb::DeleteEndpointRequest { id: ids[1].clone() }))
        .await
        .unwrap();
    let err = c
        .get_endpoint(s.admin(pb::GetEndpointRequest { id: ids[1].clone() }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let err = c
        .delete_endpoint(s.admin(pb::DeleteEndpointRequest { id: ids[1].clone() }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let left = c
        .list_endpoints(s.admin(pb::ListEndpointsRequest::default()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(left.endpoints.len(), 2);
    s.stop().await;
}

/// An endpoint whose deliveries have failed for five days is disabled, says
/// why, and the `endpoint.disabled` event goes, signed, to the endpoints
/// that subscribe to it.
async fn an_endpoint_failing_for_five_days_is_disabled_and_announced(backend: Backend) {
    let s = insecure_server(backend).await;
    let (_, failing_addr) = receiver(usize::MAX).await;
    let (watch_rx, watch_addr) = receiver(0).await;
    let (failing, _) = create(&s, create_request(&format!("http://{failing_addr}/hook"))).await;
    let (_, watch_secret) = create(
        &s,
        pb::CreateEndpointRequest {
            event_types: vec!["endpoint.disabled".into()],
            ..create_request(&format!("http://{watch_addr}/hook"))
        },
    )
    .await;
    let failed = first_attempt(&s, &failing.id).await;
    assert_eq!(failed.status, pb::DeliveryStatus::Pending as i32);
    // The attempt and the endpoint's failure are two commits: wait for both.
    let after_one = eventually("the failure noted on the endpoint", || async {
        let e = get(&s, &failing.id).await;
        e.failing_since.is_some().then_some(e)
    })
    .await;
    assert!(after_one.enabled, "one failure does not disable");

    // Past the five days (and the first retry's jittered 5 s): the next
    // attempt fails too, and that one disables the endpoint.
    s.clock.advance_secs(5 * 86_400 + 10);
    let disabled = eventually("the endpoint disabled", || async {
        let e = get(&s, &failing.id).await;
        (!e.enabled).then_some(e)
    })
    .await;
    assert!(!disabled.disabled_reason.is_empty());
    let (h, b) = eventually("the endpoint.disabled event", || async {
        watch_rx.got.lock().unwrap().first().cloned()
    })
    .await;
    assert!(verify_standard(&watch_secret, &h, &b));
    let event: serde_json::Value = serde_json::from_str(&b).unwrap();
    assert_eq!(event["type"], "endpoint.disabled");
    assert_eq!(event["data"]["id"], failing.id.as_str());
    assert_eq!(watch_rx.got.lock().unwrap().len(), 1, "announced once");
    s.stop().await;
}

backend_tests!(
    webhook_rpcs_need_their_admin_permissions,
    bad_webhook_input_names_the_field,
    endpoints_are_updated_disabled_and_reenabled,
    a_test_event_is_delivered_to_its_endpoint_alone,
    rotation_signs_with_both_secrets_for_the_overlap,
    a_delivery_is_retried_on_request,
    a_disabled_endpoint_holds_its_deliveries,
    nothing_is_sent_unsigned,
    endpoints_are_listed_paged_and_deleted,
    an_endpoint_failing_for_five_days_is_disabled_and_announced,
);
