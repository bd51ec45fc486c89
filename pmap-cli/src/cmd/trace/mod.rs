//! `pmap trace`: a live memory map fed by the kernel programs.
//!
//! - `probes`: loads and attaches the eBPF programs, reads the ring buffer.
//! - `btf`: kernel field offsets for the capture, from the kernel's BTF.
//! - `capture`: a call's effect from the regions the kernel program read
//!   at its exit (exact: nothing later can be in them).
//! - `delta`: a change of the map and why, and the summary's counts.
//! - `clock`: CLOCK_MONOTONIC, the kernel programs' clock.
//! - `session`: one traced process: applies events to its model.
//! - `syscalls`: what each traced syscall means and may have changed.
//! - `batch`: what the events not applied yet of a batch will change.
//! - `effect`: what a call did, from its arguments (for calls the kernel
//!   can no longer show because a later one changed the same addresses).
//! - `output`: text and JSON printing.
//! - `launch`: `pmap trace -- COMMAND`.
//! - `run`: the event loop.
//! - `record`: the recordings `--record` writes and `pmap replay` and
//!   `pmap diff` read (docs/recording.md).
pub mod args;
pub mod batch;
pub mod capture;
pub mod clock;
pub mod delta;
pub mod effect;
pub mod focus;
pub mod insight;
pub mod launch;
pub mod output;
pub mod record;
pub mod run;
pub mod session;
pub mod syscalls;
pub mod unwind;

use std::{ffi::OsString, io::Write, process::ExitCode};

use clap::Parser;

use crate::{
    map::{process::ProcessInfo, region::Region},
    render::{self, Options, Range, SmapsColumns},
    source::{pid_dir::PidDir, process},
};

/// The table options of snapshot mode, from the trace command line.
fn table_options(a: &args::TraceArgs) -> Result<Options, String> {
    let format =
        crate::cmd::common::format::from_letters(a.extended, u32::from(a.very_extended), a.device)
            .map_err(|_| "options -d, -x, -X are mutually exclusive".to_string())?;
    let range = match &a.range {
        Some(r) => crate::cmd::common::numbers::parse_range(r.as_bytes(), Range::default())
            .map_err(|_| format!("'{r}' is not an address range (-A low[,high], in hex)"))?,
        None => Range::default(),
    };
    Ok(Options {
        format,
        quiet: a.quiet,
        show_path: a.show_path,
        kernel_name: a.kernel_name,
        range,
        shm_minor: crate::render::ShmMinor::Lazy(crate::source::shm::shm_minor),
    })
}

/// Prints one table exactly as `pmap` with the same options would: from the
/// model for the maps formats, from `/proc/PID/smaps` (read now, after the
/// model was confirmed against the kernel) for the smaps formats. Every
/// file is read through the session's open `/proc/PID`, so a table is never
/// of another process that took the id. A process already gone (see
/// [`gone_table`]) still gets its table from the model.
fn table_renderer(
    opts: Options,
) -> impl FnMut(&mut dyn Write, u32, Option<&PidDir>, &[Region]) -> std::io::Result<()> {
    let mut columns = SmapsColumns::default();
    move |mut out, pid, dir, regions| {
        let Some((dir, info)) = dir.and_then(|d| Some((d, process::fetch_in(d)?))) else {
            return gone_table(out, &opts, pid, regions);
        };
        if opts.format.uses_smaps() {
            return match crate::cmd::common::table::render_process_in(
                &mut out,
                dir,
                &info,
                &opts,
                &mut columns,
            ) {
                Ok(_) => Ok(()),
                Err(crate::cmd::common::table::Fatal::Io(e)) => Err(e),
                Err(crate::cmd::common::table::Fatal::Message(m)) => Err(std::io::Error::other(m)),
            };
        }
        render::print_maps_table(&mut out, &opts, &info, regions)
    }
}

/// The header of a process whose command line could not be read: it
/// exited first (a short-lived child under `-f`, seen only through its
/// calls).
const GONE_HEADER: &[u8] = b"(exited before its command line could be read)";

/// The table of process `pid`, gone before its `/proc` files could be
/// read: [`GONE_HEADER`], then the model's rows in the maps formats (its
/// stack is the region the kernel named `[stack]`, as `stat` would have
/// said), or a line saying why there are none in the smaps formats, whose
/// columns only `/proc/PID/smaps` has.
fn gone_table(
    mut out: &mut dyn Write,
    opts: &Options,
    pid: u32,
    regions: &[Region],
) -> std::io::Result<()> {
    let info = ProcessInfo {
        pid,
        tgid: pid,
        cmdline: GONE_HEADER.to_vec(),
        start_stack: regions
            .iter()
            .find(|r| r.name == b"[stack]")
            .map_or(0, |r| r.start),
    };
    if opts.format.uses_smaps() {
        render::print_process_line(&mut out, &info)?;
        return writeln!(
            out,
            "(no rows: this format's columns come from /proc/{pid}/smaps, gone with the \
             process; the default format and --json show its regions)"
        );
    }
    render::print_maps_table(&mut out, opts, &info, regions)
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
    let opts = match table_options(&parsed) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("pmap trace: {e}");
            return ExitCode::FAILURE;
        }
    };
    let range = opts.range;
    let mut render = table_renderer(opts);
    match run::run(parsed, range, &mut render) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("pmap trace: {e:#}");
            ExitCode::FAILURE
        }
    }
}
