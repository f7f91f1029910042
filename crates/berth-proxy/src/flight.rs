//! Single-flight blob fetches. The first miss of a (upstream, repository, digest) starts
//! one fetch; every client that misses the same blob meanwhile reads the same bytes. The
//! fetch spools the upstream's body to an unlinked-on-drop file as it arrives, and each
//! reader — the clients, and the cache fill that writes the blob store — follows the
//! spool at its own pace, so a slow or vanished client slows or stops nobody else, and no
//! blob is ever held in memory. The last byte is only made readable once the whole body's
//! digest is checked: no client ever completes a blob that does not match.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth_core::{Digest, DigestHasher};
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{oneshot, watch};

use crate::upstream::{BlobBody, UpstreamClient, UpstreamError};

/// Bytes written to the spool before readers are told (and the read size).
const PIECE: usize = 256 * 1024;

/// Who a flight is for: one upstream's blob, fetched through one repository, cached into
/// one local repository (its fill links the blob there only: two local names of one
/// upstream repository, `hub/app` and `hub/library/app`, fly separately).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FlightKey {
    pub upstream: i64,
    pub repository: String,
    pub digest: Digest,
    pub local: String,
}

/// How far a fetch has got.
#[derive(Debug, Clone)]
struct Progress {
    /// Bytes readers may read from the spool.
    readable: u64,
    /// Set once the fetch ended: `Ok` with every byte readable, or why it failed.
    done: Option<Result<(), UpstreamError>>,
    /// Set once the cache fill ended: whether the blob is now in the repository.
    cached: Option<bool>,
}

/// One fetch in progress. Readers hold it (and so its spool) until they finish.
pub struct Flight {
    pub size: u64,
    spool: Arc<tempfile::NamedTempFile>,
    progress: watch::Receiver<Progress>,
}

impl Flight {
    /// Read the blob from the start, waiting for the fetch as needed.
    pub fn reader(self: &Arc<Self>) -> crate::ByteStream {
        struct State {
            flight: Arc<Flight>,
            progress: watch::Receiver<Progress>,
            file: Option<tokio::fs::File>,
            position: u64,
        }
        let state = State {
            flight: self.clone(),
            progress: self.progress.clone(),
            file: None,
            position: 0,
        };
        Box::pin(futures_util::stream::unfold(
            Some(state),
            |state| async move {
                let mut state = state?;
                loop {
                    let progress = state.progress.borrow_and_update().clone();
                    if state.position < progress.readable {
                        let file = match &mut state.file {
                            Some(file) => file,
                            None => match tokio::fs::File::open(state.flight.spool.path()).await {
                                Ok(file) => state.file.insert(file),
                                Err(e) => return Some((Err(e), None)),
                            },
                        };
                        let want = (progress.readable - state.position).min(PIECE as u64) as usize;
                        let mut buffer = BytesMut::zeroed(want);
                        if let Err(e) = file.read_exact(&mut buffer).await {
                            return Some((Err(e), None));
                        }
                        state.position += want as u64;
                        return Some((Ok(buffer.freeze()), Some(state)));
                    }
                    match progress.done {
                        Some(Ok(())) => return None,
                        Some(Err(e)) => return Some((Err(std::io::Error::other(e)), None)),
                        None => {
                            if state.progress.changed().await.is_err() {
                                let gone = std::io::Error::other("the upstream fetch stopped");
                                return Some((Err(gone), None));
                            }
                        }
                    }
                }
            },
        ))
    }

    /// Wait for the cache fill: whether the blob is now in the repository.
    pub async fn cached(&self) -> bool {
        let mut progress = self.progress.clone();
        let cached = progress.wait_for(|p| p.cached.is_some()).await;
        cached.ok().and_then(|p| p.cached).unwrap_or(false)
    }

    /// Wait for the end of the fetch: whether every byte arrived and matched.
    pub async fn finished(&self) -> Result<(), UpstreamError> {
        let mut progress = self.progress.clone();
        let done = progress
            .wait_for(|p| p.done.is_some())
            .await
            .map(|p| p.done.clone());
        match done {
            Ok(Some(result)) => result,
            _ => Err(stopped()),
        }
    }
}

/// The flights in progress on this node.
#[derive(Default)]
pub struct Flights {
    running: Mutex<HashMap<FlightKey, Slot>>,
    /// Upstream blob fetches started, for tests and metrics.
    pub started: std::sync::atomic::AtomicU64,
}

enum Slot {
    /// The upstream has not answered yet: who else waits for the answer.
    Starting(Vec<oneshot::Sender<Result<Arc<Flight>, UpstreamError>>>),
    Flying(Arc<Flight>),
}

/// How long a finished flight stays joinable after the cache has the blob: a client that
/// missed the cache just before the blob was linked still joins it instead of fetching again.
const LINGER: Duration = Duration::from_secs(5);

