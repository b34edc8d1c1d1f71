//! The pod `log` subresource: `GET /api/v1/namespaces/{ns}/pods/{pod}/log`.
//!
//! Each container's output is kept as timestamped lines (written by the controller when a
//! pod starts, and by tests through [`super::KubeStandIn::append_pod_log`]). The parameters
//! the API server takes are honoured: `container` (required when the pod has more than
//! one), `timestamps` (each line prefixed with its RFC 3339 time with nanoseconds and a
//! space), `sinceTime` (whole seconds, inclusive), `sinceSeconds`, `tailLines`, `limitBytes`
//! and `follow` (the response stays open and new lines are sent as they are written, until
//! the pod is deleted or the stand-in stops).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{StatusCode, header};
use axum::response::Response;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::sync::watch;

use super::key::ObjectKey;
use super::resources;
use super::server::Shared;
use super::status::{ApiError, ApiResult};

/// (namespace, pod, container).
type LogKey = (String, String, String);

#[derive(Clone)]
struct Line {
    at: OffsetDateTime,
    text: String,
}

/// Every container's lines, and a counter that moves on every write (followers wait on it).
pub(crate) struct PodLogs {
    lines: Mutex<HashMap<LogKey, Vec<Line>>>,
    written: watch::Sender<u64>,
}

impl Default for PodLogs {
    fn default() -> Self {
        Self {
            lines: Mutex::default(),
            written: watch::channel(0).0,
        }
    }
}

impl PodLogs {
    fn lock(&self) -> MutexGuard<'_, HashMap<LogKey, Vec<Line>>> {
        self.lines.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Appends one line (without its newline) to a container's log, stamped now.
    pub fn append(&self, namespace: &str, pod: &str, container: &str, text: &str) {
        let key = (namespace.to_owned(), pod.to_owned(), container.to_owned());
        let line = Line {
            at: OffsetDateTime::now_utc(),
            text: text.replace('\n', " "),
        };
        self.lock().entry(key).or_default().push(line);
        self.written.send_modify(|n| *n += 1);
    }

    /// Forgets a deleted pod's logs and wakes its followers, which then end.
    pub fn remove_pod(&self, namespace: &str, pod: &str) {
        self.lock()
            .retain(|(ns, p, _), _| !(ns == namespace && p == pod));
        self.written.send_modify(|n| *n += 1);
    }

    /// Lines from index `from` on.
    fn lines_from(&self, key: &LogKey, from: usize) -> Vec<Line> {
        self.lock()
            .get(key)
            .map(|l| l.get(from..).unwrap_or_default().to_vec())
            .unwrap_or_default()
    }
}

/// The parameters of a log request.
#[derive(Default)]
struct LogParams {
    container: Option<String>,
    follow: bool,
    timestamps: bool,
    since: Option<OffsetDateTime>,
    tail_lines: Option<usize>,
    limit_bytes: Option<usize>,
}

fn truthy(v: &str) -> bool {
    matches!(v, "true" | "1")
}

impl LogParams {
    fn parse(query: Option<&str>) -> Result<Self, ApiError> {
        let mut p = LogParams::default();
        let pairs: Vec<(String, String)> = match query {
            Some(q) => serde_urlencoded_pairs(q)?,
            None => Vec::new(),
        };
        let number = |k: &str, v: &str| {
            v.parse::<i64>()
                .ok()
                .filter(|n| *n >= 0)
                .ok_or_else(|| ApiError::bad_request(format!("{k}: invalid value {v:?}")))
        };
        for (k, v) in pairs {
            match k.as_str() {
                "container" => p.container = Some(v),
                "follow" => p.follow = truthy(&v),
                "timestamps" => p.timestamps = truthy(&v),
                "sinceTime" => {
                    let t = OffsetDateTime::parse(&v, &Rfc3339).map_err(|_| {
                        ApiError::bad_request(format!("sinceTime: invalid value {v:?}"))
                    })?;
                    p.since = Some(t);
                }
                "sinceSeconds" => {
                    let s = number(&k, &v)?;
                    if s == 0 {
                        return Err(ApiError::bad_request(
                            "sinceSeconds: must be greater than 0",
                        ));
                    }
                    p.since = Some(OffsetDateTime::now_utc() - Duration::from_secs(s as u64));
                }
                "tailLines" => p.tail_lines = Some(number(&k, &v)? as usize),
                "limitBytes" => p.limit_bytes = Some(number(&k, &v)? as usize),
                _ => {}
            }
        }
        Ok(p)
    }
}

fn serde_urlencoded_pairs(q: &str) -> Result<Vec<(String, String)>, ApiError> {
    q.split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            let decode = |s: &str| super::route::percent_decode(&s.replace('+', " "));
            match (decode(k), decode(v)) {
                (Some(k), Some(v)) => Ok((k, v)),
                _ => Err(ApiError::bad_request(format!("malformed query {q:?}"))),
            }
        })
        .collect()
}

