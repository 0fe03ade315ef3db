//! A client's outgoing bytes: a queue of shared or owned chunks, written with
//! one `writev`-style call, and the slow-viewer rule.
//!
//! The rule (SPEC "Many viewers, slow viewers"): a viewer holds at most one
//! frame that has not started to go out. A newer frame replaces it, so a
//! stalled viewer pins at most two frames (the one half-written into its
//! socket and the newest) and costs two reference-count swaps per frame. A
//! frame already partly written is always finished: cutting it would corrupt
//! the stream.
//!
//! No syscalls here: the server asks what to write next (`IoSlice`s, or a
//! range of a file for `sendfile`) and reports how many bytes the kernel took.

use std::collections::VecDeque;
use std::io::IoSlice;
use std::ops::Deref;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::rc::Rc;

/// Most slices handed to one `sendmsg`: a frame is at most three parts, so
/// this covers a half-sent frame, a control frame and the newest frame.
pub const MAX_IOV: usize = 8;

/// Bytes to send: a compiled-in asset, a buffer shared by many clients, or
/// bytes of this client alone.
#[derive(Clone)]
pub enum Bytes {
    Static(&'static [u8]),
    Shared(Rc<[u8]>),
    Owned(Vec<u8>),
}

impl Deref for Bytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Bytes::Static(b) => b,
            Bytes::Shared(b) => b,
            Bytes::Owned(b) => b,
        }
    }
}

/// A frame's bytes in an in-memory file (a `memfd`), written once and sent
/// to every viewer with `sendfile`: the kernel hands the same pages to each
/// socket instead of copying the bytes from us once per viewer. The file is
/// never written again (a new frame gets a new file), so bytes still queued
/// in a socket cannot change under it.
pub struct MemFile {
    pub fd: OwnedFd,
    pub len: usize,
}

/// A frame body: in our memory, or in a `MemFile`.
#[derive(Clone)]
pub enum Body {
    Mem(Rc<[u8]>),
    File(Rc<MemFile>),
}