/// What fills the cache from a flight (a reader of it), run next to the fetch: whether the
/// blob is now cached.
pub type Fill = Box<dyn FnOnce(Arc<Flight>) -> BoxFuture<'static, bool> + Send>;

impl Flights {
    /// Join the flight for `key`, or start it. Waits for the upstream's first answer (the
    /// blob's size, or an error); the body continues in the background, where `fill`
    /// reads it too, whether or not any client still does.
    pub async fn join(
        self: &Arc<Self>,
        key: FlightKey,
        client: Arc<UpstreamClient>,
        spool_dir: PathBuf,
        fill: Fill,
    ) -> Result<Arc<Flight>, UpstreamError> {
        let waiting = {
            let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
            match running.get_mut(&key) {
                Some(Slot::Flying(flight)) => return Ok(flight.clone()),
                Some(Slot::Starting(waiters)) => {
                    let (tx, rx) = oneshot::channel();
                    waiters.push(tx);
                    Some(rx)
                }
                None => {
                    running.insert(key.clone(), Slot::Starting(Vec::new()));
                    None
                }
            }
        };
        let answer = match waiting {
            Some(rx) => rx,
            None => {
                self.started.fetch_add(1, Ordering::Relaxed);
                let (tx, rx) = oneshot::channel();
                // Its own task: a client that goes away does not stop the fetch others use.
                tokio::spawn(fly(self.clone(), key, client, spool_dir, tx, fill));
                rx
            }
        };
        answer.await.unwrap_or_else(|_| Err(stopped()))
    }

    /// The upstream answered: hand the flight (or the error) to everyone waiting.
    fn answered(&self, key: &FlightKey, result: &Result<Arc<Flight>, UpstreamError>) {
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        let waiters = match result {
            Ok(flight) => running.insert(key.clone(), Slot::Flying(flight.clone())),
            Err(_) => running.remove(key),
        };
        drop(running);
        if let Some(Slot::Starting(waiters)) = waiters {
            for waiter in waiters {
                let _ = waiter.send(result.clone());
            }
        }
    }

    fn remove(&self, key: &FlightKey) {
        self.running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
    }
}

fn stopped() -> UpstreamError {
    UpstreamError::Local("the upstream fetch stopped".into())
}

async fn fly(
    flights: Arc<Flights>,
    key: FlightKey,
    client: Arc<UpstreamClient>,
    spool_dir: PathBuf,
    ready: oneshot::Sender<Result<Arc<Flight>, UpstreamError>>,
    fill: Fill,
) {
    let started = async {
        let body = client.get_blob(&key.repository, &key.digest).await?;
        let spool = tempfile::NamedTempFile::new_in(&spool_dir).map_err(|e| {
            UpstreamError::Local(format!("cannot spool in {}: {e}", spool_dir.display()))
        })?;
        let writer = spool
            .reopen()
            .map_err(|e| UpstreamError::Local(format!("cannot spool: {e}")))?;
        Ok((body, spool, writer))
    }
    .await;
    let (body, spool, writer) = match started {
        Ok(started) => started,
        Err(e) => {
            let e: UpstreamError = e;
            flights.answered(&key, &Err(e.clone()));
            let _ = ready.send(Err(e));
            return;
        }
    };
    let (progress, watched) = watch::channel(Progress {
        readable: 0,
        done: None,
        cached: None,
    });
    let flight = Arc::new(Flight {
        size: body.size,
        spool: Arc::new(spool),
        progress: watched,
    });
    flights.answered(&key, &Ok(flight.clone()));
    let _ = ready.send(Ok(flight.clone()));
    let filling = tokio::spawn(fill(flight.clone()));
    let result = spool_body(
        body,
        tokio::fs::File::from_std(writer),
        &key.digest,
        &progress,
    )
    .await;
    if let Err(e) = &result {
        tracing::warn!(upstream = %client.base(), repository = %key.repository, digest = %key.digest, error = %e, "proxy fetch failed");
    }
    let size = flight.size;
    let failed = result.is_err();
    progress.send_modify(|p| {
        if result.is_ok() {
            p.readable = size;
        }
        p.done = Some(result);
    });
    let cached = filling.await.unwrap_or(false);
    progress.send_modify(|p| p.cached = Some(cached));
    // A failed fetch is not joined again: the next miss asks the upstream anew.
    if !failed {
        tokio::time::sleep(LINGER).await;
    }
    flights.remove(&key);
}

