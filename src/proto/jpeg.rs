//! JPEG frames out of a byte stream (ITU-T T.81 Annex B), still-capture
//! validation, and two frame fix-ups: the default Huffman tables of T.81
//! Annex K.3 and an EXIF Orientation tag.
//!
//! A capture tool's stdout is a stream of concatenated JPEGs (MJPEG) that
//! arrives in pipe reads of any size. [`Splitter`] cuts whole frames out of it
//! by structure, never by pattern: SOI, then marker segments walked by their
//! lengths up to SOS, then the entropy-coded data scanned with `memchr` for
//! `FF`, where `FF 00` is a stuffed byte, `FF D0`-`FF D7` are RSTn and `FF D9`
//! is the EOI. An EXIF thumbnail lives inside an APP1 segment that is skipped
//! by its length, so its SOI and EOI can never start or end a frame.
//!
//! Guarantees: every byte is examined once (the scan position and state
//! survive across `feed`s, so a one-byte-at-a-time producer costs O(n));
//! at most `max_frame_bytes` of a frame is ever buffered; nothing reachable
//! from input panics; splitting the input differently never changes the
//! events.
//!
//! This module knows nothing of pipes, processes, clocks or HTTP: bytes in,
//! frames and values out.
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::indexing_slicing,
        clippy::panic
    )
)]

use core::fmt;
use core::ops::Range;

use memchr::memchr;

/// Start of image (T.81 Table B.1).
const SOI: u8 = 0xD8;
/// End of image.
const EOI: u8 = 0xD9;
/// Start of scan.
const SOS: u8 = 0xDA;
/// Define Huffman table(s).
const DHT: u8 = 0xC4;
/// Application segments: APP0 holds JFIF (or AVI1 from webcams), APP1 EXIF.
const APP0: u8 = 0xE0;
const APP1: u8 = 0xE1;
/// Comment.
const COM: u8 = 0xFE;

/// An APP1 segment is EXIF when its payload starts with this (CIPA DC-008 §4.7.2).
const EXIF_HEADER: &[u8] = b"Exif\0\0";
/// TIFF tag Orientation, stored in IFD0 as one SHORT (EXIF 2.3 §4.6.4 A).
const TAG_ORIENTATION: u16 = 0x0112;
const TIFF_SHORT: u16 = 3;

// ---------------------------------------------------------------------------
// Errors

/// Why some bytes are not one acceptable JPEG. Each variant names the broken
/// rule; all of them mean the capture tool (our upstream) misbehaved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JpegError {
    /// The capture printed nothing on stdout.
    Empty,
    /// The data does not start with SOI: T.81 B.2.1, a compressed image
    /// "shall begin with an SOI marker".
    NotJpeg,
    /// The data ends before the EOI marker.
    Truncated,
    /// The frame is longer than `max_frame_bytes`.
    TooLarge,
    /// A marker segment length is impossible: below 2 (the length counts its
    /// own two bytes, T.81 B.1.1.4), or an SOF/SOS length that is not
    /// `8 + 3 × Nf` / `6 + 2 × Ns` (B.2.2, B.2.3).
    BadSegment,
    /// Where a segment ends the next byte must be the `FF` of a marker.
    MissingMarker,
    /// A marker that may not appear here: RSTn or TEM outside entropy-coded
    /// data, a reserved code (`FF 02`-`FF BF`) or `FF 00` between segments.
    BadMarker,
    /// An SOI inside a frame: the previous frame was cut short.
    SoiInFrame,
    /// An SOS before any SOFn: B.2.1, the frame header precedes the scans.
    NoFrameHeader,
    /// An EOI before any scan: a tables-only image, nothing to show.
    NoScan,
    /// Bytes after the EOI of a still capture.
    TrailingData,
}

impl JpegError {
    /// Every JPEG error is the capture tool's fault, never the client's:
    /// RFC 9110 §15.6.3, 502 "received an invalid response from an inbound
    /// server".
    pub fn http_status(self) -> u16 {
        502
    }
}

impl fmt::Display for JpegError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            JpegError::Empty => "capture output is empty",
            JpegError::NotJpeg => {
                "capture output is not a JPEG (it does not start with SOI, FF D8)"
            }
            JpegError::Truncated => "JPEG is truncated (no EOI marker)",
            JpegError::TooLarge => "JPEG is larger than the frame size limit",
            JpegError::BadSegment => "JPEG marker segment has an impossible length",
            JpegError::MissingMarker => "JPEG segment is not followed by a marker",
            JpegError::BadMarker => "JPEG has a marker that is not allowed there",
            JpegError::SoiInFrame => "JPEG has a second SOI before its EOI (frame cut short)",
            JpegError::NoFrameHeader => "JPEG has a scan (SOS) before its frame header (SOF)",
            JpegError::NoScan => "JPEG ends (EOI) before any scan (SOS)",
            JpegError::TrailingData => "capture output has bytes after the JPEG's EOI",
        })
    }
}

// ---------------------------------------------------------------------------
// Structure: the one walker shared by the splitter, parse_single and the
// header readers.

/// Markers followed by a two-byte length (T.81 B.1.1.4): SOFn, DHT, JPG, DAC
/// (`C0`-`CF`), SOS, DQT, DNL, DRI, DHP, EXP (`DA`-`DF`), APPn, JPGn, COM
/// (`E0`-`FE`). The rest are standalone (SOI, EOI, RSTn, TEM) or reserved
/// (`02`-`BF`); we reject reserved codes: no camera writes them, and a
/// splitter that guessed their length would resync on garbage.
fn has_length(marker: u8) -> bool {
    matches!(marker, 0xC0..=0xCF | 0xDA..=0xDF | 0xE0..=0xFE)
}

/// Frame headers SOF0-SOF15, which share the C0-CF range with DHT (C4), JPG
/// (C8) and DAC (CC). JPEG-LS (SOF55, `FF F7`) is not one: browsers cannot
/// show it, so its scans fail as `NoFrameHeader`.
fn is_sof(marker: u8) -> bool {
    matches!(marker, 0xC0..=0xC3 | 0xC5..=0xC7 | 0xC9..=0xCB | 0xCD..=0xCF)
}

/// Where a frame is in its syntax (T.81 B.2.1: tables/misc, frame header,
/// scans).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// After SOI, before any SOFn.
    Tables,
    /// After the frame header, before the first scan.
    Frame,
    /// At least one scan seen: an EOI may end the frame.
    Scanned,
}

impl Stage {
    fn after(self, marker: u8) -> Result<Stage, JpegError> {
        match (self, marker) {
            // B.2.1: "the frame header ... followed by one or more scans".
            (Stage::Tables, SOS) => Err(JpegError::NoFrameHeader),
            (_, SOS) => Ok(Stage::Scanned),
            (Stage::Tables, m) if is_sof(m) => Ok(Stage::Frame),
            (stage, _) => Ok(stage),
        }
    }
}

/// Walking segments by length, or inside entropy-coded data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Segments(Stage),
    Scan,
}

/// What one marker at a segment boundary turned out to be. Positions are
/// indices into the data; `at` is the `FF` right before the marker code,
/// after any fill bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MarkerStep {
    /// Not enough bytes yet; resume at `at` (fill bytes before it are done).
    NeedMore {
        at: usize,
    },
    /// A segment with a length; the next marker is at `end`, which may lie
    /// beyond the data received so far.
    Segment {
        marker: u8,
        at: usize,
        end: usize,
    },
    Eoi {
        end: usize,
    },
    Broken {
        at: usize,
        reason: JpegError,
    },
}

fn be16(data: &[u8], at: usize) -> Option<usize> {
    let hi = *data.get(at)?;
    let lo = *data.get(at.checked_add(1)?)?;
    Some(usize::from(u16::from_be_bytes([hi, lo])))
}

