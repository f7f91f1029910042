//! Copying a whole metadata database to another backend, row by row, keeping every id
//! (`berth migrate`), and checking that two databases hold the same rows.
//!
//! The tables are listed once, in [`TABLES`], in an order that satisfies every foreign key
//! (referenced tables first). Each backend only knows how to read a page of a table in key
//! order, insert a batch of rows, and read or set the counters ids are drawn from
//! ([`TableAccess`], [`TableReader`], [`TableWriter`]); what is copied, in which order,
//! and what counts as the same is decided here, for both.
//!
//! Nothing is dropped silently: before a copy the source's table catalog (tables and their
//! columns) is compared with [`TABLES`] and [`NOT_COPIED`], and a table or column this code
//! does not know stops the copy. A migration that adds one must add it here too (a test
//! compares the lists with a fresh database of each backend).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use async_trait::async_trait;
use sha2::{Digest as _, Sha256};
use sqlx::{ColumnIndex, Decode, Encode, Row, Type};

use crate::{MetaError, Result};

/// How a column's values are typed, the same on both backends (SQLite stores flags as
/// integers, PostgreSQL as `BOOLEAN`; both read back as [`Value::Boolean`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Integer,
    Boolean,
    Text,
    Bytes,
}

/// One column of a copied table.
#[derive(Debug, Clone, Copy)]
pub struct Column {
    pub name: &'static str,
    pub kind: Kind,
    /// Kept by triggers from other tables' rows (a repository's `manifest_count`): not
    /// written by the copy, which leaves it to the triggers, but compared by the
    /// verification like every other column.
    pub derived: bool,
}

const fn column(name: &'static str, kind: Kind) -> Column {
    Column {
        name,
        kind,
        derived: false,
    }
}

const fn derived(name: &'static str, kind: Kind) -> Column {
    Column {
        name,
        kind,
        derived: true,
    }
}

/// A table the copy takes, with its primary key (the order pages are read in).
#[derive(Debug, Clone, Copy)]
pub struct Table {
    pub name: &'static str,
    pub columns: &'static [Column],
    pub key: &'static [&'static str],
    /// Rows read and written per statement: fewer for tables with large rows (a manifest's
    /// content may be 4 MiB).
    pub page_rows: usize,
    /// Rows a fresh database already has (its migrations insert them), as an SQL condition
    /// valid on both backends: they are not "data" when checking the destination is empty,
    /// and are replaced by the source's rows.
    pub seeded: Option<&'static str>,
}

impl Table {
    pub fn column_names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.columns.iter().map(|c| c.name)
    }

    /// The positions of the key columns in `columns`.
    fn key_positions(&self) -> Vec<usize> {
        self.key
            .iter()
            .map(|k| {
                self.columns
                    .iter()
                    .position(|c| c.name == *k)
                    .unwrap_or_else(|| panic!("{}: key column {k} is not a column", self.name))
            })
            .collect()
    }
}

use Kind::{Boolean, Bytes, Integer, Text};

