//! Processes that join the trace while it runs: `--comm` and `--cgroup`
//! matches, and with polling the children `-f` follows.

use std::{collections::BTreeSet, io::Write};

use anyhow::Result;

use super::Tracer;
use crate::{
    cmd::trace::record::format::Record,
    cmd::trace::{args::TraceArgs, clock::monotonic_ns, session::Session},
    source::groups::{self as group, Cgroup},
};

/// `--comm` or `--cgroup`, from a `kind::MATCHED` record.
pub(super) fn matched_by(code: u64) -> &'static str {
    if code == pmap_common::matched::COMM {
        "comm"
    } else {
        "cgroup"
    }
}

/// The child processes of every thread of `pid` (`/proc/PID/task/TID/children`).
pub(super) fn children_of(pid: u32) -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
        .flat_map(|c| {
            c.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect()
}

/// `--comm` and `--cgroup`, checked.
pub(super) struct Groups {
    /// The name as the kernel keeps it, and as text.
    pub(super) comm: Option<([u8; 16], String)>,
    pub(super) cgroup: Option<Cgroup>,
}

impl Groups {
    pub(super) fn from_args(args: &TraceArgs) -> Result<Option<Groups>> {
        let comm = args
            .comm
            .as_deref()
            .map(group::parse_comm)
            .transpose()
            .map_err(anyhow::Error::msg)?;
        if let Some((_, kept)) = &comm
            && Some(kept.as_str()) != args.comm.as_deref()
        {
            eprintln!(
                "pmap trace: --comm: the kernel keeps the first 15 bytes of a command name; \
                 matching '{kept}'"
            );
        }
        let cgroup = args
            .cgroup
            .as_deref()
            .map(group::parse_cgroup)
            .transpose()
            .map_err(anyhow::Error::msg)?;
        Ok((comm.is_some() || cgroup.is_some()).then_some(Groups { comm, cgroup }))
    }

    /// The processes that match now, and which option (the first that
    /// applies) they match by.
    pub(super) fn members(&self) -> (u64, Vec<u32>) {
        let by = if self.comm.is_some() {
            pmap_common::matched::COMM
        } else {
            pmap_common::matched::CGROUP
        };
        let comm = self.comm.as_ref().map(|c| c.1.as_str());
        (by, group::members(comm, self.cgroup.as_ref()))
    }
}

impl<W: Write> Tracer<'_, W> {
    /// Poll backend: one look at every process, printing what changed.
    pub(super) fn poll(&mut self) -> Result<()> {
        // Polling sees a process join a group only at a look.
        if let Some(g) = &self.groups {
            let (by, found) = g.members();
            for pid in found {
                self.join(pid, matched_by(by))?;
            }
        }
        // `-f`: the children of traced processes, as they are now.
        if self.follow_polled {
            let kids: Vec<u32> = self
                .sessions
                .iter()
                .filter(|s| !s.exited)
                .flat_map(|s| children_of(s.pid))
                .collect();
            for pid in kids {
                self.join(pid, "fork")?;
            }
        }
        for i in 0..self.sessions.len() {
            if self.sessions[i].exited {
                continue;
            }
            self.reread(i, crate::cmd::trace::delta::Cause::Polled)?;
            self.poll_threads(i)?;
        }
        self.printer.flush()?;
        Ok(())
    }

    /// Poll backend: the threads of process `i` now; new ones are counted
    /// and printed (a thread that starts and ends between two looks is
    /// missed: the summary says the count is by polling).
    pub(super) fn poll_threads(&mut self, i: usize) -> Result<()> {
        let s = &mut self.sessions[i];
        let Some(Ok(dir)) = s.dir().map(|d| d.read_dir("task")) else {
            return Ok(());
        };
        let now: BTreeSet<u32> = dir
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse().ok())
            .collect();
        let Some(known) = self.tasks.get_mut(&s.pid) else {
            // The first look: these threads were there before the trace.
            self.tasks.insert(s.pid, now);
            return Ok(());
        };
        let new: Vec<u32> = now.difference(known).copied().collect();
        *known = now;
        for tid in new {
            s.stats.threads_started += 1;
            self.printer.thread_seen(s.pid, tid)?;
            let now = self.printer.take_clock().unwrap_or_else(monotonic_ns);
            if let Some(r) = &mut self.recorder {
                r.record(&Record::ThreadSeen {
                    t: now,
                    pid: s.pid,
                    tid,
                });
            }
        }
        Ok(())
    }

    /// A process that matched `--comm` or `--cgroup` (the kernel program
    /// added it to its filter at a mapping call, or polling found it):
    /// traced from now on, starting with its table.
    pub(super) fn join(&mut self, pid: u32, by: &'static str) -> Result<()> {
        if self.sessions.iter().any(|s| s.pid == pid && !s.exited) {
            return Ok(());
        }
        // Gone already, or not readable: nothing to show of it.
        let Ok(mut s) = Session::open(pid) else {
            return Ok(());
        };
        if self.follow {
            s.track_no_fork();
        }
        self.sessions.retain(|s| s.pid != pid);
        self.printer.joined(s.pid, s.ppid, by)?;
        let (pid, ppid) = (s.pid, s.ppid);
        self.record(|t| Record::Joined {
            t,
            pid,
            ppid,
            by: by.to_string(),
        });
        self.sessions.push(s);
        let i = self.sessions.len() - 1;
        if self.probes.is_none() {
            self.poll_threads(i)?;
        }
        self.table(i, "initial")
    }
}
