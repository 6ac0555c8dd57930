//! Shared rate limits across replicas through a real `redis-server`: two
//! gateways enforce one global limit; when Redis goes away each falls back
//! as configured (local limiting, or refusing), says so in a metric, and
//! recovers on its own when Redis is back.

mod support;

use support::redis_server::Redis;
use support::*;

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

/// Two gateways sharing a Redis in front of the mock model provider.
struct Replicas {
    _llm: sluice_demo::llm::LlmServer,
    redis: Redis,
    config: String,
    a: Gateway,
    b: Gateway,
}

impl Replicas {
    /// With acme's shared budget of `budget` tokens; both reach Redis.
    async fn start(budget: u64) -> Replicas {
        let llm = sluice_demo::llm::spawn_llm(
            "127.0.0.1:0".parse().expect("addr"),
            sluice_demo::llm::LlmOptions::default(),
        )
        .await
        .expect("mock provider");
        let redis = Redis::start(free_port()).await;
        let config = llm_config(&llm.url(), redis.port, budget);
        let (a, b) = (Gateway::start(&config).await, Gateway::start(&config).await);
        store_up(&a).await;
        store_up(&b).await;
        Replicas {
            _llm: llm,
            redis,
            config,
            a,
            b,
        }
    }
}

/// A model route with acme's shared budget of `budget` tokens and a shared
/// token limit, through the Redis on `redis_port`.
fn llm_config(llm_url: &str, redis_port: u16, budget: u64) -> String {
    format!(
        r#"{head}upstreams:
  - {{ name: llm, url: "{llm_url}" }}
routes:
  - {{ name: llm, path: /v1, upstream: llm, transport: llm }}
rate_limits:
  shared_store: {{ redis_url: "redis://127.0.0.1:{redis_port}", on_unavailable: closed, timeout_ms: 500 }}
llm:
  models:
    - {{ name: mock-gpt, targets: [{{ upstream: llm }}] }}
  budgets:
    - {{ name: acme-shared, tenant: acme, tokens: {budget}, shared: true }}
  token_limits:
    - {{ name: tpm-shared, per: [tenant], tokens_per_minute: 3000, shared: true }}
"#,
        head = llm_config_head("models:llm/*:use"),
    )
}

/// A chat call as alice, streamed or not; the status and the usage the
/// upstream reported (streamed: from the usage chunk it was asked for).
async fn chat(client: &reqwest::Client, gw: &Gateway, stream: bool, max_tokens: u64) -> (u16, u64) {
    let mut body = serde_json::json!({"model": "mock-gpt", "max_tokens": max_tokens,
        "messages": [{"role": "user", "content": "say hello to the gateway"}]});
    if stream {
        body["stream"] = true.into();
        body["stream_options"] = serde_json::json!({"include_usage": true});
    }
    let resp = client
        .post(gw.url("/v1/chat/completions"))
        .header("authorization", "Bearer alice-key")
        .json(&body)
        .send()
        .await
        .expect("a call");
    let status = resp.status().as_u16();
    let text = resp.text().await.expect("body");
    let usage = |v: &serde_json::Value| v["usage"]["total_tokens"].as_u64();
    let used = if stream {
        text.lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .filter_map(|d| serde_json::from_str::<serde_json::Value>(d).ok())
            .find_map(|v| usage(&v))
    } else {
        serde_json::from_str(&text).ok().and_then(|v| usage(&v))
    };
    (status, used.unwrap_or(0))
}

