//! Upstream failures, typed: what went wrong with an upstream after a
//! request was admitted. Each kind has one bounded label (metrics, audit's
//! `reason`, the log); `refusal` turns one into the client's answer.

use pingora::{Error, ErrorType};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    ConnectTimeout,
    ConnectRefused,
    /// No address to connect to (also: the upstream's name did not resolve).
    NoRoute,
    Tls,
    /// A read or write waited longer than its timeout.
    Timeout,
    /// The connection closed where an answer was due.
    Closed,
    /// The whole call took longer than `timeouts.total_ms`.
    TotalTimeout,
    /// The upstream cut off an answer that had started.
    Reset,
    /// Any other failure on the upstream's side.
    Upstream,
    /// A failure that is not the upstream's (the gateway's or the client's).
    Other,
}

impl Failure {
    /// The kind of an exchange's error.
    pub fn of(e: &Error) -> Failure {
        match e.etype() {
            ErrorType::ConnectTimedout => Failure::ConnectTimeout,
            ErrorType::ConnectRefused => Failure::ConnectRefused,
            ErrorType::ConnectNoRoute => Failure::NoRoute,
            ErrorType::TLSHandshakeFailure | ErrorType::InvalidCert => Failure::Tls,
            ErrorType::ReadTimedout | ErrorType::WriteTimedout => Failure::Timeout,
            ErrorType::ConnectionClosed => Failure::Closed,
            _ if e.esource() == &pingora::ErrorSource::Upstream => Failure::Upstream,
            _ => Failure::Other,
        }
    }

    /// A bounded label.
    pub fn label(self) -> &'static str {
        match self {
            Failure::ConnectTimeout => "connect_timeout",
            Failure::ConnectRefused => "connect_refused",
            Failure::NoRoute => "no_route",
            Failure::Tls => "tls",
            Failure::Timeout => "timeout",
            Failure::Closed => "closed",
            Failure::TotalTimeout => "total_timeout",
            Failure::Reset => "upstream_reset",
            Failure::Upstream => "upstream",
            Failure::Other => "other",
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Failure::NoRoute => "upstream address not resolved",
            other => other.label(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_error_has_one_kind() {
        let up = |t| Failure::of(&Error::explain(t, "x").into_up());
        assert_eq!(up(ErrorType::ConnectRefused), Failure::ConnectRefused);
        assert_eq!(up(ErrorType::ReadTimedout), Failure::Timeout);
        assert_eq!(up(ErrorType::InternalError), Failure::Upstream);
        let down = Error::explain(ErrorType::InternalError, "x").into_down();
        assert_eq!(Failure::of(&down), Failure::Other);
        assert_eq!(Failure::TotalTimeout.label(), "total_timeout");
        assert_eq!(Failure::Reset.label(), "upstream_reset");
    }
}
