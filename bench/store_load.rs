//! Load driver for `bench/scale.sh` and `bench/replicas.sh` (a benchmark,
//! not a test). Speaks gRPC with the generated tonic clients.
//!
//!   store_load scale ADDR KEYS_FILE SERVER_PID RATE RATE_SECONDS CONCURRENCY
//!   store_load propagation ADDR_A ADDR_B ADMIN_TOKEN ACCOUNT_ID ROUNDS LOAD_KEYS
//!
//! `scale` runs on LATCHKEY_BENCH_DRIVER_THREADS threads (default 2; 1 is
//! tokio's `current_thread`) and spreads its calls over
//! LATCHKEY_BENCH_CONNECTIONS connections (default 1). The driver shares
//! the machine's two cores with the server and PostgreSQL, and what it
//! takes of them shows in the server's figures: the README's "Many keys"
//! gives both shapes side by side. The defaults are the driver every
//! figure there came from.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![allow(clippy::disallowed_methods)] // a benchmark reads the wall clock

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use latchkey::pb;
use pb::check_service_client::CheckServiceClient;
use pb::key_service_client::KeyServiceClient;
use tonic::transport::Channel;

async fn channel(addr: &str) -> Channel {
    Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

fn admin<T>(token: &str, msg: T) -> tonic::Request<T> {
    let mut req = tonic::Request::new(msg);
    req.metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    req
}

fn check_request(secret: &str) -> pb::CheckRequest {
    pb::CheckRequest {
        credential: secret.to_owned(),
        permission: "feedback.read".into(),
        ..Default::default()
    }
}

/// p50, p99, max in milliseconds.
fn percentiles(mut samples: Vec<Duration>) -> (f64, f64, f64) {
    if samples.is_empty() {
        return (0.0, 0.0, 0.0);
    }
    samples.sort_unstable();
    let at = |q: f64| {
        let i = ((samples.len() as f64 - 1.0) * q).round() as usize;
        samples[i].as_secs_f64() * 1000.0
    };
    (at(0.50), at(0.99), at(1.0))
}

fn rss_bytes(pid: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kb * 1024
}

/// Checks every secret once, `concurrency` at a time; latencies and wall time.
async fn closed_loop(
    clients: &[CheckServiceClient<Channel>],
    secrets: Arc<Vec<String>>,
    concurrency: usize,
) -> (Vec<Duration>, Duration, usize) {
    let next = Arc::new(AtomicUsize::new(0));
    let denied = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..concurrency)
        .map(|w| {
            let (mut client, secrets, next, denied) = (
                clients[w % clients.len()].clone(),
                secrets.clone(),
                next.clone(),
                denied.clone(),
            );
            tokio::spawn(async move {
                let mut lat = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(secret) = secrets.get(i) else { break };
                    let t = Instant::now();
                    let ok = client
                        .check(check_request(secret))
                        .await
                        .is_ok_and(|r| r.get_ref().allowed);
                    lat.push(t.elapsed());
                    if !ok {
                        denied.fetch_add(1, Ordering::Relaxed);
                    }
                }
                lat
            })
        })
        .collect();
    let mut all = Vec::new();
    for w in workers {
        all.extend(w.await.unwrap());
    }
    (all, started.elapsed(), denied.load(Ordering::Relaxed))
}

/// One Check per secret at `rate` per second (open loop): latencies.
async fn open_loop(
    clients: &[CheckServiceClient<Channel>],
    secrets: &[String],
    rate: u64,
) -> (Vec<Duration>, usize) {
    let mut ticker = tokio::time::interval(Duration::from_nanos(1_000_000_000 / rate.max(1)));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut tasks = Vec::with_capacity(secrets.len());
    for (i, secret) in secrets.iter().enumerate() {
        ticker.tick().await;
        let (mut client, secret) = (clients[i % clients.len()].clone(), secret.clone());
        tasks.push(tokio::spawn(async move {
            let t = Instant::now();
            let ok = client
                .check(check_request(&secret))
                .await
                .is_ok_and(|r| r.get_ref().allowed);
            (t.elapsed(), ok)
        }));
    }
    let mut lat = Vec::new();
    let mut denied = 0;
    for t in tasks {
        let (d, ok) = t.await.unwrap();
        lat.push(d);
        denied += usize::from(!ok);
    }
    (lat, denied)
}

