//! One client connection as a state machine: bytes and `now` in, `Action`s
//! out. No syscalls, no clock: the server reads and writes, this decides.
//!
//! A connection starts reading an HTTP request head. A complete head becomes
//! a response (built here, or by the server for pages, assets and `/status`),
//! a wait for a still, an MJPEG stream, or a WebSocket. Pipelined requests are
//! answered in order: parsing pauses while a still is awaited. Every state
//! has a deadline (head read, keep-alive idle, ping, dead peer, linger), and
//! every input buffer is bounded.

use std::fmt;
use std::time::Instant;

use crate::auth;
use crate::config::{Auth, Limits};
use crate::outq::Bytes;
use crate::proto::Status;
use crate::proto::http::{self, Header, MAX_HEADERS, RequestHead};
use crate::proto::ws::{self, Decoder, Event, Opcode};

/// How long a closing connection waits for the peer's FIN after ours, so
/// unread request bytes don't turn our last response into a TCP reset.
pub const LINGER: std::time::Duration = std::time::Duration::from_secs(2);

/// What the server is asked to produce (needs files, camera or counters).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `www/` file by request path (`/` → `index.html`, `/stream` →
    /// `stream.html`): 404 if missing.
    Page(String),
    Status,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Viewer {
    WsBinary,
    WsBase64,
    Mjpeg,
}

/// What the log line and the response need to know about a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReqInfo {
    pub method: &'static str,
    /// The path (query dropped: it may hold a token), at most 200 bytes.
    pub path: String,
    pub head_only: bool,
    pub keep_alive: bool,
    pub started: Instant,
}

impl ReqInfo {
    /// For answers to a request whose head could not be read (400, 408):
    /// no method or path to log, and the connection closes.
    fn unparsed(started: Instant) -> ReqInfo {
        ReqInfo {
            method: "-",
            path: "-".into(),
            head_only: false,
            keep_alive: false,
            started,
        }
    }
}

pub enum Action {
    /// A whole response built here.
    Respond {
        bytes: Vec<u8>,
        status: u16,
        req: ReqInfo,
    },
    /// The server builds the response.
    Serve { route: Route, req: ReqInfo },
    /// Wait for a still; answer with `on_snapshot` when it comes.
    Snapshot { req: ReqInfo },
    /// From now on, send this viewer every frame.
    Subscribe(Viewer),
    /// WebSocket frames (pong, close, echo).
    Send(Bytes),
    /// Stop reading requests; once the output is flushed, half-close and
    /// linger, then close.
    Close,
    /// Close at once (the peer is gone or unresponsive).
    Abort,
}

/// What the request-handling rules need from the configuration.
pub struct Policy<'a> {
    pub limits: &'a Limits,
    pub auth: &'a Auth,
    pub allow_origins: &'a [String],
    pub ws_echo: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WsKind {
    Stream,
    Echo,
}

enum ConnState {
    /// Waiting for (more of) a request head. `since` is when the current
    /// head began, or when the connection went idle if nothing is buffered.
    ReadingHead {
        scanned: usize,
        since: Instant,
    },
    AwaitingSnapshot {
        req: ReqInfo,
    },
    WebSocket {
        decoder: Box<Decoder>,
        kind: WsKind,
        last_rx: Instant,
        next_ping: Instant,
        close_sent: bool,
    },
    /// A multipart stream: input is read and ignored.
    Mjpeg,
    /// Done: output is flushing; input is discarded.
    Closing,
}

impl ConnState {
    fn name(&self) -> &'static str {
        match self {
            ConnState::ReadingHead { .. } => "reading-head",
            ConnState::AwaitingSnapshot { .. } => "awaiting-snapshot",
            ConnState::WebSocket { .. } => "websocket",
            ConnState::Mjpeg => "mjpeg",
            ConnState::Closing => "closing",
        }
    }
}

impl fmt::Debug for ConnState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

pub struct Conn {
    state: ConnState,
    /// Unparsed request bytes (bounded by the head limit).
    inbuf: Vec<u8>,
    /// `--trace`: the peer's name for logging each state change.
    trace: Option<String>,
}

