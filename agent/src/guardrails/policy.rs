//! The customer's policy file (`--policy-file`, TOML): limits on what the vendor's desired
//! state may ask for. Every key is optional; a missing key means no limit. Unknown keys and
//! bad values are errors naming the line, so a typo never silently lifts a limit.
//!
//! ```toml
//! max_workers_per_cluster = 20
//! max_workers_total = 50
//! max_worker_cpu = "4"
//! max_worker_memory = "16Gi"
//! allowed_presto_versions = ["0.289"]
//! allowed_image_registries = ["docker.io", "123456789012.dkr.ecr.us-east-1.amazonaws.com"]
//! allowed_connectors = ["hive", "postgresql"]
//! allowed_catalog_hosts = ["db.internal.example.com", "*.rds.amazonaws.com", "10.0.0.0/8"]
//! max_query_text = "redacted"
//! deletes = "local-approval"
//!
//! [[maintenance_windows]]
//! days = ["sat", "sun"]
//! start = "02:00"
//! end = "06:00"
//! ```

use std::path::Path;

use serde::Deserialize;
use tether_shared::redact::RedactionMode;
use tether_shared::spec::{Connector, cpu_millis, memory_bytes};

/// A parsed, checked policy.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Most workers one cluster may have (a fixed count, or an autoscaler's `max`).
    pub max_workers_per_cluster: Option<u32>,
    /// Most workers all clusters together may have.
    pub max_workers_total: Option<u32>,
    /// Largest CPU of one worker pod.
    pub max_worker_cpu: Option<Cpu>,
    /// Largest memory of one worker pod.
    pub max_worker_memory: Option<Memory>,
    /// Presto versions the clusters may run.
    pub allowed_presto_versions: Option<Vec<String>>,
    /// Registries every image of a cluster must come from (`docker.io` for Docker Hub).
    pub allowed_image_registries: Option<Vec<String>>,
    /// Connectors catalogs may use.
    pub allowed_connectors: Option<Vec<Connector>>,
    /// Hosts a catalog may point at: names (`*.example.com` for any name under it) and
    /// CIDRs for addresses. Names are not resolved: a catalog naming a host by a name must
    /// find that name here.
    pub allowed_catalog_hosts: Option<Vec<HostRule>>,
    /// Most query text the agent sends upstream; the control plane cannot raise it.
    pub max_query_text: Option<QueryText>,
    /// Whether the control plane may delete a cluster on its own.
    #[serde(default)]
    pub deletes: Deletes,
    /// When changes that replace pods may be applied (UTC); none: at any time.
    #[serde(default)]
    pub maintenance_windows: Vec<Window>,
}

/// How deletes are applied.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Deletes {
    /// As soon as the desired state drops the cluster.
    #[default]
    Allow,
    /// Only after `tether-agent approve delete CLUSTER` in the VPC.
    LocalApproval,
}

/// A CPU quantity (`"4"`, `"3500m"`), kept as written and in millicores.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cpu {
    /// As written.
    pub text: String,
    /// Millicores.
    pub millis: u64,
}

impl<'de> Deserialize<'de> for Cpu {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        let millis = cpu_millis(&text).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "{text:?} is not a CPU quantity (e.g. \"4\" or \"3500m\")"
            ))
        })?;
        Ok(Self { text, millis })
    }
}

/// A memory quantity (`"16Gi"`), kept as written and in bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Memory {
    /// As written.
    pub text: String,
    /// Bytes.
    pub bytes: u64,
}

impl<'de> Deserialize<'de> for Memory {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        let bytes = memory_bytes(&text).ok_or_else(|| {
            serde::de::Error::custom(format!("{text:?} is not a memory quantity (e.g. \"16Gi\")"))
        })?;
        Ok(Self { text, bytes })
    }
}

/// `max_query_text`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QueryText {
    /// No query text.
    None,
    /// Literals replaced by `?`.
    Redacted,
    /// As written.
    Full,
}

impl QueryText {
    /// The redaction mode of this level.
    pub fn mode(self) -> RedactionMode {
        match self {
            Self::None => RedactionMode::None,
            Self::Redacted => RedactionMode::Redacted,
            Self::Full => RedactionMode::Full,
        }
    }

    /// How much text a mode sends: none < redacted < full.
    pub fn rank(mode: RedactionMode) -> u8 {
        match mode {
            RedactionMode::None => 0,
            RedactionMode::Redacted => 1,
            RedactionMode::Full => 2,
        }
    }
}

/// One entry of `allowed_catalog_hosts`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostRule {
    /// Exactly this name (case-insensitive).
    Name(String),
    /// Any name ending in `.suffix` (written `*.suffix`).
    Suffix(String),
    /// Any address in the network.
    Net(ipnet::IpNet),
}

