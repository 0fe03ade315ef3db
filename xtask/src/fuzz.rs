//! `cargo xtask fuzz [TARGET] [--seconds N] [--smoke]`: runs the cargo-fuzz
//! targets of `fuzz/` (STYLE §9) with the nightly toolchain, all four by
//! default, and reports per target the runs, the time and whether it crashed.
//!
//! Inputs: `fuzz/corpus/<target>` (git-ignored, grows between runs; libFuzzer
//! writes new inputs to the first directory) plus the committed
//! `fuzz/seeds/<target>`. A crash leaves its input in
//! `fuzz/artifacts/<target>/`; the task names it and exits non-zero. Turn it
//! into a named regression unit test next to the parser.
//!
//! `--smoke` (what CI runs): 20 s per target, and a machine without the
//! nightly toolchain or cargo-fuzz skips with a message instead of failing.
//! `cargo-fuzz` is installed from crates.io when missing.

use std::error::Error;
use std::fs::{self, File};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use crate::util;

/// One target per pure entry point of `picamd::fuzzing`.
pub const TARGETS: [&str; 4] = ["http_head", "ws_handshake", "ws_frame", "jpeg_split"];

/// Seconds per target: long enough to leave the seed corpus behind, short
/// enough for a CI smoke run of all four in under two minutes.
const SMOKE_SECONDS: u64 = 20;
const DEFAULT_SECONDS: u64 = 60;

/// libFuzzer's per-input time limit: a parser that takes this long on one
/// input would block the event loop, so it counts as a crash.
const INPUT_TIMEOUT_SECS: u64 = 10;

struct Outcome {
    target: &'static str,
    runs: Option<u64>,
    /// libFuzzer's own `Done N runs in S second(s)`: fuzzing time only.
    fuzz_secs: Option<u64>,
    /// Wall time of `cargo fuzz run`, including any rebuild.
    secs: f64,
    crash: Option<String>,
}

pub fn run(args: &[String]) -> Result<(), Box<dyn Error>> {
    let mut smoke = false;
    let mut seconds = None;
    let mut only: Option<&'static str> = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--smoke" => smoke = true,
            "--seconds" => {
                let v = it.next().ok_or("--seconds needs a value")?;
                seconds = Some(
                    v.parse::<u64>()
                        .map_err(|_| format!("bad --seconds {v:?}"))?,
                );
            }
            t => {
                let target = TARGETS
                    .iter()
                    .find(|&&k| k == t)
                    .ok_or_else(|| format!("unknown fuzz target {t:?} (targets: {TARGETS:?})"))?;
                only = Some(target);
            }
        }
    }
    let seconds = seconds.unwrap_or(if smoke {
        SMOKE_SECONDS
    } else {
        DEFAULT_SECONDS
    });
    let targets: Vec<&'static str> = match only {
        Some(t) => vec![t],
        None => TARGETS.to_vec(),
    };

    if let Err(why) = ensure_tools() {
        if smoke {
            println!(
                "fuzz: SKIPPED ({why}); the seeds still run under `cargo test` (tests/fuzz_seeds.rs)"
            );
            return Ok(());
        }
        return Err(why.into());
    }

    let root = util::root();
    let fuzz_dir = root.join("fuzz");
    let log_dir = root.join("target/fuzz-logs");
    fs::create_dir_all(&log_dir)?;

    // One build of every target first, so the per-target times are fuzzing.
    println!("fuzz: building targets (cargo +nightly fuzz build)");
    // (`cargo fuzz build` takes one target or none, meaning all.)
    let mut build = nightly_fuzz(&root);
    build.arg("build");
    if let Some(t) = only {
        build.arg(t);
    }
    util::run(&mut build)?;

    let mut outcomes = Vec::new();
    for target in targets {
        let corpus = fuzz_dir.join("corpus").join(target);
        let seeds = fuzz_dir.join("seeds").join(target);
        fs::create_dir_all(&corpus)?;
        let log_path = log_dir.join(format!("{target}.log"));
        let log = File::create(&log_path)?;
        println!(
            "fuzz: {target} for {seconds} s (log: {})",
            log_path.display()
        );
        let mut cmd = nightly_fuzz(&root);
        cmd.args(["run", target]).arg(&corpus);
        if seeds.is_dir() {
            cmd.arg(&seeds);
        }
        cmd.args([
            "--".to_string(),
            format!("-max_total_time={seconds}"),
            format!("-timeout={INPUT_TIMEOUT_SECS}"),
            "-print_final_stats=1".to_string(),
        ]);
        cmd.stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log));
        let t = Instant::now();
        let status = cmd.status()?;
        let secs = t.elapsed().as_secs_f64();
        let text = fs::read_to_string(&log_path).unwrap_or_default();
        let runs = parse_runs(&text);
        let fuzz_secs = text
            .lines()
            .filter_map(|l| l.strip_prefix("Done "))
            .filter_map(|l| l.split(" runs in ").nth(1))
            .filter_map(|l| l.split_whitespace().next())
            .filter_map(|n| n.parse().ok())
            .next_back();
        let crash = if status.success() {
            None
        } else {
            let artifact = text
                .lines()
                .filter_map(|l| l.split("Test unit written to ").nth(1))
                .next_back()
                .map(|p| p.trim().to_string());
            println!("fuzz: {target} FAILED ({status}); last lines of the log:");
            for l in last_lines(&text, 30) {
                println!("  | {l}");
            }
            Some(artifact.unwrap_or_else(|| format!("no artifact; see {}", log_path.display())))
        };
        outcomes.push(Outcome {
            target,
            runs,
            fuzz_secs,
            secs,
            crash,
        });
    }

    println!(
        "\n{:<14} {:>12} {:>8} {:>8}  result",
        "target", "runs", "fuzzing", "wall"
    );
    for o in &outcomes {
        let runs = o.runs.map_or("?".to_string(), |r| r.to_string());
        let result = match &o.crash {
            None => "ok".to_string(),
            Some(a) => format!("CRASH: {a}"),
        };
        let fuzz_secs = o.fuzz_secs.map_or("?".to_string(), |s| format!("{s} s"));
        println!(
            "{:<14} {:>12} {:>8} {:>6.1} s  {result}",
            o.target, runs, fuzz_secs, o.secs
        );
    }
    let crashed: Vec<String> = outcomes
        .iter()
        .filter_map(|o| o.crash.as_ref().map(|a| format!("{} ({a})", o.target)))
        .collect();
    if crashed.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "fuzz target(s) crashed: {}; reproduce with `cargo +nightly fuzz run <target> <artifact>` and add a regression unit test",
            crashed.join(", ")
        )
        .into())
    }
}

