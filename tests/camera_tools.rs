//! Camera command lines pinned against each tool's documented flags (issue 6
//! item 4, SPEC "Camera"). A fake tool of the real name sits first on `PATH`,
//! records its argv (one per line) and prints a real JPEG, once for stills
//! and in a loop for streams. picamd runs with `--camera auto` and with the
//! explicit kind, and the recorded command lines are checked flag by flag:
//! the flags SPEC asks for are there with the right values, and nothing is
//! passed that the tool's own documentation does not list.
//!
//! Where the flag lists come from:
//! - rpicam-apps `core/options.cpp` (common: `--nopreview,-n`, `--timeout,-t`,
//!   `--width`, `--height`, `--output,-o`, `--rotation` "0 or 180",
//!   `--hflip`, `--vflip`, `--flush`, `--framerate`), `core/still_options.hpp`
//!   (`--quality,-q`, `--thumb` "width:height:quality, or none",
//!   `--encoding,-e`), `core/video_options.hpp` (`--codec` "h264, mjpeg or
//!   yuv420", `--quality,-q` "MJPEG quality"). libcamera-apps, the older name,
//!   takes the same options.
//! - userland `RaspiStill.c`/`RaspiVid.c`/`RaspiCamControl.c`: `-n`, `-t`,
//!   `-th`, `-w`, `-h`, `-q`, `-e`, `-o` ("to write to stdout, use '-o -'"),
//!   `-fps`, `-cd` "H264 (default) or MJPEG", `-fl` "Flush buffers", `-rot`,
//!   `-hf`, `-vf`.
//! - ffmpeg(1) and its v4l2 input device: `-f`, `-input_format`,
//!   `-video_size`, `-framerate`, `-i`, `-c:v copy`, `-frames:v`,
//!   `-flush_packets`, `-hide_banner`, `-nostdin`, `-loglevel`, `pipe:1`.

mod common;
use common::*;

