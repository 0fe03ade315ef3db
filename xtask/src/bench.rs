//! `cargo xtask bench`: picamd's benchmark (issue 5), std only.
//!
//! For each scenario it runs two servers in turn on loopback and measures both
//! the same way:
//! - picamd (release build) fed by a *replay camera*: `--stream-cmd` runs this
//!   same binary as `bench --replay`, which writes a folder of real JPEG frames
//!   of a chosen size to stdout at a fixed rate;
//! - the *floor*: `bench --floor`, the simplest loop that gives the same bytes
//!   to the same sockets: it reads the same replay camera through a pipe,
//!   then `writev`s one shared buffer per frame (header + JPEG) to every
//!   non-blocking socket; a socket still busy with an older frame skips to
//!   the newest. It is what the kernel alone costs.
//!
//! Both stamp each frame, when it leaves the camera, with two COM segments
//! right after SOI: `picamd-ts=<unix µs>` and `picamd-seq=<n>`. The load client
//! (threads here, one per viewer, blocking reads into a large buffer so they
//! sleep in `read`) parses WebSocket frames or multipart parts incrementally,
//! and per whole frame reads the stamp from the frame's first bytes only:
//! latency is wall-clock now minus the stamp, and a jump in `seq` is a frame
//! the viewer never got. CPU is taken over the measured window only: user
//! and system from `/proc/PID/stat` (utime, stime; 10 ms ticks), the total
//! used per delivered frame from `/proc/PID/task/*/schedstat` (nanoseconds).
//! RSS comes from `/proc/PID/status` (VmRSS, VmHWM).
//!
//! Every loop here is bounded in time; sockets have timeouts; servers are
//! stopped (SIGTERM, then SIGKILL) when a measurement ends, and the replay
//! camera exits on EPIPE when picamd goes away. Nothing is asserted: the
//! numbers are reported as a markdown table and as JSON.

use std::error::Error;
use std::fmt::Write as _;
use std::fs;
use std::io::{self, BufRead, BufReader, IoSlice, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::rc::Rc;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

type BoxResult<T> = Result<T, Box<dyn Error>>;

const USAGE: &str = "\
usage: cargo xtask bench [--suite] [options]
  --suite              the standard scenarios (default when --viewers is absent):
                       10 WS viewers 640x480; 200 WS 1280x720; 50 mixed WS/MJPEG
                       1280x720; 200 WS + 10 stalled 1280x720; all at 30 fps
  --viewers N          one scenario with N reading viewers
  --kind ws|mjpeg|mix  what the viewers ask for (default ws; mix alternates)
  --stalled K          K more viewers that connect and never read (default 0)
  --fps F              camera frame rate (default 30)
  --size WxH           frame size in pixels (default 1280x720)
  --frame-bytes B      bytes per JPEG frame (default 128 KiB scaled to WxH)
  --seconds T          measured window per run (default 10)
  --warmup T           seconds between the last viewer's first frame and the
                       window (default 1)
  --server S           picamd, picamd-zerocopy (--zero-copy on), floor, both
                       (picamd and floor) or all (default all)
  --repeat N           N alternating runs of each; report the median run by
                       CPU per frame, with every run's figure (default 1)
  --no-build           use target/release/picamd as it is
  --json PATH          where to write results (default target/bench/results.json)
";

/// The WebSocket key every viewer sends: RFC 6455 §1.3's own example. The
/// load client does not check `Sec-WebSocket-Accept` (picamd's tests do).
const WS_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
/// The stamp's first COM segment: `FF FE`, length, `picamd-ts=` and 16
/// digits of unix microseconds (fixed width, so every frame keeps its size).
const TS_TAG: &[u8] = b"picamd-ts=";
const TS_DIGITS: usize = 16;
/// The stamp's second COM segment: `picamd-seq=` and 10 digits.
const SEQ_TAG: &[u8] = b"picamd-seq=";
const SEQ_DIGITS: usize = 10;
/// Bytes the two stamp segments add to a frame.
const STAMP_LEN: usize = 4 + TS_TAG.len() + TS_DIGITS + 4 + SEQ_TAG.len() + SEQ_DIGITS;
/// How much of each frame a viewer keeps to find the stamp in.
const PREFIX_LEN: usize = 128;
/// A COM segment's payload is at most 65535 - 2 bytes (its length field
/// counts itself; JPEG, ITU T.81 §B.1.1.4).
const MAX_COM_PAYLOAD: usize = 65533;
/// Multipart boundary picamd uses (and the floor copies).
const MJPEG_TAIL: &[u8] = b"\r\n--picamdframe\r\n";
/// Read buffer per viewer: a whole 128 KiB frame in one `read` when the
/// socket holds it, so a viewer costs about one syscall per frame. It also
/// changes what the *sender* pays: with 32 KiB reads the floor's CPU per
/// frame at 200 viewers doubled here (about 52 µs against 25 µs), so the
/// client must drain whole frames for the server numbers to mean anything.
const READ_BUF_BYTES: usize = 256 * 1024;
/// How long a blocked viewer read waits before looking at the stop flag.
const VIEWER_READ_TIMEOUT: Duration = Duration::from_millis(250);
/// Frames larger than this are a broken stream, not a frame.
const MAX_FRAME_BYTES: u64 = 64 << 20;
/// Longest multipart header line accepted.
const MAX_LINE_BYTES: usize = 1024;

const PHASE_WARMUP: u8 = 0;
const PHASE_MEASURE: u8 = 1;
const PHASE_STOP: u8 = 2;

/// Entry point for `cargo xtask bench …`. Also serves the two helper
/// processes the benchmark runs from this same binary: `bench --replay …`
/// (the camera) and `bench --floor …` (the baseline server).
pub fn run(args: &[String]) -> Result<(), Box<dyn std::error::Error>> {
    let args = match args.first().map(String::as_str) {
        Some("bench") => &args[1..],
        _ => args,
    };
    match args.first().map(String::as_str) {
        Some("--replay") => replay(&args[1..]),
        Some("--floor") => floor(&args[1..]),
        Some("--help" | "-h") => {
            print!("{USAGE}");
            Ok(())
        }
        _ => {
            let opts = parse_opts(args)?;
            bench(&opts)
        }
    }
}

// ---------------------------------------------------------------------------
// Options and scenarios

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Ws,
    Mjpeg,
    Mix,
}

impl Kind {
    fn parse(s: &str) -> BoxResult<Kind> {
        match s {
            "ws" => Ok(Kind::Ws),
            "mjpeg" => Ok(Kind::Mjpeg),
            "mix" => Ok(Kind::Mix),
            _ => Err(format!("--kind {s}: expected ws, mjpeg or mix").into()),
        }
    }
    fn name(self) -> &'static str {
        match self {
            Kind::Ws => "ws",
            Kind::Mjpeg => "mjpeg",
            Kind::Mix => "mix",
        }
    }
    /// What viewer number `i` asks for: a mix alternates WS and MJPEG.
    fn viewer(self, i: usize) -> ViewKind {
        match self {
            Kind::Ws => ViewKind::Ws,
            Kind::Mjpeg => ViewKind::Mjpeg,
            Kind::Mix if i.is_multiple_of(2) => ViewKind::Ws,
            Kind::Mix => ViewKind::Mjpeg,
        }
    }
}

/// What one connection receives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ViewKind {
    Ws,
    Mjpeg,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ServerKind {
    /// picamd as shipped: one `sendmsg` (writev) per viewer.
    Picamd,
    /// picamd with `--zero-copy on`: frames in a memfd, `sendfile` per viewer.
    PicamdZeroCopy,
    Floor,
}

impl ServerKind {
    fn name(self) -> &'static str {
        match self {
            ServerKind::Picamd => "picamd",
            ServerKind::PicamdZeroCopy => "picamd-zerocopy",
            ServerKind::Floor => "floor",
        }
    }

    fn is_picamd(self) -> bool {
        matches!(self, ServerKind::Picamd | ServerKind::PicamdZeroCopy)
    }
}

#[derive(Clone, Debug, PartialEq)]
struct Scenario {
    name: String,
    viewers: usize,
    stalled: usize,
    kind: Kind,
    fps: u32,
    width: u32,
    height: u32,
    frame_bytes: usize,
}

impl Scenario {
    fn new(
        viewers: usize,
        stalled: usize,
        kind: Kind,
        fps: u32,
        (width, height): (u32, u32),
    ) -> Self {
        let mut s = Scenario {
            name: String::new(),
            viewers,
            stalled,
            kind,
            fps,
            width,
            height,
            frame_bytes: default_frame_bytes(width, height),
        };
        s.name = s.default_name();
        s
    }
    fn default_name(&self) -> String {
        let mut n = format!(
            "{} {} {}x{}",
            self.viewers,
            self.kind.name(),
            self.width,
            self.height
        );
        if self.stalled > 0 {
            let _ = write!(n, " +{} stalled", self.stalled);
        }
        n
    }
}

/// 128 KiB at 1280x720 (the figure), scaled by pixel count: about
/// 43 KB at 640x480.
fn default_frame_bytes(width: u32, height: u32) -> usize {
    (u64::from(width) * u64::from(height) * 131_072 / (1280 * 720)).max(2048) as usize
}

fn suite() -> Vec<Scenario> {
    vec![
        Scenario::new(10, 0, Kind::Ws, 30, (640, 480)),
        Scenario::new(200, 0, Kind::Ws, 30, (1280, 720)),
        Scenario::new(50, 0, Kind::Mix, 30, (1280, 720)),
        Scenario::new(200, 10, Kind::Ws, 30, (1280, 720)),
    ]
}

#[derive(Debug)]
struct Opts {
    scenarios: Vec<Scenario>,
    servers: Vec<ServerKind>,
    seconds: f64,
    warmup: f64,
    /// Runs per scenario and server; the median run is reported.
    repeat: usize,
    build: bool,
    json: Option<PathBuf>,
    /// The command line, for the report.
    command: String,
}

