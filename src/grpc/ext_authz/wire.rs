//! The wire side of ext_authz: `envoy.service.auth.v3.Authorization` served
//! with a codec of its own instead of `envoy-types`' generated server.
//!
//! Why: on the hot path (an allow for a cached key) the generated server
//! builds a `CheckResponse` of about twenty heap strings and a `HashMap`
//! (the principal headers and the dynamic-metadata `Struct`), encodes it and
//! frees it again, for a principal that is the same on every call with the
//! same key. Here that part is encoded once per key (by prost, from the
//! `envoy-types` messages) and each allow writes those bytes, followed by
//! what does vary per request (the headers to remove). The bytes on the wire
//! are what prost would write for the same `CheckResponse`; denials are
//! rarer and are encoded by prost as they are. Requests are decoded into the
//! few fields the adapter reads (see `request.rs`).

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use envoy_types::ext_authz::v3::pb::{CheckResponse, OkHttpResponse};
use envoy_types::pb::envoy::config::core::v3::HeaderValueOption;
use envoy_types::pb::google::protobuf::Struct;
use prost::Message;
use prost::bytes::{Buf, BufMut, Bytes};
use prost::encoding::{WireType, encode_key, encode_varint};
use tonic::body::Body;
use tonic::codec::{BufferSettings, Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::{BoxFuture, Service, http};
use tonic::server::{Grpc, NamedService, UnaryService};
use tonic::{Request, Response, Status};

use super::ExtAuthzApi;
use super::request::CheckRequest;

/// `CheckResponse` field numbers (external_auth.proto).
const STATUS_FIELD: u32 = 1;
const OK_RESPONSE_FIELD: u32 = 3;
/// `OkHttpResponse.headers_to_remove`.
const HEADERS_TO_REMOVE_FIELD: u32 = 5;
/// `OkHttpResponse.response_headers_to_add`.
const RESPONSE_HEADERS_TO_ADD_FIELD: u32 = 6;

/// The parts of an allow that depend only on the key (and this adapter's
/// settings), encoded once.
#[derive(Debug, Default)]
pub struct EncodedPrincipal {
    /// `OkHttpResponse.headers`: the repeated field's entries, as they appear
    /// inside an encoded `OkHttpResponse`.
    headers: Bytes,
    /// `CheckResponse.dynamic_metadata` with its field key, or nothing.
    metadata: Bytes,
}

impl EncodedPrincipal {
    pub fn new(headers: Vec<HeaderValueOption>, metadata: Option<Struct>) -> Self {
        let headers = OkHttpResponse {
            headers,
            ..Default::default()
        }
        .encode_to_vec();
        let metadata = CheckResponse {
            dynamic_metadata: metadata,
            ..Default::default()
        }
        .encode_to_vec();
        Self {
            headers: headers.into(),
            metadata: metadata.into(),
        }
    }
}

/// What the Check handler answers.
#[derive(Debug)]
pub enum Reply {
    /// `CheckResponse{status: OK, ok_response: {headers: <principal>,
    /// headers_to_remove: <remove>}, dynamic_metadata: <principal>}`.
    Allowed {
        principal: Arc<EncodedPrincipal>,
        remove: Vec<String>,
        /// `response_headers_to_add`: the rate-limit fields (empty when unlimited).
        add: Vec<HeaderValueOption>,
    },
    /// Any other response, encoded by prost.
    Message(Box<CheckResponse>),
}

impl From<CheckResponse> for Reply {
    fn from(r: CheckResponse) -> Self {
        Reply::Message(Box::new(r))
    }
}

impl Reply {
    /// Writes the encoded `CheckResponse`, fields in number order as prost does.
    fn encode(&self, buf: &mut impl BufMut) {
        match self {
            Reply::Message(m) => {
                // Only fails when the buffer cannot grow; tonic's can.
                let _ = m.encode(buf);
            }
            Reply::Allowed {
                principal,
                remove,
                add,
            } => {
                // `status`: a google.rpc.Status with code OK, i.e. empty.
                encode_key(STATUS_FIELD, WireType::LengthDelimited, buf);
                encode_varint(0, buf);
                encode_key(OK_RESPONSE_FIELD, WireType::LengthDelimited, buf);
                encode_varint(ok_len(principal, remove, add) as u64, buf);
                buf.put_slice(&principal.headers);
                for h in remove {
                    prost::encoding::string::encode(HEADERS_TO_REMOVE_FIELD, h, buf);
                }
                for h in add {
                    prost::encoding::message::encode(RESPONSE_HEADERS_TO_ADD_FIELD, h, buf);
                }
                buf.put_slice(&principal.metadata);
            }
        }
    }

    #[cfg(test)]
    fn encoded_len(&self) -> usize {
        match self {
            Reply::Message(m) => m.encoded_len(),
            Reply::Allowed {
                principal,
                remove,
                add,
            } => {
                let ok = ok_len(principal, remove, add);
                2 + 1
                    + prost::encoding::encoded_len_varint(ok as u64)
                    + ok
                    + principal.metadata.len()
            }
        }
    }
}

/// The length of an allow's `OkHttpResponse`.
fn ok_len(principal: &EncodedPrincipal, remove: &[String], add: &[HeaderValueOption]) -> usize {
    principal.headers.len()
        + remove
            .iter()
            .map(|h| prost::encoding::string::encoded_len(HEADERS_TO_REMOVE_FIELD, h))
            .sum::<usize>()
        + add
            .iter()
            .map(|h| prost::encoding::message::encoded_len(RESPONSE_HEADERS_TO_ADD_FIELD, h))
            .sum::<usize>()
}

/// Decodes the [`CheckRequest`] view, encodes [`Reply`].
#[derive(Debug, Clone, Copy, Default)]
pub struct ReplyCodec;

#[derive(Debug, Clone, Copy, Default)]
pub struct ReplyEncoder;

impl Encoder for ReplyEncoder {
    type Item = Reply;
    type Error = Status;

    fn encode(&mut self, item: Reply, buf: &mut EncodeBuf<'_>) -> Result<(), Status> {
        item.encode(buf);
        Ok(())
    }

    fn buffer_settings(&self) -> BufferSettings {
        BufferSettings::default()
    }
}

#[derive(Debug, Clone, Copy, Default)]
pub struct RequestDecoder;

impl Decoder for RequestDecoder {
    type Item = CheckRequest;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<CheckRequest>, Status> {
        // tonic holds the message in one contiguous buffer: prost reads a
        // slice more cheaply than a `DecodeBuf`, whose every advance goes
        // through two layers of buffers.
        let len = buf.remaining();
        let decoded = if buf.chunk().len() == len {
            let decoded = CheckRequest::decode(buf.chunk());
            buf.advance(len);
            decoded
        } else {
            CheckRequest::decode(&mut *buf)
        };
        // As tonic-prost maps a decode error.
        let mut request = decoded.map_err(|e| Status::internal(e.to_string()))?;
        request.fold_raw_headers();
        Ok(Some(request))
    }

    fn buffer_settings(&self) -> BufferSettings {
        BufferSettings::default()
    }
}

impl Codec for ReplyCodec {
    type Encode = Reply;
    type Decode = CheckRequest;
    type Encoder = ReplyEncoder;
    type Decoder = RequestDecoder;

    fn encoder(&mut self) -> ReplyEncoder {
        ReplyEncoder
    }

    fn decoder(&mut self) -> RequestDecoder {
        RequestDecoder
    }
}

const SERVICE_NAME: &str = "envoy.service.auth.v3.Authorization";
const CHECK_PATH: &str = "/envoy.service.auth.v3.Authorization/Check";

/// The `envoy.service.auth.v3.Authorization` service, as the generated
/// `AuthorizationServer` routes it, with [`ReplyCodec`].
#[derive(Clone)]
pub struct AuthorizationService {
    api: Arc<ExtAuthzApi>,
    max_decoding_message_size: usize,
}

impl AuthorizationService {
    pub fn new(api: ExtAuthzApi, max_decoding_message_size: usize) -> Self {
        Self {
            api: Arc::new(api),
            max_decoding_message_size,
        }
    }
}

impl NamedService for AuthorizationService {
    const NAME: &'static str = SERVICE_NAME;
}

/// One call: takes the adapter out rather than cloning it again (one shared
/// reference-count round trip fewer per request; a unary call is made once).
struct CheckCall(Option<Arc<ExtAuthzApi>>);

impl UnaryService<CheckRequest> for CheckCall {
    type Response = Reply;
    type Future = BoxFuture<Response<Reply>, Status>;

    fn call(&mut self, request: Request<CheckRequest>) -> Self::Future {
        let api = self.0.take();
        Box::pin(async move {
            let api = api.ok_or_else(|| Status::internal("a unary call was made twice"))?;
            api.check(request.into_inner()).await.map(Response::new)
        })
    }
}

impl Service<http::Request<Body>> for AuthorizationService {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        if req.uri().path() != CHECK_PATH {
            return Box::pin(async { Ok(Status::unimplemented("").into_http()) });
        }
        let call = CheckCall(Some(self.api.clone()));
        let limit = self.max_decoding_message_size;
        Box::pin(async move {
            let mut grpc = Grpc::new(ReplyCodec).max_decoding_message_size(limit);
            Ok(grpc.unary(call, req).await)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use envoy_types::ext_authz::v3::pb::{HeaderAppendAction, HttpResponse};
    use envoy_types::pb::envoy::config::core::v3::HeaderValue;
    use envoy_types::pb::google::protobuf::{Value, value::Kind};
    use envoy_types::pb::google::rpc;

    fn header(key: &str, value: &str) -> HeaderValueOption {
        HeaderValueOption {
            header: Some(HeaderValue {
                key: key.to_owned(),
                value: value.to_owned(),
                raw_value: Vec::new(),
            }),
            append_action: HeaderAppendAction::OverwriteIfExistsOrAdd as i32,
            ..Default::default()
        }
    }

    /// The message prost would have encoded for the same allow.
    fn as_message(
        headers: Vec<HeaderValueOption>,
        metadata: Option<Struct>,
        remove: Vec<String>,
        add: Vec<HeaderValueOption>,
    ) -> CheckResponse {
        CheckResponse {
            status: Some(rpc::Status {
                code: 0,
                message: String::new(),
                details: Vec::new(),
            }),
            http_response: Some(HttpResponse::OkResponse(OkHttpResponse {
                headers,
                headers_to_remove: remove,
                response_headers_to_add: add,
                ..Default::default()
            })),
            dynamic_metadata: metadata,
        }
    }

    fn check(headers: Vec<HeaderValueOption>, metadata: Option<Struct>, remove: Vec<String>) {
        check_with(headers, metadata, remove, Vec::new());
    }

    fn check_with(
        headers: Vec<HeaderValueOption>,
        metadata: Option<Struct>,
        remove: Vec<String>,
        add: Vec<HeaderValueOption>,
    ) {
        let want = as_message(
            headers.clone(),
            metadata.clone(),
            remove.clone(),
            add.clone(),
        );
        let reply = Reply::Allowed {
            principal: Arc::new(EncodedPrincipal::new(headers, metadata)),
            remove,
            add,
        };
        let mut bytes = Vec::new();
        reply.encode(&mut bytes);
        assert_eq!(bytes.len(), reply.encoded_len());
        assert_eq!(CheckResponse::decode(bytes.as_slice()).unwrap(), want);
        // With at most one map entry the order is fixed: byte for byte what prost writes.
        if want
            .dynamic_metadata
            .as_ref()
            .is_none_or(|m| m.fields.len() <= 1)
        {
            assert_eq!(bytes, want.encode_to_vec());
        }
    }

    fn metadata(fields: &[(&str, &str)]) -> Struct {
        Struct {
            fields: fields
                .iter()
                .map(|(k, v)| {
                    (
                        (*k).to_owned(),
                        Value {
                            kind: Some(Kind::StringValue((*v).to_owned())),
                        },
                    )
                })
                .collect(),
        }
    }

    #[test]
    fn an_encoded_allow_is_the_message_prost_would_encode() {
        check(vec![], None, vec![]);
        check(vec![], None, vec!["authorization".into()]);
        check(
            vec![header("x-latchkey-account-id", "acct_1")],
            Some(metadata(&[("account_id", "acct_1")])),
            vec![],
        );
        check(
            vec![
                header("x-latchkey-account-id", "acct_1"),
                header("x-latchkey-scopes", &"a.b,".repeat(100)),
            ],
            Some(metadata(&[("account_id", "acct_1"), ("scopes", "x")])),
            vec!["x-latchkey-admin".into(), "x-api-key".into()],
        );
    }

    /// The rate-limit fields for the downstream response (field 6) come
    /// after the removals, as prost orders them.
    #[test]
    fn an_allow_with_response_headers_is_the_message_prost_would_encode() {
        check_with(
            vec![header("x-latchkey-account-id", "acct_1")],
            Some(metadata(&[("account_id", "acct_1")])),
            vec!["authorization".into()],
            vec![
                header("x-ratelimit-limit", "100"),
                header("ratelimit", "\"key\";r=99;t=1"),
            ],
        );
        check_with(
            vec![],
            None,
            vec![],
            vec![header("x-ratelimit-remaining", "0")],
        );
    }

    #[test]
    fn a_denial_is_encoded_by_prost() {
        let m = CheckResponse {
            status: Some(rpc::Status {
                code: 7,
                message: "PERMISSION_DENIED".into(),
                details: Vec::new(),
            }),
            ..Default::default()
        };
        let reply = Reply::from(m.clone());
        let mut bytes = Vec::new();
        reply.encode(&mut bytes);
        assert_eq!(bytes, m.encode_to_vec());
        assert_eq!(bytes.len(), reply.encoded_len());
    }
}
