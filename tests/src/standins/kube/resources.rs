//! The resource types the stand-in serves, as discovery describes them.

/// A subresource of a resource type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Subresource {
    /// `…/status`: writes touch only `.status`.
    Status,
    /// `…/scale`: an `autoscaling/v1` `Scale` view of `.spec.replicas`.
    Scale,
    /// `…/proxy`: HTTP forwarded to the service or pod.
    Proxy,
    /// `…/log`: a pod's container output as text, optionally followed.
    Log,
}

/// One served resource type.
#[derive(Debug)]
pub(crate) struct ResourceType {
    /// API group, `""` for the core group.
    pub group: &'static str,
    /// Version inside the group.
    pub version: &'static str,
    /// Plural, lower case: the path segment.
    pub plural: &'static str,
    /// Singular, lower case.
    pub singular: &'static str,
    /// `kind` of its objects.
    pub kind: &'static str,
    /// Whether objects live in a namespace.
    pub namespaced: bool,
    /// kubectl's short names.
    pub short_names: &'static [&'static str],
    /// Categories (`kubectl get all`).
    pub categories: &'static [&'static str],
    /// Subresources it serves.
    pub subresources: &'static [Subresource],
}

impl ResourceType {
    /// `apiVersion` of its objects: `v1` or `group/version`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_owned()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// The name error messages use: `configmaps`, `deployments.apps`.
    pub fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_owned()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// Whether `sub` is served for this type.
    pub fn has(&self, sub: Subresource) -> bool {
        self.subresources.contains(&sub)
    }
}

const ALL: &[&str] = &["all"];

/// Every served resource type.
pub(crate) static RESOURCES: &[ResourceType] = &[
    ResourceType {
        group: "",
        version: "v1",
        plural: "namespaces",
        singular: "namespace",
        kind: "Namespace",
        namespaced: false,
        short_names: &["ns"],
        categories: &[],
        subresources: &[],
    },
    ResourceType {
        group: "",
        version: "v1",
        plural: "configmaps",
        singular: "configmap",
        kind: "ConfigMap",
        namespaced: true,
        short_names: &["cm"],
        categories: &[],
        subresources: &[],
    },
    ResourceType {
        group: "",
        version: "v1",
        plural: "secrets",
        singular: "secret",
        kind: "Secret",
        namespaced: true,
        short_names: &[],
        categories: &[],
        subresources: &[],
    },
    ResourceType {
        group: "",
        version: "v1",
        plural: "services",
        singular: "service",
        kind: "Service",
        namespaced: true,
        short_names: &["svc"],
        categories: ALL,
        subresources: &[Subresource::Status, Subresource::Proxy],
    },
    ResourceType {
        group: "",
        version: "v1",
        plural: "serviceaccounts",
        singular: "serviceaccount",
        kind: "ServiceAccount",
        namespaced: true,
        short_names: &["sa"],
        categories: &[],
        subresources: &[],
    },
    ResourceType {
        group: "",
        version: "v1",
        plural: "pods",
        singular: "pod",
        kind: "Pod",
        namespaced: true,
        short_names: &["po"],
        categories: ALL,
        subresources: &[Subresource::Status, Subresource::Proxy, Subresource::Log],
    },
    ResourceType {
        group: "apps",
        version: "v1",
        plural: "deployments",
        singular: "deployment",
        kind: "Deployment",
        namespaced: true,
        short_names: &["deploy"],
        categories: ALL,
        subresources: &[Subresource::Status, Subresource::Scale],
    },
    ResourceType {
        group: "networking.k8s.io",
        version: "v1",
        plural: "networkpolicies",
        singular: "networkpolicy",
        kind: "NetworkPolicy",
        namespaced: true,
        short_names: &["netpol"],
        categories: &[],
        subresources: &[],
    },
    ResourceType {
        group: "policy",
        version: "v1",
        plural: "poddisruptionbudgets",
        singular: "poddisruptionbudget",
        kind: "PodDisruptionBudget",
        namespaced: true,
        short_names: &["pdb"],
        categories: &[],
        subresources: &[Subresource::Status],
    },
    ResourceType {
        group: "autoscaling",
        version: "v2",
        plural: "horizontalpodautoscalers",
        singular: "horizontalpodautoscaler",
        kind: "HorizontalPodAutoscaler",
        namespaced: true,
        short_names: &["hpa"],
        categories: ALL,
        subresources: &[Subresource::Status],
    },
];

/// The type served at `api_version` (`v1`, `apps/v1`) under `plural`.
pub(crate) fn find(api_version: &str, plural: &str) -> Option<&'static ResourceType> {
    RESOURCES
        .iter()
        .find(|r| r.plural == plural && r.api_version() == api_version)
}

/// Whether any type is served at `api_version`.
pub(crate) fn serves_version(api_version: &str) -> bool {
    RESOURCES.iter().any(|r| r.api_version() == api_version)
}

/// The named groups with their one version each, in a stable order.
pub(crate) fn groups() -> Vec<(&'static str, &'static str)> {
    let mut out: Vec<(&str, &str)> = Vec::new();
    for r in RESOURCES.iter().filter(|r| !r.group.is_empty()) {
        if !out.iter().any(|(g, _)| *g == r.group) {
            out.push((r.group, r.version));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_by_api_version_and_plural() {
        assert_eq!(
            find("apps/v1", "deployments").map(|r| r.kind),
            Some("Deployment")
        );
        assert_eq!(
            find("v1", "configmaps").map(|r| r.qualified()),
            Some("configmaps".into())
        );
        assert!(find("v1", "deployments").is_none());
        assert_eq!(
            groups(),
            vec![
                ("apps", "v1"),
                ("networking.k8s.io", "v1"),
                ("policy", "v1"),
                ("autoscaling", "v2")
            ]
        );
    }
}