impl Conn {
    pub fn new(now: Instant) -> Conn {
        Conn {
            state: ConnState::ReadingHead {
                scanned: 0,
                since: now,
            },
            inbuf: Vec::new(),
            trace: None,
        }
    }

    /// Logs every state change of this connection as `LABEL old => new`
    /// (`--trace`: for watching the protocol work, not for production).
    pub fn trace_as(&mut self, label: String) {
        self.trace = Some(label);
    }

    pub fn state_name(&self) -> &'static str {
        self.state.name()
    }

    pub fn is_viewer(&self) -> bool {
        matches!(
            self.state,
            ConnState::Mjpeg
                | ConnState::WebSocket {
                    kind: WsKind::Stream,
                    close_sent: false,
                    ..
                }
        )
    }

    /// Every transition goes through here: the one place to log it.
    fn set_state(&mut self, new: ConnState) {
        if let Some(label) = &self.trace {
            let (old, new) = (self.state.name(), new.name());
            // The next keep-alive request is not a change of state.
            if old != new {
                eprintln!("{label} {old} => {new}");
            }
        }
        self.state = new;
    }

    /// Bytes arrived from the peer.
    pub fn on_bytes(&mut self, data: &[u8], now: Instant, p: &Policy, out: &mut Vec<Action>) {
        match &mut self.state {
            ConnState::ReadingHead { .. } => {
                if self.inbuf.is_empty() {
                    // First byte of a new head: the header timeout starts.
                    self.set_state(ConnState::ReadingHead {
                        scanned: 0,
                        since: now,
                    });
                }
                self.inbuf.extend_from_slice(data);
                self.parse_requests(now, p, out);
            }
            ConnState::AwaitingSnapshot { .. } => {
                // Pipelined requests wait their turn, within the head limit.
                self.inbuf.extend_from_slice(data);
                if self.inbuf.len() > p.limits.max_head_bytes {
                    self.set_state(ConnState::Closing);
                    out.push(Action::Abort);
                }
            }
            ConnState::WebSocket { .. } => self.on_ws_bytes(data, now, out),
            ConnState::Mjpeg | ConnState::Closing => {}
        }
    }

    /// The peer closed its sending side (EOF). A half-closed client may
    /// still be reading: what it asked for goes out, then we close.
    pub fn on_eof(&mut self, out: &mut Vec<Action>) {
        match self.state {
            // A pending snapshot still goes out (`curl` over a one-shot
            // connection half-closes exactly like this).
            ConnState::AwaitingSnapshot { .. } => {}
            // Answers already queued (pipelined, or a large page) are
            // flushed; a partial head can never complete.
            ConnState::ReadingHead { .. } => {
                self.inbuf.clear();
                out.push(Action::Close);
                self.set_state(ConnState::Closing);
            }
            // A viewer that stops sending has gone away: a WebSocket peer
            // must send a Close frame first (RFC 6455 §7.1.1).
            ConnState::WebSocket { .. } | ConnState::Mjpeg => {
                out.push(Action::Abort);
                self.set_state(ConnState::Closing);
            }
            ConnState::Closing => {}
        }
    }

    fn parse_requests(&mut self, now: Instant, p: &Policy, out: &mut Vec<Action>) {
        loop {
            let ConnState::ReadingHead { scanned, since } = &mut self.state else {
                return;
            };
            let since = *since;
            let limits = http::Limits {
                max_head_bytes: p.limits.max_head_bytes,
                max_target_bytes: p.limits.max_target_bytes,
            };
            let mut headers = [Header::default(); MAX_HEADERS];
            let parsed = http::parse_head(&self.inbuf, scanned, &limits, &mut headers);
            let consumed = match parsed {
                Ok(Status::Partial) => return,
                Err(e) => {
                    // The request is unreadable: say why and close, since we
                    // cannot know where the next request would start.
                    let mut bytes = Vec::new();
                    let status = e.status();
                    http::encode_simple_response(
                        &mut bytes,
                        status,
                        &[],
                        &format!("{e}\n"),
                        false,
                        false,
                    );
                    let req = ReqInfo::unparsed(since);
                    out.push(Action::Respond { bytes, status, req });
                    out.push(Action::Close);
                    self.inbuf.clear();
                    self.set_state(ConnState::Closing);
                    return;
                }
                Ok(Status::Complete((head, consumed))) => {
                    let next = Conn::on_request(&head, since, now, p, out);
                    self.set_state(next);
                    consumed
                }
            };
            self.inbuf.drain(..consumed.min(self.inbuf.len()));
            if let ConnState::ReadingHead { scanned, since } = &mut self.state {
                *scanned = 0;
                *since = now;
            } else {
                if matches!(self.state, ConnState::WebSocket { .. }) && !self.inbuf.is_empty() {
                    // Frames sent right behind the handshake.
                    let rest = std::mem::take(&mut self.inbuf);
                    self.on_ws_bytes(&rest, now, out);
                }
                return;
            }
        }
    }

    /// Decides what a complete request head becomes; returns the next state.
    fn on_request(
        head: &RequestHead<'_, '_>,
        since: Instant,
        now: Instant,
        p: &Policy,
        out: &mut Vec<Action>,
    ) -> ConnState {
        let path = head.path();
        let method: &'static str = match head.method {
            "GET" => "GET",
            "HEAD" => "HEAD",
            _ => "OTHER",
        };
        let req = ReqInfo {
            method,
            path: truncate(path, 200),
            head_only: method == "HEAD",
            keep_alive: head.keep_alive(),
            started: since,
        };
        let reading = ConnState::ReadingHead {
            scanned: 0,
            since: now,
        };
        let respond = |out: &mut Vec<Action>, status: u16, extra: &[(&str, &str)], body: &str| {
            let mut bytes = Vec::new();
            http::encode_simple_response(
                &mut bytes,
                status,
                extra,
                body,
                req.head_only,
                req.keep_alive,
            );
            out.push(Action::Respond {
                bytes,
                status,
                req: req.clone(),
            });
        };
        let after = |out: &mut Vec<Action>, keep_alive: bool| {
            if keep_alive {
                reading
            } else {
                out.push(Action::Close);
                ConnState::Closing
            }
        };

        // RFC 9110 §15.5.6: 405 lists what is allowed. Only GET and HEAD
        // exist here; no body was accepted, so the connection stays usable.
        if method == "OTHER" {
            let mut bytes = Vec::new();
            http::encode_simple_response(
                &mut bytes,
                405,
                &[("Allow", "GET, HEAD")],
                "method not allowed: only GET and HEAD\n",
                false,
                req.keep_alive,
            );
            let req = ReqInfo {
                method: "OTHER",
                ..req.clone()
            };
            let ka = req.keep_alive;
            out.push(Action::Respond {
                bytes,
                status: 405,
                req,
            });
            return after(out, ka);
        }
        if !auth::authorized(p.auth, head) {
            respond(
                out,
                401,
                &[("WWW-Authenticate", auth::CHALLENGE)],
                "authentication required\n",
            );
            return after(out, req.keep_alive);
        }

        let query = head.query().unwrap_or("");
        let action = http::query_param(query, "action");
        let wants_ws = ws::is_upgrade(head);
        match (path, action) {
            ("/stream", _) | ("/echo", _) if wants_ws => {
                let kind = if path == "/echo" {
                    if !p.ws_echo {
                        respond(out, 404, &[], "not found (start with --ws-echo)\n");
                        return after(out, req.keep_alive);
                    }
                    WsKind::Echo
                } else {
                    WsKind::Stream
                };
                let hs = match ws::validate_handshake(head) {
                    Ok(hs) => hs,
                    Err(e) => {
                        let extra: Vec<(&str, &str)> = e.extra_header().into_iter().collect();
                        let mut bytes = Vec::new();
                        let status = e.status();
                        http::encode_simple_response(
                            &mut bytes,
                            status,
                            &extra,
                            &format!("{e}\n"),
                            req.head_only,
                            false,
                        );
                        out.push(Action::Respond {
                            bytes,
                            status,
                            req: req.clone(),
                        });
                        out.push(Action::Close);
                        return ConnState::Closing;
                    }
                };
                if !auth::origin_allowed(hs.origin, head.header("host"), p.allow_origins) {
                    respond(out, 403, &[], "origin not allowed (see --allow-origin)\n");
                    return after(out, req.keep_alive);
                }
                let mut bytes = Vec::new();
                ws::encode_handshake_response(&mut bytes, hs.key);
                out.push(Action::Respond {
                    bytes,
                    status: 101,
                    req: req.clone(),
                });
                if kind == WsKind::Stream {
                    let base64 = http::query_param(query, "encoding") == Some("base64");
                    out.push(Action::Subscribe(if base64 {
                        Viewer::WsBase64
                    } else {
                        Viewer::WsBinary
                    }));
                }
                let max = if kind == WsKind::Echo {
                    p.limits.ws_max_message_bytes
                } else {
                    p.limits.ws_max_message_bytes.min(64 * 1024)
                };
                ConnState::WebSocket {
                    decoder: Box::new(Decoder::new(max)),
                    kind,
                    last_rx: now,
                    next_ping: now + p.limits.ping_interval,
                    close_sent: false,
                }
            }
            ("/pi.jpg" | "/snapshot", _) | ("/", Some("snapshot")) => ConnState::AwaitingSnapshot {
                req: {
                    out.push(Action::Snapshot { req: req.clone() });
                    req
                },
            },
            ("/stream.mjpg", _) | ("/", Some("stream")) => {
                let mut bytes = Vec::new();
                http::encode_mjpeg_response_head(&mut bytes);
                if req.head_only {
                    // The head as a GET would get it, minus the first
                    // boundary (that is body).
                    let end = bytes
                        .windows(4)
                        .position(|w| w == b"\r\n\r\n")
                        .map_or(bytes.len(), |i| i + 4);
                    bytes.truncate(end);
                    out.push(Action::Respond {
                        bytes,
                        status: 200,
                        req,
                    });
                    out.push(Action::Close);
                    return ConnState::Closing;
                }
                out.push(Action::Respond {
                    bytes,
                    status: 200,
                    req,
                });
                out.push(Action::Subscribe(Viewer::Mjpeg));
                ConnState::Mjpeg
            }
            ("/status", _) => {
                let ka = req.keep_alive;
                out.push(Action::Serve {
                    route: Route::Status,
                    req,
                });
                after(out, ka)
            }
            ("/echo", _) if p.ws_echo => {
                respond(
                    out,
                    426,
                    &[("Upgrade", "websocket"), ("Sec-WebSocket-Version", "13")],
                    "this is a WebSocket endpoint\n",
                );
                after(out, req.keep_alive)
            }
            (_, Some(_)) if path == "/" => {
                respond(out, 404, &[], "unknown action\n");
                after(out, req.keep_alive)
            }
            (path, _) => {
                let ka = req.keep_alive;
                out.push(Action::Serve {
                    route: Route::Page(path.to_string()),
                    req,
                });
                after(out, ka)
            }
        }
    }

    /// The still arrived (or failed) and the server queued the response.
    /// Continues with pipelined requests.
    pub fn on_snapshot_sent(&mut self, now: Instant, p: &Policy, out: &mut Vec<Action>) {
        let ConnState::AwaitingSnapshot { req } = &self.state else {
            return;
        };
        if !req.keep_alive {
            out.push(Action::Close);
            self.set_state(ConnState::Closing);
            return;
        }
        self.set_state(ConnState::ReadingHead {
            scanned: 0,
            since: now,
        });
        if !self.inbuf.is_empty() {
            self.parse_requests(now, p, out);
        }
    }

    /// The request info of an awaited snapshot.
    pub fn awaiting_snapshot(&self) -> Option<&ReqInfo> {
        match &self.state {
            ConnState::AwaitingSnapshot { req } => Some(req),
            _ => None,
        }
    }

    fn on_ws_bytes(&mut self, mut data: &[u8], now: Instant, out: &mut Vec<Action>) {
        let ConnState::WebSocket {
            decoder,
            kind,
            last_rx,
            close_sent,
            ..
        } = &mut self.state
        else {
            return;
        };
        *last_rx = now;
        loop {
            let (used, event) = match decoder.feed(data) {
                Ok(r) => r,
                Err(e) => {
                    // RFC 6455 §7.1.7: fail the connection: send a Close with
                    // the code the broken rule calls for, then close TCP.
                    if !*close_sent {
                        let mut b = Vec::new();
                        ws::encode_close(&mut b, e.close_code(), &e.to_string());
                        out.push(Action::Send(Bytes::Owned(b)));
                    }
                    out.push(Action::Close);
                    self.set_state(ConnState::Closing);
                    return;
                }
            };
            data = data.get(used..).unwrap_or_default();
            match event {
                None => return,
                Some(Event::Ping(payload)) => {
                    // §5.5.3: a Pong carries the Ping's payload. After our
                    // Close we send nothing more (§5.5.1).
                    if !*close_sent {
                        let mut b = Vec::new();
                        ws::encode_frame(&mut b, Opcode::Pong, payload);
                        out.push(Action::Send(Bytes::Owned(b)));
                    }
                }
                Some(Event::Pong(_)) => {}
                Some(Event::Text(text)) => {
                    if *kind == WsKind::Echo && !*close_sent {
                        let mut b = Vec::new();
                        ws::encode_frame(&mut b, Opcode::Text, text.as_bytes());
                        out.push(Action::Send(Bytes::Owned(b)));
                    }
                }
                Some(Event::Binary(bin)) => {
                    if *kind == WsKind::Echo && !*close_sent {
                        let mut b = Vec::new();
                        ws::encode_frame(&mut b, Opcode::Binary, bin);
                        out.push(Action::Send(Bytes::Owned(b)));
                    }
                }
                Some(Event::Close { code, .. }) => {
                    // §5.5.1: answer a Close with a Close (echoing the code),
                    // then the server closes the TCP connection first (§7.1.1).
                    if !*close_sent {
                        let mut b = Vec::new();
                        ws::encode_close(&mut b, code.unwrap_or(ws::close::NORMAL), "");
                        if code.is_none() {
                            // §7.1.5: no code received means we reply
                            // with an empty Close body.
                            b.clear();
                            ws::encode_frame(&mut b, Opcode::Close, &[]);
                        }
                        out.push(Action::Send(Bytes::Owned(b)));
                    }
                    out.push(Action::Close);
                    self.set_state(ConnState::Closing);
                    return;
                }
            }
        }
    }

    /// Starts the closing handshake from our side (shutdown: 1001).
    pub fn close_ws(&mut self, code: u16, out: &mut Vec<Action>) {
        if let ConnState::WebSocket { close_sent, .. } = &mut self.state
            && !*close_sent
        {
            *close_sent = true;
            let mut b = Vec::new();
            ws::encode_close(&mut b, code, "");
            out.push(Action::Send(Bytes::Owned(b)));
        }
    }

    /// The nearest instant at which `on_timer` has work.
    pub fn deadline(&self, p: &Limits) -> Option<Instant> {
        match &self.state {
            ConnState::ReadingHead { since, .. } => Some(if self.inbuf.is_empty() {
                *since + p.idle_timeout
            } else {
                *since + p.header_timeout
            }),
            ConnState::WebSocket {
                last_rx, next_ping, ..
            } => Some((*next_ping).min(*last_rx + p.dead_peer_timeout)),
            ConnState::AwaitingSnapshot { .. } | ConnState::Mjpeg | ConnState::Closing => None,
        }
    }

    pub fn on_timer(&mut self, now: Instant, p: &Limits, out: &mut Vec<Action>) {
        match &mut self.state {
            ConnState::ReadingHead { since, .. } => {
                if self.inbuf.is_empty() {
                    if now >= *since + p.idle_timeout {
                        // Idle keep-alive: close quietly (RFC 9112 §9.3).
                        out.push(Action::Abort);
                        self.set_state(ConnState::Closing);
                    }
                } else if now >= *since + p.header_timeout {
                    // Slowloris: the head did not arrive in time.
                    let mut bytes = Vec::new();
                    http::encode_simple_response(
                        &mut bytes,
                        408,
                        &[],
                        "request head not received in time\n",
                        false,
                        false,
                    );
                    let req = ReqInfo::unparsed(*since);
                    out.push(Action::Respond {
                        bytes,
                        status: 408,
                        req,
                    });
                    out.push(Action::Close);
                    self.inbuf.clear();
                    self.set_state(ConnState::Closing);
                }
            }
            ConnState::WebSocket {
                last_rx,
                next_ping,
                close_sent,
                ..
            } => {
                if now >= *last_rx + p.dead_peer_timeout {
                    // Silent past the limit, pings unanswered: gone.
                    out.push(Action::Abort);
                    self.set_state(ConnState::Closing);
                } else if now >= *next_ping {
                    *next_ping = now + p.ping_interval;
                    if !*close_sent {
                        let mut b = Vec::new();
                        ws::encode_frame(&mut b, Opcode::Ping, b"picamd");
                        out.push(Action::Send(Bytes::Owned(b)));
                    }
                }
            }
            _ => {}
        }
    }
}

