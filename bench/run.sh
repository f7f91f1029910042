#!/usr/bin/env bash
# Side-by-side benchmark: berth (release build) against Debian's docker-registry
# (CNCF Distribution 2.8, "registry:2") on 127.0.0.1, same client, same data disk, alternating
# berth / registry:2 for every figure, medians over BENCH_REPEATS runs. Prints one table, and
# one of berth before wave 2 against berth now. berth runs with wave 2 on (token mode, audit
# log, usage accounting, storage quotas) unless a figure says otherwise.
#
#   bench/run.sh            full run (~60 min on 2 cores; the first also builds BENCH_BEFORE)
#   bench/run.sh --quick    tiny sizes, one repeat: a smoke run of a minute or so
#
# Environment: BENCH_REPEATS (default 3), BENCH_TMPDIR (parent of the data dirs, default
# /var/tmp: the data disk), BENCH_SKIP_BUILD=1 (reuse target/release binaries),
# BENCH_KEEP=1 (keep the work dir with logs and raw JSON lines), BENCH_FLAME=DIR (flame graphs
# of (f) on berth and registry:2 into DIR, from one extra run each), BENCH_ONLY="j k" (only
# those sections), BENCH_BEFORE (the commit measured as "before wave 2", default f590c9d;
# empty: leave it out).
# Not part of .ci/run: it measures, it does not pass or fail.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

QUICK=0
for arg in "$@"; do
  case $arg in
    --quick) QUICK=1 ;;
    -h | --help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "unknown argument: $arg" >&2; exit 2 ;;
  esac
done

REPEATS=${BENCH_REPEATS:-3}
PULLS=5 # (c): pulls per run
# BENCH_ONLY="j k": only those sections (i, a (with a2), d, f, g, j, k, l, m (with n));
# the table shows n/a for the rest.
only() { [[ -z ${BENCH_ONLY:-} || " $BENCH_ONLY " == *" $1 "* ]]; }
if ((QUICK)); then
  REPEATS=1 BLOB=32MiB BLOB_BYTES=$((32 << 20)) CHUNK=4MiB WRK_SECS=2 PAIR_SECS=1
  IMG_CLIENTS=8 IMG_COUNT=16 LAYER=1MiB REPOS=300 TAGS=300 LIST_ROUNDS=2 TAG_ROUNDS=2 PAIR_ROUNDS=2
else
  BLOB=1GiB BLOB_BYTES=$((1 << 30)) CHUNK=10MiB WRK_SECS=10 PAIR_SECS=2
  IMG_CLIENTS=32 IMG_COUNT=128 LAYER=10MiB REPOS=10000 TAGS=10000 LIST_ROUNDS=5 TAG_ROUNDS=50 PAIR_ROUNDS=200
fi
CATALOG_N=1000 # registry:2's largest catalog page (catalog.maxentries); berth's default
if ((QUICK)); then SHARED_BLOB=4MiB; else SHARED_BLOB=128MiB; fi # (k)'s 50-client blob
# (k) again over a wide-area link: registry:2 behind `berth-bench throttle` at 1 Gbit/s.
WAN_MIB=119
if ((QUICK)); then WAN_BLOB=8MiB; else WAN_BLOB=256MiB; fi
if ((QUICK)); then GC_REPOS=10 GC_MANIFESTS=20 GC_MORE=4; else GC_REPOS=100 GC_MANIFESTS=100 GC_MORE=20; fi # (j)
if ((QUICK)); then M_LAYER=256KiB; else M_LAYER=4MiB; fi # (m), (n)
if ((QUICK)); then REP=(--repos 4 --tags 2 --base-size 256KiB --own-size 64KiB); else REP=(--repos 20 --tags 5); fi # (l)
REP_REPOS=${REP[1]}

