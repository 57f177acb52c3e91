//! IP allowlists and the client address behind trusted proxies
//! ([`ClientIpRule`], the one rule for `X-Forwarded-For`).

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

/// Why an allowlist was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AllowlistError {
    #[error(transparent)]
    Cidr(#[from] CidrError),
    /// The list admits every address of a family: it is no allowlist, and
    /// is almost always a mistake for "no list" or a leaked-key workaround.
    #[error(
        "`{0}` allows every {1} address; name the networks the key is used from, or set no allowlist"
    )]
    Everything(String, &'static str),
}

/// Parses an IP allowlist (`allowed_cidrs`). Refused: `0.0.0.0/0`, `::/0`,
/// the IPv4-mapped `::ffff:0:0/96`, and any set of blocks that together
/// cover a whole family (`0.0.0.0/1` + `128.0.0.0/1`).
pub fn parse_allowlist(items: &[String]) -> Result<Vec<IpNet>, AllowlistError> {
    let nets = items
        .iter()
        .map(|s| parse_cidr(s))
        .collect::<Result<Vec<_>, _>>()?;
    for net in IpNet::aggregate(&nets) {
        if net.prefix_len() == 0 {
            let family = if net.addr().is_ipv4() { "IPv4" } else { "IPv6" };
            let named = nets
                .iter()
                .zip(items)
                .find(|(n, _)| net.contains(*n))
                .map_or_else(|| net.to_string(), |(_, s)| s.trim().to_owned());
            let what = if nets.iter().any(|n| n.prefix_len() == 0) {
                named
            } else {
                format!("{named} (with the other blocks)")
            };
            return Err(AllowlistError::Everything(what, family));
        }
    }
    Ok(nets)
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

/// Which `X-Forwarded-For` entries are believed: the one rule both Check
/// APIs and forward auth use to tell the client's address.
///
/// Walking from the asker's own view of the request (the peer) leftwards
/// through `X-Forwarded-For`, a hop is stepped past — its entry to the left
/// believed — while either
/// - fewer than `trusted_hops` (plus the asker's own hops) have been
///   stepped past: the deployment says that many proxies sit in front,
///   whatever their addresses (`ext_authz.trusted_hops`); or
/// - the address at hand is one of `trusted_proxies` (`check.trusted_proxies`).
///
/// The first address that is trusted by neither is the client (RFC 7239
/// §5.2 reasoning: only hops you trust can be believed, and a client can
/// prepend anything it likes). A malformed entry, or a chain shorter than
/// the hops it must have, means the client cannot be told (`None`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientIpRule {
    pub trusted_proxies: Vec<IpNet>,
    pub trusted_hops: u8,
}

impl ClientIpRule {
    /// The client address. `peer` is the asker's view of whoever sent the
    /// request (Envoy's source address, `context.client_ip`), `None` when it
    /// has none; `own_hops` the entries the asker itself appended (1 for a
    /// forward-auth proxy, whose own view is the rightmost entry).
    pub fn client_ip(
        &self,
        peer: Option<IpAddr>,
        forwarded_for: Option<&str>,
        own_hops: u8,
    ) -> Option<IpAddr> {
        let mut hops = usize::from(self.trusted_hops) + usize::from(own_hops);
        let mut current = peer.map(canonical_ip);
        let mut entries = forwarded_for.into_iter().flat_map(|x| x.rsplit(','));
        loop {
            let by_hops = hops > 0;
            if !by_hops {
                let ip = current?;
                if self.trusted_proxies.is_empty() || !allowed(ip, &self.trusted_proxies) {
                    return Some(ip);
                }
            }
            match entries.next() {
                // A malformed hop means the chain cannot be trusted past it.
                Some(entry) => current = Some(parse_ip_loose(entry)?),
                // Fewer entries than the proxies said to be in front.
                None if by_hops => return None,
                // Every entry is a trusted proxy: the leftmost sent it.
                None => return current,
            }
            hops = hops.saturating_sub(1);
        }
    }
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

