//! The first thing a user does: start on the test pattern, fetch the page,
//! a snapshot, the status, and a few stream frames over both transports.

mod common;
use common::*;
use std::io::{BufReader, Write};

#[test]
fn test_pattern_serves_page_snapshot_status_and_streams() {
    let srv = Server::start(&["--camera", "test", "--fps", "20"]);
    let page = srv.get("/");
    assert_eq!(page.status, 200);
    assert!(page.text().contains("pi.jpg"));
    let jpg = srv.get("/pi.jpg");
    assert_eq!(jpg.status, 200);
    assert_eq!(jpg.header("content-type").as_deref(), Some("image/jpeg"));
    assert_eq!(jpg.header("cache-control").as_deref(), Some("no-store"));
    assert!(is_whole_jpeg(&jpg.body));

    let mut ws = ws_connect(srv.addr, "/stream");
    for _ in 0..3 {
        let (op, p) = ws_read_message(&mut ws);
        assert_eq!(op, 2, "binary frames");
        assert!(is_whole_jpeg(&p));
    }

    let mut m = srv.connect();
    m.write_all(b"GET /stream.mjpg HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let head = read_response(&mut m, true);
    assert_eq!(head.status, 200);
    assert!(
        head.header("content-type")
            .unwrap()
            .starts_with("multipart/x-mixed-replace")
    );
    let mut r = BufReader::new(m);
    let a = mjpeg_read_part(&mut r);
    let b = mjpeg_read_part(&mut r);
    assert!(is_whole_jpeg(&a) && is_whole_jpeg(&b));
    assert_ne!(a, b, "frames change");

    let status = srv.get("/status").text();
    assert!(status.contains("\"state\":\"streaming\""), "{status}");
    assert!(status.contains("\"ws\":1"), "{status}");
    assert!(status.contains("\"mjpeg\":1"), "{status}");
}

#[test]
fn readme_flags_section_is_the_current_help() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_picamd"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    assert!(
        readme.contains(&format!("## Flags\n\n```\n{help}```")),
        "README's Flags block differs from `picamd --help`: paste the new help text in"
    );
}

#[test]
fn zero_copy_fan_out_delivers_the_same_whole_frames() {
    // 1080p pattern frames (~37 KB) pass the zero-copy size threshold, and
    // four raw viewers pass its viewer threshold: bodies go out by sendfile.
    let srv = Server::start(&[
        "--camera",
        "test",
        "--width",
        "1920",
        "--height",
        "1080",
        "--fps",
        "15",
        "--zero-copy",
        "on",
    ]);
    let mut ws: Vec<_> = (0..2).map(|_| ws_connect(srv.addr, "/stream")).collect();
    let mut mj: Vec<_> = (0..2)
        .map(|_| {
            let mut m = srv.connect();
            m.write_all(b"GET /stream.mjpg HTTP/1.1\r\nHost: t\r\n\r\n")
                .unwrap();
            assert_eq!(read_response(&mut m, true).status, 200);
            BufReader::new(m)
        })
        .collect();
    // Skip frames sent before everyone joined, then compare five in a row.
    let mut seqs: Vec<Vec<Vec<u8>>> = Vec::new();
    for s in &mut ws {
        seqs.push((0..8).map(|_| ws_read_message(s).1).collect());
    }
    for r in &mut mj {
        seqs.push((0..8).map(|_| mjpeg_read_part(r)).collect());
    }
    for seq in &seqs {
        for f in seq {
            assert!(is_whole_jpeg(f) && f.len() > 16 * 1024, "len {}", f.len());
        }
    }
    let last = seqs[0].last().unwrap().clone();
    for (i, seq) in seqs.iter().enumerate() {
        assert!(seq.contains(&last), "viewer {i} did not get the same frame");
    }
}

#[test]
fn trace_logs_each_connection_state_change() {
    let srv = Server::start(&["--camera", "test", "--trace"]);
    let mut ws = ws_connect(srv.addr, "/stream");
    let _ = ws_read_message(&mut ws);
    // A masked Close 1000: the server answers and closes.
    ws_send(&mut ws, true, 0x8, &1000u16.to_be_bytes());
    let (_, op, _) = ws_read_frame(&mut ws);
    assert_eq!(op, 0x8);
    srv.wait_log(
        " reading-head => websocket",
        std::time::Duration::from_secs(5),
    );
    srv.wait_log(" websocket => closing", std::time::Duration::from_secs(5));
    // Without the flag, nothing of the kind is logged.
    let quiet = Server::start(&["--camera", "test"]);
    let _ = ws_connect(quiet.addr, "/stream");
    assert_eq!(quiet.get("/status").status, 200);
    assert!(!quiet.log().contains(" => "), "{}", quiet.log());
}