log() { printf '[bench %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }

# --- what it needs -------------------------------------------------------------------------
missing=()
for pair in wrk:wrk docker-registry:docker-registry jq:jq bc:bc openssl:openssl lscpu:util-linux skopeo:skopeo curl:curl \
  nginx:nginx htpasswd:apache2-utils; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair#*:}")
done
# PostgreSQL (bench/scale.sh runs initdb and pg_ctl from here, and psql; the package brings both).
[[ -x /usr/lib/postgresql/15/bin/initdb ]] || missing+=(postgresql)
if ((${#missing[@]})); then
  log "installing ${missing[*]}"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
# wrk cannot do HEAD (it waits for a body that never comes): oha does (b).
OHA=$(command -v oha || echo "$HOME/.cargo/bin/oha")
if [[ ! -x $OHA ]]; then
  log "installing oha (cargo install, a few minutes)"
  dpkg -s libssl-dev pkg-config >/dev/null 2>&1 ||
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libssl-dev pkg-config >/dev/null; }
  cargo install oha --locked --no-default-features --features native-tls --quiet
fi

# s3s-fs: the S3 server of the PostgreSQL + S3 figures (bench/scale.sh); the version
# scripts/install-deps.sh installs for the tests.
if ! command -v s3s-fs >/dev/null 2>&1 && [[ ! -x $HOME/.cargo/bin/s3s-fs ]]; then
  log "installing s3s-fs (cargo install, a few minutes)"
  cargo install s3s-fs@0.14.1 --features binary --locked --quiet
fi

# BENCH_FLAME=DIR (flame graphs of (f), below) needs perf and inferno.
if [[ -n ${BENCH_FLAME:-} ]]; then
  command -v perf >/dev/null ||
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq linux-perf >/dev/null; }
  command -v inferno-flamegraph >/dev/null || cargo install inferno --locked --quiet
fi

if [[ ${BENCH_SKIP_BUILD:-0} != 1 ]]; then
  log "building berth and berth-bench (release)"
  cargo build --release --quiet -p berth -p berth-bench
fi
# What was measured: the commit, "+changes" when crates/ differed from it at build time.
BERTH_REV=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')
[[ -n $(git -C "$ROOT" status --porcelain -- crates Cargo.lock 2>/dev/null) ]] && BERTH_REV+="+changes"
BERTH=$ROOT/target/release/berth
BB=$ROOT/target/release/berth-bench
REG2=$(command -v docker-registry)
# "before": berth as it was before wave 2 (token auth, audit log, quotas, usage, Harbor API),
# measured in the same run for the before/after table. Built once from git into
# target/bench-before/ and reused; BENCH_BEFORE= (empty) leaves it out.
BEFORE_REV=${BENCH_BEFORE-f590c9d}
PRE=""
if [[ -n $BEFORE_REV ]]; then
  PRE=$ROOT/target/bench-before/$BEFORE_REV/berth
  if [[ ! -x $PRE ]]; then
    log "building berth $BEFORE_REV, before wave 2 (once: cached in target/bench-before/)"
    src=$ROOT/target/bench-before/src-$BEFORE_REV
    rm -rf "$src" && mkdir -p "$src" "$(dirname "$PRE")"
    git -C "$ROOT" archive "$BEFORE_REV" | tar -x -C "$src"
    CARGO_TARGET_DIR=$ROOT/target/bench-before/target cargo build --release --quiet -p berth \
      --manifest-path "$src/Cargo.toml"
    cp "$ROOT/target/bench-before/target/release/berth" "$PRE"
    rm -rf "$src"
  fi
fi

WORK=$(mktemp -d "${BENCH_TMPDIR:-/var/tmp}/berth-bench.XXXXXX")
RES=$WORK/results
mkdir -p "$RES"
declare -A PIDS=()

stop_pid() { # pid: SIGTERM, up to 10 s, then SIGKILL
  local pid=$1 i
  kill -TERM "$pid" 2>/dev/null || return 0
  for ((i = 0; i < 100; i++)); do
    kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}
cleanup() {
  local name
  for name in "${!PIDS[@]}"; do stop_pid "${PIDS[$name]}"; done
  scale_stop
  scale_deps_stop
  if [[ ${BENCH_KEEP:-0} == 1 ]]; then
    find "$WORK" -mindepth 1 -maxdepth 1 -name 'data-*' -exec rm -rf {} +
    log "kept $WORK (logs, raw results)"
  else
    rm -rf "$WORK"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() { # a loopback port nothing listens on, below Linux's ephemeral range (32768+),
  local p i     # where an outgoing connection (a database pool's) may hold it later
  for ((i = 0; i < 200; i++)); do
    p=$((20000 + RANDOM % 12000))
    (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return 0; }
  done
  echo "no free port found" >&2
  return 1
}

# berth: wave 2 on (token mode, audit log, usage accounting, a storage quota on every
# project it pushes to; clients send a project developer's credentials). berth0: the same
# binary with auth off (audit and usage on, the defaults), for the auth on/off ratios.
# pre: berth before wave 2 (BEFORE_REV), auth off. reg2: registry:2 without auth.
declare -A TAKEN=()
for reg in berth reg2 berth0 pre wan; do
  port=$(free_port)
  while [[ -n ${TAKEN[$port]:-} ]]; do port=$(free_port); done
  TAKEN[$port]=1
  eval "PORT_$reg=$port"
done
url() { echo "http://127.0.0.1:$(eval echo "\$PORT_$1")"; }
source "$ROOT/bench/scale.sh"

reg2_config() { # data dir -> config path. registry:2's image config, access log off.
  local dir=$1 cfg=$WORK/reg2.yml
  cat >"$cfg" <<EOF
version: 0.1
log:
  accesslog:
    disabled: true
  level: error
storage:
  cache:
    blobdescriptor: inmemory
  filesystem:
    rootdirectory: $dir
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$PORT_reg2
  headers:
    X-Content-Type-Options: [nosniff]
EOF
  echo "$cfg"
}

ADMIN_PW=Bench-Admin-1234
ADMIN_AUTH="Basic $(printf 'admin:%s' "$ADMIN_PW" | base64 -w0)"
CI_PW=Bench-Ci-1234
CI_AUTH="Basic $(printf 'ci:%s' "$CI_PW" | base64 -w0)"
TOKEN_ENV=(BERTH_AUTH_MODE=token "BERTH_ADMIN_PASSWORD=$ADMIN_PW")
# Every project the figures (a)–(g) push to; each gets a 1 TiB storage quota in wave-2 mode.
W2_PROJECTS=(bench catalog tagged arts)
declare -A AUTH_OF=() # registry -> the Authorization value its berth-bench clients send

# wave2_setup REG: user "ci", a developer (push and pull, nothing more) of every project in
# W2_PROJECTS, each created with a storage quota, so every push is checked against one.
wave2_setup() {
  local api p
  api=$(url "$1")/api/v2.0
  api_post() { curl -sf -H "Authorization: $ADMIN_AUTH" -H 'Content-Type: application/json' -d "$2" "$api$1" >/dev/null; }
  api_post /users "{\"username\": \"ci\", \"password\": \"$CI_PW\", \"email\": \"ci@example.com\", \"realname\": \"CI\"}"
  for p in "${W2_PROJECTS[@]}"; do
    api_post /projects "{\"project_name\": \"$p\", \"storage_limit\": $((1 << 40))}"
    api_post "/projects/$p/members" '{"role_id": 2, "member_user": {"username": "ci"}}'
  done
  AUTH_OF[$1]=$CI_AUTH
}

# start REG: a fresh, empty data dir each time; records the pid in PIDS[REG]. berth, pg, cl1
# and cl2 start in wave-2 mode (wave2_setup) unless a section set BERTH_ENV itself.
start() {
  local reg=$1 dir=$WORK/data-$1 wave2=0
  rm -rf "$dir" && mkdir -p "$dir"
  case $reg in
    berth)
      if ((${#BERTH_ENV[@]} == 0)); then wave2=1; fi
      env "${TOKEN_ENV[@]}" "${BERTH_ENV[@]}" BERTH_ADDR=127.0.0.1:$PORT_berth BERTH_DATA_DIR=$dir \
        BERTH_LOG=error "$BERTH" serve >>"$WORK/berth.log" 2>&1 &
      PIDS[berth]=$! ;;
    berth0) BERTH_ADDR=127.0.0.1:$PORT_berth0 BERTH_DATA_DIR=$dir BERTH_LOG=error \
      "$BERTH" serve >>"$WORK/berth.log" 2>&1 &
      PIDS[berth0]=$! ;;
    pre) BERTH_ADDR=127.0.0.1:$PORT_pre BERTH_DATA_DIR=$dir BERTH_LOG=error \
      "$PRE" serve >>"$WORK/berth-pre.log" 2>&1 &
      PIDS[pre]=$! ;;
    reg2) "$REG2" serve "$(reg2_config "$dir")" >>"$WORK/reg2.log" 2>&1 &
      PIDS[reg2]=$! ;;
    pg | cl1 | cl2)
      if ((${#BERTH_ENV[@]} == 0)); then wave2=1; fi
      scale_start "$reg" "$dir" ;;
  esac
  BENCH_AUTHORIZATION=$ADMIN_AUTH "$BB" --url "$(url "$reg")" ping --timeout-secs 30
  if ((wave2)); then wave2_setup "$reg"; fi
}
stop() {
  local reg=$1
  [[ -n ${PIDS[$reg]:-} ]] && stop_pid "${PIDS[$reg]}"
  unset "PIDS[$reg]" "AUTH_OF[$reg]"
  [[ $reg == pg || $reg == cl1 || $reg == cl2 ]] && scale_stop
  rm -rf "$WORK/data-$reg"
  sync
}
# settle: write back every dirty page and empty the page cache before a write-heavy figure,
# so that every run of it starts from the same memory state. On this machine (a Firecracker
# guest) a run that writes into page-cache pages the guest has not used lately spends up to
# half of berth's CPU copying into them (copy_folio_from_iter_atomic): three (f) runs in a row
# on one registry gave 23.2, 18.2 and 11.8 images/s with no change in between; with settle
# before each, 18.6–22.8. Needs root (the bench installs packages as root anyway); without
# it, only the sync.
settle() {
  sync
  if [[ -w /proc/sys/vm/drop_caches ]]; then echo 3 >/proc/sys/vm/drop_caches; fi
}
hwm_mib() { awk '/^VmHWM:/ { printf "%.1f", $2 / 1024 }' "/proc/${PIDS[$1]}/status"; }
# CPU time of a registry's threads, ms (the scheduler's nanoseconds, not the 10 ms ticks of
# /proc/PID/stat; threads that exited meanwhile are not counted).
cpu_ms() { cat /proc/"${PIDS[$1]}"/task/*/schedstat 2>/dev/null | awk '{ ns += $1 } END { printf "%.1f", ns / 1e6 }'; }

record() { echo "$3" >>"$RES/$1.$2"; } # figure registry value
median_of_lines() { # numbers, one per line, on stdin -> their median
  sort -g | awk '{ v[NR] = $1 } END {
    if (NR % 2) m = v[(NR + 1) / 2]; else m = (v[NR / 2] + v[NR / 2 + 1]) / 2
    printf "%.6f", m }'
}
median() { # figure registry -> median, or "n/a"
  [[ -s $RES/$1.$2 ]] || { echo n/a; return; }
  median_of_lines <"$RES/$1.$2"
}
j() { jq -r "$1" <<<"$2"; }
calc() { [[ $1 == *n/a* ]] && { echo n/a; return; }; bc -l <<<"$1"; } # n/a: a figure not measured
bench() { # reg subcommand args...: run berth-bench against REG, keep its JSON line
  local reg=$1 out
  shift
  # A section's own BENCH_AUTHORIZATION (even empty) wins over the registry's clients' one.
  # Not `set -e`'s to catch: a command substitution inside a function does not inherit it,
  # and a failed push once became an empty figure (a median of two) instead of a stop.
  out=$(BENCH_AUTHORIZATION=${BENCH_AUTHORIZATION-${AUTH_OF[$reg]:-}} timeout 900 "$BB" --url "$(url "$reg")" "$@") ||
    { echo "berth-bench $1 against $reg failed" >&2; return 1; }
  echo "$reg $out" >>"$WORK/raw.jsonl"
  echo "$out"
}
REGS=(berth reg2)
# The figures (a)–(i) also measure berth before wave 2.
MAIN_REGS=(berth reg2)
[[ -n $PRE ]] && MAIN_REGS+=(pre)
BERTH_ENV=() # a section's own environment for berth's starts (then not in wave-2 mode)

# --- the machine and its limits ------------------------------------------------------------
MODEL=$(lscpu | sed -n 's/^Model name: *//p' | head -1)
MEM=$(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo)
DEV=$(findmnt -no SOURCE -T "$WORK")
FS=$(findmnt -no FSTYPE -T "$WORK")
DISK=$(lsblk -dno NAME,SIZE,ROTA,MODEL "$DEV" 2>/dev/null | awk '{ printf "%s %s rotational=%s %s", $1, $2, $3, $4 }')
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
log "work dir $WORK ($DEV, $FS); ports berth $PORT_berth, registry:2 $PORT_reg2"

log "hashing limit: openssl speed -evp sha256 (16384-byte blocks)"
SHA_GIBS=$(openssl speed -evp sha256 -seconds 3 2>/dev/null | awk '/^sha256/ { printf "%.3f", $NF * 1000 / 2^30 }')
for ((r = 1; r <= REPEATS; r++)); do
  log "disk write: dd 1 GiB conv=fdatasync ($r/$REPEATS)"
  dd if=/dev/zero of="$WORK/ddtest" bs=1M count=1024 conv=fdatasync 2>&1 |
    awk '/copied/ { for (i = 1; i <= NF; i++) if ($i ~ /^s,?$/) s = $(i - 1); printf "%.3f\n", $1 / s / 2^30 }' >>"$RES/dd.machine"
  rm -f "$WORK/ddtest"
done
DD_GIBS=$(printf '%.3f' "$(median dd machine)")

# --- (i) cold start and (h) idle RSS -------------------------------------------------------
if only i; then
# berth in token mode: its first start creates the administrator and a signing key, and
# /v2/ answers 401 once it serves.
for ((r = 1; r <= REPEATS; r++)); do
  for reg in "${MAIN_REGS[@]}"; do
    log "(i) cold start $reg ($r/$REPEATS)"
    dir=$WORK/data-cold && rm -rf "$dir" && mkdir -p "$dir"
    ready=200
    case $reg in
      berth) cmd=(env "${TOKEN_ENV[@]}" BERTH_ADDR=127.0.0.1:$PORT_berth BERTH_DATA_DIR=$dir BERTH_LOG=error "$BERTH" serve)
        ready=401 ;;
      pre) cmd=(env BERTH_ADDR=127.0.0.1:$PORT_pre BERTH_DATA_DIR=$dir BERTH_LOG=error "$PRE" serve) ;;
      reg2) cmd=("$REG2" serve "$(reg2_config "$dir")") ;;
    esac
    out=$(bench "$reg" coldstart --ready-status "$ready" -- "${cmd[@]}")
    record cold "$reg" "$(j .ms "$out")"
    record idle "$reg" "$(j '.idle_rss_kib / 1024' "$out")"
    record idle-anon "$reg" "$(j '.idle_rss_anon_kib / 1024' "$out")"
    # Again on the now initialised data dir: a restart.
    out=$(bench "$reg" coldstart --ready-status "$ready" --settle-ms 0 -- "${cmd[@]}")
    record restart "$reg" "$(j .ms "$out")"
    rm -rf "$dir"
  done
done

fi

# --- (a) GET manifest by tag, (b) HEAD blob: 64 connections --------------------------------
if only a; then
# berth (wave 2 on) with a bearer token for ci (repository:bench/small:pull), as docker sends
# it; berth0 (auth off) right after it, for the auth on/off ratio.
ACCEPT='Accept: application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json'
declare -A LAYER_OF=()
for reg in "${MAIN_REGS[@]}" berth0; do
  start "$reg"
  out=$(bench "$reg" push-image --repo bench/small --tag latest --layer-size 4KiB --seed 42)
  LAYER_OF[$reg]=$(j '.layer_digests[0]' "$out")
done
# auth_args REG: wrk/oha arguments that authenticate as REG's clients: a fresh bearer token
# for berth in wave-2 mode, nothing for the others.
auth_args() {
  AUTH_ARGS=()
  [[ -n ${AUTH_OF[$1]:-} ]] || return 0
  local token
  token=$(curl -sf -H "Authorization: ${AUTH_OF[$1]}" \
    "$(url "$1")/service/token?service=berth&scope=repository:bench/small:pull" | jq -r .token)
  [[ -n $token && $token != null ]] || { echo "no token from $1" >&2; exit 1; }
  AUTH_ARGS=(-H "Authorization: Bearer $token")
}
wrk_run() { # fig reg url [wrk args]
  local fig=$1 reg=$2 target=$3 out
  shift 3
  out=$(timeout $((WRK_SECS + 60)) wrk -t2 -c64 -d"${WRK_SECS}s" --latency "$@" "$target")
  echo "$reg $fig $out" >>"$WORK/wrk.log"
  record "$fig" "$reg" "$(awk '/^Requests\/sec:/ { print $2 }' <<<"$out")"
  record "$fig-p99" "$reg" "$(awk '$1 == "99%" { v = $2
    if (v ~ /us$/) v = v / 1000; else if (v ~ /ms$/) v = v + 0; else if (v ~ /s$/) v = v * 1000
    print v }' <<<"$out")"
}
oha_run() { # fig reg url [oha args]
  local fig=$1 reg=$2 target=$3 out
  shift 3
  out=$(timeout $((WRK_SECS + 60)) "$OHA" -c 64 -z "${WRK_SECS}s" -m HEAD --no-tui --output-format json "$@" "$target" 2>/dev/null)
  echo "$reg $fig $out" >>"$WORK/oha.log"
  record "$fig" "$reg" "$(j '.summary.requestsPerSec' "$out")"
  record "$fig-p99" "$reg" "$(j '.latencyPercentiles.p99 * 1000' "$out")"
}
for reg in "${MAIN_REGS[@]}" berth0; do # warm-up, not recorded
  auth_args "$reg"
  timeout 60 wrk -t2 -c64 -d1s -H "$ACCEPT" "${AUTH_ARGS[@]}" "$(url "$reg")/v2/bench/small/manifests/latest" >/dev/null
done
for ((r = 1; r <= REPEATS; r++)); do
  # Each registry in a different place in each repeat, so that none always follows the
  # same neighbour (a 10 s wrk run leaves the machine warmer or cooler for the next one).
  all=("${MAIN_REGS[@]}" berth0)
  order=("${all[@]:$(((r - 1) % ${#all[@]}))}" "${all[@]:0:$(((r - 1) % ${#all[@]}))}")
  for reg in "${order[@]}"; do
    log "(a) GET manifest $reg ($r/$REPEATS)"
    auth_args "$reg"
    fig=manifest && [[ $reg == berth0 ]] && fig=manifest-auth-off
    wrk_run "$fig" "${reg/berth0/berth}" "$(url "$reg")/v2/bench/small/manifests/latest" -H "$ACCEPT" "${AUTH_ARGS[@]}"
  done
  for reg in "${order[@]}"; do
    log "(b) HEAD blob $reg ($r/$REPEATS)"
    auth_args "$reg"
    fig=head && [[ $reg == berth0 ]] && fig=head-auth-off
    oha_run "$fig" "${reg/berth0/berth}" "$(url "$reg")/v2/bench/small/blobs/${LAYER_OF[$reg]}" "${AUTH_ARGS[@]}"
  done
done
# (a) and (b) against berth before wave 2, taking turns: 10 s runs one registry after another
# moved by ±20 % with the minute (one run had (a) at 77 % and (b) at 118 % of before in the
# same minutes), so the before/after rows come from 2 s runs alternating, ten per repeat.
# A third turn sends before wave 2 berth's own bearer header, which it ignores ("pre-bytes"):
# the load generator shares the two cores, so a 700-byte header costs it and the kernel time
# too; with the same request bytes on both sides, what differs is the servers' work alone.
if [[ -n $PRE ]]; then
  for ((r = 1; r <= REPEATS; r++)); do
    log "(a), (b) berth and before wave 2 taking turns ($r/$REPEATS)"
    auth_args berth
    BERTH_AUTH_ARGS=("${AUTH_ARGS[@]}")
    for ((k = 0; k < 10; k++)); do
      turns=(berth pre pre-bytes)
      turns=("${turns[@]:$(((k + r) % 3))}" "${turns[@]:0:$(((k + r) % 3))}")
      for turn in "${turns[@]}"; do
        reg=${turn%-bytes} args=()
        [[ $turn == berth || $turn == pre-bytes ]] && args=("${BERTH_AUTH_ARGS[@]}")
        WRK_SECS=$PAIR_SECS wrk_run manifest-pair "$turn" "$(url "$reg")/v2/bench/small/manifests/latest" -H "$ACCEPT" "${args[@]}"
        WRK_SECS=$PAIR_SECS oha_run head-pair "$turn" "$(url "$reg")/v2/bench/small/blobs/${LAYER_OF[$reg]}" "${args[@]}"
      done
    done
  done
fi
for reg in "${MAIN_REGS[@]}" berth0; do stop "$reg"; done

# --- (a), (b) on PostgreSQL + S3 (one node) --------------------------------------------------
scale_deps_start
start pg
out=$(bench pg push-image --repo bench/small --tag latest --layer-size 4KiB --seed 42)
PG_LAYER=$(j '.layer_digests[0]' "$out")
auth_args pg
timeout 60 wrk -t2 -c64 -d1s -H "$ACCEPT" "${AUTH_ARGS[@]}" "$(url pg)/v2/bench/small/manifests/latest" >/dev/null
for ((r = 1; r <= REPEATS; r++)); do
  auth_args pg
  log "(a) GET manifest, PostgreSQL + S3 ($r/$REPEATS)"
  wrk_run manifest-pg berth "$(url pg)/v2/bench/small/manifests/latest" -H "$ACCEPT" "${AUTH_ARGS[@]}"
  log "(b) HEAD blob, PostgreSQL + S3 ($r/$REPEATS)"
  oha_run head-pg berth "$(url pg)/v2/bench/small/blobs/$PG_LAYER" "${AUTH_ARGS[@]}"
done
stop pg

# --- (a2) auth on the read path: token mode vs auth off, registry:2 with htpasswd ----------
# berth: the image is pushed with auth off, then the same data dir is served in token mode
# (project "bench" created with the CLI): GET manifest with a bearer token, and with Basic
# credentials straight to /v2/; token issue for a repeat user over keep-alive. registry:2:
# the same image served with htpasswd (bcrypt, checked on every request).
BASIC_HDR="Authorization: $ADMIN_AUTH"
auth_dir=$WORK/data-auth-berth
rm -rf "$auth_dir" && mkdir -p "$auth_dir"
BERTH_ADDR=127.0.0.1:$PORT_berth BERTH_DATA_DIR=$auth_dir BERTH_LOG=error "$BERTH" serve >>"$WORK/berth.log" 2>&1 &
PIDS[berth]=$!
"$BB" --url "$(url berth)" ping --timeout-secs 30
bench berth push-image --repo bench/small --tag latest --layer-size 4KiB --seed 42 >/dev/null
stop_pid "${PIDS[berth]}" && unset "PIDS[berth]"
"$BERTH" project create bench --data-dir "$auth_dir" >/dev/null
start_token_berth() {
  BERTH_ADDR=127.0.0.1:$PORT_berth BERTH_DATA_DIR=$auth_dir BERTH_LOG=error BERTH_AUTH_MODE=token \
    BERTH_ADMIN_PASSWORD=$ADMIN_PW "$BERTH" serve >>"$WORK/berth.log" 2>&1 &
  PIDS[berth]=$!
  for _ in $(seq 300); do
    [[ $(curl -s -o /dev/null -w '%{http_code}' "$(url berth)/v2/") == 401 ]] && return 0
    sleep 0.1
  done
  echo "berth in token mode did not start" >&2
  exit 1
}
start_token_berth
TOKEN=$(curl -sf -H "$BASIC_HDR" "$(url berth)/service/token?service=berth&scope=repository:bench/small:pull" | jq -r .token)
[[ -n $TOKEN && $TOKEN != null ]] || { echo "no token from berth" >&2; exit 1; }
BEARER_HDR="Authorization: Bearer $TOKEN"
reg2_auth_dir=$WORK/data-auth-reg2
rm -rf "$reg2_auth_dir" && mkdir -p "$reg2_auth_dir"
"$REG2" serve "$(reg2_config "$reg2_auth_dir")" >>"$WORK/reg2.log" 2>&1 &
PIDS[reg2]=$!
"$BB" --url "$(url reg2)" ping --timeout-secs 30
bench reg2 push-image --repo bench/small --tag latest --layer-size 4KiB --seed 42 >/dev/null
stop_pid "${PIDS[reg2]}" && unset "PIDS[reg2]"
htpasswd -Bbc "$WORK/htpasswd" admin "$ADMIN_PW" >/dev/null 2>&1
cfg=$(reg2_config "$reg2_auth_dir")
printf 'auth:\n  htpasswd:\n    realm: bench\n    path: %s\n' "$WORK/htpasswd" >>"$cfg"
"$REG2" serve "$cfg" >>"$WORK/reg2.log" 2>&1 &
PIDS[reg2]=$!
for _ in $(seq 300); do
  [[ $(curl -s -o /dev/null -w '%{http_code}' "$(url reg2)/v2/") == 401 ]] && break
  sleep 0.1
done
MANIFEST_PATH=/v2/bench/small/manifests/latest
# berth with auth off beside it, measured right before each token-mode figure: (a2)'s
# ratios divide figures taken seconds apart, not sections apart (whole sections drift 25 %).
start berth0
bench berth0 push-image --repo bench/small --tag latest --layer-size 4KiB --seed 42 >/dev/null
timeout 60 wrk -t2 -c64 -d1s -H "$ACCEPT" "$(url berth0)$MANIFEST_PATH" >/dev/null # warm-up
timeout 60 wrk -t2 -c64 -d1s -H "$ACCEPT" -H "$BEARER_HDR" "$(url berth)$MANIFEST_PATH" >/dev/null # warm-up
for ((r = 1; r <= REPEATS; r++)); do
  # Auth off, bearer and Basic taking turns in 2 s runs: a 10 s run of each, one after
  # another, still landed in different minutes' windows (bearer at 77 % of auth off once).
  log "(a2) GET manifest: auth off, bearer token, Basic straight to /v2/, taking turns ($r/$REPEATS)"
  for ((k = 0; k < 9; k++)); do
    case $(((k + r) % 3)) in
      0) WRK_SECS=$PAIR_SECS wrk_run manifest-a2-off berth "$(url berth0)$MANIFEST_PATH" -H "$ACCEPT" ;;
      1) WRK_SECS=$PAIR_SECS wrk_run manifest-bearer berth "$(url berth)$MANIFEST_PATH" -H "$ACCEPT" -H "$BEARER_HDR" ;;
      2) WRK_SECS=$PAIR_SECS wrk_run manifest-basic berth "$(url berth)$MANIFEST_PATH" -H "$ACCEPT" -H "$BASIC_HDR" ;;
    esac
  done
  log "(a2) GET manifest with Basic, registry:2 htpasswd ($r/$REPEATS)"
  wrk_run manifest-basic reg2 "$(url reg2)$MANIFEST_PATH" -H "$ACCEPT" -H "$BASIC_HDR"
  log "(a2) token issue for a repeat user over keep-alive, berth ($r/$REPEATS)"
  wrk_run token-issue berth "$(url berth)/service/token?service=berth&scope=repository:bench/small:pull,push" -H "$BASIC_HDR"
