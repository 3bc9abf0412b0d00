//! Fuzz target `payloads`: see `sma_fuzz::payloads`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sma_fuzz::payloads(data));
