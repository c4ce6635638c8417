//! A TCP listener whose connections a handler can kill, so faults look like real
//! transport failures (the client gets no HTTP answer at all) rather than error responses.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::connect_info::Connected;
use axum::serve::{IncomingStream, Listener};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

/// Accepts TCP connections and tags each with a kill switch.
pub(super) struct KillableListener {
    inner: TcpListener,
    next_id: u64,
}

impl KillableListener {
    pub(super) fn new(inner: TcpListener) -> Self {
        Self { inner, next_id: 0 }
    }
}

/// The receive buffer of each connection when OSS takes bytes at a set rate (Linux doubles
/// it for bookkeeping).
const SLOW_LINK_RECV_BUFFER: u32 = 64 * 1024;

/// Listens on `addr`. With `slow_link` every connection gets a small fixed receive buffer:
/// the sandbox models a slow OSS link by reading slowly, and the kernel's buffer, which on
/// loopback grows to tens of MiB, would otherwise take in what that link has not carried
/// yet, so the client would hand over its last byte long before OSS has it and wait for
/// the answer in silence. Accepted connections inherit the listener's buffer size.
pub(super) fn listen(addr: SocketAddr, slow_link: bool) -> io::Result<TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    // As `TcpListener::bind` does: a restarted sandbox gets its port back at once.
    socket.set_reuseaddr(true)?;
    if slow_link {
        socket.set_recv_buffer_size(SLOW_LINK_RECV_BUFFER)?;
    }
    socket.bind(addr)?;
    socket.listen(1024)
}

/// Per-connection info handed to handlers through `ConnectInfo`.
#[derive(Debug, Clone)]
pub(super) struct ConnTag {
    id: u64,
    peer: SocketAddr,
    killed: Arc<AtomicBool>,
}

impl ConnTag {
    /// The client's address.
    pub(super) fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// From now on the connection neither reads nor writes; hyper then drops it, so
    /// whatever response is in flight never leaves and the client sees the socket close.
    pub(super) fn kill(&self) {
        tracing::debug!(conn = self.id, peer = %self.peer, "sandbox: killing connection");
        self.killed.store(true, Ordering::SeqCst);
    }
}

impl Listener for KillableListener {
    type Io = KillableIo;
    type Addr = ConnTag;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.inner.accept().await {
                Ok((stream, peer)) => {
                    // Small JSON exchanges otherwise wait on Nagle + delayed ACK.
                    if let Err(e) = stream.set_nodelay(true) {
                        tracing::debug!("sandbox: set_nodelay failed: {e}");
                    }
                    self.next_id += 1;
                    let killed = Arc::new(AtomicBool::new(false));
                    let tag = ConnTag {
                        id: self.next_id,
                        peer,
                        killed: Arc::clone(&killed),
                    };
                    return (
                        KillableIo {
                            inner: stream,
                            killed,
                        },
                        tag,
                    );
                }
                Err(e) => {
                    // Typically EMFILE; back off instead of spinning, as axum's own listener does.
                    tracing::debug!("sandbox: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(ConnTag {
            id: 0,
            peer: self.inner.local_addr()?,
            killed: Arc::new(AtomicBool::new(false)),
        })
    }
}

impl Connected<IncomingStream<'_, KillableListener>> for ConnTag {
    fn connect_info(stream: IncomingStream<'_, KillableListener>) -> Self {
        stream.remote_addr().clone()
    }
}

/// A TCP stream that fails every operation once its connection was killed.
pub(super) struct KillableIo {
    inner: TcpStream,
    killed: Arc<AtomicBool>,
}

impl KillableIo {
    fn dead(&self) -> bool {
        self.killed.load(Ordering::SeqCst)
    }
}

fn aborted() -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionAborted,
        "sandbox fault: connection killed",
    )
}

impl AsyncRead for KillableIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.dead() {
            return Poll::Ready(Err(aborted()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for KillableIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.dead() {
            return Poll::Ready(Err(aborted()));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if self.dead() {
            return Poll::Ready(Err(aborted()));
        }
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.dead() {
            return Poll::Ready(Err(aborted()));
        }
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
