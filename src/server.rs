//! The server: owns the reactor, the listeners, the clients and the camera;
//! dispatches readiness by token, carries out each connection's `Action`s,
//! and fans camera frames out to viewers.
//!
//! Fan-out: each frame is framed once per kind (WebSocket binary header,
//! WebSocket base64 text only when such a viewer exists, multipart part
//! head) and shared by reference; a viewer's queue holds at most one frame
//! that has not started (`outq`), so a stalled viewer costs two reference
//! swaps per frame and no syscall (it is not written to until epoll says its
//! socket is writable again).

use std::io::{self, IoSlice, Read};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::socket::{MsgFlags, SockaddrStorage, sendmsg};

use crate::assets;
use crate::camera::{self, Camera, CameraEvent, CaptureError};
use crate::config::Config;
use crate::conn::{Action, Conn, Policy, ReqInfo, Route, Viewer};
use crate::outq::{Body, Bytes, Frame, MAX_IOV, MemFile, Next, OutQueue};
use crate::proto::http;
use crate::proto::ws::{self, Opcode};
use crate::reactor::{self, Interest, Reactor, Ready, SIGNAL_TOKEN, SignalEvent, Token};
use crate::slab::{Key, Slab};

/// Listener tokens: bit 63 plus the listener's index.
const LISTENER_TOKEN_BASE: Token = 1 << 63;
/// Bytes read from one client per wakeup (level-triggered: the rest waits).
const READ_BUDGET_BYTES: usize = 256 * 1024;
/// After `EMFILE` the listeners pause this long instead of spinning on a
/// connection they cannot accept.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);
/// On SIGTERM, clients get this long to receive their last bytes.
const SHUTDOWN_FLUSH: Duration = Duration::from_millis(700);
/// Largest file served from `--www`.
const MAX_WWW_FILE_BYTES: u64 = 16 * 1024 * 1024;
/// Zero-copy fan-out (`--zero-copy on`: `memfd` + `sendfile`) can only pay
/// for its extra syscall per viewer and the file's page allocation when
/// several viewers take the same large frame, so it is never used below
/// these. Measured on loopback it costs more than `writev` even at 200
/// viewers (README "Performance"), hence off by default.
const ZERO_COPY_MIN_VIEWERS: usize = 2;
const ZERO_COPY_MIN_BYTES: usize = 16 * 1024;
/// Sent with 503 for a failed still: when to try again.
const RETRY_AFTER_SECS: &str = "2";

struct Client {
    sock: TcpStream,
    peer: SocketAddr,
    conn: Conn,
    out: OutQueue,
    viewer: Option<Viewer>,
    interest: Interest,
    /// Close once `out` is flushed.
    close_after_flush: bool,
    /// Half-closed, discarding input until the peer's FIN or this instant.
    linger_until: Option<Instant>,
    /// The peer sent FIN: nothing more to read.
    read_closed: bool,
}

#[derive(Default)]
struct Stats {
    requests: u64,
    frames_out: u64,
    frames_dropped_slow: u64,
    bytes_out: u64,
    rejected_busy: u64,
    fps: f64,
    fps_sample: Option<(Instant, u64)>,
}

pub struct Server {
    cfg: Config,
    reactor: Reactor,
    listeners: Vec<TcpListener>,
    listeners_paused_until: Option<Instant>,
    /// An accept error was logged; quiet until an accept succeeds again.
    accept_error_logged: bool,
    clients: Slab<Client>,
    camera: Camera,
    stats: Stats,
    started: Instant,
    www: Option<PathBuf>,
    stopping_until: Option<Instant>,
    // Scratch buffers reused every turn.
    ready: Vec<Ready>,
    actions: Vec<Action>,
    cam_events: Vec<CameraEvent>,
    keys: Vec<Key>,
}

