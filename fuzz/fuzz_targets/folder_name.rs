//! Fuzz target `folder_name`: folder names from the server through the
//! modified UTF-7 decoder; see `sma_imap::fuzzing::folder_name`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sma_imap::fuzzing::folder_name(data));
