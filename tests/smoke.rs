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
