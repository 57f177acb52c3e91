use super::*;

struct CheckInput<'a> {
    credential: &'a str,
    permission: &'a str,
}

fn denied(reason: Reason) -> Reason {
    reason
}

fn note(
    rec: &OutcomeRecorder,
    input: &CheckInput<'_>,
    reason: Reason,
    ip: Option<std::net::IpAddr>,
    at: Millis,
) {
    rec.record(None, input.credential, input.permission, reason, ip, at);
}

#[test]
fn a_full_ring_drops_and_counts_and_never_grows() {
    let rec = OutcomeRecorder::new(16);
    for i in 0..100 {
        let cred = format!("lk_test_sk_unknown{i}");
        let input = CheckInput {
            credential: &cred,
            permission: "feedback.read",
        };
        note(&rec, &input, denied(Reason::CredentialUnknown), None, 0);
    }
    assert_eq!(rec.depth(), 16);
    assert_eq!(rec.take_dropped(), 84);
    assert_eq!(rec.take_dropped(), 0);
    assert_eq!(rec.dropped_total(), 84);
    let first = rec.pop().unwrap();
    assert_eq!(first.permission.as_str(), "feedback.read");
    let hash = crate::crypto::sha256(b"lk_test_sk_unknown0");
    assert_eq!(
        first.credential_prefix,
        Some([hash[0], hash[1], hash[2], hash[3]])
    );
}

#[test]
fn aggregates_denials_per_credential_reason_address_and_minute() {
    let rec = OutcomeRecorder::new(64);
    let ip: std::net::IpAddr = "203.0.113.7".parse().unwrap();
    let input = CheckInput {
        credential: "lk_test_sk_same",
        permission: "",
    };
    for at in [1_000, 2_000, 61_000] {
        note(
            &rec,
            &input,
            denied(Reason::CredentialUnknown),
            Some(ip),
            at,
        );
    }
    let mut agg = Aggregator::new(1000);
    while let Some(o) = rec.pop() {
        assert!(agg.add(&o, None));
    }
    // The second minute is still open at 61 s.
    let closed = agg.take(61_500, false);
    assert_eq!(closed.denials.len(), 1);
    assert_eq!(closed.denials[0].count, 2);
    assert_eq!(closed.denials[0].target_type, "credential");
    assert_eq!(
        closed.denials[0].target_id.as_deref().map(str::len),
        Some(8)
    );
    let rest = agg.take(61_500, true);
    assert_eq!(rest.denials.len(), 1);
    assert_eq!(rest.denials[0].minute, 60_000);
}

#[test]
fn aggregation_is_bounded() {
    let rec = OutcomeRecorder::new(4096);
    let mut agg = Aggregator::new(100);
    for i in 0..1000 {
        let cred = format!("lk_test_sk_flood{i}");
        let input = CheckInput {
            credential: &cred,
            permission: "",
        };
        note(&rec, &input, denied(Reason::CredentialUnknown), None, 0);
    }
    let mut refused = 0;
    while let Some(o) = rec.pop() {
        if !agg.add(&o, None) {
            refused += 1;
        }
    }
    assert!(agg.groups() <= 100);
    assert!(refused >= 900);
}
