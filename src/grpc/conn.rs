//! The gRPC port's accepted connections: a `TcpStream` with `TCP_NODELAY`
//! that reports no vectored writes.
//!
//! Why: h2 copies a DATA frame into its write buffer, behind the frames of
//! other streams, only while the payload is below a threshold: 256 bytes on
//! a connection with vectored writes, 1 KB without. A larger payload is
//! chained instead, and nothing else is buffered until that write is done, so
//! it costs a write of its own plus another for the frames after it. An
//! ext_authz allow (the principal headers and metadata) is about 400 bytes:
//! with vectored writes it took one more system call per call than a Check
//! (1.8 `writev`s per request against 0.8 under h2load), the largest cost of
//! ext_authz beyond Check's. Without them, responses up to 1 KB share
//! writes (0.64 `sendto`s per request for both); larger ones (listings) take
//! two plain writes instead of one `writev`.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tonic::transport::server::{Connected, TcpConnectInfo};

use crate::tls::MaybeTls;

pub struct GrpcConn(TcpStream);

impl GrpcConn {
    pub fn new(tcp: TcpStream) -> Self {
        // Without it, Nagle + delayed ACKs add ~40 ms to some responses
        // (`Server::tcp_nodelay` only applies when tonic binds the socket).
        let _ = tcp.set_nodelay(true);
        Self(tcp)
    }
}

impl Connected for GrpcConn {
    // The TcpStream's, so `Request::remote_addr` works as before.
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.0.connect_info()
    }
}

/// A connection of the TLS listener (`crate::tls::incoming`), handshake done.
pub struct TlsConn(pub MaybeTls);

impl Connected for TlsConn {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.0.tcp().connect_info()
    }
}

impl AsyncRead for TlsConn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsConn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_shutdown(cx)
    }
}

impl AsyncRead for GrpcConn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_read(cx, buf)
    }
}

impl AsyncWrite for GrpcConn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn keeps_the_peer_address_and_turns_vectored_writes_off() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (tcp, _) = listener.accept().await.unwrap();
        assert!(tcp.is_write_vectored(), "otherwise this test shows nothing");
        let conn = GrpcConn::new(tcp);
        assert!(!conn.is_write_vectored());
        assert!(conn.0.nodelay().unwrap());
        assert_eq!(
            conn.connect_info().remote_addr(),
            Some(client.local_addr().unwrap())
        );
    }
}
