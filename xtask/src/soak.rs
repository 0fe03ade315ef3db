//! `cargo xtask soak [--seconds N]` (default 600): picamd (release, test
//! pattern) under a mixed, hostile load for N seconds, with its RSS and fd
//! count sampled at the start, every 30 s and at the end.
//!
//! The load, all to 127.0.0.1 and all bounded in time (every socket has a
//! timeout, every loop ends at the deadline):
//! - WebSocket viewers (binary and `?encoding=base64`) that join, read a
//!   random number of whole frames, check each is a JPEG, and leave with a
//!   Close handshake or by dropping the connection;
//! - MJPEG viewers that read a random number of parts and drop;
//! - slow viewers (WebSocket and MJPEG) that never read, replaced every
//!   minute, and slowloris heads that never finish;
//! - bad requests: garbage, an oversized head, an over-long target, a bad
//!   version, a body, CL+TE, pipelining, a half-close, and WebSocket frames
//!   that break RFC 6455 (unmasked, reserved bits, bad opcode, oversized,
//!   long control frame);
//! - a health check: `/pi.jpg` and `/status` every second.
//!
//! Short `--ping-interval`, `--dead-peer-timeout`, `--header-timeout` and
//! `--idle-timeout` make the server's timers fire many times in one run.
//! Fails if the server dies, if a frame arrives corrupted, if the server
//! stops answering, or if SIGTERM does not end it with status 0. RSS and fd
//! growth are reported, not asserted (see the table).

use std::error::Error;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crate::util::{self, OP_BINARY, OP_CLOSE, OP_TEXT, Server, WsClient};

const DEFAULT_SECONDS: u64 = 600;
const SAMPLE_EVERY: Duration = Duration::from_secs(30);
/// Every client socket operation gives up after this long.
const IO_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Default)]
struct Stats {
    ws_sessions: AtomicU64,
    ws_frames: AtomicU64,
    mjpeg_sessions: AtomicU64,
    mjpeg_frames: AtomicU64,
    slow_viewers: AtomicU64,
    bad_requests: AtomicU64,
    health_checks: AtomicU64,
    /// A frame that is not a whole JPEG, or a bad request answered 2xx.
    corrupt: AtomicU64,
    /// Requests the server did not answer (time-outs, refused connects).
    unanswered: AtomicU64,
    /// Health checks that failed.
    health_failed: AtomicU64,
}

