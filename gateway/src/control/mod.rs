//! The gateway's side of the control process: one HTTP client for the
//! config subscription (`sync`), approval filing and waiting (`approval`,
//! in the proxy path), and audit shipping (`ship`). Control is never on the
//! path of a decision the gateway can make alone. Given several control
//! replicas (`--control A,B`), a call that cannot reach one, or that it
//! answers 5xx, goes to the next at once, and later calls stay there.

pub mod ship;
pub mod spool;
pub mod sync;

use std::path::PathBuf;
use std::time::Duration;

/// The environment variable holding the token gateways present to control.
pub const TOKEN_ENV: &str = "SLUICE_CONTROL_TOKEN";

/// Longest a call to control other than a long-poll may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

pub struct ControlClient {
    /// Every control replica's base URL.
    bases: Vec<String>,
    /// The one calls go to first.
    current: std::sync::atomic::AtomicUsize,
    token: String,
    pub gateway_id: String,
    /// Where the last good config from control is kept for restarts.
    pub state_dir: PathBuf,
    http: reqwest::Client,
}

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("control unreachable: {0}")]
    Unreachable(String),
    #[error("control answered {status}: {body}")]
    Status { status: u16, body: String },
    #[error("control sent something unreadable: {0}")]
    Decode(String),
}

/// The messages exchanged with control: one definition, shared with it.
pub use sluice_config::wire::{
    Approval, ApprovalState, ConfigAck, ConfigVersion as Pushed, Consume, DefinitionSeen, Filing,
};

