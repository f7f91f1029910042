//! The S3 backend: blobs at `<prefix>/blobs/<algorithm>/<first two hex>/<hex>`, uploads as S3
//! multipart uploads under `<prefix>/_uploads/<id>/`.
//!
//! An upload's progress (its multipart id, the parts sent with their byte ranges and ETags,
//! and the staging object holding the bytes not yet sent as a part) is the opaque state the
//! caller keeps in the upload session, next to the offset and hash state. Nothing about an
//! upload lives in this process, so any node can take the next PATCH.
//!
//! A PATCH body is spooled to a local temporary file; every [`PART_SIZE`] bytes of it go to
//! S3 as one part, streamed from the file to a presigned `UploadPart` URL, so memory stays
//! flat whatever the part or blob size. At the end of the PATCH, what is left goes up as a
//! part if it is at least S3's 5 MiB minimum, else as an immutable staging object
//! (`tail-<start offset>-<nonce>`) that the next PATCH fetches back into its spool.
//!
//! S3 fixes a multipart upload's key when it starts, before the digest is known, so the parts
//! complete into `_uploads/<id>/data`, which is then copied (server side) to the blob's key.
//! Nothing here relies on conditional writes: a digest's bytes are the same whoever writes
//! them, and the database decides who wins.
//!
//! The state names every object a recorded upload has (its multipart marker, its tail, and
//! the tail its last append replaced, which the next append deletes), so a commit deletes
//! them by name in one DeleteObjects request: no LIST per pushed blob. What an append whose
//! outcome was never recorded wrote is named by no state; the upload purge, which lists the
//! upload areas, deletes it.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use berth_core::Digest;
use futures_util::{StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path;
use object_store::signer::{SignedUrlOptions, Signer};
use object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncSeekExt, AsyncWriteExt};
use tokio_util::io::ReaderStream;

use crate::{Appended, BlobStore, ByteStream, Result, StorageError};

/// S3's smallest part (every part but the last must be at least this long).
pub const MIN_PART: u64 = 5 * 1024 * 1024;

/// A part is sent once the spool holds this much. With S3's limit of 10,000 parts per
/// upload, this bounds a blob at about 78 GiB; a bigger part would only raise that bound.
pub const PART_SIZE: u64 = 8 * 1024 * 1024;

/// How long a presigned URL used internally (one part or staging object PUT) stays valid.
const INTERNAL_URL_TTL: Duration = Duration::from_secs(15 * 60);

/// Read buffer when streaming a spool file to S3.
const SPOOL_CHUNK: usize = 256 * 1024;

/// Attempts per part or staging object PUT (S3 asks clients to retry 5xx and resets).
const PUT_ATTEMPTS: u32 = 3;

/// Where and how to reach the bucket. Credentials not given here come from the usual AWS
/// environment variables, then the instance profile.
#[derive(Clone, Default)]
pub struct S3Settings {
    /// `http(s)://host:port` of an S3-compatible server; `None` for AWS itself.
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub bucket: String,
    /// Key prefix for everything berth stores (no leading or trailing `/` needed).
    pub prefix: String,
    /// Path-style requests (`endpoint/bucket/key`), as most S3-compatible servers want.
    pub path_style: bool,
    pub access_key: Option<String>,
    pub secret_key: Option<String>,
    /// Answer blob GETs with a redirect to a presigned URL instead of streaming.
    pub redirect: bool,
    /// Allow a plain-HTTP endpoint (a loopback test server).
    pub allow_http: bool,
    /// Directory for spool files; the system's temporary directory if `None`.
    pub spool_dir: Option<PathBuf>,
}

impl std::fmt::Debug for S3Settings {
    /// Everything but the secret key, which never reaches a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Settings")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .field("path_style", &self.path_style)
            .field("access_key", &self.access_key)
            .field(
                "secret_key",
                &self.secret_key.as_ref().map(|_| "<redacted>"),
            )
            .field("redirect", &self.redirect)
            .field("allow_http", &self.allow_http)
            .finish()
    }
}

pub struct S3BlobStore {
    s3: Arc<AmazonS3>,
    /// Streams spool files to presigned URLs (object_store's own PUTs need the whole
    /// payload in memory).
    http: reqwest::Client,
    /// The key prefix, without slashes at either end; may be empty.
    prefix: String,
    redirect: bool,
    spool_dir: PathBuf,
}

