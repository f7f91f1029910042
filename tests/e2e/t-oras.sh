#!/usr/bin/env bash
# ORAS (Python SDK) and raw curl artifacts against the registry: push/pull an artifact, artifacts with a subject, the referrers API.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
E2E_GROUP=oras

require_tools python3 skopeo jq curl || exit "$E2E_ABORTED"
python3 -c 'import oras' 2>/dev/null || abort "python module 'oras' is missing (run scripts/install-deps.sh)"
ensure_test_images
start_registry_or_abort "$T/reg"

REPO=e2e/artifact
W="$T/oras"
mkdir -p "$W/out"
cd "$W" || abort "cd $W"

EMPTY_DIGEST=sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a
SBOM_TYPE=application/vnd.e2e.sbom.v1+json        # artifactType of the curl-built artifact
SIG_TYPE=application/vnd.e2e.signature.v1+json    # config mediaType of the SDK-built artifact

expect_equal() {
  if [[ "$1" != "$2" ]]; then echo "expected: $1"; echo "actual:   $2"; return 1; fi
}
expect_output() {
  local want=$1 got; shift
  got=$("$@") || { echo "$got"; return 1; }
  expect_equal "$want" "$got"
}

# oras_sdk ACTION ARGS...: the ORAS Python SDK, insecure (plain HTTP), no ~/.docker writes.
#   push TARGET FILE [SUBJECT_MEDIATYPE SUBJECT_DIGEST SUBJECT_SIZE CONFIG_FILE CONFIG_MEDIATYPE]
#   pull TARGET OUTDIR
oras_sdk() {
  python3 - "$REG" "$@" <<'PY'
import sys
import oras.client, oras.oci
reg, action, target = sys.argv[1], sys.argv[2], sys.argv[3]
client = oras.client.OrasClient(hostname=reg, insecure=True)
if action == "push":
    kwargs = {}
    if len(sys.argv) > 5:
        mt, digest, size, config, config_mt = sys.argv[5:10]
        kwargs["subject"] = oras.oci.Subject(mediaType=mt, digest=digest, size=int(size))
        kwargs["manifest_config"] = f"{config}:{config_mt}"
    resp = client.push(files=[sys.argv[4]], target=f"{reg}/{target}", **kwargs)
    print(resp.status_code, resp.headers.get("Docker-Content-Digest", ""))
    if resp.status_code != 201:
        sys.exit(1)
elif action == "pull":
    files = client.pull(target=f"{reg}/{target}", outdir=sys.argv[4])
    print("\n".join(files))
PY
}

# upload_blob FILE: monolithic upload with POST then PUT ?digest=; prints nothing, fails on a non-201.
upload_blob() {
  local file=$1 digest loc code sep
  digest="sha256:$(sha256_of "$file")"
  loc=$(curl -fsS --max-time 30 -X POST -D - -o /dev/null "$REG_URL/v2/$REPO/blobs/uploads/" |
        tr -d '\r' | awk -F': ' 'tolower($1) == "location" {print $2}')
  [[ -n "$loc" ]] || { echo "POST gave no Location"; return 1; }
  [[ "$loc" == http* ]] || loc="$REG_URL$loc"
  sep='?'; [[ "$loc" == *\?* ]] && sep='&'
  code=$(curl -s -o "$T/put.out" -w '%{http_code}' --max-time 30 -X PUT \
    -H 'Content-Type: application/octet-stream' --data-binary "@$file" "$loc${sep}digest=$digest")
  [[ "$code" == 201 ]] || { echo "PUT blob: HTTP $code"; cat "$T/put.out"; return 1; }
}

# put_manifest FILE MEDIATYPE: PUT by digest, headers saved to $T/put-manifest.headers
put_manifest() {
  local code
  code=$(curl -s -D "$T/put-manifest.headers" -o "$T/put-manifest.out" -w '%{http_code}' --max-time 30 \
    -X PUT -H "Content-Type: $2" --data-binary "@$1" \
    "$REG_URL/v2/$REPO/manifests/sha256:$(sha256_of "$1")")
  [[ "$code" == 201 ]] || { echo "PUT manifest: HTTP $code"; cat "$T/put-manifest.out"; return 1; }
}