/// Binds, prints `listening on http://HOST:PORT/`, and runs until SIGINT or
/// SIGTERM. Returns only startup errors and a failed `epoll_wait`.
pub fn run(cfg: Config) -> Result<(), Box<dyn std::error::Error>> {
    let reactor = Reactor::new()?;
    let camera = Camera::new(&cfg.camera, cfg.quiet)?;
    let mut listeners = Vec::new();
    for (i, addr) in cfg.listen.iter().enumerate() {
        let l = TcpListener::bind(addr).map_err(|e| format!("cannot listen on {addr}: {e}"))?;
        l.set_nonblocking(true)?;
        reactor.add(&l, LISTENER_TOKEN_BASE + i as u64, Interest::Read)?;
        let local = l.local_addr()?;
        eprintln!("listening on http://{local}/");
        listeners.push(l);
    }
    eprintln!("camera: {}", camera.describe());
    let www = match &cfg.www {
        Some(dir) => Some(
            dir.canonicalize()
                .map_err(|e| format!("--www {}: {e}", dir.display()))?,
        ),
        None => None,
    };
    let now = reactor::now();
    let mut server = Server {
        cfg,
        reactor,
        listeners,
        listeners_paused_until: None,
        accept_error_logged: false,
        clients: Slab::default(),
        camera,
        stats: Stats::default(),
        started: now,
        www,
        stopping_until: None,
        ready: Vec::new(),
        actions: Vec::new(),
        cam_events: Vec::new(),
        keys: Vec::new(),
    };
    server.run_loop()
}

impl Server {
    fn run_loop(&mut self) -> Result<(), Box<dyn std::error::Error>> {
        loop {
            let deadline = self.next_deadline();
            let mut ready = std::mem::take(&mut self.ready);
            self.reactor.wait(deadline, &mut ready)?;
            let now = reactor::now();
            for r in &ready {
                self.dispatch(*r, now);
            }
            self.ready = ready;
            self.on_timers(now);
            self.handle_camera_events(now);
            let viewers = self.clients.iter().any(|(_, c)| c.viewer.is_some());
            self.camera
                .set_viewers(viewers && self.stopping_until.is_none(), &self.reactor, now);
            if let Some(until) = self.stopping_until
                && (self.clients.is_empty() || now >= until)
            {
                self.camera.shutdown(&self.reactor);
                eprintln!("stopped");
                return Ok(());
            }
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        let mut d = self.camera.next_deadline();
        let mut at = |t: Instant| d = Some(d.map_or(t, |x: Instant| x.min(t)));
        if let Some(t) = self.listeners_paused_until {
            at(t);
        }
        if let Some(t) = self.stopping_until {
            at(t);
        }
        for (_, c) in self.clients.iter() {
            if let Some(t) = c.linger_until {
                at(t);
            } else if let Some(t) = c.conn.deadline(&self.cfg.limits) {
                at(t);
            }
        }
        d
    }

    fn dispatch(&mut self, r: Ready, now: Instant) {
        if r.token == SIGNAL_TOKEN {
            let mut sigs = Vec::new();
            self.reactor.take_signals(&mut sigs);
            for s in sigs {
                match s {
                    SignalEvent::Stop => self.begin_shutdown(now),
                    SignalEvent::Child => {
                        let mut ev = std::mem::take(&mut self.cam_events);
                        self.camera.on_child_exit(&self.reactor, now, &mut ev);
                        self.cam_events = ev;
                    }
                }
            }
        } else if r.token & LISTENER_TOKEN_BASE != 0 {
            self.accept(r.token - LISTENER_TOKEN_BASE, now);
        } else if r.token & camera::TOKEN_BASE != 0 {
            let mut ev = std::mem::take(&mut self.cam_events);
            self.camera
                .on_readable(r.token, &self.reactor, now, &mut ev);
            self.cam_events = ev;
        } else {
            let key = Key::from_u64(r.token);
            // A stale token (slot freed or reused this turn) finds nothing.
            if self.clients.get(key).is_none() {
                return;
            }
            if r.writable {
                self.flush(key, now);
            }
            if r.readable || r.hangup || r.error {
                self.read_client(key, now);
            }
        }
    }

    fn accept(&mut self, index: u64, now: Instant) {
        let Some(listener) = self.listeners.get(index as usize) else {
            return;
        };
        loop {
            let (sock, peer) = match listener.accept() {
                Ok(x) => x,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // EMFILE/ENFILE/ENOBUFS: the connection stays queued and
                    // the listener stays readable; pause instead of spinning.
                    if !self.accept_error_logged {
                        eprintln!("accept: {e}; pausing new connections until it clears");
                        self.accept_error_logged = true;
                    }
                    self.pause_listeners(now);
                    return;
                }
            };
            if self.accept_error_logged {
                eprintln!("accept: recovered");
                self.accept_error_logged = false;
            }
            if sock.set_nonblocking(true).is_err() {
                continue;
            }
            let _ = sock.set_nodelay(true);
            if self.clients.len() >= self.cfg.limits.max_clients || self.stopping_until.is_some() {
                self.stats.rejected_busy += 1;
                let mut b = Vec::new();
                http::encode_simple_response(
                    &mut b,
                    503,
                    &[("Retry-After", "5")],
                    "too many clients\n",
                    false,
                    false,
                );
                // Best effort: one non-blocking send into an empty socket
                // buffer, then close.
                let _ = nix::sys::socket::send(
                    sock.as_raw_fd(),
                    &b,
                    MsgFlags::MSG_NOSIGNAL | MsgFlags::MSG_DONTWAIT,
                );
                let _ = sock.shutdown(std::net::Shutdown::Write);
                log_line(
                    &format!("{peer} - - 503 {} 0ms (max clients)", b.len()),
                    self.cfg.quiet,
                );
                continue;
            }
            let mut client = Client {
                sock,
                peer,
                conn: Conn::new(now),
                out: OutQueue::default(),
                viewer: None,
                interest: Interest::Read,
                close_after_flush: false,
                linger_until: None,
                read_closed: false,
            };
            if self.cfg.trace {
                client.conn.trace_as(peer.to_string());
            }
            let key = self.clients.insert(client);
            let ok = self
                .clients
                .get(key)
                .map(|c| {
                    self.reactor
                        .add(&c.sock, key.to_u64(), Interest::Read)
                        .is_ok()
                })
                .unwrap_or(false);
            if !ok {
                self.clients.remove(key);
            }
        }
    }

