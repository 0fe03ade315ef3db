//! Command-line flags → a typed `Config`. Every limit is a named constant with
//! its unit in the name, and a flag to change it.
//!
//! Parsing is hand-written (no clap: the binary stays small and the help text
//! is ours). Errors here are startup errors, printed once by `main`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

pub const DEFAULT_LISTEN: &str = "0.0.0.0:8080";
pub const DEFAULT_WIDTH: u32 = 640;
pub const DEFAULT_HEIGHT: u32 = 480;
pub const DEFAULT_FPS: u32 = 30;
pub const DEFAULT_QUALITY: u8 = 80;
/// The article used `-t 800`; a second lets auto-exposure settle indoors.
pub const DEFAULT_STILL_DELAY_MS: u32 = 1000;
/// rpicam-still needs ~2-4 s on a Pi Zero including the settle delay.
pub const DEFAULT_STILL_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_MAX_CLIENTS: usize = 64;
/// Browsers send 1-2 KB heads; 8 KiB is what nginx and most servers allow.
pub const DEFAULT_MAX_HEAD_BYTES: usize = 8 * 1024;
pub const DEFAULT_MAX_TARGET_BYTES: usize = 2 * 1024;
/// Slowloris defence: a head must arrive within this long.
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Viewers send only control frames; 64 KiB is generous. `/echo` under the
/// Autobahn suite needs 16 MiB (its 9.x cases), set with the flag.
pub const DEFAULT_WS_MAX_MESSAGE_BYTES: usize = 64 * 1024;
pub const DEFAULT_PING_INTERVAL: Duration = Duration::from_secs(20);
pub const DEFAULT_DEAD_PEER_TIMEOUT: Duration = Duration::from_secs(60);
/// A 12 MP JPEG at high quality is ~6 MB; anything larger is garbage.
pub const DEFAULT_MAX_FRAME_BYTES: usize = 8 * 1024 * 1024;
/// How long the stream process keeps running after the last viewer leaves,
/// so a page reload does not restart the camera.
pub const DEFAULT_STREAM_LINGER: Duration = Duration::from_secs(5);
/// A stream process that gives no frame for this long is hung: restart it.
/// rpicam-vid takes 1-3 s to give its first frame on a Pi Zero.
pub const DEFAULT_STREAM_STALL_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CameraKind {
    Auto,
    Test,
    Rpicam,
    Libcamera,
    Raspistill,
    Ffmpeg,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Picture {
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    pub quality: u8,
    pub rotation: u16,
    pub hflip: bool,
    pub vflip: bool,
    pub still_delay_ms: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CameraConfig {
    pub kind: CameraKind,
    pub device: String,
    pub still_cmd: Option<Vec<String>>,
    pub stream_cmd: Option<Vec<String>>,
    pub picture: Picture,
    pub still_timeout: Duration,
    pub stream_linger: Duration,
    pub stream_stall_timeout: Duration,
    pub max_frame_bytes: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    pub max_clients: usize,
    pub max_head_bytes: usize,
    pub max_target_bytes: usize,
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    pub ws_max_message_bytes: usize,
    pub ping_interval: Duration,
    pub dead_peer_timeout: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Auth {
    /// `user:pass` pairs accepted for HTTP Basic.
    pub basic: Vec<Vec<u8>>,
    /// Tokens accepted as `?token=` or `Authorization: Bearer`.
    pub tokens: Vec<Vec<u8>>,
}

impl Auth {
    pub fn enabled(&self) -> bool {
        !self.basic.is_empty() || !self.tokens.is_empty()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub listen: Vec<SocketAddr>,
    pub camera: CameraConfig,
    pub limits: Limits,
    pub auth: Auth,
    pub allow_origins: Vec<String>,
    pub www: Option<PathBuf>,
    pub ws_echo: bool,
    pub zero_copy: bool,
    pub quiet: bool,
    pub trace: bool,
}

#[derive(Debug)]
pub enum Command {
    Run(Box<Config>),
    Help,
    Version,
}

pub const HELP: &str = "\
picamd: a Raspberry Pi camera server (stills, WebSocket and MJPEG live stream)

USAGE: picamd [FLAGS]

Pages and endpoints:
  /                 still page, refreshes /pi.jpg
  /pi.jpg           one fresh JPEG (also /snapshot, /?action=snapshot)
  /stream           live page; with Upgrade: websocket, one JPEG per binary
                    message (?encoding=base64 for text messages)
  /stream.mjpg      multipart MJPEG for <img>, VLC, ffplay (also /?action=stream)
  /status           JSON counters

Server:
  --listen ADDR:PORT     address to listen on (default 0.0.0.0:8080; repeatable;
                         port 0 picks a free port, printed on the first line)
  --www DIR              serve pages from DIR instead of the built-in ones
  --quiet                no request log lines (errors are still logged)
  --trace                log every connection state change, e.g.
                         127.0.0.1:5000 reading-head => websocket
  --ws-echo              enable /echo, a WebSocket echo endpoint for conformance
                         suites (Autobahn)
  --zero-copy on|off     send large frames to several viewers from one in-memory
                         file with sendfile instead of copying per viewer (off:
                         measured slower on loopback, see README Performance)

Camera:
  --camera KIND          auto (default), test, rpicam, libcamera, raspistill,
                         ffmpeg. auto tries rpicam-*, libcamera-*, raspistill,
                         then ffmpeg on --device. test is a built-in moving
                         pattern with a clock: no hardware needed
  --device PATH          V4L2 device for ffmpeg (default /dev/video0)
  --still-cmd 'CMD'      command that writes one JPEG to stdout (split like shell
                         words, no shell is run)
  --stream-cmd 'CMD'     command that writes concatenated JPEGs to stdout
  --width N --height N   picture size (default 640x480)
  --fps N                stream frame rate (default 30)
  --quality N            JPEG quality 1-100 (default 80)
  --rotation DEG         0, 90, 180 or 270; what the tool cannot rotate is done
                         with an EXIF Orientation tag
  --hflip, --vflip       mirror the picture
  --still-delay-ms N     camera settle time before a still (default 1000)
  --still-timeout DUR    give up on a still capture after DUR (default 10s)
  --stream-linger DUR    keep the stream running DUR after the last viewer (5s)
  --stream-stall-timeout DUR  restart a stream tool silent this long (10s)
  --max-frame-bytes N    drop camera frames larger than N (default 8MiB)

Security:
  --auth USER:PASS       require HTTP Basic auth everywhere (repeatable)
  --auth-file PATH       read USER:PASS lines from PATH (# comments allowed)
  --token T              also accept ?token=T or 'Authorization: Bearer T'
  --allow-origin ORIGIN  accept WebSocket handshakes from this Origin (repeatable;
                         '*' for any). Same-host origins are always accepted

Limits:
  --max-clients N        connections at once; more get 503 (default 64)
  --max-head-bytes N     request head size limit (default 8KiB; 431 past it)
  --header-timeout DUR   time to send a request head (default 10s)
  --idle-timeout DUR     keep-alive idle time (default 30s)
  --ws-max-message N     largest WebSocket message from a client (default 64KiB;
                         close 1009 past it)
  --ping-interval DUR    WebSocket ping interval (default 20s)
  --dead-peer-timeout DUR  close a WebSocket silent this long (default 60s)

Other:
  -h, --help             this text
  -V, --version          version

DUR is a number with a unit: 500ms, 10s, 2m (a bare number means seconds).
N for sizes takes K/KiB, M/MiB suffixes.
";

impl Config {
    pub fn defaults() -> Config {
        Config {
            listen: vec![parse_addr(DEFAULT_LISTEN).unwrap_or_else(|_| unreachable_addr())],
            camera: CameraConfig {
                kind: CameraKind::Auto,
                device: "/dev/video0".into(),
                still_cmd: None,
                stream_cmd: None,
                picture: Picture {
                    width: DEFAULT_WIDTH,
                    height: DEFAULT_HEIGHT,
                    fps: DEFAULT_FPS,
                    quality: DEFAULT_QUALITY,
                    rotation: 0,
                    hflip: false,
                    vflip: false,
                    still_delay_ms: DEFAULT_STILL_DELAY_MS,
                },
                still_timeout: DEFAULT_STILL_TIMEOUT,
                stream_linger: DEFAULT_STREAM_LINGER,
                stream_stall_timeout: DEFAULT_STREAM_STALL_TIMEOUT,
                max_frame_bytes: DEFAULT_MAX_FRAME_BYTES,
            },
            limits: Limits {
                max_clients: DEFAULT_MAX_CLIENTS,
                max_head_bytes: DEFAULT_MAX_HEAD_BYTES,
                max_target_bytes: DEFAULT_MAX_TARGET_BYTES,
                header_timeout: DEFAULT_HEADER_TIMEOUT,
                idle_timeout: DEFAULT_IDLE_TIMEOUT,
                ws_max_message_bytes: DEFAULT_WS_MAX_MESSAGE_BYTES,
                ping_interval: DEFAULT_PING_INTERVAL,
                dead_peer_timeout: DEFAULT_DEAD_PEER_TIMEOUT,
            },
            auth: Auth::default(),
            allow_origins: Vec::new(),
            www: None,
            ws_echo: false,
            zero_copy: false,
            quiet: false,
            trace: false,
        }
    }
}

fn unreachable_addr() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 8080))
}

/// Parses the arguments after the program name.
pub fn parse_args<I: IntoIterator<Item = String>>(args: I) -> Result<Command, String> {
    let mut cfg = Config::defaults();
    let mut listen_given = false;
    let mut it = args.into_iter();
    while let Some(arg) = it.next() {
        // Accept both `--flag value` and `--flag=value`.
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        let value = |it: &mut dyn Iterator<Item = String>| -> Result<String, String> {
            match inline.clone() {
                Some(v) => Ok(v),
                None => it.next().ok_or_else(|| format!("{flag} needs a value")),
            }
        };
        let cam = &mut cfg.camera;
        let pic = &mut cam.picture;
        let lim = &mut cfg.limits;
        match flag.as_str() {
            "-h" | "--help" => return Ok(Command::Help),
            "-V" | "--version" => return Ok(Command::Version),
            "--listen" => {
                let v = value(&mut it)?;
                if !listen_given {
                    cfg.listen.clear();
                    listen_given = true;
                }
                cfg.listen.push(parse_addr(&v)?);
            }
            "--www" => cfg.www = Some(PathBuf::from(value(&mut it)?)),
            "--quiet" => cfg.quiet = true,
            "--trace" => cfg.trace = true,
            "--ws-echo" => cfg.ws_echo = true,
            "--zero-copy" => {
                cfg.zero_copy = match value(&mut it)?.as_str() {
                    "on" => true,
                    "off" => false,
                    other => return Err(format!("--zero-copy {other}: expected on or off")),
                }
            }
            "--camera" => {
                cam.kind = match value(&mut it)?.as_str() {
                    "auto" => CameraKind::Auto,
                    "test" => CameraKind::Test,
                    "rpicam" => CameraKind::Rpicam,
                    "libcamera" => CameraKind::Libcamera,
                    "raspistill" => CameraKind::Raspistill,
                    "ffmpeg" | "v4l2" => CameraKind::Ffmpeg,
                    other => {
                        return Err(format!(
                            "--camera {other}: expected auto, test, rpicam, libcamera, raspistill or ffmpeg"
                        ));
                    }
                }
            }
            "--device" => cam.device = value(&mut it)?,
            "--still-cmd" => cam.still_cmd = Some(split_words(&flag, &value(&mut it)?)?),
            "--stream-cmd" => cam.stream_cmd = Some(split_words(&flag, &value(&mut it)?)?),
            "--width" => pic.width = parse_num(&flag, &value(&mut it)?, 16, 8192)?,
            "--height" => pic.height = parse_num(&flag, &value(&mut it)?, 16, 8192)?,
            "--fps" => pic.fps = parse_num(&flag, &value(&mut it)?, 1, 120)?,
            "--quality" => pic.quality = parse_num(&flag, &value(&mut it)?, 1, 100)? as u8,
            "--rotation" => {
                let v = value(&mut it)?;
                pic.rotation = match v.as_str() {
                    "0" => 0,
                    "90" => 90,
                    "180" => 180,
                    "270" => 270,
                    _ => return Err(format!("--rotation {v}: expected 0, 90, 180 or 270")),
                }
            }
            "--hflip" => pic.hflip = true,
            "--vflip" => pic.vflip = true,
            "--still-delay-ms" => {
                pic.still_delay_ms = parse_num(&flag, &value(&mut it)?, 0, 60_000)?
            }
            "--still-timeout" => cam.still_timeout = parse_duration(&flag, &value(&mut it)?)?,
            "--stream-linger" => cam.stream_linger = parse_duration(&flag, &value(&mut it)?)?,
            "--stream-stall-timeout" => {
                cam.stream_stall_timeout = parse_duration(&flag, &value(&mut it)?)?
            }
            "--max-frame-bytes" => {
                cam.max_frame_bytes = parse_size(&flag, &value(&mut it)?, 1024, 256 << 20)?
            }
            "--auth" => {
                let v = value(&mut it)?;
                if !v.contains(':') {
                    return Err("--auth expects USER:PASS".into());
                }
                cfg.auth.basic.push(v.into_bytes());
            }
            "--auth-file" => {
                let path = value(&mut it)?;
                let text = std::fs::read_to_string(&path)
                    .map_err(|e| format!("--auth-file {path}: {e}"))?;
                let before = cfg.auth.basic.len();
                for line in text.lines().map(str::trim) {
                    if line.is_empty() || line.starts_with('#') {
                        continue;
                    }
                    if !line.contains(':') {
                        return Err(format!("--auth-file {path}: a line is not USER:PASS"));
                    }
                    cfg.auth.basic.push(line.as_bytes().to_vec());
                }
                if cfg.auth.basic.len() == before {
                    return Err(format!("--auth-file {path}: no USER:PASS line"));
                }
            }
            "--token" => {
                let v = value(&mut it)?;
                if v.is_empty() {
                    return Err("--token must not be empty".into());
                }
                cfg.auth.tokens.push(v.into_bytes());
            }
            "--allow-origin" => cfg.allow_origins.push(value(&mut it)?),
            "--max-clients" => {
                lim.max_clients = parse_num(&flag, &value(&mut it)?, 1, 100_000)? as usize
            }
            "--max-head-bytes" => {
                lim.max_head_bytes = parse_size(&flag, &value(&mut it)?, 256, 1 << 20)?
            }
            "--header-timeout" => lim.header_timeout = parse_duration(&flag, &value(&mut it)?)?,
            "--idle-timeout" => lim.idle_timeout = parse_duration(&flag, &value(&mut it)?)?,
            "--ws-max-message" => {
                lim.ws_max_message_bytes = parse_size(&flag, &value(&mut it)?, 125, 256 << 20)?
            }
            "--ping-interval" => lim.ping_interval = parse_duration(&flag, &value(&mut it)?)?,
            "--dead-peer-timeout" => {
                lim.dead_peer_timeout = parse_duration(&flag, &value(&mut it)?)?
            }
            other => return Err(format!("unknown flag {other} (see --help)")),
        }
    }
    Ok(Command::Run(Box::new(cfg)))
}

pub fn parse_addr(s: &str) -> Result<SocketAddr, String> {
    s.parse::<SocketAddr>()
        .map_err(|_| format!("--listen {s}: expected ADDR:PORT, e.g. 0.0.0.0:8080 or [::]:8080"))
}

fn parse_num(flag: &str, v: &str, min: u32, max: u32) -> Result<u32, String> {
    match v.parse::<u32>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(format!("{flag} {v}: expected a number from {min} to {max}")),
    }
}

/// `500ms`, `10s`, `2m`, or a bare number of seconds.
pub fn parse_duration(flag: &str, v: &str) -> Result<Duration, String> {
    let bad = || format!("{flag} {v}: expected a duration like 500ms, 10s or 2m");
    let (num, unit_ms) = if let Some(n) = v.strip_suffix("ms") {
        (n, 1)
    } else if let Some(n) = v.strip_suffix('s') {
        (n, 1000)
    } else if let Some(n) = v.strip_suffix('m') {
        (n, 60_000)
    } else {
        (v, 1000)
    };
    let n: u64 = num.parse().map_err(|_| bad())?;
    let ms = n.checked_mul(unit_ms).ok_or_else(bad)?;
    if ms == 0 || ms > 24 * 3600 * 1000 {
        return Err(bad());
    }
    Ok(Duration::from_millis(ms))
}

/// Bytes with an optional K/KiB/M/MiB suffix (all binary: 1K = 1024).
pub fn parse_size(flag: &str, v: &str, min: usize, max: usize) -> Result<usize, String> {
    let bad = || format!("{flag} {v}: expected a size from {min} to {max} bytes, e.g. 64KiB");
    let lower = v.to_ascii_lowercase();
    let (num, mult) = [("kib", 1024), ("k", 1024), ("mib", 1 << 20), ("m", 1 << 20)]
        .iter()
        .find_map(|(suf, m)| lower.strip_suffix(suf).map(|n| (n.to_string(), *m)))
        .unwrap_or((lower.clone(), 1));
    let n: usize = num.trim().parse().map_err(|_| bad())?;
    let bytes = n.checked_mul(mult).ok_or_else(bad)?;
    if bytes < min || bytes > max {
        return Err(bad());
    }
    Ok(bytes)
}

/// Splits a command like a shell would split words: whitespace separates,
/// single quotes are literal, double quotes allow `\"` and `\\`, a backslash
/// outside quotes escapes the next character. No expansion of any kind: no
/// shell is ever run.
pub fn split_words(flag: &str, s: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(ch) => cur.push(ch),
                        None => return Err(format!("{flag}: unclosed single quote")),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(ch @ ('"' | '\\' | '$' | '`')) => cur.push(ch),
                            Some(ch) => {
                                cur.push('\\');
                                cur.push(ch);
                            }
                            None => return Err(format!("{flag}: unclosed double quote")),
                        },
                        Some(ch) => cur.push(ch),
                        None => return Err(format!("{flag}: unclosed double quote")),
                    }
                }
            }
            '\\' => {
                in_word = true;
                match chars.next() {
                    Some(ch) => cur.push(ch),
                    None => return Err(format!("{flag}: trailing backslash")),
                }
            }
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    if words.is_empty() {
        return Err(format!("{flag}: empty command"));
    }
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Result<Config, String> {
        match parse_args(args.iter().map(|s| s.to_string()))? {
            Command::Run(c) => Ok(*c),
            other => Err(format!("{other:?}")),
        }
    }

    #[test]
    fn defaults_and_overrides() {
        let c = run(&[]).unwrap();
        assert_eq!(c.listen, vec![parse_addr("0.0.0.0:8080").unwrap()]);
        assert_eq!(c.camera.kind, CameraKind::Auto);
        let c = run(&[
            "--listen",
            "127.0.0.1:0",
            "--camera=test",
            "--width",
            "1280",
            "--rotation",
            "90",
            "--hflip",
            "--still-timeout",
            "500ms",
            "--ws-max-message",
            "16MiB",
        ])
        .unwrap();
        assert_eq!(c.listen, vec![parse_addr("127.0.0.1:0").unwrap()]);
        assert_eq!(c.camera.kind, CameraKind::Test);
        assert_eq!(c.camera.picture.width, 1280);
        assert_eq!(c.camera.picture.rotation, 90);
        assert!(c.camera.picture.hflip);
        assert_eq!(c.camera.still_timeout, Duration::from_millis(500));
        assert_eq!(c.limits.ws_max_message_bytes, 16 << 20);
    }

    #[test]
    fn bad_values_name_the_flag() {
        for (args, needle) in [
            (&["--rotation", "45"][..], "--rotation"),
            (&["--camera", "webcam"][..], "--camera"),
            (&["--fps", "0"][..], "--fps"),
            (&["--listen", "nonsense"][..], "--listen"),
            (&["--still-timeout", "soon"][..], "--still-timeout"),
            (&["--auth", "nocolon"][..], "--auth"),
            (&["--bogus"][..], "--bogus"),
            (&["--width"][..], "--width"),
        ] {
            let e = run(args).unwrap_err();
            assert!(e.contains(needle), "{args:?}: {e}");
        }
    }

    #[test]
    fn words_split_like_a_shell() {
        let w = split_words("x", r#"ffmpeg -i 'a b' "c \"d\"" e\ f"#).unwrap();
        assert_eq!(w, ["ffmpeg", "-i", "a b", "c \"d\"", "e f"]);
        assert!(split_words("x", "'open").is_err());
        assert!(split_words("x", "   ").is_err());
    }

    #[test]
    fn sizes_and_durations() {
        assert_eq!(parse_size("f", "64KiB", 1, usize::MAX).unwrap(), 65536);
        assert_eq!(parse_size("f", "2m", 1, usize::MAX).unwrap(), 2 << 20);
        assert_eq!(parse_size("f", "100", 1, usize::MAX).unwrap(), 100);
        assert!(parse_size("f", "lots", 1, usize::MAX).is_err());
        assert_eq!(parse_duration("f", "2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("f", "3").unwrap(), Duration::from_secs(3));
        assert!(parse_duration("f", "0s").is_err());
    }
}