use std::io::{BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The picture options every test passes.
const PICTURE: &[&str] = &[
    "--width",
    "1280",
    "--height",
    "720",
    "--fps",
    "25",
    "--quality",
    "85",
    "--rotation",
    "180",
    "--hflip",
    "--vflip",
    "--still-delay-ms",
    "800",
];

// ---- fixtures ----

/// A small real JPEG, from the built-in test pattern.
fn frame() -> &'static [u8] {
    static FRAME: OnceLock<Vec<u8>> = OnceLock::new();
    FRAME.get_or_init(|| {
        let srv = Server::start(&["--camera", "test", "--width", "160", "--height", "120"]);
        let r = srv.get("/pi.jpg");
        assert_eq!(r.status, 200);
        assert!(is_whole_jpeg(&r.body));
        r.body
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Still,
    Stream,
    /// ffmpeg: one frame when asked for `-frames:v 1`, else a stream, as
    /// ffmpeg itself behaves.
    Ffmpeg,
}

/// A temp dir to put first on `PATH`, holding `frame.jpg` and fake tools.
fn tool_dir(name: &str, tools: &[(&str, Role)]) -> PathBuf {
    let dir = temp_dir(name);
    std::fs::write(dir.join("frame.jpg"), frame()).unwrap();
    for &(tool, role) in tools {
        add_tool(&dir, tool, role);
    }
    dir
}

fn add_tool(dir: &Path, tool: &str, role: Role) {
    let d = dir.display();
    let record = format!(
        "#!/bin/sh\n\
         # Fake {tool}: records its argv, one per line, then acts like it.\n\
         f='{d}/argv.{tool}.'$$\n\
         printf '%s\\n' \"$0\" \"$@\" > \"$f.tmp\" && mv \"$f.tmp\" \"$f\"\n"
    );
    let once = format!("cat '{d}/frame.jpg'\nexit 0\n");
    let looping = format!("while :; do cat '{d}/frame.jpg' || exit 0; sleep 0.04; done\n");
    let body = match role {
        Role::Still => once,
        Role::Stream => looping,
        Role::Ffmpeg => format!(
            "case \" $* \" in *' -frames:v 1 '*) cat '{d}/frame.jpg'; exit 0;; esac\n{looping}"
        ),
    };
    write_script(dir, tool, &format!("{record}{body}"));
}

/// Every recorded command line of `tool`, oldest first.
fn recorded(dir: &Path, tool: &str) -> Vec<Vec<String>> {
    let prefix = format!("argv.{tool}.");
    let mut found: Vec<(std::time::SystemTime, Vec<String>)> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .filter(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            n.starts_with(&prefix) && !n.ends_with(".tmp")
        })
        .map(|e| {
            let text = std::fs::read_to_string(e.path()).unwrap();
            let t = e.metadata().unwrap().modified().unwrap();
            (t, text.lines().map(str::to_string).collect())
        })
        .collect();
    found.sort_by_key(|(t, _)| *t);
    found.into_iter().map(|(_, a)| a).collect()
}

fn path_env(dir: &Path) -> String {
    format!("{}:/usr/bin:/bin", dir.display())
}

/// Starts picamd on the fake tools, takes a still, then reads stream frames;
/// returns (still argv, stream argv, the still, a stream frame).
fn capture_both(
    dir: &Path,
    camera: &str,
    still_tool: &str,
    stream_tool: &str,
    extra: &[&str],
) -> (Vec<String>, Vec<String>, Vec<u8>, Vec<u8>) {
    let path = path_env(dir);
    let mut args = vec!["--camera", camera];
    args.extend_from_slice(extra);
    let mut srv = Server::start_with_env(&args, &[("PATH", &path)]);
    let still = srv.get("/pi.jpg");
    assert_eq!(
        still.status,
        200,
        "{camera}: {}\n{}",
        still.text(),
        srv.log()
    );
    let stills = recorded(dir, still_tool);
    assert_eq!(stills.len(), 1, "{camera}: {still_tool} runs: {stills:?}");

    let mut m = srv.connect();
    m.write_all(b"GET /stream.mjpg HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let head = read_response(&mut m, true);
    assert_eq!(head.status, 200);
    let mut r = BufReader::new(m);
    let part = mjpeg_read_part(&mut r);
    let _second = mjpeg_read_part(&mut r);
    drop(r);
    let mut streams = recorded(dir, stream_tool);
    if still_tool == stream_tool {
        streams.retain(|a| a != &stills[0]);
    }
    assert_eq!(
        streams.len(),
        1,
        "{camera}: {stream_tool} runs: {streams:?}"
    );
    // A clean stop takes the tools down with the server.
    let st = srv.terminate(Duration::from_secs(3));
    assert_eq!(st.and_then(|s| s.code()), Some(0), "{}", srv.log());
    (
        stills.into_iter().next().unwrap(),
        streams.into_iter().next().unwrap(),
        still.body,
        part,
    )
}

// ---- argv checks ----

/// A tool's documented options: (flag, takes a value).
type Doc = &'static [(&'static str, bool)];

const RPICAM_STILL_DOC: Doc = &[
    ("-n", false),
    ("--nopreview", false),
    ("-t", true),
    ("--timeout", true),
    ("--thumb", true),
    ("--width", true),
    ("--height", true),
    ("-q", true),
    ("--quality", true),
    ("-e", true),
    ("--encoding", true),
    ("-o", true),
    ("--output", true),
    ("--rotation", true),
    ("--hflip", false),
    ("--vflip", false),
    ("--immediate", false),
];

const RPICAM_VID_DOC: Doc = &[
    ("-n", false),
    ("--nopreview", false),
    ("-t", true),
    ("--timeout", true),
    ("--codec", true),
    ("--flush", false),
    ("--width", true),
    ("--height", true),
    ("--framerate", true),
    ("-q", true),
    ("--quality", true),
    ("-o", true),
    ("--output", true),
    ("--rotation", true),
    ("--hflip", false),
    ("--vflip", false),
    ("--inline", false),
];

const RASPISTILL_DOC: Doc = &[
    ("-n", false),
    ("-t", true),
    ("-th", true),
    ("-w", true),
    ("-h", true),
    ("-q", true),
    ("-e", true),
    ("-o", true),
    ("-rot", true),
    ("-hf", false),
    ("-vf", false),
];

const RASPIVID_DOC: Doc = &[
    ("-n", false),
    ("-t", true),
    ("-cd", true),
    ("-fl", false),
    ("-w", true),
    ("-h", true),
    ("-fps", true),
    ("-o", true),
    ("-rot", true),
    ("-hf", false),
    ("-vf", false),
];

