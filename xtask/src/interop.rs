//! `cargo xtask interop [GROUP…]`: picamd against peers nobody on this
//! project wrote (STYLE §8): npm `ws` and Python `websockets` as WebSocket
//! clients of `/stream` and `/echo`, ffmpeg/ffprobe and curl reading
//! `/stream.mjpg` and `/pi.jpg`, and headless Chromium showing `/` and
//! `/stream` (pixels checked, screenshots in `target/interop/`).
//!
//! Groups: `node`, `python`, `ffmpeg`, `chromium`; all by default. The npm
//! and pip peers are installed here, pinned by `tests/interop/package.json`
//! and `requirements.txt`, into `target/interop/{node,venv}` when missing or
//! at another version. Chromium and ffmpeg are Debian packages that
//! `.ci/run` installs; without them this task fails and says so.
//!
//! One picamd (the release binary `dist` ships, `--camera test --fps 15
//! --ws-echo`) serves every check. The scripts in `tests/interop/` print
//! `PASS name: detail` / `FAIL name: detail` lines; this task collects them,
//! adds its own ffmpeg/curl checks and that picamd survived and exits 0 on
//! SIGTERM, prints a summary and fails if any check failed. Every external
//! process runs under a timeout and is killed (with its process group) past
//! it; picamd is killed at the end whatever happened.

use std::error::Error;
use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use crate::util::{self, Server};

const GROUPS: [&str; 4] = ["node", "python", "ffmpeg", "chromium"];

const USAGE: &str = "usage: cargo xtask interop [node|python|ffmpeg|chromium]…  (all by default)";

/// Installing from a registry: generous, a slow mirror is not a failure of ours.
const INSTALL_TIMEOUT: Duration = Duration::from_secs(300);
/// A whole script (each of its own waits is 10 s at most).
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(60);
/// Chromium's start alone can take seconds on a loaded 2-core machine.
const BROWSER_TIMEOUT: Duration = Duration::from_secs(90);
/// One ffprobe, ffmpeg or curl run against a local server.
const TOOL_TIMEOUT: Duration = Duration::from_secs(30);
/// SPEC: on SIGTERM picamd exits 0 within two seconds.
const SHUTDOWN_LIMIT: Duration = Duration::from_secs(2);

/// Frames ffmpeg must decode from /stream.mjpg (2 s at 15 fps).
const FFMPEG_FRAMES: u32 = 30;
/// How long curl reads /stream.mjpg.
const CURL_MJPEG_SECS: u64 = 2;

/// picamd's flags: the test pattern, `/echo` for the echo checks, a message
/// limit over the scripts' 1 MB echo (and under their 2 MiB + 1 one), and a
/// ping interval short enough for a 2.5 s check to see pings.
const SERVER_ARGS: [&str; 11] = [
    "--listen",
    "127.0.0.1:0",
    "--camera",
    "test",
    "--fps",
    "15",
    "--ws-echo",
    "--ws-max-message",
    "2MiB",
    "--ping-interval",
    "1s",
];

/// One check's outcome.
struct Check {
    name: String,
    ok: bool,
    detail: String,
}

impl Check {
    fn new(name: &str, ok: bool, detail: impl Into<String>) -> Check {
        let c = Check {
            name: name.to_string(),
            ok,
            detail: detail.into(),
        };
        println!("  {} {}: {}", c.mark(), c.name, c.detail);
        c
    }

    fn mark(&self) -> &'static str {
        if self.ok { "PASS" } else { "FAIL" }
    }
}

