//! Issue 6, acceptance 2 and 3, against moto_server with signature checking on: enrollment
//! binds the agent to the tenant's AWS account through a signed sts:GetCallerIdentity that
//! the control plane relays; the EKS token's presigned URL is accepted by moto's STS.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;
use tether_agent::aws_identity::{self, StsSettings};
use tether_proto::v1 as pb;
use tether_tests::harness::moto::Moto;
use tether_tests::harness::{
    AgentOptions, AgentProc, ControlPlaneOptions, ControlPlaneProc, TenantFixture, grpc, init,
};

/// moto's default account.
const ACCOUNT: &str = "123456789012";

fn xml_field(xml: &str, tag: &str) -> String {
    xml.split(&format!("<{tag}>"))
        .nth(1)
        .and_then(|r| r.split(&format!("</{tag}>")).next())
        .unwrap_or_else(|| panic!("<{tag}> in {xml}"))
        .to_owned()
}

/// moto that verifies every signature after two free calls, and an access key of an IAM
/// user made with those two.
async fn moto_with_auth() -> (Moto, (String, String)) {
    let moto = Moto::start_with(&[("INITIAL_NO_AUTH_ACTION_COUNT", "2")]).await;
    let (s, xml) = moto
        .query(
            "iam",
            &[
                ("Action", "CreateUser"),
                ("Version", "2010-05-08"),
                ("UserName", "agent"),
            ],
        )
        .await;
    assert_eq!(s, 200, "{xml}");
    let (s, xml) = moto
        .query(
            "iam",
            &[
                ("Action", "CreateAccessKey"),
                ("Version", "2010-05-08"),
                ("UserName", "agent"),
            ],
        )
        .await;
    assert_eq!(s, 200, "{xml}");
    let key = (
        xml_field(&xml, "AccessKeyId"),
        xml_field(&xml, "SecretAccessKey"),
    );
    // From now on an unsigned call is refused.
    let (s, _) = moto
        .query(
            "sts",
            &[("Action", "GetCallerIdentity"), ("Version", "2011-06-15")],
        )
        .await;
    assert_eq!(s, 403, "moto checks signatures now");
    (moto, key)
}

fn sts(moto: &Moto, key: &(String, String)) -> StsSettings {
    StsSettings {
        endpoint: Some(moto.url.clone()),
        region: Some("us-east-1".into()),
        credentials: Some(key.clone()),
    }
}

/// The real agent with the IAM user's key, proving its account at enrollment.
fn binding_agent(
    cp: &ControlPlaneProc,
    moto: &Moto,
    key: &(String, String),
    dir: &tempfile::TempDir,
    token: String,
) -> AgentOptions {
    let mut opts = AgentOptions::for_control_plane(cp, dir.path().join("a"), Some(token))
        .with_args(&[
            "--account-binding",
            "--sts-endpoint",
            &moto.url,
            "--aws-region",
            "us-east-1",
        ]);
    opts.env = vec![
        ("AWS_ACCESS_KEY_ID".into(), key.0.clone()),
        ("AWS_SECRET_ACCESS_KEY".into(), key.1.clone()),
    ];
    opts
}

async fn cp_for(moto_url: &str, data_dir: Option<std::path::PathBuf>) -> ControlPlaneProc {
    ControlPlaneProc::start(ControlPlaneOptions {
        data_dir,
        extra_args: vec!["--sts-endpoint".into(), moto_url.into()],
        ..ControlPlaneOptions::default()
    })
    .await
}

