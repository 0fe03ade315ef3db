//! `cargo xtask tidy`: checks the STYLE.md rules a program can check (the
//! rules themselves are in `tidy_rules.rs`, shared with `tests/tidy.rs`) and
//! prints each violation as `path:line: rule`.

use std::error::Error;

use crate::tidy_rules;
use crate::util;

pub fn run(args: &[String]) -> Result<(), Box<dyn Error>> {
    if let Some(a) = args.first() {
        return Err(format!("tidy takes no arguments (got {a:?})").into());
    }
    let violations = tidy_rules::check(&util::root());
    for v in &violations {
        println!("{v}");
    }
    if violations.is_empty() {
        println!("tidy: ok");
        Ok(())
    } else {
        Err(format!("{} violation(s) of STYLE.md", violations.len()).into())
    }
}