pub fn run(args: &[String]) -> Result<(), Box<dyn Error>> {
    let mut groups: Vec<&str> = Vec::new();
    for a in args {
        match GROUPS.iter().find(|g| **g == a.as_str()) {
            Some(g) if !groups.contains(g) => groups.push(g),
            Some(_) => {}
            None => return Err(format!("unknown argument {a:?}\n{USAGE}").into()),
        }
    }
    if groups.is_empty() {
        groups = GROUPS.to_vec();
    }
    let started = Instant::now();
    let root = util::root();
    let scripts = root.join("tests/interop");
    let work = root.join("target/interop");
    fs::create_dir_all(&work)?;
    // A screenshot left by an earlier run must not pass for this run's.
    for shot in ["still.png", "stream.png"] {
        let _ = fs::remove_file(work.join(shot));
    }

    preflight(&groups)?;
    let mut versions = Vec::new();
    if groups.contains(&"node") {
        versions.push(ensure_node(&work.join("node"), &scripts)?);
    }
    if groups.contains(&"python") {
        versions.push(ensure_venv(&work.join("venv"), &scripts)?);
    }
    if groups.contains(&"ffmpeg") {
        versions.push(first_line(peer("ffmpeg").arg("-version"))?);
        versions.push(first_line(peer("curl").arg("--version"))?);
    }
    if groups.contains(&"chromium") {
        versions.push(first_line(peer("chromium").arg("--version"))?);
    }
    for v in &versions {
        println!("interop: {v}");
    }

    let bin = util::build_release()?;
    let t_checks = Instant::now();
    let mut server = Server::start(&bin, &SERVER_ARGS)?;
    let base = format!("http://{}", server.addr);
    println!("interop: picamd pid {} at {base}/", server.pid);

    let mut checks = Vec::new();
    for g in &groups {
        println!("\ninterop: {g}");
        match *g {
            "node" => checks.extend(run_script(
                "node ws_client.js",
                peer("node")
                    .arg(scripts.join("ws_client.js"))
                    .arg(&base)
                    .env("NODE_PATH", work.join("node/node_modules")),
                SCRIPT_TIMEOUT,
            )),
            "python" => checks.extend(run_script(
                "python ws_client.py",
                peer(work.join("venv/bin/python"))
                    .arg(scripts.join("ws_client.py"))
                    .arg(&base),
                SCRIPT_TIMEOUT,
            )),
            "ffmpeg" => checks.extend(ffmpeg_checks(&base)),
            "chromium" => checks.extend(run_script(
                "python3 browser.py",
                peer("python3")
                    .arg(scripts.join("browser.py"))
                    .arg(&base)
                    .arg(&work)
                    .arg("chromium"),
                BROWSER_TIMEOUT,
            )),
            _ => unreachable!("groups are checked above"),
        }
    }

    println!("\ninterop: picamd");
    checks.extend(server_checks(&mut server));

    let failed = checks.iter().filter(|c| !c.ok).count();
    if failed > 0 {
        println!(
            "\ninterop: picamd's stderr, last lines:\n{}",
            server.stderr_tail()
        );
    }
    drop(server);
    println!(
        "\ninterop summary ({:.1} s of checks, {:.1} s in all):",
        t_checks.elapsed().as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    for c in &checks {
        println!("  {}  {}: {}", c.mark(), c.name, c.detail);
    }
    if groups.contains(&"chromium") {
        println!(
            "  screenshots: {} and {}",
            work.join("still.png").display(),
            work.join("stream.png").display()
        );
    }
    // Not "N passed, N failed": that form is CI's closing line for the
    // whole run, which `ci` prints.
    if failed == 0 {
        println!("interop: all {} checks passed", checks.len());
        Ok(())
    } else {
        Err(format!("{failed} of {} interop checks failed", checks.len()).into())
    }
}

/// Fails early, naming what to install, when a needed program is missing.
fn preflight(groups: &[&str]) -> Result<(), Box<dyn Error>> {
    let mut missing = Vec::new();
    let mut need = |group: &str, prog: &'static str| {
        if groups.contains(&group) && !util::have(prog) && !missing.contains(&prog) {
            missing.push(prog);
        }
    };
    need("node", "node");
    need("node", "npm");
    need("python", "python3");
    need("chromium", "python3");
    need("ffmpeg", "ffmpeg");
    need("ffmpeg", "ffprobe");
    need("ffmpeg", "curl");
    need("chromium", "chromium");
    if missing.is_empty() {
        return Ok(());
    }
    let debs: Vec<&str> = missing
        .iter()
        .map(|p| match *p {
            "ffprobe" => "ffmpeg",
            "node" => "nodejs",
            other => other,
        })
        .fold(Vec::new(), |mut v, d| {
            if !v.contains(&d) {
                v.push(d);
            }
            v
        });
    Err(format!(
        "interop needs {} on PATH: run .ci/run (it installs them), or \
         `apt-get install {}`",
        missing.join(", "),
        debs.join(" ")
    )
    .into())
}

/// A command for a peer. Proxies from the environment are dropped: curl,
/// ffmpeg and Python's websockets would otherwise send 127.0.0.1 traffic
/// through a proxy that is not there on CI.
fn peer(program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut cmd = Command::new(program);
    for v in [
        "http_proxy",
        "https_proxy",
        "all_proxy",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
    ] {
        cmd.env_remove(v);
    }
    cmd.env("no_proxy", "127.0.0.1,localhost")
        .env("NO_PROXY", "127.0.0.1,localhost")
        // browser.py imports cdp.py: no __pycache__ in the source tree.
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stdin(Stdio::null());
    cmd
}

