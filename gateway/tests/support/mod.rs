//! The whole-gateway test harness: starts the real `sluice-gateway` binary
//! on free loopback ports with a config written to a temp dir, waits on its
//! readiness endpoint (never on a fixed sleep), and stops it on drop. Also
//! small raw-HTTP helpers for what a full MCP client would hide.
#![allow(dead_code)]

use std::io::Read;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub use sluice_demo::{DemoOptions, DemoServer};

pub mod control;
pub mod fault;
pub mod oauth_server;
pub mod peers;
pub mod postgres_server;
pub mod redis_server;
#[allow(unused_imports)]
pub use fault::{fault_upstream, Fault, Mode};

pub struct Gateway {
    child: Child,
    pub port: u16,
    pub admin: u16,
    pub config: PathBuf,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

/// The workspace root.
pub fn workspace() -> PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Where `.ci/setup` installed the peers (`SLUICE_PEERS` overrides).
pub fn peers() -> PathBuf {
    std::env::var_os("SLUICE_PEERS")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join(".peers"))
}

/// The suite's own peer helpers (gateway/tests/peers): scripts that drive
/// real SDKs and servers.
pub fn test_peer(name: &str) -> PathBuf {
    need(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/peers")
            .join(name),
    )
}

/// `path`, which the peers setup must have installed.
pub fn need(path: PathBuf) -> PathBuf {
    assert!(
        path.exists(),
        "{} is missing: run `bash .ci/setup` first",
        path.display()
    );
    path
}