done
stop_pid "${PIDS[berth]}" && unset "PIDS[berth]"
stop_pid "${PIDS[reg2]}" && unset "PIDS[reg2]"
stop berth0
# Idle RSS of a fresh token-mode start (admin created, signing key generated).
for ((r = 1; r <= REPEATS; r++)); do
  dir=$WORK/data-cold-token && rm -rf "$dir" && mkdir -p "$dir"
  out=$(BERTH_ADDR=127.0.0.1:$PORT_berth BERTH_DATA_DIR=$dir BERTH_LOG=error BERTH_AUTH_MODE=token \
    BERTH_ADMIN_PASSWORD=$ADMIN_PW bench berth coldstart --ready-status 401 -- "$BERTH" serve)
  record idle-token berth "$(j '.idle_rss_kib / 1024' "$out")"
  record idle-token-anon berth "$(j '.idle_rss_anon_kib / 1024' "$out")"
  rm -rf "$dir"
done
rm -rf "$auth_dir" "$reg2_auth_dir"

fi

# --- (d) monolithic push, (c) pull, (e) chunked push; peak RSS during (d) -----------------
if only d; then
declare -A PULL_DIGEST=() CPU_BEFORE=()
# Each run starts the registry fresh, so VmHWM read right after (d) is the peak during (d).
for ((r = 1; r <= REPEATS; r++)); do
  for reg in "${MAIN_REGS[@]}"; do
    start "$reg"
    log "(d) monolithic push $BLOB $reg ($r/$REPEATS)"
    out=$(bench "$reg" push-blob --size "$BLOB")
    record push "$reg" "$(j .gib_s "$out")"
    record rss-push "$reg" "$(hwm_mib "$reg")"
    log "(e) chunked push $BLOB in $CHUNK chunks $reg ($r/$REPEATS)"
    out=$(bench "$reg" push-blob --size "$BLOB" --chunk "$CHUNK")
    record chunked "$reg" "$(j .gib_s "$out")"
    stop "$reg"
  done
  # (c): every registry serves a blob of its own at once, and their pulls alternate, so that
  # each meets the machine in the same state (one pull of a blob this size varies by ±30 %
  # here whoever serves it, and drifts between registries run one after another).
  for reg in "${MAIN_REGS[@]}"; do
    start "$reg"
    PULL_DIGEST[$reg]=$(j .digest "$(bench "$reg" push-blob --size "$BLOB")")
    CPU_BEFORE[$reg]=$(cpu_ms "$reg")
  done
  log "(c) pull $BLOB, $PULLS times from each, alternating ($r/$REPEATS)"
  for ((p = 1; p <= PULLS; p++)); do
    for reg in "${MAIN_REGS[@]}"; do
      out=$(bench "$reg" pull-blob --digest "${PULL_DIGEST[$reg]}")
      [[ $(j .bytes "$out") == "$BLOB_BYTES" ]] || { echo "short pull: $out" >&2; exit 1; }
      record pull "$reg" "$(j .gib_s "$out")"
    done
  done
  # The server's CPU time per GiB sent does not depend on that noise.
  for reg in "${MAIN_REGS[@]}"; do
    record pull-cpu "$reg" "$(calc "($(cpu_ms "$reg") - ${CPU_BEFORE[$reg]}) / ($PULLS * $BLOB_BYTES / 2^30)")"
    stop "$reg"
  done
