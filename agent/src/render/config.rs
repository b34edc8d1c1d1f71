//! Presto's configuration text: `config.properties`, `node.properties`, `jvm.config`,
//! `log.properties`, and the Java `.properties` writer every file goes through.
//!
//! Memory sizing, from the container's memory limit `M`:
//! - heap `H` = 80 % of `M`, in whole GiB (`-Xmx12G` for 16Gi); below 1 GiB of heap, in
//!   MiB — a 1 GiB heap in a 1Gi container would be killed for the JVM's off-heap memory;
//! - `query.max-memory-per-node` = `query.max-total-memory-per-node` = 60 % of `H`, with
//!   the reserved pool off. Presto refuses to start unless total-per-node plus the 30 %
//!   heap headroom fit in `H`, and the reserved pool (on by default in some versions)
//!   would take total-per-node out of the general pool, leaving 10 % of `H` for queries;
//! - `query.max-memory` (cluster-wide, per query) = the workers' per-node limit times the
//!   most workers a cluster may have. It must not depend on the worker count: a count
//!   change would then change the ConfigMaps and restart every pod for a scale-up. The
//!   per-node limit, enforced on every worker, is what bounds a query.

use std::collections::BTreeMap;
use std::fmt::Write;

use tether_shared::spec::{ClusterSpec, Resources, memory_bytes};

use super::{PRESTO_PORT, RenderContext, service_name};

/// Where the image reads its configuration.
pub const ETC_DIR: &str = "/opt/presto-server/etc";
/// `node.data-dir` (the image's default).
pub const DATA_DIR: &str = "/var/lib/presto/data";
/// Where a heap dump goes: a volume of its own, sized for one dump (see
/// [`heap_dump_size_limit`]), so a dump never fills the data volume or the node.
pub const HEAP_DUMP_DIR: &str = "/var/lib/presto/heapdump";
/// The keys of the coordinator and worker ConfigMaps.
pub const NODE_CONFIG_KEYS: [&str; 4] = [
    "config.properties",
    "node.properties",
    "jvm.config",
    "log.properties",
];

/// The most workers a cluster may have.
const MAX_WORKERS: u64 = tether_shared::spec::MAX_WORKERS as u64;

/// Coordinator or worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Plans and schedules; runs no tasks.
    Coordinator,
    /// Runs tasks.
    Worker,
}

/// The JVM heap for a container memory limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Heap {
    /// Whole GiB.
    Gib(u64),
    /// MiB, when less than a GiB.
    Mib(u64),
}

impl Heap {
    /// 80 % of the container memory `limit` (a Kubernetes quantity), rounded down. An
    /// unparsable limit (validation refuses those) counts as 1Gi.
    pub fn for_limit(limit: &str) -> Heap {
        const GIB: u64 = 1 << 30;
        const MIB: u64 = 1 << 20;
        let heap = memory_bytes(limit).unwrap_or(GIB) / 10 * 8;
        if heap >= GIB {
            Heap::Gib(heap / GIB)
        } else {
            Heap::Mib((heap / MIB).max(256))
        }
    }

    /// The heap in MiB.
    pub fn mib(self) -> u64 {
        match self {
            Heap::Gib(g) => g * 1024,
            Heap::Mib(m) => m,
        }
    }

    /// The `-Xmx` flag.
    pub fn xmx(self) -> String {
        match self {
            Heap::Gib(g) => format!("-Xmx{g}G"),
            Heap::Mib(m) => format!("-Xmx{m}M"),
        }
    }

    /// `query.max-memory-per-node` (and total-per-node) for this heap, in MB (airlift's MB
    /// is 2^20 bytes).
    pub fn query_memory_per_node_mb(self) -> u64 {
        self.mib() * 60 / 100
    }
}

/// The data of the coordinator's or the workers' ConfigMap ([`NODE_CONFIG_KEYS`]).
pub fn node_config(
    role: Role,
    cluster: &str,
    spec: &ClusterSpec,
    ctx: &RenderContext,
) -> BTreeMap<String, String> {
    let resources = match role {
        Role::Coordinator => &spec.coordinator,
        Role::Worker => &spec.worker,
    };
    let [config, node, jvm, log] = NODE_CONFIG_KEYS;
    let mut jvm_text = jvm_config(resources);
    if role == Role::Coordinator
        && let Some(l) = super::tls::ldap(ctx)
        && super::tls::has_ldap_ca(l)
    {
        for flag in super::tls::jvm_flags() {
            jvm_text.push_str(&flag);
            jvm_text.push('\n');
        }
    }
    BTreeMap::from([
        (
            config.to_owned(),
            config_properties(role, cluster, spec, ctx),
        ),
        (node.to_owned(), node_properties()),
        (jvm.to_owned(), jvm_text),
        (log.to_owned(), log_properties()),
    ])
}

