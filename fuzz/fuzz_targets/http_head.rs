//! Fuzz target `http_head`: HTTP/1.1 request-head parser: split feeding agrees with whole, fields lie inside the input, consumed <= len.
//! The invariants live in `picamd::fuzzing::http_head`, next to the parser.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| picamd::fuzzing::http_head(data));
