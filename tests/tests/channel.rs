//! The secure outbound channel end to end: real control plane and agent binaries, real
//! TLS, loopback.

use std::time::{Duration, Instant};

use tether_proto::v1::{EnrollRequest, control_message};
use tether_tests::harness::grpc::{enroll_raw, hello, open_session, raw_client, split_identity};
use tether_tests::harness::{
    AgentOptions, AgentProc, ControlPlaneOptions, ControlPlaneProc, TenantFixture, eventually, init,
};

fn agent_opts(
    cp: &ControlPlaneProc,
    dir: &tempfile::TempDir,
    token: Option<String>,
) -> AgentOptions {
    AgentOptions::for_control_plane(cp, dir.path().join("agent"), token)
}

async fn connected(api: &tether_tests::harness::Api, fx: &TenantFixture) -> serde_json::Value {
    fx.connected(api, 5).await
}

/// Acceptance 1: the API shows the agent connected within 5 s, with version and expiry;
/// the key stays in the state dir, owner-only.
#[tokio::test]
async fn agent_enrolls_and_connects() {
    init();
    let cp = ControlPlaneProc::start(ControlPlaneOptions::default()).await;
    let api = cp.api();
    let fx = TenantFixture::create(&api, "acme").await;
    let token = fx.enrollment_token(&api, 600).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let agent = AgentProc::start(agent_opts(&cp, &dir, Some(token)));
    let shown = connected(&api, &fx).await;
    let state = &shown["agent"];
    assert_eq!(state["version"], env!("CARGO_PKG_VERSION"));
    assert!(
        state["certificate_expires_at"]
            .as_str()
            .is_some_and(|s| s.starts_with("20")),
        "{shown}"
    );
    assert!(
        state["certificate_serial"]
            .as_str()
            .is_some_and(|s| s.len() >= 16),
        "{shown}"
    );
    assert!(
        state["remote_addr"]
            .as_str()
            .is_some_and(|s| s.starts_with("127.0.0.1:")),
        "{shown}"
    );
    assert!(state["connected_since"].is_string() && state["last_heartbeat"].is_string());
    assert_eq!(state["revoked"], false);

    // Idle means idle: an agent without Kubernetes must not spin.
    let before = agent.cpu_seconds();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let used = agent.cpu_seconds() - before;
    assert!(
        used < 1.0,
        "an idle agent used {used:.2} CPU seconds in 3 s"
    );

    use std::os::unix::fs::PermissionsExt;
    let identity = dir.path().join("agent/identity.pem");
    let mode = std::fs::metadata(&identity)
        .expect("identity.pem")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "identity.pem must be owner-only");
    let pem = std::fs::read_to_string(&identity).expect("identity");
    assert!(pem.contains("PRIVATE KEY") && pem.contains("CERTIFICATE"));
    // The control plane's data dir is the operator's secret: owner-only, every file in it
    // 0600, and the CA's private key is nowhere in plain text — not on disk, not in the
    // database (it is sealed with the secret key).
    let dir_mode = std::fs::metadata(&cp.data_dir)
        .expect("data dir")
        .permissions()
        .mode();
    assert_eq!(dir_mode & 0o777, 0o700, "data dir");
    let mut files = vec![];
    for entry in std::fs::read_dir(&cp.data_dir).expect("read data dir") {
        let entry = entry.expect("entry");
        let meta = entry.metadata().expect("metadata");
        if meta.is_file() {
            let name = entry.file_name().to_string_lossy().into_owned();
            assert_eq!(meta.permissions().mode() & 0o777, 0o600, "{name}");
            let bytes = std::fs::read(entry.path()).expect("read");
            assert!(
                !bytes.windows(11).any(|w| w == b"PRIVATE KEY"),
                "{name} holds a private key in plain text"
            );
            files.push(name);
        }
    }
    for f in ["admin-token", "ca.pem", "secret-key", "tether.db"] {
        assert!(files.iter().any(|n| n == f), "{f} in {files:?}");
    }
    assert!(!files.iter().any(|n| n == "ca-key.pem"), "{files:?}");
}

