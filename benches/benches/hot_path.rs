//! Criterion benchmarks of the hot path.
fn main() {}
