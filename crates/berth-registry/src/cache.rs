//! A read cache for the hottest lookups: manifest by reference, a blob's size in a
//! repository (every `HEAD` and `GET` of a blob), tag-list pages and catalog pages.
//!
//! It is exact, not eventually consistent, for a metadata store that only this process
//! writes (embedded SQLite): every write through [`crate::Registry`] invalidates the
//! repository's entries, and a lookup that raced with a write does not store its possibly
//! stale result (a global generation is compared before inserting). Catalog pages change
//! when a repository is created or deleted: every invalidation drops them, and so does
//! [`ReadCache::repositories_changed`], which writes that can create a repository call
//! (blob links and mounts) without touching the other entries.
//!
//! A store shared by several nodes (PostgreSQL) reports the other nodes' writes
//! ([`berth_meta::RepositoryStore::invalidations`]), and [`ReadCache::follow`] applies them:
//! another node's write is seen once its notification arrives (milliseconds after its
//! commit; a lookup that read the old value before then may still store it, and the
//! notification removes it). While the feed is not listening (before it connects, or after
//! its connection fails) the cache is suspended: it neither answers nor stores, and it
//! starts empty when the feed is back.

// Keys are names from request paths: hashed with a seeded fast hash, not SipHash, which
// was a measurable part of a cached GET.
use foldhash::HashMap;
use std::sync::{Arc, Mutex, Weak};

use berth_core::{Digest, Reference, RepositoryName};
use berth_meta::Invalidation;
use bytes::Bytes;

use crate::Listing;

/// Manifests larger than this are always read from the store.
const MAX_CACHED_MANIFEST: usize = 256 * 1024;
/// When the cache holds more than this many bytes of manifests, it starts over.
const MAX_MANIFEST_BYTES: usize = 16 * 1024 * 1024;
/// When the cache holds more than this many entries, it starts over.
const MAX_ENTRIES: usize = 100_000;

/// A manifest as served: exact bytes, shared without copying.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    pub digest: Digest,
    pub media_type: String,
    pub content: Bytes,
}

#[derive(Default)]
struct Entries {
    /// Bumped by every invalidation; a lookup stores its result only if it is unchanged.
    generation: u64,
    /// By repository name, so that a hit allocates no key and an invalidation drops one
    /// map instead of scanning every entry.
    repositories: HashMap<String, RepositoryEntries>,
    /// Catalog pages by (who sees them, last, page size).
    catalog_pages: HashMap<(CatalogScope, Option<String>, usize), Arc<Listing>>,
    /// Bumped with `generation` and by [`ReadCache::repositories_changed`]: a catalog
    /// lookup stores its page only if it is unchanged.
    catalog_generation: u64,
    /// Manifests, blob sizes and names in pages held, over all repositories.
    items: usize,
    manifest_bytes: usize,
    /// Other nodes' writes may go unreported: nothing is answered or stored.
    suspended: bool,
}

/// What is cached about one repository.
#[derive(Default)]
struct RepositoryEntries {
    manifests: HashMap<Reference, Arc<Manifest>>,
    blob_sizes: HashMap<Digest, u64>,
    /// Tag-list pages by (last, page size).
    tag_pages: HashMap<(Option<String>, usize), Arc<Listing>>,
    /// This repository's share of [`Entries::items`] and [`Entries::manifest_bytes`].
    items: usize,
    manifest_bytes: usize,
}

/// Whose catalog a page is: everything (`None`), or the repositories of these projects
/// (sorted).
pub(crate) type CatalogScope = Option<Arc<[String]>>;

impl Entries {
    fn clear(&mut self) {
        self.repositories.clear();
        self.catalog_pages.clear();
        self.items = 0;
        self.manifest_bytes = 0;
    }

    fn full(&self) -> bool {
        self.items >= MAX_ENTRIES || self.manifest_bytes >= MAX_MANIFEST_BYTES
    }

    fn repository(&self, name: &RepositoryName) -> Option<&RepositoryEntries> {
        self.repositories.get(name.as_str())
    }

