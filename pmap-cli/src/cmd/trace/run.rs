//! The tracer: the traced processes' sessions, the events applied to them
//! in time order, and what is printed of them (deltas, tables, summaries).
//! `start` sets it up, `event_loop` drives it, `groups` adds processes
//! that join while it runs, `report` prints its tables and summaries.

use std::{
    borrow::Cow,
    collections::{BTreeSet, HashMap},
    io::{self, Write},
    time::Duration,
};

use anyhow::{Context as _, Result};
use pmap_common::{Event, capture, fork, kind};

use super::{
    args::TraceArgs,
    batch::LaterCalls,
    clock::monotonic_ns,
    delta::{Delta, Stats},
    focus::Focus,
    insight::Insight,
    output::Printer,
    session::Session,
    syscalls::Affected,
    unwind::StackUnwinder,
};
use crate::{
    cmd::trace::record::{
        format::{Record, SummaryInsight},
        writer::Recorder,
    },
    map::region::Region,
    render::Range,
    source::{
        gone::address_space_gone as is_gone, kernel::probes::Probes, pid_dir::PidDir, threads,
    },
};

mod event_loop;
mod groups;
mod report;
mod start;

use event_loop::{End, Signals, event_loop};
use groups::{Groups, matched_by};
pub(crate) use start::check_report_path;
use start::trace;

/// Renders one complete table (header line through totals) of process
/// `pid` exactly as `pmap` prints it for the same format options, reading
/// the header through its `/proc` directory (`None`: the process was gone
/// before one could be opened).
pub type TableRenderer =
    dyn FnMut(&mut dyn Write, u32, Option<&PidDir>, &[Region]) -> io::Result<()>;

/// How long a difference found at table time may wait for the event that
/// explains it before it counts as a model correction.
const CONFIRM_GRACE_NS: u64 = 200_000_000;

/// How often the ring buffer is drained without a wake-up, in ms.
const DRAIN_MS: u64 = 2;

/// An output error that means the reader went away (`| head`): stop
/// quietly, as other Unix tools do.
fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<io::Error>()
            .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
    })
}

struct Tracer<'r, W: Write> {
    /// None with the poll backend.
    probes: Option<Probes>,
    sessions: Vec<Session>,
    printer: Printer<W>,
    render: &'r mut TableRenderer,
    show_failed: bool,
    range: Range,
    /// `--comm`/`--cgroup`: processes may join while the trace runs.
    groups: Option<Groups>,
    /// Forks are followed (`-f`, or a group): sessions keep track of the
    /// regions a fork does not copy.
    follow: bool,
    /// `-f` with polling: children are looked for at each look.
    follow_polled: bool,
    /// Which deltas are printed (`--syscall`, `--min-size`, ...).
    focus: Focus,
    lost_seen: u64,
    buf: Vec<Event>,
    insight: Insight,
    json: bool,
    /// Poll backend: the threads of each process seen at the last look
    /// (threads are counted from `/proc/PID/task`, there are no events).
    tasks: HashMap<u32, BTreeSet<u32>>,
    /// `--record FILE`.
    recorder: Option<Recorder>,
    /// `--stacks --stack-bytes N`: unwinds the copied user stacks.
    unwinder: StackUnwinder,
}

