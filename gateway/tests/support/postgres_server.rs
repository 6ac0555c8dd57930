//! A real PostgreSQL for tests (Debian's `postgresql` package): a cluster
//! made with `initdb` in a temp dir, on a free port of 127.0.0.1, trusting
//! local connections, stopped when dropped. Run as the `postgres` user when
//! the suite runs as root (the server refuses root).
#![allow(dead_code)]

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use super::eventually;

pub struct Postgres {
    child: Option<Child>,
    pub port: u16,
    data: PathBuf,
    bin: PathBuf,
    owner: Option<(u32, u32)>,
    /// The CA that signed the server's certificate, when TLS is required.
    ca_file: Option<PathBuf>,
    _dir: tempfile::TempDir,
}

/// The newest installed server's binaries.
fn bin_dir() -> PathBuf {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL server (Debian package postgresql; .ci/setup installs it)")
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("postgres").exists())
        .collect();
    versions.sort_by_key(|p| {
        p.parent()
            .and_then(|v| v.file_name()?.to_str()?.parse::<u32>().ok())
            .unwrap_or(0)
    });
    versions
        .pop()
        .expect("a PostgreSQL server under /usr/lib/postgresql")
}

/// The `postgres` account's uid and gid, when running as root.
fn owner() -> Option<(u32, u32)> {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    if !root {
        return None;
    }
    let id = |flag: &str| -> u32 {
        let o = Command::new("id")
            .args([flag, "postgres"])
            .output()
            .expect("id postgres");
        String::from_utf8_lossy(&o.stdout)
            .trim()
            .parse()
            .expect("the postgres account (made by Debian's postgresql package)")
    };
    Some((id("-u"), id("-g")))
}

fn as_owner(cmd: &mut Command, owner: Option<(u32, u32)>) -> &mut Command {
    if let Some((uid, gid)) = owner {
        cmd.uid(uid).gid(gid);
    }
    cmd
}

impl Postgres {
    pub async fn start() -> Postgres {
        Self::start_with(false).await
    }

    /// A server that takes only TLS connections from TCP clients
    /// (`hostssl` in pg_hba.conf), its certificate (for 127.0.0.1) signed
    /// by a CA of the test's own, in [`Postgres::ca_file`].
    pub async fn start_tls() -> Postgres {
        Self::start_with(true).await
    }

    async fn start_with(tls: bool) -> Postgres {
        let dir = tempfile::tempdir().expect("temp dir");
        let bin = bin_dir();
        let owner = owner();
        let data = dir.path().join("data");
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).expect("chown");
        }
        let out = as_owner(&mut Command::new(bin.join("initdb")), owner)
            .arg("-D")
            .arg(&data)
            .args(["-U", "sluice", "--auth=trust", "-E", "UTF8", "--no-sync"])
            .output()
            .expect("initdb");
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let ca_file = tls.then(|| require_tls(dir.path(), &data, owner));
        let mut pg = Postgres {
            child: None,
            port: super::free_port(),
            data,
            bin,
            owner,
            ca_file,
            _dir: dir,
        };
        pg.spawn().await;
        pg
    }

    async fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.data.with_file_name("postgres.log"))
            .expect("postgres log");
        let child = as_owner(&mut Command::new(self.bin.join("postgres")), self.owner)
            .arg("-D")
            .arg(&self.data)
            .args(["-p", &self.port.to_string(), "-h", "127.0.0.1", "-k"])
            .arg(&self.data)
            .args(["-c", "fsync=off", "-c", "max_connections=200"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("postgres");
        self.child = Some(child);
        let (ready, port) = (self.bin.join("pg_isready"), self.port.to_string());
        eventually("postgres accepts connections", async || {
            Command::new(&ready)
                .args(["-q", "-h", "127.0.0.1", "-p", &port, "-U", "sluice"])
                .status()
                .is_ok_and(|s| s.success())
        })
        .await;
    }

    /// `database:` for control's settings.
    pub fn settings(&self) -> String {
        format!(
            "database: {{ postgres: \"host=127.0.0.1 port={} user=sluice dbname=postgres\" }}",
            self.port
        )
    }

    /// Stop the server (fast shutdown: sessions are cut).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-INT", &c.id().to_string()])
                .status();
            let _ = c.wait();
        }
    }

    pub async fn restart(&mut self) {
        self.stop();
        self.spawn().await;
    }

    fn psql_command(&self) -> Command {
        let mut cmd = Command::new(self.bin.join("psql"));
        cmd.args([
            "-h",
            "127.0.0.1",
            "-p",
            &self.port.to_string(),
            "-U",
            "sluice",
        ])
        .args(["-d", "postgres", "-At", "-v", "ON_ERROR_STOP=1"]);
        cmd
    }

    /// Run `sql` with `psql`; its output (unaligned, tuples only).
    pub fn psql(&self, sql: &str) -> String {
        let out = self
            .psql_command()
            .args(["-c", sql])
            .output()
            .expect("psql");
        assert!(
            out.status.success(),
            "psql {sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// A session holding the advisory lock control takes for `name`,
    /// until the returned process is killed.
    pub fn hold_lock(&self, name: &str) -> Child {
        let mut child = self
            .psql_command()
            .args([
                "-c",
                &format!("SELECT pg_advisory_lock(hashtext('{name}'))"),
            ])
            .args(["-c", "SELECT 'held'", "-c", "SELECT pg_sleep(3600)"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("psql");
        let mut out = child.stdout.take().expect("psql stdout");
        let mut line = String::new();
        while !line.contains("held") {
            let mut buf = [0u8; 64];
            let n = std::io::Read::read(&mut out, &mut buf).expect("psql output");
            assert!(n > 0, "psql ended before holding the lock");
            line.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
        child
    }

    /// The CA file of a [`Postgres::start_tls`] server.
    pub fn ca_file(&self) -> &Path {
        self.ca_file.as_deref().expect("a server started with TLS")
    }

    pub fn data_dir(&self) -> &Path {
        &self.data
    }
}

/// Make a CA and a server certificate for 127.0.0.1, turn TLS on and allow
/// TCP clients over TLS only. Returns the CA file.
fn require_tls(dir: &Path, data: &Path, owner: Option<(u32, u32)>) -> PathBuf {
    let ca = super::test_ca();
    let key = rcgen::KeyPair::generate().expect("key");
    let params = rcgen::CertificateParams::new(vec!["127.0.0.1".into()]).expect("params");
    let cert = params.signed_by(&key, &ca).expect("server cert");
    let ca_file = dir.join("ca.pem");
    std::fs::write(&ca_file, ca.pem()).expect("write");
    let (cert_file, key_file) = (data.join("server.crt"), data.join("server.key"));
    std::fs::write(&cert_file, cert.pem()).expect("write");
    std::fs::write(&key_file, key.serialize_pem()).expect("write");
    std::fs::set_permissions(
        &key_file,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .expect("chmod");
    if let Some((uid, gid)) = owner {
        for f in [&cert_file, &key_file] {
            std::os::unix::fs::chown(f, Some(uid), Some(gid)).expect("chown");
        }
    }
    let conf = data.join("postgresql.conf");
    let mut text = std::fs::read_to_string(&conf).expect("postgresql.conf");
    text.push_str("\nssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n");
    std::fs::write(&conf, text).expect("write");
    std::fs::write(
        data.join("pg_hba.conf"),
        "local all all trust\nhostssl all all 127.0.0.1/32 trust\n",
    )
    .expect("write");
    ca_file
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop();
    }
}