/// A port that was free a moment ago. Pingora binds by address, so the
/// harness picks ports for it; the tiny race is retried by `start`.
/// A loopback port nothing listens on, for as long as the returned socket
/// lives: bound without listening, so no other test (or server) can take
/// it meanwhile, and a connect to it is refused. A port that was merely free
/// when chosen may be taken by a server of a test running alongside.
pub fn closed_port() -> (tokio::net::TcpSocket, u16) {
    let s = tokio::net::TcpSocket::new_v4().expect("socket");
    s.bind("127.0.0.1:0".parse().expect("addr")).expect("bind");
    let port = s.local_addr().expect("addr").port();
    (s, port)
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Fill `{listen}` and `{admin}` in a config template.
fn render(template: &str, port: u16, admin: u16) -> String {
    template
        .replace("{listen}", &format!("127.0.0.1:{port}"))
        .replace("{admin}", &format!("127.0.0.1:{admin}"))
}

impl Gateway {
    /// Start a gateway on `template` (with `{listen}`/`{admin}` placeholders).
    pub async fn start(template: &str) -> Gateway {
        Self::start_with_env(template, &[]).await
    }

    /// Like `start`, with extra environment variables (secret references).
    pub async fn start_with_env(template: &str, env: &[(&str, &str)]) -> Gateway {
        for attempt in 0..3 {
            let port = free_port();
            let admin = free_port();
            let dir = tempfile::tempdir().expect("temp dir");
            let config = dir.path().join("sluice.yaml");
            std::fs::write(&config, render(template, port, admin)).expect("write config");
            let mut gw = Self::spawn(dir, config, port, admin, &[], env);
            match gw.wait_ready().await {
                Ok(()) => return gw,
                Err(e) if attempt < 2 => eprintln!("gateway start failed ({e}); retrying"),
                Err(e) => panic!("gateway did not become ready: {e}\n{}", gw.log()),
            }
        }
        unreachable!("the loop returns or panics")
    }

    /// Start with these flags instead of `--config`, on ports the caller
    /// chose (its config, wherever it comes from, names them).
    pub async fn start_args(port: u16, admin: u16, args: &[&str], env: &[(&str, &str)]) -> Gateway {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = dir.path().join("unused.yaml");
        let mut gw = Self::spawn(dir, config, port, admin, args, env);
        if let Err(e) = gw.wait_ready().await {
            panic!("gateway did not become ready: {e}\n{}", gw.log());
        }
        gw
    }

    /// Start in zero-config sidecar mode in front of `upstream`.
    pub async fn sidecar(upstream: &str) -> Gateway {
        let port = free_port();
        let admin = free_port();
        let dir = tempfile::tempdir().expect("temp dir");
        let config = dir.path().join("unused.yaml");
        let listen = format!("127.0.0.1:{port}");
        let admin_addr = format!("127.0.0.1:{admin}");
        let mut gw = Self::spawn(
            dir,
            config,
            port,
            admin,
            &[
                "--upstream",
                upstream,
                "--listen",
                &listen,
                "--admin",
                &admin_addr,
            ],
            &[],
        );
        if let Err(e) = gw.wait_ready().await {
            panic!("sidecar did not become ready: {e}\n{}", gw.log());
        }
        gw
    }

    fn spawn(
        dir: tempfile::TempDir,
        config: PathBuf,
        port: u16,
        admin: u16,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Gateway {
        let log = dir.path().join("gateway.log");
        let log_file = std::fs::File::create(&log).expect("log file");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_sluice-gateway"));
        if args.is_empty() {
            cmd.arg("--config").arg(&config);
        } else {
            cmd.args(args);
        }
        cmd.envs(env.iter().copied());
        let child = cmd
            .args(["--threads", "2"])
            .env("RUST_LOG", "info,sluice_gateway=debug")
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .expect("spawn sluice-gateway");
        Gateway {
            child,
            port,
            admin,
            config,
            log,
            _dir: dir,
        }
    }

    async fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        let client = reqwest::Client::new();
        let url = format!("http://127.0.0.1:{}/readyz", self.admin);
        let mut backoff = Duration::from_millis(5);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("exited with {status}"));
            }
            if let Ok(r) = client.get(&url).send().await {
                if r.status().is_success() {
                    // The proxy listener comes up with the admin one; make sure.
                    if tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                        .await
                        .is_ok()
                    {
                        return Ok(());
                    }
                }
            }
            if Instant::now() > deadline {
                return Err("timed out".into());
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_millis(100));
        }
    }

    /// Start a new process on the same config and ports with `--upgrade`,
    /// and hand it this one's listeners (SIGQUIT): Pingora's graceful
    /// upgrade. This process keeps serving what it has in flight.
    pub async fn upgrade(&mut self) -> Gateway {
        let log = self._dir.path().join("gateway-upgraded.log");
        let log_file = std::fs::File::create(&log).expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_sluice-gateway"))
            .arg("--config")
            .arg(&self.config)
            .args(["--upgrade", "--threads", "2"])
            .env("RUST_LOG", "info,sluice_gateway=debug")
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .expect("spawn sluice-gateway --upgrade");
        let dir = tempfile::tempdir().expect("temp dir");
        let next = Gateway {
            child,
            port: self.port,
            admin: self.admin,
            config: self.config.clone(),
            log,
            _dir: dir,
        };
        // The new process waits on the upgrade socket; hand over once it is there.
        let sock = std::fs::read_to_string(&self.config)
            .ok()
            .and_then(|c| {
                c.lines().find_map(|l| {
                    l.split("upgrade_sock: \"")
                        .nth(1)
                        .map(|r| r.split('"').next().unwrap_or("").to_owned())
                })
            })
            .expect("the config names an upgrade_sock");
        eventually("the new process listens for the hand-over", async || {
            std::path::Path::new(&sock).exists()
        })
        .await;
        self.signal("QUIT");
        next
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.port, path)
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.admin, path)
    }

    pub async fn metrics(&self) -> String {
        reqwest::get(self.admin_url("/metrics"))
            .await
            .expect("metrics")
            .text()
            .await
            .expect("metrics text")
    }

    /// The value of one metric line (exact name with labels), or 0.
    pub async fn metric(&self, series: &str) -> f64 {
        metric_value(&self.metrics().await, series)
    }

    pub async fn generation(&self) -> u64 {
        let v: serde_json::Value = reqwest::get(self.admin_url("/version"))
            .await
            .expect("version")
            .json()
            .await
            .expect("version json");
        v["generation"].as_u64().expect("generation")
    }

    /// Replace the config file (rendered like the first one).
    pub fn write_config(&self, template: &str) {
        let tmp = self.config.with_extension("tmp");
        std::fs::write(&tmp, render(template, self.port, self.admin)).expect("write config");
        std::fs::rename(&tmp, &self.config).expect("swap config");
    }

    pub fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .args([&format!("-{sig}"), &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Wait for the process to exit by itself; its exit status.
    pub async fn wait_exit(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + within;
        loop {
            if let Ok(Some(s)) = self.child.try_wait() {
                return Some(s);
            }
            if Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn log(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = std::fs::File::open(&self.log) {
            let _ = f.read_to_string(&mut s);
        }
        s
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Wait until `cond` holds, polling with a growing pause; panics naming
/// `what` after 30 s. The one place tests wait on a condition.
/// `GET url` answered with a 2xx (readiness probes).
pub async fn answers_ok(client: &reqwest::Client, url: &str) -> bool {
    client
        .get(url)
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
}

pub async fn eventually(what: &str, cond: impl AsyncFnMut() -> bool) {
    eventually_for(what, 30, cond).await
}

/// `eventually` with a longer cap, for peers that start slowly (LiteLLM).
pub async fn eventually_for(what: &str, cap_s: u64, mut cond: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(cap_s);
    let mut pause = Duration::from_millis(5);
    while !cond().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(100));
    }
}

/// Serve `router` on a fresh port of 127.0.0.1, for as long as the test
/// runs; its address.
pub async fn serve_router(router: axum::Router) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    addr
}

pub fn metric_value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| {
            l.strip_prefix(series)
                .and_then(|rest| rest.strip_prefix(' '))
        })
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

/// A demo MCP server on a free port.
pub async fn demo(opts: DemoOptions) -> DemoServer {
    sluice_demo::spawn("127.0.0.1:0".parse().expect("addr"), opts)
        .await
        .expect("demo server")
}

/// One route `/mcp` to `upstream_url`, plus anything in `extra` (YAML lines
/// appended under `routes:` are not supported; pass whole sections).
pub fn one_route(upstream_url: &str) -> String {
    format!(
        "listeners:\n  - {{ name: main, address: \"{{listen}}\" }}\nadmin: {{ address: \"{{admin}}\" }}\n\
         limits: {{ max_body_bytes: 2097152, max_json_depth: 32 }}\n\
         upstreams:\n  - {{ name: demo, url: \"{upstream_url}\" }}\n\
         routes:\n  - {{ name: demo, path: /mcp, upstream: demo }}\n"
    )
}

/// Send `request` as raw bytes and read until the gateway closes (or 5 s):
/// for what a full HTTP client would correct or refuse to send.
pub async fn raw_http(port: u16, request: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    s.write_all(request.as_bytes()).await.expect("write");
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

pub const ACCEPT_BOTH: &str = "application/json, text/event-stream";

/// A raw JSON-RPC POST; returns status, headers and body text.
pub async fn post(
    client: &reqwest::Client,
    url: &str,
    body: impl Into<reqwest::Body>,
    headers: &[(&str, &str)],
) -> (u16, reqwest::header::HeaderMap, String) {
    let mut req = client
        .post(url)
        .header("content-type", "application/json")
        .header("accept", ACCEPT_BOTH)
        .body(body);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.expect("response");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let text = resp.text().await.expect("body");
    (status, headers, text)
}

/// The JSON of a response body that is either JSON or an SSE stream whose
/// last `data:` line carries the response.
pub fn rpc_json(body: &str) -> serde_json::Value {
    let text = if body.trim_start().starts_with('{') {
        body.to_owned()
    } else {
        body.lines()
            .rev()
            .filter_map(|l| l.strip_prefix("data:"))
            .map(str::trim)
            .find(|d| d.starts_with('{'))
            .unwrap_or("null")
            .to_owned()
    };
    serde_json::from_str(&text).unwrap_or(serde_json::Value::Null)
}

/// Initialize a 2025 session through `url`; returns the session id.
pub async fn initialize(client: &reqwest::Client, url: &str) -> String {
    initialize_with(client, url, &[], "2025-06-18", "{}").await
}

/// `initialize` with extra headers (credentials), a protocol revision and
/// the client's `capabilities` JSON.
pub async fn initialize_with(
    client: &reqwest::Client,
    url: &str,
    headers: &[(&str, &str)],
    revision: &str,
    capabilities: &str,
) -> String {
    let init = format!(
        r#"{{"jsonrpc":"2.0","id":0,"method":"initialize","params":{{"protocolVersion":"{revision}","capabilities":{capabilities},"clientInfo":{{"name":"t","version":"1"}}}}}}"#
    );
    let (status, resp_headers, body) = post(client, url, init, headers).await;
    assert_eq!(status, 200, "initialize: {body}");
    let sid = resp_headers
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .expect("session id")
        .to_owned();
    let mut h = headers.to_vec();
    h.push(("mcp-session-id", &sid));
    h.push(("mcp-protocol-version", "2025-06-18"));
    let (s, _, _) = post(
        client,
        url,
        r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
        &h,
    )
    .await;
    assert_eq!(s, 202);
    sid
}

/// An upstream that records the headers of every request reaching it and
/// answers each with a JSON-RPC result: proof of what an upstream saw, and
/// that a refused request went nowhere.
#[derive(Clone, Default)]
pub struct Recorder {
    pub calls: std::sync::Arc<std::sync::atomic::AtomicU64>,
    pub seen: std::sync::Arc<std::sync::Mutex<Vec<http::HeaderMap>>>,
}

pub async fn recording_upstream() -> (std::net::SocketAddr, Recorder) {
    let rec = Recorder::default();
    let r = rec.clone();
    let handler = move |headers: http::HeaderMap, body: axum::body::Bytes| {
        let r = r.clone();
        async move {
            r.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            r.seen.lock().expect("lock").push(headers);
            let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            let reply = serde_json::json!({"jsonrpc":"2.0","id":v["id"],"result":{"content":[{"type":"text","text":"recorded"}]}});
            (
                [(http::header::CONTENT_TYPE, "application/json")],
                reply.to_string(),
            )
        }
    };
    let router = axum::Router::new().route("/mcp", axum::routing::post(handler));
    let addr = serve_router(router).await;
    (addr, rec)
}

/// The start of a model-route config: listeners, tenant `acme`, and
/// `alice-key` for alice (of acme) with a role `dev` allowed `allow`.
pub fn llm_config_head(allow: &str) -> String {
    format!(
        r#"listeners:
  - {{ name: main, address: "{{listen}}" }}
admin: {{ address: "{{admin}}" }}
tenants: [acme]
identity:
  audience: "sluice-test"
  api_keys:
    - {{ id: alice, sha256: "{alice}", subject: alice, tenants: [acme], roles: [dev] }}
roles:
  - {{ name: dev, allow: ["{allow}"] }}
"#,
        alice = sluice_gateway::identity::hash_key("alice-key"),
    )
}

/// The head of a gateway config — the listener and admin (their `{listen}`
/// and `{admin}` placeholders) — and an `identity` whose API key for each
/// `(id, role)` is `<id>-key`, with subject `<id>`.
pub fn keyed_head(keys: &[(&str, &str)]) -> String {
    let mut head = String::from(
        "listeners:\n  - { name: main, address: \"{listen}\" }\nadmin: { address: \"{admin}\" }\n\
         identity:\n  audience: \"sluice-test\"\n  api_keys:\n",
    );
    for (id, role) in keys {
        let sha = sluice_gateway::identity::hash_key(&format!("{id}-key"));
        head.push_str(&format!(
            "    - {{ id: {id}, sha256: \"{sha}\", subject: {id}, roles: [{role}] }}\n"
        ));
    }
    head
}

/// A stateless (2026-07-28) request — the revision's `_meta` keys added to
/// any in `params`, the mirrored `Mcp-Method` and `Mcp-Name` headers set —
/// to `url`, as `key` when given; the JSON-RPC answer.
pub async fn stateless_rpc(
    url: &str,
    key: Option<&str>,
    (method, id, mut params): (&str, serde_json::Value, serde_json::Value),
) -> serde_json::Value {
    // The revision's own `_meta` keys, beside any the caller set.
    let mut meta = match params["_meta"].take() {
        serde_json::Value::Object(m) => m,
        _ => serde_json::Map::new(),
    };
    for (k, v) in [
        (
            "io.modelcontextprotocol/protocolVersion",
            serde_json::json!("2026-07-28"),
        ),
        (
            "io.modelcontextprotocol/clientInfo",
            serde_json::json!({"name": "t", "version": "0"}),
        ),
        (
            "io.modelcontextprotocol/clientCapabilities",
            serde_json::json!({}),
        ),
    ] {
        meta.insert(k.to_owned(), v);
    }
    params["_meta"] = serde_json::Value::Object(meta);
    let body = serde_json::json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
    let mut headers = vec![
        ("mcp-protocol-version", "2026-07-28".to_owned()),
        ("mcp-method", method.to_owned()),
    ];
    if let Some(name) = params.get("name").and_then(serde_json::Value::as_str) {
        headers.push(("mcp-name", name.to_owned()));
    }
    if let Some(k) = key {
        headers.push(("authorization", format!("Bearer {k}")));
    }
    let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    // A refusal's HTTP status varies (503 for approvals without control):
    // the answer is the JSON-RPC message either way.
    let (_, _, text) = post(&reqwest::Client::new(), url, body.to_string(), &headers).await;
    rpc_json(&text)
}

/// A certificate authority of the test's own, to sign certificates with.
pub fn test_ca() -> rcgen::CertifiedIssuer<'static, rcgen::KeyPair> {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    rcgen::CertifiedIssuer::self_signed(params, rcgen::KeyPair::generate().expect("key"))
        .expect("ca")
}
