//! A small client of the REST API.

use reqwest::StatusCode;
use serde_json::Value;

/// The REST API of one control plane, as one token.
#[derive(Debug, Clone)]
pub struct Api {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl Api {
    /// Client for `http://ADDR/api/v1` with `token`.
    pub fn new(http_addr: &str, token: &str) -> Self {
        Self {
            base: format!("http://{http_addr}"),
            token: token.to_owned(),
            http: reqwest::Client::new(),
        }
    }

    /// The same API as another token.
    pub fn as_token(&self, token: &str) -> Self {
        Self {
            token: token.to_owned(),
            ..self.clone()
        }
    }

    /// Base URL (`http://ADDR`).
    pub fn base(&self) -> &str {
        &self.base
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> (StatusCode, Value) {
        let resp = req
            .bearer_auth(&self.token)
            .send()
            .await
            .expect("API request");
        let status = resp.status();
        let text = resp.text().await.expect("API body");
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, body)
    }

    /// GET `/api/v1{path}`.
    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.send(self.http.get(format!("{}/api/v1{path}", self.base)))
            .await
    }

    /// POST JSON to `/api/v1{path}`.
    pub async fn post(&self, path: &str, body: &Value) -> (StatusCode, Value) {
        self.send(
            self.http
                .post(format!("{}/api/v1{path}", self.base))
                .json(body),
        )
        .await
    }

    /// PUT JSON to `/api/v1{path}`.
    pub async fn put(&self, path: &str, body: &Value) -> (StatusCode, Value) {
        self.send(
            self.http
                .put(format!("{}/api/v1{path}", self.base))
                .json(body),
        )
        .await
    }

    /// PUT a raw body to `/api/v1{path}`.
    pub async fn put_raw(&self, path: &str, body: &str) -> (StatusCode, Value) {
        self.send(
            self.http
                .put(format!("{}/api/v1{path}", self.base))
                .header("content-type", "application/json")
                .body(body.to_owned()),
        )
        .await
    }

    /// DELETE `/api/v1{path}`.
    pub async fn delete(&self, path: &str) -> (StatusCode, Value) {
        self.send(self.http.delete(format!("{}/api/v1{path}", self.base)))
            .await
    }

    /// POST a raw body to `/api/v1{path}`.
    pub async fn post_raw(&self, path: &str, body: &str) -> (StatusCode, Value) {
        self.send(
            self.http
                .post(format!("{}/api/v1{path}", self.base))
                .header("content-type", "application/json")
                .body(body.to_owned()),
        )
        .await
    }

    /// GET that must succeed.
    pub async fn ok_get(&self, path: &str) -> Value {
        let (s, v) = self.get(path).await;
        assert!(s.is_success(), "GET {path}: {s} {v}");
        v
    }

    /// POST that must succeed.
    pub async fn ok_post(&self, path: &str, body: &Value) -> Value {
        let (s, v) = self.post(path, body).await;
        assert!(s.is_success(), "POST {path}: {s} {v}");
        v
    }

    /// PUT that must succeed.
    pub async fn ok_put(&self, path: &str, body: &Value) -> Value {
        let (s, v) = self.put(path, body).await;
        assert!(s.is_success(), "PUT {path}: {s} {v}");
        v
    }
}