// ---- installs -----------------------------------------------------------

/// npm `ws` at the version `tests/interop/package.json` pins, in `dir`.
fn ensure_node(dir: &Path, scripts: &Path) -> Result<String, Box<dyn Error>> {
    let manifest = scripts.join("package.json");
    let pinned = json_string_field(&fs::read_to_string(&manifest)?, "ws")
        .ok_or_else(|| format!("{} pins no \"ws\" version", manifest.display()))?;
    let installed_manifest = dir.join("node_modules/ws/package.json");
    let installed = || {
        fs::read_to_string(&installed_manifest)
            .ok()
            .and_then(|t| json_string_field(&t, "version"))
    };
    let node = first_line(peer("node").arg("--version"))?;
    if installed().as_deref() != Some(pinned.as_str()) {
        println!("interop: installing npm ws {pinned} into {}", dir.display());
        fs::create_dir_all(dir)?;
        fs::copy(&manifest, dir.join("package.json"))?;
        let mut cmd = peer("npm");
        cmd.arg("install")
            .arg("--prefix")
            .arg(dir)
            .args(["--no-package-lock", "--no-audit", "--no-fund"])
            .args(["--loglevel", "error"]);
        run_quiet(&mut cmd, INSTALL_TIMEOUT)?;
        let got = installed();
        if got.as_deref() != Some(pinned.as_str()) {
            return Err(format!("npm installed ws {got:?}, not {pinned}").into());
        }
    }
    Ok(format!("npm ws {pinned} (node {node})"))
}

/// Python `websockets` at the version `tests/interop/requirements.txt`
/// pins, in a venv at `dir`.
fn ensure_venv(dir: &Path, scripts: &Path) -> Result<String, Box<dyn Error>> {
    let reqs = scripts.join("requirements.txt");
    let pinned = fs::read_to_string(&reqs)?
        .lines()
        .find_map(|l| l.trim().strip_prefix("websockets==").map(str::to_string))
        .ok_or_else(|| format!("{} pins no websockets== version", reqs.display()))?;
    let python = dir.join("bin/python");
    let installed = || {
        let mut cmd = peer(&python);
        cmd.args(["-c", "import websockets; print(websockets.__version__)"]);
        capture(&mut cmd, TOOL_TIMEOUT)
            .ok()
            .filter(|o| o.status.is_some_and(|s| s.success()))
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    if installed().as_deref() == Some(pinned.as_str()) {
        return Ok(format!("Python websockets {pinned}"));
    }
    // A venv whose interpreter no longer runs (python3 upgraded or moved)
    // is rebuilt rather than patched.
    let works = python.is_file() && {
        let mut cmd = peer(&python);
        cmd.args(["-c", "pass"]);
        capture(&mut cmd, TOOL_TIMEOUT).is_ok_and(|o| o.status.is_some_and(|s| s.success()))
    };
    if !works {
        println!("interop: creating the venv {}", dir.display());
        let _ = fs::remove_dir_all(dir);
        let mut cmd = peer("python3");
        cmd.args(["-m", "venv"]).arg(dir);
        run_quiet(&mut cmd, INSTALL_TIMEOUT).map_err(|e| {
            format!("{e}\n(python3 -m venv needs Debian's python3-venv: run .ci/run or apt-get install python3-venv)")
        })?;
    }
    println!(
        "interop: installing Python websockets {pinned} into {}",
        dir.display()
    );
    let mut cmd = peer(&python);
    cmd.args([
        "-m",
        "pip",
        "install",
        "--disable-pip-version-check",
        "-q",
        "-r",
    ])
    .arg(&reqs);
    run_quiet(&mut cmd, INSTALL_TIMEOUT)?;
    let got = installed();
    if got.as_deref() != Some(pinned.as_str()) {
        return Err(format!("pip installed websockets {got:?}, not {pinned}").into());
    }
    Ok(format!("Python websockets {pinned}"))
}

/// The string value of `"key": "value"` in a small JSON file we control
/// (std has no JSON parser; the first occurrence is the one we mean).
fn json_string_field(text: &str, key: &str) -> Option<String> {
    let at = text.find(&format!("\"{key}\""))?;
    let rest = text[at + key.len() + 2..].trim_start().strip_prefix(':')?;
    let rest = rest.trim_start().strip_prefix('"')?;
    Some(rest[..rest.find('"')?].to_string())
}

// ---- running processes under a timeout -----------------------------------

/// What a process printed, and how it ended (`None`: killed at the timeout).
struct Output {
    status: Option<ExitStatus>,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    secs: f64,
}

/// Runs `cmd` in its own process group with stdout and stderr captured;
/// past `timeout` the whole group is killed (a script's Chromium included).
fn capture(cmd: &mut Command, timeout: Duration) -> Result<Output, Box<dyn Error>> {
    cmd.stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let t = Instant::now();
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", util::show(cmd)))?;
    let out = drain(child.stdout.take());
    let err = drain(child.stderr.take());
    let status = wait_or_kill(&mut child, timeout);
    Ok(Output {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
        secs: t.elapsed().as_secs_f64(),
    })
}

fn drain(pipe: Option<impl Read + Send + 'static>) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut p) = pipe {
            let _ = p.read_to_end(&mut buf);
        }
        buf
    })
}