    fn pause_listeners(&mut self, now: Instant) {
        for (i, l) in self.listeners.iter().enumerate() {
            let _ = self
                .reactor
                .modify(l, LISTENER_TOKEN_BASE + i as u64, Interest::None);
        }
        self.listeners_paused_until = Some(now + ACCEPT_PAUSE);
    }

    fn resume_listeners(&mut self) {
        for (i, l) in self.listeners.iter().enumerate() {
            let _ = self
                .reactor
                .modify(l, LISTENER_TOKEN_BASE + i as u64, Interest::Read);
        }
        self.listeners_paused_until = None;
    }

    fn read_client(&mut self, key: Key, now: Instant) {
        let mut buf = [0u8; 16 * 1024];
        let mut budget = READ_BUDGET_BYTES;
        let mut actions = std::mem::take(&mut self.actions);
        actions.clear();
        while let Some(c) = self.clients.get_mut(key) {
            match c.sock.read(&mut buf) {
                Ok(0) => {
                    if c.linger_until.is_some() {
                        self.remove(key);
                    } else {
                        c.read_closed = true;
                        c.conn.on_eof(&mut actions);
                        if actions.is_empty() {
                            // Waiting (a snapshot): stop reading the EOF.
                            self.flush(key, now);
                        }
                    }
                    break;
                }
                Ok(n) => {
                    if c.linger_until.is_some() {
                        // Discarding what a closing peer still sends.
                    } else {
                        c.conn
                            .on_bytes(&buf[..n], now, &policy(&self.cfg), &mut actions);
                    }
                    budget = budget.saturating_sub(n);
                    if budget == 0 {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    // ECONNRESET and friends: the peer is gone.
                    self.remove(key);
                    break;
                }
            }
            if !actions.is_empty() {
                self.apply(key, &mut actions, now);
            }
        }
        if !actions.is_empty() {
            self.apply(key, &mut actions, now);
        }
        self.actions = actions;
    }

    /// Carries out a connection's actions, in order, then writes.
    fn apply(&mut self, key: Key, actions: &mut Vec<Action>, now: Instant) {
        let mut i = 0;
        while i < actions.len() {
            let action = std::mem::replace(&mut actions[i], Action::Abort);
            i += 1;
            if self.clients.get(key).is_none() {
                break;
            }
            match action {
                Action::Respond { bytes, status, req } => {
                    self.stats.requests += 1;
                    self.log_request(key, &req, status, bytes.len(), now);
                    self.queue(key, Bytes::Owned(bytes));
                }
                Action::Serve { route, req } => {
                    self.stats.requests += 1;
                    let (bytes, status) = self.serve(&route, &req, now);
                    self.log_request(key, &req, status, bytes.iter().map(|b| b.len()).sum(), now);
                    for b in bytes {
                        self.queue(key, b);
                    }
                }
                Action::Snapshot { .. } => {
                    let mut ev = std::mem::take(&mut self.cam_events);
                    self.camera.request_still(&self.reactor, now, &mut ev);
                    self.cam_events = ev;
                }
                Action::Subscribe(kind) => {
                    if let Some(c) = self.clients.get_mut(key) {
                        c.viewer = Some(kind);
                    }
                }
                Action::Send(b) => self.queue(key, b),
                Action::Close => {
                    if let Some(c) = self.clients.get_mut(key) {
                        c.close_after_flush = true;
                        c.viewer = None;
                    }
                }
                Action::Abort => {
                    self.remove(key);
                    break;
                }
            }
        }
        actions.clear();
        self.flush(key, now);
    }

    fn queue(&mut self, key: Key, b: Bytes) {
        if let Some(c) = self.clients.get_mut(key) {
            self.stats.bytes_out += b.len() as u64;
            c.out.push(b);
        }
    }

    fn log_request(&self, key: Key, req: &ReqInfo, status: u16, bytes: usize, now: Instant) {
        if self.cfg.quiet {
            return;
        }
        let peer = self
            .clients
            .get(key)
            .map(|c| c.peer.to_string())
            .unwrap_or_default();
        let ms = now.saturating_duration_since(req.started).as_millis();
        eprintln!("{peer} {} {} {status} {bytes} {ms}ms", req.method, req.path);
    }

    /// Writes what the client has queued; keeps epoll interest in step;
    /// starts the lingering close once a closing client is flushed.
    fn flush(&mut self, key: Key, now: Instant) {
        let Some(c) = self.clients.get_mut(key) else {
            return;
        };
        let mut dead = false;
        loop {
            let mut iov = [IoSlice::new(&[]); MAX_IOV];
            let res = match c.out.next_write(&mut iov) {
                Next::Nothing => break,
                Next::Slices { n, more } => {
                    let mut flags = MsgFlags::MSG_NOSIGNAL | MsgFlags::MSG_DONTWAIT;
                    if more {
                        // nix has no name for it; the libc constant is the kernel's.
                        flags |= MsgFlags::from_bits_retain(libc::MSG_MORE);
                    }
                    sendmsg::<SockaddrStorage>(
                        c.sock.as_raw_fd(),
                        iov.get(..n).unwrap_or_default(),
                        &[],
                        flags,
                        None,
                    )
                }
                // The socket is non-blocking, so sendfile returns EAGAIN
                // like sendmsg. It has no MSG_NOSIGNAL: a vanished peer
                // gives EPIPE because Rust binaries ignore SIGPIPE.
                Next::File { fd, offset, len } => {
                    let mut off = offset as libc::off_t;
                    nix::sys::sendfile::sendfile(&c.sock, fd, Some(&mut off), len)
                }
            };
            match res {
                Ok(w) => c.out.advance(w),
                Err(Errno::EAGAIN) => break,
                Err(Errno::EINTR) => continue,
                Err(_) => {
                    // EPIPE, ECONNRESET: the peer is gone.
                    dead = true;
                    break;
                }
            }
        }
        if dead {
            self.remove(key);
            return;
        }
        let want = match (c.read_closed, c.out.is_empty()) {
            (false, true) => Interest::Read,
            (false, false) => Interest::ReadWrite,
            (true, true) => Interest::None,
            (true, false) => Interest::Write,
        };
        if want != c.interest {
            if self.reactor.modify(&c.sock, key.to_u64(), want).is_err() {
                self.remove(key);
                return;
            }
            c.interest = want;
        }
        if c.out.is_empty() && c.close_after_flush && c.read_closed {
            // Everything went out and the peer has finished too.
            self.remove(key);
            return;
        }
        if c.out.is_empty() && c.close_after_flush && c.linger_until.is_none() {
            // Half-close and wait for the peer's FIN: closing with unread
            // input would send a RST that can destroy our last response.
            let _ = c.sock.shutdown(std::net::Shutdown::Write);
            c.linger_until = Some(now + crate::conn::LINGER);
        }
    }

    fn remove(&mut self, key: Key) {
        if let Some(c) = self.clients.remove(key) {
            self.reactor.remove(&c.sock);
        }
    }

    fn on_timers(&mut self, now: Instant) {
        if let Some(t) = self.listeners_paused_until
            && now >= t
        {
            self.resume_listeners();
        }
        let mut ev = std::mem::take(&mut self.cam_events);
        if self.camera.next_deadline().is_some_and(|d| now >= d) {
            self.camera.on_tick(&self.reactor, now, &mut ev);
        }
        self.cam_events = ev;
        let mut keys = std::mem::take(&mut self.keys);
        self.clients.keys_into(&mut keys);
        let mut actions = std::mem::take(&mut self.actions);
        for &key in &keys {
            let Some(c) = self.clients.get_mut(key) else {
                continue;
            };
            if let Some(t) = c.linger_until {
                if now >= t {
                    self.remove(key);
                }
                continue;
            }
            if c.conn.deadline(&self.cfg.limits).is_some_and(|d| now >= d) {
                c.conn.on_timer(now, &self.cfg.limits, &mut actions);
                if !actions.is_empty() {
                    self.apply(key, &mut actions, now);
                }
            }
        }
        self.actions = actions;
        self.keys = keys;
    }

    fn handle_camera_events(&mut self, now: Instant) {
        while !self.cam_events.is_empty() {
            let events = std::mem::take(&mut self.cam_events);
            for ev in events {
                match ev {
                    CameraEvent::Frame(jpeg) => self.fan_out(&jpeg, now),
                    CameraEvent::Still(result) => self.answer_snapshots(result, now),
                }
            }
        }
    }

    fn fan_out(&mut self, jpeg: &Rc<[u8]>, now: Instant) {
        self.sample_fps(now);
        // Counting viewers costs a pass over the clients: only when the
        // zero-copy path could be taken at all.
        let use_file = self.cfg.zero_copy
            && jpeg.len() >= ZERO_COPY_MIN_BYTES
            && self
                .clients
                .iter()
                .filter(|(_, c)| matches!(c.viewer, Some(Viewer::WsBinary | Viewer::Mjpeg)))
                .count()
                >= ZERO_COPY_MIN_VIEWERS;
        let body = use_file
            .then(|| mem_file(jpeg))
            .flatten()
            .map_or_else(|| Body::Mem(jpeg.clone()), |f| Body::File(Rc::new(f)));
        let mut ws_bin: Option<Frame> = None;
        let mut ws_b64: Option<Frame> = None;
        let mut mjpeg: Option<Frame> = None;
        let mut keys = std::mem::take(&mut self.keys);
        self.clients.keys_into(&mut keys);
        for &key in &keys {
            let Some(c) = self.clients.get_mut(key) else {
                continue;
            };
            let Some(kind) = c.viewer else { continue };
            let frame = match kind {
                Viewer::WsBinary => {
                    ws_bin.get_or_insert_with(|| ws_frame(body.clone(), Opcode::Binary))
                }
                Viewer::WsBase64 => ws_b64.get_or_insert_with(|| {
                    use base64::Engine;
                    let text = base64::engine::general_purpose::STANDARD.encode(&jpeg[..]);
                    ws_frame(Body::Mem(Rc::from(text.into_bytes())), Opcode::Text)
                }),
                Viewer::Mjpeg => mjpeg.get_or_insert_with(|| {
                    let mut head = Vec::with_capacity(64);
                    http::encode_mjpeg_part_head(&mut head, jpeg.len());
                    Frame {
                        head: Rc::from(head),
                        body: body.clone(),
                        tail: http::MJPEG_PART_TAIL,
                    }
                }),
            };
            let was_idle = c.out.is_empty();
            if c.out.push_frame(frame) {
                self.stats.frames_dropped_slow += 1;
            }
            self.stats.frames_out += 1;
            self.stats.bytes_out += frame.len() as u64;
            // A viewer with output pending is waiting for EPOLLOUT: writing
            // now would only get EAGAIN.
            if was_idle {
                self.flush(key, now);
            }
        }
        self.keys = keys;
    }

    fn sample_fps(&mut self, now: Instant) {
        let frames = self.camera.stats.frames_in;
        match self.stats.fps_sample {
            None => self.stats.fps_sample = Some((now, frames)),
            Some((t, f)) => {
                let dt = now.saturating_duration_since(t);
                if dt >= Duration::from_secs(1) {
                    self.stats.fps = (frames - f) as f64 / dt.as_secs_f64();
                    self.stats.fps_sample = Some((now, frames));
                }
            }
        }
    }

    fn answer_snapshots(&mut self, result: Result<Rc<[u8]>, CaptureError>, now: Instant) {
        let mut keys = std::mem::take(&mut self.keys);
        self.clients.keys_into(&mut keys);
        let mut actions = std::mem::take(&mut self.actions);
        for &key in &keys {
            let Some(req) = self
                .clients
                .get(key)
                .and_then(|c| c.conn.awaiting_snapshot())
                .cloned()
            else {
                continue;
            };
            let conn_hdr = if req.keep_alive {
                "keep-alive"
            } else {
                "close"
            };
            match &result {
                Ok(jpeg) => {
                    let mut head = Vec::new();
                    let len = jpeg.len().to_string();
                    http::encode_response_head(
                        &mut head,
                        200,
                        &[
                            ("Content-Type", "image/jpeg"),
                            ("Content-Length", &len),
                            ("Cache-Control", "no-store"),
                            ("Connection", conn_hdr),
                        ],
                    );
                    let body_len = if req.head_only { 0 } else { jpeg.len() };
                    self.log_request(key, &req, 200, head.len() + body_len, now);
                    self.queue(key, Bytes::Owned(head));
                    if !req.head_only {
                        self.queue(key, Bytes::Shared(jpeg.clone()));
                    }
                }
                Err(e) => {
                    let status = e.status();
                    let mut b = Vec::new();
                    let extra: &[(&str, &str)] = if status == 503 {
                        &[("Retry-After", RETRY_AFTER_SECS)]
                    } else {
                        &[]
                    };
                    // The tool's own words (its last stderr line) help the
                    // person at the page more than a bare exit status.
                    let reason = match (e, self.camera.last_still_error()) {
                        (CaptureError::ShuttingDown, _) | (_, None) => e.to_string(),
                        (_, Some(detail)) => detail.to_string(),
                    };
                    http::encode_simple_response(
                        &mut b,
                        status,
                        extra,
                        &format!("{reason}\n"),
                        req.head_only,
                        req.keep_alive,
                    );
                    self.log_request(key, &req, status, b.len(), now);
                    self.queue(key, Bytes::Owned(b));
                }
            }
            self.stats.requests += 1;
            if let Some(c) = self.clients.get_mut(key) {
                c.conn
                    .on_snapshot_sent(now, &policy(&self.cfg), &mut actions);
                if c.read_closed {
                    // No more requests can come from a half-closed peer.
                    actions.push(Action::Close);
                }
            }
            self.apply(key, &mut actions, now);
        }
        self.actions = actions;
        self.keys = keys;
    }

    /// Builds the response for a page, an asset or `/status`.
    fn serve(&self, route: &Route, req: &ReqInfo, now: Instant) -> (Vec<Bytes>, u16) {
        let conn_hdr = if req.keep_alive {
            "keep-alive"
        } else {
            "close"
        };
        let (body, ctype): (Bytes, &str) = match route {
            Route::Status => (
                Bytes::Owned(self.status_json(now).into_bytes()),
                "application/json",
            ),
            Route::Page(path) => match self.find_page(path) {
                Some(found) => found,
                None => {
                    let mut b = Vec::new();
                    http::encode_simple_response(
                        &mut b,
                        404,
                        &[],
                        "not found\n",
                        req.head_only,
                        req.keep_alive,
                    );
                    return (vec![Bytes::Owned(b)], 404);
                }
            },
        };
        let mut head = Vec::new();
        let len = body.len().to_string();
        http::encode_response_head(
            &mut head,
            200,
            &[
                ("Content-Type", ctype),
                ("Content-Length", &len),
                ("Cache-Control", "no-cache"),
                ("Connection", conn_hdr),
            ],
        );
        if req.head_only {
            (vec![Bytes::Owned(head)], 200)
        } else {
            (vec![Bytes::Owned(head), body], 200)
        }
    }

    /// A page by request path: built in, or under `--www` (never outside).
    fn find_page(&self, path: &str) -> Option<(Bytes, &'static str)> {
        let name = match path {
            "/" => "index.html",
            "/stream" => "stream.html",
            p => p.strip_prefix('/')?,
        };
        let Some(root) = &self.www else {
            return assets::get(name).map(|(b, t)| (Bytes::Static(b), t));
        };
        let mut decoded = Vec::new();
        http::percent_decode(name, &mut decoded).ok()?;
        let name = String::from_utf8(decoded).ok()?;
        if name
            .split('/')
            .any(|seg| seg == ".." || seg.starts_with('.'))
            || name.contains('\0')
        {
            return None;
        }
        let mut full = root.join(&name);
        if full.is_dir() {
            full = full.join("index.html");
        }
        // Symlinks could still point out: the resolved path must stay under
        // the resolved root.
        let real = full.canonicalize().ok()?;
        if !real.starts_with(root) || !real.is_file() {
            return None;
        }
        let meta = std::fs::metadata(&real).ok()?;
        if meta.len() > MAX_WWW_FILE_BYTES {
            return None;
        }
        let bytes = std::fs::read(&real).ok()?;
        Some((Bytes::Owned(bytes), assets::content_type(&real)))
    }

    fn status_json(&self, now: Instant) -> String {
        let (mut ws_bin, mut ws_b64, mut mjpeg, mut other) = (0, 0, 0, 0);
        for (_, c) in self.clients.iter() {
            match c.viewer {
                Some(Viewer::WsBinary) => ws_bin += 1,
                Some(Viewer::WsBase64) => ws_b64 += 1,
                Some(Viewer::Mjpeg) => mjpeg += 1,
                None => other += 1,
            }
        }
        let cam = &self.camera.stats;
        let last_error = match &cam.last_error {
            Some(e) => format!("\"{}\"", json_escape(e)),
            None => "null".into(),
        };
        format!(
            concat!(
                "{{\"version\":\"{}\",\"uptime_s\":{},",
                "\"camera\":{{\"state\":\"{}\",\"fps\":{:.1},\"configured_fps\":{},",
                "\"frames_in\":{},\"stills\":{},\"capture_errors\":{},",
                "\"stream_starts\":{},\"stream_restarts\":{},",
                "\"frames_dropped_oversize\":{},\"frames_dropped_corrupt\":{},",
                "\"garbage_bytes\":{},\"last_error\":{}}},",
                "\"clients\":{{\"total\":{},\"ws\":{},\"ws_base64\":{},\"mjpeg\":{},\"other\":{},\"max\":{},\"rejected_busy\":{}}},",
                "\"frames_out\":{},\"frames_dropped_slow\":{},\"bytes_out\":{},\"requests\":{}}}\n"
            ),
            env!("CARGO_PKG_VERSION"),
            now.saturating_duration_since(self.started).as_secs(),
            self.camera.state_name(),
            if self.camera.stream_running() {
                self.stats.fps
            } else {
                0.0
            },
            self.camera.configured_fps(),
            cam.frames_in,
            cam.stills_captured,
            cam.capture_errors,
            cam.stream_starts,
            cam.stream_restarts,
            cam.frames_dropped_oversize,
            cam.frames_dropped_corrupt,
            cam.garbage_bytes,
            last_error,
            self.clients.len(),
            ws_bin,
            ws_b64,
            mjpeg,
            other,
            self.cfg.limits.max_clients,
            self.stats.rejected_busy,
            self.stats.frames_out,
            self.stats.frames_dropped_slow,
            self.stats.bytes_out,
            self.stats.requests,
        )
    }

    fn begin_shutdown(&mut self, now: Instant) {
        if self.stopping_until.is_some() {
            return;
        }
        eprintln!("stopping");
        self.stopping_until = Some(now + SHUTDOWN_FLUSH);
        // Nobody is left waiting for a still that will never come.
        self.answer_snapshots(Err(CaptureError::ShuttingDown), now);
        for l in self.listeners.drain(..) {
            self.reactor.remove(&l);
        }
        self.listeners_paused_until = None;
        let mut keys = std::mem::take(&mut self.keys);
        self.clients.keys_into(&mut keys);
        let mut actions = std::mem::take(&mut self.actions);
        for &key in &keys {
            if let Some(c) = self.clients.get_mut(key) {
                // WebSockets get 1001 Going Away (RFC 6455 §7.4.1); MJPEG
                // streams and idle connections simply end.
                c.conn.close_ws(ws::close::GOING_AWAY, &mut actions);
                actions.push(Action::Close);
                self.apply(key, &mut actions, now);
            }
        }
        self.actions = actions;
        self.keys = keys;
        self.camera.set_viewers(false, &self.reactor, now);
    }
}

fn policy(cfg: &Config) -> Policy<'_> {
    Policy {
        limits: &cfg.limits,
        auth: &cfg.auth,
        allow_origins: &cfg.allow_origins,
        ws_echo: cfg.ws_echo,
    }
}

/// Copies a frame into a fresh `memfd` for `sendfile` (None on any error:
/// the caller falls back to memory, which always works).
fn mem_file(bytes: &[u8]) -> Option<MemFile> {
    use nix::sys::memfd::{MFdFlags, memfd_create};
    use std::io::Write;
    let fd = memfd_create(c"picamd-frame", MFdFlags::MFD_CLOEXEC).ok()?;
    let mut file = std::fs::File::from(fd);
    file.write_all(bytes).ok()?;
    Some(MemFile {
        fd: file.into(),
        len: bytes.len(),
    })
}

fn ws_frame(body: Body, opcode: Opcode) -> Frame {
    let mut hdr = [0u8; ws::MAX_FRAME_HEADER_BYTES];
    let n = ws::encode_frame_header(true, opcode, body.len() as u64, None, &mut hdr);
    Frame {
        head: Rc::from(&hdr[..n]),
        body,
        tail: b"",
    }
}

fn json_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

fn log_line(msg: &str, quiet: bool) {
    if !quiet {
        eprintln!("{msg}");
    }
}
