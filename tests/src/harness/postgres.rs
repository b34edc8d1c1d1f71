//! A real, throwaway PostgreSQL server for tests: `initdb` into a temp dir, `postgres` on
//! a free loopback port, stopped and removed on drop.
//!
//! The server runs under a small watchdog shell whose stdin is a pipe held by the test
//! process. The shell waits on that pipe: a line names the signal to stop the server with
//! (`INT` fast, `QUIT` immediate), and end-of-file — the test process dropped the server,
//! exited, or was killed — stops it immediately and removes its directory. So a server in
//! a `static` (which Rust never drops), such as [`shared`], cannot outlive its test binary.
//!
//! As root, `initdb` and the watchdog run as the `postgres` OS user (`runuser`), since
//! PostgreSQL refuses to run as root; the temp dir is chowned to it.
//!
//! With `TETHER_TEST_DATABASE_URL` set (the URL of an existing server's maintenance
//! database, e.g. `postgres://postgres@127.0.0.1:5432/postgres`), [`shared`] uses that
//! server instead of starting one; [`PgServer::create_database`] still makes a fresh
//! database per call there (they are left behind).

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use sqlx::Connection;

/// How long a server may take to accept connections.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// The watchdog: starts postgres (`$1` data dir, `$2` port, `$3` log file, `$5` more
/// `-c` options, which override the ones before), prints its pid, then waits on stdin. `$4`
/// is the directory to remove on end-of-file.
const WATCHDOG: &str = r#"
postgres -D "$1" -k "$1" -p "$2" -c listen_addresses=127.0.0.1 \
  -c fsync=off -c synchronous_commit=off -c full_page_writes=off \
  -c max_connections=200 $5 >>"$3" 2>&1 &
pid=$!
echo "$pid"
if read sig; then
  kill -"$sig" "$pid" 2>/dev/null
  wait "$pid"
else
  kill -QUIT "$pid" 2>/dev/null
  wait "$pid"
  rm -rf "$4"
fi
"#;

/// A PostgreSQL server for tests: one this process started, or an external one.
#[derive(Debug)]
pub struct PgServer {
    /// `postgres://postgres@127.0.0.1:PORT` (no database).
    base_url: String,
    /// `None` for an external server (`TETHER_TEST_DATABASE_URL`).
    local: Option<Local>,
}

/// A server this process started.
#[derive(Debug)]
struct Local {
    port: u16,
    data: PathBuf,
    /// More `-c` options for postgres.
    options: String,
    log: PathBuf,
    /// The watchdog while the server runs.
    running: Option<Running>,
    as_postgres_user: bool,
    /// Removed on drop (after the server stopped).
    dir: tempfile::TempDir,
}

/// The watchdog shell and the postmaster it started.
#[derive(Debug)]
struct Running {
    watchdog: Child,
    /// Held open: closing it stops the server.
    stdin: ChildStdin,
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local addr").port()
}

/// `program args…`, as the `postgres` user when `as_postgres_user`.
fn command(as_postgres_user: bool, program: &str) -> Command {
    if as_postgres_user {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--", program]);
        c
    } else {
        Command::new(program)
    }
}

impl PgServer {
    /// Initializes a data dir in a fresh temp dir and starts a server on a free port;
    /// returns once it accepts connections. Tests trade durability for speed (fsync and
    /// synchronous commit off); see [`PgServer::start_durable`].
    pub fn start() -> PgServer {
        Self::start_with("")
    }

    /// A server that makes every commit durable, as production would (fsync, synchronous
    /// commit and full-page writes on): what the benchmark measures.
    pub fn start_durable() -> PgServer {
        Self::start_with("-c fsync=on -c synchronous_commit=on -c full_page_writes=on")
    }

