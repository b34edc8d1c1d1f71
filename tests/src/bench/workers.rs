//! Simulated agents in several processes: one process may hold 20,000 open files here, so
//! a fleet of tens of thousands of agents is spread over `tether-bench --worker` children
//! of at most [`PER_WORKER`] agents each. A worker reads its identities from a file, runs
//! them as [`super::Running`] does, and reports on stdout, one JSON line every 10 ms:
//! `{"live": sessions welcomed, "done": agents that received a push since the last mark}`.
//! On stdin, `mark` snapshots every agent's push count (answered by `{"marked": true}`);
//! end-of-file stops it.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use tether_agent::transport::TlsMaterial;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use super::Running;
use super::sim::Identity;

/// Agents per worker process, well under the open-file limit.
pub const PER_WORKER: usize = 15_000;

/// An identity as written for a worker.
#[derive(Serialize, Deserialize)]
struct StoredIdentity {
    tenant_id: String,
    cp_id: String,
    roots: Vec<String>,
    chain: Vec<String>,
    key: String,
}

fn store(id: &Identity) -> Option<StoredIdentity> {
    let (chain, key) = id.tls.client.as_ref()?;
    Some(StoredIdentity {
        tenant_id: id.tenant_id.clone(),
        cp_id: id.cp_id.clone(),
        roots: id.tls.roots.iter().map(|c| STANDARD.encode(c)).collect(),
        chain: chain.iter().map(|c| STANDARD.encode(c)).collect(),
        key: STANDARD.encode(key.secret_der()),
    })
}

fn load(s: StoredIdentity) -> Option<Identity> {
    let der = |b: &String| STANDARD.decode(b).ok();
    let roots = s
        .roots
        .iter()
        .map(|c| der(c).map(rustls_pki_types::CertificateDer::from))
        .collect::<Option<Vec<_>>>()?;
    let chain = s
        .chain
        .iter()
        .map(|c| der(c).map(rustls_pki_types::CertificateDer::from))
        .collect::<Option<Vec<_>>>()?;
    let key = rustls_pki_types::PrivateKeyDer::try_from(der(&s.key)?).ok()?;
    let tls = TlsMaterial {
        roots,
        client: Some((chain, Arc::new(key))),
    };
    Some(Identity {
        tenant_id: s.tenant_id,
        cp_id: s.cp_id,
        config: super::agent_config(&tls)?,
        tls: Arc::new(tls),
    })
}

/// The body of `tether-bench --worker FILE --worker-urls URLS`.
pub async fn worker_main(file: &Path, urls: &str) -> anyhow::Result<()> {
    let stored: Vec<StoredIdentity> = serde_json::from_slice(&std::fs::read(file)?)?;
    let ids: Vec<Identity> = stored.into_iter().filter_map(load).collect();
    let mut run = Running::new(urls);
    run.add(&ids, Duration::from_secs(3600)).await;
    let stats: Vec<_> = ids
        .iter()
        .filter_map(|id| run.stats.get(&id.cp_id).cloned())
        .collect();
    let marks = Arc::new(std::sync::Mutex::new(Vec::<u64>::new()));
    let marked = Arc::new(AtomicBool::new(false));
    let stopped = Arc::new(AtomicBool::new(false));
    {
        let (marks, marked, stopped, stats) = (
            marks.clone(),
            marked.clone(),
            stopped.clone(),
            stats.clone(),
        );
        tokio::spawn(async move {
            let mut lines = BufReader::new(tokio::io::stdin()).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if line.trim() == "mark" {
                    let snapshot = stats
                        .iter()
                        .map(|s| s.pushes.load(Ordering::SeqCst))
                        .collect();
                    if let Ok(mut m) = marks.lock() {
                        *m = snapshot;
                    }
                    marked.store(true, Ordering::SeqCst);
                }
            }
            stopped.store(true, Ordering::SeqCst);
        });
    }
    let mut out = tokio::io::stdout();
    while !stopped.load(Ordering::SeqCst) {
        let done = match marks.lock() {
            Ok(m) if !m.is_empty() => stats
                .iter()
                .zip(m.iter())
                .filter(|(s, before)| s.pushes.load(Ordering::SeqCst) > **before)
                .count(),
            _ => 0,
        };
        if marked.swap(false, Ordering::SeqCst) {
            out.write_all(b"{\"marked\":true}\n").await?;
        }
        let live = run.fleet.live.load(Ordering::SeqCst);
        out.write_all(format!("{{\"live\":{live},\"done\":{done}}}\n").as_bytes())
            .await?;
        out.flush().await?;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    eprintln!(
        "  worker of {} agents: session failures by stage: {}",
        ids.len(),
        run.fleet.failure_summary()
    );
    run.stop();
    Ok(())
}

