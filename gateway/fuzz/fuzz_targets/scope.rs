#![no_main]
// The body and its properties: `sluice_fuzz::scope` in src/lib.rs.
libfuzzer_sys::fuzz_target!(|data: &[u8]| sluice_fuzz::scope(data));
