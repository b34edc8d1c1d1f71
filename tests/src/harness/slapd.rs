//! OpenLDAP `slapd` as a customer's directory: its own config in a temp dir (never the
//! system's), LDAPS and StartTLS with a certificate of the test's own CA, people under
//! `ou=people,dc=example,dc=com` and `groupOfNames` groups under `ou=groups`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// The directory's suffix.
pub const SUFFIX: &str = "dc=example,dc=com";
const ROOT_PW: &str = "root-secret";

/// A person and the groups they are a member of.
pub struct Person<'a> {
    /// `uid`.
    pub uid: &'a str,
    /// Password.
    pub password: &'a str,
    /// Group `cn`s.
    pub groups: &'a [&'a str],
}

/// A running slapd.
#[derive(Debug)]
pub struct Slapd {
    /// `ldaps://127.0.0.1:PORT`.
    pub ldaps_url: String,
    /// `ldap://127.0.0.1:PORT` (StartTLS).
    pub ldap_url: String,
    /// The CA that signed its certificate (PEM).
    pub ca_pem: String,
    pid_file: PathBuf,
    dir: tempfile::TempDir,
}

fn run(cmd: &mut Command, what: &str) -> String {
    let out = cmd.stdin(Stdio::null()).output().unwrap_or_else(|e| {
        panic!("{what}: {e} (apt-get install slapd ldap-utils; scripts/test does)")
    });
    assert!(
        out.status.success(),
        "{what}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn tls_files(dir: &Path) -> String {
    let ca_key = rcgen::KeyPair::generate().expect("ca key");
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "Test directory CA");
    let ca_cert = ca.self_signed(&ca_key).expect("ca");
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let key = rcgen::KeyPair::generate().expect("key");
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).expect("params");
    params
        .subject_alt_names
        .push(rcgen::SanType::IpAddress("127.0.0.1".parse().expect("ip")));
    let cert = params.signed_by(&key, &issuer).expect("cert");
    std::fs::write(dir.join("server.pem"), cert.pem()).expect("write cert");
    std::fs::write(dir.join("server.key"), key.serialize_pem()).expect("write key");
    ca_cert.pem()
}

impl Slapd {
    /// Starts slapd with `people` (each in their groups).
    pub async fn start(people: &[Person<'_>]) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        std::fs::create_dir_all(d.join("db")).expect("db dir");
        let ca_pem = tls_files(d);
        let root_hash = run(
            Command::new("slappasswd").args(["-s", ROOT_PW]),
            "slappasswd",
        );
        let conf = format!(
            "include /etc/ldap/schema/core.schema\n\
             include /etc/ldap/schema/cosine.schema\n\
             include /etc/ldap/schema/inetorgperson.schema\n\
             include /etc/ldap/schema/nis.schema\n\
             modulepath /usr/lib/ldap\nmoduleload back_mdb\n\
             pidfile {d}/slapd.pid\n\
             TLSCertificateFile {d}/server.pem\nTLSCertificateKeyFile {d}/server.key\n\
             database mdb\nmaxsize 10485760\nsuffix \"{SUFFIX}\"\nrootdn \"cn=admin,{SUFFIX}\"\n\
             rootpw {root}\ndirectory {d}/db\n",
            d = d.display(),
            root = root_hash.trim(),
        );
        std::fs::write(d.join("slapd.conf"), conf).expect("write conf");
        let (p1, p2) = (super::oidc::free_port(), super::oidc::free_port());
        let ldaps_url = format!("ldaps://127.0.0.1:{p1}");
        let ldap_url = format!("ldap://127.0.0.1:{p2}");
        let slapd = ["/usr/sbin/slapd", "slapd"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .unwrap_or("slapd");
        run(
            Command::new(slapd).args([
                "-f",
                &d.join("slapd.conf").display().to_string(),
                "-h",
                &format!("{ldaps_url}/ {ldap_url}/"),
            ]),
            "slapd",
        );
        let s = Slapd {
            ldaps_url,
            ldap_url,
            ca_pem,
            pid_file: d.join("slapd.pid"),
            dir,
        };
        // It daemonizes: wait until it answers.
        for _ in 0..100 {
            let ok = Command::new("ldapsearch")
                .args(["-x", "-H", &s.ldap_url, "-b", "", "-s", "base"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|st| st.success());
            if ok {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        s.load(people);
        s
    }

    fn load(&self, people: &[Person<'_>]) {
        let mut ldif = format!(
            "dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\no: Example\ndc: example\n\n\
             dn: ou=people,{SUFFIX}\nobjectClass: organizationalUnit\nou: people\n\n\
             dn: ou=groups,{SUFFIX}\nobjectClass: organizationalUnit\nou: groups\n\n"
        );
        let mut groups: std::collections::BTreeMap<&str, Vec<String>> = Default::default();
        for p in people {
            let dn = format!("uid={},ou=people,{SUFFIX}", p.uid);
            ldif.push_str(&format!(
                "dn: {dn}\nobjectClass: inetOrgPerson\nuid: {uid}\ncn: {uid}\nsn: {uid}\nmail: {uid}@example.com\nuserPassword: {pw}\n\n",
                uid = p.uid,
                pw = p.password
            ));
            for g in p.groups {
                groups.entry(g).or_default().push(dn.clone());
            }
        }
        for (g, members) in groups {
            ldif.push_str(&format!(
                "dn: cn={g},ou=groups,{SUFFIX}\nobjectClass: groupOfNames\ncn: {g}\n"
            ));
            for m in members {
                ldif.push_str(&format!("member: {m}\n"));
            }
            ldif.push('\n');
        }
        let file = self.dir.path().join("entries.ldif");
        std::fs::write(&file, ldif).expect("write ldif");
        run(
            Command::new("ldapadd").args([
                "-x",
                "-H",
                &self.ldap_url,
                "-D",
                &format!("cn=admin,{SUFFIX}"),
                "-w",
                ROOT_PW,
                "-f",
                &file.display().to_string(),
            ]),
            "ldapadd",
        );
    }

    /// Removes `uid` from group `group` (as an administrator would).
    pub fn remove_member(&self, group: &str, uid: &str) {
        let file = self.dir.path().join("modify.ldif");
        std::fs::write(
            &file,
            format!(
                "dn: cn={group},ou=groups,{SUFFIX}\nchangetype: modify\ndelete: member\nmember: uid={uid},ou=people,{SUFFIX}\n"
            ),
        )
        .expect("write ldif");
        run(
            Command::new("ldapmodify").args([
                "-x",
                "-H",
                &self.ldap_url,
                "-D",
                &format!("cn=admin,{SUFFIX}"),
                "-w",
                ROOT_PW,
                "-f",
                &file.display().to_string(),
            ]),
            "ldapmodify",
        );
    }

    /// Stops it (by the pid in its pid file).
    pub fn stop(&self) {
        if let Ok(pid) = std::fs::read_to_string(&self.pid_file) {
            let _ = Command::new("kill").arg(pid.trim()).status();
            for _ in 0..50 {
                if !self.pid_file.exists() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

impl Drop for Slapd {
    fn drop(&mut self) {
        self.stop();
    }
}
