//! Shared harness for the black-box tests: start the real binary on port 0,
//! talk to it over real sockets, read its log. Every socket operation has a
//! timeout; dropping a `Server` kills it; a failing test prints its stderr.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const IO_TIMEOUT: Duration = Duration::from_secs(10);

pub struct Server {
    pub child: Child,
    pub addr: SocketAddr,
    log: Arc<Mutex<String>>,
}

impl Server {
    /// Starts picamd with `--listen 127.0.0.1:0` plus `args`.
    pub fn start(args: &[&str]) -> Server {
        Server::start_with_env(args, &[])
    }

    /// As `start`, with extra environment (e.g. a `PATH` holding fake tools).
    pub fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> Server {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_picamd"));
        cmd.arg("--listen")
            .arg("127.0.0.1:0")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn picamd");
        let stderr = child.stderr.take().expect("stderr");
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let log2 = log.clone();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(rest) = line.strip_prefix("listening on http://")
                    && let Some(tx) = tx.take()
                {
                    let _ = tx.send(rest.trim_end_matches('/').to_string());
                }
                let mut l = log2.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
        });
        let addr = match rx.recv_timeout(IO_TIMEOUT) {
            Ok(a) => a.parse().expect("address"),
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                std::thread::sleep(Duration::from_millis(100));
                panic!("picamd did not start:\n{}", log.lock().unwrap());
            }
        };
        Server { child, addr, log }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything the server wrote to stderr so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Waits until the log contains `needle` (or panics with the log).
    pub fn wait_log(&self, needle: &str, timeout: Duration) {
        let end = Instant::now() + timeout;
        while Instant::now() < end {
            if self.log().contains(needle) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("log never contained {needle:?}:\n{}", self.log());
    }

    pub fn connect(&self) -> TcpStream {
        connect(self.addr)
    }

    /// One request on a fresh connection (`Connection: close`).
    pub fn get(&self, path: &str) -> Response {
        let mut s = self.connect();
        let req = format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).unwrap();
        read_response(&mut s, false)
    }

    /// Sends SIGTERM and waits for the exit status (at most `timeout`).
    pub fn terminate(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.pid().to_string())
            .status();
        let end = Instant::now() + timeout;
        while Instant::now() < end {
            if let Ok(Some(st)) = self.child.try_wait() {
                return Some(st);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }

    /// Asserts the server still answers a normal request.
    pub fn assert_alive(&self) {
        let r = self.get("/status");
        assert_eq!(r.status, 200, "server stopped serving:\n{}", self.log());
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("---- picamd stderr ----\n{}", self.log());
        }
    }
}

pub fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect_timeout(&addr, IO_TIMEOUT).expect("connect");
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    s.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    s
}

#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub head: String,
    pub body: Vec<u8>,
}

