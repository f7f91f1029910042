#!/usr/bin/env bash
# Garbage collection on the real binary: a run started through Harbor's /api/v2.0/system/gc, killed with SIGKILL between deleting blob rows and their bytes, is finished by the next run after a restart; kept images pull back byte for byte, the freed digests can be pushed again, and the store holds exactly the referenced blobs.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
E2E_GROUP=gc

if [[ "$E2E_TARGET" != berth ]]; then
  skip "gc: a run killed mid-sweep is finished by the next" "garbage collection through /api/v2.0 is berth's"
  exit 0
fi
require_tools curl jq python3 sha256sum || exit "$E2E_ABORTED"

ADMIN_PASS=$(new_password)
REG_AUTH_MODE=token
REG_ADMIN_PASSWORD=$ADMIN_PASS
# No grace windows, a pause between a batch's rows and its bytes (the kill lands there),
# and tombstones a crashed run holds for 3 s only.
export BERTH_GC_BLOB_GRACE=0 BERTH_GC_UNTAGGED_GRACE=0
export BERTH_GC_TEST_PAUSE_MS=600000 BERTH_GC_TEST_CLAIM_SECS=3
start_registry_or_abort "$T/reg"
REG_LOG="$REG_DIR/registry.log"
BLOBS="$REG_DIR/data/blobs"

# client.py: token-mode pushes, pulls and deletes (urllib only), and the GC API.
cat >"$T/client.py" <<'PY'
import base64, hashlib, json, sys, urllib.error, urllib.parse, urllib.request

url, password, command, *args = sys.argv[1:]
basic = "Basic " + base64.b64encode(f"admin:{password}".encode()).decode()

def call(method, path, body=None, headers=None, auth=None):
    request = urllib.request.Request(url + path, data=body, method=method, headers=headers or {})
    if auth:
        request.add_header("Authorization", auth)
    try:
        with urllib.request.urlopen(request) as response:
            return response.status, {k.lower(): v for k, v in response.headers.items()}, response.read()
    except urllib.error.HTTPError as e:
        return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read()

def bearer(repo):
    scope = urllib.parse.quote(f"repository:{repo}:pull,push,delete")
    status, _, body = call("GET", f"/service/token?service=berth&scope={scope}", auth=basic)
    assert status == 200, (status, body)
    return "Bearer " + json.loads(body)["token"]

def sha(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()

def image(seed):
    config = json.dumps({"architecture": "amd64", "os": "linux", "seed": seed}).encode()
    layer = f"layer of {seed} ".encode() * 1000
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha(config), "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": sha(layer), "size": len(layer)}],
    }).encode()
    return manifest, [config, layer]

def push(repo, tag, seed):
    auth = bearer(repo)
    manifest, blobs = image(seed)
    for blob in blobs:
        status, _, body = call("POST", f"/v2/{repo}/blobs/uploads/?digest={sha(blob)}", blob, auth=auth)
        assert status == 201, (status, body)
    status, _, body = call("PUT", f"/v2/{repo}/manifests/{tag}", manifest,
                           {"Content-Type": "application/vnd.oci.image.manifest.v1+json"}, auth)
    assert status == 201, (status, body)
    print(sha(manifest))

def pull(repo, tag, seed):
    auth = bearer(repo)
    manifest, blobs = image(seed)
    status, _, body = call("GET", f"/v2/{repo}/manifests/{tag}", headers={"Accept": "application/vnd.oci.image.manifest.v1+json"}, auth=auth)
    assert status == 200 and body == manifest, (status, body)
    for blob in blobs:
        status, _, body = call("GET", f"/v2/{repo}/blobs/{sha(blob)}", auth=auth)
        assert status == 200 and body == blob, (status, len(body))

def delete(repo, seed):
    manifest, _ = image(seed)
    status, _, body = call("DELETE", f"/v2/{repo}/manifests/{sha(manifest)}", auth=bearer(repo))
    assert status == 202, (status, body)

