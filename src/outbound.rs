//! The outbound HTTPS client of integration connection tests (`ports::RemoteProbe`):
//! reqwest on rustls with the aws-lc-rs provider, no proxy, no redirects, a
//! bounded body, one time limit from DNS to the last byte.
//!
//! The outbound safety rule: https only, and every address the host resolves
//! to must be public (`domain::vault::kinds::is_public`); the connection is
//! then pinned to the addresses that were checked, so a second DNS answer
//! cannot swap in an internal one (DNS rebinding). With
//! `integrations.allow_insecure_targets` (tests, development) both are off.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;

use crate::config::IntegrationsSettings;
use crate::domain::model::{ProbeError, ProbeRequest, ProbeResponse};
use crate::domain::vault::kinds::is_public;
use crate::ports::RemoteProbe;

pub struct HttpsProbe {
    allow_insecure: bool,
    timeout: Duration,
    max_body: usize,
    extra_roots: Vec<reqwest::Certificate>,
    /// Webhook POSTs: one client per host and vetted address set, kept so
    /// that deliveries reuse its TLS set-up and pooled connections (building
    /// a client loads the trust roots: milliseconds each). A client is pinned
    /// to the addresses it was built for, so reusing it for the same vetted
    /// set keeps the safety rule; a new DNS answer gets a new client.
    clients: std::sync::Mutex<HashMap<(String, Vec<SocketAddr>), reqwest::Client>>,
}

/// Clients kept at most; past it the cache starts over.
const MAX_CLIENTS: usize = 256;

impl HttpsProbe {
    pub fn new(settings: &IntegrationsSettings) -> Result<Self, String> {
        let extra_roots = match &settings.ca_file {
            None => Vec::new(),
            Some(path) => {
                let pem = std::fs::read(path)
                    .map_err(|e| format!("integrations.ca_file {}: {e}", path.display()))?;
                reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                    format!(
                        "integrations.ca_file {}: not PEM certificates: {e}",
                        path.display()
                    )
                })?
            }
        };
        Ok(Self {
            allow_insecure: settings.allow_insecure_targets,
            timeout: settings.test_timeout,
            max_body: settings.max_body_bytes,
            extra_roots,
            clients: std::sync::Mutex::new(HashMap::new()),
        })
    }

    fn elapsed(start: Instant) -> i64 {
        i64::try_from(start.elapsed().as_millis()).unwrap_or(i64::MAX)
    }

    /// The addresses `host` resolves to, each one public unless allowed.
    async fn vetted(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, ProbeError> {
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
            .await
            .map_err(|e| ProbeError::Failed {
                message: format!("cannot resolve {host}: {e}"),
                latency_ms: 0,
            })?
            .collect();
        if addrs.is_empty() {
            return Err(ProbeError::Failed {
                message: format!("{host} has no address"),
                latency_ms: 0,
            });
        }
        if !self.allow_insecure
            && let Some(bad) = addrs.iter().find(|a| !is_public(a.ip()))
        {
            return Err(ProbeError::Refused(format!(
                "{host} resolves to {}, which is not a public address (loopback, private, \
                 link-local and metadata targets are refused)",
                bad.ip()
            )));
        }
        Ok(addrs)
    }

    async fn fetch(
        &self,
        request: &ProbeRequest,
        start: Instant,
    ) -> Result<ProbeResponse, ProbeError> {
        let refused = |why: &str| ProbeError::Refused(why.to_owned());
        let url = reqwest::Url::parse(&request.url).map_err(|_| refused("is not a URL"))?;
        match url.scheme() {
            "https" => {}
            "http" if self.allow_insecure => {}
            _ => return Err(refused("must be an https:// URL")),
        }
        let host = url
            .host_str()
            .ok_or_else(|| refused("must name a host"))?
            .to_owned();
        let port = url.port_or_known_default().unwrap_or(443);
        let host_for_dns = host.trim_start_matches('[').trim_end_matches(']');
        let addrs = self.vetted(host_for_dns, port).await?;
        let failed = |e: reqwest::Error| ProbeError::Failed {
            message: describe(&e),
            latency_ms: Self::elapsed(start),
        };
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .https_only(!self.allow_insecure)
            .tls_certs_merge(self.extra_roots.clone())
            .resolve_to_addrs(host_for_dns, &addrs)
            .build()
            .map_err(failed)?;
        let mut builder = client.get(url);
        for (name, value) in &request.headers {
            let mut value = reqwest::header::HeaderValue::from_str(value.expose())
                .map_err(|_| refused("a credential is not a valid header value"))?;
            value.set_sensitive(true);
            builder = builder.header(name.as_str(), value);
        }
        let mut response = builder.send().await.map_err(failed)?;
        let status = response.status().as_u16();
        let mut body = Vec::new();
        while body.len() < self.max_body {
            match response.chunk().await.map_err(failed)? {
                Some(chunk) => {
                    let room = self.max_body - body.len();
                    body.extend_from_slice(&chunk[..chunk.len().min(room)]);
                }
                None => break,
            }
        }
        Ok(ProbeResponse {
            status,
            body,
            latency_ms: Self::elapsed(start),
        })
    }
}