/// A part already in the multipart upload.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
struct SentPart {
    etag: String,
    /// Upload offset of the part's first byte.
    start: u64,
    len: u64,
}

/// The bytes after the last part, in a staging object.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
struct Tail {
    /// Object name within the upload's directory.
    name: String,
    start: u64,
    len: u64,
}

/// The upload's progress, kept by the caller in the upload session.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
struct UploadState {
    /// The S3 multipart upload id, once the first part was sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    multipart: Option<String>,
    /// The name of the object that records `multipart` in the bucket (`multipart-<nonce>`),
    /// so a commit deletes it without listing. States written before it was kept lack it:
    /// their marker is left to the upload purge.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    marker: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    parts: Vec<SentPart>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tail: Option<Tail>,
    /// The staging tail the append that wrote this state replaced: garbage once this state
    /// is recorded, so the next append (or the commit) deletes it by name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    superseded: Option<String>,
}

impl UploadState {
    fn decode(state: Option<&[u8]>) -> Result<UploadState> {
        match state {
            None | Some([]) => Ok(UploadState::default()),
            Some(bytes) => serde_json::from_slice(bytes).map_err(|e| {
                StorageError::Io(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("S3 upload state is corrupt: {e}"),
                ))
            }),
        }
    }

    fn encode(&self) -> Vec<u8> {
        // Serializing plain strings and integers cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Where the parts end (and the tail starts).
    fn parts_end(&self) -> u64 {
        self.parts.last().map_or(0, |p| p.start + p.len)
    }

    /// How many bytes the upload holds.
    fn len(&self) -> u64 {
        self.parts_end() + self.tail.as_ref().map_or(0, |t| t.len)
    }

    /// Forget everything past `offset`: a staging tail can be cut anywhere (only its prefix
    /// is read back), parts only at their boundaries (S3 cannot shorten a part).
    fn rewind(&mut self, offset: u64) -> Result<()> {
        let parts_end = self.parts_end();
        if offset >= parts_end {
            if let Some(tail) = &mut self.tail {
                tail.len = offset - parts_end;
            }
            if self.tail.as_ref().is_some_and(|t| t.len == 0) {
                self.tail = None;
            }
            return Ok(());
        }
        let Some(keep) = self.parts.iter().position(|p| p.start == offset) else {
            return Err(StorageError::Io(io::Error::other(format!(
                "cannot rewind an S3 upload to {offset}: that is inside a part already sent"
            ))));
        };
        self.parts.truncate(keep);
        self.tail = None;
        Ok(())
    }
}

/// Every object_store error that reaches here (a missing object is handled by the callers)
/// is the store failing to answer as it should: unreachable, timed out, refusing the
/// credentials, or a 5xx after the client's retries.
fn storage_error(e: object_store::Error) -> StorageError {
    StorageError::Unavailable(e.to_string())
}

fn is_not_found(e: &object_store::Error) -> bool {
    matches!(e, object_store::Error::NotFound { .. })
}

/// An object_store client for the bucket `settings` names (credentials not given come from
/// the AWS environment or the instance profile): the blob store's, and any other reader's
/// (the registry:2 import).
pub fn bucket_client(settings: &S3Settings) -> Result<AmazonS3> {
    // reqwest is built without a crypto provider of its own: ring, like the rest of the
    // workspace, must be the process default before a client is built. The binary installs
    // it first thing; this covers tests and other embedders. (An error means one is
    // installed already.)
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut builder = AmazonS3Builder::from_env()
        .with_bucket_name(&settings.bucket)
        .with_virtual_hosted_style_request(!settings.path_style)
        .with_allow_http(settings.allow_http);
    if let Some(endpoint) = &settings.endpoint {
        builder = builder.with_endpoint(endpoint);
    }
    if let Some(region) = &settings.region {
        builder = builder.with_region(region);
    }
    if let Some(key) = &settings.access_key {
        builder = builder.with_access_key_id(key);
    }
    if let Some(secret) = &settings.secret_key {
        builder = builder.with_secret_access_key(secret);
    }
    builder.build().map_err(storage_error)
}

