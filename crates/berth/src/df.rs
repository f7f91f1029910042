//! `berth df [project]`: storage usage from the counters the database keeps (no walk of the
//! storage), per project, or per repository of one project, and the registry's totals.

use berth_core::RepositoryName;
use berth_meta::usage::{UNLIMITED, human_bytes};
use berth_meta::{MetaStore, Usage};

/// How many of a project's repositories `berth df PROJECT` lists at most.
const MAX_REPOSITORIES: usize = 10_000;

pub async fn command(
    project: Option<String>,
    bytes: bool,
    flags: &crate::Flags,
) -> Result<(), String> {
    let config = flags.load().map_err(|e| e.to_string())?;
    let metadata = crate::open_metadata(&config).await?;
    let store = metadata.store();
    let shown = report(store.as_ref(), project.as_deref(), bytes).await;
    metadata.close().await;
    print!("{}", shown?);
    Ok(())
}

/// The report `berth df` prints.
pub async fn report(
    store: &dyn MetaStore,
    project: Option<&str>,
    bytes: bool,
) -> Result<String, String> {
    let size = |n: u64| if bytes { n.to_string() } else { human_bytes(n) };
    let fail = |e: berth_meta::MetaError| e.to_string();
    let limits: std::collections::BTreeMap<String, i64> = store
        .quotas()
        .await
        .map_err(fail)?
        .into_iter()
        .map(|q| (q.project_name, q.storage_limit))
        .collect();
    let limit = |name: &str| match limits.get(name) {
        Some(&l) if l != UNLIMITED => size(l as u64),
        _ => "-".to_owned(),
    };
    let row = |name: &str, usage: &Usage, limit: String| {
        format!(
            "{name:<32} {:>12} {:>12} {:>12} {:>12}\n",
            size(usage.used()),
            size(usage.unique()),
            size(usage.shared()),
            limit
        )
    };
    let mut out = format!(
        "{:<32} {:>12} {:>12} {:>12} {:>12}\n",
        "NAME", "USED", "UNIQUE", "SHARED", "LIMIT"
    );
    match project {
        Some(project) => {
            let usage = store.namespace_usage(project).await.map_err(fail)?;
            out.push_str(&row(project, &usage, limit(project)));
            let names = store
                .list_repositories_in(&[project.to_owned()], None, MAX_REPOSITORIES)
                .await
                .map_err(fail)?;
            for name in names {
                let Ok(repository) = name.parse::<RepositoryName>() else {
                    continue;
                };
                if let Some(usage) = store.repository_usage(&repository).await.map_err(fail)? {
                    out.push_str(&row(&format!("  {name}"), &usage, String::new()));
                }
            }
        }
        None => {
            for entry in store.all_namespace_usage().await.map_err(fail)? {
                let name = if entry.namespace.is_empty() {
                    "(outside projects)"
                } else {
                    entry.namespace.as_str()
                };
                out.push_str(&row(name, &entry.usage, limit(&entry.namespace)));
            }
            let registry = store.registry_usage().await.map_err(fail)?;
            out.push_str(&format!(
                "registry: {} in use ({} of blobs, {} of manifests); {} of blobs stored, {} of them unlinked until garbage collection\n",
                size(registry.total()),
                size(registry.linked_blob_bytes),
                size(registry.manifest_bytes),
                size(registry.stored_blob_bytes),
                size(registry.stored_blob_bytes.saturating_sub(registry.linked_blob_bytes)),
            ));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use berth_core::{Algorithm, Digest};
    use berth_meta::{BlobIndex, SqliteStore};

    #[tokio::test]
    async fn df_shows_projects_repositories_and_the_registry_total() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SqliteStore::open(&dir.path().join("meta.db"))
            .await
            .expect("open");
        let layer = Digest::of(Algorithm::Sha256, b"layer");
        for repository in ["library/a", "library/b"] {
            store
                .link_blob(&repository.parse().expect("name"), &layer, 2048)
                .await
                .expect("link");
        }
        let all = super::report(&store, None, true).await.expect("report");
        let library: Vec<&str> = all
            .lines()
            .find(|line| line.starts_with("library"))
            .map(|line| line.split_whitespace().collect())
            .unwrap_or_default();
        assert_eq!(
            library,
            ["library", "2048", "2048", "0", "-"],
            "one blob in two repositories of one project counts once: {all}"
        );
        assert!(all.contains("registry: 2048 in use"), "{all}");
        let one = super::report(&store, Some("library"), false)
            .await
            .expect("report");
        assert!(one.contains("  library/a"), "{one}");
        assert!(one.contains("2.0 KiB"), "{one}");
    }
}