/// Waits for `child` up to `timeout`; then kills its process group (it was
/// started as its leader) and returns `None`.
fn wait_or_kill(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(Some(st)) = child.try_wait() {
            return Some(st);
        }
        if Instant::now() >= deadline {
            // std kills one pid; kill(1) with a negative pid kills the group.
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", child.id())])
                .status();
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Runs an install step: quiet on success, its output in the error.
fn run_quiet(cmd: &mut Command, timeout: Duration) -> Result<(), Box<dyn Error>> {
    let o = capture(cmd, timeout)?;
    match o.status {
        Some(s) if s.success() => Ok(()),
        st => Err(format!(
            "{} {}:\n{}{}",
            util::show(cmd),
            match st {
                Some(s) => format!("failed ({s})"),
                None => format!("timed out after {timeout:?}"),
            },
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
        .into()),
    }
}

/// The first line `cmd` prints (a `--version`), for the report.
fn first_line(cmd: &mut Command) -> Result<String, Box<dyn Error>> {
    let o = capture(cmd, TOOL_TIMEOUT)?;
    let text = String::from_utf8_lossy(&o.stdout);
    // Debian's chromium wrapper prints a shell warning on stderr; the
    // version is on stdout.
    // Up to the build details: "ffmpeg version 5.1.9-0+deb12u1 Copyright…",
    // "curl 7.88.1 (x86_64-pc-linux-gnu) libcurl/…".
    text.lines()
        .find(|l| !l.trim().is_empty())
        .map(|l| {
            let l = l.trim();
            let cut = [" Copyright", " (", " built on"]
                .iter()
                .filter_map(|m| l.find(m))
                .min()
                .unwrap_or(l.len());
            l[..cut].to_string()
        })
        .ok_or_else(|| format!("{} printed nothing", util::show(cmd)).into())
}

/// Runs a test script, streaming its output, and turns its `PASS`/`FAIL`
/// lines into checks. A timeout, a crash or a script that checked nothing
/// is a failed check too.
fn run_script(label: &str, cmd: &mut Command, timeout: Duration) -> Vec<Check> {
    cmd.stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let t = Instant::now();
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return vec![Check::new(label, false, format!("cannot start: {e}"))],
    };
    let (tx, rx) = mpsc::channel::<(bool, String)>();
    let mut readers = Vec::new();
    for (is_stdout, pipe) in [
        (
            true,
            child
                .stdout
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
        ),
        (
            false,
            child
                .stderr
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
        ),
    ] {
        let tx = tx.clone();
        readers.push(thread::spawn(move || {
            if let Some(p) = pipe {
                for line in BufReader::new(p).lines() {
                    let Ok(line) = line else { break };
                    if tx.send((is_stdout, line)).is_err() {
                        break;
                    }
                }
            }
        }));
    }
    drop(tx);
    let deadline = t + timeout;
    let mut checks = Vec::new();
    let mut timed_out = false;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok((true, line)) => {
                let parsed = line
                    .strip_prefix("PASS ")
                    .map(|r| (true, r))
                    .or_else(|| line.strip_prefix("FAIL ").map(|r| (false, r)));
                match parsed {
                    Some((ok, rest)) => {
                        let (name, detail) = rest.split_once(": ").unwrap_or((rest, ""));
                        checks.push(Check::new(name, ok, detail));
                    }
                    None => println!("    {line}"),
                }
            }
            Ok((false, line)) => println!("    stderr: {line}"),
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                timed_out = true;
                break;
            }
        }
    }
    // Both pipes are closed (or the deadline passed): the exit comes now.
    let status = wait_or_kill(
        &mut child,
        if timed_out {
            Duration::ZERO
        } else {
            Duration::from_secs(5)
        },
    );
    if !timed_out {
        for r in readers {
            let _ = r.join();
        }
    }
    let secs = t.elapsed().as_secs_f64();
    match status {
        None => checks.push(Check::new(
            label,
            false,
            format!("killed after {secs:.0} s (timeout {timeout:?})"),
        )),
        Some(st) if !st.success() && checks.iter().all(|c| c.ok) => checks.push(Check::new(
            label,
            false,
            format!("exited with {st} and reported no failed check"),
        )),
        Some(_) if checks.is_empty() => {
            checks.push(Check::new(label, false, "ran no check"));
        }
        Some(_) => println!("    ({label}: {secs:.1} s)"),
    }
    checks
}

