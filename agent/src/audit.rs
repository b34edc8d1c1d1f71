//! The customer's own record of what the vendor did: every remote action (enrollment, a
//! session opened or ended, a desired-state document received, accepted, applied or
//! refused, a certificate renewed, a signing key pinned or rotated) as one JSON line in
//! `STATE_DIR/audit.log`, append-only (0600), rotated by size into `audit.log.1` …
//! `audit.log.5`, so it never fills the disk and the newest record is always in
//! `audit.log`.
//!
//! With CloudWatch configured, every record also goes to the stream `audit/<agent stream>`
//! of the customer's log group ([`ship_to`]), in the customer's own account.
//!
//! One log per process, set up by [`init`]; [`record`] before that (or in unit tests) writes
//! nothing. A failed write is logged and never stops the agent.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

/// File name inside the state dir.
pub const AUDIT_FILE: &str = "audit.log";
/// Size at which the log is rotated.
pub const DEFAULT_MAX_BYTES: u64 = 10 * 1024 * 1024;
/// Rotated files kept (`audit.log.1` is the newest).
pub const KEEP: usize = 5;

static LOG: OnceLock<AuditLog> = OnceLock::new();
/// The CloudWatch stream records also go to, if any.
static STREAM: OnceLock<crate::cloudwatch::LogShipper> = OnceLock::new();

/// The CloudWatch stream of the audit records beside the agent's own `stream`.
pub fn stream_name(agent_stream: &str) -> String {
    format!("audit/{agent_stream}")
}

/// An append-only JSON-lines file, rotated by size.
#[derive(Debug)]
pub struct AuditLog {
    path: PathBuf,
    max_bytes: u64,
    file: Mutex<Option<std::fs::File>>,
}

impl AuditLog {
    /// The log in `state_dir`, rotated past `max_bytes`.
    pub fn new(state_dir: &Path, max_bytes: u64) -> Self {
        Self {
            path: state_dir.join(AUDIT_FILE),
            max_bytes,
            file: Mutex::new(None),
        }
    }

    /// Appends one record: `{"time", "action", …fields}`.
    pub fn append(&self, action: &str, fields: serde_json::Value) {
        let mut line = serde_json::Map::new();
        line.insert(
            "time".into(),
            tether_shared::timestamps::rfc3339_from_ms(tether_shared::timestamps::now_unix_ms())
                .unwrap_or_default()
                .into(),
        );
        line.insert("action".into(), action.into());
        if let serde_json::Value::Object(f) = fields {
            line.extend(f);
        }
        let mut text = serde_json::Value::Object(line).to_string();
        if let Some(stream) = STREAM.get() {
            stream.push(tether_shared::timestamps::now_unix_ms(), text.clone());
        }
        text.push('\n');
        if let Err(e) = self.write(text.as_bytes()) {
            tracing::error!(file = %self.path.display(), "cannot write the audit log: {e}");
        }
    }

    fn write(&self, bytes: &[u8]) -> std::io::Result<()> {
        let mut guard = self.file.lock().unwrap_or_else(|p| p.into_inner());
        if guard.is_none() {
            *guard = Some(open_append(&self.path)?);
        }
        let size = guard
            .as_ref()
            .map_or(Ok(0), |f| f.metadata().map(|m| m.len()))?;
        if size > 0 && size + bytes.len() as u64 > self.max_bytes {
            *guard = None;
            rotate(&self.path)?;
            *guard = Some(open_append(&self.path)?);
        }
        match guard.as_mut() {
            Some(f) => {
                f.write_all(bytes)?;
                f.sync_data()
            }
            None => Ok(()),
        }
    }
}

fn open_append(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
}

/// `audit.log.4` → `.5`, …, `audit.log` → `.1`; the oldest beyond [`KEEP`] goes.
fn rotate(path: &Path) -> std::io::Result<()> {
    let numbered = |n: usize| PathBuf::from(format!("{}.{n}", path.display()));
    for n in (1..KEEP).rev() {
        match std::fs::rename(numbered(n), numbered(n + 1)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    std::fs::rename(path, numbered(1))
}

/// Sets up the process's audit log in `state_dir` (once; later calls change nothing).
pub fn init(state_dir: &Path, max_bytes: u64) {
    let _ = LOG.set(AuditLog::new(state_dir, max_bytes));
}

/// Sends every later record to the audit stream beside `agent` (the agent's own CloudWatch
/// shipper): `audit/<its stream>` in the same log group, with its own buffer (once).
pub fn ship_to(agent: &crate::cloudwatch::LogShipper) {
    if STREAM.get().is_some() {
        return;
    }
    match agent.for_stream(stream_name(agent.log_stream()), AUDIT_STREAM_BUFFER) {
        Ok(s) => {
            let _ = STREAM.set(s);
        }
        Err(e) => tracing::error!("cannot ship the audit log to CloudWatch: {e}"),
    }
}

/// Waits until the audit stream holds every record (at most `timeout`).
pub async fn flush(timeout: std::time::Duration) {
    if let Some(s) = STREAM.get()
        && let Err(e) = s.flush(timeout).await
    {
        tracing::warn!("not every audit record reached CloudWatch Logs: {e}");
    }
}

/// Most bytes of audit records buffered for CloudWatch (the file has them all).
const AUDIT_STREAM_BUFFER: usize = 4 * 1024 * 1024;

/// Records `action` with `fields` (a JSON object) in the process's audit log.
pub fn record(action: &str, fields: serde_json::Value) {
    if let Some(log) = LOG.get() {
        log.append(action, fields);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_json_lines_and_rotate_by_size() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = AuditLog::new(dir.path(), 400);
        for generation in 0..20 {
            log.append(
                "desired_state.accepted",
                serde_json::json!({"generation": generation}),
            );
        }
        let current = std::fs::read_to_string(dir.path().join(AUDIT_FILE)).expect("log");
        let last: serde_json::Value =
            serde_json::from_str(current.lines().last().expect("a line")).expect("json");
        assert_eq!(last["action"], "desired_state.accepted");
        assert_eq!(last["generation"], 19, "the newest record is in audit.log");
        assert!(last["time"].as_str().is_some_and(|t| t.ends_with('Z')));
        assert!(current.len() <= 400);
        assert!(dir.path().join("audit.log.1").exists());
        assert!(
            !dir.path().join(format!("audit.log.{}", KEEP + 1)).exists(),
            "at most {KEEP} rotated files"
        );
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join(AUDIT_FILE))
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
