//! The page frame: header with the signed-in role and sign-out, navigation by role, and
//! error pages.

use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use maud::{DOCTYPE, Markup, html};

use super::session::Session;
use crate::authz::Role;

/// A whole page.
pub fn page(session: Option<&Session>, title: &str, content: Markup) -> Html<String> {
    page_at(session, None, title, content)
}

/// A whole page whose address is `url` (the GET page a form post renders, so live updates
/// and reloads fetch that, not the post).
pub fn page_at(
    session: Option<&Session>,
    url: Option<&str>,
    title: &str,
    content: Markup,
) -> Html<String> {
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Tether" }
                link rel="stylesheet" href="/static/app.css";
                script src="/static/app.js" defer {}
            }
            body data-live-url=[url] {
                header.top {
                    a.brand href="/" { "Tether" }
                    @if let Some(s) = session {
                        nav.main { (main_nav(s)) }
                        div.who {
                            a.user href="/ui/me" { (s.principal.user.as_deref().unwrap_or("API token")) }
                            " "
                            span.role data-role=(s.principal.role.as_str()) { (s.principal.role.as_str()) }
                            form.inline method="post" action="/logout" {
                                input type="hidden" name="csrf" value=(s.csrf);
                                button.link type="submit" { "Sign out" }
                            }
                        }
                    }
                }
                main { (content) }
            }
        }
    };
    Html(markup.into_string())
}

fn main_nav(s: &Session) -> Markup {
    let p = &s.principal;
    html! {
        @if p.role == Role::PlatformAdmin {
            a href="/ui/tenants" { "Tenants" }
            a href="/ui/audit" { "Audit log" }
        } @else if let Some(t) = &p.tenant_id {
            a href={ "/ui/tenants/" (t) } { "Compute planes" }
            a href={ "/ui/tenants/" (t) "/usage" } { "Usage" }
            @if p.role.at_least(Role::Admin) {
                a href="/ui/audit" { "Audit log" }
            }
        }
    }
}

/// The tabs of a compute plane's pages.
pub fn cp_nav(cp: &str, name: &str, active: &str) -> Markup {
    let tabs = [
        ("", "Overview"),
        ("/clusters", "Clusters"),
        ("/catalogs", "Catalogs"),
        ("/queries", "Query log"),
        ("/metrics", "Metrics"),
    ];
    html! {
        h1 { "Compute plane " span.name { (name) } }
        nav.tabs {
            @for (suffix, label) in tabs {
                @if label == active {
                    a.active href={ "/ui/cp/" (cp) (suffix) } { (label) }
                } @else {
                    a href={ "/ui/cp/" (cp) (suffix) } { (label) }
                }
            }
        }
    }
}

/// A page that says what went wrong, with the status.
pub fn error_page(session: Option<&Session>, status: StatusCode, message: &str) -> Response {
    let title = status.canonical_reason().unwrap_or("Error");
    let body = page(
        session,
        title,
        html! {
            section.error-page {
                h1 { (status.as_u16()) " " (title) }
                p.error role="alert" { (message) }
                p { a href="/" { "Back to the dashboard" } }
            }
        },
    );
    (status, body).into_response()
}

/// A flash message shown above a page's content (e.g. after a form post).
pub fn flash(message: Option<&str>, is_error: bool) -> Markup {
    html! {
        @if let Some(m) = message {
            @if is_error { p.flash.error role="alert" { (m) } } @else { p.flash.ok role="status" { (m) } }
        }
    }
}
