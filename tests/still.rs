//! Still capture with fake capture tools (issue 2 item 5, issue 4 faults,
//! SPEC "Camera"): shell scripts written at test time stand in for
//! `rpicam-still` through `--still-cmd`, and print a JPEG with an EXIF
//! thumbnail, hang, fail, print garbage, stop mid-frame, flood stderr, or
//! take their time while many clients wait. Each test checks what the client
//! sees, what the log says, that no capture process is left behind, and that
//! the server serves a normal request afterwards.

mod common;
use common::*;

use std::io::Write;
use std::net::Shutdown;
use std::path::PathBuf;
use std::sync::{Barrier, OnceLock};
use std::time::{Duration, Instant};

// ---- fixtures ----

/// A real JPEG from the built-in test pattern, at the given size.
fn pattern_jpeg(width: u32, height: u32) -> Vec<u8> {
    let w = width.to_string();
    let h = height.to_string();
    let srv = Server::start(&["--camera", "test", "--width", &w, "--height", &h]);
    let r = srv.get("/pi.jpg");
    assert_eq!(r.status, 200);
    assert!(is_whole_jpeg(&r.body));
    r.body
}

/// The main frame (640x480) and a thumbnail-sized one (160x120), made once.
fn frames() -> &'static (Vec<u8>, Vec<u8>) {
    static FRAMES: OnceLock<(Vec<u8>, Vec<u8>)> = OnceLock::new();
    FRAMES.get_or_init(|| (pattern_jpeg(640, 480), pattern_jpeg(160, 120)))
}

/// A JPEG as cameras write it: SOI, then an APP1 "Exif" segment whose TIFF
/// IFD1 carries a whole JPEG thumbnail (its own SOI ... EOI), then the rest
/// of the main image. A splitter that stops at the first EOI would serve the
/// thumbnail's end as the image's end.
fn with_exif_thumbnail(main: &[u8], thumb: &[u8]) -> Vec<u8> {
    fn entry(out: &mut Vec<u8>, tag: u16, value: u32) {
        out.extend_from_slice(&tag.to_be_bytes());
        out.extend_from_slice(&4u16.to_be_bytes()); // LONG
        out.extend_from_slice(&1u32.to_be_bytes()); // count
        out.extend_from_slice(&value.to_be_bytes());
    }
    let mut tiff = Vec::new();
    tiff.extend_from_slice(b"MM\0\x2a\0\0\0\x08"); // big-endian, IFD0 at 8
    tiff.extend_from_slice(&0u16.to_be_bytes()); // IFD0: no entries
    let ifd1 = 8 + 2 + 4;
    tiff.extend_from_slice(&(ifd1 as u32).to_be_bytes()); // next IFD: IFD1
    let thumb_at = ifd1 + 2 + 2 * 12 + 4;
    tiff.extend_from_slice(&2u16.to_be_bytes());
    entry(&mut tiff, 0x0201, thumb_at as u32); // JPEGInterchangeFormat
    entry(&mut tiff, 0x0202, thumb.len() as u32); // ...Length
    tiff.extend_from_slice(&0u32.to_be_bytes());
    tiff.extend_from_slice(thumb);
    let mut payload = b"Exif\0\0".to_vec();
    payload.extend_from_slice(&tiff);
    let seg_len = u16::try_from(payload.len() + 2).expect("thumbnail fits in APP1");
    let mut out = vec![0xff, 0xd8, 0xff, 0xe1];
    out.extend_from_slice(&seg_len.to_be_bytes());
    out.extend_from_slice(&payload);
    out.extend_from_slice(&main[2..]);
    out
}

/// A directory holding `frame.jpg`, an idle stream script and room for the
/// still script.
struct Rig {
    dir: PathBuf,
    frame: Vec<u8>,
}

