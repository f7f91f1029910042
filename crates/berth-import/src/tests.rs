//! The import against synthetic registry:2 trees written into a temp dir, checked through
//! the registry's services as a client would see them.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use berth_core::{Algorithm, Digest, Reference, RepositoryName};
use berth_meta::{MetaStore, ProjectStore, SqliteStore};
use berth_registry::{Registry, RegistryOptions};
use berth_storage::{BlobStore, FsBlobStore};
use futures_util::StreamExt;

use crate::{FsSource, ImportOptions, Importer, ProjectPolicy, Report, Severity, SourceTree};

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// A registry:2 `rootdirectory` being written by hand, as Distribution lays it out.
struct Tree {
    _dir: tempfile::TempDir,
    root: PathBuf,
}

impl Tree {
    fn new() -> Tree {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("registry");
        std::fs::create_dir_all(root.join("docker/registry/v2/repositories")).expect("mkdir");
        Tree { _dir: dir, root }
    }

    fn v2(&self) -> PathBuf {
        self.root.join("docker/registry/v2")
    }

    fn write(&self, relative: &str, bytes: &[u8]) {
        let path = self.v2().join(relative);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, bytes).expect("write");
    }

    /// Store `bytes` in blobs/ under `digest` (their own digest unless a test lies).
    fn blob_as(&self, digest: &Digest, bytes: &[u8]) {
        let hex = digest.hex();
        self.write(&format!("blobs/sha256/{}/{hex}/data", &hex[..2]), bytes);
    }

    fn blob(&self, bytes: &[u8]) -> Digest {
        let digest = Digest::of(Algorithm::Sha256, bytes);
        self.blob_as(&digest, bytes);
        digest
    }

    fn link(&self, repository: &str, kind: &str, digest: &Digest) {
        self.write(
            &format!(
                "repositories/{repository}/{kind}/sha256/{}/link",
                digest.hex()
            ),
            digest.to_string().as_bytes(),
        );
    }

    fn tag(&self, repository: &str, tag: &str, digest: &Digest) {
        let dir = format!("repositories/{repository}/_manifests/tags/{tag}");
        self.write(
            &format!("{dir}/current/link"),
            digest.to_string().as_bytes(),
        );
        self.write(
            &format!("{dir}/index/sha256/{}/link", digest.hex()),
            digest.to_string().as_bytes(),
        );
    }

    /// Push an image as registry:2 stores one: config and layer blobs linked in _layers,
    /// the manifest in blobs/ and as a revision. Returns the manifest's digest.
    fn image(&self, repository: &str, config: &[u8], layers: &[&[u8]]) -> Digest {
        let descriptor = |media_type: &str, bytes: &[u8], digest: &Digest| {
            format!(
                r#"{{"mediaType":"{media_type}","digest":"{digest}","size":{}}}"#,
                bytes.len()
            )
        };
        let config_digest = self.blob(config);
        self.link(repository, "_layers", &config_digest);
        let mut layer_descriptors = Vec::new();
        for layer in layers {
            let digest = self.blob(layer);
            self.link(repository, "_layers", &digest);
            layer_descriptors.push(descriptor(
                "application/vnd.oci.image.layer.v1.tar",
                layer,
                &digest,
            ));
        }
        let manifest = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{},"layers":[{}]}}"#,
            descriptor(
                "application/vnd.oci.image.config.v1+json",
                config,
                &config_digest
            ),
            layer_descriptors.join(",")
        );
        self.manifest(repository, manifest.as_bytes())
    }

    /// An OCI index of `children` (already in the repository).
    fn index(&self, repository: &str, children: &[(&Digest, &str)]) -> Digest {
        let entries: Vec<String> = children
            .iter()
            .map(|(digest, arch)| {
                let size = std::fs::metadata(self.v2().join(format!(
                    "blobs/sha256/{}/{}/data",
                    &digest.hex()[..2],
                    digest.hex()
                )))
                .expect("child stored")
                .len();
                format!(
                    r#"{{"mediaType":"{OCI_MANIFEST}","digest":"{digest}","size":{size},"platform":{{"architecture":"{arch}","os":"linux"}}}}"#
                )
            })
            .collect();
        let index = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[{}]}}"#,
            entries.join(",")
        );
        self.manifest(repository, index.as_bytes())
    }

    fn manifest(&self, repository: &str, bytes: &[u8]) -> Digest {
        let digest = self.blob(bytes);
        self.link(repository, "_manifests/revisions", &digest);
        digest
    }
}

