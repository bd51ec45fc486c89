//! What a recording holds ([`Record`]) and what the records add up to at
//! any moment ([`World`]: every traced process's regions and header). The
//! recorder and every reader apply records to a `World` the same way, so
//! the encoder can refer to rows the decoder is sure to have.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::{
    cmd::trace::{
        delta::{Delta, Stats},
        insight::DeltaNotes,
    },
    map::process::ProcessInfo,
    map::region::Region,
};

/// The first record of every recording.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    /// CLOCK_MONOTONIC ns when the trace started: record times are on this
    /// clock, `+SECS` counts from here.
    pub start_ns: u64,
    /// CLOCK_REALTIME ns (since the epoch) read at the same moment: turns
    /// record times into wall-clock times.
    pub start_real_ns: u64,
    /// The poll backend (threads counted by polling, no forks seen).
    pub polled: bool,
    /// The trace captured stacks (`--stacks`).
    pub stacks: bool,
    /// The tracer's command line, for `pmap replay --info`.
    pub command: String,
}

/// One traced process as a table shows it: who it is and its rows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcState {
    pub pid: u32,
    pub ppid: u32,
    /// Its id in its own PID namespace, or 0 (as the trace's JSON shows
    /// it; format version 2 on).
    pub ns_pid: u32,
    /// The table header's facts (`None` when the process could not be
    /// read: a table of it has no header to print).
    pub info: Option<ProcessInfo>,
    /// Address order, as `/proc/PID/maps` lists them (`[vsyscall]` last).
    pub regions: Vec<Region>,
}

/// One record. `t` is CLOCK_MONOTONIC ns: a call's exit for a syscall
/// delta, else when the tracer printed (or would have printed) it.
#[derive(Clone, Debug)]
pub enum Record {
    Header(Header),
    /// Every live process's full table: not printed; lets a reader start
    /// here. Resets the encoder's state (names, cursors, times).
    Checkpoint {
        t: u64,
        procs: Vec<ProcState>,
    },
    /// A table the trace printed (`reason`: `initial`, `SIGUSR1`, ...).
    Table {
        t: u64,
        reason: String,
        proc: ProcState,
        /// The insight lines printed after it (outside its frame), as
        /// printed: the process and its files are gone at replay.
        notes: Vec<String>,
    },
    /// Every delta the tracer found, printed or not (focus filters and
    /// `-A` are applied when it is replayed), with what insight said
    /// under it (its stack named, its notes) as the trace printed it.
    Delta {
        t: u64,
        delta: Delta,
        notes: DeltaNotes,
    },
    /// A process that joined the trace by matching `--comm` or `--cgroup`
    /// (`by`: `comm`, `cgroup`, `fork`); its table follows.
    Joined {
        t: u64,
        pid: u32,
        ppid: u32,
        by: String,
    },
    Exec {
        t: u64,
        pid: u32,
    },
    /// A process followed with `-f`: its map starts as a copy of its
    /// parent's.
    Fork {
        t: u64,
        ppid: u32,
        tid: u32,
        child: u32,
        /// Regions of the copy it starts with (as the trace printed it).
        regions: u64,
    },
    /// A task created by a traced thread and not followed: a thread, or a
    /// child process.
    Task {
        t: u64,
        pid: u32,
        tid: u32,
        child: u32,
        thread: bool,
    },
    /// Poll backend: a new thread seen in `/proc/PID/task`.
    ThreadSeen {
        t: u64,
        pid: u32,
        tid: u32,
    },
    Exit {
        t: u64,
        pid: u32,
        ppid: u32,
    },
    Lost {
        t: u64,
        count: u64,
        total: u64,
    },
    Summary {
        t: u64,
        pid: u32,
        ppid: u32,
        lost: u64,
        regions: u64,
        stats: Box<Stats>,
        insight: Box<SummaryInsight>,
    },
    /// The total over several processes (`-f`, several PIDs): of their
    /// last summaries.
    Total {
        t: u64,
        pids: Vec<u32>,
        lost: u64,
    },
    /// The trace ended normally: a recording without it was cut short.
    End {
        t: u64,
    },
}

