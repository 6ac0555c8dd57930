//! The gateway's Prometheus metrics: one registry, created once and passed
//! down. Every label value comes from config names or fixed enums, never
//! from raw client input, so cardinality stays bounded.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

pub struct Metrics {
    registry: Registry,
    pub requests: IntCounterVec,
    pub mcp_messages: IntCounterVec,
    pub tool_calls: IntCounterVec,
    pub refusals: IntCounterVec,
    pub upstream_errors: IntCounterVec,
    pub upstream_latency: HistogramVec,
    pub gateway_time: HistogramVec,
    pub request_duration: HistogramVec,
    pub sse_streams: IntGaugeVec,
    /// Event streams held in the gateway's own task (`detach`).
    pub streams_detached: IntGauge,
    /// Read from `bodies` when scraped.
    pub request_body_bytes_held: IntGauge,
    /// Set from `Shared::conns` when scraped.
    pub connections_open: IntGauge,
    pub connections_waiting: IntGauge,
    pub source_streams_open: IntGauge,
    pub connections_closed: IntCounterVec,
    pub config_reloads: IntCounterVec,
    pub config_generation: IntGauge,
    pub config_last_reload_ok: IntGauge,
    pub control_connected: IntGauge,
    pub control_staleness: IntGauge,
    pub control_version: IntGauge,
    pub approvals: IntCounterVec,
    pub token_exchanges: IntCounterVec,
    pub audit_ship_dropped: prometheus::IntCounter,
    pub audit_ship_backlog: IntGauge,
    pub audit_shipped: prometheus::IntCounter,
    pub unparsed_server_messages: IntCounterVec,
    pub auth_failures: IntCounterVec,
    pub policy_decisions: IntCounterVec,
    pub list_items_hidden: IntCounterVec,
    pub upstream_messages_withheld: IntCounterVec,
    pub audit_events: IntCounterVec,
    pub audit_dropped: prometheus::IntCounter,
    pub access_log_dropped: prometheus::IntCounter,
    pub trace_spans: IntCounterVec,
    pub unmatched_rules: IntCounterVec,
    pub limit_refusals: IntCounterVec,
    pub limit_keys: IntGaugeVec,
    pub limit_store_up: IntGauge,
    pub limit_store_fallbacks: IntCounterVec,
    pub upstream_retries: IntCounterVec,
    pub circuit_state: IntGaugeVec,
    pub circuit_transitions: IntCounterVec,
    pub upstream_resets: IntCounterVec,
    pub llm_tokens: HistogramVec,
    pub llm_ttft: HistogramVec,
    pub llm_tpot: HistogramVec,
    pub llm_duration: HistogramVec,
    pub llm_cost: prometheus::CounterVec,
    pub llm_budget_remaining: prometheus::GaugeVec,
    /// What a budget allows per period, beside what is left (for alerts).
    pub llm_budget_limit: prometheus::GaugeVec,
    pub llm_fallbacks: IntCounterVec,
    /// Tools withheld from a virtual server's list for sharing a name.
    pub server_name_collisions: IntCounterVec,
    /// Tool definitions judged on pinned or screened sources, by upstream
    /// and finding (trusted, new, changed, screened): each definition once.
    pub tool_definitions: IntCounterVec,
    /// A virtual server's source, as its last exchange went: 1 answered, 0
    /// failed (left out of lists).
    pub upstream_up: IntGaugeVec,
}

/// Gateway-internal time is small: buckets from 5 µs to 100 ms.
const INTERNAL_BUCKETS: &[f64] = &[
    0.000_005, 0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005,
    0.01, 0.025, 0.1,
];
const LATENCY_BUCKETS: &[f64] = &[
    0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0, 300.0,
];

/// Registers each metric as it is made: one call per metric in `new`.
struct Reg(Registry);