impl Response {
    /// A header's value (case-insensitive name).
    pub fn header(&self, name: &str) -> Option<String> {
        self.head.lines().skip(1).find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Reads one response: head, then a body of `Content-Length` bytes (none for
/// HEAD requests), or to EOF when there is no length.
pub fn read_response(s: &mut TcpStream, head_request: bool) -> Response {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match s.read(&mut byte) {
            Ok(0) => panic!(
                "EOF inside response head: {:?}",
                String::from_utf8_lossy(&head)
            ),
            Ok(_) => head.push(byte[0]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => panic!(
                "reading head: {e} after {:?}",
                String::from_utf8_lossy(&head)
            ),
        }
    }
    let head = String::from_utf8(head).expect("ASCII head");
    let status: u16 = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status code");
    let mut r = Response {
        status,
        head,
        body: Vec::new(),
    };
    if head_request || status == 101 || status == 304 || status == 204 {
        return r;
    }
    match r.header("content-length") {
        Some(n) => {
            let n: usize = n.parse().unwrap();
            r.body = vec![0; n];
            s.read_exact(&mut r.body).expect("body");
        }
        None => {
            s.read_to_end(&mut r.body).ok();
        }
    }
    r
}

/// Reads until EOF (or the timeout); true if the peer closed.
pub fn read_until_closed(s: &mut TcpStream, timeout: Duration) -> (Vec<u8>, bool) {
    s.set_read_timeout(Some(timeout)).unwrap();
    let mut all = Vec::new();
    let mut buf = [0u8; 65536];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return (all, true),
            Ok(n) => all.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return (all, true),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return (all, false),
        }
    }
}

// ---- WebSocket (client side: masks every frame, RFC 6455 §5.3) ----

pub const WS_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
pub const WS_ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

/// Opens a WebSocket on `path`; panics unless the answer is 101 with the
/// right accept key.
pub fn ws_connect(addr: SocketAddr, path: &str) -> TcpStream {
    let mut s = connect(addr);
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {WS_KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    s.write_all(req.as_bytes()).unwrap();
    let r = read_response(&mut s, false);
    assert_eq!(r.status, 101, "{}", r.head);
    assert_eq!(r.header("sec-websocket-accept").as_deref(), Some(WS_ACCEPT));
    s
}

/// Reads one frame: (FIN, opcode, payload). Server frames are unmasked.
pub fn ws_read_frame(s: &mut TcpStream) -> (bool, u8, Vec<u8>) {
    let mut h = [0u8; 2];
    s.read_exact(&mut h).expect("frame header");
    assert_eq!(h[1] & 0x80, 0, "server frames must not be masked");
    let len = match h[1] & 0x7f {
        126 => {
            let mut b = [0u8; 2];
            s.read_exact(&mut b).unwrap();
            u16::from_be_bytes(b) as usize
        }
        127 => {
            let mut b = [0u8; 8];
            s.read_exact(&mut b).unwrap();
            u64::from_be_bytes(b) as usize
        }
        n => n as usize,
    };
    let mut payload = vec![0; len];
    s.read_exact(&mut payload).expect("frame payload");
    (h[0] & 0x80 != 0, h[0] & 0x0f, payload)
}

/// Reads frames until a data frame arrives, answering nothing.
pub fn ws_read_message(s: &mut TcpStream) -> (u8, Vec<u8>) {
    loop {
        let (_, op, p) = ws_read_frame(s);
        if op <= 8 {
            return (op, p);
        }
    }
}

/// Sends one masked frame.
pub fn ws_send(s: &mut TcpStream, fin: bool, opcode: u8, payload: &[u8]) {
    let mask = [0x37u8, 0xfa, 0x21, 0x3d];
    let mut f = vec![(if fin { 0x80 } else { 0 }) | opcode];
    match payload.len() {
        n if n < 126 => f.push(0x80 | n as u8),
        n if n <= 0xffff => {
            f.push(0x80 | 126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            f.push(0x80 | 127);
            f.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    f.extend_from_slice(&mask);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    s.write_all(&f).unwrap();
}

// ---- MJPEG ----

/// Reads one multipart part after the response head: returns the JPEG.
pub fn mjpeg_read_part(r: &mut impl BufRead) -> Vec<u8> {
    let mut len = None;
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).expect("part header") == 0 {
            panic!("EOF in multipart stream");
        }
        let t = line.trim_end();
        if t.is_empty() {
            if len.is_some() {
                break;
            }
            continue;
        }
        if let Some((n, v)) = t.split_once(':')
            && n.eq_ignore_ascii_case("content-length")
        {
            len = Some(v.trim().parse::<usize>().unwrap());
        }
    }
    let mut jpeg = vec![0; len.unwrap()];
    r.read_exact(&mut jpeg).unwrap();
    jpeg
}

// ---- JPEG ----

pub fn is_whole_jpeg(b: &[u8]) -> bool {
    b.len() > 4 && b.starts_with(&[0xff, 0xd8]) && b.ends_with(&[0xff, 0xd9])
}

// ---- processes ----

/// Resident set size in KiB, from /proc.
pub fn rss_kib(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

pub fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

/// PIDs of `pid`'s children (from /proc/*/stat).
pub fn children_of(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(n) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{n}/stat")) else {
            continue;
        };
        // Field 4 is the parent PID; the name in parentheses may hold spaces.
        let after = stat.rsplit_once(')').map(|x| x.1).unwrap_or("");
        let ppid: u32 = after
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        if ppid == pid {
            out.push(n);
        }
    }
    out
}

/// A fresh temporary directory under the target dir.
pub fn temp_dir(name: &str) -> PathBuf {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let d =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Writes an executable script `name` into `dir`.
pub fn write_script(dir: &Path, name: &str, body: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let p = dir.join(name);
    std::fs::write(&p, body).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p
}

/// Polls `f` until true or the timeout; returns whether it became true.
pub fn eventually(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    f()
}

// ---- fixtures shared by the streaming and fault tests ----

/// A real JPEG from the built-in test pattern, `width`x`height`.
pub fn pattern_jpeg(width: u32, height: u32) -> Vec<u8> {
    let (w, h) = (width.to_string(), height.to_string());
    let srv = Server::start(&["--camera", "test", "--width", &w, "--height", &h]);
    let r = srv.get("/pi.jpg");
    assert_eq!(r.status, 200);
    assert!(is_whole_jpeg(&r.body));
    r.body
}

/// `base` with a COM segment naming frame `n` after SOI, plus about `pad`
/// bytes of filler COM segments.
pub fn tagged_frame(base: &[u8], n: usize, pad: usize) -> Vec<u8> {
    let mut f = vec![0xff, 0xd8];
    let mut com = |text: &[u8]| {
        f.extend_from_slice(&[0xff, 0xfe]);
        f.extend_from_slice(&((text.len() + 2) as u16).to_be_bytes());
        f.extend_from_slice(text);
    };
    com(format!("picamd-test frame={n}").as_bytes());
    let mut left = pad;
    while left > 0 {
        let chunk = left.min(60_000);
        com(&vec![b'p'; chunk]);
        left -= chunk;
    }
    f.extend_from_slice(&base[2..]);
    f
}

pub fn frame_no(jpeg: &[u8]) -> Option<usize> {
    let tag = b"picamd-test frame=";
    let at = jpeg.windows(tag.len()).take(64).position(|w| w == tag)? + tag.len();
    let digits: String = jpeg[at..]
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .map(|&b| b as char)
        .collect();
    digits.parse().ok()
}

pub fn write_frames(dir: &Path, frames: &[Vec<u8>]) {
    let d = dir.join("frames");
    std::fs::create_dir_all(&d).unwrap();
    for (i, f) in frames.iter().enumerate() {
        std::fs::write(d.join(format!("f{i:04}.jpg")), f).unwrap();
    }
}

pub fn pids(dir: &Path) -> Vec<u32> {
    std::fs::read_to_string(dir.join("pids"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

pub fn proc_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

pub fn running(pid: u32) -> bool {
    proc_state(pid).is_some_and(|s| s != 'Z')
}