impl Rig {
    fn new(name: &str) -> Rig {
        let dir = temp_dir(name);
        let frame = frames().0.clone();
        std::fs::write(dir.join("frame.jpg"), &frame).unwrap();
        // A stream tool for --stream-cmd; exits when its reader goes away.
        write_script(
            &dir,
            "stream.sh",
            &format!(
                "#!/bin/sh\nwhile :; do cat '{}' || exit 0; sleep 0.05; done\n",
                dir.join("frame.jpg").display()
            ),
        );
        Rig { dir, frame }
    }

    fn path(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }

    /// Writes `still.sh` (run in `dir`) and starts picamd with it.
    fn start(&self, body: &str, extra: &[&str]) -> Server {
        let script = format!(
            "#!/bin/sh\ncd '{}' || exit 99\n{body}\n",
            self.dir.display()
        );
        let still = write_script(&self.dir, "still.sh", &script);
        let still = still.display().to_string();
        let stream = self.path("stream.sh");
        let mut args = vec!["--still-cmd", &still, "--stream-cmd", &stream];
        args.extend_from_slice(extra);
        Server::start(&args)
    }

    fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.join(name)).unwrap_or_default()
    }
}

/// The process state letter from /proc/<pid>/stat, or None if it is gone.
fn proc_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

/// Gone, or at least dead (a zombie of some other parent).
fn is_dead(pid: u32) -> bool {
    matches!(proc_state(pid), None | Some('Z') | Some('X'))
}

/// Waits until the server has no child process left (zombies count).
fn assert_no_children(srv: &Server, what: &str) {
    let pid = srv.pid();
    let mut left = Vec::new();
    let ok = eventually(Duration::from_secs(5), || {
        left = children_of(pid);
        left.is_empty()
    });
    let states: Vec<_> = left.iter().map(|&p| (p, proc_state(p))).collect();
    assert!(ok, "{what}: children left: {states:?}\n{}", srv.log());
}

fn status_json(srv: &Server) -> String {
    let r = srv.get("/status");
    assert_eq!(r.status, 200);
    r.text()
}

// ---- good captures ----

#[test]
fn jpeg_with_exif_thumbnail_is_served_byte_for_byte() {
    let (main, thumb) = frames();
    let exif = with_exif_thumbnail(main, thumb);
    // The thumbnail's EOI comes long before the image's.
    let first_eoi = exif.windows(2).position(|w| w == [0xff, 0xd9]).unwrap();
    assert!(first_eoi + 2 < exif.len());
    let rig = Rig::new("still-exif");
    std::fs::write(rig.dir.join("exif.jpg"), &exif).unwrap();
    let srv = rig.start("cat exif.jpg", &[]);
    for path in ["/pi.jpg", "/snapshot", "/?action=snapshot"] {
        let r = srv.get(path);
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(r.header("content-type").as_deref(), Some("image/jpeg"));
        assert_eq!(r.header("cache-control").as_deref(), Some("no-store"));
        assert_eq!(r.body.len(), exif.len(), "{path}: length");
        assert!(r.body == exif, "{path}: bytes differ");
    }
    let mut s = srv.connect();
    s.write_all(b"HEAD /pi.jpg HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    let r = read_response(&mut s, true);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length"), Some(exif.len().to_string()));
    let (rest, _) = read_until_closed(&mut s, Duration::from_secs(5));
    assert!(rest.is_empty(), "HEAD sent a body");
    assert_no_children(&srv, "after captures");
}