/// Acceptance 2: a bootstrap token works once; expired tokens and tokens of another
/// compute plane are refused with clear errors.
#[tokio::test]
async fn bootstrap_tokens_are_one_time_expiring_and_bound() {
    init();
    let cp = ControlPlaneProc::start(ControlPlaneOptions::default()).await;
    let api = cp.api();
    let fx = TenantFixture::create(&api, "acme").await;
    let token = fx.enrollment_token(&api, 600).await;

    let d1 = tempfile::tempdir().expect("tempdir");
    let _first = AgentProc::start(agent_opts(&cp, &d1, Some(token.clone())));
    connected(&api, &fx).await;

    let d2 = tempfile::tempdir().expect("tempdir");
    let mut second = AgentProc::start(agent_opts(&cp, &d2, Some(token)));
    let status = second.wait_exit(Duration::from_secs(15)).await;
    assert_eq!(status.code(), Some(3), "{}", second.log());
    assert!(
        second.log().contains("enrollment token already used"),
        "{}",
        second.log()
    );
    assert!(!d2.path().join("agent/identity.pem").exists());

    let short = fx.enrollment_token(&api, 1).await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let d3 = tempfile::tempdir().expect("tempdir");
    let mut expired = AgentProc::start(agent_opts(&cp, &d3, Some(short)));
    assert_eq!(
        expired.wait_exit(Duration::from_secs(15)).await.code(),
        Some(3)
    );
    assert!(
        expired.log().contains("enrollment token expired"),
        "{}",
        expired.log()
    );

    // A token of compute plane B, given to an agent installed for compute plane A.
    let other = TenantFixture::create(&api, "globex").await;
    let b_token = other.enrollment_token(&api, 600).await;
    let d4 = tempfile::tempdir().expect("tempdir");
    let mut wrong = AgentProc::start(AgentOptions {
        compute_plane: Some(fx.cp_id.clone()),
        ..agent_opts(&cp, &d4, Some(b_token.clone()))
    });
    assert_eq!(
        wrong.wait_exit(Duration::from_secs(15)).await.code(),
        Some(3)
    );
    assert!(
        wrong.log().contains("belongs to another compute plane"),
        "{}",
        wrong.log()
    );
    // Refusing did not use B's token up: B's own agent still enrolls with it.
    let d5 = tempfile::tempdir().expect("tempdir");
    let _b_agent = AgentProc::start(AgentOptions {
        compute_plane: Some(other.cp_id.clone()),
        ..agent_opts(&cp, &d5, Some(b_token))
    });
    connected(&api, &other).await;

    // An agent with neither certificate nor token says what is missing.
    let d6 = tempfile::tempdir().expect("tempdir");
    let mut none = AgentProc::start(agent_opts(&cp, &d6, None));
    assert_eq!(
        none.wait_exit(Duration::from_secs(15)).await.code(),
        Some(2)
    );
    assert!(none.log().contains("not enrolled"), "{}", none.log());
}

