//! The control process for tests: the real `sluice-control` binary (built
//! on first use with the same profile), on a fixed port for its life so a
//! restart keeps its address, with settings and database in a temp dir.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;

pub const GATEWAY_TOKEN: &str = "gw-token-0f3c9a7e51";

/// A person who may sign in: (name, token, subject, roles, tenants).
pub type User = (
    &'static str,
    &'static str,
    &'static str,
    &'static [&'static str],
    &'static [&'static str],
);

pub const USERS: &[User] = &[
    (
        "alice",
        "alice-token-5521",
        "alice",
        &["finance"],
        &["acme"],
    ),
    ("carol", "carol-token-9b1e", "carol", &["finance"], &["*"]),
    // Bob makes calls as `bob` and also holds the approver role.
    ("bob", "bob-token-77aa", "bob", &["finance"], &["acme"]),
    (
        "victor",
        "victor-token-1234",
        "victor",
        &["viewer"],
        &["acme"],
    ),
];

pub fn token(name: &str) -> &'static str {
    USERS
        .iter()
        .find(|u| u.0 == name)
        .map(|u| u.1)
        .expect("known user")
}

/// Path to the control binary, built once per test process.
pub fn control_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let gateway = PathBuf::from(env!("CARGO_BIN_EXE_sluice-gateway"));
        let dir = gateway.parent().expect("target dir").to_path_buf();
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args([
            "build",
            "--quiet",
            "-p",
            "sluice-control",
            "--bin",
            "sluice-control",
        ]);
        // Same profile as the gateway binary next to it.
        if dir.file_name().is_some_and(|n| n == "release") {
            cmd.arg("--release");
        }
        let status = cmd.status().expect("cargo build sluice-control");
        assert!(status.success(), "building sluice-control failed");
        dir.join("sluice-control")
    })
    .clone()
}

pub struct Control {
    child: Option<Child>,
    pub port: u16,
    pub dir: PathBuf,
    settings: PathBuf,
    log: PathBuf,
    env: Vec<(String, String)>,
}

impl Control {
    /// Settings for `source` (a `config:` section) plus `extra` YAML,
    /// database and logs under `dir`.
    pub async fn start(dir: &Path, source: &str, extra: &str, env: &[(&str, &str)]) -> Control {
        let database = format!("database: \"{}\"", dir.join("control.db").display());
        Self::start_on(dir, &database, source, extra, env).await
    }

    /// As [`Control::start`], on the store `database` names (a
    /// `database:` line).
    pub async fn start_on(
        dir: &Path,
        database: &str,
        source: &str,
        extra: &str,
        env: &[(&str, &str)],
    ) -> Control {
        let port = super::free_port();
        let mut users = String::from("users:\n");
        for (name, tok, subject, roles, tenants) in USERS {
            users.push_str(&format!(
                "  - {{ name: {name}, token_sha256: \"{}\", subject: {subject}, roles: {roles:?}, tenants: {tenants:?} }}\n",
                sluice_gateway::identity::hash_key(tok)
            ));
        }
        let settings = dir.join("control.yaml");
        std::fs::write(
            &settings,
            format!(
                "listen: \"127.0.0.1:{port}\"\n{database}\ngateway_token: {{ env: SLUICE_GATEWAY_TOKEN }}\n{source}\n{users}{extra}\n"
            ),
        )
        .expect("control settings");
        let mut c = Control {
            child: None,
            port,
            dir: dir.to_path_buf(),
            settings,
            log: dir.join("control.log"),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        c.spawn().await;
        c
    }

    async fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("control log");
        let child = Command::new(control_bin())
            .arg("--config")
            .arg(&self.settings)
            .env("SLUICE_GATEWAY_TOKEN", GATEWAY_TOKEN)
            .env("RUST_LOG", "info")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn sluice-control");
        self.child = Some(child);
        let client = reqwest::Client::new();
        let url = self.url("/healthz");
        let log = self.log.clone();
        let child = &mut self.child;
        super::eventually("control to answer /healthz", async || {
            if let Some(Ok(Some(status))) = child.as_mut().map(|c| c.try_wait()) {
                panic!(
                    "control exited with {status}\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            super::answers_ok(&client, &url).await
        })
        .await;
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// `sluice-control audit verify` on this control's store (`args` more):
    /// whether the chains are whole, and what it printed.
    pub fn audit_verify(&self, args: &[&str]) -> (bool, String) {
        let out = Command::new(control_bin())
            .arg("--config")
            .arg(&self.settings)
            .args(["audit", "verify"])
            .args(args)
            .env("SLUICE_GATEWAY_TOKEN", GATEWAY_TOKEN)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .output()
            .expect("sluice-control audit verify");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.code().is_some_and(|c| c < 2), "{text}{err}");
        (out.status.success(), text)
    }

    /// Kill and start again on the same port, settings and database.
    pub async fn restart(&mut self) {
        self.stop();
        self.spawn().await;
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// A JSON API call with a bearer token; (status, body).
    pub async fn api(
        &self,
        method: &str,
        path: &str,
        token: &str,
        body: Option<serde_json::Value>,
    ) -> (u16, serde_json::Value) {
        let client = reqwest::Client::new();
        let mut req = client
            .request(method.parse().expect("method"), self.url(path))
            .bearer_auth(token);
        if let Some(b) = body {
            req = req
                .header("content-type", "application/json")
                .body(b.to_string());
        }
        let resp = req.send().await.expect("control answers");
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        (
            status,
            serde_json::from_str(&text).unwrap_or(serde_json::Value::Null),
        )
    }

    /// Decide as `user` through the API.
    pub async fn decide(
        &self,
        id: &str,
        user: &str,
        decision: &str,
        reason: &str,
    ) -> (u16, serde_json::Value) {
        self.api(
            "POST",
            &format!("/v1/approvals/{id}/decision"),
            token(user),
            Some(serde_json::json!({ "decision": decision, "reason": reason })),
        )
        .await
    }

    pub async fn approval(&self, id: &str) -> serde_json::Value {
        self.api("GET", &format!("/v1/approvals/{id}"), token("carol"), None)
            .await
            .1
    }
}

impl Drop for Control {
    fn drop(&mut self) {
        self.stop();
    }
}
