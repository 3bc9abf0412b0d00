//! Fuzz target `setup_message`: see `sma_fuzz::setup_message`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sma_fuzz::setup_message(data));
