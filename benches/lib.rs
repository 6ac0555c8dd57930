//! Inputs shared by Sluice's criterion benchmarks (see `benches/`).
