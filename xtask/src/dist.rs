//! `cargo xtask dist [--check]`: stripped, statically linked release
//! binaries in `target/dist/picamd-<target>`, with their sizes:
//! - the host (`x86_64-unknown-linux-gnu` here) with `+crt-static`;
//! - `aarch64-unknown-linux-musl` (64-bit Raspberry Pi OS), linked with
//!   `rust-lld` from the Rust toolchain, so no cross gcc is needed
//!   (`rustup target add` is tried when it is missing);
//! - `x86_64-unknown-linux-musl` when that target is already installed: the
//!   smaller x86_64 build (musl's static libc is a fraction of glibc's).
//!
//! A target that cannot be installed or built is reported and skipped; only
//! the host binary is required. With `--check` each binary is run on the test
//! pattern (the aarch64 one under `qemu-aarch64-static` when it is installed):
//! `/pi.jpg` must be a JPEG, `/stream` must give WebSocket frames that are
//! JPEGs, and SIGTERM must end it with status 0.
//!
//! 32-bit Pis (`arm-unknown-linux-musleabihf` for the Pi Zero/1,
//! `armv7-unknown-linux-musleabihf` for the Pi 2/3/4 on a 32-bit OS) build
//! the same way: `rustup target add <t>`, then
//! `CARGO_TARGET_<T>_LINKER=rust-lld cargo build --release --target <t>`.

use std::error::Error;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::util::{self, OP_BINARY, Server, WsClient};

const AARCH64: &str = "aarch64-unknown-linux-musl";
const X86_64_MUSL: &str = "x86_64-unknown-linux-musl";

/// Extra targets: (triple, install it with rustup when missing?).
const EXTRA_TARGETS: [(&str, bool); 2] = [(AARCH64, true), (X86_64_MUSL, false)];

/// Frames to read from `/stream` in the check.
const CHECK_FRAMES: usize = 3;

pub fn run(args: &[String]) -> Result<(), Box<dyn Error>> {
    let mut check = false;
    for a in args {
        match a.as_str() {
            "--check" => check = true,
            other => return Err(format!("dist: unknown argument {other:?}").into()),
        }
    }
    let root = util::root();
    let dist_dir = root.join("target/dist");
    fs::create_dir_all(&dist_dir)?;
    let host = util::host_triple()?;

    let mut built: Vec<(String, PathBuf)> = Vec::new();
    let mut skipped: Vec<String> = Vec::new();

    // The host binary is required.
    let t = Instant::now();
    let bin = util::build_release()?;
    built.push((host.clone(), copy_out(&bin, &dist_dir, &host)?));
    println!("dist: {host} built in {:.0} s", t.elapsed().as_secs_f64());

    for (target, install) in EXTRA_TARGETS {
        if target == host {
            continue;
        }
        let t = Instant::now();
        match build_musl(target, install) {
            Ok(bin) => {
                built.push((target.to_string(), copy_out(&bin, &dist_dir, target)?));
                println!("dist: {target} built in {:.0} s", t.elapsed().as_secs_f64());
            }
            Err(e) => {
                println!(
                    "dist: NOTE: cannot build {target} on this machine: {e}; going on without it"
                );
                skipped.push(format!("{target}: {e}"));
            }
        }
    }

    println!("\n{:<32} {:>10}  {:<8} path", "target", "size", "static");
    for (target, path) in &built {
        let size = fs::metadata(path)?.len();
        let stat = match is_static_elf(path) {
            Some(true) => "yes",
            Some(false) => "NO",
            None => "?",
        };
        println!(
            "{target:<32} {:>10}  {stat:<8} {}",
            util::human_bytes(size),
            path.strip_prefix(&root).unwrap_or(path).display()
        );
    }
    for (target, path) in &built {
        if is_static_elf(path) == Some(false) {
            return Err(format!("{target}: {} is dynamically linked", path.display()).into());
        }
    }

    if check {
        for (target, path) in &built {
            let t = Instant::now();
            if *target == host || target == X86_64_MUSL {
                check_binary(path, None)?;
            } else if target == AARCH64 {
                if !util::have("qemu-aarch64-static") {
                    println!(
                        "dist --check: SKIPPED {target}: no qemu-aarch64-static (Debian package qemu-user-static)"
                    );
                    continue;
                }
                check_binary(path, Some("qemu-aarch64-static"))?;
            } else {
                continue;
            }
            println!(
                "dist --check: {target}: /pi.jpg, {CHECK_FRAMES} WebSocket frames and SIGTERM ok ({:.1} s)",
                t.elapsed().as_secs_f64()
            );
        }
        if !skipped.is_empty() {
            println!("dist --check: not checked: {}", skipped.join("; "));
        }
    }
    Ok(())
}

/// Copies a built binary to `target/dist/picamd-<target>`.
fn copy_out(bin: &Path, dist_dir: &Path, target: &str) -> Result<PathBuf, Box<dyn Error>> {
    let dest = dist_dir.join(format!("picamd-{target}"));
    fs::copy(bin, &dest)
        .map_err(|e| format!("copy {} → {}: {e}", bin.display(), dest.display()))?;
    Ok(dest)
}