impl S3BlobStore {
    pub fn new(settings: S3Settings) -> Result<S3BlobStore> {
        let s3 = bucket_client(&settings)?;
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| StorageError::Io(io::Error::other(e)))?;
        Ok(S3BlobStore {
            s3: Arc::new(s3),
            http,
            prefix: settings.prefix.trim_matches('/').to_owned(),
            redirect: settings.redirect,
            spool_dir: settings.spool_dir.unwrap_or_else(std::env::temp_dir),
        })
    }

    fn key(&self, rest: &str) -> Path {
        if self.prefix.is_empty() {
            Path::from(rest)
        } else {
            Path::from(format!("{}/{rest}", self.prefix))
        }
    }

    fn blob_key(&self, digest: &Digest) -> Path {
        let hex = digest.hex();
        self.key(&format!(
            "blobs/{}/{}/{hex}",
            digest.algorithm().as_str(),
            &hex[..2]
        ))
    }

    fn uploads_dir(&self) -> Path {
        self.key("_uploads")
    }

    /// An object in the upload's directory: `created` (marks the upload as existing),
    /// `multipart-<nonce>` (a multipart id, so a delete can abort it without the session),
    /// `tail-<start>-<nonce>` (staging), `data` (the completed multipart upload).
    fn upload_key(&self, id: &str, name: &str) -> Path {
        // Ids are checked by the endpoint parser; this is a second guard on key names.
        debug_assert!(id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
        self.key(&format!("_uploads/{id}/{name}"))
    }

    async fn require_upload(&self, id: &str) -> Result<()> {
        match self.s3.head(&self.upload_key(id, "created")).await {
            Ok(_) => Ok(()),
            Err(e) if is_not_found(&e) => Err(StorageError::UploadMissing(id.to_owned())),
            Err(e) => Err(storage_error(e)),
        }
    }

    /// Start the multipart upload, recording its id in the bucket first, so that deleting the
    /// upload can abort it even if no session ever recorded it. Returns the multipart id and
    /// the name of the object recording it.
    async fn start_multipart(&self, id: &str) -> Result<(String, String)> {
        let data = self.upload_key(id, "data");
        let multipart = self
            .s3
            .create_multipart(&data)
            .await
            .map_err(storage_error)?;
        let marker = format!("multipart-{}", nonce());
        if let Err(e) = self
            .s3
            .put(
                &self.upload_key(id, &marker),
                PutPayload::from(multipart.clone()),
            )
            .await
        {
            let _ = self.s3.abort_multipart(&data, &multipart).await;
            return Err(storage_error(e));
        }
        Ok((multipart, marker))
    }

    /// A presigned PUT for `key` (with `query` signed in, for `UploadPart`).
    async fn presigned_put(
        &self,
        key: &Path,
        query: Vec<(String, String)>,
    ) -> Result<reqwest::Url> {
        let options = SignedUrlOptions::default().with_query(query);
        self.s3
            .signed_url_opts(http::Method::PUT, key, INTERNAL_URL_TTL, &options)
            .await
            .map_err(storage_error)
    }

    /// Send the spool as part `part_idx` (0-based) of the multipart upload; its ETag.
    async fn send_part(
        &self,
        id: &str,
        multipart: &str,
        part_idx: usize,
        spool: Spool,
    ) -> Result<String> {
        let url = self
            .presigned_put(
                &self.upload_key(id, "data"),
                vec![
                    ("partNumber".into(), (part_idx + 1).to_string()),
                    ("uploadId".into(), multipart.to_owned()),
                ],
            )
            .await?;
        let etag = put_file(&self.http, url, spool).await?;
        etag.ok_or_else(|| {
            StorageError::Io(io::Error::other(
                "S3 answered a part upload without an ETag",
            ))
        })
    }

    /// Fetch the first `len` bytes of a staging tail into `spool`.
    async fn fetch_tail(&self, id: &str, tail: &Tail, spool: &mut Spool) -> Result<()> {
        let options = GetOptions::default().with_range(Some(GetRange::Bounded(0..tail.len)));
        let got = self
            .s3
            .get_opts(&self.upload_key(id, &tail.name), options)
            .await
            .map_err(|e| {
                if is_not_found(&e) {
                    StorageError::UploadTruncated {
                        id: id.to_owned(),
                        expected: tail.start + tail.len,
                        actual: tail.start,
                    }
                } else {
                    storage_error(e)
                }
            })?;
        let mut stream = got.into_stream();
        while let Some(chunk) = stream.next().await {
            spool.write(&chunk.map_err(storage_error)?).await?;
        }
        if spool.len != tail.len {
            return Err(StorageError::UploadTruncated {
                id: id.to_owned(),
                expected: tail.start + tail.len,
                actual: tail.start + spool.len,
            });
        }
        Ok(())
    }

    /// The objects of upload `id` that its recorded `state` names: its marker, the
    /// multipart upload's completed `data`, the recorded tail and the one it replaced, and
    /// `created`. Not the tails and multipart uploads of appends the session never recorded
    /// (a PATCH whose outcome was lost, then retried): those are left to the upload purge,
    /// which lists.
    fn recorded_objects(&self, id: &str, state: &UploadState) -> Vec<Path> {
        let mut names: Vec<&str> = Vec::new();
        if state.multipart.is_some() {
            names.push("data");
        }
        names.extend(state.marker.as_deref());
        names.extend(state.tail.as_ref().map(|t| t.name.as_str()));
        names.extend(state.superseded.as_deref());
        names.push("created");
        names
            .into_iter()
            .map(|name| self.upload_key(id, name))
            .collect()
    }

    /// Delete `keys` in one request (S3's DeleteObjects); missing ones are not an error.
    async fn delete_objects(&self, keys: Vec<Path>) -> Result<()> {
        let keys = futures_util::stream::iter(keys.into_iter().map(Ok)).boxed();
        let mut deleted = self.s3.delete_stream(keys);
        while let Some(outcome) = deleted.next().await {
            match outcome {
                Err(e) if !is_not_found(&e) => return Err(storage_error(e)),
                _ => {}
            }
        }
        Ok(())
    }

    /// Every object in the upload's directory.
    async fn upload_objects(&self, id: &str) -> Result<Vec<object_store::ObjectMeta>> {
        let dir = self.key(&format!("_uploads/{id}"));
        self.s3
            .list(Some(&dir))
            .try_collect()
            .await
            .map_err(storage_error)
    }
}

