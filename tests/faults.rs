//! Faults picamd must survive (issue 4, item 5): a stream tool that prints
//! garbage, stops mid-frame, floods stderr, hangs, exits at once or writes
//! an oversized frame; clients that reset or half-close; SIGTERM and SIGINT
//! while streaming; running out of file descriptors. Each case checks what
//! the clients see, that the trouble is logged once (not per frame), and
//! that the server serves a normal request afterwards.
//!
//! Stream tools are shell scripts that `cat` canned JPEGs, each tagged with
//! a COM segment `picamd-test frame=N`. They record their PIDs in `pids` and
//! loop only while picamd (their parent) lives.

mod common;
use common::*;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

// ---- fixtures (as in tests/stream.rs) ----

/// `n` small tagged frames, written as `dir/frames/fNNNN.jpg`.
fn small_frames(dir: &Path, n: usize) -> Vec<Vec<u8>> {
    let base = pattern_jpeg(320, 240);
    let frames: Vec<Vec<u8>> = (0..n).map(|i| tagged_frame(&base, i, 0)).collect();
    write_frames(dir, &frames);
    frames
}

/// A capture tool script: appends its PID to `dir/pids`, then runs `body`
/// (where `alive` is true while picamd lives, and `$D` is `dir`).
fn tool(dir: &Path, body: &str) -> String {
    let text = format!(
        "#!/bin/sh\nD={}\necho $$ >> \"$D/pids\"\nalive() {{ kill -0 $PPID 2>/dev/null; }}\n{body}\n",
        dir.display()
    );
    write_script(dir, "tool.sh", &text).display().to_string()
}

/// One `"key":value` of picamd's flat status JSON (keys are unique there).
fn status_value(status: &str, key: &str) -> String {
    let needle = format!("\"{key}\":");
    let at = status
        .find(&needle)
        .unwrap_or_else(|| panic!("no {key} in {status}"))
        + needle.len();
    let rest = &status[at..];
    let end = if let Some(text) = rest.strip_prefix('"') {
        text.find('"').map_or(rest.len(), |i| i + 2)
    } else {
        rest.find([',', '}']).unwrap_or(rest.len())
    };
    rest[..end].to_string()
}

fn status_u64(srv: &Server, key: &str) -> u64 {
    let s = srv.get("/status").text();
    status_value(&s, key)
        .parse()
        .unwrap_or_else(|_| panic!("{key} in {s}"))
}

/// Binary WebSocket viewer: the next frame, checked to be a whole JPEG.
fn ws_next_jpeg(s: &mut TcpStream) -> Vec<u8> {
    let (op, p) = ws_read_message(s);
    assert_eq!(op, 2, "binary message expected, got opcode {op}: {p:02x?}");
    assert!(is_whole_jpeg(&p), "not a whole JPEG ({} bytes)", p.len());
    p
}

fn open_mjpeg(addr: SocketAddr) -> BufReader<TcpStream> {
    let mut s = connect(addr);
    s.write_all(b"GET /stream.mjpg HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let head = read_response(&mut s, true);
    assert_eq!(head.status, 200, "{}", head.head);
    BufReader::new(s)
}

fn mjpeg_next_jpeg(r: &mut BufReader<TcpStream>) -> Vec<u8> {
    let p = mjpeg_read_part(r);
    assert!(is_whole_jpeg(&p), "not a whole JPEG ({} bytes)", p.len());
    p
}

/// Log lines containing `needle`.
fn log_lines(srv: &Server, needle: &str) -> Vec<String> {
    srv.log()
        .lines()
        .filter(|l| l.contains(needle))
        .map(String::from)
        .collect()
}

/// Makes the next close of `s` send a TCP RST (SO_LINGER with timeout 0).
fn reset_on_close(s: &TcpStream) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    nix::sys::socket::setsockopt(s, nix::sys::socket::sockopt::Linger, &linger).unwrap();
}

// ---- stream tool faults ----

