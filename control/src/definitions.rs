//! Tool definitions from pinned and screened sources: what gateways report
//! (trusted on first use, new, changed, failed screening), the operators'
//! decisions on them, and the pins those decisions make. A pin is one
//! definition digest per upstream and tool; the pins ride in every config
//! version control publishes (`Publisher::offer` adds them), so every
//! gateway serves exactly the approved definitions.

use serde::Serialize;
use serde_json::Value;
use sluice_config::wire::{DefinitionSeen, Finding};

use crate::db::{now_ms, rfc3339, Db, DbError};
use crate::metrics::Metrics;

/// Largest definition kept, as JSON bytes.
const MAX_DEFINITION: usize = 256 * 1024;

/// Who a trust-on-first-use pin is recorded as decided by.
pub const FIRST_USE: &str = "trust-on-first-use";

#[derive(Debug, Clone, Serialize)]
pub struct Definition {
    pub id: i64,
    pub upstream: String,
    pub tool: String,
    pub digest: String,
    pub definition: Value,
    /// `pending`, `pinned`, `rejected` or `superseded`.
    pub state: String,
    /// What the reporting gateway found.
    pub finding: String,
    pub reason: Option<String>,
    pub gateway: String,
    pub first_seen: String,
    pub decided_by: Option<String>,
    pub decided_at: Option<String>,
    /// The definition pinned for the same tool now, to diff against.
    pub pinned: Option<Value>,
}

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("the digest is not the definition's")]
    Digest,
    #[error("the definition is larger than {MAX_DEFINITION} bytes")]
    TooLarge,
    #[error(transparent)]
    Db(#[from] DbError),
}

#[derive(Debug, thiserror::Error)]
pub enum DecideError {
    #[error("no such definition")]
    NotFound,
    #[error("already {0}")]
    Decided(String),
    #[error(transparent)]
    Db(#[from] DbError),
}

#[derive(Clone)]
pub struct Definitions {
    db: Db,
    metrics: Metrics,
}

impl Definitions {
    pub fn new(db: Db, metrics: Metrics) -> Self {
        Self { db, metrics }
    }

    /// Record what a gateway saw. Returns whether the pins changed (a
    /// first-use pin was taken), so a new config version is due.
    pub async fn report(&self, seen: DefinitionSeen) -> Result<bool, ReportError> {
        if sluice_config::definition_digest(&seen.definition) != seen.digest {
            return Err(ReportError::Digest);
        }
        let definition = seen.definition.to_string();
        if definition.len() > MAX_DEFINITION {
            return Err(ReportError::TooLarge);
        }
        let finding = seen.finding;
        let reason = seen
            .reason
            .map(|r| r.chars().take(1000).collect::<String>());
        let now = now_ms();
        let pinned = self
            .db
            .call(move |c| {
                c.transaction(|tx| {
                tx.lock(&format!("definitions:{}", seen.upstream))?;
                let known: bool = tx.query_one(
                    "SELECT EXISTS(SELECT 1 FROM definitions WHERE upstream = ?1 AND tool = ?2 AND digest = ?3)",
                    crate::params![seen.upstream, seen.tool, seen.digest],
                )?.get(0)?;
                if known {
                    return Ok(None);
                }
                let any_pin: bool = tx.query_one(
                    "SELECT EXISTS(SELECT 1 FROM definitions WHERE upstream = ?1 AND tool = ?2 AND state = 'pinned')",
                    crate::params![seen.upstream, seen.tool],
                )?.get(0)?;
                // First use pins only where nothing is pinned: a gateway that
                // trusted a definition another already pinned otherwise is
                // told so by the next version, and this one waits.
                let first_use = finding == Finding::Trusted && !any_pin;
                let (state, by) = if first_use {
                    ("pinned", Some(FIRST_USE))
                } else {
                    ("pending", None)
                };
                tx.execute(
                    "INSERT INTO definitions (upstream, tool, digest, definition, finding, reason, state, gateway, first_seen_ms, decided_by, decided_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                    crate::params![
                        seen.upstream, seen.tool, seen.digest, definition, finding.as_str(), reason,
                        state, seen.gateway, now, by, by.map(|_| now)
                    ],
                )?;
                Ok(Some((first_use, seen.upstream, seen.tool)))
                })
            })
            .await?;
        let Some((first_use, upstream, tool)) = pinned else {
            return Ok(false);
        };
        self.metrics
            .definitions
            .with_label_values(&[finding.as_str()])
            .inc();
        if first_use {
            tracing::info!(%upstream, %tool, "tool definition pinned on first use");
        } else {
            tracing::warn!(%upstream, %tool, finding = finding.as_str(), "tool definition waits for an operator");
        }
        Ok(first_use)
    }

