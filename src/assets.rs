//! The pages in `www/`, compiled into the binary so picamd is one file.

use std::path::Path;

/// Built-in files by name (no leading slash).
const FILES: &[(&str, &[u8])] = &[
    ("index.html", include_bytes!("../www/index.html")),
    ("stream.html", include_bytes!("../www/stream.html")),
];

/// A built-in file and its content type.
pub fn get(name: &str) -> Option<(&'static [u8], &'static str)> {
    FILES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(n, b)| (*b, content_type(Path::new(n))))
}

/// Content type by file extension (the types a camera page needs).
pub fn content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()) {
        Some("html" | "htm") => "text/html; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("json") => "application/json",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("png") => "image/png",
        Some("svg") => "image/svg+xml",
        Some("ico") => "image/x-icon",
        Some("txt") => "text/plain; charset=utf-8",
        Some("webmanifest") => "application/manifest+json",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_are_built_in_with_html_type() {
        let (body, ty) = get("index.html").unwrap();
        assert!(body.starts_with(b"<!doctype html>") || body.starts_with(b"<!DOCTYPE html>"));
        assert_eq!(ty, "text/html; charset=utf-8");
        assert!(get("stream.html").is_some());
        assert!(get("../Cargo.toml").is_none());
    }
}