/// A fresh berth data dir: metadata and blob store, as `berth serve` opens them.
struct Berth {
    _dir: tempfile::TempDir,
    meta: SqliteStore,
    blobs: Arc<FsBlobStore>,
    registry: Registry,
}

impl Berth {
    async fn new() -> Berth {
        let dir = tempfile::tempdir().expect("tempdir");
        let meta = SqliteStore::open(&dir.path().join("metadata.db"))
            .await
            .expect("metadata");
        let blobs = Arc::new(FsBlobStore::open(dir.path()).expect("blobs"));
        let registry = Registry::new(
            Arc::new(meta.clone()),
            blobs.clone(),
            RegistryOptions::default(),
        );
        Berth {
            _dir: dir,
            meta,
            blobs,
            registry,
        }
    }

    async fn import_with(&self, root: &Path, options: ImportOptions) -> Report {
        let source = FsSource::open(root).expect("registry tree");
        let meta: Arc<dyn MetaStore> = Arc::new(self.meta.clone());
        let blobs: Arc<dyn BlobStore> = self.blobs.clone();
        Importer::new(meta, blobs, options)
            .run(&source)
            .await
            .expect("import runs")
    }

    async fn import_from(&self, source: &dyn SourceTree) -> Report {
        let meta: Arc<dyn MetaStore> = Arc::new(self.meta.clone());
        let blobs: Arc<dyn BlobStore> = self.blobs.clone();
        Importer::new(meta, blobs, ImportOptions::default())
            .run(source)
            .await
            .expect("import runs")
    }

    async fn import(&self, tree: &Tree) -> Report {
        self.import_with(&tree.root, ImportOptions::default()).await
    }

    /// The digest a tag or digest resolves to, if it does.
    async fn resolve(&self, repository: &str, reference: &str) -> Option<Digest> {
        let repository: RepositoryName = repository.parse().expect("name");
        let reference: Reference = if reference.contains(':') {
            Reference::Digest(reference.parse().expect("digest"))
        } else {
            Reference::Tag(reference.parse().expect("tag"))
        };
        self.registry
            .get_manifest(&repository, &reference)
            .await
            .ok()
            .map(|m| m.digest.clone())
    }

    async fn blob_bytes(&self, repository: &str, digest: &Digest) -> Option<Vec<u8>> {
        let repository: RepositoryName = repository.parse().expect("name");
        let size = self.registry.blob_size(&repository, digest).await.ok()?;
        let mut stream = self.registry.read_blob(digest, 0, size).await.ok()?;
        let mut bytes = Vec::new();
        while let Some(chunk) = stream.next().await {
            bytes.extend_from_slice(&chunk.expect("chunk"));
        }
        Some(bytes)
    }
}

/// A source that counts how often each file is opened for streaming.
struct CountingSource {
    inner: FsSource,
    opens: std::sync::Mutex<Vec<String>>,
}

#[async_trait::async_trait]
impl SourceTree for CountingSource {
    fn describe(&self) -> String {
        self.inner.describe()
    }
    async fn subdirectories(&self, path: &str) -> std::io::Result<Vec<String>> {
        self.inner.subdirectories(path).await
    }
    async fn read_small(&self, path: &str, limit: u64) -> std::io::Result<Option<Vec<u8>>> {
        self.inner.read_small(path, limit).await
    }
    async fn size(&self, path: &str) -> std::io::Result<Option<u64>> {
        self.inner.size(path).await
    }
    async fn open(&self, path: &str) -> std::io::Result<Option<berth_storage::ByteStream>> {
        self.opens.lock().expect("lock").push(path.to_owned());
        self.inner.open(path).await
    }
}

fn items(report: &Report, severity: Severity) -> Vec<String> {
    report
        .findings
        .iter()
        .filter(|f| f.severity == severity)
        .map(|f| format!("{} {}", f.repository, f.item))
        .collect()
}

#[tokio::test]
async fn images_keep_their_digests_tags_and_bytes() {
    let tree = Tree::new();
    let app = tree.image(
        "team/app",
        b"{\"os\":\"linux\"}",
        &[b"layer one", b"layer two"],
    );
    tree.tag("team/app", "v1", &app);
    tree.tag("team/app", "latest", &app);
    let berth = Berth::new().await;

    let report = berth.import(&tree).await;

    assert!(report.findings.is_empty(), "{report}");
    assert_eq!(berth.resolve("team/app", "v1").await, Some(app.clone()));
    assert_eq!(berth.resolve("team/app", "latest").await, Some(app));
    let layer = Digest::of(Algorithm::Sha256, b"layer two");
    assert_eq!(
        berth.blob_bytes("team/app", &layer).await.as_deref(),
        Some(&b"layer two"[..])
    );
    assert_eq!(
        (
            report.repositories,
            report.blobs_copied,
            report.manifests_imported,
            report.tags_imported
        ),
        (1, 3, 1, 2)
    );
}

