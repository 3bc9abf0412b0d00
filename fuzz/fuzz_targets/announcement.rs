//! Fuzz target `announcement`: see `sma_fuzz::announcement`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sma_fuzz::announcement(data));
