//! The camera: which capture tool, with which flags; the still and stream
//! processes on non-blocking pipes; the built-in test pattern.
//!
//! Guarantees: a capture tool's stdout and stderr are always drained (a full
//! pipe would stall it); a still request is always answered (a frame or a
//! `CaptureError`) by its deadline; the stream process starts when wanted,
//! stops a linger after it no longer is, is restarted with backoff when it
//! dies or stalls while wanted, and never runs at the same time as a still
//! process (two programs cannot open one camera). Every child is in its own
//! process group, signalled as a group and reaped; none outlives `shutdown`.
//!
//! Knows nothing of HTTP or clients: the server tells it "a still is wanted"
//! and "viewers exist", and receives `CameraEvent`s.

use std::fmt;
use std::io::{self, Read};
use std::os::fd::AsFd;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, ChildStdout, Command, Stdio};
use std::rc::Rc;
use std::time::{Duration, Instant};

use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

use crate::config::{CameraConfig, CameraKind, Picture};
use crate::pattern::TestPattern;
use crate::proto::jpeg::{self, SplitEvent, Splitter};
use crate::reactor::{self, Interest, Reactor, Token};

/// Epoll tokens of the camera's pipes (bit 62 marks camera tokens).
pub const TOKEN_BASE: Token = 1 << 62;
pub const TOKEN_STILL_OUT: Token = TOKEN_BASE;
pub const TOKEN_STILL_ERR: Token = TOKEN_BASE + 1;
pub const TOKEN_STREAM_OUT: Token = TOKEN_BASE + 2;
pub const TOKEN_STREAM_ERR: Token = TOKEN_BASE + 3;

/// Bytes read from one pipe per wakeup, so a fast camera cannot starve the
/// clients (epoll is level-triggered: the rest is read next turn).
const READ_BUDGET_BYTES: usize = 512 * 1024;
const READ_CHUNK_BYTES: usize = 64 * 1024;
/// After SIGTERM, a tool gets this long before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(1);
const RESTART_BACKOFF_MIN: Duration = Duration::from_millis(250);
const RESTART_BACKOFF_MAX: Duration = Duration::from_secs(10);
/// A stream that ran this long counts as healthy: the backoff starts over.
const HEALTHY_RUN: Duration = Duration::from_secs(10);
/// stderr lines logged per process per window before we summarise.
const STDERR_LINES_PER_WINDOW: u32 = 5;
const STDERR_WINDOW: Duration = Duration::from_secs(10);
/// Kept for error messages: the end of what the tool said.
const STDERR_TAIL_BYTES: usize = 300;
/// Longest stderr line we log (a tool printing binary garbage).
const STDERR_LINE_BYTES: usize = 200;

/// Why a still capture failed; `status` is what the HTTP client sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaptureError {
    /// The tool could not be started (not installed, not executable).
    SpawnFailed,
    /// It ran past `--still-timeout` and was killed.
    Timeout,
    /// It exited with a non-zero status.
    Exited(i32),
    /// It was killed by a signal.
    Killed(i32),
    /// It printed something that is not one JPEG.
    NotJpeg(jpeg::JpegError),
    /// Its output passed `--max-frame-bytes`.
    TooLarge,
    /// The server is stopping.
    ShuttingDown,
}

impl CaptureError {
    pub fn status(self) -> u16 {
        match self {
            // The tool gave bad output: a bad gateway, retrying won't help.
            CaptureError::NotJpeg(_) | CaptureError::TooLarge => 502,
            // The camera is unavailable for now: 503 with Retry-After.
            _ => 503,
        }
    }
}

impl fmt::Display for CaptureError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CaptureError::SpawnFailed => write!(f, "capture tool could not be started"),
            CaptureError::Timeout => write!(f, "capture timed out"),
            CaptureError::Exited(c) => write!(f, "capture tool exited with status {c}"),
            CaptureError::Killed(s) => write!(f, "capture tool was killed by signal {s}"),
            CaptureError::NotJpeg(e) => write!(f, "capture output is not a JPEG: {e}"),
            CaptureError::TooLarge => write!(f, "capture output is larger than --max-frame-bytes"),
            CaptureError::ShuttingDown => write!(f, "server is shutting down"),
        }
    }
}

pub enum CameraEvent {
    /// A new live-stream frame (already normalised: DHT, orientation).
    Frame(Rc<[u8]>),
    /// The answer to `request_still`.
    Still(Result<Rc<[u8]>, CaptureError>),
}

/// The capture tool family, with the flags each one takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tool {
    Rpicam,
    Libcamera,
    Raspi,
    Ffmpeg,
}

impl Tool {
    fn still_program(self) -> &'static str {
        match self {
            Tool::Rpicam => "rpicam-still",
            Tool::Libcamera => "libcamera-still",
            Tool::Raspi => "raspistill",
            Tool::Ffmpeg => "ffmpeg",
        }
    }

    fn stream_program(self) -> &'static str {
        match self {
            Tool::Rpicam => "rpicam-vid",
            Tool::Libcamera => "libcamera-vid",
            Tool::Raspi => "raspivid",
            Tool::Ffmpeg => "ffmpeg",
        }
    }

    /// Rotations the tool does itself; the rest become an EXIF Orientation.
    /// rpicam/libcamera apps rotate 0/180 only (a transform of the sensor
    /// readout); raspistill/raspivid rotate in the ISP; ffmpeg copies frames.
    fn can_rotate(self, rotation: u16) -> bool {
        match self {
            Tool::Rpicam | Tool::Libcamera => rotation == 0 || rotation == 180,
            Tool::Raspi => true,
            Tool::Ffmpeg => rotation == 0,
        }
    }

    fn can_flip(self) -> bool {
        !matches!(self, Tool::Ffmpeg)
    }
}