/// Every table `berth migrate` copies, referenced tables before the tables that reference
/// them. A new table (a new migration) is added here, in foreign-key order, and to both
/// backends' schema only: the backends' copy code is generic.
pub const TABLES: &[Table] = &[
    Table {
        name: "users",
        columns: &[
            column("id", Integer),
            column("name", Text),
            column("email", Text),
            column("realname", Text),
            column("comment", Text),
            column("password_hash", Text),
            column("sysadmin", Boolean),
            column("created_at", Integer),
            column("updated_at", Integer),
        ],
        key: &["id"],
        page_rows: 500,
        seeded: None,
    },
    Table {
        name: "projects",
        columns: &[
            column("id", Integer),
            column("name", Text),
            column("public", Boolean),
            column("owner_id", Integer),
            column("created_at", Integer),
            column("updated_at", Integer),
        ],
        key: &["id"],
        page_rows: 500,
        // Migration 2 creates the public project `library`, as Harbor does.
        seeded: Some("name = 'library' AND owner_id IS NULL"),
    },
    Table {
        name: "quota_defaults",
        columns: &[column("id", Integer), column("storage_limit", Integer)],
        key: &["id"],
        page_rows: 10,
        // Migration 9 inserts the one row (no limit); each node rewrites it at start.
        seeded: Some("id = 1"),
    },
    Table {
        name: "project_quotas",
        columns: &[
            column("project_id", Integer),
            column("storage_limit", Integer),
            column("created_at", Integer),
            column("updated_at", Integer),
        ],
        key: &["project_id"],
        page_rows: 1000,
        // A trigger gives every project copied above the destination's default limit:
        // replaced by the source's limits.
        seeded: Some("1 = 1"),
    },
    Table {
        name: "immutable_rules",
        columns: &[
            column("id", Integer),
            column("project_id", Integer),
            column("disabled", Boolean),
            column("priority", Integer),
            column("selectors", Text),
            column("created_at", Integer),
            column("updated_at", Integer),
        ],
        key: &["id"],
        page_rows: 500,
        seeded: None,
    },
    Table {
        name: "retention_policies",
        columns: &[
            column("id", Integer),
            column("project_id", Integer),
            column("policy", Text),
            column("created_at", Integer),
            column("updated_at", Integer),
        ],
        key: &["id"],
        page_rows: 500,
        seeded: None,
    },
    Table {
        name: "retention_runs",
        columns: &[
            column("id", Integer),
            column("policy_id", Integer),
            column("dry_run", Boolean),
            column("trigger", Text),
            column("status", Text),
            column("started_at", Integer),
            column("finished_at", Integer),
            column("result", Text),
        ],
        key: &["id"],
        page_rows: 200,
        seeded: None,
    },
    Table {
        name: "project_members",
        columns: &[
            column("project_id", Integer),
            column("user_id", Integer),
            column("role", Integer),
            column("created_at", Integer),
            column("updated_at", Integer),
        ],
        key: &["project_id", "user_id"],
        page_rows: 500,
        seeded: None,
    },
    Table {
        name: "robots",
        columns: &[
            column("id", Integer),
            column("name", Text),
            column("description", Text),
            column("project_id", Integer),
            column("secret_hash", Text),
            column("disabled", Boolean),
            column("expires_at", Integer),
            column("permissions", Text),
            column("created_at", Integer),
            column("updated_at", Integer),
        ],
        key: &["id"],
        page_rows: 500,
        seeded: None,
    },
    Table {
        name: "signing_keys",
        columns: &[
            column("kid", Text),
            column("algorithm", Text),
            column("private_key", Bytes),
            column("created_at", Integer),
            column("retired_at", Integer),
        ],
        key: &["kid"],
        page_rows: 100,
        seeded: None,
    },
    Table {
        name: "registries",
        columns: &[
            column("id", Integer),
            column("name", Text),
            column("kind", Text),
            column("url", Text),
            column("description", Text),
            column("insecure", Boolean),
            column("ca_cert", Text),
            column("credential_type", Text),
            column("access_key", Text),
            column("access_secret", Bytes),
            column("created_at", Integer),
            column("updated_at", Integer),
        ],
        key: &["id"],
        page_rows: 500,
        seeded: None,
    },
    Table {
        name: "proxy_projects",
        columns: &[
            column("project_id", Integer),
            column("registry_id", Integer),
        ],
        key: &["project_id"],
        page_rows: 500,
        seeded: None,
    },
    // The keys travel with the secrets they sealed (a configured `[secrets] key` does not).
    Table {
        name: "secret_keys",
        columns: &[
            column("kid", Text),
            column("key", Bytes),
            column("created_at", Integer),
        ],
        key: &["kid"],
        page_rows: 100,
        seeded: None,
    },
    Table {
        name: "repositories",
        columns: &[
            column("id", Integer),
            column("name", Text),
            column("created_at", Integer),
            column("pull_count", Integer),
            column("description", Text),
            column("updated_at", Integer),
            // Counted by the triggers on `manifests` (migration 5) as manifests are copied.
            derived("manifest_count", Integer),
            // Usage, kept by the triggers of migration 9 as links and manifests are copied.
            derived("blob_bytes", Integer),
            derived("unique_blob_bytes", Integer),
            derived("manifest_bytes", Integer),
        ],
        key: &["id"],
        page_rows: 500,
        seeded: None,
    },
    Table {
        name: "blobs",
        columns: &[
            column("digest", Text),
            column("size", Integer),
            column("created_at", Integer),
            column("epoch", Integer),
            // Kept by the usage triggers (migration 9) as links are copied.
            derived("repository_links", Integer),
            derived("namespace_holders", Integer),
        ],
        key: &["digest"],
        page_rows: 1000,
        seeded: None,
    },
    Table {
        name: "repository_blobs",
        columns: &[
            column("repository_id", Integer),
            column("digest", Text),
            column("created_at", Integer),
        ],
        key: &["repository_id", "digest"],
        page_rows: 1000,
        seeded: None,
    },
    Table {
        name: "manifests",
        columns: &[
            column("repository_id", Integer),
            column("digest", Text),
            column("id", Integer),
            column("media_type", Text),
            column("content", Bytes),
            column("size", Integer),
            column("artifact_type", Text),
            column("config_media_type", Text),
            column("subject", Text),
            column("annotations", Text),
            column("created_at", Integer),
        ],
        key: &["repository_id", "digest"],
        // At most 4 MiB each: a page stays within a few hundred MiB even at the limit.
        page_rows: 64,
        seeded: None,
    },
    Table {
        name: "manifest_references",
        columns: &[
            column("repository_id", Integer),
            column("manifest_digest", Text),
            column("child_digest", Text),
            column("child_is_manifest", Boolean),
        ],
        key: &["repository_id", "manifest_digest", "child_digest"],
        page_rows: 1000,
        seeded: None,
    },
    Table {
        name: "tags",
        columns: &[
            column("repository_id", Integer),
            column("name", Text),
            column("id", Integer),
            column("manifest_digest", Text),
            column("updated_at", Integer),
        ],
        key: &["repository_id", "name"],
        page_rows: 1000,
        seeded: None,
    },
    Table {
        name: "artifact_pulls",
        columns: &[
            column("repository_id", Integer),
            column("digest", Text),
            column("pull_count", Integer),
            column("pull_time", Integer),
        ],
        key: &["repository_id", "digest"],
        page_rows: 1000,
        seeded: None,
    },
    Table {
        name: "audit_log",
        columns: &[
            column("id", Integer),
            column("op_time", Integer),
            column("username", Text),
            column("client", Text),
            column("operation", Text),
            column("resource_type", Text),
            column("resource", Text),
            column("project", Text),
            column("success", Boolean),
            column("reason", Text),
            column("count", Integer),
        ],
        key: &["id"],
        page_rows: 1000,
        seeded: None,
    },
    Table {
        name: "jobs",
        columns: &[
            column("id", Integer),
            column("kind", Text),
            column("key", Text),
            column("params", Text),
            column("state", Text),
            column("attempts", Integer),
            column("run_after", Integer),
            column("lease_owner", Text),
            column("lease_until", Integer),
            column("created_at", Integer),
            column("started_at", Integer),
            column("finished_at", Integer),
            column("result", Text),
            column("error", Text),
        ],
        key: &["id"],
        page_rows: 500,
        seeded: None,
    },
    Table {
        name: "job_schedules",
        columns: &[
            column("kind", Text),
            column("cron", Text),
            column("params", Text),
            column("next_run", Integer),
        ],
        key: &["kind"],
        page_rows: 500,
        seeded: None,
    },
    Table {
        name: "replication_policies",
        columns: &[
            column("id", Integer),
            column("name", Text),
            column("enabled", Boolean),
            column("src_registry_id", Integer),
            column("dest_registry_id", Integer),
            column("definition", Text),
            column("created_at", Integer),
            column("updated_at", Integer),
        ],
        key: &["id"],
        page_rows: 500,
        seeded: None,
    },
    Table {
        name: "replication_executions",
        columns: &[
            column("id", Integer),
            column("policy_id", Integer),
            column("trigger", Text),
            column("status", Text),
            column("status_text", Text),
            column("stop_requested", Boolean),
            column("event", Text),
            column("started_at", Integer),
            column("ended_at", Integer),
        ],
        key: &["id"],
        page_rows: 500,
        seeded: None,
    },
    Table {
        name: "replication_tasks",
        columns: &[
            column("id", Integer),
            column("execution_id", Integer),
            column("resource_type", Text),
            column("src_resource", Text),
            column("dst_resource", Text),
            column("operation", Text),
            column("plan", Text),
            column("status", Text),
            column("started_at", Integer),
            column("ended_at", Integer),
            column("log", Text),
        ],
        key: &["id"],
        page_rows: 100,
        seeded: None,
    },
];