impl<W: Write> Tracer<'_, W> {
    /// The part of `d` that `-A` lets through: only its rows that overlap
    /// the range; `None` when nothing is left. Without `-A`, all of it.
    fn in_range<'d>(&self, d: &'d Delta) -> Option<Cow<'d, Delta>> {
        let everything = self.range.low == 0 && self.range.high == u64::MAX;
        if everything {
            return Some(Cow::Borrowed(d));
        }
        // A call whose change was already undone when the tracer asked
        // (`map unchanged now`) has no rows to test: not shown under -A.
        let keep = |rs: &[Region]| -> Vec<Region> {
            rs.iter()
                .filter(|r| self.range.contains(r))
                .cloned()
                .collect()
        };
        let mut part = d.clone();
        part.change.removed = keep(&d.change.removed);
        part.change.added = keep(&d.change.added);
        (!part.change.is_empty()).then_some(Cow::Owned(part))
    }

    fn print_delta(&mut self, d: &Delta) -> Result<()> {
        let notes = match self.sessions.iter().find(|s| s.pid == d.pid) {
            Some(s) => self.insight.observe(d, s.model()),
            None => Default::default(),
        };
        self.printer.take_clock();
        if self.focus.admits(d)
            && let Some(shown) = self.in_range(d)
        {
            self.printer.delta(&shown, &notes)?;
        }
        // Every delta is recorded; the filters apply at replay.
        let now = self.printer.take_clock().unwrap_or_else(monotonic_ns);
        if let Some(r) = &mut self.recorder {
            r.delta(d, &notes, now);
        }
        Ok(())
    }

    /// Records what was just printed, at the time it was printed with.
    fn record(&mut self, make: impl FnOnce(u64) -> Record) {
        let now = self.printer.take_clock().unwrap_or_else(monotonic_ns);
        if let Some(r) = &mut self.recorder {
            r.record(&make(now));
        }
    }

    /// Takes everything in the ring buffer and applies it, in time order
    /// (threads on different CPUs may reach the buffer out of order).
    fn pump(&mut self) -> Result<()> {
        let Some(probes) = &mut self.probes else {
            return Ok(());
        };
        let mut buf = std::mem::take(&mut self.buf);
        let unwinder = &mut self.unwinder;
        probes.drain_with(&mut buf, |ev, copy, bytes| unwinder.hold(ev, copy, bytes));
        buf.sort_by_key(|e| e.exit_ns);
        // What later calls of the batch change matters only to a call
        // whose capture cannot be used (the tracer then derives or asks);
        // a batch of captured calls skips working it out.
        let needed = buf.iter().any(|ev| {
            matches!(ev.capture.status, capture::BUSY | capture::FULL)
                || ev.flags & pmap_common::FLAG_NO_ARGS != 0
        });
        let footprints: Vec<(u32, Affected)> = if needed {
            buf.iter()
                .map(|ev| {
                    let what = self
                        .sessions
                        .iter()
                        .find(|s| s.pid == ev.tgid)
                        .map_or(Affected::Nothing, |s| s.footprint(ev));
                    (ev.tgid, what)
                })
                .collect()
        } else {
            Vec::new()
        };
        let mut later = LaterCalls::new(&footprints);
        for (i, ev) in buf.iter_mut().enumerate() {
            if let Some((pid, what)) = footprints.get(i) {
                later.take(i, *pid, what);
            }
            // With the map as the batch's earlier calls left it: a
            // library mapped just before (at startup) is in it.
            if let Some(s) = self.sessions.iter().find(|s| s.pid == ev.tgid) {
                self.unwinder.unwind_held(ev, s.model());
            }
            self.apply(ev, &later)?;
        }
        let sessions = &self.sessions;
        self.unwinder
            .retain(|pid| sessions.iter().any(|s| s.pid == pid));
        if let Some(probes) = &mut self.probes {
            for (pid, bytes) in self.unwinder.take_updates() {
                // A size not set leaves the whole copy: slower, never wrong.
                let _ = probes.set_stack_need(pid, bytes);
            }
        }
        buf.clear();
        self.buf = buf;
        self.settle()?;
        self.expire(CONFIRM_GRACE_NS);
        self.check_lost()?;
        self.printer.flush()?;
        if let Some(r) = &mut self.recorder {
            r.after_batch(&self.sessions, monotonic_ns());
        }
        Ok(())
    }

    /// Ends a batch: rows derived from arguments give way to the kernel's.
    fn settle(&mut self) -> Result<()> {
        for i in 0..self.sessions.len() {
            match self.sessions[i].settle() {
                Ok(Some(d)) => self.print_delta(&d)?,
                Ok(None) => {}
                // As in `apply`: exec'd again or exiting, its record follows.
                Err(e) if is_gone(&e) && self.sessions[i].still_same_process() => {}
                Err(_) if !self.sessions[i].still_same_process() => {
                    self.sessions[i].exited = true;
                }
                Err(e) => {
                    let pid = self.sessions[i].pid;
                    return Err(e).with_context(|| format!("reading the map of process {pid}"));
                }
            }
        }
        Ok(())
    }

    fn apply(&mut self, ev: &Event, later: &LaterCalls) -> Result<()> {
        if ev.kind == kind::MATCHED {
            return self.join(ev.tgid, matched_by(ev.args[0]));
        }
        let Some(i) = self.sessions.iter().position(|s| s.pid == ev.tgid) else {
            return Ok(());
        };
        if ev.kind == kind::EXEC {
            self.printer.exec(ev.tgid)?;
            let pid = ev.tgid;
            self.record(|t| Record::Exec { t, pid });
        }
        if ev.kind == kind::FORK {
            return self.fork(i, ev);
        }
        let applied = self.sessions[i].apply(ev, self.show_failed, later);
        match applied {
            Ok(Some(d)) => {
                self.print_delta(&d)?;
                if ev.kind == kind::EXEC {
                    self.table(i, "exec")?;
                }
            }
            Ok(None) => {}
            // The address space asked about is gone, the process is not:
            // it exec'd again, or is exiting (its map released, not yet a
            // zombie). Its exec or exit record follows and says which.
            Err(e) if is_gone(&e) && self.sessions[i].still_same_process() => {}
            // The process may be gone between the event and our question:
            // its exit record follows, and the summary says it exited.
            Err(_) if !self.sessions[i].still_same_process() => {
                self.sessions[i].exited = true;
            }
            Err(e) => {
                return Err(e).with_context(|| format!("reading the map of process {}", ev.tgid));
            }
        }
        Ok(())
    }

    /// A task created by a thread of session `i`: a thread (it shares the
    /// map), or a process, which is traced from here on if it was added
    /// to the kernel filter at its creation (`-f`).
    fn fork(&mut self, i: usize, ev: &Event) -> Result<()> {
        let child = ev.args[0] as u32;
        let process = ev.args[1] & fork::PROCESS != 0;
        let followed = ev.args[1] & fork::FOLLOWED != 0;
        self.sessions[i].note_new_task(!process);
        let parent = &self.sessions[i];
        if followed && !self.sessions.iter().any(|s| s.pid == child && !s.exited) {
            // Its calls are in the ring from its first instruction on, after
            // this record (it runs only once its creation is done).
            let s = Session::forked(parent, child, ev.exit_ns);
            self.printer
                .fork(parent.pid, ev.tid, s.pid, s.model().len(), ev.exit_ns)?;
            let (ppid, tid, t) = (parent.pid, ev.tid, ev.exit_ns);
            let regions = s.model().len() as u64;
            self.record(|_| Record::Fork {
                t,
                ppid,
                tid,
                child,
                regions,
            });
            // An id seen before is a new process now: its old session goes.
            self.sessions.retain(|s| s.pid != child);
            self.sessions.push(s);
            return Ok(());
        }
        self.printer
            .task(ev.tgid, ev.tid, child, !process, ev.exit_ns)?;
        let (pid, tid, t) = (ev.tgid, ev.tid, ev.exit_ns);
        self.record(|_| Record::Task {
            t,
            pid,
            tid,
            child,
            thread: !process,
        });
        Ok(())
    }

    fn check_lost(&mut self) -> Result<()> {
        let Some(probes) = &self.probes else {
            return Ok(());
        };
        let lost = probes.lost();
        if lost == self.lost_seen {
            return Ok(());
        }
        let new = lost - self.lost_seen;
        self.lost_seen = lost;
        eprintln!(
            "pmap trace: lost {new} events (ring buffer full; {lost} in all); \
             resynchronising from /proc (a larger --ring-size makes this rarer)"
        );
        self.printer.lost(new, lost)?;
        self.record(|t| Record::Lost {
            t,
            count: new,
            total: lost,
        });
        for i in 0..self.sessions.len() {
            if self.sessions[i].exited {
                continue;
            }
            self.reread(i, super::delta::Cause::Resync)?;
            self.table(i, "resync")?;
        }
        Ok(())
    }

    /// Reports differences found at table time that no event explained
    /// within `grace_ns` as model corrections.
    fn expire(&mut self, grace_ns: u64) {
        for s in &mut self.sessions {
            let gone = s.expire(grace_ns);
            if gone.is_empty() {
                continue;
            }
            let show = |in_model: bool| {
                let rs: Vec<&Region> = gone
                    .iter()
                    .filter(|u| u.in_model == in_model)
                    .map(|u| &u.region)
                    .collect();
                let mut v: Vec<String> = rs
                    .iter()
                    .take(3)
                    .map(|r| {
                        format!(
                            "{:x}-{:x} {} {}",
                            r.start,
                            r.end,
                            r.perms.as_str(),
                            String::from_utf8_lossy(&r.name)
                        )
                    })
                    .collect();
                if rs.len() > 3 {
                    v.push(format!("and {} more", rs.len() - 3));
                }
                if v.is_empty() {
                    "nothing".into()
                } else {
                    v.join(", ")
                }
            };
            eprintln!(
                "pmap trace: model correction for pid {}: the model had [{}] where the kernel has [{}]; \
                 the kernel's view was taken (a change no traced call explains)",
                s.pid,
                show(true),
                show(false),
            );
        }
    }

    fn all_exited(&mut self) -> Result<bool> {
        let gone: Vec<usize> = (0..self.sessions.len())
            .filter(|&i| !self.sessions[i].exited && !self.sessions[i].still_same_process())
            .collect();
        // A process's calls reach the ring before its exit: once it is
        // found gone, what the ring holds now has all of them (a followed
        // child may have made its calls, exited and been reaped since the
        // last drain).
        self.pump()?;
        for i in gone {
            self.sessions[i].exited = true;
        }
        Ok(self.done())
    }

    /// Every traced process exited, and no more can join (`--comm` and
    /// `--cgroup` wait for them until the trace is ended otherwise).
    fn done(&self) -> bool {
        self.groups.is_none() && self.sessions.iter().all(|s| s.exited)
    }
}

/// Runs the tracer; returns the exit status.
pub fn run(args: TraceArgs, range: Range, render: &mut TableRenderer) -> Result<u8> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the event loop failed")?;
    let result = rt.block_on(trace(args, range, render));
    // Reading a terminal (Enter prints a table) blocks a thread in read(2)
    // that nothing can wake: dropping the runtime would wait for it, and
    // the tracer would hang at exit until the next keypress.
    rt.shutdown_background();
    match result {
        Err(e) if is_broken_pipe(&e) => Ok(0),
        other => other,
    }
}
