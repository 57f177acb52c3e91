//! The parts of `envoy.service.auth.v3.CheckRequest` that the adapter reads,
//! under the field numbers of `external_auth.proto`, `attribute_context.proto`
//! and `address.proto`.
//!
//! Why not `envoy-types`' `CheckRequest`: decoding it builds the whole
//! `AttributeContext` (a `HashMap` with a randomly seeded SipHash for the
//! headers, a heap string per field, a ~1 KB struct moved through tonic's
//! futures), about 6% of an ext_authz call, to read five fields. prost skips
//! every field a message does not declare, so these messages decode the same
//! bytes into just what is read. Two deliberate differences in what is kept:
//!
//! - `headers` is a `map<string, string>`, which on the wire is a repeated
//!   entry message `{key = 1, value = 2}`; it is decoded as that list, and
//!   [`Headers::get`] takes the last entry for a name, as a map decoder keeps
//!   the last one.
//! - Fields that are skipped are not validated (UTF-8 of strings the adapter
//!   never reads).
//! - With Envoy's `encode_raw_headers`, headers come in `header_map` instead;
//!   [`CheckRequest::fold_raw_headers`] moves them into the same list.
//!
//! `tests::reads_what_the_envoy_types_decoder_reads` checks the two against
//! each other on generated requests.

use crate::domain::gate::Field;

/// `envoy.service.auth.v3.CheckRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct CheckRequest {
    #[prost(message, optional, tag = "1")]
    pub attributes: Option<AttributeContext>,
}

/// `envoy.service.auth.v3.AttributeContext`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct AttributeContext {
    #[prost(message, optional, tag = "1")]
    pub source: Option<Peer>,
    #[prost(message, optional, tag = "4")]
    pub request: Option<Request>,
}

/// `AttributeContext.Peer`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Peer {
    #[prost(message, optional, tag = "1")]
    pub address: Option<Address>,
}

/// `envoy.config.core.v3.Address`: a oneof, so the last of its fields on the
/// wire wins, as in the full decoder; only a socket address is read.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Address {
    #[prost(oneof = "AddressKind", tags = "1, 2, 3")]
    pub address: Option<AddressKind>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
pub enum AddressKind {
    #[prost(message, tag = "1")]
    SocketAddress(SocketAddress),
    #[prost(message, tag = "2")]
    Pipe(Skipped),
    #[prost(message, tag = "3")]
    EnvoyInternalAddress(Skipped),
}

/// `envoy.config.core.v3.SocketAddress`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SocketAddress {
    #[prost(string, tag = "2")]
    pub address: String,
}

/// A message whose content is not read.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Skipped {}

/// `AttributeContext.Request`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Request {
    #[prost(message, optional, tag = "2")]
    pub http: Option<HttpRequest>,
}

/// `AttributeContext.HttpRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct HttpRequest {
    #[prost(string, tag = "2")]
    pub method: String,
    /// The `headers` map's entries, in wire order.
    #[prost(message, repeated, tag = "3")]
    pub headers: Vec<HeaderEntry>,
    #[prost(string, tag = "4")]
    pub path: String,
    #[prost(string, tag = "5")]
    pub host: String,
    /// The body, when Envoy forwards it (`with_request_body`) as text…
    #[prost(string, tag = "11")]
    pub body: String,
    /// …or as bytes (`pack_as_bytes`).
    #[prost(bytes = "vec", tag = "12")]
    pub raw_body: Vec<u8>,
    /// The headers instead of `headers`, when Envoy's `encode_raw_headers` is on.
    #[prost(message, optional, tag = "13")]
    pub header_map: Option<HeaderMap>,
}

/// `envoy.config.core.v3.HeaderMap`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct HeaderMap {
    #[prost(message, repeated, tag = "1")]
    pub headers: Vec<RawHeader>,
}

/// `envoy.config.core.v3.HeaderValue`: the value as text, or as bytes.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RawHeader {
    #[prost(string, tag = "1")]
    pub key: String,
    #[prost(string, tag = "2")]
    pub value: String,
    #[prost(bytes = "vec", tag = "3")]
    pub raw_value: Vec<u8>,
}

impl CheckRequest {
    /// Moves `header_map` entries (Envoy's `encode_raw_headers`) into
    /// `headers`, so every header is looked up one way. A value that is not
    /// UTF-8 is kept with U+FFFD in place of the bad bytes: the header still
    /// counts (a repeated credential header is still seen as repeated, a
    /// forged principal header is still removed) and its value matches
    /// nothing a client could have meant.
    pub fn fold_raw_headers(&mut self) {
        let Some(http) = self
            .attributes
            .as_mut()
            .and_then(|a| a.request.as_mut())
            .and_then(|r| r.http.as_mut())
        else {
            return;
        };
        let Some(map) = http.header_map.take() else {
            return;
        };
        for h in map.headers {
            let value = if h.raw_value.is_empty() {
                h.value
            } else {
                String::from_utf8(h.raw_value)
                    .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
            };
            http.headers.push(HeaderEntry {
                key: h.key.to_ascii_lowercase(),
                value,
            });
        }
    }
}

