//! `pmap trace` command line.

use std::ffi::OsString;

use clap::{Parser, ValueEnum};

use crate::source::kernel::probes::{DEFAULT_RING_SIZE, check_ring_size};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Backend {
    /// eBPF if it can be used here, else polling (said on stderr).
    Auto,
    /// eBPF tracepoints on the memory-mapping syscalls.
    Ebpf,
    /// Diff the kernel's view at an interval (no privileges needed).
    Poll,
}

/// Trace a process's memory map live: an initial table, then every change
/// as it happens, and the full table on demand (SIGUSR1, Enter on a
/// terminal, --interval) and at the end.
#[derive(Debug, Parser)]
#[command(
    name = "pmap trace",
    bin_name = "pmap trace",
    version,
    after_help = "Examples:\n  pmap trace 1234\n  pmap trace -x --interval 5 1234\n  pmap trace -- python3 -c 'import mmap; mmap.mmap(-1, 1<<20)'"
)]
pub struct TraceArgs {
    /// Tables in extended format (as `pmap -x`).
    #[arg(short = 'x', long = "extended")]
    pub extended: bool,
    /// Tables in very extended format (as `pmap -X`; twice for `-XX`).
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
    /// Stop after this many seconds (in launch mode, the command is then
    /// ended too: SIGTERM, and SIGKILL if it is still there 2 s later).
    #[arg(long, value_name = "SECS", value_parser = duration_secs)]
    pub duration: Option<f64>,
    /// Print the full table every SECS seconds (at least 0.1).
    #[arg(long, value_name = "SECS", value_parser = period_secs)]
    pub interval: Option<f64>,
    /// JSON Lines output: one object per record (see the README).
    #[arg(long)]
    pub json: bool,
    /// Write the trace to FILE instead of stdout (created or truncated).
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: Option<std::path::PathBuf>,
    /// Ring buffer size in bytes: a power of two, at least the page size.
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_RING_SIZE, value_parser = ring_size)]
    pub ring_size: u32,
    /// Do not print the table at start.
    #[arg(long)]
    pub no_initial_table: bool,
    /// Also print failed calls that changed nothing.
    #[arg(long)]
    pub show_failed: bool,
    /// How to watch the process.
    #[arg(long, value_enum, default_value_t = Backend::Auto)]
    pub backend: Backend,
    /// With the poll backend: seconds between looks (at least 0.01).
    #[arg(long, value_name = "SECS", default_value_t = 0.1, value_parser = poll_secs)]
    pub poll_interval: f64,
    /// Capture the user stack of every change and show who made it.
    #[arg(long)]
    pub stacks: bool,
    /// With --stacks: frames shown under each delta.
    #[arg(long, value_name = "N", default_value_t = 5)]
    pub stack_depth: usize,
    /// With --stacks: the most bytes of user stack copied with each call,
    /// to unwind code built without frame pointers (Debian's libc, python,
    /// node) with its call-frame information (less once the tracer has
    /// seen how deep a process's calls go); 0 follows frame pointers only.
    /// A multiple of 8, at most 16384.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_STACK_BYTES, value_parser = stack_bytes)]
    pub stack_bytes: u64,
    /// With --stacks: where separate debug files are looked for (by build
    /// id, then debug link), as installed by `-dbg` packages; repeat for
    /// several. Default: /usr/lib/debug.
    #[arg(long, value_name = "DIR")]
    pub debug_dir: Vec<std::path::PathBuf>,
    /// Add who created and last changed each region to tables.
    #[arg(long)]
    pub provenance: bool,
    /// Print the summary so far every SECS seconds (at least 0.1).
    #[arg(long, value_name = "SECS", value_parser = period_secs)]
    pub summary_interval: Option<f64>,
    /// JIT functions named per line (under a delta, after a table), newest
    /// first: a number, or `all`.
    #[arg(long, value_name = "N|all", default_value = "5", value_parser = jit_symbols)]
    pub jit_symbols: usize,
    /// Write a self-contained HTML report (timeline, call sites, W^X) at the end.
    #[arg(long, value_name = "FILE.html")]
    pub report: Option<std::path::PathBuf>,
    /// Follow forks (as strace -f): every process a traced process creates
    /// is traced too, recursively, from its first instruction. Its map
    /// starts as a copy of its parent's.
    #[arg(short = 'f', long = "follow")]
    pub follow: bool,
    /// Trace every process whose command name (as /proc/PID/comm shows it)
    /// is NAME: those running now, and those that get it later (from their
    /// first mapping call), with the processes they fork.
    #[arg(long, value_name = "NAME")]
    pub comm: Option<String>,
    /// Trace every process in this cgroup v2 group or below it (a
    /// container, a systemd service): a directory under /sys/fs/cgroup, or
    /// its path below it. Those in it now, and those that join it later.
    #[arg(long, value_name = "PATH")]
    pub cgroup: Option<String>,
    /// Only print deltas of these calls (comma-separated names, e.g.
    /// mmap,munmap). Tables stay whole; the summary counts every call.
    #[arg(long = "syscall", value_name = "LIST", value_delimiter = ',')]
    pub syscalls: Vec<String>,
    /// Only print deltas whose rows cover at least SIZE bytes (the larger of
    /// what they remove and what they add): bytes, or e.g. 64K, 1M, 2G.
    #[arg(long, value_name = "SIZE", value_parser = super::focus::parse_size)]
    pub min_size: Option<u64>,
    /// Only print deltas of calls made by these threads (comma-separated
    /// thread ids).
    #[arg(long = "tid", value_name = "TID", value_delimiter = ',')]
    pub tids: Vec<u32>,
    /// Only print deltas with a region whose name contains TEXT (e.g.
    /// libc.so, [heap], [anon:).
    #[arg(long, value_name = "TEXT")]
    pub name: Option<String>,
    /// Also write a recording of the whole trace to FILE (created or
    /// truncated), for `pmap replay` (see docs/recording.md).
    #[arg(long, value_name = "FILE")]
    pub record: Option<std::path::PathBuf>,
    /// Processes to trace (all their threads); a thread id stands for its
    /// process.
    #[arg(value_name = "PID", required_unless_present_any = ["command", "comm", "cgroup"])]
    pub pids: Vec<String>,
    /// A command to start and trace from its first instruction. Its stdout
    /// goes to stderr, out of the trace, unless -o is given; it is ended
    /// (SIGTERM) when the trace ends first.
    #[arg(last = true, value_name = "COMMAND")]
    pub command: Vec<OsString>,
}

