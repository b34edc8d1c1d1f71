//! [`ObjectKey`]: where an object lives in the stand-in's store.

/// The identity of one stored object: `apiVersion`, plural, namespace, name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectKey {
    /// `v1` for the core group, else `group/version` (`apps/v1`).
    pub api_version: String,
    /// Lower-case plural as in the URL path (`deployments`).
    pub plural: String,
    /// Namespace; `None` for cluster-scoped objects (namespaces).
    pub namespace: Option<String>,
    /// `metadata.name`.
    pub name: String,
}

impl ObjectKey {
    /// Key of `name` of type `api_version`/`plural` in `namespace`.
    pub fn new(api_version: &str, plural: &str, namespace: Option<&str>, name: &str) -> Self {
        Self {
            api_version: api_version.to_owned(),
            plural: plural.to_owned(),
            namespace: namespace.map(str::to_owned),
            name: name.to_owned(),
        }
    }

    /// Whether this key is of type `api_version`/`plural`, and in `namespace` when one is given.
    pub(crate) fn within(&self, api_version: &str, plural: &str, namespace: Option<&str>) -> bool {
        self.api_version == api_version
            && self.plural == plural
            && namespace.is_none_or(|ns| self.namespace.as_deref() == Some(ns))
    }
}