impl ControlClient {
    pub fn new(
        base: &str,
        token: String,
        gateway_id: String,
        state_dir: PathBuf,
    ) -> anyhow::Result<Self> {
        let bases: Vec<String> = base
            .split(',')
            .map(|b| b.trim().trim_end_matches('/').to_owned())
            .filter(|b| !b.is_empty())
            .collect();
        anyhow::ensure!(
            !bases.is_empty()
                && bases
                    .iter()
                    .all(|b| b.starts_with("http://") || b.starts_with("https://")),
            "--control must be one or more http(s) URLs, separated by commas"
        );
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(3))
            .build()?;
        Ok(Self {
            bases,
            current: std::sync::atomic::AtomicUsize::new(0),
            token,
            gateway_id,
            state_dir,
            http,
        })
    }

    fn base(&self) -> &str {
        let i = self.current.load(std::sync::atomic::Ordering::Relaxed);
        &self.bases[i % self.bases.len()]
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base())
    }

    fn url_with(&self, path: &str, query: &[(&str, &str)]) -> Result<reqwest::Url, ControlError> {
        let mut u = reqwest::Url::parse(&self.url(path))
            .map_err(|e| ControlError::Unreachable(e.to_string()))?;
        u.query_pairs_mut().extend_pairs(query);
        Ok(u)
    }

    /// Send to the current replica; one that cannot be reached or answers
    /// 5xx hands the call to the next (each tried once), which becomes the
    /// current one.
    async fn send(&self, req: reqwest::RequestBuilder) -> Result<reqwest::Response, ControlError> {
        let req = req
            .bearer_auth(&self.token)
            .build()
            .map_err(|e| ControlError::Unreachable(e.without_url().to_string()))?;
        let first = self.current.load(std::sync::atomic::Ordering::Relaxed);
        let n = self.bases.len();
        let mut last = None;
        for k in 0..n {
            let i = (first + k) % n;
            let Some(attempt) = self.aimed(&req, i) else {
                break;
            };
            match self.http.execute(attempt).await {
                Ok(resp) if !resp.status().is_server_error() || k + 1 == n => {
                    if k > 0 {
                        tracing::warn!(control = %self.bases[i], "control replica failed over to");
                        self.current.store(i, std::sync::atomic::Ordering::Relaxed);
                    }
                    return Self::checked(resp).await;
                }
                Ok(resp) => last = Some(Self::checked(resp).await.err()),
                Err(e) => last = Some(Some(ControlError::Unreachable(e.without_url().to_string()))),
            }
        }
        Err(last
            .flatten()
            .unwrap_or_else(|| ControlError::Unreachable("no control replica answered".into())))
    }

    /// `req` (made for the current replica) aimed at replica `i`.
    fn aimed(&self, req: &reqwest::Request, i: usize) -> Option<reqwest::Request> {
        let mut r = req.try_clone()?;
        let url = r.url().as_str();
        // The replica it was made for (the longest base it starts with).
        let rest = self
            .bases
            .iter()
            .filter_map(|b| url.strip_prefix(b.as_str()))
            .min_by_key(|rest| rest.len())?;
        *r.url_mut() = reqwest::Url::parse(&format!("{}{rest}", self.bases[i])).ok()?;
        Some(r)
    }

    async fn checked(resp: reqwest::Response) -> Result<reqwest::Response, ControlError> {
        let status = resp.status();
        if status.is_success() || status == reqwest::StatusCode::NOT_MODIFIED {
            return Ok(resp);
        }
        let body = resp.text().await.unwrap_or_default();
        Err(ControlError::Status {
            status: status.as_u16(),
            body: body.chars().take(500).collect(),
        })
    }

    async fn json<T: serde::de::DeserializeOwned>(
        resp: reqwest::Response,
    ) -> Result<T, ControlError> {
        resp.json()
            .await
            .map_err(|e| ControlError::Decode(e.without_url().to_string()))
    }

    /// Long-poll for a version other than `have`; `None` when none came
    /// within `wait`.
    pub async fn poll(
        &self,
        have: Option<u64>,
        wait: Duration,
    ) -> Result<Option<Pushed>, ControlError> {
        let wait_s = wait.as_secs().to_string();
        let have = have.map(|v| v.to_string());
        let mut q = vec![("gateway", self.gateway_id.as_str()), ("wait_s", &wait_s)];
        if let Some(v) = &have {
            q.push(("have", v));
        }
        let req = self
            .http
            .get(self.url_with("/v1/config", &q)?)
            .timeout(wait + Duration::from_secs(10));
        let resp = self.send(req).await?;
        if resp.status() == reqwest::StatusCode::NOT_MODIFIED {
            return Ok(None);
        }
        Ok(Some(Self::json(resp).await?))
    }

    /// Report the version this gateway runs, or why it refused one.
    pub async fn ack(&self, version: Option<u64>, error: Option<&str>) -> Result<(), ControlError> {
        let body = ConfigAck {
            gateway: self.gateway_id.clone(),
            version,
            ok: error.is_none(),
            error: error.map(str::to_owned),
        };
        let req = self
            .http
            .post(self.url("/v1/config/ack"))
            .json(&body)
            .timeout(CALL_TIMEOUT);
        self.send(req).await.map(drop)
    }

    pub async fn file(&self, f: &Filing) -> Result<Approval, ControlError> {
        let req = self
            .http
            .post(self.url("/v1/approvals"))
            .json(f)
            .timeout(CALL_TIMEOUT);
        Self::json(self.send(req).await?).await
    }

    /// The approval once decided, or as it is after `wait`.
    pub async fn wait(&self, id: &str, wait: Duration) -> Result<Approval, ControlError> {
        let req = self
            .http
            .get(self.url_with(
                &format!("/v1/approvals/{id}"),
                &[("wait_ms", &wait.as_millis().to_string())],
            )?)
            .timeout(wait + CALL_TIMEOUT);
        Self::json(self.send(req).await?).await
    }

    /// Use an approval for this call; `false` if it cannot be used (already
    /// used, expired, other arguments).
    pub async fn consume(&self, id: &str, args_hash: &str) -> Result<bool, ControlError> {
        let req = self
            .http
            .post(self.url(&format!("/v1/approvals/{id}/consume")))
            .json(&Consume {
                args_hash: args_hash.to_owned(),
            })
            .timeout(CALL_TIMEOUT);
        match self.send(req).await {
            Ok(_) => Ok(true),
            Err(ControlError::Status { status: 409, .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Report a tool definition a pinned or screened source listed.
    pub async fn report_definition(&self, seen: &DefinitionSeen) -> Result<(), ControlError> {
        let req = self
            .http
            .post(self.url("/v1/definitions"))
            .json(seen)
            .timeout(CALL_TIMEOUT);
        self.send(req).await.map(drop)
    }

    /// Ship a JSON array of audit events.
    pub async fn ship(&self, body: String) -> Result<(), ControlError> {
        let req = self
            .http
            .post(self.url("/v1/audit"))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .timeout(Duration::from_secs(15));
        self.send(req).await.map(drop)
    }
}
