//! Schema migrations. Only ever append to [`MIGRATIONS`]: a released migration never changes.

/// Each entry is applied once, in order, inside a transaction; its index + 1 is the version.
pub const MIGRATIONS: &[&str] = &[
    // 1: the distribution API's metadata.
    r#"
    CREATE TABLE repositories (
        id         INTEGER PRIMARY KEY,
        name       TEXT NOT NULL UNIQUE,
        created_at INTEGER NOT NULL
    );
    -- Blob bytes are stored once per digest for the whole registry.
    CREATE TABLE blobs (
        digest     TEXT PRIMARY KEY,
        size       INTEGER NOT NULL,
        created_at INTEGER NOT NULL
    );
    -- A repository sees a blob only through a link.
    CREATE TABLE repository_blobs (
        repository_id INTEGER NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
        digest        TEXT NOT NULL REFERENCES blobs(digest),
        created_at    INTEGER NOT NULL,
        PRIMARY KEY (repository_id, digest)
    ) WITHOUT ROWID;
    CREATE INDEX repository_blobs_digest ON repository_blobs(digest);
    CREATE TABLE manifests (
        repository_id INTEGER NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
        digest        TEXT NOT NULL,
        media_type    TEXT NOT NULL,
        content       BLOB NOT NULL,
        size          INTEGER NOT NULL,
        artifact_type TEXT,
        subject       TEXT,
        annotations   TEXT,
        created_at    INTEGER NOT NULL,
        PRIMARY KEY (repository_id, digest)
    );
    CREATE INDEX manifests_subject ON manifests(repository_id, subject) WHERE subject IS NOT NULL;
    -- What each manifest needs: blobs (config, layers) and child manifests. Kept for GC.
    CREATE TABLE manifest_references (
        repository_id   INTEGER NOT NULL,
        manifest_digest TEXT NOT NULL,
        child_digest    TEXT NOT NULL,
        child_is_manifest INTEGER NOT NULL,
        PRIMARY KEY (repository_id, manifest_digest, child_digest),
        FOREIGN KEY (repository_id, manifest_digest) REFERENCES manifests(repository_id, digest) ON DELETE CASCADE
    ) WITHOUT ROWID;
    CREATE TABLE tags (
        repository_id   INTEGER NOT NULL,
        name            TEXT NOT NULL,
        manifest_digest TEXT NOT NULL,
        updated_at      INTEGER NOT NULL,
        PRIMARY KEY (repository_id, name),
        FOREIGN KEY (repository_id, manifest_digest) REFERENCES manifests(repository_id, digest) ON DELETE CASCADE
    ) WITHOUT ROWID;
    CREATE TABLE uploads (
        id         TEXT PRIMARY KEY,
        repository TEXT NOT NULL,
        "offset"   INTEGER NOT NULL,
        hash_state BLOB NOT NULL,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
    );
    "#,
    // 2: identity — users, projects and their members, robot accounts, token signing keys.
    r#"
    CREATE TABLE users (
        id            INTEGER PRIMARY KEY,
        name          TEXT NOT NULL UNIQUE,
        email         TEXT NOT NULL DEFAULT '',
        realname      TEXT NOT NULL DEFAULT '',
        comment       TEXT NOT NULL DEFAULT '',
        -- argon2id, PHC string format.
        password_hash TEXT NOT NULL,
        sysadmin      INTEGER NOT NULL DEFAULT 0,
        created_at    INTEGER NOT NULL,
        updated_at    INTEGER NOT NULL
    );
    CREATE TABLE projects (
        id         INTEGER PRIMARY KEY,
        name       TEXT NOT NULL UNIQUE,
        public     INTEGER NOT NULL DEFAULT 0,
        owner_id   INTEGER REFERENCES users(id) ON DELETE SET NULL,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
    );
    CREATE TABLE project_members (
        project_id INTEGER NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
        user_id    INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        -- Harbor's role ids: 1 project admin, 2 developer, 3 guest, 4 maintainer, 5 limited guest.
        role       INTEGER NOT NULL,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        PRIMARY KEY (project_id, user_id)
    ) WITHOUT ROWID;
    CREATE INDEX project_members_user ON project_members(user_id);
    CREATE TABLE robots (
        id          INTEGER PRIMARY KEY,
        -- Full name: robot$<project>+<name> or robot$<name>.
        name        TEXT NOT NULL UNIQUE,
        description TEXT NOT NULL DEFAULT '',
        -- Set for project robots: deleting the project deletes them.
        project_id  INTEGER REFERENCES projects(id) ON DELETE CASCADE,
        secret_hash TEXT NOT NULL,
        disabled    INTEGER NOT NULL DEFAULT 0,
        -- Unix seconds; NULL never expires.
        expires_at  INTEGER,
        -- Harbor's permissions JSON.
        permissions TEXT NOT NULL,
        created_at  INTEGER NOT NULL,
        updated_at  INTEGER NOT NULL
    );
    CREATE TABLE signing_keys (
        kid         TEXT PRIMARY KEY,
        algorithm   TEXT NOT NULL,
        -- PKCS#8 DER.
        private_key BLOB NOT NULL,
        created_at  INTEGER NOT NULL,
        retired_at  INTEGER
    );
    -- As in Harbor: the public project "library" exists from the start.
    INSERT INTO projects (name, public, created_at, updated_at)
        VALUES ('library', 1, CAST(strftime('%s', 'now') AS INTEGER), CAST(strftime('%s', 'now') AS INTEGER));
    "#,
    // 3: the audit log and pull statistics, written in batches off the request path.
    r#"
    CREATE TABLE audit_log (
        id            INTEGER PRIMARY KEY,
        -- Unix milliseconds.
        op_time       INTEGER NOT NULL,
        -- The account, or 'anonymous'.
        username      TEXT NOT NULL,
        -- The client's address; '' when unknown, 'cli' for the operator CLI.
        client        TEXT NOT NULL DEFAULT '',
        operation     TEXT NOT NULL,
        resource_type TEXT NOT NULL,
        resource      TEXT NOT NULL,
        -- The project the entry belongs to (who may read it); NULL for system-wide entries.
        project       TEXT,
        success       INTEGER NOT NULL,
        reason        TEXT NOT NULL DEFAULT '',
        -- Identical events of one batch are stored once, with how many there were.
        count         INTEGER NOT NULL DEFAULT 1
    );
    CREATE INDEX audit_log_op_time ON audit_log(op_time);
    CREATE INDEX audit_log_username ON audit_log(username, op_time);
    CREATE INDEX audit_log_resource ON audit_log(resource, op_time);
    CREATE INDEX audit_log_project ON audit_log(project, op_time);
    -- Pulls per manifest, apart from the manifests' rows (which hold their bytes).
    CREATE TABLE artifact_pulls (
        repository_id INTEGER NOT NULL,
        digest        TEXT NOT NULL,
        pull_count    INTEGER NOT NULL,
        -- Unix milliseconds of the latest pull.
        pull_time     INTEGER NOT NULL,
        PRIMARY KEY (repository_id, digest),
        FOREIGN KEY (repository_id, digest) REFERENCES manifests(repository_id, digest) ON DELETE CASCADE
    ) WITHOUT ROWID;
    ALTER TABLE repositories ADD COLUMN pull_count INTEGER NOT NULL DEFAULT 0;
    "#,
    // 4: Harbor's repositories, artifacts and tags.
    r#"
    -- Ids the management API shows, drawn from here so that none is ever given twice:
    -- SQLite reuses the largest rowid after a delete, and VACUUM renumbers implicit rowids.
    CREATE TABLE sequences (
        name  TEXT PRIMARY KEY,
        value INTEGER NOT NULL
    ) WITHOUT ROWID;
    ALTER TABLE repositories ADD COLUMN description TEXT NOT NULL DEFAULT '';
    -- The last push into the repository or change of its description.
    ALTER TABLE repositories ADD COLUMN updated_at INTEGER NOT NULL DEFAULT 0;
    UPDATE repositories SET updated_at = created_at;
    ALTER TABLE manifests ADD COLUMN id INTEGER;
    -- An image manifest's config media type: Harbor's artifact media type.
    ALTER TABLE manifests ADD COLUMN config_media_type TEXT;
    UPDATE manifests SET id = rowid,
        config_media_type = CASE WHEN json_valid(CAST(content AS TEXT))
            THEN json_extract(CAST(content AS TEXT), '$.config.mediaType') END;
    ALTER TABLE tags ADD COLUMN id INTEGER;
    UPDATE tags SET id = numbered.id
        FROM (SELECT repository_id, name, row_number() OVER (ORDER BY repository_id, name) AS id FROM tags) AS numbered
        WHERE numbered.repository_id = tags.repository_id AND numbered.name = tags.name;
    INSERT INTO sequences (name, value) VALUES
        ('repositories', (SELECT COALESCE(MAX(id), 0) FROM repositories)),
        ('manifests', (SELECT COALESCE(MAX(id), 0) FROM manifests)),
        ('tags', (SELECT COALESCE(MAX(id), 0) FROM tags));
    CREATE UNIQUE INDEX manifests_id ON manifests(id);
    CREATE UNIQUE INDEX tags_id ON tags(id);
    -- A page of artifacts, newest first, without a sort; and what decides whether a
    -- manifest is listed (its digest, its subject) without reading its row.
    CREATE INDEX manifests_pushed ON manifests(repository_id, created_at, id, digest, subject);
    -- Whether a manifest is an index's child.
    CREATE INDEX manifest_references_child ON manifest_references(repository_id, child_digest)
        WHERE child_is_manifest = 1;
    -- A manifest's tags (and the cascade when it is deleted).
    CREATE INDEX tags_manifest ON tags(repository_id, manifest_digest);
    "#,
    // 5: each repository's number of manifests, kept by triggers on every path that adds or
    // removes one, so a page of Harbor's artifact list is counted without walking an index.
    r#"
    ALTER TABLE repositories ADD COLUMN manifest_count INTEGER NOT NULL DEFAULT 0;
    UPDATE repositories SET manifest_count =
        (SELECT COUNT(*) FROM manifests m WHERE m.repository_id = repositories.id);
    CREATE TRIGGER manifests_counted AFTER INSERT ON manifests BEGIN
        UPDATE repositories SET manifest_count = manifest_count + 1 WHERE id = NEW.repository_id;
    END;
    CREATE TRIGGER manifests_uncounted AFTER DELETE ON manifests BEGIN
        UPDATE repositories SET manifest_count = manifest_count - 1 WHERE id = OLD.repository_id;
    END;
    "#,
    // 6: background jobs (leases, retries, history) and their schedules.
    r#"
    CREATE TABLE jobs (
        id            INTEGER PRIMARY KEY AUTOINCREMENT,
        kind          TEXT NOT NULL,
        -- Unique per kind: a scheduled run is keyed by its due time, so it is enqueued once.
        key           TEXT NOT NULL,
        params        TEXT NOT NULL,
        state         TEXT NOT NULL,
        attempts      INTEGER NOT NULL DEFAULT 0,
        -- Unix milliseconds, like every time below.
        run_after     INTEGER NOT NULL,
        lease_owner   TEXT,
        lease_until   INTEGER,
        created_at    INTEGER NOT NULL,
        started_at    INTEGER,
        finished_at   INTEGER,
        result        TEXT,
        error         TEXT,
        UNIQUE (kind, key)
    );
    -- What a runner claims next: queued and due, or running with a lapsed lease.
    CREATE INDEX jobs_claimable ON jobs(state, run_after) WHERE state IN ('queued', 'running');
    CREATE TABLE job_schedules (
        kind     TEXT PRIMARY KEY,
        cron     TEXT NOT NULL,
        params   TEXT NOT NULL,
        next_run INTEGER NOT NULL
    ) WITHOUT ROWID;
    "#,
    // 7: the blob store's state for an upload (S3: its multipart upload and staged tail).
    r#"
    ALTER TABLE uploads ADD COLUMN store_state BLOB;
    "#,
    // 8: garbage collection. A tombstone is written in the transaction that deletes a blob's
    // row and removed once its bytes are gone: while it exists, nothing may link the digest
    // (see berth-registry's gc.rs). `owner` is the run deleting the bytes, until `claimed_until`
    // (Unix seconds); a crashed run's tombstones are claimed again by a later run after that.
    r#"
    CREATE TABLE blob_deletions (
        digest        TEXT PRIMARY KEY,
        size          INTEGER NOT NULL,
        owner         TEXT NOT NULL,
        claimed_until INTEGER NOT NULL,
        created_at    INTEGER NOT NULL
    ) WITHOUT ROWID;
    -- Drawn at random when a blob's row is created: an upload links only the row it
    -- reserved, not one GC deleted and another upload created again meanwhile.
    ALTER TABLE blobs ADD COLUMN epoch INTEGER NOT NULL DEFAULT 0;
    -- Whether any manifest of a repository references a blob (the links GC may remove).
    CREATE INDEX manifest_references_by_child ON manifest_references(repository_id, child_digest);
    "#,
];

#[cfg(test)]
mod tests {
    /// A version is the same change on either backend: a migration added to one list
    /// needs its twin in the other (PostgreSQL's is `postgres/migrations.rs`).
    #[test]
    fn sqlite_and_postgres_have_the_same_migrations() {
        assert_eq!(
            super::MIGRATIONS.len(),
            crate::postgres::migrations::MIGRATIONS.len(),
            "add the PostgreSQL twin of every SQLite migration (and the other way round)"
        );
    }
}