/// Reads the marker that must start at `pos`. Looks at most 10 bytes past the
/// marker's `FF` (the SOF component count), so re-reading them after a
/// `NeedMore` is a constant cost.
fn marker_step(data: &[u8], pos: usize) -> MarkerStep {
    match data.get(pos) {
        None => return MarkerStep::NeedMore { at: pos },
        Some(0xFF) => {}
        Some(_) => {
            return MarkerStep::Broken {
                at: pos,
                reason: JpegError::MissingMarker,
            };
        }
    }
    // B.1.1.2: "Any marker may optionally be preceded by any number of fill
    // bytes, which are bytes assigned code X'FF'".
    let mut at = pos;
    let marker = loop {
        match data.get(at + 1) {
            None => return MarkerStep::NeedMore { at },
            Some(0xFF) => at += 1,
            Some(&m) => break m,
        }
    };
    match marker {
        SOI => MarkerStep::Broken {
            at,
            reason: JpegError::SoiInFrame,
        },
        EOI => MarkerStep::Eoi { end: at + 2 },
        m if has_length(m) => {
            let Some(len) = be16(data, at + 2) else {
                return MarkerStep::NeedMore { at };
            };
            let bad = MarkerStep::Broken {
                at,
                reason: JpegError::BadSegment,
            };
            // B.1.1.4: the length "includes the two bytes of the length
            // parameter".
            if len < 2 {
                return bad;
            }
            // B.2.3: Ls = 6 + 2 × Ns with 1 ≤ Ns ≤ 4. Checked before the
            // entropy-coded data starts, because a wrong Ls would start the
            // scan in the middle of the header.
            if m == SOS {
                if len < 8 {
                    return bad;
                }
                let Some(&ns) = data.get(at + 4) else {
                    return MarkerStep::NeedMore { at };
                };
                if !(1..=4).contains(&ns) || len != 6 + 2 * usize::from(ns) {
                    return bad;
                }
            }
            // B.2.2: Lf = 8 + 3 × Nf; info() reads P, Y, X from it.
            if is_sof(m) {
                if len < 11 {
                    return bad;
                }
                let Some(&nf) = data.get(at + 9) else {
                    return MarkerStep::NeedMore { at };
                };
                if len != 8 + 3 * usize::from(nf) {
                    return bad;
                }
            }
            MarkerStep::Segment {
                marker: m,
                at,
                end: at + 2 + len,
            }
        }
        // RSTn and TEM have no business between segments; 00 and 02-BF are
        // not markers we accept here (see has_length).
        _ => MarkerStep::Broken {
            at,
            reason: JpegError::BadMarker,
        },
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ScanStep {
    NeedMore {
        at: usize,
    },
    /// A marker that ends the entropy-coded segment; it starts at `at`.
    Marker {
        at: usize,
    },
}

/// Skips entropy-coded data from `pos`: B.1.1.5, the encoder stuffs a 00 after
/// every FF data byte, and RSTn markers sit inside the data.
fn scan_step(data: &[u8], mut pos: usize) -> ScanStep {
    loop {
        let Some(rest) = data.get(pos..) else {
            return ScanStep::NeedMore { at: pos };
        };
        let Some(k) = memchr(0xFF, rest) else {
            return ScanStep::NeedMore { at: data.len() };
        };
        let at = pos + k;
        match data.get(at + 1) {
            None => return ScanStep::NeedMore { at },
            // Stuffed byte, or RSTn: still inside the scan.
            Some(0x00 | 0xD0..=0xD7) => pos = at + 2,
            // A fill byte before a marker (B.1.1.2). Like libjpeg, FF FF 00
            // then reads as one stuffed FF: harmless either way.
            Some(0xFF) => pos = at + 1,
            Some(_) => return ScanStep::Marker { at },
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Walk {
    NeedMore,
    /// The frame ends (EOI inclusive) at `end`.
    End {
        end: usize,
    },
    /// The frame is broken at `at`; the bytes before belong to it.
    Broken {
        at: usize,
        reason: JpegError,
    },
}

/// Walks a frame from `pos` until it ends, breaks or the data runs out;
/// `pos` and `phase` keep the progress so the next call resumes there.
fn walk(data: &[u8], pos: &mut usize, phase: &mut Phase) -> Walk {
    loop {
        match *phase {
            Phase::Scan => match scan_step(data, *pos) {
                ScanStep::NeedMore { at } => {
                    *pos = at;
                    return Walk::NeedMore;
                }
                ScanStep::Marker { at } => {
                    // Another SOS (progressive), DHT or DRI between scans,
                    // DNL, or the EOI: back to segment walking.
                    *pos = at;
                    *phase = Phase::Segments(Stage::Scanned);
                }
            },
            Phase::Segments(stage) => match marker_step(data, *pos) {
                MarkerStep::NeedMore { at } => {
                    *pos = at;
                    return Walk::NeedMore;
                }
                MarkerStep::Broken { at, reason } => return Walk::Broken { at, reason },
                MarkerStep::Eoi { end } if stage == Stage::Scanned => return Walk::End { end },
                // The EOI belongs to the broken frame: resync after it.
                MarkerStep::Eoi { end } => {
                    return Walk::Broken {
                        at: end,
                        reason: JpegError::NoScan,
                    };
                }
                MarkerStep::Segment { marker, at, end } => match stage.after(marker) {
                    Err(reason) => return Walk::Broken { at, reason },
                    Ok(next) => {
                        *pos = end;
                        *phase = if marker == SOS {
                            Phase::Scan
                        } else {
                            Phase::Segments(next)
                        };
                    }
                },
            },
        }
    }
}

// ---------------------------------------------------------------------------
// Splitter

/// What the splitter found in the stream. The `bytes` of all events add up
/// to the number of bytes fed.
#[derive(Debug, PartialEq, Eq)]
pub enum SplitEvent {
    /// One whole JPEG, SOI..EOI inclusive, at most `max_frame_bytes` long.
    Frame(Vec<u8>),
    /// Bytes before an SOI (text on stdout, the tail of a frame when the
    /// stream was joined late). Reported once the run ends: at the next SOI
    /// or at `finish`.
    Skipped { bytes: usize },
    /// A frame longer than `max_frame_bytes`, dropped. The splitter stops
    /// buffering it at the limit, follows its structure to its end (EOI, or
    /// the point where it breaks) and resyncs there.
    Oversize { bytes: usize },
    /// A frame whose structure is broken (see [`Splitter::last_error`]),
    /// dropped; the splitter resyncs at the next SOI. At `finish`, a
    /// truncated last frame.
    Corrupt { bytes: usize },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Looking for SOI; `start == pos`.
    Hunting,
    /// Inside a frame that starts at `start` (or earlier, when `dropped`).
    InFrame(Phase),
}

/// Cuts whole JPEG frames out of a stream: `feed` each read, then call
/// `next_event` until it returns `None`; at EOF call `finish` until `None`.
///
/// Memory: `buffered_bytes()` is at most `max_frame_bytes` + the length of
/// the last input + 16 (the part of a frame within the limit, the lookahead
/// of a marker segment header, and the last read), as long as the caller
/// drains the events after each `feed`; feeding without draining buffers the
/// inputs.
pub struct Splitter {
    buf: Vec<u8>,
    /// Bytes before `start` are consumed; `feed` drops them (lazily, so a
    /// read holding many frames is not shifted once per frame).
    start: usize,
    /// Scan position; may lie past `buf.len()` while a segment's payload is
    /// still to come.
    pos: usize,
    /// Hunting: garbage bytes counted but not reported yet. In a frame: bytes
    /// of the (oversize) frame already thrown away.
    dropped: usize,
    state: State,
    max_frame_bytes: usize,
    last_error: Option<JpegError>,
}

impl Splitter {
    pub fn new(max_frame_bytes: usize) -> Self {
        Splitter {
            buf: Vec::new(),
            start: 0,
            pos: 0,
            dropped: 0,
            state: State::Hunting,
            max_frame_bytes,
            last_error: None,
        }
    }

    /// Appends (copies) `input`.
    pub fn feed(&mut self, input: &[u8]) {
        if self.start > 0 {
            // Moves only what is still needed: the frame in progress (once,
            // after it started) and a few bytes of lookahead.
            let s = self.start.min(self.buf.len());
            self.buf.drain(..s);
            self.pos = self.pos.saturating_sub(s);
            self.start = 0;
        }
        self.buf.extend_from_slice(input);
    }

    /// The next event from the bytes fed so far; `None` means "feed more".
    pub fn next_event(&mut self) -> Option<SplitEvent> {
        loop {
            match self.state {
                State::Hunting => {
                    let garbage = self.hunt()?;
                    self.state = State::InFrame(Phase::Segments(Stage::Tables));
                    if garbage > 0 {
                        return Some(SplitEvent::Skipped { bytes: garbage });
                    }
                }
                State::InFrame(mut phase) => {
                    let step = walk(&self.buf, &mut self.pos, &mut phase);
                    self.state = State::InFrame(phase);
                    return match step {
                        Walk::NeedMore => {
                            self.discard_if_oversize();
                            None
                        }
                        Walk::End { end } => Some(self.end_frame(end)),
                        Walk::Broken { at, reason } => {
                            let bytes = self.frame_bytes(at);
                            self.resync(at);
                            Some(self.dropped_event(bytes, reason))
                        }
                    };
                }
            }
        }
    }

    /// At EOF: the remaining events, then what is left over (a truncated last
    /// frame as `Corrupt`, or `Oversize`; trailing garbage as `Skipped`).
    /// Call until `None`; the splitter is then empty and can be reused.
    pub fn finish(&mut self) -> Option<SplitEvent> {
        if let Some(ev) = self.next_event() {
            return Some(ev);
        }
        let held = self.buf.len().saturating_sub(self.start);
        let ev = match self.state {
            State::Hunting => {
                let bytes = self.dropped + held;
                (bytes > 0).then_some(SplitEvent::Skipped { bytes })
            }
            State::InFrame(_) => {
                Some(self.dropped_event(self.dropped + held, JpegError::Truncated))
            }
        };
        self.buf = Vec::new();
        self.start = 0;
        self.pos = 0;
        self.dropped = 0;
        self.state = State::Hunting;
        ev
    }

    /// Bytes held in the buffer (consumed ones included until the next feed).
    pub fn buffered_bytes(&self) -> usize {
        self.buf.len()
    }

    /// Why the latest `Corrupt` or `Oversize` frame was dropped (`TooLarge`,
    /// `Truncated` or the broken rule), for the log.
    pub fn last_error(&self) -> Option<JpegError> {
        self.last_error
    }

    /// Finds the next SOI from `pos`. Garbage is counted and dropped at once,
    /// except a trailing FF that may be the first half of an SOI. Returns the
    /// garbage count when a frame starts.
    fn hunt(&mut self) -> Option<usize> {
        loop {
            let rest = self.buf.get(self.pos..)?;
            let Some(k) = memchr(0xFF, rest) else {
                self.dropped += rest.len();
                self.pos = self.buf.len();
                self.start = self.pos;
                return None;
            };
            let at = self.pos + k;
            match self.buf.get(at + 1) {
                None => {
                    self.dropped += k;
                    self.pos = at;
                    self.start = at;
                    return None;
                }
                Some(&SOI) => {
                    self.dropped += k;
                    self.start = at;
                    self.pos = at + 2;
                    return Some(core::mem::take(&mut self.dropped));
                }
                // Not an SOI; the next byte may be an FF starting one.
                Some(_) => {
                    self.dropped += k + 1;
                    self.pos = at + 1;
                }
            }
        }
    }

    /// Length of the current frame up to `at`.
    fn frame_bytes(&self, at: usize) -> usize {
        self.dropped + at.saturating_sub(self.start)
    }

    /// Once a frame is over the limit it can only be dropped: keep counting
    /// its length but stop holding its bytes, so memory stays bounded.
    fn discard_if_oversize(&mut self) {
        let parsed = self.pos.min(self.buf.len());
        if self.frame_bytes(parsed) > self.max_frame_bytes {
            self.dropped = self.frame_bytes(parsed);
            self.start = parsed;
        }
    }

    /// Back to hunting at `at`.
    fn resync(&mut self, at: usize) {
        self.state = State::Hunting;
        self.dropped = 0;
        self.start = at;
        self.pos = at;
    }

    fn dropped_event(&mut self, bytes: usize, reason: JpegError) -> SplitEvent {
        if bytes > self.max_frame_bytes {
            self.last_error = Some(JpegError::TooLarge);
            SplitEvent::Oversize { bytes }
        } else {
            self.last_error = Some(reason);
            SplitEvent::Corrupt { bytes }
        }
    }

    fn end_frame(&mut self, end: usize) -> SplitEvent {
        let bytes = self.frame_bytes(end);
        if bytes > self.max_frame_bytes {
            self.resync(end);
            return self.dropped_event(bytes, JpegError::TooLarge);
        }
        let frame = self.take_frame(end);
        self.state = State::Hunting;
        SplitEvent::Frame(frame)
    }

    /// Hands out `buf[start..end]` with as little copying as possible. The
    /// common case (the reads held exactly this frame) copies nothing; a frame
    /// at the front copies the shorter of itself and the rest, so a read
    /// holding many frames still costs O(n).
    fn take_frame(&mut self, end: usize) -> Vec<u8> {
        let len = self.buf.len();
        let end = end.min(len);
        if self.start == 0 && end == len {
            // The next frame is likely the same size: reserve for it now
            // rather than grow (and copy) read by read.
            let next = Vec::with_capacity(len);
            self.start = 0;
            self.pos = 0;
            return core::mem::replace(&mut self.buf, next);
        }
        if self.start == 0 && len - end <= end {
            let rest = self.buf.split_off(end);
            self.start = 0;
            self.pos = 0;
            return core::mem::replace(&mut self.buf, rest);
        }
        let frame = self
            .buf
            .get(self.start..end)
            .map(<[u8]>::to_vec)
            .unwrap_or_default();
        self.start = end;
        self.pos = end;
        frame
    }
}

// ---------------------------------------------------------------------------
// Still captures

/// Validates a still capture's whole stdout and returns the range of its JPEG.
///
/// Strict on both ends: `rpicam-still`/`libcamera-still`/`raspistill` with
/// `-o -` write exactly one JPEG to stdout and their chatter to stderr, and
/// `ffmpeg -frames:v 1 -f mjpeg pipe:1` does too. Text before the SOI or bytes
/// after the EOI mean the command is wrong (a tool printing to stdout, two
/// frames, `raspistill -r` appending raw Bayer data), and answering with
/// something else than what the tool meant to send would hide it; the error
/// says which rule broke. The whole input is therefore the range on success;
/// it is a range so a leniency can be added without touching callers.
pub fn parse_single(data: &[u8], max_frame_bytes: usize) -> Result<Range<usize>, JpegError> {
    if data.is_empty() {
        return Err(JpegError::Empty);
    }
    // Checked first: a limit is a limit, whatever the bytes are.
    if data.len() > max_frame_bytes {
        return Err(JpegError::TooLarge);
    }
    match data {
        [0xFF] => return Err(JpegError::Truncated),
        [0xFF, SOI, ..] => {}
        _ => return Err(JpegError::NotJpeg),
    }
    let mut pos = 2;
    let mut phase = Phase::Segments(Stage::Tables);
    match walk(data, &mut pos, &mut phase) {
        Walk::NeedMore => Err(JpegError::Truncated),
        Walk::Broken { reason, .. } => Err(reason),
        Walk::End { end } if end == data.len() => Ok(0..end),
        Walk::End { .. } => Err(JpegError::TrailingData),
    }
}

// ---------------------------------------------------------------------------
// Headers: the segments from SOI up to the first SOS

/// One marker segment: `at` is its `FF`, the payload follows the length.
#[derive(Debug, Clone, Copy)]
struct Segment<'a> {
    marker: u8,
    at: usize,
    end: usize,
    payload: &'a [u8],
}

/// The segments of a whole frame from SOI to its first SOS (inclusive), by
/// the same rules as the splitter; an error ends the iteration.
struct HeaderSegments<'a> {
    data: &'a [u8],
    pos: usize,
    stage: Stage,
    done: bool,
}

fn header_segments(frame: &[u8]) -> HeaderSegments<'_> {
    HeaderSegments {
        data: frame,
        pos: 0,
        stage: Stage::Tables,
        done: false,
    }
}

impl<'a> Iterator for HeaderSegments<'a> {
    type Item = Result<Segment<'a>, JpegError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        // Any early return is an error and ends the iteration.
        self.done = true;
        if self.pos == 0 {
            if !self.data.starts_with(&[0xFF, SOI]) {
                return Some(Err(JpegError::NotJpeg));
            }
            self.pos = 2;
        }
        let (marker, at, end) = match marker_step(self.data, self.pos) {
            MarkerStep::NeedMore { .. } => return Some(Err(JpegError::Truncated)),
            MarkerStep::Broken { reason, .. } => return Some(Err(reason)),
            MarkerStep::Eoi { .. } => return Some(Err(JpegError::NoScan)),
            MarkerStep::Segment { marker, at, end } => (marker, at, end),
        };
        self.stage = match self.stage.after(marker) {
            Ok(stage) => stage,
            Err(e) => return Some(Err(e)),
        };
        let Some(payload) = self.data.get(at + 4..end) else {
            return Some(Err(JpegError::Truncated));
        };
        self.pos = end;
        self.done = marker == SOS;
        Some(Ok(Segment {
            marker,
            at,
            end,
            payload,
        }))
    }
}

/// Where the Orientation value of the first EXIF APP1 lives.
#[derive(Debug, Clone, Copy)]
struct OrientationTag {
    value: u16,
    /// Index in the frame of the two value bytes.
    at: usize,
    big_endian: bool,
}

/// What the fix-ups need to know, from one pass over the headers.
#[derive(Debug, Clone, Copy)]
struct Headers {
    sof_marker: u8,
    precision: u8,
    height: u16,
    width: u16,
    /// A DHT before the first scan.
    has_dht: bool,
    /// The Orientation tag of the first EXIF APP1, when it has one we can
    /// read and patch (one SHORT in IFD0).
    orientation: Option<OrientationTag>,
    /// After SOI and a leading APP0: JFIF (and AVI1) want APP0 first, so a
    /// new APP1 goes right after it.
    app_insert_at: usize,
    /// The `FF` of the first SOS.
    sos_at: usize,
}

impl Headers {
    /// The frame needs the standard tables: Huffman-coded sequential DCT with
    /// 8-bit samples (SOF0/SOF1, what MJPEG cameras send) and no DHT. The
    /// Annex K tables are meant for exactly that; other processes keep theirs.
    fn needs_default_tables(&self) -> bool {
        !self.has_dht && matches!(self.sof_marker, 0xC0 | 0xC1) && self.precision == 8
    }

    fn orientation_value(&self) -> Option<u8> {
        let value = u8::try_from(self.orientation?.value).ok()?;
        (1..=8).contains(&value).then_some(value)
    }
}

fn parse_headers(frame: &[u8]) -> Result<Headers, JpegError> {
    let mut sof = None;
    let mut has_dht = false;
    let mut orientation = None;
    let mut seen_exif = false;
    let mut app_insert_at = 2;
    for (i, seg) in header_segments(frame).enumerate() {
        let seg = seg?;
        match seg.marker {
            APP0 if i == 0 => app_insert_at = seg.end,
            // Only the first EXIF APP1 counts, as in browsers and exiftool.
            APP1 if !seen_exif && seg.payload.starts_with(EXIF_HEADER) => {
                seen_exif = true;
                orientation = exif_orientation(seg.payload).map(|(value, offset, big_endian)| {
                    OrientationTag {
                        value,
                        at: seg.at + 4 + offset,
                        big_endian,
                    }
                });
            }
            DHT => has_dht = true,
            SOS => {
                // SOS needs an SOF before it (Stage), and marker_step checked
                // the SOF length, so P, Y and X are there.
                let (marker, p): (u8, &[u8]) = sof.ok_or(JpegError::NoFrameHeader)?;
                let (Some(&precision), Some(height), Some(width)) =
                    (p.first(), be16(p, 1), be16(p, 3))
                else {
                    return Err(JpegError::BadSegment);
                };
                return Ok(Headers {
                    sof_marker: marker,
                    precision,
                    height: u16::try_from(height).unwrap_or(0),
                    width: u16::try_from(width).unwrap_or(0),
                    has_dht,
                    orientation,
                    app_insert_at,
                    sos_at: seg.at,
                });
            }
            m if is_sof(m) && sof.is_none() => sof = Some((m, seg.payload)),
            _ => {}
        }
    }
    // The iterator only ends without error after an SOS.
    Err(JpegError::Truncated)
}

fn tiff16(data: &[u8], at: usize, big_endian: bool) -> Option<u16> {
    let b = [*data.get(at)?, *data.get(at.checked_add(1)?)?];
    Some(if big_endian {
        u16::from_be_bytes(b)
    } else {
        u16::from_le_bytes(b)
    })
}

fn tiff32(data: &[u8], at: usize, big_endian: bool) -> Option<u32> {
    let b: [u8; 4] = data.get(at..at.checked_add(4)?)?.try_into().ok()?;
    Some(if big_endian {
        u32::from_be_bytes(b)
    } else {
        u32::from_le_bytes(b)
    })
}

/// The Orientation tag in an EXIF APP1 payload: its value, the offset of the
/// value in the payload, and the byte order. TIFF 6.0 §2: "II" or "MM", 42,
/// the offset of IFD0; an IFD is a count and 12-byte entries (tag, type,
/// count, value or offset); a SHORT value sits left-justified in the 4-byte
/// field. Only the form every camera writes (SHORT, count 1) is accepted.
fn exif_orientation(payload: &[u8]) -> Option<(u16, usize, bool)> {
    let tiff = payload.strip_prefix(EXIF_HEADER)?;
    let big_endian = match tiff.get(..2)? {
        b"MM" => true,
        b"II" => false,
        _ => return None,
    };
    if tiff16(tiff, 2, big_endian)? != 42 {
        return None;
    }
    let ifd0 = usize::try_from(tiff32(tiff, 4, big_endian)?).ok()?;
    let count = tiff16(tiff, ifd0, big_endian)?;
    for k in 0..usize::from(count) {
        let entry = ifd0.checked_add(2 + 12 * k)?;
        if tiff16(tiff, entry, big_endian)? != TAG_ORIENTATION {
            continue;
        }
        let kind = tiff16(tiff, entry + 2, big_endian)?;
        let n = tiff32(tiff, entry + 4, big_endian)?;
        if kind != TIFF_SHORT || n != 1 {
            return None;
        }
        let value = tiff16(tiff, entry + 8, big_endian)?;
        return Some((value, EXIF_HEADER.len() + entry + 8, big_endian));
    }
    None
}

/// What a frame says about itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Info {
    pub width: u16,
    /// 0 when the height comes later in a DNL segment (T.81 B.2.5).
    pub height: u16,
    /// A DHT segment before the first scan.
    pub has_huffman_tables: bool,
    /// The EXIF Orientation (1..=8) of the first EXIF APP1; an out-of-range
    /// value reads as absent, as viewers ignore it.
    pub orientation: Option<u8>,
}

