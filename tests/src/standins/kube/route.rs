//! Which endpoint a request path names.

use super::resources::{self, ResourceType, Subresource};

/// An object or collection path: `/api/v1[/namespaces/{ns}]/{plural}[/{name}[/{sub}]]` or the
/// same under `/apis/{group}/{version}`.
#[derive(Debug)]
pub(crate) struct ResourcePath {
    /// The resource type.
    pub rt: &'static ResourceType,
    /// Namespace from the path; `None` for cluster-scoped types and all-namespace lists.
    pub namespace: Option<String>,
    /// Object name; `None` for the collection.
    pub name: Option<String>,
    /// `status` or `scale`.
    pub sub: Option<Subresource>,
}

/// A `…/{services|pods}/{name}[:{port}]/proxy/{rest}` path.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct ProxyPath {
    /// Namespace.
    pub namespace: String,
    /// Service or pod name.
    pub name: String,
    /// Port name or number, if given.
    pub port: Option<String>,
    /// The rest of the path, still percent-encoded, starting with `/`.
    pub rest: String,
}

/// What a request path names.
#[derive(Debug)]
pub(crate) enum Route {
    /// `/version`.
    Version,
    /// `/api`.
    CoreVersions,
    /// `/apis`.
    Groups,
    /// `/apis/{group}`.
    Group(String),
    /// `/api/v1` or `/apis/{group}/{version}`: the given apiVersion's resource list.
    Resources(String),
    /// `/openapi/…`: not served (404), which kubectl tolerates.
    OpenApi,
    /// An object or collection.
    Resource(ResourcePath),
    /// The service proxy.
    ServiceProxy(ProxyPath),
    /// The pod proxy.
    PodProxy(ProxyPath),
    /// A pod's log: (namespace, pod).
    PodLog(String, String),
    /// `POST /apis/authorization.k8s.io/v1/selfsubjectaccessreviews`.
    AccessReview,
    /// Anything else.
    Unknown,
}

/// Decodes `%XX` escapes; `None` on malformed escapes or invalid UTF-8.
pub(crate) fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

impl Route {
    /// Routes `path` (the raw URI path).
    pub fn parse(path: &str) -> Route {
        let raw: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let Some(seg) = raw
            .iter()
            .map(|s| percent_decode(s))
            .collect::<Option<Vec<String>>>()
        else {
            return Route::Unknown;
        };
        let seg: Vec<&str> = seg.iter().map(String::as_str).collect();
        let trimmed: &[&str] = match seg.last() {
            Some(&"") if seg.len() > 1 => &seg[..seg.len() - 1],
            _ => &seg,
        };
        match trimmed {
            ["version"] => Route::Version,
            ["api"] => Route::CoreVersions,
            ["apis"] => Route::Groups,
            ["openapi", ..] => Route::OpenApi,
            ["api", "v1"] => Route::Resources("v1".into()),
            ["apis", g] => Route::Group((*g).to_owned()),
            ["apis", g, v] => Route::Resources(format!("{g}/{v}")),
            ["api", "v1", rest @ ..] => Self::resource("v1", rest, &raw[2..]),
            [
                "apis",
                "authorization.k8s.io",
                "v1",
                "selfsubjectaccessreviews",
            ] => Route::AccessReview,
            ["apis", g, v, rest @ ..] => Self::resource(&format!("{g}/{v}"), rest, &raw[3..]),
            _ => Route::Unknown,
        }
    }

