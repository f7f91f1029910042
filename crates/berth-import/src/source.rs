//! Where a registry:2 tree is read from: a small read-only trait over its `v2` directory, so
//! the walker does not care whether the tree is on a local disk or in a bucket.
//!
//! Paths are relative to the `v2` directory and `/`-separated, exactly as Distribution's
//! storage drivers name keys, so an object-store implementation can use them as key suffixes.

use std::io;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use berth_storage::ByteStream;
use futures_util::StreamExt;
use object_store::ObjectStoreExt as _;
use tokio_util::io::ReaderStream;

/// Read buffer for streaming blob data out of the source.
const READ_CHUNK: usize = 256 * 1024;

/// A registry:2 storage tree, read-only. Every method treats a missing path as absence
/// (`None` or empty), never as an error: deletes in registry:2 leave holes by design.
#[async_trait]
pub trait SourceTree: Send + Sync {
    /// Where the tree is, for messages.
    fn describe(&self) -> String;

    /// Names of the directories (key prefixes) directly under `path`, sorted.
    async fn subdirectories(&self, path: &str) -> io::Result<Vec<String>>;

    /// A file's whole content, unless it is larger than `limit` bytes (an error).
    async fn read_small(&self, path: &str, limit: u64) -> io::Result<Option<Vec<u8>>>;

    /// A file's size.
    async fn size(&self, path: &str) -> io::Result<Option<u64>>;

    /// A file's bytes as a stream, read as they are consumed (never buffered whole).
    async fn open(&self, path: &str) -> io::Result<Option<ByteStream>>;
}

/// A registry:2 tree on the local filesystem (the `filesystem` storage driver).
pub struct FsSource {
    /// The `v2` directory.
    v2: PathBuf,
}

impl FsSource {
    /// Accept either the driver's `rootdirectory` (holding `docker/registry/v2`) or the
    /// `v2` directory itself.
    pub fn open(path: &Path) -> io::Result<FsSource> {
        let nested = path.join("docker").join("registry").join("v2");
        let v2 = if nested.is_dir() {
            nested
        } else if path.join("repositories").is_dir() || path.join("blobs").is_dir() {
            path.to_owned()
        } else {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!(
                    "{} is not a registry:2 storage root: it holds neither docker/registry/v2 nor repositories/ and blobs/",
                    path.display()
                ),
            ));
        };
        Ok(FsSource { v2 })
    }

    fn path(&self, relative: &str) -> io::Result<PathBuf> {
        // Names come from directory listings and links; refuse anything that could leave
        // the tree all the same.
        if relative
            .split('/')
            .any(|c| c == ".." || c == "." || c.contains('\0'))
            || relative.starts_with('/')
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("path {relative:?} leaves the registry tree"),
            ));
        }
        Ok(self.v2.join(relative))
    }
}

fn absent_as_none<T>(result: io::Result<T>) -> io::Result<Option<T>> {
    match result {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

#[async_trait]
impl SourceTree for FsSource {
    fn describe(&self) -> String {
        self.v2.display().to_string()
    }

    async fn subdirectories(&self, path: &str) -> io::Result<Vec<String>> {
        let dir = self.path(path)?;
        let Some(mut entries) = absent_as_none(tokio::fs::read_dir(&dir).await)? else {
            return Ok(Vec::new());
        };
        let mut names = Vec::new();
        while let Some(entry) = entries.next_entry().await? {
            if entry.file_type().await?.is_dir()
                && let Some(name) = entry.file_name().to_str()
            {
                names.push(name.to_owned());
            }
        }
        names.sort();
        Ok(names)
    }

    async fn read_small(&self, path: &str, limit: u64) -> io::Result<Option<Vec<u8>>> {
        let path = self.path(path)?;
        let Some(metadata) = absent_as_none(tokio::fs::metadata(&path).await)? else {
            return Ok(None);
        };
        if metadata.len() > limit {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{} is {} bytes, more than the {limit} expected",
                    path.display(),
                    metadata.len()
                ),
            ));
        }
        absent_as_none(tokio::fs::read(&path).await)
    }

    async fn size(&self, path: &str) -> io::Result<Option<u64>> {
        let path = self.path(path)?;
        Ok(absent_as_none(tokio::fs::metadata(&path).await)?.map(|m| m.len()))
    }

    async fn open(&self, path: &str) -> io::Result<Option<ByteStream>> {
        let path = self.path(path)?;
        let Some(file) = absent_as_none(tokio::fs::File::open(&path).await)? else {
            return Ok(None);
        };
        Ok(Some(ReaderStream::with_capacity(file, READ_CHUNK).boxed()))
    }
}