#[test]
fn garbage_between_frames_is_skipped_counted_and_logged_once() {
    let dir = temp_dir("garbage");
    let frames = small_frames(&dir, 3);
    // Text, a lone 0xFF and bytes that look like markers but are not SOI.
    let cmd = tool(
        &dir,
        "while alive; do for f in \"$D\"/frames/*.jpg; do\n\
           printf 'not a frame \\377\\000 \\377\\331 junk\\n'; cat \"$f\"; sleep 0.02\n\
         done; done",
    );
    let srv = Server::start(&["--stream-cmd", &cmd]);
    let mut ws = ws_connect(srv.addr, "/stream");
    let mut seen = Vec::new();
    for _ in 0..9 {
        let f = ws_next_jpeg(&mut ws);
        let n = frame_no(&f).expect("a tagged frame");
        assert!(f == frames[n], "frame {n} altered");
        seen.push(n);
    }
    assert!(seen.windows(2).any(|w| w[0] != w[1]), "{seen:?}");
    assert!(
        status_u64(&srv, "garbage_bytes") >= 9 * 20,
        "garbage not counted"
    );
    assert_eq!(
        log_lines(&srv, "not JPEG").len(),
        1,
        "garbage logged once, not per frame:\n{}",
        srv.log()
    );
    srv.assert_alive();
}

#[test]
fn a_tool_that_stops_mid_frame_is_restarted_and_viewers_get_only_whole_frames() {
    let dir = temp_dir("midframe");
    let frames = small_frames(&dir, 3);
    // Two whole frames, half of the third, then a clean exit.
    let cmd = tool(
        &dir,
        "cat \"$D/frames/f0000.jpg\" \"$D/frames/f0001.jpg\"\n\
         head -c 1500 \"$D/frames/f0002.jpg\"\nexit 0",
    );
    let srv = Server::start(&["--stream-cmd", &cmd]);
    let mut ws = ws_connect(srv.addr, "/stream");
    let mut mjpeg = open_mjpeg(srv.addr);
    // Six frames need three runs of the tool.
    for _ in 0..6 {
        for f in [ws_next_jpeg(&mut ws), mjpeg_next_jpeg(&mut mjpeg)] {
            let n = frame_no(&f).expect("a tagged frame");
            assert!(n < 2, "the truncated frame {n} was delivered");
            assert!(f == frames[n], "frame {n} altered");
        }
    }
    assert!(pids(&dir).len() >= 3, "pids {:?}", pids(&dir));
    assert!(status_u64(&srv, "stream_restarts") >= 2);
    assert!(
        status_u64(&srv, "frames_dropped_corrupt") >= 2,
        "truncated frames counted"
    );
    assert!(log_lines(&srv, "restarting in").len() >= 2, "{}", srv.log());
    srv.assert_alive();
}

#[test]
fn a_tool_flooding_stderr_keeps_streaming_and_the_log_stays_small() {
    let dir = temp_dir("stderr");
    let frames = small_frames(&dir, 2);
    // 256 KiB of stderr lines per frame: 4 MiB over the frames read below.
    // A server that did not drain stderr would block the tool on a full pipe.
    let cmd = tool(
        &dir,
        "while alive; do for f in \"$D\"/frames/*.jpg; do\n\
           cat \"$f\"; yes 'flood: the tool complains about something' | head -c 262144 >&2\n\
         done; done",
    );
    let srv = Server::start(&["--stream-cmd", &cmd]);
    let mut ws = ws_connect(srv.addr, "/stream");
    for _ in 0..16 {
        let f = ws_next_jpeg(&mut ws);
        let n = frame_no(&f).expect("a tagged frame");
        assert!(f == frames[n]);
    }
    let flood = log_lines(&srv, "flood:");
    assert!(!flood.is_empty(), "stderr is logged:\n{}", srv.log());
    assert!(
        flood.len() <= 10,
        "{} stderr lines logged, not rate-limited",
        flood.len()
    );
    let log = srv.log();
    assert!(log.len() < 16 * 1024, "log is {} bytes:\n{log}", log.len());
    srv.assert_alive();
}

