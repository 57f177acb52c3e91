//! GCRA with a stepped clock: exact counts at the boundary, burst, refill.

use std::sync::Arc;

use super::*;
use crate::domain::model::{KeyKind, KeyRecord, Mode, StoredKeyStatus};
use crate::ports::ManualClock;

const T0: i64 = 1_700_000_000_000;

fn limiter() -> (Arc<ManualClock>, Limiter) {
    let clock = Arc::new(ManualClock::new(T0));
    (clock.clone(), Limiter::new(clock))
}

fn policy(requests: u64, per_seconds: u64, burst: u64) -> Quota {
    RatePolicy::new(requests, per_seconds, burst)
        .unwrap()
        .quota()
}

fn allowed(l: &Limiter, id: &str, q: &Quota, n: usize) -> usize {
    (0..n).filter(|_| l.take(Space::Key, id, q).allowed).count()
}

#[test]
fn a_fresh_limit_allows_exactly_its_burst_then_refuses() {
    let (_, l) = limiter();
    let q = policy(3, 60, 0);
    for remaining in [2, 1, 0] {
        let s = l.take(Space::Key, "k", &q);
        assert!(s.allowed);
        assert_eq!((s.limit, s.remaining), (3, remaining));
    }
    let s = l.take(Space::Key, "k", &q);
    assert!(!s.allowed);
    assert_eq!(s.remaining, 0);
    // One request's worth (20 s) has to drain before the next is allowed.
    assert_eq!(s.retry_after_seconds, 20);
    assert_eq!(s.reset_seconds, 60);
}

#[test]
fn refill_is_smooth_and_exact_at_the_boundary() {
    let (clock, l) = limiter();
    let q = policy(3, 60, 0);
    assert_eq!(allowed(&l, "k", &q, 3), 3);
    clock.advance_secs(19);
    assert!(!l.take(Space::Key, "k", &q).allowed, "19 s: not yet");
    clock.advance_secs(1);
    let s = l.take(Space::Key, "k", &q);
    assert!(s.allowed, "20 s: exactly one interval");
    assert_eq!(s.remaining, 0);
    assert!(!l.take(Space::Key, "k", &q).allowed, "and only one");
    // A refused request consumed nothing: another interval gives one more.
    clock.advance_secs(20);
    assert_eq!(allowed(&l, "k", &q, 5), 1);
}

/// A fixed window lets 2× its limit through around a boundary; GCRA does not.
#[test]
fn no_window_ever_sees_twice_the_limit() {
    let (clock, l) = limiter();
    let q = policy(60, 60, 0);
    // Idle long enough to be full, spend it all just before "the minute".
    clock.advance_secs(120);
    let first = allowed(&l, "k", &q, 200);
    assert_eq!(first, 60);
    clock.advance_secs(1);
    let second = allowed(&l, "k", &q, 200);
    assert_eq!(second, 1, "one second later, one second's worth");
    // Over any full minute after the burst: at most the rate.
    let mut total = 0;
    for _ in 0..60 {
        clock.advance_secs(1);
        total += allowed(&l, "k", &q, 10);
    }
    assert_eq!(total, 60);
}

#[test]
fn a_smaller_burst_caps_what_comes_at_once() {
    let (clock, l) = limiter();
    let q = policy(100, 1, 10);
    assert_eq!(allowed(&l, "k", &q, 100), 10);
    clock.advance_secs(1);
    // A full second refills the burst, no more: the burst caps it.
    assert_eq!(allowed(&l, "k", &q, 100), 10);
}

#[test]
fn counters_are_separate_per_thing_and_per_space() {
    let (_, l) = limiter();
    let q = policy(1, 60, 0);
    assert!(l.take(Space::Key, "a", &q).allowed);
    assert!(!l.take(Space::Key, "a", &q).allowed);
    assert!(l.take(Space::Key, "b", &q).allowed);
    assert!(l.take(Space::Descriptor, "a", &q).allowed);
}

#[test]
fn peek_consumes_nothing() {
    let (_, l) = limiter();
    let q = policy(2, 60, 0);
    for _ in 0..5 {
        assert_eq!(l.peek(Space::Key, "k", &q).remaining, 2);
    }
    assert_eq!(allowed(&l, "k", &q, 5), 2);
    let s = l.peek(Space::Key, "k", &q);
    assert_eq!((s.remaining, s.retry_after_seconds), (0, 30));
}

#[test]
fn a_cost_of_several_hits_counts_them_all() {
    let (_, l) = limiter();
    let q = policy(10, 60, 0);
    assert!(l.take_n(Space::Descriptor, "d", &q, 7).allowed);
    assert!(!l.take_n(Space::Descriptor, "d", &q, 4).allowed);
    assert!(l.take_n(Space::Descriptor, "d", &q, 3).allowed);
}

