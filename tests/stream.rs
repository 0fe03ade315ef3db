//! The live stream as its viewers see it (issue 3): many WebSocket (binary
//! and base64) and MJPEG viewers at once get whole JPEGs in the same order;
//! a viewer that never reads neither slows the others nor grows the server's
//! memory; the stream process starts with the first viewer, lingers after
//! the last, and is restarted when killed; `/pi.jpg` while streaming is a
//! stream frame and starts no still process; and the WebSocket rules a
//! viewer can hit (ping/pong, close handshake, 1002/1007/1009, server pings,
//! dead peers, `/echo`).
//!
//! Stream tools are shell scripts that `cat` canned JPEGs. Each frame carries
//! a COM segment `picamd-test frame=N`, so a test knows which frame it got.
//! Every script records its PID in `pids` and loops only while picamd (its
//! parent) lives, so a killed server leaves no tool behind.

mod common;
use common::*;

use std::io::{BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

// ---- fixtures ----

/// A capture tool: a shell script that appends its PID to `dir/pids` and runs
/// `body`, where `alive` is true while its parent (picamd) lives and `$D` is
/// `dir`. Returns the path, for `--stream-cmd`/`--still-cmd`.
fn tool(dir: &Path, name: &str, body: &str) -> String {
    let text = format!(
        "#!/bin/sh\nD={}\necho $$ >> \"$D/pids\"\nalive() {{ kill -0 $PPID 2>/dev/null; }}\n{body}\n",
        dir.display()
    );
    write_script(dir, name, &text).display().to_string()
}

/// `cat` every frame in `dir/frames` in a loop, `gap` seconds apart.
fn loop_frames(gap: &str) -> String {
    format!("while alive; do for f in \"$D\"/frames/*.jpg; do cat \"$f\"; sleep {gap}; done; done")
}

fn kill(sig: &str, pid: u32) {
    let ok = std::process::Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -{sig} {pid}");
}

/// Decodes standard base64 with padding (RFC 4648 §4); panics on anything
/// else. Written here so the test does not trust the server's encoder.
fn base64_decode(text: &[u8]) -> Vec<u8> {
    fn sextet(c: u8) -> u32 {
        u32::from(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("not base64: {c:#04x}"),
        })
    }
    assert_eq!(text.len() % 4, 0, "base64 length {}", text.len());
    let quads = text.len() / 4;
    let mut out = Vec::with_capacity(quads * 3);
    for (i, q) in text.chunks(4).enumerate() {
        let pad = q.iter().rev().take_while(|&&c| c == b'=').count();
        assert!(pad <= 2 && (pad == 0 || i + 1 == quads), "bad padding");
        let mut n = 0u32;
        for &c in &q[..4 - pad] {
            n = n << 6 | sextet(c);
        }
        n <<= 6 * pad as u32;
        out.extend_from_slice(&n.to_be_bytes()[1..4 - pad]);
    }
    out
}

#[test]
fn base64_decoder_matches_rfc_4648_vectors() {
    for (plain, enc) in [
        ("", ""),
        ("f", "Zg=="),
        ("fo", "Zm8="),
        ("foo", "Zm9v"),
        ("foob", "Zm9vYg=="),
        ("fooba", "Zm9vYmE="),
        ("foobar", "Zm9vYmFy"),
    ] {
        assert_eq!(base64_decode(enc.as_bytes()), plain.as_bytes());
    }
}

// ---- viewers ----

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Binary,
    Base64,
    Mjpeg,
}

enum Viewer {
    Binary(TcpStream),
    Base64(TcpStream),
    Mjpeg(BufReader<TcpStream>),
}

impl Viewer {
    fn open(addr: SocketAddr, kind: Kind) -> Viewer {
        match kind {
            Kind::Binary => Viewer::Binary(ws_connect(addr, "/stream")),
            Kind::Base64 => Viewer::Base64(ws_connect(addr, "/stream?encoding=base64")),
            Kind::Mjpeg => Viewer::Mjpeg(BufReader::new(open_mjpeg(addr))),
        }
    }