/// The tables that hold no registry data to copy, and why. The copy must still know them:
/// a table in neither list stops it.
pub const NOT_COPIED: &[(&str, &str)] = &[
    (
        "namespace_blobs",
        "usage counters kept by triggers from the copied links (migration 9); verified through the repositories' usage columns",
    ),
    (
        "namespace_usage",
        "usage counters kept by triggers from the copied links and manifests (migration 9)",
    ),
    (
        "registry_usage",
        "the registry's usage totals, kept by triggers from the copied blobs and links (migration 9)",
    ),
    (
        "blob_deletions",
        "garbage collection's tombstones for the source's blob store: the blobs they name are no longer in the registry, so none is copied",
    ),
    (
        "proxy_tags",
        "the proxy cache's record of when it last asked upstreams about its tags (migration 15): after a migration, the first pull of each cached tag asks again",
    ),
    (
        "schema_migrations",
        "each database has its own; the versions must be equal",
    ),
    (
        "sequences",
        "SQLite's id counters: carried as counters, not rows",
    ),
    (
        "uploads",
        "an in-flight upload's bytes are in the source's blob store, which the destination does not share: its client starts the upload again",
    ),
];

/// A counter ids are drawn from, by the table and column it numbers. SQLite keeps
/// `repositories`, `manifests` and `tags` in its `sequences` table and `jobs` in
/// `sqlite_sequence`; PostgreSQL has a sequence per column. Elsewhere SQLite numbers rows
/// after the largest id, which the copied rows carry over by themselves.
#[derive(Debug, Clone, Copy)]
pub struct Counter {
    pub table: &'static str,
    pub column: &'static str,
}