/// `config.properties` of a coordinator or worker.
pub fn config_properties(
    role: Role,
    cluster: &str,
    spec: &ClusterSpec,
    ctx: &RenderContext,
) -> String {
    let own = match role {
        Role::Coordinator => &spec.coordinator,
        Role::Worker => &spec.worker,
    };
    let per_node = Heap::for_limit(&own.memory).query_memory_per_node_mb();
    let worker_per_node = Heap::for_limit(&spec.worker.memory).query_memory_per_node_mb();
    let max_memory = (worker_per_node * MAX_WORKERS).max(1024);
    let mut p: Vec<(&str, String)> = match role {
        Role::Coordinator => vec![
            ("coordinator", "true".into()),
            ("node-scheduler.include-coordinator", "false".into()),
            ("http-server.http.port", PRESTO_PORT.to_string()),
            ("discovery-server.enabled", "true".into()),
            // With the reserved pool off, a cluster out of memory blocks until something
            // is killed: kill the query holding the most on the blocked workers
            // (`MemoryManagerConfig`; the default `none` kills nothing).
            (
                "query.low-memory-killer.policy",
                "total-reservation-on-blocked-nodes".into(),
            ),
        ],
        Role::Worker => vec![
            ("coordinator", "false".into()),
            ("http-server.http.port", PRESTO_PORT.to_string()),
        ],
    };
    let https = super::tls::ldap(ctx).is_some();
    if https && role == Role::Coordinator {
        p.extend(super::tls::coordinator_properties());
    }
    // With password authentication the client Service is HTTPS only: discovery goes to
    // the plain port of the internal one.
    let discovery = match https {
        true => super::tls::internal_service_name(cluster),
        false => service_name(cluster),
    };
    p.extend([
        // The Service's short name: the pods live in its namespace, and it does not
        // assume the cluster domain is `cluster.local`.
        ("discovery.uri", format!("http://{discovery}:{PRESTO_PORT}")),
        ("query.max-memory", format!("{max_memory}MB")),
        ("query.max-memory-per-node", format!("{per_node}MB")),
        ("query.max-total-memory-per-node", format!("{per_node}MB")),
        ("experimental.reserved-pool-enabled", "false".into()),
        (
            "shutdown.grace-period",
            format!("{}s", shutdown_grace_seconds(ctx.drain_grace_seconds)),
        ),
    ]);
    properties(p)
}

/// `shutdown.grace-period` for a drain budget: how long a worker told to shut down waits
/// before it looks at its tasks, and again after they finished (`GracefulShutdownHandler`).
/// It must outlast the coordinator's refresh of node states (every 5 s,
/// `DiscoveryNodeManager`) so no new task lands after the worker started waiting; more than
/// 30 s only delays the exit.
pub fn shutdown_grace_seconds(drain_grace_seconds: u32) -> u32 {
    drain_grace_seconds.clamp(1, 30)
}

/// `node.properties`. `node.id` is the pod name, read by Presto at start, as the official
/// image does; the data directory is an emptyDir.
pub fn node_properties() -> String {
    properties([
        ("node.environment", "tether"),
        ("node.id", "${ENV:HOSTNAME}"),
        ("node.data-dir", DATA_DIR),
    ])
}

/// `jvm.config`: one flag per line, no shell quoting.
pub fn jvm_config(resources: &Resources) -> String {
    let mut out = String::new();
    for flag in [
        "-server",
        &Heap::for_limit(&resources.memory).xmx(),
        "-XX:+UseG1GC",
        "-XX:G1HeapRegionSize=32M",
        "-XX:+ExitOnOutOfMemoryError",
        "-XX:+HeapDumpOnOutOfMemoryError",
        &format!("-XX:HeapDumpPath={HEAP_DUMP_DIR}"),
        "-Djdk.attach.allowAttachSelf=true",
    ] {
        out.push_str(flag);
        out.push('\n');
    }
    out
}

/// The `sizeLimit` of the heap-dump volume: one dump (at most the heap) and 1 GiB more.
pub fn heap_dump_size_limit(resources: &Resources) -> String {
    match Heap::for_limit(&resources.memory) {
        Heap::Gib(g) => format!("{}Gi", g + 1),
        Heap::Mib(m) => format!("{}Mi", m + 1024),
    }
}

