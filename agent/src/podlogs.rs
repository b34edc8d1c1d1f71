//! Ships the Presto pods' logs to the customer's CloudWatch Logs, read through the
//! Kubernetes API (the pod `log` subresource, followed), one log stream per container:
//! `presto/<pod>/<container>` in the agent's log group.
//!
//! ```text
//!  watch Pods (managed-by=tether, this compute plane)
//!     └─ per running pod and container: follow …/log?follow&timestamps&sinceTime
//!           └─ each line ─▶ its own LogShipper stream (bounded buffer, retried calls)
//! ```
//!
//! A follow ends when the API server closes it (pod deleted, container restarted, the
//! server's timeout); it is opened again from the last line taken. `sinceTime` has whole
//! seconds only, so lines at or before the cursor are skipped: the cursor is the last
//! line's timestamp (nanoseconds) and how many lines carried exactly that timestamp. The
//! cursors are kept in the state directory, so a restarted agent does not ship a line twice
//! and does ship what the pods wrote while it was down (the kubelet keeps it). The cursor
//! moves when a line is handed to the shipper, not when CloudWatch accepts it: lines still
//! buffered when the agent is killed, or dropped by the buffer bound (counted), are lost;
//! a graceful stop flushes.
//!
//! These logs go only to the customer's own account, never to the control plane, so they
//! are shipped as written (no redaction).

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use futures::{AsyncBufReadExt, StreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::LogParams;
use kube::runtime::{WatchStreamExt, watcher};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::cloudwatch::LogShipper;
use crate::render::labels::{COMPUTE_PLANE_LABEL, managed_selector};
use crate::retry::{Retry, RetryPolicy};

/// Per container stream: what may wait in memory for CloudWatch.
const STREAM_BUFFER_BYTES: usize = 2 * 1024 * 1024;
/// How often the cursors are written to disk when they moved.
const SAVE_EVERY: Duration = Duration::from_secs(2);
/// File in the state directory.
const CURSORS_FILE: &str = "pod-log-cursors.json";

/// Where to read and where to ship.
#[derive(Debug, Clone)]
pub struct PodLogSettings {
    /// Namespace of the Presto clusters.
    pub namespace: String,
    /// Only pods labelled with this compute plane are followed.
    pub compute_plane_id: String,
    /// The agent's state directory (for the cursors).
    pub state_dir: PathBuf,
    /// Backoff between attempts to follow a log again.
    pub retry: RetryPolicy,
}

/// The last line shipped of one container.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Cursor {
    /// Nanoseconds since the epoch of the last line shipped.
    at_ns: i128,
    /// How many lines shipped carried exactly `at_ns`.
    count: u32,
}

impl Cursor {
    /// Whether a line stamped `at_ns` is new, given `seen_at` lines already read at that
    /// exact time in this pass; moves the cursor if so.
    fn admit(&mut self, at_ns: i128, seen_at: &mut (i128, u32)) -> bool {
        if seen_at.0 == at_ns {
            seen_at.1 += 1;
        } else {
            *seen_at = (at_ns, 1);
        }
        if at_ns < self.at_ns || (at_ns == self.at_ns && seen_at.1 <= self.count) {
            return false;
        }
        if at_ns == self.at_ns {
            self.count += 1;
        } else {
            *self = Cursor { at_ns, count: 1 };
        }
        true
    }
}

/// Every container's cursor, saved to the state directory.
struct Cursors {
    path: PathBuf,
    map: Mutex<(HashMap<String, Cursor>, bool)>,
}

impl Cursors {
    fn open(dir: &Path) -> Self {
        let path = dir.join(CURSORS_FILE);
        let map = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                tracing::warn!(path = %path.display(), "ignoring unreadable pod log cursors: {e}");
                HashMap::new()
            }),
            Err(_) => HashMap::new(),
        };
        Self {
            path,
            map: Mutex::new((map, false)),
        }
    }

    fn lock(&self) -> MutexGuard<'_, (HashMap<String, Cursor>, bool)> {
        self.map.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn get(&self, key: &str) -> Cursor {
        self.lock().0.get(key).copied().unwrap_or_default()
    }

    fn set(&self, key: &str, cursor: Cursor) {
        let mut g = self.lock();
        g.0.insert(key.to_owned(), cursor);
        g.1 = true;
    }

    fn forget(&self, key: &str) {
        let mut g = self.lock();
        if g.0.remove(key).is_some() {
            g.1 = true;
        }
    }

    /// Writes the file if anything moved since the last save.
    fn save(&self) {
        let bytes = {
            let mut g = self.lock();
            if !g.1 {
                return;
            }
            g.1 = false;
            serde_json::to_vec(&g.0)
        };
        let result = bytes
            .map_err(std::io::Error::other)
            .and_then(|b| tether_shared::files::write_private(&self.path, &b));
        if let Err(e) = result {
            tracing::warn!(path = %self.path.display(), "cannot save pod log cursors: {e}");
            self.lock().1 = true;
        }
    }
}