    fn start_with(options: &str) -> PgServer {
        let as_postgres_user = is_root();
        let dir = tempfile::Builder::new()
            .prefix("tether-pg-")
            .tempdir_in("/tmp")
            .expect("temp dir for PostgreSQL");
        if as_postgres_user {
            let chown = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status()
                .expect("run chown");
            assert!(chown.success(), "chown of {} failed", dir.path().display());
        }
        let data = dir.path().join("data");
        let out = command(as_postgres_user, "initdb")
            .arg("-D")
            .arg(&data)
            .args(["-A", "trust", "-U", "postgres", "-E", "UTF8", "--locale=C"])
            .args(["--no-sync", "--no-instructions"])
            .stdin(Stdio::null())
            .output()
            .expect("initdb is not on PATH (PostgreSQL 15's bin directory)");
        assert!(
            out.status.success(),
            "initdb failed: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let port = free_port();
        let mut local = Local {
            port,
            options: options.to_owned(),
            log: dir.path().join("postgres.log"),
            data,
            running: None,
            as_postgres_user,
            dir,
        };
        local.launch();
        PgServer {
            base_url: format!("postgres://postgres@127.0.0.1:{port}"),
            local: Some(local),
        }
    }

    /// A server already running elsewhere, known by the URL of its maintenance database.
    pub fn external(maintenance_url: &str) -> PgServer {
        let without_query = maintenance_url.split('?').next().unwrap_or(maintenance_url);
        let base = match without_query.split_once("://") {
            // Everything up to the path of `scheme://authority/db`.
            Some((scheme, rest)) => {
                let authority = rest.split('/').next().unwrap_or(rest);
                format!("{scheme}://{authority}")
            }
            None => panic!("TETHER_TEST_DATABASE_URL is not a URL: {maintenance_url:?}"),
        };
        PgServer {
            base_url: base,
            local: None,
        }
    }

    /// The URL of database `db` on this server.
    pub fn url(&self, db: &str) -> String {
        format!("{}/{db}", self.base_url)
    }

    /// The port the server listens on (`None` for an external one).
    pub fn port(&self) -> Option<u16> {
        self.local.as_ref().map(|l| l.port)
    }

    /// Creates a database with a fresh unique name; returns its URL.
    pub async fn create_database(&self) -> String {
        let name = format!("tether_{}", uuid::Uuid::new_v4().simple());
        let mut conn = sqlx::PgConnection::connect(&self.url("postgres"))
            .await
            .unwrap_or_else(|e| panic!("connect to {}: {e}", self.url("postgres")));
        // A uuid's hex digits only: nothing to quote.
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e}"));
        let _ = conn.close().await;
        self.url(&name)
    }

    /// Stops the server the fast way (`pg_ctl stop -m fast`: sessions are cut, a shutdown
    /// checkpoint is written) and waits until it exited.
    pub fn stop(&mut self) {
        self.local_mut("stop").stop_with("INT");
    }

    /// Simulates a crash: an immediate shutdown (`pg_ctl stop -m immediate`: every
    /// process ends without a checkpoint, the next start runs crash recovery). Returns once
    /// every server process exited, so [`PgServer::restart`] finds the data dir free.
    /// With `synchronous_commit=off` the last fraction of a second of commits may be lost,
    /// as in a real crash of such a server; run `CHECKPOINT` first to keep them.
    pub fn kill(&mut self) {
        self.local_mut("kill").stop_with("QUIT");
    }

    /// Starts the server again on the same data dir and port (after [`PgServer::stop`] or
    /// [`PgServer::kill`]; a running server is stopped first).
    pub fn restart(&mut self) {
        let local = self.local_mut("restart");
        local.stop_with("INT");
        local.launch();
    }

    /// The data dir (`None` for an external server); gone once the server is dropped.
    pub fn data_dir(&self) -> Option<&std::path::Path> {
        self.local.as_ref().map(|l| l.data.as_path())
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        self.local.as_ref().map(Local::log).unwrap_or_default()
    }

    fn local_mut(&mut self, what: &str) -> &mut Local {
        match &mut self.local {
            Some(l) => l,
            None => {
                panic!("cannot {what} an external PostgreSQL server (TETHER_TEST_DATABASE_URL)")
            }
        }
    }
}

