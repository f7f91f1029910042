//! A read cache for the hottest lookups: manifest by reference, a blob's size in a
//! repository (every `HEAD` and `GET` of a blob), and tag-list pages.
//!
//! It is exact, not eventually consistent, for a metadata store that only this process
//! writes (embedded SQLite): every write through [`crate::Registry`] invalidates the
//! repository's entries, and a lookup that raced with a write does not store its possibly
//! stale result (a global generation is compared before inserting). A store shared by
//! several nodes must run with the cache off (`RegistryOptions::read_cache`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use berth_core::{Digest, RepositoryName};
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
    manifests: HashMap<(String, String), Manifest>,
    blob_sizes: HashMap<(String, Digest), u64>,
    /// Tag-list pages by (repository, last, page size).
    tag_pages: HashMap<(String, Option<String>, usize), Arc<Listing>>,
    /// Tags held in `tag_pages`, counted as entries.
    tag_page_items: usize,
    manifest_bytes: usize,
}

impl Entries {
    fn clear(&mut self) {
        self.manifests.clear();
        self.blob_sizes.clear();
        self.tag_pages.clear();
        self.tag_page_items = 0;
        self.manifest_bytes = 0;
    }

    fn full(&self) -> bool {
        self.manifests.len() + self.blob_sizes.len() + self.tag_page_items >= MAX_ENTRIES
            || self.manifest_bytes >= MAX_MANIFEST_BYTES
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
        let entries = self.lock();
        match self.enabled.then(|| find(&entries)).flatten() {
            Some(hit) => Ok(hit),
            None => Err(Ticket(entries.generation)),
        }
    }

    /// Insert with `insert`, unless a write happened since `ticket` was taken.
    fn insert(&self, ticket: Ticket, insert: impl FnOnce(&mut Entries)) {
        if !self.enabled {
            return;
        }
        let mut entries = self.lock();
        if entries.generation != ticket.0 {
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
        reference: &str,
    ) -> Result<Manifest, Ticket> {
        let key = (repository.as_str().to_owned(), reference.to_owned());
        self.lookup(|e| e.manifests.get(&key).cloned())
    }

    pub fn store_manifest(
        &self,
        ticket: Ticket,
        repository: &RepositoryName,
        reference: &str,
        manifest: &Manifest,
    ) {
        if manifest.content.len() > MAX_CACHED_MANIFEST {
            return;
        }
        self.insert(ticket, |e| {
            e.manifest_bytes += manifest.content.len();
            let key = (repository.as_str().to_owned(), reference.to_owned());
            e.manifests.insert(key, manifest.clone());
        });
    }

    pub fn blob_size(&self, repository: &RepositoryName, digest: &Digest) -> Result<u64, Ticket> {
        let key = (repository.as_str().to_owned(), digest.clone());
        self.lookup(|e| e.blob_sizes.get(&key).copied())
    }

    pub fn store_blob_size(
        &self,
        ticket: Ticket,
        repository: &RepositoryName,
        digest: &Digest,
        size: u64,
    ) {
        self.insert(ticket, |e| {
            let key = (repository.as_str().to_owned(), digest.clone());
            e.blob_sizes.insert(key, size);
        });
    }

    /// Forget everything about `repository`. Call after any write that can change what a
    /// lookup there answers (manifest put or delete, tag delete, blob unlink).
    pub fn invalidate(&self, repository: &RepositoryName) {
        let mut entries = self.lock();
        entries.generation += 1;
        let name = repository.as_str();
        let before = entries.manifests.len();
        entries.manifests.retain(|(repo, _), _| repo != name);
        if entries.manifests.len() != before {
            entries.manifest_bytes = entries.manifests.values().map(|m| m.content.len()).sum();
        }
        entries.blob_sizes.retain(|(repo, _), _| repo != name);
        entries.tag_pages.retain(|(repo, _, _), _| repo != name);
        entries.tag_page_items = entries.tag_pages.values().map(|l| l.items.len()).sum();
    }

    pub fn tag_page(
        &self,
        repository: &RepositoryName,
        last: Option<&str>,
        limit: usize,
    ) -> Result<Arc<Listing>, Ticket> {
        let key = (
            repository.as_str().to_owned(),
            last.map(str::to_owned),
            limit,
        );
        self.lookup(|e| e.tag_pages.get(&key).cloned())
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
            e.tag_page_items += page.items.len();
            let key = (
                repository.as_str().to_owned(),
                last.map(str::to_owned),
                limit,
            );
            e.tag_pages.insert(key, page.clone());
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_core::Algorithm;

    fn manifest(body: &'static [u8]) -> Manifest {
        Manifest {
            digest: Digest::of(Algorithm::Sha256, body),
            media_type: "x".into(),
            content: Bytes::from_static(body),
        }
    }

    #[test]
    fn hit_after_store_and_miss_after_invalidate() {
        let cache = ReadCache::new(true);
        let repo: RepositoryName = "a".parse().expect("name");
        let ticket = cache.manifest(&repo, "v1").expect_err("empty");
        cache.store_manifest(ticket, &repo, "v1", &manifest(b"one"));
        assert_eq!(
            cache.manifest(&repo, "v1").expect("hit").content,
            Bytes::from_static(b"one")
        );
        cache.invalidate(&repo);
        assert!(cache.manifest(&repo, "v1").is_err());
    }

    #[test]
    fn a_lookup_that_raced_a_write_is_not_stored() {
        let cache = ReadCache::new(true);
        let repo: RepositoryName = "a".parse().expect("name");
        let ticket = cache.manifest(&repo, "v1").expect_err("empty");
        // A write lands between the lookup's read of the store and its insert.
        cache.invalidate(&repo);
        cache.store_manifest(ticket, &repo, "v1", &manifest(b"stale"));
        assert!(
            cache.manifest(&repo, "v1").is_err(),
            "stale result must not be cached"
        );
        let digest = Digest::of(Algorithm::Sha256, b"blob");
        let ticket = cache.blob_size(&repo, &digest).expect_err("empty");
        cache.invalidate(&"other".parse().expect("name"));
        cache.store_blob_size(ticket, &repo, &digest, 4);
        assert!(cache.blob_size(&repo, &digest).is_err());
    }

    #[test]
    fn disabled_cache_never_hits() {
        let cache = ReadCache::new(false);
        let repo: RepositoryName = "a".parse().expect("name");
        let ticket = cache.manifest(&repo, "v1").expect_err("empty");
        cache.store_manifest(ticket, &repo, "v1", &manifest(b"one"));
        assert!(cache.manifest(&repo, "v1").is_err());
    }
}
