//! Fuzz target `envelope`: see `sma_fuzz::envelope`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sma_fuzz::envelope(data));
