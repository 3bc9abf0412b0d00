//! Fuzz target `imap_response`: server bytes through sma-imap's framer,
//! parser and response handlers; see `sma_imap::fuzzing::responses`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sma_imap::fuzzing::responses(data));