/// The longest time in seconds (about 31 years): timers further away
/// would overflow the clock's arithmetic.
const MAX_SECS: f64 = 1e9;

/// A number of seconds: finite, not negative.
fn secs(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v > MAX_SECS => Err(format!(
            "{s} seconds is too long: give at most {MAX_SECS:e} (about 31 years), or leave the \
             option out"
        )),
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        Ok(_) => Err(format!(
            "'{s}' is not a number of seconds (give a finite number, 0 or more, e.g. 2.5)"
        )),
        Err(_) => Err(format!(
            "'{s}' is not a number of seconds (give a decimal number, e.g. 2.5)"
        )),
    }
}

/// `--duration`: 0 is allowed (the initial table and the summary only).
fn duration_secs(s: &str) -> Result<f64, String> {
    secs(s)
}

/// The shortest `--interval`/`--summary-interval`: a table is confirmed
/// against the kernel before it is printed, and more often than this the
/// output is nothing but tables.
const MIN_PERIOD: f64 = 0.1;

fn period_secs(s: &str) -> Result<f64, String> {
    let v = secs(s)?;
    if v < MIN_PERIOD {
        return Err(format!(
            "{s} seconds is too short: give at least {MIN_PERIOD} (a period of 0 would print \
             without pause); to print a table once, send SIGUSR1"
        ));
    }
    Ok(v)
}

/// The shortest `--poll-interval`: each look reads the whole map.
const MIN_POLL: f64 = 0.01;

fn poll_secs(s: &str) -> Result<f64, String> {
    let v = secs(s)?;
    if v < MIN_POLL {
        return Err(format!(
            "{s} seconds is too short: give at least {MIN_POLL} (each look reads the whole map \
             of every traced process)"
        ));
    }
    Ok(v)
}

/// `--jit-symbols`: a count, or `all` (no limit).
fn jit_symbols(s: &str) -> Result<usize, String> {
    if s.eq_ignore_ascii_case("all") {
        return Ok(usize::MAX);
    }
    match s.parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!(
            "'{s}' is not a number of functions: give a count of 1 or more, or `all`"
        )),
    }
}

/// `--stack-bytes`'s default: deep enough for the frames between a
/// syscall and the program's code in python and node (their interpreter
/// frames are large), and a tenth of what perf copies by default.
pub const DEFAULT_STACK_BYTES: u64 = 8 << 10;

fn stack_bytes(s: &str) -> Result<u64, String> {
    let n: u64 = s
        .parse()
        .map_err(|_| format!("'{s}' is not a number of bytes"))?;
    let max = pmap_common::MAX_STACK_BYTES as u64;
    if !n.is_multiple_of(8) || n > max {
        return Err(format!(
            "must be a multiple of 8 from 0 to {max}, e.g. {DEFAULT_STACK_BYTES}"
        ));
    }
    Ok(n)
}

fn ring_size(s: &str) -> Result<u32, String> {
    let n: u64 = s
        .parse()
        .map_err(|_| format!("'{s}' is not a number of bytes"))?;
    check_ring_size(n)
}

impl TraceArgs {
    /// The focus filters, checked.
    pub fn focus(&self) -> Result<super::focus::Focus, String> {
        Ok(super::focus::Focus {
            syscalls: if self.syscalls.is_empty() {
                None
            } else {
                Some(super::focus::parse_syscalls(&self.syscalls)?)
            },
            min_size: self.min_size.unwrap_or(0),
            tids: (!self.tids.is_empty()).then(|| self.tids.iter().copied().collect()),
            name: self.name.as_ref().map(|n| n.as_bytes().to_vec()),
        })
    }

    /// The PIDs, checked: decimal, positive, as `pmap` takes them.
    pub fn parse_pids(&self) -> Result<Vec<u32>, String> {
        self.pids
            .iter()
            .map(|p| {
                let digits = p.strip_prefix("/proc/").unwrap_or(p);
                match digits.parse::<u32>() {
                    Ok(n) if n > 0 => Ok(n),
                    _ => Err(format!("'{p}' is not a process id")),
                }
            })
            .collect()
    }
}