/// Follows the logs of every Tether-managed pod of this compute plane until `stop`.
pub async fn run(
    client: kube::Client,
    settings: PodLogSettings,
    parent: LogShipper,
    mut stop: watch::Receiver<bool>,
) {
    let pods: Api<Pod> = Api::namespaced(client, &settings.namespace);
    let cursors = Arc::new(Cursors::open(&settings.state_dir));
    let selector = format!(
        "{},{COMPUTE_PLANE_LABEL}={}",
        managed_selector(),
        settings.compute_plane_id
    );
    let events = watcher(pods.clone(), watcher::Config::default().labels(&selector))
        .default_backoff()
        .applied_objects();
    let mut events = std::pin::pin!(events);
    let mut followers: JoinSet<String> = JoinSet::new();
    let mut following: HashSet<String> = HashSet::new();
    let mut save = tokio::time::interval(SAVE_EVERY);
    let for_followers = stop.clone();
    tracing::info!(log_group = ?parent, %selector, "shipping Presto pod logs");
    loop {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => break,
            _ = save.tick() => cursors.save(),
            Some(done) = followers.join_next(), if !followers.is_empty() => {
                if let Ok(key) = done {
                    following.remove(&key);
                }
            }
            event = events.next() => match event {
                Some(Ok(pod)) => {
                    for (name, container) in runnable_containers(&pod) {
                        let key = format!("{name}/{container}");
                        if !following.insert(key.clone()) {
                            continue;
                        }
                        let stream = format!("presto/{key}");
                        let shipper = match parent.for_stream(stream, STREAM_BUFFER_BYTES) {
                            Ok(s) => s,
                            Err(e) => {
                                tracing::warn!(pod = %name, %container, "cannot ship pod logs: {e}");
                                continue;
                            }
                        };
                        let follower = Follower {
                            pods: pods.clone(),
                            pod: name.clone(),
                            uid: pod.metadata.uid.clone(),
                            container,
                            key,
                            shipper,
                            cursors: cursors.clone(),
                            retry: settings.retry,
                        };
                        followers.spawn(follower.run(for_followers.clone()));
                    }
                }
                Some(Err(e)) => tracing::warn!("watching pods for their logs: {e}"),
                None => break,
            },
        }
    }
    while let Ok(Some(_)) =
        tokio::time::timeout(Duration::from_secs(5), followers.join_next()).await
    {}
    followers.abort_all();
    cursors.save();
}

/// `(pod, container)` for each container of a pod that has started (its log exists).
fn runnable_containers(pod: &Pod) -> Vec<(String, String)> {
    let Some(name) = pod.metadata.name.clone() else {
        return Vec::new();
    };
    if pod.metadata.deletion_timestamp.is_some() {
        return Vec::new();
    }
    pod.status
        .iter()
        .flat_map(|s| s.container_statuses.iter().flatten())
        // Running containers only: a stopped one has nothing new to follow.
        .filter(|c| c.state.as_ref().is_some_and(|s| s.running.is_some()))
        .map(|c| (name.clone(), c.name.clone()))
        .collect()
}

/// Follows one container's log until its pod is gone.
struct Follower {
    pods: Api<Pod>,
    pod: String,
    uid: Option<String>,
    container: String,
    /// `pod/container`: the cursor's key.
    key: String,
    shipper: LogShipper,
    cursors: Arc<Cursors>,
    retry: RetryPolicy,
}

/// Why one follow ended.
enum Ended {
    /// The stream closed after lines; the pod may be gone or the server timed out.
    Closed,
    /// The stream closed without a line (a stopped container): back off.
    Empty,
    /// The agent is stopping.
    Stopped,
}

impl Follower {
    async fn run(self, mut stop: watch::Receiver<bool>) -> String {
        let mut retry = Retry::new(self.retry);
        loop {
            match self.follow_once(&mut stop).await {
                Ok(Ended::Stopped) => break,
                Ok(Ended::Closed) => retry.reset(),
                Ok(Ended::Empty) => {}
                Err(e) => {
                    tracing::debug!(pod = %self.pod, container = %self.container, "following pod log: {e}")
                }
            }
            if !self.pod_exists().await {
                self.cursors.forget(&self.key);
                break;
            }
            let delay = retry.next_delay();
            if tokio::time::timeout(delay, stop.wait_for(|s| *s))
                .await
                .is_ok()
            {
                break;
            }
        }
        if let Err(e) = self.shipper.flush(Duration::from_secs(5)).await {
            tracing::warn!(stream = %self.shipper.log_stream(), "pod log lines not yet shipped: {e}");
        }
        self.key
    }