#[test]
fn a_tool_that_gives_no_frames_is_restarted_and_logged_once_per_stall() {
    let dir = temp_dir("hang");
    let cmd = tool(&dir, "while alive; do sleep 0.05; done");
    let srv = Server::start(&["--stream-cmd", &cmd, "--stream-stall-timeout", "500ms"]);
    let _ws = ws_connect(srv.addr, "/stream");
    assert!(
        eventually(Duration::from_secs(5), || pids(&dir).len() >= 2),
        "a silent tool was not restarted:\n{}",
        srv.log()
    );
    let p = pids(&dir);
    let stalls = log_lines(&srv, "gave no frame");
    assert!(
        !stalls.is_empty() && stalls.len() <= p.len(),
        "{} tools, {} stall lines:\n{}",
        p.len(),
        stalls.len(),
        srv.log()
    );
    assert!(
        eventually(Duration::from_secs(3), || !running(p[0])),
        "the hung tool {} was left running",
        p[0]
    );
    // One hang, one error: /status names the stall, not the SIGTERM picamd
    // itself sent to stop the tool.
    let status = srv.get("/status").text();
    assert!(
        status_value(&status, "last_error").contains("gave no frame"),
        "{status}\n{}",
        srv.log()
    );
    assert!(status_u64(&srv, "capture_errors") >= 1);
    // The line names the timeout as configured, not rounded to "0 s".
    assert!(
        !stalls[0].contains("for 0 s"),
        "stall log line misstates the 500 ms timeout: {:?}",
        stalls[0]
    );
    srv.assert_alive();
}

#[test]
fn a_tool_that_exits_at_once_is_restarted_with_growing_backoff() {
    let dir = temp_dir("exits");
    let cmd = tool(&dir, "echo 'no camera here' >&2\nexit 3");
    let srv = Server::start(&["--stream-cmd", &cmd]);
    let mut ws = ws_connect(srv.addr, "/stream");
    assert!(
        eventually(Duration::from_secs(5), || log_lines(&srv, "restarting in")
            .len()
            >= 3),
        "{}",
        srv.log()
    );
    let delays: Vec<u64> = log_lines(&srv, "restarting in")
        .iter()
        .map(|l| {
            let after = l.split("restarting in").nth(1).unwrap();
            let digits: String = after
                .trim_start()
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            digits.parse().unwrap_or_else(|_| panic!("delay in {l:?}"))
        })
        .collect();
    assert!(
        delays.windows(2).all(|w| w[0] < w[1]),
        "delays {delays:?} do not grow"
    );
    assert!(pids(&dir).len() >= 3);
    let status = srv.get("/status").text();
    assert!(
        status_value(&status, "last_error").contains("status 3"),
        "{status}"
    );
    assert!(status_u64(&srv, "capture_errors") >= 3);
    // The server serves, and the viewer is still connected.
    srv.assert_alive();
    ws_send(&mut ws, true, 9, b"still there?");
    let (_, op, p) = ws_read_frame(&mut ws);
    assert_eq!((op, p.as_slice()), (10, &b"still there?"[..]));
}