/// A random name part, so two writers never share an object name.
fn nonce() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// Bytes on their way to S3, in an unlinked temporary file.
struct Spool {
    file: tokio::io::BufWriter<tokio::fs::File>,
    len: u64,
}

impl Spool {
    async fn new(dir: &std::path::Path) -> Result<Spool> {
        let dir = dir.to_owned();
        let file = tokio::task::spawn_blocking(move || tempfile::tempfile_in(dir))
            .await
            .map_err(io::Error::other)??;
        Ok(Spool {
            file: tokio::io::BufWriter::with_capacity(SPOOL_CHUNK, tokio::fs::File::from_std(file)),
            len: 0,
        })
    }

    async fn write(&mut self, chunk: &[u8]) -> Result<()> {
        self.file.write_all(chunk).await?;
        self.len += chunk.len() as u64;
        Ok(())
    }
}

/// PUT the spool's bytes to a presigned URL, streamed from the file with its length known;
/// the response's ETag. Retried from the start of the file on failure.
async fn put_file(
    http: &reqwest::Client,
    url: reqwest::Url,
    spool: Spool,
) -> Result<Option<String>> {
    let Spool { mut file, len } = spool;
    file.flush().await?;
    let file = file.into_inner();
    let mut last_error = None;
    for attempt in 0..PUT_ATTEMPTS {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
        }
        let mut reader = file.try_clone().await?;
        reader.seek(io::SeekFrom::Start(0)).await?;
        let body = reqwest::Body::wrap_stream(ReaderStream::with_capacity(
            tokio::io::AsyncReadExt::take(reader, len),
            SPOOL_CHUNK,
        ));
        let sent = http
            .put(url.clone())
            .header(http::header::CONTENT_LENGTH, len)
            .body(body)
            .send()
            .await;
        match sent {
            Ok(response) if response.status().is_success() => {
                let etag = response
                    .headers()
                    .get(http::header::ETAG)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                return Ok(etag);
            }
            Ok(response) => {
                let status = response.status();
                let text = response.text().await.unwrap_or_default();
                let text: String = text.chars().take(300).collect();
                last_error = Some(io::Error::other(format!("S3 PUT failed: {status}: {text}")));
                if status.is_client_error() {
                    break;
                }
            }
            Err(e) => last_error = Some(io::Error::other(e)),
        }
    }
    Err(StorageError::Io(
        last_error.unwrap_or_else(|| io::Error::other("S3 PUT failed")),
    ))
}

