//! Shared rate limits across replicas through a real `redis-server`: two
//! gateways enforce one global limit; when Redis goes away each falls back
//! as configured (local limiting, or refusing), says so in a metric, and
//! recovers on its own when Redis is back.

mod support;

use std::process::{Child, Command, Stdio};

use support::*;

struct Redis {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Redis {
    async fn start(port: u16) -> Redis {
        let dir = tempfile::tempdir().expect("temp dir");
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server (Debian package redis-server; .ci/setup installs it)");
        eventually("redis accepts connections", async || {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
        })
        .await;
        Redis {
            child,
            port,
            _dir: dir,
        }
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}

fn config(upstream: &str, redis_port: u16, on_unavailable: &str) -> String {
    format!(
        "{}rate_limits:\n  shared_store: {{ redis_url: \"redis://127.0.0.1:{redis_port}\", on_unavailable: {on_unavailable}, timeout_ms: 200 }}\n  \
         rules:\n    - {{ name: global-calls, match: {{ methods: [tools/call] }}, rate: 1/h, burst: 4, shared: true }}\n",
        one_route(upstream)
    )
}

const CALL: &str =
    r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"echo","arguments":{}}}"#;

async fn status(client: &reqwest::Client, gw: &Gateway) -> u16 {
    post(client, &gw.url("/mcp"), CALL, &[]).await.0
}

async fn store_up(gw: &Gateway) {
    eventually("the gateway reaches redis", async || {
        gw.metric("sluice_limit_store_up").await == 1.0
    })
    .await;
}

#[tokio::test]
async fn replicas_share_one_limit_and_fall_back_while_redis_is_away() {
    let (rec_addr, rec) = recording_upstream().await;
    let upstream = format!("http://{rec_addr}/mcp");
    let mut redis = Redis::start(free_port()).await;
    let a = Gateway::start(&config(&upstream, redis.port, "local")).await;
    let b = Gateway::start(&config(&upstream, redis.port, "closed")).await;
    store_up(&a).await;
    store_up(&b).await;
    let client = reqwest::Client::new();

    // Four calls in all, alternating replicas, then both refuse.
    let mut allowed = 0;
    for i in 0..10 {
        let gw = if i % 2 == 0 { &a } else { &b };
        let s = status(&client, gw).await;
        assert!(s == 200 || s == 429, "{s}");
        allowed += u32::from(s == 200);
    }
    assert_eq!(allowed, 4, "one global burst across both replicas");
    assert_eq!(rec.calls.load(std::sync::atomic::Ordering::SeqCst), 4);
    let (s, headers, body) = post(&client, &a.url("/mcp"), CALL, &[]).await;
    assert_eq!(s, 429);
    assert!(headers.contains_key("retry-after"));
    assert_eq!(rpc_json(&body)["id"], 3);

    // Redis goes away: `local` limits per replica (a fresh local bucket),
    // `closed` refuses; both say so.
    redis.stop();
    let mut local_ok = 0;
    for _ in 0..6 {
        local_ok += u32::from(status(&client, &a).await == 200);
    }
    assert_eq!(local_ok, 4, "the local fallback applies the same quota");
    let (s, _, body) = post(&client, &b.url("/mcp"), CALL, &[]).await;
    assert_eq!(s, 503, "{body}");
    assert_eq!(
        rpc_json(&body)["error"]["data"]["reason"],
        "limit_store_down"
    );
    assert_eq!(a.metric("sluice_limit_store_up").await, 0.0);
    assert!(
        a.metric("sluice_limit_store_fallbacks_total{mode=\"local\"}")
            .await
            >= 1.0
    );
    assert!(
        b.metric("sluice_limit_store_fallbacks_total{mode=\"closed\"}")
            .await
            >= 1.0
    );

    // Redis is back (empty): both recover without a restart.
    let _redis = Redis::start(redis.port).await;
    store_up(&a).await;
    store_up(&b).await;
    assert_eq!(status(&client, &b).await, 200, "the shared bucket is fresh");
    assert!(a.log().contains("rate-limit store reachable"));
}