/// Write the body to the spool piece by piece, telling readers how far they may read; the
/// last byte only once the digest matched.
async fn spool_body(
    mut body: BlobBody,
    mut file: tokio::fs::File,
    digest: &Digest,
    progress: &watch::Sender<Progress>,
) -> Result<(), UpstreamError> {
    let local = |e: std::io::Error| UpstreamError::Local(format!("cannot spool: {e}"));
    let mut hasher = DigestHasher::new(digest.algorithm());
    let mut pending = BytesMut::with_capacity(PIECE);
    let mut written = 0u64;
    loop {
        let chunk = body.stream.next().await.transpose()?;
        let end = chunk.is_none();
        if let Some(chunk) = &chunk {
            if written + (pending.len() + chunk.len()) as u64 > body.size {
                return Err(UpstreamError::Invalid {
                    url: String::new(),
                    what: format!(
                        "more than the {} bytes it announced for {digest}",
                        body.size
                    ),
                });
            }
            pending.extend_from_slice(chunk);
        }
        if pending.len() >= PIECE || (end && !pending.is_empty()) {
            let piece: Bytes = pending.split().freeze();
            hasher.update(&piece);
            file.write_all(&piece).await.map_err(local)?;
            // tokio's file finishes writes in the background: readers must find the bytes.
            file.flush().await.map_err(local)?;
            written += piece.len() as u64;
            let readable = written.min(body.size.saturating_sub(1));
            progress.send_modify(|p| p.readable = readable);
        }
        if end {
            break;
        }
    }
    if written != body.size {
        return Err(UpstreamError::Invalid {
            url: String::new(),
            what: format!(
                "{written} of the {} bytes it announced for {digest}",
                body.size
            ),
        });
    }
    let actual = hasher.finish();
    if &actual != digest {
        return Err(UpstreamError::Invalid {
            url: String::new(),
            what: format!("bytes of {actual} for blob {digest}"),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use berth_core::Algorithm;

    use super::*;
    use crate::upstream::UpstreamConfig;

    /// An upstream on 127.0.0.1 that answers every blob GET with `body` and counts them.
    async fn upstream(body: Vec<u8>) -> (Arc<UpstreamClient>, Arc<AtomicUsize>) {
        let gets = Arc::new(AtomicUsize::new(0));
        let counted = gets.clone();
        let router = axum::Router::new().fallback(move || {
            let body = body.clone();
            counted.fetch_add(1, Ordering::SeqCst);
            async move { body }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        let client = UpstreamClient::new(UpstreamConfig {
            kind: "docker-registry".into(),
            url,
            insecure: false,
            ca_cert: None,
            credential: None,
            timeout: Duration::from_secs(5),
        })
        .expect("client");
        (Arc::new(client), gets)
    }

    fn no_fill() -> Fill {
        Box::new(|_| Box::pin(async { false }))
    }

    async fn read_all(mut stream: crate::ByteStream) -> (Vec<u8>, Option<std::io::Error>) {
        let mut bytes = Vec::new();
        while let Some(piece) = stream.next().await {
            match piece {
                Ok(piece) => bytes.extend_from_slice(&piece),
                Err(e) => return (bytes, Some(e)),
            }
        }
        (bytes, None)
    }

    #[tokio::test]
    async fn bytes_that_do_not_match_the_digest_never_reach_a_client_whole() {
        let body = vec![7u8; 3 * PIECE + 5];
        let expected = Digest::of(Algorithm::Sha256, b"what the manifest promised");
        let (client, _) = upstream(body.clone()).await;
        let spool = tempfile::tempdir().expect("dir");
        let flights = Arc::new(Flights::default());
        let key = FlightKey {
            upstream: 1,
            repository: "lib/app".into(),
            digest: expected,
            local: "cache/lib/app".into(),
        };
        let flight = flights
            .join(key, client, spool.path().to_owned(), no_fill())
            .await
            .expect("the upstream answered");
        let (bytes, error) = read_all(flight.reader()).await;
        assert!(error.is_some(), "the read must fail");
        assert!(bytes.len() < body.len(), "the last byte is held back");
        assert!(matches!(
            flight.finished().await,
            Err(UpstreamError::Invalid { .. })
        ));
    }

    #[tokio::test]
    async fn clients_joining_one_flight_make_one_upstream_request_and_read_every_byte() {
        let body: Vec<u8> = (0..5 * PIECE + 17).map(|i| (i % 253) as u8).collect();
        let digest = Digest::of(Algorithm::Sha256, &body);
        let (client, gets) = upstream(body.clone()).await;
        let spool = tempfile::tempdir().expect("dir");
        let flights = Arc::new(Flights::default());
        let readers = (0..10).map(|_| {
            let (flights, client) = (flights.clone(), client.clone());
            let key = FlightKey {
                upstream: 1,
                repository: "lib/app".into(),
                digest: digest.clone(),
                local: "cache/lib/app".into(),
            };
            let dir = spool.path().to_owned();
            tokio::spawn(async move {
                let flight = flights
                    .join(key, client, dir, no_fill())
                    .await
                    .expect("join");
                read_all(flight.reader()).await
            })
        });
        for reader in readers.collect::<Vec<_>>() {
            let (bytes, error) = reader.await.expect("task");
            assert!(error.is_none());
            assert!(bytes == body);
        }
        assert_eq!(gets.load(Ordering::SeqCst), 1);
        assert_eq!(flights.started.load(Ordering::SeqCst), 1);
    }
}
