//! The verbs on objects and collections: get, list, create, replace, delete, delete
//! collection; PATCH is in [`super::patch`], subresources in [`super::subresource`] and
//! watches in [`super::watch`].

use std::sync::Arc;

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use serde_json::{Value, json};

use super::key::ObjectKey;
use super::meta;
use super::params::Params;
use super::patch;
use super::resources::{ResourceType, Subresource};
use super::route::ResourcePath;
use super::server::Shared;
use super::status::{ApiError, ApiResult, json_response};
use super::store::Mode;
use super::subresource;
use super::table;
use super::watch;
use super::write;

/// Everything a verb handler needs from the request.
pub(crate) struct Call<'a> {
    /// Shared state.
    pub shared: &'a Arc<Shared>,
    /// The resource type.
    pub rt: &'static ResourceType,
    /// Namespace from the URL.
    pub namespace: Option<&'a str>,
    /// Query parameters.
    pub params: Params,
    /// Request headers.
    pub headers: &'a HeaderMap,
    /// Request body.
    pub body: Bytes,
}

impl Call<'_> {
    /// How writes of this call are done: counted, or previewed under `dryRun=All`.
    pub fn mode(&self) -> Mode {
        if self.params.dry_run {
            Mode::DryRun
        } else {
            Mode::Counted
        }
    }

    /// The key of `name` in this call's type and namespace.
    pub fn key(&self, name: &str) -> ObjectKey {
        ObjectKey::new(&self.rt.api_version(), self.rt.plural, self.namespace, name)
    }
}

/// Serves one object or collection request.
pub(crate) fn serve(
    shared: &Arc<Shared>,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    path: ResourcePath,
    body: Bytes,
) -> ApiResult {
    let params = Params::parse(uri)?;
    let call = Call {
        shared,
        rt: path.rt,
        namespace: path.namespace.as_deref(),
        params,
        headers,
        body,
    };
    let name = path.name.as_deref();
    if matches!(*method, Method::POST | Method::PUT) {
        write::check_json(headers)?;
    }
    match (path.sub, name, method.as_str()) {
        (None, None, "GET") if call.params.watch => watch::serve(&call, None),
        (None, None, "GET") => list(&call),
        (None, None, "POST") => create(&call),
        (None, None, "DELETE") => delete_collection(&call),
        (None, Some(n), "GET") if call.params.watch => watch::serve(&call, Some(n)),
        (None, Some(n), "GET") => get(&call, n),
        (None, Some(n), "PUT") => replace(&call, n),
        (None, Some(n), "PATCH") => patch::serve(&call, n),
        (None, Some(n), "DELETE") => delete(&call, n),
        (Some(Subresource::Status), Some(n), _) => subresource::status(&call, n, method.as_str()),
        (Some(Subresource::Scale), Some(n), _) => subresource::scale(&call, n, method.as_str()),
        _ => Err(ApiError::method_not_allowed(method.as_str())),
    }
}

/// 200 with `obj`.
pub(crate) fn ok(obj: &Value) -> ApiResult {
    Ok(json_response(StatusCode::OK, obj))
}

/// The stored object `name`, or 404.
pub(crate) fn fetch(call: &Call<'_>, name: &str) -> Result<Value, ApiError> {
    call.shared
        .store
        .get(&call.key(name))
        .ok_or_else(|| ApiError::not_found(call.rt, name))
}

/// The answer to a read: the object(s) themselves, or a Table when kubectl asks for one.
fn answer(call: &Call<'_>, doc: &Value, items: &[Value]) -> ApiResult {
    if !table::wanted(call.headers) {
        return ok(doc);
    }
    let mut list_meta = json!({"resourceVersion": doc["metadata"]["resourceVersion"]});
    if let Some(c) = doc["metadata"].get("continue") {
        list_meta["continue"] = c.clone();
    }
    ok(&table::render(
        call.rt,
        items,
        list_meta,
        call.params.include_object.as_deref(),
    ))
}

fn get(call: &Call<'_>, name: &str) -> ApiResult {
    let obj = fetch(call, name)?;
    answer(call, &obj, std::slice::from_ref(&obj))
}

/// The objects a list or delete-collection selects, and the snapshot's resourceVersion.
fn selected(call: &Call<'_>) -> (Vec<Value>, u64) {
    let (items, rv) =
        call.shared
            .store
            .list(&call.rt.api_version(), call.rt.plural, call.namespace);
    let items = items
        .into_iter()
        .filter(|o| call.params.labels.matches(o) && call.params.fields.matches(o))
        .collect();
    (items, rv)
}

