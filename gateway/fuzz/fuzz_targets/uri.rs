#![no_main]
// The body and its properties: `sluice_fuzz::uri` in src/lib.rs (the
// gateway's URI check is `gateway_accepts_uri` there).
libfuzzer_sys::fuzz_target!(|data: &[u8]| sluice_fuzz::uri(data));
