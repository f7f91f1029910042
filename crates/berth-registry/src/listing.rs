//! Catalog and tag listings with the spec's `n` / `last` pagination.

use std::sync::Arc;

use berth_core::RepositoryName;
use berth_core::endpoint::Page;

use crate::cache::CatalogScope;
use crate::{Error, Registry, Result};

/// The most entries one page returns, whatever `n` asks for.
pub const MAX_PAGE: usize = 10_000;
/// Catalog page size when the client gives no `n`.
pub const DEFAULT_CATALOG_PAGE: usize = 1_000;

/// One page of names, and whether another page follows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listing {
    pub items: Vec<String>,
    /// The `n` to carry into the next page's link, if there is a next page.
    pub next_page_size: Option<usize>,
    /// The page as the HTTP API sends it, made once by the API layer: a page served from
    /// the read cache is then not serialized again for every request.
    pub rendered: std::sync::OnceLock<bytes::Bytes>,
}

impl Listing {
    pub(crate) fn new(items: Vec<String>, next_page_size: Option<usize>) -> Listing {
        Listing {
            items,
            next_page_size,
            rendered: Default::default(),
        }
    }
}

fn page_size(page: &Page, default: usize) -> usize {
    page.n.unwrap_or(default).min(MAX_PAGE)
}

/// Fetch one more than asked, to know whether another page follows.
fn finish(mut items: Vec<String>, limit: usize) -> Listing {
    let more = items.len() > limit;
    items.truncate(limit);
    Listing::new(items, more.then_some(limit))
}

impl Registry {
    /// A catalog page of every repository.
    pub async fn catalog(&self, page: &Page) -> Result<Arc<Listing>> {
        self.catalog_page(None, page).await
    }

    /// A catalog page of only the repositories in `projects` (sorted, no duplicates).
    pub async fn catalog_in(&self, projects: &[String], page: &Page) -> Result<Arc<Listing>> {
        self.catalog_page(Some(projects.into()), page).await
    }

    async fn catalog_page(&self, scope: CatalogScope, page: &Page) -> Result<Arc<Listing>> {
        let limit = page_size(page, DEFAULT_CATALOG_PAGE);
        if limit == 0 {
            return Ok(Arc::new(Listing::new(Vec::new(), None)));
        }
        let last = page.last.as_deref();
        let ticket = match self.cache.catalog_page(&scope, last, limit) {
            Ok(listing) => return Ok(listing),
            Err(ticket) => ticket,
        };
        let names = match &scope {
            None => self.meta.list_repositories(last, limit + 1).await?,
            Some(projects) => {
                self.meta
                    .list_repositories_in(projects, last, limit + 1)
                    .await?
            }
        };
        let listing = Arc::new(finish(names, limit));
        self.cache
            .store_catalog_page(ticket, &scope, last, limit, &listing);
        Ok(listing)
    }

    pub async fn list_tags(
        &self,
        repository: &RepositoryName,
        page: &Page,
    ) -> Result<Arc<Listing>> {
        let limit = page_size(page, MAX_PAGE);
        let last = page.last.as_deref();
        let ticket = match self.cache.tag_page(repository, last, limit) {
            Ok(listing) => return Ok(listing),
            Err(ticket) => ticket,
        };
        let tags = self
            .meta
            .list_tags(repository, last, limit + 1)
            .await?
            .ok_or_else(|| Error::NameUnknown(repository.to_string()))?;
        let listing = Arc::new(if limit == 0 {
            Listing::new(Vec::new(), None)
        } else {
            finish(tags, limit)
        });
        self.cache
            .store_tag_page(ticket, repository, last, limit, &listing);
        Ok(listing)
    }
}
