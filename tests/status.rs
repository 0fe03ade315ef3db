//! `/status` (issue 4, item 6): valid JSON with the fields SPEC lists
//! (uptime, camera state, frames in/out, fps, clients by kind, frames
//! dropped for slow viewers, capture errors), and values that follow what
//! the server is doing. `HEAD /status` gives the headers alone.

mod common;
use common::*;

use std::io::{BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

// ---- a small strict JSON reader (RFC 8259), enough to check the document ----

#[derive(Debug, Clone, PartialEq)]
enum Json {
    Null,
    Bool(bool),
    Num(f64),
    Str(String),
    Arr(Vec<Json>),
    Obj(Vec<(String, Json)>),
}

impl Json {
    /// Parses a whole document; panics with the position of the first error.
    fn parse(text: &str) -> Json {
        let mut p = JsonParser {
            b: text.as_bytes(),
            i: 0,
        };
        let v = p.value();
        p.ws();
        assert_eq!(p.i, p.b.len(), "trailing bytes in JSON: {text}");
        v
    }

    /// The value at a dotted path (`"camera.state"`); panics if absent.
    fn at(&self, path: &str) -> &Json {
        path.split('.').fold(self, |v, key| match v {
            Json::Obj(members) => {
                let found: Vec<&Json> = members
                    .iter()
                    .filter(|(k, _)| k == key)
                    .map(|(_, v)| v)
                    .collect();
                assert_eq!(
                    found.len(),
                    1,
                    "{path}: key {key:?} found {} times",
                    found.len()
                );
                found[0]
            }
            other => panic!("{path}: {key:?} looked up in {other:?}"),
        })
    }

    fn num(&self, path: &str) -> f64 {
        match self.at(path) {
            Json::Num(n) => *n,
            other => panic!("{path} is {other:?}, not a number"),
        }
    }

    /// A non-negative integer counter.
    fn count(&self, path: &str) -> u64 {
        let n = self.num(path);
        assert!(n >= 0.0 && n.fract() == 0.0, "{path} = {n} is not a count");
        n as u64
    }

    fn str(&self, path: &str) -> &str {
        match self.at(path) {
            Json::Str(s) => s,
            other => panic!("{path} is {other:?}, not a string"),
        }
    }
}

struct JsonParser<'a> {
    b: &'a [u8],
    i: usize,
}

