//! Fuzz target `ws_frame`: WebSocket frame decoder fed as reads of random sizes; decode∘encode is the identity.
//! The invariants live in `picamd::fuzzing::ws_frame`, next to the parser.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| picamd::fuzzing::ws_frame(data));
