//! `cargo xtask autobahn [CASES]`: the Autobahn|TestSuite fuzzing client
//! (cases 1.* to 10.*, or the given patterns) against picamd's `/echo`
//! endpoint, which exists only with `--ws-echo` and uses the same codec and
//! connection code as `/stream`.
//!
//! The runner is `shared/tools/autobahn/run.sh`, found beside the repository
//! (`<root>/../shared`, as CI clones it). Its venv and reports stay under
//! `target/autobahn/`. Fails when any case FAILED (run.sh's exit status);
//! prints the summary line and the NON-STRICT count.

use std::error::Error;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::util::{self, Server};

pub fn run(args: &[String]) -> Result<(), Box<dyn Error>> {
    if args.len() > 1 {
        return Err("usage: cargo xtask autobahn [CASES]  (e.g. '1.*,2.*')".into());
    }
    let root = util::root();
    let runner = root.join("../shared/tools/autobahn/run.sh");
    if !runner.is_file() {
        return Err(format!(
            "no Autobahn runner at {} (the shared/ folder belongs beside the repository)",
            runner.display()
        )
        .into());
    }
    let bin = util::build_release()?;
    let mut server = Server::start(
        &bin,
        &[
            "--listen",
            "127.0.0.1:0",
            "--camera",
            "test",
            "--ws-echo",
            "--ws-max-message",
            "32MiB",
            "--quiet",
        ],
    )?;
    let url = format!("ws://{}/echo", server.addr);
    println!("autobahn: picamd pid {} at {url}", server.pid);

    let mut cmd = Command::new("bash");
    cmd.arg(&runner)
        .arg(&url)
        .args(args)
        .current_dir(&root)
        .env("AUTOBAHN_VENV", root.join("target/autobahn/venv"))
        .env("AUTOBAHN_REPORT_DIR", root.join("target/autobahn/reports"))
        .stdout(Stdio::piped());
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", util::show(&cmd)))?;
    let stdout = child.stdout.take().ok_or("no stdout pipe")?;
    let mut summary = None;
    for line in BufReader::new(stdout).lines() {
        let line = line?;
        println!("{line}");
        if line.starts_with("autobahn: ") && line.contains(" OK") {
            summary = Some(line);
        }
    }
    let status = child.wait()?;

    let died = server.exited();
    let stop = server.terminate(Duration::from_secs(5));
    if let Some(st) = died {
        return Err(format!(
            "picamd died during the suite ({st}); stderr:\n{}",
            server.stderr_tail()
        )
        .into());
    }

    let summary = summary.ok_or("run.sh printed no summary line")?;
    let non_strict = count_of(&summary, "NON-STRICT").unwrap_or(0);
    println!("autobahn: NON-STRICT cases: {non_strict}");
    println!(
        "autobahn: report: {}",
        root.join("target/autobahn/reports/index.html").display()
    );
    if !status.success() {
        return Err(format!("Autobahn suite failed ({status}): {summary}").into());
    }
    match stop {
        Ok(st) if st.success() => Ok(()),
        Ok(st) => Err(format!("picamd exited with {st} on SIGTERM").into()),
        Err(e) => Err(e),
    }
}

/// In `autobahn: 294 OK, 4 NON-STRICT, …`, the number before `label`.
fn count_of(summary: &str, label: &str) -> Option<u64> {
    let body = summary.strip_prefix("autobahn: ")?;
    body.split(", ").find_map(|part| {
        let (n, what) = part.trim().split_once(' ')?;
        (what == label).then(|| n.parse().ok()).flatten()
    })
}