#[test]
fn a_frame_over_max_frame_bytes_is_dropped_and_logged_once() {
    let dir = temp_dir("oversize");
    let base = pattern_jpeg(320, 240);
    // Small, big, small, big: the big ones (~100 KB) are over the 50 KiB limit.
    let frames: Vec<Vec<u8>> = (0..4)
        .map(|n| tagged_frame(&base, n, if n.is_multiple_of(2) { 0 } else { 100_000 }))
        .collect();
    write_frames(&dir, &frames);
    let cmd = tool(
        &dir,
        "while alive; do for f in \"$D\"/frames/*.jpg; do cat \"$f\"; sleep 0.02; done; done",
    );
    let srv = Server::start(&["--stream-cmd", &cmd, "--max-frame-bytes", "50K"]);
    let mut ws = ws_connect(srv.addr, "/stream");
    for _ in 0..6 {
        let f = ws_next_jpeg(&mut ws);
        let n = frame_no(&f).expect("a tagged frame");
        assert!(
            n.is_multiple_of(2),
            "oversized frame {n} ({} bytes) delivered",
            f.len()
        );
        assert!(f == frames[n]);
    }
    assert!(status_u64(&srv, "frames_dropped_oversize") >= 2);
    assert_eq!(
        log_lines(&srv, "larger than --max-frame-bytes").len(),
        1,
        "{}",
        srv.log()
    );
    srv.assert_alive();
}

// ---- client faults ----

#[test]
fn clients_that_reset_mid_response_do_not_disturb_the_others() {
    let dir = temp_dir("reset");
    let base = pattern_jpeg(640, 480);
    let frames: Vec<Vec<u8>> = (0..2).map(|n| tagged_frame(&base, n, 400_000)).collect();
    write_frames(&dir, &frames);
    let cmd = tool(
        &dir,
        "while alive; do for f in \"$D\"/frames/*.jpg; do cat \"$f\"; sleep 0.03; done; done",
    );
    let srv = Server::start(&["--stream-cmd", &cmd]);
    let mut healthy = ws_connect(srv.addr, "/stream");
    ws_next_jpeg(&mut healthy);
    for round in 0..3 {
        // A WebSocket and an MJPEG viewer that read part of a frame, and a
        // snapshot request, all reset.
        let mut ws = ws_connect(srv.addr, "/stream");
        let mut part = [0u8; 1000];
        ws.read_exact(&mut part).unwrap();
        let mjpeg = open_mjpeg(srv.addr);
        let mut m = mjpeg.into_inner();
        m.read_exact(&mut part).unwrap();
        let mut snap = srv.connect();
        snap.write_all(b"GET /pi.jpg HTTP/1.1\r\nHost: t\r\n\r\n")
            .unwrap();
        snap.read_exact(&mut part).unwrap();
        for s in [&ws, &m, &snap] {
            reset_on_close(s);
        }
        drop((ws, m, snap));
        for _ in 0..3 {
            let f = ws_next_jpeg(&mut healthy);
            assert!(
                frame_no(&f).is_some_and(|n| f == frames[n]),
                "round {round}"
            );
        }
    }
    // The reset connections are gone: the healthy viewer and this request.
    assert!(
        eventually(Duration::from_secs(3), || srv
            .get("/status")
            .text()
            .contains("\"total\":2,")),
        "{}",
        srv.get("/status").text()
    );
    srv.assert_alive();
}

#[test]
fn a_half_closed_client_still_gets_its_whole_snapshot() {
    // curl-style one-shot: request, then FIN, then read. The response is
    // bigger than the socket buffers, so part of it is still queued in the
    // server when it sees the FIN.
    let dir = temp_dir("halfclose");
    let big = tagged_frame(&pattern_jpeg(320, 240), 7, 8 << 20);
    std::fs::write(dir.join("big.jpg"), &big).unwrap();
    let cmd = tool(&dir, "cat \"$D/big.jpg\"\nwhile alive; do sleep 0.05; done");
    let srv = Server::start(&["--stream-cmd", &cmd, "--max-frame-bytes", "16M"]);
    for conn in ["close", "keep-alive"] {
        let mut s = srv.connect();
        let req = format!("GET /pi.jpg HTTP/1.1\r\nHost: t\r\nConnection: {conn}\r\n\r\n");
        s.write_all(req.as_bytes()).unwrap();
        s.shutdown(std::net::Shutdown::Write).unwrap();
        // Read late, so the server cannot write it all at once.
        std::thread::sleep(Duration::from_millis(300));
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            assert_eq!(s.read(&mut byte).unwrap(), 1, "EOF in head");
            head.push(byte[0]);
        }
        let head = String::from_utf8(head).unwrap();
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        let (body, closed) = read_until_closed(&mut s, Duration::from_secs(3));
        assert_eq!(
            body.len(),
            big.len(),
            "Connection: {conn}: snapshot cut short after a half-close"
        );
        assert!(body == big);
        // A half-closed connection can carry no further request: once the
        // answer is out, the server closes it rather than idling.
        assert!(closed, "Connection: {conn}: not closed after the answer");
    }
    srv.assert_alive();
}

