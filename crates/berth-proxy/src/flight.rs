//! Single-flight blob fetches. The first miss of a (upstream, repository, digest) starts
//! one fetch; every client that misses the same blob meanwhile reads the same bytes. The
//! fetch writes the upstream's body once, hashed once, into the registry's staging for the
//! blob (`Registry::stage_blob`: an upload area of the blob store, or a local spool when the
//! store is S3), and keeps the last few MiB it received in memory. Each reader — a client —
//! follows at its own pace: from memory while it keeps up, from the file when it falls
//! behind; so a slow or vanished client slows or stops nobody else, and no blob is ever held
//! in memory whole. The last byte is only made readable once the whole body's digest is
//! checked: no client ever completes a blob that does not match, and only a blob that
//! matched is committed to the cache (`Registry::commit_staged`).

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth_core::{Digest, RepositoryName};
use berth_registry::{Registry, StagedBlob};
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use tokio::sync::{oneshot, watch};

use crate::upstream::{BlobBody, UpstreamClient, UpstreamError};

/// Smaller pieces of the upstream's body are gathered to this size before they are written
/// and announced, so that neither the writer nor the readers pay per network read.
const PIECE: usize = 256 * 1024;

/// How much of what arrived last is kept in memory for the readers that keep up (beyond it,
/// only pieces the file does not hold yet).
const RECENT: u64 = 8 * 1024 * 1024;

/// Who a flight is for: one upstream's blob, fetched through one repository, cached into
/// one local repository (it is linked there only: two local names of one upstream
/// repository, `hub/app` and `hub/library/app`, fly separately).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FlightKey {
    pub upstream: i64,
    pub repository: String,
    pub digest: Digest,
    pub local: RepositoryName,
}

/// How far a fetch has got.
#[derive(Debug, Clone, Default)]
struct Progress {
    /// Bytes received (in memory or in the file; the last byte is held back until `done`).
    received: u64,
    /// Set once the fetch ended: `Ok` once every byte arrived and matched, or why it failed.
    done: Option<Result<(), UpstreamError>>,
    /// Set once the cache fill ended: whether the blob is now in the repository.
    cached: Option<bool>,
}

/// The pieces received last, in order and contiguous.
#[derive(Default)]
struct Recent {
    pieces: VecDeque<(u64, Bytes)>,
    held: u64,
}

/// Where a reader finds the bytes at its position.
enum Found {
    Memory(Bytes),
    /// In the file only, up to this offset (where memory starts).
    File {
        until: u64,
    },
}

impl Recent {
    /// The bytes at `at`, not past `limit` (which is at most what arrived).
    fn find(&self, at: u64, limit: u64) -> Found {
        let index = self
            .pieces
            .partition_point(|(start, piece)| start + piece.len() as u64 <= at);
        match self.pieces.get(index) {
            Some((start, piece)) if *start <= at => {
                let from = (at - start) as usize;
                let to = ((limit - start) as usize).min(piece.len());
                Found::Memory(piece.slice(from..to))
            }
            Some((start, _)) => Found::File { until: *start },
            // Nothing kept: everything that arrived is in the file.
            None => Found::File { until: limit },
        }
    }

    /// Keep `piece` (at offset `at`), and let the oldest go while more than [`RECENT`] is
    /// kept, as far as the file holds them (`written`).
    fn push(&mut self, at: u64, piece: Bytes, written: u64) {
        self.held += piece.len() as u64;
        self.pieces.push_back((at, piece));
        while self.held > RECENT
            && let Some((start, oldest)) = self.pieces.front()
            && start + oldest.len() as u64 <= written
        {
            self.held -= oldest.len() as u64;
            self.pieces.pop_front();
        }
    }

    fn clear(&mut self) {
        self.pieces.clear();
        self.held = 0;
    }
}

/// One fetch in progress. Readers hold it (and so its file) until they finish.
pub struct Flight {
    pub size: u64,
    file: Arc<File>,
    recent: Mutex<Recent>,
    progress: watch::Receiver<Progress>,
}

