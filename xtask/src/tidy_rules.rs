//! The architecture and style rules of STYLE.md that a program can check,
//! shared by `cargo xtask tidy` and the `tests/tidy.rs` test (which pulls
//! this file in with `#[path]`, so it is std only and has one entry point,
//! [`check`]).
//!
//! The checks read source text, not a syntax tree: comments, string and char
//! literals are blanked first (so a doc comment that says "unsafe" or a log
//! message that says "http" is not code), and items under `#[cfg(test)]` are
//! blanked for the rules that are about what runs in production (tests may
//! read the clock or open sockets).

use std::fmt;
use std::path::{Path, PathBuf};

/// One broken rule at one place: printed as `path:line: rule`.
pub struct Violation {
    pub path: String,
    pub line: usize,
    pub rule: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.path, self.line, self.rule)
    }
}

/// Runtime dependencies fixed by the design (STYLE §10).
const ALLOWED_DEPS: [&str; 5] = ["base64", "libc", "memchr", "nix", "sha1_smol"];

/// `std` modules that do I/O, read the clock, or touch processes or the OS:
/// none of them belongs in the pure `proto` layer (STYLE §1).
const IMPURE_STD: [&str; 8] = ["net", "os", "process", "time", "fs", "io", "thread", "env"];

/// Crates and path roots `proto::*` may use besides pure std/core/alloc.
const PROTO_ROOTS: [&str; 5] = ["memchr", "sha1_smol", "base64", "super", "self"];

/// What `conn` must not touch: it gets bytes and `now` and returns actions,
/// so it is tested without sockets (STYLE §1).
const CONN_FORBIDDEN: [&str; 7] = [
    "nix",
    "libc",
    "std::net",
    "std::os",
    "std::process",
    "std::fs",
    "std::thread",
];

/// Modules the reactor must not know: it handles fds, interests, tokens and
/// deadlines, never paths, headers or frames (STYLE §1).
const REACTOR_FORBIDDEN: [&str; 10] = [
    "proto", "http", "ws", "jpeg", "conn", "server", "camera", "auth", "assets", "pattern",
];

/// The lints every parser file denies outside tests (STYLE §2).
const PROTO_DENIED_LINTS: [&str; 4] = [
    "clippy::unwrap_used",
    "clippy::expect_used",
    "clippy::indexing_slicing",
    "clippy::panic",
];

/// Checks the repository at `root`; returns every violation, sorted by path.
pub fn check(root: &Path) -> Vec<Violation> {
    let mut out = Vec::new();
    for dir in ["src", "xtask/src", "tests", "fuzz/fuzz_targets"] {
        for file in rust_files(&root.join(dir)) {
            let rel = relative(root, &file);
            let Ok(text) = std::fs::read_to_string(&file) else {
                out.push(violation(&rel, 1, "cannot read file as UTF-8"));
                continue;
            };
            if !text.starts_with("//!") {
                out.push(violation(
                    &rel,
                    1,
                    "file must open with `//!` docs: what it does, guarantees, must not know",
                ));
            }
            let code = blank_comments_and_literals(&text);
            if dir == "src" || dir == "tests" {
                check_test_attributes(&rel, &code, &mut out);
            }
            if dir == "src" {
                check_src_file(&rel, &code, &mut out);
            }
        }
    }
    check_lib(root, &mut out);
    check_cargo_toml(root, &mut out);
    out.sort_by(|a, b| (&a.path, a.line).cmp(&(&b.path, b.line)));
    out
}

fn violation(path: &str, line: usize, rule: &str) -> Violation {
    Violation {
        path: path.to_string(),
        line,
        rule: rule.to_string(),
    }
}

/// Every `.rs` file under `dir`, recursively, in a stable order.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                files.push(p);
            }
        }
    }
    files.sort();
    files
}

fn relative(root: &Path, file: &Path) -> String {
    file.strip_prefix(root)
        .unwrap_or(file)
        .to_string_lossy()
        .into_owned()
}

/// STYLE §8: tests assert today's behaviour; nothing is skipped or expected
/// to panic.
fn check_test_attributes(rel: &str, code: &str, out: &mut Vec<Violation>) {
    for (i, line) in code.lines().enumerate() {
        let squeezed: String = line.chars().filter(|c| !c.is_whitespace()).collect();
        if squeezed.contains("#[ignore") {
            out.push(violation(
                rel,
                i + 1,
                "no #[ignore]: assert today's behaviour and add a FIXME",
            ));
        }
        if squeezed.contains("#[should_panic") {
            out.push(violation(
                rel,
                i + 1,
                "no #[should_panic]: nothing reachable from input panics",
            ));
        }
    }
}

