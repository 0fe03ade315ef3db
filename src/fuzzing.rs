//! Entry points for the cargo-fuzz targets in `fuzz/` and for
//! `tests/fuzz_seeds.rs`, which replays the committed seeds. Each function
//! asserts invariants of a pure parser (not just "no panic"); the invariants
//! live next to the parsers they check.

/// HTTP request head: split feeding agrees with whole; fields lie inside
/// the input; consumed ≤ len.
pub fn http_head(data: &[u8]) {
    crate::proto::http::fuzz_check(data);
}

/// WebSocket handshake validation on arbitrary request heads.
pub fn ws_handshake(data: &[u8]) {
    crate::proto::ws::fuzz_handshake(data);
}

/// WebSocket frame decoder fed as reads of random sizes; decode∘encode.
pub fn ws_frame(data: &[u8]) {
    crate::proto::ws::fuzz_frames(data);
}

/// JPEG splitter fed as reads of random sizes; frame fix-ups.
pub fn jpeg_split(data: &[u8]) {
    crate::proto::jpeg::fuzz_split(data);
    crate::proto::jpeg::fuzz_fixups(data);
}
