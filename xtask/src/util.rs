//! Helpers shared by the xtask tasks (and free for `bench.rs` and
//! `interop.rs` to use). Std only: no dependency may slow the build of the
//! tool that checks the build.
//!
//! Paths and commands:
//!   `pub fn root() -> PathBuf`                      repository root (xtask's parent)
//!   `pub fn cargo() -> Command`                     `$CARGO` (or `cargo`), cwd = root
//!   `pub fn run(cmd: &mut Command) -> Result<()>`   run, fail on non-zero exit
//!   `pub fn show(cmd: &Command) -> String`          the command line, for messages
//!   `pub fn have(program: &str) -> bool`            is `program` on `PATH`?
//!   `pub fn host_triple() -> Result<String>`        from `rustc -vV`
//!   `pub fn build_release() -> Result<PathBuf>`     the static, stripped host binary
//!                                                   (the one `dist` ships); every
//!                                                   task that runs picamd uses it
//!   `pub fn release_build_cmd(target) -> Command`   `cargo build --release --target T`
//!                                                   with `+crt-static`
//!   `pub fn release_bin(target) -> PathBuf`         where that build puts picamd
//!   `pub fn step(name, f) -> Result<()>`            header, run `f`, print its time
//!
//! A running server:
//!   `Server::start(bin: &Path, args: &[&str]) -> Result<Server>`
//!   `Server::start_cmd(cmd: Command, startup: Duration) -> Result<Server>`
//!       spawns, reads the port from the first stderr line
//!       (`listening on http://HOST:PORT/`), then drains stderr on a thread so
//!       the server never blocks on its log pipe; keeps the last lines.
//!   `server.addr: SocketAddr`, `server.pid: u32`
//!   `server.exited() -> Option<ExitStatus>`         non-blocking
//!   `server.terminate(timeout) -> Result<ExitStatus>`  SIGTERM, wait (kills on timeout)
//!   `server.stderr_tail() -> String`                last lines it logged
//!   `Drop` kills and reaps it.
//!   `parse_listening(line) -> Option<SocketAddr>`   the first stderr line's address
//!
//! Clients (every socket operation has a timeout):
//!   `connect(addr, timeout) -> Result<TcpStream>`   read/write timeouts, nodelay
//!   `http_get(addr, path, timeout) -> Result<HttpResponse>`  status, headers, body
//!   `WsClient::connect(addr, path, timeout) -> Result<WsClient>`  RFC 6455 client
//!   `ws.send(opcode, payload)` masked frame; `ws.send_close(code)`
//!   `ws.recv_frame() -> Result<WsFrame>`   one frame as it comes
//!   `ws.recv_message() -> Result<WsFrame>` a whole data message; answers pings,
//!                                          a Close comes back as a frame with OP_CLOSE
//!   `ws.encode(fin, opcode, payload) -> Vec<u8>`  a masked frame, unsent
//!   `find(hay, needle) -> Option<usize>`   byte search
//!
//! /proc readers: `rss_kib(pid) -> Option<u64>`, `fd_count(pid) -> Option<usize>`;
//! `human_bytes(n) -> String`.

use std::collections::VecDeque;
use std::error::Error;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::thread;
use std::time::{Duration, Instant};

pub type Result<T> = std::result::Result<T, Box<dyn Error>>;

/// The repository root: xtask lives in `<root>/xtask`.
pub fn root() -> PathBuf {
    let manifest = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    manifest.parent().map(Path::to_path_buf).unwrap_or(manifest)
}

/// The cargo that runs us (`$CARGO`), so a `cargo +toolchain xtask` stays on
/// that toolchain; the command runs in the repository root.
pub fn cargo() -> Command {
    let program = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(program);
    cmd.current_dir(root());
    cmd
}

/// Runs `cmd` with inherited stdio and fails, naming the command, unless it
/// exits 0.
pub fn run(cmd: &mut Command) -> Result<()> {
    let status = cmd
        .status()
        .map_err(|e| format!("cannot run {}: {e}", show(cmd)))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{} failed ({status})", show(cmd)).into())
    }
}

/// The command line, for messages.
pub fn show(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// Is `program` an executable file on `PATH`?
pub fn have(program: &str) -> bool {
    let Some(path) = std::env::var_os("PATH") else {
        return false;
    };
    std::env::split_paths(&path).any(|dir| {
        let f = dir.join(program);
        f.is_file()
            && std::fs::metadata(&f)
                .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o111 != 0)
                .unwrap_or(false)
    })
}

