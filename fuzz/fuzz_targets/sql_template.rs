//! Fuzz target `sql_template`: see `sluice_fuzz::sql_template` for what it feeds and what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sluice_fuzz::sql_template(data));
