//! IP allowlists and the client address behind trusted proxies.
//!
//! `X-Forwarded-For` is only honoured when the immediate peer is a configured
//! trusted proxy; then the rightmost address that is not itself a trusted
//! proxy is the client (RFC 7239 §5.2 reasoning: only hops you trust can be
//! believed, and a client can prepend anything it likes).

use std::net::IpAddr;

use ipnet::IpNet;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not an IP address or CIDR block")]
pub struct CidrError(pub String);

/// Parses `10.0.0.0/8`, `2001:db8::/32`, or a bare address (a /32 or /128).
/// Host bits are cleared, so `10.1.2.3/8` means `10.0.0.0/8`.
pub fn parse_cidr(s: &str) -> Result<IpNet, CidrError> {
    let s = s.trim();
    if let Ok(net) = s.parse::<IpNet>() {
        return Ok(normalise_net(net.trunc()));
    }
    s.parse::<IpAddr>()
        .map(|ip| IpNet::from(canonical_ip(ip)))
        .map_err(|_| CidrError(s.to_owned()))
}

fn normalise_net(net: IpNet) -> IpNet {
    // `::ffff:10.0.0.0/104` is an IPv4 block written as IPv6.
    if let IpNet::V6(v6) = net
        && let Some(v4) = v6.addr().to_ipv4_mapped()
        && v6.prefix_len() >= 96
        && let Ok(n) = ipnet::Ipv4Net::new(v4, v6.prefix_len() - 96)
    {
        return IpNet::V4(n);
    }
    net
}

/// IPv4-mapped IPv6 addresses (`::ffff:1.2.3.4`) are the IPv4 address.
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Parses an address as callers write it: `1.2.3.4`, `::1`, `[::1]:443`, `1.2.3.4:5678`.
pub fn parse_ip_loose(s: &str) -> Option<IpAddr> {
    let s = s.trim();
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(canonical_ip(ip));
    }
    if let Ok(sock) = s.parse::<std::net::SocketAddr>() {
        return Some(canonical_ip(sock.ip()));
    }
    None
}

pub fn allowed(ip: IpAddr, list: &[IpNet]) -> bool {
    let ip = canonical_ip(ip);
    list.iter().any(|net| net.contains(&ip))
}

/// The client address: the peer itself, or — when the peer is a trusted proxy —
/// the rightmost untrusted `X-Forwarded-For` entry. `None` if it cannot be told.
pub fn client_ip(
    peer: Option<IpAddr>,
    forwarded_for: Option<&str>,
    trusted: &[IpNet],
) -> Option<IpAddr> {
    let peer = canonical_ip(peer?);
    if trusted.is_empty() || !allowed(peer, trusted) {
        return Some(peer);
    }
    let Some(xff) = forwarded_for else {
        return Some(peer);
    };
    let mut leftmost = peer;
    for entry in xff.rsplit(',') {
        // A malformed hop means the chain cannot be trusted past this point.
        let ip = parse_ip_loose(entry)?;
        if !allowed(ip, trusted) {
            return Some(ip);
        }
        leftmost = ip;
    }
    Some(leftmost)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn cidrs_and_bare_addresses() {
        let list = vec![
            parse_cidr("10.0.0.0/8").unwrap(),
            parse_cidr("2001:db8::1").unwrap(),
        ];
        assert!(allowed(ip("10.200.1.1"), &list));
        assert!(allowed(ip("::ffff:10.0.0.1"), &list));
        assert!(!allowed(ip("11.0.0.1"), &list));
        assert!(allowed(ip("2001:db8::1"), &list));
        assert!(!allowed(ip("2001:db8::2"), &list));
        assert_eq!(parse_cidr("10.1.2.3/8").unwrap().to_string(), "10.0.0.0/8");
        assert_eq!(
            parse_cidr("::ffff:10.0.0.0/104").unwrap().to_string(),
            "10.0.0.0/8"
        );
        assert!(parse_cidr("10.0.0.0/33").is_err());
        assert!(parse_cidr("example.com").is_err());
    }

    #[test]
    fn forwarded_for_is_ignored_without_trusted_proxies() {
        assert_eq!(
            client_ip(Some(ip("203.0.113.9")), Some("10.0.0.1"), &[]),
            Some(ip("203.0.113.9"))
        );
    }

    #[test]
    fn forwarded_for_is_ignored_from_an_untrusted_peer() {
        let trusted = vec![parse_cidr("10.0.0.0/8").unwrap()];
        assert_eq!(
            client_ip(Some(ip("203.0.113.9")), Some("198.51.100.1"), &trusted),
            Some(ip("203.0.113.9"))
        );
    }

    #[test]
    fn rightmost_untrusted_hop_wins() {
        let trusted = vec![parse_cidr("10.0.0.0/8").unwrap()];
        // The client forged "1.1.1.1"; the proxy appended the real address.
        assert_eq!(
            client_ip(
                Some(ip("10.0.0.2")),
                Some("1.1.1.1, 198.51.100.7, 10.0.0.5"),
                &trusted
            ),
            Some(ip("198.51.100.7"))
        );
        assert_eq!(
            client_ip(Some(ip("10.0.0.2")), Some("10.0.0.3"), &trusted),
            Some(ip("10.0.0.3"))
        );
        assert_eq!(
            client_ip(Some(ip("10.0.0.2")), Some("garbage"), &trusted),
            None
        );
        assert_eq!(client_ip(None, Some("198.51.100.7"), &trusted), None);
    }

    proptest! {
        #[test]
        fn a_network_contains_exactly_its_addresses(a in any::<u32>(), b in any::<u32>(), len in 0u8..=32) {
            let net = parse_cidr(&format!("{}/{len}", std::net::Ipv4Addr::from(a))).unwrap();
            let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
            let expected = (a & mask) == (b & mask);
            prop_assert_eq!(allowed(IpAddr::V4(b.into()), &[net]), expected);
        }

        #[test]
        fn parsers_never_panic(s in "\\PC{0,40}") {
            let _ = parse_cidr(&s);
            let _ = parse_ip_loose(&s);
            let _ = client_ip(Some(ip("10.0.0.1")), Some(&s), &[parse_cidr("10.0.0.0/8").unwrap()]);
        }
    }
}