done
# The same on PostgreSQL + S3 (one node): blobs go to s3s-fs through multipart uploads, and
# a pull follows the 307 to a presigned URL, so s3s-fs serves the bytes.
for ((r = 1; r <= REPEATS; r++)); do
  start pg
  log "(d) monolithic push $BLOB, PostgreSQL + S3 ($r/$REPEATS)"
  out=$(bench pg push-blob --size "$BLOB")
  record push-pg berth "$(j .gib_s "$out")"
  log "(c) pull $BLOB, PostgreSQL + S3 ($r/$REPEATS)"
  out=$(bench pg pull-blob --digest "$(j .digest "$out")")
  [[ $(j .bytes "$out") == "$BLOB_BYTES" ]] || { echo "short pull: $out" >&2; exit 1; }
  record pull-pg berth "$(j .gib_s "$out")"
  log "(e) chunked push $BLOB in $CHUNK chunks, PostgreSQL + S3 ($r/$REPEATS)"
  out=$(bench pg push-blob --size "$BLOB" --chunk "$CHUNK")
  record chunked-pg berth "$(j .gib_s "$out")"
  stop pg
done

fi

# --- (f) concurrent image push + pull; peak RSS during (f) ---------------------------------
if only f; then
# berth0 (auth off) too, for the auth on/off ratio. Repositories bench/img-<run>/c<client>.
# A run of berth lasts 4 s, so five repeats (not three), each registry in a different place
# in each: with three, berth always first, the ratio to registry:2 moved 2.44–2.52× between
# full runs and berth's to before wave 2 91–100 %.
F_REPEATS=$((QUICK ? 1 : 5))
for ((r = 1; r <= F_REPEATS; r++)); do
  all=("${MAIN_REGS[@]}" berth0)
  order=("${all[@]:$(((r - 1) % ${#all[@]}))}" "${all[@]:0:$(((r - 1) % ${#all[@]}))}")
  for reg in "${order[@]}"; do
    start "$reg"
    settle
    log "(f) $IMG_CLIENTS clients, $IMG_COUNT images of 3 x $LAYER, $reg ($r/$F_REPEATS)"
    out=$(bench "$reg" images --clients "$IMG_CLIENTS" --count "$IMG_COUNT" --layers 3 --layer-size "$LAYER" --repo-prefix bench/img)
    [[ $reg == berth0 ]] && { record images-auth-off berth "$(j .images_per_s "$out")"; stop "$reg"; continue; }
    record images "$reg" "$(j .images_per_s "$out")"
    record images-p99 "$reg" "$(j .image.p99_ms "$out")"
    record rss-images "$reg" "$(hwm_mib "$reg")"
    stop "$reg"
  done
done

# BENCH_FLAME=DIR: one more (f) run of berth and one of registry:2, not counted, under
# `perf record -a` (DWARF call stacks, 499 Hz, the timed part only: berth-bench enables and
# disables it through a FIFO), drawn as DIR/f-berth.svg and DIR/f-registry2.svg: the whole
# machine, each process under its name, idle CPU as "idle".
if [[ -n ${BENCH_FLAME:-} ]]; then
  mkdir -p "$BENCH_FLAME"
  for reg in berth reg2; do
    name=$([[ $reg == reg2 ]] && echo registry2 || echo berth)
    start "$reg"
    settle
    log "(f) once more under perf, for a flame graph: $name"
    rm -f "$WORK/perf-ctl" && mkfifo "$WORK/perf-ctl"
    perf record -q -a -D -1 --control "fifo:$WORK/perf-ctl" --call-graph dwarf,16384 -F 499 \
      -o "$WORK/f-$name.perf" 2>/dev/null &
    perf_pid=$!
    BENCH_AUTHORIZATION=${BENCH_AUTHORIZATION-${AUTH_OF[$reg]:-}} "$BB" --url "$(url "$reg")" images \
      --clients "$IMG_CLIENTS" --count "$IMG_COUNT" --layers 3 --layer-size "$LAYER" \
      --repo-prefix bench/flame --perf-control "$WORK/perf-ctl" >/dev/null &
    client=$!
    # Were perf not reading its FIFO, the client would wait for it to open forever.
    (sleep 900 && kill "$client") 2>/dev/null &
    watchdog=$!
    wait "$client"
    kill "$watchdog" 2>/dev/null || true
    kill -INT "$perf_pid" && wait "$perf_pid" || true
    perf script -i "$WORK/f-$name.perf" -F comm,pid,tid,period,event,ip,sym,dso 2>/dev/null |
      inferno-collapse-perf --pid |
      sed -E -e "s/^([^;]*)-${PIDS[$reg]};/$name;\1;/" -e "s/^([^;]*)-$client;/client;\1;/" \
        -e 's/^swapper-0;/idle;/' -e "/^(idle|client|$name);/!s/^/other;/" |
      inferno-flamegraph --countname samples --minwidth 0.5 \
        --title "(f) on $name, $IMG_CLIENTS clients, $IMG_COUNT images of 3 x $LAYER: the whole machine (berth $BERTH_REV)" \
        >"$BENCH_FLAME/f-$name.svg"
    rm -f "$WORK/f-$name.perf"
    stop "$reg"
  done
fi

# (f) on PostgreSQL + S3: one node, then nginx round-robin in front of one node and of two.
for ((r = 1; r <= REPEATS; r++)); do
  for reg in pg cl1 cl2; do
    start "$reg"
    log "(f) $IMG_CLIENTS clients, $IMG_COUNT images of 3 x $LAYER, $reg ($r/$REPEATS)"
    out=$(bench "$reg" images --clients "$IMG_CLIENTS" --count "$IMG_COUNT" --layers 3 --layer-size "$LAYER" --repo-prefix bench/img)
    record "images-$reg" berth "$(j .images_per_s "$out")"
    record "images-p99-$reg" berth "$(j .image.p99_ms "$out")"
    stop "$reg"
  done
done

fi

# --- (g) _catalog and tag list with many repositories / tags ------------------------------
if only g; then
# berth lists what ci may see: every repository here is in one of its projects.
for reg in "${MAIN_REGS[@]}"; do
  start "$reg"
  log "(g) seeding $REPOS repositories and $TAGS tags into $reg"
  out=$(bench "$reg" seed --repos "$REPOS" --name catalog/r)
  record seed-repos "$reg" "$(j .per_s "$out")"
  out=$(bench "$reg" seed --tags "$TAGS" --name tagged/one)
  record seed-tags "$reg" "$(j .per_s "$out")"
done
# Harbor's artifact list (/api/v2.0) exists on berth only: $TAGS artifacts in one repository.
# berth before wave 2 holds them too (pushed through /v2/), so that both list from databases
# of the same size.
log "(g) seeding $TAGS artifacts into berth"
out=$(bench berth seed --artifacts "$TAGS" --name arts/many)
record seed-artifacts berth "$(j .per_s "$out")"
if [[ -n $PRE ]]; then bench pre seed --artifacts "$TAGS" --name arts/many >/dev/null; fi
for ((r = 1; r <= REPEATS; r++)); do
  # Each registry in a different place in each repeat (first, middle, last), so that none is
  # always measured right after the same neighbour.
  order=("${MAIN_REGS[@]:$(((r - 1) % ${#MAIN_REGS[@]}))}" "${MAIN_REGS[@]:0:$(((r - 1) % ${#MAIN_REGS[@]}))}")
  for reg in "${order[@]}"; do
    log "(g) list $reg ($r/$REPEATS)"
    out=$(bench "$reg" list --catalog --n "$CATALOG_N" --rounds "$LIST_ROUNDS")
    (($(j .items_per_walk "$out") >= REPOS)) || { echo "catalog walk: $out" >&2; exit 1; }
    record catalog "$reg" "$(j .page.p50_ms "$out")"
    CATALOG_PAGES=$(j .pages_per_walk "$out")
    out=$(bench "$reg" list --tags tagged/one --rounds "$TAG_ROUNDS")
    [[ $(j .items_per_walk "$out") == "$TAGS" ]] || { echo "tag walk: $out" >&2; exit 1; }
    record tags "$reg" "$(j .page.p50_ms "$out")"
    record tags-max "$reg" "$(j .page.max_ms "$out")"
    record tags-pages "$reg" "$(j .pages_per_walk "$out")"
    out=$(bench "$reg" list --tags tagged/one --n "$CATALOG_N" --rounds "$TAG_ROUNDS")
    record tags-n "$reg" "$(j .page.p50_ms "$out")"
  done
  # berth against berth before wave 2 on the tag lists, each walk of one followed by one of
  # the other (the before/after rows): a walk's time drifts by up to 30 % between repeats,
  # and a p50 of 50 pairs still moved by 15 % (of 200, by 2 % in hand runs).
  if [[ -n $PRE ]]; then
    log "(g) tag lists, berth and before wave 2 walk by walk ($r/$REPEATS)"
    out=$(bench berth list --tags tagged/one --rounds "$PAIR_ROUNDS" --pair-url "$(url pre)")
    record tags-pair berth "$(j .page.p50_ms "$out")"
    record tags-pair pre "$(j .pair_page.p50_ms "$out")"
    out=$(bench berth list --tags tagged/one --n "$CATALOG_N" --rounds "$PAIR_ROUNDS" --pair-url "$(url pre)")
    record tags-n-pair berth "$(j .page.p50_ms "$out")"
    record tags-n-pair pre "$(j .pair_page.p50_ms "$out")"
  fi
  log "(g) Harbor artifact list, berth ($r/$REPEATS)"
  out=$(bench berth list --artifacts arts/many --n 100 --rounds "$LIST_ROUNDS")
  [[ $(j .items_per_walk "$out") == "$TAGS" ]] || { echo "artifact walk: $out" >&2; exit 1; }
  record artifacts berth "$(j .page.p50_ms "$out")"
  record artifacts-max berth "$(j .page.max_ms "$out")"