impl JsonParser<'_> {
    fn fail(&self, what: &str) -> ! {
        panic!(
            "JSON: {what} at byte {} in {:?}",
            self.i,
            String::from_utf8_lossy(self.b)
        )
    }

    fn ws(&mut self) {
        while self.i < self.b.len() && matches!(self.b[self.i], b' ' | b'\t' | b'\n' | b'\r') {
            self.i += 1;
        }
    }

    fn peek(&self) -> u8 {
        *self
            .b
            .get(self.i)
            .unwrap_or_else(|| self.fail("unexpected end"))
    }

    fn eat(&mut self, c: u8) {
        if self.peek() != c {
            self.fail(&format!("expected {:?}", c as char));
        }
        self.i += 1;
    }

    fn literal(&mut self, word: &str, v: Json) -> Json {
        if !self.b[self.i..].starts_with(word.as_bytes()) {
            self.fail("bad literal");
        }
        self.i += word.len();
        v
    }

    fn value(&mut self) -> Json {
        self.ws();
        match self.peek() {
            b'{' => {
                self.i += 1;
                let mut members = Vec::new();
                self.ws();
                if self.peek() == b'}' {
                    self.i += 1;
                    return Json::Obj(members);
                }
                loop {
                    self.ws();
                    let k = self.string();
                    self.ws();
                    self.eat(b':');
                    members.push((k, self.value()));
                    self.ws();
                    match self.peek() {
                        b',' => self.i += 1,
                        b'}' => {
                            self.i += 1;
                            return Json::Obj(members);
                        }
                        _ => self.fail("expected , or }"),
                    }
                }
            }
            b'[' => {
                self.i += 1;
                let mut items = Vec::new();
                self.ws();
                if self.peek() == b']' {
                    self.i += 1;
                    return Json::Arr(items);
                }
                loop {
                    items.push(self.value());
                    self.ws();
                    match self.peek() {
                        b',' => self.i += 1,
                        b']' => {
                            self.i += 1;
                            return Json::Arr(items);
                        }
                        _ => self.fail("expected , or ]"),
                    }
                }
            }
            b'"' => Json::Str(self.string()),
            b't' => self.literal("true", Json::Bool(true)),
            b'f' => self.literal("false", Json::Bool(false)),
            b'n' => self.literal("null", Json::Null),
            b'-' | b'0'..=b'9' => self.number(),
            _ => self.fail("unexpected byte"),
        }
    }

    fn digits(&mut self) -> usize {
        let start = self.i;
        while self.i < self.b.len() && self.b[self.i].is_ascii_digit() {
            self.i += 1;
        }
        self.i - start
    }

    fn number(&mut self) -> Json {
        let start = self.i;
        if self.peek() == b'-' {
            self.i += 1;
        }
        let int_start = self.i;
        let n = self.digits();
        if n == 0 || (n > 1 && self.b[int_start] == b'0') {
            self.fail("bad integer part");
        }
        if self.b.get(self.i) == Some(&b'.') {
            self.i += 1;
            if self.digits() == 0 {
                self.fail("bad fraction");
            }
        }
        if matches!(self.b.get(self.i), Some(b'e' | b'E')) {
            self.i += 1;
            if matches!(self.b.get(self.i), Some(b'+' | b'-')) {
                self.i += 1;
            }
            if self.digits() == 0 {
                self.fail("bad exponent");
            }
        }
        let text = std::str::from_utf8(&self.b[start..self.i]).unwrap();
        Json::Num(text.parse().unwrap())
    }

    fn string(&mut self) -> String {
        self.eat(b'"');
        let mut out = Vec::new();
        loop {
            let c = self.peek();
            self.i += 1;
            match c {
                b'"' => break,
                b'\\' => {
                    let e = self.peek();
                    self.i += 1;
                    match e {
                        b'"' | b'\\' | b'/' => out.push(e),
                        b'b' => out.push(8),
                        b'f' => out.push(12),
                        b'n' => out.push(b'\n'),
                        b'r' => out.push(b'\r'),
                        b't' => out.push(b'\t'),
                        b'u' => {
                            let hex = self.b.get(self.i..self.i + 4).unwrap_or_default();
                            let hex = std::str::from_utf8(hex).unwrap_or("");
                            let Ok(cp) = u32::from_str_radix(hex, 16) else {
                                self.fail("bad \\u escape")
                            };
                            self.i += 4;
                            let ch = char::from_u32(cp).unwrap_or('\u{fffd}');
                            out.extend_from_slice(ch.to_string().as_bytes());
                        }
                        _ => self.fail("bad escape"),
                    }
                }
                0..=0x1f => self.fail("control character in string"),
                _ => out.push(c),
            }
        }
        String::from_utf8(out).unwrap_or_else(|_| self.fail("string is not UTF-8"))
    }
}