fn check_src_file(rel: &str, code: &str, out: &mut Vec<Violation>) {
    // Rules on all code, tests included.
    for (i, line) in code.lines().enumerate() {
        if has_word(line, "unsafe") {
            out.push(violation(
                rel,
                i + 1,
                "no `unsafe` in src/ (#![forbid(unsafe_code)], STYLE §6)",
            ));
        }
        for mac in ["todo!", "unimplemented!"] {
            if has_word(line, mac) {
                out.push(violation(rel, i + 1, &format!("no `{mac}` in src/")));
            }
        }
    }

    // Rules on production code only.
    let prod = blank_cfg_test_items(code);
    let is_proto = rel.starts_with("src/proto/");
    let uses = use_paths(&prod);
    let inline = inline_paths(&prod);
    let all_paths = uses.iter().chain(inline.iter());

    if rel != "src/reactor.rs" {
        for (line, path) in inline.iter() {
            if path.ends_with("Instant::now") || path.ends_with("SystemTime::now") {
                out.push(violation(
                    rel,
                    *line,
                    "only src/reactor.rs reads the clock: take `now` as an argument",
                ));
            }
        }
        for (i, l) in prod.lines().enumerate() {
            if l.contains(".elapsed(") {
                out.push(violation(
                    rel,
                    i + 1,
                    "`.elapsed()` reads the clock; only src/reactor.rs does: take `now` as an argument",
                ));
            }
        }
    }

    if is_proto {
        for (line, path) in uses.iter() {
            if !proto_may_use(path) {
                out.push(violation(
                    rel,
                    *line,
                    &format!(
                        "proto imports `{path}`: proto uses only pure std/core/alloc, memchr, sha1_smol, base64, super::, crate::proto::"
                    ),
                ));
            }
        }
        for (line, path) in inline.iter() {
            if !proto_may_use(path) && is_external_root(path) {
                out.push(violation(
                    rel,
                    *line,
                    &format!(
                        "proto uses `{path}`: proto is pure (no I/O, clock, OS, other layers)"
                    ),
                ));
            }
        }
        if !rel.ends_with("/mod.rs") {
            let squeezed: String = code.chars().filter(|c| !c.is_whitespace()).collect();
            let has_deny = squeezed.contains("#![cfg_attr(not(test),deny(")
                && PROTO_DENIED_LINTS.iter().all(|l| squeezed.contains(l));
            if !has_deny {
                out.push(violation(
                    rel,
                    1,
                    "proto file must start with #![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic))]",
                ));
            }
        }
    }

    if rel == "src/conn.rs" {
        for (line, path) in all_paths.clone() {
            if let Some(bad) = CONN_FORBIDDEN.iter().find(|f| path_starts_with(path, f)) {
                out.push(violation(
                    rel,
                    *line,
                    &format!("conn never does I/O: it must not use `{bad}` (`{path}`)"),
                ));
            }
        }
    }

    if rel == "src/reactor.rs" {
        let mut reported = Vec::new();
        for (line, path) in all_paths {
            let mentions = path.split("::").find(|seg| REACTOR_FORBIDDEN.contains(seg));
            let own = path.starts_with("std::") || path.starts_with("nix::");
            if let (Some(m), false) = (mentions, own) {
                reported.push(*line);
                out.push(violation(
                    rel,
                    *line,
                    &format!("reactor knows fds, tokens and deadlines, never `{m}` (`{path}`)"),
                ));
            }
        }
        // Names outside paths too (`fn on_http(…)`, `let ws = …`).
        for (i, l) in prod.lines().enumerate() {
            if reported.contains(&(i + 1)) {
                continue;
            }
            if let Some(w) = ["http", "ws", "jpeg", "proto"]
                .iter()
                .find(|w| has_word(l, w))
            {
                out.push(violation(
                    rel,
                    i + 1,
                    &format!("reactor mentions `{w}`: it knows no protocol"),
                ));
            }
        }
    }
}

