//! Edge readiness: TLS listeners (with HTTP/2 by ALPN) whose certificate
//! reloads on SIGHUP, h2c on plain listeners, and `https` upstreams with
//! certificate verification (over HTTP/2 when `http2: true`), resolved by
//! name off the proxy threads.

mod support;

use std::path::Path;

use support::*;

fn self_signed(dir: &Path, name: &str) -> String {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".into()]).expect("cert");
    let pem = ck.cert.pem();
    std::fs::write(dir.join(format!("{name}.pem")), &pem).expect("write cert");
    std::fs::write(
        dir.join(format!("{name}.key")),
        ck.signing_key.serialize_pem(),
    )
    .expect("write key");
    pem
}

const STATELESS_CALL: &str = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"get-sum","arguments":{"a":40,"b":2},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}"#;

async fn call(
    client: &reqwest::Client,
    url: &str,
) -> Result<(reqwest::Version, u16, String), String> {
    let resp = client
        .post(url)
        .header("content-type", "application/json")
        .header("accept", ACCEPT_BOTH)
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "tools/call")
        .header("mcp-name", "get-sum")
        .body(STATELESS_CALL)
        .send()
        .await
        .map_err(|e| format!("{e:?}"))?;
    let version = resp.version();
    let status = resp.status().as_u16();
    Ok((
        version,
        status,
        resp.text().await.map_err(|e| e.to_string())?,
    ))
}

fn client_trusting(pem: &str, port: u16) -> reqwest::Client {
    reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(pem.as_bytes()).expect("pem")])
        .resolve("localhost", ([127, 0, 0, 1], port).into())
        .build()
        .expect("client")
}

/// A gateway with a TLS listener (self-signed for `localhost`, in `dir`)
/// in front of the demo server.
struct TlsEdge {
    _demo: DemoServer,
    dir: tempfile::TempDir,
    pem: String,
    edge: Gateway,
}