done
for reg in "${MAIN_REGS[@]}"; do stop "$reg"; done

fi

# --- (j) operations: GC, usage and quota answers at 10 000 manifests / 50 000 blobs ---------
if only j; then
# berth in token mode (GC and usage answer on /api/v2.0 to a system administrator), projects
# made by the admin's first push.
# Seeded: 100 repositories × 100 manifests of 5 blobs (1 KiB), every 5th manifest deleted:
# 10 000 of 50 000 blobs are garbage. registry:2 gets the same and runs its offline GC.
GC_GARBAGE=$((GC_REPOS * GC_MANIFESTS)) # every 5th manifest, 5 blobs each
export BENCH_AUTHORIZATION="Basic $(printf 'admin:%s' "$ADMIN_PW" | base64 -w0)"
# A 5 s blob grace window: the seeded garbage is collectable 6 s after it was made, and
# (f)'s pushes, which link each blob seconds before their manifest, keep their links.
BERTH_ENV=(BERTH_AUTH_MODE=token "BERTH_ADMIN_PASSWORD=$ADMIN_PW" BERTH_AUTH_CREATE_PROJECT_ON_PUSH=admins BERTH_GC_BLOB_GRACE=5)
gc_idle() { # the GC run the loop left going has ended (so it does not run into the next figure)
  local i
  for ((i = 0; i < 600; i++)); do
    curl -sf -H "Authorization: $BENCH_AUTHORIZATION" "$(url berth)/api/v2.0/system/gc?page_size=5" |
      jq -e 'all(.[]; .job_status != "Running" and .job_status != "Pending")' >/dev/null && return 0
    sleep 0.5
  done
  echo "a GC run was still going 5 minutes after its loop stopped" >&2
  exit 1
}
gc_check() { # out expected-blobs: the run freed exactly the garbage
  [[ $(j .blobs_deleted "$1") == "$2" ]] || { echo "gc freed $(j .blobs_deleted "$1") blobs, expected $2: $1" >&2; exit 1; }
}
for reg in berth pg; do
  sfx=""; [[ $reg == pg ]] && sfx=-pg
  start "$reg"
  log "(j) seeding $((GC_REPOS * GC_MANIFESTS)) manifests, a fifth deleted, into $reg"
  out=$(bench "$reg" seed-garbage --prefix big/r --repos "$GC_REPOS" --manifests "$GC_MANIFESTS")
  record gc-seed$sfx berth "$(j .secs "$out")"
  sleep 6 # past the blob grace window
  # The seeding's own write-back is not the GC's to pay for. (On PostgreSQL the mark took
  # 2–6 s with or without this; run alone, 1.4–1.7 s: see BENCHMARKS.md.)
  settle
  log "(j) one GC run, $reg"
  out=$(bench "$reg" gc)
  gc_check "$out" "$GC_GARBAGE"
  record gc-mark$sfx berth "$(j .mark_ms "$out")"
  record gc-sweep$sfx berth "$(j .sweep_blobs_per_s "$out")"
  record gc-total$sfx berth "$(j .total_ms "$out")"
  log "(j) usage and quota answers, $reg"
  out=$(bench "$reg" api-latency --rounds 500 --path /api/v2.0/projects/big/summary \
    --path "/api/v2.0/quotas?page_size=100" --path "/api/v2.0/projects/big/repositories?page_size=100")
  record usage-summary$sfx berth "$(j '.paths["/api/v2.0/projects/big/summary"].p99_ms' "$out")"
  record usage-quotas$sfx berth "$(j '.paths["/api/v2.0/quotas?page_size=100"].p99_ms' "$out")"
  record usage-repos$sfx berth "$(j '.paths["/api/v2.0/projects/big/repositories?page_size=100"].p99_ms' "$out")"
  if [[ $reg == berth ]]; then
    for ((r = 1; r <= REPEATS; r++)); do
      # A repeat's GC: fresh garbage (GC_MORE repositories, every manifest deleted) over
      # everything seeded so far.
      bench berth seed-garbage --prefix "more$r/r" --repos "$GC_MORE" --manifests 100 --garbage-every 1 >/dev/null
      sleep 6
      log "(j) GC run ($r/$REPEATS)"
      out=$(bench berth gc)
      gc_check "$out" $((GC_MORE * 500))
      record gc-mark berth "$(j .mark_ms "$out")"
      record gc-sweep berth "$(j .sweep_blobs_per_s "$out")"
      # Quota cost: the same small pushes into a project with a limit and into one without,
      # in chunks of 2 repositories ordered quota, none, none, quota, quota, none, … and
      # summed per side. The first pushes after a run that deleted many files pay for it
      # (ext4 without a journal skips recently freed inodes when it allocates new ones),
      # and the effect fades fast: a pair always run in the same order after the GC run
      # above put it on one side (110–112 % in two full runs), and four halves ordered
      # quota, none, none, quota still gave 100–109 %.
      for p in quota free; do
        limit=$([[ $p == quota ]] && echo 1099511627776 || echo -1)
        curl -sf -H "Authorization: $BENCH_AUTHORIZATION" -H 'Content-Type: application/json' \
          -d "{\"project_name\": \"$p$r\", \"storage_limit\": $limit}" "$(url berth)/api/v2.0/projects" >/dev/null
      done
      log "(j) small pushes into a project with a quota and one without ($r/$REPEATS)"
      declare -A PUSH_SECS=([quota]=0 [free]=0)
      for ((c = 0; c < GC_MORE; c++)); do
        case $((c % 4)) in 0 | 3) p=quota ;; *) p=free ;; esac
        out=$(bench berth seed-garbage --prefix "$p$r/c$c-r" --repos 2 --manifests 100 --garbage-every 0)
        PUSH_SECS[$p]=$(calc "${PUSH_SECS[$p]} + $(j .secs "$out")")
      done
      record push-quota berth "${PUSH_SECS[quota]}"
      record push-noquota berth "${PUSH_SECS[free]}"
      # (f) alone and (f) while GC runs back to back, in alternating order over the repeats,
      # each after settle: whichever ran second used to pay for the first one's 3.8 GB of
      # page cache (see settle), and the GC side was always second. Fresh garbage for the GC
      # side to sweep is seeded before the pair.
      bench berth seed-garbage --prefix "during$r/r" --repos "$GC_MORE" --manifests 100 --garbage-every 1 >/dev/null
      sleep 6
      if ((r % 2)); then sides=(alone gc); else sides=(gc alone); fi
      for side in "${sides[@]}"; do
        settle
        if [[ $side == alone ]]; then
          log "(f) in token mode, no GC ($r/$REPEATS)"
          out=$(bench berth images --clients "$IMG_CLIENTS" --count "$IMG_COUNT" --layers 3 --layer-size "$LAYER")
          record images-nogc berth "$(j .images_per_s "$out")"
          record images-p99-nogc berth "$(j .image.p99_ms "$out")"
          continue
        fi
        log "(f) in token mode while GC runs back to back ($r/$REPEATS)"
        "$BB" --url "$(url berth)" gc --for-secs 3600 >"$WORK/gc-loop.jsonl" 2>>"$WORK/gc-loop.err" &
        gc_loop=$!
        out=$(bench berth images --clients "$IMG_CLIENTS" --count "$IMG_COUNT" --layers 3 --layer-size "$LAYER")
        kill "$gc_loop" 2>/dev/null; wait "$gc_loop" 2>/dev/null || true
        record images-gc berth "$(j .images_per_s "$out")"
        record images-p99-gc berth "$(j .image.p99_ms "$out")"
        record gc-runs-during berth "$(wc -l <"$WORK/gc-loop.jsonl")"
        gc_idle
      done
    done
  fi
  stop "$reg"
done
unset BENCH_AUTHORIZATION
BERTH_ENV=()
# registry:2: the same registry, then its offline GC (it must not serve while it collects).
start reg2
log "(j) seeding $((GC_REPOS * GC_MANIFESTS)) manifests, a fifth deleted, into registry:2"
bench reg2 seed-garbage --prefix big/r --repos "$GC_REPOS" --manifests "$GC_MANIFESTS" >/dev/null
stop_pid "${PIDS[reg2]}" && unset "PIDS[reg2]"
log "(j) registry:2 garbage-collect (offline)"
gc_began=$(date +%s%N)
"$REG2" garbage-collect "$(reg2_config "$WORK/data-reg2")" >"$WORK/reg2-gc.log" 2>&1
record gc-total reg2 $((($(date +%s%N) - gc_began) / 1000000))
stop reg2
fi