def digests(seed):
    print(" ".join(sha(b).split(":")[1] for b in image(seed)[1]))

def gc():
    body = json.dumps({"schedule": {"type": "Manual"}, "parameters": {"delete_untagged": True}}).encode()
    status, headers, text = call("POST", "/api/v2.0/system/gc/schedule", body, {"Content-Type": "application/json"}, basic)
    assert status == 201, (status, text)
    print(headers["location"].rsplit("/", 1)[1])

def run(gc_id):
    status, _, body = call("GET", f"/api/v2.0/system/gc/{gc_id}", auth=basic)
    assert status == 200, (status, body)
    print(json.dumps(json.loads(body)))

{"push": push, "pull": pull, "delete": delete, "digests": digests, "gc": gc, "run": run}[command](*args)
PY
client() { python3 "$T/client.py" "$REG_URL" "$ADMIN_PASS" "$@"; }

# A kept image, two images deleted (their blobs are garbage), all in project library.
check "push three images" client push library/app keep keep
client push library/app gone-1 gone-1 >/dev/null && client delete library/app gone-1
client push library/other gone-2 gone-2 >/dev/null && client delete library/other gone-2
GARBAGE="$(client digests gone-1) $(client digests gone-2)"

# wait_for_log TEXT SECONDS: until the registry's log has TEXT.
wait_for_log() {
  local i
  for i in $(seq $(($2 * 10))); do grep -q "$1" "$REG_LOG" && return 0; sleep 0.1; done
  echo "no '$1' in the log after $2 s"; tail -n 20 "$REG_LOG"; return 1
}
FIRST=$(client gc)
check "the first run condemns the garbage (rows gone, bytes still there)" wait_for_log "condemned 4 blobs" 60
{ kill -KILL "$REG_PID" && wait "$REG_PID"; } 2>/dev/null
check_eq "kill -9 in the middle of the sweep" dead "$(kill -0 "$REG_PID" 2>/dev/null || echo dead)"
REG_PID=""
bytes_left() { local n=0 d; for d in $GARBAGE; do [[ -f "$BLOBS/sha256/${d:0:2}/$d" ]] && n=$((n + 1)); done; echo "$n"; }
check_eq "the killed run deleted no bytes" 4 "$(bytes_left)"

unset BERTH_GC_TEST_PAUSE_MS
sleep 4   # the crashed run's claim on its tombstones lapses
start_registry_or_abort "$T/reg" "$REG_PORT"
REG_LOG="$REG_DIR/registry.log"
SECOND=$(client gc)
# wait_done ID: until the run has ended; its history entry.
wait_done() {
  local i entry
  for i in $(seq 300); do
    entry=$(client run "$1")
    case "$(jq -r .job_status <<<"$entry")" in
      Success) echo "$entry"; return 0 ;;
      Error) echo "$entry"; return 1 ;;
    esac
    sleep 0.2
  done
  echo "run $1 did not end: $entry"; return 1
}
check "the next run succeeds" wait_done "$SECOND"
RESULT=$(wait_done "$SECOND")
check_eq "it finished the killed run's deletions" 4 "$(jq -r .result.blobs_finished <<<"$RESULT")"
check_eq "no garbage bytes are left" 0 "$(bytes_left)"
check "the kept image pulls back byte for byte" client pull library/app keep keep
check "a freed digest can be pushed again and pulled" bash -c "client() { python3 '$T/client.py' '$REG_URL' '$ADMIN_PASS' \"\$@\"; }; client push library/again v1 gone-1 >/dev/null && client pull library/again v1 gone-1"
stored=$(find "$BLOBS" -type f | wc -l)
check_eq "the store holds exactly the referenced blobs (keep and again: 2 each)" 4 "$stored"
check "the killed run stays in the history" bash -c "python3 '$T/client.py' '$REG_URL' '$ADMIN_PASS' run $FIRST >/dev/null"
stop_registry