const FFMPEG_DOC: Doc = &[
    ("-hide_banner", false),
    ("-nostdin", false),
    ("-loglevel", true),
    ("-v", true),
    ("-f", true),
    ("-input_format", true),
    ("-video_size", true),
    ("-framerate", true),
    ("-i", true),
    ("-frames:v", true),
    ("-c:v", true),
    ("-vcodec", true),
    ("-flush_packets", true),
];

/// Checks that `argv` names `program`, and that every option in it is in
/// `doc` (with its value where it takes one); returns the options as
/// (flag, value) pairs, in order.
fn parse_argv(
    argv: &[String],
    program: &str,
    doc: Doc,
    positional_ok: &[&str],
) -> Vec<(String, Option<String>)> {
    let name = Path::new(&argv[0]).file_name().unwrap().to_string_lossy();
    assert_eq!(name, program, "{argv:?}");
    let mut out = Vec::new();
    let mut it = argv[1..].iter();
    while let Some(a) = it.next() {
        match doc.iter().find(|(f, _)| f == a) {
            Some((_, true)) => {
                let v = it
                    .next()
                    .unwrap_or_else(|| panic!("{program}: {a} without a value: {argv:?}"));
                out.push((a.clone(), Some(v.clone())));
            }
            Some((_, false)) => out.push((a.clone(), None)),
            None if positional_ok.contains(&a.as_str()) => out.push((a.clone(), None)),
            None => panic!("{program}: {a:?} is not among the tool's documented options: {argv:?}"),
        }
    }
    out
}

/// The value of `flag` (the only occurrence).
fn value(opts: &[(String, Option<String>)], flag: &str) -> Option<String> {
    let all: Vec<_> = opts.iter().filter(|(f, _)| f == flag).collect();
    assert!(all.len() <= 1, "{flag} given {} times: {opts:?}", all.len());
    all.first().and_then(|(_, v)| v.clone())
}

fn has(opts: &[(String, Option<String>)], flag: &str) -> bool {
    opts.iter().any(|(f, _)| f == flag)
}

fn check_rpicam_still(argv: &[String], program: &str) {
    let o = parse_argv(argv, program, RPICAM_STILL_DOC, &[]);
    assert!(
        has(&o, "-n") || has(&o, "--nopreview"),
        "no preview window: {argv:?}"
    );
    assert_eq!(
        value(&o, "-t").as_deref(),
        Some("800"),
        "settle time: {argv:?}"
    );
    assert_eq!(value(&o, "--thumb").as_deref(), Some("none"), "{argv:?}");
    assert_eq!(value(&o, "--width").as_deref(), Some("1280"));
    assert_eq!(value(&o, "--height").as_deref(), Some("720"));
    assert_eq!(value(&o, "-q").as_deref(), Some("85"));
    assert_eq!(value(&o, "--rotation").as_deref(), Some("180"));
    assert!(has(&o, "--hflip") && has(&o, "--vflip"), "{argv:?}");
    if let Some(e) = value(&o, "-e") {
        assert_eq!(e, "jpg");
    }
    assert_eq!(value(&o, "-o").as_deref(), Some("-"), "to stdout: {argv:?}");
}

fn check_rpicam_vid(argv: &[String], program: &str) {
    let o = parse_argv(argv, program, RPICAM_VID_DOC, &[]);
    assert!(has(&o, "-n") || has(&o, "--nopreview"), "{argv:?}");
    assert_eq!(
        value(&o, "-t").as_deref(),
        Some("0"),
        "or it stops after 5 s: {argv:?}"
    );
    assert_eq!(value(&o, "--codec").as_deref(), Some("mjpeg"));
    assert!(
        has(&o, "--flush"),
        "or frames sit in stdio buffers: {argv:?}"
    );
    assert_eq!(value(&o, "--width").as_deref(), Some("1280"));
    assert_eq!(value(&o, "--height").as_deref(), Some("720"));
    assert_eq!(value(&o, "--framerate").as_deref(), Some("25"));
    assert_eq!(value(&o, "-q").as_deref(), Some("85"));
    assert_eq!(value(&o, "--rotation").as_deref(), Some("180"));
    assert!(has(&o, "--hflip") && has(&o, "--vflip"), "{argv:?}");
    assert_eq!(value(&o, "-o").as_deref(), Some("-"));
}

