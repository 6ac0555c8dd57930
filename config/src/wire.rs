//! Messages between a gateway and the control process, defined once for
//! both sides: what one serialises the other deserialises.

use serde::{Deserialize, Serialize};

/// What a gateway files with control when a call needs approval.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct Filing {
    pub tenant: Option<String>,
    pub subject: String,
    pub session: Option<String>,
    pub upstream: String,
    pub tool: String,
    /// Hash of the tool's definition as last listed by the upstream, when
    /// the gateway has seen it: an approval does not survive a changed tool.
    pub tool_hash: Option<String>,
    /// As approvers see them: the gateway's `audit.redact` pointers applied.
    pub arguments: serde_json::Value,
    /// Canonical hash of the arguments as sent; binds the approval.
    pub args_hash: String,
    /// Some arguments were redacted, so they do not hash to `args_hash`.
    #[serde(default)]
    pub redacted: bool,
    pub policy_version: String,
    pub rule: String,
    pub approvers: Vec<String>,
    #[serde(default)]
    pub allow_self_approval: bool,
    pub expires_s: u64,
    /// The filing gateway's id.
    pub gateway: Option<String>,
    pub request_id: Option<String>,
}

/// Where an approval stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ApprovalState {
    Pending,
    Approved,
    Denied,
    Expired,
    /// A state this side does not know (a newer peer's): treated as a
    /// denial, never as an approval.
    #[serde(other)]
    Unknown,
}

impl ApprovalState {
    /// The state as it is written on the wire and in control's store.
    pub fn as_str(self) -> &'static str {
        match self {
            ApprovalState::Pending => "pending",
            ApprovalState::Approved => "approved",
            ApprovalState::Denied => "denied",
            ApprovalState::Expired => "expired",
            ApprovalState::Unknown => "unknown",
        }
    }
}

/// An approval as control keeps it and answers it: to the gateway that
/// filed it, and to people deciding.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct Approval {
    pub id: String,
    pub state: ApprovalState,
    /// The call went through on this approval.
    pub used: bool,
    pub tenant: Option<String>,
    pub subject: String,
    pub session: Option<String>,
    pub upstream: String,
    pub tool: String,
    pub tool_hash: Option<String>,
    pub arguments: serde_json::Value,
    pub args_hash: String,
    pub policy_version: String,
    pub rule: String,
    pub approvers: Vec<String>,
    pub allow_self_approval: bool,
    pub gateway: Option<String>,
    pub request_id: Option<String>,
    pub created: String,
    pub expires: String,
    pub decided_by: Option<String>,
    pub decided: Option<String>,
    pub reason: Option<String>,
    pub used_at: Option<String>,
    pub inbox_url: String,
}

/// A config version as control publishes it (and a gateway caches it).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct ConfigVersion {
    pub version: u64,
    pub hash: String,
    /// Where control read it (a file, a Git commit).
    #[serde(default)]
    pub source: String,
    /// When control published it (RFC 3339).
    #[serde(default)]
    pub published: String,
    pub yaml: String,
}

/// A gateway's report on a config version: running it, or why it refused.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct ConfigAck {
    pub gateway: String,
    pub version: Option<u64>,
    pub ok: bool,
    pub error: Option<String>,
}

/// A gateway uses an approval for the call whose arguments hash so.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct Consume {
    pub args_hash: String,
}

#[cfg(test)]
mod tests {
    use super::{Approval, ApprovalState, Filing};

    #[test]
    fn an_unknown_approval_state_reads_as_unknown_never_as_approved() {
        let s: ApprovalState = serde_json::from_str(r#""escalated""#).expect("reads");
        assert_eq!(s, ApprovalState::Unknown);
        let s: ApprovalState = serde_json::from_str(r#""approved""#).expect("reads");
        assert_eq!(s, ApprovalState::Approved);
        let _ = std::mem::size_of::<Approval>();
    }

    #[test]
    fn a_filing_reads_back_as_written_and_defaults_what_older_gateways_omit() {
        let f = Filing {
            tenant: Some("acme".into()),
            subject: "alice".into(),
            session: None,
            upstream: "github".into(),
            tool: "delete_repo".into(),
            tool_hash: Some("h".into()),
            arguments: serde_json::json!({"repo": "x"}),
            args_hash: "a".into(),
            redacted: true,
            policy_version: "3:abc".into(),
            rule: "destructive".into(),
            approvers: vec!["group:admins".into()],
            allow_self_approval: false,
            expires_s: 600,
            gateway: Some("gw-1".into()),
            request_id: Some("r".into()),
        };
        let text = serde_json::to_string(&f).expect("serialises");
        assert_eq!(serde_json::from_str::<Filing>(&text).expect("reads"), f);
        let mut v: serde_json::Value = serde_json::from_str(&text).expect("json");
        let o = v.as_object_mut().expect("object");
        o.remove("redacted");
        o.remove("allow_self_approval");
        let old: Filing = serde_json::from_value(v).expect("reads without the defaults");
        assert!(!old.redacted && !old.allow_self_approval);
    }
}

/// Why a gateway reports a tool definition it listed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Finding {
    /// No pin, trust on first use: served, and to be pinned.
    Trusted,
    /// No pin, approve first: quarantined until approved.
    New,
    /// Not the pinned definition: quarantined until approved.
    Changed,
    /// Failed a screening check: quarantined until approved.
    Screened,
}

impl Finding {
    pub fn as_str(self) -> &'static str {
        match self {
            Finding::Trusted => "trusted",
            Finding::New => "new",
            Finding::Changed => "changed",
            Finding::Screened => "screened",
        }
    }
}

/// A tool definition a gateway saw on a pinned or screened source.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct DefinitionSeen {
    pub gateway: String,
    pub upstream: String,
    pub tool: String,
    /// `definition_digest` of `definition`.
    pub digest: String,
    /// The definition as listed.
    pub definition: serde_json::Value,
    pub finding: Finding,
    /// What screening found, when it failed.
    #[serde(default)]
    pub reason: Option<String>,
}
