//! Network namespaces for the firewall tests (root only): one namespace joined to the
//! root namespace by a veth pair on its own /30, with nftables rules inside it. Removed
//! (namespace and veth) when dropped, also when the test fails.

use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

static NEXT: AtomicU32 = AtomicU32::new(0);

/// Whether the tests run as root (CI does; the namespace tests need it).
pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn run(args: &[&str]) -> Output {
    let out = Command::new(args[0])
        .args(&args[1..])
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", args.join(" ")));
    assert!(
        out.status.success(),
        "{} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A namespace with one veth link to the root namespace.
#[derive(Debug)]
pub struct NetNs {
    /// Namespace name.
    pub name: String,
    /// The root namespace's end of the link.
    pub host_if: String,
    /// Address of the root namespace's end (the namespace's default gateway).
    pub host_addr: String,
    /// Address inside the namespace.
    pub ns_addr: String,
}

impl NetNs {
    /// Creates the namespace, the link, addresses and the default route, and checks that
    /// it exists before anything uses it. Panics (test failure) if not root.
    pub fn create() -> NetNs {
        assert!(
            is_root(),
            "the network-namespace tests need root (CI runs as root); run scripts/test as root"
        );
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let tag = (std::process::id() % 2000) * 8 + n % 8;
        let name = format!("tether-t{tag}");
        let host_if = format!("tt{tag}h");
        let ns_if = format!("tt{tag}n");
        // 10.232.0.0/16 split into /30s: two octets from the tag.
        let (a, b) = (tag / 64, (tag % 64) * 4);
        let host_addr = format!("10.{}.{a}.{}", 232, b + 1);
        let ns_addr = format!("10.{}.{a}.{}", 232, b + 2);
        // Leftovers of an earlier run that was killed.
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        let _ = Command::new("ip").args(["link", "del", &host_if]).output();
        let ns = NetNs {
            name,
            host_if,
            host_addr,
            ns_addr,
        };
        run(&["ip", "netns", "add", &ns.name]);
        run(&[
            "ip",
            "link",
            "add",
            &ns.host_if,
            "type",
            "veth",
            "peer",
            "name",
            &ns_if,
        ]);
        run(&["ip", "link", "set", &ns_if, "netns", &ns.name]);
        run(&[
            "ip",
            "addr",
            "add",
            &format!("{}/30", ns.host_addr),
            "dev",
            &ns.host_if,
        ]);
        run(&["ip", "link", "set", &ns.host_if, "up"]);
        run(&[
            "ip",
            "-n",
            &ns.name,
            "addr",
            "add",
            &format!("{}/30", ns.ns_addr),
            "dev",
            &ns_if,
        ]);
        run(&["ip", "-n", &ns.name, "link", "set", &ns_if, "up"]);
        run(&["ip", "-n", &ns.name, "link", "set", "lo", "up"]);
        run(&[
            "ip",
            "-n",
            &ns.name,
            "route",
            "add",
            "default",
            "via",
            &ns.host_addr,
        ]);
        let list = run(&["ip", "netns", "list"]);
        assert!(
            String::from_utf8_lossy(&list.stdout).contains(&ns.name),
            "namespace {} missing after creation",
            ns.name
        );
        ns
    }

    /// Loads an nftables ruleset inside the namespace.
    fn nft(&self, ruleset: &str) {
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.name, "nft", "-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("nft (apt: nftables)");
        if let Some(mut stdin) = child.stdin.take() {
            use std::io::Write;
            stdin.write_all(ruleset.as_bytes()).expect("write ruleset");
        }
        let out = child.wait_with_output().expect("nft");
        assert!(
            out.status.success(),
            "nft: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The outbound-only firewall: every new inbound connection is dropped; loopback and
    /// replies to connections the namespace opened pass.
    pub fn drop_inbound(&self) {
        self.nft(
            "table inet tether_in {\n  chain input {\n    type filter hook input priority 0; policy drop;\n    \
             iif lo accept\n    ct state established,related accept\n  }\n}\n",
        );
    }

    /// Egress only to `addr:port` (the proxy): everything else leaving the namespace is
    /// dropped (loopback and replies pass).
    pub fn egress_only_to(&self, addr: &str, port: u16) {
        self.nft(&format!(
            "table inet tether_out {{\n  chain output {{\n    type filter hook output priority 0; policy drop;\n    \
             oif lo accept\n    ct state established,related accept\n    ip daddr {addr} tcp dport {port} accept\n  }}\n}}\n"
        ));
    }

    /// `program` to run inside the namespace.
    pub fn command(&self, program: &std::path::Path) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name]).arg(program);
        c
    }

    /// Whether a TCP connection to `addr:port` opens from inside the namespace (bash's
    /// `/dev/tcp`, 3 s).
    pub fn can_connect_from_inside(&self, addr: &str, port: u16) -> bool {
        Command::new("ip")
            .args(["netns", "exec", &self.name, "timeout", "3", "bash", "-c"])
            .arg(format!("exec 3<>/dev/tcp/{addr}/{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    }
}

/// Whether a TCP connection to `addr:port` opens from the test process (root namespace)
/// within `timeout`.
pub async fn can_connect(addr: &str, port: u16, timeout: Duration) -> bool {
    matches!(
        tokio::time::timeout(timeout, tokio::net::TcpStream::connect((addr, port))).await,
        Ok(Ok(_))
    )
}

impl Drop for NetNs {
    fn drop(&mut self) {
        // Deleting the namespace deletes its end of the veth, and with it ours.
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_if])
            .output();
    }
}