/// Reads a frame's headers (SOI up to the first SOS; the entropy-coded data is
/// not scanned). `None` if they are malformed.
pub fn info(frame: &[u8]) -> Option<Info> {
    let h = parse_headers(frame).ok()?;
    Some(Info {
        width: h.width,
        height: h.height,
        has_huffman_tables: h.has_dht,
        orientation: h.orientation_value(),
    })
}

/// The payload of the first COM segment (before the first scan) that starts
/// with `prefix`, prefix included. Benchmarks carry the emit time as
/// `picamd-ts=<unix micros>`.
pub fn find_com<'a>(frame: &'a [u8], prefix: &[u8]) -> Option<&'a [u8]> {
    for seg in header_segments(frame) {
        let seg = seg.ok()?;
        if seg.marker == COM && seg.payload.starts_with(prefix) {
            return Some(seg.payload);
        }
    }
    None
}

/// A copy of `frame` with a COM segment holding `payload` right before the
/// first SOS. `None` if the frame is malformed or the payload does not fit a
/// segment (65533 bytes).
pub fn insert_com(frame: &[u8], payload: &[u8]) -> Option<Vec<u8>> {
    let len = u16::try_from(payload.len().checked_add(2)?).ok()?;
    let h = parse_headers(frame).ok()?;
    let (head, tail) = frame.split_at_checked(h.sos_at)?;
    let mut out = Vec::with_capacity(frame.len() + 4 + payload.len());
    out.extend_from_slice(head);
    out.extend_from_slice(&[0xFF, COM]);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(payload);
    out.extend_from_slice(tail);
    Some(out)
}

// ---------------------------------------------------------------------------
// Fix-up 1: default Huffman tables

// ITU-T T.81 Annex K.3, typical Huffman tables for 8-bit precision
// luminance and chrominance. BITS[i] is the number of codes of length i + 1
// (K.3.3.1), HUFFVAL lists the symbols in order of increasing code length.
// MJPEG from USB webcams (the AVI1 format) omits DHT and means these tables;
// browsers (Safari) and several decoders show nothing without them.

/// Table K.3, luminance DC difference categories 0-11.
pub const DC_LUMINANCE_BITS: [u8; 16] = [0, 1, 5, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0];
/// Table K.4, chrominance DC difference categories 0-11.
pub const DC_CHROMINANCE_BITS: [u8; 16] = [0, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0];
/// K.3.3.1: for both DC tables the categories in order.
pub const DC_VALUES: [u8; 12] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11];

/// Table K.5, luminance AC coefficients.
pub const AC_LUMINANCE_BITS: [u8; 16] = [0, 2, 1, 3, 3, 2, 4, 3, 5, 5, 4, 4, 0, 0, 1, 0x7D];
/// Table K.5 symbols (RRRR/SSSS = run/size), by code length.
#[rustfmt::skip]
pub const AC_LUMINANCE_VALUES: [u8; 162] = [
    0x01, 0x02, 0x03, 0x00, 0x04, 0x11, 0x05, 0x12, 0x21, 0x31, 0x41, 0x06, 0x13, 0x51, 0x61, 0x07,
    0x22, 0x71, 0x14, 0x32, 0x81, 0x91, 0xA1, 0x08, 0x23, 0x42, 0xB1, 0xC1, 0x15, 0x52, 0xD1, 0xF0,
    0x24, 0x33, 0x62, 0x72, 0x82, 0x09, 0x0A, 0x16, 0x17, 0x18, 0x19, 0x1A, 0x25, 0x26, 0x27, 0x28,
    0x29, 0x2A, 0x34, 0x35, 0x36, 0x37, 0x38, 0x39, 0x3A, 0x43, 0x44, 0x45, 0x46, 0x47, 0x48, 0x49,
    0x4A, 0x53, 0x54, 0x55, 0x56, 0x57, 0x58, 0x59, 0x5A, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68, 0x69,
    0x6A, 0x73, 0x74, 0x75, 0x76, 0x77, 0x78, 0x79, 0x7A, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89,
    0x8A, 0x92, 0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99, 0x9A, 0xA2, 0xA3, 0xA4, 0xA5, 0xA6, 0xA7,
    0xA8, 0xA9, 0xAA, 0xB2, 0xB3, 0xB4, 0xB5, 0xB6, 0xB7, 0xB8, 0xB9, 0xBA, 0xC2, 0xC3, 0xC4, 0xC5,
    0xC6, 0xC7, 0xC8, 0xC9, 0xCA, 0xD2, 0xD3, 0xD4, 0xD5, 0xD6, 0xD7, 0xD8, 0xD9, 0xDA, 0xE1, 0xE2,
    0xE3, 0xE4, 0xE5, 0xE6, 0xE7, 0xE8, 0xE9, 0xEA, 0xF1, 0xF2, 0xF3, 0xF4, 0xF5, 0xF6, 0xF7, 0xF8,
    0xF9, 0xFA,
];

