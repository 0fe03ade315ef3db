//! Replays every committed fuzz seed (`fuzz/seeds/<target>/*`) through the
//! same `picamd::fuzzing` entry point its cargo-fuzz target calls, so the
//! invariants the fuzzer checks also hold under plain `cargo test`, on
//! stable, with no fuzzer installed.

use std::path::Path;

type Target = (&'static str, fn(&[u8]));

const TARGETS: [Target; 4] = [
    ("http_head", picamd::fuzzing::http_head),
    ("ws_handshake", picamd::fuzzing::ws_handshake),
    ("ws_frame", picamd::fuzzing::ws_frame),
    ("jpeg_split", picamd::fuzzing::jpeg_split),
];

fn replay(target: &str, check: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/seeds")
        .join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no seeds in {}", dir.display());
    for file in files {
        let data = std::fs::read(&file).expect("seed file");
        // A failed invariant panics inside `check`; name the seed first.
        eprintln!("{target}: {}", file.display());
        check(&data);
        // Every prefix too: truncated input is what a socket delivers.
        for cut in 0..data.len().min(64) {
            check(&data[..cut]);
        }
    }
}

#[test]
fn http_head_seeds() {
    replay(TARGETS[0].0, TARGETS[0].1);
}

#[test]
fn ws_handshake_seeds() {
    replay(TARGETS[1].0, TARGETS[1].1);
}

#[test]
fn ws_frame_seeds() {
    replay(TARGETS[2].0, TARGETS[2].1);
}

#[test]
fn jpeg_split_seeds() {
    replay(TARGETS[3].0, TARGETS[3].1);
}

#[test]
fn every_target_has_a_seed_folder_and_a_fuzz_target() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for (target, _) in TARGETS {
        assert!(
            root.join("fuzz/seeds").join(target).is_dir(),
            "fuzz/seeds/{target}"
        );
        assert!(
            root.join("fuzz/fuzz_targets")
                .join(format!("{target}.rs"))
                .is_file(),
            "fuzz/fuzz_targets/{target}.rs"
        );
    }
}