/// Is `path` (a `use` path or an inline `a::b` path) allowed in `proto`?
fn proto_may_use(path: &str) -> bool {
    let path = path.trim_start_matches("::");
    let mut segs = path.split("::");
    let root = segs.next().unwrap_or_default();
    match root {
        "std" | "core" | "alloc" => {
            let module = segs.next().unwrap_or_default();
            !IMPURE_STD.contains(&module)
        }
        "crate" => segs.next() == Some("proto"),
        r => PROTO_ROOTS.contains(&r) || !is_crate_name_like(r),
    }
}

/// Inline paths start with local names too (`Status::Partial`, `u16::from`):
/// only roots that name a crate or std module are checked inline.
fn is_external_root(path: &str) -> bool {
    let root = path
        .trim_start_matches("::")
        .split("::")
        .next()
        .unwrap_or_default();
    matches!(root, "std" | "core" | "alloc" | "crate" | "nix" | "libc")
}

/// In a `use` path the root is a crate, `crate`, `super`, `self` or a local
/// module; local modules of `proto` (nested `mod`) start lowercase too, so
/// anything lowercase that is not allowed is treated as a crate.
fn is_crate_name_like(root: &str) -> bool {
    root.chars().next().is_some_and(|c| c.is_ascii_lowercase())
}

fn path_starts_with(path: &str, prefix: &str) -> bool {
    let path = path.trim_start_matches("::");
    path == prefix || path.starts_with(&format!("{prefix}::"))
}

/// `#![forbid(unsafe_code)]` crate-wide (STYLE §6).
fn check_lib(root: &Path, out: &mut Vec<Violation>) {
    let Ok(text) = std::fs::read_to_string(root.join("src/lib.rs")) else {
        out.push(violation("src/lib.rs", 1, "missing src/lib.rs"));
        return;
    };
    let code = blank_comments_and_literals(&text);
    let squeezed: String = code.chars().filter(|c| !c.is_whitespace()).collect();
    if !squeezed.contains("#![forbid(unsafe_code)]") {
        out.push(violation(
            "src/lib.rs",
            1,
            "src/lib.rs must say #![forbid(unsafe_code)]",
        ));
    }
}

/// The root package's runtime dependencies are exactly `ALLOWED_DEPS`.
fn check_cargo_toml(root: &Path, out: &mut Vec<Violation>) {
    let rel = "Cargo.toml";
    let Ok(text) = std::fs::read_to_string(root.join(rel)) else {
        out.push(violation(rel, 1, "missing Cargo.toml"));
        return;
    };
    let mut section = String::new();
    let mut deps_line = 0;
    let mut depth = 0i32;
    let mut found: Vec<String> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or_default().trim();
        if depth == 0 && line.starts_with('[') {
            section = line
                .trim_matches(|c| c == '[' || c == ']')
                .trim()
                .to_string();
            if section == "dependencies" {
                deps_line = i + 1;
            }
            if let Some(name) = section.strip_prefix("dependencies.") {
                found.push(name.trim().to_string());
                check_dep(rel, i + 1, name.trim(), out);
            }
            if section.starts_with("target.") && section.ends_with(".dependencies") {
                out.push(violation(
                    rel,
                    i + 1,
                    "target-specific runtime dependencies are not allowed (STYLE §10)",
                ));
            }
            continue;
        }
        let in_deps = section == "dependencies"
            || (section.starts_with("target.") && section.ends_with(".dependencies"));
        if in_deps
            && depth == 0
            && let Some((key, _)) = line.split_once('=')
        {
            let name = key.trim().split('.').next().unwrap_or_default().trim();
            let name = name.trim_matches('"').to_string();
            if !name.is_empty() {
                check_dep(rel, i + 1, &name, out);
                found.push(name);
            }
        }
        for c in line.chars() {
            match c {
                '[' | '{' => depth += 1,
                ']' | '}' => depth -= 1,
                _ => {}
            }
        }
        if depth < 0 {
            depth = 0;
        }
    }
    for dep in ALLOWED_DEPS {
        if !found.iter().any(|f| f == dep) {
            out.push(violation(
                rel,
                deps_line.max(1),
                &format!(
                    "runtime dependency `{dep}` is missing: the set is exactly {ALLOWED_DEPS:?}"
                ),
            ));
        }
    }
}

fn check_dep(rel: &str, line: usize, name: &str, out: &mut Vec<Violation>) {
    if !ALLOWED_DEPS.contains(&name) {
        out.push(violation(
            rel,
            line,
            &format!(
                "runtime dependency `{name}` is not allowed: only {ALLOWED_DEPS:?} (STYLE §10)"
            ),
        ));
    }
}