pub const COUNTERS: &[Counter] = &[
    Counter {
        table: "repositories",
        column: "id",
    },
    Counter {
        table: "manifests",
        column: "id",
    },
    Counter {
        table: "tags",
        column: "id",
    },
    Counter {
        table: "users",
        column: "id",
    },
    Counter {
        table: "projects",
        column: "id",
    },
    Counter {
        table: "robots",
        column: "id",
    },
    Counter {
        table: "audit_log",
        column: "id",
    },
    Counter {
        table: "jobs",
        column: "id",
    },
    Counter {
        table: "registries",
        column: "id",
    },
    Counter {
        table: "immutable_rules",
        column: "id",
    },
    Counter {
        table: "retention_policies",
        column: "id",
    },
    Counter {
        table: "retention_runs",
        column: "id",
    },
    Counter {
        table: "replication_policies",
        column: "id",
    },
    Counter {
        table: "replication_executions",
        column: "id",
    },
    Counter {
        table: "replication_tasks",
        column: "id",
    },
];

/// A value of one column, typed the same whichever backend it came from.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Value {
    Null,
    Integer(i64),
    Boolean(bool),
    Text(String),
    Bytes(Vec<u8>),
}

impl Value {
    pub fn as_integer(&self) -> Option<i64> {
        match self {
            Value::Integer(n) => Some(*n),
            _ => None,
        }
    }

    pub fn as_text(&self) -> Option<&str> {
        match self {
            Value::Text(t) => Some(t),
            _ => None,
        }
    }

    /// An unambiguous encoding for checksums: a type byte, then a length for what varies.
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Value::Null => out.push(0),
            Value::Integer(n) => {
                out.push(1);
                out.extend_from_slice(&n.to_be_bytes());
            }
            Value::Boolean(b) => out.extend_from_slice(&[2, u8::from(*b)]),
            Value::Text(t) => {
                out.push(3);
                out.extend_from_slice(&(t.len() as u64).to_be_bytes());
                out.extend_from_slice(t.as_bytes());
            }
            Value::Bytes(b) => {
                out.push(4);
                out.extend_from_slice(&(b.len() as u64).to_be_bytes());
                out.extend_from_slice(b);
            }
        }
    }
}

/// One row, its values in the order of [`Table::columns`].
pub type Values = Vec<Value>;

/// Read a row's columns, in `table`'s order, with the types its kinds say.
pub(crate) fn decode_row<R>(table: &Table, row: &R) -> Result<Values>
where
    R: Row,
    usize: ColumnIndex<R>,
    i64: for<'r> Decode<'r, R::Database> + Type<R::Database>,
    bool: for<'r> Decode<'r, R::Database> + Type<R::Database>,
    String: for<'r> Decode<'r, R::Database> + Type<R::Database>,
    Vec<u8>: for<'r> Decode<'r, R::Database> + Type<R::Database>,
{
    let corrupt = |name: &str, e: sqlx::Error| {
        MetaError::Corrupt(format!("{}.{name} cannot be read: {e}", table.name))
    };
    table
        .columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            Ok(match c.kind {
                Integer => row
                    .try_get::<Option<i64>, _>(i)
                    .map_err(|e| corrupt(c.name, e))?
                    .map_or(Value::Null, Value::Integer),
                Boolean => row
                    .try_get::<Option<bool>, _>(i)
                    .map_err(|e| corrupt(c.name, e))?
                    .map_or(Value::Null, Value::Boolean),
                Text => row
                    .try_get::<Option<String>, _>(i)
                    .map_err(|e| corrupt(c.name, e))?
                    .map_or(Value::Null, Value::Text),
                Bytes => row
                    .try_get::<Option<Vec<u8>>, _>(i)
                    .map_err(|e| corrupt(c.name, e))?
                    .map_or(Value::Null, Value::Bytes),
            })
        })
        .collect()
}

