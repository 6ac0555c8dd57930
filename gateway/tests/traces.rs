//! OpenTelemetry traces against real parts: the official Python SDK client
//! sends a `traceparent`, the gateway continues the trace toward the
//! official Python SDK server (which reports the context it got), and an
//! OTLP receiver decoding with the official `opentelemetry-proto`
//! definitions (HTTP/protobuf and gRPC) gets the request's spans; the
//! trace id joins spans, the access log line and the audit event.

mod support;

use std::io::BufRead;
use std::process::{Child, Command, Stdio};

use serde_json::Value;
use support::peers::SdkServer;
use support::*;

const CALLER: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
const CALLER_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

/// `otlp_receiver.py`: its HTTP and gRPC ports, and the client that reads
/// what it got (over TLS when it serves TLS).
struct Receiver {
    child: Child,
    http: u16,
    grpc: u16,
    scheme: &'static str,
    client: reqwest::Client,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Receiver {
    fn start() -> Receiver {
        Receiver::start_with(&[], None)
    }

    /// With these arguments (`--tls CERT KEY`, `--refuse-first N`); `ca`:
    /// the PEM its TLS certificate is verified against.
    fn start_with(args: &[&str], ca: Option<&str>) -> Receiver {
        let mut child = Command::new(need(peers().join("venv/bin/python")))
            .arg(test_peer("otlp_receiver.py"))
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("otlp_receiver.py");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("ports line");
        let ports: Vec<u16> = line
            .split_whitespace()
            .skip(1)
            .map(|p| p.parse().expect("port"))
            .collect();
        assert_eq!(ports.len(), 2, "receiver said {line:?}");
        let client = match ca {
            Some(pem) => reqwest::Client::builder()
                .tls_certs_only([reqwest::Certificate::from_pem(pem.as_bytes()).expect("pem")])
                .build()
                .expect("client"),
            None => reqwest::Client::new(),
        };
        Receiver {
            child,
            http: ports[0],
            grpc: ports[1],
            scheme: if ca.is_some() { "https" } else { "http" },
            client,
        }
    }

    async fn get(&self) -> reqwest::Response {
        self.client
            .get(format!("{}://127.0.0.1:{}/spans", self.scheme, self.http))
            .send()
            .await
            .expect("receiver")
    }

    /// How many exports it answered "unavailable" (`--refuse-first`).
    async fn refused(&self) -> u64 {
        let r = self.get().await;
        r.headers()["x-refused"]
            .to_str()
            .expect("ascii")
            .parse()
            .expect("count")
    }

    async fn spans(&self) -> Vec<Value> {
        let r = self.get().await;
        assert_eq!(r.headers()["x-bad-requests"], "0", "undecodable exports");
        r.json().await.expect("spans")
    }

    /// The spans of `trace`, once its server span has arrived.
    async fn trace(&self, trace: &str) -> Vec<Value> {
        let mut spans = Vec::new();
        eventually("the trace's spans at the receiver", async || {
            spans = self
                .spans()
                .await
                .into_iter()
                .filter(|s| s["trace_id"] == trace)
                .collect();
            spans.iter().any(|s| s["kind"] == 2)
        })
        .await;
        spans
    }
}

/// The Python SDK client calls `traceparent` with these extra headers; the
/// JSON the server answered.
fn python_call(url: &str, headers: &[&str]) -> Value {
    let out = Command::new(need(peers().join("venv/bin/python")))
        .arg(test_peer("sdk_client.py"))
        .args([url, "traceparent", "{}", "legacy"])
        .args(headers)
        .output()
        .expect("python client");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "python client failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Second line: `False ['{...}']`.
    let line = stdout.lines().nth(1).expect("the call's line");
    let start = line.find("['").expect("text part") + 2;
    let end = line.rfind("']").expect("text part");
    serde_json::from_str(&line[start..end]).expect("the server's JSON")
}

/// [`python_call`] off the runtime's threads.
async fn sdk_call(url: &str, headers: &[&str]) -> Value {
    let url = url.to_owned();
    let headers: Vec<String> = headers.iter().map(|h| (*h).to_owned()).collect();
    tokio::task::spawn_blocking(move || {
        let h: Vec<&str> = headers.iter().map(String::as_str).collect();
        python_call(&url, &h)
    })
    .await
    .expect("join")
}

/// A receiver, the SDK server reporting trace context, and a gateway in
/// front of it exporting as `traces` (given the receiver) says. Bind every
/// field: one left to `..` is dropped (its process stopped) at once.
struct Setup {
    receiver: Receiver,
    _sdk: SdkServer,
    dir: tempfile::TempDir,
    gw: Gateway,
}

async fn setup(traces: impl FnOnce(&Receiver) -> String) -> Setup {
    let receiver = Receiver::start();
    let sdk = SdkServer::start_with_env(&[("SDK_TRACE", "1")]).await;
    let dir = tempfile::tempdir().expect("dir");
    let gw = Gateway::start(&config(&sdk, &traces(&receiver), dir.path())).await;
    Setup {
        receiver,
        _sdk: sdk,
        dir,
        gw,
    }
}

fn config(sdk: &SdkServer, traces: &str, dir: &std::path::Path) -> String {
    let mut c = keyed_head(&[("alice", "caller")]);
    c.push_str(&format!(
        "roles:\n  - {{ name: caller, allow: [\"tools:sdk/*:call\"] }}\n\
         upstreams:\n  - {{ name: sdk, url: \"http://127.0.0.1:{}/mcp\" }}\n\
         routes:\n  - {{ name: sdk, path: /mcp, upstream: sdk }}\n  - {{ name: srv, path: /srv, server: srv }}\n\
         servers:\n  - {{ name: srv, sources: [{{ upstream: sdk, prefix: \"\" }}] }}\n\
         audit: {{ file: \"{}\", sample_rate: 1.0 }}\n\
         access_log: {{ file: \"{}\" }}\n\
         traces: {traces}\n",
        sdk.port,
        dir.join("audit.jsonl").display(),
        dir.join("access.jsonl").display(),
    ));
    c
}

/// A CA of the test's own and a certificate it signed for `name`, written
/// to `dir`: the CA, and the certificate, key and CA files.
fn tls_files(
    dir: &std::path::Path,
    name: &str,
) -> (
    rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
    [std::path::PathBuf; 3],
) {
    let ca = test_ca();
    let key = rcgen::KeyPair::generate().expect("key");
    let params = rcgen::CertificateParams::new(vec![name.into()]).expect("params");
    let cert = params.signed_by(&key, &ca).expect("cert");
    let files = ["server.pem", "server.key", "ca.pem"].map(|f| dir.join(f));
    std::fs::write(&files[0], cert.pem()).expect("write");
    std::fs::write(&files[1], key.serialize_pem()).expect("write");
    std::fs::write(&files[2], ca.pem()).expect("write");
    (ca, files)
}

fn lines(path: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn attr<'a>(span: &'a Value, key: &str) -> &'a Value {
    &span["attributes"][key]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callers_trace_is_continued_upstream_and_exported_over_otlp_http() {
    let Setup {
        receiver,
        dir,
        gw,
        _sdk,
    } = setup(|r| {
        format!(
            "{{ endpoint: \"http://127.0.0.1:{}/v1/traces\", interval_ms: 50, service_name: sluice-edge }}",
            r.http
        )
    })
    .await;
    let url = gw.url("/mcp");

    // The caller's trace, with its tracestate.
    let seen = sdk_call(
        &url,
        &[
            "authorization=Bearer alice-key",
            &format!("traceparent={CALLER}"),
            "tracestate=vendor=opaque",
        ],
    )
    .await;
    let upstream_parent = seen["traceparent"].as_str().expect("traceparent upstream");
    assert!(
        upstream_parent.starts_with(&format!("00-{CALLER_TRACE}-"))
            && upstream_parent.ends_with("-01"),
        "{seen}"
    );
    let upstream_parent_span = &upstream_parent[36..52];
    assert_ne!(
        upstream_parent_span, CALLER_SPAN,
        "the gateway's span is the upstream's parent"
    );
    assert_eq!(seen["tracestate"], "vendor=opaque", "{seen}");
    // MCP carries it in the request's _meta too: the same context.
    assert_eq!(seen["meta_traceparent"], upstream_parent, "{seen}");

    let spans = receiver.trace(CALLER_TRACE).await;
    let call = spans
        .iter()
        .find(|s| s["kind"] == 2 && attr(s, "mcp.method.name") == "tools/call")
        .unwrap_or_else(|| panic!("a server span of the call: {spans:#?}"));
    assert_eq!(call["name"], "tools/call traceparent");
    assert_eq!(call["parent_span_id"], CALLER_SPAN);
    assert_eq!(call["trace_state"], "vendor=opaque");
    assert_eq!(call["resource"]["service.name"], "sluice-edge");
    assert_eq!(attr(call, "gen_ai.tool.name"), "traceparent");
    assert_eq!(attr(call, "gen_ai.operation.name"), "execute_tool");
    assert_eq!(attr(call, "http.response.status_code"), 200);
    assert_eq!(attr(call, "sluice.route"), "sdk");
    assert!(attr(call, "jsonrpc.request.id").is_string(), "{call}");
    assert!(attr(call, "mcp.session.id").is_string(), "{call}");
    assert!(attr(call, "mcp.protocol.version").is_string(), "{call}");
    assert_eq!(call["status"]["code"], 0, "{call}");
    // Its phases, under it; the upstream exchange is the parent the
    // upstream saw.
    let child = |name: &str| {
        spans
            .iter()
            .find(|s| s["name"] == name && s["parent_span_id"] == call["span_id"])
            .unwrap_or_else(|| panic!("a child span {name}: {spans:#?}"))
    };
    assert_eq!(child("admission")["kind"], 1);
    assert_eq!(child("policy")["kind"], 1);
    let up = child("upstream");
    assert_eq!(up["kind"], 3);
    assert_eq!(up["span_id"], upstream_parent_span);
    for s in &spans {
        assert!(s["end"].as_u64() >= s["start"].as_u64(), "{s}");
    }
    // Never a secret or an argument in what is exported.
    let all = serde_json::to_string(&receiver.spans().await).expect("json");
    assert!(
        !all.contains("alice-key") && !all.contains("Bearer"),
        "{all}"
    );

    // The trace id joins the access log line and the audit event.
    let trace_of = |path: std::path::PathBuf| {
        let path2 = path.clone();
        async move {
            eventually("the call's line", async || {
                lines(&path2).iter().any(|l| l["target"] == "traceparent")
            })
            .await;
            lines(&path)
                .into_iter()
                .find(|l| l["target"] == "traceparent")
                .map(|l| l["trace_id"].clone())
        }
    };
    assert_eq!(
        trace_of(dir.path().join("access.jsonl")).await,
        Some(Value::from(CALLER_TRACE))
    );
    assert_eq!(
        trace_of(dir.path().join("audit.jsonl")).await,
        Some(Value::from(CALLER_TRACE))
    );

    // No (or a malformed) traceparent: a new trace, sampled (ratio 1).
    let seen = sdk_call(
        &url,
        &["authorization=Bearer alice-key", "traceparent=00-zz-bad-01"],
    )
    .await;
    let fresh = seen["traceparent"]
        .as_str()
        .expect("traceparent")
        .to_owned();
    assert!(
        fresh.starts_with("00-") && fresh.len() == 55 && !fresh.contains(CALLER_TRACE),
        "{fresh}"
    );
    let spans = receiver.trace(&fresh[3..35]).await;
    assert!(
        spans
            .iter()
            .any(|s| s["kind"] == 2 && s["parent_span_id"] == ""),
        "a root span: {spans:#?}"
    );
    // A refused call is a span with its JSON-RPC error.
    let client = reqwest::Client::new();
    let (status, _, _) = post(
        &client,
        &url,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x"}}"#,
        &[(
            "traceparent",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        )],
    )
    .await;
    assert_eq!(status, 401);
    let spans = receiver.trace("0af7651916cd43dd8448eb211c80319c").await;
    let refused = spans.iter().find(|s| s["kind"] == 2).expect("server span");
    assert_eq!(refused["status"]["code"], 2, "{refused}");
    assert!(attr(refused, "error.type").is_string(), "{refused}");
    assert!(
        gw.metric("sluice_trace_spans_total{result=\"exported\"}")
            .await
            >= 5.0
    );
}

/// Through a virtual server the source gets the context too, in its
/// headers and its request's `_meta`, under the gateway's span.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_virtual_servers_source_continues_the_trace() {
    let Setup {
        receiver,
        dir: _dir,
        gw,
        _sdk,
    } = setup(|r| {
        format!(
            "{{ endpoint: \"http://127.0.0.1:{}/v1/traces\", interval_ms: 50 }}",
            r.http
        )
    })
    .await;
    let seen = sdk_call(
        &gw.url("/srv"),
        &[
            "authorization=Bearer alice-key",
            &format!("traceparent={CALLER}"),
        ],
    )
    .await;
    let header = seen["traceparent"]
        .as_str()
        .expect("traceparent")
        .to_owned();
    assert!(header.starts_with(&format!("00-{CALLER_TRACE}-")), "{seen}");
    assert_eq!(seen["meta_traceparent"], header.as_str(), "{seen}");
    let spans = receiver.trace(CALLER_TRACE).await;
    let call = spans
        .iter()
        .find(|s| s["name"] == "tools/call traceparent")
        .unwrap_or_else(|| panic!("the call's span: {spans:#?}"));
    assert_eq!(call["parent_span_id"], CALLER_SPAN);
    assert_eq!(attr(call, "sluice.route"), "srv");
    // Every exchange with the source (opening its session, lists, the
    // call; the client sent the same trace on each request) is a client
    // span of its own under its request's span; the call's exchange is
    // the parent the source saw.
    let sources: Vec<_> = spans.iter().filter(|s| s["kind"] == 3).collect();
    assert!(sources.len() >= 2, "session and call: {spans:#?}");
    let ids: std::collections::HashSet<_> = sources.iter().map(|s| &s["span_id"]).collect();
    assert_eq!(ids.len(), sources.len(), "one span id each");
    assert!(sources.iter().all(|s| attr(s, "sluice.upstream") == "sdk"));
    let up = sources
        .iter()
        .find(|s| s["span_id"] == header[36..52])
        .unwrap_or_else(|| panic!("the call's exchange: {sources:#?}"));
    assert_eq!(up["parent_span_id"], call["span_id"]);
    assert_eq!(attr(up, "http.request.method"), "POST");
    assert_eq!(up["status"]["code"], 0, "{up:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_export_and_parent_based_sampling() {
    // New traces never sampled; a caller's sampled flag is followed.
    let Setup {
        receiver,
        dir,
        gw,
        _sdk,
    } = setup(|r| {
        format!(
            "{{ endpoint: \"http://127.0.0.1:{}\", protocol: grpc, sample_ratio: 0.0, interval_ms: 50 }}",
            r.grpc
        )
    })
    .await;
    let url = gw.url("/mcp");
    let unsampled = sdk_call(&url, &["authorization=Bearer alice-key"]).await;
    let tp = unsampled["traceparent"]
        .as_str()
        .expect("traceparent")
        .to_owned();
    assert!(tp.ends_with("-00"), "not sampled, still propagated: {tp}");
    // An unsampled request's body goes as sent (it named no traceparent).
    assert_eq!(unsampled["meta_traceparent"], Value::Null, "{unsampled}");
    let seen = sdk_call(
        &url,
        &[
            "authorization=Bearer alice-key",
            &format!("traceparent={CALLER}"),
        ],
    )
    .await;
    assert!(
        seen["traceparent"]
            .as_str()
            .is_some_and(|t| t.ends_with("-01")),
        "{seen}"
    );
    let spans = receiver.trace(CALLER_TRACE).await;
    assert!(spans.iter().all(|s| s["via"] == "grpc"), "{spans:#?}");
    assert!(spans.iter().any(|s| s["name"] == "tools/call traceparent"));
    // Nothing of the unsampled trace was exported (its spans would have
    // come in the same batches as the sampled ones, or before).
    let all = receiver.spans().await;
    assert!(!all.iter().any(|s| s["trace_id"] == tp[3..35]), "{all:#?}");
    // The access log still names the unsampled request's trace.
    eventually("two calls logged", async || {
        lines(&dir.path().join("access.jsonl"))
            .iter()
            .filter(|l| l["target"] == "traceparent")
            .count()
            == 2
    })
    .await;
    assert!(lines(&dir.path().join("access.jsonl"))
        .iter()
        .any(|l| l["trace_id"] == tp[3..35]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_that_is_away_costs_the_data_path_nothing() {
    let (_held, port) = closed_port();
    let Setup {
        gw,
        _sdk,
        dir: _dir,
        receiver: _receiver,
    } = setup(|_| {
        format!(
            "{{ endpoint: \"http://127.0.0.1:{port}/v1/traces\", interval_ms: 20, max_queue: 4 }}"
        )
    })
    .await;
    let client = reqwest::Client::new();
    let head = [("authorization", "Bearer alice-key")];
    for i in 0..20 {
        let body = format!(r#"{{"jsonrpc":"2.0","id":{i},"method":"ping"}}"#);
        let (status, _, _) = post(&client, &gw.url("/mcp"), body, &head).await;
        assert!(status < 500, "{status}");
    }
    // Held for another try first, given up after a few (or when too many
    // batches wait), never in the way of the calls above.
    eventually("failed tries counted for a retry", async || {
        gw.metric("sluice_trace_spans_total{result=\"retried\"}")
            .await
            > 0.0
    })
    .await;
    eventually("failed exports given up and counted", async || {
        gw.metric("sluice_trace_spans_total{result=\"failed\"}")
            .await
            > 0.0
    })
    .await;
    assert_eq!(
        gw.metric("sluice_trace_spans_total{result=\"exported\"}")
            .await,
        0.0
    );
}

/// A collector behind TLS: gRPC (HTTP/2 by ALPN) and OTLP/HTTP over https,
/// each verified against `ca_file`; an export the collector answers
/// "unavailable" is sent again and arrives; a collector whose certificate
/// another CA signed gets nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_over_tls_is_verified_and_a_refused_batch_is_retried() {
    let dir = tempfile::tempdir().expect("dir");
    let (ca, [cert_file, key_file, ca_file]) = tls_files(dir.path(), "127.0.0.1");
    let other_ca = dir.path().join("other-ca.pem");
    std::fs::write(&other_ca, test_ca().pem()).expect("write");

    let tls = [
        "--tls",
        cert_file.to_str().expect("utf-8"),
        key_file.to_str().expect("utf-8"),
    ];
    let receiver = Receiver::start_with(
        &[&tls[..], &["--refuse-first", "1"]].concat(),
        Some(&ca.pem()),
    );
    let sdk = SdkServer::start_with_env(&[("SDK_TRACE", "1")]).await;
    let gateway = async |endpoint: String, protocol: &str, ca: &std::path::Path| {
        let traces = format!(
            "{{ endpoint: \"{endpoint}\", protocol: {protocol}, ca_file: \"{}\", interval_ms: 20 }}",
            ca.display()
        );
        Gateway::start(&config(&sdk, &traces, dir.path())).await
    };
    let grpc_at = format!("https://127.0.0.1:{}", receiver.grpc);
    let http_at = format!("https://127.0.0.1:{}/v1/traces", receiver.http);
    let grpc = gateway(grpc_at.clone(), "grpc", &ca_file).await;
    let http = gateway(http_at, "http_protobuf", &ca_file).await;
    let wrong = gateway(grpc_at, "grpc", &other_ca).await;

    let traced = |trace: &str| format!("traceparent=00-{trace}-00f067aa0ba902b7-01");
    let (t_grpc, t_http, t_wrong) = (
        "11111111111111111111111111111111",
        "22222222222222222222222222222222",
        "33333333333333333333333333333333",
    );
    let auth = "authorization=Bearer alice-key";
    sdk_call(&grpc.url("/mcp"), &[auth, &traced(t_grpc)]).await;
    sdk_call(&http.url("/mcp"), &[auth, &traced(t_http)]).await;
    sdk_call(&wrong.url("/mcp"), &[auth, &traced(t_wrong)]).await;

    // The first export (whichever gateway sent it) was refused and came
    // again; both traces arrive whole.
    for (gw, trace, via) in [(&grpc, t_grpc, "grpc"), (&http, t_http, "http")] {
        let spans = receiver.trace(trace).await;
        assert!(spans.iter().all(|s| s["via"] == via), "{spans:#?}");
        assert!(spans.iter().any(|s| s["name"] == "tools/call traceparent"));
        assert!(
            gw.metric("sluice_trace_spans_total{result=\"exported\"}")
                .await
                > 0.0
        );
    }
    assert_eq!(receiver.refused().await, 1);
    let retried = grpc
        .metric("sluice_trace_spans_total{result=\"retried\"}")
        .await
        + http
            .metric("sluice_trace_spans_total{result=\"retried\"}")
            .await;
    assert!(retried > 0.0, "the refused batch was tried again");

    // Verified against another CA: the handshake fails, nothing arrives.
    eventually("the unverified collector's tries counted", async || {
        wrong
            .metric("sluice_trace_spans_total{result=\"retried\"}")
            .await
            > 0.0
    })
    .await;
    eventually("the failure logged", async || {
        wrong.log().contains("trace export failed")
    })
    .await;
    assert!(!receiver
        .spans()
        .await
        .iter()
        .any(|s| s["trace_id"] == t_wrong));
    drop(sdk);
}

/// A model call's span: named `chat <model>`, the GenAI attributes with
/// the usage the provider reported, a stream phase for a streamed answer;
/// the provider gets the context in its headers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_call_is_a_genai_span_with_its_usage() {
    use sluice_demo::llm::{spawn_llm, LlmOptions};
    let receiver = Receiver::start();
    let provider = spawn_llm("127.0.0.1:0".parse().expect("addr"), LlmOptions::default())
        .await
        .expect("mock provider");
    let config = format!(
        "{}upstreams:\n  - {{ name: primary, url: \"{}\" }}\n\
         routes:\n  - {{ name: llm, path: /v1, upstream: primary, transport: llm }}\n\
         llm:\n  models:\n    - {{ name: mock-gpt, targets: [{{ upstream: primary, model: mock-gpt-2 }}] }}\n\
         traces: {{ endpoint: \"http://127.0.0.1:{}/v1/traces\", interval_ms: 50 }}\n",
        llm_config_head("models:primary/*:use"),
        provider.url(),
        receiver.http
    );
    let gw = Gateway::start(&config).await;
    let resp = reqwest::Client::new()
        .post(gw.url("/v1/chat/completions"))
        .header("authorization", "Bearer alice-key")
        .header("traceparent", CALLER)
        .json(&serde_json::json!({
            "model": "mock-gpt",
            "stream": true,
            "messages": [{"role": "user", "content": "say hello to the gateway"}]
        }))
        .send()
        .await
        .expect("response");
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.expect("stream");
    assert!(text.contains("[DONE]"), "{text}");
    let seen = provider.last_headers().expect("the provider's request");
    let parent = seen["traceparent"].to_str().expect("traceparent");
    assert!(
        parent.starts_with(&format!("00-{CALLER_TRACE}-")),
        "{parent}"
    );

    let spans = receiver.trace(CALLER_TRACE).await;
    let call = spans
        .iter()
        .find(|s| s["kind"] == 2)
        .unwrap_or_else(|| panic!("a server span: {spans:#?}"));
    assert_eq!(call["name"], "chat mock-gpt", "{call}");
    assert_eq!(attr(call, "gen_ai.operation.name"), "chat");
    assert_eq!(attr(call, "gen_ai.request.model"), "mock-gpt");
    assert_eq!(attr(call, "gen_ai.response.model"), "mock-gpt-2");
    assert!(
        attr(call, "gen_ai.usage.input_tokens").as_i64() > Some(0),
        "{call}"
    );
    assert!(
        attr(call, "gen_ai.usage.output_tokens").as_i64() > Some(0),
        "{call}"
    );
    let names: Vec<&str> = spans
        .iter()
        .filter(|s| s["parent_span_id"] == call["span_id"])
        .filter_map(|s| s["name"].as_str())
        .collect();
    for phase in ["admission", "limits", "upstream", "stream"] {
        assert!(names.contains(&phase), "{phase} in {names:?}");
    }
    let up = spans
        .iter()
        .find(|s| s["kind"] == 3)
        .expect("upstream span");
    assert_eq!(up["span_id"], &parent[36..52]);
}

/// Spans still queued when the gateway is stopped are exported before it
/// exits (the batch interval here is far longer than the test).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_queued_at_shutdown_are_exported_before_exit() {
    let Setup {
        receiver,
        dir: _dir,
        mut gw,
        _sdk,
    } = setup(|r| {
        format!(
            "{{ endpoint: \"http://127.0.0.1:{}/v1/traces\", interval_ms: 600000 }}\n\
             shutdown: {{ grace_period_s: 0 }}",
            r.http
        )
    })
    .await;
    sdk_call(
        &gw.url("/mcp"),
        &[
            "authorization=Bearer alice-key",
            &format!("traceparent={CALLER}"),
        ],
    )
    .await;
    assert!(
        receiver.spans().await.is_empty(),
        "nothing due before the interval"
    );
    gw.signal("TERM");
    let exit = gw.wait_exit(std::time::Duration::from_secs(30)).await;
    assert!(exit.is_some(), "the gateway stopped");
    let spans = receiver.spans().await;
    assert!(
        spans
            .iter()
            .any(|s| s["trace_id"] == CALLER_TRACE && s["name"] == "tools/call traceparent"),
        "{spans:#?}"
    );
}

/// An upstream that may speak HTTP/2 gets small bodies through Pingora's
/// own replay, which sends the body as the client wrote it: a sampled
/// call goes the way that writes the body, so `_meta` carries the trace
/// context there too. The upstream is a second gateway (TLS, HTTP/2 by
/// ALPN, no tracing of its own: it passes what it gets) in front of the
/// SDK server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sampled_call_to_an_http2_upstream_carries_the_context_in_meta() {
    let receiver = Receiver::start();
    let sdk = SdkServer::start_with_env(&[("SDK_TRACE", "1")]).await;
    let dir = tempfile::tempdir().expect("dir");
    let (_, [cert_file, key_file, ca_file]) = tls_files(dir.path(), "localhost");
    let edge = Gateway::start(&format!(
        "listeners:\n  - {{ name: main, address: \"{{listen}}\", tls: {{ cert_file: {cert_file:?}, key_file: {key_file:?} }} }}\n\
         admin: {{ address: \"{{admin}}\" }}\n\
         upstreams:\n  - {{ name: sdk, url: \"http://127.0.0.1:{}/mcp\" }}\n\
         routes:\n  - {{ name: sdk, path: /mcp, upstream: sdk }}\n",
        sdk.port
    ))
    .await;
    let mut front = keyed_head(&[("alice", "caller")]);
    front.push_str(&format!(
        "roles:\n  - {{ name: caller, allow: [\"tools:edge/*:call\"] }}\n\
         upstreams:\n  - {{ name: edge, url: \"https://localhost:{}/mcp\", http2: true, tls: {{ ca_file: {ca_file:?} }} }}\n\
         routes:\n  - {{ name: edge, path: /mcp, upstream: edge }}\n\
         traces: {{ endpoint: \"http://127.0.0.1:{}/v1/traces\", interval_ms: 50 }}\n",
        edge.port, receiver.http
    ));
    let front = Gateway::start(&front).await;
    let seen = sdk_call(
        &front.url("/mcp"),
        &[
            "authorization=Bearer alice-key",
            &format!("traceparent={CALLER}"),
        ],
    )
    .await;
    let header = seen["traceparent"].as_str().expect("traceparent");
    assert!(header.starts_with(&format!("00-{CALLER_TRACE}-")), "{seen}");
    assert_ne!(header, CALLER, "the gateway's span, not the caller's");
    assert_eq!(seen["meta_traceparent"], header, "{seen}");
    // It went over HTTP/2 (the edge logs what it heard).
    assert!(
        edge.log()
            .lines()
            .any(|l| l.contains("version") && l.contains("HTTP/2.0")),
        "{}",
        edge.log()
    );
    let spans = receiver.trace(CALLER_TRACE).await;
    assert!(spans.iter().any(|s| s["name"] == "tools/call traceparent"));
}
