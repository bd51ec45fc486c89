//! The whole command line as a clap `Command`, for `--help`-style docs, the
//! man page and shell completions (`cargo xtask install`).
//!
//! Snapshot mode parses its arguments itself (procps-ng compatible messages
//! and getopt semantics); this description must list the same options.
pub fn command() -> clap::Command {
    clap::Command::new("pmap")
        .about("Report the memory map of a process, or trace it live")
        .version(env!("CARGO_PKG_VERSION"))
        // The views beyond procps-ng (views/help.rs).
        .args(crate::views::help::clap_args())
}
