//! Control's Prometheus metrics, served on `/metrics`.

use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts, Registry};

#[derive(Clone)]
pub struct Metrics {
    pub registry: Registry,
    /// Config candidates by outcome: published, unchanged, refused.
    pub config_offers: IntCounterVec,
    pub config_version: IntGauge,
    /// Approval requests filed, and decisions by outcome.
    pub approvals: IntCounterVec,
    pub audit_events: IntCounterVec,
    pub webhook_delivered: IntCounter,
    pub webhook_failures: IntCounter,
    pub webhook_dropped: IntCounter,
    pub webhook_backlog: IntGauge,
    pub auth_failures: IntCounterVec,
    pub slack_messages: IntCounterVec,
    /// Tool definitions reported (by finding) and decided (pinned, rejected).
    pub definitions: IntCounterVec,
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let counter_vec = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), labels).unwrap_or_else(|e| {
                panic!("metric {name}: {e}") // static names: cannot fail
            });
            let _ = registry.register(Box::new(c.clone()));
            c
        };
        let counter = |name: &str, help: &str| {
            let c = IntCounter::new(name, help).unwrap_or_else(|e| panic!("metric {name}: {e}"));
            let _ = registry.register(Box::new(c.clone()));
            c
        };
        let gauge = |name: &str, help: &str| {
            let g = IntGauge::new(name, help).unwrap_or_else(|e| panic!("metric {name}: {e}"));
            let _ = registry.register(Box::new(g.clone()));
            g
        };
        Self {
            config_offers: counter_vec(
                "sluice_control_config_offers_total",
                "Config candidates read from the source, by outcome",
                &["outcome"],
            ),
            definitions: counter_vec(
                "sluice_control_definitions_total",
                "Tool definitions gateways reported, by finding (trusted, new, changed, screened), and decided (pinned, rejected)",
                &["event"],
            ),
            config_version: gauge(
                "sluice_control_config_version",
                "The version gateways are offered",
            ),
            approvals: counter_vec(
                "sluice_control_approvals_total",
                "Approval requests filed and decided, by event",
                &["event"],
            ),
            audit_events: counter_vec(
                "sluice_control_audit_events_total",
                "Audit events received from gateways, by outcome (stored, duplicate, invalid)",
                &["outcome"],
            ),
            webhook_delivered: counter(
                "sluice_control_webhook_delivered_total",
                "Events delivered to the audit webhook",
            ),
            webhook_failures: counter(
                "sluice_control_webhook_failures_total",
                "Failed webhook deliveries (retried)",
            ),
            webhook_dropped: counter(
                "sluice_control_webhook_dropped_total",
                "Events dropped because the webhook backlog was full",
            ),
            webhook_backlog: gauge(
                "sluice_control_webhook_backlog",
                "Events waiting for webhook delivery",
            ),
            auth_failures: counter_vec(
                "sluice_control_auth_failures_total",
                "Refused credentials, by surface (gateway, user, slack)",
                &["surface"],
            ),
            slack_messages: counter_vec(
                "sluice_control_slack_messages_total",
                "Approval announcements to Slack, by outcome (sent, failed, dropped)",
                &["outcome"],
            ),
            registry,
        }
    }

    pub fn render(&self) -> String {
        use prometheus::Encoder;
        let mut out = Vec::new();
        let _ = prometheus::TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
