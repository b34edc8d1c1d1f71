//! Every AWS action the agent's code calls is granted to the agent's role by the
//! CloudFormation template, and the role grants nothing else: both lists are derived — the
//! calls from the agent's source and the AWS SDK crates it uses (each SDK operation is a
//! `.operation()` builder call), the grants from the rendered template.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::Value;
use tether_control_plane::install::cloudformation::{Network, TemplateInput, template};

/// The SDK crates the agent uses and the IAM service prefix of each.
const SDKS: [(&str, &str); 3] = [
    ("aws-sdk-cloudwatchlogs", "logs"),
    ("aws-sdk-secretsmanager", "secretsmanager"),
    ("aws-sdk-sts", "sts"),
];

/// Actions the agent calls that need no grant, or that it may be refused, with why.
const NOT_GRANTED: [(&str, &str); 2] = [
    (
        "sts:GetCallerIdentity",
        "needs no permission (account binding and EKS tokens presign it)",
    ),
    (
        "logs:CreateLogGroup",
        "the template creates the group; the agent tries only when it is missing and goes on without",
    ),
];

/// Grants for what the platform does on the agent's behalf, not its code, with why.
const PLATFORM: [(&str, &str); 2] = [
    (
        "elasticfilesystem:ClientMount",
        "ECS mounts the state file system with the task role (EFS IAM authorization)",
    ),
    (
        "elasticfilesystem:ClientWrite",
        "ECS mounts the state file system read-write with the task role",
    ),
];

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The version of `krate` in Cargo.lock.
fn locked_version(krate: &str) -> String {
    let lock = std::fs::read_to_string(workspace().join("Cargo.lock")).expect("Cargo.lock");
    let needle = format!("name = \"{krate}\"\nversion = \"");
    let at = lock
        .find(&needle)
        .unwrap_or_else(|| panic!("{krate} in Cargo.lock"))
        + needle.len();
    lock[at..].split('"').next().unwrap_or_default().to_owned()
}

/// The operation names of an SDK crate (its `src/operation/<name>.rs` modules), from the
/// crate sources cargo unpacked.
fn operations(krate: &str) -> Vec<String> {
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .expect("CARGO_HOME or HOME");
    let version = locked_version(krate);
    let registry = home.join("registry").join("src");
    let dir = std::fs::read_dir(&registry)
        .expect("cargo registry sources")
        .filter_map(|e| e.ok())
        .map(|e| {
            e.path()
                .join(format!("{krate}-{version}"))
                .join("src/operation")
        })
        .find(|p| p.is_dir())
        .unwrap_or_else(|| panic!("{krate}-{version} sources under {}", registry.display()));
    std::fs::read_dir(dir)
        .expect("operations")
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            e.file_name()
                .to_str()
                .and_then(|n| n.strip_suffix(".rs"))
                .map(str::to_owned)
        })
        .collect()
}

fn rust_sources(dir: &Path, out: &mut String) {
    for e in std::fs::read_dir(dir)
        .expect("read dir")
        .filter_map(|e| e.ok())
    {
        let p = e.path();
        if p.is_dir() {
            rust_sources(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push_str(&std::fs::read_to_string(&p).unwrap_or_default());
        }
    }
}

fn camel(op: &str) -> String {
    op.split('_')
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect()
}

/// `service:Action` of every SDK operation the agent's code builds.
fn called() -> BTreeSet<String> {
    let mut src = String::new();
    rust_sources(&workspace().join("agent/src"), &mut src);
    let mut out = BTreeSet::new();
    for (krate, service) in SDKS {
        for op in operations(krate) {
            if src.contains(&format!(".{op}()")) {
                out.insert(format!("{service}:{}", camel(&op)));
            }
        }
    }
    out
}

fn granted(t: &Value) -> BTreeSet<String> {
    let list = |v: &Value| match v {
        Value::Array(a) => a.clone(),
        Value::Null => vec![],
        x => vec![x.clone()],
    };
    t["Resources"]["AgentRole"]["Properties"]["Policies"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|p| list(&p["PolicyDocument"]["Statement"]))
        .flat_map(|s| list(&s["Action"]))
        .filter_map(|a| a.as_str().map(str::to_owned))
        .collect()
}

#[test]
fn the_agent_role_grants_exactly_what_the_agent_calls() {
    let calls = called();
    assert!(
        calls.contains("logs:PutLogEvents") && calls.contains("secretsmanager:GetSecretValue"),
        "the scan finds the agent's calls: {calls:?}"
    );
    for network in [Network::NewVpc, Network::ExistingVpc] {
        let t = template(&TemplateInput {
            compute_plane_id: "cp-1".into(),
            compute_plane_name: "prod".into(),
            control_plane_endpoint: "https://cp.example:8443".into(),
            ca_pem: String::new(),
            agent_image: "agent:1".into(),
            network,
        });
        let grants = granted(&t);
        let exempt: BTreeSet<String> = NOT_GRANTED.iter().map(|(a, _)| (*a).to_owned()).collect();
        let platform: BTreeSet<String> = PLATFORM.iter().map(|(a, _)| (*a).to_owned()).collect();
        let missing: Vec<&String> = calls
            .iter()
            .filter(|a| !grants.contains(*a) && !exempt.contains(*a))
            .collect();
        assert!(
            missing.is_empty(),
            "{network:?}: called but not granted: {missing:?}"
        );
        let extra: Vec<&String> = grants
            .iter()
            .filter(|a| !calls.contains(*a) && !platform.contains(*a))
            .collect();
        assert!(
            extra.is_empty(),
            "{network:?}: granted but never called: {extra:?}"
        );
    }
}
