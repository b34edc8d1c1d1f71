//! Sign-in with a tenant's identity provider (see [`crate::identity`]):
//!
//! - `GET /ui/login/{tenant}`: the tenant's sign-in page: "Sign in with your identity
//!   provider" (OIDC) or a user name and password form (LDAP), beside the token form;
//! - `POST /ui/oidc/start/{tenant}` (and `POST /ui/platform/login` for the vendor's staff),
//!   from the sign-in page's form with its double-submit token: keeps the sign-in's
//!   `nonce`, PKCE verifier and scope under the hash of its `state`, binds the `state` to
//!   the browser (a `SameSite=Lax` cookie, so it comes back on the provider's top-level
//!   redirect), and sends the browser to the provider;
//! - `GET /ui/oidc/callback/{tenant}` (`/ui/platform/oidc/callback`): the `state` must match
//!   the browser's, be unused and belong to this callback's scope; the code is exchanged and
//!   the ID token verified ([`crate::identity::oidc`]);
//! - `POST /ui/login/{tenant}`: LDAP ([`crate::identity::ldap`]).
//!
//! Each sign-in reads the person's groups anew and maps them to a role; no mapped group is
//! a refusal page. A signed-in person's session has a token of its own (their role, their
//! name, expiring with the session), so every page and audit entry names them. Every
//! sign-in, refusal and sign-out is audited.

use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;
use serde::Deserialize;

use super::layout;
use super::session::{
    LOGIN_CSRF_COOKIE, cookie, foreign_origin, form_pairs, over_tls, same_secret, set_cookie,
    with_session_cookie,
};
use crate::api::audit::{self, Origin};
use crate::api::auth::Principal;
use crate::authz::Role;
use crate::identity::{
    self, LOGIN_STATE_MS, Person, ProviderConfig, SESSION_MS, SignInError, Via, ldap, oidc,
};
use crate::state::AppState;
use crate::store::{PendingLogin, Scope, Tenant};

/// The cookie that binds an OIDC sign-in's `state` to the browser that started it.
pub const OIDC_STATE_COOKIE: &str = "tether_oidc_state";
/// The platform's callback (a tenant's is `/ui/oidc/callback/{tenant}`): each scope has a
/// redirect URI of its own, so a code a provider sends can only finish a sign-in of the
/// scope that provider belongs to (an IdP mix-up cannot route one provider's code to
/// another's token endpoint).
pub const PLATFORM_CALLBACK_PATH: &str = "/ui/platform/oidc/callback";
/// The platform's scope name.
const PLATFORM: &str = "platform";

/// The tenant of this name, if it exists.
async fn tenant_named(state: &AppState, name: &str) -> Option<Tenant> {
    if name.is_empty() || name.len() > 63 {
        return None;
    }
    state
        .store
        .list_tenants()
        .await
        .ok()?
        .into_iter()
        .find(|t| t.name == name)
}

/// This control plane's callback URL for `label` (a tenant's name, or `platform`), as the
/// browser reaches it.
pub fn redirect_url(state: &AppState, headers: &HeaderMap, label: &str) -> String {
    let base = match &state.identity.public_url {
        Some(u) => u.clone(),
        None => {
            let host = headers
                .get(header::HOST)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("127.0.0.1");
            let scheme = if over_tls(headers) { "https" } else { "http" };
            format!("{scheme}://{host}")
        }
    };
    if label == PLATFORM {
        format!("{base}{PLATFORM_CALLBACK_PATH}")
    } else {
        format!("{base}/ui/oidc/callback/{label}")
    }
}

/// The `Set-Cookie` of the OIDC state cookie (`Lax`, not `Strict`: the provider's redirect
/// back is a cross-site top-level navigation); an empty value clears it.
fn state_cookie(value: &str, secure: bool) -> axum::http::HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    let max_age = if value.is_empty() {
        0
    } else {
        LOGIN_STATE_MS / 1000
    };
    let v = format!(
        "{OIDC_STATE_COOKIE}={value}; Path=/ui; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}"
    );
    axum::http::HeaderValue::from_str(&v)
        .unwrap_or_else(|_| axum::http::HeaderValue::from_static(""))
}

