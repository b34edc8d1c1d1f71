//! The real binaries as child processes: their stderr (JSON logs) goes to a file the test
//! reads; each process is killed when its handle drops, by the id we started it with.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use serde_json::Value;

use super::{Api, eventually};

/// Path of a workspace binary next to the test executable (`target/<profile>/NAME`).
pub fn bin_path(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe
        .parent()
        .and_then(|deps| {
            if deps.ends_with("deps") {
                deps.parent()
            } else {
                Some(deps)
            }
        })
        .expect("target dir");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: build the binaries first with `cargo build --workspace --bins` (scripts/test does)",
        path.display()
    );
    path
}

fn read_log(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// The JSON log events of a log file (other lines skipped).
fn events(path: &Path) -> Vec<Value> {
    read_log(path)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn count(path: &Path, message: &str) -> usize {
    events(path)
        .iter()
        .filter(|e| e["fields"]["message"].as_str() == Some(message))
        .count()
}

fn signal(child: &mut Child, sig: &str) {
    let _ = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status();
}

/// How to start a control plane.
#[derive(Debug, Clone)]
pub struct ControlPlaneOptions {
    /// Data dir; a fresh temp dir when `None`.
    pub data_dir: Option<PathBuf>,
    /// `--http-listen`.
    pub http_listen: String,
    /// `--grpc-listen`.
    pub grpc_listen: String,
    /// More flags.
    pub extra_args: Vec<String>,
    /// The temp dir `data_dir` lives in, shared with the process started before in the
    /// same place (see [`ControlPlaneProc::same_place`]): it is removed when the last one
    /// is dropped, not when the first one is — which would take the database away from
    /// under the restarted control plane.
    pub keep: Option<std::sync::Arc<tempfile::TempDir>>,
}

impl Default for ControlPlaneOptions {
    fn default() -> Self {
        Self {
            data_dir: None,
            http_listen: "127.0.0.1:0".into(),
            grpc_listen: "127.0.0.1:0".into(),
            extra_args: vec![],
            keep: None,
        }
    }
}

/// A running `tether-control-plane serve`.
#[derive(Debug)]
pub struct ControlPlaneProc {
    child: Child,
    tmp: Option<std::sync::Arc<tempfile::TempDir>>,
    /// Its data dir.
    pub data_dir: PathBuf,
    /// HTTP address it bound.
    pub http: String,
    /// gRPC address it bound.
    pub grpc: String,
    log: PathBuf,
}

impl ControlPlaneProc {
    /// Starts it and waits until it listens.
    pub async fn start(opts: ControlPlaneOptions) -> Self {
        let (tmp, data_dir) = match opts.data_dir {
            Some(d) => (opts.keep, d),
            None => {
                let t = tempfile::tempdir().expect("tempdir");
                let d = t.path().join("cp");
                (Some(std::sync::Arc::new(t)), d)
            }
        };
        std::fs::create_dir_all(&data_dir).expect("data dir");
        let log = data_dir.with_extension(format!("log.{}", rand_suffix()));
        let child = Command::new(bin_path("tether-control-plane"))
            .arg("serve")
            .arg("--data-dir")
            .arg(&data_dir)
            .args([
                "--http-listen",
                &opts.http_listen,
                "--grpc-listen",
                &opts.grpc_listen,
            ])
            .args(["--log-format", "json"])
            .args(&opts.extra_args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(&log).expect("log file"))
            .spawn()
            .expect("spawn tether-control-plane");
        let mut me = Self {
            child,
            tmp,
            data_dir,
            http: String::new(),
            grpc: String::new(),
            log,
        };
        let log = me.log.clone();
        let (http, grpc) = eventually(Duration::from_secs(30), "control plane listening", || {
            let log = log.clone();
            async move {
                events(&log).iter().find_map(|e| {
                    let f = &e["fields"];
                    (f["message"].as_str() == Some("control plane listening")).then(|| {
                        (
                            f["http"].as_str().unwrap_or("").to_owned(),
                            f["grpc"].as_str().unwrap_or("").to_owned(),
                        )
                    })
                })
            }
        })
        .await;
        me.http = http;
        me.grpc = grpc;
        me
    }

    /// Options that start a control plane again in the same place: same data dir (CA,
    /// token, database) and same addresses, as after a restart.
    pub fn same_place(&self) -> ControlPlaneOptions {
        ControlPlaneOptions {
            data_dir: Some(self.data_dir.clone()),
            http_listen: self.http.clone(),
            grpc_listen: self.grpc.clone(),
            keep: self.tmp.clone(),
            ..ControlPlaneOptions::default()
        }
    }

    /// The platform admin token from `DATA_DIR/admin-token`.
    pub fn admin_token(&self) -> String {
        std::fs::read_to_string(self.data_dir.join("admin-token"))
            .expect("admin-token")
            .trim()
            .to_owned()
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its API as the platform admin.
    pub fn api(&self) -> Api {
        Api::new(&self.http, &self.admin_token())
    }

    /// `https://ADDR` of the gRPC endpoint.
    pub fn grpc_url(&self) -> String {
        format!("https://{}", self.grpc)
    }

    /// `DATA_DIR/ca.pem`.
    pub fn ca_file(&self) -> PathBuf {
        self.data_dir.join("ca.pem")
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        read_log(&self.log)
    }

    /// Its WARN and ERROR events so far, counted by message and error text.
    pub fn warnings(&self) -> std::collections::BTreeMap<String, usize> {
        let mut out = std::collections::BTreeMap::new();
        for e in events(&self.log) {
            if matches!(e["level"].as_str(), Some("WARN" | "ERROR")) {
                let f = &e["fields"];
                let key = format!(
                    "{}: {}",
                    f["message"].as_str().unwrap_or(""),
                    f["error"].as_str().unwrap_or("")
                );
                *out.entry(key).or_default() += 1;
            }
        }
        out
    }

    /// SIGKILL, and wait for it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, and wait for it.
    pub fn terminate(&mut self) -> Option<ExitStatus> {
        signal(&mut self.child, "-TERM");
        self.child.wait().ok()
    }
}

impl Drop for ControlPlaneProc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// How to start an agent.
#[derive(Debug, Clone, Default)]
pub struct AgentOptions {
    /// `--control-plane`.
    pub control_plane: String,
    /// `--ca-file`.
    pub ca_file: PathBuf,
    /// `--state-dir`.
    pub state_dir: PathBuf,
    /// `--enrollment-token`.
    pub enrollment_token: Option<String>,
    /// `--compute-plane`.
    pub compute_plane: Option<String>,
    /// Environment (e.g. `HTTPS_PROXY`); proxy variables of the test's own environment are
    /// always removed first.
    pub env: Vec<(String, String)>,
    /// More flags.
    pub extra_args: Vec<String>,
    /// Run inside this network namespace (`ip netns exec`; needs root).
    pub netns: Option<String>,
}

impl AgentOptions {
    /// Options for an agent of `cp` keeping its state in `state_dir`.
    pub fn for_control_plane(
        cp: &ControlPlaneProc,
        state_dir: PathBuf,
        token: Option<String>,
    ) -> Self {
        Self {
            control_plane: cp.grpc_url(),
            ca_file: cp.ca_file(),
            state_dir,
            enrollment_token: token,
            ..Self::default()
        }
    }

    /// The same options with more environment variables.
    pub fn with_env(mut self, vars: &[(&str, &str)]) -> Self {
        self.env
            .extend(vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
        self
    }

    /// The same options with more flags.
    pub fn with_args(mut self, args: &[&str]) -> Self {
        self.extra_args.extend(args.iter().map(|a| (*a).to_owned()));
        self
    }
}

/// The proxy variables of the test's own environment, never passed to an agent.
const PROXY_VARS: [&str; 8] = [
    "HTTPS_PROXY",
    "https_proxy",
    "HTTP_PROXY",
    "http_proxy",
    "ALL_PROXY",
    "all_proxy",
    "NO_PROXY",
    "no_proxy",
];

/// `tether-agent doctor --json` with the flags `opts` would start `run` with (proxy
/// variables of the test's own environment removed, `opts.env` set), behind `wrapper`
/// (e.g. `["faketime", "-f", "+600s"]`) if given. Returns the exit code and the report.
pub fn doctor(opts: &AgentOptions, wrapper: &[&str]) -> (Option<i32>, Value) {
    let mut cmd = match wrapper.split_first() {
        Some((first, rest)) => {
            let mut c = Command::new(first);
            c.args(rest).arg(bin_path("tether-agent"));
            c
        }
        None => Command::new(bin_path("tether-agent")),
    };
    cmd.arg("doctor")
        .arg("--json")
        .args(["--control-plane", &opts.control_plane])
        .arg("--ca-file")
        .arg(&opts.ca_file)
        .arg("--state-dir")
        .arg(&opts.state_dir)
        .args(&opts.extra_args)
        .stdin(Stdio::null());
    for var in PROXY_VARS {
        cmd.env_remove(var);
    }
    for (k, v) in &opts.env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run tether-agent doctor");
    let report = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "doctor printed no JSON ({e}): {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code(), report)
}

/// A running `tether-agent run`.
#[derive(Debug)]
pub struct AgentProc {
    child: Child,
    log: PathBuf,
    exit: Option<ExitStatus>,
}

impl AgentProc {
    /// Starts it.
    pub fn start(opts: AgentOptions) -> Self {
        let log = opts
            .state_dir
            .with_extension(format!("log.{}", rand_suffix()));
        let mut cmd = match &opts.netns {
            Some(ns) => {
                // `ip netns exec` execs the agent, so the child's pid is the agent's.
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(bin_path("tether-agent"));
                c
            }
            None => Command::new(bin_path("tether-agent")),
        };
        cmd.arg("run")
            .args(["--control-plane", &opts.control_plane])
            .arg("--ca-file")
            .arg(&opts.ca_file)
            .arg("--state-dir")
            .arg(&opts.state_dir)
            .args(["--log-format", "json"])
            .args(&opts.extra_args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(&log).expect("log file"));
        for var in PROXY_VARS {
            cmd.env_remove(var);
        }
        if let Some(t) = &opts.enrollment_token {
            cmd.args(["--enrollment-token", t]);
        }
        if let Some(cp) = &opts.compute_plane {
            cmd.args(["--compute-plane", cp]);
        }
        for (k, v) in &opts.env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("spawn tether-agent");
        Self {
            child,
            log,
            exit: None,
        }
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        read_log(&self.log)
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// CPU seconds (user + system) the process used so far, from `/proc/PID/stat`.
    pub fn cpu_seconds(&self) -> f64 {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap_or_default();
        // Fields after the parenthesised command name; utime and stime are the 12th and
        // 13th of those, in clock ticks (100 per second on Linux).
        let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
        let f: Vec<&str> = rest.split_whitespace().collect();
        let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
        (ticks(11) + ticks(12)) / 100.0
    }

    /// Its JSON log events so far.
    pub fn events(&self) -> Vec<Value> {
        events(&self.log)
    }

    /// How many log events carry exactly this message.
    pub fn count(&self, message: &str) -> usize {
        count(&self.log, message)
    }

    /// Its exit status, if it has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        if self.exit.is_none() {
            self.exit = self.child.try_wait().ok().flatten();
        }
        self.exit
    }

    /// Waits up to `timeout` for it to exit.
    pub async fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Some(s) = self.exited() {
                return s;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "agent still running after {timeout:?}; log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGTERM.
    pub fn terminate(&mut self) {
        signal(&mut self.child, "-TERM");
    }
}

impl Drop for AgentProc {
    fn drop(&mut self) {
        if self.exited().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn rand_suffix() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}
