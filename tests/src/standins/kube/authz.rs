//! Authorization, as the API server's RBAC authorizer answers it: every request maps to a
//! verb on a (group, resource[/subresource]) — the mapping of the Kubernetes document
//! "Authorization: Determine the Request Verb" (GET/HEAD on an object `get`, on a collection
//! `list`, with `watch=true` `watch`; POST `create`; PUT `update`; PATCH `patch`; DELETE
//! `delete`, on a collection `deletecollection`). Everything is allowed unless denied with
//! [`Rbac::deny`]; a denied request is 403 with the message of `forbiddenMessage` in
//! k8s.io/apiserver/pkg/endpoints/handlers/responsewriters/errors.go. A
//! `SelfSubjectAccessReview` (authorization.k8s.io/v1, "Checking API access" in the same
//! document) answers from the same rules.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};

use axum::http::{Method, StatusCode};
use serde_json::{Value, json};

use super::status::{ApiError, json_response};

/// The user every request is made as (the stand-in does not authenticate).
pub const USER: &str = "system:serviceaccount:tether:tether-agent";

/// A handle on the stand-in's permissions; clones share them.
#[derive(Clone, Debug, Default)]
pub struct Rbac {
    denied: Arc<Mutex<HashSet<(String, String, String)>>>,
}

impl Rbac {
    /// Denies `verb` on `resource` (e.g. `deployments`, `pods/log`) of `group` (`""` for
    /// the core group) from now on.
    pub fn deny(&self, group: &str, resource: &str, verb: &str) {
        self.denied
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert((group.to_owned(), resource.to_owned(), verb.to_owned()));
    }

    /// Allows everything again.
    pub fn allow_all(&self) {
        self.denied
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    /// Whether the verb is allowed.
    pub(crate) fn allows(&self, group: &str, resource: &str, verb: &str) -> bool {
        !self
            .denied
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(&(group.to_owned(), resource.to_owned(), verb.to_owned()))
    }

    /// 403 unless allowed.
    pub(crate) fn check(
        &self,
        verb: &str,
        group: &str,
        resource: &str,
        name: Option<&str>,
        namespace: Option<&str>,
    ) -> Result<(), ApiError> {
        if self.allows(group, resource, verb) {
            return Ok(());
        }
        let qualified = if group.is_empty() {
            resource.to_owned()
        } else {
            format!("{resource}.{group}")
        };
        let named = name.map(|n| format!(" \"{n}\"")).unwrap_or_default();
        let scope = match namespace {
            Some(ns) => format!(" in the namespace \"{ns}\""),
            None => " at the cluster scope".to_owned(),
        };
        Err(ApiError::new(
            403,
            "Forbidden",
            format!(
                "{qualified}{named} is forbidden: User \"{USER}\" cannot {verb} resource \"{resource}\" in API group \"{group}\"{scope}"
            ),
        ))
    }
}

/// The request verb of a method on an object (`named`) or a collection.
pub(crate) fn verb(method: &Method, named: bool, query: Option<&str>) -> &'static str {
    let watch = query.is_some_and(|q| q.split('&').any(|kv| kv == "watch=true" || kv == "watch=1"));
    match *method {
        Method::GET | Method::HEAD if watch => "watch",
        Method::GET | Method::HEAD if named => "get",
        Method::GET | Method::HEAD => "list",
        Method::POST => "create",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE if named => "delete",
        Method::DELETE => "deletecollection",
        _ => "unknown",
    }
}

/// `POST /apis/authorization.k8s.io/v1/selfsubjectaccessreviews`: 201 with the review and
/// its `status.allowed`.
pub(crate) fn self_subject_access_review(
    rbac: &Rbac,
    method: &Method,
    body: &[u8],
) -> Result<axum::response::Response, ApiError> {
    if *method != Method::POST {
        return Err(ApiError::new(
            405,
            "MethodNotAllowed",
            format!("the server does not allow this method on the requested resource ({method})"),
        ));
    }
    let mut review: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::new(400, "BadRequest", format!("invalid body: {e}")))?;
    let attrs = review["spec"]["resourceAttributes"].clone();
    if !attrs.is_object() && !review["spec"]["nonResourceAttributes"].is_object() {
        return Err(ApiError::new(
            422,
            "Invalid",
            "SelfSubjectAccessReview.authorization.k8s.io \"\" is invalid: spec.resourceAttributes: Invalid value: \"null\": exactly one of nonResourceAttributes or resourceAttributes must be specified",
        ));
    }
    let s = |k: &str| attrs[k].as_str().unwrap_or("").to_owned();
    let resource = match s("subresource").as_str() {
        "" => s("resource"),
        sub => format!("{}/{sub}", s("resource")),
    };
    let allowed = !attrs.is_object() || rbac.allows(&s("group"), &resource, &s("verb"));
    review["status"] = if allowed {
        json!({"allowed": true, "reason": "RBAC: allowed by the stand-in's rules"})
    } else {
        json!({"allowed": false})
    };
    Ok(json_response(StatusCode::CREATED, &review))
}