    /// The next frame, checked to be a whole JPEG.
    fn next_jpeg(&mut self) -> Vec<u8> {
        let jpeg = match self {
            Viewer::Binary(s) => {
                let (op, p) = ws_read_message(s);
                assert_eq!(op, 2, "binary message expected, got opcode {op}: {p:02x?}");
                p
            }
            Viewer::Base64(s) => {
                let (op, p) = ws_read_message(s);
                assert_eq!(op, 1, "text message expected, got opcode {op}");
                base64_decode(&p)
            }
            Viewer::Mjpeg(r) => mjpeg_read_part(r),
        };
        assert!(
            is_whole_jpeg(&jpeg),
            "not a whole JPEG ({} bytes)",
            jpeg.len()
        );
        jpeg
    }

    /// Frames received in `window`.
    fn count_frames(&mut self, window: Duration) -> usize {
        let end = Instant::now() + window;
        let mut n = 0;
        while Instant::now() < end {
            self.next_jpeg();
            n += 1;
        }
        n
    }
}

/// `GET /stream.mjpg`, checked up to the end of the response head.
fn open_mjpeg(addr: SocketAddr) -> TcpStream {
    let mut s = connect(addr);
    s.write_all(b"GET /stream.mjpg HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let head = read_response(&mut s, true);
    assert_eq!(head.status, 200, "{}", head.head);
    let ct = head.header("content-type").unwrap_or_default();
    assert!(ct.starts_with("multipart/x-mixed-replace"), "{ct}");
    s
}

/// Reads frames until a Close frame; returns its code (None if empty) and
/// reason.
fn read_close(s: &mut TcpStream) -> (Option<u16>, Vec<u8>) {
    loop {
        let (fin, op, p) = ws_read_frame(s);
        if op == 8 {
            assert!(fin, "control frames are never fragmented");
            if p.is_empty() {
                return (None, p);
            }
            assert!(p.len() >= 2, "close payload of 1 byte");
            return (Some(u16::from_be_bytes([p[0], p[1]])), p[2..].to_vec());
        }
    }
}

fn close_payload(code: u16, reason: &str) -> Vec<u8> {
    let mut p = code.to_be_bytes().to_vec();
    p.extend_from_slice(reason.as_bytes());
    p
}

/// Asserts the server closes the TCP connection (after what it sent).
fn assert_tcp_closes(s: &mut TcpStream) {
    let (_, closed) = read_until_closed(s, Duration::from_secs(3));
    assert!(closed, "the server did not close the TCP connection");
}

// ---- many viewers ----

#[test]
fn every_viewer_kind_gets_the_same_whole_frames_in_order() {
    const FRAMES: usize = 12;
    let dir = temp_dir("same-frames");
    let base = pattern_jpeg(640, 480);
    let frames: Vec<Vec<u8>> = (0..FRAMES).map(|n| tagged_frame(&base, n, 0)).collect();
    write_frames(&dir, &frames);
    // Frames flow only once every viewer is subscribed (`go` exists), so
    // every viewer must get every frame.
    let cmd = tool(
        &dir,
        "stream.sh",
        "while alive && [ ! -e \"$D/go\" ]; do sleep 0.02; done\n\
         for f in \"$D\"/frames/*.jpg; do cat \"$f\"; sleep 0.03; done\n\
         while alive; do sleep 0.1; done",
    );
    let srv = Server::start(&["--stream-cmd", &cmd]);
    let kinds = [
        Kind::Binary,
        Kind::Binary,
        Kind::Binary,
        Kind::Base64,
        Kind::Base64,
        Kind::Mjpeg,
        Kind::Mjpeg,
    ];
    let viewers: Vec<Viewer> = kinds.iter().map(|&k| Viewer::open(srv.addr, k)).collect();
    let status = srv.get("/status").text();
    for needle in ["\"ws\":3", "\"ws_base64\":2", "\"mjpeg\":2"] {
        assert!(status.contains(needle), "{needle} in {status}");
    }
    std::fs::write(dir.join("go"), b"").unwrap();
    let readers: Vec<_> = viewers
        .into_iter()
        .map(|mut v| std::thread::spawn(move || (0..FRAMES).map(|_| v.next_jpeg()).collect()))
        .collect();
    for (kind, r) in kinds.iter().zip(readers) {
        let got: Vec<Vec<u8>> = r.join().unwrap();
        let nos: Vec<Option<usize>> = got.iter().map(|f| frame_no(f)).collect();
        let want: Vec<Option<usize>> = (0..FRAMES).map(Some).collect();
        assert_eq!(nos, want, "{kind:?} viewer's frame sequence");
        for (n, f) in got.iter().enumerate() {
            assert!(
                *f == frames[n],
                "{kind:?} viewer: frame {n} differs from what the tool wrote"
            );
        }
    }
    assert_eq!(pids(&dir).len(), 1, "one stream process for all viewers");
}

/// Frames per window for each of `viewers`, read in parallel.
fn count_in_parallel(viewers: Vec<Viewer>, window: Duration) -> (Vec<Viewer>, Vec<usize>) {
    let handles: Vec<_> = viewers
        .into_iter()
        .map(|mut v| {
            std::thread::spawn(move || {
                let n = v.count_frames(window);
                (v, n)
            })
        })
        .collect();
    handles.into_iter().map(|h| h.join().unwrap()).unzip()
}

/// A stream of 1280x720 frames padded to ~250 KB at up to ~25 fps: big
/// enough that viewers which never read fill their socket buffers within a
/// fraction of a second, and that a server queueing frames for them would
/// grow by megabytes a second.
fn big_frame_server(name: &str) -> Server {
    let dir = temp_dir(name);
    let base = pattern_jpeg(1280, 720);
    let frames: Vec<Vec<u8>> = (0..4).map(|n| tagged_frame(&base, n, 250_000)).collect();
    write_frames(&dir, &frames);
    let cmd = tool(&dir, "stream.sh", &loop_frames("0.04"));
    Server::start(&["--stream-cmd", &cmd])
}

/// Viewers of every kind that connect and never read.
fn stalled_viewers(addr: SocketAddr) -> Vec<TcpStream> {
    vec![
        ws_connect(addr, "/stream"),
        ws_connect(addr, "/stream"),
        ws_connect(addr, "/stream?encoding=base64"),
        open_mjpeg(addr),
    ]
}

#[test]
fn a_viewer_that_never_reads_does_not_slow_the_others() {
    let srv = big_frame_server("slow");
    let window = Duration::from_millis(1200);
    let healthy = vec![
        Viewer::open(srv.addr, Kind::Binary),
        Viewer::open(srv.addr, Kind::Mjpeg),
    ];
    let (healthy, before) = count_in_parallel(healthy, window);
    assert!(
        before.iter().all(|&n| n >= 5),
        "baseline frame counts {before:?}"
    );

    let stalled = stalled_viewers(srv.addr);
    // Let their socket buffers fill, so the server sees them as stalled.
    std::thread::sleep(Duration::from_millis(400));
    let (_healthy, after) = count_in_parallel(healthy, window);
    for (b, a) in before.iter().zip(&after) {
        assert!(
            *a * 10 >= *b * 6,
            "frames per {window:?} without stalled viewers {before:?}, with {after:?}"
        );
    }
    let status = srv.get("/status").text();
    // The stalled viewers are still connected (and counted).
    for needle in ["\"ws\":3,", "\"ws_base64\":1,", "\"mjpeg\":2,"] {
        assert!(status.contains(needle), "{needle} in {status}");
    }
    assert!(
        !status.contains("\"frames_dropped_slow\":0,"),
        "stalled viewers skip frames: {status}"
    );
    drop(stalled);
    srv.assert_alive();
}

#[test]
fn viewers_that_never_read_do_not_grow_server_memory() {
    let srv = big_frame_server("rss");
    let mut healthy = Viewer::open(srv.addr, Kind::Binary);
    healthy.next_jpeg();
    let stalled = stalled_viewers(srv.addr);
    // Warm up: socket buffers fill, each stalled viewer pins its frames.
    let n_warm = healthy.count_frames(Duration::from_secs(1));
    let rss_before = rss_kib(srv.pid());
    let n = healthy.count_frames(Duration::from_millis(1500));
    let rss_after = rss_kib(srv.pid());
    assert!(
        n_warm + n >= 10,
        "the healthy viewer got {n_warm}+{n} frames"
    );
    let growth = rss_after.saturating_sub(rss_before);
    eprintln!("RSS {rss_before} -> {rss_after} KiB, frames {n_warm}+{n}");
    assert!(
        growth < 3 * 1024,
        "RSS grew {growth} KiB ({rss_before} -> {rss_after}) over 1.5 s with 4 stalled viewers"
    );
    drop(stalled);
    srv.assert_alive();
}

// ---- the stream process's life ----

#[test]
fn stream_process_starts_with_the_first_viewer_and_stops_a_linger_after_the_last() {
    let dir = temp_dir("linger");
    write_frames(&dir, &[tagged_frame(&pattern_jpeg(320, 240), 0, 0)]);
    let cmd = tool(&dir, "stream.sh", &loop_frames("0.03"));
    let srv = Server::start(&["--stream-cmd", &cmd, "--stream-linger", "600ms"]);
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        pids(&dir).is_empty(),
        "a stream process started with no viewer"
    );
    assert!(srv.get("/status").text().contains("\"state\":\"idle\""));

    let mut ws = Viewer::open(srv.addr, Kind::Binary);
    ws.next_jpeg();
    let pid = match pids(&dir)[..] {
        [p] => p,
        ref other => panic!("stream PIDs {other:?}"),
    };
    assert!(running(pid));
    assert!(
        children_of(srv.pid()).contains(&pid),
        "the tool is picamd's child"
    );
    let mut mjpeg = Viewer::open(srv.addr, Kind::Mjpeg);
    mjpeg.next_jpeg();
    drop(ws);
    mjpeg.next_jpeg();
    mjpeg.next_jpeg();
    drop(mjpeg);
    // Back within the linger: the same process serves the new viewer.
    let mut again = Viewer::open(srv.addr, Kind::Binary);
    again.next_jpeg();
    assert_eq!(
        pids(&dir),
        [pid],
        "one process across viewers within the linger"
    );
    drop(again);

    assert!(
        eventually(Duration::from_secs(4), || !running(pid)),
        "stream process {pid} still running after the last viewer and the linger"
    );
    assert!(
        eventually(Duration::from_secs(2), || proc_state(pid).is_none()),
        "stream process {pid} not reaped: state {:?}",
        proc_state(pid)
    );
    assert!(children_of(srv.pid()).is_empty());
    assert!(srv.log().contains("stream stopped"), "{}", srv.log());
    assert!(srv.get("/status").text().contains("\"state\":\"idle\""));
    assert_eq!(pids(&dir).len(), 1);
}