// ---- each tool family, auto-detected and named ----

fn rpicam_family(prefix: &str, camera: &str) {
    let still = format!("{prefix}-still");
    let vid = format!("{prefix}-vid");
    let dir = tool_dir(
        &format!("tools-{prefix}-{camera}"),
        &[(&still, Role::Still), (&vid, Role::Stream)],
    );
    let (s, v, jpeg, part) = capture_both(&dir, camera, &still, &vid, PICTURE);
    check_rpicam_still(&s, &still);
    check_rpicam_vid(&v, &vid);
    // 180° and both flips are the tool's job: the frames pass unchanged.
    assert!(jpeg == frame() && part == frame());
}

#[test]
fn rpicam_auto_and_named() {
    rpicam_family("rpicam", "auto");
    rpicam_family("rpicam", "rpicam");
}

#[test]
fn libcamera_auto_and_named() {
    rpicam_family("libcamera", "auto");
    rpicam_family("libcamera", "libcamera");
}

#[test]
fn raspistill_and_raspivid_auto_and_named() {
    for camera in ["auto", "raspistill"] {
        let dir = tool_dir(
            &format!("tools-raspi-{camera}"),
            &[("raspistill", Role::Still), ("raspivid", Role::Stream)],
        );
        let (s, v, jpeg, part) = capture_both(&dir, camera, "raspistill", "raspivid", PICTURE);
        let o = parse_argv(&s, "raspistill", RASPISTILL_DOC, &[]);
        assert!(has(&o, "-n"));
        assert_eq!(value(&o, "-t").as_deref(), Some("800"));
        assert_eq!(value(&o, "-th").as_deref(), Some("none"));
        assert_eq!(value(&o, "-w").as_deref(), Some("1280"));
        assert_eq!(value(&o, "-h").as_deref(), Some("720"));
        assert_eq!(value(&o, "-q").as_deref(), Some("85"));
        assert_eq!(value(&o, "-rot").as_deref(), Some("180"));
        assert!(has(&o, "-hf") && has(&o, "-vf"), "{s:?}");
        if let Some(e) = value(&o, "-e") {
            assert_eq!(e, "jpg");
        }
        assert_eq!(value(&o, "-o").as_deref(), Some("-"));

        let o = parse_argv(&v, "raspivid", RASPIVID_DOC, &[]);
        assert!(has(&o, "-n"));
        assert_eq!(value(&o, "-t").as_deref(), Some("0"));
        assert_eq!(value(&o, "-cd").as_deref(), Some("MJPEG"));
        assert!(has(&o, "-fl"), "{v:?}");
        assert_eq!(value(&o, "-w").as_deref(), Some("1280"));
        assert_eq!(value(&o, "-h").as_deref(), Some("720"));
        assert_eq!(value(&o, "-fps").as_deref(), Some("25"));
        assert_eq!(value(&o, "-rot").as_deref(), Some("180"));
        assert!(has(&o, "-hf") && has(&o, "-vf"), "{v:?}");
        assert_eq!(value(&o, "-o").as_deref(), Some("-"));
        assert!(jpeg == frame() && part == frame());
    }
}

/// Position of `flag` followed by `val` in argv.
fn pos(argv: &[String], flag: &str, val: &str) -> usize {
    argv.windows(2)
        .position(|w| w[0] == flag && w[1] == val)
        .unwrap_or_else(|| panic!("no `{flag} {val}` in {argv:?}"))
}

fn check_ffmpeg(argv: &[String], device: &str, still: bool) {
    parse_argv(argv, "ffmpeg", FFMPEG_DOC, &["pipe:1"]);
    // Input options go before -i, output options after it.
    let input = pos(argv, "-i", device);
    for (flag, val) in [
        ("-f", "v4l2"),
        ("-input_format", "mjpeg"),
        ("-video_size", "1280x720"),
    ] {
        assert!(pos(argv, flag, val) < input, "{flag} after -i: {argv:?}");
    }
    if still {
        assert!(pos(argv, "-frames:v", "1") > input, "{argv:?}");
    } else {
        assert!(pos(argv, "-framerate", "25") < input, "{argv:?}");
        assert!(pos(argv, "-flush_packets", "1") > input, "{argv:?}");
    }
    assert!(
        pos(argv, "-c:v", "copy") > input,
        "copy, not re-encode: {argv:?}"
    );
    assert!(pos(argv, "-f", "mjpeg") > input, "{argv:?}");
    assert_eq!(argv.last().map(String::as_str), Some("pipe:1"), "{argv:?}");
}

