//! Watches: a chunked `application/json` stream of `{"type": …, "object": …}` lines, from a
//! resourceVersion (or from a snapshot of the current objects), until `timeoutSeconds`, the
//! client leaving, or the server shutting down.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;

use super::handlers::Call;
use super::meta;
use super::resources::ResourceType;
use super::selector::{FieldSelector, LabelSelector};
use super::server::Shared;
use super::status::{ApiError, ApiResult};
use super::store::{Event, EventKind};
use super::table;

/// Watches end after this when the client gives no `timeoutSeconds`.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);

enum Start {
    /// ADDED for every current object first (`resourceVersion` unset or `0`, or
    /// `sendInitialEvents`); with `end_marker`, then a BOOKMARK marking the end of them.
    Snapshot { end_marker: bool },
    /// Changes after this resourceVersion.
    From(u64),
}

struct Watch {
    shared: Arc<Shared>,
    rt: &'static ResourceType,
    api_version: String,
    /// Objects go out as one-row Tables (`kubectl get -w`), with this `includeObject`.
    table: Option<Option<String>>,
    namespace: Option<String>,
    name: Option<String>,
    labels: LabelSelector,
    fields: FieldSelector,
    bookmarks: bool,
    deadline: Instant,
}

/// Starts a watch for the call's type and namespace (one object when `name` is given).
pub(crate) fn serve(call: &Call<'_>, name: Option<&str>) -> ApiResult {
    let p = &call.params;
    let start = match p.resource_version.as_deref() {
        _ if p.send_initial_events => Start::Snapshot { end_marker: true },
        None | Some("") | Some("0") => Start::Snapshot { end_marker: false },
        Some(rv) => Start::From(
            rv.parse()
                .map_err(|_| ApiError::bad_request(format!("invalid resource version: {rv}")))?,
        ),
    };
    let timeout = p
        .timeout_seconds
        .filter(|s| *s > 0)
        .map_or(DEFAULT_TIMEOUT, Duration::from_secs);
    let w = Watch {
        shared: call.shared.clone(),
        rt: call.rt,
        api_version: call.rt.api_version(),
        table: table::wanted(call.headers).then(|| p.include_object.clone()),
        namespace: call.namespace.map(str::to_owned),
        name: name.map(str::to_owned),
        labels: p.labels.clone(),
        fields: p.fields.clone(),
        bookmarks: p.bookmarks,
        deadline: Instant::now() + timeout,
    };
    let (tx, rx) = mpsc::channel::<Result<Bytes, Infallible>>(256);
    tokio::spawn(w.run(start, tx));
    let mut resp = Response::new(Body::from_stream(ReceiverStream::new(rx)));
    *resp.status_mut() = StatusCode::OK;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(resp)
}

type Tx = mpsc::Sender<Result<Bytes, Infallible>>;

async fn send(tx: &Tx, kind: &str, object: &Value) -> bool {
    let line = format!("{}\n", json!({"type": kind, "object": object}));
    tx.send(Ok(Bytes::from(line))).await.is_ok()
}

impl Watch {
    /// Sends one object event, as a Table row if the client asked for Tables.
    async fn send_object(&self, tx: &Tx, kind: &str, obj: &Value) -> bool {
        match &self.table {
            None => send(tx, kind, obj).await,
            Some(include) => {
                let meta = json!({"resourceVersion": obj["metadata"]["resourceVersion"]});
                let t = table::render(self.rt, std::slice::from_ref(obj), meta, include.as_deref());
                send(tx, kind, &t).await
            }
        }
    }

    fn selects(&self, obj: &Value) -> bool {
        self.labels.matches(obj) && self.fields.matches(obj)
    }

    fn in_scope(&self, e: &Event) -> bool {
        self.namespace
            .as_ref()
            .is_none_or(|ns| e.key.namespace.as_ref() == Some(ns))
            && self.name.as_ref().is_none_or(|n| &e.key.name == n)
    }

    /// The event a watcher with these selectors sees: an object moving into the selection is
    /// ADDED, one moving out is DELETED.
    fn translate<'e>(&self, e: &'e Event) -> Option<(&'static str, &'e Value)> {
        if !self.in_scope(e) {
            return None;
        }
        let now = self.selects(&e.object);
        let kind = match e.kind {
            EventKind::Added | EventKind::Deleted => now.then_some(e.kind)?,
            EventKind::Modified => {
                let before = e.prev.as_ref().is_some_and(|p| self.selects(p));
                match (before, now) {
                    (true, true) => EventKind::Modified,
                    (false, true) => EventKind::Added,
                    (true, false) => EventKind::Deleted,
                    (false, false) => return None,
                }
            }
        };
        Some((kind.as_str(), &e.object))
    }

    fn bookmark(&self, rv: u64, initial_end: bool) -> Value {
        let mut m = json!({"resourceVersion": rv.to_string()});
        if initial_end {
            m["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        json!({"kind": self.rt.kind, "apiVersion": self.api_version, "metadata": m})
    }

    async fn run(self, start: Start, tx: Tx) {
        let store = &self.shared.store;
        let mut latest = store.subscribe();
        let mut shutdown = self.shared.shutdown.clone();
        if *shutdown.borrow_and_update() {
            return;
        }
        let mut cursor = match start {
            Start::From(rv) => rv,
            Start::Snapshot { end_marker } => {
                let (items, rv) =
                    store.list(&self.api_version, self.rt.plural, self.namespace.as_deref());
                let named = |o: &Value| self.name.as_ref().is_none_or(|n| meta::name(o) == n);
                for obj in items.iter().filter(|o| named(o) && self.selects(o)) {
                    if !self.send_object(&tx, "ADDED", obj).await {
                        return;
                    }
                }
                if end_marker && !send(&tx, "BOOKMARK", &self.bookmark(rv, true)).await {
                    return;
                }
                rv
            }
        };
        loop {
            latest.borrow_and_update();
            match store.events_since(&self.api_version, self.rt.plural, cursor) {
                Err(oldest) => {
                    let status = ApiError::expired(cursor, oldest).to_status();
                    send(&tx, "ERROR", &status).await;
                    return;
                }
                Ok((events, reached)) => {
                    for e in &events {
                        if let Some((kind, obj)) = self.translate(e)
                            && !self.send_object(&tx, kind, obj).await
                        {
                            return;
                        }
                    }
                    cursor = reached;
                }
            }
            tokio::select! {
                changed = latest.changed() => if changed.is_err() { return },
                () = tokio::time::sleep_until(self.deadline) => {
                    if self.bookmarks {
                        send(&tx, "BOOKMARK", &self.bookmark(cursor, false)).await;
                    }
                    return;
                }
                _ = shutdown.changed() => return,
                () = tx.closed() => return,
            }
        }
    }
}
