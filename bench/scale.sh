# Scale-out registries for bench/run.sh (sourced): berth on PostgreSQL + S3 (s3s-fs, a Rust
# S3 server on the same disk), alone ("pg"), and behind nginx round-robin with one node
# ("cl1") or two ("cl2"). Each start gets an empty database and bucket. Nodes run in token
# mode (run.sh's start() then sets up wave-2 mode: a user, projects with quotas).
#
# PostgreSQL keeps its defaults (fsync and synchronous_commit on), as SQLite keeps its
# flushes: durability is part of what is measured.

PG_BIN=/usr/lib/postgresql/15/bin
S3FS=$(command -v s3s-fs || echo "$HOME/.cargo/bin/s3s-fs")
PORT_pg=$(free_port) PORT_cl1=$(free_port) PORT_cl2=$(free_port)
PG_PORT=$(free_port) S3_PORT=$(free_port)
SCALE_NODE_PIDS=()

scale_deps_start() { # once per run; scale_start calls it (a BENCH_ONLY run may skip (a))
  [[ -n ${PIDS[s3fs]:-} ]] && return 0
  chmod o+x "$WORK"
  install -d -o postgres -m 700 "$WORK/pg"
  runuser -u postgres -- "$PG_BIN/initdb" -D "$WORK/pg/data" -A trust -U postgres >/dev/null
  runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$WORK/pg/data" -l "$WORK/pg/server.log" -w \
    -o "-h 127.0.0.1 -p $PG_PORT -k $WORK/pg -c max_connections=200" start >/dev/null
  mkdir -p "$WORK/s3"
  "$S3FS" --host 127.0.0.1 --port "$S3_PORT" --access-key bench --secret-key bench-secret \
    "$WORK/s3" >"$WORK/s3fs.log" 2>&1 &
  PIDS[s3fs]=$!
}

scale_deps_stop() {
  if [[ -d "$WORK/pg/data" ]]; then
    runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$WORK/pg/data" -m fast stop >/dev/null 2>&1 || true
  fi
}

# scale_start REG DIR: nodes on a fresh database and bucket; nginx in front for cl1/cl2.
scale_start() {
  local reg=$1 dir=$2 nodes=1 i port ports=()
  scale_deps_start
  psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -qc "DROP DATABASE IF EXISTS bench" -c "CREATE DATABASE bench"
  rm -rf "$WORK/s3/bench" && mkdir -p "$WORK/s3/bench"
  [[ $reg == cl2 ]] && nodes=2
  for ((i = 0; i < nodes; i++)); do
    port=$PORT_pg
    [[ $reg != pg ]] && port=$(free_port)
    ports+=("$port")
    mkdir -p "$dir/node-$i"
    env "${TOKEN_ENV[@]}" "${BERTH_ENV[@]}" BERTH_ADDR=127.0.0.1:$port BERTH_DATA_DIR=$dir/node-$i BERTH_LOG=error \
      BERTH_DATABASE_URL="postgres://postgres@127.0.0.1:$PG_PORT/bench" \
      BERTH_STORAGE_BACKEND=s3 BERTH_STORAGE_S3_ENDPOINT="http://127.0.0.1:$S3_PORT" \
      BERTH_STORAGE_S3_BUCKET=bench BERTH_STORAGE_S3_ALLOW_HTTP=true \
      BERTH_STORAGE_S3_ACCESS_KEY=bench BERTH_STORAGE_S3_SECRET_KEY=bench-secret \
      "$BERTH" serve >>"$WORK/berth-$reg.log" 2>&1 &
    SCALE_NODE_PIDS+=($!)
    BENCH_AUTHORIZATION=$ADMIN_AUTH "$BB" --url "http://127.0.0.1:$port" ping --timeout-secs 60
  done
  if [[ $reg == pg ]]; then
    PIDS[pg]=${SCALE_NODE_PIDS[0]}
    return
  fi
  local upstreams=""
  for port in "${ports[@]}"; do upstreams+="server 127.0.0.1:$port; "; done
  cat >"$dir/nginx.conf" <<EOF
daemon off;
worker_processes 1;
pid $dir/nginx.pid;
error_log $dir/nginx-error.log error;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $dir/nginx-body;
  proxy_temp_path $dir/nginx-proxy;
  upstream berth { $upstreams keepalive 128; }
  server {
    listen 127.0.0.1:$(eval echo "\$PORT_$reg");
    client_max_body_size 0;
    location / {
      proxy_pass http://berth;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host \$http_host;
      proxy_request_buffering off;
      proxy_buffering off;
    }
  }
}
EOF
  nginx -c "$dir/nginx.conf" -p "$dir" >>"$WORK/nginx.log" 2>&1 &
  PIDS[$reg]=$!
  BENCH_AUTHORIZATION=$ADMIN_AUTH "$BB" --url "$(url "$reg")" ping --timeout-secs 30
}

scale_stop() {
  local pid
  for pid in "${SCALE_NODE_PIDS[@]}"; do stop_pid "$pid"; done
  SCALE_NODE_PIDS=()
}
