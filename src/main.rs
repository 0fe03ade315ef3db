//! picamd's entry point: arguments → `Config` → `server::run`. Nothing else.

use std::process::ExitCode;

use picamd::config::{self, Command};

fn main() -> ExitCode {
    match config::parse_args(std::env::args().skip(1)) {
        Ok(Command::Help) => {
            print!("{}", config::HELP);
            ExitCode::SUCCESS
        }
        Ok(Command::Version) => {
            println!("picamd {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Ok(Command::Run(cfg)) => match picamd::server::run(*cfg) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("picamd: {e}");
                ExitCode::FAILURE
            }
        },
        Err(msg) => {
            eprintln!("picamd: {msg}");
            ExitCode::from(2)
        }
    }
}