/// Bind `value` as a parameter of type `kind` (a NULL too is typed: PostgreSQL refuses a
/// `BIGINT` NULL for a `TEXT` column).
pub(crate) fn bind_value<'q, DB>(
    query: sqlx::query::Query<'q, DB, <DB as sqlx::Database>::Arguments>,
    kind: Kind,
    value: &Value,
) -> Result<sqlx::query::Query<'q, DB, <DB as sqlx::Database>::Arguments>>
where
    DB: sqlx::Database,
    Option<i64>: for<'t> Encode<'t, DB> + Type<DB>,
    Option<bool>: for<'t> Encode<'t, DB> + Type<DB>,
    Option<String>: for<'t> Encode<'t, DB> + Type<DB>,
    Option<Vec<u8>>: for<'t> Encode<'t, DB> + Type<DB>,
{
    let mismatch = || MetaError::Corrupt(format!("a {value:?} where a {kind:?} belongs"));
    Ok(match (kind, value) {
        (Integer, Value::Null) => query.bind(None::<i64>),
        (Boolean, Value::Null) => query.bind(None::<bool>),
        (Text, Value::Null) => query.bind(None::<String>),
        (Bytes, Value::Null) => query.bind(None::<Vec<u8>>),
        (Integer, Value::Integer(n)) => query.bind(Some(*n)),
        (Boolean, Value::Boolean(b)) => query.bind(Some(*b)),
        (Text, Value::Text(t)) => query.bind(Some(t.clone())),
        (Bytes, Value::Bytes(b)) => query.bind(Some(b.clone())),
        _ => return Err(mismatch()),
    })
}

/// `SELECT` of a page of `table` in key order, after the key `after` when there is one;
/// `placeholder(n)` writes the n-th parameter (1-based) in the backend's syntax.
pub(crate) fn page_sql(table: &Table, after: bool, placeholder: fn(usize) -> String) -> String {
    let columns: Vec<&str> = table.column_names().collect();
    let key = table.key.join(", ");
    let mut sql = format!("SELECT {} FROM {}", columns.join(", "), table.name);
    if after {
        let params: Vec<String> = (1..=table.key.len()).map(placeholder).collect();
        let _ = write!(sql, " WHERE ({key}) > ({})", params.join(", "));
    }
    let _ = write!(
        sql,
        " ORDER BY {key} LIMIT {}",
        placeholder(table.key.len() * usize::from(after) + 1)
    );
    sql
}

/// A multi-row `INSERT` of `rows` rows of `table`'s written (not derived) columns.
pub(crate) fn insert_sql(table: &Table, rows: usize, placeholder: fn(usize) -> String) -> String {
    let written: Vec<&str> = table
        .columns
        .iter()
        .filter(|c| !c.derived)
        .map(|c| c.name)
        .collect();
    let mut sql = format!(
        "INSERT INTO {} ({}) VALUES ",
        table.name,
        written.join(", ")
    );
    let mut n = 0;
    for row in 0..rows {
        if row > 0 {
            sql.push_str(", ");
        }
        sql.push('(');
        for i in 0..written.len() {
            if i > 0 {
                sql.push_str(", ");
            }
            n += 1;
            sql.push_str(&placeholder(n));
        }
        sql.push(')');
    }
    sql
}

/// What a backend offers the copy.
#[async_trait]
pub trait TableAccess: Send + Sync {
    /// `sqlite` or `postgres`, for reports.
    fn backend(&self) -> &'static str;
    /// Every table of the database (not the engine's own) and its columns.
    async fn catalog(&self) -> Result<BTreeMap<String, BTreeSet<String>>>;
    /// The latest migration applied.
    async fn schema_version(&self) -> Result<i64>;
    /// A read transaction: every read through it sees one snapshot.
    async fn reader(&self) -> Result<Box<dyn TableReader>>;
    /// A write transaction: nothing is visible until [`TableWriter::commit`].
    async fn writer(&self) -> Result<Box<dyn TableWriter>>;
}

