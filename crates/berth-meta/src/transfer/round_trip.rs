//! The copy against real databases: SQLite → PostgreSQL → SQLite keeps every row and id,
//! and what each database answers through the store's API is the same afterwards.

use std::path::Path;

use berth_core::mgmt::{ArtifactFilter, ArtifactKey, ArtifactWith, Order, RepositoryKey};

use super::{
    DatabaseSum, TABLES, TableAccess, TransferError, check_destination, check_schema, copy,
    differences, sample, summarize,
};
use crate::postgres::testing;
use crate::{
    ArtifactQuery, AuditBatch, AuditRecord, AuditStore, MetaStore, PgOptions, PgStore,
    ProjectStore, RepositoryQuery, RepositoryStore, SqliteStore,
};

async fn sum(store: &dyn TableAccess) -> DatabaseSum {
    let mut reader = store.reader().await.expect("reader");
    summarize(&mut *reader).await.expect("summary")
}

async fn copy_all(source: &dyn TableAccess, destination: &dyn TableAccess) -> DatabaseSum {
    check_schema(source).await.expect("schema known");
    check_destination(source, destination)
        .await
        .expect("destination empty");
    let mut reader = source.reader().await.expect("reader");
    copy(&mut *reader, destination, &mut |_| {})
        .await
        .expect("copy")
}

async fn sqlite(dir: &Path, name: &str) -> SqliteStore {
    SqliteStore::open(&dir.join(name)).await.expect("sqlite")
}

/// What the management API would show: repositories with their ids, artifacts, users.
async fn shown(store: &dyn MetaStore) -> String {
    let page = store
        .repository_page(&RepositoryQuery {
            projects: None,
            name: None,
            order: Order {
                key: RepositoryKey::Id,
                descending: false,
            },
            offset: 0,
            limit: 100,
        })
        .await
        .expect("repositories");
    let mut out = format!("{:?}\n", page.items);
    for repository in &page.items {
        let artifacts = store
            .artifact_page(
                &repository.name,
                &ArtifactQuery {
                    filter: &ArtifactFilter::default(),
                    order: Order {
                        key: ArtifactKey::Id,
                        descending: false,
                    },
                    with: ArtifactWith {
                        tags: true,
                        accessories: true,
                    },
                    offset: 0,
                    limit: 100,
                },
            )
            .await
            .expect("artifacts");
        out.push_str(&format!("{artifacts:?}\n"));
    }
    out.push_str(&format!("{:?}\n", store.list_users().await.expect("users")));
    out.push_str(&format!(
        "{:?}\n",
        store.list_projects().await.expect("projects")
    ));
    out
}

#[tokio::test]
async fn sqlite_to_postgres_and_back_keeps_every_row_and_id() {
    let dir = tempfile::tempdir().expect("tempdir");
    let source = sqlite(dir.path(), "source.db").await;
    sample::fill(&source).await;
    // More rows than a page holds: the copy reads on after the last key of each page.
    let many = (0..2500)
        .map(|i| AuditRecord {
            op_time_ms: 1_700_000_000_000 + i,
            username: format!("user{}", i % 7),
            client: "cli".into(),
            operation: "pull".into(),
            resource_type: "artifact".into(),
            resource: format!("team/app:{i}"),
            project: Some("team".into()),
            success: i % 3 != 0,
            reason: String::new(),
            count: 1,
        })
        .collect();
    source
        .append_audit(&AuditBatch {
            entries: many,
            pulls: Vec::new(),
        })
        .await
        .expect("audit");
    let before = sum(&source).await;
    for table in &before.tables {
        assert!(table.rows > 0, "the sample leaves {} empty", table.table);
    }
    assert_eq!(before.uploads, 1);
    let audit = before.tables.iter().find(|t| t.table == "audit_log");
    assert_eq!(audit.map(|t| t.rows), Some(2502));

    let db = testing::database().await;
    let postgres = PgStore::connect(&PgOptions::new(db.url.clone()))
        .await
        .expect("postgres");
    let copied = copy_all(&source, &postgres).await;
    assert_eq!(copied, before, "the copy read what a summary reads");
    let on_postgres = sum(&postgres).await;
    assert_eq!(differences(&before, &on_postgres), Vec::<String>::new());
    assert_eq!(on_postgres.uploads, 0, "upload sessions are not copied");

    let back = sqlite(dir.path(), "back.db").await;
    copy_all(&postgres, &back).await;
    let after = sum(&back).await;
    assert_eq!(differences(&before, &after), Vec::<String>::new());
    assert_eq!(before.tables, after.tables);
    assert_eq!(before.counters, after.counters);
    assert_eq!(shown(&source).await, shown(&postgres).await);
    assert_eq!(shown(&source).await, shown(&back).await);

    // The next ids continue after the copied ones on both, never reusing one.
    for store in [&postgres as &dyn MetaStore, &back] {
        let id = store
            .create_project("next", false, None)
            .await
            .expect("create");
        let largest = before
            .counters
            .iter()
            .find(|(name, _)| name == "projects.id")
            .map(|(_, value)| value.last)
            .expect("projects counter");
        assert_eq!(id, largest + 1);
    }
    postgres.close().await;
}