fn truncate(s: &str, max: usize) -> String {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use std::time::Duration;

    /// Actions as comparable text.
    fn show(actions: &[Action]) -> Vec<String> {
        actions
            .iter()
            .map(|a| match a {
                Action::Respond { bytes, status, .. } => {
                    let text = String::from_utf8_lossy(bytes);
                    let first = text.lines().next().unwrap_or("").to_string();
                    format!("respond {status} {first}")
                }
                Action::Serve { route, req } => format!("serve {route:?} {}", req.method),
                Action::Snapshot { req } => format!("snapshot {}", req.path),
                Action::Subscribe(v) => format!("subscribe {v:?}"),
                Action::Send(b) => format!("send {:02x?}", &b[..b.len().min(4)]),
                Action::Close => "close".into(),
                Action::Abort => "abort".into(),
            })
            .collect()
    }

    fn feed(cfg: &Config, chunks: &[&[u8]]) -> (Conn, Vec<String>) {
        let now = Instant::now();
        let mut c = Conn::new(now);
        let mut out = Vec::new();
        let p = policy(cfg);
        for chunk in chunks {
            c.on_bytes(chunk, now, &p, &mut out);
        }
        (c, show(&out))
    }

    fn policy(cfg: &Config) -> Policy<'_> {
        Policy {
            limits: &cfg.limits,
            auth: &cfg.auth,
            allow_origins: &cfg.allow_origins,
            ws_echo: cfg.ws_echo,
        }
    }

    const TWO: &[u8] =
        b"GET / HTTP/1.1\r\nHost: pi\r\n\r\nHEAD /status HTTP/1.1\r\nHost: pi\r\n\r\n";

    #[test]
    fn pipelined_requests_answer_in_order_at_every_split() {
        let cfg = Config::defaults();
        let (_, whole) = feed(&cfg, &[TWO]);
        assert_eq!(
            whole,
            [r#"serve Page("/") GET"#, "serve Status HEAD"],
            "{whole:?}"
        );
        for cut in 0..=TWO.len() {
            let (_, split) = feed(&cfg, &[&TWO[..cut], &TWO[cut..]]);
            assert_eq!(split, whole, "cut at {cut}");
        }
    }

    #[test]
    fn other_methods_get_405_and_the_connection_lives() {
        let cfg = Config::defaults();
        let (c, acts) = feed(
            &cfg,
            &[b"DELETE /pi.jpg HTTP/1.1\r\nHost: pi\r\n\r\nGET /status HTTP/1.1\r\nHost: pi\r\n\r\n"],
        );
        assert_eq!(acts[0], "respond 405 HTTP/1.1 405 Method Not Allowed");
        assert_eq!(acts[1], "serve Status GET");
        assert_eq!(c.state_name(), "reading-head");
    }

    #[test]
    fn malformed_request_gets_400_and_close() {
        let cfg = Config::defaults();
        let (c, acts) = feed(&cfg, &[b"GET /\r\n\r\n"]);
        assert_eq!(acts.len(), 2, "{acts:?}");
        assert!(acts[0].starts_with("respond 400"), "{acts:?}");
        assert_eq!(acts[1], "close");
        assert_eq!(c.state_name(), "closing");
    }

    #[test]
    fn snapshot_holds_back_the_next_pipelined_request() {
        let cfg = Config::defaults();
        let now = Instant::now();
        let (mut c, acts) = feed(
            &cfg,
            &[b"GET /pi.jpg?r=3 HTTP/1.1\r\nHost: pi\r\n\r\nGET /status HTTP/1.1\r\nHost: pi\r\n\r\n"],
        );
        assert_eq!(acts, ["snapshot /pi.jpg"]);
        assert_eq!(c.state_name(), "awaiting-snapshot");
        let mut out = Vec::new();
        c.on_snapshot_sent(now, &policy(&cfg), &mut out);
        assert_eq!(show(&out), ["serve Status GET"]);
    }

    #[test]
    fn snapshot_aliases() {
        let cfg = Config::defaults();
        for path in ["/pi.jpg", "/snapshot", "/?action=snapshot"] {
            let req = format!("GET {path} HTTP/1.1\r\nHost: pi\r\n\r\n");
            let (_, acts) = feed(&cfg, &[req.as_bytes()]);
            assert!(acts[0].starts_with("snapshot"), "{path}: {acts:?}");
        }
        for path in ["/stream.mjpg", "/?action=stream"] {
            let req = format!("GET {path} HTTP/1.1\r\nHost: pi\r\n\r\n");
            let (c, acts) = feed(&cfg, &[req.as_bytes()]);
            assert_eq!(acts[1], "subscribe Mjpeg", "{path}: {acts:?}");
            assert!(c.is_viewer());
        }
    }

    #[test]
    fn http10_closes_after_the_response() {
        let cfg = Config::defaults();
        let (_, acts) = feed(&cfg, &[b"GET /status HTTP/1.0\r\n\r\n"]);
        assert_eq!(acts, ["serve Status GET", "close"]);
    }

    #[test]
    fn auth_is_required_everywhere_when_on() {
        let mut cfg = Config::defaults();
        cfg.auth.basic.push(b"pi:cam".to_vec());
        cfg.auth.tokens.push(b"t0k".to_vec());
        let (_, acts) = feed(&cfg, &[b"GET /pi.jpg HTTP/1.1\r\nHost: pi\r\n\r\n"]);
        assert!(acts[0].starts_with("respond 401"), "{acts:?}");
        // base64("pi:cam") = cGk6Y2Ft
        let (_, acts) = feed(
            &cfg,
            &[b"GET /pi.jpg HTTP/1.1\r\nHost: pi\r\nAuthorization: Basic cGk6Y2Ft\r\n\r\n"],
        );
        assert_eq!(acts, ["snapshot /pi.jpg"]);
        let (_, acts) = feed(
            &cfg,
            &[b"GET /pi.jpg?token=t0k HTTP/1.1\r\nHost: pi\r\n\r\n"],
        );
        assert_eq!(acts, ["snapshot /pi.jpg"]);
        let (_, acts) = feed(
            &cfg,
            &[b"GET /pi.jpg?token=t0K HTTP/1.1\r\nHost: pi\r\n\r\n"],
        );
        assert!(acts[0].starts_with("respond 401"), "{acts:?}");
        let ws =
            b"GET /stream HTTP/1.1\r\nHost: pi\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
        let (_, acts) = feed(&cfg, &[ws]);
        assert!(acts[0].starts_with("respond 401"), "{acts:?}");
    }

    const HANDSHAKE: &[u8] = b"GET /stream HTTP/1.1\r\nHost: pi:8080\r\nUpgrade: websocket\r\n\
Connection: keep-alive, Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
Sec-WebSocket-Version: 13\r\nOrigin: http://pi:8080\r\n\r\n";

    #[test]
    fn websocket_handshake_ping_and_close() {
        let cfg = Config::defaults();
        // Masked ping "Hi" then masked close 1000 (RFC 6455 §5.5).
        let mask = [1u8, 2, 3, 4];
        let ping = [0x89, 0x82, 1, 2, 3, 4, b'H' ^ mask[0], b'i' ^ mask[1]];
        let close = [0x88, 0x82, 1, 2, 3, 4, 0x03 ^ mask[0], 0xe8 ^ mask[1]];
        let (c, acts) = feed(&cfg, &[HANDSHAKE, &ping, &close]);
        assert_eq!(acts[0], "respond 101 HTTP/1.1 101 Switching Protocols");
        assert_eq!(acts[1], "subscribe WsBinary");
        assert_eq!(acts[2], "send [8a, 02, 48, 69]"); // pong "Hi"
        assert_eq!(acts[3], "send [88, 02, 03, e8]"); // close 1000 echoed
        assert_eq!(acts[4], "close");
        assert_eq!(c.state_name(), "closing");
    }

    #[test]
    fn websocket_protocol_error_closes_with_1002() {
        let cfg = Config::defaults();
        let unmasked = [0x81, 0x01, b'x'];
        let (_, acts) = feed(&cfg, &[HANDSHAKE, &unmasked]);
        // A Close frame whose code is 1002 (0x03ea).
        assert!(acts[2].starts_with("send [88, "), "{acts:?}");
        assert!(acts[2].ends_with("03, ea]"), "{acts:?}");
        assert_eq!(acts[3], "close");
    }

    #[test]
    fn base64_viewers_and_foreign_origins() {
        let cfg = Config::defaults();
        let b64 =
            String::from_utf8_lossy(HANDSHAKE).replace("/stream ", "/stream?encoding=base64 ");
        let (_, acts) = feed(&cfg, &[b64.as_bytes()]);
        assert_eq!(acts[1], "subscribe WsBase64");
        let evil =
            String::from_utf8_lossy(HANDSHAKE).replace("http://pi:8080", "http://evil.example");
        let (_, acts) = feed(&cfg, &[evil.as_bytes()]);
        assert!(acts[0].starts_with("respond 403"), "{acts:?}");
    }

    #[test]
    fn timers_close_slow_heads_and_idle_connections_and_ping_viewers() {
        let cfg = Config::defaults();
        let lim = &cfg.limits;
        let t0 = Instant::now();
        let mut c = Conn::new(t0);
        let mut out = Vec::new();
        c.on_bytes(b"GET / HT", t0, &policy(&cfg), &mut out);
        assert_eq!(c.deadline(lim), Some(t0 + lim.header_timeout));
        c.on_timer(t0 + lim.header_timeout, lim, &mut out);
        assert!(show(&out)[0].starts_with("respond 408"), "{:?}", show(&out));

        let mut idle = Conn::new(t0);
        let mut out = Vec::new();
        assert_eq!(idle.deadline(lim), Some(t0 + lim.idle_timeout));
        idle.on_timer(
            t0 + lim.idle_timeout - Duration::from_millis(1),
            lim,
            &mut out,
        );
        assert!(out.is_empty());
        idle.on_timer(t0 + lim.idle_timeout, lim, &mut out);
        assert_eq!(show(&out), ["abort"]);

        let (mut ws, _) = feed(&cfg, &[HANDSHAKE]);
        let mut out = Vec::new();
        let at = ws.deadline(lim).unwrap();
        ws.on_timer(at, lim, &mut out);
        assert!(show(&out)[0].starts_with("send [89"), "{:?}", show(&out));
        let mut out = Vec::new();
        ws.on_timer(at + lim.dead_peer_timeout, lim, &mut out);
        assert_eq!(show(&out), ["abort"]);
    }
}