/// The host's target triple, from `rustc -vV`.
pub fn host_triple() -> Result<String> {
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let out = Command::new(rustc).arg("-vV").output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| l.strip_prefix("host: "))
        .map(|h| h.trim().to_string())
        .ok_or_else(|| "rustc -vV printed no host line".into())
}

/// Cargo arguments and environment for a static release build of picamd for
/// `target`. Glibc and musl targets get `+crt-static` through RUSTFLAGS; an
/// explicit `--target` keeps those flags off build scripts and proc-macros.
pub fn release_build_cmd(target: &str) -> Command {
    let mut cmd = cargo();
    cmd.args(["build", "--release", "--bin", "picamd", "--target", target]);
    let mut flags = std::env::var("RUSTFLAGS").unwrap_or_default();
    if !flags.is_empty() {
        flags.push(' ');
    }
    flags.push_str("-C target-feature=+crt-static");
    cmd.env("RUSTFLAGS", flags);
    cmd
}

/// Where cargo puts the release binary for `target`.
pub fn release_bin(target: &str) -> PathBuf {
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"));
    let target_dir = if target_dir.is_absolute() {
        target_dir
    } else {
        root().join(target_dir)
    };
    target_dir.join(target).join("release").join("picamd")
}

/// Builds the static, stripped release binary for the host (the binary
/// `cargo xtask dist` ships) and returns its path. Tasks that run picamd all
/// use this one, so CI builds it once and tests what users get.
pub fn build_release() -> Result<PathBuf> {
    let target = host_triple()?;
    run(&mut release_build_cmd(&target))?;
    let bin = release_bin(&target);
    if bin.is_file() {
        Ok(bin)
    } else {
        Err(format!("cargo built no {}", bin.display()).into())
    }
}

/// Prints a header, runs `f`, prints its time and result.
pub fn step(name: &str, f: impl FnOnce() -> Result<()>) -> Result<()> {
    println!("\n==> {name}");
    let _ = std::io::stdout().flush();
    let t = Instant::now();
    let r = f();
    let secs = t.elapsed().as_secs_f64();
    match &r {
        Ok(()) => println!("<== {name}: ok ({secs:.1} s)"),
        Err(e) => println!("<== {name}: FAILED ({secs:.1} s): {e}"),
    }
    let _ = std::io::stdout().flush();
    r
}

/// Lines of stderr kept for a failure report.
const STDERR_TAIL_LINES: usize = 200;

/// A picamd process under test. Dropping it kills and reaps it.
pub struct Server {
    child: Child,
    pub addr: SocketAddr,
    pub pid: u32,
    tail: Arc<Mutex<VecDeque<String>>>,
}

impl Server {
    /// Starts `bin args…` (add `--listen 127.0.0.1:0` yourself) and waits up
    /// to 10 s for its address.
    pub fn start(bin: &Path, args: &[&str]) -> Result<Server> {
        let mut cmd = Command::new(bin);
        cmd.args(args);
        Server::start_cmd(cmd, Duration::from_secs(10))
    }