impl Reg {
    fn add<C: prometheus::core::Collector + Clone + 'static>(&self, c: C) -> C {
        self.0.register(Box::new(c.clone())).expect("unique metric");
        c
    }
    fn counter(&self, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
        self.add(IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric"))
    }
    fn count(&self, name: &str, help: &str) -> prometheus::IntCounter {
        self.add(prometheus::IntCounter::new(name, help).expect("valid metric"))
    }
    fn gauge(&self, name: &str, help: &str) -> IntGauge {
        self.add(IntGauge::new(name, help).expect("valid metric"))
    }
    fn gauge_vec(&self, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
        self.add(IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric"))
    }
    fn hist(&self, name: &str, help: &str, labels: &[&str], buckets: &[f64]) -> HistogramVec {
        let opts = HistogramOpts::new(name, help).buckets(buckets.to_vec());
        self.add(HistogramVec::new(opts, labels).expect("valid metric"))
    }
    /// A histogram by route.
    fn histogram(&self, name: &str, help: &str, buckets: &[f64]) -> HistogramVec {
        self.hist(name, help, &["route"], buckets)
    }
}

impl Metrics {
    pub fn new() -> Self {
        let reg = Reg(Registry::new_custom(Some("sluice".into()), None).expect("valid prefix"));
        let counter = |name: &str, help: &str, labels: &[&str]| reg.counter(name, help, labels);
        let histogram =
            |name: &str, help: &str, buckets: &[f64]| reg.histogram(name, help, buckets);
        let gauge = |name: &str, help: &str| reg.gauge(name, help);
        let gauge_vec = |name: &str, help: &str, labels: &[&str]| reg.gauge_vec(name, help, labels);
        let hist = |name: &str, help: &str, labels: &[&str], buckets: &[f64]| {
            reg.hist(name, help, labels, buckets)
        };
        let genai = &["gen_ai_operation_name", "gen_ai_request_model"];
        Self {
            llm_tokens: hist(
                "gen_ai_client_token_usage",
                "Tokens per model call (OpenTelemetry gen_ai.client.token.usage), by token type",
                &["gen_ai_operation_name", "gen_ai_request_model", "gen_ai_token_type"],
                &[1.0, 4.0, 16.0, 64.0, 256.0, 1024.0, 4096.0, 16384.0, 65536.0, 262144.0, 1048576.0],
            ),
            llm_ttft: hist(
                "gen_ai_server_time_to_first_token_seconds",
                "Time from the request to the first streamed token",
                genai,
                LATENCY_BUCKETS,
            ),
            llm_tpot: hist(
                "gen_ai_server_time_per_output_token_seconds",
                "Time per output token after the first",
                genai,
                &[0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0],
            ),
            llm_duration: hist(
                "gen_ai_client_operation_duration_seconds",
                "Whole model call as the client sees it",
                genai,
                LATENCY_BUCKETS,
            ),
            llm_cost: reg.add(
                prometheus::CounterVec::new(
                    Opts::new("llm_cost_usd_total", "Cost of model calls from the price table, by tenant and model"),
                    &["tenant", "model"],
                )
                .expect("valid metric"),
            ),
            llm_budget_limit: reg.add(
                prometheus::GaugeVec::new(
                    Opts::new("llm_budget_limit", "What a tenant budget allows per period, by budget and unit (tokens, usd)"),
                    &["budget", "unit"],
                )
                .expect("valid metric"),
            ),
            llm_budget_remaining: reg.add(
                prometheus::GaugeVec::new(
                    Opts::new("llm_budget_remaining", "What is left of a tenant budget this period, by budget and unit (tokens, usd)"),
                    &["budget", "unit"],
                )
                .expect("valid metric"),
            ),
            llm_fallbacks: counter(
                "llm_fallbacks_total",
                "Model calls moved to the next target, by the upstream that failed and why (connect, 429, 5xx)",
                &["upstream", "reason"],
            ),
            tool_definitions: counter(
                "tool_definitions_total",
                "Tool definitions a pinned or screened source listed that were trusted on first use or quarantined (new, changed, screened), by upstream and finding",
                &["upstream", "finding"],
            ),
            server_name_collisions: counter(
                "server_name_collisions_total",
                "Times a virtual server's list withheld tools that would share a name, by server",
                &["server"],
            ),
            upstream_up: gauge_vec(
                "upstream_up",
                "1 while a virtual server's source answers, 0 after it failed (its items left out), by upstream",
                &["upstream"],
            ),
            limit_refusals: counter(
                "limit_refusals_total",
                "Requests refused by a rate limit or concurrency cap, by limit name",
                &["limit"],
            ),
            limit_keys: gauge_vec(
                "limit_keys",
                "Keys a local rate limiter holds state for (after the last sweep), by limit",
                &["limit"],
            ),
            limit_store_up: gauge(
                "limit_store_up",
                "1 while the shared rate-limit store (Redis) answers, 0 while the fallback applies",
            ),
            limit_store_fallbacks: counter(
                "limit_store_fallbacks_total",
                "Shared-limit checks decided by the fallback because the store was unreachable, by mode",
                &["mode"],
            ),
            upstream_retries: counter(
                "upstream_retries_total",
                "Connect retries, by upstream and outcome (retried, budget_exhausted)",
                &["upstream", "outcome"],
            ),
            circuit_state: gauge_vec(
                "upstream_circuit_state",
                "Circuit breaker state per upstream: 0 closed, 1 open, 2 half-open",
                &["upstream"],
            ),
            circuit_transitions: counter(
                "upstream_circuit_transitions_total",
                "Circuit breaker state changes, by upstream and new state",
                &["upstream", "state"],
            ),
            upstream_resets: counter(
                "upstream_resets_total",
                "Responses cut off by the upstream after they started, by route",
                &["route"],
            ),
            requests: counter(
                "requests_total",
                "HTTP requests by route, method and status",
                &["route", "method", "status"],
            ),
            mcp_messages: counter(
                "mcp_messages_total",
                "JSON-RPC messages by route, direction and method",
                &["route", "direction", "method"],
            ),
            tool_calls: counter(
                "tool_calls_total",
                "tools/call by route, tool (unknown tools fold into `other`) and outcome",
                &["route", "tool", "outcome"],
            ),
            refusals: counter(
                "refusals_total",
                "Requests the gateway answered itself, by route and reason",
                &["route", "reason"],
            ),
            upstream_errors: counter(
                "upstream_errors_total",
                "Failures talking to an upstream, by route and kind",
                &["route", "kind"],
            ),
            unparsed_server_messages: counter(
                "unparsed_server_messages_total",
                "Server messages the gateway could not parse (passed through)",
                &["route"],
            ),
            auth_failures: counter(
                "auth_failures_total",
                "Requests refused for authentication, by route and reason",
                &["route", "reason"],
            ),
            policy_decisions: counter(
                "policy_decisions_total",
                "RBAC decisions on calls, by route and decision (allow, hidden, denied)",
                &["route", "decision"],
            ),
            list_items_hidden: counter(
                "list_items_hidden_total",
                "Items removed from list results by policy, by route",
                &["route"],
            ),
            upstream_messages_withheld: counter(
                "upstream_messages_withheld_total",
                "Upstream messages a list filter could not read one way and answered with an error instead, by route",
                &["route"],
            ),
            audit_events: counter(
                "audit_events_total",
                "Audit events queued, by decision",
                &["decision"],
            ),
            trace_spans: counter(
                "trace_spans_total",
                "Spans of sampled requests: exported, retried (a try failed for a passing reason; sent again), failed (refused, or given up) or dropped (the export queue was full)",
                &["result"],
            ),
            unmatched_rules: counter(
                "policy_unmatched_rules_total",
                "Policy rules found unable to match once an upstream's tool list was seen",
                &["upstream"],
            ),
            audit_dropped: reg.count(
                "audit_dropped_total",
                "Audit events dropped because the queue was full",
            ),
            access_log_dropped: reg.count(
                "access_log_dropped_total",
                "Access log lines dropped because the writer was behind",
            ),
            upstream_latency: histogram(
                "upstream_latency_seconds",
                "Time from sending the request upstream to its response header",
                LATENCY_BUCKETS,
            ),
            gateway_time: histogram(
                "gateway_time_seconds",
                "Time spent inside the gateway per request (excludes waiting on peers)",
                INTERNAL_BUCKETS,
            ),
            request_duration: histogram(
                "request_duration_seconds",
                "Whole request duration as the client sees it",
                LATENCY_BUCKETS,
            ),
            sse_streams: gauge_vec(
                "sse_streams_active",
                "SSE responses currently streaming",
                &["route"],
            ),
            streams_detached: gauge(
                "streams_detached",
                "Event streams to HTTP/1.1 clients held in the gateway's own task, out of Pingora's session",
            ),
            request_body_bytes_held: gauge(
                "request_body_bytes_held",
                "Bytes of request-body buffers held across all requests (ceiling: limits.max_body_bytes_held)",
            ),
            connections_open: gauge(
                "client_connections_open",
                "Client connections open (caps: limits.max_connections, max_connections_per_address)",
            ),
            connections_waiting: gauge(
                "client_connections_waiting",
                "Client connections waiting on their client: idle between requests, or sending a head or the start of a body (shed first at a cap)",
            ),
            source_streams_open: gauge(
                "source_streams_open",
                "Event streams held open to virtual servers' legacy HTTP+SSE sources (one per source session), at the scrape",
            ),
            connections_closed: counter(
                "client_connections_closed_total",
                "Client connections closed by the gateway before a request was whole, by reason",
                &["reason"],
            ),
            config_reloads: counter(
                "config_reloads_total",
                "Config loads by outcome (applied, invalid, unchanged)",
                &["outcome"],
            ),
            config_generation: gauge(
                "config_generation",
                "Generation of the snapshot being served",
            ),
            config_last_reload_ok: gauge(
                "config_last_reload_ok",
                "1 if the last config load was applied or unchanged, 0 if it was refused",
            ),
            control_connected: gauge(
                "control_connected",
                "1 while the last call to the control process succeeded",
            ),
            control_staleness: gauge(
                "control_staleness_seconds",
                "Seconds since the gateway last heard from control (0 without control)",
            ),
            control_version: gauge(
                "control_config_version",
                "The control version of the config being served (0 before one)",
            ),
            approvals: counter(
                "approvals_total",
                "Calls held for approval, by outcome (approved, pending, denied, unavailable)",
                &["outcome"],
            ),
            token_exchanges: counter(
                "token_exchanges_total",
                "Caller tokens exchanged for an upstream's, by upstream and outcome (exchanged, cached, exchange_refused, exchange_unreachable, exchange_bad_answer, no_subject_token)",
                &["upstream", "outcome"],
            ),
            audit_ship_dropped: reg.count(
                "audit_ship_dropped_total",
                "Audit events dropped because the backlog for control was full",
            ),
            audit_ship_backlog: gauge(
                "audit_ship_backlog",
                "Audit events waiting to be shipped to control",
            ),
            audit_shipped: reg.count("audit_shipped_total", "Audit events control acknowledged"),
            registry: reg.0.clone(),
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> Vec<u8> {
        self.request_body_bytes_held
            .set(i64::try_from(crate::bodies::held()).unwrap_or(i64::MAX));
        let mut out = Vec::with_capacity(16 * 1024);
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::error!(error = %e, "metrics encoding failed");
        }
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