    /// Definitions in `state` (all when `None`), newest first, each with
    /// the definition pinned for its tool now.
    pub async fn list(&self, state: Option<&str>) -> Result<Vec<Definition>, DbError> {
        let state = state.map(str::to_owned);
        self.db
            .call(move |c| {
                let rows = c.query(
                    "SELECT d.id, d.upstream, d.tool, d.digest, d.definition, d.state, d.finding, d.reason,
                            d.gateway, d.first_seen_ms, d.decided_by, d.decided_ms,
                            (SELECT p.definition FROM definitions p
                              WHERE p.upstream = d.upstream AND p.tool = d.tool AND p.state = 'pinned' AND p.id <> d.id)
                     FROM definitions d WHERE CAST(?1 AS TEXT) IS NULL OR d.state = ?1
                     ORDER BY d.id DESC LIMIT 500",
                    crate::params![state],
                )?;
                rows.iter().map(|r| {
                    let json = |s: String| serde_json::from_str(&s).unwrap_or(Value::Null);
                    Ok(Definition {
                        id: r.get(0)?,
                        upstream: r.get(1)?,
                        tool: r.get(2)?,
                        digest: r.get(3)?,
                        definition: json(r.get(4)?),
                        state: r.get(5)?,
                        finding: r.get(6)?,
                        reason: r.get(7)?,
                        gateway: r.get(8)?,
                        first_seen: rfc3339(r.get(9)?),
                        decided_by: r.get(10)?,
                        decided_at: r.get::<Option<i64>>(11)?.map(rfc3339),
                        pinned: r.get::<Option<String>>(12)?.map(json),
                    })
                }).collect()
            })
            .await
    }

    /// Pin (approve) or reject definition `id`. Pinning supersedes the
    /// tool's previous pin; a rejected definition stays quarantined and may
    /// be pinned later.
    pub async fn decide(&self, id: i64, by: &str, pin: bool) -> Result<(), DecideError> {
        let by = by.to_owned();
        let now = now_ms();
        let outcome = self
            .db
            .call(move |c| {
                c.transaction(|tx| {
                tx.lock("definitions-decide")?;
                let row = tx.query_opt(
                    "SELECT upstream, tool, state FROM definitions WHERE id = ?1",
                    crate::params![id],
                )?;
                let Some(row) = row else {
                    return Ok(Err(DecideError::NotFound));
                };
                let (upstream, tool, state): (String, String, String) =
                    (row.get(0)?, row.get(1)?, row.get(2)?);
                let open = if pin {
                    state == "pending" || state == "rejected" || state == "superseded"
                } else {
                    state == "pending"
                };
                if !open {
                    return Ok(Err(DecideError::Decided(state)));
                }
                if pin {
                    tx.execute(
                        "UPDATE definitions SET state = 'superseded' WHERE upstream = ?1 AND tool = ?2 AND state = 'pinned'",
                        crate::params![upstream, tool],
                    )?;
                }
                let next = if pin { "pinned" } else { "rejected" };
                tx.execute(
                    "UPDATE definitions SET state = ?1, decided_by = ?2, decided_ms = ?3 WHERE id = ?4",
                    crate::params![next, by, now, id],
                )?;
                Ok(Ok(()))
                })
            })
            .await?;
        outcome?;
        let decision = if pin { "pinned" } else { "rejected" };
        tracing::info!(id, decision, "tool definition decided");
        self.metrics
            .definitions
            .with_label_values(&[decision])
            .inc();
        Ok(())
    }

