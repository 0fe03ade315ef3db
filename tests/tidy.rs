//! `cargo xtask tidy` as a test: the STYLE.md rules (layering, `//!` docs,
//! no `unsafe`, the dependency allow-list) hold for the whole repository.
//! The rules live in `xtask/src/tidy_rules.rs` (std only), shared with xtask.

#[path = "../xtask/src/tidy_rules.rs"]
mod tidy_rules;

#[test]
fn style_rules_hold() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let violations = tidy_rules::check(root);
    let report: Vec<String> = violations.iter().map(ToString::to_string).collect();
    assert!(
        report.is_empty(),
        "{} STYLE.md violation(s):\n{}",
        report.len(),
        report.join("\n")
    );
}