/// Whether a sign-in form post carries the double-submit token of the page that showed it
/// and no foreign `Origin` (so another site cannot start a sign-in in the visitor's
/// browser: login CSRF).
fn from_our_form(headers: &HeaderMap, fields: &[(String, String)]) -> bool {
    let sent = fields
        .iter()
        .find(|(k, _)| k == "csrf")
        .map(|(_, v)| v.as_str())
        .unwrap_or("");
    let expected = cookie(headers, LOGIN_CSRF_COOKIE).unwrap_or_default();
    !expected.is_empty() && same_secret(sent, &expected) && !foreign_origin(headers)
}

async fn audit_sign_in(
    state: &AppState,
    client_addr: String,
    principal: Option<&Principal>,
    tenant_id: Option<String>,
    target: String,
    status: u16,
    person: Option<String>,
) {
    audit::append(
        state,
        Origin {
            via: "dashboard",
            client_addr,
            principal,
            user: person,
        },
        tenant_id,
        "sign-in".into(),
        target,
        status,
    )
    .await;
}

/// `GET /ui/login?tenant=NAME`: the sign-in form's way to a tenant's sign-in page.
pub async fn choose_tenant(Query(q): Query<std::collections::HashMap<String, String>>) -> Response {
    let name = q
        .get("tenant")
        .map(|t| t.trim().to_ascii_lowercase())
        .unwrap_or_default();
    match tether_shared::names::validate_dns1123_label(&name) {
        Ok(()) => Redirect::to(&format!("/ui/login/{name}")).into_response(),
        Err(_) => Redirect::to("/login").into_response(),
    }
}

/// `GET /ui/login/{tenant}`.
pub async fn login_page(
    State(state): State<AppState>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
) -> Response {
    let provider = match tenant_named(&state, &tenant).await {
        Some(t) => state.store.identity_provider(&t.id).await.ok().flatten(),
        None => None,
    };
    tenant_form(&headers, &tenant, provider.as_ref(), StatusCode::OK, None)
}

