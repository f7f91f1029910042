#!/usr/bin/env bash
# CPU per cached request: the server's user + system time over the requests it answered, for
# HEAD of a 4 KiB blob and GET of a manifest by tag (oha, 64 connections, 5 s each), with
# berth before wave 2 (pre), berth with auth off (off) and in token mode with the audit log
# (tok), all running at once and measured in alternating rounds; medians of ROUNDS. Wall-clock
# req/s on this shared VM varies ±15 % from minute to minute; CPU per request much less.
#
#   bench/cpu.sh                       (needs target/release/{berth,berth-bench} and oha;
#   ROUNDS=7 NAMES="pre tok" bench/cpu.sh   bench/run.sh builds target/bench-before/<rev>)
# PIN=1 runs every server on core 0 and oha on core 1: what is left is per-core work, without
# the cost of cache lines that bounce between cores.
set -u
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-5} NAMES=${NAMES:-pre off tok} PORT=${PORT:-25600}
BERTH=$PWD/target/release/berth BB=$PWD/target/release/berth-bench
PRE=$PWD/target/bench-before/${BENCH_BEFORE:-f590c9d}/berth
OHA=$(command -v oha || echo "$HOME/.cargo/bin/oha")
SERVER_PIN=() CLIENT_PIN=()
[[ ${PIN:-0} == 1 ]] && SERVER_PIN=(taskset -c 0) CLIENT_PIN=(taskset -c 1)
ADMIN="Basic $(printf 'admin:Bench-Admin-1234' | base64 -w0)"
ACCEPT='Accept: application/vnd.oci.image.manifest.v1+json'
WORK=$(mktemp -d /var/tmp/berth-cpu.XXXXXX)
declare -A PID=() URL=() AUTH=() LAYER=()
STARTED=0
trap 'kill "${PID[@]}" 2>/dev/null; wait 2>/dev/null; rm -rf "$WORK"' EXIT

start() { # name binary env...
  local name=$1 bin=$2 port=$((PORT + STARTED)); shift 2
  STARTED=$((STARTED + 1))
  mkdir -p "$WORK/$name"
  env "$@" BERTH_ADDR=127.0.0.1:$port BERTH_DATA_DIR="$WORK/$name" BERTH_LOG=error \
    "${SERVER_PIN[@]}" "$bin" serve >"$WORK/$name.log" 2>&1 &
  PID[$name]=$! URL[$name]=http://127.0.0.1:$port
  for _ in $(seq 50); do curl -sf -o /dev/null "${URL[$name]}/healthz" && break; sleep 0.2; done
  curl -sf -H "Authorization: $ADMIN" -H 'Content-Type: application/json' \
    -d '{"project_name":"bench"}' "${URL[$name]}/api/v2.0/projects" >/dev/null
  LAYER[$name]=$(BENCH_AUTHORIZATION=$ADMIN "$BB" --url "${URL[$name]}" push-image --repo bench/small \
    --tag latest --layer-size 4KiB --seed 42 | jq -r '.layer_digests[0]')
  AUTH[$name]=""
  if [[ $name == tok ]]; then
    AUTH[$name]="Authorization: Bearer $(curl -s -H "Authorization: $ADMIN" \
      "${URL[$name]}/service/token?service=berth&scope=repository:bench/small:pull" | jq -r .token)"
  fi
}
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; } # utime + stime, 1/100 s

measure() { # name head|get
  local name=$1 what=$2 t0 t1 n headers=()
  [[ -n ${AUTH[$name]} ]] && headers=(-H "${AUTH[$name]}")
  local target=("${URL[$name]}/v2/bench/small/blobs/${LAYER[$name]}" -m HEAD)
  [[ $what == get ]] && target=("${URL[$name]}/v2/bench/small/manifests/latest" -H "$ACCEPT")
  t0=$(ticks "${PID[$name]}")
  n=$("${CLIENT_PIN[@]}" "$OHA" -c 64 -z 5s --no-tui --output-format json "${headers[@]}" "${target[@]}" |
    jq '.statusCodeDistribution["200"] // 0')
  t1=$(ticks "${PID[$name]}")
  echo "scale=2; ($t1 - $t0) * 10000 / $n" | bc >>"$WORK/$name.$what.us"
  echo "$((n / 5))" >>"$WORK/$name.$what.rps"
}
median() { sort -g "$1" | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }

for name in $NAMES; do
  case $name in
    pre) start pre "$PRE" ;;
    off) start off "$BERTH" ;;
    tok) start tok "$BERTH" BERTH_AUTH_MODE=token BERTH_ADMIN_PASSWORD=Bench-Admin-1234 ;;
  esac
done
for ((round = 0; round < ROUNDS; round++)); do
  for name in $NAMES; do measure "$name" head; measure "$name" get; done
done
for name in $NAMES; do
  for what in head get; do
    echo "$name $what: $(median "$WORK/$name.$what.us") µs CPU/request, $(median "$WORK/$name.$what.rps") req/s (rounds: $(tr '\n' ' ' <"$WORK/$name.$what.us"))"
  done
done