fn parse_opts(args: &[String]) -> BoxResult<Opts> {
    let mut viewers = None;
    let mut kind = Kind::Ws;
    let mut stalled = 0usize;
    let mut fps = 30u32;
    let mut size = (1280u32, 720u32);
    let mut frame_bytes = None;
    let mut want_suite = false;
    let mut opts = Opts {
        scenarios: Vec::new(),
        servers: vec![
            ServerKind::Picamd,
            ServerKind::PicamdZeroCopy,
            ServerKind::Floor,
        ],
        seconds: 10.0,
        warmup: 1.0,
        repeat: 1,
        build: true,
        json: None,
        command: format!("cargo xtask bench {}", args.join(" "))
            .trim_end()
            .to_string(),
    };
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .map(String::as_str)
                .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))
        };
        match flag.as_str() {
            "--suite" => want_suite = true,
            "--viewers" => viewers = Some(parse_num::<usize>(flag, value()?, 1, 10_000)?),
            "--kind" => kind = Kind::parse(value()?)?,
            "--stalled" => stalled = parse_num(flag, value()?, 0, 10_000)?,
            "--fps" => fps = parse_num(flag, value()?, 1, 1000)?,
            "--size" => size = parse_size(value()?)?,
            "--frame-bytes" => {
                frame_bytes = Some(parse_num::<usize>(flag, value()?, 1024, 16 << 20)?)
            }
            "--seconds" => opts.seconds = parse_num::<f64>(flag, value()?, 0.5, 3600.0)?,
            "--warmup" => opts.warmup = parse_num::<f64>(flag, value()?, 0.0, 60.0)?,
            "--server" => {
                opts.servers = match value()? {
                    "picamd" => vec![ServerKind::Picamd],
                    "picamd-zerocopy" => vec![ServerKind::PicamdZeroCopy],
                    "floor" => vec![ServerKind::Floor],
                    "both" => vec![ServerKind::Picamd, ServerKind::Floor],
                    "all" => vec![
                        ServerKind::Picamd,
                        ServerKind::PicamdZeroCopy,
                        ServerKind::Floor,
                    ],
                    s => {
                        return Err(format!(
                            "--server {s}: expected picamd, picamd-zerocopy, floor, both or all"
                        )
                        .into());
                    }
                }
            }
            "--repeat" => opts.repeat = parse_num(flag, value()?, 1, 100)?,
            "--no-build" => opts.build = false,
            "--json" => opts.json = Some(PathBuf::from(value()?)),
            _ => return Err(format!("unknown option {flag}\n{USAGE}").into()),
        }
    }
    if let Some(n) = viewers {
        let mut s = Scenario::new(n, stalled, kind, fps, size);
        if let Some(b) = frame_bytes {
            s.frame_bytes = b;
        }
        opts.scenarios.push(s);
    }
    if want_suite || viewers.is_none() {
        opts.scenarios.extend(suite());
    }
    Ok(opts)
}

fn parse_num<T: std::str::FromStr + PartialOrd + std::fmt::Display>(
    flag: &str,
    s: &str,
    min: T,
    max: T,
) -> BoxResult<T> {
    match s.parse::<T>() {
        Ok(v) if v >= min && v <= max => Ok(v),
        _ => Err(format!("{flag} {s}: expected a number from {min} to {max}").into()),
    }
}

fn parse_size(s: &str) -> BoxResult<(u32, u32)> {
    let bad = || format!("--size {s}: expected WxH, e.g. 1280x720");
    let (w, h) = s.split_once('x').ok_or_else(bad)?;
    let w: u32 = w.parse().map_err(|_| bad())?;
    let h: u32 = h.parse().map_err(|_| bad())?;
    if !(16..=8192).contains(&w) || !(16..=8192).contains(&h) {
        return Err(bad().into());
    }
    Ok((w, h))
}

/// Value of `--name` in a helper process's arguments.
fn arg_value<'a>(args: &'a [String], name: &str) -> BoxResult<&'a str> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(String::as_str)
        .ok_or_else(|| format!("missing {name}").into())
}

// ---------------------------------------------------------------------------
// Paths

/// The repository root: the parent of xtask's manifest directory.
fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

fn target_dir(root: &Path) -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(t) => root.join(t),
        None => root.join("target"),
    }
}

// ---------------------------------------------------------------------------
// JPEG helpers: stamping, padding, checking

fn wall_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

fn push_com(out: &mut Vec<u8>, payload_len: usize) {
    let len = (payload_len + 2) as u16;
    out.extend_from_slice(&[0xFF, 0xFE]);
    out.extend_from_slice(&len.to_be_bytes());
}

/// Appends the two stamp segments (exactly `STAMP_LEN` bytes).
fn push_stamp(out: &mut Vec<u8>, ts_us: u64, seq: u64) {
    push_com(out, TS_TAG.len() + TS_DIGITS);
    out.extend_from_slice(TS_TAG);
    let _ = write!(
        VecWriter(out),
        "{:0width$}",
        ts_us % 10u64.pow(TS_DIGITS as u32),
        width = TS_DIGITS
    );
    push_com(out, SEQ_TAG.len() + SEQ_DIGITS);
    out.extend_from_slice(SEQ_TAG);
    let _ = write!(
        VecWriter(out),
        "{:0width$}",
        seq % 10u64.pow(SEQ_DIGITS as u32),
        width = SEQ_DIGITS
    );
}

/// `fmt::Write` into a byte vector without an intermediate `String`.
struct VecWriter<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for VecWriter<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

/// Replaces `out` with `jpeg` stamped right after its SOI. `jpeg` must start
/// with SOI (checked when the frames were loaded).
fn stamp_into(out: &mut Vec<u8>, jpeg: &[u8], ts_us: u64, seq: u64) {
    out.clear();
    out.extend_from_slice(&jpeg[..2]);
    push_stamp(out, ts_us, seq);
    out.extend_from_slice(&jpeg[2..]);
}

/// Removes COM segments right after SOI whose text starts with `picamd-`
/// (the test pattern's own stamp), so a frame carries only ours.
fn strip_stamps(jpeg: &[u8]) -> Vec<u8> {
    let mut pos = 2;
    while jpeg.len() >= pos + 4 && jpeg[pos] == 0xFF && jpeg[pos + 1] == 0xFE {
        let len = usize::from(u16::from_be_bytes([jpeg[pos + 2], jpeg[pos + 3]]));
        let payload = jpeg.get(pos + 4..pos + 2 + len).unwrap_or(&[]);
        if len < 2 || !payload.starts_with(b"picamd-") {
            break;
        }
        pos += 2 + len;
    }
    let mut out = jpeg[..2].to_vec();
    out.extend_from_slice(&jpeg[pos.min(jpeg.len())..]);
    out
}

/// Pads `jpeg` with COM segments right after SOI until it is `target` bytes
/// (or up to 3 bytes short: a COM segment is at least 4 bytes).
fn pad_jpeg(jpeg: &[u8], target: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(target.max(jpeg.len()));
    out.extend_from_slice(&jpeg[..2]);
    let mut need = target.saturating_sub(jpeg.len());
    while need >= 4 {
        let mut payload = (need - 4).min(MAX_COM_PAYLOAD);
        // Leave either nothing or room for one more whole segment.
        let rest = need - 4 - payload;
        if (1..4).contains(&rest) {
            payload -= 4 - rest;
        }
        push_com(&mut out, payload);
        out.resize(out.len() + payload, b'.');
        need -= 4 + payload;
    }
    out.extend_from_slice(&jpeg[2..]);
    out
}

fn is_jpeg(b: &[u8]) -> bool {
    b.starts_with(&[0xFF, 0xD8]) && b.ends_with(&[0xFF, 0xD9])
}

/// Reads the decimal number after `tag` in `prefix`, if it is there.
fn find_number(prefix: &[u8], tag: &[u8]) -> Option<u64> {
    let at = prefix.windows(tag.len()).position(|w| w == tag)? + tag.len();
    let digits = &prefix[at..];
    let n = digits.iter().take_while(|b| b.is_ascii_digit()).count();
    if n == 0 || n > 19 {
        return None;
    }
    std::str::from_utf8(&digits[..n]).ok()?.parse().ok()
}

/// The `.jpg` files of a folder made by [`prepare_frames`], in name order
/// (the order the replay sends them in).
fn frame_paths(dir: &Path) -> BoxResult<Vec<PathBuf>> {
    let mut names: Vec<PathBuf> = fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "jpg"))
        .collect();
    names.sort();
    if names.is_empty() {
        return Err(format!("{}: no frames", dir.display()).into());
    }
    Ok(names)
}

/// The frames of a folder made by [`prepare_frames`], in name order.
fn load_frames(dir: &Path) -> BoxResult<Vec<Vec<u8>>> {
    let mut frames = Vec::new();
    for p in frame_paths(dir)? {
        let b = fs::read(&p)?;
        if !is_jpeg(&b) {
            return Err(format!("{}: not a JPEG", p.display()).into());
        }
        frames.push(b);
    }
    Ok(frames)
}

// ---------------------------------------------------------------------------
// Frames: made once per (size, bytes) and cached under target/bench/frames

/// Makes (or reuses) a folder of JPEG frames of `width`x`height`, each
/// `frame_bytes` long once stamped. ffmpeg's `testsrc2` with temporal noise
/// gives real, varied frames; the quality is the best that fits, and COM
/// padding makes up the rest. Without ffmpeg, picamd's own test pattern
/// (`/pi.jpg`) is used.
fn prepare_frames(root: &Path, picamd: &Path, sc: &Scenario) -> BoxResult<PathBuf> {
    let dir = target_dir(root)
        .join("bench/frames")
        .join(format!("{}x{}-{}", sc.width, sc.height, sc.frame_bytes));
    if dir.join("ok").exists() {
        return Ok(dir);
    }
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir)?;
    let body = sc.frame_bytes.saturating_sub(STAMP_LEN);
    let raw = match ffmpeg_frames(&dir, sc.width, sc.height, body) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("bench: ffmpeg frames failed ({e}); using picamd's test pattern");
            test_pattern_frames(picamd, sc.width, sc.height)?
        }
    };
    for (i, f) in raw.iter().enumerate() {
        let f = pad_jpeg(&strip_stamps(f), body);
        if !is_jpeg(&f) {
            return Err("a prepared frame is not a JPEG".into());
        }
        fs::write(dir.join(format!("frame-{i:03}.jpg")), f)?;
    }
    fs::write(dir.join("ok"), b"")?;
    Ok(dir)
}