/// The command line of a still capture (argv, program first).
pub fn still_command(tool: Tool, pic: &Picture, device: &str) -> Vec<String> {
    let mut a: Vec<String> = Vec::new();
    let mut push = |s: &str| a.push(s.to_string());
    let (w, h, q, t) = (
        pic.width.to_string(),
        pic.height.to_string(),
        pic.quality.to_string(),
        pic.still_delay_ms.max(1).to_string(),
    );
    match tool {
        Tool::Rpicam | Tool::Libcamera => {
            // -n: no preview window; -t: settle time before the capture;
            // --thumb none: no EXIF thumbnail (smaller, faster); -o -: stdout.
            for s in [tool.still_program(), "-n", "-t", &t, "--thumb", "none"] {
                push(s);
            }
            for s in ["--width", &w, "--height", &h, "-q", &q, "-e", "jpg"] {
                push(s);
            }
            picture_flags_libcamera(tool, pic, &mut push);
            push("-o");
            push("-");
        }
        Tool::Raspi => {
            for s in ["raspistill", "-n", "-t", &t, "-th", "none"] {
                push(s);
            }
            for s in ["-w", &w, "-h", &h, "-q", &q, "-e", "jpg"] {
                push(s);
            }
            picture_flags_raspi(pic, &mut push);
            push("-o");
            push("-");
        }
        Tool::Ffmpeg => return ffmpeg_command(pic, device, false, false),
    }
    a
}

/// The command line of the live stream (concatenated JPEGs on stdout).
pub fn stream_command(tool: Tool, pic: &Picture, device: &str) -> Vec<String> {
    let mut a: Vec<String> = Vec::new();
    let mut push = |s: &str| a.push(s.to_string());
    let (w, h, q, fps) = (
        pic.width.to_string(),
        pic.height.to_string(),
        pic.quality.to_string(),
        pic.fps.to_string(),
    );
    match tool {
        Tool::Rpicam | Tool::Libcamera => {
            // -t 0: run until stopped (the default stops after 5 s);
            // --flush: write each frame at once instead of sitting in stdio.
            for s in [
                tool.stream_program(),
                "-n",
                "-t",
                "0",
                "--codec",
                "mjpeg",
                "--flush",
            ] {
                push(s);
            }
            for s in ["--width", &w, "--height", &h, "--framerate", &fps, "-q", &q] {
                push(s);
            }
            picture_flags_libcamera(tool, pic, &mut push);
            push("-o");
            push("-");
        }
        Tool::Raspi => {
            // -cd MJPEG: the MJPEG codec; -fl: flush after each frame.
            for s in ["raspivid", "-n", "-t", "0", "-cd", "MJPEG", "-fl"] {
                push(s);
            }
            for s in ["-w", &w, "-h", &h, "-fps", &fps] {
                push(s);
            }
            picture_flags_raspi(pic, &mut push);
            push("-o");
            push("-");
        }
        Tool::Ffmpeg => return ffmpeg_command(pic, device, true, false),
    }
    a
}

/// ffmpeg on a V4L2 device, for one still or the stream. Normally it copies
/// the MJPEG the device already encodes (`-input_format mjpeg -c:v copy`: no
/// CPU spent encoding); `reencode` is the fallback for devices that offer no
/// MJPEG (many cheap webcams give only YUYV): take the default format and
/// encode JPEG, which costs CPU.
pub fn ffmpeg_command(pic: &Picture, device: &str, stream: bool, reencode: bool) -> Vec<String> {
    let size = format!("{}x{}", pic.width, pic.height);
    // ffmpeg's mjpeg -q:v runs 2 (best) to 31 (worst); map 100..1 onto it.
    let q = (2 + (100 - u32::from(pic.quality.clamp(1, 100))) * 29 / 99).to_string();
    let fps = pic.fps.to_string();
    let mut a: Vec<&str> = vec!["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error"];
    a.extend(["-f", "v4l2"]);
    if !reencode {
        a.extend(["-input_format", "mjpeg"]);
    }
    a.extend(["-video_size", &size]);
    if stream {
        a.extend(["-framerate", &fps]);
    }
    a.extend(["-i", device]);
    if !stream {
        a.extend(["-frames:v", "1"]);
    }
    if reencode {
        a.extend(["-c:v", "mjpeg", "-q:v", &q]);
    } else {
        a.extend(["-c:v", "copy"]);
    }
    a.extend(["-f", "mjpeg"]);
    if stream {
        // One write per frame, not whatever fills ffmpeg's output buffer.
        a.extend(["-flush_packets", "1"]);
    }
    a.push("pipe:1");
    a.into_iter().map(String::from).collect()
}

fn picture_flags_libcamera(tool: Tool, pic: &Picture, push: &mut impl FnMut(&str)) {
    if pic.rotation == 180 && tool.can_rotate(180) {
        push("--rotation");
        push("180");
    }
    if pic.hflip {
        push("--hflip");
    }
    if pic.vflip {
        push("--vflip");
    }
}

fn picture_flags_raspi(pic: &Picture, push: &mut impl FnMut(&str)) {
    if pic.rotation != 0 {
        let r = pic.rotation.to_string();
        push("-rot");
        push(&r);
    }
    if pic.hflip {
        push("-hf");
    }
    if pic.vflip {
        push("-vf");
    }
}

/// The EXIF Orientation picamd adds to each frame: what the tool did not do
/// itself. 1 means nothing to add.
pub fn exif_orientation(tool: Option<Tool>, pic: &Picture) -> u8 {
    let rot = match tool {
        Some(t) if t.can_rotate(pic.rotation) => 0,
        _ => pic.rotation,
    };
    let (h, v) = match tool {
        Some(t) if t.can_flip() => (false, false),
        _ => (pic.hflip, pic.vflip),
    };
    // A vertical flip is a horizontal flip plus a 180° turn.
    let (mirror, rot) = match (h, v) {
        (false, false) => (false, rot),
        (true, false) => (true, rot),
        (false, true) => (true, (rot + 180) % 360),
        (true, true) => (false, (rot + 180) % 360),
    };
    // EXIF 2.3, tag 0x0112: 1..8 = the eight rotations/mirrorings, as the
    // transformation a viewer applies to display the stored image upright.
    match (mirror, rot) {
        (false, 0) => 1,
        (false, 90) => 6,
        (false, 180) => 3,
        (false, 270) => 8,
        (true, 0) => 2,
        (true, 90) => 7,
        (true, 180) => 4,
        (true, 270) => 5,
        _ => 1,
    }
}

/// Finds an executable on `PATH`.
pub fn find_in_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// Where stills and stream frames come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The built-in pattern.
    Pattern,
    /// External commands. A missing still command means stills are taken
    /// from the stream (started for the occasion).
    Commands {
        still: Option<Vec<String>>,
        stream: Vec<String>,
        tool: Option<Tool>,
    },
}

