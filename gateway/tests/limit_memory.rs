//! Bounded limiter memory: a million distinct keys churned through one rate
//! limit, then the periodic sweep. Its own test binary (one process, one
//! test) with the gateway's allocator, so the RSS figures mean something.

use std::time::Duration;

use governor::clock::FakeRelativeClock;
use sluice_gateway::limits::LocalLimiter;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Resident set size of this process, bytes.
fn rss() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

/// mimalloc hands freed pages back after a delay, on later allocator
/// activity; the child runs with that delay at 0 so the figures are taken
/// the moment the sweep ends, not whenever the allocator next wakes.
#[test]
fn a_million_keys_churn_and_memory_returns_toward_baseline() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        let out = std::process::Command::new(std::env::current_exe().expect("test binary"))
            .args([
                "--exact",
                "a_million_keys_churn_and_memory_returns_toward_baseline",
            ])
            .args(["--nocapture", "--test-threads=1"])
            .env("MIMALLOC_PURGE_DELAY", "0")
            .output()
            .expect("re-run the test binary");
        eprintln!("{}", String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "the churn run failed");
        return;
    }
    let clock = FakeRelativeClock::default();
    let limiter = LocalLimiter::new(Duration::from_millis(100), 2, clock.clone());
    let baseline = rss();
    for round in 0..2u64 {
        for k in 0..1_000_000u64 {
            let _ = limiter.check((k + round * 1_000_000).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        }
        let full = limiter.len();
        let grown = rss();
        assert_eq!(full, 1_000_000, "every key holds state until swept");
        clock.advance(Duration::from_secs(1));
        assert_eq!(limiter.sweep(), 0, "idle keys are all forgotten");
        let after = rss();
        eprintln!(
            "round {round}: baseline {} KiB, 1M keys {} KiB, after sweep {} KiB",
            baseline >> 10,
            grown >> 10,
            after >> 10
        );
        assert!(grown > baseline + (16 << 20), "the keys took memory");
        assert!(
            after < baseline + (grown - baseline) / 4,
            "the sweep gave most of the memory back"
        );
    }
}