/// Builds a musl target with rust-lld, installing the target first when
/// `install` (otherwise a missing target is an error the caller reports).
fn build_musl(target: &str, install: bool) -> Result<PathBuf, String> {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .any(|l| l.trim() == target)
        })
        .unwrap_or(false);
    if !installed {
        if !install {
            return Err(format!("target not installed (rustup target add {target})"));
        }
        println!("dist: rustup target add {target}");
        util::run(Command::new("rustup").args(["target", "add", target]))
            .map_err(|e| format!("rustup target add {target} failed ({e})"))?;
    }
    let mut cmd = util::release_build_cmd(target);
    // rust-lld ships with rustc (rustlib/<host>/bin, which rustc puts on the
    // linker's search path), and musl's crt objects and libc.a ship with the
    // target (self-contained), so no cross toolchain is needed.
    let linker_var = format!(
        "CARGO_TARGET_{}_LINKER",
        target.to_ascii_uppercase().replace('-', "_")
    );
    if std::env::var_os(&linker_var).is_none() {
        cmd.env(&linker_var, "rust-lld");
    }
    util::run(&mut cmd).map_err(|e| e.to_string())?;
    let bin = util::release_bin(target);
    if bin.is_file() {
        Ok(bin)
    } else {
        Err(format!("cargo built no {}", bin.display()))
    }
}

/// Reads the ELF program headers: a binary without `PT_INTERP` needs no
/// dynamic loader, i.e. is static (static-pie included). `None` if the file
/// is not a 64-bit little-endian ELF.
fn is_static_elf(path: &Path) -> Option<bool> {
    let b = fs::read(path).ok()?;
    if b.get(..4)? != b"\x7fELF" || *b.get(4)? != 2 || *b.get(5)? != 1 {
        return None;
    }
    let u16_at = |o: usize| -> Option<u64> {
        Some(u64::from(u16::from_le_bytes(
            b.get(o..o + 2)?.try_into().ok()?,
        )))
    };
    let u32_at =
        |o: usize| -> Option<u32> { Some(u32::from_le_bytes(b.get(o..o + 4)?.try_into().ok()?)) };
    let u64_at =
        |o: usize| -> Option<u64> { Some(u64::from_le_bytes(b.get(o..o + 8)?.try_into().ok()?)) };
    let phoff = usize::try_from(u64_at(0x20)?).ok()?;
    let phentsize = usize::try_from(u16_at(0x36)?).ok()?;
    let phnum = usize::try_from(u16_at(0x38)?).ok()?;
    const PT_INTERP: u32 = 3;
    for i in 0..phnum {
        if u32_at(phoff + i * phentsize)? == PT_INTERP {
            return Some(false);
        }
    }
    Some(true)
}

/// Runs `bin` (under `runner` if given) on the test pattern and checks a
/// still, a few WebSocket frames and a clean SIGTERM exit.
fn check_binary(bin: &Path, runner: Option<&str>) -> Result<(), Box<dyn Error>> {
    let mut cmd = match runner {
        Some(r) => {
            let mut c = Command::new(r);
            c.arg(bin);
            c
        }
        None => Command::new(bin),
    };
    cmd.args(["--listen", "127.0.0.1:0", "--camera", "test"]);
    cmd.stdout(Stdio::null());
    // Emulation is slower: give it time to start and to answer.
    let slow = runner.is_some();
    let startup = Duration::from_secs(if slow { 60 } else { 10 });
    let io_timeout = Duration::from_secs(if slow { 30 } else { 5 });
    let mut server = Server::start_cmd(cmd, startup)?;
    let what = runner.map_or_else(
        || bin.display().to_string(),
        |r| format!("{r} {}", bin.display()),
    );
    let fail = |server: &Server, msg: String| -> Box<dyn Error> {
        format!("{what}: {msg}; stderr:\n{}", server.stderr_tail()).into()
    };

    let snap = util::http_get(server.addr, "/pi.jpg", io_timeout)
        .map_err(|e| fail(&server, format!("GET /pi.jpg: {e}")))?;
    if snap.status != 200 || !snap.body.starts_with(&[0xFF, 0xD8]) {
        return Err(fail(
            &server,
            format!(
                "/pi.jpg gave status {} and {} bytes, not a JPEG",
                snap.status,
                snap.body.len()
            ),
        ));
    }
    let mut ws = WsClient::connect(server.addr, "/stream", io_timeout)
        .map_err(|e| fail(&server, format!("WebSocket /stream: {e}")))?;
    for i in 0..CHECK_FRAMES {
        let m = ws
            .recv_message()
            .map_err(|e| fail(&server, format!("WebSocket frame {i}: {e}")))?;
        if m.opcode != OP_BINARY || !m.payload.starts_with(&[0xFF, 0xD8]) {
            return Err(fail(
                &server,
                format!(
                    "WebSocket frame {i} is not a binary JPEG (opcode {})",
                    m.opcode
                ),
            ));
        }
    }
    drop(ws);
    let status = server.terminate(Duration::from_secs(if slow { 15 } else { 5 }))?;
    if !status.success() {
        return Err(fail(
            &server,
            format!("exit status {status} after SIGTERM, expected 0"),
        ));
    }
    Ok(())
}
