//! `cargo xtask ci [--quick]`: everything CI checks, in order, stopping at
//! the first failure. Each step prints a header and its time.
//!
//! Fast checks first: fmt, tidy, clippy, test. Then, unless `--quick`: fuzz
//! smoke runs, interop with real peers, the Autobahn suite, and the release
//! binaries (with the aarch64 one run under qemu when it can be).

use std::error::Error;
use std::io::{BufRead, BufReader, Write};
use std::process::Stdio;
use std::time::Instant;

use crate::util::{self, step};

pub fn run(args: &[String]) -> Result<(), Box<dyn Error>> {
    let mut quick = false;
    for a in args {
        match a.as_str() {
            "--quick" => quick = true,
            other => return Err(format!("ci: unknown argument {other:?}").into()),
        }
    }
    let started = Instant::now();
    let mut timings: Vec<(&str, f64)> = Vec::new();
    let mut tests = TestCount::default();
    let mut timed = |name: &'static str, f: &mut dyn FnMut() -> util::Result<()>| {
        let t = Instant::now();
        let r = step(name, f);
        timings.push((name, t.elapsed().as_secs_f64()));
        r
    };

    timed("cargo fmt --check", &mut || {
        util::run(util::cargo().args(["fmt", "--all", "--", "--check"]))
    })?;
    timed("tidy", &mut || crate::tidy::run(&[]))?;
    timed("cargo clippy -D warnings", &mut || {
        util::run(util::cargo().args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ]))
    })?;
    timed("cargo test", &mut || cargo_test(&mut tests))?;
    if !quick {
        timed("fuzz --smoke", &mut || {
            crate::fuzz::run(&["--smoke".to_string()])
        })?;
        timed("interop", &mut || crate::interop::run(&[]))?;
        timed("autobahn", &mut || crate::autobahn::run(&[]))?;
        timed("dist --check", &mut || {
            crate::dist::run(&["--check".to_string()])
        })?;
    }

    println!(
        "\nci: every step passed in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    for (name, secs) in &timings {
        println!("  {secs:>7.1} s  {name}");
    }
    // The plain closing line: the unit and integration tests cargo ran.
    println!("ci: {} passed, {} failed", tests.passed, tests.failed);
    Ok(())
}

#[derive(Default)]
struct TestCount {
    passed: u64,
    failed: u64,
}

/// `cargo test --workspace`, its output passed through line by line while
/// the `test result:` lines are added up.
fn cargo_test(count: &mut TestCount) -> util::Result<()> {
    let mut cmd = util::cargo();
    cmd.args(["test", "--workspace"]).stdout(Stdio::piped());
    let mut child = cmd.spawn()?;
    let stdout = child.stdout.take().ok_or("no stdout pipe")?;
    let mut out = std::io::stdout();
    for line in BufReader::new(stdout).lines() {
        let line = line?;
        writeln!(out, "{line}")?;
        if let Some(rest) = line.strip_prefix("test result: ") {
            count.passed += number_before(rest, " passed");
            count.failed += number_before(rest, " failed");
        }
    }
    let status = child.wait()?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("cargo test failed ({status})").into())
    }
}

/// In `ok. 12 passed; 0 failed; …`, the number before `word`.
fn number_before(text: &str, word: &str) -> u64 {
    text.find(word)
        .and_then(|i| text[..i].rsplit([' ', '.', ';']).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}