/// One line as sent: `[timestamp ]text\n`.
fn render(line: &Line, timestamps: bool) -> String {
    if timestamps {
        let at = line.at.format(&Rfc3339).unwrap_or_default();
        format!("{at} {}\n", line.text)
    } else {
        format!("{}\n", line.text)
    }
}

/// The container a request reads: the named one, or the only one.
fn container_of(
    pod_name: &str,
    pod: &serde_json::Value,
    asked: Option<String>,
) -> Result<String, ApiError> {
    let names: Vec<&str> = pod["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["name"].as_str())
        .collect();
    match asked {
        Some(c) if names.contains(&c.as_str()) => Ok(c),
        Some(c) => Err(ApiError::bad_request(format!(
            "container {c} is not valid for pod {pod_name}"
        ))),
        None => match names.as_slice() {
            [only] => Ok((*only).to_owned()),
            _ => Err(ApiError::bad_request(format!(
                "a container name must be specified for pod {pod_name}, choose one of: [{}]",
                names.join(" ")
            ))),
        },
    }
}

/// Answers a log request.
pub(crate) fn serve(
    shared: &Arc<Shared>,
    namespace: &str,
    pod: &str,
    query: Option<&str>,
) -> ApiResult {
    let params = LogParams::parse(query)?;
    let key = ObjectKey::new("v1", "pods", Some(namespace), pod);
    let pods = resources::find("v1", "pods").ok_or_else(ApiError::no_route)?;
    let object = shared
        .store
        .get(&key)
        .ok_or_else(|| ApiError::not_found(pods, pod))?;
    let container = container_of(pod, &object, params.container.clone())?;
    let log_key: LogKey = (namespace.to_owned(), pod.to_owned(), container);

    let mut written = shared.logs.written.subscribe();
    written.mark_unchanged();
    let mut lines = shared.logs.lines_from(&log_key, 0);
    let next = lines.len();
    if let Some(since) = params.since {
        let since = since.replace_nanosecond(0).unwrap_or(since);
        lines.retain(|l| l.at >= since);
    }
    if let Some(n) = params.tail_lines {
        let skip = lines.len().saturating_sub(n);
        lines.drain(..skip);
    }
    let mut first = String::new();
    for l in &lines {
        first.push_str(&render(l, params.timestamps));
    }
    let mut follow = Follow {
        shared: shared.clone(),
        key,
        log_key,
        next,
        timestamps: params.timestamps,
        budget: params.limit_bytes.unwrap_or(usize::MAX),
        written,
    };
    let first = follow.limit(first);
    let response = Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "text/plain");
    let body = if params.follow && follow.budget > 0 {
        // The first chunk, then whatever is written until the pod goes away.
        let rest = futures::stream::unfold(follow, |mut f| async move {
            let chunk = f.next_chunk().await?;
            Some((Ok::<_, std::io::Error>(chunk), f))
        });
        let first = futures::stream::iter((!first.is_empty()).then_some(Ok(first)));
        Body::from_stream(futures::StreamExt::chain(first, rest))
    } else {
        Body::from(first)
    };
    response
        .body(body)
        .map_err(|e| ApiError::new(500, "InternalError", e.to_string()))
}

/// A followed log: where it is and what it may still send.
struct Follow {
    shared: Arc<Shared>,
    key: ObjectKey,
    log_key: LogKey,
    /// Index of the next line to send.
    next: usize,
    timestamps: bool,
    /// `limitBytes` left.
    budget: usize,
    written: watch::Receiver<u64>,
}

impl Follow {
    /// `text` cut to the bytes `limitBytes` still allows.
    fn limit(&mut self, text: String) -> Bytes {
        let mut bytes = Bytes::from(text);
        bytes.truncate(self.budget);
        self.budget -= bytes.len();
        bytes
    }

    /// The next lines written, or `None` once the pod is gone, the budget spent or the
    /// stand-in stopping.
    async fn next_chunk(&mut self) -> Option<Bytes> {
        let mut stop = self.shared.shutdown.clone();
        loop {
            if self.budget == 0 || *stop.borrow() {
                return None;
            }
            tokio::select! {
                r = self.written.changed() => r.ok()?,
                _ = stop.changed() => return None,
            }
            // The pod is gone: the stream ends.
            self.shared.store.get(&self.key)?;
            let new = self.shared.logs.lines_from(&self.log_key, self.next);
            if new.is_empty() {
                continue;
            }
            self.next += new.len();
            let text: String = new.iter().map(|l| render(l, self.timestamps)).collect();
            return Some(self.limit(text));
        }
    }
}