// ---- ffmpeg, ffprobe and curl ---------------------------------------------

fn ffmpeg_checks(base: &str) -> Vec<Check> {
    let mut checks = Vec::new();
    let mjpg = format!("{base}/stream.mjpg");
    // -rw_timeout (µs): a server that stops sending fails the read, not CI.
    let rw_timeout = ["-rw_timeout", "10000000"];

    let mut probe = peer("ffprobe");
    probe
        .args(["-v", "error"])
        .args(rw_timeout)
        .args(["-show_entries", "stream=codec_name,width,height"])
        .args(["-of", "default=noprint_wrappers=1"])
        .arg(&mjpg);
    checks.push(match capture(&mut probe, TOOL_TIMEOUT) {
        Err(e) => Check::new("ffprobe /stream.mjpg", false, e.to_string()),
        Ok(o) => {
            let out = String::from_utf8_lossy(&o.stdout);
            let field = |k: &str| {
                out.lines()
                    .find_map(|l| l.strip_prefix(k)?.strip_prefix('='))
                    .unwrap_or("?")
                    .to_string()
            };
            let (codec, w, h) = (field("codec_name"), field("width"), field("height"));
            let ok = ended_ok(&o) && codec == "mjpeg" && w == "640" && h == "480";
            Check::new(
                "ffprobe /stream.mjpg",
                ok,
                format!(
                    "{codec} {w}x{h} in {:.1} s{}",
                    o.secs,
                    problems(&o, "ffprobe")
                ),
            )
        }
    });

    // -progress writes key=value lines to stdout; the last frame= is the
    // count of frames decoded. -v error: anything on stderr is a decode
    // error (a split or truncated JPEG would show here).
    let mut decode = peer("ffmpeg");
    decode
        .args(["-nostdin", "-hide_banner", "-nostats", "-v", "error"])
        .args(["-progress", "pipe:1"])
        .args(rw_timeout)
        .args(["-i", &mjpg])
        .args(["-frames:v", &FFMPEG_FRAMES.to_string(), "-f", "null", "-"]);
    checks.push(match capture(&mut decode, TOOL_TIMEOUT) {
        Err(e) => Check::new("ffmpeg decodes /stream.mjpg", false, e.to_string()),
        Ok(o) => {
            let frames: u32 = String::from_utf8_lossy(&o.stdout)
                .lines()
                .filter_map(|l| l.strip_prefix("frame=")?.trim().parse().ok())
                .next_back()
                .unwrap_or(0);
            let ok = ended_ok(&o) && o.stderr.is_empty() && frames == FFMPEG_FRAMES;
            Check::new(
                "ffmpeg decodes /stream.mjpg",
                ok,
                format!(
                    "{frames}/{FFMPEG_FRAMES} frames decoded in {:.1} s, {} bytes of errors{}",
                    o.secs,
                    o.stderr.len(),
                    problems(&o, "ffmpeg")
                ),
            )
        }
    });

    checks.push(curl_still(base, false));
    checks.push(curl_still(base, true));
    checks.push(curl_mjpeg(base));
    checks
}

/// Did the process exit 0 (not killed at the timeout)?
fn ended_ok(o: &Output) -> bool {
    o.status.is_some_and(|s| s.success())
}

