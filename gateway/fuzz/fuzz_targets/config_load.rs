#![no_main]
// The body and its properties: `sluice_fuzz::config_load` in src/lib.rs.
libfuzzer_sys::fuzz_target!(|data: &[u8]| sluice_fuzz::config_load(data));