    /// Whether the pod (the same one, by uid) still exists; on an API error, assume so.
    async fn pod_exists(&self) -> bool {
        match self.pods.get_opt(&self.pod).await {
            Ok(Some(p)) => self.uid.is_none() || p.metadata.uid == self.uid,
            Ok(None) => false,
            Err(_) => true,
        }
    }

    async fn follow_once(&self, stop: &mut watch::Receiver<bool>) -> Result<Ended, kube::Error> {
        let mut cursor = self.cursors.get(&self.key);
        let since = (cursor.at_ns > 0)
            .then(|| jiff::Timestamp::from_second((cursor.at_ns / 1_000_000_000) as i64).ok())
            .flatten();
        let params = LogParams {
            container: Some(self.container.clone()),
            follow: true,
            timestamps: true,
            since_time: since,
            ..LogParams::default()
        };
        let reader = self.pods.log_stream(&self.pod, &params).await?;
        let mut reader = std::pin::pin!(reader);
        let mut seen_at = (0_i128, 0_u32);
        let mut buf = Vec::new();
        let mut read_any = false;
        loop {
            buf.clear();
            // Bytes up to a newline: a line that is not UTF-8 is shipped lossily rather
            // than stopping the container's log for good.
            let n = tokio::select! {
                _ = stop.wait_for(|s| *s) => return Ok(Ended::Stopped),
                n = reader.read_until(b'\n', &mut buf) => n.map_err(kube::Error::ReadEvents)?,
            };
            if n == 0 {
                return Ok(if read_any {
                    Ended::Closed
                } else {
                    Ended::Empty
                });
            }
            read_any = true;
            let line = String::from_utf8_lossy(&buf);
            let line = line.trim_end_matches(['\n', '\r']);
            let (at_ns, text) = split_timestamp(line);
            if cursor.admit(at_ns, &mut seen_at) {
                self.shipper
                    .push((at_ns / 1_000_000) as i64, text.to_owned());
                self.cursors.set(&self.key, cursor);
            }
        }
    }
}

/// `(nanoseconds, text)` of a `timestamps=true` line; a line without a readable timestamp
/// is stamped now.
fn split_timestamp(line: &str) -> (i128, &str) {
    line.split_once(' ')
        .and_then(|(ts, rest)| {
            let at: jiff::Timestamp = ts.parse().ok()?;
            Some((at.as_nanosecond(), rest))
        })
        .unwrap_or_else(|| (jiff::Timestamp::now().as_nanosecond(), line))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_at_or_before_the_cursor_are_skipped_once() {
        // Shipped so far: two lines at t=5.
        let mut c = Cursor { at_ns: 5, count: 2 };
        let mut seen = (0, 0);
        // A reopened follow from the whole second sends t=3, t=5, t=5, t=5, t=7.
        let admitted: Vec<bool> = [3, 5, 5, 5, 7]
            .iter()
            .map(|t| c.admit(*t, &mut seen))
            .collect();
        assert_eq!(admitted, [false, false, false, true, true]);
        assert_eq!(c, Cursor { at_ns: 7, count: 1 });
    }

    #[test]
    fn timestamps_are_split_off_with_nanoseconds() {
        let (ns, text) = split_timestamp("2026-11-26T09:27:38.123456789Z INFO\tmain\tstarted");
        assert_eq!(ns % 1_000_000_000, 123_456_789);
        assert_eq!(text, "INFO\tmain\tstarted");
        let (_, text) = split_timestamp("no timestamp here");
        assert_eq!(text, "no timestamp here");
    }

    #[test]
    fn cursors_survive_a_restart() {
        let dir = tempfile::tempdir().expect("tempdir");
        let c = Cursors::open(dir.path());
        c.set(
            "p/presto",
            Cursor {
                at_ns: 42,
                count: 3,
            },
        );
        c.save();
        let again = Cursors::open(dir.path());
        assert_eq!(
            again.get("p/presto"),
            Cursor {
                at_ns: 42,
                count: 3
            }
        );
        again.forget("p/presto");
        again.save();
        assert_eq!(Cursors::open(dir.path()).get("p/presto"), Cursor::default());
    }
}
