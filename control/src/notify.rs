//! Announces new approval requests in Slack: one message per request, with
//! the request's facts and Approve / Deny buttons whose presses come back to
//! `POST /slack/interactions`. Posting never blocks filing: messages wait in
//! a bounded queue (overflow counted), each retried a few times.

use std::time::Duration;

use serde_json::json;
use sluice_config::wire::Approval;
use tokio::sync::mpsc;

use crate::metrics::Metrics;

const QUEUE: usize = 1000;
const ATTEMPTS: u32 = 4;

#[derive(Clone)]
pub struct SlackNotifier {
    tx: mpsc::Sender<String>,
    metrics: Metrics,
}

impl SlackNotifier {
    /// Start the poster for `url` on the current runtime.
    pub fn start(url: String, metrics: Metrics) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(post_all(url, rx, metrics.clone()));
        Self { tx, metrics }
    }

    pub fn announce(&self, a: &Approval) {
        if self.tx.try_send(message(a).to_string()).is_err() {
            self.metrics
                .slack_messages
                .with_label_values(&["dropped"])
                .inc();
        }
    }
}

/// The Slack message for a new request (Block Kit).
pub fn message(a: &Approval) -> serde_json::Value {
    let args = serde_json::to_string_pretty(&a.arguments).unwrap_or_default();
    let args: String = args.chars().take(2500).collect();
    let text = format!(
        "*Approval requested* by `{}`{} for `{}/{}` (rule `{}`), expires {}",
        a.subject,
        a.tenant
            .as_deref()
            .map_or(String::new(), |t| format!(" (tenant `{t}`)")),
        a.upstream,
        a.tool,
        a.rule,
        a.expires
    );
    json!({
        "text": format!("Approval requested by {} for {}/{}", a.subject, a.upstream, a.tool),
        "blocks": [
            { "type": "section", "text": { "type": "mrkdwn", "text": text } },
            { "type": "section", "text": { "type": "mrkdwn", "text": format!("```{args}```") } },
            { "type": "actions", "block_id": format!("approval-{}", a.id), "elements": [
                { "type": "button", "style": "primary", "action_id": "approve", "value": a.id,
                  "text": { "type": "plain_text", "text": "Approve" } },
                { "type": "button", "style": "danger", "action_id": "deny", "value": a.id,
                  "text": { "type": "plain_text", "text": "Deny" } },
                { "type": "button", "action_id": "open", "url": a.inbox_url,
                  "text": { "type": "plain_text", "text": "Open in inbox" } }
            ]}
        ]
    })
}

async fn post_all(url: String, mut rx: mpsc::Receiver<String>, metrics: Metrics) {
    let client = match reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "Slack notifications disabled: no HTTP client");
            return;
        }
    };
    while let Some(body) = rx.recv().await {
        let mut backoff = Duration::from_millis(200);
        let mut sent = false;
        for _ in 0..ATTEMPTS {
            let r = client
                .post(&url)
                .header("content-type", "application/json")
                .body(body.clone())
                .send()
                .await;
            match r {
                Ok(resp) if resp.status().is_success() => {
                    sent = true;
                    break;
                }
                Ok(resp) => tracing::warn!(status = %resp.status(), "Slack notification refused"),
                // Without the URL: it is a secret.
                Err(e) => tracing::warn!(error = %e.without_url(), "Slack notification failed"),
            }
            tokio::time::sleep(backoff).await;
            backoff *= 2;
        }
        let outcome = if sent { "sent" } else { "failed" };
        metrics.slack_messages.with_label_values(&[outcome]).inc();
    }
}