    /// Starts `cmd` (stdin null, stdout discarded, stderr piped) and reads
    /// the address from its first stderr line, waiting at most `startup`.
    pub fn start_cmd(mut cmd: Command, startup: Duration) -> Result<Server> {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", show(&cmd)))?;
        let pid = child.id();
        let stderr = child.stderr.take().ok_or("no stderr pipe")?;
        let tail = Arc::new(Mutex::new(VecDeque::new()));
        let (tx, rx) = mpsc::channel::<String>();
        let keep = Arc::clone(&tail);
        thread::spawn(move || {
            let mut first = Some(tx);
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(tx) = first.take() {
                    let _ = tx.send(line.clone());
                }
                if let Ok(mut t) = keep.lock() {
                    if t.len() == STDERR_TAIL_LINES {
                        t.pop_front();
                    }
                    t.push_back(line);
                }
            }
        });
        let mut server = Server {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            pid,
            tail,
        };
        let line = match rx.recv_timeout(startup) {
            Ok(line) => line,
            Err(_) => {
                let status = server.exited();
                return Err(format!(
                    "{} printed no address within {startup:?} (exit: {status:?}); stderr:\n{}",
                    show(&cmd),
                    server.stderr_tail()
                )
                .into());
            }
        };
        server.addr = parse_listening(&line)
            .ok_or_else(|| format!("unexpected first stderr line from picamd: {line:?}"))?;
        Ok(server)
    }

    /// The exit status if the process has ended (non-blocking).
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Sends SIGTERM and waits up to `timeout` for the exit; kills on timeout.
    pub fn terminate(&mut self, timeout: Duration) -> Result<ExitStatus> {
        if let Some(status) = self.exited() {
            return Ok(status);
        }
        // std has no kill(2) with a signal; kill(1) is in every Debian base.
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status();
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.exited() {
                return Ok(status);
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                return Err(format!("picamd did not exit within {timeout:?} of SIGTERM").into());
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// The last lines the server wrote to stderr.
    pub fn stderr_tail(&self) -> String {
        match self.tail.lock() {
            Ok(t) => t.iter().map(|l| format!("  | {l}\n")).collect(),
            Err(_) => String::new(),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.exited().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `listening on http://127.0.0.1:PORT/` → the address.
pub fn parse_listening(line: &str) -> Option<SocketAddr> {
    let rest = line.trim().strip_prefix("listening on http://")?;
    let hostport = rest.split('/').next()?;
    hostport.parse().ok()
}

/// An HTTP response as the test clients see it.
#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    /// Header names lower-cased, values trimmed.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Connects with `timeout` for the connect and every read and write.
pub fn connect(addr: SocketAddr, timeout: Duration) -> Result<TcpStream> {
    let s = TcpStream::connect_timeout(&addr, timeout)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    s.set_nodelay(true)?;
    Ok(s)
}

/// `GET path` with `Connection: close`; reads the body by Content-Length or
/// to EOF.
pub fn http_get(addr: SocketAddr, path: &str, timeout: Duration) -> Result<HttpResponse> {
    let mut s = connect(addr, timeout)?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    let head_end = loop {
        if let Some(i) = find(&buf, b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > 64 * 1024 {
            return Err("response head over 64 KiB".into());
        }
        let n = s.read(&mut chunk)?;
        if n == 0 {
            return Err(format!(
                "connection closed in the response head ({} bytes)",
                buf.len()
            )
            .into());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let mut resp = HttpResponse {
        status,
        headers,
        body: buf[head_end..].to_vec(),
    };
    let len: Option<usize> = resp.header("content-length").and_then(|v| v.parse().ok());
    loop {
        if len.is_some_and(|l| resp.body.len() >= l) {
            break;
        }
        let n = s.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        resp.body.extend_from_slice(&chunk[..n]);
    }
    if let Some(l) = len {
        resp.body.truncate(l);
    }
    Ok(resp)
}

/// First index of `needle` in `hay`.
pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

pub const OP_CONT: u8 = 0x0;
pub const OP_TEXT: u8 = 0x1;
pub const OP_BINARY: u8 = 0x2;
pub const OP_CLOSE: u8 = 0x8;
pub const OP_PING: u8 = 0x9;
pub const OP_PONG: u8 = 0xA;

/// One WebSocket frame (or, from `recv_message`, one whole message).
#[derive(Debug, Clone)]
pub struct WsFrame {
    pub fin: bool,
    pub opcode: u8,
    pub payload: Vec<u8>,
}

/// Largest frame the client accepts: test frames are JPEGs of a few hundred
/// KiB at most; anything bigger means a broken length.
const WS_CLIENT_MAX_FRAME: u64 = 64 * 1024 * 1024;

/// A minimal RFC 6455 client: masks what it sends, reads unmasked frames.
pub struct WsClient {
    pub stream: TcpStream,
    buf: Vec<u8>,
    mask_state: u32,
}

/// RFC 6455 §1.3's sample key and its accept value: a fixed key saves the
/// client a SHA-1 (the server must still compute it).
const WS_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
const WS_ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

impl WsClient {
    /// Opens `path` (e.g. `/stream`) and checks the 101 and the accept key.
    pub fn connect(addr: SocketAddr, path: &str, timeout: Duration) -> Result<WsClient> {
        let mut stream = connect(addr, timeout)?;
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: {WS_KEY}\r\n\
             Sec-WebSocket-Version: 13\r\n\r\n"
        )?;
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        let head_end = loop {
            if let Some(i) = find(&buf, b"\r\n\r\n") {
                break i + 4;
            }
            if buf.len() > 16 * 1024 {
                return Err("handshake response over 16 KiB".into());
            }
            let n = stream.read(&mut chunk)?;
            if n == 0 {
                return Err("connection closed during the handshake".into());
            }
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
        if !head.starts_with("http/1.1 101") {
            let first = head.lines().next().unwrap_or_default().to_string();
            return Err(format!("handshake refused: {first}").into());
        }
        if !head.contains(&format!(
            "sec-websocket-accept: {}",
            WS_ACCEPT.to_ascii_lowercase()
        )) {
            return Err("handshake answer lacks the right Sec-WebSocket-Accept".into());
        }
        buf.drain(..head_end);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let seed = std::process::id() ^ nanos;
        Ok(WsClient {
            stream,
            buf,
            mask_state: seed | 1,
        })
    }

    fn next_mask(&mut self) -> [u8; 4] {
        // xorshift32: masks only need to be unpredictable to intermediaries,
        // not to us.
        let mut x = self.mask_state;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.mask_state = x;
        x.to_be_bytes()
    }

    /// Sends one final frame, masked as RFC 6455 §5.3 requires of clients.
    pub fn send(&mut self, opcode: u8, payload: &[u8]) -> Result<()> {
        let frame = self.encode(true, opcode, payload);
        self.stream.write_all(&frame)?;
        Ok(())
    }

    /// Encodes a masked frame without sending it (for tests of split writes).
    pub fn encode(&mut self, fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mut f = Vec::with_capacity(payload.len() + 14);
        f.push(if fin { 0x80 } else { 0 } | (opcode & 0x0F));
        let len = payload.len();
        if len < 126 {
            f.push(0x80 | len as u8);
        } else if len <= 0xFFFF {
            f.push(0x80 | 126);
            f.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            f.push(0x80 | 127);
            f.extend_from_slice(&(len as u64).to_be_bytes());
        }
        let mask = self.next_mask();
        f.extend_from_slice(&mask);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        f
    }

    /// Sends a Close frame with `code`.
    pub fn send_close(&mut self, code: u16) -> Result<()> {
        self.send(OP_CLOSE, &code.to_be_bytes())
    }

    /// Reads one frame. Server frames must not be masked (§5.1).
    pub fn recv_frame(&mut self) -> Result<WsFrame> {
        loop {
            if let Some((frame, used)) = parse_server_frame(&self.buf)? {
                self.buf.drain(..used);
                return Ok(frame);
            }
            let mut chunk = [0u8; 64 * 1024];
            let n = self.stream.read(&mut chunk)?;
            if n == 0 {
                return Err("connection closed by the server".into());
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Reads a whole data message (fragments joined), answering pings on the
    /// way. A Close frame is returned as is (opcode `OP_CLOSE`).
    pub fn recv_message(&mut self) -> Result<WsFrame> {
        let mut msg: Option<WsFrame> = None;
        loop {
            let f = self.recv_frame()?;
            match f.opcode {
                OP_PING => self.send(OP_PONG, &f.payload)?,
                OP_PONG => {}
                OP_CLOSE => return Ok(f),
                OP_CONT => {
                    let m = msg.as_mut().ok_or("continuation frame without a message")?;
                    m.payload.extend_from_slice(&f.payload);
                    if f.fin {
                        m.fin = true;
                        return Ok(msg.take().ok_or("no message")?);
                    }
                }
                _ => {
                    if msg.is_some() {
                        return Err("new data frame inside a fragmented message".into());
                    }
                    if f.fin {
                        return Ok(f);
                    }
                    msg = Some(f);
                }
            }
        }
    }
}

/// Parses one server frame at the start of `buf`: `None` if incomplete.
fn parse_server_frame(buf: &[u8]) -> Result<Option<(WsFrame, usize)>> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let (b0, b1) = (buf[0], buf[1]);
    if b1 & 0x80 != 0 {
        return Err("server sent a masked frame (RFC 6455 §5.1)".into());
    }
    let (len, mut at) = match b1 & 0x7F {
        126 => {
            if buf.len() < 4 {
                return Ok(None);
            }
            (u64::from(u16::from_be_bytes([buf[2], buf[3]])), 4)
        }
        127 => {
            if buf.len() < 10 {
                return Ok(None);
            }
            let mut b = [0u8; 8];
            b.copy_from_slice(&buf[2..10]);
            (u64::from_be_bytes(b), 10)
        }
        n => (u64::from(n), 2),
    };
    if len > WS_CLIENT_MAX_FRAME {
        return Err(format!("server frame of {len} bytes").into());
    }
    let len = len as usize;
    if buf.len() < at + len {
        return Ok(None);
    }
    let payload = buf[at..at + len].to_vec();
    at += len;
    Ok(Some((
        WsFrame {
            fin: b0 & 0x80 != 0,
            opcode: b0 & 0x0F,
            payload,
        },
        at,
    )))
}

/// Resident set size in KiB (`VmRSS` of /proc/PID/status).
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// Number of open file descriptors (entries of /proc/PID/fd).
pub fn fd_count(pid: u32) -> Option<usize> {
    Some(std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count())
}

/// Formats a byte count for humans (KiB/MiB).
pub fn human_bytes(n: u64) -> String {
    if n >= 1024 * 1024 {
        format!("{:.2} MiB", n as f64 / (1024.0 * 1024.0))
    } else {
        format!("{:.1} KiB", n as f64 / 1024.0)
    }
}