#[test]
fn a_killed_stream_process_is_restarted_while_viewers_remain() {
    let dir = temp_dir("restart");
    let base = pattern_jpeg(320, 240);
    write_frames(
        &dir,
        &(0..3)
            .map(|n| tagged_frame(&base, n, 0))
            .collect::<Vec<_>>(),
    );
    let cmd = tool(&dir, "stream.sh", &loop_frames("0.03"));
    let srv = Server::start(&["--stream-cmd", &cmd]);
    let mut ws = Viewer::open(srv.addr, Kind::Binary);
    let mut mjpeg = Viewer::open(srv.addr, Kind::Mjpeg);
    ws.next_jpeg();
    mjpeg.next_jpeg();
    let first = pids(&dir)[0];
    kill("KILL", first);

    let end = Instant::now() + Duration::from_secs(5);
    while pids(&dir).len() < 2 {
        assert!(Instant::now() < end, "no restart:\n{}", srv.log());
        ws.next_jpeg();
        mjpeg.next_jpeg();
    }
    let second = pids(&dir)[1];
    assert_ne!(first, second);
    // Frames from the new process reach the same viewers.
    for _ in 0..5 {
        ws.next_jpeg();
        mjpeg.next_jpeg();
    }
    assert!(running(second));
    assert!(
        eventually(Duration::from_secs(2), || proc_state(first).is_none()),
        "killed tool {first} not reaped: {:?}",
        proc_state(first)
    );
    let log = srv.log();
    assert_eq!(log.matches("killed by signal 9").count(), 1, "{log}");
    assert_eq!(log.matches("restarting in").count(), 1, "{log}");
    assert_eq!(pids(&dir).len(), 2);
}