fn list_doc(rt: &ResourceType, items: Vec<Value>, rv: u64) -> Value {
    json!({
        "kind": format!("{}List", rt.kind),
        "apiVersion": rt.api_version(),
        "metadata": {"resourceVersion": rv.to_string()},
        "items": items,
    })
}

fn list(call: &Call<'_>) -> ApiResult {
    let (items, rv) = selected(call);
    let offset: usize = match &call.params.continue_token {
        None => 0,
        Some(t) => t
            .parse()
            .map_err(|_| ApiError::bad_request(format!("invalid continue token {t:?}")))?,
    };
    let total = items.len();
    let page: Vec<Value> = items
        .into_iter()
        .skip(offset)
        .take(call.params.limit.unwrap_or(usize::MAX))
        .collect();
    let next = offset + page.len();
    let mut doc = list_doc(call.rt, page.clone(), rv);
    if next < total {
        doc["metadata"]["continue"] = json!(next.to_string());
        doc["metadata"]["remainingItemCount"] = json!(total - next);
    }
    answer(call, &doc, &page)
}

fn create(call: &Call<'_>) -> ApiResult {
    let rt = call.rt;
    let mut body = write::parse_object(&call.body)?;
    write::check_body(rt, call.namespace, &mut body)?;
    write::strip_server_set(&mut body);
    if meta::name(&body).is_empty() {
        let generate = meta::meta_str(&body, "generateName")
            .unwrap_or("")
            .to_owned();
        if generate.is_empty() {
            return Err(ApiError::invalid(
                rt,
                "",
                "metadata.name",
                "",
                "name or generateName is required",
            ));
        }
        meta::set_meta(
            &mut body,
            "name",
            json!(format!("{generate}{}", meta::random_suffix())),
        );
    }
    let name = meta::name(&body).to_owned();
    meta::validate_name(rt, &name)?;
    let new = write::main_resource(rt, None, body, false);
    let out = call
        .shared
        .store
        .upsert(&call.key(&name), call.mode(), |old| match old {
            Some(_) => Err(ApiError::already_exists(rt, &name)),
            None => Ok(new),
        })?;
    Ok(json_response(StatusCode::CREATED, &out.object))
}

fn replace(call: &Call<'_>, name: &str) -> ApiResult {
    let rt = call.rt;
    let mut body = write::parse_object(&call.body)?;
    write::check_body(rt, call.namespace, &mut body)?;
    write::check_name(&mut body, name)?;
    let out = call
        .shared
        .store
        .upsert(&call.key(name), call.mode(), |old| {
            let old = old.ok_or_else(|| ApiError::not_found(rt, name))?;
            write::check_precondition(rt, old, &body)?;
            Ok(write::main_resource(rt, Some(old), body, false))
        })?;
    ok(&out.object)
}

/// `DeleteOptions.preconditions`, checked against the stored object.
fn check_delete_preconditions(body: &[u8], stored: &Value) -> Result<(), ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(());
    }
    let opts = write::parse_object(body)?;
    let pre = &opts["preconditions"];
    for field in ["uid", "resourceVersion"] {
        if let Some(want) = pre.get(field).and_then(Value::as_str)
            && Some(want) != meta::meta_str(stored, field)
        {
            return Err(ApiError::new(
                409,
                "Conflict",
                format!(
                    "Precondition failed: {field} in precondition: {want}, {field} in object meta: {}",
                    meta::meta_str(stored, field).unwrap_or("")
                ),
            ));
        }
    }
    Ok(())
}

fn delete(call: &Call<'_>, name: &str) -> ApiResult {
    let rt = call.rt;
    let gone = call
        .shared
        .store
        .delete(&call.key(name), call.mode(), |stored| {
            check_delete_preconditions(&call.body, stored)
        })?;
    let gone = gone.ok_or_else(|| ApiError::not_found(rt, name))?;
    // A deleted namespace takes its contents with it (at once, where the real one first
    // shows Terminating).
    if rt.plural == "namespaces" && call.mode() != Mode::DryRun {
        for key in call.shared.store.keys_in(name) {
            call.shared.store.delete(&key, Mode::Counted, |_| Ok(()))?;
        }
    }
    ok(&gone)
}

fn delete_collection(call: &Call<'_>) -> ApiResult {
    let (items, _) = selected(call);
    let mut deleted = Vec::new();
    for item in items {
        let key = ObjectKey::new(
            &call.rt.api_version(),
            call.rt.plural,
            meta::meta_str(&item, "namespace"),
            meta::name(&item),
        );
        if let Some(gone) = call.shared.store.delete(&key, call.mode(), |_| Ok(()))? {
            deleted.push(gone);
        }
    }
    let (_, rv) = call
        .shared
        .store
        .list(&call.rt.api_version(), call.rt.plural, Some(""));
    ok(&list_doc(call.rt, deleted, rv))
}