    fn resource(api_version: &str, seg: &[&str], raw: &[&str]) -> Route {
        let (namespace, seg, raw) = match seg {
            ["namespaces", ns, plural, ..] if resources::find(api_version, plural).is_some() => {
                (Some((*ns).to_owned()), &seg[2..], &raw[2..])
            }
            _ => (None, seg, raw),
        };
        let Some(rt) = seg.first().and_then(|p| resources::find(api_version, p)) else {
            return Route::Unknown;
        };
        let misplaced = if rt.namespaced {
            namespace.is_none() && seg.len() > 1
        } else {
            namespace.is_some()
        };
        if misplaced {
            return Route::Unknown;
        }
        let name = seg.get(1).map(|s| (*s).to_owned());
        let sub = match seg.get(2..).unwrap_or_default() {
            [] => None,
            ["status"] if rt.has(Subresource::Status) => Some(Subresource::Status),
            ["scale"] if rt.has(Subresource::Scale) => Some(Subresource::Scale),
            ["log"] if rt.has(Subresource::Log) => {
                return match (namespace, name) {
                    (Some(ns), Some(pod)) if !pod.is_empty() => Route::PodLog(ns, pod),
                    _ => Route::Unknown,
                };
            }
            ["proxy", ..] if rt.has(Subresource::Proxy) => {
                let (Some(ns), Some(target)) = (namespace, name) else {
                    return Route::Unknown;
                };
                let p = proxy_path(ns, &target, &raw[3..]);
                return if rt.plural == "services" {
                    Route::ServiceProxy(p)
                } else {
                    Route::PodProxy(p)
                };
            }
            _ => return Route::Unknown,
        };
        if name.as_deref() == Some("") {
            return Route::Unknown;
        }
        Route::Resource(ResourcePath {
            rt,
            namespace,
            name,
            sub,
        })
    }
}

/// `name`, `name:port` or `scheme:name:port`.
fn proxy_path(namespace: String, target: &str, rest: &[&str]) -> ProxyPath {
    let parts: Vec<&str> = target.split(':').collect();
    let (name, port) = match parts.as_slice() {
        [_scheme, name, port] => (*name, Some(*port)),
        [name, port] => (*name, Some(*port)),
        _ => (target, None),
    };
    ProxyPath {
        namespace,
        name: name.to_owned(),
        port: port.filter(|p| !p.is_empty()).map(str::to_owned),
        rest: format!("/{}", rest.join("/")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(path: &str) -> ResourcePath {
        match Route::parse(path) {
            Route::Resource(r) => r,
            other => panic!("{path}: {other:?}"),
        }
    }

    #[test]
    fn resource_paths() {
        let r = res("/api/v1/namespaces/ns/configmaps/cm");
        assert_eq!(
            (r.rt.kind, r.namespace.as_deref(), r.name.as_deref()),
            ("ConfigMap", Some("ns"), Some("cm"))
        );
        let r = res("/api/v1/namespaces/ns");
        assert_eq!(
            (r.rt.kind, r.namespace, r.name.as_deref()),
            ("Namespace", None, Some("ns"))
        );
        let r = res("/apis/apps/v1/deployments");
        assert_eq!((r.rt.kind, r.namespace, r.name), ("Deployment", None, None));
        let r = res("/apis/apps/v1/namespaces/ns/deployments/w/status");
        assert_eq!(r.sub, Some(Subresource::Status));
        assert!(matches!(
            Route::parse("/api/v1/configmaps/x"),
            Route::Unknown
        ));
        assert!(matches!(Route::parse("/apis/apps/v1"), Route::Resources(v) if v == "apps/v1"));
        assert!(matches!(
            Route::parse("/api/v1/namespaces/ns/widgets"),
            Route::Unknown
        ));
    }

    #[test]
    fn proxy_paths() {
        let Route::ServiceProxy(p) =
            Route::parse("/api/v1/namespaces/ns/services/presto%3A8080/proxy/v1/info")
        else {
            panic!()
        };
        assert_eq!(
            p,
            ProxyPath {
                namespace: "ns".into(),
                name: "presto".into(),
                port: Some("8080".into()),
                rest: "/v1/info".into()
            }
        );
        let Route::PodProxy(p) = Route::parse("/api/v1/namespaces/ns/pods/w-1/proxy/") else {
            panic!()
        };
        assert_eq!(
            (p.name.as_str(), p.port, p.rest.as_str()),
            ("w-1", None, "/")
        );
        let Route::PodProxy(p) = Route::parse("/api/v1/namespaces/ns/pods/w-1/proxy") else {
            panic!()
        };
        assert_eq!(p.rest, "/");
    }
}