header_of() {  # FILE NAME
  tr -d '\r' <"$1" | awk -F': ' -v n="$(tr 'A-Z' 'a-z' <<<"$2")" 'tolower($1) == n {print $2}'
}

# referrers DIGEST [QUERY]: GET the referrers list; body in $T/referrers.json, headers in $T/referrers.headers
referrers() {
  local code
  code=$(curl -s -D "$T/referrers.headers" -o "$T/referrers.json" -w '%{http_code}' --max-time 30 \
    "$REG_URL/v2/$REPO/referrers/$1${2:-}")
  [[ "$code" == 200 ]] || { echo "GET referrers: HTTP $code"; cat "$T/referrers.json"; return 1; }
  cat "$T/referrers.json"
}
# referrer_types DIGEST [QUERY]: "digest artifactType" lines, sorted
referrer_types() {
  referrers "$@" >/dev/null || return 1
  jq -r '.manifests[] | "\(.digest) \(.artifactType)"' "$T/referrers.json" | sort
}
referrers_media_type() {
  referrers "$1" >/dev/null || return 1
  header_of "$T/referrers.headers" Content-Type | cut -d';' -f1
  jq -r '"\(.schemaVersion) \(.mediaType)"' "$T/referrers.json"
}

# --- plain artifact push / pull with the SDK
head -c 100000 /dev/urandom >artifact.bin
check "oras push of a file to $REPO:v1" oras_sdk push "$REPO:v1" artifact.bin
check "oras pull of $REPO:v1" oras_sdk pull "$REPO:v1" "$W/out"
check "pulled file is byte-identical" cmp artifact.bin "$W/out/artifact.bin"
check "manifest of the artifact is an OCI image manifest with the file as a layer" expect_output \
  "application/vnd.oci.image.manifest.v1+json $(wc -c <artifact.bin)" bash -c \
  "curl -fsS --max-time 30 -H 'Accept: application/vnd.oci.image.manifest.v1+json' '$REG_URL/v2/$REPO/manifests/v1' |
   jq -r '\"\(.mediaType) \(.layers[0].size)\"'"

# --- an image to attach artifacts to (same repository: referrers are per repository)
check "push the subject image (skopeo)" \
  skopeo copy -q --dest-tls-verify=false "oci:$IMG/oci:v1" "docker://$REG/$REPO:image"
SUBJECT=$(layout_digest v1)
SUBJECT_SIZE=$(wc -c <"$IMG/oci/blobs/sha256/${SUBJECT#sha256:}")
SUBJECT_MT=application/vnd.oci.image.manifest.v1+json

# --- artifact with a subject, pushed by the SDK (artifactType comes from its config mediaType)
echo '{"signed": "e2e"}' >sig-config.json
echo "signature payload" >signature.txt
check "oras push of an artifact with a subject" \
  oras_sdk push "$REPO:sig" signature.txt "$SUBJECT_MT" "$SUBJECT" "$SUBJECT_SIZE" sig-config.json "$SIG_TYPE"
SIG_DIGEST=$(curl -fsS --max-time 30 -I -H "Accept: $SUBJECT_MT" "$REG_URL/v2/$REPO/manifests/sig" 2>/dev/null |
             tr -d '\r' | awk -F': ' 'tolower($1) == "docker-content-digest" {print $2}')
check "SDK artifact manifest carries the subject" expect_output "$SUBJECT" bash -c \
  "curl -fsS --max-time 30 -H 'Accept: $SUBJECT_MT' '$REG_URL/v2/$REPO/manifests/sig' | jq -r .subject.digest"