# --- (k) proxy cache: cold, warm and 50-client pulls through berth of a registry:2 upstream ---
if only k; then
# registry:2 holds the blobs; berth (token mode) proxies it in project hub. Cold: the first
# pull through berth (fetched, streamed, cached in one pass); warm: the same again, from the
# cache; direct: from registry:2 itself. 50 clients: a fresh blob of $SHARED_BLOB pulled by
# 50 at once through berth, against one client's cold pull of a blob of the same size.
BERTH_ENV=(BERTH_AUTH_MODE=token "BERTH_ADMIN_PASSWORD=$ADMIN_PW")
export BENCH_AUTHORIZATION="Basic $(printf 'admin:%s' "$ADMIN_PW" | base64 -w0)"
proxy_setup() { # [upstream project]: berth's registry entry for registry:2 (or for another
  local upstream=${1:-reg2} project=${2:-hub}        # address of it) and its proxy project
  local api=$(url berth)/api/v2.0 id
  id=$(curl -sf -D - -o /dev/null -H "Authorization: $BENCH_AUTHORIZATION" -H 'Content-Type: application/json' \
    -d "{\"name\": \"$upstream\", \"type\": \"docker-registry\", \"url\": \"$(url "$upstream")\"}" "$api/registries" |
    tr -d '\r' | awk 'tolower($1) == "location:" { n = split($2, p, "/"); print p[n] }')
  curl -sf -H "Authorization: $BENCH_AUTHORIZATION" -H 'Content-Type: application/json' \
    -d "{\"project_name\": \"$project\", \"registry_id\": $id, \"metadata\": {\"public\": \"true\"}}" "$api/projects" >/dev/null
}
fifty_pulls() { # repo digest: 50 clients pull it through berth at once; FIFTY_SECS: until all are done
  local began=$(date +%s%N) pids=() i pid
  for i in $(seq 50); do
    "$BB" --url "$(url berth)" pull-blob --repo "$1" --digest "$2" >"$WORK/shared.$i" &
    pids+=($!)
  done
  for pid in "${pids[@]}"; do wait "$pid" || { echo "a shared pull failed" >&2; exit 1; }; done
  FIFTY_SECS=$(calc "($(date +%s%N) - $began) / 1000000000")
}
for ((r = 1; r <= REPEATS; r++)); do
  start reg2
  start berth
  proxy_setup
  out=$(BENCH_AUTHORIZATION="" bench reg2 push-blob --repo up/big --size "$BLOB")
  digest=$(j .digest "$out")
  log "(k) pull $BLOB directly from registry:2 ($r/$REPEATS)"
  out=$(BENCH_AUTHORIZATION="" bench reg2 pull-blob --repo up/big --digest "$digest")
  record proxy-direct berth "$(j .secs "$out")"
  log "(k) cold pull $BLOB through berth's proxy cache ($r/$REPEATS)"
  out=$(bench berth pull-blob --repo hub/up/big --digest "$digest")
  [[ $(j .bytes "$out") == "$BLOB_BYTES" ]] || { echo "short proxied pull: $out" >&2; exit 1; }
  record proxy-cold berth "$(j .secs "$out")"
  for _ in $(seq 300); do # the cache fill commits right after the last byte
    [[ $(curl -s -o /dev/null -w '%{http_code}' -I -H "Authorization: $BENCH_AUTHORIZATION" \
      "$(url berth)/v2/hub/up/big/blobs/$digest") == 200 ]] && break
    sleep 0.1
  done
  log "(k) warm pull $BLOB through berth's proxy cache ($r/$REPEATS)"
  out=$(bench berth pull-blob --repo hub/up/big --digest "$digest")
  record proxy-warm berth "$(j .secs "$out")"
  # One client's cold pull of a $SHARED_BLOB blob, then 50 clients' of another.
  out=$(BENCH_AUTHORIZATION="" bench reg2 push-blob --repo up/one --size "$SHARED_BLOB")
  out=$(bench berth pull-blob --repo hub/up/one --digest "$(j .digest "$out")")
  record proxy-one berth "$(j .secs "$out")"
  out=$(BENCH_AUTHORIZATION="" bench reg2 push-blob --repo up/shared --size "$SHARED_BLOB")
  digest=$(j .digest "$out")
  log "(k) 50 clients pull one cold $SHARED_BLOB blob through berth ($r/$REPEATS)"
  fifty_pulls hub/up/shared "$digest"
  record proxy-fifty berth "$FIFTY_SECS"
  # The same over a wide-area link: the upstream's bytes at $WAN_MIB MiB/s, for the direct
  # pull and for berth's fetches alike (project far, upstream "wan": the throttle).
  "$BB" throttle --listen "127.0.0.1:$PORT_wan" --upstream "127.0.0.1:$PORT_reg2" --mib-per-sec "$WAN_MIB" >/dev/null &
  throttle=$!
  BENCH_AUTHORIZATION="" bench wan ping --timeout-secs 10
  proxy_setup wan far
  out=$(BENCH_AUTHORIZATION="" bench reg2 push-blob --repo up/wan --size "$WAN_BLOB")
  digest=$(j .digest "$out")
  log "(k) pull $WAN_BLOB directly over the $WAN_MIB MiB/s link ($r/$REPEATS)"
  out=$(BENCH_AUTHORIZATION="" bench wan pull-blob --repo up/wan --digest "$digest")
  record proxy-wan-direct berth "$(j .secs "$out")"
  log "(k) cold pull $WAN_BLOB through berth over the link ($r/$REPEATS)"
  out=$(bench berth pull-blob --repo far/up/wan --digest "$digest")
  record proxy-wan-cold berth "$(j .secs "$out")"
  out=$(BENCH_AUTHORIZATION="" bench reg2 push-blob --repo up/wan-one --size "$SHARED_BLOB")
  out=$(bench berth pull-blob --repo far/up/wan-one --digest "$(j .digest "$out")")
  record proxy-wan-one berth "$(j .secs "$out")"
  out=$(BENCH_AUTHORIZATION="" bench reg2 push-blob --repo up/wan-shared --size "$SHARED_BLOB")
  log "(k) 50 clients pull one cold $SHARED_BLOB blob through berth over the link ($r/$REPEATS)"
  fifty_pulls far/up/wan-shared "$(j .digest "$out")"
  record proxy-wan-fifty berth "$FIFTY_SECS"
  # The same 50 once it is cached: what delivering 50 copies costs this machine by itself.
  fifty_pulls far/up/wan-shared "$(j .digest "$out")"
  record proxy-wan-fifty-warm berth "$FIFTY_SECS"
  stop_pid "$throttle"
  stop berth
  stop reg2
done

fi

# --- (l) replication of 100 images (shared base layers) to a registry:2 ---------------------
if only l; then
# Its own set-up, so that BENCH_ONLY can run it alone: berth in token mode, clients as admin.
BERTH_ENV=(BERTH_AUTH_MODE=token "BERTH_ADMIN_PASSWORD=$ADMIN_PW")
export BENCH_AUTHORIZATION=$ADMIN_AUTH
# berth (token mode) holds REP_REPOS × REP_TAGS images on REP_BASE shared base layers, each
# with a layer of its own. berth: a push policy to an empty registry:2, from the execution's
# start until it is no longer InProgress. skopeo sync: the same repositories (a YAML source,
# every tag) into another empty registry:2, with a fresh blob-info cache.
for ((r = 1; r <= REPEATS; r++)); do
  start berth
  api=$(url berth)/api/v2.0
  curl -sf -H "Authorization: $BENCH_AUTHORIZATION" -H 'Content-Type: application/json' \
    -d '{"project_name": "rep"}' "$api/projects" >/dev/null
  bench berth shared-images --prefix rep/r "${REP[@]}" >/dev/null
  start reg2
  curl -sf -H "Authorization: $BENCH_AUTHORIZATION" -H 'Content-Type: application/json' \
    -d "{\"name\": \"r2\", \"type\": \"docker-registry\", \"url\": \"$(url reg2)\"}" "$api/registries" >/dev/null
  curl -sf -H "Authorization: $BENCH_AUTHORIZATION" -H 'Content-Type: application/json' \
    -d '{"name": "to-r2", "dest_registry": {"id": 1}, "filters": [{"type": "name", "value": "rep/**"}]}' \
    "$api/replication/policies" >/dev/null
  log "(l) berth replicates $((REP_REPOS * ${REP[3]})) images to registry:2 ($r/$REPEATS)"
  began=$(date +%s%N)
  execution=$(curl -sf -D - -o /dev/null -H "Authorization: $BENCH_AUTHORIZATION" -H 'Content-Type: application/json' \
    -d '{"policy_id": 1}' "$api/replication/executions" | tr -d '\r' | awk 'tolower($1) == "location:" { print $2 }')
  while :; do
    status=$(curl -sf -H "Authorization: $BENCH_AUTHORIZATION" "$(url berth)$execution" | jq -r .status)
    [[ $status != InProgress ]] && break
    sleep 0.02
  done
  [[ $status == Succeed ]] || { echo "replication ended $status" >&2; exit 1; }
  record replicate berth "$(calc "($(date +%s%N) - $began) / 1000000000")"
  stop reg2
  start reg2
  {
    echo "127.0.0.1:$PORT_berth:"
    echo "  tls-verify: false"
    echo "  credentials: {username: admin, password: $ADMIN_PW}"
    echo "  images:"
    for ((i = 0; i < REP_REPOS; i++)); do echo "    rep/r$i: []"; done
  } >"$WORK/sync.yml"
  rm -rf "$WORK/skopeo-home" && mkdir -p "$WORK/skopeo-home"
  log "(l) skopeo sync of the same images to registry:2 ($r/$REPEATS)"
  began=$(date +%s%N)
  HOME=$WORK/skopeo-home skopeo sync --src yaml --dest docker --dest-tls-verify=false \
    "$WORK/sync.yml" "127.0.0.1:$PORT_reg2/rep" >>"$WORK/skopeo.log" 2>&1
  record replicate reg2 "$(calc "($(date +%s%N) - $began) / 1000000000")"
  stop reg2
  stop berth
done

fi

# --- (m) 16 clients push then pull 32 fresh images; (n) the same images into new repositories --
if only m; then
# Its own set-up, so that BENCH_ONLY can run it alone: berth in token mode, clients as admin.
BERTH_ENV=(BERTH_AUTH_MODE=token "BERTH_ADMIN_PASSWORD=$ADMIN_PW")
export BENCH_AUTHORIZATION=$ADMIN_AUTH
# berth in token mode with its defaults (audit log, usage accounting, cross-repository links);
# registry:2 without auth. (m): 16 `berth-bench images` clients, 32 images of 3 × 4 MiB (HEAD,
# POST, PATCH, PUT per blob, then the manifest; then a pull of each). (n): the same images
# (same seed) pushed again into a new project's repositories: berth links the layers its
# HEADs find elsewhere; registry:2 answers 404 and takes every upload again.
# Like (f): a run of berth lasts half a second, so five repeats, the registries taking turns
# at going first, each run on a settled page cache (see settle). Without settle the figure
# depended on what the run before it had freed: at 02:00 on 2026-12-02, 3.05–3.18× and (n)
# 8.69–9.26× without, 3.35–3.43× and 10.08–10.82× with, runs taking turns.
M_REPEATS=$((QUICK ? 1 : 5))
for ((r = 1; r <= M_REPEATS; r++)); do
  order=("${REGS[@]:$(((r - 1) % ${#REGS[@]}))}" "${REGS[@]:0:$(((r - 1) % ${#REGS[@]}))}")
  for reg in "${order[@]}"; do
    start "$reg"
    settle
    seed=$((1000000 * r + RANDOM))
    if [[ $reg == berth ]]; then
      for project in m n; do
        curl -sf -H "Authorization: $BENCH_AUTHORIZATION" -H 'Content-Type: application/json' \
          -d "{\"project_name\": \"$project-$((seed % 1000000))\"}" "$(url berth)/api/v2.0/projects" >/dev/null
      done
    fi
    auth=$([[ $reg == berth ]] && echo "$BENCH_AUTHORIZATION" || echo "")
    log "(m) 16 clients, 32 fresh images of 3 x $M_LAYER, $reg ($r/$M_REPEATS)"
    out=$(BENCH_AUTHORIZATION=$auth bench "$reg" images --clients 16 --count 32 --layers 3 --layer-size "$M_LAYER" \
      --repo-prefix m --seed "$seed")
    record fresh-images "$reg" "$(j .secs "$out")"
    record fresh-images-p99 "$reg" "$(j .image.p99_ms "$out")"
    record rss-fresh "$reg" "$(hwm_mib "$reg")"
    log "(n) the same 32 images into new repositories, $reg ($r/$M_REPEATS)"
    out=$(BENCH_AUTHORIZATION=$auth bench "$reg" images --clients 16 --count 32 --layers 3 --layer-size "$M_LAYER" \
      --repo-prefix n --seed "$seed")
    record reused-images "$reg" "$(j .secs "$out")"
    stop "$reg"
  done
done
unset BENCH_AUTHORIZATION
BERTH_ENV=()


fi

LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)

