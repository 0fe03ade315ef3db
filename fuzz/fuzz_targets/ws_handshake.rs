//! Fuzz target `ws_handshake`: WebSocket handshake validation (RFC 6455 §4.2.1) on arbitrary request heads.
//! The invariants live in `picamd::fuzzing::ws_handshake`, next to the parser.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| picamd::fuzzing::ws_handshake(data));