#[async_trait]
pub trait TableReader: Send {
    /// Up to `limit` rows of `table` in key order, after the row whose key is `after`.
    async fn page(
        &mut self,
        table: &Table,
        after: Option<&[Value]>,
        limit: usize,
    ) -> Result<Vec<Values>>;
    /// Rows of `table` (the one named), those that are not `except` when given.
    async fn count(&mut self, table: &str, except: Option<&str>) -> Result<u64>;
    /// The last id `counter` gave (0 if none): never less than the largest id in use.
    async fn counter(&mut self, counter: &Counter) -> Result<CounterValue>;
}

#[async_trait]
pub trait TableWriter: Send {
    /// Remove the rows matching `condition` (a table's [`Table::seeded`] rows).
    async fn delete(&mut self, table: &str, condition: &str) -> Result<()>;
    async fn insert(&mut self, table: &Table, rows: &[Values]) -> Result<()>;
    /// Make `counter` give `last + 1` next.
    async fn set_counter(&mut self, counter: &Counter, last: i64) -> Result<()>;
    /// Commit durably.
    async fn commit(self: Box<Self>) -> Result<()>;
}

/// What the copy refuses to do, and why.
#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    #[error(
        "the source database has {0} that `berth migrate` does not know how to copy; refusing rather than leaving it behind (a newer berth's schema? run the migrate of that version)"
    )]
    UnknownSchema(String),
    #[error(
        "the source is at schema version {source_version} and the destination at {destination}: both must be opened by the same berth version"
    )]
    VersionMismatch {
        source_version: i64,
        destination: i64,
    },
    #[error(
        "the destination database is not empty ({0}): `berth migrate` only copies into a fresh database, never into a registry in use"
    )]
    DestinationNotEmpty(String),
    #[error(transparent)]
    Meta(#[from] MetaError),
}

/// Refuse a source with tables or columns neither [`TABLES`] nor [`NOT_COPIED`] account
/// for, and columns a copied table lacks.
pub async fn check_schema(source: &dyn TableAccess) -> Result<(), TransferError> {
    let catalog = source.catalog().await?;
    let mut problems = Vec::new();
    for (table, columns) in &catalog {
        if NOT_COPIED.iter().any(|(name, _)| name == table) {
            continue;
        }
        let Some(spec) = TABLES.iter().find(|t| t.name == table) else {
            problems.push(format!("table {table}"));
            continue;
        };
        let known: BTreeSet<String> = spec.column_names().map(String::from).collect();
        for unknown in columns.difference(&known) {
            problems.push(format!("column {table}.{unknown}"));
        }
        for missing in known.difference(columns) {
            problems.push(format!(
                "no column {table}.{missing} (expected by the copy)"
            ));
        }
    }
    for spec in TABLES {
        if !catalog.contains_key(spec.name) {
            problems.push(format!("no table {} (expected by the copy)", spec.name));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(TransferError::UnknownSchema(problems.join(", ")))
    }
}

/// Refuse a destination that holds anything but what its migrations put there, or whose
/// schema is not the source's version.
pub async fn check_destination(
    source: &dyn TableAccess,
    destination: &dyn TableAccess,
) -> Result<(), TransferError> {
    let (source_version, destination_version) = (
        source.schema_version().await?,
        destination.schema_version().await?,
    );
    if source_version != destination_version {
        return Err(TransferError::VersionMismatch {
            source_version,
            destination: destination_version,
        });
    }
    let mut reader = destination.reader().await?;
    let mut found = Vec::new();
    let tables = TABLES
        .iter()
        .map(|t| (t.name, t.seeded))
        .chain([("uploads", None)]);
    for (name, seeded) in tables {
        let rows = reader.count(name, seeded).await?;
        if rows > 0 {
            found.push(format!("{name}: {rows} rows"));
        }
    }
    if found.is_empty() {
        Ok(())
    } else {
        Err(TransferError::DestinationNotEmpty(found.join(", ")))
    }
}

/// One table's rows and checksum: the same on two databases when they hold the same rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableSum {
    pub table: &'static str,
    pub rows: u64,
    /// The sum (mod 2^256, by 64-bit lanes) of each row's SHA-256: independent of the order
    /// rows are read in, so the backends' collations cannot make equal tables differ.
    pub checksum: [u8; 32],
}

impl TableSum {
    fn new(table: &'static str) -> TableSum {
        TableSum {
            table,
            rows: 0,
            checksum: [0; 32],
        }
    }

