//! One module per command line; none imports another (`common` holds what
//! they share). `main.rs` picks the command.
//!
//! - `snapshot`: `pmap [options] PID...`, procps-ng's command line.
//! - `views`: the options beyond procps-ng (`--json`, `--summary`,
//!   `--sort`, `--names`, Solaris's `-S -r -a -F -L -s`) and core files.
//! - `common`: the shared option vocabulary and the procps table driver.
//!
//! `pmap trace` is `crate::trace` (to move here as `cmd/trace`).
pub mod common;
pub mod snapshot;
pub mod views;