    /// Add to `name`'s entries with `add`, which returns the items and manifest bytes it
    /// added (negative: a replaced entry's).
    fn add_to(
        &mut self,
        name: &RepositoryName,
        add: impl FnOnce(&mut RepositoryEntries) -> (isize, isize),
    ) {
        let repository = self
            .repositories
            .entry(name.as_str().to_owned())
            .or_default();
        let (items, bytes) = add(repository);
        repository.items = repository.items.saturating_add_signed(items);
        repository.manifest_bytes = repository.manifest_bytes.saturating_add_signed(bytes);
        self.items = self.items.saturating_add_signed(items);
        self.manifest_bytes = self.manifest_bytes.saturating_add_signed(bytes);
    }

    /// Drop every catalog page.
    fn drop_catalog_pages(&mut self) {
        let dropped: usize = self.catalog_pages.values().map(|l| l.items.len()).sum();
        self.catalog_pages.clear();
        self.items -= dropped;
    }

    /// Drop everything cached about repository `name`.
    fn drop_repository(&mut self, name: &str) {
        if let Some(gone) = self.repositories.remove(name) {
            self.items -= gone.items;
            self.manifest_bytes -= gone.manifest_bytes;
        }
    }
}

pub(crate) struct ReadCache {
    enabled: bool,
    entries: Mutex<Entries>,
}

/// The generation seen before a store lookup, to hand back with its result.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ticket(u64);

