//! A reference to a secret: the gateway reads it at load, the snapshot
//! never holds its text.

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretRef {
    Env(String),
    File(String),
}
