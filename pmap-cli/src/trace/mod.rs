//! `pmap trace`: a live memory map fed by the kernel programs.
//!
//! - `probes`: loads and attaches the eBPF programs, reads the ring buffer.
//! - `query`: asks the kernel what a range looks like now (PROCMAP_QUERY).
//! - `model`: the region model of one process (replace rows, diff).
//! - `session`: one traced process: applies events to its model.
//! - `syscalls`: what each traced syscall means and may have changed.
//! - `output`: text and JSON printing.
//! - `launch`: `pmap trace -- COMMAND`.
//! - `run`: the event loop.
pub mod args;
pub mod insight;
pub mod launch;
pub mod model;
pub mod output;
pub mod probes;
pub mod query;
pub mod run;
pub mod session;
pub mod syscalls;

use std::{ffi::OsString, io::Write, process::ExitCode};

use clap::Parser;

use crate::region::Region;

/// Temporary table writer in pmap's default format, until the snapshot
/// printers are wired in.
fn default_table(out: &mut dyn Write, pid: u32, regions: &[Region]) -> std::io::Result<()> {
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let cmd: Vec<String> = cmdline
        .split(|&b| b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    writeln!(out, "{pid}:   {}", cmd.join(" "))?;
    let mut total = 0;
    for r in regions {
        total += r.size() / 1024;
        let perms = r.perms.0;
        let p = [
            perms[0],
            perms[1],
            perms[2],
            b'-',
            if perms[3] == b's' { b's' } else { b'-' },
        ];
        let name = if r.name.is_empty() {
            "  [ anon ]".to_string()
        } else if r.name.starts_with(b"[") {
            format!(
                "  [ {} ]",
                String::from_utf8_lossy(&r.name[1..r.name.len() - 1])
            )
        } else {
            let n = String::from_utf8_lossy(&r.name).into_owned();
            n.rsplit('/').next().unwrap_or(&n).to_string()
        };
        writeln!(
            out,
            "{:016x} {:>6}K {} {}",
            r.start,
            r.size() / 1024,
            String::from_utf8_lossy(&p),
            name
        )?;
    }
    writeln!(out, " total {total:>16}K")
}

pub fn main(args: Vec<OsString>) -> ExitCode {
    // argv[0] is "pmap", argv[1] is "trace".
    let parsed = match args::TraceArgs::try_parse_from(args.into_iter().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 1 } else { 0 });
        }
    };
    let mut render = default_table;
    match run::run(parsed, &mut render) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("pmap trace: {e:#}");
            ExitCode::FAILURE
        }
    }
}