fn row(name: &str, lat: Vec<Duration>, wall: Duration, denied: usize) {
    let n = lat.len();
    let (p50, p99, max) = percentiles(lat);
    println!(
        "| {name} | {n} | {:.0} | {p50:.2} ms | {p99:.2} ms | {max:.2} ms | {denied} |",
        n as f64 / wall.as_secs_f64()
    );
}

async fn scale(args: &[String]) {
    let [addr, file, pid, rate, rate_secs, concurrency] = args else {
        panic!("scale ADDR KEYS_FILE SERVER_PID RATE RATE_SECONDS CONCURRENCY")
    };
    let secrets: Vec<String> = std::fs::read_to_string(file)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    let (rate, rate_secs, concurrency): (u64, u64, usize) = (
        rate.parse().unwrap(),
        rate_secs.parse().unwrap(),
        concurrency.parse().unwrap(),
    );
    let mut clients = Vec::new();
    for _ in 0..env_number("LATCHKEY_BENCH_CONNECTIONS", 1).max(1) {
        clients.push(CheckServiceClient::new(channel(addr).await));
    }
    // The first second of cold lookups, not measured: a server just started
    // opens its pool's connections and prepares its statements then, and
    // those first calls (up to ~130 ms) are the server's start, not what a
    // cold key costs. They are cold lookups all the same, of keys that the
    // measured phases do not use again.
    let warmup = usize::try_from(rate).unwrap().min(secrets.len() / 10);
    let (_, denied) = open_loop(&clients, &secrets[..warmup], rate).await;
    assert_eq!(denied, 0, "warm-up lookups denied");
    let secrets = &secrets[warmup..];
    let rss_before = rss_bytes(pid);
    let paced = usize::try_from(rate * rate_secs)
        .unwrap()
        .min(secrets.len() / 2);
    println!("| phase | lookups | per s | p50 | p99 | max | denied |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    let started = Instant::now();
    let (lat, denied) = open_loop(&clients, &secrets[..paced], rate).await;
    row(&format!("cold, {rate}/s"), lat, started.elapsed(), denied);
    // Two halves, with the RSS read between them: the slope over the second
    // half is what one more cached key costs, without the fixed costs.
    let half = paced + (secrets.len() - paced) / 2;
    let (mut lat, mut wall, mut denied) = closed_loop(
        &clients,
        Arc::new(secrets[paced..half].to_vec()),
        concurrency,
    )
    .await;
    let rss_half = rss_bytes(pid);
    let (lat2, wall2, denied2) =
        closed_loop(&clients, Arc::new(secrets[half..].to_vec()), concurrency).await;
    let rss_cached = rss_bytes(pid);
    let slope = rss_cached.saturating_sub(rss_half) as f64 / (secrets.len() - half).max(1) as f64;
    lat.extend(lat2);
    wall += wall2;
    denied += denied2;
    row(&format!("cold, {concurrency} in flight"), lat, wall, denied);
    let all = Arc::new(secrets.to_vec());
    let (lat, wall, denied) = closed_loop(&clients, all, concurrency).await;
    row(&format!("warm, {concurrency} in flight"), lat, wall, denied);
    let per_key = (rss_cached.saturating_sub(rss_before)) as f64 / secrets.len() as f64;
    println!();
    println!(
        "rss_before={rss_before} rss_cached={rss_cached} keys={} bytes_per_key={slope:.0} \
         (slope over the second half; average with fixed costs {per_key:.0})",
        secrets.len()
    );
}

async fn propagation(args: &[String]) {
    let [addr_a, addr_b, token, account, rounds, load_keys] = args else {
        panic!("propagation ADDR_A ADDR_B ADMIN_TOKEN ACCOUNT_ID ROUNDS LOAD_KEYS")
    };
    let (rounds, load_keys): (usize, usize) = (rounds.parse().unwrap(), load_keys.parse().unwrap());
    let (a, b) = (channel(addr_a).await, channel(addr_b).await);
    let mut keys_b = KeyServiceClient::new(b);
    let check_a = CheckServiceClient::new(a);
    let create = |keys: &mut KeyServiceClient<Channel>| {
        let mut keys = keys.clone();
        let req = admin(
            token,
            pb::CreateKeyRequest {
                account_id: account.clone(),
                mode: pb::Mode::Test.into(),
                kind: pb::KeyKind::Secret.into(),
                name: "bench".into(),
                scopes: vec!["feedback.read".into()],
                ..Default::default()
            },
        );
        async move { keys.create_key(req).await.unwrap().into_inner() }
    };
    // Background load on A over many cached keys, so that usage flushes on A
    // write many rows while B mutates keys.
    let mut load = Vec::new();
    for _ in 0..load_keys {
        load.push(create(&mut keys_b).await.secret);
    }
    let load = Arc::new(load);
    let stop = Arc::new(AtomicBool::new(false));
    let mut loaders = Vec::new();
    for w in 0..16 {
        let (mut client, load, stop) = (check_a.clone(), load.clone(), stop.clone());
        loaders.push(tokio::spawn(async move {
            let mut i = w;
            while !stop.load(Ordering::Relaxed) && !load.is_empty() {
                let _ = client.check(check_request(&load[i % load.len()])).await;
                i += 16;
            }
        }));
    }
    let (mut acked, mut from_ack, mut from_request) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        let created = create(&mut keys_b).await;
        let id = created.key.unwrap().id;
        let mut check = check_a.clone();
        assert!(
            check
                .check(check_request(&created.secret))
                .await
                .unwrap()
                .get_ref()
                .allowed
        );
        let sent = Instant::now();
        keys_b
            .revoke_key(admin(token, pb::RevokeKeyRequest { id }))
            .await
            .unwrap();
        let ack = Instant::now();
        loop {
            let r = check.check(check_request(&created.secret)).await.unwrap();
            if !r.get_ref().allowed {
                break;
            }
        }
        let denied = Instant::now();
        acked.push(ack - sent);
        from_ack.push(denied - ack);
        from_request.push(denied - sent);
    }
    stop.store(true, Ordering::Relaxed);
    for l in loaders {
        let _ = l.await;
    }
    println!("| measured | rounds | p50 | p99 | max |");
    println!("|---|---:|---:|---:|---:|");
    for (name, lat) in [
        ("RevokeKey on B, request → acknowledgement", acked),
        ("denied on A, from acknowledgement", from_ack),
        ("denied on A, from request", from_request),
    ] {
        let n = lat.len();
        let (p50, p99, max) = percentiles(lat);
        println!("| {name} | {n} | {p50:.2} ms | {p99:.2} ms | {max:.2} ms |");
    }
}

/// A number from the environment, or `default`.
fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name).map_or(default, |v| {
        v.parse()
            .unwrap_or_else(|_| panic!("{name} must be a number, not {v:?}"))
    })
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let runtime = |threads: usize| {
        let mut builder = if threads <= 1 {
            tokio::runtime::Builder::new_current_thread()
        } else {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(threads);
            b
        };
        builder.enable_all().build().unwrap()
    };
    match args.first().map(String::as_str) {
        Some("scale") => {
            runtime(env_number("LATCHKEY_BENCH_DRIVER_THREADS", 2)).block_on(scale(&args[1..]))
        }
        Some("propagation") => runtime(2).block_on(propagation(&args[1..])),
        _ => panic!("usage: store_load scale … | store_load propagation …"),
    }
}
