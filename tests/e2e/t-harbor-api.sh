#!/usr/bin/env bash
# Harbor's /api/v2.0 as scripts drive it: curl creates a user, a project and a membership (the seeds' own command), then that user pushes and pulls with docker; the lists, errors and OpenAPI document as a client sees them.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
E2E_GROUP=harbor-api

if [[ "$E2E_TARGET" == reference ]]; then
  skip "harbor-api: /api/v2.0" "distribution 2.8 has no management API"
  exit 0
fi

require_tools docker dockerd curl jq python3 || exit "$E2E_ABORTED"
ensure_test_images

ADMIN_PASS=$(new_password)
DEV_PASS=$(new_password)
REG_AUTH_MODE=token
REG_ADMIN_PASSWORD=$ADMIN_PASS
start_registry_or_abort "$T/reg"
unset REG_ADMIN_PASSWORD
REG_LOG="$REG_DIR/registry.log"
API="$REG_URL/api/v2.0"
mkdir -p "$T/api"
if ! start_dockerd >"$T/dockerd-start.msg" 2>&1; then
  abort "start a private dockerd" "$(cat "$T/dockerd-start.msg")"
fi

# api USER PASS METHOD PATH [JSON]: curl as USER (credentials on stdin); prints the status,
# keeps the body in $T/api/body and the headers in $T/api/headers.
api() {
  local user=$1 pass=$2 method=$3 path=$4 body=${5:-}
  local args=(-X "$method" -D "$T/api/headers" -o "$T/api/body" -w '%{http_code}' "$API$path")
  [[ -n "$body" ]] && args+=(-H 'Content-Type: application/json' -d "$body")
  curl_as "$user" "$pass" "${args[@]}"
}
expect_api() {  # WANT-STATUS USER PASS METHOD PATH [JSON]
  local want=$1 got; shift
  got=$(api "$@")
  [[ "$got" == "$want" ]] || { echo "HTTP $got, want $want: $(cat "$T/api/body")"; return 1; }
}

check "GET /api/v2.0/ping answers Pong" bash -c "[[ \$(curl -s '$API/ping') == Pong ]]"
check "POST /users creates dev (201)" \
  expect_api 201 admin "$ADMIN_PASS" POST /users \
  "{\"username\":\"dev\",\"email\":\"dev@example.com\",\"realname\":\"Dev\",\"password\":\"$DEV_PASS\"}"
check "POST /projects creates team (201, Location)" \
  expect_api 201 admin "$ADMIN_PASS" POST /projects '{"project_name":"team","metadata":{"public":"false"}}'
PROJECT_ID=$(header_of "$T/api/headers" location | awk -F/ '{print $NF}')
check "the new project's id is in Location" bash -c "[[ '$PROJECT_ID' =~ ^[0-9]+\$ ]]"
# The seeds' own command, as written: curl -u admin:PASS -X POST -H "Content-Type:
# application/json" -d '{"role_id": 2, "member_user": {"username": "dev"}}' …/projects/ID/members
seed_member() {
  printf 'user = "admin:%s"\n' "$ADMIN_PASS" | curl -K - -s -o "$T/api/body" -w '%{http_code}' \
    -X POST -H "Content-Type: application/json" \
    -d '{"role_id": 2, "member_user": {"username": "dev"}}' \
    "$API/projects/$PROJECT_ID/members" | grep -qx 201
}
check "the seeds' member command answers 201" seed_member
check "dev is listed as a developer of team" bash -c \
  "[[ \$(printf 'user = \"admin:%s\"\n' '$ADMIN_PASS' | curl -K - -s '$API/projects/$PROJECT_ID/members' | jq -r '.[] | select(.entity_name==\"dev\") | .role_name') == developer ]]"

check "docker load of a locally built image" docker load -i "$IMG/busybox-amd64.tar"
check "docker tag for team" docker tag e2e-local/busybox:v1 "$REG/team/app:v1"
check "docker login as dev --password-stdin" with_stdin "$DEV_PASS" docker login "$REG" -u dev --password-stdin
check "dev pushes with docker" docker push "$REG/team/app:v1"
check "docker rmi" docker rmi "$REG/team/app:v1"
check "dev pulls it back" docker pull "$REG/team/app:v1"
# Promotion between projects, as release scripts do it: copy, then pull the copy.
check "POST /projects creates prod (201)" \
  expect_api 201 admin "$ADMIN_PASS" POST /projects '{"project_name":"prod","metadata":{"public":"false"}}'
check "dev may not copy into prod (403)" \
  expect_api 403 dev "$DEV_PASS" POST '/projects/prod/repositories/app/artifacts?from=team/app:v1'
check "admin copies team/app:v1 into prod/app (201)" \
  expect_api 201 admin "$ADMIN_PASS" POST '/projects/prod/repositories/app/artifacts?from=team/app:v1'
check "the copy's Location names it by digest" grep -qi '^location: .*/projects/prod/repositories/app/artifacts/sha256:' "$T/api/headers"
check "docker login as admin" with_stdin "$ADMIN_PASS" docker login "$REG" -u admin --password-stdin
check "docker pulls the copy" docker pull "$REG/prod/app:v1"
check "the copy has the original's digest" bash -c \
  "[[ \$(docker inspect --format '{{index .RepoDigests 0}}' '$REG/prod/app:v1' | cut -d@ -f2) == \$(docker inspect --format '{{index .RepoDigests 0}}' '$REG/team/app:v1' | cut -d@ -f2) ]]"

check "GET /projects?name=te: X-Total-Count 1" bash -c \
  "api_out=\$(printf 'user = \"dev:%s\"\n' '$DEV_PASS' | curl -K - -s -D - -o /dev/null '$API/projects?name=te'); grep -qi '^x-total-count: 1' <<<\"\$api_out\""
check "GET /projects/team shows repo_count 1" bash -c \
  "[[ \$(printf 'user = \"dev:%s\"\n' '$DEV_PASS' | curl -K - -s '$API/projects/team' | jq .repo_count) == 1 ]]"
check "dev may not list users (403, Harbor's error body)" bash -c \
  "out=\$(printf 'user = \"dev:%s\"\n' '$DEV_PASS' | curl -K - -s -w ' %{http_code}' '$API/users'); [[ \$out == *'\"FORBIDDEN\"'*' 403' ]]"
check "a wrong password is 401 with Harbor's error body" bash -c \
  "out=\$(printf 'user = \"dev:nope\"\n' | curl -K - -s -w ' %{http_code}' '$API/users/current'); [[ \$out == *'\"UNAUTHORIZED\"'*' 401' ]]"
check "page_size=101 is 422" bash -c \
  "[[ \$(curl -s -o /dev/null -w '%{http_code}' '$API/projects?page_size=101') == 422 ]]"
validate_openapi() {
  curl -s "$API/openapi.json" >"$T/api/openapi.json" || return 1
  python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["openapi"].startswith("3."); assert "/projects/{project_name_or_id}/members" in d["paths"]' "$T/api/openapi.json"
}
check "GET /api/v2.0/openapi.json is an OpenAPI 3 document naming the members path" validate_openapi
check "the registry log holds no password" bash -c \
  "! grep -qF -e '$ADMIN_PASS' -e '$DEV_PASS' '$REG_LOG'"
