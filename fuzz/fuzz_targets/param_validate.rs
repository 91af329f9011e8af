//! Fuzz target `param_validate`: see `sluice_fuzz::param_validate` for what it feeds and what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sluice_fuzz::param_validate(data));