#[tokio::test]
async fn nested_repository_names_are_found_at_every_depth() {
    let tree = Tree::new();
    let outer = tree.image("team/app", b"{}", &[b"outer"]);
    tree.tag("team/app", "v1", &outer);
    let inner = tree.image("team/app/web/frontend", b"{}", &[b"inner"]);
    tree.tag("team/app/web/frontend", "v1", &inner);
    let berth = Berth::new().await;

    let report = berth.import(&tree).await;

    assert_eq!(report.repositories, 2, "{report}");
    assert_eq!(berth.resolve("team/app", "v1").await, Some(outer));
    assert_eq!(
        berth.resolve("team/app/web/frontend", "v1").await,
        Some(inner)
    );
}

#[tokio::test]
async fn an_index_is_imported_after_its_children() {
    let tree = Tree::new();
    let amd64 = tree.image("team/multi", b"{\"architecture\":\"amd64\"}", &[b"amd64"]);
    let arm64 = tree.image("team/multi", b"{\"architecture\":\"arm64\"}", &[b"arm64"]);
    let index = tree.index("team/multi", &[(&amd64, "amd64"), (&arm64, "arm64")]);
    tree.tag("team/multi", "v1", &index);
    let berth = Berth::new().await;

    let report = berth.import(&tree).await;

    assert!(report.findings.is_empty(), "{report}");
    assert_eq!(report.manifests_imported, 3);
    assert_eq!(berth.resolve("team/multi", "v1").await, Some(index));
    assert_eq!(
        berth.resolve("team/multi", &arm64.to_string()).await,
        Some(arm64)
    );
}

#[tokio::test]
async fn a_tag_whose_revision_is_gone_is_a_warning_and_the_rest_imports() {
    let tree = Tree::new();
    let kept = tree.image("team/app", b"{}", &[b"kept"]);
    tree.tag("team/app", "v1", &kept);
    // registry:2 removed the revision link of a deleted manifest but a tag still names it.
    let deleted = tree.blob(b"{\"schemaVersion\":2}");
    tree.tag("team/app", "old", &deleted);
    let berth = Berth::new().await;

    let report = berth.import(&tree).await;

    assert_eq!(items(&report, Severity::Warning), ["team/app tag old"]);
    assert!(!report.failed(), "{report}");
    assert_eq!(berth.resolve("team/app", "old").await, None);
    assert_eq!(berth.resolve("team/app", "v1").await, Some(kept));
}

#[tokio::test]
async fn a_blob_with_wrong_bytes_is_reported_and_not_imported() {
    let tree = Tree::new();
    let good = tree.image("team/good", b"{}", &[b"fine"]);
    tree.tag("team/good", "v1", &good);
    let bad = tree.image("team/bad", b"{}", &[b"original layer"]);
    tree.tag("team/bad", "v1", &bad);
    // Bit rot: the layer's data no longer hashes to its digest.
    let layer = Digest::of(Algorithm::Sha256, b"original layer");
    tree.blob_as(&layer, b"rotten layer!!");
    let berth = Berth::new().await;

    let report = berth.import(&tree).await;

    assert!(report.failed());
    assert_eq!(
        items(&report, Severity::Error),
        [
            format!("team/bad blob {layer}"),
            format!("team/bad manifest {bad}"),
            "team/bad tag v1".to_owned()
        ]
    );
    assert_eq!(berth.blobs.stat(&layer).await.expect("stat"), None);
    assert_eq!(berth.resolve("team/bad", "v1").await, None);
    assert_eq!(berth.resolve("team/good", "v1").await, Some(good));
}

#[tokio::test]
async fn a_corrupt_blob_shared_by_repositories_is_read_once_and_reported_in_each() {
    let tree = Tree::new();
    for name in ["team/a", "team/b"] {
        let image = tree.image(name, b"{}", &[b"shared layer"]);
        tree.tag(name, "v1", &image);
    }
    let layer = Digest::of(Algorithm::Sha256, b"shared layer");
    tree.blob_as(&layer, b"shared LAYER");
    let berth = Berth::new().await;
    let source = CountingSource {
        inner: FsSource::open(&tree.root).expect("tree"),
        opens: Default::default(),
    };

    let report = berth.import_from(&source).await;

    let blob_errors: Vec<&str> = report
        .findings
        .iter()
        .filter(|f| f.item == format!("blob {layer}"))
        .map(|f| f.reason.as_str())
        .collect();
    assert_eq!(blob_errors.len(), 2, "{report}");
    let layer_path = crate::layout::blob_data_path(&layer);
    let opens = source.opens.lock().expect("lock").clone();
    assert_eq!(opens.iter().filter(|p| **p == layer_path).count(), 1);
}