fn is_ident_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// `word` occurs in `line` with no identifier character on either side
/// (`word` may end in `!`, as `todo!`).
fn has_word(line: &str, word: &str) -> bool {
    let mut from = 0;
    while let Some(i) = line[from..].find(word) {
        let start = from + i;
        let end = start + word.len();
        let before = line[..start].chars().next_back();
        let after = line[end..].chars().next();
        let ends_ident = word.ends_with(|c: char| is_ident_char(c));
        if !(before.is_some_and(is_ident_char) || ends_ident && after.is_some_and(is_ident_char)) {
            return true;
        }
        from = end;
    }
    false
}

/// Replaces comments and the contents of string, byte-string and char
/// literals with spaces, keeping every newline (so line numbers hold).
fn blank_comments_and_literals(src: &str) -> String {
    let c: Vec<char> = src.chars().collect();
    let mut out: Vec<char> = Vec::with_capacity(c.len());
    let blank = |ch: char| if ch == '\n' { '\n' } else { ' ' };
    let mut i = 0;
    while i < c.len() {
        let ch = c[i];
        let next = c.get(i + 1).copied();
        if ch == '/' && next == Some('/') {
            while i < c.len() && c[i] != '\n' {
                out.push(' ');
                i += 1;
            }
        } else if ch == '/' && next == Some('*') {
            let mut depth = 0;
            while i < c.len() {
                if c[i] == '/' && c.get(i + 1) == Some(&'*') {
                    depth += 1;
                    out.extend([' ', ' ']);
                    i += 2;
                } else if c[i] == '*' && c.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    out.extend([' ', ' ']);
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    out.push(blank(c[i]));
                    i += 1;
                }
            }
        } else if let Some(len) = raw_string_start(&c, i) {
            // r"…", r#"…"#, br"…", cr"…": no escapes, ends at `"` + hashes.
            let hashes = c[i..i + len].iter().filter(|&&x| x == '#').count();
            out.extend(std::iter::repeat_n(' ', len));
            i += len;
            while i < c.len() {
                if c[i] == '"' && (1..=hashes).all(|k| c.get(i + k) == Some(&'#')) {
                    out.extend(std::iter::repeat_n(' ', hashes + 1));
                    i += hashes + 1;
                    break;
                }
                out.push(blank(c[i]));
                i += 1;
            }
        } else if ch == '"' && !(i > 0 && is_ident_char(c[i - 1]) && !is_literal_prefix(&c, i)) {
            out.push(' ');
            i += 1;
            while i < c.len() {
                if c[i] == '\\' {
                    out.push(' ');
                    if let Some(&e) = c.get(i + 1) {
                        out.push(blank(e));
                    }
                    i += 2;
                } else if c[i] == '"' {
                    out.push(' ');
                    i += 1;
                    break;
                } else {
                    out.push(blank(c[i]));
                    i += 1;
                }
            }
        } else if ch == '\'' {
            // A char literal ('x', '\n', '\u{..}') or a lifetime/label ('a).
            if next == Some('\\') {
                let mut j = i + 2;
                while j < c.len() && c[j] != '\'' && c[j] != '\n' {
                    j += 1;
                }
                // skip the escaped char itself when it is a quote: '\''
                if c.get(i + 2) == Some(&'\'') {
                    j = i + 3;
                }
                let end = (j + 1).min(c.len());
                out.extend(std::iter::repeat_n(' ', end - i));
                i = end;
            } else if c.get(i + 2) == Some(&'\'') {
                out.extend([' ', ' ', ' ']);
                i += 3;
            } else {
                out.push(ch);
                i += 1;
            }
        } else {
            out.push(ch);
            i += 1;
        }
    }
    out.into_iter().collect()
}

/// `b"…"` and `c"…"` literals: the `"` follows an identifier char that is
/// only a literal prefix.
fn is_literal_prefix(c: &[char], quote: usize) -> bool {
    let p = quote.checked_sub(1).map(|k| c[k]);
    let pp = quote.checked_sub(2).map(|k| c[k]);
    matches!(p, Some('b') | Some('c')) && !pp.is_some_and(is_ident_char)
}