impl Stats {
    fn add(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
    fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

struct Sample {
    at: f64,
    label: &'static str,
    rss_kib: Option<u64>,
    fds: Option<usize>,
    ws: u64,
    mjpeg: u64,
    bad: u64,
}

pub fn run(args: &[String]) -> Result<(), Box<dyn Error>> {
    let mut seconds = DEFAULT_SECONDS;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--seconds" => {
                let v = it.next().ok_or("--seconds needs a value")?;
                seconds = v.parse().map_err(|_| format!("bad --seconds {v:?}"))?;
            }
            other => return Err(format!("soak: unknown argument {other:?}").into()),
        }
    }
    let bin = util::build_release()?;
    let mut server = Server::start(
        &bin,
        &[
            "--listen",
            "127.0.0.1:0",
            "--camera",
            "test",
            "--quiet",
            "--ping-interval",
            "5s",
            "--dead-peer-timeout",
            "15s",
            "--header-timeout",
            "5s",
            "--idle-timeout",
            "10s",
        ],
    )?;
    let addr = server.addr;
    let pid = server.pid;
    println!("soak: picamd pid {pid} at http://{addr}/ for {seconds} s");

    let stats = Arc::new(Stats::default());
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let deadline = started + Duration::from_secs(seconds);
    let mut samples = vec![sample(&stats, pid, started, "start")];

    let mut workers = Vec::new();
    let spawn = |workers: &mut Vec<thread::JoinHandle<()>>, seed: u32, f: fn(Ctx)| {
        let ctx = Ctx {
            addr,
            stats: Arc::clone(&stats),
            stop: Arc::clone(&stop),
            deadline,
            rng: Rng(seed.wrapping_mul(0x9E37_79B9) | 1),
        };
        workers.push(thread::spawn(move || f(ctx)));
    };
    for seed in 1..=3 {
        spawn(&mut workers, seed, ws_viewer);
    }
    for seed in 4..=5 {
        spawn(&mut workers, seed, mjpeg_viewer);
    }
    spawn(&mut workers, 6, slow_viewers);
    spawn(&mut workers, 7, bad_requests);
    spawn(&mut workers, 8, health_check);

    let mut next_sample = started + SAMPLE_EVERY;
    let mut died = None;
    while Instant::now() < deadline {
        thread::sleep(
            Duration::from_millis(250).min(deadline.saturating_duration_since(Instant::now())),
        );
        if let Some(st) = server.exited() {
            died = Some(st);
            break;
        }
        if Instant::now() >= next_sample {
            let s = sample(&stats, pid, started, "load");
            println!(
                "soak: {:>5.0} s  rss {:>8}  fds {:>4}  ws {:>6}  mjpeg {:>6}  bad {:>6}",
                s.at,
                fmt_opt(s.rss_kib.map(|k| format!("{k} KiB"))),
                fmt_opt(s.fds.map(|f| f.to_string())),
                s.ws,
                s.mjpeg,
                s.bad
            );
            samples.push(s);
            next_sample += SAMPLE_EVERY;
        }
    }
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        let _ = w.join();
    }
    if died.is_none() {
        samples.push(sample(&stats, pid, started, "end"));
        // Let the server's timers reap what the load left (linger, closes).
        thread::sleep(Duration::from_secs(6));
        samples.push(sample(&stats, pid, started, "end+6s"));
    }

    print_table(&samples, &stats);

    if let Some(st) = died {
        return Err(format!(
            "picamd died during the soak ({st}); stderr:\n{}",
            server.stderr_tail()
        )
        .into());
    }
    // The server must still serve a normal request after all that.
    let after = util::http_get(addr, "/pi.jpg", IO_TIMEOUT);
    let healthy = matches!(&after, Ok(r) if r.status == 200 && r.body.starts_with(&[0xFF, 0xD8]));
    let exit = server.terminate(Duration::from_secs(5));

    let mut problems = Vec::new();
    if !healthy {
        problems.push(format!("/pi.jpg after the soak failed: {after:?}"));
    }
    match exit {
        Ok(st) if st.success() => {}
        Ok(st) => problems.push(format!("picamd exited with {st} on SIGTERM")),
        Err(e) => problems.push(e.to_string()),
    }
    let corrupt = Stats::get(&stats.corrupt);
    if corrupt > 0 {
        problems.push(format!(
            "{corrupt} corrupt frame(s) or wrongly accepted bad request(s)"
        ));
    }
    let health_failed = Stats::get(&stats.health_failed);
    let health = Stats::get(&stats.health_checks);
    // A loaded 2-core machine may time out a rare request; most must work.
    if health_failed * 20 > health.max(1) {
        problems.push(format!("{health_failed} of {health} health checks failed"));
    }
    if problems.is_empty() {
        println!("soak: ok");
        Ok(())
    } else {
        Err(format!(
            "soak failed: {}; stderr:\n{}",
            problems.join("; "),
            server.stderr_tail()
        )
        .into())
    }
}

fn fmt_opt(v: Option<String>) -> String {
    v.unwrap_or_else(|| "?".into())
}

fn sample(stats: &Stats, pid: u32, started: Instant, label: &'static str) -> Sample {
    Sample {
        at: started.elapsed().as_secs_f64(),
        label,
        rss_kib: util::rss_kib(pid),
        fds: util::fd_count(pid),
        ws: Stats::get(&stats.ws_sessions),
        mjpeg: Stats::get(&stats.mjpeg_sessions),
        bad: Stats::get(&stats.bad_requests),
    }
}

