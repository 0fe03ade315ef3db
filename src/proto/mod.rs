//! Pure protocol code: bytes in, values out. Nothing here does I/O, reads a
//! clock or knows about sockets, processes or the event loop, so every rule
//! is unit-tested and fuzzed in isolation.

pub mod http;
pub mod jpeg;
pub mod ws;

/// Result of feeding an incremental parser: `Partial` is not an error, it
/// means "the input so far is a valid prefix; give me more bytes".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status<T> {
    Complete(T),
    Partial,
}
