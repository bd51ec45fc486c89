//! `pmap trace`: a live memory map fed by the kernel programs.
pub mod probes;

use std::{ffi::OsString, process::ExitCode};

pub fn main(_args: Vec<OsString>) -> ExitCode {
    eprintln!("pmap trace: not built yet");
    ExitCode::FAILURE
}
