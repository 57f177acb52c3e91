//! A tiny MaxMind DB writer for tests (IPv4 tree, 24-bit records): enough to
//! map a few networks to countries, read back by the `maxminddb` crate the
//! service uses. Format: <https://maxmind.github.io/MaxMind-DB/>.

use std::net::Ipv4Addr;

#[derive(Clone, Copy)]
enum Rec {
    Empty,
    Node(usize),
    Data(usize),
}

fn ctrl(out: &mut Vec<u8>, kind: u8, size: usize) {
    assert!(size < 29);
    if kind <= 7 {
        out.push((kind << 5) | size as u8);
    } else {
        out.push(size as u8);
        out.push(kind - 7);
    }
}

fn string(out: &mut Vec<u8>, s: &str) {
    ctrl(out, 2, s.len());
    out.extend_from_slice(s.as_bytes());
}

fn uint(out: &mut Vec<u8>, kind: u8, v: u64) {
    let bytes = v.to_be_bytes();
    let skip = bytes.iter().take_while(|b| **b == 0).count();
    ctrl(out, kind, 8 - skip);
    out.extend_from_slice(&bytes[skip..]);
}

fn country(code: &str) -> Vec<u8> {
    let mut out = Vec::new();
    ctrl(&mut out, 7, 1);
    string(&mut out, "country");
    ctrl(&mut out, 7, 1);
    string(&mut out, "iso_code");
    string(&mut out, code);
    out
}

/// A database mapping each `(network, prefix length)` to a country code.
pub fn countries(networks: &[(Ipv4Addr, u8, &str)]) -> Vec<u8> {
    let mut nodes: Vec<[Rec; 2]> = vec![[Rec::Empty, Rec::Empty]];
    let mut data = Vec::new();
    for (net, len, code) in networks {
        let offset = data.len();
        data.extend(country(code));
        let bits = u32::from(*net);
        let mut node = 0;
        for depth in 0..*len {
            let bit = ((bits >> (31 - depth)) & 1) as usize;
            if depth + 1 == *len {
                nodes[node][bit] = Rec::Data(offset);
            } else {
                node = match nodes[node][bit] {
                    Rec::Node(n) => n,
                    _ => {
                        nodes.push([Rec::Empty, Rec::Empty]);
                        let n = nodes.len() - 1;
                        nodes[node][bit] = Rec::Node(n);
                        n
                    }
                };
            }
        }
    }
    let count = nodes.len();
    let mut out = Vec::new();
    for pair in &nodes {
        for rec in pair {
            let v = match rec {
                Rec::Empty => count,
                Rec::Node(n) => *n,
                Rec::Data(o) => count + 16 + o,
            } as u32;
            out.extend_from_slice(&v.to_be_bytes()[1..]);
        }
    }
    out.extend_from_slice(&[0u8; 16]);
    out.extend(data);
    out.extend_from_slice(b"\xAB\xCD\xEFMaxMind.com");
    ctrl(&mut out, 7, 9);
    string(&mut out, "binary_format_major_version");
    uint(&mut out, 5, 2);
    string(&mut out, "binary_format_minor_version");
    uint(&mut out, 5, 0);
    string(&mut out, "build_epoch");
    uint(&mut out, 9, 1_700_000_000);
    string(&mut out, "database_type");
    string(&mut out, "Latchkey-Test-Country");
    string(&mut out, "description");
    ctrl(&mut out, 7, 1);
    string(&mut out, "en");
    string(&mut out, "test countries");
    string(&mut out, "ip_version");
    uint(&mut out, 5, 4);
    string(&mut out, "languages");
    ctrl(&mut out, 11, 1);
    string(&mut out, "en");
    string(&mut out, "node_count");
    uint(&mut out, 6, count as u64);
    string(&mut out, "record_size");
    uint(&mut out, 5, 24);
    out
}

#[test]
fn the_service_reads_what_this_writes() {
    use latchkey::ports::GeoLookup;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.mmdb");
    std::fs::write(
        &path,
        countries(&[
            ("198.51.100.0".parse().unwrap(), 24, "DE"),
            ("203.0.113.0".parse().unwrap(), 24, "JP"),
        ]),
    )
    .unwrap();
    let geo = latchkey::geoip::MaxMindCountries::open(&path).unwrap();
    assert_eq!(
        geo.country("198.51.100.7".parse().unwrap()).as_deref(),
        Some("DE")
    );
    assert_eq!(
        geo.country("203.0.113.200".parse().unwrap()).as_deref(),
        Some("JP")
    );
    assert_eq!(geo.country("192.0.2.1".parse().unwrap()), None);
}
