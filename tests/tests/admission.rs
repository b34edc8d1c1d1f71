//! Server-paced session starts: the real control plane with a low admission rate, many
//! agents starting at once (real mTLS sessions with the agent's transport code), and the
//! real agent binary among them.

use std::time::{Duration, Instant};

use tether_proto::v1::{AgentMessage, control_message};
use tether_tests::bench::{self, sim};
use tether_tests::harness::grpc::hello;
use tether_tests::harness::{
    AgentOptions, AgentProc, ControlPlaneOptions, ControlPlaneProc, TenantFixture, init,
};

/// What the control plane answered a session start with.
#[derive(Debug)]
enum First {
    Welcome,
    Overloaded(Duration),
    Other(String),
}

/// Opens a session and reads the first message. Keeps the session open (by returning its
/// sender) so that the control plane does not see it end.
async fn start(
    url: &http::Uri,
    id: &sim::Identity,
) -> (First, Option<tokio::sync::mpsc::Sender<AgentMessage>>) {
    let mut c = sim::channel(url, id).await.expect("mTLS channel");
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(hello()).await.expect("hello");
    let mut inbound = c
        .session(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .expect("session accepted")
        .into_inner();
    let first = match inbound.message().await {
        Ok(Some(m)) => match m.kind {
            Some(control_message::Kind::Welcome(_)) => First::Welcome,
            Some(control_message::Kind::Goodbye(g)) if g.reason == "overloaded" => {
                First::Overloaded(Duration::from_millis(g.retry_after_ms))
            }
            other => First::Other(format!("{other:?}")),
        },
        other => First::Other(format!("{other:?}")),
    };
    (first, Some(tx))
}

/// 2 session starts a second and no waiting on the connection: 15 agents that start at
/// once are not refused at random. Those over the rate get `Goodbye{overloaded}` with a
/// `retry_after` each, the slots half a second apart; each that comes back at its slot is
/// welcomed at the first try. The real agent binary, arriving behind them, is deferred the
/// same way, waits exactly its `retry_after`, and connects on its second dial.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_session_starts_is_paced_into_slots() {
    init();
    let cp = ControlPlaneProc::start(ControlPlaneOptions {
        extra_args: vec![
            "--session-starts-per-second".into(),
            "2".into(),
            "--admission-max-wait".into(),
            "0s".into(),
        ],
        ..ControlPlaneOptions::default()
    })
    .await;
    let ids = bench::provision(&cp, 15, "test").await;
    assert_eq!(ids.len(), 15);
    let url = tether_agent::transport::parse_control_plane_url(&cp.grpc_url()).expect("url");

    let t0 = Instant::now();
    let firsts = futures::future::join_all(ids.iter().map(|id| {
        let url = url.clone();
        async move {
            let (first, keep) = start(&url, id).await;
            (first, Instant::now(), keep)
        }
    }))
    .await;
    let mut slots = Vec::new();
    let mut welcomed = 0;
    for (first, at, _) in &firsts {
        match first {
            First::Welcome => welcomed += 1,
            First::Overloaded(after) => slots.push(*at + *after),
            First::Other(m) => panic!("unexpected first message: {m}"),
        }
    }
    assert!(
        slots.len() >= 8,
        "{welcomed} welcomed, {} deferred in {:?}: at 2 a second most must be deferred",
        slots.len(),
        t0.elapsed()
    );
    slots.sort();
    for w in slots.windows(2) {
        let gap = w[1] - w[0];
        assert!(
            gap >= Duration::from_millis(400),
            "slots are spread half a second apart, got {gap:?}"
        );
    }

    // The real agent arrives behind them: its slot is after theirs.
    let api = cp.api();
    let fx = TenantFixture::create(&api, "late").await;
    let token = fx.enrollment_token(&api, 600).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let agent = AgentProc::start(AgentOptions::for_control_plane(
        &cp,
        dir.path().join("agent"),
        Some(token),
    ));

    // Every deferred one comes back at its slot and is welcomed at once.
    let retries = futures::future::join_all(
        firsts
            .iter()
            .zip(&ids)
            .filter_map(|((first, at, _), id)| match first {
                First::Overloaded(after) => Some((*at + *after, id)),
                _ => None,
            })
            .map(|(slot, id)| {
                let url = url.clone();
                async move {
                    tokio::time::sleep_until(slot.into()).await;
                    start(&url, id).await
                }
            }),
    )
    .await;
    for (first, _) in &retries {
        assert!(
            matches!(first, First::Welcome),
            "came back at its slot: {first:?}"
        );
    }

    let shown = fx.connected(&api, 30).await;
    assert_eq!(shown["agent"]["connected"], true);
    let deferred = agent
        .events()
        .into_iter()
        .find(|e| e["fields"]["reason"] == "overloaded")
        .unwrap_or_else(|| panic!("the agent was deferred: {}", agent.log()));
    assert!(
        deferred["fields"]["retry_after_ms"]
            .as_u64()
            .is_some_and(|ms| ms > 0),
        "{deferred}"
    );
    assert_eq!(
        agent.count("dialing control plane"),
        2,
        "it came back once, at its slot: {}",
        agent.log()
    );
    let metrics = reqwest::get(format!("{}/metrics", api.base()))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    let n = metrics
        .lines()
        .find_map(|l| l.strip_prefix("tether_sessions_deferred_total "))
        .and_then(|v| v.trim().parse::<usize>().ok())
        .expect("deferred counter");
    assert_eq!(n, slots.len() + 1, "{metrics}");
}
