//! Fuzz target `catalog_yaml`: see `sluice_fuzz::catalog_yaml` for what it feeds and what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sluice_fuzz::catalog_yaml(data));
