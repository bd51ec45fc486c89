//! `pmap replay FILE`: a recording made with `pmap trace --record`,
//! printed again as the trace printed it; `--at WHEN`: the table of the
//! traced process(es) at that moment, as `pmap` printed it then; `--info`:
//! what the recording holds; `--report FILE`: the trace's HTML report.
//!
//! - `print`: the whole trace again, through the trace's own printer.
//! - `at`: the map at a moment (checkpoint, then records up to it).
//! - `when`: `+SECS`, RFC 3339, `@EPOCH` to a recording's clock.
//! - `leaks`: what was mapped during the recording and still is, by call
//!   site.
//! - `report`: the HTML report, from the recording.

pub mod at;
pub mod leaks;
pub mod print;
pub mod report;
pub mod when;

use std::{ffi::OsString, path::PathBuf, process::ExitCode};

use clap::Parser;

use crate::{
    cmd::trace::focus::{Focus, parse_size, parse_syscalls},
    cmd::trace::record::reader::Recording,
    render::{Format, Options, Range},
};

/// Print a recording made with `pmap trace --record FILE` as the trace
/// printed it, or the table at any moment of it (--at).
#[derive(Debug, Parser)]
#[command(
    name = "pmap replay",
    bin_name = "pmap replay",
    version,
    after_help = "Examples:\n  pmap replay trace.pmaprec\n  pmap replay --at +2.5 trace.pmaprec\n  pmap replay --at 2026-12-06T10:00:00Z trace.pmaprec\n  pmap replay --at @1765046400.25 -d trace.pmaprec\n  pmap replay --report out.html trace.pmaprec"
)]
pub struct ReplayArgs {
    /// The table at this moment instead of the whole trace: `+SECS` since
    /// the recording began, an RFC 3339 time, or `@EPOCH[.frac]`.
    #[arg(long, value_name = "WHEN")]
    pub at: Option<String>,
    /// With --at or --leaks: only this process (default: every process).
    #[arg(long, value_name = "PID")]
    pub pid: Option<u32>,
    /// What the recording holds: when it began, how long, how many
    /// records, whether it is complete.
    #[arg(long)]
    pub info: bool,
    /// The address space mapped by traced calls during the recording and
    /// still mapped at its end (or --at WHEN), by call site, largest first
    /// (call sites need `pmap trace --stacks`).
    #[arg(long)]
    pub leaks: bool,
    /// With --leaks: one `outer;...;inner BYTES` line per stack, the input
    /// of flame graph tools.
    #[arg(long, requires = "leaks")]
    pub folded: bool,
    /// Write the HTML report `pmap trace --report` writes (timeline, call
    /// sites, W^X, churn) from the recording, instead of printing it.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["at", "leaks", "info", "json"])]
    pub report: Option<PathBuf>,
    /// Tables in extended format: not possible (the recording has no smaps
    /// data); refused with an explanation.
    #[arg(short = 'x', long = "extended")]
    pub extended: bool,
    /// Tables in very extended format: not possible, as -x.
    #[arg(short = 'X', action = clap::ArgAction::Count)]
    pub very_extended: u8,
    /// Tables in device format (as `pmap -d`).
    #[arg(short = 'd', long = "device")]
    pub device: bool,
    /// Tables without header and footer lines (as `pmap -q`).
    #[arg(short = 'q', long = "quiet")]
    pub quiet: bool,
    /// Show full paths in tables (as `pmap -p`).
    #[arg(short = 'p', long = "show-path")]
    pub show_path: bool,
    /// Show the kernel's names in tables (as `pmap -k`).
    #[arg(short = 'k', long = "use-kernel-name")]
    pub kernel_name: bool,
    /// Only regions in this address range, in tables and deltas (hex).
    #[arg(short = 'A', long = "range", value_name = "LOW[,HIGH]")]
    pub range: Option<String>,
    /// JSON Lines, as `pmap trace --json` prints them.
    #[arg(long)]
    pub json: bool,
    /// Only deltas of these calls (as `pmap trace --syscall`).
    #[arg(long = "syscall", value_name = "LIST", value_delimiter = ',')]
    pub syscalls: Vec<String>,
    /// Only deltas whose rows cover at least SIZE bytes (as `pmap trace`).
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub min_size: Option<u64>,
    /// Only deltas of calls made by these threads.
    #[arg(long = "tid", value_name = "TID", value_delimiter = ',')]
    pub tids: Vec<u32>,
    /// Only deltas with a region whose name contains TEXT.
    #[arg(long, value_name = "TEXT")]
    pub name: Option<String>,
    /// The recording.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
}

impl ReplayArgs {
    fn options(&self) -> Result<Options, String> {
        if self.extended || self.very_extended > 0 {
            let flag = match self.very_extended {
                0 => "-x",
                1 => "-X",
                _ => "-XX",
            };
            return Err(format!(
                "{flag} shows smaps fields (RSS, dirty pages, ...) that a recording does not \
                 hold: it has what /proc/PID/maps shows. Use the default format or -d"
            ));
        }
        let range = match &self.range {
            Some(r) => crate::cmd::common::numbers::parse_range(r.as_bytes(), Range::default())
                .map_err(|_| format!("'{r}' is not an address range (-A low[,high], in hex)"))?,
            None => Range::default(),
        };
        Ok(Options {
            format: if self.device {
                Format::Device
            } else {
                Format::Default
            },
            quiet: self.quiet,
            show_path: self.show_path,
            kernel_name: self.kernel_name,
            range,
            shm_minor: crate::render::ShmMinor::Lazy(crate::source::shm::shm_minor),
        })
    }

    fn focus(&self) -> Result<Focus, String> {
        Ok(Focus {
            syscalls: if self.syscalls.is_empty() {
                None
            } else {
                Some(parse_syscalls(&self.syscalls)?)
            },
            min_size: self.min_size.unwrap_or(0),
            tids: (!self.tids.is_empty()).then(|| self.tids.iter().copied().collect()),
            name: self.name.as_ref().map(|n| n.as_bytes().to_vec()),
        })
    }
}

pub fn main(args: Vec<OsString>) -> ExitCode {
    // argv[0] is "pmap", argv[1] is "replay".
    let a = match ReplayArgs::try_parse_from(args.into_iter().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 1 } else { 0 });
        }
    };
    let fail = |e: String| {
        eprintln!("pmap replay: {e}");
        ExitCode::FAILURE
    };
    let (opts, focus) = match (a.options(), a.focus()) {
        (Ok(o), Ok(f)) => (o, f),
        (Err(e), _) | (_, Err(e)) => return fail(e),
    };
    // A path that cannot be written fails before the recording is read.
    if let Some(path) = &a.report
        && let Err(e) = crate::cmd::trace::run::check_report_path(path)
    {
        return fail(format!("{e:#}"));
    }
    let rec = match Recording::open(&a.file) {
        Ok(r) => r,
        Err(e) => return fail(e),
    };
    let shown = a.file.display().to_string();
    let result = if a.info {
        print::info(&rec)
    } else if let Some(path) = &a.report {
        report::main(&rec, path)
    } else if a.leaks {
        leaks::main(&rec, a.at.as_deref(), a.folded, a.pid)
    } else if let Some(w) = &a.at {
        at::main(&rec, w, a.pid, &opts, a.json)
    } else {
        print::replay(&rec, &opts, &focus, a.json)
    };
    match result {
        Ok(print::Outcome::Complete) => ExitCode::SUCCESS,
        Ok(print::Outcome::Short(why)) => {
            eprintln!("pmap replay: {shown}: {why}");
            ExitCode::SUCCESS
        }
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => fail(format!("{shown}: {e}")),
    }
}
