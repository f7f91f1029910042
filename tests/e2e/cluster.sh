# E2E_TARGET=cluster: the registry under test is two berth nodes on PostgreSQL + S3 (moto)
# behind nginx round-robin, so consecutive requests of one push or pull land on different
# nodes (an upload begun on one continues on the other; a tag pushed through one is read
# through the other). Sourced by lib.sh.
#
# The run's owner (run.sh, or a t-*.sh run alone) starts one PostgreSQL cluster and one S3
# server for the whole run; each registry gets its own database and bucket, named after its
# directory, so a registry restarted on the same directory finds its data again.

PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
CLUSTER_PIDS=()   # the nodes of the registry started last
CLUSTER_PORTS=()  # their ports, in the same order

# cluster_deps_start: PostgreSQL (trust auth, 127.0.0.1 only) and moto_server, once per run
# (by run.sh, or by the first start_registry that needs them in a t-*.sh run alone).
cluster_deps_start() {
  [[ -n "${E2E_PG_PORT:-}" ]] && return 0
  local pg=$E2E_WORK/pg
  E2E_PG_PORT=$(free_port) E2E_S3_PORT=$(free_port)
  # PostgreSQL runs as "postgres", which must be able to reach its directory.
  chmod o+x "$E2E_WORK" || return 1
  install -d -o postgres -m 700 "$pg" || return 1
  runuser -u postgres -- "$PG_BIN/initdb" -D "$pg/data" -A trust -U postgres >"$pg/initdb.log" 2>&1 ||
    { cat "$pg/initdb.log"; return 1; }
  runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$pg/data" -l "$pg/server.log" -w \
    -o "-h 127.0.0.1 -p $E2E_PG_PORT -k $pg -c fsync=off" start >/dev/null ||
    { cat "$pg/server.log"; return 1; }
  moto_server -H 127.0.0.1 -p "$E2E_S3_PORT" >"$E2E_WORK/moto.log" 2>&1 &
  echo $! >"$E2E_WORK/moto.pid"
  local i
  for i in $(seq 100); do
    curl -s -o /dev/null "http://127.0.0.1:$E2E_S3_PORT/" && break
    sleep 0.1
  done
  export E2E_PG_PORT E2E_S3_PORT
}

cluster_deps_stop() {
  [[ -f "$E2E_WORK/moto.pid" ]] && kill "$(cat "$E2E_WORK/moto.pid")" 2>/dev/null
  [[ -d "$E2E_WORK/pg/data" ]] &&
    runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$E2E_WORK/pg/data" -m immediate stop >/dev/null 2>&1
}

# pg_database_url: the URL of $REG_DIR's own database (named after the directory, so a
# restart finds it again), created if it is not there yet.
pg_database_url() {
  local name
  name=b$(printf '%s' "$REG_DIR" | sha256sum | cut -c1-16)
  psql -h 127.0.0.1 -p "$E2E_PG_PORT" -U postgres -tAc \
    "SELECT 1 FROM pg_database WHERE datname = '$name'" | grep -q 1 ||
    psql -h 127.0.0.1 -p "$E2E_PG_PORT" -U postgres -qc "CREATE DATABASE $name" || return 1
  echo "postgres://postgres@127.0.0.1:$E2E_PG_PORT/$name"
}