#[test]
fn concurrent_requests_share_one_capture() {
    let rig = Rig::new("still-shared");
    let srv = rig.start("echo run >> runs\nsleep 0.5\ncat frame.jpg", &[]);
    const CLIENTS: usize = 20;
    let barrier = Barrier::new(CLIENTS);
    let bodies: Vec<(u16, Vec<u8>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..CLIENTS)
            .map(|_| {
                let barrier = &barrier;
                let srv = &srv;
                scope.spawn(move || {
                    let mut s = srv.connect();
                    barrier.wait();
                    s.write_all(b"GET /pi.jpg HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
                        .unwrap();
                    let r = read_response(&mut s, false);
                    (r.status, r.body)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (i, (status, body)) in bodies.iter().enumerate() {
        assert_eq!(*status, 200, "client {i}");
        assert!(*body == rig.frame, "client {i} got other bytes");
    }
    assert_eq!(rig.read("runs").lines().count(), 1, "one capture for all");
    // The next request is a fresh capture, not a cached image.
    assert_eq!(srv.get("/pi.jpg").status, 200);
    assert_eq!(rig.read("runs").lines().count(), 2);
    assert_no_children(&srv, "after shared capture");
}

#[test]
fn pipelined_requests_behind_a_slow_capture_are_answered_in_order() {
    let rig = Rig::new("still-pipelined");
    let srv = rig.start("sleep 0.3\ncat frame.jpg", &[]);
    let mut s = srv.connect();
    s.write_all(
        b"GET /pi.jpg HTTP/1.1\r\nHost: t\r\n\r\n\
          GET /status HTTP/1.1\r\nHost: t\r\n\r\n\
          HEAD /pi.jpg HTTP/1.1\r\nHost: t\r\n\r\n\
          GET /no-such-page HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    let a = read_response(&mut s, false);
    assert_eq!(a.status, 200);
    assert!(a.body == rig.frame);
    let b = read_response(&mut s, false);
    assert_eq!(b.status, 200);
    assert!(b.text().starts_with('{'));
    let c = read_response(&mut s, true);
    assert_eq!(c.status, 200);
    assert_eq!(
        c.header("content-length"),
        Some(rig.frame.len().to_string())
    );
    let d = read_response(&mut s, false);
    assert_eq!(d.status, 404);
    let (rest, closed) = read_until_closed(&mut s, Duration::from_secs(5));
    assert!(closed && rest.is_empty());
}

#[test]
fn half_closed_client_gets_its_slow_still() {
    let rig = Rig::new("still-halfclose");
    let srv = rig.start("sleep 0.3\ncat frame.jpg", &[]);
    let mut s = srv.connect();
    s.write_all(b"GET /pi.jpg HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    let r = read_response(&mut s, false);
    assert_eq!(r.status, 200);
    assert!(r.body == rig.frame);
}

#[test]
fn client_leaving_during_a_capture_does_not_disturb_the_others() {
    let rig = Rig::new("still-leaver");
    let srv = rig.start("sleep 0.4\ncat frame.jpg", &[]);
    let mut gone = srv.connect();
    gone.write_all(b"GET /pi.jpg HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let mut stays = srv.connect();
    stays
        .write_all(b"GET /pi.jpg HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    std::thread::sleep(Duration::from_millis(100));
    drop(gone);
    let r = read_response(&mut stays, false);
    assert_eq!(r.status, 200);
    assert!(r.body == rig.frame);
    srv.assert_alive();
    assert_no_children(&srv, "after capture");
}

#[test]
fn while_the_stream_runs_the_snapshot_is_a_stream_frame_and_no_still_starts() {
    let rig = Rig::new("still-from-stream");
    let srv = rig.start("echo run >> runs\ncat frame.jpg", &["--fps", "20"]);
    let mut m = srv.connect();
    m.write_all(b"GET /stream.mjpg HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let head = read_response(&mut m, true);
    assert_eq!(head.status, 200);
    let mut r = std::io::BufReader::new(m.try_clone().unwrap());
    let part = mjpeg_read_part(&mut r);
    assert!(part == rig.frame);
    for _ in 0..3 {
        let s = srv.get("/pi.jpg");
        assert_eq!(s.status, 200);
        assert!(s.body == rig.frame);
    }
    assert_eq!(
        rig.read("runs"),
        "",
        "a still process ran beside the stream"
    );
}

// ---- failing captures ----

#[test]
fn hanging_capture_answers_503_at_the_timeout_and_is_killed() {
    let rig = Rig::new("still-hang");
    // The tool and a helper it started: both must die.
    let srv = rig.start(
        "echo $$ > pid\nsleep 7 &\necho $! > helper\nwait",
        &["--still-timeout", "500ms"],
    );
    let t0 = Instant::now();
    let r = srv.get("/pi.jpg");
    let took = t0.elapsed();
    assert_eq!(r.status, 503, "{}", r.head);
    let retry: u32 = r
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .expect("Retry-After in seconds");
    assert!(retry >= 1);
    assert!(r.text().contains("timed out"), "{:?}", r.text());
    assert!(
        took >= Duration::from_millis(400),
        "answered before the timeout: {took:?}"
    );
    assert!(
        took < Duration::from_secs(4),
        "kept the client waiting {took:?}"
    );
    let pid: u32 = rig.read("pid").trim().parse().unwrap();
    let helper: u32 = rig.read("helper").trim().parse().unwrap();
    assert!(
        eventually(Duration::from_secs(3), || is_dead(pid) && is_dead(helper)),
        "capture processes survive: tool {:?}, helper {:?}",
        proc_state(pid),
        proc_state(helper)
    );
    assert_no_children(&srv, "after timeout");
    assert!(srv.log().contains("timed out"), "{}", srv.log());
    srv.assert_alive();
}

#[test]
fn capture_that_exits_non_zero_answers_503_with_the_reason() {
    let rig = Rig::new("still-fail");
    let srv = rig.start(
        "echo 'ERROR: *** no cameras available ***' >&2\nexit 3",
        &[],
    );
    let r = srv.get("/pi.jpg");
    assert_eq!(r.status, 503);
    assert!(r.header("retry-after").is_some());
    assert!(r.text().contains("status 3"), "{:?}", r.text());
    srv.wait_log("no cameras available", Duration::from_secs(5));
    let status = status_json(&srv);
    assert!(status.contains("\"capture_errors\":1"), "{status}");
    assert!(
        status.contains("no cameras available"),
        "last_error: {status}"
    );
    srv.assert_alive();
    assert_no_children(&srv, "after failure");
}

#[test]
fn capture_killed_by_a_signal_answers_503() {
    let rig = Rig::new("still-segv");
    let srv = rig.start("kill -SEGV $$", &[]);
    let r = srv.get("/pi.jpg");
    assert_eq!(r.status, 503);
    assert!(r.text().contains("signal"), "{:?}", r.text());
    srv.assert_alive();
}

#[test]
fn capture_that_cannot_start_answers_503() {
    let dir = temp_dir("still-missing");
    let missing = dir.join("no-such-tool").display().to_string();
    let srv = Server::start(&["--still-cmd", &missing, "--stream-cmd", &missing]);
    let r = srv.get("/pi.jpg");
    assert_eq!(r.status, 503);
    assert!(r.text().contains("could not be started"), "{:?}", r.text());
    srv.wait_log("no-such-tool", Duration::from_secs(5));
    srv.assert_alive();
}

#[test]
fn garbage_output_answers_502() {
    let rig = Rig::new("still-garbage");
    let srv = rig.start("echo 'hello, this is not a JPEG'", &[]);
    let r = srv.get("/pi.jpg");
    assert_eq!(r.status, 502, "{}", r.head);
    assert!(r.header("content-type").unwrap().starts_with("text/plain"));
    assert!(r.text().contains("not a JPEG"), "{:?}", r.text());
    srv.wait_log("not a JPEG", Duration::from_secs(5));
    srv.assert_alive();
}

#[test]
fn empty_output_answers_502() {
    let rig = Rig::new("still-empty");
    let srv = rig.start("exit 0", &[]);
    let r = srv.get("/pi.jpg");
    assert_eq!(r.status, 502);
    srv.assert_alive();
}

#[test]
fn truncated_jpeg_answers_502() {
    let rig = Rig::new("still-truncated");
    let half = rig.frame.len() / 2;
    let srv = rig.start(&format!("head -c {half} frame.jpg"), &[]);
    let r = srv.get("/pi.jpg");
    assert_eq!(r.status, 502, "{}", r.head);
    assert!(!r.body.starts_with(&[0xff, 0xd8]), "half a JPEG was served");
    assert!(r.text().contains("not a JPEG"), "{:?}", r.text());
    srv.wait_log("not a JPEG", Duration::from_secs(5));
    // Cut inside the headers, too.
    let srv2 = rig.start("head -c 40 frame.jpg", &[]);
    assert_eq!(srv2.get("/pi.jpg").status, 502);
    srv.assert_alive();
}

#[test]
fn next_request_after_a_failure_runs_a_fresh_capture() {
    let rig = Rig::new("still-recover");
    // Call 0 fails, 1 hangs, 2 prints garbage, then all is well.
    let srv = rig.start(
        "n=$(cat n 2>/dev/null || echo 0)\necho $((n+1)) > n\n\
         case $n in 0) exit 1;; 1) exec sleep 7;; 2) echo garbage;; *) cat frame.jpg;; esac",
        &["--still-timeout", "500ms"],
    );
    assert_eq!(srv.get("/pi.jpg").status, 503, "failure");
    assert_eq!(srv.get("/pi.jpg").status, 503, "timeout");
    assert_eq!(srv.get("/pi.jpg").status, 502, "garbage");
    let r = srv.get("/pi.jpg");
    assert_eq!(r.status, 200, "recovered");
    assert!(r.body == rig.frame);
    assert_eq!(rig.read("n").trim(), "4", "one run per request");
    assert_no_children(&srv, "after recovery");
    let status = status_json(&srv);
    assert!(status.contains("\"capture_errors\":3"), "{status}");
}

#[test]
fn tool_flooding_stderr_still_delivers_and_the_log_stays_short() {
    let rig = Rig::new("still-flood");
    // About 1 MB of stderr, far more than a pipe holds, before the image.
    let srv = rig.start(
        "yes 'warning: sensor noise, sensor noise, sensor noise' | head -c 1000000 >&2\ncat frame.jpg",
        &["--still-timeout", "5s"],
    );
    let r = srv.get("/pi.jpg");
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.body == rig.frame);
    let r = srv.get("/pi.jpg");
    assert_eq!(r.status, 200);
    std::thread::sleep(Duration::from_millis(200));
    let log = srv.log();
    let noise = log.lines().filter(|l| l.contains("sensor noise")).count();
    assert!(noise >= 1, "stderr is logged:\n{log}");
    assert!(noise <= 12, "{noise} stderr lines logged: not rate-limited");
    assert!(log.lines().count() < 40, "log too long:\n{log}");
    assert_no_children(&srv, "after flood");
}

// ---- processes ----

#[test]
fn capture_child_dies_on_sigterm_and_the_server_exits_0() {
    let rig = Rig::new("still-sigterm");
    // The tool's signal mask and ignored set, read once it is running (not
    // while the shell is between fork and wait, when it blocks signals
    // itself): a child that inherits picamd's blocked SIGTERM would never
    // die of it (STYLE §5).
    let mut srv = rig.start(
        "echo $$ > pid.tmp\nmv pid.tmp pid\nexec sleep 7",
        &["--still-timeout", "20s"],
    );
    let addr = srv.addr;
    let client = std::thread::spawn(move || {
        let mut s = connect(addr);
        s.write_all(b"GET /pi.jpg HTTP/1.1\r\nHost: t\r\n\r\n")
            .unwrap();
        read_until_closed(&mut s, Duration::from_secs(6))
    });
    assert!(
        eventually(Duration::from_secs(5), || !rig.read("pid").is_empty()),
        "capture never started"
    );
    let child: u32 = rig.read("pid").trim().parse().unwrap();
    assert!(children_of(srv.pid()).contains(&child));
    assert!(
        eventually(Duration::from_secs(5), || {
            std::fs::read_to_string(format!("/proc/{child}/comm")).unwrap_or_default() == "sleep\n"
        }),
        "the tool never got to exec"
    );
    let sigs = std::fs::read_to_string(format!("/proc/{child}/status")).unwrap();
    let mask = |name: &str| {
        let line = sigs.lines().find(|l| l.starts_with(name)).unwrap();
        u64::from_str_radix(line.split_whitespace().nth(1).unwrap(), 16).unwrap()
    };
    assert_eq!(
        mask("SigBlk:"),
        0,
        "capture child starts with signals blocked:\n{sigs}"
    );
    const SIGTERM_BIT: u64 = 1 << (15 - 1);
    const SIGPIPE_BIT: u64 = 1 << (13 - 1);
    assert_eq!(
        mask("SigIgn:") & (SIGTERM_BIT | SIGPIPE_BIT),
        0,
        "capture child ignores SIGTERM or SIGPIPE:\n{sigs}"
    );

    let t0 = Instant::now();
    let st = srv.terminate(Duration::from_secs(2));
    let took = t0.elapsed();
    let st = st.unwrap_or_else(|| panic!("server still running 2 s after SIGTERM:\n{}", srv.log()));
    assert_eq!(st.code(), Some(0), "exit status {st:?}");
    assert!(
        eventually(Duration::from_secs(1), || is_dead(child)),
        "capture child survived the server: {:?}",
        proc_state(child)
    );
    // The waiting client is not left hanging.
    let (_, closed) = client.join().unwrap();
    assert!(closed, "client left hanging after shutdown");
    assert!(took < Duration::from_secs(2));
}

#[test]
fn waiting_client_gets_503_when_the_server_stops() {
    let rig = Rig::new("still-stop-503");
    let mut srv = rig.start("echo $$ > pid\nexec sleep 7", &["--still-timeout", "20s"]);
    let addr = srv.addr;
    let client = std::thread::spawn(move || {
        let mut s = connect(addr);
        s.write_all(b"GET /pi.jpg HTTP/1.1\r\nHost: t\r\n\r\n")
            .unwrap();
        read_until_closed(&mut s, Duration::from_secs(6))
    });
    assert!(eventually(Duration::from_secs(5), || !rig
        .read("pid")
        .is_empty()));
    std::thread::sleep(Duration::from_millis(100));
    assert!(srv.terminate(Duration::from_secs(3)).is_some());
    let (bytes, closed) = client.join().unwrap();
    assert!(closed);
    let text = String::from_utf8_lossy(&bytes);
    assert!(
        text.starts_with("HTTP/1.1 503"),
        "a client waiting for a still got {text:?} on shutdown, not a 503"
    );
}

#[test]
fn no_zombies_after_many_captures() {
    let rig = Rig::new("still-zombies");
    let srv = rig.start(
        "n=$(cat n 2>/dev/null || echo 0)\necho $((n+1)) > n\n\
         case $((n % 4)) in 0) cat frame.jpg;; 1) exit 2;; 2) echo junk;; 3) sleep 0.1; cat frame.jpg;; esac",
        &["--still-timeout", "2s"],
    );
    let mut seen = Vec::new();
    for _ in 0..12 {
        seen.push(srv.get("/pi.jpg").status);
        for c in children_of(srv.pid()) {
            // A capture may be exiting right now; it must not stay a zombie.
            if proc_state(c) == Some('Z') {
                assert!(
                    eventually(Duration::from_secs(2), || proc_state(c) != Some('Z')),
                    "zombie {c} not reaped"
                );
            }
        }
    }
    assert_eq!(seen.iter().filter(|&&s| s == 200).count(), 6, "{seen:?}");
    assert_no_children(&srv, "after 12 captures");
    srv.assert_alive();
}
