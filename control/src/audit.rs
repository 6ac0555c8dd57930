//! The audit store: batches shipped by gateways are stored in SQLite
//! (deduplicated by `event_id`), queried by tenant, subject, tool, decision
//! and time, trimmed to the retention period, and handed to the webhook.

use std::sync::Arc;

use rusqlite::params_from_iter;
use serde::{Deserialize, Serialize};

use crate::db::{now_ms, parse_rfc3339, Db, DbError};
use crate::metrics::Metrics;
use crate::webhook::Webhook;

/// Longest event accepted, in bytes of JSON.
const MAX_EVENT_BYTES: usize = 256 * 1024;

pub struct AuditStore {
    db: Db,
    metrics: Metrics,
    webhook: Option<Arc<Webhook>>,
}

#[derive(Debug, Default, Serialize)]
pub struct Ingested {
    pub stored: usize,
    pub duplicates: usize,
    pub invalid: usize,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Query {
    pub tenant: Option<String>,
    pub subject: Option<String>,
    /// The tool (or resource, prompt, model) name.
    pub tool: Option<String>,
    pub decision: Option<String>,
    /// RFC 3339 bounds, inclusive.
    pub since: Option<String>,
    pub until: Option<String>,
    pub limit: Option<usize>,
}

struct Row {
    event_id: String,
    time_ms: i64,
    tenant: Option<String>,
    subject: Option<String>,
    upstream: Option<String>,
    target: Option<String>,
    method: Option<String>,
    decision: Option<String>,
    body: String,
}

impl AuditStore {
    pub fn new(db: Db, metrics: Metrics, webhook: Option<Arc<Webhook>>) -> Self {
        Self {
            db,
            metrics,
            webhook,
        }
    }