/// One worker as the parent sees it.
struct Worker {
    child: tokio::process::Child,
    stdin: Option<tokio::process::ChildStdin>,
    live: Arc<AtomicUsize>,
    done: Arc<AtomicUsize>,
    marked: Arc<AtomicBool>,
    agents: usize,
}

/// Simulated agents spread over worker processes.
pub struct Workers {
    workers: Vec<Worker>,
    _dir: tempfile::TempDir,
}

impl Workers {
    /// Starts workers for `ids` against `urls` (comma-separated), [`PER_WORKER`] each.
    pub async fn spawn(ids: &[Identity], urls: &str) -> anyhow::Result<Workers> {
        let dir = tempfile::tempdir()?;
        let exe = std::env::current_exe()?;
        let mut workers = Vec::new();
        for (i, chunk) in ids.chunks(PER_WORKER).enumerate() {
            let file: PathBuf = dir.path().join(format!("worker-{i}.json"));
            let stored: Vec<StoredIdentity> = chunk.iter().filter_map(store).collect();
            std::fs::write(&file, serde_json::to_vec(&stored)?)?;
            let mut child = tokio::process::Command::new(&exe)
                .arg("--worker")
                .arg(&file)
                .arg("--worker-urls")
                .arg(urls)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .kill_on_drop(true)
                .spawn()?;
            let stdin = child.stdin.take();
            let stdout = child.stdout.take();
            let (live, done, marked) = (
                Arc::new(AtomicUsize::new(0)),
                Arc::new(AtomicUsize::new(0)),
                Arc::new(AtomicBool::new(false)),
            );
            if let Some(stdout) = stdout {
                let (live, done, marked) = (live.clone(), done.clone(), marked.clone());
                tokio::spawn(async move {
                    let mut lines = BufReader::new(stdout).lines();
                    while let Ok(Some(line)) = lines.next_line().await {
                        let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
                            continue;
                        };
                        if v["marked"] == true {
                            marked.store(true, Ordering::SeqCst);
                        }
                        if let Some(n) = v["live"].as_u64() {
                            live.store(n as usize, Ordering::SeqCst);
                        }
                        if let Some(n) = v["done"].as_u64() {
                            done.store(n as usize, Ordering::SeqCst);
                        }
                    }
                });
            }
            workers.push(Worker {
                child,
                stdin,
                live,
                done,
                marked,
                agents: chunk.len(),
            });
        }
        Ok(Workers { workers, _dir: dir })
    }

    /// Sessions welcomed, over all workers.
    pub fn live(&self) -> usize {
        self.workers
            .iter()
            .map(|w| w.live.load(Ordering::SeqCst))
            .sum()
    }

    /// Agents in all.
    pub fn agents(&self) -> usize {
        self.workers.iter().map(|w| w.agents).sum()
    }

    /// Waits until `n` sessions are live; how long it took, or `None` after `timeout`.
    pub async fn wait_live(&self, n: usize, timeout: Duration) -> Option<Duration> {
        let t0 = Instant::now();
        while self.live() < n {
            if t0.elapsed() > timeout {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Some(t0.elapsed())
    }

    /// Waits until fewer than `n` sessions are live, or `timeout`.
    pub async fn wait_below(&self, n: usize, timeout: Duration) {
        let t0 = Instant::now();
        while self.live() >= n && t0.elapsed() < timeout {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Snapshots every agent's push count in every worker (and waits for the answers).
    pub async fn mark(&mut self) -> bool {
        for w in &mut self.workers {
            w.marked.store(false, Ordering::SeqCst);
            w.done.store(0, Ordering::SeqCst);
            if let Some(stdin) = &mut w.stdin
                && stdin.write_all(b"mark\n").await.is_err()
            {
                return false;
            }
        }
        let t0 = Instant::now();
        while !self.workers.iter().all(|w| w.marked.load(Ordering::SeqCst)) {
            if t0.elapsed() > Duration::from_secs(10) {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // A report computed before the mark may still arrive; the next ones count from it.
        tokio::time::sleep(Duration::from_millis(30)).await;
        true
    }

    /// Agents that received a push since the last [`Workers::mark`].
    pub fn done(&self) -> usize {
        self.workers
            .iter()
            .map(|w| w.done.load(Ordering::SeqCst))
            .sum()
    }

    /// Stops every worker (end-of-file on stdin) and waits for them.
    pub async fn stop(mut self) {
        for w in &mut self.workers {
            w.stdin.take();
        }
        for w in &mut self.workers {
            let _ = tokio::time::timeout(Duration::from_secs(30), w.child.wait()).await;
        }
    }
}