impl Flight {
    /// Read the blob from the start, waiting for the fetch as needed.
    pub fn reader(self: &Arc<Self>) -> crate::ByteStream {
        struct State {
            flight: Arc<Flight>,
            progress: watch::Receiver<Progress>,
            position: u64,
            /// A stretch being read from the file (the reader fell behind memory).
            from_file: Option<crate::ByteStream>,
        }
        let state = State {
            flight: self.clone(),
            progress: self.progress.clone(),
            position: 0,
            from_file: None,
        };
        Box::pin(futures_util::stream::unfold(
            Some(state),
            |state| async move {
                let mut state = state?;
                loop {
                    if let Some(stretch) = &mut state.from_file {
                        match stretch.next().await {
                            Some(Ok(bytes)) => {
                                state.position += bytes.len() as u64;
                                return Some((Ok(bytes), Some(state)));
                            }
                            Some(Err(e)) => return Some((Err(e), None)),
                            None => state.from_file = None,
                        }
                        continue;
                    }
                    let progress = state.progress.borrow_and_update().clone();
                    let size = state.flight.size;
                    let limit = match progress.done {
                        Some(Ok(())) => size,
                        _ => progress.received.min(size.saturating_sub(1)),
                    };
                    if state.position < limit {
                        let found = state
                            .flight
                            .recent
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .find(state.position, limit);
                        match found {
                            Found::Memory(bytes) => {
                                state.position += bytes.len() as u64;
                                return Some((Ok(bytes), Some(state)));
                            }
                            Found::File { until } => {
                                let len = until.min(limit) - state.position;
                                state.from_file = Some(berth_storage::local::read_range(
                                    state.flight.file.clone(),
                                    state.position,
                                    len,
                                ));
                                continue;
                            }
                        }
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

/// The flights in progress on this node, and where they cache what they fetch.
pub struct Flights {
    registry: Arc<Registry>,
    /// Where blobs are spooled when the blob store's upload areas are not local files.
    spool_dir: PathBuf,
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

impl Flights {
    /// Flights that cache into `registry` (spooling in `spool_dir` when they must).
    pub fn new(registry: Arc<Registry>, spool_dir: PathBuf) -> Flights {
        Flights {
            registry,
            spool_dir,
            running: Default::default(),
            started: Default::default(),
        }
    }

    /// Join the flight for `key`, or start it. Waits for the upstream's first answer (the
    /// blob's size, or an error); the body continues in the background and is cached,
    /// whether or not any client still reads it.
    pub async fn join(
        self: &Arc<Self>,
        key: FlightKey,
        client: Arc<UpstreamClient>,
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
                tokio::spawn(fly(self.clone(), key, client, tx));
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
    ready: oneshot::Sender<Result<Arc<Flight>, UpstreamError>>,
) {
    let started = async {
        let body = client.get_blob(&key.repository, &key.digest).await?;
        let staged = flights
            .registry
            .stage_blob(&key.local, &key.digest, &flights.spool_dir)
            .await
            .map_err(|e| UpstreamError::Local(format!("cannot stage {}: {e}", key.digest)))?;
        Ok((body, staged))
    }
    .await;
    let (body, mut staged) = match started {
        Ok(started) => started,
        Err(e) => {
            let e: UpstreamError = e;
            flights.answered(&key, &Err(e.clone()));
            let _ = ready.send(Err(e));
            return;
        }
    };
    let (progress, watched) = watch::channel(Progress::default());
    let flight = Arc::new(Flight {
        size: body.size,
        file: staged.file(),
        recent: Default::default(),
        progress: watched,
    });
    flights.answered(&key, &Ok(flight.clone()));
    let _ = ready.send(Ok(flight.clone()));
    let size = body.size;
    let verified = match receive(body, &mut staged, &flight, &progress, &key.digest).await {
        Ok(()) => staged.finish(size).await.map_err(|e| match e {
            berth_registry::Error::DigestMismatch { actual, .. } => UpstreamError::Invalid {
                url: String::new(),
                what: format!("bytes of {actual} for blob {}", key.digest),
            },
            e => UpstreamError::Local(format!("cannot stage {}: {e}", key.digest)),
        }),
        Err(e) => {
            staged.abandon().await;
            Err(e)
        }
    };
    if let Err(e) = &verified {
        tracing::warn!(upstream = %client.base(), repository = %key.repository, digest = %key.digest, error = %e, "proxy fetch failed");
    }
    let failed = verified.is_err();
    progress.send_modify(|p| p.done = Some(verified.as_ref().map(drop).map_err(Clone::clone)));
    let cached = match verified {
        Ok(blob) => match flights.registry.commit_staged(blob).await {
            Ok(_) => true,
            Err(e) => {
                tracing::warn!(repository = %key.local, digest = %key.digest, error = %e, "blob not cached");
                false
            }
        },
        Err(_) => false,
    };
    progress.send_modify(|p| p.cached = Some(cached));
    // Readers still going (or joining while it lingers) read the rest from the file.
    flight
        .recent
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clear();
    // A failed fetch is not joined again: the next miss asks the upstream anew.
    if !failed {
        tokio::time::sleep(LINGER).await;
    }
    flights.remove(&key);
}

/// Receive the body: gather it into pieces, keep each in memory for the readers and tell
/// them, and hand it to the staging's writer (which writes and hashes it on its own thread).
async fn receive(
    mut body: BlobBody,
    staged: &mut StagedBlob,
    flight: &Flight,
    progress: &watch::Sender<Progress>,
    digest: &Digest,
) -> Result<(), UpstreamError> {
    let local = |e: berth_registry::Error| UpstreamError::Local(format!("cannot stage: {e}"));
    let written = staged.written();
    let mut pending = BytesMut::new();
    let mut received = 0u64;
    loop {
        let chunk = body.stream.next().await.transpose()?;
        let piece = match chunk {
            Some(chunk) => {
                if received + (pending.len() + chunk.len()) as u64 > body.size {
                    return Err(UpstreamError::Invalid {
                        url: String::new(),
                        what: format!(
                            "more than the {} bytes it announced for {digest}",
                            body.size
                        ),
                    });
                }
                if pending.is_empty() && chunk.len() >= PIECE / 2 {
                    chunk
                } else {
                    pending.extend_from_slice(&chunk);
                    if pending.len() < PIECE {
                        continue;
                    }
                    pending.split().freeze()
                }
            }
            None if pending.is_empty() => break,
            None => pending.split().freeze(),
        };
        let len = piece.len() as u64;
        flight
            .recent
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(received, piece.clone(), *written.borrow());
        received += len;
        progress.send_modify(|p| p.received = received);
        staged.write(piece).await.map_err(local)?;
    }
    if received != body.size {
        return Err(UpstreamError::Invalid {
            url: String::new(),
            what: format!(
                "{received} of the {} bytes it announced for {digest}",
                body.size
            ),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use berth_core::Algorithm;
    use berth_registry::RegistryOptions;
    use berth_storage::{BlobStore, FsBlobStore};

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

    /// A registry on SQLite and the filesystem in `dir`, and its flights.
    async fn flights(dir: &std::path::Path) -> (Arc<Flights>, Arc<Registry>, Arc<FsBlobStore>) {
        let meta = berth_meta::SqliteStore::open(&dir.join("meta.db"))
            .await
            .expect("meta");
        let blobs = Arc::new(FsBlobStore::open(&dir.join("store")).expect("blobs"));
        let registry = Arc::new(Registry::new(
            Arc::new(meta),
            blobs.clone(),
            RegistryOptions::default(),
        ));
        let flights = Flights::new(registry.clone(), dir.join("spool"));
        (Arc::new(flights), registry, blobs)
    }

    fn key(digest: &Digest) -> FlightKey {
        FlightKey {
            upstream: 1,
            repository: "lib/app".into(),
            digest: digest.clone(),
            local: "cache/lib/app".parse().expect("name"),
        }
    }

    /// `len` bytes that are not all alike.
    fn varied(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i % 253) as u8).collect()
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
    async fn bytes_that_do_not_match_the_digest_never_reach_a_client_whole_nor_the_cache() {
        let body = vec![7u8; 3 * PIECE + 5];
        let expected = Digest::of(Algorithm::Sha256, b"what the manifest promised");
        let (client, _) = upstream(body.clone()).await;
        let dir = tempfile::tempdir().expect("dir");
        let (flights, registry, blobs) = flights(dir.path()).await;
        let flight = flights
            .join(key(&expected), client)
            .await
            .expect("the upstream answered");
        let (bytes, error) = read_all(flight.reader()).await;
        assert!(error.is_some(), "the read must fail");
        assert!(bytes.len() < body.len(), "the last byte is held back");
        assert!(matches!(
            flight.finished().await,
            Err(UpstreamError::Invalid { .. })
        ));
        assert!(!flight.cached().await);
        let local = "cache/lib/app".parse().expect("name");
        assert!(registry.blob_size(&local, &expected).await.is_err());
        let actual = Digest::of(Algorithm::Sha256, &body);
        assert_eq!(blobs.stat(&actual).await.expect("stat"), None);
        assert_eq!(blobs.list_uploads().await.expect("list"), vec![]);
    }

    #[tokio::test]
    async fn clients_joining_one_flight_make_one_upstream_request_read_every_byte_and_cache_it() {
        let body = varied(5 * PIECE + 17);
        let digest = Digest::of(Algorithm::Sha256, &body);
        let (client, gets) = upstream(body.clone()).await;
        let dir = tempfile::tempdir().expect("dir");
        let (flights, registry, blobs) = flights(dir.path()).await;
        let readers = (0..10).map(|_| {
            let (flights, client, digest) = (flights.clone(), client.clone(), digest.clone());
            tokio::spawn(async move {
                let flight = flights.join(key(&digest), client).await.expect("join");
                let read = read_all(flight.reader()).await;
                (read, flight)
            })
        });
        let mut flight = None;
        for reader in readers.collect::<Vec<_>>() {
            let ((bytes, error), joined) = reader.await.expect("task");
            assert!(error.is_none());
            assert!(bytes == body);
            flight = Some(joined);
        }
        assert_eq!(gets.load(Ordering::SeqCst), 1);
        assert_eq!(flights.started.load(Ordering::SeqCst), 1);
        assert!(flight.expect("a flight").cached().await);
        let local = "cache/lib/app".parse().expect("name");
        assert_eq!(
            registry.blob_size(&local, &digest).await.expect("cached"),
            body.len() as u64
        );
        assert_eq!(blobs.list_uploads().await.expect("list"), vec![]);
    }

    #[tokio::test]
    async fn a_reader_far_behind_the_fetch_reads_from_the_file_and_a_vanished_one_stops_nothing() {
        // More than is kept in memory, so the late reader must find most of it in the file.
        let body = varied(3 * RECENT as usize + 12_345);
        let digest = Digest::of(Algorithm::Sha256, &body);
        let (client, _) = upstream(body.clone()).await;
        let dir = tempfile::tempdir().expect("dir");
        let (flights, _, _) = flights(dir.path()).await;
        let flight = flights.join(key(&digest), client).await.expect("join");
        let mut vanishing = flight.reader();
        assert!(vanishing.next().await.is_some_and(|piece| piece.is_ok()));
        drop(vanishing);
        let mut late = flight.reader();
        let first = late.next().await.expect("a piece").expect("read");
        flight.finished().await.expect("fetched");
        let (rest, error) = read_all(late).await;
        assert!(error.is_none());
        assert!([first.to_vec(), rest].concat() == body);
        assert!(flight.cached().await);
        // Joined after the end (while the flight lingers): everything from the file.
        let (again, error) = read_all(flight.reader()).await;
        assert!(error.is_none());
        assert!(again == body);
    }
}