impl Local {
    /// Starts postgres under the watchdog and waits until it accepts connections.
    fn launch(&mut self) {
        let mut cmd = command(self.as_postgres_user, "sh");
        cmd.arg("-c")
            .arg(WATCHDOG)
            .arg("tether-pg-watchdog")
            .arg(&self.data)
            .arg(self.port.to_string())
            .arg(&self.log)
            .arg(self.dir.path())
            .arg(&self.options)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        // Its own process group: a Ctrl-C of the test run reaches the test process only;
        // the closing pipe then stops the server.
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let mut watchdog = cmd.spawn().expect("spawn the PostgreSQL watchdog shell");
        let stdin = watchdog.stdin.take().expect("piped stdin");
        let stdout = watchdog.stdout.take().expect("piped stdout");
        // The first line is the postmaster's pid: proof the shell started it.
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        assert!(
            line.trim().parse::<u32>().is_ok(),
            "the PostgreSQL watchdog did not start postgres (said {line:?})"
        );
        self.running = Some(Running { watchdog, stdin });
        self.wait_ready();
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(r) = &mut self.running
                && let Ok(Some(status)) = r.watchdog.try_wait()
            {
                self.running = None;
                panic!(
                    "PostgreSQL exited before accepting connections ({status}); its log:\n{}",
                    self.log()
                );
            }
            let ready = Command::new("pg_isready")
                .args(["-q", "-h", "127.0.0.1", "-U", "postgres", "-d", "postgres"])
                .args(["-p", &self.port.to_string()])
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            if ready {
                return;
            }
            if Instant::now() >= deadline {
                panic!(
                    "PostgreSQL did not accept connections on 127.0.0.1:{} within {READY_TIMEOUT:?}; its log:\n{}",
                    self.port,
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Asks the watchdog to signal the postmaster with `sig` and waits until both exited.
    fn stop_with(&mut self, sig: &str) {
        if let Some(mut r) = self.running.take() {
            let _ = writeln!(r.stdin, "{sig}");
            let _ = r.stdin.flush();
            let _ = r.watchdog.wait();
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_else(|e| format!("(no log: {e})"))
    }
}

impl Drop for Local {
    fn drop(&mut self) {
        if let Some(mut r) = self.running.take() {
            // End-of-file: the watchdog shuts the server down at once and removes the dir.
            drop(r.stdin);
            let _ = r.watchdog.wait();
        }
        // `dir` is removed after this (whatever the watchdog left).
    }
}

/// One server for the whole test binary: started on first use (or the server of
/// `TETHER_TEST_DATABASE_URL`). Give each test its own [`PgServer::create_database`].
pub fn shared() -> &'static PgServer {
    static SHARED: OnceLock<PgServer> = OnceLock::new();
    SHARED.get_or_init(|| match std::env::var("TETHER_TEST_DATABASE_URL") {
        Ok(url) if !url.is_empty() => PgServer::external(&url),
        _ => PgServer::start(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn connect(url: &str) -> Result<sqlx::PgConnection, sqlx::Error> {
        sqlx::PgConnection::connect(url).await
    }

    async fn count(url: &str) -> i64 {
        let mut c = connect(url).await.expect("connect");
        let (n,): (i64,) = sqlx::query_as("SELECT count(*) FROM t")
            .fetch_one(&mut c)
            .await
            .expect("count");
        n
    }

    /// Fresh databases, a fast stop and a crash, each followed by a restart on the same
    /// data and port; the dir is gone after drop.
    #[tokio::test]
    async fn stop_kill_restart_and_drop() {
        let mut pg = PgServer::start();
        let url = pg.create_database().await;
        let other = pg.create_database().await;
        assert_ne!(url, other);
        let mut c = connect(&url).await.expect("connect");
        sqlx::raw_sql("CREATE TABLE t (v int); INSERT INTO t VALUES (1)")
            .execute(&mut c)
            .await
            .expect("create");
        drop(c);

        pg.stop();
        assert!(connect(&url).await.is_err(), "stopped");
        pg.restart();
        assert_eq!(count(&url).await, 1, "the data survived a stop");

        let mut c = connect(&url).await.expect("connect");
        // Separate statements: one query string would be one transaction, committed after
        // the checkpoint.
        for sql in ["INSERT INTO t VALUES (2)", "CHECKPOINT"] {
            sqlx::raw_sql(sql).execute(&mut c).await.expect(sql);
        }
        // A connection open across the crash is cut.
        pg.kill();
        assert!(
            sqlx::query("SELECT 1").execute(&mut c).await.is_err(),
            "the crash cut the connection"
        );
        pg.restart();
        assert_eq!(
            count(&url).await,
            2,
            "crash recovery kept the checkpointed data"
        );
        assert!(
            pg.log().contains("database system was interrupted"),
            "{}",
            pg.log()
        );

        let dir = pg.data_dir().expect("local").to_owned();
        assert!(dir.exists());
        drop(pg);
        assert!(!dir.exists(), "the data dir is removed on drop");
        assert!(connect(&url).await.is_err(), "the server is gone");
    }

    #[test]
    fn external_server_urls() {
        let pg =
            PgServer::external("postgres://postgres:pw@db.internal:5432/postgres?sslmode=require");
        assert_eq!(pg.url("t1"), "postgres://postgres:pw@db.internal:5432/t1");
        assert_eq!(pg.port(), None);
    }
}
