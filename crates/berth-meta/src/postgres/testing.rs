//! Test support: a real PostgreSQL for the PostgreSQL backend's tests, one fresh database
//! per test.
//!
//! With `BERTH_TEST_POSTGRES_URL` set (a superuser's URL on this machine), the databases are
//! created there. Otherwise a throwaway cluster is `initdb`-ed in a temporary directory and
//! started on 127.0.0.1 on a free port (its unix socket in the same directory), shared by
//! the tests of one process while any of them runs, and stopped when the last one ends.
//! PostgreSQL refuses to run as root, so as root the cluster runs as the `postgres` user
//! Debian's package creates.
//!
//! A test that cannot get a database fails (panics): it never skips. Other crates' tests
//! reach this module through the feature `test-postgres`.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::str::FromStr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, Weak};

use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection, Executor};

/// A database of its own for one test; dropped (or its cluster stopped) when the test ends.
pub struct TestDatabase {
    /// Where the store under test connects.
    pub url: String,
    name: String,
    server: Server,
}

#[derive(Clone)]
enum Server {
    /// The operator's server named by `BERTH_TEST_POSTGRES_URL` (its admin URL).
    External(String),
    Local(Arc<Cluster>),
}

impl Server {
    fn admin_url(&self) -> &str {
        match self {
            Server::External(url) => url,
            Server::Local(cluster) => &cluster.admin_url,
        }
    }
}

/// A fresh, empty database.
pub async fn database() -> TestDatabase {
    let server = match std::env::var("BERTH_TEST_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => {
            assert_loopback(&url);
            Server::External(url)
        }
        _ => Server::Local(local_cluster()),
    };
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let name = format!(
        "berth_test_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    let admin = PgConnectOptions::from_str(server.admin_url()).expect("admin url parses");
    let mut conn = admin.connect().await.unwrap_or_else(|e| {
        panic!(
            "cannot connect to the test server {}: {e}",
            super::redacted_url(server.admin_url())
        )
    });
    // ICU's English collation sorts "B" after "a": text the stores compare must not
    // depend on the database's default collation (the columns are `COLLATE "C"`).
    conn.execute(sqlx::AssertSqlSafe(format!(
        "CREATE DATABASE {name} TEMPLATE template0 ENCODING 'UTF8' LOCALE 'C.UTF-8' \
         LOCALE_PROVIDER icu ICU_LOCALE 'en'"
    )))
    .await
    .unwrap_or_else(|e| panic!("cannot create the test database {name}: {e}"));
    conn.close().await.expect("close");
    let url = database_url(server.admin_url(), &name);
    TestDatabase { url, name, server }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        // A local cluster goes with its directory; the operator's server keeps nothing.
        let Server::External(admin) = &self.server else {
            return;
        };
        let (admin, name) = (admin.clone(), self.name.clone());
        // Drop may run inside the test's runtime: drop the database from a thread of its own.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async {
                let mut conn = PgConnectOptions::from_str(&admin)
                    .expect("admin url parses")
                    .connect()
                    .await?;
                conn.execute(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                )))
                .await?;
                conn.close().await
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("could not drop the test database {}", self.name);
        }
    }
}

/// `admin` with its database replaced by `database`.
fn database_url(admin: &str, database: &str) -> String {
    let (base, query) = match admin.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (admin, None),
    };
    let (scheme, rest) = base.split_once("://").expect("a URL");
    let authority = rest.split('/').next().unwrap_or(rest);
    let mut url = format!("{scheme}://{authority}/{database}");
    if let Some(query) = query {
        url.push('?');
        url.push_str(query);
    }
    url
}

/// The tests connect to this machine only.
fn assert_loopback(url: &str) {
    let options = PgConnectOptions::from_str(url).expect("BERTH_TEST_POSTGRES_URL parses");
    let host = options.get_host();
    assert!(
        options.get_socket().is_some()
            || host.starts_with('/')
            || matches!(host, "127.0.0.1" | "localhost" | "::1" | "[::1]"),
        "BERTH_TEST_POSTGRES_URL must name a server on this machine (127.0.0.1), not {host}"
    );
}

/// The cluster of this process, started if no test holds it.
fn local_cluster() -> Arc<Cluster> {
    static CLUSTER: Mutex<Weak<Cluster>> = Mutex::new(Weak::new());
    let mut shared = CLUSTER
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(cluster) = shared.upgrade() {
        return cluster;
    }
    let cluster = Arc::new(Cluster::start());
    *shared = Arc::downgrade(&cluster);
    cluster
}