#[test]
fn ffmpeg_on_a_v4l2_device_auto_and_named() {
    for camera in ["auto", "ffmpeg"] {
        let dir = tool_dir(
            &format!("tools-ffmpeg-{camera}"),
            &[("ffmpeg", Role::Ffmpeg)],
        );
        let device = dir.join("video0");
        std::fs::write(&device, "").unwrap();
        let device = device.display().to_string();
        let mut args = PICTURE.to_vec();
        args.extend_from_slice(&["--device", &device]);
        let (s, v, jpeg, part) = capture_both(&dir, camera, "ffmpeg", "ffmpeg", &args);
        check_ffmpeg(&s, &device, true);
        check_ffmpeg(&v, &device, false);
        // 180° plus both flips is the identity: nothing to add.
        assert!(jpeg == frame() && part == frame());
    }
}

#[test]
fn auto_prefers_the_newest_stack() {
    let all = [
        ("rpicam-still", Role::Still),
        ("rpicam-vid", Role::Stream),
        ("libcamera-still", Role::Still),
        ("libcamera-vid", Role::Stream),
        ("raspistill", Role::Still),
        ("raspivid", Role::Stream),
        ("ffmpeg", Role::Ffmpeg),
    ];
    for (skip, expect) in [
        (0, "rpicam-still"),
        (2, "libcamera-still"),
        (4, "raspistill"),
        (6, "ffmpeg"),
    ] {
        let dir = tool_dir(&format!("tools-prefer-{skip}"), &all[skip..]);
        let device = dir.join("video0");
        std::fs::write(&device, "").unwrap();
        let path = path_env(&dir);
        let srv = Server::start_with_env(
            &["--camera", "auto", "--device", device.to_str().unwrap()],
            &[("PATH", &path)],
        );
        assert_eq!(srv.get("/pi.jpg").status, 200, "{}", srv.log());
        assert_eq!(
            recorded(&dir, expect).len(),
            1,
            "expected {expect}:\n{}",
            srv.log()
        );
        for (other, _) in &all[skip..] {
            if *other != expect {
                assert!(
                    recorded(&dir, other).is_empty(),
                    "{other} ran, not {expect}"
                );
            }
        }
    }
}

