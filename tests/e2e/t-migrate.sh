#!/usr/bin/env bash
# berth migrate: a berth on SQLite + filesystem, filled with skopeo (OCI and docker schema 2 images, a two-platform index, a nested name, a deleted manifest), is stopped and migrated to PostgreSQL + S3 (moto); berth started on the copy serves every tag with the same digest and Harbor's API shows the same repository and artifact ids; a second migrate into the used database is refused, --verify-only agrees, and the copy migrates back to SQLite + filesystem.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
E2E_GROUP=migrate

if [[ "$E2E_TARGET" != berth ]]; then
  skip "berth migrate" "migrate starts its own single-node berths (E2E_TARGET=berth)"
  exit 0
fi

require_tools skopeo jq curl moto_server psql runuser || exit "$E2E_ABORTED"
ensure_test_images

SK=(--tls-verify=false)
raw_digest() { echo "sha256:$(skopeo inspect "${SK[@]}" --raw "docker://$1" | sha256sum | cut -d' ' -f1)"; }
push() { skopeo copy -q --dest-tls-verify=false "$@"; }

# What a registry at $1 (host:port) serves: "repository tag digest" lines, then, per
# repository, Harbor's repository id and its artifacts' ids, digests and tags.
snapshot() {
  local reg=$1 repo tag
  for repo in team/app library/busybox team/multi team/tools/deep/arm; do
    for tag in $(skopeo list-tags "${SK[@]}" "docker://$reg/$repo" | jq -r '.Tags[]' | sort); do
      echo "$repo $tag $(raw_digest "$reg/$repo:$tag")"
    done
  done
  local project
  for project in team library; do
    curl -fsS "http://$reg/api/v2.0/projects/$project/repositories?page_size=100" |
      jq -c 'sort_by(.id) | .[] | {id, name, artifact_count}'
    for repo in $(curl -fsS "http://$reg/api/v2.0/projects/$project/repositories?page_size=100" |
      jq -r '.[].name | sub("^[^/]+/"; "")' | sort); do
      curl -fsS "http://$reg/api/v2.0/projects/$project/repositories/${repo//\//%252F}/artifacts?page_size=100&with_tag=true" |
        jq -c --arg r "$repo" 'sort_by(.id) | .[] | {repo: $r, id, digest, tags: [(.tags // [])[].name] | sort}'
    done
  done
}

# ---------------------------------------------------------------- the source: SQLite + files
start_registry_or_abort "$T/src"
SRC=$REG
push_two_tags() { push "oci:$IMG/oci:v1" "docker://$SRC/team/app:v1" && push "oci:$IMG/oci:v1" "docker://$SRC/team/app:v2"; }
check "push an OCI image under two tags" push_two_tags
check "push a docker schema 2 image" push --format v2s2 "oci:$IMG/oci:v1" "docker://$SRC/library/busybox:1"
check "push a two-platform index" push --all "oci:$IMG/oci:multi" "docker://$SRC/team/multi:v1"
check "push under a nested name" push "oci:$IMG/oci:v1-arm64" "docker://$SRC/team/tools/deep/arm:v1"
check "push an image that is then deleted (a gap in the artifact ids)" \
  push "oci:$IMG/oci:v1-arm64" "docker://$SRC/team/app:gone"
GONE=$(raw_digest "$SRC/team/app:gone")
check "delete it" expect_code 202 -X DELETE "http://$SRC/v2/team/app/manifests/$GONE"
snapshot "$SRC" >"$T/source.txt"
check_eq "the source serves 5 tags in 4 repositories" "5 4" \
  "$(grep -c '^[a-z/]* [^ ]* sha256:' "$T/source.txt") $(grep -c '"artifact_count"' "$T/source.txt")"
stop_registry

# ---------------------------------------------------------------- the destination: PostgreSQL + S3
PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
PG="$T/pg"
PG_PORT=$(free_port)
pg_stop() {
  [[ -d "$PG/data" ]] && runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$PG/data" -m immediate stop >/dev/null 2>&1
  return 0
}
# PostgreSQL is this test's own: stopped however the test ends.
trap 'rc=$?; pg_stop; (exit $rc); cleanup' EXIT
pg_start() {
  chmod o+x "$E2E_WORK" "$T" || return 1
  install -d -o postgres -m 700 "$PG" || return 1
  runuser -u postgres -- "$PG_BIN/initdb" -D "$PG/data" -A trust -U postgres >"$PG/initdb.log" 2>&1 ||
    { cat "$PG/initdb.log"; return 1; }
  runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$PG/data" -l "$PG/server.log" -w \
    -o "-h 127.0.0.1 -p $PG_PORT -k $PG -c fsync=off" start >/dev/null || { cat "$PG/server.log"; return 1; }
  psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -qc "CREATE DATABASE berth_copy"
}
check "start PostgreSQL on 127.0.0.1" pg_start || { abort "PostgreSQL" "see $PG"; }
REG_DIR="$T/dst"
s3_bucket_env || abort "moto" "cannot start moto_server"
BUCKET=$(printf '%s\n' "${S3_ENV[@]}" | sed -n 's/^BERTH_STORAGE_S3_BUCKET=//p')
mkdir -p "$T/dst" "$T/back"
cat >"$T/src.toml" <<TOML
data_dir = "$T/src/data"
TOML
cat >"$T/dst.toml" <<TOML
data_dir = "$T/dst/data"
[database]
url = "postgres://postgres@127.0.0.1:$PG_PORT/berth_copy"
[storage]
backend = "s3"
[storage.s3]
endpoint = "$MOTO_URL"
region = "us-east-1"
bucket = "$BUCKET"
prefix = "berth"
allow_http = true
access_key = "e2e"
secret_key = "e2e-secret"
TOML
cat >"$T/back.toml" <<TOML
data_dir = "$T/back/data"
TOML

# migrate_expecting PATTERN ARGS...: berth migrate ARGS succeeds and its report matches PATTERN.
migrate_expecting() {
  local pattern=$1; shift
  "$BERTH_BIN" migrate "$@" >"$T/migrate.out" 2>"$T/migrate.err"
  local rc=$?
  cat "$T/migrate.out"
  [[ $rc == 0 ]] || { tail -n 5 "$T/migrate.err"; return 1; }
  grep -Eq -- "$pattern" "$T/migrate.out" || { echo "the report does not match: $pattern"; return 1; }
}
check "berth migrate SQLite + files → PostgreSQL + S3" \
  migrate_expecting '^result: the destination holds the same registry' --from "$T/src.toml" --to "$T/dst.toml"
check "every blob was copied" grep -Eq '^blobs: [0-9]+ .*; ([0-9]+) copied .*, 0 already' "$T/migrate.out"
refused() {
  ! "$BERTH_BIN" migrate --from "$T/src.toml" --to "$T/dst.toml" >/dev/null 2>"$T/refused.err" &&
    grep -q "not empty" "$T/refused.err"
}
check "a second migrate into the now used database is refused" refused
check "--verify-only --verify-blobs full agrees" \
  migrate_expecting '^result: the destination holds the same registry' \
  --from "$T/src.toml" --to "$T/dst.toml" --verify-only --verify-blobs full

# ---------------------------------------------------------------- berth on the copy
DST_PORT=$(free_port)
(
  export BERTH_CONFIG="$T/dst.toml" BERTH_ADDR="127.0.0.1:$DST_PORT"
  exec "$BERTH_BIN" serve
) >>"$T/dst/registry.log" 2>&1 &
DST_PID=$!
REG_PIDS+=("$DST_PID")
for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$DST_PORT/readyz" && break; sleep 0.1; done
snapshot "127.0.0.1:$DST_PORT" >"$T/copy.txt"
check "the copy serves every tag with its digest, and the same repository and artifact ids" \
  diff "$T/source.txt" "$T/copy.txt"
check "the index and both children pull from the copy (skopeo verifies every blob)" \
  skopeo copy -q --all --src-tls-verify=false "docker://127.0.0.1:$DST_PORT/team/multi:v1" "oci:$T/multi-out:v1"
check "a push into the copy gets the next artifact id" \
  push "oci:$IMG/oci:v1-arm64" "docker://127.0.0.1:$DST_PORT/team/app:new"
NEXT_ID=$(curl -fsS "http://127.0.0.1:$DST_PORT/api/v2.0/projects/team/repositories/app/artifacts/new" | jq .id)
LARGEST=$(grep '^{' "$T/source.txt" | jq -r 'select(.digest != null) | .id' | sort -n | tail -1)
check "the new artifact's id is above every copied one" test "$NEXT_ID" -gt "$LARGEST"
snapshot "127.0.0.1:$DST_PORT" >"$T/copy-after.txt"
kill "$DST_PID"; wait "$DST_PID" 2>/dev/null

# ---------------------------------------------------------------- and back
check "berth migrate PostgreSQL + S3 → SQLite + files" \
  migrate_expecting '^result: the destination holds the same registry' --from "$T/dst.toml" --to "$T/back.toml"
start_registry_or_abort "$T/back"
snapshot "$REG" >"$T/back.txt"
check "the copy of the copy serves what the copy served, ids included" diff "$T/copy-after.txt" "$T/back.txt"

exit 0
