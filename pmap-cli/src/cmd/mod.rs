//! One module per command line; none imports another (`common` holds what
//! they share). [`main`] picks the command.
//!
//! - `snapshot`: `pmap [options] PID...`, procps-ng's command line.
//! - `views`: the options beyond procps-ng (`--json`, `--summary`,
//!   `--sort`, `--names`, Solaris's `-S -r -a -F -L -s`) and core files.
//! - `common`: the shared option vocabulary and the procps table driver.
//! - `trace`: `pmap trace`, the live view fed by the kernel programs, and
//!   its recordings (`trace::record`, `--record`).
//! - `replay`, `diff`: `pmap replay` (a recording again) and `pmap diff`
//!   (two moments of a map); the trace family to the layout's rules, since
//!   they read its recordings and print with its printer.
//! - `exporter`: `pmap exporter`, Prometheus metrics of processes' maps.
pub mod common;
pub(crate) mod diff;
pub(crate) mod exporter;
pub mod replay;
pub(crate) mod snapshot;
pub mod trace;
pub(crate) mod views;

use std::{ffi::OsString, process::ExitCode};

/// Runs the command line `args` (with the program name) names.
pub fn main(args: Vec<OsString>) -> ExitCode {
    match args.get(1).and_then(|a| a.to_str()) {
        Some("trace") => return trace::main(args),
        Some("exporter") => return exporter::main(args),
        Some("replay") => return replay::main(args),
        Some("diff") => return diff::main(args),
        _ => {}
    }
    // `pmap man [PAGE]`, `pmap completions SHELL`.
    if crate::self_docs::wanted(&args) {
        return crate::self_docs::main(&args);
    }
    // --json, --summary, --sort, --names, -S -r -a -F -L -s and core files;
    // anything else is procps-ng's command line.
    if let Some(code) = views::main_if_views(&args) {
        return code;
    }
    snapshot::main(args)
}
