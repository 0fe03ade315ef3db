//! picamd: a Raspberry Pi camera server in one small binary.
//!
//! Layers, top down (dependencies point one way, `cargo xtask tidy` checks):
//! `server` routes requests, dispatches epoll events by token and fans frames
//! out; `conn` is the per-client state machine (bytes in, actions out, no
//! syscalls); `camera` runs the capture tools and the test pattern; `reactor`
//! is epoll, signals and tokens; `proto` holds the pure parsers and encoders
//! (HTTP/1.1, RFC 6455, JPEG) that never touch a socket or a clock.
#![forbid(unsafe_code)]

pub mod assets;
pub mod auth;
pub mod camera;
pub mod config;
pub mod conn;
pub mod outq;
pub mod pattern;
pub mod proto;
pub mod reactor;
pub mod server;
pub mod slab;

#[doc(hidden)]
pub mod fuzzing;