/// Thirty frames from ffmpeg at the lowest `-q:v` (best quality) whose largest
/// frame fits in `max_bytes`.
fn ffmpeg_frames(dir: &Path, width: u32, height: u32, max_bytes: usize) -> BoxResult<Vec<Vec<u8>>> {
    let tmp = dir.join("tmp");
    let make = |q: u32| -> BoxResult<Vec<Vec<u8>>> {
        let _ = fs::remove_dir_all(&tmp);
        fs::create_dir_all(&tmp)?;
        let st = Command::new("ffmpeg")
            .args(["-nostdin", "-loglevel", "error", "-y", "-f", "lavfi", "-i"])
            .arg(format!("testsrc2=size={width}x{height}:rate=30"))
            .args(["-vf", "noise=alls=10:allf=t", "-frames:v", "30", "-q:v"])
            .arg(q.to_string())
            .arg(tmp.join("%03d.jpg"))
            .stdin(Stdio::null())
            .status()?;
        if !st.success() {
            return Err(format!("ffmpeg exited with {st}").into());
        }
        let f = load_frames(&tmp)?;
        let _ = fs::remove_dir_all(&tmp);
        Ok(f)
    };
    let fits = |f: &[Vec<u8>]| f.iter().all(|x| x.len() <= max_bytes);
    let (mut lo, mut hi) = (2u32, 31u32);
    let mut best = make(hi)?;
    if !fits(&best) {
        eprintln!("bench: {width}x{height} frames exceed {max_bytes} bytes even at -q:v 31");
        return Ok(best);
    }
    while lo < hi {
        let mid = (lo + hi) / 2;
        let f = make(mid)?;
        if fits(&f) {
            hi = mid;
            best = f;
        } else {
            lo = mid + 1;
        }
    }
    Ok(best)
}

/// Ten frames of picamd's built-in test pattern, taken from `/pi.jpg`.
fn test_pattern_frames(picamd: &Path, width: u32, height: u32) -> BoxResult<Vec<Vec<u8>>> {
    let mut cmd = Command::new(picamd);
    cmd.args(["--listen", "127.0.0.1:0", "--quiet", "--camera", "test"])
        .args([
            "--width",
            &width.to_string(),
            "--height",
            &height.to_string(),
        ]);
    let server = ServerProc::spawn(cmd)?;
    let mut frames = Vec::new();
    for _ in 0..10 {
        let (status, body) = http_get(server.port, "/pi.jpg")?;
        if status != 200 || !is_jpeg(&body) {
            return Err(format!("/pi.jpg answered {status}").into());
        }
        frames.push(body);
        thread::sleep(Duration::from_millis(100));
    }
    Ok(frames)
}

// ---------------------------------------------------------------------------
// The replay camera: `bench --replay --dir D --fps F [--max-seconds S]`

