//! Tenant-wide settings: one change that reaches every agent of a tenant, over the real
//! control plane and real mTLS sessions (the agent's transport code).

use std::time::Duration;

use serde_json::json;
use tether_proto::v1::{AgentMessage, ControlMessage, DesiredState, control_message};
use tether_tests::bench::{self, sim};
use tether_tests::harness::grpc::hello;
use tether_tests::harness::{ControlPlaneOptions, ControlPlaneProc, TenantFixture, init};
use tokio::sync::mpsc;

struct Session {
    _tx: mpsc::Sender<AgentMessage>,
    inbound: tonic::Streaming<ControlMessage>,
}

async fn open(url: &http::Uri, id: &sim::Identity) -> Session {
    let mut c = sim::channel(url, id).await.expect("mTLS channel");
    let (tx, rx) = mpsc::channel(4);
    tx.send(hello()).await.expect("hello");
    let inbound = c
        .session(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .expect("session")
        .into_inner();
    Session { _tx: tx, inbound }
}

/// The next desired-state document within `within`, if any.
async fn next_doc(s: &mut Session, within: Duration) -> Option<DesiredState> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let m = tokio::time::timeout_at(deadline, s.inbound.message())
            .await
            .ok()?
            .expect("stream")?;
        if let Some(control_message::Kind::DesiredState(d)) = m.kind {
            return Some(d);
        }
    }
}

fn mode(d: &DesiredState) -> Option<&str> {
    d.settings.get("query_text_redaction").map(String::as_str)
}

/// Acceptance (issue 7, fan-out): `PUT /tenants/{t}/settings` gives every compute plane
/// of the tenant a new generation and sends each live agent its new document at once; a
/// compute plane's own setting wins over the tenant's; an agent that was away gets it on
/// reconnect. Bad input, a viewer and another tenant change nothing and push nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_tenant_wide_change_reaches_every_agent() {
    init();
    let cp = ControlPlaneProc::start(ControlPlaneOptions::default()).await;
    let api = cp.api();
    let ids = bench::provision(&cp, 3, "test").await;
    assert_eq!(ids.len(), 3);
    let tenant = ids[0].tenant_id.clone();
    let url = tether_agent::transport::parse_control_plane_url(&cp.grpc_url()).expect("url");
    let mut sessions = Vec::new();
    for id in &ids {
        let mut s = open(&url, id).await;
        let first = next_doc(&mut s, Duration::from_secs(10))
            .await
            .expect("document on start");
        assert_eq!(mode(&first), None);
        sessions.push((s, first.generation));
    }

    // The first compute plane sets its own mode.
    api.ok_put(
        &format!("/compute-planes/{}/settings", ids[0].cp_id),
        &json!({"query_text_redaction": "full"}),
    )
    .await;
    let own = next_doc(&mut sessions[0].0, Duration::from_secs(5))
        .await
        .expect("pushed");
    assert_eq!(mode(&own), Some("full"));
    sessions[0].1 = own.generation;

    let path = format!("/tenants/{tenant}/settings");
    let r = api
        .ok_put(&path, &json!({"query_text_redaction": "none"}))
        .await;
    assert_eq!(r["compute_planes"], 3, "{r}");
    assert_eq!(r["pushed"], 3, "{r}");
    for (i, (s, generation)) in sessions.iter_mut().enumerate() {
        let d = next_doc(s, Duration::from_secs(5)).await.expect("pushed");
        assert!(d.generation > *generation, "a new generation");
        *generation = d.generation;
        let want = if i == 0 { "full" } else { "none" };
        assert_eq!(mode(&d), Some(want), "compute plane {i}");
    }
    let shown = api.ok_get("/tenants").await;
    let t = shown["tenants"]
        .as_array()
        .and_then(|ts| ts.iter().find(|t| t["id"] == tenant.as_str()))
        .expect("tenant listed")
        .clone();
    assert_eq!(t["settings"], json!({"query_text_redaction": "none"}));

    // Refused: bad value, a viewer, another tenant's admin. Nothing changes, nothing is sent.
    let (status, body) = api
        .put(&path, &json!({"query_text_redaction": "loud"}))
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["field"], "query_text_redaction", "{body}");
    let (status, body) = api.put(&path, &json!({"verbosity": 3})).await;
    assert_eq!(status, 400, "{body}");
    let viewer = api
        .ok_post(
            &format!("/tenants/{tenant}/tokens"),
            &json!({"role": "viewer"}),
        )
        .await["token"]
        .as_str()
        .expect("token")
        .to_owned();
    let (status, _) = api
        .as_token(&viewer)
        .put(&path, &json!({"query_text_redaction": "full"}))
        .await;
    assert_eq!(status, 403);
    let other = TenantFixture::create(&api, "other").await;
    let (status, _) = api
        .as_token(&other.admin_token)
        .put(&path, &json!({"query_text_redaction": "full"}))
        .await;
    assert_eq!(
        status, 404,
        "another tenant's settings are not even visible"
    );
    for (s, _) in &mut sessions {
        assert!(
            next_doc(s, Duration::from_millis(500)).await.is_none(),
            "a refused change pushes nothing"
        );
    }

    // An agent away during a change gets it when it comes back.
    let (away, _) = sessions.pop().expect("three");
    drop(away);
    api.ok_put(&path, &json!({"query_text_redaction": "full"}))
        .await;
    let mut back = open(&url, &ids[2]).await;
    let d = next_doc(&mut back, Duration::from_secs(10))
        .await
        .expect("document on start");
    assert_eq!(mode(&d), Some("full"));
}