/// Table K.6, chrominance AC coefficients.
pub const AC_CHROMINANCE_BITS: [u8; 16] = [0, 2, 1, 2, 4, 4, 3, 4, 7, 5, 4, 4, 0, 1, 2, 0x77];
/// Table K.6 symbols, by code length.
#[rustfmt::skip]
pub const AC_CHROMINANCE_VALUES: [u8; 162] = [
    0x00, 0x01, 0x02, 0x03, 0x11, 0x04, 0x05, 0x21, 0x31, 0x06, 0x12, 0x41, 0x51, 0x07, 0x61, 0x71,
    0x13, 0x22, 0x32, 0x81, 0x08, 0x14, 0x42, 0x91, 0xA1, 0xB1, 0xC1, 0x09, 0x23, 0x33, 0x52, 0xF0,
    0x15, 0x62, 0x72, 0xD1, 0x0A, 0x16, 0x24, 0x34, 0xE1, 0x25, 0xF1, 0x17, 0x18, 0x19, 0x1A, 0x26,
    0x27, 0x28, 0x29, 0x2A, 0x35, 0x36, 0x37, 0x38, 0x39, 0x3A, 0x43, 0x44, 0x45, 0x46, 0x47, 0x48,
    0x49, 0x4A, 0x53, 0x54, 0x55, 0x56, 0x57, 0x58, 0x59, 0x5A, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68,
    0x69, 0x6A, 0x73, 0x74, 0x75, 0x76, 0x77, 0x78, 0x79, 0x7A, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87,
    0x88, 0x89, 0x8A, 0x92, 0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99, 0x9A, 0xA2, 0xA3, 0xA4, 0xA5,
    0xA6, 0xA7, 0xA8, 0xA9, 0xAA, 0xB2, 0xB3, 0xB4, 0xB5, 0xB6, 0xB7, 0xB8, 0xB9, 0xBA, 0xC2, 0xC3,
    0xC4, 0xC5, 0xC6, 0xC7, 0xC8, 0xC9, 0xCA, 0xD2, 0xD3, 0xD4, 0xD5, 0xD6, 0xD7, 0xD8, 0xD9, 0xDA,
    0xE2, 0xE3, 0xE4, 0xE5, 0xE6, 0xE7, 0xE8, 0xE9, 0xEA, 0xF2, 0xF3, 0xF4, 0xF5, 0xF6, 0xF7, 0xF8,
    0xF9, 0xFA,
];

/// The four tables as B.2.4.2 Tc/Th (class 0 = DC, 1 = AC; destination 0 =
/// luminance, 1 = chrominance, as the AVI1 format assigns them), BITS, HUFFVAL.
const DEFAULT_TABLES: [(u8, &[u8; 16], &[u8]); 4] = [
    (0x00, &DC_LUMINANCE_BITS, &DC_VALUES),
    (0x10, &AC_LUMINANCE_BITS, &AC_LUMINANCE_VALUES),
    (0x01, &DC_CHROMINANCE_BITS, &DC_VALUES),
    (0x11, &AC_CHROMINANCE_BITS, &AC_CHROMINANCE_VALUES),
];

/// Lh of the DHT segment holding the four tables: 2 + Σ (1 + 16 + mt).
const DEFAULT_DHT_LENGTH: u16 = 2 + 4 * 17 + 12 + 162 + 12 + 162;

/// Appends one DHT segment (B.2.4.2) defining the four default tables.
fn push_default_dht(out: &mut Vec<u8>) {
    out.extend_from_slice(&[0xFF, DHT]);
    out.extend_from_slice(&DEFAULT_DHT_LENGTH.to_be_bytes());
    for (class_and_id, bits, values) in DEFAULT_TABLES {
        out.push(class_and_id);
        out.extend_from_slice(bits);
        out.extend_from_slice(values);
    }
}

/// A copy of `frame` with the T.81 Annex K.3 tables inserted as one DHT right
/// before the first SOS (B.2.4: tables may precede any scan). `None` if the
/// frame has a DHT already, is not baseline/extended 8-bit Huffman, or is
/// malformed.
pub fn insert_default_huffman_tables(frame: &[u8]) -> Option<Vec<u8>> {
    let h = parse_headers(frame).ok()?;
    if !h.needs_default_tables() {
        return None;
    }
    let (head, tail) = frame.split_at_checked(h.sos_at)?;
    let mut out = Vec::with_capacity(frame.len() + 2 + usize::from(DEFAULT_DHT_LENGTH));
    out.extend_from_slice(head);
    push_default_dht(&mut out);
    out.extend_from_slice(tail);
    Some(out)
}

// ---------------------------------------------------------------------------
// Fix-up 2: EXIF Orientation

/// A minimal EXIF APP1: "Exif\0\0", a big-endian TIFF header pointing at IFD0
/// (offset 8), IFD0 with one entry, Orientation = SHORT × 1 (value
/// left-justified in the 4-byte field), and no next IFD.
#[rustfmt::skip]
fn exif_orientation_segment(orientation: u8) -> [u8; 36] {
    [
        0xFF, APP1, 0x00, 34,
        b'E', b'x', b'i', b'f', 0, 0,
        b'M', b'M', 0x00, 42, 0, 0, 0, 8,
        0, 1,
        0x01, 0x12, 0, 3, 0, 0, 0, 1, 0, orientation, 0, 0,
        0, 0, 0, 0,
    ]
}

/// A copy of `frame` whose EXIF Orientation is `orientation` (1..=8): the
/// value is patched in place when the first EXIF APP1 has the tag; otherwise
/// a minimal EXIF APP1 goes right after SOI (after a leading APP0, which JFIF
/// requires first). When a tagless EXIF APP1 exists, ours lands before it and
/// is the one viewers read: rewriting that IFD would mean relocating every
/// offset in it. `None` if `orientation` is not 1..=8 or the frame is
/// malformed.
pub fn set_orientation(frame: &[u8], orientation: u8) -> Option<Vec<u8>> {
    if !(1..=8).contains(&orientation) {
        return None;
    }
    let h = parse_headers(frame).ok()?;
    if let Some(tag) = h.orientation {
        let mut out = frame.to_vec();
        let value = u16::from(orientation);
        let bytes = if tag.big_endian {
            value.to_be_bytes()
        } else {
            value.to_le_bytes()
        };
        out.get_mut(tag.at..tag.at + 2)?.copy_from_slice(&bytes);
        return Some(out);
    }
    let (head, tail) = frame.split_at_checked(h.app_insert_at)?;
    let segment = exif_orientation_segment(orientation);
    let mut out = Vec::with_capacity(frame.len() + segment.len());
    out.extend_from_slice(head);
    out.extend_from_slice(&segment);
    out.extend_from_slice(tail);
    Some(out)
}

/// The EXIF Orientation that shows a frame turned by picamd's `--rotation`
/// (degrees clockwise). EXIF 2.3 tag 0x0112 names the transform a viewer
/// applies to display the stored image: 6 is "rotate 90° clockwise", 3 "180°",
/// 8 "rotate 90° counter-clockwise" (= 270° clockwise). Other values (the
/// config accepts only 0/90/180/270) mean no rotation.
pub fn orientation_for_rotation(rotation: u16) -> u8 {
    match rotation % 360 {
        90 => 6,
        180 => 3,
        270 => 8,
        _ => 1,
    }
}

/// Applies the fix-ups a frame needs: the default Huffman tables when it has
/// none (baseline), and `orientation` when it is 2..=8 and differs from the
/// frame's own (1 or an invalid value: leave the tool's metadata alone).
/// Returns `frame` itself, uncopied, when there is nothing to do or the
/// headers are malformed.
pub fn normalize(frame: Vec<u8>, orientation: u8) -> Vec<u8> {
    let Ok(h) = parse_headers(&frame) else {
        return frame;
    };
    let need_tables = h.needs_default_tables();
    let need_orientation =
        (2..=8).contains(&orientation) && h.orientation_value() != Some(orientation);
    let mut out = frame;
    if need_tables && let Some(fixed) = insert_default_huffman_tables(&out) {
        out = fixed;
    }
    if need_orientation && let Some(fixed) = set_orientation(&out, orientation) {
        out = fixed;
    }
    out
}

// ---------------------------------------------------------------------------
// Fuzzing entry points (see src/fuzzing.rs); they assert invariants.

/// Feeds `stream` in reads cycling through `sizes` (each at least 1), drains
/// after each, finishes; asserts the memory bound along the way.
fn split_in_reads(stream: &[u8], max_frame_bytes: usize, sizes: &[usize]) -> Vec<SplitEvent> {
    let mut splitter = Splitter::new(max_frame_bytes);
    let mut events = Vec::new();
    let mut rest = stream;
    let mut k = 0;
    while !rest.is_empty() {
        let size = sizes
            .get(k % sizes.len().max(1))
            .copied()
            .unwrap_or(1)
            .clamp(1, rest.len());
        k += 1;
        let (read, tail) = rest.split_at(size);
        rest = tail;
        splitter.feed(read);
        let bound = max_frame_bytes.saturating_add(read.len() + 16);
        assert!(splitter.buffered_bytes() <= bound);
        while let Some(ev) = splitter.next_event() {
            events.push(ev);
        }
        assert!(
            splitter.buffered_bytes() <= bound,
            "buffered {} > max {} + read {} + 16",
            splitter.buffered_bytes(),
            max_frame_bytes,
            read.len()
        );
    }
    while let Some(ev) = splitter.finish() {
        events.push(ev);
    }
    assert_eq!(splitter.buffered_bytes(), 0);
    events
}

/// `data[0]` picks `max_frame_bytes`, `data[1..3]` two read sizes; the rest is
/// the stream. Whole, in those reads, and (when short) byte by byte must give
/// the same events, and the events must account for every byte.
#[doc(hidden)]
pub fn fuzz_split(data: &[u8]) {
    let Some((&[a, b, c], stream)) = data.split_first_chunk::<3>() else {
        return;
    };
    // Small limits so that fuzz inputs reach them.
    let max = 8 + usize::from(a) * 16;
    let whole = split_in_reads(stream, max, &[stream.len()]);
    let pieces = split_in_reads(stream, max, &[usize::from(b % 32) + 1, usize::from(c) + 1]);
    assert_eq!(whole, pieces);
    if stream.len() <= 4096 {
        assert_eq!(whole, split_in_reads(stream, max, &[1]));
    }
    let mut total = 0;
    let mut previous_skipped = false;
    for ev in &whole {
        let bytes = match ev {
            SplitEvent::Frame(f) => {
                assert!(f.starts_with(&[0xFF, SOI]) && f.ends_with(&[0xFF, EOI]));
                assert!(f.len() <= max);
                assert_eq!(parse_single(f, max), Ok(0..f.len()));
                f.len()
            }
            SplitEvent::Oversize { bytes } => {
                assert!(*bytes > max);
                *bytes
            }
            SplitEvent::Corrupt { bytes } => {
                assert!(*bytes >= 2 && *bytes <= max);
                *bytes
            }
            SplitEvent::Skipped { bytes } => {
                // A run of garbage is reported once.
                assert!(*bytes > 0 && !previous_skipped);
                *bytes
            }
        };
        previous_skipped = matches!(ev, SplitEvent::Skipped { .. });
        total += bytes;
    }
    assert_eq!(total, stream.len());
}