/// reqwest's error with its causes (the TLS reason is in a source), short.
fn describe(e: &reqwest::Error) -> String {
    let mut text = if e.is_connect() {
        "cannot connect".to_owned()
    } else if e.is_timeout() {
        "timed out".to_owned()
    } else {
        "request failed".to_owned()
    };
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text.chars().take(300).collect()
}

#[async_trait]
impl RemoteProbe for HttpsProbe {
    async fn get(&self, request: &ProbeRequest) -> Result<ProbeResponse, ProbeError> {
        let start = Instant::now();
        match tokio::time::timeout(self.timeout, self.fetch(request, start)).await {
            Ok(result) => result,
            Err(_) => Err(ProbeError::Failed {
                message: format!("timed out after {} ms", self.timeout.as_millis()),
                latency_ms: Self::elapsed(start),
            }),
        }
    }
}

// Webhook deliveries (issue 16): the same rule, for POSTs.
impl HttpsProbe {
    /// The kept client for `host` pinned to exactly `addrs`, or a new one.
    fn post_client(
        &self,
        host: String,
        addrs: Vec<SocketAddr>,
    ) -> Result<reqwest::Client, reqwest::Error> {
        let key = (host, addrs);
        let mut clients = self
            .clients
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(c) = clients.get(&key) {
            return Ok(c.clone());
        }
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .https_only(!self.allow_insecure)
            .tls_certs_merge(self.extra_roots.clone())
            .resolve_to_addrs(&key.0, &key.1)
            .build()?;
        if clients.len() >= MAX_CLIENTS {
            clients.clear();
        }
        clients.insert(key, client.clone());
        Ok(client)
    }

    /// The checked URL, host (for DNS) and its vetted addresses.
    async fn vet_url(
        &self,
        raw: &str,
    ) -> Result<(reqwest::Url, String, Vec<SocketAddr>), ProbeError> {
        let refused = |why: &str| ProbeError::Refused(why.to_owned());
        let url = reqwest::Url::parse(raw).map_err(|_| refused("is not a URL"))?;
        match url.scheme() {
            "https" => {}
            "http" if self.allow_insecure => {}
            _ => return Err(refused("must be an https:// URL")),
        }
        let host = url
            .host_str()
            .ok_or_else(|| refused("must name a host"))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = url.port_or_known_default().unwrap_or(443);
        let addrs = self.vetted(&host, port).await?;
        Ok((url, host, addrs))
    }

    async fn post_once(
        &self,
        post: &crate::domain::model::WebhookPost,
        start: Instant,
    ) -> Result<ProbeResponse, ProbeError> {
        let (url, host, addrs) = self.vet_url(&post.url).await?;
        let failed = |e: reqwest::Error| ProbeError::Failed {
            message: describe(&e),
            latency_ms: Self::elapsed(start),
        };
        let client = self.post_client(host, addrs).map_err(failed)?;
        let mut builder = client
            .post(url)
            .header("content-type", "application/json")
            .body(post.body.clone());
        for (name, value) in &post.headers {
            builder = builder.header(*name, value.as_str());
        }
        let mut response = builder.send().await.map_err(failed)?;
        let status = response.status().as_u16();
        let mut body = Vec::new();
        while body.len() < self.max_body {
            match response.chunk().await.map_err(failed)? {
                Some(chunk) => {
                    let room = self.max_body - body.len();
                    body.extend_from_slice(&chunk[..chunk.len().min(room)]);
                }
                None => break,
            }
        }
        Ok(ProbeResponse {
            status,
            body,
            latency_ms: Self::elapsed(start),
        })
    }
}

#[async_trait]
impl crate::ports::WebhookSender for HttpsProbe {
    async fn vet(&self, url: &str) -> Result<(), ProbeError> {
        self.vet_url(url).await.map(|_| ())
    }

    async fn post(
        &self,
        post: &crate::domain::model::WebhookPost,
    ) -> Result<ProbeResponse, ProbeError> {
        let start = Instant::now();
        match tokio::time::timeout(self.timeout, self.post_once(post, start)).await {
            Ok(result) => result,
            Err(_) => Err(ProbeError::Failed {
                message: format!("timed out after {} ms", self.timeout.as_millis()),
                latency_ms: Self::elapsed(start),
            }),
        }
    }
}