#[tokio::test]
async fn a_destination_in_use_or_an_unknown_table_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let source = sqlite(dir.path(), "source.db").await;
    sample::fill(&source).await;
    let used = sqlite(dir.path(), "used.db").await;
    used.create_project("mine", false, None)
        .await
        .expect("project");
    let err = check_destination(&source, &used)
        .await
        .expect_err("not empty");
    assert!(
        matches!(err, TransferError::DestinationNotEmpty(_)),
        "{err}"
    );
    assert!(err.to_string().contains("projects: 1 rows"), "{err}");

    let fresh = sqlite(dir.path(), "fresh.db").await;
    check_destination(&source, &fresh)
        .await
        .expect("a fresh database (with the seeded `library`) is empty");

    sqlx::query("CREATE TABLE retention_rules (id INTEGER PRIMARY KEY, rule TEXT)")
        .execute(&source.writer)
        .await
        .expect("a table from the future");
    sqlx::query("ALTER TABLE tags ADD COLUMN immutable INTEGER")
        .execute(&source.writer)
        .await
        .expect("a column from the future");
    let err = check_schema(&source).await.expect_err("unknown");
    let message = err.to_string();
    assert!(message.contains("table retention_rules"), "{message}");
    assert!(message.contains("column tags.immutable"), "{message}");
}

/// A migration that adds a table or a column needs the copy to know it: a fresh database
/// of each backend has exactly the tables and columns the copy lists.
#[tokio::test]
async fn the_copy_knows_every_table_of_both_schemas() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = testing::database().await;
    let postgres = PgStore::connect(&PgOptions::new(db.url.clone()))
        .await
        .expect("postgres");
    let sqlite = sqlite(dir.path(), "fresh.db").await;
    for store in [&sqlite as &dyn TableAccess, &postgres] {
        check_schema(store)
            .await
            .unwrap_or_else(|e| panic!("{}: {e} — add it to transfer::TABLES", store.backend()));
    }
    assert!(TABLES.len() >= 15);
    postgres.close().await;
}

/// PostgreSQL remembers every id it gave; SQLite does for repositories, manifests, tags and
/// jobs, and numbers other rows after the largest id in use. Ids given to rows since deleted
/// move with the counters SQLite keeps, and are no difference where it keeps none.
#[tokio::test]
async fn ids_of_deleted_rows_move_where_sqlite_keeps_a_counter() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = testing::database().await;
    let postgres = PgStore::connect(&PgOptions::new(db.url.clone()))
        .await
        .expect("postgres");
    sample::fill(&postgres).await;
    let later = postgres
        .create_project("later", false, None)
        .await
        .expect("project");
    assert!(postgres.delete_project(later).await.expect("delete"));
    let repository = "library/busybox".parse().expect("name");
    assert!(
        postgres
            .delete_repository(&repository)
            .await
            .expect("delete repository")
    );
    let on_postgres = sum(&postgres).await;

    let back = sqlite(dir.path(), "back.db").await;
    copy_all(&postgres, &back).await;
    let on_sqlite = sum(&back).await;
    assert_eq!(differences(&on_postgres, &on_sqlite), Vec::<String>::new());
    let counter = |sum: &DatabaseSum, name: &str| {
        sum.counters
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, value)| *value)
            .expect("counter")
    };
    for kept in ["repositories.id", "manifests.id", "tags.id"] {
        assert_eq!(
            counter(&on_sqlite, kept),
            counter(&on_postgres, kept),
            "{kept}"
        );
    }
    let projects = counter(&on_sqlite, "projects.id");
    assert!(!projects.kept && projects.last < later);
    postgres.close().await;
}