/// What went wrong, for a check's detail: nothing when it ended well.
fn problems(o: &Output, who: &str) -> String {
    let how = match o.status {
        None => format!("; {who} killed at the timeout"),
        Some(s) if !s.success() => format!("; {who} {s}"),
        Some(_) => String::new(),
    };
    let err = String::from_utf8_lossy(&o.stderr);
    let err = err.trim();
    if err.is_empty() {
        how
    } else {
        format!(
            "{how}; stderr: {}",
            err.chars().take(300).collect::<String>()
        )
    }
}

/// `curl -si /pi.jpg` (or `-sI`, a HEAD): 200, `image/jpeg`, no-store, and
/// for GET a body that is a whole JPEG of `Content-Length` bytes.
fn curl_still(base: &str, head: bool) -> Check {
    let name = if head {
        "curl -sI /pi.jpg (HEAD)"
    } else {
        "curl -si /pi.jpg"
    };
    let mut cmd = peer("curl");
    cmd.arg(if head { "-sI" } else { "-si" })
        .args(["--max-time", "10"])
        .arg(format!("{base}/pi.jpg"));
    let o = match capture(&mut cmd, TOOL_TIMEOUT) {
        Ok(o) => o,
        Err(e) => return Check::new(name, false, e.to_string()),
    };
    let Some(split) = util::find(&o.stdout, b"\r\n\r\n") else {
        return Check::new(
            name,
            false,
            format!("no response head{}", problems(&o, "curl")),
        );
    };
    let head_text = String::from_utf8_lossy(&o.stdout[..split]).into_owned();
    let body = &o.stdout[split + 4..];
    let status = head_text.lines().next().unwrap_or_default().to_string();
    let header = |n: &str| {
        head_text.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(n)
                .then(|| v.trim().to_string())
        })
    };
    let ctype = header("content-type").unwrap_or_default();
    let cache = header("cache-control").unwrap_or_default();
    let len: Option<usize> = header("content-length").and_then(|v| v.parse().ok());
    let body_ok = if head {
        body.is_empty()
    } else {
        Some(body.len()) == len && body.starts_with(&[0xFF, 0xD8]) && body.ends_with(&[0xFF, 0xD9])
    };
    let ok = ended_ok(&o)
        && status.starts_with("HTTP/1.1 200")
        && ctype == "image/jpeg"
        && cache.contains("no-store")
        && len.is_some_and(|l| l > 0)
        && body_ok;
    let body_note = if head {
        format!("{} body bytes", body.len())
    } else if body_ok {
        "body is a whole JPEG".to_string()
    } else {
        format!("body of {} bytes is not a whole JPEG", body.len())
    };
    Check::new(
        name,
        ok,
        format!(
            "{status:?}, Content-Type {ctype}, Content-Length {}, Cache-Control {cache}, {body_note}{}",
            len.map_or("none".to_string(), |l| l.to_string()),
            problems(&o, "curl")
        ),
    )
}

/// `curl -sN /stream.mjpg` for a couple of seconds: multipart with a
/// boundary, and every part an `image/jpeg` with a `Content-Length` that
/// matches the whole JPEG after it (SPEC).
fn curl_mjpeg(base: &str) -> Check {
    let name = "curl /stream.mjpg multipart";
    let mut cmd = peer("curl");
    cmd.args(["-sNi", "--max-time", &CURL_MJPEG_SECS.to_string()])
        .arg(format!("{base}/stream.mjpg"));
    let o = match capture(&mut cmd, TOOL_TIMEOUT) {
        Ok(o) => o,
        Err(e) => return Check::new(name, false, e.to_string()),
    };
    // curl exits 28 when --max-time ends the endless stream: that is the
    // expected way out here.
    if o.status.and_then(|s| s.code()) != Some(28) {
        return Check::new(
            name,
            false,
            format!("curl did not stop at --max-time{}", problems(&o, "curl")),
        );
    }
    match parse_multipart(&o.stdout) {
        Ok((ctype, parts, partial)) => {
            let ok = parts >= 10;
            Check::new(
                name,
                ok,
                format!(
                    "{ctype}; {parts} whole JPEG parts in {CURL_MJPEG_SECS} s, each with a \
                     matching Content-Length{}",
                    if partial {
                        " (last one cut by curl)"
                    } else {
                        ""
                    }
                ),
            )
        }
        Err(e) => Check::new(name, false, e),
    }
}