async fn tls_edge(limits: &str) -> TlsEdge {
    let demo = demo(DemoOptions {
        json_response: true,
        ..Default::default()
    })
    .await;
    let dir = tempfile::tempdir().expect("dir");
    let pem = self_signed(dir.path(), "listener");
    let cert = dir.path().join("listener.pem");
    let key = dir.path().join("listener.key");
    let yaml = format!(
        "listeners:\n  - {{ name: main, address: \"{{listen}}\", tls: {{ cert_file: {cert:?}, key_file: {key:?} }} }}\n\
         admin: {{ address: \"{{admin}}\" }}\nlimits: {{ {limits} }}\n\
         upstreams:\n  - {{ name: demo, url: \"{}\" }}\n\
         routes:\n  - {{ name: demo, path: /mcp, upstream: demo }}\n",
        demo.url()
    );
    let edge = Gateway::start(&yaml).await;
    TlsEdge {
        _demo: demo,
        dir,
        pem,
        edge,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_listener_h2_cert_reload_and_verified_https_upstream() {
    // Every part bound: the demo server and the directory live as long.
    let TlsEdge {
        _demo,
        dir,
        pem: first_pem,
        edge,
    } = tls_edge("").await;
    let url = format!("https://localhost:{}/mcp", edge.port);

    let (version, status, body) = call(&client_trusting(&first_pem, edge.port), &url)
        .await
        .expect("tls call");
    assert_eq!((version, status), (reqwest::Version::HTTP_2, 200), "{body}");
    assert_eq!(
        rpc_json(&body)["result"]["content"][0]["text"].as_str(),
        Some("42")
    );

    // A second gateway in front of the first, over verified TLS to `localhost`.
    let ca = dir.path().join("listener.pem");
    let inner = format!(
        "listeners:\n  - {{ name: main, address: \"{{listen}}\" }}\nadmin: {{ address: \"{{admin}}\" }}\n\
         upstreams:\n  - {{ name: edge, url: \"https://localhost:{}/mcp\", tls: {{ ca_file: {ca:?} }} }}\n\
         routes:\n  - {{ name: edge, path: /mcp, upstream: edge }}\n",
        edge.port
    );
    let chained = Gateway::start(&inner).await;
    let plain = reqwest::Client::new();
    let (_, status, body) = call(&plain, &chained.url("/mcp"))
        .await
        .expect("chained call");
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        rpc_json(&body)["result"]["content"][0]["text"].as_str(),
        Some("42")
    );

    // Without the CA the upstream's certificate is refused: a 502, never plaintext.
    let untrusting = format!(
        "listeners:\n  - {{ name: main, address: \"{{listen}}\" }}\nadmin: {{ address: \"{{admin}}\" }}\n\
         upstreams:\n  - {{ name: edge, url: \"https://localhost:{}/mcp\" }}\n\
         routes:\n  - {{ name: edge, path: /mcp, upstream: edge }}\n",
        edge.port
    );
    let refusing = Gateway::start(&untrusting).await;
    let (_, status, body) = call(&plain, &refusing.url("/mcp")).await.expect("answer");
    assert_eq!(status, 502, "{body}");
    assert_eq!(rpc_json(&body)["error"]["code"].as_i64(), Some(-32603));

    // Rotate the certificate: SIGHUP re-reads it; new handshakes get the new one.
    let second_pem = self_signed(dir.path(), "listener");
    edge.signal("HUP");
    let fresh = client_trusting(&second_pem, edge.port);
    eventually("the new certificate to be served", async || {
        matches!(call(&fresh, &url).await, Ok((_, 200, _)))
    })
    .await;
    assert!(
        call(&client_trusting(&first_pem, edge.port), &url)
            .await
            .is_err(),
        "old certificate retired"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_heads_are_read_under_the_same_deadline_and_http1_keeps_alive() {
    use std::sync::Arc;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_rustls::rustls;

    let TlsEdge {
        _demo,
        dir: _dir,
        pem,
        edge,
    } = tls_edge("head_timeout_ms: 500").await;
    let url = format!("https://localhost:{}/mcp", edge.port);

    // HTTP/1.1 over TLS: two calls on one kept-alive connection, each read
    // by the intake and replayed to Pingora.
    let h1 = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(pem.as_bytes()).expect("pem")])
        .resolve("localhost", ([127, 0, 0, 1], edge.port).into())
        .http1_only()
        .pool_max_idle_per_host(1)
        .build()
        .expect("client");
    for _ in 0..2 {
        let (version, status, body) = call(&h1, &url).await.expect("tls call");
        assert_eq!(
            (version, status),
            (reqwest::Version::HTTP_11, 200),
            "{body}"
        );
        assert_eq!(
            rpc_json(&body)["result"]["content"][0]["text"].as_str(),
            Some("42")
        );
    }

    // A head trickled over TLS, a byte every 100 ms: cut at the deadline.
    let mut roots = rustls::RootCertStore::empty();
    let der = rustls_pemfile::certs(&mut pem.as_bytes())
        .next()
        .expect("a certificate")
        .expect("pem");
    roots.add(der).expect("root");
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocols")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", edge.port))
        .await
        .expect("connect");
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    let tls = connector.connect(name, tcp).await.expect("handshake");
    let (mut r, mut w) = tokio::io::split(tls);
    w.write_all(b"POST /mcp HTTP/1.1\r\n").await.expect("line");
    let writer = tokio::spawn(async move {
        for _ in 0..150 {
            if w.write_all(b"x").await.is_err() || w.flush().await.is_err() {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    });
    let mut out = Vec::new();
    let closed =
        tokio::time::timeout(std::time::Duration::from_secs(15), r.read_to_end(&mut out)).await;
    writer.abort();
    assert!(
        closed.is_ok(),
        "a trickling TLS head was still open after 15 s"
    );
    let out = String::from_utf8_lossy(&out);
    assert!(out.starts_with("HTTP/1.1 408"), "{out}");
    assert_eq!(
        edge.metric("sluice_client_connections_closed_total{reason=\"head_timeout\"}")
            .await,
        1.0
    );
}

/// Requests the gateway logged as heard in `version` (its debug request line).
fn heard_as(gw: &Gateway, version: &str) -> usize {
    gw.log()
        .lines()
        .filter(|l| l.contains("version") && l.contains(version))
        .count()
}

/// A gateway on TLS (HTTP/2 by ALPN) in front of the demo (JSON answers),
/// to be another gateway's upstream: it, its certificate file (the CA to
/// trust), and the demo.
async fn edge(dir: &Path) -> (Gateway, std::path::PathBuf, DemoServer) {
    let demo = demo(DemoOptions {
        json_response: true,
        ..Default::default()
    })
    .await;
    self_signed(dir, "edge");
    let (cert, key) = (dir.join("edge.pem"), dir.join("edge.key"));
    let edge = Gateway::start(&format!(
        "listeners:\n  - {{ name: main, address: \"{{listen}}\", tls: {{ cert_file: {cert:?}, key_file: {key:?} }} }}\n\
         admin: {{ address: \"{{admin}}\" }}\n\
         upstreams:\n  - {{ name: demo, url: \"{}\" }}\n\
         routes:\n  - {{ name: demo, path: /mcp, upstream: demo }}\n",
        demo.url()
    ))
    .await;
    (edge, cert, demo)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_upstream_carries_calls_and_large_bodies_over_h2() {
    // The edge gateway (TLS, HTTP/2 by ALPN) is the upstream of a second
    // gateway; with `http2: true` the second one speaks HTTP/2 to it, on
    // Pingora's loop for small bodies and Pingora's client session for
    // bodies over the replay buffer. The edge logs what version it heard.
    let dir = tempfile::tempdir().expect("dir");
    let (edge, cert, _demo) = edge(dir.path()).await;
    let data: String = (0..70_000)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    let big = serde_json::json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
        "params": {"name": "big-echo", "arguments": {"data": data},
                   "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28"}}})
    .to_string();
    let plain = reqwest::Client::new();
    for (http2, heard) in [(true, "HTTP/2.0"), (false, "HTTP/1.1")] {
        let front = Gateway::start(&format!(
            "listeners:\n  - {{ name: main, address: \"{{listen}}\" }}\nadmin: {{ address: \"{{admin}}\" }}\n\
             upstreams:\n  - {{ name: edge, url: \"https://localhost:{}/mcp\", http2: {http2}, tls: {{ ca_file: {cert:?} }} }}\n\
             routes:\n  - {{ name: edge, path: /mcp, upstream: edge }}\n",
            edge.port
        ))
        .await;
        let before = heard_as(&edge, heard);
        let (_, status, body) = call(&plain, &front.url("/mcp")).await.expect("call");
        assert_eq!(status, 200, "{body}");
        assert_eq!(
            rpc_json(&body)["result"]["content"][0]["text"].as_str(),
            Some("42")
        );
        let resp = plain
            .post(front.url("/mcp"))
            .header("content-type", "application/json")
            .header("accept", ACCEPT_BOTH)
            .header("mcp-protocol-version", "2026-07-28")
            .header("mcp-method", "tools/call")
            .header("mcp-name", "big-echo")
            .body(big.clone())
            .send()
            .await
            .expect("big call");
        assert_eq!(resp.status(), 200, "http2: {http2}");
        let text =
            rpc_json(&resp.text().await.expect("body"))["result"]["content"][0]["text"].to_string();
        assert!(text.contains("len=70000 "), "{text}");
        eventually("the edge to log both calls", async || {
            heard_as(&edge, heard) >= before + 2
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_call_streams_from_an_http2_upstream() {
    // The same chain for a model route: the second gateway's model exchange
    // runs on Pingora's client session, HTTP/2 to the edge.
    let provider = sluice_demo::llm::spawn_llm(
        "127.0.0.1:0".parse().expect("addr"),
        sluice_demo::llm::LlmOptions::default(),
    )
    .await
    .expect("mock provider");
    let dir = tempfile::tempdir().expect("dir");
    self_signed(dir.path(), "edge");
    let (cert, key) = (dir.path().join("edge.pem"), dir.path().join("edge.key"));
    let models = "llm:\n  models:\n    - { name: mock-gpt, targets: [{ upstream: up }] }\n";
    let edge = Gateway::start(&format!(
        "listeners:\n  - {{ name: main, address: \"{{listen}}\", tls: {{ cert_file: {cert:?}, key_file: {key:?} }} }}\n\
         admin: {{ address: \"{{admin}}\" }}\n\
         upstreams:\n  - {{ name: up, url: \"{}\" }}\n\
         routes:\n  - {{ name: llm, path: /v1, upstream: up, transport: llm }}\n{models}",
        provider.url()
    ))
    .await;
    let front = Gateway::start(&format!(
        "listeners:\n  - {{ name: main, address: \"{{listen}}\" }}\nadmin: {{ address: \"{{admin}}\" }}\n\
         upstreams:\n  - {{ name: up, url: \"https://localhost:{}/v1\", http2: true, tls: {{ ca_file: {cert:?} }} }}\n\
         routes:\n  - {{ name: llm, path: /v1, upstream: up, transport: llm }}\n{models}",
        edge.port
    ))
    .await;
    let resp = reqwest::Client::new()
        .post(front.url("/v1/chat/completions"))
        .json(&serde_json::json!({"model": "mock-gpt", "stream": true,
            "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .expect("response");
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.expect("stream");
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
    eventually("the edge to log the call as HTTP/2", async || {
        heard_as(&edge, "HTTP/2.0") >= 1
    })
    .await;
    // The usage chunk the front gateway asked for was read (and cut out).
    assert!(!text.contains("\"usage\":{"), "{text}");
    assert!(
        front
            .metric("sluice_gen_ai_client_token_usage_sum{gen_ai_operation_name=\"chat\",gen_ai_request_model=\"mock-gpt\",gen_ai_token_type=\"output\"}")
            .await
            >= 1.0,
        "usage is accounted on the HTTP/2 path"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_on_plain_listeners() {
    let demo = demo(DemoOptions {
        json_response: true,
        ..Default::default()
    })
    .await;
    let gw = Gateway::start(&one_route(&demo.url())).await;
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .expect("client");
    let (version, status, body) = call(&h2, &gw.url("/mcp")).await.expect("h2c call");
    assert_eq!((version, status), (reqwest::Version::HTTP_2, 200), "{body}");
    assert_eq!(
        rpc_json(&body)["result"]["content"][0]["text"].as_str(),
        Some("42")
    );
}

/// A CA and a client certificate it signed, written as PEM files.
fn client_ca_and_cert(dir: &Path) {
    let ca = test_ca();
    std::fs::write(dir.join("client-ca.pem"), ca.pem()).expect("write");
    let key = rcgen::KeyPair::generate().expect("key");
    let mut params = rcgen::CertificateParams::new(vec!["sluice-client".into()]).expect("params");
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let cert = params.signed_by(&key, &ca).expect("client cert");
    std::fs::write(dir.join("client.pem"), cert.pem()).expect("write");
    std::fs::write(dir.join("client.key"), key.serialize_pem()).expect("write");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mtls_toward_an_upstream_that_requires_client_certificates() {
    let demo = demo(DemoOptions {
        json_response: true,
        ..Default::default()
    })
    .await;
    let dir = tempfile::tempdir().expect("dir");
    self_signed(dir.path(), "server");
    client_ca_and_cert(dir.path());
    let p = |f: &str| dir.path().join(f);
    let edge = Gateway::start(&format!(
        "listeners:\n  - {{ name: main, address: \"{{listen}}\", tls: {{ cert_file: {:?}, key_file: {:?}, client_ca_file: {:?} }} }}\n\
         admin: {{ address: \"{{admin}}\" }}\n\
         upstreams:\n  - {{ name: demo, url: \"{}\" }}\n\
         routes:\n  - {{ name: demo, path: /mcp, upstream: demo }}\n",
        p("server.pem"), p("server.key"), p("client-ca.pem"), demo.url()
    ))
    .await;
    let front = |client_cert: bool| {
        let mtls = if client_cert {
            format!(
                ", client_cert_file: {:?}, client_key_file: {:?}",
                p("client.pem"),
                p("client.key")
            )
        } else {
            String::new()
        };
        format!(
            "listeners:\n  - {{ name: main, address: \"{{listen}}\" }}\nadmin: {{ address: \"{{admin}}\" }}\n\
             upstreams:\n  - {{ name: edge, url: \"https://localhost:{}/mcp\", tls: {{ ca_file: {:?}{mtls} }} }}\n\
             routes:\n  - {{ name: edge, path: /mcp, upstream: edge }}\n",
            edge.port,
            p("server.pem"),
        )
    };
    let plain = reqwest::Client::new();
    let with_cert = Gateway::start(&front(true)).await;
    let (_, status, body) = call(&plain, &with_cert.url("/mcp")).await.expect("answer");
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        rpc_json(&body)["result"]["content"][0]["text"].as_str(),
        Some("42")
    );
    let without = Gateway::start(&front(false)).await;
    let (_, status, body) = call(&plain, &without.url("/mcp")).await.expect("answer");
    assert_eq!(status, 502, "no client certificate, no call: {body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_virtual_servers_source_is_spoken_to_in_http2() {
    // A source marked `http2: true` (TLS, HTTP/2 by ALPN): spoken to in
    // HTTP/2 through Pingora's client, statelessly and in a 2025 session.
    // The edge gateway is the source and logs what version it heard.
    let dir = tempfile::tempdir().expect("dir");
    let (edge, cert, _demo) = edge(dir.path()).await;
    let front = Gateway::start(&format!(
        "listeners:\n  - {{ name: main, address: \"{{listen}}\" }}\nadmin: {{ address: \"{{admin}}\" }}\n\
         upstreams:\n  - {{ name: edge, url: \"https://localhost:{}/mcp\", http2: true, tls: {{ ca_file: {cert:?} }} }}\n\
         routes:\n  - {{ name: ws, path: /ws, server: ws }}\n\
         servers:\n  - {{ name: ws, sources: [{{ upstream: edge, prefix: \"\" }}] }}\n",
        edge.port
    ))
    .await;
    let plain = reqwest::Client::new();
    let (_, status, body) = call(&plain, &front.url("/ws")).await.expect("call");
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        rpc_json(&body)["result"]["content"][0]["text"].as_str(),
        Some("42"),
        "{body}"
    );
    eventually("the edge to log the call", async || {
        heard_as(&edge, "HTTP/2.0") >= 1
    })
    .await;
    assert_eq!(heard_as(&edge, "HTTP/1.1"), 0, "{}", edge.log());
    // A 2025 session through the same source: opening it, a list, a call.
    let sid = initialize_with(&plain, &front.url("/ws"), &[], "2025-11-25", "{}").await;
    let headers = [
        ("mcp-session-id", sid.as_str()),
        ("mcp-protocol-version", "2025-11-25"),
    ];
    let list = r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#;
    let (status, _, text) = post(&plain, &front.url("/ws"), list.to_owned(), &headers).await;
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("get-sum"), "{text}");
    let sum = r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"get-sum","arguments":{"a":1,"b":2}}}"#;
    let (status, _, text) = post(&plain, &front.url("/ws"), sum.to_owned(), &headers).await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(
        rpc_json(&text)["result"]["content"][0]["text"],
        "3",
        "{text}"
    );
    assert_eq!(heard_as(&edge, "HTTP/1.1"), 0, "{}", edge.log());
}