    fn add(&mut self, row: &[Value]) {
        let mut bytes = Vec::new();
        for value in row {
            value.encode(&mut bytes);
        }
        let hash = Sha256::digest(&bytes);
        for (lane, sum) in hash.chunks(8).zip(self.checksum.chunks_mut(8)) {
            let (a, b) = (
                u64::from_be_bytes(lane.try_into().unwrap_or_default()),
                u64::from_be_bytes((&*sum).try_into().unwrap_or_default()),
            );
            sum.copy_from_slice(&a.wrapping_add(b).to_be_bytes());
        }
        self.rows += 1;
    }

    pub fn checksum_hex(&self) -> String {
        self.checksum.iter().fold(String::new(), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
    }
}

/// A counter's state in one database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CounterValue {
    /// The last id given (0 if none).
    pub last: i64,
    /// Whether the database remembers it apart from the rows: false where SQLite numbers
    /// rows after the largest id in use (a deleted newest row's id is given again, as it
    /// always is there), so `last` is only that largest id.
    pub kept: bool,
}

/// Every copied table's rows and checksum, every counter, and what is not copied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatabaseSum {
    pub tables: Vec<TableSum>,
    /// `table.column` → the last id given.
    pub counters: Vec<(String, CounterValue)>,
    /// Upload sessions in flight (not copied).
    pub uploads: u64,
}

/// Read `table` page by page, handing each page to `each`.
async fn read_table(
    reader: &mut dyn TableReader,
    table: &Table,
    mut each: impl AsyncFnMut(Vec<Values>) -> Result<()>,
) -> Result<()> {
    let key = table.key_positions();
    let mut after: Option<Vec<Value>> = None;
    loop {
        let page = reader
            .page(table, after.as_deref(), table.page_rows)
            .await?;
        let full = page.len() == table.page_rows;
        if let Some(last) = page.last() {
            after = Some(key.iter().map(|&i| last[i].clone()).collect());
        }
        each(page).await?;
        if !full {
            return Ok(());
        }
    }
}

async fn counters(reader: &mut dyn TableReader) -> Result<Vec<(String, CounterValue)>> {
    let mut values = Vec::new();
    for counter in COUNTERS {
        let last = reader.counter(counter).await?;
        values.push((format!("{}.{}", counter.table, counter.column), last));
    }
    Ok(values)
}

/// Count and checksum every table through one snapshot.
pub async fn summarize(reader: &mut dyn TableReader) -> Result<DatabaseSum> {
    let mut tables = Vec::new();
    for table in TABLES {
        let mut sum = TableSum::new(table.name);
        read_table(reader, table, async |page| {
            page.iter().for_each(|row| sum.add(row));
            Ok(())
        })
        .await?;
        tables.push(sum);
    }
    Ok(DatabaseSum {
        tables,
        counters: counters(reader).await?,
        uploads: reader.count("uploads", None).await?,
    })
}

/// Every blob of the snapshot, as (digest, size): what the blob stores must hold.
pub async fn blob_rows(reader: &mut dyn TableReader) -> Result<Vec<(String, u64)>> {
    let table = TABLES
        .iter()
        .find(|t| t.name == "blobs")
        .ok_or_else(|| MetaError::Corrupt("no blobs table".into()))?;
    let (digest, size) = (
        table.column_names().position(|c| c == "digest"),
        table.column_names().position(|c| c == "size"),
    );
    let (Some(digest), Some(size)) = (digest, size) else {
        return Err(MetaError::Corrupt("blobs has no digest or size".into()));
    };
    let mut blobs = Vec::new();
    read_table(reader, table, async |page| {
        for row in page {
            let (Some(d), Some(n)) = (row[digest].as_text(), row[size].as_integer()) else {
                return Err(MetaError::Corrupt(format!("blob row {row:?}")));
            };
            let n = u64::try_from(n).map_err(|_| MetaError::Corrupt(format!("blob size {n}")))?;
            blobs.push((d.to_owned(), n));
        }
        Ok(())
    })
    .await?;
    Ok(blobs)
}