/// Resolves `--camera` and the overrides into a `Source`, or says what was
/// looked for.
pub fn resolve_source(cfg: &CameraConfig) -> Result<Source, String> {
    let pic = &cfg.picture;
    let tool = match cfg.kind {
        CameraKind::Test => return Ok(Source::Pattern),
        CameraKind::Rpicam => Some(Tool::Rpicam),
        CameraKind::Libcamera => Some(Tool::Libcamera),
        CameraKind::Raspistill => Some(Tool::Raspi),
        CameraKind::Ffmpeg => Some(Tool::Ffmpeg),
        CameraKind::Auto if cfg.stream_cmd.is_some() => None,
        CameraKind::Auto => Some(detect_tool(&cfg.device).map_err(|e| {
            if cfg.still_cmd.is_some() {
                format!(
                    "{e}. --still-cmd alone is not enough: the live stream needs --stream-cmd too"
                )
            } else {
                e
            }
        })?),
    };
    let stream = match (&cfg.stream_cmd, tool) {
        (Some(cmd), _) => cmd.clone(),
        (None, Some(t)) => stream_command(t, pic, &cfg.device),
        (None, None) => return Err("no stream command".into()),
    };
    let still = match (&cfg.still_cmd, tool, &cfg.stream_cmd) {
        (Some(cmd), _, _) => Some(cmd.clone()),
        // Only a stream command given: stills come from the stream.
        (None, _, Some(_)) if cfg.kind == CameraKind::Auto => None,
        (None, Some(t), _) => Some(still_command(t, pic, &cfg.device)),
        (None, None, _) => None,
    };
    Ok(Source::Commands {
        still,
        stream,
        tool,
    })
}

fn detect_tool(device: &str) -> Result<Tool, String> {
    if find_in_path("rpicam-still").is_some() || find_in_path("rpicam-vid").is_some() {
        return Ok(Tool::Rpicam);
    }
    if find_in_path("libcamera-still").is_some() || find_in_path("libcamera-vid").is_some() {
        return Ok(Tool::Libcamera);
    }
    if find_in_path("raspistill").is_some() {
        return Ok(Tool::Raspi);
    }
    if find_in_path("ffmpeg").is_some() && Path::new(device).exists() {
        return Ok(Tool::Ffmpeg);
    }
    Err(format!(
        "no camera found: looked for rpicam-still/rpicam-vid, libcamera-still/libcamera-vid, \
         raspistill on PATH, and ffmpeg with {device}. Run with --camera test for the built-in \
         test pattern, or give --still-cmd/--stream-cmd"
    ))
}

/// Rate limit for a tool's stderr lines, shared by every process of one
/// kind (a still capture every 1.5 s must not log 5 lines each time).
#[derive(Default)]
struct LogLimiter {
    window_start: Option<Instant>,
    lines_in_window: u32,
    suppressed: u32,
}

impl LogLimiter {
    /// Whether to print a line now; summarises what was held back when a
    /// new window opens.
    fn allow(&mut self, label: &str, now: Instant) -> bool {
        let start = *self.window_start.get_or_insert(now);
        if now >= start + STDERR_WINDOW {
            if self.suppressed > 0 {
                log(&format!(
                    "camera: {label}: {} more stderr lines not shown",
                    self.suppressed
                ));
            }
            self.window_start = Some(now);
            self.lines_in_window = 0;
            self.suppressed = 0;
        }
        if self.lines_in_window < STDERR_LINES_PER_WINDOW {
            self.lines_in_window += 1;
            true
        } else {
            self.suppressed += 1;
            false
        }
    }
}

/// Re-encoding commands for ffmpeg: (still, stream), each `None` where the
/// user gave their own command.
type FfmpegFallback = (Option<Vec<String>>, Option<Vec<String>>);

/// One running capture process.
struct Proc {
    label: &'static str,
    child: Child,
    stdout: Option<ChildStdout>,
    stderr: Option<ChildStderr>,
    stderr_line: Vec<u8>,
    stderr_tail: Vec<u8>,
    started: Instant,
    term_sent: Option<Instant>,
    exit: Option<std::process::ExitStatus>,
}