#[tokio::test]
async fn a_tag_moved_in_registry2_since_the_last_run_moves_in_berth() {
    let tree = Tree::new();
    let first = tree.image("team/app", b"{}", &[b"first"]);
    tree.tag("team/app", "latest", &first);
    let berth = Berth::new().await;
    berth.import(&tree).await;
    let second = tree.image("team/app", b"{}", &[b"second"]);
    tree.tag("team/app", "latest", &second);

    let report = berth.import(&tree).await;

    assert_eq!(
        (report.manifests_imported, report.tags_moved),
        (1, 1),
        "{report}"
    );
    assert_eq!(berth.resolve("team/app", "latest").await, Some(second));
}

#[tokio::test]
async fn a_schema1_manifest_is_an_error_and_the_rest_imports() {
    let tree = Tree::new();
    let image = tree.image("team/app", b"{}", &[b"layer"]);
    tree.tag("team/app", "v2", &image);
    let schema1 = tree.manifest(
        "team/app",
        br#"{"schemaVersion":1,"name":"team/app","tag":"v1","fsLayers":[]}"#,
    );
    tree.tag("team/app", "v1", &schema1);
    let berth = Berth::new().await;

    let report = berth.import(&tree).await;

    assert_eq!(
        items(&report, Severity::Error),
        [
            format!("team/app manifest {schema1}"),
            "team/app tag v1".to_owned()
        ]
    );
    assert_eq!(berth.resolve("team/app", "v2").await, Some(image));
}

#[tokio::test]
async fn a_blob_a_manifest_needs_is_imported_even_without_its_layers_link() {
    let tree = Tree::new();
    let image = tree.image("team/app", b"{}", &[b"unlinked"]);
    tree.tag("team/app", "v1", &image);
    let layer = Digest::of(Algorithm::Sha256, b"unlinked");
    std::fs::remove_file(tree.v2().join(format!(
        "repositories/team/app/_layers/sha256/{}/link",
        layer.hex()
    )))
    .expect("unlink");
    let berth = Berth::new().await;

    let report = berth.import(&tree).await;

    assert!(report.findings.is_empty(), "{report}");
    assert_eq!(
        berth.blob_bytes("team/app", &layer).await.as_deref(),
        Some(&b"unlinked"[..])
    );
}

#[tokio::test]
async fn a_second_run_imports_nothing_and_fails_nothing() {
    let tree = Tree::new();
    let amd64 = tree.image("team/multi", b"{\"a\":1}", &[b"amd64"]);
    let arm64 = tree.image("team/multi", b"{\"a\":2}", &[b"arm64"]);
    let index = tree.index("team/multi", &[(&amd64, "amd64"), (&arm64, "arm64")]);
    tree.tag("team/multi", "v1", &index);
    tree.tag("team/multi", "amd64", &amd64);
    let berth = Berth::new().await;
    let first = berth.import(&tree).await;

    let second = berth.import(&tree).await;

    assert!(second.findings.is_empty(), "{second}");
    assert_eq!(
        (
            second.blobs_copied + second.blobs_linked,
            second.manifests_imported,
            second.tags_imported + second.tags_moved,
            second.projects_created.len()
        ),
        (0, 0, 0, 0)
    );
    assert_eq!(
        (
            second.blobs_present,
            second.manifests_present,
            second.tags_present
        ),
        (
            first.blobs_copied,
            first.manifests_imported,
            first.tags_imported
        )
    );
}

#[tokio::test]
async fn a_blob_shared_by_repositories_is_copied_once() {
    let tree = Tree::new();
    let a = tree.image("team/a", b"{}", &[b"shared base"]);
    tree.tag("team/a", "v1", &a);
    let b = tree.image("team/b", b"{}", &[b"shared base"]);
    tree.tag("team/b", "v1", &b);
    let berth = Berth::new().await;

    let report = berth.import(&tree).await;

    // The config ({}) and the layer: copied for team/a, only linked for team/b.
    assert_eq!(
        (report.blobs_copied, report.blobs_linked),
        (2, 2),
        "{report}"
    );
    assert_eq!(berth.resolve("team/b", "v1").await, Some(b));
}

