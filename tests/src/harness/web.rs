//! A plain HTTP client for browser-style flows across sites: cookies kept per host (by
//! hand, as a browser would for these tests: name and value, path ignored), redirects
//! followed one at a time so a test can stop at any hop.

use reqwest::StatusCode;
use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};

/// One answer.
#[derive(Debug, Clone)]
pub struct Answer {
    /// Status.
    pub status: StatusCode,
    /// The `Location` of a redirect, made absolute.
    pub location: Option<String>,
    /// Body.
    pub body: String,
    /// The URL that answered.
    pub url: String,
}

/// The client.
#[derive(Debug)]
pub struct WebClient {
    http: reqwest::Client,
    cookies: Vec<(String, String, String)>,
}

impl Default for WebClient {
    fn default() -> Self {
        Self::new()
    }
}

fn host_of(url: &str) -> String {
    url.split("://")
        .nth(1)
        .and_then(|r| r.split('/').next())
        .unwrap_or_default()
        .to_owned()
}

/// `location` resolved against `base`.
pub fn absolute(base: &str, location: &str) -> String {
    if location.contains("://") {
        return location.to_owned();
    }
    let scheme = base.split("://").next().unwrap_or("http");
    format!("{scheme}://{}{location}", host_of(base))
}

impl WebClient {
    /// A client without cookies.
    pub fn new() -> Self {
        WebClient {
            http: reqwest::Client::builder()
                .no_proxy()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("client"),
            cookies: Vec::new(),
        }
    }

    /// The cookie `name` kept for `host`.
    pub fn cookie(&self, host: &str, name: &str) -> Option<String> {
        self.cookies
            .iter()
            .find(|(h, n, _)| h == host && n == name)
            .map(|(_, _, v)| v.clone())
    }

    /// Sets (or with an empty value removes) a cookie for `host`.
    pub fn set_cookie(&mut self, host: &str, name: &str, value: &str) {
        self.cookies.retain(|(h, n, _)| !(h == host && n == name));
        if !value.is_empty() {
            self.cookies
                .push((host.to_owned(), name.to_owned(), value.to_owned()));
        }
    }

    fn header_for(&self, url: &str) -> String {
        let host = host_of(url);
        self.cookies
            .iter()
            .filter(|(h, _, _)| *h == host)
            .map(|(_, k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    async fn answer(&mut self, url: &str, resp: reqwest::Response) -> Answer {
        let host = host_of(url);
        for c in resp.headers().get_all(SET_COOKIE) {
            if let Some((k, v)) = c
                .to_str()
                .ok()
                .and_then(|c| c.split(';').next())
                .and_then(|kv| kv.split_once('='))
            {
                let expired = c
                    .to_str()
                    .is_ok_and(|c| c.to_ascii_lowercase().contains("max-age=0"));
                self.set_cookie(&host, k.trim(), if expired { "" } else { v.trim() });
            }
        }
        let status = resp.status();
        let location = resp
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(|l| absolute(url, l));
        Answer {
            status,
            location,
            body: resp.text().await.unwrap_or_default(),
            url: url.to_owned(),
        }
    }

    /// GET `url`, one hop.
    pub async fn get(&mut self, url: &str) -> Answer {
        let resp = self
            .http
            .get(url)
            .header(COOKIE, self.header_for(url))
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {url}: {e}"));
        self.answer(url, resp).await
    }

    /// POST a form to `url`, one hop.
    pub async fn post(&mut self, url: &str, form: &[(String, String)]) -> Answer {
        let resp = self
            .http
            .post(url)
            .header(COOKIE, self.header_for(url))
            .form(form)
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST {url}: {e}"));
        self.answer(url, resp).await
    }

    /// GET `url` and follow redirects until an answer that is not one, or until a
    /// redirect to a URL starting with `stop_at` (returned unvisited, in `location`).
    pub async fn follow(&mut self, url: &str, stop_at: Option<&str>) -> Answer {
        let mut next = url.to_owned();
        for _ in 0..20 {
            let a = self.get(&next).await;
            match &a.location {
                Some(l) if a.status.is_redirection() => {
                    if stop_at.is_some_and(|s| l.starts_with(s)) {
                        return a;
                    }
                    next = l.clone();
                }
                _ => return a,
            }
        }
        panic!("more than 20 redirects from {url}");
    }
}

/// The first form of a page: its action (absolute) and its hidden fields.
pub fn form_of(page_url: &str, html: &str) -> (String, Vec<(String, String)>) {
    let form = html.split("<form").nth(1).expect("a form on the page");
    let action = attr(form, "action").unwrap_or_default();
    let mut hidden = Vec::new();
    for input in form.split("<input").skip(1) {
        let tag = input.split('>').next().unwrap_or_default();
        if tag.contains("type=\"hidden\"")
            && let (Some(n), Some(v)) = (attr(tag, "name"), attr(tag, "value"))
        {
            hidden.push((n, v));
        }
    }
    (absolute(page_url, &action), hidden)
}

fn attr(tag: &str, name: &str) -> Option<String> {
    let key = format!("{name}=\"");
    let rest = tag.split(&key).nth(1)?;
    Some(rest.split('"').next()?.replace("&amp;", "&"))
}

/// The target of a page's `<meta http-equiv="refresh" content="0;url=…">`.
pub fn refresh_of(html: &str) -> Option<String> {
    let meta = html.split("http-equiv=\"refresh\"").nth(1)?;
    let content = attr(meta.split('>').next()?, "content")?;
    let url = content.split_once("url=")?.1;
    Some(url.to_owned())
}