#[test]
fn snapshot_while_streaming_is_a_stream_frame_and_starts_no_still_process() {
    let dir = temp_dir("snap-stream");
    let base = pattern_jpeg(320, 240);
    let frames: Vec<Vec<u8>> = (0..4).map(|n| tagged_frame(&base, n, 0)).collect();
    write_frames(&dir, &frames);
    let still = tagged_frame(&base, 999, 0);
    std::fs::write(dir.join("still.jpg"), &still).unwrap();
    let stream_cmd = tool(&dir, "stream.sh", &loop_frames("0.03"));
    let still_cmd = write_script(
        &dir,
        "still.sh",
        &format!(
            "#!/bin/sh\necho still >> {d}/stills\ncat {d}/still.jpg\n",
            d = dir.display()
        ),
    );
    let still_cmd = still_cmd.display().to_string();
    let srv = Server::start(&["--stream-cmd", &stream_cmd, "--still-cmd", &still_cmd]);
    let stills = || {
        std::fs::read_to_string(dir.join("stills"))
            .unwrap_or_default()
            .lines()
            .count()
    };

    // No viewer: the still command runs.
    let r = srv.get("/pi.jpg");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.body, still);
    assert_eq!(stills(), 1);

    let mut ws = Viewer::open(srv.addr, Kind::Binary);
    ws.next_jpeg();
    for _ in 0..4 {
        let r = srv.get("/pi.jpg");
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.header("content-type").as_deref(), Some("image/jpeg"));
        let n = frame_no(&r.body).expect("a tagged frame");
        assert!(
            n < frames.len(),
            "snapshot is frame {n}, not a stream frame"
        );
        assert!(
            r.body == frames[n],
            "snapshot differs from stream frame {n}"
        );
    }
    ws.next_jpeg();
    assert_eq!(
        stills(),
        1,
        "a still process ran while the stream was running"
    );
    assert_eq!(pids(&dir).len(), 1);
}

