//! `tinyproxy` as the customer's corporate egress proxy (HTTP CONNECT only to the ports
//! the test allows).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A running tinyproxy.
#[derive(Debug)]
pub struct Tinyproxy {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

impl Tinyproxy {
    /// Starts tinyproxy on a free loopback port, allowing CONNECT only to `connect_ports`.
    pub async fn start(connect_ports: &[u16]) -> Self {
        Self::start_on("127.0.0.1", "127.0.0.1", connect_ports).await
    }

    /// Starts tinyproxy on a free port of `listen`, serving clients from `allow` (an
    /// address or CIDR), CONNECT only to `connect_ports`.
    pub async fn start_on(listen: &str, allow: &str, connect_ports: &[u16]) -> Self {
        let which = Command::new("sh")
            .args(["-c", "command -v tinyproxy"])
            .output();
        assert!(
            which.map(|o| o.status.success()).unwrap_or(false),
            "tinyproxy is not installed: `apt-get install -y tinyproxy` (scripts/test does)"
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let port = {
            let l = std::net::TcpListener::bind(format!("{listen}:0")).expect("bind");
            l.local_addr().expect("addr").port()
        };
        let log = dir.path().join("tinyproxy.log");
        let mut conf = format!(
            "Port {port}\nListen {listen}\nAllow {allow}\nTimeout 60\nDisableViaHeader Yes\n\
             LogLevel Info\nLogFile \"{}\"\nPidFile \"{}\"\nMaxClients 50\n",
            log.display(),
            dir.path().join("tinyproxy.pid").display()
        );
        for p in connect_ports {
            conf.push_str(&format!("ConnectPort {p}\n"));
        }
        if is_root() {
            conf.push_str("User root\nGroup root\n");
        }
        let conf_path = dir.path().join("tinyproxy.conf");
        std::fs::write(&conf_path, conf).expect("conf");
        let child = Command::new("tinyproxy")
            .arg("-d")
            .arg("-c")
            .arg(&conf_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn tinyproxy");
        let addr = format!("{listen}:{port}");
        super::eventually(Duration::from_secs(10), "tinyproxy listening", || {
            let addr = addr.clone();
            async move { tokio::net::TcpStream::connect(&addr).await.ok().map(|_| ()) }
        })
        .await;
        Self {
            child,
            url: format!("http://{addr}"),
            log,
            _dir: dir,
        }
    }

    /// The proxy's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Tinyproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