#[tokio::test]
async fn deleted_tags_and_manifests_stay_deleted() {
    let tree = Tree::new();
    let kept = tree.image("team/app", b"{}", &[b"kept"]);
    tree.tag("team/app", "v1", &kept);
    let deleted = tree.image("team/app", b"{\"x\":1}", &[b"gone"]);
    // registry:2's manifest delete removes the link file, leaving its directory.
    std::fs::remove_file(tree.v2().join(format!(
        "repositories/team/app/_manifests/revisions/sha256/{}/link",
        deleted.hex()
    )))
    .expect("delete revision");
    let berth = Berth::new().await;

    let report = berth.import(&tree).await;

    assert!(report.findings.is_empty(), "{report}");
    assert_eq!(report.manifests_imported, 1);
    assert_eq!(berth.resolve("team/app", &deleted.to_string()).await, None);
}

#[tokio::test]
async fn a_linked_blob_without_data_is_a_warning_unless_a_manifest_needs_it() {
    let tree = Tree::new();
    let image = tree.image("team/app", b"{}", &[b"needed"]);
    tree.tag("team/app", "v1", &image);
    // An upload no manifest used, whose data garbage collection removed.
    let orphan = Digest::of(Algorithm::Sha256, b"collected");
    tree.link("team/app", "_layers", &orphan);
    let berth = Berth::new().await;

    let report = berth.import(&tree).await;

    assert_eq!(
        items(&report, Severity::Warning),
        [format!("team/app blob {orphan}")]
    );
    assert!(!report.failed());
    assert_eq!(berth.resolve("team/app", "v1").await, Some(image));
}

#[tokio::test]
async fn a_dry_run_reports_and_writes_nothing() {
    let tree = Tree::new();
    let image = tree.image("team/app", b"{}", &[b"layer"]);
    tree.tag("team/app", "v1", &image);
    let berth = Berth::new().await;
    let options = ImportOptions {
        dry_run: true,
        ..Default::default()
    };

    let report = berth.import_with(&tree.root, options).await;

    assert_eq!(
        (
            report.blobs_copied,
            report.bytes_copied,
            report.manifests_imported,
            report.tags_imported,
            report.projects_created.clone()
        ),
        (2, 7, 1, 1, vec!["team".to_owned()])
    );
    assert_eq!(berth.resolve("team/app", "v1").await, None);
    assert_eq!(
        berth.meta.project_by_name("team").await.expect("read"),
        None
    );
}

#[tokio::test]
async fn missing_projects_are_created_private_unless_told_otherwise() {
    let tree = Tree::new();
    let image = tree.image("team/app", b"{}", &[b"layer"]);
    tree.tag("team/app", "v1", &image);
    let solo = tree.image("solo", b"{}", &[b"layer"]);
    tree.tag("solo", "v1", &solo);
    let berth = Berth::new().await;

    let report = berth.import(&tree).await;

    let team = berth.meta.project_by_name("team").await.expect("read");
    assert_eq!(team.map(|p| p.public), Some(false));
    assert_eq!(report.projects_created, ["team"]);
    // A name without a project component (open mode's `alpine`) needs none.
    assert_eq!(berth.resolve("solo", "v1").await, Some(solo));

    let other = Berth::new().await;
    let options = ImportOptions {
        projects: ProjectPolicy::Leave,
        ..Default::default()
    };
    let report = other.import_with(&tree.root, options).await;
    assert_eq!(report.projects_missing, ["team"]);
    assert_eq!(
        other.meta.project_by_name("team").await.expect("read"),
        None
    );
    assert_eq!(other.resolve("team/app", "v1").await, Some(image));
}

#[tokio::test]
async fn a_repository_filter_takes_the_name_and_those_below_it() {
    let tree = Tree::new();
    for name in ["team/app", "team/app/web", "team/application"] {
        let image = tree.image(name, b"{}", &[name.as_bytes()]);
        tree.tag(name, "v1", &image);
    }
    let berth = Berth::new().await;
    let options = ImportOptions {
        repositories: vec!["team/app".into()],
        ..Default::default()
    };

    let report = berth.import_with(&tree.root, options).await;

    assert_eq!(report.repositories, 2);
    assert_eq!(berth.resolve("team/application", "v1").await, None);
}

#[tokio::test]
async fn the_v2_directory_itself_is_accepted_as_the_root() {
    let tree = Tree::new();
    let image = tree.image("team/app", b"{}", &[b"layer"]);
    tree.tag("team/app", "v1", &image);
    let berth = Berth::new().await;

    let report = berth
        .import_with(&tree.v2(), ImportOptions::default())
        .await;

    assert_eq!(report.tags_imported, 1, "{report}");
    assert!(FsSource::open(&tree.v2().join("blobs")).is_err());
}