/// A registry:2 tree in a bucket (the `s3` storage driver): keys
/// `<rootdirectory>/docker/registry/v2/…`, read through object_store.
pub struct S3Source {
    store: std::sync::Arc<dyn object_store::ObjectStore>,
    /// The `v2` prefix.
    v2: String,
    shown: String,
}

impl S3Source {
    /// `s3://bucket[/rootdirectory]`; the endpoint, region and credentials are the AWS
    /// environment's (`AWS_ENDPOINT_URL`, `AWS_REGION`, `AWS_ACCESS_KEY_ID`, …), as registry:2's
    /// own S3 driver reads them. A custom endpoint is addressed path-style.
    pub fn open(url: &str) -> io::Result<S3Source> {
        let invalid =
            |why: &str| io::Error::new(io::ErrorKind::InvalidInput, format!("{url}: {why}"));
        let rest = url
            .strip_prefix("s3://")
            .ok_or_else(|| invalid("not an s3:// URL"))?;
        let (bucket, root) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(invalid("no bucket"));
        }
        let endpoint = std::env::var("AWS_ENDPOINT_URL")
            .or_else(|_| std::env::var("AWS_ENDPOINT"))
            .ok()
            .filter(|e| !e.is_empty());
        let settings = berth_storage::S3Settings {
            path_style: endpoint.is_some(),
            allow_http: endpoint
                .as_deref()
                .is_some_and(|e| e.starts_with("http://")),
            endpoint,
            region: std::env::var("AWS_REGION")
                .or_else(|_| std::env::var("AWS_DEFAULT_REGION"))
                .ok(),
            bucket: bucket.to_owned(),
            ..Default::default()
        };
        let client = berth_storage::s3::bucket_client(&settings)
            .map_err(|e| io::Error::other(format!("{url}: {e}")))?;
        let root = root.trim_matches('/');
        let v2 = if root.is_empty() {
            "docker/registry/v2".to_owned()
        } else {
            format!("{root}/docker/registry/v2")
        };
        Ok(S3Source {
            store: std::sync::Arc::new(client),
            v2,
            shown: url.to_owned(),
        })
    }

    fn key(&self, relative: &str) -> io::Result<object_store::path::Path> {
        if relative.split('/').any(|c| c == ".." || c == ".") {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("path {relative:?} leaves the registry tree"),
            ));
        }
        let key = if relative.is_empty() {
            self.v2.clone()
        } else {
            format!("{}/{relative}", self.v2)
        };
        object_store::path::Path::parse(&key)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))
    }
}

fn s3_error(e: object_store::Error) -> io::Error {
    match e {
        object_store::Error::NotFound { .. } => io::Error::new(io::ErrorKind::NotFound, e),
        other => io::Error::other(other),
    }
}

#[async_trait]
impl SourceTree for S3Source {
    fn describe(&self) -> String {
        self.shown.clone()
    }

    async fn subdirectories(&self, path: &str) -> io::Result<Vec<String>> {
        let prefix = self.key(path)?;
        let listed = self
            .store
            .list_with_delimiter(Some(&prefix))
            .await
            .map_err(s3_error)?;
        let mut names: Vec<String> = listed
            .common_prefixes
            .iter()
            .filter_map(|p| p.filename().map(str::to_owned))
            .collect();
        names.sort();
        Ok(names)
    }

    async fn read_small(&self, path: &str, limit: u64) -> io::Result<Option<Vec<u8>>> {
        let Some(size) = self.size(path).await? else {
            return Ok(None);
        };
        if size > limit {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{path} is {size} bytes, more than the {limit} expected"),
            ));
        }
        let got = absent_as_none(self.store.get(&self.key(path)?).await.map_err(s3_error))?;
        match got {
            Some(result) => Ok(Some(result.bytes().await.map_err(s3_error)?.to_vec())),
            None => Ok(None),
        }
    }

    async fn size(&self, path: &str) -> io::Result<Option<u64>> {
        let head = absent_as_none(self.store.head(&self.key(path)?).await.map_err(s3_error))?;
        Ok(head.map(|meta| meta.size))
    }

    async fn open(&self, path: &str) -> io::Result<Option<ByteStream>> {
        let got = absent_as_none(self.store.get(&self.key(path)?).await.map_err(s3_error))?;
        Ok(got.map(|result| {
            result
                .into_stream()
                .map(|chunk| chunk.map_err(s3_error))
                .boxed()
        }))
    }
}
