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
    // 9: storage usage, kept exact by triggers inside every writing transaction, and each
    // project's storage quota. A repository belongs to the project (the "namespace") its
    // first path component names; a repository without a '/' is in namespace ''.
    r#"
    ALTER TABLE repositories ADD COLUMN namespace TEXT GENERATED ALWAYS AS
        (CASE WHEN instr(name, '/') > 0 THEN substr(name, 1, instr(name, '/') - 1) ELSE '' END) VIRTUAL;
    -- Bytes of the distinct blobs the repository links, and of those no other repository links.
    ALTER TABLE repositories ADD COLUMN blob_bytes INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE repositories ADD COLUMN unique_blob_bytes INTEGER NOT NULL DEFAULT 0;
    -- Manifests' bytes: each repository keeps its own copy in its rows.
    ALTER TABLE repositories ADD COLUMN manifest_bytes INTEGER NOT NULL DEFAULT 0;
    -- How many repositories link the blob, and how many namespaces hold it.
    ALTER TABLE blobs ADD COLUMN repository_links INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE blobs ADD COLUMN namespace_holders INTEGER NOT NULL DEFAULT 0;
    -- How many of a namespace's repositories link each blob it holds.
    CREATE TABLE namespace_blobs (
        namespace TEXT NOT NULL,
        digest    TEXT NOT NULL,
        links     INTEGER NOT NULL,
        PRIMARY KEY (namespace, digest)
    ) WITHOUT ROWID;
    CREATE INDEX namespace_blobs_digest ON namespace_blobs(digest);
    CREATE TABLE namespace_usage (
        namespace         TEXT PRIMARY KEY,
        -- Each distinct blob once, however many of its repositories link it.
        blob_bytes        INTEGER NOT NULL DEFAULT 0,
        -- Blobs no other namespace holds: what deleting the project would free.
        unique_blob_bytes INTEGER NOT NULL DEFAULT 0,
        manifest_bytes    INTEGER NOT NULL DEFAULT 0
    ) WITHOUT ROWID;
    CREATE TABLE registry_usage (
        id                INTEGER PRIMARY KEY CHECK (id = 1),
        -- Distinct blobs some repository links.
        linked_blob_bytes INTEGER NOT NULL,
        -- Every blob row, linked or waiting for garbage collection.
        stored_blob_bytes INTEGER NOT NULL
    );
    -- A project's hard limit on storage (Harbor's quota); no row: unlimited.
    CREATE TABLE project_quotas (
        project_id    INTEGER PRIMARY KEY REFERENCES projects(id) ON DELETE CASCADE,
        -- Bytes; -1 is unlimited.
        storage_limit INTEGER NOT NULL,
        created_at    INTEGER NOT NULL,
        updated_at    INTEGER NOT NULL
    );

    -- The limit new projects get (`[quota] default_project_bytes`, written at each start).
    CREATE TABLE quota_defaults (
        id            INTEGER PRIMARY KEY CHECK (id = 1),
        storage_limit INTEGER NOT NULL
    );
    INSERT INTO quota_defaults (id, storage_limit) VALUES (1, -1);
    -- Every way a project is created (API, CLI, import, a push that creates it) gets it.
    CREATE TRIGGER projects_limited AFTER INSERT ON projects BEGIN
        INSERT INTO project_quotas (project_id, storage_limit, created_at, updated_at)
            SELECT NEW.id, storage_limit, NEW.created_at, NEW.created_at FROM quota_defaults
            WHERE storage_limit >= 0;
    END;

    -- What is there already.
    UPDATE blobs SET repository_links = (SELECT COUNT(*) FROM repository_blobs l WHERE l.digest = blobs.digest);
    INSERT INTO namespace_blobs (namespace, digest, links)
        SELECT r.namespace, l.digest, COUNT(*) FROM repository_blobs l
        JOIN repositories r ON r.id = l.repository_id GROUP BY r.namespace, l.digest;
    UPDATE blobs SET namespace_holders = (SELECT COUNT(*) FROM namespace_blobs n WHERE n.digest = blobs.digest);
    UPDATE repositories SET
        blob_bytes = (SELECT COALESCE(SUM(b.size), 0) FROM repository_blobs l
            JOIN blobs b ON b.digest = l.digest WHERE l.repository_id = repositories.id),
        unique_blob_bytes = (SELECT COALESCE(SUM(b.size), 0) FROM repository_blobs l
            JOIN blobs b ON b.digest = l.digest WHERE l.repository_id = repositories.id AND b.repository_links = 1),
        manifest_bytes = (SELECT COALESCE(SUM(m.size), 0) FROM manifests m WHERE m.repository_id = repositories.id);
    INSERT INTO namespace_usage (namespace, manifest_bytes)
        SELECT namespace, SUM(manifest_bytes) FROM repositories GROUP BY namespace;
    UPDATE namespace_usage SET
        blob_bytes = (SELECT COALESCE(SUM(b.size), 0) FROM namespace_blobs n
            JOIN blobs b ON b.digest = n.digest WHERE n.namespace = namespace_usage.namespace),
        unique_blob_bytes = (SELECT COALESCE(SUM(b.size), 0) FROM namespace_blobs n
            JOIN blobs b ON b.digest = n.digest WHERE n.namespace = namespace_usage.namespace AND b.namespace_holders = 1);
    INSERT INTO registry_usage (id, linked_blob_bytes, stored_blob_bytes) VALUES (1,
        (SELECT COALESCE(SUM(size), 0) FROM blobs WHERE repository_links > 0),
        (SELECT COALESCE(SUM(size), 0) FROM blobs));

    -- From here on, every change of a link, a manifest or a blob row moves the counters in
    -- its own transaction. A repository is deleted by deleting its links and manifests
    -- first (`delete_repository`), so these triggers still find its namespace.
    CREATE TRIGGER blobs_stored AFTER INSERT ON blobs BEGIN
        UPDATE registry_usage SET stored_blob_bytes = stored_blob_bytes + NEW.size;
    END;
    CREATE TRIGGER blobs_removed AFTER DELETE ON blobs BEGIN
        UPDATE registry_usage SET stored_blob_bytes = stored_blob_bytes - OLD.size;
    END;
    CREATE TRIGGER repository_blobs_used AFTER INSERT ON repository_blobs BEGIN
        UPDATE blobs SET repository_links = repository_links + 1 WHERE digest = NEW.digest;
        UPDATE repositories SET
            blob_bytes = blob_bytes + (SELECT size FROM blobs WHERE digest = NEW.digest),
            unique_blob_bytes = unique_blob_bytes + (SELECT CASE WHEN repository_links = 1 THEN size ELSE 0 END
                FROM blobs WHERE digest = NEW.digest)
            WHERE id = NEW.repository_id;
        -- The one repository that held it alone does not any more.
        UPDATE repositories SET unique_blob_bytes = unique_blob_bytes - (SELECT size FROM blobs WHERE digest = NEW.digest)
            WHERE (SELECT repository_links FROM blobs WHERE digest = NEW.digest) = 2
            AND id = (SELECT repository_id FROM repository_blobs WHERE digest = NEW.digest AND repository_id <> NEW.repository_id);
        UPDATE registry_usage SET linked_blob_bytes = linked_blob_bytes + (SELECT size FROM blobs WHERE digest = NEW.digest)
            WHERE (SELECT repository_links FROM blobs WHERE digest = NEW.digest) = 1;
        INSERT INTO namespace_blobs (namespace, digest, links)
            VALUES ((SELECT namespace FROM repositories WHERE id = NEW.repository_id), NEW.digest, 1)
            ON CONFLICT (namespace, digest) DO UPDATE SET links = links + 1;
        -- The rest only when the namespace holds the blob for the first time.
        UPDATE blobs SET namespace_holders = namespace_holders + 1 WHERE digest = NEW.digest
            AND (SELECT links FROM namespace_blobs WHERE digest = NEW.digest
                 AND namespace = (SELECT namespace FROM repositories WHERE id = NEW.repository_id)) = 1;
        INSERT INTO namespace_usage (namespace)
            VALUES ((SELECT namespace FROM repositories WHERE id = NEW.repository_id)) ON CONFLICT DO NOTHING;
        UPDATE namespace_usage SET
            blob_bytes = blob_bytes + (SELECT size FROM blobs WHERE digest = NEW.digest),
            unique_blob_bytes = unique_blob_bytes + (SELECT CASE WHEN namespace_holders = 1 THEN size ELSE 0 END
                FROM blobs WHERE digest = NEW.digest)
            WHERE namespace = (SELECT namespace FROM repositories WHERE id = NEW.repository_id)
            AND (SELECT links FROM namespace_blobs WHERE digest = NEW.digest AND namespace = namespace_usage.namespace) = 1;
        UPDATE namespace_usage SET unique_blob_bytes = unique_blob_bytes - (SELECT size FROM blobs WHERE digest = NEW.digest)
            WHERE (SELECT namespace_holders FROM blobs WHERE digest = NEW.digest) = 2
            AND (SELECT links FROM namespace_blobs WHERE digest = NEW.digest
                 AND namespace = (SELECT namespace FROM repositories WHERE id = NEW.repository_id)) = 1
            AND namespace = (SELECT namespace FROM namespace_blobs WHERE digest = NEW.digest
                 AND namespace <> (SELECT namespace FROM repositories WHERE id = NEW.repository_id));
    END;
    CREATE TRIGGER repository_blobs_freed AFTER DELETE ON repository_blobs BEGIN
        UPDATE blobs SET repository_links = repository_links - 1 WHERE digest = OLD.digest;
        UPDATE repositories SET
            blob_bytes = blob_bytes - (SELECT size FROM blobs WHERE digest = OLD.digest),
            unique_blob_bytes = unique_blob_bytes - (SELECT CASE WHEN repository_links = 0 THEN size ELSE 0 END
                FROM blobs WHERE digest = OLD.digest)
            WHERE id = OLD.repository_id;
        -- The one repository left holding it now holds it alone.
        UPDATE repositories SET unique_blob_bytes = unique_blob_bytes + (SELECT size FROM blobs WHERE digest = OLD.digest)
            WHERE (SELECT repository_links FROM blobs WHERE digest = OLD.digest) = 1
            AND id = (SELECT repository_id FROM repository_blobs WHERE digest = OLD.digest);
        UPDATE registry_usage SET linked_blob_bytes = linked_blob_bytes - (SELECT size FROM blobs WHERE digest = OLD.digest)
            WHERE (SELECT repository_links FROM blobs WHERE digest = OLD.digest) = 0;
        UPDATE namespace_blobs SET links = links - 1 WHERE digest = OLD.digest
            AND namespace = (SELECT namespace FROM repositories WHERE id = OLD.repository_id);
        -- The rest only when the namespace's last link to the blob went.
        UPDATE blobs SET namespace_holders = namespace_holders - 1 WHERE digest = OLD.digest
            AND EXISTS (SELECT 1 FROM namespace_blobs WHERE digest = OLD.digest AND links = 0);
        UPDATE namespace_usage SET
            blob_bytes = blob_bytes - (SELECT size FROM blobs WHERE digest = OLD.digest),
            unique_blob_bytes = unique_blob_bytes - (SELECT CASE WHEN namespace_holders = 0 THEN size ELSE 0 END
                FROM blobs WHERE digest = OLD.digest)
            WHERE EXISTS (SELECT 1 FROM namespace_blobs n WHERE n.digest = OLD.digest AND n.links = 0
                AND n.namespace = namespace_usage.namespace);
        UPDATE namespace_usage SET unique_blob_bytes = unique_blob_bytes + (SELECT size FROM blobs WHERE digest = OLD.digest)
            WHERE (SELECT namespace_holders FROM blobs WHERE digest = OLD.digest) = 1
            AND EXISTS (SELECT 1 FROM namespace_blobs WHERE digest = OLD.digest AND links = 0)
            AND namespace = (SELECT namespace FROM namespace_blobs WHERE digest = OLD.digest AND links > 0);
        DELETE FROM namespace_blobs WHERE digest = OLD.digest AND links = 0;
    END;
    CREATE TRIGGER manifests_used AFTER INSERT ON manifests BEGIN
        UPDATE repositories SET manifest_bytes = manifest_bytes + NEW.size WHERE id = NEW.repository_id;
        INSERT INTO namespace_usage (namespace, manifest_bytes)
            VALUES ((SELECT namespace FROM repositories WHERE id = NEW.repository_id), NEW.size)
            ON CONFLICT (namespace) DO UPDATE SET manifest_bytes = manifest_bytes + excluded.manifest_bytes;
    END;
    CREATE TRIGGER manifests_freed AFTER DELETE ON manifests BEGIN
        UPDATE repositories SET manifest_bytes = manifest_bytes - OLD.size WHERE id = OLD.repository_id;
        UPDATE namespace_usage SET manifest_bytes = manifest_bytes - OLD.size
            WHERE namespace = (SELECT namespace FROM repositories WHERE id = OLD.repository_id);
    END;
    "#,
    // 10: tag immutability rules (Harbor's), per project.
    r#"
    CREATE TABLE immutable_rules (
        id         INTEGER PRIMARY KEY AUTOINCREMENT,
        project_id INTEGER NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
        disabled   INTEGER NOT NULL DEFAULT 0,
        priority   INTEGER NOT NULL DEFAULT 0,
        -- Harbor's selectors as JSON: {"tag_selectors": [...], "scope_selectors": {...}}.
        selectors  TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
    );
    CREATE INDEX immutable_rules_project ON immutable_rules(project_id);
    "#,
    // 11: retention policies (Harbor's, one per project) and the record of their runs.
    r#"
    CREATE TABLE retention_policies (
        id         INTEGER PRIMARY KEY AUTOINCREMENT,
        project_id INTEGER NOT NULL UNIQUE REFERENCES projects(id) ON DELETE CASCADE,
        -- Harbor's RetentionPolicy JSON as the API took it.
        policy     TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
    );
    CREATE TABLE retention_runs (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        policy_id   INTEGER NOT NULL REFERENCES retention_policies(id) ON DELETE CASCADE,
        dry_run     INTEGER NOT NULL,
        -- 'MANUAL' or 'SCHEDULE' (Harbor's trigger names).
        trigger     TEXT NOT NULL,
        -- 'Succeed' or 'Error'.
        status      TEXT NOT NULL,
        -- Unix milliseconds.
        started_at  INTEGER NOT NULL,
        finished_at INTEGER NOT NULL,
        -- What it removed (or would), as JSON.
        result      TEXT NOT NULL
    );
    CREATE INDEX retention_runs_policy ON retention_runs(policy_id, id);
    "#,
    // 12: upstream registries, proxy-cache projects, and the keys that seal upstream secrets.
    r#"
    CREATE TABLE registries (
        id              INTEGER PRIMARY KEY AUTOINCREMENT,
        name            TEXT NOT NULL UNIQUE,
        kind            TEXT NOT NULL,
        url             TEXT NOT NULL,
        description     TEXT NOT NULL,
        insecure        INTEGER NOT NULL,
        ca_cert         TEXT,
        -- NULL: anonymous. The secret is sealed (AEAD) and never returned by the API.
        credential_type TEXT,
        access_key      TEXT,
        access_secret   BLOB,
        created_at      INTEGER NOT NULL,
        updated_at      INTEGER NOT NULL
    );
    CREATE TABLE proxy_projects (
        project_id  INTEGER PRIMARY KEY REFERENCES projects(id) ON DELETE CASCADE,
        registry_id INTEGER NOT NULL REFERENCES registries(id)
    );
    CREATE INDEX proxy_projects_registry ON proxy_projects(registry_id);
    CREATE TABLE secret_keys (
        kid        TEXT PRIMARY KEY,
        key        BLOB NOT NULL,
        created_at INTEGER NOT NULL
    );
    "#,
    // 13: replication policies (Harbor's), their executions and each execution's tasks.
    r#"
    CREATE TABLE replication_policies (
        id               INTEGER PRIMARY KEY AUTOINCREMENT,
        name             TEXT NOT NULL UNIQUE,
        enabled          INTEGER NOT NULL,
        -- NULL: this registry (the source of a push policy, the destination of a pull one).
        src_registry_id  INTEGER REFERENCES registries(id),
        dest_registry_id INTEGER REFERENCES registries(id),
        -- The rest of Harbor's policy (filters, trigger, namespace, deletion, speed), JSON.
        definition       TEXT NOT NULL,
        created_at       INTEGER NOT NULL,
        updated_at       INTEGER NOT NULL
    );
    CREATE TABLE replication_executions (
        id             INTEGER PRIMARY KEY AUTOINCREMENT,
        policy_id      INTEGER NOT NULL REFERENCES replication_policies(id) ON DELETE CASCADE,
        -- 'manual', 'scheduled' or 'event_based'.
        trigger        TEXT NOT NULL,
        -- 'InProgress', 'Succeed', 'Failed' or 'Stopped'.
        status         TEXT NOT NULL,
        status_text    TEXT NOT NULL,
        stop_requested INTEGER NOT NULL,
        -- What an event-based execution replicates (JSON).
        event          TEXT,
        -- Unix milliseconds.
        started_at     INTEGER NOT NULL,
        ended_at       INTEGER
    );
    CREATE INDEX replication_executions_policy ON replication_executions(policy_id, id);
    CREATE TABLE replication_tasks (
        id            INTEGER PRIMARY KEY AUTOINCREMENT,
        execution_id  INTEGER NOT NULL REFERENCES replication_executions(id) ON DELETE CASCADE,
        resource_type TEXT NOT NULL,
        src_resource  TEXT NOT NULL,
        dst_resource  TEXT NOT NULL,
        -- 'copy' or 'deletion'.
        operation     TEXT NOT NULL,
        -- What the task copies (JSON), for a run taken over after a crash.
        plan          TEXT NOT NULL,
        -- 'Pending', 'InProgress', 'Succeed', 'Failed' or 'Stopped'.
        status        TEXT NOT NULL,
        started_at    INTEGER,
        ended_at      INTEGER,
        log           TEXT NOT NULL
    );
    CREATE INDEX replication_tasks_execution ON replication_tasks(execution_id, id);
    "#,
    // 14: PostgreSQL counts link deletes once per statement (a statement-level trigger).
    // SQLite has only row-level triggers, and its per-row work is in-process and cheap:
    // nothing changes here.
    "SELECT 1;",
    // 15: what the proxy cache last heard from upstreams about the tags it holds, shared by
    // every node and kept fresh by a job; finished jobs found by age, to prune them.
    r#"
    CREATE TABLE proxy_tags (
        repository  TEXT NOT NULL,
        tag         TEXT NOT NULL,
        digest      TEXT NOT NULL,
        checked_at  INTEGER NOT NULL,
        pulled_at   INTEGER NOT NULL,
        PRIMARY KEY (repository, tag)
    );
    CREATE INDEX proxy_tags_checked ON proxy_tags(checked_at);
    CREATE INDEX jobs_finished ON jobs(finished_at) WHERE state IN ('succeeded', 'failed');
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
