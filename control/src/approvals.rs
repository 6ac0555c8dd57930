//! The approvals store: requests filed by gateways, decisions by people,
//! and the one-time use of an approval. Every transition is a single
//! conditional `UPDATE`, so concurrent decisions end in exactly one final
//! state and an approval is used at most once. Records live in SQLite:
//! pending approvals survive a restart.

use std::sync::Arc;
use std::time::Duration;

use crate::db::{Conn, Row};
use crate::params;
use tokio::sync::watch;

use crate::db::{now_ms, random_id, rfc3339, Db, DbError, Topic};
use crate::metrics::Metrics;
use crate::settings::User;
use crate::webhook::Webhook;

/// What a gateway sends when a call needs approval (one definition, shared
/// with the gateway).
pub use sluice_config::wire::Filing;

/// Where an approval stands, and the record gateways and people are
/// answered with (one definition, shared with the gateway).
pub use sluice_config::wire::{Approval, ApprovalState as State};

/// A state as the store writes it; anything else reads as pending.
fn state_from_db(s: &str) -> State {
    match s {
        "approved" => State::Approved,
        "denied" => State::Denied,
        "expired" => State::Expired,
        _ => State::Pending,
    }
}

/// Why a decision was not taken.
#[derive(Debug, thiserror::Error)]
pub enum DecideError {
    #[error("no such approval")]
    NotFound,
    #[error("{0}")]
    Forbidden(&'static str),
    /// Someone else decided first, or it expired.
    #[error("already {}", .0.as_str())]
    Final(State),
    #[error(transparent)]
    Db(#[from] DbError),
}

#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("arguments hash does not match the arguments")]
    HashMismatch,
    #[error("{0} must not be empty")]
    Missing(&'static str),
    #[error(transparent)]
    Db(#[from] DbError),
}

pub struct Approvals {
    db: Db,
    /// Bumped on every change; waiters re-read when it moves.
    changes: watch::Sender<u64>,
    inbox: String,
    metrics: Metrics,
    webhook: Option<Arc<Webhook>>,
    slack: Option<crate::notify::SlackNotifier>,
}

const COLUMNS: &str =
    "id, state, tenant, subject, session, upstream, tool, tool_hash, arguments, args_hash,
    policy_version, rule, approvers, allow_self, gateway, request_id, created_ms, expires_ms,
    decided_by, decided_ms, reason, used_ms";

impl Approvals {
    pub fn new(
        db: Db,
        public_url: &str,
        metrics: Metrics,
        webhook: Option<Arc<Webhook>>,
        slack: Option<crate::notify::SlackNotifier>,
    ) -> Arc<Self> {
        Arc::new(Self {
            db,
            changes: watch::channel(0).0,
            inbox: format!("{public_url}/inbox"),
            metrics,
            webhook,
            slack,
        })
    }

    fn row(inbox: &str, r: &Row) -> Result<Approval, DbError> {
        let id: String = r.get(0)?;
        let args: String = r.get(8)?;
        let approvers: String = r.get(12)?;
        let used_ms: Option<i64> = r.get(21)?;
        Ok(Approval {
            inbox_url: format!("{inbox}#{id}"),
            id,
            state: state_from_db(&r.get::<String>(1)?),
            used: used_ms.is_some(),
            tenant: r.get(2)?,
            subject: r.get(3)?,
            session: r.get(4)?,
            upstream: r.get(5)?,
            tool: r.get(6)?,
            tool_hash: r.get(7)?,
            arguments: serde_json::from_str(&args).unwrap_or(serde_json::Value::Null),
            args_hash: r.get(9)?,
            policy_version: r.get(10)?,
            rule: r.get(11)?,
            approvers: serde_json::from_str(&approvers).unwrap_or_default(),
            allow_self_approval: r.get(13)?,
            gateway: r.get(14)?,
            request_id: r.get(15)?,
            created: rfc3339(r.get(16)?),
            expires: rfc3339(r.get(17)?),
            decided_by: r.get(18)?,
            decided: r.get::<Option<i64>>(19)?.map(rfc3339),
            reason: r.get(20)?,
            used_at: used_ms.map(rfc3339),
        })
    }

    /// Another control process changed an approval: waiters read again.
    pub fn changed_elsewhere(&self) {
        self.changes.send_modify(|v| *v += 1);
    }

    /// One record by id.
    fn one(c: &mut Conn, inbox: &str, id: &str) -> Result<Option<Approval>, DbError> {
        c.query_opt(
            &format!("SELECT {COLUMNS} FROM approvals WHERE id = ?1"),
            params![id],
        )?
        .map(|r| Self::row(inbox, &r))
        .transpose()
    }

    fn changed(&self, a: &Approval, event: &'static str) {
        self.changes.send_modify(|v| *v += 1);
        self.metrics.approvals.with_label_values(&[event]).inc();
        if let Some(w) = &self.webhook {
            let record = serde_json::json!({
                "type": "approval",
                "event_id": format!("{}-{event}", a.id),
                "event": event,
                "approval": a,
            });
            w.enqueue(record.to_string());
        }
    }

    /// File a request for `f`, or find the one already standing for the
    /// identical call (same caller, tool, tool definition and arguments):
    /// pending, approved and not yet used, or denied/expired and not yet
    /// reported to the caller (reported once, then a repeat files anew).
    pub async fn file(&self, f: Filing) -> Result<Approval, FileError> {
        if f.subject.is_empty() {
            return Err(FileError::Missing("subject"));
        }
        if f.tool.is_empty() || f.upstream.is_empty() {
            return Err(FileError::Missing("tool"));
        }
        let well_formed =
            f.args_hash.len() == 64 && f.args_hash.bytes().all(|b| b.is_ascii_hexdigit());
        if !well_formed
            || (!f.redacted && sluice_config::canonical_hash(&f.arguments) != f.args_hash)
        {
            return Err(FileError::HashMismatch);
        }
        let inbox = self.inbox.clone();
        let now = now_ms();
        let (approval, new) = self
            .db
            .call(move |c| {
                c.transaction(|tx| {
                // Find-or-file is read-then-write: one process at a time per
                // call.
                tx.lock(&format!("approval:{}:{}", f.subject, f.args_hash))?;
                let existing = tx
                    .query_opt(
                        &format!(
                            "SELECT {COLUMNS} FROM approvals
                             WHERE subject = ?1 AND upstream = ?2 AND tool = ?3 AND args_hash = ?4
                               AND tenant IS NOT DISTINCT FROM ?5 AND tool_hash IS NOT DISTINCT FROM ?6
                               AND ((state IN ('pending', 'approved') AND used_ms IS NULL AND expires_ms > ?7)
                                    OR (state IN ('denied', 'expired') AND reported_ms IS NULL))
                             ORDER BY created_ms DESC LIMIT 1"
                        ),
                        params![f.subject, f.upstream, f.tool, f.args_hash, f.tenant, f.tool_hash, now],
                    )?
                    .map(|r| Self::row(&inbox, &r))
                    .transpose()?;
                if let Some(a) = existing {
                    if matches!(a.state, State::Denied | State::Expired) {
                        tx.execute(
                            "UPDATE approvals SET reported_ms = ?2 WHERE id = ?1",
                            params![a.id, now],
                        )?;
                    }
                    return Ok((a, false));
                }
                let id = random_id();
                let expires = now + (f.expires_s.max(1) as i64) * 1000;
                tx.execute(
                    &format!(
                        "INSERT INTO approvals ({COLUMNS}) VALUES
                         (?1, 'pending', ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17,
                          NULL, NULL, NULL, NULL)"
                    ),
                    params![
                        id,
                        f.tenant,
                        f.subject,
                        f.session,
                        f.upstream,
                        f.tool,
                        f.tool_hash,
                        f.arguments.to_string(),
                        f.args_hash,
                        f.policy_version,
                        f.rule,
                        serde_json::to_string(&f.approvers).unwrap_or_else(|_| "[]".to_owned()),
                        f.allow_self_approval,
                        f.gateway,
                        f.request_id,
                        now,
                        expires
                    ],
                )?;
                let a = Self::one(tx, &inbox, &id)?.ok_or(DbError::Unavailable)?;
                tx.notify(Topic::Approvals, &id)?;
                Ok((a, true))
                })
            })
            .await?;
        if new {
            tracing::info!(id = %approval.id, tool = %approval.tool, subject = %approval.subject, "approval requested");
            self.changed(&approval, "filed");
            if let Some(s) = &self.slack {
                s.announce(&approval);
            }
        }
        Ok(approval)
    }

    pub async fn get(&self, id: &str) -> Result<Option<Approval>, DbError> {
        let inbox = self.inbox.clone();
        let id = id.to_owned();
        self.db.call(move |c| Self::one(c, &inbox, &id)).await
    }

    /// The record once it is no longer pending, or as it is when `wait`
    /// runs out.
    pub async fn wait(&self, id: &str, wait: Duration) -> Result<Option<Approval>, DbError> {
        let deadline = tokio::time::Instant::now() + wait;
        let mut rx = self.changes.subscribe();
        loop {
            rx.borrow_and_update();
            let a = self.get(id).await?;
            match &a {
                Some(x) if x.state == State::Pending => {}
                _ => return Ok(a),
            }
            if tokio::time::timeout_at(deadline, rx.changed())
                .await
                .is_err()
            {
                return Ok(a);
            }
        }
    }

    /// The caller was told of this denial or expiry: a repeat of the same
    /// call files a new request.
    pub async fn mark_reported(&self, id: &str) -> Result<(), DbError> {
        let id = id.to_owned();
        let now = now_ms();
        self.db
            .call(move |c| {
                c.execute(
                    "UPDATE approvals SET reported_ms = ?2
                     WHERE id = ?1 AND state IN ('denied', 'expired') AND reported_ms IS NULL",
                    params![id, now],
                )
            })
            .await?;
        Ok(())
    }

    /// List for the inbox: `view` is `pending`, `in_process` (approved, not
    /// yet used) or `completed`; only what `user` may see.
    pub async fn list(&self, view: &str, user: Option<&User>) -> Result<Vec<Approval>, DbError> {
        let filter = match view {
            "pending" => "state = 'pending'",
            "in_process" => "state = 'approved' AND used_ms IS NULL",
            _ => "(state IN ('denied', 'expired') OR used_ms IS NOT NULL)",
        };
        let inbox = self.inbox.clone();
        let all = self
            .db
            .call(move |c| {
                c.query(
                    &format!(
                        "SELECT {COLUMNS} FROM approvals WHERE {filter} ORDER BY created_ms DESC LIMIT 500"
                    ),
                    params![],
                )?
                .iter()
                .map(|r| Self::row(&inbox, r))
                .collect::<Result<Vec<_>, _>>()
            })
            .await?;
        Ok(all
            .into_iter()
            .filter(|a| user.is_none_or(|u| u.serves_tenant(a.tenant.as_deref())))
            .collect())
    }

    /// May `user` decide `a`? The reason when not.
    pub fn may_decide(user: &User, a: &Approval) -> Result<(), &'static str> {
        if !a.approvers.iter().any(|r| user.roles.contains(r)) {
            return Err("you hold none of the roles that may decide this approval");
        }
        if !user.serves_tenant(a.tenant.as_deref()) {
            return Err("this approval belongs to a tenant you do not serve");
        }
        if user.subject() == a.subject && !a.allow_self_approval {
            return Err("you may not decide your own request");
        }
        Ok(())
    }

    /// Approve or deny. Exactly one decision wins; later ones see `Final`.
    pub async fn decide(
        &self,
        id: &str,
        user: &User,
        approve: bool,
        reason: &str,
        via: &str,
    ) -> Result<Approval, DecideError> {
        let a = self.get(id).await?.ok_or(DecideError::NotFound)?;
        Self::may_decide(user, &a).map_err(DecideError::Forbidden)?;
        let state = if approve {
            State::Approved
        } else {
            State::Denied
        };
        let by = user.name.clone();
        let reason = reason.trim().chars().take(2000).collect::<String>();
        let reason = if reason.is_empty() {
            None
        } else {
            Some(reason)
        };
        let id2 = id.to_owned();
        let now = now_ms();
        let won = self
            .db
            .call(move |c| {
                let n = c.execute(
                    "UPDATE approvals SET state = ?2, decided_by = ?3, decided_ms = ?4, reason = ?5
                     WHERE id = ?1 AND state = 'pending' AND expires_ms > ?4",
                    params![id2, state.as_str(), by, now, reason],
                )?;
                if n == 1 {
                    c.notify(Topic::Approvals, &id2)?;
                }
                Ok(n)
            })
            .await?
            == 1;
        let after = self.get(id).await?.ok_or(DecideError::NotFound)?;
        if !won {
            // Lost the race or too late: say what the final state is.
            let final_state = if after.state == State::Pending {
                State::Expired
            } else {
                after.state
            };
            return Err(DecideError::Final(final_state));
        }
        tracing::info!(%id, decision = state.as_str(), by = %user.name, via, "approval decided");
        self.changed(&after, state.as_str());
        Ok(after)
    }

    /// Use an approved request for the call it was granted for. At most once.
    pub async fn consume(&self, id: &str, args_hash: &str) -> Result<bool, DbError> {
        let (id2, hash) = (id.to_owned(), args_hash.to_owned());
        let now = now_ms();
        let used = self
            .db
            .call(move |c| {
                let n = c.execute(
                    "UPDATE approvals SET used_ms = ?3
                     WHERE id = ?1 AND state = 'approved' AND used_ms IS NULL AND args_hash = ?2
                       AND expires_ms > ?3",
                    params![id2, hash, now],
                )?;
                if n == 1 {
                    c.notify(Topic::Approvals, &id2)?;
                }
                Ok(n)
            })
            .await?
            == 1;
        if used {
            if let Some(a) = self.get(id).await? {
                self.changed(&a, "used");
            }
        }
        Ok(used)
    }

    /// Pending requests past their expiry become `expired` (a denial), and
    /// approvals never used before it lapse the same way.
    pub async fn expire(&self) -> Result<usize, DbError> {
        let now = now_ms();
        let inbox = self.inbox.clone();
        let expired = self
            .db
            .call(move |c| {
                c.transaction(|tx| {
                    let ids = tx
                        .query(
                            "SELECT id FROM approvals WHERE expires_ms <= ?1
                             AND (state = 'pending' OR (state = 'approved' AND used_ms IS NULL))",
                            params![now],
                        )?
                        .iter()
                        .map(|r| r.get::<String>(0))
                        .collect::<Result<Vec<_>, _>>()?;
                    let mut out = Vec::with_capacity(ids.len());
                    for id in ids {
                        // Conditional again: another control process may
                        // have expired (or a person decided) it meanwhile.
                        let n = tx.execute(
                            "UPDATE approvals SET state = 'expired', decided_ms = COALESCE(decided_ms, ?2),
                               reason = CASE WHEN state = 'approved' THEN 'approved but not used before expiry'
                                             ELSE 'no decision before expiry' END
                             WHERE id = ?1 AND expires_ms <= ?2
                               AND (state = 'pending' OR (state = 'approved' AND used_ms IS NULL))",
                            params![id, now],
                        )?;
                        if n == 1 {
                            out.extend(Self::one(tx, &inbox, &id)?);
                        }
                    }
                    if !out.is_empty() {
                        tx.notify(Topic::Approvals, "expired")?;
                    }
                    Ok(out)
                })
            })
            .await?;
        for a in &expired {
            tracing::info!(id = %a.id, "approval expired");
            self.changed(a, "expired");
        }
        Ok(expired.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str, roles: &[&str], tenants: &[&str]) -> User {
        User {
            name: name.into(),
            token_sha256: "0".repeat(64),
            subject: None,
            roles: roles.iter().map(|r| r.to_string()).collect(),
            tenants: tenants.iter().map(|t| t.to_string()).collect(),
        }
    }

    fn filing(args: serde_json::Value) -> Filing {
        Filing {
            tenant: Some("acme".into()),
            subject: "bob".into(),
            session: None,
            upstream: "pay".into(),
            tool: "refund".into(),
            tool_hash: None,
            args_hash: sluice_config::canonical_hash(&args),
            arguments: args,
            redacted: false,
            policy_version: "1-x".into(),
            rule: "r".into(),
            approvers: vec!["finance".into()],
            allow_self_approval: false,
            expires_s: 60,
            gateway: None,
            request_id: None,
        }
    }

    async fn store() -> (tempfile::TempDir, Arc<Approvals>) {
        let dir = tempfile::tempdir().expect("dir");
        let db = Db::open(&dir.path().join("c.db")).expect("db");
        (
            dir,
            Approvals::new(db, "http://control", Metrics::new(), None, None),
        )
    }

    #[tokio::test]
    async fn filing_is_idempotent_and_bound_to_the_arguments() {
        let (_d, s) = store().await;
        let a = s
            .file(filing(serde_json::json!({"x": 1})))
            .await
            .expect("file");
        let again = s
            .file(filing(serde_json::json!({"x": 1})))
            .await
            .expect("file");
        assert_eq!(a.id, again.id);
        let other = s
            .file(filing(serde_json::json!({"x": 2})))
            .await
            .expect("file");
        assert_ne!(a.id, other.id);
        let mut forged = filing(serde_json::json!({"x": 1}));
        forged.args_hash = "0".repeat(64);
        assert!(matches!(s.file(forged).await, Err(FileError::HashMismatch)));
    }

    #[tokio::test]
    async fn one_decision_wins_and_an_approval_is_used_once() {
        let (_d, s) = store().await;
        let args = serde_json::json!({"x": 1});
        let a = s.file(filing(args.clone())).await.expect("file");
        let alice = user("alice", &["finance"], &["acme"]);
        let carol = user("carol", &["finance"], &["*"]);
        let (r1, r2) = tokio::join!(
            s.decide(&a.id, &alice, true, "", "t"),
            s.decide(&a.id, &carol, false, "", "t")
        );
        assert!(r1.is_ok() != r2.is_ok(), "{r1:?} {r2:?}");
        let hash = sluice_config::canonical_hash(&args);
        if r1.is_ok() {
            assert!(!s.consume(&a.id, &"0".repeat(64)).await.expect("db"));
            assert!(s.consume(&a.id, &hash).await.expect("db"));
            assert!(!s.consume(&a.id, &hash).await.expect("db"));
        } else {
            assert!(!s.consume(&a.id, &hash).await.expect("db"));
        }
    }

    #[tokio::test]
    async fn who_may_decide() {
        let (_d, s) = store().await;
        let a = s.file(filing(serde_json::json!({}))).await.expect("file");
        let cases = [
            (user("bob", &["finance"], &["acme"]), "your own"),
            (user("vic", &["viewer"], &["acme"]), "none of the roles"),
            (user("gina", &["finance"], &["globex"]), "tenant"),
        ];
        for (u, why) in cases {
            match s.decide(&a.id, &u, true, "", "t").await {
                Err(DecideError::Forbidden(m)) => assert!(m.contains(why), "{m}"),
                other => panic!("{} should be refused: {other:?}", u.name),
            }
        }
        // A rule that allows self-approval lets the requester decide.
        let mut f = filing(serde_json::json!({"self": true}));
        f.allow_self_approval = true;
        let own = s.file(f).await.expect("file");
        let bob = user("bob", &["finance"], &["acme"]);
        let decided = s
            .decide(&own.id, &bob, true, "mine", "t")
            .await
            .expect("allowed");
        assert_eq!(decided.state, State::Approved);
        assert_eq!(decided.decided_by.as_deref(), Some("bob"));
    }
}