impl Proc {
    fn spawn(
        label: &'static str,
        argv: &[String],
        reactor: &Reactor,
        out_token: Token,
        err_token: Token,
        now: Instant,
    ) -> io::Result<Proc> {
        let (prog, args) = argv
            .split_first()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "empty command"))?;
        let mut child = Command::new(prog)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own process group: we signal the group, so a wrapper
            // script's children die with it and none keeps the pipe open.
            .process_group(0)
            .spawn()?;
        let stdout = child.stdout.take();
        let stderr = child.stderr.take();
        let mut p = Proc {
            label,
            child,
            stdout,
            stderr,
            stderr_line: Vec::new(),
            stderr_tail: Vec::new(),
            started: now,
            term_sent: None,
            exit: None,
        };
        let registered = (|| -> io::Result<()> {
            if let Some(o) = &p.stdout {
                set_nonblocking(o)?;
                reactor.add(o, out_token, Interest::Read)?;
            }
            if let Some(e) = &p.stderr {
                set_nonblocking(e)?;
                reactor.add(e, err_token, Interest::Read)?;
            }
            Ok(())
        })();
        if let Err(e) = registered {
            p.signal(Signal::SIGKILL);
            return Err(e);
        }
        Ok(p)
    }

    fn pid(&self) -> Pid {
        Pid::from_raw(self.child.id() as i32)
    }

    fn signal(&mut self, sig: Signal) {
        if self.exit.is_none() {
            // ESRCH: already gone; nothing else can fail for our own group.
            let _ = killpg(self.pid(), sig);
        }
    }

    /// SIGTERM now, SIGKILL at `STOP_GRACE` (see `escalate`). Closes our
    /// pipe ends: nothing more is wanted from it.
    fn stop(&mut self, reactor: &Reactor, now: Instant) {
        self.close_stdout(reactor);
        self.close_stderr(reactor);
        if self.term_sent.is_none() {
            self.signal(Signal::SIGTERM);
            self.term_sent = Some(now);
        }
    }

    fn escalate(&mut self, now: Instant) {
        if let Some(t) = self.term_sent
            && now >= t + STOP_GRACE
        {
            self.signal(Signal::SIGKILL);
        }
    }

    fn close_stdout(&mut self, reactor: &Reactor) {
        if let Some(o) = self.stdout.take() {
            reactor.remove(&o);
        }
    }

    fn close_stderr(&mut self, reactor: &Reactor) {
        if let Some(e) = self.stderr.take() {
            reactor.remove(&e);
        }
    }

    fn reap(&mut self) -> Option<std::process::ExitStatus> {
        if self.exit.is_none()
            && let Ok(Some(st)) = self.child.try_wait()
        {
            self.exit = Some(st);
        }
        self.exit
    }

    /// Drains stderr (always: a full pipe blocks the tool), logging whole
    /// lines, at most a few per window.
    fn drain_stderr(&mut self, reactor: &Reactor, now: Instant, limiter: &mut LogLimiter) {
        let mut buf = [0u8; 4096];
        let mut budget = READ_BUDGET_BYTES;
        loop {
            let Some(err) = self.stderr.as_mut() else {
                return;
            };
            match err.read(&mut buf) {
                Ok(0) => {
                    self.flush_stderr_line(now, limiter);
                    self.close_stderr(reactor);
                    return;
                }
                Ok(n) => {
                    let chunk = &buf[..n];
                    self.stderr_tail.extend_from_slice(chunk);
                    let excess = self.stderr_tail.len().saturating_sub(STDERR_TAIL_BYTES);
                    self.stderr_tail.drain(..excess);
                    for &b in chunk {
                        if b == b'\n' || b == b'\r' {
                            self.flush_stderr_line(now, limiter);
                        } else if self.stderr_line.len() < STDERR_LINE_BYTES {
                            self.stderr_line.push(b);
                        }
                    }
                    budget = budget.saturating_sub(n);
                    if budget == 0 {
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(_) => {
                    self.close_stderr(reactor);
                    return;
                }
            }
        }
    }

    fn flush_stderr_line(&mut self, now: Instant, limiter: &mut LogLimiter) {
        if self.stderr_line.is_empty() {
            return;
        }
        if limiter.allow(self.label, now) {
            let line = String::from_utf8_lossy(&self.stderr_line);
            log(&format!("camera: {}: {}", self.label, line.trim()));
        }
        self.stderr_line.clear();
    }

    fn stderr_tail(&self) -> String {
        let s = String::from_utf8_lossy(&self.stderr_tail);
        s.split(['\n', '\r'])
            .map(str::trim)
            .rfind(|l| !l.is_empty())
            .unwrap_or("")
            .to_string()
    }
}

fn set_nonblocking(fd: impl AsFd) -> io::Result<()> {
    let flags = OFlag::from_bits_truncate(fcntl(&fd, FcntlArg::F_GETFL)?);
    fcntl(&fd, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
    Ok(())
}

enum ReadOutcome {
    /// Read what there was (maybe nothing); the pipe is still open.
    Open,
    Eof,
    TooLarge,
}

/// Reads what `r` has, within the budget, into `sink`.
fn read_pipe(r: &mut impl Read, mut sink: impl FnMut(&[u8]) -> bool) -> ReadOutcome {
    let mut buf = vec![0u8; READ_CHUNK_BYTES];
    let mut budget = READ_BUDGET_BYTES;
    loop {
        match r.read(&mut buf) {
            Ok(0) => return ReadOutcome::Eof,
            Ok(n) => {
                if !sink(&buf[..n]) {
                    return ReadOutcome::TooLarge;
                }
                budget = budget.saturating_sub(n);
                if budget == 0 {
                    return ReadOutcome::Open;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return ReadOutcome::Open,
            Err(_) => return ReadOutcome::Eof,
        }
    }
}

struct StillJob {
    proc: Proc,
    out: Vec<u8>,
    deadline: Instant,
    /// Set once the output is complete or failed; waiting for the exit.
    verdict: Option<Result<(), CaptureError>>,
}

// One per server: the size difference between variants costs nothing.
#[allow(clippy::large_enum_variant)]
enum Stream {
    Off,
    /// The pattern, ticking at the frame rate.
    Pattern {
        next_frame: Instant,
        frame_no: u64,
    },
    Running {
        proc: Proc,
        splitter: Splitter,
        last_frame: Instant,
        got_frame: bool,
    },
    /// Died while wanted; restart at `until`.
    Backoff {
        until: Instant,
    },
}

#[derive(Debug, Default, Clone)]
pub struct CameraStats {
    pub frames_in: u64,
    pub frames_dropped_oversize: u64,
    pub frames_dropped_corrupt: u64,
    pub garbage_bytes: u64,
    pub stills_captured: u64,
    pub capture_errors: u64,
    pub stream_starts: u64,
    pub stream_restarts: u64,
    pub last_error: Option<String>,
}

pub struct Camera {
    source: Source,
    picture: Picture,
    orientation: u8,
    still_timeout: Duration,
    linger: Duration,
    stall_timeout: Duration,
    max_frame_bytes: usize,
    quiet: bool,
    pattern: Option<TestPattern>,
    still: Option<StillJob>,
    /// Still requests waiting for the next stream frame.
    still_from_stream: bool,
    still_from_stream_deadline: Option<Instant>,
    stream: Stream,
    viewers: bool,
    linger_until: Option<Instant>,
    failures: u32,
    /// Processes told to stop, until reaped.
    dying: Vec<Proc>,
    latest: Option<(Rc<[u8]>, Instant)>,
    still_log: LogLimiter,
    stream_log: LogLimiter,
    /// ffmpeg copying the device's MJPEG: the re-encoding commands to
    /// switch to if the device turns out to offer no MJPEG (still, stream;
    /// `None` where the user gave their own command).
    ffmpeg_fallback: Option<FfmpegFallback>,
    /// The last still failure with the tool's own words, for the 503 body.
    last_still_error: Option<String>,
    pub stats: CameraStats,
}

impl Camera {
    pub fn new(cfg: &CameraConfig, quiet: bool) -> Result<Camera, String> {
        let source = resolve_source(cfg)?;
        let tool = match &source {
            Source::Pattern => None,
            Source::Commands { tool, .. } => *tool,
        };
        let orientation = match (&source, cfg.kind) {
            // Overrides: the user's command does what it does; we add only
            // what was asked and a known tool would not do.
            (Source::Commands { tool: None, .. }, _) => exif_orientation(None, &cfg.picture),
            _ => exif_orientation(tool, &cfg.picture),
        };
        let pattern = matches!(source, Source::Pattern)
            .then(|| TestPattern::new(cfg.picture.width, cfg.picture.height, cfg.picture.quality));
        Ok(Camera {
            source,
            picture: cfg.picture.clone(),
            orientation,
            still_timeout: cfg.still_timeout,
            linger: cfg.stream_linger,
            stall_timeout: cfg.stream_stall_timeout,
            max_frame_bytes: cfg.max_frame_bytes,
            quiet,
            pattern,
            still: None,
            still_from_stream: false,
            still_from_stream_deadline: None,
            stream: Stream::Off,
            viewers: false,
            linger_until: None,
            failures: 0,
            dying: Vec::new(),
            latest: None,
            still_log: LogLimiter::default(),
            stream_log: LogLimiter::default(),
            ffmpeg_fallback: (tool == Some(Tool::Ffmpeg)).then(|| {
                (
                    cfg.still_cmd
                        .is_none()
                        .then(|| ffmpeg_command(&cfg.picture, &cfg.device, false, true)),
                    cfg.stream_cmd
                        .is_none()
                        .then(|| ffmpeg_command(&cfg.picture, &cfg.device, true, true)),
                )
            }),
            last_still_error: None,
            stats: CameraStats::default(),
        })
    }

    /// One line for the startup log.
    pub fn describe(&self) -> String {
        match &self.source {
            Source::Pattern => format!(
                "built-in test pattern {}x{} @ {} fps",
                self.picture.width, self.picture.height, self.picture.fps
            ),
            Source::Commands { still, stream, .. } => format!(
                "still: {}; stream: {}",
                still
                    .as_ref()
                    .map(|s| s.join(" "))
                    .unwrap_or_else(|| "a frame of the stream".into()),
                stream.join(" ")
            ),
        }
    }

    /// A short word for `/status`.
    pub fn state_name(&self) -> &'static str {
        match (&self.stream, &self.still) {
            (
                Stream::Running {
                    got_frame: true, ..
                },
                _,
            )
            | (Stream::Pattern { .. }, _) => "streaming",
            (Stream::Running { .. }, _) => "starting",
            (Stream::Backoff { .. }, _) => "restarting",
            (Stream::Off, Some(_)) => "capturing",
            (Stream::Off, None) => "idle",
        }
    }

    pub fn stream_running(&self) -> bool {
        matches!(self.stream, Stream::Running { .. } | Stream::Pattern { .. })
    }

    /// Tells the camera whether anyone watches the stream.
    pub fn set_viewers(&mut self, any: bool, reactor: &Reactor, now: Instant) {
        if any == self.viewers {
            return;
        }
        self.viewers = any;
        if any {
            self.linger_until = None;
            self.ensure_stream(reactor, now);
        } else {
            self.linger_until = Some(now + self.linger);
        }
    }

    fn stream_wanted(&self) -> bool {
        self.viewers || self.linger_until.is_some() || self.still_from_stream
    }

    /// Asks for a still. The answer arrives as `CameraEvent::Still`, maybe
    /// already in `events` when this returns.
    pub fn request_still(
        &mut self,
        reactor: &Reactor,
        now: Instant,
        events: &mut Vec<CameraEvent>,
    ) {
        // While the stream runs the camera is busy: the newest frame is the
        // snapshot (and fresh: at most one frame interval old).
        if self.stream_running()
            && let Some((frame, _)) = &self.latest
        {
            events.push(CameraEvent::Still(Ok(frame.clone())));
            return;
        }
        if let Some(p) = &mut self.pattern {
            let mut out = Vec::new();
            p.render(self.stats.stills_captured, reactor::wall_us(), &mut out);
            let frame = jpeg::normalize(out, self.orientation);
            self.stats.stills_captured += 1;
            events.push(CameraEvent::Still(Ok(Rc::from(frame))));
            return;
        }
        if self.still.is_some() || self.still_from_stream {
            return; // joins the capture under way
        }
        let still_cmd = match &self.source {
            Source::Commands { still, .. } => still.clone(),
            Source::Pattern => None,
        };
        match still_cmd {
            Some(_) if self.stream_running() => {
                // Streaming but no frame yet: wait for the first one.
                self.still_from_stream = true;
                self.still_from_stream_deadline = Some(now + self.still_timeout);
            }
            Some(argv) => {
                match Proc::spawn(
                    "still",
                    &argv,
                    reactor,
                    TOKEN_STILL_OUT,
                    TOKEN_STILL_ERR,
                    now,
                ) {
                    Ok(proc) => {
                        self.still = Some(StillJob {
                            proc,
                            out: Vec::new(),
                            deadline: now + self.still_timeout,
                            verdict: None,
                        });
                    }
                    Err(e) => {
                        let msg =
                            format!("still: {}: {} ({e})", CaptureError::SpawnFailed, argv[0]);
                        self.note_error(&msg);
                        self.last_still_error = Some(msg);
                        events.push(CameraEvent::Still(Err(CaptureError::SpawnFailed)));
                    }
                }
            }
            None => {
                self.still_from_stream = true;
                self.still_from_stream_deadline = Some(now + self.still_timeout);
                self.ensure_stream(reactor, now);
            }
        }
    }

    /// The device gave ffmpeg no MJPEG: from now on, re-encode.
    fn fall_back_to_reencoding(&mut self) {
        let Some((still_fb, stream_fb)) = self.ffmpeg_fallback.take() else {
            return;
        };
        if let Source::Commands { still, stream, .. } = &mut self.source {
            if let Some(cmd) = still_fb {
                *still = Some(cmd);
            }
            if let Some(cmd) = stream_fb {
                *stream = cmd;
            }
        }
        log("camera: ffmpeg got no MJPEG from the device; re-encoding from now on (costs CPU)");
    }

    /// Why the last still failed, with what the tool said.
    pub fn last_still_error(&self) -> Option<&str> {
        self.last_still_error.as_deref()
    }

    fn note_error(&mut self, msg: &str) {
        log(&format!("camera: {msg}"));
        self.stats.capture_errors += 1;
        self.stats.last_error = Some(msg.to_string());
    }

    fn ensure_stream(&mut self, reactor: &Reactor, now: Instant) {
        if !matches!(self.stream, Stream::Off) {
            return;
        }
        // One camera, one program: a running still capture finishes first
        // (its completion calls us again).
        if self.still.is_some() {
            return;
        }
        self.start_stream(reactor, now);
    }

    fn start_stream(&mut self, reactor: &Reactor, now: Instant) {
        self.stats.stream_starts += 1;
        match &self.source {
            Source::Pattern => {
                self.stream = Stream::Pattern {
                    next_frame: now,
                    frame_no: 0,
                };
                log("camera: stream started (test pattern)");
            }
            Source::Commands { stream, .. } => {
                let argv = stream.clone();
                match Proc::spawn(
                    "stream",
                    &argv,
                    reactor,
                    TOKEN_STREAM_OUT,
                    TOKEN_STREAM_ERR,
                    now,
                ) {
                    Ok(proc) => {
                        if !self.quiet {
                            log(&format!("camera: stream started: {}", argv.join(" ")));
                        }
                        self.stream = Stream::Running {
                            proc,
                            splitter: Splitter::new(self.max_frame_bytes),
                            last_frame: now,
                            got_frame: false,
                        };
                    }
                    Err(e) => {
                        self.note_error(&format!("stream: cannot start {}: {e}", argv[0]));
                        self.backoff(now);
                    }
                }
            }
        }
    }

    fn backoff(&mut self, now: Instant) {
        let exp = self.failures.min(6);
        let wait = (RESTART_BACKOFF_MIN * 2u32.pow(exp)).min(RESTART_BACKOFF_MAX);
        self.failures += 1;
        log(&format!(
            "camera: stream restarting in {} ms",
            wait.as_millis()
        ));
        self.stream = Stream::Backoff { until: now + wait };
    }

    fn stop_stream(&mut self, reactor: &Reactor, now: Instant) {
        match std::mem::replace(&mut self.stream, Stream::Off) {
            Stream::Running { mut proc, .. } => {
                proc.stop(reactor, now);
                self.dying.push(proc);
                log("camera: stream stopped");
            }
            Stream::Pattern { .. } => log("camera: stream stopped (test pattern)"),
            Stream::Off | Stream::Backoff { .. } => {}
        }
        self.latest = None;
    }

    pub fn on_readable(
        &mut self,
        token: Token,
        reactor: &Reactor,
        now: Instant,
        events: &mut Vec<CameraEvent>,
    ) {
        match token {
            TOKEN_STILL_OUT => self.read_still(reactor, now),
            TOKEN_STILL_ERR => {
                if let Some(job) = &mut self.still {
                    job.proc.drain_stderr(reactor, now, &mut self.still_log);
                }
            }
            TOKEN_STREAM_OUT => self.read_stream(reactor, now, events),
            TOKEN_STREAM_ERR => {
                if let Stream::Running { proc, .. } = &mut self.stream {
                    proc.drain_stderr(reactor, now, &mut self.stream_log);
                }
            }
            _ => {}
        }
        self.settle(reactor, now, events);
    }

    fn read_still(&mut self, reactor: &Reactor, _now: Instant) {
        let max = self.max_frame_bytes;
        let Some(job) = &mut self.still else { return };
        let Some(out) = job.proc.stdout.as_mut() else {
            return;
        };
        let buf = &mut job.out;
        match read_pipe(out, |chunk| {
            if buf.len() + chunk.len() > max {
                return false;
            }
            buf.extend_from_slice(chunk);
            true
        }) {
            ReadOutcome::Open => {}
            ReadOutcome::Eof => {
                job.proc.close_stdout(reactor);
                if job.verdict.is_none() {
                    job.verdict = Some(Ok(()));
                }
            }
            ReadOutcome::TooLarge => {
                job.proc.close_stdout(reactor);
                job.verdict = Some(Err(CaptureError::TooLarge));
                job.proc.signal(Signal::SIGKILL);
            }
        }
    }

    fn read_stream(&mut self, reactor: &Reactor, now: Instant, events: &mut Vec<CameraEvent>) {
        let Stream::Running {
            proc,
            splitter,
            last_frame,
            got_frame,
        } = &mut self.stream
        else {
            return;
        };
        let Some(out) = proc.stdout.as_mut() else {
            return;
        };
        let mut frames: Vec<Vec<u8>> = Vec::new();
        let mut oversize = 0u64;
        let mut corrupt = 0u64;
        let mut garbage = 0u64;
        let outcome = read_pipe(out, |chunk| {
            splitter.feed(chunk);
            while let Some(ev) = splitter.next_event() {
                match ev {
                    SplitEvent::Frame(f) => frames.push(f),
                    SplitEvent::Skipped { bytes } => garbage += bytes as u64,
                    SplitEvent::Oversize { .. } => oversize += 1,
                    SplitEvent::Corrupt { .. } => corrupt += 1,
                }
            }
            true
        });
        if matches!(outcome, ReadOutcome::Eof) {
            proc.close_stdout(reactor);
        }
        if !frames.is_empty() {
            *last_frame = now;
            if !*got_frame {
                *got_frame = true;
            }
        }
        // Each kind of trouble is logged when it first happens, then counted.
        if oversize > 0 && self.stats.frames_dropped_oversize == 0 {
            log("camera: stream: dropping frames larger than --max-frame-bytes");
        }
        if corrupt > 0 && self.stats.frames_dropped_corrupt == 0 {
            log("camera: stream: dropping corrupt frames");
        }
        if garbage > 0 && self.stats.garbage_bytes == 0 {
            log("camera: stream: skipping bytes that are not JPEG");
        }
        self.stats.frames_dropped_oversize += oversize;
        self.stats.frames_dropped_corrupt += corrupt;
        self.stats.garbage_bytes += garbage;
        for f in frames {
            self.emit_frame(f, now, events);
        }
    }

    fn emit_frame(&mut self, f: Vec<u8>, now: Instant, events: &mut Vec<CameraEvent>) {
        let frame: Rc<[u8]> = Rc::from(jpeg::normalize(f, self.orientation));
        self.stats.frames_in += 1;
        self.latest = Some((frame.clone(), now));
        if self.still_from_stream {
            self.still_from_stream = false;
            self.still_from_stream_deadline = None;
            self.stats.stills_captured += 1;
            events.push(CameraEvent::Still(Ok(frame.clone())));
        }
        events.push(CameraEvent::Frame(frame));
    }

    /// SIGCHLD: reap whatever exited.
    pub fn on_child_exit(
        &mut self,
        reactor: &Reactor,
        now: Instant,
        events: &mut Vec<CameraEvent>,
    ) {
        self.settle(reactor, now, events);
    }

    /// Deadlines: pattern frames, still timeout, linger, backoff, stalls,
    /// SIGKILL escalation.
    pub fn on_tick(&mut self, reactor: &Reactor, now: Instant, events: &mut Vec<CameraEvent>) {
        if let Stream::Pattern {
            next_frame,
            frame_no,
        } = &mut self.stream
            && now >= *next_frame
        {
            let interval = Duration::from_micros(1_000_000 / u64::from(self.picture.fps.max(1)));
            let no = *frame_no;
            *frame_no += 1;
            *next_frame += interval;
            // Fell behind (a stopped process, a slow machine): skip
            // ahead instead of bursting to catch up.
            if *next_frame < now {
                *next_frame = now + interval;
            }
            if let Some(p) = &mut self.pattern {
                let mut out = Vec::new();
                p.render(no, reactor::wall_us(), &mut out);
                self.emit_frame(out, now, events);
            }
        }
        if let Some(job) = &mut self.still
            && now >= job.deadline
            && job.verdict.is_none()
        {
            job.verdict = Some(Err(CaptureError::Timeout));
            job.proc.stop(reactor, now);
            job.proc.signal(Signal::SIGKILL);
        }
        if let Some(d) = self.still_from_stream_deadline
            && now >= d
            && self.still_from_stream
        {
            self.still_from_stream = false;
            self.still_from_stream_deadline = None;
            let msg = "still: no stream frame before --still-timeout";
            self.note_error(msg);
            self.last_still_error = Some(msg.into());
            events.push(CameraEvent::Still(Err(CaptureError::Timeout)));
        }
        if let Some(until) = self.linger_until
            && now >= until
        {
            self.linger_until = None;
        }
        if let Stream::Running {
            proc,
            last_frame,
            got_frame,
            ..
        } = &mut self.stream
            && now >= *last_frame + self.stall_timeout
            && proc.term_sent.is_none()
        {
            let what = if *got_frame {
                "stalled"
            } else {
                "gave no frame"
            };
            let label = proc.label;
            proc.stop(reactor, now);
            let msg = format!(
                "{label}: {what} for {:.1} s, restarting",
                self.stall_timeout.as_secs_f64()
            );
            self.note_error(&msg);
        }
        if let Stream::Backoff { until } = self.stream
            && now >= until
        {
            self.stream = Stream::Off;
            if self.stream_wanted() {
                self.stats.stream_restarts += 1;
                self.ensure_stream(reactor, now);
            }
        }
        for p in &mut self.dying {
            p.escalate(now);
        }
        if let Some(job) = &mut self.still {
            job.proc.escalate(now);
        }
        if let Stream::Running { proc, .. } = &mut self.stream {
            proc.escalate(now);
        }
        self.settle(reactor, now, events);
    }

    /// Moves every state machine forward after any event: reaps, finishes
    /// stills, notices a dead stream, stops an unwanted one.
    fn settle(&mut self, reactor: &Reactor, now: Instant, events: &mut Vec<CameraEvent>) {
        self.dying.retain_mut(|p| p.reap().is_none());

        // Still: done when the output is complete (or failed) and the
        // process has exited (we need its status).
        let mut finished = None;
        if let Some(job) = &mut self.still
            && let Some(st) = job.proc.reap()
        {
            // Output after exit may still sit in the pipe: read it.
            if job.proc.stdout.is_some() && job.verdict.is_none() {
                let max = self.max_frame_bytes;
                let buf = &mut job.out;
                if let Some(out) = job.proc.stdout.as_mut() {
                    match read_pipe(out, |c| {
                        if buf.len() + c.len() > max {
                            return false;
                        }
                        buf.extend_from_slice(c);
                        true
                    }) {
                        ReadOutcome::TooLarge => job.verdict = Some(Err(CaptureError::TooLarge)),
                        ReadOutcome::Eof => job.verdict = Some(Ok(())),
                        // A grandchild holds the pipe open; what we
                        // have is what the tool wrote.
                        ReadOutcome::Open => job.verdict = Some(Ok(())),
                    }
                }
            }
            job.proc.drain_stderr(reactor, now, &mut self.still_log);
            let verdict = job.verdict.unwrap_or(Ok(()));
            let result = match verdict {
                Err(e) => Err(e),
                Ok(()) if !st.success() => Err(match (st.code(), st.signal()) {
                    (Some(c), _) => CaptureError::Exited(c),
                    (None, Some(s)) => CaptureError::Killed(s),
                    _ => CaptureError::Exited(-1),
                }),
                Ok(()) => match jpeg::parse_single(&job.out, self.max_frame_bytes) {
                    Ok(range) => {
                        let bytes = job.out.get(range).unwrap_or_default().to_vec();
                        Ok(Rc::from(jpeg::normalize(bytes, self.orientation)))
                    }
                    Err(e) => Err(CaptureError::NotJpeg(e)),
                },
            };
            let tail = job.proc.stderr_tail();
            finished = Some((result, tail, job.out.is_empty()));
        }
        if let Some((result, tail, no_output)) = finished {
            if let Some(mut job) = self.still.take() {
                job.proc.close_stdout(reactor);
                job.proc.close_stderr(reactor);
            }
            match &result {
                Ok(_) => self.stats.stills_captured += 1,
                Err(e) => {
                    let msg = if tail.is_empty() {
                        format!("still: {e}")
                    } else {
                        format!("still: {e} ({tail})")
                    };
                    self.note_error(&msg);
                    self.last_still_error = Some(msg);
                    if no_output && matches!(e, CaptureError::Exited(_)) {
                        self.fall_back_to_reencoding();
                    }
                }
            }
            events.push(CameraEvent::Still(result));
            if self.stream_wanted() {
                self.ensure_stream(reactor, now);
            }
        }

        // Stream: a process that exited (or closed stdout and exited).
        let mut died = None;
        if let Stream::Running {
            proc,
            splitter,
            got_frame,
            ..
        } = &mut self.stream
            && let Some(st) = proc.reap()
        {
            proc.drain_stderr(reactor, now, &mut self.stream_log);
            let ran = now.saturating_duration_since(proc.started);
            if splitter.finish().is_some() {
                self.stats.frames_dropped_corrupt += 1;
            }
            // We stopped it ourselves (a stall): that was already logged.
            let expected = proc.term_sent.is_some();
            died = Some((st, proc.stderr_tail(), ran, *got_frame, expected));
        }
        if let Some((st, tail, ran, got_frame, expected)) = died {
            if let Stream::Running { mut proc, .. } =
                std::mem::replace(&mut self.stream, Stream::Off)
            {
                proc.close_stdout(reactor);
                proc.close_stderr(reactor);
            }
            self.latest = None;
            if ran >= HEALTHY_RUN && got_frame {
                self.failures = 0;
            }
            if !got_frame && !expected {
                self.fall_back_to_reencoding();
            }
            if self.stream_wanted() {
                if !expected {
                    let how = describe_exit(st);
                    let msg = if tail.is_empty() {
                        format!("stream: {how}")
                    } else {
                        format!("stream: {how} ({tail})")
                    };
                    self.note_error(&msg);
                }
                self.backoff(now);
            }
        }

        if !self.stream_wanted() && self.stream_running() {
            self.stop_stream(reactor, now);
        }
        if !self.stream_wanted()
            && let Stream::Backoff { .. } = self.stream
        {
            self.stream = Stream::Off;
        }
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        let mut d: Option<Instant> = None;
        let mut at = |t: Instant| d = Some(d.map_or(t, |x| x.min(t)));
        match &self.stream {
            Stream::Pattern { next_frame, .. } => at(*next_frame),
            Stream::Running {
                proc, last_frame, ..
            } => {
                at(*last_frame + self.stall_timeout);
                if let Some(t) = proc.term_sent {
                    at(t + STOP_GRACE);
                }
            }
            Stream::Backoff { until } => at(*until),
            Stream::Off => {}
        }
        if let Some(job) = &self.still {
            if job.verdict.is_none() {
                at(job.deadline);
            }
            if let Some(t) = job.proc.term_sent {
                at(t + STOP_GRACE);
            }
        }
        if let Some(t) = self.still_from_stream_deadline {
            at(t);
        }
        if let Some(t) = self.linger_until {
            at(t);
        }
        for p in &self.dying {
            match p.term_sent {
                Some(t) => at(t + STOP_GRACE),
                None => at(p.started),
            }
        }
        // Reaping relies on SIGCHLD; a periodic look while something is
        // dying covers a signal coalesced with another.
        if !self.dying.is_empty() {
            at(reactor::now() + Duration::from_millis(200));
        }
        d
    }

    /// Stops everything: SIGTERM, then SIGKILL after the grace, reaping all.
    /// Blocks for at most about `STOP_GRACE` + 100 ms.
    pub fn shutdown(&mut self, reactor: &Reactor) {
        let now = reactor::now();
        self.stop_stream(reactor, now);
        if let Some(mut job) = self.still.take() {
            job.proc.stop(reactor, now);
            self.dying.push(job.proc);
        }
        let start = reactor::now();
        loop {
            self.dying.retain_mut(|p| p.reap().is_none());
            if self.dying.is_empty() {
                return;
            }
            let t = reactor::now();
            if t >= start + STOP_GRACE {
                for p in &mut self.dying {
                    p.signal(Signal::SIGKILL);
                }
                std::thread::sleep(Duration::from_millis(50));
                self.dying.retain_mut(|p| p.reap().is_none());
                // A process stuck in uninterruptible sleep cannot be reaped
                // now; it will be reparented to init when we exit.
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Frames per second delivered by the camera is computed by the server
    /// from `frames_in`; this gives the configured rate.
    pub fn configured_fps(&self) -> u32 {
        self.picture.fps
    }
}

fn describe_exit(st: std::process::ExitStatus) -> String {
    match (st.code(), st.signal()) {
        (Some(c), _) => format!("process exited with status {c}"),
        (None, Some(s)) => format!("process killed by signal {s}"),
        _ => "process ended".into(),
    }
}

pub fn log(msg: &str) {
    eprintln!("{msg}");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pic() -> Picture {
        Picture {
            width: 1280,
            height: 720,
            fps: 25,
            quality: 85,
            rotation: 0,
            hflip: false,
            vflip: false,
            still_delay_ms: 800,
        }
    }

    #[test]
    fn rpicam_command_lines_have_the_known_good_flags() {
        let still = still_command(Tool::Rpicam, &pic(), "/dev/video0").join(" ");
        assert_eq!(
            still,
            "rpicam-still -n -t 800 --thumb none --width 1280 --height 720 -q 85 -e jpg -o -"
        );
        let vid = stream_command(Tool::Rpicam, &pic(), "/dev/video0").join(" ");
        assert_eq!(
            vid,
            "rpicam-vid -n -t 0 --codec mjpeg --flush --width 1280 --height 720 --framerate 25 -q 85 -o -"
        );
    }

    #[test]
    fn rotations_a_tool_cannot_do_become_exif() {
        let mut p = pic();
        p.rotation = 90;
        assert_eq!(exif_orientation(Some(Tool::Rpicam), &p), 6);
        assert_eq!(exif_orientation(Some(Tool::Raspi), &p), 1);
        p.rotation = 180;
        assert_eq!(exif_orientation(Some(Tool::Rpicam), &p), 1);
        assert!(
            still_command(Tool::Rpicam, &p, "")
                .join(" ")
                .contains("--rotation 180")
        );
        assert_eq!(exif_orientation(Some(Tool::Ffmpeg), &p), 3);
        p.rotation = 0;
        p.hflip = true;
        assert_eq!(exif_orientation(Some(Tool::Ffmpeg), &p), 2);
        assert_eq!(exif_orientation(Some(Tool::Rpicam), &p), 1);
        p.vflip = true;
        assert_eq!(exif_orientation(Some(Tool::Ffmpeg), &p), 3);
        p.hflip = false;
        assert_eq!(exif_orientation(None, &p), 4);
    }
}