/// What the shared store says acme's budget has spent this period.
async fn spent(redis_port: u16) -> u64 {
    let client = redis::Client::open(format!("redis://127.0.0.1:{redis_port}")).expect("client");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("redis");
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("*:llm:budget:acme-shared:acme:*")
        .query_async(&mut conn)
        .await
        .expect("keys");
    let mut total = 0;
    for k in keys {
        let t: Option<u64> = redis::cmd("HGET")
            .arg(&k)
            .arg("t")
            .query_async(&mut conn)
            .await
            .expect("hget");
        total += t.unwrap_or(0);
    }
    total
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_spend_one_budget_that_outlives_a_restart() {
    let Replicas {
        _llm,
        mut redis,
        config,
        a,
        b,
    } = Replicas::start(100).await;
    let client = reqwest::Client::new();

    // A call larger than the shared bucket never fits, on either replica.
    assert_eq!(chat(&client, &a, false, 5000).await.0, 429);

    // Streamed and plain calls alternate between the replicas until the
    // budget (100 tokens, each call ~16) refuses: one budget for both.
    let (mut calls, mut reported) = (0u64, 0u64);
    for i in 0..40 {
        let gw = if i % 2 == 0 { &a } else { &b };
        let (status, used) = chat(&client, gw, i % 3 == 0, 50).await;
        if status == 429 {
            break;
        }
        assert_eq!(status, 200);
        assert!(used > 0, "the upstream reported usage");
        calls += 1;
        reported += used;
        // Settled before the next call is admitted.
        eventually("the call settled", async || {
            spent(redis.port).await == reported
        })
        .await;
    }
    assert!(reported >= 100, "the budget ran out: {reported}");
    let last = reported / calls;
    assert!(
        reported - last < 100,
        "no call started on a spent budget: {reported}"
    );
    assert!(
        calls < 2 * 100_u64.div_ceil(last),
        "not one budget per replica: {calls}"
    );
    // Spend is what the upstream reported, call for call.
    assert_eq!(spent(redis.port).await, reported);
    assert_eq!(
        chat(&client, &b, true, 50).await.0,
        429,
        "spent on every replica"
    );

    // A replica restarted mid-period keeps the spend.
    drop(a);
    let a = Gateway::start(&config).await;
    store_up(&a).await;
    assert_eq!(chat(&client, &a, false, 50).await.0, 429);

    // The store goes away: `closed` refuses model calls (503) at once,
    // and both come back by themselves with the store (empty: a new spend).
    redis.stop();
    assert_eq!(chat(&client, &a, false, 50).await.0, 503);
    assert_eq!(chat(&client, &b, true, 50).await.0, 503);
    let redis = Redis::start(redis.port).await;
    store_up(&a).await;
    store_up(&b).await;
    let (status, used) = chat(&client, &b, false, 50).await;
    assert_eq!(status, 200);
    eventually("settled in the new store", async || {
        spent(redis.port).await == used
    })
    .await;
}

#[tokio::test]
async fn a_budget_period_is_a_utc_day_or_calendar_month_in_the_store() {
    let redis = Redis::start(free_port()).await;
    let client = redis::Client::open(format!("redis://127.0.0.1:{}", redis.port)).expect("client");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("redis");
    let script = redis::Script::new(&format!(
        "{}return {{period(ARGV[1], tonumber(ARGV[2]))}}",
        sluice_gateway::llm::shared::PERIOD
    ));
    let day = |y, m, d| sluice_config::days_from_civil(y, m, d) as i64 * 86_400;
    for (kind, at, want) in [
        (
            "month",
            day(2026, 2, 14) + 43_200,
            (day(2026, 2, 1), day(2026, 3, 1)),
        ),
        (
            "month",
            day(2024, 12, 31) + 86_399,
            (day(2024, 12, 1), day(2025, 1, 1)),
        ),
        (
            "month",
            day(2024, 2, 29),
            (day(2024, 2, 1), day(2024, 3, 1)),
        ),
        (
            "day",
            day(2026, 12, 7) + 100,
            (day(2026, 12, 7), day(2026, 12, 8)),
        ),
    ] {
        let got: (i64, i64) = script
            .arg(kind)
            .arg(at)
            .invoke_async(&mut conn)
            .await
            .expect("eval");
        assert_eq!(got, want, "{kind} at {at}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_calls_on_two_replicas_are_charged_exactly() {
    let Replicas {
        _llm, redis, a, b, ..
    } = Replicas::start(1_000_000).await;
    let client = reqwest::Client::new();
    // Waves of concurrent calls, streamed and plain, on both replicas.
    let mut reported = 0;
    for wave in 0..3 {
        let calls = (0..12).map(|i| {
            let gw = if i % 2 == 0 { &a } else { &b };
            chat(&client, gw, (i + wave) % 3 == 0, 50)
        });
        for (status, used) in futures::future::join_all(calls).await {
            assert_eq!(status, 200);
            assert!(used > 0);
            reported += used;
        }
    }
    // No call lost, none counted twice.
    eventually("every call settled", async || {
        spent(redis.port).await == reported
    })
    .await;
}

/// The estimates of acme's calls in flight, as the store holds them.
async fn reserved(redis_port: u16) -> i64 {
    let client = redis::Client::open(format!("redis://127.0.0.1:{redis_port}")).expect("client");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("redis");
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("*:llm:budget:acme-shared:acme:*")
        .query_async(&mut conn)
        .await
        .expect("keys");
    let mut total = 0;
    for k in keys {
        let r: Option<i64> = redis::cmd("HGET")
            .arg(&k)
            .arg("r")
            .query_async(&mut conn)
            .await
            .expect("hget");
        total += r.unwrap_or(0);
    }
    total
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_on_two_replicas_cannot_overrun_a_budget_past_the_estimates_in_flight() {
    let Replicas {
        _llm, redis, a, b, ..
    } = Replicas::start(100).await;
    let client = reqwest::Client::new();
    // Each call is estimated at its prompt plus 50 tokens (and uses ~16).
    // A call starts only while spend plus the estimates in flight is under
    // the budget, so 24 calls at once on a budget with nothing spent cannot
    // all start: what they spend stays under the budget plus one call.
    let calls = (0..24).map(|i| {
        let gw = if i % 2 == 0 { &a } else { &b };
        chat(&client, gw, i % 3 == 0, 50)
    });
    let results = futures::future::join_all(calls).await;
    assert!(
        results.iter().all(|(st, _)| *st == 200 || *st == 429),
        "{results:?}"
    );
    let ok: Vec<u64> = results
        .iter()
        .filter(|(st, _)| *st == 200)
        .map(|(_, used)| *used)
        .collect();
    let reported: u64 = ok.iter().sum();
    let largest = ok.iter().copied().max().unwrap_or(0);
    assert!(
        !ok.is_empty() && reported < 100 + largest,
        "spent {reported} on a budget of 100: {results:?}"
    );
    eventually("the admitted calls settled", async || {
        spent(redis.port).await == reported && reserved(redis.port).await == 0
    })
    .await;
    // Nothing in flight any more: what is left of the budget is usable.
    assert_eq!(chat(&client, &a, false, 50).await.0, 200);
}
