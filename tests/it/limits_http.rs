//! Limits that protect the process (issue 17 item 6), driven with raw
//! sockets so that the client can misbehave as no well-made library would:
//! too many HTTP/2 streams at once, headers trickled a line at a time, a
//! stalled body, a body over the cap. Each abusive connection is cut off
//! while an ordinary client on another connection is still served.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::common::{Backend, TestServer};
use crate::server::http_get;

const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const GOAWAY: u8 = 0x7;
const END_HEADERS: u8 = 0x4;
const ACK: u8 = 0x1;
const REFUSED_STREAM: u32 = 0x7;
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).unwrap().to_be_bytes();
    let mut out = vec![len[1], len[2], len[3], kind, flags];
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// HPACK literal header fields without indexing, new names (RFC 7541 §6.2.2).
fn header_block(fields: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in fields {
        assert!(name.len() < 127 && value.len() < 127);
        out.push(0x00);
        out.push(u8::try_from(name.len()).unwrap());
        out.extend_from_slice(name.as_bytes());
        out.push(u8::try_from(value.len()).unwrap());
        out.extend_from_slice(value.as_bytes());
    }
    out
}

async fn read_frame(conn: &mut TcpStream) -> Option<(u8, u8, u32, Vec<u8>)> {
    let mut head = [0u8; 9];
    conn.read_exact(&mut head).await.ok()?;
    let len = usize::from(head[0]) << 16 | usize::from(head[1]) << 8 | usize::from(head[2]);
    let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
    let mut payload = vec![0u8; len];
    conn.read_exact(&mut payload).await.ok()?;
    Some((head[3], head[4], stream, payload))
}

/// What the server did to a client that opened `streams` requests at once
/// (none of them finished) on one h2c connection.
struct Flood {
    refused: Vec<u32>,
    goaway: bool,
}

async fn flood(addr: SocketAddr, fields: &[(&str, &str)], streams: u32) -> Flood {
    let mut conn = TcpStream::connect(addr).await.unwrap();
    conn.write_all(PREFACE).await.unwrap();
    conn.write_all(&frame(SETTINGS, 0, 0, &[])).await.unwrap();
    // Acknowledge the server's SETTINGS, so its limits are in force.
    loop {
        let (kind, flags, _, _) = read_frame(&mut conn).await.expect("server SETTINGS");
        if kind == SETTINGS && flags & ACK == 0 {
            conn.write_all(&frame(SETTINGS, ACK, 0, &[])).await.unwrap();
            break;
        }
    }
    let block = header_block(fields);
    let mut burst = Vec::new();
    for i in 0..streams {
        // No END_STREAM: each request waits for a body that never comes.
        burst.extend(frame(HEADERS, END_HEADERS, 2 * i + 1, &block));
    }
    // The server may close mid-burst; what it said before is what counts.
    let _ = conn.write_all(&burst).await;
    let mut out = Flood {
        refused: Vec::new(),
        goaway: false,
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, read_frame(&mut conn)).await {
            Ok(Some((RST_STREAM, _, id, payload))) => {
                if u32::from_be_bytes(payload[..4].try_into().unwrap()) == REFUSED_STREAM {
                    out.refused.push(id);
                }
            }
            Ok(Some((GOAWAY, ..))) => {
                out.goaway = true;
                break;
            }
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => break,
        }
    }
    out
}

fn test_server_tweak(c: &mut latchkey::config::Config) {
    c.limits.http_header_timeout_ms = 1000;
    c.limits.http_body_timeout_ms = 1000;
}

/// The public HTTP port: past 100 concurrent streams a client's requests
/// are refused, and a client that keeps opening them is sent GOAWAY; a
/// second client meanwhile gets its answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_port_cuts_off_a_client_that_opens_too_many_streams() {
    let s =
        TestServer::start_with(Backend::Sqlite, |c| c.limits.http_body_timeout_ms = 30_000).await;
    let addr = s.running().http_addr;
    let authority = addr.to_string();
    let fields = [
        (":method", "POST"),
        (":scheme", "http"),
        (":path", "/oauth2/token"),
        (":authority", authority.as_str()),
        ("content-type", "application/x-www-form-urlencoded"),
    ];
    let (flooded, other) = tokio::join!(flood(addr, &fields, 300), async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        http_get(addr, "/healthz").await
    });
    assert_eq!(other.0, 200, "the other client was not served");
    assert!(flooded.goaway, "the flooding client was not sent GOAWAY");
    assert!(!flooded.refused.is_empty(), "no stream was refused");
    // Streams 1, 3, …, 199 (the first 100) fit; only later ones are refused.
    assert!(
        flooded.refused.iter().all(|id| *id > 199),
        "{:?}",
        flooded.refused
    );
    s.stop().await;
}

