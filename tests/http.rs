//! HTTP/1.1 as a client sees it over raw TCP: keep-alive, pipelining, HEAD,
//! HTTP/1.0, every error status SPEC names, the limits and timeouts (issue 4:
//! slowloris, idle keep-alive, --max-clients), clients that reset or
//! half-close, `--www`, the command line, the request log, and
//! authentication and the WebSocket Origin check.
//!
//! Every test that sends something bad then checks that the server still
//! serves a normal request (`assert_alive`, or an authorised GET under auth).

mod common;
use common::*;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// How long a test waits for the server to close a connection it should
/// close now (generous: a loaded CI machine).
const CLOSE_WAIT: Duration = Duration::from_secs(5);

// ---- helpers ----

/// Connects and writes `raw` in one write.
fn send(srv: &Server, raw: &[u8]) -> TcpStream {
    let mut s = srv.connect();
    s.write_all(raw).unwrap();
    s
}

/// Sends `raw` on a fresh connection and reads one response.
fn exchange(srv: &Server, raw: &[u8]) -> (Response, TcpStream) {
    let mut s = send(srv, raw);
    let r = read_response(&mut s, false);
    (r, s)
}

/// Asserts the server closed `s` with nothing more after the response.
fn assert_closed(s: &mut TcpStream, what: &str) {
    let (rest, closed) = read_until_closed(s, CLOSE_WAIT);
    assert!(closed, "{what}: connection left open");
    assert!(
        rest.is_empty(),
        "{what}: bytes after the response: {:?}",
        String::from_utf8_lossy(&rest)
    );
}

/// `GET path` with extra header lines, `Connection: close`.
fn get_with(srv: &Server, path: &str, headers: &str) -> Response {
    let req = format!("GET {path} HTTP/1.1\r\nHost: test\r\n{headers}Connection: close\r\n\r\n");
    exchange(srv, req.as_bytes()).0
}

/// A keep-alive GET on an open connection.
fn get_on(s: &mut TcpStream, path: &str) -> Response {
    let req = format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n");
    s.write_all(req.as_bytes()).unwrap();
    read_response(s, false)
}