/// Writes the folder's frames, stamped, to stdout at `fps`, one `write` per
/// frame, paced by the wall clock (deadlines from the start, so a late frame
/// does not slow the rate). Exits on EPIPE (picamd stopped the stream) or
/// after `--max-seconds` (default 900), so it never outlives a benchmark.
fn replay(args: &[String]) -> BoxResult<()> {
    let frames = load_frames(Path::new(arg_value(args, "--dir")?))?;
    let fps: u32 = parse_num("--fps", arg_value(args, "--fps")?, 1, 1000)?;
    let max = arg_value(args, "--max-seconds")
        .map_or(Ok(900.0), |s| parse_num("--max-seconds", s, 1.0, 86_400.0))?;
    // A File on fd 1, not `Stdout`: std's stdout is line-buffered and would
    // split a frame at every 0x0A byte.
    let mut out = fs::File::from(io::stdout().as_fd().try_clone_to_owned()?);
    let period = Duration::from_secs(1) / fps;
    let began = Instant::now();
    let mut start = began;
    let mut buf = Vec::new();
    let mut tick = 0u32;
    for seq in 0u64.. {
        if began.elapsed().as_secs_f64() > max {
            break;
        }
        let deadline = start + period * tick;
        let now = Instant::now();
        if deadline > now {
            thread::sleep(deadline - now);
        } else if now - deadline > Duration::from_secs(1) {
            // Far behind (the machine was busy): start the schedule again
            // rather than burst a second of frames.
            start = now;
            tick = 0;
        }
        tick += 1;
        let jpeg = &frames[(seq % frames.len() as u64) as usize];
        stamp_into(&mut buf, jpeg, wall_us(), seq);
        match out.write_all(&buf) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => break,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// The floor: `bench --floor --dir D --fps F --conns N [--max-seconds S]`

/// One frame as the floor sends it: the headers of both kinds and the
/// stamped JPEG, built once and shared by every socket.
struct FloorFrame {
    ws_head: Vec<u8>,
    mjpeg_head: Vec<u8>,
    jpeg: Vec<u8>,
}

impl FloorFrame {
    fn parts(&self, kind: ViewKind) -> [&[u8]; 3] {
        match kind {
            ViewKind::Ws => [&self.ws_head, &self.jpeg, &[]],
            ViewKind::Mjpeg => [&self.mjpeg_head, &self.jpeg, MJPEG_TAIL],
        }
    }
}

struct FloorSock {
    stream: TcpStream,
    kind: ViewKind,
    /// The frame being written and how many of its bytes are out.
    pending: Option<(Rc<FloorFrame>, usize)>,
    wrote_since_tick: bool,
    /// Ticks in a row with a frame pending and no byte written: such a
    /// socket is only retried at ticks, so a stalled viewer costs one
    /// failed `writev` per frame, as an EPOLLOUT-driven server's would cost
    /// nothing.
    idle_ticks: u32,
    dead: bool,
}

impl FloorSock {
    /// Writes as much of the pending frame as the socket takes.
    fn flush(&mut self) {
        let Some((frame, off)) = &mut self.pending else {
            return;
        };
        let parts = frame.parts(self.kind);
        let total: usize = parts.iter().map(|p| p.len()).sum();
        while *off < total {
            let mut skip = *off;
            let mut slices = [IoSlice::new(&[]); 3];
            let mut n = 0;
            for p in parts {
                if skip >= p.len() {
                    skip -= p.len();
                    continue;
                }
                slices[n] = IoSlice::new(&p[skip..]);
                skip = 0;
                n += 1;
            }
            match self.stream.write_vectored(&slices[..n]) {
                Ok(0) => {
                    self.dead = true;
                    break;
                }
                Ok(w) => {
                    *off += w;
                    self.wrote_since_tick = true;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    self.dead = true;
                    break;
                }
            }
        }
        if self.dead || *off >= total {
            self.pending = None;
        }
    }

    /// A new frame: finish the old one if possible, else skip this one
    /// (skip to the newest, as picamd does).
    fn on_tick(&mut self, frame: &Rc<FloorFrame>) {
        if self.dead {
            return;
        }
        self.idle_ticks = match (&self.pending, self.wrote_since_tick) {
            (Some(_), false) => self.idle_ticks + 1,
            _ => 0,
        };
        self.wrote_since_tick = false;
        self.flush();
        if self.pending.is_none() && !self.dead {
            self.pending = Some((Rc::clone(frame), 0));
            self.flush();
        }
    }
}

fn floor(args: &[String]) -> BoxResult<()> {
    let dir = arg_value(args, "--dir")?;
    let fps = arg_value(args, "--fps")?;
    let conns: usize = parse_num("--conns", arg_value(args, "--conns")?, 1, 100_000)?;
    let max_arg = arg_value(args, "--max-seconds").unwrap_or("900");
    let max: f64 = parse_num("--max-seconds", max_arg, 1.0, 86_400.0)?;
    // The replay writes the folder's frames in name order, each stamped:
    // knowing their lengths is all it takes to cut the pipe into frames
    // (and the floor's memory stays that of a server holding one frame).
    let mut lengths = Vec::new();
    for p in frame_paths(Path::new(dir))? {
        lengths.push(fs::metadata(p)?.len() as usize + STAMP_LEN);
    }
    let began = Instant::now();
    let listener = TcpListener::bind("127.0.0.1:0")?;
    eprintln!("listening on http://{}/", listener.local_addr()?);
    listener.set_nonblocking(true)?;

    // Accept everyone first (bounded); the load client connects all viewers
    // before it waits for frames.
    let mut socks = Vec::with_capacity(conns);
    let accept_until = Instant::now() + Duration::from_secs(60);
    while socks.len() < conns && Instant::now() < accept_until {
        match listener.accept() {
            Ok((s, _)) => match floor_handshake(s) {
                Ok(sock) => socks.push(sock),
                Err(e) => eprintln!("floor: handshake: {e}"),
            },
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                thread::sleep(Duration::from_millis(1))
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    drop(listener);

    // The same camera as picamd's, through the same kind of pipe, so the
    // latency of both is measured from the same moment and the floor pays
    // for reading the pipe as picamd does. A thread does the blocking reads;
    // the loop below waits on the channel with a timeout, which is what
    // lets it retry unfinished sockets between frames without poll(2).
    let mut camera = Command::new(std::env::current_exe()?)
        .args([
            "bench",
            "--replay",
            "--dir",
            dir,
            "--fps",
            fps,
            "--max-seconds",
            max_arg,
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()?;
    let mut pipe = camera.stdout.take().ok_or("no camera stdout")?;
    let (tx, rx) = mpsc::sync_channel::<Vec<u8>>(2);
    thread::spawn(move || {
        for len in lengths.iter().cycle() {
            let mut jpeg = vec![0; *len];
            if pipe.read_exact(&mut jpeg).is_err() || !is_jpeg(&jpeg) || tx.send(jpeg).is_err() {
                break;
            }
        }
    });

    let mut backoff = Duration::from_micros(250);
    while began.elapsed().as_secs_f64() < max && !socks.iter().all(|s| s.dead) {
        // Sockets that made progress lately get retried with a growing
        // pause; sockets that stalled are only tried when a frame comes.
        let busy = socks
            .iter()
            .any(|s| s.pending.is_some() && s.idle_ticks < 2);
        let wait = if busy {
            backoff
        } else {
            Duration::from_millis(100)
        };
        match rx.recv_timeout(wait) {
            Ok(jpeg) => {
                let frame = Rc::new(FloorFrame {
                    ws_head: ws_header(jpeg.len()),
                    mjpeg_head: format!(
                        "Content-Type: image/jpeg\r\nContent-Length: {}\r\n\r\n",
                        jpeg.len()
                    )
                    .into_bytes(),
                    jpeg,
                });
                for s in &mut socks {
                    s.on_tick(&frame);
                }
                backoff = Duration::from_micros(250);
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                for s in socks.iter_mut().filter(|s| s.idle_ticks < 2) {
                    s.flush();
                }
                backoff = (backoff * 2).min(Duration::from_millis(4));
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                eprintln!("floor: the camera stopped or sent something else than the frames");
                break;
            }
        }
    }
    let _ = camera.kill();
    let _ = camera.wait();
    Ok(())
}

/// Reads the request head and answers like picamd would (the accept key is
/// not computed: the load client does not check it).
fn floor_handshake(mut s: TcpStream) -> BoxResult<FloorSock> {
    s.set_nonblocking(false)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    let (head, _) = read_head(&mut s)?;
    let line = head.lines().next().unwrap_or("");
    let kind = if line.contains("/stream.mjpg") {
        ViewKind::Mjpeg
    } else {
        ViewKind::Ws
    };
    let answer: &[u8] = match kind {
        ViewKind::Ws => b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n",
        ViewKind::Mjpeg => b"HTTP/1.1 200 OK\r\nContent-Type: multipart/x-mixed-replace;boundary=picamdframe\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n--picamdframe\r\n",
    };
    s.write_all(answer)?;
    s.set_nonblocking(true)?;
    Ok(FloorSock {
        stream: s,
        kind,
        pending: None,
        wrote_since_tick: false,
        idle_ticks: 0,
        dead: false,
    })
}

/// A server's unmasked binary frame header (RFC 6455 §5.2) for `len` bytes.
fn ws_header(len: usize) -> Vec<u8> {
    let mut h = vec![0x82];
    if len < 126 {
        h.push(len as u8);
    } else if len <= 0xFFFF {
        h.push(126);
        h.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        h.push(127);
        h.extend_from_slice(&(len as u64).to_be_bytes());
    }
    h
}

// ---------------------------------------------------------------------------
// Stream parsers of the load client

/// What a viewer keeps of a frame while it arrives: its first bytes (for the
/// stamp), its last two (EOI) and its length.
struct FrameAcc {
    prefix: [u8; PREFIX_LEN],
    prefix_len: usize,
    last2: [u8; 2],
    len: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FrameInfo {
    len: u64,
    ts_us: Option<u64>,
    seq: Option<u64>,
    is_jpeg: bool,
}

impl FrameAcc {
    fn new() -> Self {
        FrameAcc {
            prefix: [0; PREFIX_LEN],
            prefix_len: 0,
            last2: [0; 2],
            len: 0,
        }
    }
    fn push(&mut self, data: &[u8]) {
        if self.prefix_len < PREFIX_LEN {
            let n = data.len().min(PREFIX_LEN - self.prefix_len);
            self.prefix[self.prefix_len..self.prefix_len + n].copy_from_slice(&data[..n]);
            self.prefix_len += n;
        }
        match data {
            [] => {}
            [b] => self.last2 = [self.last2[1], *b],
            [.., a, b] => self.last2 = [*a, *b],
        }
        self.len += data.len() as u64;
    }
    fn finish(&mut self) -> FrameInfo {
        let p = &self.prefix[..self.prefix_len];
        let info = FrameInfo {
            len: self.len,
            ts_us: find_number(p, TS_TAG),
            seq: find_number(p, SEQ_TAG),
            is_jpeg: p.starts_with(&[0xFF, 0xD8]) && self.len >= 4 && self.last2 == [0xFF, 0xD9],
        };
        *self = FrameAcc::new();
        info
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Event {
    Frame(FrameInfo),
    Ping(Vec<u8>),
    Close,
}

enum Parser {
    Ws(WsParser),
    Mjpeg(MjpegParser),
}

impl Parser {
    fn new(kind: ViewKind) -> Self {
        match kind {
            ViewKind::Ws => Parser::Ws(WsParser::new()),
            ViewKind::Mjpeg => Parser::Mjpeg(MjpegParser::new()),
        }
    }
    fn feed(&mut self, data: &[u8], events: &mut Vec<Event>) -> Result<(), &'static str> {
        match self {
            Parser::Ws(p) => p.feed(data, events),
            Parser::Mjpeg(p) => p.feed(data, events),
        }
    }
}

/// Server-to-client WebSocket frames (RFC 6455 §5.2): never masked (§5.1),
/// data messages possibly fragmented, control frames ≤ 125 bytes.
struct WsParser {
    header: [u8; 14],
    header_len: usize,
    /// `Some` while a payload is being read.
    payload: Option<WsPayload>,
    in_message: bool,
    acc: FrameAcc,
    control: Vec<u8>,
}

struct WsPayload {
    remaining: u64,
    opcode: u8,
    fin: bool,
}

impl WsParser {
    fn new() -> Self {
        WsParser {
            header: [0; 14],
            header_len: 0,
            payload: None,
            in_message: false,
            acc: FrameAcc::new(),
            control: Vec::new(),
        }
    }

    /// Header bytes needed given those already read.
    fn header_need(&self) -> usize {
        if self.header_len < 2 {
            return 2;
        }
        let ext = match self.header[1] & 0x7F {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        let mask = if self.header[1] & 0x80 != 0 { 4 } else { 0 };
        2 + ext + mask
    }

    fn feed(&mut self, data: &[u8], events: &mut Vec<Event>) -> Result<(), &'static str> {
        let mut i = 0;
        loop {
            match &mut self.payload {
                None => {
                    let need = self.header_need();
                    if self.header_len < need {
                        if i == data.len() {
                            return Ok(());
                        }
                        let n = (need - self.header_len).min(data.len() - i);
                        self.header[self.header_len..self.header_len + n]
                            .copy_from_slice(&data[i..i + n]);
                        self.header_len += n;
                        i += n;
                        continue;
                    }
                    self.start_payload()?;
                }
                Some(p) if p.remaining > 0 => {
                    if i == data.len() {
                        return Ok(());
                    }
                    let n = p.remaining.min((data.len() - i) as u64) as usize;
                    let chunk = &data[i..i + n];
                    if p.opcode >= 8 {
                        self.control.extend_from_slice(chunk);
                    } else {
                        self.acc.push(chunk);
                    }
                    p.remaining -= n as u64;
                    i += n;
                }
                Some(p) => {
                    let (opcode, fin) = (p.opcode, p.fin);
                    self.payload = None;
                    match opcode {
                        0..=2 if fin => {
                            self.in_message = false;
                            events.push(Event::Frame(self.acc.finish()));
                        }
                        0..=2 => {}
                        8 => events.push(Event::Close),
                        9 => events.push(Event::Ping(std::mem::take(&mut self.control))),
                        _ => {}
                    }
                }
            }
        }
    }

    /// A whole header is in `self.header`: check it and start its payload.
    fn start_payload(&mut self) -> Result<(), &'static str> {
        let h = &self.header;
        if h[0] & 0x70 != 0 {
            return Err("WebSocket: reserved bits set");
        }
        if h[1] & 0x80 != 0 {
            return Err("WebSocket: masked server frame");
        }
        let fin = h[0] & 0x80 != 0;
        let opcode = h[0] & 0x0F;
        let len = match h[1] & 0x7F {
            126 => u64::from(u16::from_be_bytes([h[2], h[3]])),
            127 => u64::from_be_bytes([h[2], h[3], h[4], h[5], h[6], h[7], h[8], h[9]]),
            n => u64::from(n),
        };
        match opcode {
            8..=10 if len > 125 || !fin => return Err("WebSocket: bad control frame"),
            8..=10 => self.control.clear(),
            0 if !self.in_message => return Err("WebSocket: continuation without a message"),
            0 => {}
            1 | 2 if self.in_message => return Err("WebSocket: new message inside a message"),
            1 | 2 => {
                self.in_message = true;
                self.acc = FrameAcc::new();
            }
            _ => return Err("WebSocket: unknown opcode"),
        }
        if self.acc.len + len > MAX_FRAME_BYTES {
            return Err("WebSocket: message too large");
        }
        self.header_len = 0;
        self.payload = Some(WsPayload {
            remaining: len,
            opcode,
            fin,
        });
        Ok(())
    }
}

/// A `multipart/x-mixed-replace` body (RFC 2046 §5.1): boundary lines, part
/// headers with `Content-Length`, then exactly that many bytes.
struct MjpegParser {
    line: Vec<u8>,
    content_length: Option<u64>,
    in_headers: bool,
    /// `Some(remaining)` while a part's body is being read.
    body: Option<u64>,
    acc: FrameAcc,
}

impl MjpegParser {
    fn new() -> Self {
        MjpegParser {
            line: Vec::new(),
            content_length: None,
            in_headers: false,
            body: None,
            acc: FrameAcc::new(),
        }
    }

    fn feed(&mut self, data: &[u8], events: &mut Vec<Event>) -> Result<(), &'static str> {
        let mut i = 0;
        while i < data.len() || self.body == Some(0) {
            if let Some(remaining) = self.body {
                let n = remaining.min((data.len() - i) as u64) as usize;
                self.acc.push(&data[i..i + n]);
                i += n;
                let left = remaining - n as u64;
                if left == 0 {
                    self.body = None;
                    events.push(Event::Frame(self.acc.finish()));
                } else {
                    self.body = Some(left);
                }
                continue;
            }
            let rest = &data[i..];
            let (piece, done) = match rest.iter().position(|&b| b == b'\n') {
                Some(at) => (&rest[..at], true),
                None => (rest, false),
            };
            if self.line.len() + piece.len() > MAX_LINE_BYTES {
                return Err("multipart: header line too long");
            }
            self.line.extend_from_slice(piece);
            i += piece.len() + usize::from(done);
            if done {
                self.on_line()?;
            }
        }
        Ok(())
    }

    fn on_line(&mut self) -> Result<(), &'static str> {
        let mut line = std::mem::take(&mut self.line);
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        if line.is_empty() {
            if self.in_headers {
                let len = self
                    .content_length
                    .take()
                    .ok_or("multipart: part without Content-Length")?;
                if len > MAX_FRAME_BYTES {
                    return Err("multipart: part too large");
                }
                self.in_headers = false;
                self.acc = FrameAcc::new();
                self.body = Some(len);
            }
        } else if line.starts_with(b"--") {
            if line != b"--picamdframe" {
                return Err("multipart: unexpected boundary");
            }
            self.in_headers = false;
            self.content_length = None;
        } else {
            self.in_headers = true;
            let text = std::str::from_utf8(&line).map_err(|_| "multipart: header not UTF-8")?;
            let (name, value) = text
                .split_once(':')
                .ok_or("multipart: header without ':'")?;
            if name.trim().eq_ignore_ascii_case("content-length") {
                let n = value
                    .trim()
                    .parse()
                    .map_err(|_| "multipart: bad Content-Length")?;
                self.content_length = Some(n);
            }
        }
        self.line = line;
        self.line.clear();
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// Viewers

struct Shared {
    phase: AtomicU8,
    /// Viewers that have received at least one whole frame.
    started: AtomicUsize,
}

#[derive(Default, Debug)]
struct ViewerResult {
    /// Whole frames received inside the window.
    frames: u64,
    /// Frames the camera made that this viewer never got (jumps in `seq`).
    skipped: u64,
    /// Frames that were not a JPEG or had no stamp.
    bad: u64,
    /// Frames whose `seq` was not newer than the previous one.
    repeats: u64,
    latencies_us: Vec<u64>,
    error: Option<String>,
}

/// Reads the response head (up to the empty line) byte-wise bounded; returns
/// it and whatever came after it.
fn read_head(s: &mut TcpStream) -> BoxResult<(String, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let rest = buf.split_off(at + 4);
            return Ok((String::from_utf8_lossy(&buf).into_owned(), rest));
        }
        if buf.len() > 16 * 1024 {
            return Err("response head too long".into());
        }
        let n = s.read(&mut chunk)?;
        if n == 0 {
            return Err("connection closed in the head".into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn request(kind: ViewKind, port: u16) -> String {
    match kind {
        ViewKind::Ws => format!(
            "GET /stream HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: {WS_KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ),
        ViewKind::Mjpeg => format!("GET /stream.mjpg HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n"),
    }
}

/// Connects and sends the request; the answer is read by the viewer.
fn connect(kind: ViewKind, port: u16) -> io::Result<TcpStream> {
    let addr = ([127, 0, 0, 1], port).into();
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_write_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(request(kind, port).as_bytes())?;
    Ok(s)
}

fn viewer(s: TcpStream, kind: ViewKind, shared: &Shared) -> ViewerResult {
    let mut r = ViewerResult {
        latencies_us: Vec::with_capacity(4096),
        ..ViewerResult::default()
    };
    if let Err(e) = viewer_loop(s, kind, shared, &mut r) {
        r.error = Some(e.to_string());
    }
    r
}

fn viewer_loop(
    mut s: TcpStream,
    kind: ViewKind,
    shared: &Shared,
    r: &mut ViewerResult,
) -> BoxResult<()> {
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let (head, rest) = read_head(&mut s)?;
    let status_line = head.lines().next().unwrap_or("");
    let want = match kind {
        ViewKind::Ws => " 101 ",
        ViewKind::Mjpeg => " 200 ",
    };
    if !status_line.contains(want) {
        return Err(format!("answered {status_line:?}").into());
    }
    s.set_read_timeout(Some(VIEWER_READ_TIMEOUT))?;
    let mut parser = Parser::new(kind);
    let mut events = Vec::new();
    let mut buf = vec![0u8; READ_BUF_BYTES];
    let mut started = false;
    let mut last_seq: Option<u64> = None;
    let mut n = rest.len();
    buf[..n].copy_from_slice(&rest);
    loop {
        let now_us = wall_us();
        parser.feed(&buf[..n], &mut events)?;
        let measuring = shared.phase.load(Ordering::Relaxed) == PHASE_MEASURE;
        for ev in events.drain(..) {
            match ev {
                Event::Frame(f) => {
                    if !started {
                        started = true;
                        shared.started.fetch_add(1, Ordering::Relaxed);
                    }
                    let gap = match (last_seq, f.seq) {
                        (Some(a), Some(b)) if b > a => Some(b - a - 1),
                        _ => None,
                    };
                    if measuring {
                        r.frames += 1;
                        match (f.is_jpeg, f.ts_us) {
                            (true, Some(ts)) => r.latencies_us.push(now_us.saturating_sub(ts)),
                            _ => r.bad += 1,
                        }
                        match gap {
                            Some(g) => r.skipped += g,
                            None if last_seq.is_some() => r.repeats += 1,
                            None => {}
                        }
                    }
                    if f.seq.is_some() {
                        last_seq = f.seq;
                    }
                }
                // RFC 6455 §5.5.2: answer a ping with a pong carrying the same
                // data; client frames are masked (§5.3), here with a zero key.
                Event::Ping(data) => {
                    let mut pong = vec![0x8A, 0x80 | data.len() as u8, 0, 0, 0, 0];
                    pong.extend_from_slice(&data);
                    s.write_all(&pong)?;
                }
                Event::Close => return Err("server closed the stream".into()),
            }
        }
        if shared.phase.load(Ordering::Relaxed) == PHASE_STOP {
            return Ok(());
        }
        n = match s.read(&mut buf) {
            Ok(0) => return Err("server closed the connection".into()),
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) =>
            {
                0
            }
            Err(e) => return Err(e.into()),
        };
    }
}

// ---------------------------------------------------------------------------
// Processes and /proc

/// A server child (picamd or the floor): port from its first stderr line,
/// the rest of stderr drained (a full pipe would stall it) and its tail
/// kept for error messages. Dropping it stops it.
struct ServerProc {
    child: Child,
    pid: u32,
    port: u16,
    log: Arc<Mutex<Vec<String>>>,
}

impl ServerProc {
    fn spawn(mut cmd: Command) -> BoxResult<ServerProc> {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("spawning {:?}: {e}", cmd.get_program()))?;
        let pid = child.id();
        let stderr = child.stderr.take().ok_or("no stderr")?;
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let tail = Arc::clone(&log);
        thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(tx) = tx.take() {
                    let port = line
                        .strip_prefix("listening on http://")
                        .and_then(|a| a.trim_end_matches('/').rsplit(':').next())
                        .and_then(|p| p.parse::<u16>().ok());
                    let _ = tx.send((port, line.clone()));
                }
                if let Ok(mut t) = tail.lock() {
                    if t.len() >= 40 {
                        t.remove(0);
                    }
                    t.push(line);
                }
            }
        });
        let mut proc = ServerProc {
            child,
            pid,
            port: 0,
            log,
        };
        match rx.recv_timeout(Duration::from_secs(20)) {
            Ok((Some(port), _)) => proc.port = port,
            Ok((None, line)) => {
                return Err(format!("first stderr line is not `listening on`: {line:?}").into());
            }
            Err(_) => return Err(format!("no `listening on` line; stderr: {}", proc.tail()).into()),
        }
        Ok(proc)
    }

    fn tail(&self) -> String {
        self.log.lock().map(|t| t.join("\n")).unwrap_or_default()
    }

    /// SIGTERM (std can only send SIGKILL, so through kill(1)), wait up to 3 s,
    /// then SIGKILL.
    fn stop(&mut self) {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .stderr(Stdio::null())
            .status();
        let until = Instant::now() + Duration::from_secs(3);
        while Instant::now() < until {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            thread::sleep(Duration::from_millis(20));
        }
        eprintln!(
            "bench: pid {} ignored SIGTERM for 3 s; killing it",
            self.pid
        );
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ServerProc {
    fn drop(&mut self) {
        self.stop();
    }
}

/// utime and stime in clock ticks, from `/proc/PID/stat` fields 14 and 15
/// (proc(5)); `pid` may be `self`.
fn cpu_ticks(pid: &str) -> io::Result<(u64, u64)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat"))?;
    parse_stat_cpu(&stat).ok_or_else(|| io::Error::other("unexpected /proc/PID/stat"))
}

/// CPU time in nanoseconds, summed over the process's threads from
/// `/proc/PID/task/*/schedstat` (first field: time on the CPU). The tick
/// counts of `stat` are 10 ms coarse, too coarse for a 10 s window of a
/// server using a few percent of a core; this is exact. `None` without
/// schedstat support.
fn cpu_ns(pid: &str) -> Option<u64> {
    let mut total = 0;
    for task in fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        let s = fs::read_to_string(task.ok()?.path().join("schedstat")).ok()?;
        total += s.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(total)
}

fn parse_stat_cpu(stat: &str) -> Option<(u64, u64)> {
    // The command name (field 2) is in parentheses and may hold spaces.
    let after = &stat[stat.rfind(')')? + 1..];
    let mut f = after.split_whitespace().skip(11);
    Some((f.next()?.parse().ok()?, f.next()?.parse().ok()?))
}

/// A `kB` line of `/proc/PID/status`, e.g. `VmRSS` or `VmHWM`.
fn status_kb(pid: &str, key: &str) -> Option<u64> {
    let s = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse_status_kb(&s, key)
}

fn parse_status_kb(s: &str, key: &str) -> Option<u64> {
    s.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn clock_ticks_per_sec() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|&t| t > 0.0)
        .unwrap_or(100.0)
}

/// A one-shot `GET` with `Connection: close`; returns status and body.
fn http_get(port: u16, path: &str) -> BoxResult<(u16, Vec<u8>)> {
    let addr = ([127, 0, 0, 1], port).into();
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.set_write_timeout(Some(Duration::from_secs(5)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )?;
    let (head, mut body) = read_head(&mut s)?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or("bad status line")?;
    let length = head.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim()
            .eq_ignore_ascii_case("content-length")
            .then(|| v.trim().parse::<usize>().ok())?
    });
    let mut chunk = [0u8; 16 * 1024];
    while length.is_none_or(|l| body.len() < l) {
        match s.read(&mut chunk)? {
            0 => break,
            n => body.extend_from_slice(&chunk[..n]),
        }
    }
    if let Some(l) = length {
        body.truncate(l);
    }
    Ok((status, body))
}

/// A number field of picamd's `/status` JSON, found by name.
fn json_number(json: &str, key: &str) -> Option<u64> {
    let pat = format!("\"{key}\":");
    let at = json.find(&pat)? + pat.len();
    let digits: String = json[at..]
        .trim_start()
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

// ---------------------------------------------------------------------------
// One measurement

#[derive(Debug, Default)]
struct Measurement {
    scenario: String,
    server: &'static str,
    viewers: usize,
    stalled: usize,
    kind: &'static str,
    fps: u32,
    size: String,
    frame_bytes: usize,
    window_s: f64,
    viewers_started: usize,
    fps_min: f64,
    fps_median: f64,
    frames_received: u64,
    frames_sent: u64,
    frames_bad: u64,
    frames_repeated: u64,
    lat_p50_ms: f64,
    lat_p99_ms: f64,
    lat_max_ms: f64,
    cpu_user_s: f64,
    cpu_sys_s: f64,
    /// User + system, exact when schedstat is there.
    cpu_s: f64,
    cpu_us_per_frame: f64,
    idle_rss_kb: u64,
    rss_kb: u64,
    peak_rss_kb: u64,
    client_user_s: f64,
    client_sys_s: f64,
    camera_frames_in: Option<u64>,
    server_frames_dropped_slow: Option<u64>,
    errors: Vec<String>,
    /// CPU per delivered frame of every run (with `--repeat`), sorted; this
    /// row is the median run.
    runs_cpu_us_per_frame: Vec<f64>,
}

struct Env {
    root: PathBuf,
    picamd: PathBuf,
    exe: PathBuf,
    ticks: f64,
}

fn start_server(
    env: &Env,
    server: ServerKind,
    sc: &Scenario,
    frames: &Path,
    seconds: f64,
) -> BoxResult<ServerProc> {
    let max = format!("{}", (seconds + 120.0).ceil());
    let mut cmd;
    match server {
        ServerKind::Picamd | ServerKind::PicamdZeroCopy => {
            let replay = format!(
                "{} bench --replay --dir {} --fps {} --max-seconds {max}",
                env.exe.display(),
                frames.display(),
                sc.fps
            );
            // picamd splits --stream-cmd like shell words; keep paths plain.
            let plain = |p: &Path| {
                !p.to_string_lossy()
                    .contains(|c: char| c.is_whitespace() || "'\"\\".contains(c))
            };
            if !plain(&env.exe) || !plain(frames) {
                return Err("paths with spaces or quotes cannot go into --stream-cmd".into());
            }
            cmd = Command::new(&env.picamd);
            cmd.args([
                "--listen",
                "127.0.0.1:0",
                "--quiet",
                "--max-clients",
                "100000",
                "--stream-cmd",
                &replay,
            ]);
            if server == ServerKind::PicamdZeroCopy {
                cmd.args(["--zero-copy", "on"]);
            }
            cmd.args([
                "--fps",
                &sc.fps.to_string(),
                "--width",
                &sc.width.to_string(),
                "--height",
                &sc.height.to_string(),
            ]);
        }
        ServerKind::Floor => {
            cmd = Command::new(&env.exe);
            cmd.args(["bench", "--floor", "--dir"]).arg(frames);
            cmd.args([
                "--fps",
                &sc.fps.to_string(),
                "--conns",
                &(sc.viewers + sc.stalled).to_string(),
                "--max-seconds",
                &max,
            ]);
        }
    }
    ServerProc::spawn(cmd)
}

fn measure(
    env: &Env,
    opts: &Opts,
    sc: &Scenario,
    server: ServerKind,
    frames: &Path,
) -> BoxResult<Measurement> {
    let mut proc = start_server(env, server, sc, frames, opts.seconds)?;
    let pid = proc.pid.to_string();
    thread::sleep(Duration::from_millis(300));
    let idle_rss_kb = status_kb(&pid, "VmRSS").unwrap_or(0);

    let shared = Arc::new(Shared {
        phase: AtomicU8::new(PHASE_WARMUP),
        started: AtomicUsize::new(0),
    });
    let mut handles = Vec::with_capacity(sc.viewers);
    let mut errors = Vec::new();
    // Connect one by one from here: 200 threads connecting at once would
    // overflow a small listen backlog and wait out SYN retransmits.
    for i in 0..sc.viewers {
        let kind = sc.kind.viewer(i);
        match connect(kind, proc.port) {
            Ok(s) => {
                let shared = Arc::clone(&shared);
                let h = thread::Builder::new()
                    .name(format!("viewer{i}"))
                    .stack_size(128 * 1024)
                    .spawn(move || viewer(s, kind, &shared))?;
                handles.push(h);
            }
            Err(e) => errors.push(format!("viewer {i}: connect: {e}")),
        }
    }
    let mut stalled = Vec::with_capacity(sc.stalled);
    for i in 0..sc.stalled {
        match connect(sc.kind.viewer(i), proc.port) {
            Ok(s) => stalled.push(s),
            Err(e) => errors.push(format!("stalled {i}: connect: {e}")),
        }
    }
    let until = Instant::now() + Duration::from_secs(15);
    while shared.started.load(Ordering::Relaxed) < handles.len() && Instant::now() < until {
        thread::sleep(Duration::from_millis(20));
    }
    let viewers_started = shared.started.load(Ordering::Relaxed);
    if viewers_started < handles.len() {
        errors.push(format!(
            "only {viewers_started} of {} viewers got a frame within 15 s",
            handles.len()
        ));
    }
    thread::sleep(Duration::from_secs_f64(opts.warmup));

    let status0 = server
        .is_picamd()
        .then(|| http_get(proc.port, "/status").ok())
        .flatten();
    let cpu0 = cpu_ticks(&pid)?;
    let ns0 = cpu_ns(&pid);
    let me0 = cpu_ticks("self")?;
    let t0 = Instant::now();
    shared.phase.store(PHASE_MEASURE, Ordering::Relaxed);
    thread::sleep(Duration::from_secs_f64(opts.seconds));
    shared.phase.store(PHASE_STOP, Ordering::Relaxed);
    let window_s = t0.elapsed().as_secs_f64();
    let cpu1 = cpu_ticks(&pid)?;
    let ns1 = cpu_ns(&pid);
    let me1 = cpu_ticks("self")?;
    let rss_kb = status_kb(&pid, "VmRSS").unwrap_or(0);
    let peak_rss_kb = status_kb(&pid, "VmHWM").unwrap_or(0);
    let status1 = server
        .is_picamd()
        .then(|| http_get(proc.port, "/status").ok())
        .flatten();

    let results: Vec<ViewerResult> = handles
        .into_iter()
        .map(|h| h.join().unwrap_or_default())
        .collect();
    drop(stalled);
    proc.stop();
    // The floor has no signal handler: only picamd must exit cleanly.
    if server.is_picamd()
        && proc
            .child
            .try_wait()
            .ok()
            .flatten()
            .is_some_and(|st| !st.success())
    {
        errors.push(format!(
            "{} exited badly; stderr tail:\n{}",
            server.name(),
            proc.tail()
        ));
    }

    let mut m = Measurement {
        scenario: sc.name.clone(),
        server: server.name(),
        viewers: sc.viewers,
        stalled: sc.stalled,
        kind: sc.kind.name(),
        fps: sc.fps,
        size: format!("{}x{}", sc.width, sc.height),
        frame_bytes: sc.frame_bytes,
        window_s,
        viewers_started,
        idle_rss_kb,
        rss_kb,
        peak_rss_kb,
        ..Measurement::default()
    };
    let mut per_viewer_fps = Vec::new();
    let mut lats = Vec::new();
    for (i, r) in results.iter().enumerate() {
        per_viewer_fps.push(r.frames as f64 / window_s);
        m.frames_received += r.frames;
        m.frames_sent += r.frames + r.skipped;
        m.frames_bad += r.bad;
        m.frames_repeated += r.repeats;
        lats.extend_from_slice(&r.latencies_us);
        if let Some(e) = &r.error {
            errors.push(format!("viewer {i}: {e}"));
        }
    }
    per_viewer_fps.sort_by(f64::total_cmp);
    m.fps_min = per_viewer_fps.first().copied().unwrap_or(0.0);
    m.fps_median = percentile_f(&per_viewer_fps, 50.0);
    lats.sort_unstable();
    m.lat_p50_ms = percentile(&lats, 50.0) as f64 / 1000.0;
    m.lat_p99_ms = percentile(&lats, 99.0) as f64 / 1000.0;
    m.lat_max_ms = lats.last().copied().unwrap_or(0) as f64 / 1000.0;
    m.cpu_user_s = (cpu1.0 - cpu0.0) as f64 / env.ticks;
    m.cpu_sys_s = (cpu1.1 - cpu0.1) as f64 / env.ticks;
    m.cpu_s = match (ns0, ns1) {
        (Some(a), Some(b)) => b.saturating_sub(a) as f64 / 1e9,
        _ => m.cpu_user_s + m.cpu_sys_s,
    };
    if m.frames_received > 0 {
        m.cpu_us_per_frame = m.cpu_s * 1e6 / m.frames_received as f64;
    }
    m.client_user_s = (me1.0 - me0.0) as f64 / env.ticks;
    m.client_sys_s = (me1.1 - me0.1) as f64 / env.ticks;
    if let (Some((_, a)), Some((_, b))) = (&status0, &status1) {
        let (a, b) = (String::from_utf8_lossy(a), String::from_utf8_lossy(b));
        let delta = |k: &str| Some(json_number(&b, k)?.saturating_sub(json_number(&a, k)?));
        m.camera_frames_in = delta("frames_in");
        m.server_frames_dropped_slow = delta("frames_dropped_slow");
    }
    // Many viewers fail the same way; keep the report readable.
    let total = errors.len();
    errors.truncate(5);
    if total > 5 {
        errors.push(format!("… and {} more", total - 5));
    }
    m.errors = errors;
    Ok(m)
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let idx = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn percentile_f(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

// ---------------------------------------------------------------------------
// The run and its report

fn bench(opts: &Opts) -> BoxResult<()> {
    let root = repo_root();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    if opts.build {
        eprintln!("bench: cargo build --release -p picamd");
        let st = Command::new(&cargo)
            .args(["build", "--release", "-p", "picamd"])
            .current_dir(&root)
            .status()?;
        if !st.success() {
            return Err(format!("cargo build --release failed: {st}").into());
        }
    }
    let env = Env {
        picamd: target_dir(&root).join("release/picamd"),
        exe: std::env::current_exe()?,
        ticks: clock_ticks_per_sec(),
        root,
    };
    if opts.servers.iter().any(|s| s.is_picamd()) && !env.picamd.exists() {
        return Err(format!("{} not found", env.picamd.display()).into());
    }
    let mut results = Vec::new();
    for sc in &opts.scenarios {
        let frames = prepare_frames(&env.root, &env.picamd, sc)?;
        // Runs of picamd and the floor alternate, so a burst of other work
        // on the machine hits both alike.
        let mut runs: Vec<Vec<Measurement>> = opts.servers.iter().map(|_| Vec::new()).collect();
        for r in 0..opts.repeat {
            for (&server, server_runs) in opts.servers.iter().zip(&mut runs) {
                eprintln!(
                    "bench: {} on {} ({} s, run {} of {})…",
                    sc.name,
                    server.name(),
                    opts.seconds,
                    r + 1,
                    opts.repeat
                );
                match measure(&env, opts, sc, server, &frames) {
                    Ok(m) => {
                        for e in &m.errors {
                            eprintln!("bench:   {e}");
                        }
                        server_runs.push(m);
                    }
                    Err(e) => eprintln!("bench:   failed: {e}"),
                }
            }
        }
        results.extend(runs.into_iter().filter_map(median_run));
    }
    let table = table(&results);
    println!("{table}");
    let json_path = opts
        .json
        .clone()
        .unwrap_or_else(|| target_dir(&env.root).join("bench/results.json"));
    if let Some(dir) = json_path.parent() {
        fs::create_dir_all(dir)?;
    }
    fs::write(&json_path, to_json(&results, opts, env.ticks))?;
    eprintln!("bench: wrote {}", json_path.display());
    Ok(())
}

/// The run with the median CPU per delivered frame, carrying every run's
/// figure, so one noisy run does not decide the ratio.
fn median_run(mut runs: Vec<Measurement>) -> Option<Measurement> {
    runs.sort_by(|a, b| a.cpu_us_per_frame.total_cmp(&b.cpu_us_per_frame));
    let all: Vec<f64> = runs.iter().map(|m| m.cpu_us_per_frame).collect();
    let mid = runs.len().checked_sub(1)? / 2;
    let mut m = runs.swap_remove(mid);
    m.runs_cpu_us_per_frame = all;
    Some(m)
}

/// picamd's value over the floor's for the same scenario.
fn ratio(results: &[Measurement], m: &Measurement, f: impl Fn(&Measurement) -> f64) -> Option<f64> {
    if !m.server.starts_with("picamd") {
        return None;
    }
    let floor = results
        .iter()
        .find(|o| o.server == "floor" && o.scenario == m.scenario)?;
    let (a, b) = (f(m), f(floor));
    (b > 0.0).then(|| a / b)
}

fn table(results: &[Measurement]) -> String {
    let mut t = String::new();
    t.push_str(
        "| scenario | server | fps/viewer min / med | frames recv / sent | latency p50 / p99 / max ms \
         | CPU user / sys / total s | µs CPU / frame (runs min–max) | CPU × floor | p99 × floor | RSS idle / viewers / peak KiB | client CPU s |\n",
    );
    t.push_str("|---|---|---|---|---|---|---|---|---|---|---|\n");
    for m in results {
        let x = |r: Option<f64>| r.map_or_else(|| "".to_string(), |r| format!("{r:.2}"));
        let per_frame = match m.runs_cpu_us_per_frame.as_slice() {
            [lo, .., hi] => format!("{:.1} ({lo:.0}–{hi:.0})", m.cpu_us_per_frame),
            _ => format!("{:.1}", m.cpu_us_per_frame),
        };
        let _ = writeln!(
            t,
            "| {} | {} | {:.1} / {:.1} | {} / {} | {:.1} / {:.1} / {:.1} | {:.2} / {:.2} / {:.3} | {} | {} | {} | {} / {} / {} | {:.2} |",
            m.scenario,
            m.server,
            m.fps_min,
            m.fps_median,
            m.frames_received,
            m.frames_sent,
            m.lat_p50_ms,
            m.lat_p99_ms,
            m.lat_max_ms,
            m.cpu_user_s,
            m.cpu_sys_s,
            m.cpu_s,
            per_frame,
            x(ratio(results, m, |m| m.cpu_us_per_frame)),
            x(ratio(results, m, |m| m.lat_p99_ms)),
            m.idle_rss_kb,
            m.rss_kb,
            m.peak_rss_kb,
            m.client_user_s + m.client_sys_s,
        );
    }
    t
}

fn json_str(s: &str) -> String {
    let mut o = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(o, "\\u{:04x}", c as u32);
            }
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

fn json_f(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.3}")
    } else {
        "null".into()
    }
}

fn json_opt<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map_or_else(|| "null".into(), |v| v.to_string())
}

fn to_json(results: &[Measurement], opts: &Opts, ticks: f64) -> String {
    let mut j = String::from("{\n");
    let _ = writeln!(j, "  \"command\": {},", json_str(&opts.command));
    let _ = writeln!(j, "  \"unix_time\": {},", wall_us() / 1_000_000);
    let _ = writeln!(j, "  \"seconds\": {},", json_f(opts.seconds));
    let _ = writeln!(j, "  \"clk_tck\": {ticks},");
    j.push_str("  \"results\": [\n");
    for (i, m) in results.iter().enumerate() {
        let errors: Vec<String> = m.errors.iter().map(|e| json_str(e)).collect();
        let fields: Vec<(&str, String)> = vec![
            ("scenario", json_str(&m.scenario)),
            ("server", json_str(m.server)),
            ("viewers", m.viewers.to_string()),
            ("stalled", m.stalled.to_string()),
            ("kind", json_str(m.kind)),
            ("fps", m.fps.to_string()),
            ("size", json_str(&m.size)),
            ("frame_bytes", m.frame_bytes.to_string()),
            ("window_s", json_f(m.window_s)),
            ("viewers_started", m.viewers_started.to_string()),
            ("fps_per_viewer_min", json_f(m.fps_min)),
            ("fps_per_viewer_median", json_f(m.fps_median)),
            ("frames_received", m.frames_received.to_string()),
            ("frames_sent", m.frames_sent.to_string()),
            ("frames_bad", m.frames_bad.to_string()),
            ("frames_repeated", m.frames_repeated.to_string()),
            ("latency_p50_ms", json_f(m.lat_p50_ms)),
            ("latency_p99_ms", json_f(m.lat_p99_ms)),
            ("latency_max_ms", json_f(m.lat_max_ms)),
            ("cpu_user_s", json_f(m.cpu_user_s)),
            ("cpu_sys_s", json_f(m.cpu_sys_s)),
            ("cpu_s", json_f(m.cpu_s)),
            ("cpu_us_per_frame", json_f(m.cpu_us_per_frame)),
            (
                "cpu_ratio_to_floor",
                json_opt(ratio(results, m, |m| m.cpu_us_per_frame).map(json_f)),
            ),
            (
                "p99_ratio_to_floor",
                json_opt(ratio(results, m, |m| m.lat_p99_ms).map(json_f)),
            ),
            ("idle_rss_kb", m.idle_rss_kb.to_string()),
            ("rss_kb", m.rss_kb.to_string()),
            ("peak_rss_kb", m.peak_rss_kb.to_string()),
            ("client_cpu_user_s", json_f(m.client_user_s)),
            ("client_cpu_sys_s", json_f(m.client_sys_s)),
            ("camera_frames_in", json_opt(m.camera_frames_in)),
            (
                "server_frames_dropped_slow",
                json_opt(m.server_frames_dropped_slow),
            ),
            ("errors", format!("[{}]", errors.join(", "))),
            (
                "runs_cpu_us_per_frame",
                format!(
                    "[{}]",
                    m.runs_cpu_us_per_frame
                        .iter()
                        .map(|&v| json_f(v))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ),
        ];
        j.push_str("    {");
        for (k, (name, value)) in fields.iter().enumerate() {
            let _ = write!(j, "{}\"{name}\": {value}", if k == 0 { "" } else { ", " });
        }
        j.push_str(if i + 1 < results.len() { "},\n" } else { "}\n" });
    }
    j.push_str("  ]\n}\n");
    j
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny_jpeg() -> Vec<u8> {
        // SOI, an APP0-like segment, SOS with a little entropy data, EOI.
        let mut j = vec![0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x04, b'J', b'F'];
        j.extend_from_slice(&[
            0xFF, 0xDA, 0x00, 0x02, 0x12, 0x34, 0xFF, 0x00, 0x56, 0xFF, 0xD9,
        ]);
        j
    }

    fn stamped(ts: u64, seq: u64) -> Vec<u8> {
        let mut v = Vec::new();
        stamp_into(&mut v, &tiny_jpeg(), ts, seq);
        v
    }

    /// A frame as the replay sends it: padded first, then stamped, so the
    /// stamp sits right after SOI.
    fn stamped_bytes(ts: u64, seq: u64, total: usize) -> Vec<u8> {
        let mut v = Vec::new();
        stamp_into(&mut v, &pad_jpeg(&tiny_jpeg(), total - STAMP_LEN), ts, seq);
        assert_eq!(v.len(), total);
        v
    }

    fn ws_stream(frames: &[Vec<u8>]) -> Vec<u8> {
        let mut s = Vec::new();
        for f in frames {
            s.extend_from_slice(&ws_header(f.len()));
            s.extend_from_slice(f);
        }
        s
    }

    fn mjpeg_stream(frames: &[Vec<u8>]) -> Vec<u8> {
        let mut s = b"--picamdframe\r\n".to_vec();
        for f in frames {
            s.extend_from_slice(
                format!(
                    "Content-Type: image/jpeg\r\nContent-Length: {}\r\n\r\n",
                    f.len()
                )
                .as_bytes(),
            );
            s.extend_from_slice(f);
            s.extend_from_slice(MJPEG_TAIL);
        }
        s
    }

    fn feed_split(kind: ViewKind, data: &[u8], cuts: &[usize]) -> Result<Vec<Event>, &'static str> {
        let mut p = Parser::new(kind);
        let mut ev = Vec::new();
        let mut last = 0;
        for &c in cuts.iter().chain(std::iter::once(&data.len())) {
            p.feed(&data[last..c], &mut ev)?;
            last = c;
        }
        Ok(ev)
    }

    #[test]
    fn stamp_has_fixed_length_and_reads_back() {
        let f = stamped(1_776_000_000_123_456, 42);
        assert_eq!(f.len(), tiny_jpeg().len() + STAMP_LEN);
        assert_eq!(&f[..4], &[0xFF, 0xD8, 0xFF, 0xFE]);
        assert_eq!(find_number(&f, TS_TAG), Some(1_776_000_000_123_456));
        assert_eq!(find_number(&f, SEQ_TAG), Some(42));
        assert!(is_jpeg(&f));
    }

    #[test]
    fn strip_removes_only_picamd_comments() {
        let f = stamped(5, 6);
        assert_eq!(strip_stamps(&f), tiny_jpeg());
        assert_eq!(strip_stamps(&tiny_jpeg()), tiny_jpeg());
    }

    #[test]
    fn padding_reaches_target_and_keeps_segments_walkable() {
        for target in [0, 10, 50, 1000, 65_536, 65_540, 65_541, 131_072, 200_001] {
            let p = pad_jpeg(&tiny_jpeg(), target);
            let want = target.max(tiny_jpeg().len());
            assert!(
                p.len() <= want && p.len() + 3 >= want,
                "target {target}: got {}",
                p.len()
            );
            assert!(is_jpeg(&p));
            // Walk the segments by length up to SOS: the padding must be
            // whole COM segments followed by the original APP0.
            let mut pos = 2;
            while p[pos + 1] == 0xFE {
                pos += 2 + usize::from(u16::from_be_bytes([p[pos + 2], p[pos + 3]]));
            }
            assert_eq!(&p[pos..], &tiny_jpeg()[2..]);
        }
    }

    #[test]
    fn ws_frames_at_every_split_point() {
        let frames = vec![
            stamped(1000, 1),
            stamped(2000, 2),
            vec![0xFF, 0xD8, 1, 2, 3],
        ];
        let data = ws_stream(&frames);
        let whole = feed_split(ViewKind::Ws, &data, &[]).unwrap();
        assert_eq!(whole.len(), 3);
        let Event::Frame(f) = whole[1] else {
            panic!("{whole:?}")
        };
        assert_eq!(
            (f.ts_us, f.seq, f.is_jpeg, f.len),
            (Some(2000), Some(2), true, frames[1].len() as u64)
        );
        let Event::Frame(bad) = whole[2] else {
            panic!()
        };
        assert!(!bad.is_jpeg);
        for a in 0..=data.len() {
            assert_eq!(
                feed_split(ViewKind::Ws, &data, &[a]).unwrap(),
                whole,
                "cut {a}"
            );
        }
        let bytewise: Vec<usize> = (1..data.len()).collect();
        assert_eq!(feed_split(ViewKind::Ws, &data, &bytewise).unwrap(), whole);
    }

    #[test]
    fn ws_long_lengths_fragments_and_control_frames() {
        let big = stamped_bytes(7, 8, 70_000);
        assert_eq!(ws_header(big.len())[1], 127);
        assert_eq!(ws_header(300)[1], 126);
        let mut data = ws_stream(std::slice::from_ref(&big));
        data.extend_from_slice(&[0x89, 0x02, b'h', b'i']); // ping
        // A fragmented message: binary without FIN, ping between, continuation.
        let f = stamped(9, 10);
        data.extend_from_slice(&[0x02, 5]);
        data.extend_from_slice(&f[..5]);
        data.extend_from_slice(&[0x89, 0x00]);
        data.push(0x80);
        data.push(126);
        data.extend_from_slice(&((f.len() - 5) as u16).to_be_bytes());
        data.extend_from_slice(&f[5..]);
        data.extend_from_slice(&[0x88, 0x02, 0x03, 0xE8]); // close 1000
        let ev = feed_split(ViewKind::Ws, &data, &[]).unwrap();
        assert_eq!(ev.len(), 5, "{ev:?}");
        assert!(matches!(
            ev[0],
            Event::Frame(FrameInfo {
                len: 70_000,
                seq: Some(8),
                is_jpeg: true,
                ..
            })
        ));
        assert_eq!(ev[1], Event::Ping(b"hi".to_vec()));
        assert_eq!(ev[2], Event::Ping(Vec::new()));
        assert!(matches!(
            ev[3],
            Event::Frame(FrameInfo {
                seq: Some(10),
                is_jpeg: true,
                ..
            })
        ));
        assert_eq!(ev[4], Event::Close);
        for a in (0..=data.len()).step_by(997) {
            assert_eq!(
                feed_split(ViewKind::Ws, &data, &[a, (a + 3).min(data.len())]).unwrap(),
                ev
            );
        }
    }

    #[test]
    fn ws_protocol_errors() {
        let cases: [(&[u8], &str); 6] = [
            (
                &[0x82, 0x81, 0, 0, 0, 0, 0],
                "WebSocket: masked server frame",
            ),
            (&[0xC2, 0x00], "WebSocket: reserved bits set"),
            (&[0x83, 0x00], "WebSocket: unknown opcode"),
            (&[0x80, 0x00], "WebSocket: continuation without a message"),
            (
                &[0x02, 0x00, 0x82, 0x00],
                "WebSocket: new message inside a message",
            ),
            (&[0x09, 0x00], "WebSocket: bad control frame"),
        ];
        for (data, want) in cases {
            assert_eq!(feed_split(ViewKind::Ws, data, &[]), Err(want));
        }
        let huge = [0x82, 127, 0, 0, 0, 0, 0x10, 0, 0, 0];
        assert_eq!(
            feed_split(ViewKind::Ws, &huge, &[]),
            Err("WebSocket: message too large")
        );
    }

    #[test]
    fn mjpeg_parts_at_every_split_point() {
        let frames = vec![stamped(11, 1), stamped(22, 2), stamped_bytes(33, 3, 3000)];
        let data = mjpeg_stream(&frames);
        let whole = feed_split(ViewKind::Mjpeg, &data, &[]).unwrap();
        let seqs: Vec<Option<u64>> = whole
            .iter()
            .map(|e| match e {
                Event::Frame(f) if f.is_jpeg => f.seq,
                _ => None,
            })
            .collect();
        assert_eq!(seqs, vec![Some(1), Some(2), Some(3)]);
        for a in 0..=data.len() {
            assert_eq!(
                feed_split(ViewKind::Mjpeg, &data, &[a]).unwrap(),
                whole,
                "cut {a}"
            );
        }
        let bytewise: Vec<usize> = (1..data.len()).collect();
        assert_eq!(
            feed_split(ViewKind::Mjpeg, &data, &bytewise).unwrap(),
            whole
        );
    }

    #[test]
    fn mjpeg_errors() {
        let cases: [(&[u8], &str); 4] = [
            (
                b"--picamdframe\r\nContent-Type: image/jpeg\r\n\r\n",
                "multipart: part without Content-Length",
            ),
            (b"--other\r\n", "multipart: unexpected boundary"),
            (
                b"--picamdframe\r\nContent-Length: x\r\n",
                "multipart: bad Content-Length",
            ),
            (
                b"--picamdframe\r\nnonsense\r\n",
                "multipart: header without ':'",
            ),
        ];
        for (data, want) in cases {
            assert_eq!(feed_split(ViewKind::Mjpeg, data, &[]), Err(want));
        }
        let long = vec![b'a'; MAX_LINE_BYTES + 1];
        assert_eq!(
            feed_split(ViewKind::Mjpeg, &long, &[]),
            Err("multipart: header line too long")
        );
    }

    #[test]
    fn proc_parsers() {
        let stat =
            "1234 (pi camd) S 1 1234 1234 0 -1 4194304 100 0 0 0 250 37 0 0 20 0 1 0 5 1000 50";
        assert_eq!(parse_stat_cpu(stat), Some((250, 37)));
        let status = "Name:\tpicamd\nVmHWM:\t    1800 kB\nVmRSS:\t    1500 kB\n";
        assert_eq!(parse_status_kb(status, "VmRSS"), Some(1500));
        assert_eq!(parse_status_kb(status, "VmHWM"), Some(1800));
        assert_eq!(parse_status_kb(status, "VmSwap"), None);
        assert_eq!(
            json_number("{\"a\":{\"frames_in\": 17,\"x\":1}}", "frames_in"),
            Some(17)
        );
    }

    #[test]
    fn percentiles_and_json() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 50.0), 51);
        assert_eq!(percentile(&v, 99.0), 99);
        assert_eq!(percentile(&[], 99.0), 0);
        assert_eq!(json_str("a\"b\\c\n"), "\"a\\\"b\\\\c\\u000a\"");
    }

    #[test]
    fn median_run_and_ratio_to_floor() {
        let run = |server, us| Measurement {
            scenario: "s".into(),
            server,
            cpu_us_per_frame: us,
            lat_p99_ms: us / 10.0,
            ..Measurement::default()
        };
        assert!(median_run(Vec::new()).is_none());
        let m = median_run(vec![
            run("picamd", 30.0),
            run("picamd", 10.0),
            run("picamd", 20.0),
        ])
        .unwrap();
        assert_eq!(m.cpu_us_per_frame, 20.0);
        assert_eq!(m.runs_cpu_us_per_frame, vec![10.0, 20.0, 30.0]);
        let results = vec![m, run("floor", 16.0)];
        assert_eq!(
            ratio(&results, &results[0], |m| m.cpu_us_per_frame),
            Some(1.25)
        );
        assert_eq!(ratio(&results, &results[1], |m| m.cpu_us_per_frame), None);
        let t = table(&results);
        assert!(
            t.contains("| s | picamd |") && t.contains("20.0 (10–30) | 1.25 | 1.25 |"),
            "{t}"
        );
        let j = to_json(&results, &parse_opts(&[]).unwrap(), 100.0);
        assert!(
            j.contains("\"cpu_ratio_to_floor\": 1.250")
                && j.contains("\"runs_cpu_us_per_frame\": [10.000, 20.000, 30.000]"),
            "{j}"
        );
    }

    #[test]
    fn options() {
        let a = |s: &str| s.split_whitespace().map(String::from).collect::<Vec<_>>();
        let o = parse_opts(&a(
            "--viewers 5 --kind mix --stalled 2 --size 640x480 --seconds 3",
        ))
        .unwrap();
        assert_eq!(o.scenarios.len(), 1);
        let s = &o.scenarios[0];
        assert_eq!(
            (s.viewers, s.stalled, s.kind, s.width, s.frame_bytes),
            (5, 2, Kind::Mix, 640, 43_690)
        );
        assert_eq!(o.seconds, 3.0);
        assert_eq!(parse_opts(&[]).unwrap().scenarios, suite());
        assert!(parse_opts(&a("--kind foo")).is_err());
        assert!(parse_opts(&a("--viewers")).is_err());
        assert_eq!(Kind::Mix.viewer(3), ViewKind::Mjpeg);
    }

    #[test]
    fn floor_socket_skips_to_newest_and_finishes_partial_frames() {
        // A connected pair with a tiny receive buffer stands in for a viewer
        // that stopped reading.
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (s, _) = l.accept().unwrap();
        s.set_nonblocking(true).unwrap();
        let mut sock = FloorSock {
            stream: s,
            kind: ViewKind::Ws,
            pending: None,
            wrote_since_tick: false,
            idle_ticks: 0,
            dead: false,
        };
        let frame = |seq| {
            let jpeg = stamped_bytes(1, seq, 1 << 20);
            Rc::new(FloorFrame {
                ws_head: ws_header(jpeg.len()),
                mjpeg_head: Vec::new(),
                jpeg,
            })
        };
        // Tick until a whole tick passes with no progress. How many 1 MiB
        // frames that takes depends on how far the kernel grows the socket
        // buffers (loopback autotuning), so it is bounded, not fixed.
        let mut seq = 0;
        while sock.idle_ticks == 0 && seq < 200 {
            sock.on_tick(&frame(seq));
            seq += 1;
        }
        assert!(sock.pending.is_some(), "1 MiB frames must fill the socket");
        assert!(
            sock.idle_ticks >= 1,
            "the socket never filled in {seq} ticks"
        );
        // Now read everything: every frame that arrives is whole, and later
        // ticks deliver again.
        c.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let mut p = Parser::new(ViewKind::Ws);
        let mut ev = Vec::new();
        let mut buf = vec![0; 1 << 16];
        let until = Instant::now() + Duration::from_secs(5);
        let mut tick = seq;
        while ev.len() < 3 && Instant::now() < until {
            match c.read(&mut buf) {
                Ok(n) => p.feed(&buf[..n], &mut ev).unwrap(),
                Err(_) => {
                    sock.on_tick(&frame(tick));
                    tick += 1;
                }
            }
            sock.flush();
        }
        assert!(ev.len() >= 3, "{ev:?}");
        assert!(
            ev.iter()
                .all(|e| matches!(e, Event::Frame(FrameInfo { is_jpeg: true, .. })))
        );
    }
}