// ---- WebSocket rules ----

#[test]
fn ws_ping_gets_a_pong_with_the_same_payload() {
    let srv = Server::start(&["--camera", "test", "--fps", "10", "--ws-echo"]);
    for path in ["/stream", "/echo"] {
        let mut s = ws_connect(srv.addr, path);
        ws_send(&mut s, true, 9, b"are you there? \x00\xff");
        let pong = loop {
            let (fin, op, p) = ws_read_frame(&mut s);
            if op == 10 {
                assert!(fin);
                break p;
            }
            assert!(op == 2 || op == 9, "{path}: unexpected opcode {op}");
        };
        assert_eq!(pong, b"are you there? \x00\xff", "{path}");
    }
}

#[test]
fn ws_client_close_gets_the_same_code_back_and_the_connection_closes() {
    let srv = Server::start(&["--camera", "test", "--fps", "10", "--ws-echo"]);
    let mut s = ws_connect(srv.addr, "/stream");
    Viewer::Binary(s.try_clone().unwrap()).next_jpeg();
    ws_send(&mut s, true, 8, &close_payload(4000, "bye"));
    assert_eq!(read_close(&mut s).0, Some(4000));
    assert_tcp_closes(&mut s);

    // RFC 6455 §7.1.5: no code received, none sent back.
    let mut s = ws_connect(srv.addr, "/echo");
    ws_send(&mut s, true, 8, b"");
    assert_eq!(read_close(&mut s).0, None);
    assert_tcp_closes(&mut s);
    srv.assert_alive();
}