    fn proxies(list: &[&str]) -> ClientIpRule {
        ClientIpRule {
            trusted_proxies: list.iter().map(|s| parse_cidr(s).unwrap()).collect(),
            trusted_hops: 0,
        }
    }

    fn hops(n: u8) -> ClientIpRule {
        ClientIpRule {
            trusted_proxies: Vec::new(),
            trusted_hops: n,
        }
    }

    #[test]
    fn allowlists_that_allow_everything_are_refused() {
        let list =
            |v: &[&str]| parse_allowlist(&v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>());
        for everything in [
            &["0.0.0.0/0"][..],
            &["::/0"],
            &["10.0.0.0/8", "::/0"],
            &["::ffff:0:0/96"],
            &["0.0.0.0/1", "128.0.0.0/1"],
            &["1.2.3.4/0"],
            &["8000::/1", "::/1"],
        ] {
            assert!(
                matches!(list(everything), Err(AllowlistError::Everything(..))),
                "{everything:?}"
            );
        }
        assert_eq!(list(&["0.0.0.0/1"]).unwrap().len(), 1);
        assert_eq!(list(&["10.0.0.0/8", "2001:db8::/32"]).unwrap().len(), 2);
        assert!(list(&[]).unwrap().is_empty());
        assert!(matches!(list(&["nope"]), Err(AllowlistError::Cidr(_))));
    }

    #[test]
    fn forwarded_for_is_ignored_without_trusted_proxies() {
        assert_eq!(
            proxies(&[]).client_ip(Some(ip("203.0.113.9")), Some("10.0.0.1"), 0),
            Some(ip("203.0.113.9"))
        );
    }

    #[test]
    fn forwarded_for_is_ignored_from_an_untrusted_peer() {
        let rule = proxies(&["10.0.0.0/8"]);
        assert_eq!(
            rule.client_ip(Some(ip("203.0.113.9")), Some("198.51.100.1"), 0),
            Some(ip("203.0.113.9"))
        );
    }

    #[test]
    fn rightmost_untrusted_hop_wins() {
        let rule = proxies(&["10.0.0.0/8"]);
        // The client forged "1.1.1.1"; the proxy appended the real address.
        assert_eq!(
            rule.client_ip(
                Some(ip("10.0.0.2")),
                Some("1.1.1.1, 198.51.100.7, 10.0.0.5"),
                0
            ),
            Some(ip("198.51.100.7"))
        );
        assert_eq!(
            rule.client_ip(Some(ip("10.0.0.2")), Some("10.0.0.3"), 0),
            Some(ip("10.0.0.3"))
        );
        assert_eq!(
            rule.client_ip(Some(ip("10.0.0.2")), Some("garbage"), 0),
            None
        );
        assert_eq!(rule.client_ip(None, Some("198.51.100.7"), 0), None);
    }

    #[test]
    fn client_address_by_hops() {
        let xff = Some("198.51.100.1, 203.0.113.9,10.0.0.2");
        // 0: the asker's own view; X-Forwarded-For is not read.
        assert_eq!(
            hops(0).client_ip(Some(ip("192.0.2.7")), xff, 0),
            Some(ip("192.0.2.7"))
        );
        assert_eq!(hops(0).client_ip(None, xff, 0), None);
        // N: the N-th entry from the right, whoever the peer is.
        assert_eq!(hops(1).client_ip(None, xff, 0), Some(ip("10.0.0.2")));
        assert_eq!(hops(2).client_ip(None, xff, 0), Some(ip("203.0.113.9")));
        assert_eq!(hops(1).client_ip(None, xff, 1), Some(ip("203.0.113.9")));
        assert_eq!(hops(3).client_ip(None, xff, 0), Some(ip("198.51.100.1")));
        // More hops than entries: the client cannot be told.
        assert_eq!(hops(4).client_ip(None, xff, 0), None);
        assert_eq!(hops(1).client_ip(Some(ip("192.0.2.7")), None, 0), None);
        // IPv4-mapped IPv6 is the IPv4 address.
        assert_eq!(
            hops(1).client_ip(None, Some("::ffff:203.0.113.9"), 0),
            Some(ip("203.0.113.9"))
        );
    }