# cluster_start: like start_registry's berth case, for the cluster; berth_env as there.
cluster_start() {
  local url name
  url=$(pg_database_url) || return 1
  name=${url##*/}
  curl -s -o /dev/null -X PUT "http://127.0.0.1:$E2E_S3_PORT/$name" || return 1
  # This test's own CLI calls (`berth user add …`) reach the cluster's database too.
  export BERTH_DATABASE_URL=$url
  local node port ports=()
  for node in a b; do
    port=$(free_port)
    ports+=("$port")
    CLUSTER_PORTS+=("$port")
    mkdir -p "$REG_DIR/node-$node"
    (
      export BERTH_ADDR="127.0.0.1:$port" BERTH_DATA_DIR="$REG_DIR/node-$node"
      export BERTH_STORAGE_BACKEND=s3 BERTH_STORAGE_S3_ENDPOINT="http://127.0.0.1:$E2E_S3_PORT"
      export BERTH_STORAGE_S3_BUCKET="$name" BERTH_STORAGE_S3_REGION=us-east-1
      export BERTH_STORAGE_S3_PATH_STYLE=true BERTH_STORAGE_S3_ALLOW_HTTP=true
      export BERTH_STORAGE_S3_ACCESS_KEY=e2e BERTH_STORAGE_S3_SECRET_KEY=e2e-secret
      for kv in "${berth_env[@]}"; do export "${kv?}"; done
      exec "$BERTH_BIN" serve
    ) >>"$REG_DIR/registry.log" 2>&1 &
    CLUSTER_PIDS+=($!)
    REG_PIDS+=($!)
    # One node at a time: the first migrates the database and creates the admin.
    local i
    for i in $(seq 100); do
      curl -s -o /dev/null --max-time 2 "http://127.0.0.1:$port/readyz" && break
      sleep 0.1
    done
  done
  cat >"$REG_DIR/nginx.conf" <<EOF
daemon off;
pid $REG_DIR/nginx.pid;
error_log $REG_DIR/nginx-error.log warn;
events { worker_connections 1024; }
http {
  log_format nodes '\$upstream_addr \$request_method \$uri';
  access_log $REG_DIR/nginx-access.log nodes;
  client_body_temp_path $REG_DIR/nginx-body;
  proxy_temp_path $REG_DIR/nginx-proxy;
  upstream berth { server 127.0.0.1:${ports[0]}; server 127.0.0.1:${ports[1]}; }
  server {
    listen $REG;
    client_max_body_size 0;
    location / {
      proxy_pass http://berth;
      proxy_http_version 1.1;
      proxy_set_header Host \$http_host;
      proxy_request_buffering off;
      proxy_buffering off;
      proxy_read_timeout 900s;
      proxy_send_timeout 900s;
    }
  }
}
EOF
  nginx -c "$REG_DIR/nginx.conf" -p "$REG_DIR" >>"$REG_DIR/nginx.log" 2>&1 &
  CLUSTER_NGINX=$!
}

# cluster_stop SIGNAL: the nodes of the registry started last get SIGNAL (a KILL is a
# crash of berth under test); nginx is always stopped cleanly, so its port is free again.
cluster_stop() {
  local pid
  for pid in "${CLUSTER_PIDS[@]}"; do
    [[ $pid == "${CLUSTER_NGINX:-}" ]] && continue
    kill "-$1" "$pid" 2>/dev/null; wait "$pid" 2>/dev/null
  done
  [[ -n "${CLUSTER_NGINX:-}" ]] && { kill -TERM "$CLUSTER_NGINX" 2>/dev/null; wait "$CLUSTER_NGINX" 2>/dev/null; }
  CLUSTER_PIDS=() CLUSTER_PORTS=() CLUSTER_NGINX=""
}

# cluster_served_split: whether, over every cluster registry of this run, requests went to
# both nodes and at least one upload session was served by both (its POST/PATCH/PUT split).
cluster_served_split() {
  cat "$E2E_WORK"/*/*/nginx-access.log 2>/dev/null | awk '
    { nodes[$1] = 1 }
    match($3, /\/blobs\/uploads\/[^\/]+$/) {
      id = substr($3, RSTART + 15); seen[id "|" $1] = 1
      if (!(id in first)) first[id] = $1; else if (first[id] != $1) split_uploads++
    }
    END {
      n = 0; for (k in nodes) n++
      printf "%d upstream addresses, %d upload requests on another node than their first\n", n, split_uploads
      exit !(n >= 2 && split_uploads > 0)
    }'
}
