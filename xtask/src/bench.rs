//! `cargo xtask bench`: a placeholder until the benchmarks are written.

use std::process::ExitCode;

/// Says the benchmarks do not exist yet and exits with status 2.
pub fn bench(_args: &[String]) -> ExitCode {
    eprintln!("cargo xtask bench: not implemented yet");
    ExitCode::from(2)
}
