//! Sign-in, sessions and CSRF.
//!
//! - `GET /login` sets a short-lived `tether_login_csrf` cookie and puts the same value in
//!   the form (double submit: another site can neither read nor set it);
//! - `POST /login` checks it and the API token, creates a session and sets
//!   `tether_session` (random id; the store keeps its SHA-256);
//! - [`Session`] (extractor) resolves the cookie on every page;
//! - [`FormPost`] (extractor) is every other form: a session, a matching `csrf` field and no
//!   foreign `Origin`, else 403 — audited either way.

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;

use super::layout;
use crate::api::audit::{self, Origin};
use crate::api::auth::Principal;
use crate::state::AppState;

/// The session cookie.
pub const SESSION_COOKIE: &str = "tether_session";
/// The sign-in form's double-submit cookie.
pub const LOGIN_CSRF_COOKIE: &str = "tether_login_csrf";
/// How long a session lasts.
const SESSION_MS: i64 = 12 * 3600 * 1000;

/// The value of cookie `name` in the request's `Cookie` headers.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim().to_owned())
}

/// Whether the client reached us over TLS (directly or through a TLS-terminating proxy
/// that says so); cookies are then `Secure`.
pub(super) fn over_tls(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("https"))
}

/// A `Set-Cookie` value with the flags every dashboard cookie has.
pub(super) fn set_cookie(name: &str, value: &str, max_age_s: i64, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    let v =
        format!("{name}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age_s}{secure}");
    HeaderValue::from_str(&v).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// `resp` with the new session's cookie set and the sign-in form's double-submit cookie
/// cleared: the end of every sign-in.
pub(super) fn with_session_cookie(
    mut resp: Response,
    session_id: &str,
    max_age_s: i64,
    secure: bool,
) -> Response {
    resp.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(SESSION_COOKIE, session_id, max_age_s, secure),
    );
    resp.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(LOGIN_CSRF_COOKIE, "", 0, secure),
    );
    resp
}

/// Constant-time comparison of two secrets.
pub(super) fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// A signed-in user.
#[derive(Debug, Clone)]
pub struct Session {
    /// Who, with the token's role and tenant.
    pub principal: Principal,
    /// The CSRF token to embed in forms.
    pub csrf: String,
    id_hash: String,
}

impl Session {
    async fn resolve(parts: &Parts, state: &AppState) -> Option<Session> {
        let id = cookie(&parts.headers, SESSION_COOKIE)?;
        if id.is_empty() || id.len() > 128 {
            return None;
        }
        let id_hash = tether_shared::tokens::hash(&id);
        let found = state
            .store
            .dashboard_session(&id_hash, state.clock.now_ms())
            .await
            .ok()??;
        Some(Session {
            principal: Principal::of_token(found.token, state.clock.now())?,
            csrf: found.csrf,
            id_hash,
        })
    }
}

impl axum::extract::OptionalFromRequestParts<AppState> for Session {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Option<Self>, Self::Rejection> {
        Ok(Session::resolve(parts, state).await)
    }
}

impl FromRequestParts<AppState> for Session {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        match Session::resolve(parts, state).await {
            Some(s) => Ok(s),
            None => Err(Redirect::to("/login").into_response()),
        }
    }
}

/// A form post from a signed-in user whose CSRF token matched.
#[derive(Debug)]
pub struct FormPost {
    /// The user.
    pub session: Session,
    /// The form's fields, in order (a field may repeat).
    pub fields: Vec<(String, String)>,
    /// The request path.
    pub path: String,
    /// The client's address.
    pub client_addr: String,
}

impl FormPost {
    /// The first value of `name`, trimmed; empty when absent.
    pub fn field(&self, name: &str) -> String {
        self.fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.trim().to_owned())
            .unwrap_or_default()
    }

    /// Every non-empty value of `name`.
    pub fn all(&self, name: &str) -> Vec<String> {
        self.fields
            .iter()
            .filter(|(k, v)| k == name && !v.trim().is_empty())
            .map(|(_, v)| v.trim().to_owned())
            .collect()
    }

    /// Audits the API call this post made (`action` on `target`; `ok` is the status on
    /// success) and hands its result back.
    pub async fn audited<T>(
        &self,
        state: &AppState,
        action: &str,
        target: &str,
        ok: StatusCode,
        result: Result<T, crate::api::error::ApiError>,
    ) -> Result<T, crate::api::error::ApiError> {
        let status = result.as_ref().map_or_else(|e| e.status(), |_| ok);
        self.audit(state, action, target, status).await;
        result
    }

    /// Appends the audit entry of what this post did, named like the API call it made.
    pub async fn audit(&self, state: &AppState, action: &str, target: &str, status: StatusCode) {
        let tenant = audit::tenant_of(state, target, Some(&self.session.principal)).await;
        audit::append(
            state,
            Origin {
                via: "dashboard",
                client_addr: self.client_addr.clone(),
                principal: Some(&self.session.principal),
                user: None,
            },
            tenant,
            action.to_owned(),
            target.to_owned(),
            status.as_u16(),
        )
        .await;
    }
}