impl Record {
    /// A delta that settles the rows of calls before it (stamped when it
    /// was printed, after them): it belongs to their moment.
    pub fn settles(&self) -> bool {
        matches!(self, Record::Delta { delta, .. } if matches!(delta.cause, crate::cmd::trace::delta::Cause::Settled))
    }

    /// When it happened (CLOCK_MONOTONIC ns); the header has no time.
    pub fn time(&self) -> Option<u64> {
        Some(match self {
            Record::Header(_) => return None,
            Record::Checkpoint { t, .. }
            | Record::Table { t, .. }
            | Record::Delta { t, .. }
            | Record::Joined { t, .. }
            | Record::Exec { t, .. }
            | Record::Fork { t, .. }
            | Record::Task { t, .. }
            | Record::ThreadSeen { t, .. }
            | Record::Exit { t, .. }
            | Record::Lost { t, .. }
            | Record::Summary { t, .. }
            | Record::Total { t, .. }
            | Record::End { t } => *t,
        })
    }
}

/// What insight added to a process's summary, as the trace had it: both
/// forms, so a replay prints either.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SummaryInsight {
    /// Its id in its own PID namespace, or 0.
    pub ns_pid: u32,
    /// The `insight` key of the JSON summary record.
    pub json: Option<Value>,
    /// The text sections printed after the text summary.
    pub text: Vec<u8>,
}

/// A process in the [`World`].
#[derive(Clone, Debug, Default)]
pub struct Proc {
    pub ppid: u32,
    pub ns_pid: u32,
    pub info: Option<ProcessInfo>,
    pub regions: BTreeMap<u64, Region>,
    pub exited: bool,
}

/// Every process the recording has seen, as of the records applied.
#[derive(Clone, Debug, Default)]
pub struct World {
    pub procs: BTreeMap<u32, Proc>,
}

impl World {
    pub fn apply(&mut self, rec: &Record) {
        match rec {
            Record::Checkpoint { procs, .. } => {
                // A process it does not list is gone; its last rows stay
                // (what it left mapped, for `--leaks`).
                for p in self.procs.values_mut() {
                    p.exited = true;
                }
                for p in procs {
                    self.set(p);
                }
            }
            Record::Table { proc, .. } => self.set(proc),
            Record::Delta { delta, .. } => {
                let p = self.procs.entry(delta.pid).or_default();
                for r in &delta.change.removed {
                    p.regions.remove(&r.start);
                }
                for r in &delta.change.added {
                    p.regions.insert(r.start, r.clone());
                }
            }
            Record::Fork { ppid, child, .. } => {
                let mut copy = self.procs.get(ppid).cloned().unwrap_or_default();
                copy.ppid = *ppid;
                copy.exited = false;
                if let Some(info) = &mut copy.info {
                    (info.pid, info.tgid) = (*child, *child);
                }
                self.procs.insert(*child, copy);
            }
            Record::Exit { pid, .. } => {
                if let Some(p) = self.procs.get_mut(pid) {
                    p.exited = true;
                }
            }
            _ => {}
        }
    }

    fn set(&mut self, s: &ProcState) {
        let p = self.procs.entry(s.pid).or_default();
        p.ppid = s.ppid;
        p.ns_pid = s.ns_pid;
        if s.info.is_some() {
            p.info.clone_from(&s.info);
        }
        p.exited = false;
        p.regions = s.regions.iter().map(|r| (r.start, r.clone())).collect();
    }

    /// The live processes as full tables, for a checkpoint.
    pub fn states(&self) -> Vec<ProcState> {
        self.procs
            .iter()
            .filter(|(_, p)| !p.exited)
            .map(|(&pid, p)| ProcState {
                pid,
                ppid: p.ppid,
                ns_pid: p.ns_pid,
                info: p.info.clone(),
                regions: p.regions.values().cloned().collect(),
            })
            .collect()
    }
}