#[async_trait]
impl BlobStore for S3BlobStore {
    async fn create_upload(&self, id: &str) -> Result<()> {
        self.s3
            .put(&self.upload_key(id, "created"), PutPayload::default())
            .await
            .map_err(storage_error)?;
        Ok(())
    }

    async fn append(
        &self,
        id: &str,
        offset: u64,
        state: Option<&[u8]>,
        mut body: ByteStream,
        observe: &mut (dyn for<'b> FnMut(&'b [u8]) + Send),
    ) -> Result<Appended> {
        let mut state = UploadState::decode(state)?;
        self.require_upload(id).await?;
        let recorded = state.len();
        if offset > recorded {
            return Err(StorageError::UploadTruncated {
                id: id.to_owned(),
                expected: offset,
                actual: recorded,
            });
        }
        // Whatever this append leaves, the recorded tail is replaced by it.
        let replaced = state.tail.as_ref().map(|t| t.name.clone());
        state.rewind(offset)?;

        let mut spool = Spool::new(&self.spool_dir).await?;
        // The tail the recorded append replaced is nobody's (the state naming its successor
        // is recorded): delete it while this append fetches the current one.
        let stale: Vec<Path> = state
            .superseded
            .take()
            .map(|name| self.upload_key(id, &name))
            .into_iter()
            .collect();
        let fetch = async {
            match &state.tail {
                Some(tail) => self.fetch_tail(id, tail, &mut spool).await,
                None => Ok(()),
            }
        };
        let (fetched, dropped) =
            futures_util::future::join(fetch, self.delete_objects(stale)).await;
        fetched?;
        if let Err(e) = dropped {
            // Left to the upload purge, which lists.
            tracing::debug!(upload = id, error = %e, "delete a superseded staging tail");
        }
        let mut written = 0u64;
        // Parts reuse numbers past the recorded state: S3 keeps the last one sent, and the
        // completion names exactly the parts (and ETags) the state lists.
        while let Some(next) = body.next().await {
            let chunk = next.map_err(StorageError::Body)?;
            observe(&chunk);
            spool.write(&chunk).await?;
            written += chunk.len() as u64;
            if spool.len >= PART_SIZE {
                let full = std::mem::replace(&mut spool, Spool::new(&self.spool_dir).await?);
                self.push_part(id, &mut state, full).await?;
            }
        }
        if spool.len >= MIN_PART {
            self.push_part(id, &mut state, spool).await?;
        } else if spool.len > 0 {
            let start = state.parts_end();
            let name = format!("tail-{start}-{}", nonce());
            let len = spool.len;
            let url = self
                .presigned_put(&self.upload_key(id, &name), Vec::new())
                .await?;
            put_file(&self.http, url, spool).await?;
            state.tail = Some(Tail { name, start, len });
        } else {
            state.tail = None;
        }
        state.superseded = replaced;
        Ok(Appended {
            len: written,
            state: Some(state.encode()),
        })
    }

    async fn read_upload(&self, id: &str, len: u64, state: Option<&[u8]>) -> Result<ByteStream> {
        let state = UploadState::decode(state)?;
        self.require_upload(id).await?;
        if !state.parts.is_empty() {
            // Parts cannot be read before the multipart upload completes.
            return Err(StorageError::Io(io::Error::new(
                io::ErrorKind::Unsupported,
                "an S3 upload larger than 5 MiB cannot be read back before it is committed",
            )));
        }
        let Some(tail) = state.tail else {
            return Ok(futures_util::stream::empty().boxed());
        };
        let len = len.min(tail.len);
        if len == 0 {
            return Ok(futures_util::stream::empty().boxed());
        }
        let options = GetOptions::default().with_range(Some(GetRange::Bounded(0..len)));
        let got = self
            .s3
            .get_opts(&self.upload_key(id, &tail.name), options)
            .await
            .map_err(storage_error)?;
        Ok(got.into_stream().map_err(io::Error::other).boxed())
    }

    async fn commit(&self, id: &str, state: Option<&[u8]>, digest: &Digest) -> Result<()> {
        let mut state = UploadState::decode(state)?;
        self.require_upload(id).await?;
        // What the recorded state names, before completing it changes the state.
        let recorded = self.recorded_objects(id, &state);
        let blob = self.blob_key(digest);
        if self.stat(digest).await?.is_some() {
            // Same digest, same bytes: the stored copy stands; the parts sent are dropped.
            if let Some(multipart) = &state.multipart
                && let Err(e) = self
                    .s3
                    .abort_multipart(&self.upload_key(id, "data"), multipart)
                    .await
            {
                tracing::debug!(upload = id, error = %e, "abort multipart upload");
            }
            return self.delete_objects(recorded).await;
        }
        match (state.multipart.clone(), state.tail.clone()) {
            (None, None) => {
                self.s3
                    .put(&blob, PutPayload::default())
                    .await
                    .map_err(storage_error)?;
            }
            (None, Some(tail)) => {
                // A blob smaller than a part: its staging object is the whole blob.
                let from = self.upload_key(id, &tail.name);
                if self.s3.head(&from).await.map_err(storage_error)?.size == tail.len {
                    self.s3.copy(&from, &blob).await.map_err(storage_error)?;
                } else {
                    // The tail object holds more than was recorded (a later, unrecorded
                    // append grew a copy of it): send just the recorded prefix.
                    let mut spool = Spool::new(&self.spool_dir).await?;
                    self.fetch_tail(id, &tail, &mut spool).await?;
                    let url = self.presigned_put(&blob, Vec::new()).await?;
                    put_file(&self.http, url, spool).await?;
                }
            }
            (Some(multipart), tail) => {
                if let Some(tail) = tail {
                    // The last part may be shorter than 5 MiB.
                    let mut spool = Spool::new(&self.spool_dir).await?;
                    self.fetch_tail(id, &tail, &mut spool).await?;
                    self.push_part(id, &mut state, spool).await?;
                }
                let data = self.upload_key(id, "data");
                let parts = state
                    .parts
                    .iter()
                    .map(|p| PartId {
                        content_id: p.etag.clone(),
                    })
                    .collect();
                self.s3
                    .complete_multipart(&data, &multipart, parts)
                    .await
                    .map_err(storage_error)?;
                // Server-side: the bytes do not pass through berth again.
                self.s3.copy(&data, &blob).await.map_err(storage_error)?;
            }
        }
        self.delete_objects(recorded).await
    }

    async fn delete_upload(&self, id: &str) -> Result<()> {
        let objects = self.upload_objects(id).await?;
        let data = self.upload_key(id, "data");
        for object in &objects {
            let name = object.location.filename().unwrap_or_default();
            if name.starts_with("multipart-") {
                let multipart = match self.s3.get(&object.location).await {
                    Ok(got) => got.bytes().await.map_err(storage_error)?,
                    Err(e) if is_not_found(&e) => continue,
                    Err(e) => return Err(storage_error(e)),
                };
                let multipart = String::from_utf8_lossy(&multipart).into_owned();
                // Aborting a completed or already aborted upload fails harmlessly.
                if let Err(e) = self.s3.abort_multipart(&data, &multipart).await {
                    tracing::debug!(upload = id, error = %e, "abort multipart upload");
                }
            }
        }
        // `created` last: an upload half-deleted by a crash is still listed and retried.
        let mut created = None;
        for object in objects {
            if object.location.filename() == Some("created") {
                created = Some(object.location);
                continue;
            }
            match self.s3.delete(&object.location).await {
                Err(e) if !is_not_found(&e) => return Err(storage_error(e)),
                _ => {}
            }
        }
        if let Some(created) = created {
            match self.s3.delete(&created).await {
                Err(e) if !is_not_found(&e) => return Err(storage_error(e)),
                _ => {}
            }
        }
        Ok(())
    }

    async fn list_uploads(&self) -> Result<Vec<(String, SystemTime)>> {
        let dir = self.uploads_dir();
        let depth = dir.parts().count();
        let mut latest: std::collections::BTreeMap<String, SystemTime> = Default::default();
        let mut objects = self.s3.list(Some(&dir));
        while let Some(object) = objects.next().await {
            let object = object.map_err(storage_error)?;
            let Some(id) = object.location.parts().nth(depth) else {
                continue;
            };
            let modified = SystemTime::from(object.last_modified);
            let entry = latest
                .entry(id.as_ref().to_owned())
                .or_insert(SystemTime::UNIX_EPOCH);
            *entry = (*entry).max(modified);
        }
        Ok(latest.into_iter().collect())
    }

    async fn stat(&self, digest: &Digest) -> Result<Option<u64>> {
        match self.s3.head(&self.blob_key(digest)).await {
            Ok(meta) => Ok(Some(meta.size)),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(storage_error(e)),
        }
    }

    async fn open(&self, digest: &Digest, start: u64, len: u64) -> Result<ByteStream> {
        if len == 0 {
            return Ok(futures_util::stream::empty().boxed());
        }
        let options = GetOptions::default().with_range(Some(GetRange::Bounded(start..start + len)));
        match self.s3.get_opts(&self.blob_key(digest), options).await {
            Ok(got) => Ok(got.into_stream().map_err(io::Error::other).boxed()),
            Err(e) if is_not_found(&e) => Err(StorageError::BlobMissing(digest.clone())),
            Err(e) => Err(storage_error(e)),
        }
    }

    async fn delete(&self, digest: &Digest) -> Result<()> {
        match self.s3.delete(&self.blob_key(digest)).await {
            Err(e) if !is_not_found(&e) => Err(storage_error(e)),
            _ => Ok(()),
        }
    }

    async fn delete_many(&self, digests: &[Digest]) -> Result<()> {
        // S3's DeleteObjects: up to 1000 keys a request.
        let keys: Vec<object_store::Result<Path>> =
            digests.iter().map(|d| Ok(self.blob_key(d))).collect();
        let mut deleted = self
            .s3
            .delete_stream(futures_util::stream::iter(keys).boxed());
        while let Some(outcome) = deleted.next().await {
            match outcome {
                Err(e) if !is_not_found(&e) => return Err(storage_error(e)),
                _ => {}
            }
        }
        Ok(())
    }

    async fn list_blobs(&self) -> Result<Vec<(Digest, SystemTime)>> {
        let dir = self.key("blobs");
        let depth = dir.parts().count();
        let mut blobs = Vec::new();
        let mut objects = self.s3.list(Some(&dir));
        while let Some(object) = objects.next().await {
            let object = object.map_err(storage_error)?;
            let parts: Vec<_> = object.location.parts().skip(depth).collect();
            // blobs/<algorithm>/<2 hex>/<hex>; anything else is not a blob.
            if let [algorithm, _, hex] = parts.as_slice()
                && let Ok(digest) = format!("{}:{}", algorithm.as_ref(), hex.as_ref()).parse()
            {
                blobs.push((digest, SystemTime::from(object.last_modified)));
            }
        }
        Ok(blobs)
    }

    fn redirects_reads(&self) -> bool {
        self.redirect
    }

    async fn redirect_url(&self, digest: &Digest, ttl: Duration) -> Result<Option<String>> {
        if !self.redirect {
            return Ok(None);
        }
        let url = self
            .s3
            .signed_url(http::Method::GET, &self.blob_key(digest), ttl)
            .await
            .map_err(storage_error)?;
        Ok(Some(url.to_string()))
    }
}