#[test]
fn the_json_reader_is_strict() {
    let v = Json::parse(r#" {"a":{"b":[1,-2.5e3,true,null]},"s":"x\"\u00e9\n"} "#);
    assert_eq!(
        v.at("a.b"),
        &Json::Arr(vec![
            Json::Num(1.0),
            Json::Num(-2500.0),
            Json::Bool(true),
            Json::Null
        ])
    );
    assert_eq!(v.str("s"), "x\"é\n");
    for bad in [
        r#"{"a":1,}"#,
        r#"{"a":01}"#,
        r#"{"a":1"#,
        "{\"a\":\"\n\"}",
        r#"{"a":1}x"#,
    ] {
        assert!(
            std::panic::catch_unwind(|| Json::parse(bad)).is_err(),
            "accepted {bad:?}"
        );
    }
}

// ---- helpers ----

fn status(srv: &Server) -> Json {
    let r = srv.get("/status");
    assert_eq!(r.status, 200);
    Json::parse(&r.text())
}

fn open_mjpeg(addr: SocketAddr) -> BufReader<TcpStream> {
    let mut s = connect(addr);
    s.write_all(b"GET /stream.mjpg HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    assert_eq!(read_response(&mut s, true).status, 200);
    BufReader::new(s)
}

fn ws_next_jpeg(s: &mut TcpStream) -> Vec<u8> {
    let (op, p) = ws_read_message(s);
    assert_eq!(op, 2);
    assert!(is_whole_jpeg(&p));
    p
}

/// Polls `/status` until `ok` holds; panics with the last document.
fn status_until(srv: &Server, what: &str, ok: impl Fn(&Json) -> bool) -> Json {
    let end = Instant::now() + Duration::from_secs(5);
    loop {
        let s = status(srv);
        if ok(&s) {
            return s;
        }
        assert!(Instant::now() < end, "{what}: {s:?}");
        std::thread::sleep(Duration::from_millis(25));
    }
}

// ---- tests ----

#[test]
fn status_is_json_with_the_spec_fields_and_head_gives_headers_only() {
    let srv = Server::start(&["--camera", "test", "--fps", "20"]);
    let r = srv.get("/status");
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-type").as_deref(),
        Some("application/json")
    );
    let s = Json::parse(&r.text());
    // An idle server: nothing streamed, nothing failed.
    assert_eq!(s.str("camera.state"), "idle");
    assert_eq!(s.num("camera.fps"), 0.0);
    assert_eq!(s.count("camera.configured_fps"), 20);
    for zero in [
        "camera.frames_in",
        "camera.capture_errors",
        "frames_out",
        "frames_dropped_slow",
        "clients.ws",
        "clients.ws_base64",
        "clients.mjpeg",
    ] {
        assert_eq!(s.count(zero), 0, "{zero}");
    }
    assert!(s.count("uptime_s") < 60);
    assert_eq!(s.count("clients.total"), 1, "this request's connection");

    // HEAD: the same headers, no body. The GET behind it on the same
    // connection parses only if no body came first.
    let mut c = srv.connect();
    c.write_all(b"HEAD /status HTTP/1.1\r\nHost: t\r\n\r\nGET /status HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let head = read_response(&mut c, true);
    assert_eq!(head.status, 200);
    assert_eq!(
        head.header("content-type").as_deref(),
        Some("application/json")
    );
    let len: usize = head.header("content-length").unwrap().parse().unwrap();
    assert!(len > 100, "HEAD announces the GET's length, got {len}");
    let get = read_response(&mut c, false);
    assert_eq!(get.status, 200);
    Json::parse(&get.text());
}

#[test]
fn clients_by_kind_count_the_open_viewers() {
    let srv = Server::start(&["--camera", "test", "--fps", "10"]);
    let mut ws: Vec<TcpStream> = (0..2).map(|_| ws_connect(srv.addr, "/stream")).collect();
    let _b64 = ws_connect(srv.addr, "/stream?encoding=base64");
    let mut mjpeg: Vec<_> = (0..3).map(|_| open_mjpeg(srv.addr)).collect();
    let _idle = srv.connect();
    let s = status_until(&srv, "six viewers and an idle connection", |s| {
        s.count("clients.total") == 8
    });
    assert_eq!(s.count("clients.ws"), 2);
    assert_eq!(s.count("clients.ws_base64"), 1);
    assert_eq!(s.count("clients.mjpeg"), 3);
    assert_eq!(
        s.count("clients.other"),
        2,
        "the idle connection and this request"
    );
    assert_eq!(s.str("camera.state"), "streaming");

    ws.pop();
    mjpeg.truncate(1);
    let s = status_until(&srv, "viewers that left", |s| s.count("clients.total") == 5);
    assert_eq!(s.count("clients.ws"), 1);
    assert_eq!(s.count("clients.ws_base64"), 1);
    assert_eq!(s.count("clients.mjpeg"), 1);
}

#[test]
fn frames_and_fps_follow_the_stream() {
    let srv = Server::start(&[
        "--camera",
        "test",
        "--fps",
        "20",
        "--stream-linger",
        "300ms",
    ]);
    let mut ws = ws_connect(srv.addr, "/stream");
    let start = Instant::now();
    let mut got = 0u64;
    while start.elapsed() < Duration::from_millis(1500) {
        ws_next_jpeg(&mut ws);
        got += 1;
    }
    let s1 = status(&srv);
    assert_eq!(s1.str("camera.state"), "streaming");
    let fps = s1.num("camera.fps");
    assert!((10.0..=30.0).contains(&fps), "fps {fps} at --fps 20");
    assert!(
        s1.count("camera.frames_in") >= got,
        "frames_in vs {got} received"
    );
    assert!(
        s1.count("frames_out") >= got,
        "frames_out vs {got} received"
    );
    assert!(s1.count("uptime_s") >= 1);
    for _ in 0..5 {
        ws_next_jpeg(&mut ws);
    }
    // The frames just read may have been counted before s1 (socket
    // buffers); the counters still keep growing while the stream runs.
    let (in1, out1) = (s1.count("camera.frames_in"), s1.count("frames_out"));
    status_until(&srv, "frames_in and frames_out growing", |s| {
        s.count("camera.frames_in") >= in1 + 5 && s.count("frames_out") >= out1 + 5
    });

    // The viewer leaves: after the linger the camera is idle, fps 0, and
    // no frame comes in.
    drop(ws);
    let s3 = status_until(&srv, "idle after the linger", |s| {
        s.str("camera.state") == "idle"
    });
    assert_eq!(s3.num("camera.fps"), 0.0);
    std::thread::sleep(Duration::from_millis(200));
    let s4 = status(&srv);
    assert_eq!(s4.count("camera.frames_in"), s3.count("camera.frames_in"));
}

#[test]
fn a_stalled_viewer_increments_frames_dropped_slow() {
    // Frames of ~250 KB, so a viewer that never reads fills its socket
    // buffers within a fraction of a second.
    let dir = temp_dir("status-slow");
    let base = {
        let srv = Server::start(&["--camera", "test", "--width", "1280", "--height", "720"]);
        srv.get("/pi.jpg").body
    };
    let mut big = vec![0xff, 0xd8];
    for _ in 0..4 {
        big.extend_from_slice(&[0xff, 0xfe, 0xea, 0x62]); // COM, length 60002
        big.extend_from_slice(&[b'p'; 60_000]);
    }
    big.extend_from_slice(&base[2..]);
    std::fs::write(dir.join("big.jpg"), &big).unwrap();
    let cmd = stream_tool(&dir, "while alive; do cat \"$D/big.jpg\"; sleep 0.03; done");
    let srv = Server::start(&["--stream-cmd", &cmd]);
    assert_eq!(status(&srv).count("frames_dropped_slow"), 0);
    let _stalled = ws_connect(srv.addr, "/stream");
    let s = status_until(&srv, "frames dropped for the stalled viewer", |s| {
        s.count("frames_dropped_slow") > 0
    });
    assert!(s.count("frames_out") >= s.count("frames_dropped_slow"));
    assert_eq!(s.count("clients.ws"), 1);
}

/// A stream tool script running `body` while picamd lives (`$D` is `dir`).
fn stream_tool(dir: &Path, body: &str) -> String {
    let text = format!(
        "#!/bin/sh\nD={}\nalive() {{ kill -0 $PPID 2>/dev/null; }}\n{body}\n",
        dir.display()
    );
    write_script(dir, "stream.sh", &text).display().to_string()
}

#[test]
fn failed_stills_increment_capture_errors() {
    let dir = temp_dir("status-still");
    let ok = {
        let srv = Server::start(&["--camera", "test", "--width", "160", "--height", "120"]);
        srv.get("/pi.jpg").body
    };
    std::fs::write(dir.join("ok.jpg"), &ok).unwrap();
    let mode = |m: &str| std::fs::write(dir.join("mode"), m).unwrap();
    let still = write_script(
        &dir,
        "still.sh",
        &format!(
            "#!/bin/sh\nD={}\ncase \"$(cat \"$D/mode\")\" in\n\
             fail) echo 'sensor not found' >&2; exit 3;;\n\
             garbage) echo 'this is not a JPEG';;\n\
             hang) sleep 5;;\n\
             *) cat \"$D/ok.jpg\";;\nesac\n",
            dir.display()
        ),
    );
    let still = still.display().to_string();
    let srv = Server::start(&[
        "--still-cmd",
        &still,
        "--stream-cmd",
        "true",
        "--still-timeout",
        "400ms",
    ]);

    mode("fail");
    let r = srv.get("/pi.jpg");
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(r.header("retry-after").is_some());
    let s = status(&srv);
    assert_eq!(s.count("camera.capture_errors"), 1);
    let last = s.str("camera.last_error");
    assert!(
        last.contains("status 3") && last.contains("sensor not found"),
        "{last}"
    );

    mode("garbage");
    assert_eq!(srv.get("/pi.jpg").status, 502);
    assert_eq!(status(&srv).count("camera.capture_errors"), 2);

    mode("hang");
    assert_eq!(srv.get("/pi.jpg").status, 503);
    let s = status(&srv);
    assert_eq!(s.count("camera.capture_errors"), 3);
    assert!(s.str("camera.last_error").contains("timed out"), "{s:?}");

    mode("ok");
    let r = srv.get("/pi.jpg");
    assert_eq!(r.status, 200);
    assert_eq!(r.body, ok);
    let s = status(&srv);
    assert_eq!(
        s.count("camera.capture_errors"),
        3,
        "a good still is no error"
    );
    assert_eq!(s.count("camera.stills"), 1);
}