#[test]
fn ws_unmasked_client_frame_gets_close_1002() {
    let srv = Server::start(&["--camera", "test", "--fps", "10", "--ws-echo"]);
    for path in ["/stream", "/echo"] {
        let mut s = ws_connect(srv.addr, path);
        // RFC 6455 §5.1: a client MUST mask every frame.
        s.write_all(&[0x81, 0x05, b'H', b'e', b'l', b'l', b'o'])
            .unwrap();
        assert_eq!(read_close(&mut s).0, Some(1002), "{path}");
        assert_tcp_closes(&mut s);
    }
    srv.assert_alive();
}

#[test]
fn ws_oversized_messages_get_close_1009() {
    let srv = Server::start(&[
        "--camera",
        "test",
        "--fps",
        "10",
        "--ws-echo",
        "--ws-max-message",
        "1000",
    ]);
    let mut s = ws_connect(srv.addr, "/echo");
    ws_send(&mut s, true, 2, &[7; 1000]);
    assert_eq!(
        ws_read_message(&mut s),
        (2, vec![7; 1000]),
        "at the limit: echoed"
    );
    ws_send(&mut s, true, 2, &[7; 1001]);
    assert_eq!(read_close(&mut s).0, Some(1009));
    assert_tcp_closes(&mut s);

    // Fragments count together.
    let mut s = ws_connect(srv.addr, "/echo");
    ws_send(&mut s, false, 1, &[b'a'; 600]);
    ws_send(&mut s, true, 0, &[b'a'; 600]);
    assert_eq!(read_close(&mut s).0, Some(1009));
    assert_tcp_closes(&mut s);
    drop(srv);

    // /stream caps client messages at 64 KiB whatever the flag says.
    let srv = Server::start(&[
        "--camera",
        "test",
        "--fps",
        "10",
        "--ws-echo",
        "--ws-max-message",
        "1M",
    ]);
    let big = vec![b'x'; 70_000];
    let mut s = ws_connect(srv.addr, "/echo");
    ws_send(&mut s, true, 2, &big);
    assert_eq!(
        ws_read_message(&mut s),
        (2, big.clone()),
        "/echo honours the flag"
    );
    let mut s = ws_connect(srv.addr, "/stream");
    ws_send(&mut s, true, 2, &big);
    assert_eq!(read_close(&mut s).0, Some(1009));
    assert_tcp_closes(&mut s);
    srv.assert_alive();
}

#[test]
fn ws_invalid_utf8_text_gets_close_1007() {
    let srv = Server::start(&["--camera", "test", "--ws-echo"]);
    // "é" split across two fragments is valid UTF-8 once reassembled.
    let mut s = ws_connect(srv.addr, "/echo");
    ws_send(&mut s, false, 1, b"caf\xc3");
    ws_send(&mut s, true, 0, b"\xa9!");
    assert_eq!(ws_read_message(&mut s), (1, "café!".as_bytes().to_vec()));
    ws_send(&mut s, true, 1, b"ok \xc3\x28");
    assert_eq!(read_close(&mut s).0, Some(1007));
    assert_tcp_closes(&mut s);

    let mut s = ws_connect(srv.addr, "/stream");
    ws_send(&mut s, true, 1, b"\xff\xfe");
    assert_eq!(read_close(&mut s).0, Some(1007));
    assert_tcp_closes(&mut s);
    srv.assert_alive();
}