/// `log.properties`.
pub fn log_properties() -> String {
    properties([("com.facebook.presto", "INFO")])
}

/// A `.properties` file: one `key=value` line per entry, in the given order, each key
/// and value escaped so that nothing in them can end the line, continue it, or start a
/// comment or another key.
pub fn properties<K: AsRef<str>, V: AsRef<str>>(
    entries: impl IntoIterator<Item = (K, V)>,
) -> String {
    let mut out = String::new();
    for (k, v) in entries {
        escape_into(&mut out, k.as_ref(), true);
        out.push('=');
        escape_into(&mut out, v.as_ref(), false);
        out.push('\n');
    }
    out
}

/// Escapes for `java.util.Properties.load`, which Presto reads catalog files with as
/// ISO-8859-1. Output is printable ASCII only: backslash doubled; CR, LF, tab and form
/// feed as `\r \n \t \f`; every other control character and everything beyond ASCII as
/// `\uXXXX` (UTF-16 units, as `Properties.store` writes them). A leading space is escaped
/// (`load` drops leading whitespace of a value); in keys, every separator character
/// (`=`, `:`, space) and a leading `#` or `!` are escaped too.
fn escape_into(out: &mut String, s: &str, key: bool) {
    for (i, c) in s.chars().enumerate() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{c}' => out.push_str("\\f"),
            ' ' if key || i == 0 => out.push_str("\\ "),
            '=' | ':' if key => {
                out.push('\\');
                out.push(c);
            }
            '#' | '!' if key && i == 0 => {
                out.push('\\');
                out.push(c);
            }
            ' '..='~' => out.push(c),
            _ => {
                let mut units = [0u16; 2];
                for u in c.encode_utf16(&mut units) {
                    // Writing to a String cannot fail.
                    let _ = write!(out, "\\u{u:04X}");
                }
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A reader with the rules of `java.util.Properties.load` (logical lines, comments,
    /// continuation, separators, escapes), to check what Presto would read back.
    pub(crate) fn load(text: &str) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let text = text.replace("\r\n", "\n");
        let mut lines = text.split(['\n', '\r']);
        while let Some(first) = lines.next() {
            let mut line = first.trim_start_matches([' ', '\t', '\u{c}']).to_owned();
            if line.is_empty() || line.starts_with('#') || line.starts_with('!') {
                continue;
            }
            // A line ending in an odd number of backslashes continues on the next.
            while line.chars().rev().take_while(|c| *c == '\\').count() % 2 == 1 {
                line.pop();
                match lines.next() {
                    Some(next) => line.push_str(next.trim_start_matches([' ', '\t', '\u{c}'])),
                    None => break,
                }
            }
            let chars: Vec<char> = line.chars().collect();
            let mut i = 0;
            let mut key_end = chars.len();
            let mut value_start = chars.len();
            while i < chars.len() {
                match chars[i] {
                    '\\' => i += 2,
                    '=' | ':' => {
                        key_end = i;
                        value_start = i + 1;
                        break;
                    }
                    ' ' | '\t' | '\u{c}' => {
                        key_end = i;
                        value_start = i + 1;
                        while value_start < chars.len()
                            && matches!(chars[value_start], ' ' | '\t' | '\u{c}')
                        {
                            value_start += 1;
                        }
                        if value_start < chars.len() && matches!(chars[value_start], '=' | ':') {
                            value_start += 1;
                        }
                        break;
                    }
                    _ => i += 1,
                }
            }
            let key_end = key_end.min(chars.len());
            while value_start < chars.len() && matches!(chars[value_start], ' ' | '\t' | '\u{c}') {
                value_start += 1;
            }
            let key: String = chars[..key_end].iter().collect();
            let value: String = chars[value_start.min(chars.len())..].iter().collect();
            out.push((unescape(&key), unescape(&value)));
        }
        out
    }

    fn unescape(s: &str) -> String {
        let mut units: Vec<u16> = Vec::new();
        let mut it = s.chars();
        while let Some(c) = it.next() {
            let c = if c == '\\' {
                match it.next() {
                    Some('n') => '\n',
                    Some('r') => '\r',
                    Some('t') => '\t',
                    Some('f') => '\u{c}',
                    Some('u') => {
                        let hex: String = it.by_ref().take(4).collect();
                        units.push(u16::from_str_radix(&hex, 16).expect("valid \\u escape"));
                        continue;
                    }
                    Some(other) => other,
                    None => break,
                }
            } else {
                c
            };
            let mut buf = [0u16; 2];
            units.extend_from_slice(c.encode_utf16(&mut buf));
        }
        String::from_utf16(&units).expect("valid UTF-16")
    }

    const NASTY: &[&str] = &[
        "plain",
        "",
        "x\nconnector.name=evil",
        "x\rconnector.name=evil",
        "x\r\nconnector.name=evil",
        "ends with backslash\\",
        "backslash then newline\\\nconnector.name=evil",
        "\\\\\\",
        " leading space",
        "\tleading tab",
        "\u{c}leading form feed",
        "#not a comment",
        "!not a comment",
        "a=b:c d",
        "${ENV:HOME}",
        "caf\u{e9} \u{1F600} \u{2028}\u{2029}\u{85}\u{0}\u{7f}\u{1b}",
        "trailing space ",
        "\\u0041 is not an escape",
    ];

    #[test]
    fn no_value_can_create_a_key_or_change_the_line_structure() {
        for value in NASTY {
            let text = properties([("hive.s3.endpoint", *value), ("connector.name", "hive")]);
            // Independent of the reader above: printable ASCII lines, one per entry, each
            // starting with its own key, none continuing onto the next.
            assert!(
                text.chars().all(|c| c == '\n' || (' '..='~').contains(&c)),
                "{text:?}"
            );
            let lines: Vec<&str> = text.lines().collect();
            assert_eq!(lines.len(), 2, "{text:?}");
            assert!(lines[0].starts_with("hive.s3.endpoint="), "{text:?}");
            assert!(lines[1].starts_with("connector.name="), "{text:?}");
            for line in &lines {
                let trailing = line.chars().rev().take_while(|c| *c == '\\').count();
                assert_eq!(trailing % 2, 0, "line continues: {line:?}");
            }
            // And read back with Java's rules, the value is exactly what was written.
            assert_eq!(
                load(&text),
                vec![
                    ("hive.s3.endpoint".to_owned(), (*value).to_owned()),
                    ("connector.name".to_owned(), "hive".to_owned()),
                ],
                "{value:?} -> {text:?}"
            );
        }
    }

    #[test]
    fn keys_are_escaped_too() {
        for key in ["a=b", "a:b", "a b", "#a", "!a", "a\nb=c", "k\u{e9}"] {
            let text = properties([(key, "v")]);
            assert_eq!(text.lines().count(), 1, "{text:?}");
            assert_eq!(
                load(&text),
                vec![(key.to_owned(), "v".to_owned())],
                "{text:?}"
            );
        }
    }

    #[test]
    fn heap_is_eighty_percent_rounded_down() {
        assert_eq!(Heap::for_limit("16Gi").xmx(), "-Xmx12G");
        assert_eq!(Heap::for_limit("8Gi").xmx(), "-Xmx6G");
        assert_eq!(Heap::for_limit("2Gi").xmx(), "-Xmx1G");
        assert_eq!(Heap::for_limit("64Gi").xmx(), "-Xmx51G");
        // A 1Gi container gets 819 MiB, not a 1 GiB heap it could not hold.
        assert_eq!(Heap::for_limit("1Gi").xmx(), "-Xmx819M");
        assert_eq!(Heap::for_limit("16Gi").query_memory_per_node_mb(), 7372);
    }

    #[test]
    fn jvm_config_has_one_flag_per_line() {
        let jvm = jvm_config(&Resources {
            cpu: "4".into(),
            memory: "16Gi".into(),
        });
        assert_eq!(
            jvm,
            "-server\n-Xmx12G\n-XX:+UseG1GC\n-XX:G1HeapRegionSize=32M\n\
             -XX:+ExitOnOutOfMemoryError\n-XX:+HeapDumpOnOutOfMemoryError\n\
             -XX:HeapDumpPath=/var/lib/presto/heapdump\n-Djdk.attach.allowAttachSelf=true\n"
        );
    }

    #[test]
    fn query_memory_fits_presto_startup_checks() {
        // LocalMemoryManager: total-per-node + headroom (30 % of heap) <= heap, and
        // per-node <= total-per-node; checked for the smallest and largest heaps.
        for limit in ["1Gi", "2Gi", "3Gi", "16Gi", "4Ti"] {
            let heap_mb = Heap::for_limit(limit).mib();
            let per_node = Heap::for_limit(limit).query_memory_per_node_mb();
            assert!(per_node * 10 + heap_mb * 3 <= heap_mb * 10, "{limit}");
        }
    }
}
