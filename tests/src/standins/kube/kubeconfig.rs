//! A kubeconfig pointing at the stand-in: no credentials (it does not authenticate), namespace
//! `default`.

/// The kubeconfig YAML for a server at `url`.
pub(crate) fn kubeconfig_yaml(url: &str) -> String {
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: tether-standin
  cluster:
    server: {url}
contexts:
- name: tether-standin
  context:
    cluster: tether-standin
    user: tether-standin
    namespace: default
current-context: tether-standin
users:
- name: tether-standin
  user: {{}}
preferences: {{}}
"
    )
}