#[test]
fn the_refused_hook_counts_refusals_only() {
    use std::sync::atomic::{AtomicU64, Ordering};
    let (clock, _) = limiter();
    let refused = Arc::new(AtomicU64::new(0));
    let r = refused.clone();
    let l = Limiter::new(clock).with_limited_hook(Arc::new(move |_| {
        r.fetch_add(1, Ordering::Relaxed);
    }));
    let q = policy(2, 60, 0);
    allowed(&l, "k", &q, 5);
    assert_eq!(refused.load(Ordering::Relaxed), 3);
}

#[test]
fn idle_cells_are_swept_when_a_shard_fills() {
    let (clock, l) = limiter();
    let q = policy(1, 1, 0);
    for i in 0..(SHARDS * SWEEP_AT) {
        l.take(Space::FailedAuth, &i.to_string(), &q);
    }
    let total = |l: &Limiter| -> usize { l.shards.iter().map(|s| s.read().unwrap().len()).sum() };
    let full = total(&l);
    assert_eq!(
        full,
        SHARDS * SWEEP_AT,
        "nothing is idle yet: nothing swept"
    );
    clock.advance_secs(2);
    // Every cell is idle now; the next shard to fill up sweeps itself.
    let mut swept = false;
    for i in 0..(SHARDS * SWEEP_AT / 8) {
        l.take(Space::Key, &format!("new{i}"), &q);
        if total(&l) < full {
            swept = true;
            break;
        }
    }
    assert!(swept);
}

#[test]
fn policies_parse_and_refuse_absurd_values() {
    assert_eq!(
        RatePolicy::parse("1200/min").unwrap(),
        Some(RatePolicy::new(1200, 60, 0).unwrap())
    );
    assert_eq!(RatePolicy::parse("20/s").unwrap().unwrap().per_seconds, 1);
    assert_eq!(RatePolicy::parse("5/h").unwrap().unwrap().per_seconds, 3600);
    assert_eq!(
        RatePolicy::parse("5/day").unwrap().unwrap().per_seconds,
        86_400
    );
    assert_eq!(RatePolicy::parse("unlimited").unwrap(), None);
    for bad in [
        "",
        "1200",
        "1200/fortnight",
        "-1/s",
        "1.5/s",
        "0/min",
        "/min",
        "99999999999/s",
    ] {
        assert!(RatePolicy::parse(bad).is_err(), "{bad}");
    }
    assert_eq!(RatePolicy::new(0, 60, 0), Err(PolicyError::Requests));
    assert_eq!(RatePolicy::new(1, 0, 0), Err(PolicyError::Window));
    assert_eq!(
        RatePolicy::new(1, MAX_PER_SECONDS + 1, 0),
        Err(PolicyError::Window)
    );
    assert_eq!(
        RatePolicy::new(1, 60, MAX_REQUESTS + 1),
        Err(PolicyError::Burst)
    );
}

fn key(mode: Mode, own: Option<RatePolicy>) -> KeyRecord {
    KeyRecord {
        id: "key_1".into(),
        account_id: "acct_1".into(),
        mode,
        kind: KeyKind::Secret,
        name: String::new(),
        key_hash: [0; 32],
        masked: String::new(),
        scopes: vec![],
        role: None,
        allowed_cidrs: vec![],
        allowed_origins: vec![],
        status: StoredKeyStatus::Active,
        expires_at: 0,
        created_at: 0,
        updated_at: 0,
        last_used_at: None,
        predecessor_id: None,
        successor_id: None,
        overlap_ends_at: None,
        version: 1,
        signing_secret_id: None,
        rate_limit: own,
        suspension_cause: None,
    }
}

#[test]
fn key_beats_plan_beats_default_and_test_mode_is_unlimited() {
    let p = |s: &str| RatePolicy::parse(s).unwrap();
    let plans = PlanLimits::new(
        [
            (
                "GO",
                PlanRate {
                    live: Some(p("600/min")),
                    test: None,
                },
            ),
            (
                "FREE",
                PlanRate {
                    live: Some(None),
                    test: None,
                },
            ),
            (
                "QA",
                PlanRate {
                    live: None,
                    test: p("10/s"),
                },
            ),
        ],
        p("1200/min"),
    );
    let limit = |mode, own, plan| plans.for_key(&key(mode, own), plan).map(|q| q.policy);
    assert_eq!(limit(Mode::Live, None, "GO"), p("600/min"));
    assert_eq!(
        limit(Mode::Live, None, "FREE"),
        None,
        "unlimited beats the default"
    );
    assert_eq!(limit(Mode::Live, None, "QA"), p("1200/min"), "the default");
    assert_eq!(limit(Mode::Live, None, "unknown"), p("1200/min"));
    assert_eq!(limit(Mode::Test, None, "GO"), None, "test mode: unlimited");
    assert_eq!(limit(Mode::Test, None, "QA"), p("10/s"));
    assert_eq!(
        limit(Mode::Test, p("5/s"), "GO"),
        p("5/s"),
        "the key's own wins"
    );
    assert_eq!(limit(Mode::Live, p("5/s"), "FREE"), p("5/s"));
}