impl<'de> Deserialize<'de> for HostRule {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        let bad = |why: &str| serde::de::Error::custom(format!("{text:?}: {why}"));
        if let Ok(net) = text.parse::<ipnet::IpNet>() {
            return Ok(Self::Net(net.trunc()));
        }
        if let Ok(ip) = text.parse::<std::net::IpAddr>() {
            return Ok(Self::Net(ipnet::IpNet::from(ip)));
        }
        let (suffix, name) = match text.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, text.as_str()),
        };
        let valid = !name.is_empty()
            && name.len() <= 253
            && name.split('.').all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                    && !l.starts_with('-')
                    && !l.ends_with('-')
            });
        if !valid {
            return Err(bad(
                "not a host name, a *.domain or a CIDR (e.g. \"db.example.com\", \"*.example.com\", \"10.0.0.0/8\")",
            ));
        }
        let name = name.to_ascii_lowercase();
        Ok(if suffix {
            Self::Suffix(name)
        } else {
            Self::Name(name)
        })
    }
}

impl HostRule {
    /// Whether `host` (a name or an address literal) is allowed by this rule.
    pub fn allows(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        match self {
            Self::Name(n) => host == *n,
            Self::Suffix(s) => host
                .strip_suffix(s.as_str())
                .is_some_and(|head| head.ends_with('.') && head.len() > 1),
            Self::Net(net) => host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| net.contains(&ip)),
        }
    }
}

/// A weekly window (UTC): on each of `days`, from `start` to `end` (`end` before `start`
/// runs into the next day).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Window {
    /// Days it opens on: `mon` … `sun`.
    pub days: Vec<Day>,
    /// Opening time, `HH:MM` UTC.
    pub start: TimeOfDay,
    /// Closing time, `HH:MM` UTC.
    pub end: TimeOfDay,
}

/// A day of the week.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Day {
    /// Monday.
    Mon,
    /// Tuesday.
    Tue,
    /// Wednesday.
    Wed,
    /// Thursday.
    Thu,
    /// Friday.
    Fri,
    /// Saturday.
    Sat,
    /// Sunday.
    Sun,
}

impl Day {
    /// 0 for Monday … 6 for Sunday.
    fn index(self) -> u64 {
        self as u64
    }

    fn name(self) -> &'static str {
        ["mon", "tue", "wed", "thu", "fri", "sat", "sun"][self as usize]
    }
}

/// Minutes after midnight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeOfDay(pub u32);

impl<'de> Deserialize<'de> for TimeOfDay {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        let parsed = text.split_once(':').and_then(|(h, m)| {
            let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
            (h < 24 && m < 60 && text.len() == 5).then_some(h * 60 + m)
        });
        parsed.map(Self).ok_or_else(|| {
            serde::de::Error::custom(format!("{text:?} is not a time HH:MM (UTC, 00:00-23:59)"))
        })
    }
}

impl std::fmt::Display for TimeOfDay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:02}:{:02}", self.0 / 60, self.0 % 60)
    }
}

const MINUTES_PER_WEEK: u64 = 7 * 24 * 60;

impl Window {
    /// Whether the window is open at `unix_ms`.
    pub fn contains(&self, unix_ms: u64) -> bool {
        let minutes = unix_ms / 60_000;
        // 1970-01-01 was a Thursday (index 3 from Monday).
        let of_week = (minutes + 3 * 24 * 60) % MINUTES_PER_WEEK;
        let length = if self.end.0 > self.start.0 {
            u64::from(self.end.0 - self.start.0)
        } else {
            u64::from(24 * 60 - self.start.0 + self.end.0)
        };
        self.days.iter().any(|d| {
            let opens = d.index() * 24 * 60 + u64::from(self.start.0);
            (of_week + MINUTES_PER_WEEK - opens) % MINUTES_PER_WEEK < length
        })
    }
}

impl std::fmt::Display for Window {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let days: Vec<&str> = self.days.iter().map(|d| d.name()).collect();
        write!(f, "{} {}-{} UTC", days.join(","), self.start, self.end)
    }
}

/// Why a policy file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// Unreadable.
    #[error("cannot read policy file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// Not a valid policy; the message names the line and column.
    #[error("policy file {path}: {message}")]
    Invalid {
        /// The file.
        path: String,
        /// The parser's message.
        message: String,
    },
}

impl Policy {
    /// Parses a policy; errors name the line.
    pub fn parse(text: &str) -> Result<Self, String> {
        let policy: Self = toml::from_str(text).map_err(|e| e.to_string().trim().to_owned())?;
        for w in &policy.maintenance_windows {
            if w.days.is_empty() {
                return Err("maintenance_windows: a window needs at least one day".into());
            }
            if w.start == w.end {
                return Err(format!(
                    "maintenance_windows: a window's start and end are both {}",
                    w.start
                ));
            }
        }
        Ok(policy)
    }

