//! The audit store: batches shipped by gateways are stored in SQLite
//! (deduplicated by `event_id`), queried by tenant, subject, tool, decision
//! and time, trimmed to the retention period, and handed to the webhook.

use std::sync::Arc;

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
    /// Its place in its gateway's chain, and its hash.
    chain: Option<(sluice_config::chain::Link, String)>,
}

/// Where what was stored does not continue its chain.
#[derive(Default)]
struct ChainNews {
    gaps: u64,
    breaks: u64,
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
            let chain =
                sluice_config::chain::link(&e).map(|l| (l, sluice_config::chain::event_hash(&e)));
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
                chain,
            });
        }
        let (fresh, news) = self
            .db
            .call(move |c| {
                c.transaction(|tx| {
                let mut fresh = Vec::with_capacity(rows.len());
                let mut news = ChainNews::default();
                // Chains are extended read-then-write: one process at a time
                // per chain, locked in one order.
                let mut chains: Vec<&str> = rows
                    .iter()
                    .filter_map(|r| r.chain.as_ref().map(|(l, _)| l.id.as_str()))
                    .collect();
                chains.sort_unstable();
                chains.dedup();
                for id in chains {
                    tx.lock(&format!("chain:{id}"))?;
                }
                {
                    for r in rows {
                        let (chain_id, chain_seq) = r
                            .chain
                            .as_ref()
                            .map(|(l, _)| (l.id.clone(), l.seq as i64))
                            .unzip();
                        let n = tx.execute(
                            "INSERT INTO audit (event_id, time_ms, tenant, subject, upstream, target, method, decision, body, chain_id, chain_seq)
                             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
                             ON CONFLICT (event_id) DO NOTHING",
                            crate::params![
                                r.event_id, r.time_ms, r.tenant, r.subject, r.upstream, r.target, r.method,
                                r.decision, r.body, chain_id, chain_seq
                            ],
                        )?;
                        if n == 1 {
                            if let Some((link, hash)) = &r.chain {
                                extend_chain(tx, link, hash, &mut news)?;
                            }
                        }
                        fresh.push((n == 1).then_some(r.body));
                    }
                }
                Ok((fresh, news))
                })
            })
            .await?;
        if news.gaps + news.breaks > 0 {
            tracing::warn!(gaps = news.gaps, breaks = news.breaks, "audit events that do not continue their chain were stored; `sluice-control audit verify` says where");
        }
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
        m.with_label_values(&["chain_gap"]).inc_by(news.gaps);
        m.with_label_values(&["chain_break"]).inc_by(news.breaks);
        Ok(out)
    }

    /// Newest first. Unparseable time bounds are an error, not ignored.
    pub async fn query(&self, q: Query) -> Result<Vec<serde_json::Value>, QueryError> {
        let mut sql = String::from("SELECT body FROM audit WHERE 1 = 1");
        let mut args: Vec<crate::db::Value> = Vec::new();
        for (col, v) in [
            ("tenant", &q.tenant),
            ("subject", &q.subject),
            ("target", &q.tool),
            ("decision", &q.decision),
        ] {
            if let Some(v) = v.as_ref().filter(|v| !v.is_empty()) {
                sql.push_str(&format!(" AND {col} = ?{}", args.len() + 1));
                args.push(crate::db::Value::Text(v.clone()));
            }
        }
        for (op, v) in [(">=", &q.since), ("<=", &q.until)] {
            if let Some(v) = v.as_ref().filter(|v| !v.is_empty()) {
                let ms = parse_rfc3339(v).ok_or(QueryError::BadTime)?;
                sql.push_str(&format!(" AND time_ms {op} ?{}", args.len() + 1));
                args.push(crate::db::Value::Int(ms));
            }
        }
        sql.push_str(&format!(
            " ORDER BY time_ms DESC, event_id DESC LIMIT ?{}",
            args.len() + 1
        ));
        args.push(crate::db::Value::Int(
            q.limit.unwrap_or(100).clamp(1, 1000) as i64
        ));
        let bodies = self
            .db
            .call(move |c| {
                let params: Vec<&dyn crate::db::ToParam> =
                    args.iter().map(|a| a as &dyn crate::db::ToParam).collect();
                c.query(&sql, &params)?
                    .iter()
                    .map(|r| r.get::<String>(0))
                    .collect::<Result<Vec<_>, _>>()
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
            .call(move |c| {
                c.execute(
                    "DELETE FROM audit WHERE time_ms < ?1",
                    crate::params![cutoff],
                )
            })
            .await
            .map(|n| n as usize)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("since/until must be RFC 3339 UTC, e.g. 2026-11-21T10:00:00Z")]
    BadTime,
    #[error(transparent)]
    Db(#[from] DbError),
}

/// Move the chain's head to a stored event: one that follows the head but
/// does not name its hash is a break, one past the next place a gap. A late
/// event (behind the head) leaves it.
fn extend_chain(
    tx: &mut crate::db::Conn,
    link: &sluice_config::chain::Link,
    hash: &str,
    news: &mut ChainNews,
) -> Result<(), DbError> {
    let head: Option<(i64, String)> = tx
        .query_opt(
            "SELECT seq, hash FROM audit_chains WHERE id = ?1",
            crate::params![link.id],
        )?
        .map(|r| Ok::<_, DbError>((r.get(0)?, r.get(1)?)))
        .transpose()?;
    let seq = link.seq as i64;
    match &head {
        Some((h, _)) if *h >= seq => return Ok(()),
        Some((h, h_hash)) if *h + 1 == seq => news.breaks += u64::from(link.prev != *h_hash),
        Some(_) => news.gaps += 1,
        None => news.gaps += u64::from(seq != 1),
    }
    tx.execute(
        "INSERT INTO audit_chains (id, seq, hash) VALUES (?1, ?2, ?3)
         ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash",
        crate::params![link.id, seq, hash],
    )?;
    Ok(())
}

impl AuditStore {
    /// Check the stored chains (events with `time` in `since..=until`, RFC
    /// 3339; none: all). Against the heads recorded at ingest only when the
    /// range runs to the end.
    pub async fn verify(
        &self,
        since: Option<&str>,
        until: Option<&str>,
    ) -> Result<sluice_config::chain::Report, QueryError> {
        let bound = |b: Option<&str>| match b {
            None => Ok(None),
            Some(s) => parse_rfc3339(s).map(Some).ok_or(QueryError::BadTime),
        };
        let (since, until) = (bound(since)?, bound(until)?);
        let to_end = until.is_none();
        let (bodies, heads) = self
            .db
            .call(move |c| {
                let bodies = c
                    .query(
                        "SELECT body FROM audit WHERE time_ms >= ?1 AND time_ms <= ?2",
                        crate::params![since.unwrap_or(i64::MIN), until.unwrap_or(i64::MAX)],
                    )?
                    .iter()
                    .map(|r| r.get::<String>(0))
                    .collect::<Result<Vec<String>, _>>()?;
                let mut heads = std::collections::BTreeMap::new();
                if to_end {
                    for r in c.query("SELECT id, seq, hash FROM audit_chains", crate::params![])? {
                        heads.insert(r.get::<String>(0)?, (r.get::<i64>(1)? as u64, r.get(2)?));
                    }
                }
                Ok((bodies, heads))
            })
            .await?;
        let events = bodies
            .iter()
            .filter_map(|b| serde_json::from_str::<serde_json::Value>(b).ok());
        Ok(sluice_config::chain::verify(events, &heads))
    }
}

/// `sluice-control audit verify`: the store's chains (or an exported
/// file's), a line per problem and a summary on stdout; whether whole.
pub async fn verify_cli(
    settings: &crate::settings::Settings,
    file: Option<&std::path::Path>,
    (since, until): (Option<&str>, Option<&str>),
) -> anyhow::Result<bool> {
    let report = match file {
        Some(path) => {
            let text = std::fs::read_to_string(path)?;
            let mut events = Vec::new();
            for (n, line) in text
                .lines()
                .enumerate()
                .filter(|(_, l)| !l.trim().is_empty())
            {
                let v: serde_json::Value = serde_json::from_str(line)
                    .map_err(|e| anyhow::anyhow!("{}:{}: {e}", path.display(), n + 1))?;
                events.push(v);
            }
            sluice_config::chain::verify(events, &Default::default())
        }
        None => {
            let store =
                AuditStore::new(Db::connect(&settings.database).await?, Metrics::new(), None);
            store.verify(since, until).await?
        }
    };
    for p in &report.problems {
        println!("{p}");
    }
    println!(
        "{} events in {} chains checked, {} without a chain: {}",
        report.checked,
        report.chains,
        report.unchained,
        if report.problems.is_empty() {
            "whole".to_owned()
        } else {
            format!("{} problems", report.problems.len())
        }
    );
    Ok(report.problems.is_empty())
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

    /// `n` events of one chain, as a gateway stamps them.
    fn chained(n: u64) -> Vec<serde_json::Value> {
        let now = crate::db::rfc3339(now_ms());
        let mut prev = String::new();
        (1..=n)
            .map(|seq| {
                let mut e = event(&format!("e{seq}"), &now, "bob");
                e["latency_ms"] = json!(1.5);
                e["chain"] = json!({"id": "gw-1", "seq": seq, "prev": prev});
                prev = sluice_config::chain::event_hash(&e);
                e
            })
            .collect()
    }

    async fn tamper(store: &AuditStore, sql: &'static str) {
        store.db.call(move |c| c.batch(sql)).await.expect("tamper");
    }

    #[tokio::test]
    async fn the_store_says_where_an_event_was_removed_or_altered() {
        let dir = tempfile::tempdir().expect("dir");
        let db = Db::open(&dir.path().join("c.db")).expect("db");
        let m = Metrics::new();
        let store = AuditStore::new(db, m.clone(), None);
        let events = chained(6);
        // Shipped in two batches, the second twice (a retry).
        store.ingest(events[..3].to_vec()).await.expect("ingest");
        store.ingest(events[3..].to_vec()).await.expect("ingest");
        let again = store.ingest(events[3..].to_vec()).await.expect("ingest");
        assert_eq!(again.duplicates, 3);
        let whole = store.verify(None, None).await.expect("verify");
        assert!(whole.problems.is_empty(), "{:?}", whole.problems);
        assert_eq!((whole.checked, whole.chains), (6, 1));
        assert_eq!(m.audit_events.with_label_values(&["chain_break"]).get(), 0);

        // Someone edits event 2 and deletes event 4 and the last one.
        tamper(
            &store,
            "UPDATE audit SET body = replace(body, '\"bob\"', '\"eve\"') WHERE event_id = 'e2';
             DELETE FROM audit WHERE event_id IN ('e4', 'e6');",
        )
        .await;
        let said: Vec<String> = store
            .verify(None, None)
            .await
            .expect("verify")
            .problems
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            said,
            [
                "chain gw-1: event 2 (e2) is not the event that was chained: altered",
                "chain gw-1: event 4 is missing",
                "chain gw-1: event 6 is missing",
            ],
            "{said:?}"
        );

        // An event that does not continue its chain is counted on arrival.
        let mut forged = chained(7).pop().expect("seventh");
        forged["chain"]["prev"] = json!("0".repeat(64));
        store.ingest(vec![forged]).await.expect("ingest");
        assert_eq!(m.audit_events.with_label_values(&["chain_break"]).get(), 1);
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