#[test]
fn ws_server_pings_and_closes_a_silent_peer() {
    let srv = Server::start(&[
        "--camera",
        "test",
        "--ws-echo",
        "--ping-interval",
        "300ms",
        "--dead-peer-timeout",
        "900ms",
    ]);
    let addr = srv.addr;
    // A silent peer: reads everything, sends nothing.
    let silent = std::thread::spawn(move || {
        let mut s = ws_connect(addr, "/echo");
        let start = Instant::now();
        let (bytes, closed) = read_until_closed(&mut s, Duration::from_secs(4));
        (bytes, closed, start.elapsed())
    });
    // A live peer answers every ping, and outlives the dead-peer timeout.
    let mut s = ws_connect(addr, "/echo");
    s.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut pings = 0;
    let end = Instant::now() + Duration::from_millis(1600);
    while Instant::now() < end {
        let mut b = [0u8; 1];
        if s.peek(&mut b).is_err() {
            continue; // nothing yet (timeout)
        }
        s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        let (_, op, p) = ws_read_frame(&mut s);
        assert_eq!(op, 9, "only pings expected, got {op}");
        pings += 1;
        ws_send(&mut s, true, 10, &p);
        s.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
    }
    assert!(pings >= 2, "{pings} pings in 1.6 s at a 300 ms interval");
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    ws_send(&mut s, true, 1, b"still here");
    assert_eq!(ws_read_message(&mut s), (1, b"still here".to_vec()));

    let (bytes, closed, after) = silent.join().unwrap();
    assert!(closed, "silent peer not closed");
    assert!(
        after >= Duration::from_millis(800),
        "closed after {after:?}, before the timeout"
    );
    // What it got before the close: pings (0x89 frames), nothing else.
    assert!(bytes.first() == Some(&0x89), "{bytes:02x?}");
}

#[test]
fn echo_exists_only_with_ws_echo_and_reassembles_fragments() {
    let srv = Server::start(&["--camera", "test"]);
    let mut s = srv.connect();
    let req = format!(
        "GET /echo HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {WS_KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n",
        srv.addr
    );
    s.write_all(req.as_bytes()).unwrap();
    assert_eq!(read_response(&mut s, false).status, 404);
    assert_eq!(srv.get("/echo").status, 404);
    drop(srv);

    let srv = Server::start(&["--camera", "test", "--ws-echo"]);
    let mut s = ws_connect(srv.addr, "/echo");
    ws_send(&mut s, true, 1, b"Hello");
    assert_eq!(ws_read_message(&mut s), (1, b"Hello".to_vec()));
    ws_send(&mut s, true, 2, &[0, 1, 2, 255]);
    assert_eq!(ws_read_message(&mut s), (2, vec![0, 1, 2, 255]));
    // Fragments, with a ping between them (§5.4: control frames may be
    // injected in the middle of a fragmented message).
    ws_send(&mut s, false, 1, b"Hel");
    ws_send(&mut s, true, 9, b"mid");
    ws_send(&mut s, false, 0, b"l");
    ws_send(&mut s, true, 0, b"o");
    assert_eq!(ws_read_frame(&mut s), (true, 10, b"mid".to_vec()));
    assert_eq!(ws_read_frame(&mut s), (true, 1, b"Hello".to_vec()));
    let big: Vec<u8> = (0..20_000u32).map(|i| i as u8).collect();
    ws_send(&mut s, false, 2, &big[..7000]);
    ws_send(&mut s, false, 0, &big[7000..7001]);
    ws_send(&mut s, true, 0, &big[7001..]);
    assert_eq!(ws_read_message(&mut s), (2, big));
    ws_send(&mut s, true, 8, &close_payload(1000, ""));
    assert_eq!(read_close(&mut s).0, Some(1000));
    assert_tcp_closes(&mut s);
}
