//! `moto_server` as the AWS APIs (CloudWatch Logs, STS, CloudFormation) on loopback.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

/// A running moto_server, killed on drop by its own pid.
#[derive(Debug)]
pub struct Moto {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
}

impl Moto {
    /// Starts moto_server on a free port and waits until it answers.
    pub async fn start() -> Self {
        Self::start_with(&[]).await
    }

    /// Starts moto_server with extra environment (e.g. `MOTO_ACCOUNT_ID`,
    /// `INITIAL_NO_AUTH_ACTION_COUNT`).
    pub async fn start_with(env: &[(&str, &str)]) -> Self {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            l.local_addr().expect("addr").port()
        };
        let child = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("moto_server is not installed: pip install 'moto[server]' (scripts/test does)");
        let url = format!("http://127.0.0.1:{port}");
        let probe = url.clone();
        super::eventually(Duration::from_secs(20), "moto_server ready", || {
            let probe = probe.clone();
            async move {
                reqwest::get(format!("{probe}/moto-api/"))
                    .await
                    .ok()
                    .map(|_| ())
            }
        })
        .await;
        Self { child, url }
    }

    /// Calls a query-protocol action (STS, CloudFormation) with a form body; returns the
    /// status and the XML answer. `service` names the credential scope moto routes by.
    pub async fn query(&self, service: &str, form: &[(&str, &str)]) -> (u16, String) {
        let resp = reqwest::Client::new()
            .post(&self.url)
            .header(
                "Authorization",
                format!("AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/{service}/aws4_request, SignedHeaders=host, Signature=0"),
            )
            .form(form)
            .send()
            .await
            .expect("moto answers");
        let status = resp.status().as_u16();
        (status, resp.text().await.unwrap_or_default())
    }

    /// Calls a CloudWatch Logs action (JSON protocol; moto does not check signatures).
    pub async fn logs(&self, action: &str, body: &Value) -> Value {
        self.json_call(&format!("Logs_20140328.{action}"), "logs", body)
            .await
    }

    /// Calls a Secrets Manager action (JSON protocol).
    pub async fn secrets(&self, action: &str, body: &Value) -> Value {
        self.json_call(&format!("secretsmanager.{action}"), "secretsmanager", body)
            .await
    }

    async fn json_call(&self, target: &str, service: &str, body: &Value) -> Value {
        let resp = reqwest::Client::new()
            .post(&self.url)
            .header("X-Amz-Target", target)
            .header("Content-Type", "application/x-amz-json-1.1")
            .header(
                "Authorization",
                format!("AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/{service}/aws4_request, SignedHeaders=host, Signature=0"),
            )
            .body(body.to_string())
            .send()
            .await
            .expect("moto answers");
        let text = resp.text().await.unwrap_or_default();
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    }

    /// Every message of a log stream, oldest first.
    pub async fn log_messages(&self, group: &str, stream: &str) -> Vec<String> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut body =
                json!({"logGroupName": group, "logStreamName": stream, "startFromHead": true});
            if let Some(t) = &token {
                body["nextToken"] = Value::String(t.clone());
            }
            let page = self.logs("GetLogEvents", &body).await;
            let events = page["events"].as_array().cloned().unwrap_or_default();
            if events.is_empty() {
                return out;
            }
            out.extend(
                events
                    .iter()
                    .filter_map(|e| e["message"].as_str().map(str::to_owned)),
            );
            match page["nextForwardToken"].as_str() {
                Some(t) if Some(t) != token.as_deref() => token = Some(t.to_owned()),
                _ => return out,
            }
        }
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