fn tenant_form(
    headers: &HeaderMap,
    tenant: &str,
    provider: Option<&ProviderConfig>,
    status: StatusCode,
    error: Option<&str>,
) -> Response {
    let csrf = tether_shared::tokens::random_hex(16);
    let body = layout::page(
        None,
        "Sign in",
        html! {
            section.signin {
                h1 { "Sign in to " span.name { (tenant) } }
                @if let Some(e) = error { p.error role="alert" { (e) } }
                @match provider {
                    Some(ProviderConfig::Oidc { .. }) => {
                        form method="post" action={ "/ui/oidc/start/" (tenant) } {
                            input type="hidden" name="csrf" value=(csrf);
                            button #sso type="submit" { "Sign in with your identity provider" }
                        }
                    }
                    Some(ProviderConfig::Ldap(_)) => {
                        form method="post" action={ "/ui/login/" (tenant) } {
                            input type="hidden" name="csrf" value=(csrf);
                            label for="username" { "User name" }
                            input #username type="text" name="username" autocomplete="username" required;
                            label for="password" { "Password" }
                            input #password type="password" name="password" autocomplete="current-password" required;
                            button type="submit" { "Sign in" }
                        }
                    }
                    None => {
                        p.hint { "Single sign-on is not set up for this tenant. Sign in with an API token, or ask your administrator." }
                    }
                }
                p { a href="/login" { "Sign in with an API token instead" } }
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

/// The provider and its secret for a scope (`platform` or a tenant id).
async fn oidc_provider(
    state: &AppState,
    scope: &str,
) -> Result<(String, String, String, String), SignInError> {
    if scope == PLATFORM {
        let p = state.identity.platform_oidc.as_ref().ok_or_else(|| {
            SignInError::Invalid("Platform sign-in is not configured here.".into())
        })?;
        return Ok((
            p.issuer.clone(),
            p.client_id.clone(),
            p.client_secret.clone(),
            p.groups_claim.clone(),
        ));
    }
    let not_set = || SignInError::Invalid("Single sign-on is not set up for this tenant.".into());
    let Some(ProviderConfig::Oidc {
        issuer,
        client_id,
        groups_claim,
        ..
    }) = state
        .store
        .identity_provider(scope)
        .await
        .map_err(|e| SignInError::Provider(format!("the control plane's store: {e}")))?
    else {
        return Err(not_set());
    };
    let secret = state
        .secrets
        .get(&identity::secret_name(scope))
        .await
        .map_err(|e| SignInError::Provider(format!("the client secret: {e}")))?
        .and_then(|s| String::from_utf8(s).ok())
        .ok_or_else(not_set)?;
    Ok((issuer, client_id, secret, groups_claim))
}

/// A sign-in start form's fields, or the refusal when it did not come from our page.
async fn start_form(
    state: &AppState,
    req: Request,
    tenant_id: Option<String>,
    label: &str,
) -> Result<(HeaderMap, String), Response> {
    let (parts, body) = req.into_parts();
    let client_addr = audit::client_addr(&parts.extensions);
    let bytes = axum::body::to_bytes(body, crate::api::MAX_BODY_BYTES)
        .await
        .unwrap_or_default();
    if !from_our_form(&parts.headers, &form_pairs(&bytes)) {
        let target = if label == PLATFORM {
            "/ui/platform/login".to_owned()
        } else {
            format!("/ui/oidc/start/{label}")
        };
        audit_sign_in(state, client_addr, None, tenant_id, target, 403, None).await;
        return Err(refusal(
            StatusCode::FORBIDDEN,
            "The sign-in form expired or was not sent by this dashboard; try again.",
            label,
        ));
    }
    Ok((parts.headers, client_addr))
}

/// `POST /ui/oidc/start/{tenant}` (the tenant page's button).
pub async fn oidc_start(
    State(state): State<AppState>,
    Path(tenant): Path<String>,
    req: Request,
) -> Response {
    let Some(t) = tenant_named(&state, &tenant).await else {
        return layout::error_page(
            None,
            StatusCode::NOT_FOUND,
            "Single sign-on is not set up for this tenant.",
        );
    };
    match start_form(&state, req, Some(t.id.clone()), &tenant).await {
        Ok((headers, client_addr)) => start(&state, &headers, client_addr, &t.id, &tenant).await,
        Err(refused) => refused,
    }
}

/// `GET /ui/platform/login`: the page with the platform's sign-in button.
pub async fn platform_page(headers: HeaderMap) -> Response {
    let csrf = tether_shared::tokens::random_hex(16);
    let body = layout::page(
        None,
        "Sign in",
        html! {
            section.signin {
                h1 { "Sign in to Tether (staff)" }
                form method="post" action="/ui/platform/login" {
                    input type="hidden" name="csrf" value=(csrf);
                    button #sso type="submit" { "Sign in with the platform's identity provider" }
                }
                p { a href="/login" { "Sign in with an API token instead" } }
            }
        },
    );
    let mut resp = body.into_response();
    resp.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(LOGIN_CSRF_COOKIE, &csrf, 600, over_tls(&headers)),
    );
    resp
}

/// `POST /ui/platform/login`: the vendor's staff, through the platform's provider.
pub async fn platform_start(State(state): State<AppState>, req: Request) -> Response {
    match start_form(&state, req, None, PLATFORM).await {
        Ok((headers, client_addr)) => {
            start(&state, &headers, client_addr, PLATFORM, PLATFORM).await
        }
        Err(refused) => refused,
    }
}

async fn start(
    state: &AppState,
    headers: &HeaderMap,
    client_addr: String,
    scope: &str,
    label: &str,
) -> Response {
    let tenant_id = (scope != PLATFORM).then(|| scope.to_owned());
    let target = if label == PLATFORM {
        "/ui/platform/login".to_owned()
    } else {
        format!("/ui/oidc/start/{label}")
    };
    let (issuer, client_id, secret, groups_claim) = match oidc_provider(state, scope).await {
        Ok(p) => p,
        Err(e) => {
            audit_sign_in(state, client_addr, None, tenant_id, target, 404, None).await;
            return refusal(StatusCode::NOT_FOUND, &e.to_string(), label);
        }
    };
    let redirect = redirect_url(state, headers, label);
    let provider = oidc::Provider {
        issuer: &issuer,
        client_id: &client_id,
        client_secret: &secret,
        groups_claim: &groups_claim,
        redirect_url: &redirect,
        allow_loopback: state.identity.allow_loopback,
    };
    let started = match oidc::start(&state.oidc_http, &provider).await {
        Ok(s) => s,
        Err(e) => {
            audit_sign_in(state, client_addr, None, tenant_id, target, 502, None).await;
            return refusal(StatusCode::BAD_GATEWAY, &e.to_string(), label);
        }
    };
    let now = state.clock.now_ms();
    let pending = PendingLogin {
        scope: scope.to_owned(),
        nonce: started.nonce,
        pkce_verifier: started.pkce_verifier,
    };
    if let Err(e) = state
        .store
        .put_pending_login(
            &tether_shared::tokens::hash(&started.state),
            &pending,
            now,
            now + LOGIN_STATE_MS,
        )
        .await
    {
        tracing::error!("cannot keep an OIDC sign-in: {e}");
        return layout::error_page(None, StatusCode::SERVICE_UNAVAILABLE, "Try again shortly.");
    }
    // A page that moves on, not a redirect: the dashboard's CSP (`form-action 'self'`)
    // also governs where a form post may redirect, and the provider is another origin.
    let body = layout::page(
        None,
        "Signing in",
        html! {
            meta http-equiv="refresh" content=(format!("0;url={}", started.url));
            section.signin {
                h1 { "Signing in" }
                p { a #continue href=(started.url) { "Continue to your identity provider" } }
            }
        },
    );
    let mut resp = body.into_response();
    resp.headers_mut().append(
        header::SET_COOKIE,
        state_cookie(&started.state, over_tls(headers)),
    );
    resp
}

/// The callback's query.
#[derive(Debug, Deserialize)]
pub struct Callback {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

/// A page saying why a sign-in did not happen, with a way back.
fn refusal(status: StatusCode, message: &str, tenant: &str) -> Response {
    let back = if tenant == PLATFORM {
        "/ui/platform/login".to_owned()
    } else if tenant.is_empty() {
        "/login".to_owned()
    } else {
        format!("/ui/login/{tenant}")
    };
    let body = layout::page(
        None,
        "Not signed in",
        html! {
            section.signin {
                h1 { "Not signed in" }
                p.error role="alert" { (message) }
                p { a href=(back) { "Back to the sign-in page" } }
            }
        },
    );
    let mut resp = (status, body).into_response();
    resp.headers_mut()
        .append(header::SET_COOKIE, state_cookie("", false));
    resp
}

/// `GET /ui/oidc/callback/{tenant}`.
pub async fn oidc_callback(
    State(state): State<AppState>,
    Path(tenant): Path<String>,
    Query(q): Query<Callback>,
    req: Request,
) -> Response {
    let expected = tenant_named(&state, &tenant).await.map(|t| t.id);
    callback(state, &tenant, expected, q, req).await
}

/// `GET /ui/platform/oidc/callback`.
pub async fn platform_callback(
    State(state): State<AppState>,
    Query(q): Query<Callback>,
    req: Request,
) -> Response {
    callback(state, PLATFORM, Some(PLATFORM.to_owned()), q, req).await
}

/// The provider sent the browser back to the callback of `label`, whose scope is
/// `expected` (`None`: no such tenant).
async fn callback(
    state: AppState,
    label: &str,
    expected: Option<String>,
    q: Callback,
    req: Request,
) -> Response {
    let (parts, _) = req.into_parts();
    let headers = &parts.headers;
    let client_addr = audit::client_addr(&parts.extensions);
    let target = parts.uri.path().to_owned();
    let sent_state = q.state.clone().unwrap_or_default();
    let browser_state = cookie(headers, OIDC_STATE_COOKIE).unwrap_or_default();
    // The state must be the one this browser started, and unused.
    let pending = if sent_state.is_empty()
        || sent_state.len() > 256
        || !same_secret(&sent_state, &browser_state)
    {
        None
    } else {
        state
            .store
            .take_pending_login(
                &tether_shared::tokens::hash(&sent_state),
                state.clock.now_ms(),
            )
            .await
            .ok()
            .flatten()
    };
    // ...and started for this callback's scope.
    let pending = pending.filter(|p| expected.as_deref() == Some(p.scope.as_str()));
    let Some(pending) = pending else {
        audit_sign_in(&state, client_addr, None, None, target, 403, None).await;
        return refusal(
            StatusCode::FORBIDDEN,
            "This sign-in is not valid: it was not started in this browser, it was used already, or it expired. Start again.",
            "",
        );
    };
    let tenant_label = tenant_label(&state, &pending.scope).await;
    let tenant_id = (pending.scope != PLATFORM).then(|| pending.scope.clone());
    if let Some(err) = q.error {
        audit_sign_in(&state, client_addr, None, tenant_id, target, 401, None).await;
        let detail = q.error_description.unwrap_or_default();
        return refusal(
            StatusCode::UNAUTHORIZED,
            &format!(
                "The identity provider did not sign you in ({err}{}{detail}).",
                if detail.is_empty() { "" } else { ": " }
            ),
            &tenant_label,
        );
    }
    let code = q.code.unwrap_or_default();
    let result = async {
        if code.is_empty() || code.len() > 2048 {
            return Err(SignInError::Invalid("The provider sent no code.".into()));
        }
        let (issuer, client_id, secret, groups_claim) =
            oidc_provider(&state, &pending.scope).await?;
        let redirect = redirect_url(&state, headers, label);
        let provider = oidc::Provider {
            issuer: &issuer,
            client_id: &client_id,
            client_secret: &secret,
            groups_claim: &groups_claim,
            redirect_url: &redirect,
            allow_loopback: state.identity.allow_loopback,
        };
        oidc::finish(
            &state.oidc_http,
            &provider,
            &code,
            &pending.nonce,
            &pending.pkce_verifier,
        )
        .await
    }
    .await;
    let person = match result {
        Ok(p) => p,
        Err(e) => {
            let status = match e {
                SignInError::Provider(_) => StatusCode::BAD_GATEWAY,
                _ => StatusCode::UNAUTHORIZED,
            };
            audit_sign_in(
                &state,
                client_addr,
                None,
                tenant_id,
                target,
                status.as_u16(),
                None,
            )
            .await;
            return refusal(status, &e.to_string(), &tenant_label);
        }
    };
    let role = if pending.scope == PLATFORM {
        platform_role(&state, &person)
    } else {
        state
            .store
            .identity_provider(&pending.scope)
            .await
            .ok()
            .flatten()
            .and_then(|c| c.role_mapping().role_of(&person.groups, false))
    };
    let scope = match &tenant_id {
        Some(t) => Scope::Tenant(t),
        None => Scope::Platform,
    };
    let resp = signed_in(
        &state,
        headers,
        client_addr,
        scope,
        Via::Oidc,
        &person,
        role,
        target,
        &tenant_label,
    )
    .await;
    let mut resp = resp;
    resp.headers_mut()
        .append(header::SET_COOKIE, state_cookie("", over_tls(headers)));
    resp
}

async fn tenant_label(state: &AppState, scope: &str) -> String {
    if scope == PLATFORM {
        return PLATFORM.into();
    }
    state
        .store
        .get_tenant(scope)
        .await
        .ok()
        .flatten()
        .map(|t| t.name)
        .unwrap_or_default()
}

fn platform_role(state: &AppState, person: &Person) -> Option<Role> {
    let p = state.identity.platform_oidc.as_ref()?;
    person
        .groups
        .contains(&p.admin_group)
        .then_some(Role::PlatformAdmin)
}

/// The end of every successful authentication: no role is a refusal; else the user is
/// recorded, gets a session (and its own token), and goes to the dashboard.
#[allow(clippy::too_many_arguments)]
async fn signed_in(
    state: &AppState,
    headers: &HeaderMap,
    client_addr: String,
    scope: Scope<'_>,
    via: Via,
    person: &Person,
    role: Option<Role>,
    target: String,
    tenant_label: &str,
) -> Response {
    let who = format!("{} via {}", person.name, via.as_str());
    let tenant_id = scope.tenant_id().map(str::to_owned);
    let Some(role) = role else {
        // Someone who had access and lost it: their sessions and personal tokens end now.
        match state
            .store
            .end_user_tokens(scope, via, &person.subject, state.clock.now())
            .await
        {
            Ok(0) => {}
            Ok(n) => tracing::info!(user = %who, tokens = n, "sessions and personal tokens ended"),
            Err(e) => tracing::error!(user = %who, "cannot end the tokens of a refused user: {e}"),
        }
        tracing::info!(user = %who, groups = ?person.groups, "sign-in refused: no mapped group");
        audit_sign_in(state, client_addr, None, tenant_id, target, 403, Some(who)).await;
        return refusal(
            StatusCode::FORBIDDEN,
            &format!(
                "You ({}) signed in with your identity provider, but you are not in any group that has access to Tether. Ask your administrator to add you to one.",
                person.name
            ),
            tenant_label,
        );
    };
    let now = state.clock.now();
    let made = async {
        let user = state
            .store
            .sign_in_user(scope, via, &person.subject, &person.name, role, now)
            .await?;
        let token = tether_shared::tokens::generate(tether_shared::tokens::API_TOKEN_PREFIX);
        let stored = state
            .store
            .create_user_token(
                &user,
                role,
                &tether_shared::tokens::hash(&token),
                now + SESSION_MS / 1000,
                now,
            )
            .await?;
        let id = tether_shared::tokens::random_hex(32);
        let csrf = tether_shared::tokens::random_hex(32);
        let now_ms = state.clock.now_ms();
        state
            .store
            .create_dashboard_session(
                &tether_shared::tokens::hash(&id),
                &stored.id,
                &csrf,
                now_ms,
                now_ms + SESSION_MS,
            )
            .await?;
        Ok::<_, crate::store::StoreError>((stored, id))
    }
    .await;
    let (stored, session_id) = match made {
        Ok(m) => m,
        Err(e) => {
            tracing::error!("cannot create a session for {who}: {e}");
            return layout::error_page(None, StatusCode::SERVICE_UNAVAILABLE, "Try again shortly.");
        }
    };
    let principal = Principal {
        token_id: stored.id.clone(),
        tenant_id: tenant_id.clone(),
        role,
        user: Some(who.clone()),
        user_id: stored.user_id.clone(),
    };
    audit_sign_in(
        state,
        client_addr,
        Some(&principal),
        tenant_id,
        target,
        200,
        None,
    )
    .await;
    tracing::info!(user = %who, role = role.as_str(), "dashboard sign-in");
    // A page of our own that moves on: the session cookie is SameSite=Strict, and a
    // redirect chain that began at the provider's site would not send it.
    let body = layout::page(
        None,
        "Signed in",
        html! {
            meta http-equiv="refresh" content="0;url=/";
            section.signin {
                h1 { "Signed in" }
                p { "Welcome, " (person.name) ". " a #continue href="/" { "Continue to the dashboard" } }
            }
        },
    );
    with_session_cookie(
        (StatusCode::OK, body).into_response(),
        &session_id,
        SESSION_MS / 1000,
        over_tls(headers),
    )
}

/// `POST /ui/login/{tenant}`: user name and password against the tenant's LDAP
/// directory.
pub async fn ldap_login(
    State(state): State<AppState>,
    Path(tenant): Path<String>,
    req: Request,
) -> Response {
    let (parts, body) = req.into_parts();
    let headers = &parts.headers;
    let client_addr = audit::client_addr(&parts.extensions);
    let target = format!("/ui/login/{tenant}");
    let Ok(bytes) = axum::body::to_bytes(body, crate::api::MAX_BODY_BYTES).await else {
        return (StatusCode::PAYLOAD_TOO_LARGE, "form too large").into_response();
    };
    let fields = form_pairs(&bytes);
    let get = |n: &str| {
        fields
            .iter()
            .find(|(k, _)| k == n)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let t = tenant_named(&state, &tenant).await;
    let provider = match &t {
        Some(t) => state.store.identity_provider(&t.id).await.ok().flatten(),
        None => None,
    };
    let expected = cookie(headers, LOGIN_CSRF_COOKIE).unwrap_or_default();
    if expected.is_empty() || !same_secret(&get("csrf"), &expected) || foreign_origin(headers) {
        audit_sign_in(
            &state,
            client_addr,
            None,
            t.map(|t| t.id),
            target,
            403,
            None,
        )
        .await;
        return tenant_form(
            headers,
            &tenant,
            provider.as_ref(),
            StatusCode::FORBIDDEN,
            Some("The sign-in form expired or was not sent by this dashboard; try again."),
        );
    }
    let (Some(t), Some(ProviderConfig::Ldap(cfg))) = (t, provider.clone()) else {
        return tenant_form(
            headers,
            &tenant,
            None,
            StatusCode::NOT_FOUND,
            Some("Sign-in with a directory is not set up for this tenant."),
        );
    };
    let username = get("username").trim().to_owned();
    // Who the audit entry of a refusal names: what was typed, if it can be a name.
    let who =
        (!username.is_empty() && username.len() <= 256).then(|| format!("{username} via ldap"));
    if let Err(wait) = state.sign_in_limits.attempt(&t.id, &username) {
        // Refused before the directory is asked; audited like every refusal.
        let status = StatusCode::TOO_MANY_REQUESTS;
        audit_sign_in(
            &state,
            client_addr,
            None,
            Some(t.id),
            target,
            status.as_u16(),
            who,
        )
        .await;
        let secs = wait.as_secs().max(1);
        let mut page = tenant_form(
            headers,
            &tenant,
            provider.as_ref(),
            status,
            Some(&format!(
                "Too many sign-in attempts; try again in {secs} seconds."
            )),
        );
        if let Ok(v) = axum::http::HeaderValue::from_str(&secs.to_string()) {
            page.headers_mut()
                .insert(axum::http::header::RETRY_AFTER, v);
        }
        return page;
    }
    let service_password = match &cfg.bind_dn {
        Some(_) => state
            .secrets
            .get(&identity::secret_name(&t.id))
            .await
            .ok()
            .flatten()
            .and_then(|s| String::from_utf8(s).ok()),
        None => None,
    };
    let person = ldap::sign_in(
        &cfg,
        service_password.as_deref(),
        &username,
        &get("password"),
    )
    .await;
    let person = match person {
        Ok(p) => p,
        Err(e) => {
            let status = match e {
                SignInError::Provider(_) => StatusCode::BAD_GATEWAY,
                _ => StatusCode::UNAUTHORIZED,
            };
            audit_sign_in(
                &state,
                client_addr,
                None,
                Some(t.id),
                target,
                status.as_u16(),
                who,
            )
            .await;
            return tenant_form(
                headers,
                &tenant,
                provider.as_ref(),
                status,
                Some(&e.to_string()),
            );
        }
    };
    let role = cfg.role_mapping.role_of(&person.groups, true);
    signed_in(
        &state,
        headers,
        client_addr,
        Scope::Tenant(&t.id),
        Via::Ldap,
        &person,
        role,
        target,
        &tenant,
    )
    .await
}

/// `GET /ui/me`: who is signed in, and (for a person) a form for a personal API token.
pub async fn me_page(session: super::session::Session) -> Response {
    me(&session, None, false)
}

fn me(session: &super::session::Session, message: Option<&str>, is_error: bool) -> Response {
    let p = &session.principal;
    let roles: Vec<Role> = [Role::Admin, Role::Operator, Role::Viewer]
        .into_iter()
        .filter(|r| p.role.at_least(*r))
        .collect();
    let body = layout::page(
        Some(session),
        "You",
        html! {
            h1 { "You" }
            (layout::flash(message, is_error))
            p { "Signed in as " strong #who { (p.who()) } ", role " strong { (p.role.as_str()) } "." }
            @if p.user.is_some() && p.role != Role::PlatformAdmin {
                section {
                    h2 { "Personal API token" }
                    p.hint { "For scripts and the API: at most your own role, for at most "
                        (identity::MAX_PERSONAL_TOKEN_DAYS) " days. It is shown once." }
                    form method="post" action="/ui/me/tokens" {
                        input type="hidden" name="csrf" value=(session.csrf);
                        label for="role" { "Role" }
                        select #role name="role" {
                            @for r in &roles { option value=(r.as_str()) { (r.as_str()) } }
                        }
                        label for="days" { "Expires after (days)" }
                        input #days type="number" name="days" min="1" max=(identity::MAX_PERSONAL_TOKEN_DAYS) value="30" required;
                        button type="submit" { "Create token" }
                    }
                }
            }
        },
    );
    body.into_response()
}

/// `POST /ui/me/tokens`: a personal API token of the signed-in person, with at most their
/// role and an expiry. Audited as `POST /ui/me/tokens`.
pub async fn create_personal_token(
    State(state): State<AppState>,
    post: super::session::FormPost,
) -> Response {
    let p = post.session.principal.clone();
    let result: Result<(String, Role, i64), String> = async {
        let user_id = p.user_id.clone().filter(|_| p.tenant_id.is_some()).ok_or(
            "Only a tenant's people who signed in with their identity provider have personal tokens.",
        )?;
        let role = Role::parse(&post.field("role"))
            .filter(|r| *r != Role::PlatformAdmin && p.role.at_least(*r))
            .ok_or("The role must be at most your own.")?;
        let days: u32 = post
            .field("days")
            .parse()
            .ok()
            .filter(|d| (1..=identity::MAX_PERSONAL_TOKEN_DAYS).contains(d))
            .ok_or("The expiry must be 1 to 90 days.")?;
        let user = state
            .store
            .get_user(&user_id)
            .await
            .ok()
            .flatten()
            .ok_or("Your user record is gone; sign in again.")?;
        let token = tether_shared::tokens::generate(tether_shared::tokens::API_TOKEN_PREFIX);
        let now = state.clock.now();
        let expires = now + i64::from(days) * 86_400;
        state
            .store
            .create_user_token(
                &user,
                role,
                &tether_shared::tokens::hash(&token),
                expires,
                now,
            )
            .await
            .map_err(|_| "The token could not be stored; try again.")?;
        Ok((token, role, expires))
    }
    .await;
    let status = if result.is_ok() {
        StatusCode::CREATED
    } else {
        StatusCode::BAD_REQUEST
    };
    post.audit(&state, "POST /ui/me/tokens", "/ui/me/tokens", status)
        .await;
    match result {
        Ok((token, role, expires)) => {
            tracing::info!(user = %p.who(), role = role.as_str(), "personal API token created");
            let m = format!(
                "New personal {} token, valid until {} (shown once, copy it now): {token}",
                role.as_str(),
                crate::api::rfc3339(expires)
            );
            me(&post.session, Some(&m), false)
        }
        Err(e) => me(&post.session, Some(&e), true),
    }
}