    #[test]
    fn hops_and_proxies_are_one_rule() {
        // One hop is trusted by count (the load balancer, whatever its
        // address), then the mesh's own proxies by address.
        let rule = ClientIpRule {
            trusted_proxies: vec![parse_cidr("10.0.0.0/8").unwrap()],
            trusted_hops: 1,
        };
        assert_eq!(
            rule.client_ip(
                Some(ip("192.0.2.50")),
                Some("1.1.1.1, 198.51.100.7, 10.1.1.1, 10.2.2.2"),
                0
            ),
            Some(ip("198.51.100.7"))
        );
    }

    /// An address (v4 or v6) as a proxy writes it.
    fn addr() -> impl Strategy<Value = IpAddr> {
        prop_oneof![
            any::<u32>().prop_map(|a| IpAddr::V4(a.into())),
            any::<u128>().prop_map(|a| canonical_ip(IpAddr::V6(a.into()))),
        ]
    }

    fn join(chain: &[IpAddr]) -> String {
        chain
            .iter()
            .map(IpAddr::to_string)
            .collect::<Vec<_>>()
            .join(", ")
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
            let rule = ClientIpRule { trusted_proxies: vec![parse_cidr("10.0.0.0/8").unwrap()], trusted_hops: 2 };
            let _ = rule.client_ip(Some(ip("10.0.0.1")), Some(&s), 1);
        }

        /// Whatever a client prepends to `X-Forwarded-For`, the answer is the
        /// address the outermost trusted hop saw, under either setting.
        #[test]
        fn forged_entries_never_change_the_client(
            forged in proptest::collection::vec(addr(), 0..5),
            client in addr(),
            hops_in_front in 0u8..4,
            own in 0u8..2,
        ) {
            // `hops_in_front` proxies appended entries after the client's
            // (by count), then the asker itself `own` more.
            let mut chain = forged.clone();
            chain.push(client);
            for i in 0..(hops_in_front + own).saturating_sub(1) {
                chain.push(IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, i)));
            }
            let by_hops = hops(hops_in_front);
            let (peer, xff) = if hops_in_front + own == 0 {
                (Some(client), join(&forged))
            } else {
                (Some(ip("192.0.2.200")), join(&chain))
            };
            prop_assert_eq!(by_hops.client_ip(peer, Some(&xff), own), Some(client));

            // The same chain with the proxies named by address.
            let trusted = proxies(&["192.0.2.0/24"]);
            if !trusted.trusted_proxies[0].contains(&client) {
                let mut chain = forged;
                chain.push(client);
                chain.push(ip("192.0.2.1"));
                prop_assert_eq!(
                    trusted.client_ip(Some(ip("192.0.2.9")), Some(&join(&chain)), 0),
                    Some(client)
                );
            }
        }

        /// Asked by a forward-auth proxy (whose view of the client is the
        /// entry it appended) or by Envoy (whose view is its source
        /// address), the same request has the same client.
        #[test]
        fn forward_auth_and_envoy_views_agree(
            chain in proptest::collection::vec(addr(), 1..6),
            trusted_hops in 0u8..4,
            trust_some in any::<bool>(),
        ) {
            let rule = ClientIpRule {
                trusted_proxies: if trust_some { vec![parse_cidr("0.0.0.0/1").unwrap()] } else { Vec::new() },
                trusted_hops,
            };
            let (source, rest) = chain.split_last().unwrap();
            let rest = if rest.is_empty() { None } else { Some(join(rest)) };
            prop_assert_eq!(
                rule.client_ip(None, Some(&join(&chain)), 1),
                rule.client_ip(Some(*source), rest.as_deref(), 0)
            );
        }
    }
}