// ---- signals ----

/// Streams to three viewers, sends `signal`, and checks the shutdown: 1001
/// for WebSockets, MJPEG ended, the tool stopped and reaped, exit 0 within
/// two seconds. With `ignores_term` the tool ignores SIGTERM (it must get
/// SIGKILL).
fn stop_while_streaming(signal: &str, ignores_term: bool) {
    let dir = temp_dir("signal");
    small_frames(&dir, 2);
    // No `alive` check, and a failed write does not end it: the tool must
    // be stopped by picamd's signals, not by its closed pipe or a dead
    // parent. It ends by itself after ~8 s at worst.
    let trap = if ignores_term { "trap '' TERM\n" } else { "" };
    let cmd = tool(
        &dir,
        &format!(
            "{trap}i=0\nwhile [ $i -lt 200 ]; do i=$((i+1))\n\
             for f in \"$D\"/frames/*.jpg; do cat \"$f\"; sleep 0.02; done; done"
        ),
    );
    let mut srv = Server::start(&["--stream-cmd", &cmd]);
    let mut ws = ws_connect(srv.addr, "/stream");
    let mut b64 = ws_connect(srv.addr, "/stream?encoding=base64");
    let mut mjpeg = open_mjpeg(srv.addr);
    ws_next_jpeg(&mut ws);
    assert_eq!(ws_read_message(&mut b64).0, 1);
    mjpeg_next_jpeg(&mut mjpeg);
    let tool_pid = pids(&dir)[0];
    assert_eq!(children_of(srv.pid()), [tool_pid]);

    let sent = Instant::now();
    let ok = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(srv.pid().to_string())
        .status()
        .unwrap()
        .success();
    assert!(ok);
    for s in [&mut ws, &mut b64] {
        let code = loop {
            let (_, op, p) = ws_read_frame(s);
            if op == 8 {
                assert!(p.len() >= 2, "close without a code");
                break u16::from_be_bytes([p[0], p[1]]);
            }
        };
        assert_eq!(code, 1001, "{signal}: WebSocket close code");
        // RFC 6455 §5.5.1: answer the Close; the server then closes TCP.
        ws_send(s, true, 8, &1001u16.to_be_bytes());
        let (_, closed) = read_until_closed(s, Duration::from_secs(3));
        assert!(closed, "{signal}: WebSocket not closed");
    }
    drop((ws, b64));
    let mut rest = Vec::new();
    let closed = loop {
        let mut buf = [0u8; 65536];
        match mjpeg.read(&mut buf) {
            Ok(0) => break true,
            Ok(n) => rest.extend_from_slice(&buf[..n]),
            Err(_) => break false,
        }
    };
    assert!(closed, "{signal}: MJPEG stream did not end");
    drop(mjpeg);

    let end = sent + Duration::from_secs(2);
    let status = loop {
        if let Some(st) = srv.child.try_wait().unwrap() {
            break st;
        }
        assert!(
            Instant::now() < end,
            "{signal}: still running 2 s later:\n{}",
            srv.log()
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    assert_eq!(
        status.code(),
        Some(0),
        "{signal}: exit status\n{}",
        srv.log()
    );
    // picamd stopped and reaped its tool before exiting.
    assert!(
        !running(tool_pid),
        "{signal}: the stream tool outlived the server (state {:?})",
        proc_state(tool_pid)
    );
    assert!(
        eventually(Duration::from_secs(1), || proc_state(tool_pid).is_none()),
        "{signal}: tool left as a zombie"
    );
    assert!(srv.log().contains("stopped"), "{}", srv.log());
}

#[test]
fn sigterm_while_streaming_closes_viewers_stops_the_tool_and_exits_0() {
    stop_while_streaming("TERM", false);
}

#[test]
fn sigint_while_streaming_kills_a_tool_that_ignores_sigterm_and_exits_0() {
    stop_while_streaming("INT", true);
}

// ---- file descriptors ----

/// picamd under a file-descriptor limit (`ulimit -n`), with its log.
struct Limited {
    child: Child,
    addr: SocketAddr,
    log: Arc<Mutex<String>>,
}

impl Limited {
    fn start(nofile: u32, args: &[&str]) -> Limited {
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(format!("ulimit -n {nofile} && exec \"$0\" \"$@\""))
            .arg(env!("CARGO_BIN_EXE_picamd"))
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let log2 = log.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(a) = line.strip_prefix("listening on http://") {
                    let _ = tx.send(a.trim_end_matches('/').to_string());
                }
                let mut l = log2.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
        });
        let addr = rx
            .recv_timeout(IO_TIMEOUT)
            .unwrap_or_else(|_| panic!("no start:\n{}", log.lock().unwrap()))
            .parse()
            .unwrap();
        Limited { child, addr, log }
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// utime + stime, in seconds.
    fn cpu_secs(&self) -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap();
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .unwrap()
            .1
            .split_whitespace()
            .collect();
        // After the name: state is field 3, utime 14, stime 15.
        let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
        ticks as f64 / 100.0 // USER_HZ, 100 on Linux
    }
}

