//! The CloudWatch Logs shipper against a real CloudWatch Logs API: `moto_server` on
//! loopback, one per test, killed on drop.

use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_cloudwatchlogs::Client;
use serde_json::Value;
use tether_agent::cloudwatch::{self, CloudWatchConfig, CloudWatchError, LogShipper};
use tether_agent::retry::RetryPolicy;
use tracing_subscriber::layer::SubscriberExt;

const KEY_ID: &str = "test";
const SECRET: &str = "test";
const REGION: &str = "us-east-1";

/// A `moto_server` child process, killed (by its own pid) on drop.
struct Moto {
    child: Child,
    url: String,
}

impl Moto {
    fn start() -> Self {
        Self::start_on(free_port())
    }

    fn start_on(port: u16) -> Self {
        Self::start_with(port, &[])
    }

    /// With IAM enforced after `free` unauthenticated requests (to create a user with).
    fn start_enforcing_iam(free: u32) -> Self {
        Self::start_with(
            free_port(),
            &[("INITIAL_NO_AUTH_ACTION_COUNT", free.to_string())],
        )
    }

    fn start_with(port: u16, env: &[(&str, String)]) -> Self {
        let child = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start moto_server ({e}); these tests need it on PATH: \
                     pip install 'moto[server]'"
                )
            });
        let mut moto = Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = moto.child.try_wait() {
                panic!("moto_server exited before listening on {port}: {status}");
            }
            assert!(
                Instant::now() < deadline,
                "moto_server did not listen on {port} within 30 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        moto
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One IAM query-API call against moto (before IAM is enforced), answered in XML.
fn iam(moto: &Moto, params: &[(&str, &str)]) -> String {
    use std::io::{Read, Write};
    let body: Vec<String> = params
        .iter()
        .chain(&[("Version", "2010-05-08")])
        .map(|(k, v)| format!("{k}={}", form_encode(v)))
        .collect();
    let body = body.join("&");
    let addr = moto.url.trim_start_matches("http://");
    let mut conn = TcpStream::connect(addr).expect("connect to moto");
    // The credential scope routes the request to IAM; the signature is not checked yet.
    write!(
        conn,
        "POST / HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         Content-Type: application/x-www-form-urlencoded\r\n\
         Authorization: AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/iam/aws4_request, \
         SignedHeaders=host, Signature=00\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .expect("send IAM request");
    let mut response = String::new();
    conn.read_to_string(&mut response)
        .expect("read IAM response");
    assert!(
        response.starts_with("HTTP/1.1 200"),
        "IAM call failed: {response}"
    );
    response
}

fn form_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn xml_value<'a>(xml: &'a str, tag: &str) -> &'a str {
    let open = format!("<{tag}>");
    let start = xml.find(&open).expect(tag) + open.len();
    let end = xml[start..].find('<').expect(tag) + start;
    &xml[start..end]
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

fn config(url: &str, stream: &str) -> CloudWatchConfig {
    CloudWatchConfig {
        log_group: "/tether/cp-test".into(),
        log_stream: stream.into(),
        endpoint_url: Some(url.into()),
        region: Some(REGION.into()),
        credentials: Some((KEY_ID.into(), SECRET.into())),
        flush_interval: Duration::from_millis(200),
        retry: RetryPolicy {
            initial: Duration::from_millis(50),
            max: Duration::from_millis(500),
        },
        ..CloudWatchConfig::default()
    }
}

/// A client of our own to read back what moto holds.
async fn reader(url: &str) -> Client {
    let conf = aws_sdk_cloudwatchlogs::Config::builder()
        .behavior_version(aws_sdk_cloudwatchlogs::config::BehaviorVersion::latest())
        .region(aws_sdk_cloudwatchlogs::config::Region::new(REGION))
        .endpoint_url(url)
        .credentials_provider(aws_sdk_cloudwatchlogs::config::Credentials::new(
            KEY_ID, SECRET, None, None, "test",
        ))
        .build();
    Client::from_conf(conf)
}

/// Every message of a stream, oldest first, through GetLogEvents paging.
async fn read_all(client: &Client, group: &str, stream: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    for _ in 0..100 {
        let page = client
            .get_log_events()
            .log_group_name(group)
            .log_stream_name(stream)
            .start_from_head(true)
            .limit(10_000)
            .set_next_token(token.clone())
            .send()
            .await
            .expect("GetLogEvents");
        let events = page.events();
        out.extend(events.iter().filter_map(|e| e.message().map(str::to_owned)));
        let next = page.next_forward_token().map(str::to_owned);
        if events.is_empty() || next == token {
            return out;
        }
        token = next;
    }
    panic!("GetLogEvents paging did not end");
}

async fn put_calls(client: &Client, group: &str, stream: &str) -> u64 {
    let streams = client
        .describe_log_streams()
        .log_group_name(group)
        .log_stream_name_prefix(stream)
        .send()
        .await
        .expect("DescribeLogStreams");
    #[allow(deprecated)]
    let token = streams.log_streams()[0]
        .upload_sequence_token()
        .unwrap_or("0");
    token.parse().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lines_through_the_tracing_layer_arrive_in_order() {
    let moto = Moto::start();
    let shipper = LogShipper::start(config(&moto.url, "agent/layer"))
        .await
        .unwrap();
    let subscriber = tracing_subscriber::registry().with(cloudwatch::layer(shipper.clone()));
    {
        let _default = tracing::subscriber::set_default(subscriber);
        let span = tracing::info_span!("session", compute_plane = "cp-test");
        let _entered = span.enter();
        for i in 0..200 {
            tracing::info!(target: "cwtest", line = i, "line {i}");
        }
    }
    shipper.flush(Duration::from_secs(20)).await.unwrap();

    let lines: Vec<Value> = read_all(&reader(&moto.url).await, "/tether/cp-test", "agent/layer")
        .await
        .iter()
        .map(|m| serde_json::from_str(m).expect("each message is one JSON object"))
        .filter(|l: &Value| l["target"] == "cwtest")
        .collect();
    let messages: Vec<&str> = lines
        .iter()
        .map(|l| l["message"].as_str().unwrap())
        .collect();
    let expected: Vec<String> = (0..200).map(|i| format!("line {i}")).collect();
    assert_eq!(messages, expected);
    assert_eq!(lines[7]["level"], "INFO");
    assert_eq!(lines[7]["fields"]["line"], 7);
    assert_eq!(lines[7]["spans"][0]["compute_plane"], "cp-test");
    assert!(shipper.shipped() >= 200);
    assert_eq!(shipper.dropped(), 0);
    assert_eq!(shipper.buffered_bytes(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_25000_is_split_and_fully_delivered() {
    let moto = Moto::start();
    let shipper = LogShipper::start(config(&moto.url, "agent/burst"))
        .await
        .unwrap();
    let now = now_ms();
    for i in 0..25_000 {
        shipper.push(now, format!("burst {i:05}"));
    }
    shipper.flush(Duration::from_secs(60)).await.unwrap();
    assert_eq!(shipper.shipped(), 25_000);
    assert_eq!(shipper.dropped(), 0);

    let client = reader(&moto.url).await;
    let messages = read_all(&client, "/tether/cp-test", "agent/burst").await;
    assert_eq!(messages.len(), 25_000);
    let expected: Vec<String> = (0..25_000).map(|i| format!("burst {i:05}")).collect();
    assert_eq!(messages, expected, "all delivered, in push order");
    let calls = put_calls(&client, "/tether/cp-test", "agent/burst").await;
    assert!(
        calls >= 3,
        "25,000 events need at least 3 PutLogEvents calls, saw {calls}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_the_bound_the_oldest_are_dropped_and_counted() {
    let moto = Moto::start();
    // 100 events of 10 + 26 bytes; room for 40 of them. No timer flush meanwhile.
    let cfg = CloudWatchConfig {
        max_buffered_bytes: 40 * 36,
        flush_interval: Duration::from_secs(3600),
        ..config(&moto.url, "agent/bound")
    };
    let shipper = LogShipper::start(cfg).await.unwrap();
    let now = now_ms();
    for i in 0..100 {
        shipper.push(now + i, format!("event {i:04}"));
    }
    assert_eq!(shipper.dropped(), 60);
    assert_eq!(shipper.buffered_bytes(), 40 * 36);
    shipper.flush(Duration::from_secs(20)).await.unwrap();
    assert_eq!(shipper.shipped(), 40);
    assert_eq!(shipper.buffered_bytes(), 0);

    let messages = read_all(&reader(&moto.url).await, "/tether/cp-test", "agent/bound").await;
    let expected: Vec<String> = (60..100).map(|i| format!("event {i:04}")).collect();
    assert_eq!(messages, expected, "the newest 40 survive");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_lost_while_the_endpoint_is_down() {
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    // Nothing listens yet: start still succeeds, and the lines wait.
    let shipper = LogShipper::start(config(&url, "agent/outage"))
        .await
        .unwrap();
    let now = now_ms();
    for i in 0..50 {
        shipper.push(now + i, format!("during outage {i}"));
    }
    let err = shipper.flush(Duration::from_secs(1)).await.unwrap_err();
    assert!(
        matches!(err, CloudWatchError::Unreachable { .. }),
        "unexpected error: {err}"
    );
    assert!(
        err.to_string()
            .starts_with(&format!("cannot reach CloudWatch Logs endpoint {url}")),
        "{err}"
    );
    assert!(shipper.buffered_bytes() > 0);
    assert_eq!(shipper.shipped(), 0);

    let moto = Moto::start_on(port);
    shipper.flush(Duration::from_secs(20)).await.unwrap();
    assert_eq!(shipper.shipped(), 50);
    let messages = read_all(&reader(&moto.url).await, "/tether/cp-test", "agent/outage").await;
    let expected: Vec<String> = (0..50).map(|i| format!("during outage {i}")).collect();
    assert_eq!(messages, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_permissions_and_refused_credentials_fail_the_start_clearly() {
    let moto = Moto::start_enforcing_iam(3);
    iam(&moto, &[("Action", "CreateUser"), ("UserName", "agent")]);
    let policy = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["logs:PutLogEvents"],"Resource":"*"}]}"#;
    iam(
        &moto,
        &[
            ("Action", "PutUserPolicy"),
            ("UserName", "agent"),
            ("PolicyName", "put-only"),
            ("PolicyDocument", policy),
        ],
    );
    let key = iam(
        &moto,
        &[("Action", "CreateAccessKey"), ("UserName", "agent")],
    );
    let credentials = (
        xml_value(&key, "AccessKeyId").to_owned(),
        xml_value(&key, "SecretAccessKey").to_owned(),
    );

    let denied = LogShipper::start(CloudWatchConfig {
        credentials: Some(credentials),
        ..config(&moto.url, "agent/denied")
    })
    .await
    .expect_err("start must fail without logs:CreateLogStream");
    assert!(
        matches!(denied, CloudWatchError::AccessDenied { .. }),
        "{denied:?}"
    );
    assert!(
        denied
            .to_string()
            .starts_with("CloudWatch Logs: access denied to log group /tether/cp-test"),
        "{denied}"
    );

    let refused = LogShipper::start(CloudWatchConfig {
        credentials: Some(("AKIANOBODY".into(), "wrong".into())),
        ..config(&moto.url, "agent/refused")
    })
    .await
    .expect_err("start must fail with unknown credentials");
    assert!(
        matches!(refused, CloudWatchError::InvalidCredentials { .. }),
        "{refused:?}"
    );
    assert!(
        refused.to_string().contains("credentials were refused"),
        "{refused}"
    );
}

/// A scripted CloudWatch Logs endpoint: creates succeed, and each PutLogEvents gets the
/// next scripted answer (then success). Records every PutLogEvents body.
struct Scripted {
    url: String,
    puts: std::sync::Arc<std::sync::Mutex<Vec<Value>>>,
}

impl Scripted {
    async fn start(script: Vec<(u16, &'static str)>) -> Self {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let puts = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let recorded = puts.clone();
        let script = std::sync::Arc::new(std::sync::Mutex::new(
            script
                .into_iter()
                .collect::<std::collections::VecDeque<_>>(),
        ));
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let recorded = recorded.clone();
                let script = script.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 64 * 1024];
                    // One request per connection (we answer `Connection: close`).
                    let (head_end, length) = loop {
                        let n = conn.read(&mut chunk).await.unwrap_or(0);
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            let head = String::from_utf8_lossy(&buf[..i]).to_lowercase();
                            let length = head
                                .lines()
                                .find_map(|l| l.strip_prefix("content-length:"))
                                .and_then(|v| v.trim().parse::<usize>().ok())
                                .unwrap_or(0);
                            break (i + 4, length);
                        }
                    };
                    while buf.len() < head_end + length {
                        let n = conn.read(&mut chunk).await.unwrap_or(0);
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                    }
                    let head = String::from_utf8_lossy(&buf[..head_end]).to_lowercase();
                    let (status, body) = if head.contains("logs_20140328.putlogevents") {
                        let request: Value =
                            serde_json::from_slice(&buf[head_end..head_end + length]).unwrap();
                        recorded.lock().unwrap().push(request);
                        script
                            .lock()
                            .unwrap()
                            .pop_front()
                            .unwrap_or((200, r#"{"nextSequenceToken":"tok-8"}"#))
                    } else {
                        (200, "{}")
                    };
                    let response = format!(
                        "HTTP/1.1 {status} X\r\nContent-Type: application/x-amz-json-1.1\r\n\
                         x-amzn-RequestId: r\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = conn.write_all(response.as_bytes()).await;
                    let _ = conn.shutdown().await;
                });
            }
        });
        Self { url, puts }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_and_sequence_tokens_are_retried_without_loss() {
    let fake = Scripted::start(vec![
        (400, r#"{"__type":"ThrottlingException","message":"Rate exceeded"}"#),
        (503, r#"{"__type":"ServiceUnavailableException","message":"try later"}"#),
        (
            400,
            r#"{"__type":"InvalidSequenceTokenException","expectedSequenceToken":"tok-7","message":"bad token"}"#,
        ),
    ])
    .await;
    let shipper = LogShipper::start(config(&fake.url, "agent/scripted"))
        .await
        .unwrap();
    let now = now_ms();
    for i in 0..30 {
        shipper.push(now + i, format!("kept {i}"));
    }
    shipper.flush(Duration::from_secs(20)).await.unwrap();
    assert_eq!(shipper.shipped(), 30);
    assert_eq!(shipper.rejected(), 0);

    let puts = fake.puts.lock().unwrap().clone();
    assert_eq!(puts.len(), 4, "throttled, unavailable, bad token, accepted");
    assert!(puts[..3].iter().all(|p| p.get("sequenceToken").is_none()));
    assert_eq!(
        puts[3]["sequenceToken"], "tok-7",
        "the expected token is used"
    );
    for p in &puts {
        let messages: Vec<&str> = p["logEvents"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["message"].as_str().unwrap())
            .collect();
        let expected: Vec<String> = (0..30).map(|i| format!("kept {i}")).collect();
        assert_eq!(messages, expected, "every attempt carries the whole batch");
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}