/// The `Origin` of a request names another site.
pub(super) fn foreign_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let origin_host = origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"))
        .unwrap_or(origin);
    origin == "null" || origin_host != host
}

impl FromRequest<AppState> for FormPost {
    type Rejection = Response;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Response> {
        let (mut parts, body) = req.into_parts();
        let path = parts.uri.path().to_owned();
        let client_addr = audit::client_addr(&parts.extensions);
        let action = format!("POST {path}");
        let Some(session) = Session::resolve(&parts, state).await else {
            audit::append(
                state,
                Origin {
                    via: "dashboard",
                    client_addr,
                    principal: None,
                    user: None,
                },
                None,
                action,
                path,
                401,
            )
            .await;
            return Err(Redirect::to("/login").into_response());
        };
        let bytes = axum::body::to_bytes(body, crate::api::MAX_BODY_BYTES)
            .await
            .map_err(|_| (StatusCode::PAYLOAD_TOO_LARGE, "form too large").into_response())?;
        let fields = form_pairs(&bytes);
        let sent = fields
            .iter()
            .find(|(k, _)| k == "csrf")
            .map(|(_, v)| v.as_str())
            .unwrap_or("");
        let post = FormPost {
            session,
            fields: fields.clone(),
            path: path.clone(),
            client_addr,
        };
        if foreign_origin(&parts.headers) || !same_secret(sent, &post.session.csrf) {
            post.audit(state, &action, &path, StatusCode::FORBIDDEN)
                .await;
            let page = layout::error_page(
                Some(&post.session),
                StatusCode::FORBIDDEN,
                "This form was not sent by this dashboard (missing or wrong CSRF token). Reload the page and try again.",
            );
            return Err(page);
        }
        // Keep the parts' extensions consistent for anything downstream.
        parts.extensions.insert(post.session.clone());
        Ok(post)
    }
}

/// `application/x-www-form-urlencoded` pairs, in order; a malformed body yields none.
pub(super) fn form_pairs(body: &[u8]) -> Vec<(String, String)> {
    serde_urlencoded::from_bytes(body).unwrap_or_default()
}

/// `GET /login`.
pub async fn login_page(headers: HeaderMap) -> Response {
    login_form(&headers, StatusCode::OK, None)
}

fn login_form(headers: &HeaderMap, status: StatusCode, error: Option<&str>) -> Response {
    let csrf = tether_shared::tokens::random_hex(16);
    let body = layout::page(
        None,
        "Sign in",
        html! {
            section.signin {
                h1 { "Sign in to Tether" }
                @if let Some(e) = error { p.error role="alert" { (e) } }
                form method="post" action="/login" {
                    input type="hidden" name="csrf" value=(csrf);
                    label for="token" { "API token" }
                    input #token type="password" name="token" autocomplete="off" required;
                    button type="submit" { "Sign in" }
                }
                p.hint { "Use an API token of your tenant (viewer, operator or admin), or the platform admin token." }
            }
            section.signin {
                h2 { "Single sign-on" }
                form #sso-tenant method="get" action="/ui/login" {
                    label for="tenant" { "Your organisation's tenant name" }
                    input #tenant type="text" name="tenant" autocomplete="organization" required;
                    button type="submit" { "Continue" }
                }
                p.hint { a href="/ui/platform/login" { "Tether staff: sign in with the platform's provider" } }
            }
        },
    );
    let mut resp = (status, body).into_response();
    resp.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(LOGIN_CSRF_COOKIE, &csrf, 600, over_tls(headers)),
    );
    resp
}