impl ReadCache {
    pub fn new(enabled: bool) -> ReadCache {
        ReadCache {
            enabled,
            entries: Mutex::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A hit, or the ticket to hand back with the store's answer.
    fn lookup<T>(&self, find: impl FnOnce(&Entries) -> Option<T>) -> Result<T, Ticket> {
        self.lookup_under(|e| e.generation, find)
    }

    /// [`ReadCache::lookup`], the ticket taken from the generation `generation` names.
    fn lookup_under<T>(
        &self,
        generation: fn(&Entries) -> u64,
        find: impl FnOnce(&Entries) -> Option<T>,
    ) -> Result<T, Ticket> {
        let entries = self.lock();
        let usable = self.enabled && !entries.suspended;
        match usable.then(|| find(&entries)).flatten() {
            Some(hit) => Ok(hit),
            None => Err(Ticket(generation(&entries))),
        }
    }

    /// Insert with `insert`, unless a write happened since `ticket` was taken.
    fn insert(&self, ticket: Ticket, insert: impl FnOnce(&mut Entries)) {
        self.insert_under(|e| e.generation, ticket, insert)
    }

    /// [`ReadCache::insert`], the ticket checked against the generation `generation` names.
    fn insert_under(
        &self,
        generation: fn(&Entries) -> u64,
        ticket: Ticket,
        insert: impl FnOnce(&mut Entries),
    ) {
        if !self.enabled {
            return;
        }
        let mut entries = self.lock();
        if generation(&entries) != ticket.0 || entries.suspended {
            return;
        }
        if entries.full() {
            entries.clear();
        }
        insert(&mut entries);
    }

    pub fn manifest(
        &self,
        repository: &RepositoryName,
        reference: &Reference,
    ) -> Result<Arc<Manifest>, Ticket> {
        self.lookup(|e| e.repository(repository)?.manifests.get(reference).cloned())
    }

    pub fn store_manifest(
        &self,
        ticket: Ticket,
        repository: &RepositoryName,
        reference: &Reference,
        manifest: &Arc<Manifest>,
    ) {
        let len = manifest.content.len();
        if len > MAX_CACHED_MANIFEST {
            return;
        }
        self.insert(ticket, |e| {
            e.add_to(repository, |r| {
                match r.manifests.insert(reference.clone(), manifest.clone()) {
                    // A racing lookup stored it first.
                    Some(old) => (0, len as isize - old.content.len() as isize),
                    None => (1, len as isize),
                }
            });
        });
    }

    pub fn blob_size(&self, repository: &RepositoryName, digest: &Digest) -> Result<u64, Ticket> {
        self.lookup(|e| e.repository(repository)?.blob_sizes.get(digest).copied())
    }

    pub fn store_blob_size(
        &self,
        ticket: Ticket,
        repository: &RepositoryName,
        digest: &Digest,
        size: u64,
    ) {
        self.insert(ticket, |e| {
            e.add_to(repository, |r| {
                match r.blob_sizes.insert(digest.clone(), size) {
                    Some(_) => (0, 0),
                    None => (1, 0),
                }
            });
        });
    }

    /// Forget everything about `repository`. Call after any write that can change what a
    /// lookup there answers (manifest put or delete, tag delete, blob unlink).
    pub fn invalidate(&self, repository: &RepositoryName) {
        self.invalidate_named(repository.as_str());
    }

    fn invalidate_named(&self, name: &str) {
        let mut entries = self.lock();
        entries.generation += 1;
        entries.drop_repository(name);
        // The repository may be gone (deleted), or new (another node's first push).
        entries.catalog_generation += 1;
        entries.drop_catalog_pages();
    }

    /// A write that may have created a repository committed: forget the catalog pages.
    /// Call after it returns (with or without an error: it may have committed before a
    /// later step failed).
    pub fn repositories_changed(&self) {
        if !self.enabled {
            return;
        }
        let mut entries = self.lock();
        entries.catalog_generation += 1;
        entries.drop_catalog_pages();
    }

    /// Forget everything; answer and store again (`suspended: false`) or not.
    fn reset(&self, suspended: bool) {
        let mut entries = self.lock();
        entries.generation += 1;
        entries.catalog_generation += 1;
        entries.clear();
        entries.suspended = suspended;
    }

    /// Keep the cache exact for a store other processes write: apply what `feed` reports,
    /// suspended until it first says it listens. Without an async runtime to follow the
    /// feed in, the cache stays suspended (correct, only never hit).
    pub fn follow(self: &Arc<Self>, mut feed: tokio::sync::mpsc::Receiver<Invalidation>) {
        self.reset(true);
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::warn!(
                "no async runtime to follow other nodes' changes in: the read cache stays off"
            );
            return;
        };
        // Weak: the registry going away ends the task, and with it the feed.
        let cache: Weak<ReadCache> = Arc::downgrade(self);
        runtime.spawn(async move {
            while let Some(change) = feed.recv().await {
                let Some(cache) = cache.upgrade() else { return };
                match change {
                    Invalidation::Repository(name) => cache.invalidate_named(&name),
                    Invalidation::All => cache.reset(false),
                    Invalidation::Lost => cache.reset(true),
                }
            }
            // The feed ended (its store closed): nothing reports other nodes' writes now.
            if let Some(cache) = cache.upgrade() {
                cache.reset(true);
            }
        });
    }

    pub fn tag_page(
        &self,
        repository: &RepositoryName,
        last: Option<&str>,
        limit: usize,
    ) -> Result<Arc<Listing>, Ticket> {
        let key = (last.map(str::to_owned), limit);
        self.lookup(|e| e.repository(repository)?.tag_pages.get(&key).cloned())
    }

    pub fn store_tag_page(
        &self,
        ticket: Ticket,
        repository: &RepositoryName,
        last: Option<&str>,
        limit: usize,
        page: &Arc<Listing>,
    ) {
        self.insert(ticket, |e| {
            e.add_to(repository, |r| {
                let added = page.items.len() as isize;
                match r
                    .tag_pages
                    .insert((last.map(str::to_owned), limit), page.clone())
                {
                    Some(old) => (added - old.items.len() as isize, 0),
                    None => (added, 0),
                }
            });
        });
    }

    pub fn catalog_page(
        &self,
        scope: &CatalogScope,
        last: Option<&str>,
        limit: usize,
    ) -> Result<Arc<Listing>, Ticket> {
        let key = (scope.clone(), last.map(str::to_owned), limit);
        self.lookup_under(
            |e| e.catalog_generation,
            |e| e.catalog_pages.get(&key).cloned(),
        )
    }

    pub fn store_catalog_page(
        &self,
        ticket: Ticket,
        scope: &CatalogScope,
        last: Option<&str>,
        limit: usize,
        page: &Arc<Listing>,
    ) {
        self.insert_under(
            |e| e.catalog_generation,
            ticket,
            |e| {
                let key = (scope.clone(), last.map(str::to_owned), limit);
                if let Some(old) = e.catalog_pages.insert(key, page.clone()) {
                    e.items -= old.items.len();
                }
                e.items += page.items.len();
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_core::Algorithm;

    fn manifest(body: &'static [u8]) -> Arc<Manifest> {
        Arc::new(Manifest {
            digest: Digest::of(Algorithm::Sha256, body),
            media_type: "x".into(),
            content: Bytes::from_static(body),
        })
    }

    fn v1() -> Reference {
        "v1".parse().expect("tag")
    }

    #[test]
    fn hit_after_store_and_miss_after_invalidate() {
        let cache = ReadCache::new(true);
        let repo: RepositoryName = "a".parse().expect("name");
        let ticket = cache.manifest(&repo, &v1()).expect_err("empty");
        cache.store_manifest(ticket, &repo, &v1(), &manifest(b"one"));
        assert_eq!(
            cache.manifest(&repo, &v1()).expect("hit").content,
            Bytes::from_static(b"one")
        );
        cache.invalidate(&repo);
        assert!(cache.manifest(&repo, &v1()).is_err());
    }

    #[test]
    fn a_lookup_that_raced_a_write_is_not_stored() {
        let cache = ReadCache::new(true);
        let repo: RepositoryName = "a".parse().expect("name");
        let ticket = cache.manifest(&repo, &v1()).expect_err("empty");
        // A write lands between the lookup's read of the store and its insert.
        cache.invalidate(&repo);
        cache.store_manifest(ticket, &repo, &v1(), &manifest(b"stale"));
        assert!(
            cache.manifest(&repo, &v1()).is_err(),
            "stale result must not be cached"
        );
        let digest = Digest::of(Algorithm::Sha256, b"blob");
        let ticket = cache.blob_size(&repo, &digest).expect_err("empty");
        cache.invalidate(&"other".parse().expect("name"));
        cache.store_blob_size(ticket, &repo, &digest, 4);
        assert!(cache.blob_size(&repo, &digest).is_err());
    }

    #[tokio::test]
    async fn a_followed_cache_answers_only_while_its_feed_listens() {
        let cache = Arc::new(ReadCache::new(true));
        let (feed, changes) = tokio::sync::mpsc::channel(8);
        cache.follow(changes);
        let repo: RepositoryName = "a".parse().expect("name");
        let fill = |body: &'static [u8]| {
            let ticket = cache.manifest(&repo, &v1()).expect_err("a miss");
            cache.store_manifest(ticket, &repo, &v1(), &manifest(body));
        };
        // The follower runs on this (single-threaded) runtime whenever the test waits.
        let settle = || tokio::time::sleep(std::time::Duration::from_millis(20));
        fill(b"before the feed listens");
        assert!(cache.manifest(&repo, &v1()).is_err(), "suspended at first");
        feed.send(Invalidation::All).await.expect("send");
        settle().await;
        fill(b"one");
        assert!(cache.manifest(&repo, &v1()).is_ok());
        feed.send(Invalidation::Repository("b".into()))
            .await
            .expect("send");
        settle().await;
        assert!(cache.manifest(&repo, &v1()).is_ok(), "another repository");
        feed.send(Invalidation::Repository("a".into()))
            .await
            .expect("send");
        settle().await;
        assert!(cache.manifest(&repo, &v1()).is_err(), "invalidated");
        fill(b"two");
        feed.send(Invalidation::Lost).await.expect("send");
        settle().await;
        assert!(cache.manifest(&repo, &v1()).is_err(), "lost: off");
        fill(b"while lost");
        feed.send(Invalidation::All).await.expect("send");
        settle().await;
        assert!(cache.manifest(&repo, &v1()).is_err(), "back, and empty");
        fill(b"three");
        assert!(cache.manifest(&repo, &v1()).is_ok());
        drop(feed);
        settle().await;
        assert!(cache.manifest(&repo, &v1()).is_err(), "the feed ended: off");
    }

    fn page(names: &[&str]) -> Arc<Listing> {
        Arc::new(Listing::new(
            names.iter().map(|n| n.to_string()).collect(),
            None,
        ))
    }

    #[test]
    fn catalog_pages_are_dropped_when_repositories_may_have_changed() {
        let cache = ReadCache::new(true);
        let team: CatalogScope = Some(vec!["team".to_string()].into());
        for scope in [None, team.clone()] {
            let ticket = cache.catalog_page(&scope, None, 10).expect_err("empty");
            cache.store_catalog_page(ticket, &scope, None, 10, &page(&["team/a"]));
        }
        assert!(cache.catalog_page(&None, None, 10).is_ok());
        assert!(cache.catalog_page(&team, None, 10).is_ok());
        assert!(cache.catalog_page(&team, None, 5).is_err(), "another size");
        assert!(
            cache.catalog_page(&team, Some("a"), 10).is_err(),
            "another page"
        );
        cache.repositories_changed();
        assert!(cache.catalog_page(&None, None, 10).is_err());
        assert!(cache.catalog_page(&team, None, 10).is_err());

        // Any invalidation (a repository deleted, or another node's first push) drops them.
        let ticket = cache.catalog_page(&None, None, 10).expect_err("empty");
        cache.store_catalog_page(ticket, &None, None, 10, &page(&["team/a"]));
        cache.invalidate(&"elsewhere".parse().expect("name"));
        assert!(cache.catalog_page(&None, None, 10).is_err());
    }

    #[test]
    fn a_catalog_lookup_that_raced_a_new_repository_is_not_stored() {
        let cache = ReadCache::new(true);
        let repo: RepositoryName = "a".parse().expect("name");
        let ticket = cache.catalog_page(&None, None, 10).expect_err("empty");
        cache.repositories_changed();
        cache.store_catalog_page(ticket, &None, None, 10, &page(&["old"]));
        assert!(cache.catalog_page(&None, None, 10).is_err());
        // The other entries are not touched by a new repository.
        let ticket = cache.manifest(&repo, &v1()).expect_err("empty");
        cache.store_manifest(ticket, &repo, &v1(), &manifest(b"one"));
        cache.repositories_changed();
        assert!(cache.manifest(&repo, &v1()).is_ok());
    }

    #[test]
    fn sizes_are_counted_once_and_dropped_with_their_repository() {
        let cache = ReadCache::new(true);
        let (a, b): (RepositoryName, RepositoryName) =
            ("a".parse().expect("name"), "b".parse().expect("name"));
        let counts = || {
            let e = cache.lock();
            (e.items, e.manifest_bytes)
        };
        for repo in [&a, &b] {
            // Stored twice (two lookups that missed together): counted once.
            let first = cache.manifest(repo, &v1()).expect_err("empty");
            let second = cache.manifest(repo, &v1()).expect_err("empty");
            cache.store_manifest(first, repo, &v1(), &manifest(b"four"));
            cache.store_manifest(second, repo, &v1(), &manifest(b"four"));
            let digest = Digest::of(Algorithm::Sha256, b"blob");
            let ticket = cache.blob_size(repo, &digest).expect_err("empty");
            cache.store_blob_size(ticket, repo, &digest, 4);
            let ticket = cache.tag_page(repo, None, 10).expect_err("empty");
            cache.store_tag_page(ticket, repo, None, 10, &page(&["v1", "v2"]));
        }
        let ticket = cache.catalog_page(&None, None, 10).expect_err("empty");
        cache.store_catalog_page(ticket, &None, None, 10, &page(&["a", "b"]));
        assert_eq!(counts(), (2 * (1 + 1 + 2) + 2, 8));
        // Dropping `a` drops its entries and the catalog pages, and nothing of `b`.
        cache.invalidate(&a);
        assert_eq!(counts(), (1 + 1 + 2, 4));
        assert!(cache.manifest(&b, &v1()).is_ok());
        cache.invalidate(&b);
        assert_eq!(counts(), (0, 0));
    }

    #[test]
    fn disabled_cache_never_hits() {
        let cache = ReadCache::new(false);
        let repo: RepositoryName = "a".parse().expect("name");
        let ticket = cache.manifest(&repo, &v1()).expect_err("empty");
        cache.store_manifest(ticket, &repo, &v1(), &manifest(b"one"));
        assert!(cache.manifest(&repo, &v1()).is_err());
    }
}
