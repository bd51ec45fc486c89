//! What the tracer reports of a process: a change of its map and why it
//! happened ([`Delta`], [`Cause`]), and the counts for its summary
//! ([`Stats`]). A leaf the session fills and the printer and the insight
//! read, so that none of them imports another for these.

use std::collections::BTreeMap;

use pmap_common::Event;

use super::{capture::Fallback, syscalls::Call};
use crate::map::model::Change;

/// Why a delta happened.
#[derive(Clone, Debug)]
pub enum Cause {
    /// A traced syscall (the event carries its arguments and result).
    Syscall(Call, Box<Event>),
    /// Seen in the kernel's view with no syscall behind it (stack growth).
    Observed,
    /// Re-read from the kernel after lost events.
    Resync,
    /// Seen by the poll backend between two looks.
    Polled,
    /// The program was replaced by execve.
    Exec,
    /// The kernel's rows for addresses that calls derived from their
    /// arguments changed (the merges and names arguments do not give).
    Settled,
}

/// A change of one process's map, ready to print.
#[derive(Clone, Debug)]
pub struct Delta {
    pub pid: u32,
    /// The process's parent (see `Session::ppid`).
    pub ppid: u32,
    /// Its id in its own PID namespace, or 0 (see `Session::ns_pid`).
    pub ns_pid: u32,
    /// Thread that caused it (0 when unknown).
    pub tid: u32,
    /// CLOCK_MONOTONIC nanoseconds at syscall exit (0 when not a syscall).
    pub ktime_ns: u64,
    pub cause: Cause,
    pub change: Change,
    /// The kernel's view of the call's own addresses, when the tracer
    /// looked, is not what this call left: a later call changed them
    /// first, and its effect is part of `change`.
    pub superseded: bool,
    /// `change` is derived from the call's arguments, not read from the
    /// kernel: a later call in the same batch changed these addresses, so
    /// the kernel could no longer show this one's effect (see `effect`).
    pub from_arguments: bool,
    /// Why `change` is not from the call's own capture (it was read from
    /// the kernel afterwards, and may hold a later call's change too);
    /// `None` for an exact delta, and for changes that are not calls.
    pub fallback: Option<Fallback>,
}

/// Counts kept for the summary.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    /// Calls and failed calls, by syscall.
    pub calls: BTreeMap<Call, (u64, u64)>,
    pub bytes_mapped: u64,
    pub bytes_unmapped: u64,
    pub peak_mapped: u64,
    pub peak_regions: usize,
    /// Differences between the model and the kernel found at table time
    /// that no traced event or stack growth explains.
    pub corrections: u64,
    /// Threads created while traced.
    pub threads_started: u64,
    /// Child processes forked while traced (not traced themselves).
    pub processes_forked: u64,
    /// Calls whose delta came from their own capture: exactly what they
    /// did.
    pub exact: u64,
    /// Calls whose delta had to be read from the kernel afterwards, by
    /// reason.
    pub fallbacks: BTreeMap<Fallback, u64>,
    /// Calls that ended before the table they follow was read (its rows
    /// hold their effect): applied, not printed.
    pub before_table: u64,
}

impl Stats {
    /// Adds `other`'s counts to these (a total over processes). Peaks are
    /// added too: the processes' peaks need not have been at one time, so
    /// the total's is an upper bound.
    pub fn add(&mut self, other: &Stats) {
        for (call, (n, f)) in &other.calls {
            let e = self.calls.entry(*call).or_default();
            e.0 += n;
            e.1 += f;
        }
        self.bytes_mapped += other.bytes_mapped;
        self.bytes_unmapped += other.bytes_unmapped;
        self.peak_mapped += other.peak_mapped;
        self.peak_regions += other.peak_regions;
        self.corrections += other.corrections;
        self.threads_started += other.threads_started;
        self.processes_forked += other.processes_forked;
        self.exact += other.exact;
        for (f, n) in &other.fallbacks {
            *self.fallbacks.entry(*f).or_default() += n;
        }
        self.before_table += other.before_table;
    }

    /// Calls whose delta was read from the kernel afterwards.
    pub fn fallback_total(&self) -> u64 {
        self.fallbacks.values().sum()
    }
}