/// `POST /login`: token → session cookie. Audited as `sign-in`, failed attempts too.
pub async fn login(
    axum::extract::State(state): axum::extract::State<AppState>,
    req: Request,
) -> Response {
    let (parts, body) = req.into_parts();
    let client_addr = audit::client_addr(&parts.extensions);
    let Ok(bytes) = axum::body::to_bytes(body, crate::api::MAX_BODY_BYTES).await else {
        return (StatusCode::PAYLOAD_TOO_LARGE, "form too large").into_response();
    };
    let fields = form_pairs(&bytes);
    let get = |n: &str| {
        fields
            .iter()
            .find(|(k, _)| k == n)
            .map(|(_, v)| v.trim().to_owned())
            .unwrap_or_default()
    };
    let sent = get("csrf");
    let expected = cookie(&parts.headers, LOGIN_CSRF_COOKIE).unwrap_or_default();
    let origin = |p| Origin {
        via: "dashboard",
        client_addr: client_addr.clone(),
        principal: p,
        user: None,
    };
    // A refused sign-in: audited (no tenant: nobody is signed in), the form again.
    let refuse = |status: StatusCode, message: &'static str| {
        let (state, headers, origin) = (&state, &parts.headers, origin(None));
        async move {
            audit::append(
                state,
                origin,
                None,
                "sign-in".into(),
                "/login".into(),
                status.as_u16(),
            )
            .await;
            login_form(headers, status, Some(message))
        }
    };
    if expected.is_empty() || !same_secret(&sent, &expected) || foreign_origin(&parts.headers) {
        return refuse(
            StatusCode::FORBIDDEN,
            "The sign-in form expired or was not sent by this dashboard; try again.",
        )
        .await;
    }
    let token = get("token");
    let found = if token.is_empty() || token.len() > 256 {
        None
    } else {
        state
            .store
            .find_api_token(&tether_shared::tokens::hash(&token))
            .await
            .ok()
            .flatten()
            .and_then(|t| Principal::of_token(t, state.clock.now()))
    };
    // A person's tokens (a session's own, a personal API token) are for the API: a person
    // signs in to the dashboard through their provider, which reads their groups again.
    if found.as_ref().is_some_and(|p| p.user_id.is_some()) {
        return refuse(
            StatusCode::UNAUTHORIZED,
            "Personal API tokens are for the API. Sign in with your identity provider instead.",
        )
        .await;
    }
    let Some(principal) = found else {
        return refuse(StatusCode::UNAUTHORIZED, "That token is not valid.").await;
    };
    let id = tether_shared::tokens::random_hex(32);
    let csrf = tether_shared::tokens::random_hex(32);
    let now = state.clock.now_ms();
    if let Err(e) = state
        .store
        .create_dashboard_session(
            &tether_shared::tokens::hash(&id),
            &principal.token_id,
            &csrf,
            now,
            now + SESSION_MS,
        )
        .await
    {
        tracing::error!("cannot create a dashboard session: {e}");
        return layout::error_page(None, StatusCode::INTERNAL_SERVER_ERROR, "internal error");
    }
    audit::append(
        &state,
        origin(Some(&principal)),
        principal.tenant_id.clone(),
        "sign-in".into(),
        "/login".into(),
        303,
    )
    .await;
    tracing::info!(token = %principal.token_id, role = principal.role.as_str(), "dashboard sign-in");
    with_session_cookie(
        Redirect::to("/").into_response(),
        &id,
        SESSION_MS / 1000,
        over_tls(&parts.headers),
    )
}

/// `POST /logout`.
pub async fn logout(
    axum::extract::State(state): axum::extract::State<AppState>,
    headers: HeaderMap,
    post: FormPost,
) -> Response {
    if let Err(e) = state
        .store
        .delete_dashboard_session(&post.session.id_hash)
        .await
    {
        tracing::warn!("ending a dashboard session: {e}");
    }
    post.audit(&state, "sign-out", "/logout", StatusCode::SEE_OTHER)
        .await;
    let mut resp = Redirect::to("/login").into_response();
    resp.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(SESSION_COOKIE, "", 0, over_tls(&headers)),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_and_forms_parse() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; tether_session=abc; b=2"),
        );
        assert_eq!(cookie(&h, SESSION_COOKIE).as_deref(), Some("abc"));
        assert_eq!(cookie(&h, "c"), None);
        let f = form_pairs(b"name=etl&catalogs=lake&catalogs=mysql&note=a+b%21");
        assert_eq!(f[0], ("name".into(), "etl".into()));
        assert_eq!(f[2], ("catalogs".into(), "mysql".into()));
        assert_eq!(f[3], ("note".into(), "a b!".into()));
    }

    #[test]
    fn cookie_flags() {
        let c = set_cookie(SESSION_COOKIE, "x", 60, true);
        let c = c.to_str().unwrap_or_default();
        for flag in ["HttpOnly", "SameSite=Strict", "Secure", "Path=/"] {
            assert!(c.contains(flag), "{c}");
        }
        let plain = set_cookie(SESSION_COOKIE, "x", 60, false);
        assert!(!plain.to_str().unwrap_or_default().contains("Secure"));
    }

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abc", "abd"));
        assert!(!same_secret("abc", "ab"));
        assert!(!same_secret("", "a"));
    }

    #[test]
    fn foreign_origins_are_spotted() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("127.0.0.1:8080"));
        assert!(!foreign_origin(&h));
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://127.0.0.1:8080"),
        );
        assert!(!foreign_origin(&h));
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://evil.example"),
        );
        assert!(foreign_origin(&h));
    }
}