/// `cargo +nightly fuzz …` in the repository root. The rustup proxy picks
/// the toolchain, so the variables that pin ours (`RUSTUP_TOOLCHAIN`, and
/// `CARGO`/`RUSTC` set by the cargo that runs xtask) are removed.
fn nightly_fuzz(root: &Path) -> Command {
    let mut cmd = Command::new("cargo");
    cmd.current_dir(root)
        .args(["+nightly", "fuzz"])
        .env_remove("RUSTUP_TOOLCHAIN")
        .env_remove("CARGO")
        .env_remove("RUSTC")
        .env_remove("RUSTDOC");
    cmd
}

/// Checks for the nightly toolchain and installs cargo-fuzz if missing.
fn ensure_tools() -> Result<(), String> {
    let nightly = Command::new("rustup")
        .args(["run", "nightly", "rustc", "--version"])
        .env_remove("RUSTUP_TOOLCHAIN")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !nightly {
        return Err("no nightly toolchain (`rustup toolchain install nightly`)".into());
    }
    let has_fuzz = nightly_fuzz(&util::root())
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !has_fuzz {
        println!("fuzz: installing cargo-fuzz (cargo install cargo-fuzz --locked)");
        util::run(util::cargo().args(["install", "cargo-fuzz", "--locked"]))
            .map_err(|e| format!("cannot install cargo-fuzz: {e}"))?;
    }
    Ok(())
}

/// libFuzzer's run count: `stat::number_of_executed_units: N` from
/// `-print_final_stats`, else the last `#N` status line.
fn parse_runs(log: &str) -> Option<u64> {
    let stat = log
        .lines()
        .filter_map(|l| l.strip_prefix("stat::number_of_executed_units:"))
        .next_back()
        .and_then(|n| n.trim().parse().ok());
    stat.or_else(|| {
        log.lines()
            .filter_map(|l| l.strip_prefix('#'))
            .filter_map(|l| l.split_whitespace().next())
            .filter_map(|n| n.parse().ok())
            .next_back()
    })
}

fn last_lines(text: &str, n: usize) -> Vec<&str> {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].to_vec()
}