/// One entry of a `map<string, string>`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct HeaderEntry {
    #[prost(string, tag = "1")]
    pub key: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

/// The request headers, looked up as the map they encode. Envoy sends a
/// few dozen at most: a scan is cheaper than hashing them all.
#[derive(Debug, Clone, Copy)]
pub struct Headers<'a>(pub &'a [HeaderEntry]);

impl<'a> Headers<'a> {
    /// The value of `name`; of its last entry if it repeats.
    pub fn get(&self, name: &str) -> Option<&'a str> {
        self.0
            .iter()
            .rev()
            .find(|e| e.key == name)
            .map(|e| e.value.as_str())
    }

    /// `name` where it must occur once (a credential header): a second
    /// entry, in whatever case, is refused rather than one of them chosen.
    /// (Envoy's `headers` map joins a repeated header's values with `,`,
    /// which no credential contains; `header_map` and hand-built requests
    /// repeat the entry.)
    pub fn only(&self, name: &str) -> Field<'a> {
        let mut found = None;
        for e in self.0 {
            if e.key.eq_ignore_ascii_case(name) {
                if found.is_some() {
                    return Field::Repeated;
                }
                found = Some(e.value.as_str());
            }
        }
        found.map_or(Field::Absent, Field::One)
    }

    /// Each distinct header name that starts with `prefix`, once.
    pub fn names_with_prefix(&self, prefix: &str) -> Vec<&'a str> {
        let mut names: Vec<&'a str> = Vec::new();
        for e in self.0 {
            if e.key.starts_with(prefix) && !names.contains(&e.key.as_str()) {
                names.push(&e.key);
            }
        }
        names
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use envoy_types::ext_authz::v3::pb as envoy;
    use envoy_types::pb::envoy::config::core::v3 as core;
    use envoy_types::pb::envoy::service::auth::v3::AttributeContext as FullContext;
    use envoy_types::pb::envoy::service::auth::v3::attribute_context as full;
    use proptest::prelude::*;
    use prost::Message;

    use super::*;

    /// What the adapter reads, from either decoder.
    #[derive(Debug, PartialEq)]
    struct Read {
        source: Option<String>,
        method: String,
        path: String,
        host: String,
        headers: HashMap<String, String>,
        body: String,
        raw_body: Vec<u8>,
    }

    fn read_full(r: &envoy::CheckRequest) -> Option<Read> {
        let attrs = r.attributes.as_ref()?;
        let http = attrs.request.as_ref()?.http.as_ref()?;
        Some(Read {
            source: attrs
                .source
                .as_ref()
                .and_then(|p| p.address.as_ref())
                .and_then(|a| match a.address.as_ref()? {
                    envoy::Address::SocketAddress(s) => Some(s.address.clone()),
                    _ => None,
                }),
            method: http.method.clone(),
            path: http.path.clone(),
            host: http.host.clone(),
            headers: http.headers.clone(),
            body: http.body.clone(),
            raw_body: http.raw_body.clone(),
        })
    }

    fn read_lean(r: &CheckRequest) -> Option<Read> {
        let attrs = r.attributes.as_ref()?;
        let http = attrs.request.as_ref()?.http.as_ref()?;
        let headers = Headers(&http.headers);
        Some(Read {
            source: attrs
                .source
                .as_ref()
                .and_then(|p| p.address.as_ref())
                .and_then(|a| match a.address.as_ref()? {
                    AddressKind::SocketAddress(s) => Some(s.address.clone()),
                    _ => None,
                }),
            method: http.method.clone(),
            path: http.path.clone(),
            host: http.host.clone(),
            headers: headers
                .names_with_prefix("")
                .into_iter()
                .map(|n| (n.to_owned(), headers.get(n).unwrap_or_default().to_owned()))
                .collect(),
            body: http.body.clone(),
            raw_body: http.raw_body.clone(),
        })
    }

    fn peer(address: Option<core::address::Address>) -> full::Peer {
        full::Peer {
            address: Some(core::Address { address }),
            service: "svc".into(),
            labels: HashMap::from([("l".into(), "v".into())]),
            ..Default::default()
        }
    }

    /// A request as Envoy sends it, with fields the adapter does not read.
    fn full_request(
        source: Option<core::address::Address>,
        method: String,
        path: String,
        host: String,
        headers: HashMap<String, String>,
    ) -> envoy::CheckRequest {
        envoy::CheckRequest {
            attributes: Some(FullContext {
                source: Some(peer(source)),
                destination: Some(peer(Some(core::address::Address::SocketAddress(
                    core::SocketAddress {
                        address: "10.0.0.1".into(),
                        ..Default::default()
                    },
                )))),
                request: Some(full::Request {
                    time: Some(Default::default()),
                    http: Some(full::HttpRequest {
                        id: "123".into(),
                        method,
                        headers,
                        path,
                        host,
                        scheme: "https".into(),
                        body: "{}".into(),
                        raw_body: b"{}".to_vec(),
                        size: 2,
                        protocol: "HTTP/2".into(),
                        ..Default::default()
                    }),
                }),
                context_extensions: HashMap::from([("x".into(), "y".into())]),
                tls_session: Some(full::TlsSession { sni: "a".into() }),
                ..Default::default()
            }),
        }
    }

    fn source() -> impl Strategy<Value = Option<core::address::Address>> {
        prop_oneof![
            Just(None),
            "[0-9a-f.:]{0,20}".prop_map(|a| Some(core::address::Address::SocketAddress(
                core::SocketAddress {
                    address: a,
                    port_specifier: Some(core::socket_address::PortSpecifier::PortValue(443)),
                    ..Default::default()
                }
            ))),
            "/[a-z]{1,8}".prop_map(|p| Some(core::address::Address::Pipe(core::Pipe {
                path: p,
                mode: 0,
            }))),
        ]
    }

    proptest! {
        #[test]
        fn reads_what_the_envoy_types_decoder_reads(
            source in source(),
            method in "[A-Z]{0,7}",
            path in "\\PC{0,40}",
            host in "[a-z.:0-9]{0,20}",
            headers in proptest::collection::hash_map("[a-z:-]{0,12}", "\\PC{0,20}", 0..12),
        ) {
            let bytes = full_request(source, method, path, host, headers).encode_to_vec();
            let full = envoy::CheckRequest::decode(bytes.as_slice()).unwrap();
            let lean = CheckRequest::decode(bytes.as_slice()).unwrap();
            prop_assert_eq!(read_lean(&lean), read_full(&full));
        }

        /// With `encode_raw_headers`, the same headers arrive in `header_map`
        /// (as bytes) and are read exactly as from `headers`.
        #[test]
        fn raw_headers_read_like_the_headers_map(
            headers in proptest::collection::hash_map("[a-z-]{1,12}", "[ -~]{0,20}", 0..12),
        ) {
            let as_map = full_request(None, "GET".into(), "/".into(), "h".into(), headers.clone());
            let mut as_raw = as_map.clone();
            if let Some(http) = as_raw
                .attributes
                .as_mut()
                .and_then(|a| a.request.as_mut())
                .and_then(|r| r.http.as_mut())
            {
                http.headers.clear();
                http.header_map = Some(core::HeaderMap {
                    headers: headers
                        .iter()
                        .map(|(k, v)| core::HeaderValue {
                            key: k.clone(),
                            value: String::new(),
                            raw_value: v.clone().into_bytes(),
                        })
                        .collect(),
                });
            }
            let mut lean = CheckRequest::decode(as_raw.encode_to_vec().as_slice()).unwrap();
            lean.fold_raw_headers();
            prop_assert_eq!(read_lean(&lean), read_full(&as_map));
        }

        /// Repeated map keys and oneof fields: the last one on the wire wins in both.
        #[test]
        fn the_last_entry_wins_as_in_a_map(
            entries in proptest::collection::vec(("[a-c]", "[a-z]{0,3}"), 0..8),
            socket_last in any::<bool>(),
        ) {
            let mut http = Vec::new();
            for (k, v) in &entries {
                let entry = [
                    prost::encoding::string::encoded_len(1, k),
                    prost::encoding::string::encoded_len(2, v),
                ];
                prost::encoding::encode_key(3, prost::encoding::WireType::LengthDelimited, &mut http);
                prost::encoding::encode_varint((entry[0] + entry[1]) as u64, &mut http);
                prost::encoding::string::encode(1, k, &mut http);
                prost::encoding::string::encode(2, v, &mut http);
            }
            let socket = core::address::Address::SocketAddress(core::SocketAddress {
                address: "192.0.2.1".into(),
                ..Default::default()
            });
            let pipe = core::address::Address::Pipe(core::Pipe { path: "/p".into(), mode: 0 });
            let (first, last) = if socket_last { (pipe, socket) } else { (socket, pipe) };
            let mut address = core::Address { address: Some(first) }.encode_to_vec();
            address.extend(core::Address { address: Some(last) }.encode_to_vec());
            let nested = |field: u32, inner: &[u8]| {
                let mut out = Vec::new();
                prost::encoding::encode_key(field, prost::encoding::WireType::LengthDelimited, &mut out);
                prost::encoding::encode_varint(inner.len() as u64, &mut out);
                out.extend_from_slice(inner);
                out
            };
            let peer = nested(1, &address);
            let request = nested(2, &http);
            let mut attributes = nested(1, &peer);
            attributes.extend(nested(4, &request));
            let bytes = nested(1, &attributes);
            let full = envoy::CheckRequest::decode(bytes.as_slice()).unwrap();
            let lean = CheckRequest::decode(bytes.as_slice()).unwrap();
            prop_assert_eq!(read_lean(&lean), read_full(&full));
        }
    }
}