/// Acceptance 3: no client certificate, a certificate of another CA, or plaintext: no
/// session. The identity comes from the certificate the control plane wrote, never from
/// what the agent sends.
#[tokio::test]
async fn sessions_need_a_certificate_from_this_ca() {
    init();
    let cp = ControlPlaneProc::start(ControlPlaneOptions::default()).await;
    let api = cp.api();
    let a = TenantFixture::create(&api, "acme").await;
    let b = TenantFixture::create(&api, "globex").await;

    // No client certificate: TLS succeeds (Enroll needs it), Session is refused.
    let mut anon = raw_client(&cp.grpc_url(), &cp.ca_file(), None)
        .await
        .expect("server-auth TLS");
    let err = anon
        .session(tokio_stream::iter(vec![hello()]))
        .await
        .expect_err("session without a client certificate");
    assert_eq!(err.code(), tonic::Code::Unauthenticated, "{err:?}");

    // A certificate naming compute plane A, but from another CA: the handshake fails.
    let foreign_ca_key = rcgen::KeyPair::generate().expect("key");
    let mut ca_params = rcgen::CertificateParams::default();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let foreign_ca = ca_params.self_signed(&foreign_ca_key).expect("ca");
    let issuer = rcgen::Issuer::new(ca_params, foreign_ca_key);
    let leaf_key = rcgen::KeyPair::generate().expect("key");
    let mut leaf = rcgen::CertificateParams::default();
    let uri = format!(
        "spiffe://tether/tenant/{}/compute-plane/{}",
        a.tenant_id, a.cp_id
    );
    leaf.subject_alt_names = vec![rcgen::SanType::URI(uri.try_into().expect("uri"))];
    let leaf = leaf.signed_by(&leaf_key, &issuer).expect("leaf");
    let _ = foreign_ca;
    let forged = raw_client(
        &cp.grpc_url(),
        &cp.ca_file(),
        Some((&leaf.pem(), &leaf_key.serialize_pem())),
    )
    .await;
    match forged {
        Err(_) => {}
        Ok(mut c) => {
            let r = c.session(tokio_stream::iter(vec![hello()])).await;
            assert!(
                r.is_err(),
                "a foreign-CA certificate must not open a session"
            );
        }
    }

    // Plaintext HTTP/2 to the gRPC port.
    let plain = tonic::transport::Endpoint::from_shared(format!("http://{}", cp.grpc))
        .expect("endpoint")
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(5))
        .connect()
        .await;
    if let Ok(ch) = plain {
        let mut c = tether_proto::v1::agent_control_client::AgentControlClient::new(ch);
        assert!(
            c.session(tokio_stream::iter(vec![hello()])).await.is_err(),
            "plaintext must fail"
        );
    }
    assert!(
        cp.log().contains("TLS handshake refused"),
        "the server saw and refused non-TLS/forged handshakes"
    );

    // Enroll with A's token but a CSR that claims to be compute plane B.
    let token = a.enrollment_token(&api, 600).await;
    let key = rcgen::KeyPair::generate().expect("key");
    let mut params = rcgen::CertificateParams::default();
    let claim = format!(
        "spiffe://tether/tenant/{}/compute-plane/{}",
        b.tenant_id, b.cp_id
    );
    params.subject_alt_names = vec![rcgen::SanType::URI(claim.try_into().expect("uri"))];
    let csr = params
        .serialize_request(&key)
        .expect("csr")
        .pem()
        .expect("pem");
    let resp = anon
        .enroll(EnrollRequest {
            bootstrap_token: token,
            csr_pem: csr,
            agent_version: "x".into(),
            ..Default::default()
        })
        .await
        .expect("enroll")
        .into_inner();
    let ident = resp.identity.expect("identity");
    assert_eq!(
        (ident.tenant_id.as_str(), ident.compute_plane_id.as_str()),
        (a.tenant_id.as_str(), a.cp_id.as_str())
    );
    let info = tether_shared::pki::CertificateInfo::from_pem(resp.certificate_pem.as_bytes())
        .expect("cert");
    assert_eq!(info.identity.expect("san").compute_plane_id, a.cp_id);

    // That certificate opens a session as A, and only A shows as connected.
    let mut c = raw_client(
        &cp.grpc_url(),
        &cp.ca_file(),
        Some((&resp.certificate_pem, &key.serialize_pem())),
    )
    .await
    .expect("mTLS");
    let (tx, mut inbound) = open_session(&mut c).await.expect("session");
    let first = inbound.message().await.expect("message").expect("welcome");
    match first.kind {
        Some(control_message::Kind::Welcome(w)) => {
            assert_eq!(w.identity.expect("identity").compute_plane_id, a.cp_id)
        }
        other => panic!("expected Welcome, got {other:?}"),
    }
    connected(&api, &a).await;
    assert_eq!(b.get(&api).await["agent"]["connected"], false);
    drop(tx);
}

