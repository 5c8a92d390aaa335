//! Command line: `affectd run | simulate | train | retrain | replay | check-config`.
use std::process::ExitCode;

pub fn main() -> ExitCode {
    ExitCode::SUCCESS
}