/// Walks a captured `multipart/x-mixed-replace` response: the content type,
/// how many parts were whole and right, and whether the last was cut off.
fn parse_multipart(raw: &[u8]) -> Result<(String, usize, bool), String> {
    let split = util::find(raw, b"\r\n\r\n").ok_or("no response head")?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    if !head.starts_with("HTTP/1.1 200") {
        return Err(format!(
            "status {:?}",
            head.lines().next().unwrap_or_default()
        ));
    }
    let ctype = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case("content-type")
                .then(|| v.trim().to_string())
        })
        .ok_or("no Content-Type")?;
    let boundary = ctype
        .split(';')
        .find_map(|p| p.trim().strip_prefix("boundary="))
        .filter(|_| ctype.starts_with("multipart/x-mixed-replace"))
        .ok_or_else(|| format!("Content-Type {ctype:?} is not multipart with a boundary"))?
        .trim_matches('"')
        .to_string();
    let delim = format!("--{boundary}");
    let mut rest = &raw[split + 4..];
    let mut parts = 0;
    loop {
        // RFC 2046 §5.1.1: the delimiter may follow a CRLF, and anything
        // before the first one is preamble.
        let Some(at) = util::find(rest, delim.as_bytes()) else {
            return Ok((ctype, parts, !rest.is_empty()));
        };
        rest = &rest[at + delim.len()..];
        let Some(hend) = util::find(rest, b"\r\n\r\n") else {
            return Ok((ctype, parts, true));
        };
        let part_head = String::from_utf8_lossy(&rest[..hend]).to_ascii_lowercase();
        let len: usize = part_head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .ok_or_else(|| format!("part {parts} has no Content-Length"))?;
        if !part_head.contains("content-type: image/jpeg") {
            return Err(format!("part {parts} is not image/jpeg: {part_head:?}"));
        }
        let body = &rest[hend + 4..];
        if body.len() < len {
            return Ok((ctype, parts, true));
        }
        let jpeg = &body[..len];
        if !(jpeg.starts_with(&[0xFF, 0xD8]) && jpeg.ends_with(&[0xFF, 0xD9])) {
            return Err(format!(
                "part {parts}: {len} bytes by Content-Length are not a whole JPEG"
            ));
        }
        parts += 1;
        rest = &body[len..];
    }
}

// ---- picamd itself --------------------------------------------------------

/// picamd lived through every peer, and stops as SPEC says on SIGTERM.
fn server_checks(server: &mut Server) -> Vec<Check> {
    let mut checks = Vec::new();
    if let Some(st) = server.exited() {
        checks.push(Check::new(
            "picamd survives the peers",
            false,
            format!("died during the checks: {st}"),
        ));
        return checks;
    }
    let status = util::http_get(server.addr, "/status", Duration::from_secs(5));
    checks.push(match status {
        Ok(r) if r.status == 200 => {
            let json = String::from_utf8_lossy(&r.body).into_owned();
            Check::new(
                "picamd survives the peers",
                true,
                format!(
                    "/status: frames_out {}, frames_dropped_slow {}, stream_restarts {}, capture_errors {}",
                    json_number(&json, "frames_out"),
                    json_number(&json, "frames_dropped_slow"),
                    json_number(&json, "stream_restarts"),
                    json_number(&json, "capture_errors"),
                ),
            )
        }
        Ok(r) => Check::new(
            "picamd survives the peers",
            false,
            format!("/status answered {}", r.status),
        ),
        Err(e) => Check::new("picamd survives the peers", false, format!("/status: {e}")),
    });
    let t = Instant::now();
    let stop = server.terminate(Duration::from_secs(5));
    let secs = t.elapsed().as_secs_f64();
    checks.push(match stop {
        Ok(st) => Check::new(
            "picamd exits 0 on SIGTERM",
            st.success() && t.elapsed() <= SHUTDOWN_LIMIT,
            format!("{st} after {secs:.2} s (limit {SHUTDOWN_LIMIT:?})"),
        ),
        Err(e) => Check::new("picamd exits 0 on SIGTERM", false, e.to_string()),
    });
    checks
}

/// The number after `"key":` in picamd's /status JSON, or `?`.
fn json_number(json: &str, key: &str) -> String {
    json.find(&format!("\"{key}\":"))
        .map(|at| &json[at + key.len() + 3..])
        .map(|rest| {
            rest.chars()
                .take_while(|c| c.is_ascii_digit() || *c == '.')
                .collect::<String>()
        })
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "?".to_string())
}