impl S3BlobStore {
    /// Send `spool` as the next part, starting the multipart upload if this is the first.
    async fn push_part(&self, id: &str, state: &mut UploadState, spool: Spool) -> Result<()> {
        let multipart = match &state.multipart {
            Some(m) => m.clone(),
            None => {
                let (m, marker) = self.start_multipart(id).await?;
                state.multipart = Some(m.clone());
                state.marker = Some(marker);
                m
            }
        };
        let start = state.parts_end();
        let len = spool.len;
        let etag = self
            .send_part(id, &multipart, state.parts.len(), spool)
            .await?;
        state.parts.push(SentPart { etag, start, len });
        state.tail = None;
        Ok(())
    }
}

#[cfg(any(test, feature = "s3-test-support"))]
pub mod testing;

#[cfg(test)]
mod tests {
    use super::{SentPart, Tail, UploadState};

    #[test]
    fn a_store_that_does_not_answer_is_unavailable_not_an_io_error() {
        let failed = object_store::Error::Generic {
            store: "S3",
            source: "error sending request: connection refused".into(),
        };
        match super::storage_error(failed) {
            crate::StorageError::Unavailable(cause) => {
                assert!(cause.contains("connection refused"))
            }
            other => panic!("expected Unavailable, got {other:?}"),
        }
    }

