//! `cargo xtask <task>`: the project's automation, std only (STYLE §10).
//!
//! A flat match on the task name; each task is `run(args)` in its own
//! module. `ci` runs the others in order; see `cargo xtask help`.

mod autobahn;
mod bench;
mod ci;
mod dist;
mod fuzz;
mod interop;
mod soak;
mod tidy;
mod tidy_rules;
mod util;

use std::process::ExitCode;

const USAGE: &str = "usage: cargo xtask <task> [args]

tasks:
  ci [--quick]                      fmt, tidy, clippy, test; then (not --quick)
                                    fuzz --smoke, interop, autobahn, dist --check
  tidy                              STYLE.md rules: layering, //! docs, no unsafe, deps
  fuzz [TARGET] [--seconds N] [--smoke]
                                    cargo-fuzz targets (nightly), all by default
  autobahn                          Autobahn|TestSuite cases 1-10 against /echo
  soak [--seconds N]                viewers joining/leaving, slow viewers, bad
                                    requests; RSS and fd table (default 600 s)
  dist [--check]                    static stripped release binaries in target/dist;
                                    --check runs them (aarch64 under qemu)
  bench [args]                      performance benchmark (see bench.rs)
  interop [args]                    real peers: ws, websockets, ffmpeg, Chromium
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let task = args.first().map(String::as_str).unwrap_or("help");
    let rest = args.get(1..).unwrap_or_default();
    let result = match task {
        "ci" => ci::run(rest),
        "tidy" => tidy::run(rest),
        "fuzz" => fuzz::run(rest),
        "autobahn" => autobahn::run(rest),
        "soak" => soak::run(rest),
        "dist" => dist::run(rest),
        "bench" => bench::run(rest),
        "interop" => interop::run(rest),
        "help" | "--help" | "-h" => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        other => {
            eprintln!("xtask: unknown task {other:?}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask {task}: {e}");
            ExitCode::FAILURE
        }
    }
}