/// Length of a raw string opener (`r"`, `r##"`, `br#"`, `cr"`) at `i`.
fn raw_string_start(c: &[char], i: usize) -> Option<usize> {
    if i > 0 && is_ident_char(c[i - 1]) {
        return None;
    }
    let mut j = i;
    if matches!(c.get(j), Some('b') | Some('c')) {
        j += 1;
    }
    if c.get(j) != Some(&'r') {
        return None;
    }
    j += 1;
    while c.get(j) == Some(&'#') {
        j += 1;
    }
    (c.get(j) == Some(&'"')).then_some(j + 1 - i)
}

/// Blanks every item (or statement) marked `#[cfg(test)]`, keeping newlines:
/// the code that remains is what the release binary runs.
fn blank_cfg_test_items(code: &str) -> String {
    let mut c: Vec<char> = code.chars().collect();
    let pattern: Vec<char> = "#[cfg(test)]".chars().collect();
    let mut i = 0;
    while i < c.len() {
        let Some(after) = match_squeezed(&c, i, &pattern) else {
            i += 1;
            continue;
        };
        // Find the item's end: `;` or `,` at depth 0, a `{…}` body, or the
        // enclosing block's `}`.
        let mut j = after;
        let mut depth = 0i32;
        let end = loop {
            let Some(&ch) = c.get(j) else { break c.len() };
            match ch {
                '(' | '[' => depth += 1,
                ')' | ']' => depth -= 1,
                ';' | ',' if depth == 0 => break j + 1,
                '}' if depth == 0 => break j,
                '{' if depth == 0 => {
                    let mut d = 0i32;
                    let mut k = j;
                    while k < c.len() {
                        match c[k] {
                            '{' => d += 1,
                            '}' => {
                                d -= 1;
                                if d == 0 {
                                    break;
                                }
                            }
                            _ => {}
                        }
                        k += 1;
                    }
                    break (k + 1).min(c.len());
                }
                _ => {}
            }
            j += 1;
        };
        for ch in c.iter_mut().take(end).skip(i) {
            if *ch != '\n' {
                *ch = ' ';
            }
        }
        i = end.max(i + 1);
    }
    c.into_iter().collect()
}

/// Matches `pattern` at `i` ignoring whitespace in the text; returns the
/// index after the match.
fn match_squeezed(c: &[char], i: usize, pattern: &[char]) -> Option<usize> {
    if c.get(i) != pattern.first() {
        return None;
    }
    let mut j = i;
    for &p in pattern {
        while c.get(j).is_some_and(|x| x.is_whitespace()) {
            j += 1;
        }
        if c.get(j) != Some(&p) {
            return None;
        }
        j += 1;
    }
    Some(j)
}

/// Every path named by a `use` declaration, flattened
/// (`use std::{fmt, io::Read};` → `std::fmt`, `std::io::Read`), with the
/// line of its `use`.
fn use_paths(code: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let bytes: Vec<char> = code.chars().collect();
    let mut line = 1;
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == '\n' {
            line += 1;
        }
        let starts_word = i == 0 || !is_ident_char(bytes[i - 1]);
        let is_use = starts_word
            && bytes[i..].starts_with(&['u', 's', 'e'])
            && bytes
                .get(i + 3)
                .is_some_and(|c| c.is_whitespace() || *c == ':' || *c == '{');
        if !is_use {
            i += 1;
            continue;
        }
        let start = i + 3;
        let mut j = start;
        while j < bytes.len() && bytes[j] != ';' {
            j += 1;
        }
        let raw: String = bytes[start..j].iter().collect();
        let tree = squeeze_use_tree(&raw);
        for p in flatten_use(&tree) {
            out.push((line, p));
        }
        line += bytes[i..j].iter().filter(|&&c| c == '\n').count();
        i = j + 1;
    }
    out
}

/// `a::{b, c::{d, e}}` → `a::b`, `a::c::d`, `a::c::e` (renames already
/// removed by [`squeeze_use_tree`]).
fn flatten_use(tree: &str) -> Vec<String> {
    let Some(open) = tree.find('{') else {
        return vec![tree.to_string()];
    };
    let prefix = &tree[..open];
    let Some(close) = tree.rfind('}') else {
        return vec![tree.to_string()];
    };
    let inner = &tree[open + 1..close];
    let mut parts = Vec::new();
    let mut depth = 0;
    let mut last = 0;
    for (k, ch) in inner.char_indices() {
        match ch {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&inner[last..k]);
                last = k + 1;
            }
            _ => {}
        }
    }
    parts.push(&inner[last..]);
    parts
        .into_iter()
        .filter(|p| !p.is_empty())
        .flat_map(|p| flatten_use(&format!("{prefix}{p}")))
        .collect()
}