/// Copy every table of `source`'s snapshot into `destination` in one transaction (nothing
/// is visible there until all is), ids and counters included. `progress` hears each table
/// as it is done. Returns the source's sums, read in the same pass. The destination must
/// have passed [`check_destination`], the source [`check_schema`].
pub async fn copy(
    source: &mut dyn TableReader,
    destination: &dyn TableAccess,
    progress: &mut (dyn FnMut(&TableSum) + Send),
) -> Result<DatabaseSum> {
    let mut writer = destination.writer().await?;
    let mut tables = Vec::new();
    for table in TABLES {
        if let Some(seeded) = table.seeded {
            writer.delete(table.name, seeded).await?;
        }
        let mut sum = TableSum::new(table.name);
        read_table(source, table, async |page| {
            page.iter().for_each(|row| sum.add(row));
            if !page.is_empty() {
                writer.insert(table, &page).await?;
            }
            Ok(())
        })
        .await?;
        progress(&sum);
        tables.push(sum);
    }
    let counters = counters(source).await?;
    for (counter, (_, value)) in COUNTERS.iter().zip(&counters) {
        writer.set_counter(counter, value.last).await?;
    }
    writer.commit().await?;
    Ok(DatabaseSum {
        tables,
        counters,
        uploads: source.count("uploads", None).await?,
    })
}

/// Where two databases differ: empty when the destination holds every row of the source
/// and its counters will not give an id the source gave.
pub fn differences(source: &DatabaseSum, destination: &DatabaseSum) -> Vec<String> {
    let mut found = Vec::new();
    for (s, d) in source.tables.iter().zip(&destination.tables) {
        if s.rows != d.rows {
            found.push(format!(
                "{}: {} rows in the source, {} in the destination",
                s.table, s.rows, d.rows
            ));
        } else if s.checksum != d.checksum {
            found.push(format!(
                "{}: the same {} rows in number, but their contents differ",
                s.table, s.rows
            ));
        }
    }
    for ((name, s), (_, d)) in source.counters.iter().zip(&destination.counters) {
        // Where the destination keeps no counter, it numbers after the largest id, which
        // the table checksums already compared.
        if d.kept && d.last < s.last {
            found.push(format!(
                "{name}: the destination would give id {} again (the source gave up to {})",
                d.last + 1,
                s.last
            ));
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dollar(n: usize) -> String {
        format!("${n}")
    }

    #[test]
    fn pages_continue_after_the_last_key() {
        let tags = TABLES.iter().find(|t| t.name == "tags").expect("tags");
        assert_eq!(
            page_sql(tags, true, dollar),
            "SELECT repository_id, name, id, manifest_digest, updated_at FROM tags \
             WHERE (repository_id, name) > ($1, $2) ORDER BY repository_id, name LIMIT $3"
        );
        assert_eq!(
            page_sql(tags, false, |_| "?".into()),
            "SELECT repository_id, name, id, manifest_digest, updated_at FROM tags \
             ORDER BY repository_id, name LIMIT ?"
        );
    }

    #[test]
    fn derived_columns_are_left_to_the_triggers() {
        let repositories = TABLES.iter().find(|t| t.name == "repositories");
        let sql = insert_sql(repositories.expect("repositories"), 2, dollar);
        assert!(!sql.contains("manifest_count"), "{sql}");
        assert!(sql.ends_with("($1, $2, $3, $4, $5, $6), ($7, $8, $9, $10, $11, $12)"));
    }

    #[test]
    fn every_table_comes_after_the_tables_it_references() {
        let position = |name: &str| TABLES.iter().position(|t| t.name == name);
        for (table, references) in [
            ("projects", "users"),
            ("project_members", "projects"),
            ("robots", "projects"),
            ("repository_blobs", "blobs"),
            ("repository_blobs", "repositories"),
            ("manifests", "repositories"),
            ("manifest_references", "manifests"),
            ("tags", "manifests"),
            ("artifact_pulls", "manifests"),
        ] {
            assert!(position(references) < position(table), "{table}");
        }
        for table in TABLES {
            table.key_positions();
        }
    }

    #[test]
    fn a_checksum_ignores_row_order_but_not_contents() {
        let rows = [
            vec![Value::Integer(1), Value::Text("a".into())],
            vec![Value::Integer(2), Value::Null],
        ];
        let (mut forward, mut backward, mut changed) =
            (TableSum::new("t"), TableSum::new("t"), TableSum::new("t"));
        rows.iter().for_each(|r| forward.add(r));
        rows.iter().rev().for_each(|r| backward.add(r));
        changed.add(&rows[0]);
        changed.add(&[Value::Integer(2), Value::Text(String::new())]);
        assert_eq!(forward, backward);
        assert_ne!(forward.checksum, changed.checksum);
    }
}

#[cfg(test)]
mod round_trip;
#[cfg(any(test, feature = "test-postgres"))]
pub mod sample;