impl Drop for Limited {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("---- picamd stderr ----\n{}", self.log());
        }
    }
}

#[test]
fn out_of_file_descriptors_the_server_neither_spins_nor_dies() {
    let srv = Limited::start(40, &["--camera", "test", "--max-clients", "500"]);
    let pid = srv.child.id();
    // More connections than descriptors: the kernel completes them all, the
    // server accepts until EMFILE.
    let mut conns: Vec<TcpStream> = (0..60).map(|_| connect(srv.addr)).collect();
    assert!(
        eventually(Duration::from_secs(5), || srv.log().contains("accept:")),
        "no accept error logged:\n{}",
        srv.log()
    );
    let fds = fd_count(pid);
    assert!(fds >= 38, "only {fds} fds open: not saturated");

    // Saturated for a second: the loop must sleep, not spin on the listener.
    let cpu0 = srv.cpu_secs();
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs(1));
    let cpu = srv.cpu_secs() - cpu0;
    let wall = t0.elapsed().as_secs_f64();
    eprintln!("{cpu:.2} s of CPU in {wall:.2} s while out of fds");
    assert!(
        cpu < 0.5,
        "{cpu:.2} s of CPU in {wall:.2} s while out of fds"
    );
    // An accepted connection is still served meanwhile.
    conns[0]
        .write_all(b"GET /status HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    assert_eq!(read_response(&mut conns[0], false).status, 200);
    let accept_lines = srv.log().matches("accept:").count();
    assert!(
        accept_lines <= 3,
        "EMFILE logged {accept_lines} times in ~1 s: once is enough\n{}",
        srv.log()
    );

    // Once connections close, it serves new ones again.
    conns.clear();
    let served = eventually(Duration::from_secs(5), || {
        let mut s = connect(srv.addr);
        s.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
        s.write_all(b"GET /status HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            .is_ok()
            && {
                let mut buf = Vec::new();
                let _ = s.read_to_end(&mut buf);
                buf.starts_with(b"HTTP/1.1 200")
            }
    });
    assert!(served, "not serving after fds freed:\n{}", srv.log());
    assert!(running(pid), "picamd died");
}