    /// Store a batch; events already stored (a gateway retrying) are counted
    /// as duplicates and not stored or forwarded again.
    pub async fn ingest(&self, events: Vec<serde_json::Value>) -> Result<Ingested, DbError> {
        let mut out = Ingested::default();
        let mut rows = Vec::with_capacity(events.len());
        for e in events {
            let body = e.to_string();
            let s = |k: &str| e.get(k).and_then(|v| v.as_str()).map(str::to_owned);
            let (Some(event_id), Some(time_ms)) = (
                s("event_id").filter(|id| !id.is_empty() && id.len() <= 64),
                s("time").as_deref().and_then(parse_rfc3339),
            ) else {
                out.invalid += 1;
                continue;
            };
            if body.len() > MAX_EVENT_BYTES {
                out.invalid += 1;
                continue;
            }
            rows.push(Row {
                event_id,
                time_ms,
                tenant: s("tenant"),
                subject: s("subject"),
                upstream: s("upstream"),
                target: s("target"),
                method: s("method"),
                decision: s("decision"),
                body,
            });
        }
        let fresh = self
            .db
            .call(move |c| {
                let tx = c.transaction()?;
                let mut fresh = Vec::with_capacity(rows.len());
                {
                    let mut st = tx.prepare_cached(
                        "INSERT OR IGNORE INTO audit (event_id, time_ms, tenant, subject, upstream, target, method, decision, body)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                    )?;
                    for r in rows {
                        let n = st.execute(rusqlite::params![
                            r.event_id, r.time_ms, r.tenant, r.subject, r.upstream, r.target, r.method,
                            r.decision, r.body
                        ])?;
                        fresh.push((n == 1).then_some(r.body));
                    }
                }
                tx.commit()?;
                Ok(fresh)
            })
            .await?;
        for f in fresh {
            match f {
                Some(body) => {
                    out.stored += 1;
                    if let Some(w) = &self.webhook {
                        w.enqueue(body);
                    }
                }
                None => out.duplicates += 1,
            }
        }
        let m = &self.metrics.audit_events;
        m.with_label_values(&["stored"]).inc_by(out.stored as u64);
        m.with_label_values(&["duplicate"])
            .inc_by(out.duplicates as u64);
        m.with_label_values(&["invalid"]).inc_by(out.invalid as u64);
        Ok(out)
    }

    /// Newest first. Unparseable time bounds are an error, not ignored.
    pub async fn query(&self, q: Query) -> Result<Vec<serde_json::Value>, QueryError> {
        let mut sql = String::from("SELECT body FROM audit WHERE 1 = 1");
        let mut args: Vec<rusqlite::types::Value> = Vec::new();
        for (col, v) in [
            ("tenant", &q.tenant),
            ("subject", &q.subject),
            ("target", &q.tool),
            ("decision", &q.decision),
        ] {
            if let Some(v) = v.as_ref().filter(|v| !v.is_empty()) {
                sql.push_str(&format!(" AND {col} = ?"));
                args.push(v.clone().into());
            }
        }
        for (op, v) in [(">=", &q.since), ("<=", &q.until)] {
            if let Some(v) = v.as_ref().filter(|v| !v.is_empty()) {
                let ms = parse_rfc3339(v).ok_or(QueryError::BadTime)?;
                sql.push_str(&format!(" AND time_ms {op} ?"));
                args.push(ms.into());
            }
        }
        sql.push_str(" ORDER BY time_ms DESC, event_id DESC LIMIT ?");
        args.push((q.limit.unwrap_or(100).clamp(1, 1000) as i64).into());
        let bodies = self
            .db
            .call(move |c| {
                let mut st = c.prepare(&sql)?;
                let rows = st.query_map(params_from_iter(args), |r| r.get::<_, String>(0))?;
                rows.collect::<rusqlite::Result<Vec<_>>>()
            })
            .await?;
        Ok(bodies
            .iter()
            .filter_map(|b| serde_json::from_str(b).ok())
            .collect())
    }

    /// Delete events older than `retention`.
    pub async fn trim(&self, retention: std::time::Duration) -> Result<usize, DbError> {
        let cutoff = now_ms() - retention.as_millis() as i64;
        self.db
            .call(move |c| c.execute("DELETE FROM audit WHERE time_ms < ?1", [cutoff]))
            .await
    }
}

#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("since/until must be RFC 3339 UTC, e.g. 2026-11-21T10:00:00Z")]
    BadTime,
    #[error(transparent)]
    Db(#[from] DbError),
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(id: &str, time: &str, subject: &str) -> serde_json::Value {
        json!({"event_id": id, "time": time, "subject": subject, "tenant": "acme",
               "target": "refund", "decision": "allow", "method": "tools/call"})
    }

    #[tokio::test]
    async fn retention_deletes_only_what_is_older_than_the_period() {
        let dir = tempfile::tempdir().expect("dir");
        let db = Db::open(&dir.path().join("c.db")).expect("db");
        let store = AuditStore::new(db, Metrics::new(), None);
        let now = crate::db::rfc3339(now_ms());
        let old = crate::db::rfc3339(now_ms() - 40 * 86_400_000);
        let n = store
            .ingest(vec![
                event("a", &old, "bob"),
                event("b", &now, "bob"),
                json!({"no": "id"}),
            ])
            .await
            .expect("ingest");
        assert_eq!((n.stored, n.invalid), (2, 1));
        let deleted = store
            .trim(std::time::Duration::from_secs(30 * 86_400))
            .await
            .expect("trim");
        assert_eq!(deleted, 1);
        let left = store.query(Query::default()).await.expect("query");
        assert_eq!(left.len(), 1);
        assert_eq!(left[0]["event_id"], "b");
    }

    #[tokio::test]
    async fn a_full_webhook_backlog_drops_the_oldest_and_counts_them() {
        let m = Metrics::new();
        let w = crate::webhook::Webhook::new("http://127.0.0.1:9/".into(), None, 2, m.clone());
        for i in 0..5 {
            w.enqueue(format!("{{\"event_id\":\"{i}\"}}"));
        }
        assert_eq!(w.backlog_len(), 2);
        assert_eq!(m.webhook_dropped.get(), 3);
    }
}