/// Runs picamd with `args` (no server expected), with a timeout.
fn run_cli(args: &[&str]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_picamd"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let end = Instant::now() + IO_TIMEOUT;
    while Instant::now() < end {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("picamd {args:?} did not exit");
}

fn base64(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// A WebSocket handshake on `path` with extra header lines; returns the
/// response (101 or a refusal).
fn ws_handshake(srv: &Server, path: &str, headers: &str) -> Response {
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {WS_KEY}\r\nSec-WebSocket-Version: 13\r\n{headers}\r\n",
        srv.addr
    );
    let mut s = send(srv, req.as_bytes());
    let r = read_response(&mut s, true);
    if r.status == 101 {
        assert_eq!(r.header("sec-websocket-accept").as_deref(), Some(WS_ACCEPT));
    }
    r
}

// ---- keep-alive, pipelining, HEAD, HTTP/1.0 ----

#[test]
fn keep_alive_serves_two_requests_on_one_connection() {
    let srv = Server::start(&["--camera", "test"]);
    let mut s = srv.connect();
    let a = get_on(&mut s, "/status");
    assert_eq!(a.status, 200);
    assert_eq!(a.header("connection").as_deref(), Some("keep-alive"));
    assert!(a.text().starts_with('{'), "{}", a.text());
    let b = get_on(&mut s, "/pi.jpg");
    assert_eq!(b.status, 200);
    assert!(is_whole_jpeg(&b.body));
    let c = get_on(&mut s, "/");
    assert_eq!(c.status, 200);
    assert!(c.text().contains("pi.jpg"));
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let srv = Server::start(&["--camera", "test"]);
    let mut s = send(
        &srv,
        b"GET /status HTTP/1.1\r\nHost: t\r\n\r\n\
          GET /pi.jpg HTTP/1.1\r\nHost: t\r\n\r\n\
          GET /no-such-page HTTP/1.1\r\nHost: t\r\n\r\n\
          GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    );
    let a = read_response(&mut s, false);
    assert_eq!(a.status, 200);
    assert_eq!(
        a.header("content-type").as_deref(),
        Some("application/json")
    );
    let b = read_response(&mut s, false);
    assert_eq!(b.status, 200);
    assert_eq!(b.header("content-type").as_deref(), Some("image/jpeg"));
    assert!(is_whole_jpeg(&b.body));
    let c = read_response(&mut s, false);
    assert_eq!(c.status, 404);
    let d = read_response(&mut s, false);
    assert_eq!(d.status, 200);
    assert!(d.header("content-type").unwrap().starts_with("text/html"));
    assert_closed(&mut s, "after Connection: close");
}

#[test]
fn head_gives_the_same_headers_as_get_and_no_body() {
    let srv = Server::start(&["--camera", "test"]);
    for path in [
        "/",
        "/stream",
        "/status",
        "/pi.jpg",
        "/snapshot",
        "/no-such-page",
    ] {
        let get = srv.get(path);
        let mut s = srv.connect();
        // HEAD, then a GET behind it: if HEAD sent any body, the next bytes
        // would not be the GET's status line.
        let req = format!(
            "HEAD {path} HTTP/1.1\r\nHost: t\r\n\r\nGET /status HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
        );
        s.write_all(req.as_bytes()).unwrap();
        let head = read_response(&mut s, true);
        assert_eq!(head.status, get.status, "{path}");
        assert_eq!(
            head.header("content-type"),
            get.header("content-type"),
            "{path}"
        );
        let names = |r: &Response| {
            let mut v: Vec<String> = r
                .head
                .lines()
                .skip(1)
                .filter_map(|l| l.split_once(':'))
                .map(|(n, _)| n.to_ascii_lowercase())
                .collect();
            v.sort();
            v
        };
        assert_eq!(names(&head), names(&get), "{path}: header fields differ");
        let len: usize = head.header("content-length").unwrap().parse().unwrap();
        if path == "/status" || path.ends_with("jpg") || path == "/snapshot" {
            // A fresh value each time: only its presence is comparable.
            assert!(len > 0, "{path}");
        } else {
            assert_eq!(len, get.body.len(), "{path}: HEAD length != GET body");
        }
        let next = read_response(&mut s, false);
        assert_eq!(next.status, 200, "{path}: bytes after HEAD's head");
        assert!(next.text().starts_with('{'), "{path}: {:?}", next.text());
        assert_closed(&mut s, path);
    }

    // HEAD on the endless stream: its head, then the connection ends.
    let mut s = send(&srv, b"HEAD /stream.mjpg HTTP/1.1\r\nHost: t\r\n\r\n");
    let head = read_response(&mut s, true);
    assert_eq!(head.status, 200);
    assert!(
        head.header("content-type")
            .unwrap()
            .starts_with("multipart/x-mixed-replace")
    );
    assert_closed(&mut s, "HEAD /stream.mjpg");
    srv.assert_alive();
}

#[test]
fn http_1_0_closes_unless_keep_alive_is_asked() {
    let srv = Server::start(&["--camera", "test"]);
    // HTTP/1.0 needs no Host.
    let (r, mut s) = exchange(&srv, b"GET /status HTTP/1.0\r\n\r\n");
    assert_eq!(r.status, 200);
    assert!(r.head.starts_with("HTTP/1.1 200") || r.head.starts_with("HTTP/1.0 200"));
    assert_eq!(r.header("connection").as_deref(), Some("close"));
    assert_closed(&mut s, "HTTP/1.0");

    let (r, mut s) = exchange(
        &srv,
        b"GET /status HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.header("connection").as_deref(), Some("keep-alive"));
    s.write_all(b"GET /pi.jpg HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        .unwrap();
    let r = read_response(&mut s, false);
    assert_eq!(r.status, 200);
    assert!(is_whole_jpeg(&r.body));
    s.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
    let r = read_response(&mut s, false);
    assert_eq!(r.status, 200);
    assert_closed(&mut s, "HTTP/1.0 without keep-alive");

    // HTTP/1.1 with Connection: close.
    let (r, mut s) = exchange(
        &srv,
        b"GET /status HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.header("connection").as_deref(), Some("close"));
    assert_closed(&mut s, "HTTP/1.1 Connection: close");
}

// ---- error statuses ----

/// Requests that are unreadable or refused: the status, a reason in the
/// body, `Connection: close`, and the connection ends.
#[test]
fn each_bad_request_gets_its_status_and_the_server_serves_on() {
    let long_target = format!("GET /{} HTTP/1.1\r\nHost: t\r\n\r\n", "a".repeat(3000));
    let huge_header = format!(
        "GET / HTTP/1.1\r\nHost: t\r\nX-Big: {}\r\n\r\n",
        "b".repeat(9000)
    );
    let many_headers = format!(
        "GET / HTTP/1.1\r\nHost: t\r\n{}\r\n",
        (0..60)
            .map(|i| format!("X-H{i}: v\r\n"))
            .collect::<String>()
    );
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        ("malformed request line", b"GARBAGE\r\n\r\n".to_vec(), 400),
        ("two spaces", b"GET  / HTTP/1.1\r\nHost: t\r\n\r\n".to_vec(), 400),
        ("missing Host in 1.1", b"GET / HTTP/1.1\r\n\r\n".to_vec(), 400),
        (
            "two Hosts",
            b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n".to_vec(),
            400,
        ),
        ("bare LF", b"GET / HTTP/1.1\nHost: t\n\n".to_vec(), 400),
        (
            "obs-fold",
            b"GET / HTTP/1.1\r\nHost: t\r\nX-A: b\r\n  folded\r\n\r\n".to_vec(),
            400,
        ),
        (
            "space before colon",
            b"GET / HTTP/1.1\r\nHost : t\r\n\r\n".to_vec(),
            400,
        ),
        (
            "NUL in a value",
            b"GET / HTTP/1.1\r\nHost: t\r\nX-A: a\0b\r\n\r\n".to_vec(),
            400,
        ),
        ("absolute-form target", b"GET http://x/ HTTP/1.1\r\nHost: t\r\n\r\n".to_vec(), 400),
        (
            "Content-Length with a body",
            b"POST /x HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello".to_vec(),
            413,
        ),
        (
            "GET with a body",
            b"GET / HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\n0123456789".to_vec(),
            413,
        ),
        (
            "chunked body",
            b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
                .to_vec(),
            413,
        ),
        (
            "Content-Length and Transfer-Encoding",
            b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
                .to_vec(),
            400,
        ),
        (
            "bad Content-Length",
            b"GET / HTTP/1.1\r\nHost: t\r\nContent-Length: 1x\r\n\r\n".to_vec(),
            400,
        ),
        ("long target", long_target.into_bytes(), 414),
        ("huge head", huge_header.into_bytes(), 431),
        ("too many headers", many_headers.into_bytes(), 431),
        ("HTTP/2.0", b"GET / HTTP/2.0\r\nHost: t\r\n\r\n".to_vec(), 505),
        ("HTTP/3.0", b"GET / HTTP/3.0\r\nHost: t\r\n\r\n".to_vec(), 505),
        ("lower-case version", b"GET / http/1.1\r\nHost: t\r\n\r\n".to_vec(), 400),
    ];
    let srv = Server::start(&["--camera", "test"]);
    for (what, raw, status) in cases {
        let (r, mut s) = exchange(&srv, &raw);
        assert_eq!(r.status, status, "{what}: {}", r.head);
        assert_eq!(r.header("connection").as_deref(), Some("close"), "{what}");
        assert!(r.text().trim().len() > 3, "{what}: no reason in the body");
        assert_closed(&mut s, what);
        srv.assert_alive();
    }
    // Each refusal was logged with its status.
    let log = srv.log();
    for status in ["400", "413", "414", "431", "505"] {
        assert!(
            log.lines().any(|l| l.contains(&format!(" {status} "))),
            "no {status} in the log:\n{log}"
        );
    }
}

#[test]
fn empty_content_length_is_no_body() {
    let srv = Server::start(&["--camera", "test"]);
    let (r, _s) = exchange(
        &srv,
        b"GET /status HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(r.status, 200);
}

#[test]
fn not_found_and_method_not_allowed_keep_the_connection() {
    let srv = Server::start(&["--camera", "test"]);
    let mut s = srv.connect();
    let r = get_on(&mut s, "/no-such-page");
    assert_eq!(r.status, 404);
    assert!(!r.body.is_empty());
    for method in ["POST", "PUT", "DELETE", "OPTIONS", "PATCH"] {
        let req = format!("{method} /pi.jpg HTTP/1.1\r\nHost: t\r\n\r\n");
        s.write_all(req.as_bytes()).unwrap();
        let r = read_response(&mut s, false);
        assert_eq!(r.status, 405, "{method}");
        assert_eq!(r.header("allow").as_deref(), Some("GET, HEAD"), "{method}");
    }
    // Same connection, still usable.
    let r = get_on(&mut s, "/status");
    assert_eq!(r.status, 200);
    srv.assert_alive();
}

// ---- limits and timeouts ----

#[test]
fn slowloris_gets_408_at_the_header_timeout_while_others_are_served() {
    let srv = Server::start(&["--camera", "test", "--header-timeout", "1s"]);
    let mut slow = send(&srv, b"GET /status HTTP/1.1\r\n");
    let mut w = slow.try_clone().unwrap();
    let dripping = Arc::new(AtomicBool::new(true));
    let d2 = dripping.clone();
    // One header byte every 100 ms for 4 s: each byte must not restart the
    // timeout.
    std::thread::spawn(move || {
        for &b in b"X-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
            .iter()
            .take(40)
        {
            if w.write_all(&[b]).is_err() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        d2.store(false, Ordering::SeqCst);
    });
    // Meanwhile, others are served.
    for _ in 0..3 {
        srv.assert_alive();
        std::thread::sleep(Duration::from_millis(50));
    }
    let r = read_response(&mut slow, false);
    assert_eq!(r.status, 408, "{}", r.head);
    assert!(
        dripping.load(Ordering::SeqCst),
        "the 408 came only after the client stopped dripping: each byte restarted the timeout"
    );
    let (_, closed) = read_until_closed(&mut slow, CLOSE_WAIT);
    assert!(closed, "slowloris connection left open after 408");
    srv.assert_alive();
}

#[test]
fn silent_connection_is_closed_at_the_idle_timeout() {
    let srv = Server::start(&["--camera", "test", "--idle-timeout", "1s"]);
    // Nothing sent at all.
    let mut quiet = srv.connect();
    // A keep-alive connection after a request.
    let mut s = srv.connect();
    assert_eq!(get_on(&mut s, "/status").status, 200);
    // Well inside the timeout the connection still serves.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(get_on(&mut s, "/status").status, 200);
    assert_closed(&mut s, "idle keep-alive");
    let (rest, closed) = read_until_closed(&mut quiet, CLOSE_WAIT);
    assert!(closed && rest.is_empty(), "silent connection left open");
    srv.assert_alive();
}

#[test]
fn max_clients_refuses_with_503_then_serves_when_one_leaves() {
    let srv = Server::start(&["--camera", "test", "--max-clients", "2"]);
    let mut a = srv.connect();
    let mut b = srv.connect();
    assert_eq!(get_on(&mut a, "/status").status, 200);
    assert_eq!(get_on(&mut b, "/status").status, 200);

    // The third: 503 and close, whether it sent its request yet or not.
    let mut c = srv.connect();
    let r = read_response(&mut c, false);
    assert_eq!(r.status, 503, "{}", r.head);
    assert!(r.header("retry-after").is_some());
    let (_, closed) = read_until_closed(&mut c, CLOSE_WAIT);
    assert!(closed);
    let r = srv.get("/status");
    assert_eq!(r.status, 503, "a client that sends its request at once");

    // The two still work.
    assert_eq!(get_on(&mut a, "/status").status, 200);
    drop(a);
    let mut last = 0;
    assert!(
        eventually(Duration::from_secs(5), || {
            last = srv.get("/status").status;
            last == 200
        }),
        "no new client served after one left (last status {last})"
    );
    let status = get_on(&mut b, "/status").text();
    assert!(
        !status.contains("\"rejected_busy\":0"),
        "rejections not counted: {status}"
    );
}

// ---- clients that leave mid-response ----

/// A temp `--www` folder holding `big.bin` (12 MiB: more than the socket
/// buffers hold, even with loopback's autotuning: the server must still be
/// writing when the client's next move arrives) and an index page.
fn www_with_big_file() -> (std::path::PathBuf, Vec<u8>) {
    let dir = temp_dir("www-big");
    let big: Vec<u8> = (0..12 << 20).map(|i: u32| (i % 251) as u8).collect();
    std::fs::write(dir.join("big.bin"), &big).unwrap();
    std::fs::write(dir.join("index.html"), "<p>big</p>").unwrap();
    std::fs::write(dir.join("status"), "x").unwrap();
    (dir, big)
}

#[test]
fn client_that_resets_mid_response_does_not_hurt_the_server() {
    let (dir, _) = www_with_big_file();
    let srv = Server::start(&[
        "--camera",
        "test",
        "--fps",
        "30",
        "--www",
        dir.to_str().unwrap(),
    ]);
    for round in 0..3 {
        // A stream viewer that reads a little and closes with unread data
        // (the kernel answers with a reset).
        let mut m = send(&srv, b"GET /stream.mjpg HTTP/1.1\r\nHost: t\r\n\r\n");
        let mut buf = [0u8; 1024];
        m.read_exact(&mut buf).unwrap();
        drop(m);
        // A big download cut short the same way, once after shutting down
        // our read side first.
        let mut s = send(&srv, b"GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n");
        s.read_exact(&mut buf).unwrap();
        assert!(buf.starts_with(b"HTTP/1.1 200"), "round {round}");
        if round == 1 {
            s.shutdown(Shutdown::Read).unwrap();
            std::thread::sleep(Duration::from_millis(50));
        }
        drop(s);
        srv.assert_alive();
    }
    // The viewers are gone from the counts.
    assert!(
        eventually(Duration::from_secs(3), || srv
            .get("/status")
            .text()
            .contains("\"mjpeg\":0")),
        "{}",
        srv.get("/status").text()
    );
}

#[test]
fn half_closed_client_still_gets_its_response() {
    let (dir, big) = www_with_big_file();
    let srv = Server::start(&["--camera", "test", "--www", dir.to_str().unwrap()]);
    for path in ["/status", "/pi.jpg", "/"] {
        let mut s = send(
            &srv,
            format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes(),
        );
        s.shutdown(Shutdown::Write).unwrap();
        let r = read_response(&mut s, false);
        assert_eq!(r.status, 200, "{path}");
        assert!(!r.body.is_empty(), "{path}");
    }
    // A response far larger than the socket buffers: the server must keep
    // writing after it has seen our FIN.
    let mut s = send(&srv, b"GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n");
    s.shutdown(Shutdown::Write).unwrap();
    // Not reading for a moment: the server sees our FIN with most of the
    // response still to write.
    std::thread::sleep(Duration::from_millis(300));
    let (all, closed) = read_until_closed(&mut s, CLOSE_WAIT);
    assert!(closed);
    let head_end = all
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("no response head")
        + 4;
    assert!(all.starts_with(b"HTTP/1.1 200 "));
    let body = &all[head_end..];
    assert_eq!(
        body.len(),
        big.len(),
        "half-closed client got {} of {} body bytes",
        body.len(),
        big.len()
    );
    assert!(body == big);
    srv.assert_alive();
}

// ---- --www ----

#[test]
fn www_serves_a_folder_and_nothing_outside_it() {
    use std::os::unix::fs::symlink;
    let top = temp_dir("www-jail");
    let root = top.join("root");
    std::fs::create_dir_all(root.join("sub")).unwrap();
    std::fs::write(root.join("index.html"), "<h1>custom index</h1>").unwrap();
    std::fs::write(root.join("hello.txt"), "hello from www").unwrap();
    std::fs::write(root.join("sub/page.html"), "<p>sub page</p>").unwrap();
    std::fs::write(root.join("status.css"), "body{}").unwrap();
    std::fs::write(top.join("secret.txt"), "TOPSECRET").unwrap();
    std::fs::create_dir_all(top.join("outdir")).unwrap();
    std::fs::write(top.join("outdir/index.html"), "TOPSECRET dir").unwrap();
    symlink(top.join("secret.txt"), root.join("link.txt")).unwrap();
    symlink("../secret.txt", root.join("rel-link.txt")).unwrap();
    symlink(top.join("outdir"), root.join("linkdir")).unwrap();

    let srv = Server::start(&["--camera", "test", "--www", root.to_str().unwrap()]);
    let r = srv.get("/");
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "<h1>custom index</h1>");
    assert!(r.header("content-type").unwrap().starts_with("text/html"));
    let r = srv.get("/hello.txt");
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "hello from www");
    let r = srv.get("/sub/page.html");
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "<p>sub page</p>");
    assert_eq!(srv.get("/missing.html").status, 404);
    // The endpoints still work beside the folder.
    assert_eq!(srv.get("/status").status, 200);
    assert!(is_whole_jpeg(&srv.get("/pi.jpg").body));

    for evil in [
        "/../secret.txt",
        "/sub/../../secret.txt",
        "/%2e%2e/secret.txt",
        "/%2E%2E/secret.txt",
        "/sub/%2e%2e/%2e%2e/secret.txt",
        "/..%2fsecret.txt",
        "/sub%2f..%2f..%2fsecret.txt",
        "/%2e%2e%2fsecret.txt",
        "/link.txt",
        "/rel-link.txt",
        "/linkdir/index.html",
        "/linkdir/",
        "/%00/secret.txt",
        "/hello.txt%00",
    ] {
        let r = srv.get(evil);
        assert!(
            r.status == 404 || r.status == 400 || r.status == 403,
            "{evil}: {}",
            r.head
        );
        assert!(!r.text().contains("TOPSECRET"), "{evil} escaped --www");
        srv.assert_alive();
    }
}

// ---- command line ----

/// Every flag the parser knows, as `--help` must explain it.
const FLAGS: &[&str] = &[
    "--listen",
    "--www",
    "--quiet",
    "--ws-echo",
    "--camera",
    "--device",
    "--still-cmd",
    "--stream-cmd",
    "--width",
    "--height",
    "--fps",
    "--quality",
    "--rotation",
    "--hflip",
    "--vflip",
    "--still-delay-ms",
    "--still-timeout",
    "--stream-linger",
    "--stream-stall-timeout",
    "--max-frame-bytes",
    "--auth",
    "--auth-file",
    "--token",
    "--allow-origin",
    "--max-clients",
    "--max-head-bytes",
    "--header-timeout",
    "--idle-timeout",
    "--ws-max-message",
    "--ping-interval",
    "--dead-peer-timeout",
    "--help",
    "--version",
];

/// The `--flags` named in a text.
fn flags_in(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let b = text.as_bytes();
    let mut i = 0;
    while i + 2 < b.len() {
        let starts = b[i] == b'-'
            && b[i + 1] == b'-'
            && b[i + 2].is_ascii_lowercase()
            && (i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'-'));
        if starts {
            let end = (i + 2..b.len())
                .find(|&j| !(b[j].is_ascii_lowercase() || b[j].is_ascii_digit() || b[j] == b'-'))
                .unwrap_or(b.len());
            let f = text[i..end].trim_end_matches('-').to_string();
            if !out.contains(&f) {
                out.push(f);
            }
            i = end;
        } else {
            i += 1;
        }
    }
    out
}

#[test]
fn help_explains_every_flag_and_every_flag_it_names_is_accepted() {
    let out = run_cli(&["--help"]);
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    let named = flags_in(&help);
    for f in FLAGS {
        assert!(named.iter().any(|n| n == f), "--help does not mention {f}");
    }
    let short = run_cli(&["-h"]);
    assert_eq!(String::from_utf8(short.stdout).unwrap(), help);
    // Every flag the help names is one the parser knows: `FLAG=x` followed by
    // --version never says "unknown flag" (it is either accepted, or refused
    // for its value).
    for f in &named {
        let out = run_cli(&[&format!("{f}=x"), "--version"]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !err.contains("unknown flag"),
            "{f} is in --help but unknown: {err}"
        );
    }
    // And every flag the parser matches on (its `"--flag" =>` arms in
    // src/config.rs) is explained, so a new flag cannot be left out.
    let config =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/src/config.rs")).unwrap();
    let pieces: Vec<&str> = config.split('"').collect();
    let arms: Vec<&str> = pieces
        .windows(2)
        .filter(|w| w[0].starts_with("--") && w[1].trim_start().starts_with("=>"))
        .map(|w| w[0])
        .filter(|f| {
            f.len() > 2
                && f[2..]
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        })
        .collect();
    assert!(arms.len() >= FLAGS.len(), "parser arms not found: {arms:?}");
    for f in arms {
        assert!(named.iter().any(|n| n == f), "--help does not explain {f}");
    }
}

#[test]
fn version_prints_the_version() {
    for flag in ["--version", "-V"] {
        let out = run_cli(&[flag]);
        assert!(out.status.success());
        let text = String::from_utf8(out.stdout).unwrap();
        assert_eq!(text.trim(), format!("picamd {}", env!("CARGO_PKG_VERSION")));
    }
}

#[test]
fn bad_flags_exit_2_with_a_message_naming_them() {
    for (args, needle) in [
        (&["--no-such-flag"][..], "--no-such-flag"),
        (&["--camera", "webcam"][..], "--camera"),
        (&["--rotation", "45"][..], "--rotation"),
        (&["--listen", "nowhere"][..], "--listen"),
        (&["--width"][..], "--width"),
        (&["--header-timeout", "soon"][..], "--header-timeout"),
    ] {
        let out = run_cli(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{args:?}: {err}");
        assert!(out.stdout.is_empty(), "{args:?}");
    }
}

#[test]
fn first_stderr_line_names_the_address() {
    let srv = Server::start(&["--camera", "test"]);
    srv.wait_log("\n", Duration::from_secs(5));
    let log = srv.log();
    let first = log.lines().next().unwrap();
    assert_eq!(first, format!("listening on http://{}/", srv.addr));
    assert_ne!(srv.addr.port(), 0);
    srv.assert_alive();
}

/// Fields of the request log line for `peer method path`.
fn log_fields(srv: &Server, peer: &str, method: &str, path: &str) -> Vec<String> {
    let prefix = format!("{peer} {method} {path} ");
    srv.wait_log(&prefix, Duration::from_secs(5));
    let log = srv.log();
    let line = log.lines().find(|l| l.starts_with(&prefix)).unwrap();
    line.split_whitespace().map(str::to_string).collect()
}

#[test]
fn request_log_has_peer_method_path_status_bytes_time() {
    let srv = Server::start(&["--camera", "test"]);
    let mut s = srv.connect();
    let peer = s.local_addr().unwrap().to_string();
    let r = get_on(&mut s, "/status?verbose=1");
    let f = log_fields(&srv, &peer, "GET", "/status");
    assert_eq!(f.len(), 6, "{f:?}");
    assert_eq!(f[3], "200");
    let bytes: usize = f[4].parse().unwrap();
    assert!(
        bytes == r.body.len() || bytes == r.head.len() + r.body.len(),
        "bytes {bytes} vs body {} head {}",
        r.body.len(),
        r.head.len()
    );
    assert!(f[5].ends_with("ms") && f[5].trim_end_matches("ms").parse::<u64>().is_ok());
    assert!(!srv.log().contains("verbose=1"), "the query is not logged");

    s.write_all(b"HEAD /pi.jpg HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    read_response(&mut s, true);
    let f = log_fields(&srv, &peer, "HEAD", "/pi.jpg");
    assert_eq!(f[3], "200");
    let r = get_on(&mut s, "/no-such-page");
    assert_eq!(r.status, 404);
    let f = log_fields(&srv, &peer, "GET", "/no-such-page");
    assert_eq!(f[3], "404");
    s.write_all(b"BREW /pot HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    assert_eq!(read_response(&mut s, false).status, 405);
    srv.wait_log(" 405 ", Duration::from_secs(5));
}

#[test]
fn quiet_suppresses_request_lines() {
    let srv = Server::start(&["--camera", "test", "--quiet"]);
    assert_eq!(srv.get("/status").status, 200);
    assert_eq!(srv.get("/no-such-page").status, 404);
    assert_eq!(srv.get("/pi.jpg").status, 200);
    let (r, _) = exchange(&srv, b"GARBAGE\r\n\r\n");
    assert_eq!(r.status, 400);
    std::thread::sleep(Duration::from_millis(300));
    let log = srv.log();
    for needle in [
        " GET /status ",
        " GET /no-such-page ",
        " GET /pi.jpg ",
        " 400 ",
    ] {
        assert!(!log.contains(needle), "--quiet logged {needle:?}:\n{log}");
    }
    assert!(log.starts_with("listening on http://"));
}

// ---- authentication ----

/// Every endpoint, as GET requests; each must be refused without
/// credentials.
const PROTECTED: &[&str] = &[
    "/",
    "/pi.jpg",
    "/snapshot",
    "/?action=snapshot",
    "/status",
    "/stream",
    "/stream.mjpg",
    "/?action=stream",
    "/no-such-page",
];

fn assert_refused(srv: &Server, headers: &str, what: &str) {
    for path in PROTECTED {
        let r = get_with(srv, path, headers);
        assert_eq!(r.status, 401, "{what}: {path}: {}", r.head);
        let challenge = r.header("www-authenticate").unwrap_or_default();
        assert!(
            challenge.starts_with("Basic "),
            "{what}: {path}: {challenge:?}"
        );
        assert!(
            !r.body.starts_with(&[0xff, 0xd8]),
            "{what}: {path}: JPEG leaked"
        );
    }
    let r = ws_handshake(srv, "/stream", headers);
    assert_eq!(r.status, 401, "{what}: WebSocket handshake");
    assert!(r.header("www-authenticate").unwrap().starts_with("Basic "));
}

/// Every endpoint answers with `headers` (and `query` appended).
fn assert_admitted(srv: &Server, headers: &str, query: &str) {
    for path in ["/", "/pi.jpg", "/status", "/stream"] {
        let r = get_with(srv, &format!("{path}{query}"), headers);
        assert_eq!(r.status, 200, "{path}{query}: {}", r.head);
    }
    let r = get_with(srv, &format!("/pi.jpg{query}"), headers);
    assert!(is_whole_jpeg(&r.body));
    let snapshot = match query.strip_prefix('?') {
        Some(q) => format!("/?action=snapshot&{q}"),
        None => "/?action=snapshot".to_string(),
    };
    let r = get_with(srv, &snapshot, headers);
    assert_eq!(r.status, 200);
    let mut m = send(
        srv,
        format!("GET /stream.mjpg{query} HTTP/1.1\r\nHost: t\r\n{headers}\r\n").as_bytes(),
    );
    let head = read_response(&mut m, true);
    assert_eq!(head.status, 200);
    assert!(
        head.header("content-type")
            .unwrap()
            .starts_with("multipart/")
    );
    drop(m);
    let r = ws_handshake(srv, &format!("/stream{query}"), headers);
    assert_eq!(r.status, 101, "WebSocket with credentials");
}

#[test]
fn basic_auth_guards_every_endpoint_and_never_logs_the_password() {
    let password = "s3cret-Pa55";
    let srv = Server::start(&["--camera", "test", "--auth", &format!("viewer:{password}")]);
    let good = format!(
        "Authorization: Basic {}\r\n",
        base64(&format!("viewer:{password}"))
    );
    assert_refused(&srv, "", "no credentials");
    for (what, headers) in [
        (
            "wrong password",
            format!("Authorization: Basic {}\r\n", base64("viewer:guess")),
        ),
        (
            "wrong user",
            format!(
                "Authorization: Basic {}\r\n",
                base64(&format!("admin:{password}"))
            ),
        ),
        (
            "password prefix",
            format!("Authorization: Basic {}\r\n", base64("viewer:s3cret")),
        ),
        (
            "password plus",
            format!(
                "Authorization: Basic {}\r\n",
                base64(&format!("viewer:{password}x"))
            ),
        ),
        ("not base64", "Authorization: Basic !!!!\r\n".to_string()),
        (
            "bearer instead",
            format!("Authorization: Bearer {password}\r\n"),
        ),
        ("token query", String::new()),
    ] {
        if what == "token query" {
            let r = get_with(&srv, &format!("/pi.jpg?token={password}"), "");
            assert_eq!(r.status, 401, "{what}");
            continue;
        }
        assert_refused(&srv, &headers, what);
    }
    assert_admitted(&srv, &good, "");
    // HEAD is guarded too.
    let mut s = send(
        &srv,
        b"HEAD /pi.jpg HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    );
    let r = read_response(&mut s, true);
    assert_eq!(r.status, 401);
    assert_closed(&mut s, "HEAD refused");
    let r = get_with(&srv, "/status", &good);
    assert_eq!(r.status, 200, "still serving");
    std::thread::sleep(Duration::from_millis(200));
    let log = srv.log();
    assert!(!log.contains(password), "password in the log:\n{log}");
    assert!(
        !log.contains(&base64(&format!("viewer:{password}"))),
        "credentials in the log"
    );
    assert!(log.contains(" 401 "), "refusals are logged:\n{log}");
}

#[test]
fn token_is_accepted_as_query_or_bearer() {
    let token = "tok-9f8e7d";
    let srv = Server::start(&["--camera", "test", "--token", token]);
    assert_refused(&srv, "", "no token");
    assert_refused(&srv, "Authorization: Bearer wrong\r\n", "wrong bearer");
    let r = get_with(&srv, "/pi.jpg?token=wrong", "");
    assert_eq!(r.status, 401);
    let r = get_with(&srv, &format!("/pi.jpg?token={token}x"), "");
    assert_eq!(r.status, 401);
    assert_admitted(&srv, &format!("Authorization: Bearer {token}\r\n"), "");
    assert_admitted(&srv, "", &format!("?token={token}"));
    // Base64 WebSocket viewers put it beside other parameters.
    let r = ws_handshake(&srv, &format!("/stream?encoding=base64&token={token}"), "");
    assert_eq!(r.status, 101);
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        !srv.log().contains(token),
        "token in the log:\n{}",
        srv.log()
    );
}

#[test]
fn auth_and_token_together_accept_either() {
    let srv = Server::start(&["--camera", "test", "--auth", "u:p", "--token", "t0k"]);
    assert_refused(&srv, "", "nothing");
    assert_admitted(
        &srv,
        &format!("Authorization: Basic {}\r\n", base64("u:p")),
        "",
    );
    assert_admitted(&srv, "", "?token=t0k");
}

#[test]
fn auth_file_users_are_accepted() {
    let dir = temp_dir("auth-file");
    let file = dir.join("users");
    std::fs::write(
        &file,
        "# who may watch\n\nalice:wonder land\n  bob:builder  \n# carol:old\n",
    )
    .unwrap();
    let srv = Server::start(&["--camera", "test", "--auth-file", file.to_str().unwrap()]);
    assert_refused(&srv, "", "no credentials");
    assert_refused(
        &srv,
        &format!("Authorization: Basic {}\r\n", base64("carol:old")),
        "commented-out user",
    );
    assert_refused(
        &srv,
        &format!("Authorization: Basic {}\r\n", base64("alice:wonder")),
        "wrong password",
    );
    assert_admitted(
        &srv,
        &format!("Authorization: Basic {}\r\n", base64("alice:wonder land")),
        "",
    );
    assert_admitted(
        &srv,
        &format!("Authorization: Basic {}\r\n", base64("bob:builder")),
        "",
    );

    // A missing file or one without users is a startup error.
    let out = run_cli(&[
        "--camera",
        "test",
        "--listen",
        "127.0.0.1:0",
        "--auth-file",
        "/nonexistent/users",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--auth-file"));
    let empty = dir.join("empty");
    std::fs::write(&empty, "# nobody\n").unwrap();
    let out = run_cli(&[
        "--camera",
        "test",
        "--listen",
        "127.0.0.1:0",
        "--auth-file",
        empty.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
}

// ---- WebSocket Origin ----

#[test]
fn websocket_from_a_foreign_origin_is_refused() {
    let srv = Server::start(&["--camera", "test"]);
    // No Origin: not a browser.
    let _ws = ws_connect(srv.addr, "/stream");
    for origin in [
        "http://evil.example",
        "https://evil.example",
        &format!("http://{}.evil.example", srv.addr.ip()),
        "null",
    ] {
        let r = ws_handshake(&srv, "/stream", &format!("Origin: {origin}\r\n"));
        assert_eq!(r.status, 403, "{origin}: {}", r.head);
        srv.assert_alive();
    }
    // The page's own origin.
    let r = ws_handshake(&srv, "/stream", &format!("Origin: http://{}\r\n", srv.addr));
    assert_eq!(r.status, 101, "same-host origin");
    let r = ws_handshake(
        &srv,
        "/stream?encoding=base64",
        &format!("Origin: http://{}\r\n", srv.addr),
    );
    assert_eq!(r.status, 101, "same-host origin, base64");
}

#[test]
fn allow_origin_admits_the_named_origin_only() {
    let srv = Server::start(&["--camera", "test", "--allow-origin", "https://dash.example"]);
    let r = ws_handshake(&srv, "/stream", "Origin: https://dash.example\r\n");
    assert_eq!(r.status, 101);
    for origin in [
        "https://evil.example",
        "http://dash.example",
        "https://dash.example.evil",
    ] {
        let r = ws_handshake(&srv, "/stream", &format!("Origin: {origin}\r\n"));
        assert_eq!(r.status, 403, "{origin}");
    }
    let r = ws_handshake(&srv, "/stream", &format!("Origin: http://{}\r\n", srv.addr));
    assert_eq!(r.status, 101, "same-host origin is still accepted");
    srv.assert_alive();

    let any = Server::start(&["--camera", "test", "--allow-origin", "*"]);
    let r = ws_handshake(&any, "/stream", "Origin: https://anything.example\r\n");
    assert_eq!(r.status, 101);
}