/// Runs picamd with `args` and `PATH=path`, expecting it to exit (not serve).
fn run_expecting_exit(args: &[&str], path: &Path) -> std::process::Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_picamd"))
        .args(args)
        .env("PATH", path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let end = Instant::now() + IO_TIMEOUT;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > end {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "picamd {args:?} kept running:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    child.wait_with_output().unwrap()
}

#[test]
fn auto_with_no_camera_tool_says_what_it_looked_for() {
    let empty = temp_dir("tools-none");
    let out = run_expecting_exit(
        &[
            "--listen",
            "127.0.0.1:0",
            "--camera",
            "auto",
            "--device",
            "/nonexistent/video9",
        ],
        &empty,
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    for needle in [
        "rpicam-still",
        "libcamera-still",
        "raspistill",
        "ffmpeg",
        "/nonexistent/video9",
        "--camera test",
    ] {
        assert!(err.contains(needle), "message lacks {needle:?}: {err}");
    }
    assert!(!err.contains("listening on"), "{err}");
}

#[test]
fn ffmpeg_is_not_chosen_without_the_device() {
    let dir = tool_dir("tools-ffmpeg-nodev", &[("ffmpeg", Role::Ffmpeg)]);
    let out = run_expecting_exit(
        &["--listen", "127.0.0.1:0", "--device", "/nonexistent/video7"],
        &dir,
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/video7"));
    assert!(recorded(&dir, "ffmpeg").is_empty());
}

// ---- EXIF orientation for rotations a tool cannot do ----

/// The EXIF Orientation (tag 0x0112 in IFD0 of an APP1 "Exif" segment)
/// before the scan, if any.
fn exif_orientation(jpeg: &[u8]) -> Option<u16> {
    let mut i = 2;
    while i + 4 <= jpeg.len() {
        if jpeg[i] != 0xff {
            return None;
        }
        let marker = jpeg[i + 1];
        if marker == 0xda {
            return None;
        }
        let len = u16::from_be_bytes([jpeg[i + 2], jpeg[i + 3]]) as usize;
        let seg = jpeg.get(i + 4..i + 2 + len)?;
        if marker == 0xe1 && seg.starts_with(b"Exif\0\0") {
            let t = &seg[6..];
            let be = match &t[..2] {
                b"MM" => true,
                b"II" => false,
                _ => return None,
            };
            let u16_at = |o: usize| {
                let b = [t[o], t[o + 1]];
                if be {
                    u16::from_be_bytes(b)
                } else {
                    u16::from_le_bytes(b)
                }
            };
            let u32_at = |o: usize| {
                let b = [t[o], t[o + 1], t[o + 2], t[o + 3]];
                if be {
                    u32::from_be_bytes(b)
                } else {
                    u32::from_le_bytes(b)
                }
            };
            assert_eq!(u16_at(2), 42, "TIFF magic");
            let ifd = u32_at(4) as usize;
            for k in 0..u16_at(ifd) as usize {
                let e = ifd + 2 + 12 * k;
                if u16_at(e) == 0x0112 {
                    assert_eq!(u16_at(e + 2), 3, "Orientation is a SHORT");
                    return Some(u16_at(e + 8));
                }
            }
        }
        i += 2 + len;
    }
    None
}

/// Stills and stream frames from `camera` with `--rotation`/flips; returns
/// (still argv, stream argv, orientation of the still, of a stream frame).
fn oriented(
    tools: &[(&str, Role)],
    camera: &str,
    still: &str,
    stream: &str,
    picture: &[&str],
) -> (Vec<String>, Vec<String>, Option<u16>, Option<u16>) {
    let dir = tool_dir(&format!("tools-orient-{camera}"), tools);
    let device = dir.join("video0");
    std::fs::write(&device, "").unwrap();
    let mut args = picture.to_vec();
    args.extend_from_slice(&["--device", device.to_str().unwrap()]);
    let (s, v, jpeg, part) = capture_both(&dir, camera, still, stream, &args);
    assert!(is_whole_jpeg(&jpeg) && is_whole_jpeg(&part));
    (s, v, exif_orientation(&jpeg), exif_orientation(&part))
}

#[test]
fn rpicam_rotation_90_becomes_exif_orientation_6() {
    assert_eq!(
        exif_orientation(frame()),
        None,
        "the fixture has no Orientation"
    );
    let (s, v, still, part) = oriented(
        &[("rpicam-still", Role::Still), ("rpicam-vid", Role::Stream)],
        "rpicam",
        "rpicam-still",
        "rpicam-vid",
        &["--rotation", "90"],
    );
    assert_eq!(still, Some(6), "still");
    assert_eq!(part, Some(6), "stream frame");
    // rpicam rotates 0/180 only: 90 must not be passed to it.
    for argv in [&s, &v] {
        assert!(!argv.iter().any(|a| a == "--rotation"), "{argv:?}");
    }
}

#[test]
fn rpicam_rotation_270_becomes_exif_orientation_8() {
    let (_, _, still, part) = oriented(
        &[("rpicam-still", Role::Still), ("rpicam-vid", Role::Stream)],
        "rpicam",
        "rpicam-still",
        "rpicam-vid",
        &["--rotation", "270"],
    );
    assert_eq!((still, part), (Some(8), Some(8)));
}

#[test]
fn raspistill_rotates_90_itself() {
    let (s, v, still, part) = oriented(
        &[("raspistill", Role::Still), ("raspivid", Role::Stream)],
        "raspistill",
        "raspistill",
        "raspivid",
        &["--rotation", "90"],
    );
    pos(&s, "-rot", "90");
    pos(&v, "-rot", "90");
    assert_eq!((still, part), (None, None), "no EXIF when the tool rotates");
}

#[test]
fn ffmpeg_rotation_and_mirror_become_exif() {
    let tools = [("ffmpeg", Role::Ffmpeg)];
    let (s, v, still, part) = oriented(&tools, "ffmpeg", "ffmpeg", "ffmpeg", &["--rotation", "90"]);
    assert_eq!((still, part), (Some(6), Some(6)));
    for argv in [&s, &v] {
        assert!(
            !argv
                .iter()
                .any(|a| a.contains("rotate") || a.contains("transpose")),
            "no re-encoding filters: {argv:?}"
        );
    }
    let (_, _, still, part) = oriented(&tools, "ffmpeg", "ffmpeg", "ffmpeg", &["--hflip"]);
    assert_eq!((still, part), (Some(2), Some(2)), "mirrored");
}

// ---- ffmpeg on a webcam that offers no MJPEG ----

#[test]
fn ffmpeg_falls_back_to_reencoding_when_the_device_gives_no_mjpeg() {
    // A fake ffmpeg like one on a YUYV-only webcam: asking for MJPEG input
    // fails with ffmpeg's own complaint; anything else works.
    let dir = temp_dir("tools-ffmpeg-yuyv");
    std::fs::write(dir.join("frame.jpg"), frame()).unwrap();
    let d = dir.display();
    write_script(
        &dir,
        "ffmpeg",
        &format!(
            "#!/bin/sh\n\
             f='{d}/argv.ffmpeg.'$$\n\
             printf '%s\\n' \"$0\" \"$@\" > \"$f.tmp\" && mv \"$f.tmp\" \"$f\"\n\
             case \" $* \" in *' -input_format mjpeg '*)\n\
               echo '[video4linux2,v4l2 @ 0x1] Cannot find a proper format for codec mjpeg' >&2; exit 1;; esac\n\
             case \" $* \" in *' -frames:v 1 '*) cat '{d}/frame.jpg'; exit 0;; esac\n\
             while :; do cat '{d}/frame.jpg' || exit 0; sleep 0.04; done\n"
        ),
    );
    let device = dir.join("video0");
    std::fs::write(&device, "").unwrap();
    let device = device.display().to_string();
    let path = path_env(&dir);
    let srv = Server::start_with_env(
        &["--camera", "ffmpeg", "--device", &device, "--quality", "85"],
        &[("PATH", &path)],
    );

    // The first still tries to copy MJPEG and fails; the 503 says why, in
    // ffmpeg's words.
    let first = srv.get("/pi.jpg");
    assert_eq!(first.status, 503, "{}", first.text());
    assert!(
        first.text().contains("Cannot find a proper format"),
        "{}",
        first.text()
    );
    // From then on picamd re-encodes: stills and the stream work.
    let second = srv.get("/pi.jpg");
    assert_eq!(second.status, 200, "{}", second.text());
    assert!(is_whole_jpeg(&second.body));
    let mut ws = ws_connect(srv.addr, "/stream");
    let (op, jpeg) = ws_read_message(&mut ws);
    assert_eq!(op, 2);
    assert!(is_whole_jpeg(&jpeg));

    let runs = recorded(&dir, "ffmpeg");
    assert!(runs.len() >= 3, "{runs:?}");
    // The argv files' times may tie, so judge the runs by content, not by
    // position: one copying run (the first still), the rest re-encode.
    let copies = |r: &Vec<String>| r.windows(2).any(|w| w == ["-c:v", "copy"]);
    assert_eq!(runs.iter().filter(|r| copies(r)).count(), 1, "{runs:?}");
    for re in runs.iter().filter(|r| !copies(r)) {
        assert!(!re.iter().any(|a| a == "-input_format"), "{re:?}");
        assert!(re.windows(2).any(|w| w == ["-c:v", "mjpeg"]), "{re:?}");
        // Quality 85 maps onto ffmpeg's 2 (best) .. 31 (worst) scale.
        assert!(re.windows(2).any(|w| w == ["-q:v", "6"]), "{re:?}");
        assert!(
            re.windows(2).any(|w| w[0] == "-i" && w[1] == device),
            "{re:?}"
        );
    }
    // Both a re-encoding still and a re-encoding stream ran.
    let reencoding = |flag: &str, v: &str| {
        runs.iter()
            .any(|r| !copies(r) && r.windows(2).any(|w| w[0] == flag && w[1] == v))
    };
    assert!(reencoding("-frames:v", "1"), "{runs:?}");
    assert!(reencoding("-framerate", "30"), "{runs:?}");
    assert_eq!(
        srv.log().matches("re-encoding from now on").count(),
        1,
        "{}",
        srv.log()
    );
}