    fn part(start: u64, len: u64) -> SentPart {
        SentPart {
            etag: format!("e{start}"),
            start,
            len,
        }
    }

    #[test]
    fn state_rewinds_within_the_tail_or_to_a_part_boundary() {
        let state = UploadState {
            multipart: Some("m".into()),
            marker: Some("multipart-n".into()),
            parts: vec![part(0, 10), part(10, 10)],
            tail: Some(Tail {
                name: "t".into(),
                start: 20,
                len: 5,
            }),
            superseded: Some("t0".into()),
        };
        assert_eq!(state.len(), 25);
        let decoded = UploadState::decode(Some(&state.encode())).expect("decodes");
        assert_eq!(decoded, state);

        let mut s = state.clone();
        s.rewind(22).expect("inside the tail");
        assert_eq!((s.len(), s.tail.as_ref().map(|t| t.len)), (22, Some(2)));
        let mut s = state.clone();
        s.rewind(20).expect("at the tail's start");
        assert_eq!((s.len(), s.tail.is_none()), (20, true));
        let mut s = state.clone();
        s.rewind(10).expect("a part boundary");
        assert_eq!((s.len(), s.parts.len()), (10, 1));
        assert!(state.clone().rewind(15).is_err(), "inside a sent part");
        assert_eq!(UploadState::decode(None).expect("new").len(), 0);
        assert!(UploadState::decode(Some(b"{")).is_err());
    }
}