impl Body {
    pub fn len(&self) -> usize {
        match self {
            Body::Mem(b) => b.len(),
            Body::File(f) => f.len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One frame as framed for one kind of viewer, shared by all of them: a
/// per-kind header (WebSocket frame header or multipart part head), the body
/// (the JPEG, or its base64 text) and a static tail (the next multipart
/// boundary, or nothing).
#[derive(Clone)]
pub struct Frame {
    pub head: Rc<[u8]>,
    pub body: Body,
    pub tail: &'static [u8],
}

impl Frame {
    pub fn len(&self) -> usize {
        self.head.len() + self.body.len() + self.tail.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A queued piece: bytes in memory, or a whole `MemFile`.
enum Chunk {
    Mem(Bytes),
    File(Rc<MemFile>),
}

impl Chunk {
    fn len(&self) -> usize {
        match self {
            Chunk::Mem(b) => b.len(),
            Chunk::File(f) => f.len,
        }
    }
}

/// What to hand the kernel next.
pub enum Next<'a> {
    Nothing,
    /// `sendmsg` the first `n` slices; `more` says a file range follows
    /// (`MSG_MORE`, so a small header and its body share packets).
    Slices {
        n: usize,
        more: bool,
    },
    /// `sendfile` `len` bytes of `fd` from `offset`.
    File {
        fd: BorrowedFd<'a>,
        offset: usize,
        len: usize,
    },
}

#[derive(Default)]
pub struct OutQueue {
    chunks: VecDeque<Chunk>,
    /// Bytes of `chunks.front()` already written.
    offset: usize,
    /// How many chunks at the back form a frame that has not started to go
    /// out (0 if none): the one frame a newer frame may replace.
    unstarted_frame_chunks: usize,
}

impl OutQueue {
    pub fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }

    /// Bytes still to send (for `/status` and tests; O(chunks)).
    pub fn pending_bytes(&self) -> usize {
        self.chunks.iter().map(Chunk::len).sum::<usize>() - self.offset
    }

    /// Queues bytes that must all go out in order (HTTP responses, WebSocket
    /// control frames). They go after everything already queued, so a frame
    /// queued before them is no longer at the back and will not be replaced.
    pub fn push(&mut self, bytes: Bytes) {
        if bytes.is_empty() {
            return;
        }
        self.chunks.push_back(Chunk::Mem(bytes));
        self.unstarted_frame_chunks = 0;
    }

    /// Queues a frame, replacing an older frame that has not started.
    /// Returns true when an older frame was dropped (a slow viewer).
    pub fn push_frame(&mut self, frame: &Frame) -> bool {
        let dropped = self.unstarted_frame_chunks > 0;
        for _ in 0..self.unstarted_frame_chunks {
            self.chunks.pop_back();
        }
        let body = match &frame.body {
            Body::Mem(b) => Chunk::Mem(Bytes::Shared(b.clone())),
            Body::File(f) => Chunk::File(f.clone()),
        };
        let mut n = 0;
        for part in [
            Chunk::Mem(Bytes::Shared(frame.head.clone())),
            body,
            Chunk::Mem(Bytes::Static(frame.tail)),
        ] {
            if part.len() > 0 {
                self.chunks.push_back(part);
                n += 1;
            }
        }
        self.unstarted_frame_chunks = n;
        self.mark_started_if_at_front();
        dropped
    }

    /// What to write next: the in-memory bytes up to the next file (as
    /// slices in `out`), or the unsent range of the file at the front.
    pub fn next_write<'a>(&'a self, out: &mut [IoSlice<'a>; MAX_IOV]) -> Next<'a> {
        let mut n = 0;
        for (i, chunk) in self.chunks.iter().enumerate() {
            let skip = if i == 0 { self.offset } else { 0 };
            match chunk {
                Chunk::File(f) if n == 0 => {
                    return Next::File {
                        fd: f.fd.as_fd(),
                        offset: skip,
                        len: f.len - skip,
                    };
                }
                Chunk::File(_) => return Next::Slices { n, more: true },
                Chunk::Mem(b) => {
                    let Some(slot) = out.get_mut(n) else { break };
                    *slot = IoSlice::new(b.get(skip..).unwrap_or_default());
                    n += 1;
                }
            }
        }
        if n == 0 {
            Next::Nothing
        } else {
            Next::Slices { n, more: false }
        }
    }

    /// Records that the kernel took `written` bytes from the front.
    pub fn advance(&mut self, mut written: usize) {
        while written > 0 {
            let Some(front) = self.chunks.front() else {
                break;
            };
            let left = front.len() - self.offset;
            if written < left {
                self.offset += written;
                break;
            }
            written -= left;
            self.offset = 0;
            self.chunks.pop_front();
        }
        self.mark_started_if_at_front();
    }

    /// A frame whose first chunk is at the front with some bytes written, or
    /// whose chunks were partly popped, has started: it must be finished.
    fn mark_started_if_at_front(&mut self) {
        let n = self.unstarted_frame_chunks;
        if n == 0 {
            return;
        }
        if self.chunks.len() < n || (self.chunks.len() == n && self.offset > 0) {
            self.unstarted_frame_chunks = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(tag: u8) -> Frame {
        Frame {
            head: Rc::from(vec![b'h', tag]),
            body: Body::Mem(Rc::from(vec![tag; 10])),
            tail: b"--",
        }
    }

    /// A frame whose body is in a real memfd (no syscall in outq itself;
    /// the test reads the file to see what `sendfile` would send).
    fn file_frame(tag: u8) -> Frame {
        use std::io::Write;
        let fd = nix::sys::memfd::memfd_create(c"t", nix::sys::memfd::MFdFlags::empty()).unwrap();
        let mut f = std::fs::File::from(fd);
        f.write_all(&[tag; 10]).unwrap();
        Frame {
            head: Rc::from(vec![b'h', tag]),
            body: Body::File(Rc::new(MemFile {
                fd: OwnedFd::from(f),
                len: 10,
            })),
            tail: b"--",
        }
    }

    fn drain(q: &mut OutQueue, step: usize) -> Vec<u8> {
        use std::os::unix::fs::FileExt;
        let mut got = Vec::new();
        loop {
            let mut iov = [IoSlice::new(&[]); MAX_IOV];
            let all: Vec<u8> = match q.next_write(&mut iov) {
                Next::Nothing => break,
                Next::Slices { n, .. } => iov[..n].iter().flat_map(|s| s.iter().copied()).collect(),
                Next::File { fd, offset, len } => {
                    let f = std::fs::File::from(fd.try_clone_to_owned().unwrap());
                    let mut b = vec![0; len];
                    f.read_exact_at(&mut b, offset as u64).unwrap();
                    b
                }
            };
            let take = all.len().min(step);
            got.extend_from_slice(&all[..take]);
            q.advance(take);
        }
        assert!(q.is_empty());
        got
    }

    fn bytes_of(f: &Frame) -> Vec<u8> {
        let body = match &f.body {
            Body::Mem(b) => b.to_vec(),
            Body::File(m) => {
                use std::os::unix::fs::FileExt;
                let file = std::fs::File::from(m.fd.try_clone().unwrap());
                let mut b = vec![0; m.len];
                file.read_exact_at(&mut b, 0).unwrap();
                b
            }
        };
        [&f.head[..], &body[..], f.tail].concat()
    }

    #[test]
    fn newer_frame_replaces_unstarted_one() {
        let mut q = OutQueue::default();
        assert!(!q.push_frame(&frame(1)));
        assert!(q.push_frame(&frame(2)));
        assert!(q.push_frame(&frame(3)));
        assert_eq!(drain(&mut q, 1000), bytes_of(&frame(3)));
    }

    #[test]
    fn started_frame_is_finished_then_newest_follows() {
        let mut q = OutQueue::default();
        q.push_frame(&frame(1));
        q.advance(3); // into the body of frame 1
        assert!(!q.push_frame(&frame(2)));
        assert!(q.push_frame(&frame(3)));
        let mut want = bytes_of(&frame(1))[3..].to_vec();
        want.extend(bytes_of(&frame(3)));
        assert_eq!(drain(&mut q, 5), want);
    }

    #[test]
    fn control_bytes_pin_the_frame_before_them() {
        let mut q = OutQueue::default();
        q.push_frame(&frame(1));
        q.push(Bytes::Static(b"PONG"));
        assert!(!q.push_frame(&frame(2)));
        let mut want = bytes_of(&frame(1));
        want.extend_from_slice(b"PONG");
        want.extend(bytes_of(&frame(2)));
        assert_eq!(drain(&mut q, 7), want);
    }

    #[test]
    fn pending_bytes_and_partial_advance_agree() {
        let mut q = OutQueue::default();
        q.push(Bytes::Owned(b"hello".to_vec()));
        q.push(Bytes::Static(b" world"));
        assert_eq!(q.pending_bytes(), 11);
        q.advance(7);
        assert_eq!(q.pending_bytes(), 4);
        assert_eq!(drain(&mut q, 1), b"orld");
    }

    #[test]
    fn file_bodies_go_out_between_memory_parts_at_every_step() {
        for step in [1, 3, 7, 100] {
            let mut q = OutQueue::default();
            let (a, b) = (file_frame(1), file_frame(2));
            q.push_frame(&a);
            q.advance(1);
            q.push(Bytes::Static(b"PING"));
            q.push_frame(&b);
            let mut want = bytes_of(&a)[1..].to_vec();
            want.extend_from_slice(b"PING");
            want.extend(bytes_of(&b));
            assert_eq!(drain(&mut q, step), want, "step {step}");
        }
    }

    #[test]
    fn header_before_a_file_asks_for_more() {
        let mut q = OutQueue::default();
        q.push_frame(&file_frame(1));
        let mut iov = [IoSlice::new(&[]); MAX_IOV];
        assert!(matches!(
            q.next_write(&mut iov),
            Next::Slices { n: 1, more: true }
        ));
    }

    #[test]
    fn stalled_viewer_holds_at_most_two_frames() {
        let mut q = OutQueue::default();
        q.push_frame(&frame(0));
        q.advance(1);
        for i in 1..100 {
            q.push_frame(&frame(i));
            assert!(q.chunks.len() <= 6);
        }
    }
}