    /// Every pin: `(upstream, tool, digest)`, in a stable order.
    pub async fn pins(db: &Db) -> Result<Vec<(String, String, String)>, DbError> {
        db.call(|c| {
            c.query(
                "SELECT upstream, tool, digest FROM definitions WHERE state = 'pinned' ORDER BY upstream, tool",
                crate::params![],
            )?
            .iter()
            .map(|r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .collect()
        })
        .await
    }
}

/// `yaml` with `pins` added: the config's own pins kept unless control
/// pins the same tool. A config without a `pins` section keeps its text
/// as written, the section appended.
pub fn with_pins(yaml: &str, pins: &[(String, String, String)]) -> Result<String, String> {
    if pins.is_empty() {
        return Ok(yaml.to_owned());
    }
    let doc: serde_yaml::Value = serde_yaml::from_str(yaml).map_err(|e| e.to_string())?;
    let q = |s: &str| serde_json::to_string(s).unwrap_or_default();
    let Some(own) = doc.get("pins") else {
        let mut out = String::with_capacity(yaml.len() + pins.len() * 120);
        out.push_str(yaml);
        if !yaml.ends_with('\n') {
            out.push('\n');
        }
        out.push_str("# Pins approved in sluice-control.\npins:\n");
        for (u, t, d) in pins {
            out.push_str(&format!(
                "  - {{upstream: {}, tool: {}, digest: {}}}\n",
                q(u),
                q(t),
                q(d)
            ));
        }
        return Ok(out);
    };
    let mut merged: Vec<serde_yaml::Value> = own
        .as_sequence()
        .map(|s| {
            s.iter()
                .filter(|p| {
                    let (u, t) = (p.get("upstream"), p.get("tool"));
                    !pins.iter().any(|(pu, pt, _)| {
                        u.and_then(|v| v.as_str()) == Some(pu)
                            && t.and_then(|v| v.as_str()) == Some(pt)
                    })
                })
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    for (u, t, d) in pins {
        let mut m = serde_yaml::Mapping::new();
        m.insert("upstream".into(), u.as_str().into());
        m.insert("tool".into(), t.as_str().into());
        m.insert("digest".into(), d.as_str().into());
        merged.push(serde_yaml::Value::Mapping(m));
    }
    let mut doc = doc;
    if let Some(m) = doc.as_mapping_mut() {
        m.insert("pins".into(), serde_yaml::Value::Sequence(merged));
    }
    serde_yaml::to_string(&doc).map_err(|e| e.to_string())
}

/// A line diff of two texts (longest common subsequence): each line with
/// `' '` (both), `'-'` (old only) or `'+'` (new only). Texts longer than
/// 2,000 lines are shown whole, old then new.
pub fn line_diff<'a>(old: &'a str, new: &'a str) -> Vec<(char, &'a str)> {
    let a: Vec<&str> = old.lines().collect();
    let b: Vec<&str> = new.lines().collect();
    if a.len() > 2000 || b.len() > 2000 {
        return a
            .iter()
            .map(|l| ('-', *l))
            .chain(b.iter().map(|l| ('+', *l)))
            .collect();
    }
    // lcs[i][j]: the longest common subsequence of a[i..] and b[j..].
    let mut lcs = vec![vec![0u32; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j, mut out) = (0, 0, Vec::with_capacity(a.len() + b.len()));
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            out.push((' ', a[i]));
            i += 1;
            j += 1;
        } else if j < b.len() && (i == a.len() || lcs[i][j + 1] >= lcs[i + 1][j]) {
            out.push(('+', b[j]));
            j += 1;
        } else {
            out.push(('-', a[i]));
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(tool: &str, description: &str, finding: Finding) -> DefinitionSeen {
        let definition = serde_json::json!({"name": tool, "description": description});
        DefinitionSeen {
            gateway: "gw-1".into(),
            upstream: "sdk".into(),
            tool: tool.into(),
            digest: sluice_config::definition_digest(&definition),
            definition,
            finding,
            reason: None,
        }
    }

    #[tokio::test]
    async fn first_use_pins_once_and_a_change_waits_for_an_operator() {
        let dir = tempfile::tempdir().expect("dir");
        let db = Db::open(&dir.path().join("c.db")).expect("db");
        let d = Definitions::new(db.clone(), Metrics::new());
        // Trusted on first use: pinned by control, a new version due.
        assert!(d
            .report(seen("pay", "Pay.", Finding::Trusted))
            .await
            .expect("report"));
        // The same again, or another gateway's first use of another
        // definition of a pinned tool: nothing new is pinned.
        assert!(!d
            .report(seen("pay", "Pay.", Finding::Trusted))
            .await
            .expect("report"));
        assert!(!d
            .report(seen("pay", "Pay more.", Finding::Trusted))
            .await
            .expect("report"));
        let pins = Definitions::pins(&db).await.expect("pins");
        assert_eq!(pins.len(), 1);
        assert_eq!(pins[0].2, seen("pay", "Pay.", Finding::Trusted).digest);
        let waiting = d.list(Some("pending")).await.expect("list");
        assert_eq!(waiting.len(), 1);
        assert_eq!(
            waiting[0].pinned.as_ref().map(|p| p["description"].clone()),
            Some("Pay.".into())
        );
        // Approving the change supersedes the first pin; a forged digest is refused.
        d.decide(waiting[0].id, "carol", true)
            .await
            .expect("decide");
        let pins = Definitions::pins(&db).await.expect("pins");
        assert_eq!(pins[0].2, seen("pay", "Pay more.", Finding::Changed).digest);
        assert!(matches!(
            d.decide(waiting[0].id, "carol", false).await,
            Err(DecideError::Decided(_))
        ));
        let mut forged = seen("refund", "Refund.", Finding::New);
        forged.digest = "0".repeat(64);
        assert!(matches!(d.report(forged).await, Err(ReportError::Digest)));
    }

    #[test]
    fn a_diff_marks_what_changed() {
        let d = line_diff("a\nb\nc\n", "a\nB\nc\nd\n");
        assert_eq!(
            d,
            vec![(' ', "a"), ('+', "B"), ('-', "b"), (' ', "c"), ('+', "d")]
        );
    }

    #[test]
    fn pins_are_appended_or_merged() {
        let pins = vec![("demo".to_owned(), "pay".to_owned(), "a".repeat(64))];
        let plain = "upstreams: []\n# kept\n";
        let out = with_pins(plain, &pins).expect("merged");
        assert!(out.starts_with(plain), "{out}");
        let raw = sluice_config::RawConfig::from_yaml(&out).expect("parses");
        assert_eq!(raw.pins.len(), 1);
        let own = format!(
            "pins:\n  - {{upstream: demo, tool: pay, digest: {}}}\n  - {{upstream: demo, tool: echo, digest: {}}}\n",
            "b".repeat(64),
            "c".repeat(64)
        );
        let out = with_pins(&own, &pins).expect("merged");
        let raw = sluice_config::RawConfig::from_yaml(&out).expect("parses");
        let got: Vec<(&str, &str)> = raw
            .pins
            .iter()
            .map(|p| (p.tool.as_str(), &p.digest[..1]))
            .collect();
        assert_eq!(got, vec![("echo", "c"), ("pay", "a")]);
        assert_eq!(with_pins(plain, &[]).expect("same"), plain);
    }
}