#[cfg(test)]
mod server_tests {
    use berth_core::{Algorithm, Digest};
    use futures_util::{StreamExt, TryStreamExt};
    use object_store::ObjectStore;

    use super::testing::{S3Server, S3ServerKind};
    use super::{S3BlobStore, S3Settings};
    use crate::BlobStore;

    fn store(settings: S3Settings) -> S3BlobStore {
        S3BlobStore::new(settings).expect("store")
    }

    /// The shared suite on two nodes, then what S3 adds: presigned reads (whole and by
    /// range) from a plain HTTP client, and no upload debris left in the bucket.
    async fn suite_on(kind: S3ServerKind) {
        let server = S3Server::start(kind);
        let node_a = store(server.settings("suite"));
        let node_b = store(server.settings("/suite/"));
        crate::suite::run(&node_a, &node_b).await;

        let leftovers: Vec<_> = node_a
            .s3
            .list(Some(&node_a.uploads_dir()))
            .try_collect()
            .await
            .expect("list");
        assert!(leftovers.is_empty(), "upload debris: {leftovers:?}");

        let bytes: Vec<u8> = (0..100_000u32).map(|i| (i % 241) as u8).collect();
        let digest = Digest::of(Algorithm::Sha256, &bytes);
        node_a.create_upload("up-url").await.expect("create");
        let body = futures_util::stream::iter(vec![Ok::<_, std::io::Error>(bytes::Bytes::from(
            bytes.clone(),
        ))])
        .boxed();
        let appended = node_a
            .append("up-url", 0, None, body, &mut |_| {})
            .await
            .expect("append");
        node_a
            .commit("up-url", appended.state.as_deref(), &digest)
            .await
            .expect("commit");
        let url = node_b
            .redirect_url(&digest, std::time::Duration::from_secs(60))
            .await
            .expect("presign")
            .expect("a URL");
        assert!(url.starts_with(&server.endpoint), "{url}");
        let client = reqwest::Client::new();
        let whole = client.get(&url).send().await.expect("GET");
        assert_eq!(whole.status(), 200);
        assert!(whole.bytes().await.expect("body") == bytes);
        let part = client
            .get(&url)
            .header("range", "bytes=1000-1999")
            .send()
            .await
            .expect("GET range");
        assert_eq!(part.status(), 206);
        assert!(part.bytes().await.expect("body") == bytes[1000..2000]);

        let streaming = store(S3Settings {
            redirect: false,
            ..server.settings("suite")
        });
        assert!(!streaming.redirects_reads());
        assert_eq!(
            streaming
                .redirect_url(&digest, std::time::Duration::from_secs(60))
                .await
                .expect("no redirect"),
            None
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn s3s_fs_passes_the_storage_suite() {
        suite_on(S3ServerKind::S3sFs).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn moto_passes_the_storage_suite() {
        suite_on(S3ServerKind::Moto).await;
    }

    #[tokio::test]
    async fn the_secret_key_is_not_in_debug_output() {
        let settings = S3Settings {
            secret_key: Some("very-secret".into()),
            ..Default::default()
        };
        assert!(!format!("{settings:?}").contains("very-secret"));
    }
}
