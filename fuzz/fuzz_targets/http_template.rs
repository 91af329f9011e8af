//! Fuzz target `http_template`: see `sluice_fuzz::http_template` for what it feeds and what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sluice_fuzz::http_template(data));