# --- the table -----------------------------------------------------------------------------
fmt() { # 3 significant digits, no exponents
  [[ $1 == n/a ]] && { echo n/a; return; }
  awk -v v="$1" 'BEGIN { a = v < 0 ? -v : v
    if (a >= 100) printf "%.0f", v; else if (a >= 10) printf "%.1f", v
    else if (a >= 1) printf "%.2f", v; else printf "%.3g", v }'
}
ratio() { # higher|lower b r -> how many times better berth is
  [[ $2 == n/a || $3 == n/a ]] && { echo n/a; return; }
  if [[ $1 == higher ]]; then calc "$2 / $3"; else calc "$3 / $2"; fi
}
yes_no() { [[ $(calc "$1") == 1 ]] && echo yes || echo "**no**"; }
ROWS=()
row() { # label kind figure goal-text met-expression(uses B, R, X)
  local label=$1 kind=$2 fig=$3 goal=$4 expr=$5 B R X met=""
  B=$(median "$fig" berth) R=$(median "$fig" reg2)
  X=$(ratio "$kind" "$B" "$R")
  if [[ -n $expr && $B != n/a && $R != n/a ]]; then
    met=$(yes_no "$(eval "echo \"$expr\"")")
  fi
  [[ $X != n/a ]] && X="$(printf '%.2f' "$X")×"
  ROWS+=("| $label | $(fmt "$B") | $(fmt "$R") | $X | $goal | $met |")
}
LIMIT=$(calc "if ($SHA_GIBS < $DD_GIBS) $SHA_GIBS else $DD_GIBS")
SIXTY=$(printf '%.3f' "$(calc "0.6 * $LIMIT")")
row "(a) GET manifest by tag, req/s (64 conn)" higher manifest "≥ 5×" '$X >= 5'
row "(a) GET manifest by tag, p99 ms" lower manifest-p99 "≥ 5×" '$X >= 5'
row "(b) HEAD blob, req/s (64 conn)" higher head "≥ 5×" '$X >= 5'
row "(b) HEAD blob, p99 ms" lower head-p99 "≥ 5×" '$X >= 5'
# Wave 2 on (token mode: a bearer token, audit, usage) against auth off, same binary.
A_ON=$(median manifest berth)
A_OFF=$(median manifest-auth-off berth)
B_ON=$(median head berth)
B_OFF=$(median head-auth-off berth)
A_BEARER=$(median manifest-bearer berth)
A_BASIC=$(median manifest-basic berth)
A2_OFF=$(median manifest-a2-off berth)
share() { [[ $1 == n/a || $2 == n/a ]] && { echo n/a; return; }; printf '%.0f%%' "$(calc "100 * $1 / $2")"; }
met_share() { [[ $1 == n/a || $2 == n/a ]] && { echo; return; }; yes_no "$1 >= $3 * $2"; }
ROWS+=("| (a) GET manifest, berth with auth off, req/s | $(fmt "$A_OFF") | | token mode: $(share "$A_ON" "$A_OFF") of auth off | ≥ 85% of auth off | $(met_share "$A_ON" "$A_OFF" 0.85) |")
ROWS+=("| (b) HEAD blob, berth with auth off, req/s | $(fmt "$B_OFF") | | token mode: $(share "$B_ON" "$B_OFF") of auth off | ≥ 85% of auth off | $(met_share "$B_ON" "$B_OFF" 0.85) |")
ROWS+=("| (a2) GET manifest, bearer token (token mode), req/s | $(fmt "$A_BEARER") | | $(share "$A_BEARER" "$A2_OFF") of auth off ($(fmt "$A2_OFF"), same repeats) | ≥ 85% of auth off | $(met_share "$A_BEARER" "$A2_OFF" 0.85) |")
row "(a2) GET manifest, bearer (berth) vs Basic (registry:2 htpasswd), req/s" higher manifest-basic "≥ 20×" '$X >= 20'
ROWS[-1]=$(sed "s#| $(fmt "$(median manifest-basic berth)") |#| $(fmt "$A_BEARER") |#" <<<"${ROWS[-1]}")
ROWS+=("| (a2) GET manifest, Basic straight to /v2/ (token mode), req/s | $(fmt "$A_BASIC") | $(fmt "$(median manifest-basic reg2)") | | ≥ 80% of anonymous ($(share "$A_BASIC" "$A2_OFF")) | $(met_share "$A_BASIC" "$A2_OFF" 0.8) |")
ROWS+=("| (a2) token issue, repeat user, keep-alive, tokens/s | $(fmt "$(median token-issue berth)") | | | ≥ 2000/s | $(met_share "$(median token-issue berth)" 2000 1) |")
ROWS+=("| (h) RSS idle in token mode, MiB | $(fmt "$(median idle-token berth)") | | | ≤ 20 MiB | $(met_share 20 "$(median idle-token berth)" 1) |")
ROWS+=("| (h) of which private (RssAnon; the rest is the binary's code, shared), MiB | $(fmt "$(median idle-token-anon berth)") | | | | |")
row "(c) pull $BLOB blob, GiB/s" higher pull "≥ 2 GiB/s and ≥ 1×" '$B >= 2 && $X >= 1'
row "(c) server CPU per GiB pulled, ms" lower pull-cpu "" ""
row "(d) monolithic push $BLOB, GiB/s" higher push "≥ 3× and ≥ $SIXTY GiB/s" "\$X >= 3 && \$B >= $SIXTY"
row "(e) chunked push $BLOB, $CHUNK chunks, GiB/s" higher chunked "" ""
row "(f) $IMG_CLIENTS clients push+pull 3×$LAYER images, images/s" higher images "≥ 2.5×" '$X >= 2.5'
row "(f) p99 per image (push + pull), ms" lower images-p99 "≥ 1× (no worse)" '$X >= 1'
A_PG=$(median manifest-pg berth)
ROWS+=("| (a) GET manifest, PostgreSQL + S3 (one node), req/s | $(fmt "$A_PG") | | $(share "$A_PG" "$A_ON") of SQLite | ≥ 50% of SQLite | $(met_share "$A_PG" "$A_ON" 0.5) |")
ROWS+=("| (b) HEAD blob, PostgreSQL + S3 (one node), req/s | $(fmt "$(median head-pg berth)") | | $(share "$(median head-pg berth)" "$(median head berth)") of SQLite | | |")
ROWS+=("| (c) pull $BLOB, PostgreSQL + S3 (one node, 307 to S3), GiB/s | $(fmt "$(median pull-pg berth)") | | $(share "$(median pull-pg berth)" "$(median pull berth)") of filesystem | | |")
ROWS+=("| (d) monolithic push $BLOB, PostgreSQL + S3 (one node), GiB/s | $(fmt "$(median push-pg berth)") | | $(share "$(median push-pg berth)" "$(median push berth)") of filesystem | | |")
ROWS+=("| (e) chunked push $BLOB, PostgreSQL + S3 (one node), GiB/s | $(fmt "$(median chunked-pg berth)") | | $(share "$(median chunked-pg berth)" "$(median chunked berth)") of filesystem | | |")
for reg in pg cl1 cl2; do
  case $reg in pg) what="one node" ;; cl1) what="nginx → one node" ;; cl2) what="nginx → two nodes" ;; esac
  ROWS+=("| (f) images/s, PostgreSQL + S3, $what (p99 $(fmt "$(median "images-p99-$reg" berth)") ms) | $(fmt "$(median "images-$reg" berth)") | | $(share "$(median "images-$reg" berth)" "$(median images berth)") of SQLite + filesystem | | |")
done
F_ON=$(median images berth)
F_OFF=$(median images-auth-off berth)
ROWS+=("| (f) images/s, berth with auth off | $(fmt "$F_OFF") | | token mode: $(share "$F_ON" "$F_OFF") of auth off | | |")
row "(g) _catalog page (n=$CATALOG_N, $REPOS repos), ms" lower catalog "≥ 10× and < 5 ms" '$X >= 10 && $B < 5'
row "(g) tag list page ($TAGS tags, one page), ms" lower tags "≥ 10× and < 5 ms" '$X >= 10 && $B < 5'
row "(g) tag list page, slowest of $TAG_ROUNDS walks (first: cold caches), ms" lower tags-max "" ""
row "(g) tag list page asking n=$CATALOG_N (registry:2 ignores n), ms" lower tags-n "" ""
ROWS+=("| (g) Harbor artifact list page (/api/v2.0, page_size=100, $TAGS artifacts), ms | $(fmt "$(median artifacts berth)") | | | < 10 ms | $(met_share 10 "$(median artifacts berth)" 1) |")
ROWS+=("| (g) Harbor artifact list page, slowest of $LIST_ROUNDS walks, ms | $(fmt "$(median artifacts-max berth)") | | | | |")
GC_BLOBS=$((GC_REPOS * GC_MANIFESTS * 5))
for sfx in "" -pg; do
  case $sfx in "") what="SQLite + filesystem" sweep_goal=5000 ;; *) what="PostgreSQL + S3" sweep_goal=1000 ;; esac
  ROWS+=("| (j) GC mark, $what ($((GC_REPOS * GC_MANIFESTS)) manifests, $GC_BLOBS blobs), ms | $(fmt "$(median gc-mark$sfx berth)") | | | < 2000 ms | $(met_share 2000 "$(median gc-mark$sfx berth)" 1) |")
  ROWS+=("| (j) GC sweep, $what (20% garbage), blobs/s | $(fmt "$(median gc-sweep$sfx berth)") | | | ≥ $sweep_goal/s | $(met_share "$(median gc-sweep$sfx berth)" $sweep_goal 1) |")
  for answer in summary quotas repos; do
    case $answer in summary) path="/projects/big/summary" ;; quotas) path="/quotas?page_size=100" ;; repos) path="/projects/big/repositories?page_size=100" ;; esac
    ROWS+=("| (j) usage answer p99, $what: GET /api/v2.0$path, ms | $(fmt "$(median usage-$answer$sfx berth)") | | | < 5 ms | $(met_share 5 "$(median usage-$answer$sfx berth)" 1) |")
  done