/// A PostgreSQL cluster in a temporary directory, stopped (and the directory removed) on
/// drop.
struct Cluster {
    dir: tempfile::TempDir,
    bin: PathBuf,
    /// The user the server runs as when this process is root.
    run_as: Option<&'static str>,
    admin_url: String,
}

/// The superuser `initdb` creates (trust authentication: the cluster is on 127.0.0.1
/// only, and lives as long as the tests).
const SUPERUSER: &str = "berth";

impl Cluster {
    fn start() -> Cluster {
        let bin = postgres_bin();
        let dir = tempfile::Builder::new()
            .prefix("berth-pg-")
            .tempdir()
            .expect("temporary directory for PostgreSQL");
        let run_as = is_root().then_some("postgres");
        if let Some(user) = run_as {
            run(Command::new("chown")
                .arg(format!("{user}:"))
                .arg(dir.path()));
        }
        let data = dir.path().join("data");
        run(command(run_as, &bin.join("initdb"))
            .arg("--pgdata")
            .arg(&data)
            .args(["--username", SUPERUSER, "--auth", "trust"])
            .args(["--encoding", "UTF8", "--locale", "C.UTF-8", "--no-sync"]));
        // The port is free when chosen; another process may take it before the server
        // binds, so a failed start is tried again on another port.
        let mut last_log = String::new();
        for _ in 0..3 {
            let port = free_port();
            let server_options = format!(
                "-c listen_addresses=127.0.0.1 -p {port} -c unix_socket_directories={} \
                 -c fsync=off -c synchronous_commit=off -c full_page_writes=off \
                 -c max_connections=200",
                dir.path().display()
            );
            let log = dir.path().join("server.log");
            let started = command(run_as, &bin.join("pg_ctl"))
                .arg("--pgdata")
                .arg(&data)
                .arg("--log")
                .arg(&log)
                .args(["--wait", "--timeout", "60", "--options"])
                .arg(&server_options)
                .arg("start")
                .output()
                .expect("run pg_ctl");
            if started.status.success() {
                return Cluster {
                    admin_url: format!("postgres://{SUPERUSER}@127.0.0.1:{port}/postgres"),
                    dir,
                    bin,
                    run_as,
                };
            }
            last_log = std::fs::read_to_string(&log).unwrap_or_default();
        }
        panic!("PostgreSQL did not start; its log:\n{last_log}");
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let stopped = command(self.run_as, &self.bin.join("pg_ctl"))
            .arg("--pgdata")
            .arg(self.dir.path().join("data"))
            .args(["--mode", "immediate", "stop"])
            .output();
        if !stopped.is_ok_and(|o| o.status.success()) {
            eprintln!(
                "could not stop the test PostgreSQL in {}",
                self.dir.path().display()
            );
        }
    }
}

/// The directory of `initdb` and `pg_ctl`: `BERTH_TEST_PG_BIN`, else Debian's newest
/// `/usr/lib/postgresql/<version>/bin`.
fn postgres_bin() -> PathBuf {
    if let Ok(dir) = std::env::var("BERTH_TEST_PG_BIN")
        && !dir.is_empty()
    {
        return PathBuf::from(dir);
    }
    let root = Path::new("/usr/lib/postgresql");
    let newest = std::fs::read_dir(root)
        .ok()
        .into_iter()
        .flatten()
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .max();
    match newest {
        Some(version) => root.join(version.to_string()).join("bin"),
        None => panic!(
            "PostgreSQL is not installed (no {}/<version>/bin): run scripts/install-deps.sh, \
             or set BERTH_TEST_PG_BIN or BERTH_TEST_POSTGRES_URL",
            root.display()
        ),
    }
}

fn is_root() -> bool {
    let id = Command::new("id").arg("-u").output().expect("run id -u");
    String::from_utf8_lossy(&id.stdout).trim() == "0"
}

/// `program`, run as `user` when given.
fn command(user: Option<&str>, program: &Path) -> Command {
    match user {
        Some(user) => {
            let mut command = Command::new("runuser");
            command.args(["-u", user, "--"]).arg(program);
            command
        }
        None => Command::new(program),
    }
}

fn run(command: &mut Command) {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    assert!(
        output.status.success(),
        "{command:?} failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port on 127.0.0.1")
        .port()
}