/// Acceptance 4: revoking ends the live session within 1 s, later attempts are refused,
/// and the API shows the agent revoked.
#[tokio::test]
async fn revoke_ends_the_session_and_refuses_reconnects() {
    init();
    let cp = ControlPlaneProc::start(ControlPlaneOptions::default()).await;
    let api = cp.api();
    let fx = TenantFixture::create(&api, "acme").await;
    let token = fx.enrollment_token(&api, 600).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut agent = AgentProc::start(agent_opts(&cp, &dir, Some(token)));
    connected(&api, &fx).await;

    let admin = api.as_token(&fx.admin_token);
    let t0 = Instant::now();
    let shown = admin
        .ok_post(
            &format!("/compute-planes/{}/revoke-agent", fx.cp_id),
            &serde_json::json!({}),
        )
        .await;
    assert_eq!(shown["agent"]["revoked"], true);
    assert_eq!(shown["agent"]["connected"], false);
    let status = agent.wait_exit(Duration::from_secs(1)).await;
    let took = t0.elapsed();
    assert!(
        took < Duration::from_secs(1),
        "session ended after {took:?}"
    );
    assert_eq!(status.code(), Some(4), "{}", agent.log());
    assert!(
        agent.log().contains("certificate revoked"),
        "{}",
        agent.log()
    );

    // The same agent, restarted with its (revoked) certificate, is refused.
    let mut again = AgentProc::start(agent_opts(&cp, &dir, None));
    assert_eq!(
        again.wait_exit(Duration::from_secs(15)).await.code(),
        Some(4),
        "{}",
        again.log()
    );
    assert!(again.log().contains("certificate revoked"));
    // So is a hand-made client holding that certificate and key.
    let pem = std::fs::read_to_string(dir.path().join("agent/identity.pem")).expect("identity");
    let (cert, key) = split_identity(&pem);
    let mut c = raw_client(&cp.grpc_url(), &cp.ca_file(), Some((&cert, &key)))
        .await
        .expect("TLS still works");
    let err = c
        .session(tokio_stream::iter(vec![hello()]))
        .await
        .expect_err("revoked");
    assert_eq!(err.code(), tonic::Code::PermissionDenied);
    let err = c
        .renew_certificate(tether_proto::v1::RenewCertificateRequest {
            csr_pem: "x".into(),
        })
        .await
        .expect_err("revoked certificates cannot renew");
    assert_eq!(err.code(), tonic::Code::PermissionDenied);
    let shown = fx.get(&api).await;
    assert_eq!(shown["agent"]["revoked"], true);
    assert_eq!(shown["agent"]["connected"], false);

    // Given a new enrollment token, the same agent (same state dir) enrolls again by itself.
    let fresh = fx.enrollment_token(&api, 600).await;
    let _agent = AgentProc::start(agent_opts(&cp, &dir, Some(fresh)));
    let shown = connected(&api, &fx).await;
    assert_eq!(shown["agent"]["revoked"], false);
    let new_pem = std::fs::read_to_string(dir.path().join("agent/identity.pem")).expect("identity");
    assert_ne!(
        new_pem, pem,
        "a new key and certificate replaced the revoked ones"
    );
}

/// A second session with the same identity supersedes the first.
#[tokio::test]
async fn second_session_supersedes_the_first() {
    init();
    let cp = ControlPlaneProc::start(ControlPlaneOptions::default()).await;
    let api = cp.api();
    let fx = TenantFixture::create(&api, "acme").await;
    let token = fx.enrollment_token(&api, 600).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let agent = AgentProc::start(agent_opts(&cp, &dir, Some(token)));
    let first = connected(&api, &fx).await["agent"]["session_id"].clone();

    let pem = std::fs::read_to_string(dir.path().join("agent/identity.pem")).expect("identity");
    let (cert, key) = split_identity(&pem);
    let mut c = raw_client(&cp.grpc_url(), &cp.ca_file(), Some((&cert, &key)))
        .await
        .expect("mTLS");
    let (tx, _inbound) = open_session(&mut c).await.expect("session");
    eventually(
        Duration::from_secs(5),
        "agent told it was superseded",
        || async { (agent.count("control plane ended the session") >= 1).then_some(()) },
    )
    .await;
    assert!(agent.log().contains("superseded"), "{}", agent.log());
    // Session starts reach the API within the presence flush interval.
    eventually(Duration::from_secs(2), "the new session shown", || async {
        let now = fx.get(&api).await;
        (now["agent"]["session_id"] != first).then_some(())
    })
    .await;
    drop(tx);
}

