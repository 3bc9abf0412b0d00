//! Fuzz target `sealed`: see `sma_fuzz::sealed`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sma_fuzz::sealed(data));