done
row "(j) first GC run: berth online (SQLite + fs) vs registry:2 garbage-collect offline, ms" lower gc-total "" ""
F_NOGC=$(median images-nogc berth) F_GC=$(median images-gc berth)
P_NOGC=$(median images-p99-nogc berth) P_GC=$(median images-p99-gc berth)
ROWS+=("| (j) (f) images/s in token mode while GC runs back to back (a run pauses 9× each step while clients are served: $(fmt "$(median gc-runs-during berth)") finished within (f)) | $(fmt "$F_GC") | | $(share "$F_GC" "$F_NOGC") of no GC ($(fmt "$F_NOGC")) | ≥ 90% of no GC | $(met_share "$F_GC" "$F_NOGC" 0.9) |")
ROWS+=("| (j) (f) p99 per image while GC runs, ms | $(fmt "$P_GC") | | $(share "$P_GC" "$P_NOGC") of no GC ($(fmt "$P_NOGC") ms) | ≤ 150% of no GC | $(met_share "$P_NOGC" "$P_GC" 0.6667) |")
Q_ON=$(median push-quota berth) Q_OFF=$(median push-noquota berth)
ROWS+=("| (j) small pushes into a project with a quota, s ($((GC_MORE * 100)) manifests, $((GC_MORE * 500)) blobs) | $(fmt "$Q_ON") | | $(share "$Q_ON" "$Q_OFF") of no quota ($(fmt "$Q_OFF") s) | ≤ 105% of no quota | $(met_share "$Q_OFF" "$Q_ON" 0.9524) |")
P_DIRECT=$(median proxy-direct berth) P_COLD=$(median proxy-cold berth) P_WARM=$(median proxy-warm berth)
ROWS+=("| (k) cold pull of $BLOB through the proxy cache (registry:2 upstream), s | $(fmt "$P_COLD") | $(fmt "$P_DIRECT") (direct) | $(share "$P_COLD" "$P_DIRECT") of direct | ≤ 115% of direct | $(met_share "$(calc "1.15 * $P_DIRECT")" "$P_COLD" 1) |")
ROWS+=("| (k) warm pull of $BLOB through the proxy cache, s | $(fmt "$P_WARM") | | $(share "$P_WARM" "$P_DIRECT") of direct | | |")
P_ONE=$(median proxy-one berth) P_FIFTY=$(median proxy-fifty berth)
ROWS+=("| (k) 50 clients pulling one cold $SHARED_BLOB blob through the proxy, all done, s | $(fmt "$P_FIFTY") | | $(share "$P_FIFTY" "$P_ONE") of one client's cold pull ($(fmt "$P_ONE") s) | ≤ 130% | $(met_share "$(calc "1.3 * $P_ONE")" "$P_FIFTY" 1) |")
W_DIRECT=$(median proxy-wan-direct berth) W_COLD=$(median proxy-wan-cold berth)
W_RATE=$(calc "${WAN_BLOB%MiB} / $W_DIRECT")
ROWS+=("| (k) over a $WAN_MIB MiB/s upstream link (direct pulls got $(fmt "$W_RATE") MiB/s): cold pull of $WAN_BLOB through the proxy, s | $(fmt "$W_COLD") | $(fmt "$W_DIRECT") (direct, same link) | $(share "$W_COLD" "$W_DIRECT") of direct | ≤ 115% of direct | $(met_share "$(calc "1.15 * $W_DIRECT")" "$W_COLD" 1) |")
W_ONE=$(median proxy-wan-one berth) W_FIFTY=$(median proxy-wan-fifty berth)
ROWS+=("| (k) over the link: 50 clients pulling one cold $SHARED_BLOB blob, all done, s | $(fmt "$W_FIFTY") | | $(share "$W_FIFTY" "$W_ONE") of one client's cold pull ($(fmt "$W_ONE") s) | ≤ 130% | $(met_share "$(calc "1.3 * $W_ONE")" "$W_FIFTY" 1) |")
W_WARM=$(median proxy-wan-fifty-warm berth)
ROWS+=("| (k) the same 50 clients once the blob is cached (the machine's cost of 50 copies), s | $(fmt "$W_WARM") | | cold 50 at $(share "$W_FIFTY" "$W_WARM") of it | | |")
row "(l) replicate $((REP_REPOS * ${REP[3]})) images (shared base layers) to an empty registry:2, s: berth's push policy vs skopeo sync" lower replicate "≥ 2× faster than skopeo sync" '$X >= 2'
row "(m) 16 clients push + pull 32 fresh images of 3 × $M_LAYER (berth: token mode, audit, usage), s" lower fresh-images "≥ 3×" '$X >= 3'
row "(m) p99 per image, ms" lower fresh-images-p99 "no worse than registry:2" '$X >= 1'
row "(m) peak RSS, MiB" lower rss-fresh "≤ 150 MiB" '$B <= 150'
row "(n) the same 32 images pushed + pulled into new repositories (base-layer reuse), s" lower reused-images "≥ 10×" '$X >= 10'
row "(h) RSS idle, MiB" lower idle "≤ 20 MiB" '$B <= 20'
row "(h) RSS idle, private (RssAnon), MiB" lower idle-anon "" ""
row "(h) peak RSS during (d), MiB" lower rss-push "≤ 150 MiB" '$B <= 150'
row "(h) peak RSS during (f), MiB" lower rss-images "≤ 150 MiB" '$B <= 150'
row "(i) cold start to first 200 on /v2/ (empty data dir), ms" lower cold "≤ 100 ms" '$B <= 100'
row "(i) restart to first 200 on /v2/ (existing data dir), ms" lower restart "≤ 100 ms" '$B <= 100'
row "seeding: manifest PUTs into new repos, repos/s (64 conn)" higher seed-repos "" ""
row "seeding: tag PUTs into one repo, tags/s (64 conn)" higher seed-tags "" ""
ROWS+=("| seeding: manifest PUTs into one repo (artifacts), per s (64 conn) | $(fmt "$(median seed-artifacts berth)") | | | | |")

# Before wave 2 (pre, auth off: it had no token mode) against now with wave 2 on.
BA_ROWS=()
# paired_ratio kind fig before: for figures taken in turns, the median of each turn's own
# ratio. The host takes a varying share of the CPU (steal) from one half-minute to the next,
# so each side's runs fall into quiet and stolen ones and a ratio of medians can compare a
# quiet median with a stolen one; the two runs of one turn meet the same host.
paired_ratio() {
  local before=$RES/$2.$3 now=$RES/$2.berth
  [[ -s $before && -s $now && $(wc -l <"$before") == $(wc -l <"$now") ]] || { ratio "$1" n/a n/a; return; }
  paste "$now" "$before" | awk -v kind="$1" '{ print (kind == "higher") ? $1 / $2 : $2 / $1 }' | median_of_lines
}
before_after() { # label kind fig [read [before]]: a read path must keep ≥ 95% of its before figure
  local label=$1 kind=$2 fig=$3 read=${4:-} P N S goal="" met=""
  P=$(median "$fig" "${5:-pre}") N=$(median "$fig" berth)
  if [[ $fig == *pair* ]]; then S=$(paired_ratio "$kind" "$fig" "${5:-pre}"); else S=$(ratio "$kind" "$N" "$P"); fi
  [[ -n $read ]] && goal="≥ 95% (a read path)"
  if [[ $S != n/a ]]; then
    [[ -n $read ]] && met=$(yes_no "$S >= 0.95")
    S=$(printf '%.0f%%' "$(calc "100 * $S")")
  fi
  BA_ROWS+=("| $label | $(fmt "$P") | $(fmt "$N") | $S | $goal | $met |")
}
before_after "(a) GET manifest by tag, req/s (2 s runs taking turns with before)" higher manifest-pair read
before_after "(a) GET manifest by tag, p99 ms (taking turns)" lower manifest-pair-p99 read
before_after "(b) HEAD blob, req/s (taking turns)" higher head-pair read
before_after "(b) HEAD blob, p99 ms (taking turns)" lower head-pair-p99 read
before_after "(a) GET manifest, req/s, before sent the same bearer header (taking turns)" higher manifest-pair read pre-bytes
before_after "(a) GET manifest, p99 ms, before sent the same bearer header" lower manifest-pair-p99 read pre-bytes
before_after "(b) HEAD blob, req/s, before sent the same bearer header" higher head-pair read pre-bytes
before_after "(b) HEAD blob, p99 ms, before sent the same bearer header" lower head-pair-p99 read pre-bytes
before_after "(a) GET manifest by tag, req/s (10 s runs, one registry after another)" higher manifest
before_after "(a) GET manifest by tag, p99 ms (10 s runs)" lower manifest-p99
before_after "(b) HEAD blob, req/s (10 s runs)" higher head
before_after "(b) HEAD blob, p99 ms (10 s runs)" lower head-p99
before_after "(c) pull $BLOB, GiB/s" higher pull read
before_after "(c) server CPU per GiB pulled, ms (98 % in the kernel: see BENCHMARKS.md)" lower pull-cpu
before_after "(d) monolithic push $BLOB, GiB/s" higher push
before_after "(e) chunked push $BLOB, GiB/s" higher chunked
before_after "(f) images/s" higher images
before_after "(f) p99 per image, ms" lower images-p99
before_after "(g) _catalog page, ms" lower catalog read
before_after "(g) tag list page, ms (walks alternating with before)" lower tags-pair read
before_after "(g) tag list page asking n=$CATALOG_N, ms (walks alternating with before)" lower tags-n-pair read
before_after "(g) tag list page, ms (each registry's walks on their own)" lower tags
before_after "(g) tag list page asking n=$CATALOG_N, ms (each registry's walks on their own)" lower tags-n
before_after "(h) RSS idle, MiB" lower idle
before_after "(h) RSS idle, private (RssAnon), MiB" lower idle-anon
before_after "(h) peak RSS during (d), MiB" lower rss-push
before_after "(h) peak RSS during (f), MiB" lower rss-images
before_after "(i) cold start, ms" lower cold
before_after "(i) restart, ms" lower restart
before_after "seeding: manifest PUTs into new repos, repos/s" higher seed-repos
before_after "seeding: tag PUTs into one repo, tags/s" higher seed-tags

{
  echo
  echo "## berth vs registry:2 — $(date -u '+%Y-%m-%d %H:%M UTC')$( ((QUICK)) && echo ' (quick mode: tiny sizes, not comparable)')"
  echo
  echo "- machine: $(nproc) cores, $MODEL, $MEM RAM, Linux $(uname -r); data disk $DISK ($FS)"
  echo "- berth $BERTH_REV, $("$REG2" --version 2>/dev/null | awk '{ print $2, $3 }'); $(wrk -v 2>&1 | head -1 | awk '{ print $1, $2 }'); $("$OHA" --version 2>/dev/null)"
  echo "- limits: SHA-256 one core (openssl, 16 KiB blocks) $SHA_GIBS GiB/s; disk write (dd 1 GiB, fdatasync) $DD_GIBS GiB/s; 60% of the lower: $SIXTY GiB/s"
  echo "- medians of $REPEATS runs, berth and registry:2 alternating; load average $LOAD_START at start, $LOAD_END at end"
  echo "- berth in (a)–(i): wave 2 on — token mode (wrk and oha with a bearer token, berth-bench with a project developer's Basic credentials), audit log, usage accounting, a 1 TiB storage quota on every project pushed to; PostgreSQL + S3 likewise. \"auth off\": the same binary without auth (audit and usage on)"
  echo "- × = how many times better berth is (throughput berth ÷ registry:2; times and RSS registry:2 ÷ berth)"
  echo "- (g): _catalog walked with n=$CATALOG_N (${CATALOG_PAGES:-?} pages); tags/list asked without n: one page of all $TAGS tags on both (Distribution 2.8 ignores n there)"
  echo
  echo "| figure | berth | registry:2 | × | goal | met? |"
  echo "|---|---|---|---|---|---|"
  printf '%s\n' "${ROWS[@]}"
  if [[ -n $PRE ]]; then
    echo
    echo "### Before wave 2 ($BEFORE_REV, auth off) and now with wave 2 on ($BERTH_REV: token mode, audit, usage, quotas)"
    echo
    echo "Rows taken in turns (\"taking turns\", \"alternating\"): before and now are each side's median; the ratio is the median of every turn's own ratio."
    echo
    echo "| figure | before | now | now ÷ before (higher is better) | goal | met? |"
    echo "|---|---|---|---|---|---|"
    printf '%s\n' "${BA_ROWS[@]}"
  fi
} | tee "$RES/table.md"
if [[ ${BENCH_KEEP:-0} == 1 ]]; then
  cp "$RES/table.md" "$WORK/table.md"
fi
exit 0