async fn enroll_with(
    cp: &ControlPlaneProc,
    token: &str,
    identity: Option<pb::SignedHttpRequest>,
) -> Result<pb::EnrollResponse, tonic::Status> {
    let mut c = grpc::raw_client(&format!("https://{}", cp.grpc), &cp.ca_file(), None)
        .await
        .expect("server-auth TLS");
    let (_key, csr) = tether_shared::pki::key_and_csr("test-agent").expect("csr");
    c.enroll(pb::EnrollRequest {
        bootstrap_token: token.to_owned(),
        csr_pem: csr,
        aws_identity: identity,
        ..Default::default()
    })
    .await
    .map(tonic::Response::into_inner)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enrollment_binds_the_agent_to_the_tenants_aws_account() {
    init();
    let (moto, key) = moto_with_auth().await;
    let cp = cp_for(&moto.url, None).await;
    let api = cp.api();

    // The real agent binary, with the account's credentials: enrolled and connected.
    let acme =
        TenantFixture::create_from(&api, json!({"name": "acme", "aws_account_id": ACCOUNT})).await;
    let token = acme.enrollment_token(&api, 600).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = binding_agent(&cp, &moto, &key, &dir, token);
    let agent = AgentProc::start(opts);
    for _ in 0..100 {
        let v = api
            .as_token(&acme.admin_token)
            .ok_get(&format!("/compute-planes/{}", acme.cp_id))
            .await;
        if v["agent"]["connected"] == true {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let v = api
        .as_token(&acme.admin_token)
        .ok_get(&format!("/compute-planes/{}", acme.cp_id))
        .await;
    assert_eq!(
        v["agent"]["connected"],
        true,
        "agent log:\n{}\ncp log:\n{}",
        agent.log(),
        cp.log()
    );

    // Registered to another account: refused with the reason, nothing stored.
    let globex = TenantFixture::create_from(
        &api,
        json!({"name": "globex", "aws_account_id": "111122223333"}),
    )
    .await;
    let token = globex.enrollment_token(&api, 600).await;
    let dir2 = tempfile::tempdir().expect("tempdir");
    let opts = binding_agent(&cp, &moto, &key, &dir2, token.clone());
    let mut refused = AgentProc::start(opts);
    let status = refused.wait_exit(Duration::from_secs(20)).await;
    assert!(!status.success(), "{status:?}");
    let log = refused.log();
    assert!(
        log.contains(&format!(
            "AWS account {ACCOUNT} is not this tenant's registered account 111122223333"
        )),
        "{log}"
    );
    let gcp = api
        .as_token(&globex.admin_token)
        .ok_get(&format!("/compute-planes/{}", globex.cp_id))
        .await;
    assert!(
        gcp["agent"]["certificate_serial"].is_null(),
        "nothing stored: {gcp}"
    );

    // No identity at all: refused, saying what to do.
    let e = enroll_with(&cp, &token, None)
        .await
        .expect_err("no identity");
    assert_eq!(e.code(), tonic::Code::FailedPrecondition);
    assert!(e.message().contains("--account-binding"), "{}", e.message());

    // Tampered: the signature no longer matches what was signed.
    let acme2 =
        TenantFixture::create_from(&api, json!({"name": "acme2", "aws_account_id": ACCOUNT})).await;
    let token2 = acme2.enrollment_token(&api, 600).await;
    let signed = aws_identity::signed_identity(&sts(&moto, &key), &token2)
        .await
        .expect("signed");
    // A genuine identity, but signed for another enrollment: not replayable here.
    let elsewhere_signed = aws_identity::signed_identity(&sts(&moto, &key), "tte_another_token")
        .await
        .expect("signed");
    let e = enroll_with(&cp, &token2, Some(elsewhere_signed))
        .await
        .expect_err("bound to another token");
    assert_eq!(e.code(), tonic::Code::PermissionDenied);
    assert!(
        e.message().contains("not signed for this enrollment"),
        "{}",
        e.message()
    );
    let mut tampered = signed.clone();
    tampered.body = b"Version=2011-06-15&Action=GetCallerIdentity".to_vec();
    let e = enroll_with(&cp, &token2, Some(tampered))
        .await
        .expect_err("tampered body");
    assert_eq!(e.code(), tonic::Code::PermissionDenied);
    assert!(e.message().contains("STS refused"), "{}", e.message());
    let mut other_action = signed.clone();
    other_action.body = b"Action=AssumeRole&Version=2011-06-15&RoleArn=arn:aws:iam::123456789012:role/x&RoleSessionName=x".to_vec();
    let e = enroll_with(&cp, &token2, Some(other_action))
        .await
        .expect_err("another action");
    assert_eq!(e.code(), tonic::Code::PermissionDenied);
    assert!(e.message().contains("GetCallerIdentity"), "{}", e.message());
    let mut elsewhere = signed.clone();
    elsewhere.url = "http://169.254.169.254/".into();
    let e = enroll_with(&cp, &token2, Some(elsewhere))
        .await
        .expect_err("another host");
    assert!(
        e.message().contains("signed for 169.254.169.254"),
        "{}",
        e.message()
    );
    // The untampered one works (and uses the token up).
    let ok = enroll_with(&cp, &token2, Some(signed))
        .await
        .expect("genuine identity");
    assert_eq!(
        ok.identity.map(|i| i.compute_plane_id),
        Some(acme2.cp_id.clone())
    );

    // A tenant that turned binding off enrolls without an identity.
    let open = TenantFixture::create_from(
        &api,
        json!({"name": "open", "aws_account_id": "111122223333", "account_binding": false}),
    )
    .await;
    let token = open.enrollment_token(&api, 600).await;
    enroll_with(&cp, &token, None).await.expect("binding off");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sts_unreachable_refuses_enrollment_and_stores_nothing() {
    init();
    let (moto, key) = moto_with_auth().await;
    // A port nothing listens on.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        format!("http://{}", l.local_addr().expect("addr"))
    };
    let data = tempfile::tempdir().expect("tempdir");
    let cp = cp_for(&closed, Some(data.path().join("cp"))).await;
    let api = cp.api();
    let fx =
        TenantFixture::create_from(&api, json!({"name": "acme", "aws_account_id": ACCOUNT})).await;
    let token = fx.enrollment_token(&api, 600).await;
    let settings = StsSettings {
        endpoint: Some(closed.clone()),
        ..sts(&moto, &key)
    };
    let signed = aws_identity::signed_identity(&settings, &token)
        .await
        .expect("signed");
    let e = enroll_with(&cp, &token, Some(signed))
        .await
        .expect_err("STS down");
    assert_eq!(e.code(), tonic::Code::Unavailable);
    assert!(
        e.message()
            .contains(&format!("cannot reach AWS STS at {closed}")),
        "{}",
        e.message()
    );
    let v = api
        .as_token(&fx.admin_token)
        .ok_get(&format!("/compute-planes/{}", fx.cp_id))
        .await;
    assert!(v["agent"]["certificate_serial"].is_null(), "{v}");

    // The token was not used up: with STS back (the endpoint moto), the same token works.
    let again = ControlPlaneOptions {
        extra_args: vec!["--sts-endpoint".into(), moto.url.clone()],
        ..cp.same_place()
    };
    drop(cp);
    let cp = ControlPlaneProc::start(again).await;
    let signed = aws_identity::signed_identity(&sts(&moto, &key), &token)
        .await
        .expect("signed");
    enroll_with(&cp, &token, Some(signed))
        .await
        .expect("same token, STS reachable");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eks_token_url_is_accepted_by_sts() {
    init();
    let moto = Moto::start().await;
    let creds = aws_sdk_sts::config::Credentials::new("AKIDEXAMPLE", "secret", None, None, "test");
    let token = aws_identity::eks_token_with(
        &creds.into(),
        "us-east-1",
        Some(&moto.url),
        "tether-cp1",
        std::time::SystemTime::now(),
    )
    .expect("token");
    let url = aws_identity::eks_token_url(&token).expect("decodes");
    assert!(
        url.contains("X-Amz-SignedHeaders=host%3Bx-k8s-aws-id"),
        "{url}"
    );
    // What the EKS authenticator does: GET the URL with the cluster header. moto routes a
    // query-signed request to S3 unless a header names the service; that header is only
    // for moto's routing (it checks no signature here).
    let resp = reqwest::Client::new()
        .get(&url)
        .header("x-k8s-aws-id", "tether-cp1")
        .header(
            "Authorization",
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20260101/us-east-1/sts/aws4_request, SignedHeaders=host, Signature=0",
        )
        .send()
        .await
        .expect("GET");
    assert_eq!(resp.status(), StatusCode::OK);
    let xml = resp.text().await.unwrap_or_default();
    assert_eq!(xml_field(&xml, "Account"), ACCOUNT, "{xml}");
}