#[test]
fn descriptors_match_by_keys_in_order_and_fixed_values() {
    let rules = Descriptors::new(vec![
        DescriptorRule::new(
            "api",
            [("remote_address", None), ("path", Some("/login"))],
            RatePolicy::new(3, 60, 0).unwrap(),
        ),
        DescriptorRule::new("api", [("tenant", None)], RatePolicy::new(9, 1, 0).unwrap()),
    ]);
    let (_, counter) = rules
        .find("api", &[("remote_address", "10.0.0.7"), ("path", "/login")])
        .unwrap();
    let (_, other) = rules
        .find("api", &[("remote_address", "10.0.0.8"), ("path", "/login")])
        .unwrap();
    assert_ne!(counter, other, "per distinct value");
    assert!(
        rules
            .find("api", &[("remote_address", "10.0.0.7"), ("path", "/x")])
            .is_none()
    );
    assert!(
        rules
            .find("api", &[("path", "/login"), ("remote_address", "1")])
            .is_none()
    );
    assert!(rules.find("web", &[("tenant", "t")]).is_none());
    assert_eq!(
        rules
            .find("api", &[("tenant", "t")])
            .unwrap()
            .0
            .quota
            .policy
            .requests,
        9
    );
}

#[test]
fn failed_authentications_cool_an_address_down_and_only_that_address() {
    let (clock, l) = limiter();
    let budget = FailureBudget {
        policy: RatePolicy::new(3, 60, 0).unwrap(),
        cooldown_seconds: 300,
    };
    let bad: std::net::IpAddr = "192.0.2.1".parse().unwrap();
    let owner: std::net::IpAddr = "198.51.100.9".parse().unwrap();
    for _ in 0..2 {
        l.failed(&budget, bad);
        assert!(l.failures_blocked(&budget, bad).is_none());
    }
    l.failed(&budget, bad);
    let s = l
        .failures_blocked(&budget, bad)
        .expect("the third spends it");
    assert!(s.retry_after_seconds > 300, "{s:?}");
    assert!(l.failures_blocked(&budget, owner).is_none());
    clock.advance_secs(299);
    assert!(
        l.failures_blocked(&budget, bad).is_some(),
        "still cooling down"
    );
    clock.advance_secs(21);
    assert!(l.failures_blocked(&budget, bad).is_none(), "cool-down over");
}

/// Each thread keeps its own handle on a cell, but every handle is the same
/// cell: threads together never get more than the limit.
#[test]
fn threads_share_one_count() {
    let (_, l) = limiter();
    let l = Arc::new(l);
    let q = policy(50, 60, 0);
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let l = l.clone();
            std::thread::spawn(move || allowed(&l, "k", &q, 40))
        })
        .collect();
    let total: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
    assert_eq!(total, 50);
    // And this thread, which never counted "k", sees the same state.
    assert_eq!(l.peek(Space::Key, "k", &q).remaining, 0);
}

#[test]
fn a_global_limiter_enforces_its_share_until_the_store_answers() {
    let (_clock, l) = limiter();
    let l = l.with_global(2);
    let q = policy(10, 60, 0);
    // Not connected yet: 10 ÷ 2 replicas.
    assert_eq!(allowed(&l, "k", &q, 20), 5);
    assert!(l.set_connected(true));
    assert!(!l.set_connected(true));
    assert_eq!(allowed(&l, "k2", &q, 20), 10);
    // Descriptor and key advances are pending; brute-force budgets are not.
    l.take(Space::FailedAuth, "10.0.0.1", &q);
    let mut batch = l.take_pending();
    batch.sort_by(|a, b| a.id.cmp(&b.id));
    assert_eq!(batch.len(), 2, "{batch:?}");
    assert_eq!(batch[0].advance, 5 * q.interval);
    assert_eq!(batch[1].advance, 10 * q.interval);
    assert!(l.take_pending().is_empty(), "taken once");
    // A failed batch gives its advances back.
    l.restore_pending(batch);
    assert_eq!(l.take_pending().len(), 2);
}

#[test]
fn the_global_state_moves_the_local_counter() {
    let (clock, l) = limiter();
    let l = l.with_global(2);
    l.set_connected(true);
    let q = policy(10, 60, 0);
    assert_eq!(allowed(&l, "k", &q, 3), 3);
    let batch = l.take_pending();
    // Another replica spent the other 7: the global TAT is 10 intervals on.
    let now = nanos(clock.now());
    l.apply_global(Space::Key, "k", now + 10 * q.interval);
    assert_eq!(batch.len(), 1);
    assert_eq!(allowed(&l, "k", &q, 5), 0);
    // Counted locally after the batch was taken: kept on top of the global state.
    let (_clock2, l2) = limiter();
    let l2 = l2.with_global(2);
    l2.set_connected(true);
    assert_eq!(allowed(&l2, "k", &q, 2), 2);
    let _ = l2.take_pending();
    assert_eq!(allowed(&l2, "k", &q, 1), 1);
    l2.apply_global(Space::Key, "k", nanos(clock.now()) + 8 * q.interval);
    assert_eq!(allowed(&l2, "k", &q, 5), 1, "8 global + 1 local of 10");
}
