//! Fuzz target `autocrypt`: see `sma_fuzz::autocrypt`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sma_fuzz::autocrypt(data));