fn print_table(samples: &[Sample], stats: &Stats) {
    println!(
        "\n| time (s) | when | RSS (KiB) | fds | WS sessions | MJPEG sessions | bad requests |"
    );
    println!("|---:|---|---:|---:|---:|---:|---:|");
    for s in samples {
        println!(
            "| {:.0} | {} | {} | {} | {} | {} | {} |",
            s.at,
            s.label,
            fmt_opt(s.rss_kib.map(|v| v.to_string())),
            fmt_opt(s.fds.map(|v| v.to_string())),
            s.ws,
            s.mjpeg,
            s.bad
        );
    }
    if let (Some(first), Some(last)) = (samples.first(), samples.last()) {
        if let (Some(a), Some(b)) = (first.rss_kib, last.rss_kib) {
            let peak = samples.iter().filter_map(|s| s.rss_kib).max().unwrap_or(b);
            println!("\nRSS: start {a} KiB, end {b} KiB, peak {peak} KiB");
        }
        if let (Some(a), Some(b)) = (first.fds, last.fds) {
            println!("fds: start {a}, end {b}");
        }
    }
    println!(
        "totals: {} WS sessions ({} frames), {} MJPEG sessions ({} frames), {} slow viewers, \
         {} bad requests, {} health checks ({} failed), {} unanswered, {} corrupt",
        Stats::get(&stats.ws_sessions),
        Stats::get(&stats.ws_frames),
        Stats::get(&stats.mjpeg_sessions),
        Stats::get(&stats.mjpeg_frames),
        Stats::get(&stats.slow_viewers),
        Stats::get(&stats.bad_requests),
        Stats::get(&stats.health_checks),
        Stats::get(&stats.health_failed),
        Stats::get(&stats.unanswered),
        Stats::get(&stats.corrupt),
    );
}

/// What each load thread gets.
struct Ctx {
    addr: SocketAddr,
    stats: Arc<Stats>,
    stop: Arc<AtomicBool>,
    deadline: Instant,
    rng: Rng,
}

impl Ctx {
    fn running(&self) -> bool {
        !self.stop.load(Ordering::Relaxed) && Instant::now() < self.deadline
    }
    /// Sleeps `d`, or less if the run ends first.
    fn pause(&self, d: Duration) {
        let end = Instant::now() + d;
        while self.running() && Instant::now() < end {
            thread::sleep(
                Duration::from_millis(50).min(end.saturating_duration_since(Instant::now())),
            );
        }
    }
}

/// xorshift32: the load only needs variety, not quality.
struct Rng(u32);

impl Rng {
    fn next(&mut self) -> u32 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.0 = x;
        x
    }
    /// Uniform-enough in `lo..=hi`.
    fn range(&mut self, lo: u32, hi: u32) -> u32 {
        lo + self.next() % (hi - lo + 1)
    }
}

fn is_jpeg(b: &[u8]) -> bool {
    b.starts_with(&[0xFF, 0xD8]) && b.ends_with(&[0xFF, 0xD9])
}

/// Base64 of a JPEG starts with `/9j/` (FF D8 FF).
fn is_base64_jpeg(b: &[u8]) -> bool {
    b.starts_with(b"/9j/")
}

fn ws_viewer(mut ctx: Ctx) {
    while ctx.running() {
        let base64 = ctx.rng.range(0, 3) == 0;
        let path = if base64 {
            "/stream?encoding=base64"
        } else {
            "/stream"
        };
        match WsClient::connect(ctx.addr, path, IO_TIMEOUT) {
            Ok(mut ws) => {
                Stats::add(&ctx.stats.ws_sessions);
                let frames = ctx.rng.range(3, 60);
                for _ in 0..frames {
                    if !ctx.running() {
                        break;
                    }
                    match ws.recv_message() {
                        Ok(m) => {
                            let ok = match m.opcode {
                                OP_BINARY => !base64 && is_jpeg(&m.payload),
                                OP_TEXT => base64 && is_base64_jpeg(&m.payload),
                                _ => false,
                            };
                            if !ok {
                                Stats::add(&ctx.stats.corrupt);
                                eprintln!(
                                    "soak: bad WebSocket message on {path}: opcode {} len {}",
                                    m.opcode,
                                    m.payload.len()
                                );
                                break;
                            }
                            Stats::add(&ctx.stats.ws_frames);
                        }
                        Err(_) => {
                            Stats::add(&ctx.stats.unanswered);
                            break;
                        }
                    }
                }
                if ctx.rng.range(0, 1) == 0 {
                    // Close handshake (RFC 6455 §5.5.1): wait for the echo.
                    if ws.send_close(1000).is_ok() {
                        for _ in 0..100 {
                            match ws.recv_frame() {
                                Ok(f) if f.opcode == OP_CLOSE => break,
                                Ok(_) => {}
                                Err(_) => break,
                            }
                        }
                    }
                }
            }
            Err(_) => Stats::add(&ctx.stats.unanswered),
        }
        let ms = ctx.rng.range(20, 300);
        ctx.pause(Duration::from_millis(u64::from(ms)));
    }
}