/// Acceptance 6: with 20 s certificates the agent renews at least twice within one
/// session, and the API shows each new serial.
#[tokio::test]
async fn certificates_renew_over_the_live_session() {
    init();
    let cp = ControlPlaneProc::start(ControlPlaneOptions {
        extra_args: vec!["--agent-cert-ttl".into(), "20s".into()],
        ..ControlPlaneOptions::default()
    })
    .await;
    let api = cp.api();
    let fx = TenantFixture::create(&api, "acme").await;
    let token = fx.enrollment_token(&api, 600).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let agent = AgentProc::start(agent_opts(&cp, &dir, Some(token)));
    let start = connected(&api, &fx).await;
    let session = start["agent"]["session_id"].clone();
    let mut serials = vec![start["agent"]["certificate_serial"].clone()];
    let deadline = Instant::now() + Duration::from_secs(60);
    while serials.len() < 3 {
        assert!(
            Instant::now() < deadline,
            "only {} serials seen: {}",
            serials.len(),
            agent.log()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
        let now = fx.get(&api).await;
        assert_eq!(now["agent"]["connected"], true, "session dropped: {now}");
        assert_eq!(
            now["agent"]["session_id"], session,
            "session changed: {now}"
        );
        let s = now["agent"]["certificate_serial"].clone();
        if !serials.contains(&s) {
            serials.push(s);
        }
    }
    assert_eq!(
        agent.count("dialing control plane"),
        1,
        "never reconnected: {}",
        agent.log()
    );
    assert!(agent.count("certificate renewed") >= 2);
}

/// A session does not outlive its certificate: a client that never renews is sent
/// `Goodbye{certificate-expired}` when its certificate runs out.
#[tokio::test]
async fn a_session_ends_when_its_certificate_expires_unrenewed() {
    init();
    let cp = ControlPlaneProc::start(ControlPlaneOptions {
        extra_args: vec!["--agent-cert-ttl".into(), "4s".into()],
        ..ControlPlaneOptions::default()
    })
    .await;
    let api = cp.api();
    let fx = TenantFixture::create(&api, "acme").await;
    let token = fx.enrollment_token(&api, 600).await;
    let (cert, key) = enroll_raw(&cp.grpc_url(), &cp.ca_file(), &token).await;
    let mut c = raw_client(&cp.grpc_url(), &cp.ca_file(), Some((&cert, &key)))
        .await
        .expect("mTLS");
    let (tx, mut inbound) = open_session(&mut c).await.expect("session");
    let t0 = Instant::now();
    let mut reason = None;
    while let Ok(Some(m)) = tokio::time::timeout(Duration::from_secs(10), inbound.message())
        .await
        .expect("in time")
    {
        if let Some(control_message::Kind::Goodbye(g)) = m.kind {
            reason = Some(g.reason);
        }
    }
    assert_eq!(reason.as_deref(), Some("certificate-expired"));
    assert!(
        t0.elapsed() <= Duration::from_secs(8),
        "ended after {:?}",
        t0.elapsed()
    );
    eventually(Duration::from_secs(2), "shown disconnected", || async {
        (fx.get(&api).await["agent"]["connected"] == false).then_some(())
    })
    .await;
    drop(tx);
}

/// An agent that was stopped longer than its certificate lives cannot renew it: started
/// again without an enrollment token it stops with a clear error (exit 4); with a new token
/// it enrolls again and connects.
#[tokio::test]
async fn an_agent_whose_certificate_expired_while_stopped_says_so_or_enrolls_again() {
    init();
    let cp = ControlPlaneProc::start(ControlPlaneOptions {
        extra_args: vec!["--agent-cert-ttl".into(), "3s".into()],
        ..ControlPlaneOptions::default()
    })
    .await;
    let api = cp.api();
    let fx = TenantFixture::create(&api, "acme").await;
    let token = fx.enrollment_token(&api, 600).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut agent = AgentProc::start(agent_opts(&cp, &dir, Some(token)));
    connected(&api, &fx).await;
    agent.terminate();
    agent.wait_exit(Duration::from_secs(10)).await;
    // Past the lifetime of the last certificate it renewed.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let mut agent = AgentProc::start(agent_opts(&cp, &dir, None));
    let status = agent.wait_exit(Duration::from_secs(15)).await;
    assert_eq!(status.code(), Some(4), "{}", agent.log());
    assert!(
        agent.log().contains("certificate expired"),
        "{}",
        agent.log()
    );
    let token = fx.enrollment_token(&api, 600).await;
    let _agent = AgentProc::start(agent_opts(&cp, &dir, Some(token)));
    eventually(
        Duration::from_secs(15),
        "enrolled again and connected",
        || async {
            let v = fx.get(&api).await;
            (v["agent"]["connected"] == true && v["agent"]["certificate_expires_at"].is_string())
                .then_some(())
        },
    )
    .await;
}