    /// Reads and parses the file.
    pub fn load(path: &Path) -> Result<(Self, Vec<u8>), PolicyError> {
        let bytes = std::fs::read(path).map_err(|source| PolicyError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let text = String::from_utf8(bytes.clone()).map_err(|e| PolicyError::Invalid {
            path: path.display().to_string(),
            message: format!("not UTF-8: {e}"),
        })?;
        let policy = Self::parse(&text).map_err(|message| PolicyError::Invalid {
            path: path.display().to_string(),
            message,
        })?;
        Ok((policy, bytes))
    }

    /// Whether a change that replaces pods may be applied at `unix_ms`.
    pub fn in_window(&self, unix_ms: u64) -> bool {
        self.maintenance_windows.is_empty()
            || self.maintenance_windows.iter().any(|w| w.contains(unix_ms))
    }

    /// The windows, for messages.
    pub fn windows_text(&self) -> String {
        let w: Vec<String> = self
            .maintenance_windows
            .iter()
            .map(ToString::to_string)
            .collect();
        w.join("; ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_policy_parses() {
        let p = Policy::parse(
            r#"
max_workers_per_cluster = 20
max_workers_total = 50
max_worker_cpu = "3500m"
max_worker_memory = "16Gi"
allowed_presto_versions = ["0.289"]
allowed_image_registries = ["docker.io"]
allowed_connectors = ["hive", "postgresql"]
allowed_catalog_hosts = ["DB.example.com", "*.rds.amazonaws.com", "10.0.0.0/8", "fd00::1"]
max_query_text = "none"
deletes = "local-approval"

[[maintenance_windows]]
days = ["sat", "sun"]
start = "22:00"
end = "02:00"
"#,
        )
        .expect("parses");
        assert_eq!(p.max_worker_cpu.as_ref().map(|c| c.millis), Some(3500));
        assert_eq!(p.max_worker_memory.map(|m| m.bytes), Some(16 << 30));
        assert_eq!(p.deletes, Deletes::LocalApproval);
        assert_eq!(p.max_query_text, Some(QueryText::None));
        let hosts = p.allowed_catalog_hosts.expect("hosts");
        assert!(hosts[0].allows("db.example.com"));
        assert!(hosts[1].allows("x.y.rds.amazonaws.com"));
        assert!(!hosts[1].allows("rds.amazonaws.com"));
        assert!(!hosts[1].allows("evilrds.amazonaws.com"));
        assert!(hosts[2].allows("10.1.2.3"));
        assert!(!hosts[2].allows("11.1.2.3"));
        assert!(!hosts[2].allows("ten.example.com"));
        assert!(hosts[3].allows("fd00::1"));
        assert_eq!(
            p.maintenance_windows[0].to_string(),
            "sat,sun 22:00-02:00 UTC"
        );
    }

    #[test]
    fn errors_name_the_line() {
        for (text, line, needle) in [
            (
                "max_workers_total = 5\nmax_wrkers = 3\n",
                "line 2",
                "max_wrkers",
            ),
            ("max_worker_cpu = \"lots\"\n", "line 1", "CPU quantity"),
            (
                "\n\nallowed_catalog_hosts = [\"bad host\"]\n",
                "line 3",
                "not a host name",
            ),
            ("deletes = \"never\"\n", "line 1", "never"),
            (
                "[[maintenance_windows]]\ndays = [\"sat\"]\nstart = \"25:00\"\nend = \"02:00\"\n",
                "line 3",
                "HH:MM",
            ),
            ("max_query_text = \"all\"\n", "line 1", "all"),
            ("max_workers_total = -1\n", "line 1", "max_workers_total"),
        ] {
            let e = Policy::parse(text).expect_err(text);
            assert!(e.contains(line) && e.contains(needle), "{text:?}: {e}");
        }
    }

    #[test]
    fn windows_open_on_their_days_in_utc() {
        let w = Policy::parse(
            "[[maintenance_windows]]\ndays = [\"sat\"]\nstart = \"22:00\"\nend = \"02:00\"\n",
        )
        .expect("parses");
        // 2026-12-05 is a Saturday.
        let sat = 1_796_428_800_000_u64; // 2026-12-05T00:00Z
        let at = |h: u64, m: u64| sat + (h * 60 + m) * 60_000;
        assert!(!w.in_window(at(21, 59)));
        assert!(w.in_window(at(22, 0)));
        assert!(w.in_window(at(25, 59)), "runs into Sunday");
        assert!(!w.in_window(at(26, 0)));
        assert!(
            !w.in_window(at(1, 0)),
            "Saturday 01:00 belongs to Friday's window"
        );
        assert!(Policy::default().in_window(at(1, 0)));
    }
}