fn mjpeg_viewer(mut ctx: Ctx) {
    while ctx.running() {
        let parts = ctx.rng.range(2, 45) as usize;
        match read_mjpeg(ctx.addr, parts, &ctx) {
            Ok(n) => {
                Stats::add(&ctx.stats.mjpeg_sessions);
                ctx.stats
                    .mjpeg_frames
                    .fetch_add(n as u64, Ordering::Relaxed);
            }
            Err(MjpegError::Corrupt(why)) => {
                Stats::add(&ctx.stats.corrupt);
                eprintln!("soak: bad MJPEG part: {why}");
            }
            Err(MjpegError::Io) => Stats::add(&ctx.stats.unanswered),
        }
        let ms = ctx.rng.range(20, 300);
        ctx.pause(Duration::from_millis(u64::from(ms)));
    }
}

enum MjpegError {
    Io,
    Corrupt(String),
}

/// Reads `parts` parts of `/stream.mjpg`, checking each is a JPEG of its
/// `Content-Length`; then drops the connection (unread bytes make it a reset).
fn read_mjpeg(addr: SocketAddr, parts: usize, ctx: &Ctx) -> Result<usize, MjpegError> {
    let mut s = util::connect(addr, IO_TIMEOUT).map_err(|_| MjpegError::Io)?;
    s.write_all(b"GET /stream.mjpg HTTP/1.1\r\nHost: soak\r\n\r\n")
        .map_err(|_| MjpegError::Io)?;
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    let mut read_more = |s: &mut TcpStream, buf: &mut Vec<u8>| -> Result<(), MjpegError> {
        let n = s.read(&mut chunk).map_err(|_| MjpegError::Io)?;
        if n == 0 {
            return Err(MjpegError::Io);
        }
        buf.extend_from_slice(&chunk[..n]);
        Ok(())
    };
    // Response head.
    let head_end = loop {
        if let Some(i) = util::find(&buf, b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > 16 * 1024 {
            return Err(MjpegError::Corrupt("response head over 16 KiB".into()));
        }
        read_more(&mut s, &mut buf)?;
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    if !head.starts_with("http/1.1 200") || !head.contains("multipart/x-mixed-replace") {
        let first = head.lines().next().unwrap_or_default().to_string();
        return Err(MjpegError::Corrupt(format!("response {first:?}")));
    }
    buf.drain(..head_end);
    let mut got = 0;
    while got < parts && ctx.running() {
        // Part head: boundary line and headers up to the blank line.
        let part_end = loop {
            if let Some(i) = util::find(&buf, b"\r\n\r\n") {
                break i + 4;
            }
            if buf.len() > 16 * 1024 {
                return Err(MjpegError::Corrupt("part head over 16 KiB".into()));
            }
            read_more(&mut s, &mut buf)?;
        };
        let part_head = String::from_utf8_lossy(&buf[..part_end]).to_ascii_lowercase();
        let len: usize = part_head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .ok_or_else(|| {
                MjpegError::Corrupt(format!("part without Content-Length: {part_head:?}"))
            })?;
        while buf.len() < part_end + len {
            read_more(&mut s, &mut buf)?;
        }
        if !is_jpeg(&buf[part_end..part_end + len]) {
            return Err(MjpegError::Corrupt(format!(
                "part of {len} bytes is not a JPEG"
            )));
        }
        buf.drain(..part_end + len);
        got += 1;
    }
    Ok(got)
}

/// Viewers that never read, replaced every minute: the server must skip
/// frames for them without growing, and close the WebSocket ones at the
/// dead-peer timeout. Also slowloris heads that never finish.
fn slow_viewers(ctx: Ctx) {
    while ctx.running() {
        let mut held: Vec<TcpStream> = Vec::new();
        for path in ["/stream", "/stream"] {
            if let Ok(ws) = WsClient::connect(ctx.addr, path, IO_TIMEOUT) {
                held.push(ws.stream);
                Stats::add(&ctx.stats.slow_viewers);
            }
        }
        if let Ok(mut s) = util::connect(ctx.addr, IO_TIMEOUT)
            && s.write_all(b"GET /stream.mjpg HTTP/1.1\r\nHost: soak\r\n\r\n")
                .is_ok()
        {
            held.push(s);
            Stats::add(&ctx.stats.slow_viewers);
        }
        for _ in 0..3 {
            if let Ok(mut s) = util::connect(ctx.addr, IO_TIMEOUT) {
                // Half a head: the header timeout must close it.
                let _ = s.write_all(b"GET /pi.jpg HTTP/1.1\r\nHost: so");
                held.push(s);
            }
        }
        ctx.pause(Duration::from_secs(60));
        drop(held);
    }
}

/// The hostile requests, in turn. Each expects an error status (4xx/5xx), a
/// WebSocket Close, or the connection closed; a 2xx is a bug.
fn bad_requests(mut ctx: Ctx) {
    let long_target = format!("GET /{} HTTP/1.1\r\nHost: soak\r\n\r\n", "a".repeat(20_000));
    let big_head = format!(
        "GET / HTTP/1.1\r\nHost: soak\r\n{}\r\n",
        "X-Fill: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n".repeat(1200)
    );
    let http_cases: Vec<(&str, Vec<u8>)> = vec![
        ("garbage", b"\x00\x01\x02\xff garbage \r\n\r\n".to_vec()),
        ("oversized head", big_head.into_bytes()),
        ("long target", long_target.into_bytes()),
        ("bad version", b"GET / HTTP/3.7\r\nHost: soak\r\n\r\n".to_vec()),
        ("method", b"DELETE /pi.jpg HTTP/1.1\r\nHost: soak\r\n\r\n".to_vec()),
        (
            "body",
            b"POST / HTTP/1.1\r\nHost: soak\r\nContent-Length: 5\r\n\r\nhello".to_vec(),
        ),
        (
            "CL+TE",
            b"GET / HTTP/1.1\r\nHost: soak\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec(),
        ),
        ("bare LF junk", b"\n\n\n\nGET\n".to_vec()),
        (
            "bad websocket key",
            b"GET /stream HTTP/1.1\r\nHost: soak\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
              Sec-WebSocket-Key: short\r\nSec-WebSocket-Version: 13\r\n\r\n"
                .to_vec(),
        ),
    ];
    // Frames that break RFC 6455, sent after a good handshake.
    let ws_cases: Vec<(&str, Vec<u8>)> = vec![
        ("unmasked frame", vec![0x81, 0x02, b'h', b'i']),
        ("reserved bits", vec![0xF1, 0x80, 0, 0, 0, 0]),
        ("bad opcode", vec![0x83, 0x80, 0, 0, 0, 0]),
        (
            "oversized length",
            vec![0x82, 0xFF, 0, 0, 1, 0, 0, 0, 0, 0, 1, 2, 3, 4],
        ),
        ("long ping", {
            let mut f = vec![0x89, 0xFE, 0, 200, 0, 0, 0, 0];
            f.extend(std::iter::repeat_n(0u8, 200));
            f
        }),
        ("fragmented close", vec![0x08, 0x80, 0, 0, 0, 0]),
    ];
    let mut i = 0usize;
    while ctx.running() {
        let which = i % (http_cases.len() + ws_cases.len() + 2);
        i += 1;
        if which < http_cases.len() {
            let (name, bytes) = &http_cases[which];
            bad_http(&ctx, name, bytes);
        } else if which < http_cases.len() + ws_cases.len() {
            let (name, bytes) = &ws_cases[which - http_cases.len()];
            bad_ws(&ctx, name, bytes);
        } else if which == http_cases.len() + ws_cases.len() {
            pipelined(&ctx);
        } else {
            half_close(&ctx);
        }
        Stats::add(&ctx.stats.bad_requests);
        let ms = ctx.rng.range(20, 80);
        ctx.pause(Duration::from_millis(u64::from(ms)));
    }
}

fn bad_http(ctx: &Ctx, name: &str, bytes: &[u8]) {
    let Ok(mut s) = util::connect(ctx.addr, IO_TIMEOUT) else {
        Stats::add(&ctx.stats.unanswered);
        return;
    };
    // The server may answer and close before reading everything: a failed
    // write is then expected, the answer is still there to read.
    let _ = s.write_all(bytes);
    let mut resp = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match s.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => {
                resp.extend_from_slice(&chunk[..n]);
                if util::find(&resp, b"\r\n\r\n").is_some() {
                    break;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(_) => {
                Stats::add(&ctx.stats.unanswered);
                eprintln!("soak: no answer to {name} within {IO_TIMEOUT:?}");
                return;
            }
        }
    }
    if resp.starts_with(b"HTTP/1.1 2") || resp.starts_with(b"HTTP/1.0 2") {
        Stats::add(&ctx.stats.corrupt);
        let first = String::from_utf8_lossy(&resp[..resp.len().min(40)]).into_owned();
        eprintln!("soak: bad request {name:?} was accepted: {first:?}");
    }
}

fn bad_ws(ctx: &Ctx, name: &str, bytes: &[u8]) {
    let Ok(mut ws) = WsClient::connect(ctx.addr, "/stream", IO_TIMEOUT) else {
        Stats::add(&ctx.stats.unanswered);
        return;
    };
    let _ = ws.stream.write_all(bytes);
    // The server must answer with a Close (1002/1009) or drop us; frames
    // already in flight may come first.
    let until = Instant::now() + IO_TIMEOUT;
    while Instant::now() < until {
        match ws.recv_frame() {
            Ok(f) if f.opcode == OP_CLOSE => return,
            Ok(_) => {}
            Err(_) => return,
        }
    }
    Stats::add(&ctx.stats.unanswered);
    eprintln!("soak: no Close after {name} within {IO_TIMEOUT:?}");
}

/// Three requests in one write: three answers in order.
fn pipelined(ctx: &Ctx) {
    let Ok(mut s) = util::connect(ctx.addr, IO_TIMEOUT) else {
        Stats::add(&ctx.stats.unanswered);
        return;
    };
    let req = b"GET /status HTTP/1.1\r\nHost: soak\r\n\r\n\
                HEAD /pi.jpg HTTP/1.1\r\nHost: soak\r\n\r\n\
                GET /no-such-page HTTP/1.1\r\nHost: soak\r\nConnection: close\r\n\r\n";
    if s.write_all(req).is_err() {
        Stats::add(&ctx.stats.unanswered);
        return;
    }
    let mut resp = Vec::new();
    if s.read_to_end(&mut resp).is_err() {
        Stats::add(&ctx.stats.unanswered);
        return;
    }
    let answers = resp
        .windows(9)
        .filter(|w| w.starts_with(b"HTTP/1.1 "))
        .count();
    if answers < 3 {
        Stats::add(&ctx.stats.unanswered);
        eprintln!("soak: pipelined requests got {answers} answers");
    }
}

/// A request then a half-close: the answer must still come.
fn half_close(ctx: &Ctx) {
    let Ok(mut s) = util::connect(ctx.addr, IO_TIMEOUT) else {
        Stats::add(&ctx.stats.unanswered);
        return;
    };
    let _ = s.write_all(b"GET /status HTTP/1.1\r\nHost: soak\r\n\r\n");
    let _ = s.shutdown(Shutdown::Write);
    let mut resp = Vec::new();
    let _ = s.read_to_end(&mut resp);
    if !resp.starts_with(b"HTTP/1.1 200") {
        Stats::add(&ctx.stats.unanswered);
        eprintln!("soak: half-closed request got {} bytes", resp.len());
    }
}

fn health_check(ctx: Ctx) {
    while ctx.running() {
        Stats::add(&ctx.stats.health_checks);
        let snap = util::http_get(ctx.addr, "/pi.jpg", IO_TIMEOUT);
        let status = util::http_get(ctx.addr, "/status", IO_TIMEOUT);
        let ok = matches!(&snap, Ok(r) if r.status == 200 && is_jpeg(&r.body))
            && matches!(&status, Ok(r) if r.status == 200 && r.body.starts_with(b"{"));
        if !ok {
            Stats::add(&ctx.stats.health_failed);
            eprintln!(
                "soak: health check failed: /pi.jpg {:?}, /status {:?}",
                snap.map(|r| r.status),
                status.map(|r| r.status)
            );
        }
        ctx.pause(Duration::from_secs(1));
    }
}