# --- artifact with artifactType, empty config and a subject, built by hand with curl
printf '{}' >empty.json
echo '{"sbom": "e2e", "packages": ["busybox"]}' >sbom.json
jq -n -c --arg at "$SBOM_TYPE" --arg ed "$EMPTY_DIGEST" \
  --arg ld "sha256:$(sha256_of sbom.json)" --argjson ls "$(wc -c <sbom.json)" \
  --arg smt "$SUBJECT_MT" --arg sd "$SUBJECT" --argjson ss "$SUBJECT_SIZE" '
  {schemaVersion: 2, mediaType: "application/vnd.oci.image.manifest.v1+json", artifactType: $at,
   config: {mediaType: "application/vnd.oci.empty.v1+json", digest: $ed, size: 2},
   layers: [{mediaType: "application/json", digest: $ld, size: $ls}],
   subject: {mediaType: $smt, digest: $sd, size: $ss},
   annotations: {"org.opencontainers.image.created": "2026-01-01T00:00:00Z"}}' >sbom-manifest.json
SBOM_DIGEST="sha256:$(sha256_of sbom-manifest.json)"
check_eq "empty config digest is the well-known one" "$EMPTY_DIGEST" "sha256:$(sha256_of empty.json)"
check "upload the empty config blob (POST + PUT)" upload_blob empty.json
check "upload the sbom blob (POST + PUT)" upload_blob sbom.json
check "PUT the artifact manifest (artifactType + subject) by digest" \
  put_manifest sbom-manifest.json application/vnd.oci.image.manifest.v1+json
check "GET the artifact manifest by digest returns the same bytes" \
  cmp sbom-manifest.json <(curl -fsS --max-time 30 -H 'Accept: application/vnd.oci.image.manifest.v1+json' \
                            "$REG_URL/v2/$REPO/manifests/$SBOM_DIGEST")

# --- referrers API (OCI distribution-spec 1.1). distribution 2.8 (the reference) predates it.
REFERRER_CHECKS=(
  "PUT of a manifest with a subject answers OCI-Subject"
  "referrers of the image list both artifacts with their artifactType"
  "referrers answer is an OCI image index"
  "referrers ?artifactType= filter keeps only matching artifacts"
  "filtered answer says OCI-Filters-Applied: artifactType"
  "referrers of a digest with no referrers is an empty index (200)"
)
if [[ "$E2E_TARGET" == reference ]]; then
  for c in "${REFERRER_CHECKS[@]}"; do skip "$c" "distribution 2.8 has no referrers API"; done
else
  check_eq "${REFERRER_CHECKS[0]}" "$SUBJECT" "$(header_of "$T/put-manifest.headers" OCI-Subject)"
  check "${REFERRER_CHECKS[1]}" expect_output \
    "$(printf '%s %s\n%s %s\n' "$SBOM_DIGEST" "$SBOM_TYPE" "${SIG_DIGEST:-no-sig-digest}" "$SIG_TYPE" | sort)" \
    referrer_types "$SUBJECT"
  check "${REFERRER_CHECKS[2]}" expect_output \
    "$(printf 'application/vnd.oci.image.index.v1+json\n2 application/vnd.oci.image.index.v1+json')" \
    referrers_media_type "$SUBJECT"
  # the query value is percent-encoded as clients do ("+" in a query string would mean a space)
  check "${REFERRER_CHECKS[3]}" expect_output "$SBOM_DIGEST $SBOM_TYPE" \
    referrer_types "$SUBJECT" "?artifactType=${SBOM_TYPE//+/%2B}"
  check_eq "${REFERRER_CHECKS[4]}" artifactType "$(header_of "$T/referrers.headers" OCI-Filters-Applied)"
  check "${REFERRER_CHECKS[5]}" expect_output "0" bash -c \
    "curl -fsS --max-time 30 '$REG_URL/v2/$REPO/referrers/sha256:$(printf nothing | sha256sum | cut -d' ' -f1)' |
     jq -r '.manifests | length'"
fi

exit 0