/// The gRPC port, likewise, at its own limit of 1024 streams.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_port_cuts_off_a_client_that_opens_too_many_streams() {
    let s = TestServer::start(Backend::Sqlite).await;
    let addr = s.running().grpc_addr;
    let authority = addr.to_string();
    let fields = [
        (":method", "POST"),
        (":scheme", "http"),
        (":path", "/grpc.health.v1.Health/Check"),
        (":authority", authority.as_str()),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
    ];
    let flooded = flood(addr, &fields, 1024 + 400).await;
    let status = HealthClient::new(s.channel.clone())
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .status;
    assert_eq!(status, ServingStatus::Serving as i32);
    assert!(flooded.goaway, "the flooding client was not sent GOAWAY");
    assert!(flooded.refused.iter().all(|id| *id > 2 * 1024 - 1));
    assert!(!flooded.refused.is_empty());
    s.stop().await;
}

/// Waits (at most `within`) for the server to close `conn`, writing `drip`
/// every 200 ms meanwhile; returns how long it took.
async fn closed_while_dripping(conn: &mut TcpStream, drip: &[u8], within: Duration) -> Duration {
    let started = Instant::now();
    let mut buf = [0u8; 1024];
    while started.elapsed() < within {
        if !drip.is_empty() && conn.write_all(drip).await.is_err() {
            return started.elapsed();
        }
        match tokio::time::timeout(Duration::from_millis(200), conn.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => return started.elapsed(),
            // A 408 from hyper is a close too: it ends the connection after.
            Ok(Ok(_)) => {}
            Err(_) => {}
        }
    }
    panic!("the server kept a slow client for {within:?}");
}

/// A client that trickles its headers, or sends nothing at all, is
/// disconnected after the header timeout; another client is served meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_port_disconnects_clients_that_trickle_headers() {
    let s = TestServer::start_with(Backend::Sqlite, test_server_tweak).await;
    let addr = s.running().http_addr;

    let mut trickler = TcpStream::connect(addr).await.unwrap();
    trickler
        .write_all(format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\n").as_bytes())
        .await
        .unwrap();
    let mut silent = TcpStream::connect(addr).await.unwrap();
    let mut h2_silent = TcpStream::connect(addr).await.unwrap();
    h2_silent.write_all(PREFACE).await.unwrap();

    let (trickled, quiet, h2_quiet, other) = tokio::join!(
        closed_while_dripping(&mut trickler, b"X-Slow: 1\r\n", Duration::from_secs(5)),
        closed_while_dripping(&mut silent, b"", Duration::from_secs(5)),
        closed_while_dripping(&mut h2_silent, b"", Duration::from_secs(5)),
        async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            http_get(addr, "/healthz").await
        }
    );
    assert_eq!(other.0, 200);
    for took in [trickled, quiet, h2_quiet] {
        assert!(
            took >= Duration::from_millis(800),
            "closed too early: {took:?}"
        );
    }
    s.stop().await;
}

/// Sends `head` (and `body`) on a fresh connection; the status it gets.
async fn raw_status(addr: SocketAddr, head: String, body: &[u8]) -> u16 {
    let mut conn = TcpStream::connect(addr).await.unwrap();
    conn.write_all(head.as_bytes()).await.unwrap();
    // The server may answer (and close) before it has read all of it.
    let _ = conn.write_all(body).await;
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), conn.read_to_end(&mut buf)).await;
    let text = String::from_utf8_lossy(&buf);
    text.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {text:?}"))
}

/// Bodies over 64 KiB are refused with 413, whether declared by
/// `Content-Length` or sent chunked; a body that stalls gets 408; a small
/// body still reaches its handler.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_port_caps_and_times_request_bodies() {
    let s = TestServer::start_with(Backend::Sqlite, test_server_tweak).await;
    let addr = s.running().http_addr;
    let post = |extra: &str| {
        format!(
            "POST /oauth2/token HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
             Content-Type: application/x-www-form-urlencoded\r\n{extra}\r\n"
        )
    };
    let declared = raw_status(addr, post("Content-Length: 100000\r\n"), &[]).await;
    assert_eq!(declared, 413);
    let mut chunked = Vec::new();
    for _ in 0..3 {
        chunked.extend_from_slice(format!("{:x}\r\n", 32 * 1024).as_bytes());
        chunked.extend(std::iter::repeat_n(b'a', 32 * 1024));
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let streamed = raw_status(addr, post("Transfer-Encoding: chunked\r\n"), &chunked).await;
    assert_eq!(streamed, 413);

    let started = Instant::now();
    let stalled = raw_status(addr, post("Content-Length: 100\r\n"), b"grant_type=").await;
    assert_eq!(stalled, 408);
    assert!(started.elapsed() < Duration::from_secs(4));

    // A well-formed small form is read and answered by the token endpoint.
    let form = b"grant_type=client_credentials";
    let ok = raw_status(
        addr,
        post(&format!("Content-Length: {}\r\n", form.len())),
        form,
    )
    .await;
    assert!(ok == 400 || ok == 401, "{ok}");
    s.stop().await;
}
