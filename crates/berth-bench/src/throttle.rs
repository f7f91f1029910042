//! A TCP relay that stands for a wide-area link in front of an upstream registry: every
//! byte the upstream sends, on all connections together, passes one link of a fixed rate.
//! Used by bench (k) to measure the proxy cache where a proxy is meant to live, with its
//! upstream farther away than its clients; requests (client to upstream) are not slowed.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::Result;

/// One read of the upstream's bytes.
const SLICE: usize = 256 * 1024;

/// How far a sender may run ahead of the link before it waits: timers are coarser than
/// one slice's crossing, so waiting for each slice would carry far less than the rate.
const SLACK: Duration = Duration::from_millis(5);

/// The link: when it is next free to carry bytes. Every slice of every connection books
/// its time on it in turn, so together they never exceed the rate (over more than
/// [`SLACK`]).
struct Link {
    bytes_per_sec: f64,
    free_at: Mutex<Instant>,
}

impl Link {
    /// Book `bytes` on the link; when the sender may go on (`None`: at once).
    async fn book(&self, bytes: usize) -> Option<Instant> {
        let crossing = Duration::from_secs_f64(bytes as f64 / self.bytes_per_sec);
        let mut free_at = self.free_at.lock().await;
        let now = Instant::now();
        *free_at = (*free_at).max(now) + crossing;
        (*free_at > now + SLACK).then(|| *free_at - SLACK)
    }
}

/// Relay `listen` to `upstream` until killed; the upstream's bytes at `mib_per_sec`.
pub async fn run(listen: &str, upstream: &str, mib_per_sec: f64) -> Result<()> {
    if mib_per_sec <= 0.0 {
        return Err("--mib-per-sec must be above 0".into());
    }
    let link = Arc::new(Link {
        bytes_per_sec: mib_per_sec * 1024.0 * 1024.0,
        free_at: Mutex::new(Instant::now()),
    });
    let listener = TcpListener::bind(listen).await?;
    let ready = serde_json::json!({
        "op": "throttle",
        "listen": listener.local_addr()?.to_string(),
        "upstream": upstream,
        "mib_per_sec": mib_per_sec,
    });
    println!("{ready}");
    loop {
        let (client, _) = listener.accept().await?;
        let upstream = upstream.to_owned();
        let link = link.clone();
        tokio::spawn(async move {
            if let Ok(server) = TcpStream::connect(&upstream).await {
                relay(client, server, link).await;
            }
        });
    }
}

/// Both directions until either side closes; the server's bytes through the link.
async fn relay(client: TcpStream, server: TcpStream, link: Arc<Link>) {
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let requests = async {
        let _ = tokio::io::copy(&mut client_read, &mut server_write).await;
        let _ = server_write.shutdown().await;
    };
    let answers = async {
        let mut buffer = vec![0u8; SLICE];
        loop {
            let n = match server_read.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if let Some(until) = link.book(n).await {
                tokio::time::sleep_until(until).await;
            }
            if client_write.write_all(&buffer[..n]).await.is_err() {
                break;
            }
        }
        let _ = client_write.shutdown().await;
    };
    tokio::join!(requests, answers);
}
