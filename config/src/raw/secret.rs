//! A reference to a secret (`{ env: NAME }` or `{ file: PATH }`), as the
//! identity, upstream and shared-store sections write it.

use serde::Deserialize;

/// Where a secret lives: `{ env: NAME }` or `{ file: PATH }`. Inline
/// secrets are not accepted.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawSecretRef {
    pub env: Option<String>,
    pub file: Option<String>,
}