/// For input that `parse_single` accepts, `normalize` (every orientation
/// value, valid or not) gives a frame `parse_single` accepts, with the same
/// size, the tables when they were needed and the orientation asked for; and
/// no copy when there was nothing to do.
#[doc(hidden)]
pub fn fuzz_fixups(data: &[u8]) {
    const LIMIT: usize = 1 << 24;
    if parse_single(data, LIMIT).is_err() {
        return;
    }
    let before = info(data);
    for orientation in 0..=9 {
        let input = data.to_vec();
        let ptr = input.as_ptr();
        let out = normalize(input, orientation);
        assert!(parse_single(&out, usize::MAX).is_ok());
        let after = info(&out);
        assert_eq!(
            before.map(|i| (i.width, i.height)),
            after.map(|i| (i.width, i.height))
        );
        let (Some(before), Some(after)) = (before, after) else {
            assert_eq!(out.as_ptr(), ptr);
            continue;
        };
        let needs_tables = parse_headers(data).is_ok_and(|h| h.needs_default_tables());
        let wants_orientation =
            (2..=8).contains(&orientation) && before.orientation != Some(orientation);
        if needs_tables {
            assert!(after.has_huffman_tables);
        }
        if (2..=8).contains(&orientation) {
            assert_eq!(after.orientation, Some(orientation));
        } else {
            assert_eq!(after.orientation, before.orientation);
        }
        if !needs_tables && !wants_orientation {
            assert_eq!(out.as_ptr(), ptr);
            assert_eq!(out, data);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // ---- A small generator of JPEG byte streams ---------------------------

    /// xorshift64: deterministic, no dependency.
    struct Rng(u64);

    impl Rng {
        fn new(seed: u64) -> Self {
            Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
        }
        fn next(&mut self) -> u64 {
            let mut x = self.0;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            self.0 = x;
            x
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
        fn byte(&mut self) -> u8 {
            (self.next() >> 24) as u8
        }
        fn chance(&mut self, one_in: usize) -> bool {
            self.below(one_in) == 0
        }
    }

    fn seg(marker: u8, payload: &[u8]) -> Vec<u8> {
        let mut v = vec![0xFF, marker];
        v.extend_from_slice(&u16::try_from(payload.len() + 2).unwrap().to_be_bytes());
        v.extend_from_slice(payload);
        v
    }

    fn jfif() -> Vec<u8> {
        seg(APP0, b"JFIF\0\x01\x01\x00\x00\x01\x00\x01\x00\x00")
    }

    fn dqt() -> Vec<u8> {
        let mut p = vec![0x00];
        p.extend(1..=64u8);
        seg(0xDB, &p)
    }

    fn sof(marker: u8, width: u16, height: u16, components: u8) -> Vec<u8> {
        let mut p = vec![8];
        p.extend(height.to_be_bytes());
        p.extend(width.to_be_bytes());
        p.push(components);
        for c in 1..=components {
            p.extend([c, if c == 1 { 0x22 } else { 0x11 }, u8::from(c != 1)]);
        }
        seg(marker, &p)
    }

    fn sos(components: &[u8]) -> Vec<u8> {
        let mut p = vec![u8::try_from(components.len()).unwrap()];
        for &c in components {
            p.extend([c, 0x00]);
        }
        p.extend([0, 63, 0]);
        seg(SOS, &p)
    }

    /// Not the default tables: a DHT the fix-up must leave alone.
    fn small_dht() -> Vec<u8> {
        let mut p = vec![0x00, 1];
        p.extend([0u8; 15]);
        p.push(0);
        seg(DHT, &p)
    }

    /// Entropy-coded bytes: many FF (stuffed as FF 00) and, with `rst`, an
    /// RSTn every 37 bytes.
    fn entropy(rng: &mut Rng, n: usize, rst: bool) -> Vec<u8> {
        let mut out = Vec::with_capacity(n + n / 4);
        let mut next_rst = 0u8;
        for i in 0..n {
            let b = if rng.chance(6) { 0xFF } else { rng.byte() };
            out.push(b);
            if b == 0xFF {
                out.push(0x00);
            }
            if rst && i % 37 == 36 {
                out.extend([0xFF, 0xD0 + next_rst]);
                next_rst = (next_rst + 1) % 8;
            }
        }
        out
    }

    /// An EXIF APP1: TIFF header, IFD0 (Make, Orientation), and with a
    /// thumbnail IFD1 pointing at it (JPEGInterchangeFormat/Length), the
    /// thumbnail's own SOI..EOI inside the segment.
    fn exif(orientation: Option<u16>, big_endian: bool, thumbnail: Option<&[u8]>) -> Vec<u8> {
        let w16 = |v: u16| {
            if big_endian {
                v.to_be_bytes()
            } else {
                v.to_le_bytes()
            }
        };
        let w32 = |v: u32| {
            if big_endian {
                v.to_be_bytes()
            } else {
                v.to_le_bytes()
            }
        };
        let mut t = Vec::new();
        t.extend_from_slice(if big_endian { b"MM" } else { b"II" });
        t.extend(w16(42));
        t.extend(w32(8));
        let n0 = 1 + u16::from(orientation.is_some());
        let ifd0_size = 2 + 12 * u32::from(n0) + 4;
        t.extend(w16(n0));
        t.extend(w16(0x010F)); // Make, ASCII, 3 bytes inline
        t.extend(w16(2));
        t.extend(w32(3));
        t.extend(b"Pi\0\0");
        if let Some(o) = orientation {
            t.extend(w16(TAG_ORIENTATION));
            t.extend(w16(TIFF_SHORT));
            t.extend(w32(1));
            t.extend(w16(o));
            t.extend([0, 0]);
        }
        let ifd1 = 8 + ifd0_size;
        t.extend(w32(if thumbnail.is_some() { ifd1 } else { 0 }));
        if let Some(thumb) = thumbnail {
            let data_at = ifd1 + 2 + 24 + 4;
            t.extend(w16(2));
            t.extend(w16(0x0201));
            t.extend(w16(4));
            t.extend(w32(1));
            t.extend(w32(data_at));
            t.extend(w16(0x0202));
            t.extend(w16(4));
            t.extend(w32(1));
            t.extend(w32(u32::try_from(thumb.len()).unwrap()));
            t.extend(w32(0));
            assert_eq!(t.len(), data_at as usize);
            t.extend_from_slice(thumb);
        }
        let mut p = EXIF_HEADER.to_vec();
        p.extend(t);
        seg(APP1, &p)
    }

    #[derive(Clone)]
    struct Spec {
        width: u16,
        height: u16,
        app0: bool,
        /// Orientation (if any) and byte order of an EXIF APP1.
        exif: Option<(Option<u16>, bool)>,
        thumbnail: bool,
        dht: bool,
        progressive: bool,
        rst: bool,
        /// Fill bytes (extra FF) before some markers.
        fill: bool,
        com: Option<&'static [u8]>,
        /// Bytes of entropy-coded data per scan (before stuffing).
        entropy: usize,
    }

    impl Default for Spec {
        fn default() -> Self {
            Spec {
                width: 160,
                height: 120,
                app0: true,
                exif: None,
                thumbnail: false,
                dht: true,
                progressive: false,
                rst: false,
                fill: false,
                com: None,
                entropy: 200,
            }
        }
    }

    fn push(out: &mut Vec<u8>, rng: &mut Rng, fill: bool, bytes: &[u8]) {
        if fill && rng.chance(2) {
            out.extend(std::iter::repeat_n(0xFF, 1 + rng.below(3)));
        }
        out.extend_from_slice(bytes);
    }

    fn frame(rng: &mut Rng, spec: &Spec) -> Vec<u8> {
        let fill = spec.fill;
        let mut out = vec![0xFF, SOI];
        if spec.app0 {
            push(&mut out, rng, fill, &jfif());
        }
        if let Some((orientation, big_endian)) = spec.exif {
            let thumb = spec.thumbnail.then(|| {
                let small = Spec {
                    entropy: 60,
                    app0: false,
                    ..Spec::default()
                };
                frame(rng, &small)
            });
            push(
                &mut out,
                rng,
                fill,
                &exif(orientation, big_endian, thumb.as_deref()),
            );
        }
        push(&mut out, rng, fill, &dqt());
        if let Some(text) = spec.com {
            push(&mut out, rng, fill, &seg(COM, text));
        }
        let sof_marker = if spec.progressive { 0xC2 } else { 0xC0 };
        push(
            &mut out,
            rng,
            fill,
            &sof(sof_marker, spec.width, spec.height, 3),
        );
        if spec.dht {
            push(&mut out, rng, fill, &small_dht());
        }
        if spec.rst {
            push(&mut out, rng, fill, &seg(0xDD, &[0, 4]));
        }
        push(&mut out, rng, fill, &sos(&[1, 2, 3]));
        out.extend(entropy(rng, spec.entropy, spec.rst));
        if spec.progressive {
            // DHT and COM between scans, then two more scans.
            push(&mut out, rng, fill, &small_dht());
            push(&mut out, rng, fill, &sos(&[1]));
            out.extend(entropy(rng, spec.entropy, spec.rst));
            push(&mut out, rng, fill, &seg(COM, b"between scans"));
            push(&mut out, rng, fill, &sos(&[2]));
            out.extend(entropy(rng, spec.entropy, spec.rst));
        }
        push(&mut out, rng, fill, &[0xFF, EOI]);
        out
    }

    fn random_spec(rng: &mut Rng) -> Spec {
        Spec {
            width: 1 + rng.below(4000) as u16,
            height: rng.below(3000) as u16,
            app0: rng.chance(2),
            exif: (!rng.chance(3)).then(|| {
                let o = (!rng.chance(3)).then(|| 1 + rng.below(8) as u16);
                (o, rng.chance(2))
            }),
            thumbnail: rng.chance(2),
            dht: rng.chance(2),
            progressive: rng.chance(4),
            rst: rng.chance(3),
            fill: rng.chance(3),
            com: rng.chance(4).then_some(&b"picamd-ts=1700000000000000"[..]),
            entropy: rng.below(400),
        }
    }

    fn junk(rng: &mut Rng) -> Vec<u8> {
        match rng.below(5) {
            0 => b"Still capture image received\n".to_vec(),
            1 => vec![0xFF],
            2 => vec![0xFF, 0xFF, 0x00, 0xD9],
            // Random bytes with no FF: cannot form an SOI.
            _ => (0..1 + rng.below(50)).map(|_| rng.byte() & 0x7F).collect(),
        }
    }

    /// Frames with optional junk between them.
    fn stream(rng: &mut Rng, frames: usize, with_junk: bool) -> Vec<u8> {
        let mut out = Vec::new();
        for _ in 0..frames {
            if with_junk && rng.chance(2) {
                out.extend(junk(rng));
            }
            let spec = random_spec(rng);
            out.extend(frame(rng, &spec));
        }
        if with_junk && rng.chance(2) {
            out.extend(junk(rng));
        }
        out
    }

    /// Damages a stream: flipped bytes, stray FFs, cut-outs, truncation.
    fn mutate(rng: &mut Rng, data: &mut Vec<u8>) {
        for _ in 0..1 + rng.below(4) {
            if data.is_empty() {
                return;
            }
            let at = rng.below(data.len());
            match rng.below(5) {
                0 => data[at] = rng.byte(),
                1 => data.insert(at, 0xFF),
                2 => data.insert(at, [0x00, 0xD8, 0xD9, 0xDA, 0xC4, 0xD0][rng.below(6)]),
                3 => {
                    let end = (at + rng.below(40)).min(data.len());
                    data.drain(at..end);
                }
                _ => data.truncate(at),
            }
        }
    }

    // ---- The naive reference splitter: whole input, byte by byte ----------

    enum RefEnd {
        Complete(usize),
        Broken(usize),
        Truncated,
    }

    fn reference_frame(d: &[u8], start: usize) -> RefEnd {
        let n = d.len();
        let mut i = start + 2;
        let mut seen_sof = false;
        let mut scans = 0;
        loop {
            if i >= n {
                return RefEnd::Truncated;
            }
            if d[i] != 0xFF {
                return RefEnd::Broken(i);
            }
            while i + 1 < n && d[i + 1] == 0xFF {
                i += 1;
            }
            if i + 1 >= n {
                return RefEnd::Truncated;
            }
            let m = d[i + 1];
            if m == 0xD8 {
                return RefEnd::Broken(i);
            }
            if m == 0xD9 {
                return if scans > 0 {
                    RefEnd::Complete(i + 2)
                } else {
                    RefEnd::Broken(i + 2)
                };
            }
            let with_length = (0xC0..=0xCF).contains(&m) || (0xDA..=0xFE).contains(&m);
            if !with_length {
                return RefEnd::Broken(i);
            }
            if i + 3 >= n {
                return RefEnd::Truncated;
            }
            let len = usize::from(d[i + 2]) * 256 + usize::from(d[i + 3]);
            if len < 2 {
                return RefEnd::Broken(i);
            }
            if m == 0xDA {
                if len < 8 {
                    return RefEnd::Broken(i);
                }
                if i + 4 >= n {
                    return RefEnd::Truncated;
                }
                let ns = usize::from(d[i + 4]);
                if !(1..=4).contains(&ns) || len != 6 + 2 * ns || !seen_sof {
                    return RefEnd::Broken(i);
                }
            }
            let frame_header = (0xC0..=0xCF).contains(&m) && m != 0xC4 && m != 0xC8 && m != 0xCC;
            if frame_header {
                if len < 11 {
                    return RefEnd::Broken(i);
                }
                if i + 9 >= n {
                    return RefEnd::Truncated;
                }
                if len != 8 + 3 * usize::from(d[i + 9]) {
                    return RefEnd::Broken(i);
                }
                seen_sof = true;
            }
            i += 2 + len;
            if m == 0xDA {
                scans += 1;
                loop {
                    if i >= n {
                        return RefEnd::Truncated;
                    }
                    if d[i] != 0xFF {
                        i += 1;
                        continue;
                    }
                    if i + 1 >= n {
                        return RefEnd::Truncated;
                    }
                    match d[i + 1] {
                        0x00 | 0xD0..=0xD7 => i += 2,
                        0xFF => i += 1,
                        _ => break,
                    }
                }
            }
        }
    }

    fn reference(d: &[u8], max: usize) -> Vec<SplitEvent> {
        let mut events = Vec::new();
        let mut garbage = 0;
        let mut i = 0;
        while i < d.len() {
            if d[i] == 0xFF && d.get(i + 1) == Some(&0xD8) {
                if garbage > 0 {
                    events.push(SplitEvent::Skipped { bytes: garbage });
                    garbage = 0;
                }
                let (end, complete) = match reference_frame(d, i) {
                    RefEnd::Complete(end) => (end, true),
                    RefEnd::Broken(at) => (at, false),
                    RefEnd::Truncated => (d.len(), false),
                };
                let bytes = end - i;
                events.push(if bytes > max {
                    SplitEvent::Oversize { bytes }
                } else if complete {
                    SplitEvent::Frame(d[i..end].to_vec())
                } else {
                    SplitEvent::Corrupt { bytes }
                });
                i = end;
            } else {
                garbage += 1;
                i += 1;
            }
        }
        if garbage > 0 {
            events.push(SplitEvent::Skipped { bytes: garbage });
        }
        events
    }

    // ---- Feeding helpers ---------------------------------------------------

    const BIG: usize = 1 << 20;

    fn whole(d: &[u8], max: usize) -> Vec<SplitEvent> {
        split_in_reads(d, max, &[d.len()])
    }

    fn bytewise(d: &[u8], max: usize) -> Vec<SplitEvent> {
        split_in_reads(d, max, &[1])
    }

    fn feed_in_two(d: &[u8], max: usize, cut: usize) -> Vec<SplitEvent> {
        let mut s = Splitter::new(max);
        let mut events = Vec::new();
        for part in [&d[..cut], &d[cut..]] {
            s.feed(part);
            while let Some(ev) = s.next_event() {
                events.push(ev);
            }
        }
        while let Some(ev) = s.finish() {
            events.push(ev);
        }
        events
    }

    fn contains(hay: &[u8], needle: &[u8]) -> usize {
        hay.windows(needle.len()).filter(|w| *w == needle).count()
    }

    // ---- Splitter ------------------------------------------------------------

    #[test]
    fn reference_agrees_on_a_known_stream() {
        // Guards the reference itself: it must find what we put in.
        let mut rng = Rng::new(1);
        let f1 = frame(&mut rng, &Spec::default());
        let f2 = frame(
            &mut rng,
            &Spec {
                exif: Some((Some(6), true)),
                thumbnail: true,
                ..Spec::default()
            },
        );
        let mut d = b"hello\n".to_vec();
        d.extend(&f1);
        d.extend([0x00, 0xFF, 0x12]);
        d.extend(&f2);
        d.extend(b"bye");
        let expected = vec![
            SplitEvent::Skipped { bytes: 6 },
            SplitEvent::Frame(f1.clone()),
            SplitEvent::Skipped { bytes: 3 },
            SplitEvent::Frame(f2.clone()),
            SplitEvent::Skipped { bytes: 3 },
        ];
        assert_eq!(reference(&d, BIG), expected);
        assert_eq!(whole(&d, BIG), expected);
        assert_eq!(bytewise(&d, BIG), expected);
    }

    #[test]
    fn exif_thumbnail_does_not_end_a_frame() {
        let mut rng = Rng::new(2);
        let spec = Spec {
            exif: Some((Some(1), false)),
            thumbnail: true,
            ..Spec::default()
        };
        let f = frame(&mut rng, &spec);
        // The frame holds two SOIs and two EOIs: its own and the thumbnail's.
        assert_eq!(contains(&f, &[0xFF, SOI]), 2);
        assert!(contains(&f, &[0xFF, EOI]) >= 2);
        let mut d = f.clone();
        d.extend(&f);
        assert_eq!(
            whole(&d, BIG),
            vec![SplitEvent::Frame(f.clone()), SplitEvent::Frame(f.clone())]
        );
        assert_eq!(bytewise(&d, BIG), whole(&d, BIG));
    }

    #[test]
    fn every_split_point_agrees() {
        let mut rng = Rng::new(3);
        let mut d = b"junk".to_vec();
        d.extend(frame(
            &mut rng,
            &Spec {
                exif: Some((Some(3), true)),
                thumbnail: true,
                fill: true,
                ..Spec::default()
            },
        ));
        d.push(0xFF);
        d.extend(frame(
            &mut rng,
            &Spec {
                progressive: true,
                rst: true,
                entropy: 100,
                ..Spec::default()
            },
        ));
        d.extend(&frame(&mut rng, &Spec::default())[..300]);
        let expected = reference(&d, BIG);
        assert_eq!(expected.len(), 5, "{expected:?}");
        assert!(matches!(
            expected.last(),
            Some(SplitEvent::Corrupt { bytes: 300 })
        ));
        for cut in 0..=d.len() {
            assert_eq!(feed_in_two(&d, BIG, cut), expected, "cut at {cut}");
        }
        assert_eq!(bytewise(&d, BIG), expected);
    }

    #[test]
    fn generated_streams_match_the_reference() {
        for seed in 0..150 {
            let mut rng = Rng::new(seed);
            let n = 1 + rng.below(4);
            let d = stream(&mut rng, n, true);
            for max in [BIG, 300, 1200] {
                let expected = reference(&d, max);
                assert_eq!(whole(&d, max), expected, "seed {seed} max {max}");
                let sizes: Vec<usize> = (0..5).map(|_| 1 + rng.below(700)).collect();
                assert_eq!(
                    split_in_reads(&d, max, &sizes),
                    expected,
                    "seed {seed} sizes {sizes:?}"
                );
                assert_eq!(bytewise(&d, max), expected, "seed {seed} bytewise");
            }
            if seed < 20 {
                // Clean streams give every frame and nothing else.
                let clean = stream(&mut rng, 3, false);
                assert!(
                    whole(&clean, BIG)
                        .iter()
                        .all(|e| matches!(e, SplitEvent::Frame(_)))
                );
            }
        }
    }

    #[test]
    fn damaged_streams_match_the_reference() {
        for seed in 0..400 {
            let mut rng = Rng::new(1000 + seed);
            let (n, with_junk) = (1 + rng.below(3), rng.chance(2));
            let mut d = stream(&mut rng, n, with_junk);
            mutate(&mut rng, &mut d);
            let max = [BIG, 200, 700][rng.below(3)];
            let expected = reference(&d, max);
            assert_eq!(whole(&d, max), expected, "seed {seed}");
            let sizes: Vec<usize> = (0..4).map(|_| 1 + rng.below(300)).collect();
            assert_eq!(split_in_reads(&d, max, &sizes), expected, "seed {seed}");
            assert_eq!(bytewise(&d, max), expected, "seed {seed}");
        }
    }

    #[test]
    fn junk_between_frames_is_skipped_exactly() {
        let mut rng = Rng::new(4);
        let f = frame(&mut rng, &Spec::default());
        let mut d = b"text on stdout\n".to_vec();
        d.extend(&f);
        d.extend([0xFF, 0xFF, 0xD9, 0x00]);
        d.extend([0xFF, 0xFF]); // fill bytes before an SOI are garbage too
        d.extend(&f);
        d.push(0xFF);
        assert_eq!(
            bytewise(&d, BIG),
            vec![
                SplitEvent::Skipped { bytes: 15 },
                SplitEvent::Frame(f.clone()),
                SplitEvent::Skipped { bytes: 6 },
                SplitEvent::Frame(f.clone()),
                SplitEvent::Skipped { bytes: 1 },
            ]
        );
    }

    #[test]
    fn every_prefix_of_a_frame_is_partial_and_truncated_at_finish() {
        let mut rng = Rng::new(5);
        let f = frame(
            &mut rng,
            &Spec {
                exif: Some((None, true)),
                thumbnail: true,
                rst: true,
                ..Spec::default()
            },
        );
        for n in 0..f.len() {
            let mut s = Splitter::new(BIG);
            s.feed(&f[..n]);
            assert_eq!(s.next_event(), None, "prefix {n}");
            let expected = match n {
                0 => None,
                1 => Some(SplitEvent::Skipped { bytes: 1 }),
                _ => Some(SplitEvent::Corrupt { bytes: n }),
            };
            assert_eq!(s.finish(), expected, "prefix {n}");
            if n >= 2 {
                assert_eq!(s.last_error(), Some(JpegError::Truncated));
            }
            assert_eq!(s.finish(), None);
            assert_eq!(
                parse_single(&f[..n], BIG),
                Err(if n == 0 {
                    JpegError::Empty
                } else {
                    JpegError::Truncated
                })
            );
        }
        assert_eq!(parse_single(&f, BIG), Ok(0..f.len()));
    }

    #[test]
    fn oversize_frames_are_dropped_with_bounded_memory() {
        let mut rng = Rng::new(6);
        let small = frame(&mut rng, &Spec::default());
        // Big in entropy data, and big in one segment (the splitter skips a
        // segment's payload without holding it).
        let big_scan = frame(
            &mut rng,
            &Spec {
                entropy: 200_000,
                rst: true,
                ..Spec::default()
            },
        );
        let big_segment = {
            let mut f = vec![0xFF, SOI];
            for _ in 0..3 {
                f.extend(seg(COM, &[0x55; 60_000]));
            }
            let rest = frame(
                &mut rng,
                &Spec {
                    app0: false,
                    exif: Some((Some(6), false)),
                    thumbnail: true,
                    ..Spec::default()
                },
            );
            f.extend(&rest[2..]);
            f
        };
        let max = 64 * 1024;
        let mut d = small.clone();
        d.extend(&big_scan);
        d.extend(&small);
        d.extend(&big_segment);
        d.extend(&small);
        let expected = vec![
            SplitEvent::Frame(small.clone()),
            SplitEvent::Oversize {
                bytes: big_scan.len(),
            },
            SplitEvent::Frame(small.clone()),
            SplitEvent::Oversize {
                bytes: big_segment.len(),
            },
            SplitEvent::Frame(small.clone()),
        ];
        assert_eq!(reference(&d, max), expected);
        // split_in_reads asserts buffered_bytes() <= max + read + 16 after
        // every feed and drain.
        assert_eq!(split_in_reads(&d, max, &[4096]), expected);
        assert_eq!(split_in_reads(&d, max, &[65536, 1, 7]), expected);
        assert_eq!(bytewise(&d, max), expected);
        // While an oversize frame is being discarded almost nothing is held.
        let mut s = Splitter::new(max);
        for chunk in big_scan[..150_000].chunks(1000) {
            s.feed(chunk);
            assert_eq!(s.next_event(), None);
        }
        assert!(s.buffered_bytes() <= 1000 + 8, "{}", s.buffered_bytes());
        assert_eq!(s.finish(), Some(SplitEvent::Oversize { bytes: 150_000 }));
        assert_eq!(s.last_error(), Some(JpegError::TooLarge));
    }

    #[test]
    fn frame_exactly_at_the_limit_passes() {
        let mut rng = Rng::new(7);
        let f = frame(&mut rng, &Spec::default());
        assert_eq!(whole(&f, f.len()), vec![SplitEvent::Frame(f.clone())]);
        assert_eq!(
            whole(&f, f.len() - 1),
            vec![SplitEvent::Oversize { bytes: f.len() }]
        );
        assert_eq!(parse_single(&f, f.len()), Ok(0..f.len()));
        assert_eq!(parse_single(&f, f.len() - 1), Err(JpegError::TooLarge));
        // Every limit, byte by byte: the memory bound holds wherever the
        // limit falls (in a segment header's lookahead, in the scan...).
        let f = frame(
            &mut rng,
            &Spec {
                exif: Some((Some(6), false)),
                thumbnail: true,
                entropy: 30,
                ..Spec::default()
            },
        );
        for max in 0..=f.len() + 1 {
            let expected = if max >= f.len() {
                SplitEvent::Frame(f.clone())
            } else {
                SplitEvent::Oversize { bytes: f.len() }
            };
            assert_eq!(bytewise(&f, max), vec![expected], "max {max}");
        }
    }

    #[test]
    fn fill_bytes_and_progressive_scans() {
        let mut rng = Rng::new(8);
        let f = frame(
            &mut rng,
            &Spec {
                fill: true,
                progressive: true,
                rst: true,
                ..Spec::default()
            },
        );
        assert!(contains(&f, &[0xFF, 0xFF]) > 0);
        assert_eq!(contains(&f, &[0xFF, SOS, 0x00]), 3);
        assert_eq!(bytewise(&f, BIG), vec![SplitEvent::Frame(f.clone())]);
        assert_eq!(parse_single(&f, BIG), Ok(0..f.len()));
        // Fill bytes right before EOI, inside the entropy-coded data.
        let mut g = f[..f.len() - 2].to_vec();
        g.extend([0xFF, 0xFF, 0xFF, EOI]);
        assert_eq!(bytewise(&g, BIG), vec![SplitEvent::Frame(g.clone())]);
    }

    #[test]
    fn soi_inside_a_frame_resyncs_there() {
        let mut rng = Rng::new(9);
        let f = frame(&mut rng, &Spec::default());
        let cut = f.len() - 20; // inside the entropy-coded data
        let mut d = f[..cut].to_vec();
        d.extend(&f);
        let events = bytewise(&d, BIG);
        assert!(
            matches!(events[0], SplitEvent::Corrupt { bytes } if bytes == cut || bytes == cut + 1)
        );
        assert_eq!(events[1], SplitEvent::Frame(f.clone()));
        assert_eq!(events.len(), 2);
        let mut s = Splitter::new(BIG);
        s.feed(&d);
        assert!(matches!(s.next_event(), Some(SplitEvent::Corrupt { .. })));
        assert_eq!(s.last_error(), Some(JpegError::SoiInFrame));
    }

    #[test]
    fn broken_structure_resyncs_at_the_next_soi() {
        let mut rng = Rng::new(10);
        let good = frame(&mut rng, &Spec::default());
        // APP0 with length 1, then a frame.
        let mut d = vec![0xFF, SOI, 0xFF, APP0, 0x00, 0x01, b'x', b'y'];
        d.extend(&good);
        assert_eq!(
            whole(&d, BIG),
            vec![
                SplitEvent::Corrupt { bytes: 2 },
                SplitEvent::Skipped { bytes: 6 },
                SplitEvent::Frame(good.clone())
            ]
        );
        let mut s = Splitter::new(BIG);
        s.feed(&d);
        assert_eq!(s.next_event(), Some(SplitEvent::Corrupt { bytes: 2 }));
        assert_eq!(s.last_error(), Some(JpegError::BadSegment));
        // An oversize frame that then breaks is reported as oversize.
        let mut d = good[..good.len() - 2].to_vec();
        d.extend([0xFF, 0x05]);
        assert_eq!(
            whole(&d, 100),
            vec![
                SplitEvent::Oversize {
                    bytes: good.len() - 2
                },
                SplitEvent::Skipped { bytes: 2 }
            ]
        );
    }

    #[test]
    fn many_frames_in_one_read_and_the_no_copy_path() {
        let mut rng = Rng::new(11);
        let f = frame(
            &mut rng,
            &Spec {
                entropy: 20,
                ..Spec::default()
            },
        );
        let d: Vec<u8> = (0..2000).flat_map(|_| f.iter().copied()).collect();
        let events = whole(&d, BIG);
        assert_eq!(events.len(), 2000);
        assert!(events.iter().all(|e| *e == SplitEvent::Frame(f.clone())));
        // One read holding exactly one frame leaves nothing behind.
        let mut s = Splitter::new(BIG);
        s.feed(&f);
        assert_eq!(s.next_event(), Some(SplitEvent::Frame(f.clone())));
        assert_eq!(s.buffered_bytes(), 0);
        // A frame in two reads, then the next frame starts the next read.
        s.feed(&f[..50]);
        assert_eq!(s.next_event(), None);
        s.feed(&f[50..]);
        assert_eq!(s.next_event(), Some(SplitEvent::Frame(f.clone())));
        assert_eq!(s.buffered_bytes(), 0);
    }

    #[test]
    fn one_byte_at_a_time_is_linear() {
        // 3 MB one byte at a time: quadratic rescanning would take minutes.
        let mut rng = Rng::new(12);
        let f = frame(
            &mut rng,
            &Spec {
                entropy: 1_000_000,
                ..Spec::default()
            },
        );
        let mut s = Splitter::new(4 << 20);
        let mut got = None;
        for b in f.chunks(1) {
            s.feed(b);
            if let Some(ev) = s.next_event() {
                got = Some(ev);
            }
        }
        assert_eq!(got, Some(SplitEvent::Frame(f)));
    }

    #[test]
    fn finish_drains_pending_events_then_resets() {
        let mut rng = Rng::new(13);
        let f = frame(&mut rng, &Spec::default());
        let mut s = Splitter::new(BIG);
        s.feed(&f);
        s.feed(&f);
        s.feed(b"\n");
        assert_eq!(s.finish(), Some(SplitEvent::Frame(f.clone())));
        assert_eq!(s.finish(), Some(SplitEvent::Frame(f.clone())));
        assert_eq!(s.finish(), Some(SplitEvent::Skipped { bytes: 1 }));
        assert_eq!(s.finish(), None);
        s.feed(&f);
        assert_eq!(s.next_event(), Some(SplitEvent::Frame(f)));
    }

    #[test]
    fn fuzz_split_holds_on_generated_and_damaged_streams() {
        for seed in 0..60 {
            let mut rng = Rng::new(5000 + seed);
            let mut d = vec![rng.byte(), rng.byte(), rng.byte()];
            let n = 1 + rng.below(3);
            let mut s = stream(&mut rng, n, true);
            if seed % 2 == 1 {
                mutate(&mut rng, &mut s);
            }
            d.extend(s);
            fuzz_split(&d);
        }
        fuzz_split(&[]);
        fuzz_split(&[0, 0, 0, 0xFF, SOI, 0xFF, SOI]);
    }

    // ---- parse_single: every error ----------------------------------------

    fn minimal() -> Vec<u8> {
        let mut f = vec![0xFF, SOI];
        f.extend(sof(0xC0, 8, 8, 1));
        f.extend(small_dht());
        f.extend(sos(&[1]));
        f.extend([0x12, 0xFF, 0x00, 0x34, 0xFF, 0xD0, 0x56]);
        f.extend([0xFF, EOI]);
        f
    }

    fn with_marker(head: &[u8]) -> Vec<u8> {
        let mut f = vec![0xFF, SOI];
        f.extend_from_slice(head);
        f.extend_from_slice(&minimal()[2..]);
        f
    }

    #[test]
    fn parse_single_errors() {
        use JpegError::*;
        let f = minimal();
        assert_eq!(parse_single(&f, BIG), Ok(0..f.len()));
        let cases: Vec<(Vec<u8>, JpegError)> = vec![
            (vec![], Empty),
            (b"<html>".to_vec(), NotJpeg),
            (vec![0xFF], Truncated),
            (f[..f.len() - 1].to_vec(), Truncated),
            (with_marker(&[0xFF, APP0, 0x00, 0x01]), BadSegment),
            (with_marker(&[0xFF, COM, 0x00, 0x00]), BadSegment),
            (with_marker(&[0x00]), MissingMarker),
            (with_marker(&[0xFF, 0xD3]), BadMarker),
            (with_marker(&[0xFF, 0x01]), BadMarker),
            (with_marker(&[0xFF, 0x00]), BadMarker),
            (with_marker(&[0xFF, 0x80, 0x00, 0x02]), BadMarker),
            (with_marker(&[0xFF, SOI]), SoiInFrame),
            (
                [&[0xFF, SOI][..], &sos(&[1]), &[0xFF, EOI]].concat(),
                NoFrameHeader,
            ),
            (
                [&[0xFF, SOI][..], &sof(0xC0, 8, 8, 1), &[0xFF, EOI]].concat(),
                NoScan,
            ),
            ([&f[..], b"\n"].concat(), TrailingData),
            ([&f[..], &f].concat(), TrailingData),
        ];
        for (data, err) in &cases {
            assert_eq!(parse_single(data, BIG), Err(*err), "{data:02x?}");
        }
        assert_eq!(parse_single(&f, f.len() - 1), Err(TooLarge));
        // SOS whose length does not match Ns, and SOF whose length does not
        // match Nf.
        let mut bad_sos = minimal();
        let at = contains_at(&bad_sos, &[0xFF, SOS]);
        bad_sos[at + 4] = 2;
        assert_eq!(parse_single(&bad_sos, BIG), Err(BadSegment));
        let mut bad_sof = minimal();
        bad_sof[2 + 9] = 2;
        assert_eq!(parse_single(&bad_sof, BIG), Err(BadSegment));
        // The splitter reports the same rules.
        for (data, err) in &cases[4..14] {
            let mut s = Splitter::new(BIG);
            s.feed(data);
            while s.next_event().is_some() {}
            while s.finish().is_some() {}
            assert_eq!(s.last_error(), Some(*err), "{data:02x?}");
        }
    }

    fn contains_at(hay: &[u8], needle: &[u8]) -> usize {
        hay.windows(needle.len()).position(|w| w == needle).unwrap()
    }

    #[test]
    fn errors_display_and_map_to_502() {
        use JpegError::*;
        let all = [
            Empty,
            NotJpeg,
            Truncated,
            TooLarge,
            BadSegment,
            MissingMarker,
            BadMarker,
            SoiInFrame,
            NoFrameHeader,
            NoScan,
            TrailingData,
        ];
        let texts: std::collections::HashSet<String> = all.iter().map(|e| e.to_string()).collect();
        assert_eq!(texts.len(), all.len());
        assert!(all.iter().all(|e| e.http_status() == 502));
        assert_eq!(
            NotJpeg.to_string(),
            "capture output is not a JPEG (it does not start with SOI, FF D8)"
        );
    }

    // ---- info and the fix-ups ----------------------------------------------

    #[test]
    fn info_reads_size_tables_and_orientation() {
        let mut rng = Rng::new(20);
        let f = frame(
            &mut rng,
            &Spec {
                width: 1920,
                height: 1080,
                exif: Some((Some(6), false)),
                thumbnail: true,
                ..Spec::default()
            },
        );
        assert_eq!(
            info(&f),
            Some(Info {
                width: 1920,
                height: 1080,
                has_huffman_tables: true,
                orientation: Some(6)
            })
        );
        let g = frame(
            &mut rng,
            &Spec {
                dht: false,
                exif: Some((Some(3), true)),
                ..Spec::default()
            },
        );
        assert_eq!(
            info(&g),
            Some(Info {
                width: 160,
                height: 120,
                has_huffman_tables: false,
                orientation: Some(3)
            })
        );
        let h = frame(
            &mut rng,
            &Spec {
                exif: Some((Some(9), true)),
                ..Spec::default()
            },
        );
        assert_eq!(info(&h).unwrap().orientation, None);
        assert_eq!(info(b"not a jpeg"), None);
        assert_eq!(info(&[0xFF, SOI, 0xFF]), None);
    }

    #[test]
    fn default_tables_are_the_annex_k_tables() {
        for (_, bits, values) in DEFAULT_TABLES {
            let total: usize = bits.iter().map(|&b| usize::from(b)).sum();
            assert_eq!(total, values.len());
            // A valid prefix code (C.2) in which no code is all ones:
            // Kraft sum strictly below 1.
            let kraft: u64 = bits
                .iter()
                .enumerate()
                .map(|(i, &b)| u64::from(b) << (15 - i))
                .sum();
            assert!(kraft < 1 << 16);
        }
        // AC symbols: every run/size (RRRR 0-15, SSSS 1-10), EOB and ZRL.
        let mut expected: Vec<u8> = (0..16u8)
            .flat_map(|r| (1..=10u8).map(move |s| r << 4 | s))
            .collect();
        expected.extend([0x00, 0xF0]);
        expected.sort_unstable();
        for values in [AC_LUMINANCE_VALUES, AC_CHROMINANCE_VALUES] {
            let mut v = values.to_vec();
            v.sort_unstable();
            assert_eq!(v, expected);
        }
        // Spot checks from Table K.5: EOB is 1010 (length 4, the 4th code),
        // 0/1 is 00, 0/2 is 01; from K.6: EOB is 00.
        assert_eq!(&AC_LUMINANCE_VALUES[..4], &[0x01, 0x02, 0x03, 0x00]);
        assert_eq!(AC_CHROMINANCE_VALUES[0], 0x00);
        let mut seg = Vec::new();
        push_default_dht(&mut seg);
        assert_eq!(seg.len(), 2 + usize::from(DEFAULT_DHT_LENGTH));
        assert_eq!(&seg[..4], &[0xFF, 0xC4, 0x01, 0xA2]);
    }

    /// Annex C.2: the code of `symbol` (Figures C.1-C.3: codes of each
    /// length are consecutive, the first code of a length follows the last
    /// code of the previous length, shifted left).
    fn code_of(bits: &[u8; 16], values: &[u8], symbol: u8) -> (usize, u32) {
        let mut code = 0u32;
        let mut k = 0;
        for (i, &n) in bits.iter().enumerate() {
            for _ in 0..n {
                if values[k] == symbol {
                    return (i + 1, code);
                }
                code += 1;
                k += 1;
            }
            code <<= 1;
        }
        panic!("symbol {symbol:02x} not in table");
    }

    #[test]
    fn default_tables_give_the_code_words_printed_in_annex_k() {
        let dc_l = |s| code_of(&DC_LUMINANCE_BITS, &DC_VALUES, s);
        let dc_c = |s| code_of(&DC_CHROMINANCE_BITS, &DC_VALUES, s);
        let ac_l = |s| code_of(&AC_LUMINANCE_BITS, &AC_LUMINANCE_VALUES, s);
        let ac_c = |s| code_of(&AC_CHROMINANCE_BITS, &AC_CHROMINANCE_VALUES, s);
        // Table K.3
        assert_eq!(dc_l(0), (2, 0b00));
        assert_eq!(dc_l(5), (3, 0b110));
        assert_eq!(dc_l(11), (9, 0b1_1111_1110));
        // Table K.4
        assert_eq!(dc_c(0), (2, 0b00));
        assert_eq!(dc_c(3), (3, 0b110));
        assert_eq!(dc_c(11), (11, 0b111_1111_1110));
        // Table K.5
        assert_eq!(ac_l(0x00), (4, 0b1010)); // EOB
        assert_eq!(ac_l(0x01), (2, 0b00));
        assert_eq!(ac_l(0x04), (4, 0b1011));
        assert_eq!(ac_l(0x11), (4, 0b1100));
        assert_eq!(ac_l(0x21), (5, 0b11100));
        assert_eq!(ac_l(0x71), (8, 0b1111_1010));
        assert_eq!(ac_l(0x14), (9, 0b1_1111_0110));
        assert_eq!(ac_l(0xF0), (11, 0b111_1111_1001)); // ZRL
        assert_eq!(ac_l(0x0A), (16, 0b1111_1111_1000_0011));
        assert_eq!(ac_l(0xFA), (16, 0b1111_1111_1111_1110));
        // Table K.6
        assert_eq!(ac_c(0x00), (2, 0b00)); // EOB
        assert_eq!(ac_c(0x01), (2, 0b01));
        assert_eq!(ac_c(0x03), (4, 0b1010));
        assert_eq!(ac_c(0x11), (4, 0b1011));
        assert_eq!(ac_c(0xF0), (10, 0b11_1111_1010)); // ZRL
        assert_eq!(ac_c(0xFA), (16, 0b1111_1111_1111_1110));
    }

    #[test]
    fn only_an_sof_opens_the_frame_and_only_a_leading_app0_comes_first() {
        // DQT is not a frame header: SOS after it has no SOF.
        let d = [&[0xFF, SOI][..], &dqt(), &sos(&[1]), &[0x00, 0xFF, EOI]].concat();
        assert_eq!(parse_single(&d, BIG), Err(JpegError::NoFrameHeader));
        // An APP0 that is not the first segment does not move the EXIF.
        let mut rng = Rng::new(27);
        let f = frame(
            &mut rng,
            &Spec {
                app0: false,
                ..Spec::default()
            },
        );
        let g = [&f[..2], &dqt(), &jfif(), &f[2..]].concat();
        let out = set_orientation(&g, 6).unwrap();
        assert_eq!(&out[..4], &[0xFF, SOI, 0xFF, APP1]);
    }

    #[test]
    fn insert_default_huffman_tables_before_sos() {
        let mut rng = Rng::new(21);
        let f = frame(
            &mut rng,
            &Spec {
                dht: false,
                app0: false,
                ..Spec::default()
            },
        );
        let out = insert_default_huffman_tables(&f).unwrap();
        assert_eq!(out.len(), f.len() + 420);
        assert_eq!(parse_single(&out, BIG), Ok(0..out.len()));
        assert!(info(&out).unwrap().has_huffman_tables);
        let at = contains_at(&out, &[0xFF, DHT]);
        assert_eq!(&out[at + 420..at + 422], &[0xFF, SOS]);
        assert_eq!(&out[..at], &f[..at]);
        assert_eq!(insert_default_huffman_tables(&out), None);
        // Has tables already, is progressive, or is not a JPEG: left alone.
        assert_eq!(
            insert_default_huffman_tables(&frame(&mut rng, &Spec::default())),
            None
        );
        assert_eq!(
            insert_default_huffman_tables(&frame(
                &mut rng,
                &Spec {
                    dht: false,
                    progressive: true,
                    ..Spec::default()
                }
            )),
            None
        );
        assert_eq!(insert_default_huffman_tables(b"xx"), None);
        // The splitter still cuts the fixed frame whole.
        assert_eq!(bytewise(&out, BIG), vec![SplitEvent::Frame(out.clone())]);
    }

    #[test]
    fn set_orientation_inserts_after_app0() {
        let mut rng = Rng::new(22);
        let f = frame(&mut rng, &Spec::default());
        let out = set_orientation(&f, 6).unwrap();
        assert_eq!(out.len(), f.len() + 36);
        assert_eq!(parse_single(&out, BIG), Ok(0..out.len()));
        assert_eq!(info(&out).unwrap().orientation, Some(6));
        let app0_len = jfif().len();
        assert_eq!(&out[2..2 + app0_len], &jfif()[..]);
        assert_eq!(
            &out[2 + app0_len..2 + app0_len + 4],
            &[0xFF, APP1, 0x00, 34]
        );
        // Without APP0: right after SOI.
        let g = frame(
            &mut rng,
            &Spec {
                app0: false,
                ..Spec::default()
            },
        );
        let out = set_orientation(&g, 8).unwrap();
        assert_eq!(&out[..4], &[0xFF, SOI, 0xFF, APP1]);
        assert_eq!(info(&out).unwrap().orientation, Some(8));
        assert_eq!(set_orientation(&g, 0), None);
        assert_eq!(set_orientation(&g, 9), None);
        assert_eq!(set_orientation(b"nope", 6), None);
    }

    #[test]
    fn set_orientation_patches_an_existing_tag() {
        for big_endian in [false, true] {
            let mut rng = Rng::new(23);
            let spec = Spec {
                exif: Some((Some(1), big_endian)),
                thumbnail: true,
                ..Spec::default()
            };
            let f = frame(&mut rng, &spec);
            for o in 1..=8 {
                let out = set_orientation(&f, o).unwrap();
                assert_eq!(out.len(), f.len());
                assert_eq!(info(&out).unwrap().orientation, Some(o));
                let differing = f.iter().zip(&out).filter(|(a, b)| a != b).count();
                assert_eq!(differing, usize::from(o != 1));
            }
        }
        // An EXIF without the tag: ours goes before it and wins.
        let mut rng = Rng::new(24);
        let f = frame(
            &mut rng,
            &Spec {
                exif: Some((None, false)),
                ..Spec::default()
            },
        );
        assert_eq!(info(&f).unwrap().orientation, None);
        let out = set_orientation(&f, 3).unwrap();
        assert_eq!(out.len(), f.len() + 36);
        assert_eq!(info(&out).unwrap().orientation, Some(3));
        assert_eq!(parse_single(&out, BIG), Ok(0..out.len()));
    }

    #[test]
    fn rotation_to_orientation() {
        assert_eq!(orientation_for_rotation(0), 1);
        assert_eq!(orientation_for_rotation(90), 6);
        assert_eq!(orientation_for_rotation(180), 3);
        assert_eq!(orientation_for_rotation(270), 8);
        assert_eq!(orientation_for_rotation(360), 1);
        assert_eq!(orientation_for_rotation(45), 1);
    }

    #[test]
    fn normalize_copies_only_when_needed() {
        let mut rng = Rng::new(25);
        let f = frame(&mut rng, &Spec::default());
        let input = f.clone();
        let ptr = input.as_ptr();
        let out = normalize(input, 1);
        assert_eq!(out.as_ptr(), ptr);
        // Already at the orientation asked for: no copy either.
        let g = frame(
            &mut rng,
            &Spec {
                exif: Some((Some(6), true)),
                ..Spec::default()
            },
        );
        let input = g.clone();
        let ptr = input.as_ptr();
        let out = normalize(input, 6);
        assert_eq!(out.as_ptr(), ptr);
        // Garbage passes through untouched.
        assert_eq!(normalize(b"junk".to_vec(), 6), b"junk");
        // Both fix-ups.
        let w = frame(
            &mut rng,
            &Spec {
                dht: false,
                ..Spec::default()
            },
        );
        let out = normalize(w.clone(), 8);
        assert_eq!(out.len(), w.len() + 420 + 36);
        let i = info(&out).unwrap();
        assert!(i.has_huffman_tables);
        assert_eq!(i.orientation, Some(8));
        assert_eq!(parse_single(&out, BIG), Ok(0..out.len()));
        // Tables only.
        let out = normalize(w.clone(), 1);
        assert_eq!(out.len(), w.len() + 420);
    }

    #[test]
    fn find_and_insert_com() {
        let mut rng = Rng::new(26);
        let f = frame(
            &mut rng,
            &Spec {
                com: Some(b"hello"),
                ..Spec::default()
            },
        );
        assert_eq!(find_com(&f, b"picamd-ts="), None);
        assert_eq!(find_com(&f, b"hel"), Some(&b"hello"[..]));
        let out = insert_com(&f, b"picamd-ts=1700000000123456").unwrap();
        assert_eq!(
            find_com(&out, b"picamd-ts="),
            Some(&b"picamd-ts=1700000000123456"[..])
        );
        assert_eq!(parse_single(&out, BIG), Ok(0..out.len()));
        assert_eq!(insert_com(&f, &vec![b'x'; 65534]), None);
        assert!(insert_com(&f, &vec![b'x'; 65533]).is_some());
        assert_eq!(find_com(b"junk", b""), None);
    }

    #[test]
    fn fuzz_fixups_holds_on_generated_frames() {
        for seed in 0..200 {
            let mut rng = Rng::new(9000 + seed);
            let spec = random_spec(&mut rng);
            let f = frame(&mut rng, &spec);
            assert_eq!(parse_single(&f, BIG), Ok(0..f.len()), "seed {seed}");
            fuzz_fixups(&f);
        }
        fuzz_fixups(&minimal());
        fuzz_fixups(b"");
    }
}
