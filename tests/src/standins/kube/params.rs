//! The query parameters of API requests.

use axum::extract::Query;
use axum::http::Uri;

use super::selector::{FieldSelector, LabelSelector};
use super::status::ApiError;

/// The query parameters the stand-in understands; others are ignored, as the API server
/// ignores unknown ones.
#[derive(Debug, Default)]
pub(crate) struct Params {
    /// `watch=true|1`.
    pub watch: bool,
    /// `resourceVersion`.
    pub resource_version: Option<String>,
    /// `timeoutSeconds`.
    pub timeout_seconds: Option<u64>,
    /// `labelSelector`.
    pub labels: LabelSelector,
    /// `fieldSelector`.
    pub fields: FieldSelector,
    /// `allowWatchBookmarks`.
    pub bookmarks: bool,
    /// `sendInitialEvents`.
    pub send_initial_events: bool,
    /// `fieldManager`.
    pub field_manager: Option<String>,
    /// `force`.
    pub force: bool,
    /// `limit`.
    pub limit: Option<usize>,
    /// `continue`.
    pub continue_token: Option<String>,
    /// `dryRun=All`: check and answer, store nothing.
    pub dry_run: bool,
    /// `includeObject` (for Tables).
    pub include_object: Option<String>,
}

fn flag(v: &str) -> bool {
    matches!(v, "true" | "1" | "True" | "TRUE")
}

impl Params {
    /// Parses the query of `uri`; 400 on malformed selectors or numbers.
    pub fn parse(uri: &Uri) -> Result<Self, ApiError> {
        let Query(pairs) = Query::<Vec<(String, String)>>::try_from_uri(uri)
            .map_err(|e| ApiError::bad_request(format!("invalid query: {e}")))?;
        let mut p = Params::default();
        for (k, v) in pairs {
            match k.as_str() {
                "watch" => p.watch = flag(&v),
                "resourceVersion" => p.resource_version = Some(v),
                "timeoutSeconds" => p.timeout_seconds = Some(number(&k, &v)?),
                "labelSelector" => p.labels = LabelSelector::parse(&v)?,
                "fieldSelector" => p.fields = FieldSelector::parse(&v)?,
                "allowWatchBookmarks" => p.bookmarks = flag(&v),
                "sendInitialEvents" => p.send_initial_events = flag(&v),
                "fieldManager" => p.field_manager = Some(v),
                "force" => p.force = flag(&v),
                "limit" => p.limit = Some(number(&k, &v)?).filter(|n| *n > 0).map(|n| n as usize),
                "continue" => p.continue_token = Some(v).filter(|s| !s.is_empty()),
                "includeObject" => p.include_object = Some(v),
                "dryRun" => p.dry_run = v == "All",
                _ => {}
            }
        }
        Ok(p)
    }
}

fn number(k: &str, v: &str) -> Result<u64, ApiError> {
    v.parse()
        .map_err(|_| ApiError::bad_request(format!("invalid value for {k}: {v:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kube_rs_watch_query() {
        let uri: Uri = "/api/v1/namespaces/ns/pods?&watch=true&timeoutSeconds=290&allowWatchBookmarks=true&labelSelector=app%3Dweb&resourceVersion=0"
            .parse()
            .unwrap();
        let p = Params::parse(&uri).unwrap();
        assert!(p.watch && p.bookmarks);
        assert_eq!(p.timeout_seconds, Some(290));
        assert_eq!(p.resource_version.as_deref(), Some("0"));
    }
}
