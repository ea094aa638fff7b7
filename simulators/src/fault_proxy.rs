//! A TCP relay in front of a simulated server, to inject the network's faults
//! that a server library cannot: drop every open connection at once (a
//! firewall reset, a gateway reboot), stall (the link stays open, nothing
//! gets through) and refuse new connections (the server is down).
//!
//! Clients connect to the relay's address; each connection is relayed to the
//! upstream address in force when it was accepted, so the upstream server
//! can be replaced (a restart on a new port) behind an unchanged address.

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The relay's switches.
struct Switches {
    upstream: Mutex<SocketAddr>,
    /// Cancelled to drop every open connection; replaced by a fresh token.
    connections: Mutex<CancellationToken>,
    /// True while nothing is relayed.
    stalled: watch::Sender<bool>,
    /// True while new connections are closed at once.
    refusing: Mutex<bool>,
    accepted: Mutex<u64>,
}

/// A running relay; stops when dropped.
pub struct FaultProxy {
    address: SocketAddr,
    switches: Arc<Switches>,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for FaultProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaultProxy")
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

impl FaultProxy {
    /// Relays connections accepted on `listener` to `upstream`.
    pub fn start(listener: TcpListener, upstream: SocketAddr) -> io::Result<Self> {
        let address = listener.local_addr()?;
        let switches = Arc::new(Switches {
            upstream: Mutex::new(upstream),
            connections: Mutex::new(CancellationToken::new()),
            stalled: watch::channel(false).0,
            refusing: Mutex::new(false),
            accepted: Mutex::new(0),
        });
        let task = tokio::spawn(accept_loop(listener, switches.clone()));
        Ok(Self {
            address,
            switches,
            task,
        })
    }

    /// Where clients connect.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Connections accepted so far (refused ones included).
    pub fn accepted(&self) -> u64 {
        *lock(&self.switches.accepted)
    }

    /// Relays new connections to `upstream` from now on.
    pub fn set_upstream(&self, upstream: SocketAddr) {
        *lock(&self.switches.upstream) = upstream;
    }

    /// Drops every open connection (both sides see the socket close); new ones
    /// are relayed as before.
    pub fn close_connections(&self) {
        let mut token = lock(&self.switches.connections);
        token.cancel();
        *token = CancellationToken::new();
    }

    /// While `stalled`, open connections stay open but nothing is relayed
    /// either way (bytes wait in the sockets' buffers).
    pub fn set_stalled(&self, stalled: bool) {
        self.switches.stalled.send_replace(stalled);
    }

    /// While `refusing`, new connections are closed as soon as they are accepted.
    pub fn set_refusing(&self, refusing: bool) {
        *lock(&self.switches.refusing) = refusing;
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
        self.close_connections();
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

async fn accept_loop(listener: TcpListener, switches: Arc<Switches>) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            continue;
        };
        *lock(&switches.accepted) += 1;
        if *lock(&switches.refusing) {
            drop(client);
            continue;
        }
        let upstream = *lock(&switches.upstream);
        let closed = lock(&switches.connections).clone();
        let stalled = switches.stalled.subscribe();
        tokio::spawn(async move {
            let Ok(server) = TcpStream::connect(upstream).await else {
                return;
            };
            let _ = client.set_nodelay(true);
            let _ = server.set_nodelay(true);
            let (client_read, client_write) = client.into_split();
            let (server_read, server_write) = server.into_split();
            tokio::select! {
                () = closed.cancelled() => {}
                () = pump(client_read, server_write, stalled.clone()) => {}
                () = pump(server_read, client_write, stalled) => {}
            }
        });
    }
}

/// Copies one direction until either side closes, holding while stalled.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut stalled: watch::Receiver<bool>,
) {
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        if stalled.wait_for(|s| !*s).await.is_err() {
            return;
        }
        let n = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        // Bytes read just before a stall are held back too.
        if stalled.wait_for(|s| !*s).await.is_err() {
            return;
        }
        if to.write_all(&buffer[..n]).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn echo_server() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 1024];
                    while let Ok(n) = socket.read(&mut buf).await {
                        if n == 0 || socket.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        address
    }

    async fn round_trip(stream: &mut TcpStream, text: &[u8]) -> io::Result<Vec<u8>> {
        stream.write_all(text).await?;
        let mut answer = vec![0u8; text.len()];
        stream.read_exact(&mut answer).await?;
        Ok(answer)
    }

    #[tokio::test]
    async fn relays_stalls_closes_and_refuses() {
        let upstream = echo_server().await;
        let proxy =
            FaultProxy::start(TcpListener::bind("127.0.0.1:0").await.unwrap(), upstream).unwrap();
        let mut client = TcpStream::connect(proxy.address()).await.unwrap();
        assert_eq!(round_trip(&mut client, b"abc").await.unwrap(), b"abc");

        proxy.set_stalled(true);
        client.write_all(b"held").await.unwrap();
        let mut answer = [0u8; 4];
        let waited = tokio::time::timeout(
            std::time::Duration::from_millis(200),
            client.read_exact(&mut answer),
        )
        .await;
        assert!(waited.is_err(), "a stalled relay let bytes through");
        proxy.set_stalled(false);
        client.read_exact(&mut answer).await.unwrap();
        assert_eq!(&answer, b"held");

        proxy.close_connections();
        let mut rest = Vec::new();
        let n = client.read_to_end(&mut rest).await.unwrap_or(0);
        assert_eq!(n, 0, "the relay kept the connection open");

        let mut again = TcpStream::connect(proxy.address()).await.unwrap();
        assert_eq!(round_trip(&mut again, b"new").await.unwrap(), b"new");

        proxy.set_refusing(true);
        let mut refused = TcpStream::connect(proxy.address()).await.unwrap();
        assert!(round_trip(&mut refused, b"x").await.is_err());
        assert_eq!(proxy.accepted(), 3);
    }
}