/// A use tree without whitespace and without `as name` renames.
fn squeeze_use_tree(raw: &str) -> String {
    let spaced = raw
        .replace("::", " :: ")
        .replace('{', " { ")
        .replace('}', " } ")
        .replace(',', " , ");
    let mut out = String::new();
    let mut tokens = spaced.split_whitespace();
    while let Some(t) = tokens.next() {
        if t == "as" {
            tokens.next();
            continue;
        }
        out.push_str(t);
    }
    out
}

/// Every `a::b::c` path written in code (not in `use`), with its line.
fn inline_paths(code: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    for (i, line) in code.lines().enumerate() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("use ") || trimmed.starts_with("pub use ") {
            continue;
        }
        let c: Vec<char> = line.chars().collect();
        let mut k = 0;
        while k < c.len() {
            let at_start = (k == 0 || !is_ident_char(c[k - 1]))
                && (is_ident_char(c[k]) || (c[k] == ':' && c.get(k + 1) == Some(&':')));
            if !at_start {
                k += 1;
                continue;
            }
            let mut j = k;
            let mut segments = 0;
            loop {
                if c.get(j) == Some(&':') && c.get(j + 1) == Some(&':') {
                    j += 2;
                }
                let s = j;
                while j < c.len() && is_ident_char(c[j]) {
                    j += 1;
                }
                if j == s {
                    break;
                }
                segments += 1;
                if !(c.get(j) == Some(&':') && c.get(j + 1) == Some(&':')) {
                    break;
                }
            }
            if segments >= 2 {
                out.push((i + 1, c[k..j].iter().collect::<String>()));
            }
            k = j.max(k + 1);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comments_and_literals_are_blanked_keeping_lines() {
        let src = "let a = \"unsafe\"; // unsafe\n/* unsafe /* nested */ */ let b = '\"';\nlet c = r#\"x \" unsafe\"#; let d: &'static str = b\"\\\"x\";\n";
        let code = blank_comments_and_literals(src);
        assert_eq!(code.lines().count(), 3);
        assert!(!code.contains("unsafe"), "{code}");
        assert!(code.contains("let b ="));
        assert!(code.contains("'static"), "a lifetime is code: {code}");
        assert!(code.contains("let d"));
    }

    #[test]
    fn cfg_test_items_are_blanked() {
        let code = "fn a() {}\n#[cfg(test)]\nmod tests {\n    fn b() { x(); }\n}\n#[cfg(test)] use std::net::TcpStream;\nfn c() {}\n";
        let prod = blank_cfg_test_items(code);
        assert!(prod.contains("fn a()") && prod.contains("fn c()"));
        assert!(
            !prod.contains("fn b()") && !prod.contains("TcpStream"),
            "{prod}"
        );
        assert_eq!(prod.lines().count(), code.lines().count());
    }

    #[test]
    fn use_trees_are_flattened_without_renames() {
        let code = "use std::{fmt, io::{self, Read as R}};\npub use crate::proto::Status;\n";
        let paths: Vec<String> = use_paths(code).into_iter().map(|(_, p)| p).collect();
        assert_eq!(
            paths,
            [
                "std::fmt",
                "std::io::self",
                "std::io::Read",
                "crate::proto::Status"
            ]
        );
    }

    #[test]
    fn proto_import_rules() {
        for ok in [
            "std::fmt",
            "core::str",
            "std::collections::VecDeque",
            "memchr::memchr",
            "super::Status",
            "crate::proto::Status",
        ] {
            assert!(proto_may_use(ok), "{ok}");
        }
        for bad in [
            "std::net::TcpStream",
            "std::time::Instant",
            "std::io::Write",
            "nix::unistd",
            "crate::config::Limits",
            "libc::c_int",
        ] {
            assert!(!proto_may_use(bad), "{bad}");
        }
    }

    #[test]
    fn words_need_boundaries() {
        assert!(has_word("unsafe {", "unsafe"));
        assert!(!has_word("forbid(unsafe_code)", "unsafe"));
        assert!(has_word("x => todo!()", "todo!"));
        assert!(!has_word("not_todo!()", "todo!"));
    }
}
