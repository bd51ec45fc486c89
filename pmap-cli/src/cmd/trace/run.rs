//! The tracer's event loop: seed, attach, stream deltas, print tables on
//! demand, and end cleanly.

use std::{
    borrow::Cow,
    collections::{BTreeSet, HashMap},
    fs::File,
    io::{self, Write},
    os::fd::{AsRawFd, RawFd},
    path::Path,
    time::Duration,
};

use anyhow::{Context as _, Result, bail};
use pmap_common::{Event, capture, kind};
use tokio::{
    io::AsyncBufReadExt,
    signal::unix::{SignalKind, signal},
};

use super::{
    args::Backend,
    args::TraceArgs,
    batch::LaterCalls,
    clock::monotonic_ns,
    delta::Delta,
    insight::{Insight, InsightOptions},
    launch::Launched,
    output::{Printer, TableRenderer},
    privileges,
    probes::{ProbeOptions, Probes, check_environment},
    session::Session,
    syscalls::Affected,
};
use crate::{
    map::region::Region,
    render::Range,
    source::{pid_dir::PidDir, process},
};

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

/// Why the event loop stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum End {
    /// Every traced process exited.
    Exited,
    Duration,
    Signal(&'static str),
    /// The reader of the output went away (`| head`).
    OutputClosed,
}

impl End {
    /// Why a launched command is ended, for the message saying so.
    fn why(self) -> &'static str {
        match self {
            End::Exited => "the trace ended",
            End::Duration => "--duration reached",
            End::Signal("SIGINT") => "interrupted (SIGINT)",
            End::Signal("SIGTERM") => "terminated (SIGTERM)",
            End::Signal("SIGHUP") => "hung up (SIGHUP)",
            End::Signal(_) => "stopped by a signal",
            End::OutputClosed => "the trace's output was closed",
        }
    }
}

/// Whether the reader of `fd` has gone away: a pipe or socket whose other
/// end is closed reports POLLERR or POLLHUP (a terminal that hung up,
/// POLLHUP). A regular file never does. Checked on a timer, so that a
/// trace whose target is idle (nothing to write, so no EPIPE) still ends
/// when its reader has.
fn output_closed(fd: RawFd) -> bool {
    let mut p = libc::pollfd {
        fd,
        events: 0,
        revents: 0,
    };
    // SAFETY: one valid pollfd, no waiting.
    let n = unsafe { libc::poll(&mut p, 1, 0) };
    n == 1 && p.revents & (libc::POLLERR | libc::POLLHUP) != 0
}

/// The process `pid` is a thread of, when it is a thread and not the
/// process itself (`pmap TID` shows the thread's process; so does trace).
fn process_of_thread(pid: u32) -> Option<u32> {
    let info = process::fetch_in(&PidDir::open(pid).ok()?)?;
    (info.tgid != 0 && info.tgid != pid).then_some(info.tgid)
}

/// Checks that the report can be written at `path`, so that a mistyped
/// path fails at the start and not after a long trace. Nothing is created.
fn check_report_path(path: &Path) -> Result<()> {
    let shown = path.display();
    if path.is_dir() {
        bail!("--report {shown}: that is a directory; give the path of an .html file to write");
    }
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if !parent.is_dir() {
        bail!(
            "--report {shown}: the directory {} does not exist; create it first or give another path",
            parent.display()
        );
    }
    let target = if path.exists() { path } else { parent };
    let c = std::ffi::CString::new(target.as_os_str().as_encoded_bytes())
        .context("--report: the path holds a NUL byte")?;
    // SAFETY: `c` is a NUL-terminated path; access only reads it.
    if unsafe { libc::access(c.as_ptr(), libc::W_OK) } != 0 {
        let e = io::Error::last_os_error();
        bail!(
            "--report {shown}: cannot write {} ({e}); give a path in a writable directory",
            target.display()
        );
    }
    Ok(())
}

/// Opens `-o FILE` (created or truncated), before anything is traced.
fn open_output(path: &Path) -> Result<File> {
    File::create(path).with_context(|| {
        format!(
            "-o {}: cannot create the output file; check that its directory exists and is writable",
            path.display()
        )
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
    lost_seen: u64,
    /// Processes whose exit took them out of the kernel filter.
    untargeted: Vec<u32>,
    buf: Vec<Event>,
    insight: Insight,
    json: bool,
    /// Poll backend: the threads of each process seen at the last look
    /// (threads are counted from `/proc/PID/task`, there are no events).
    tasks: HashMap<u32, BTreeSet<u32>>,
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
        if let Some(shown) = self.in_range(d) {
            self.printer.delta(&shown, &notes)?;
        }
        Ok(())
    }

    /// Takes everything in the ring buffer and applies it, in time order
    /// (threads on different CPUs may reach the buffer out of order).
    fn pump(&mut self) -> Result<()> {
        let Some(probes) = &mut self.probes else {
            return Ok(());
        };
        let mut buf = std::mem::take(&mut self.buf);
        probes.drain(&mut buf);
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
        for (i, ev) in buf.iter().enumerate() {
            if let Some((pid, what)) = footprints.get(i) {
                later.take(i, *pid, what);
            }
            self.apply(ev, &later)?;
        }
        buf.clear();
        self.buf = buf;
        self.settle()?;
        self.untarget_exited();
        self.expire(CONFIRM_GRACE_NS);
        self.check_lost()?;
        self.printer.flush()?;
        Ok(())
    }

    /// Ends a batch: rows derived from arguments give way to the kernel's.
    fn settle(&mut self) -> Result<()> {
        for i in 0..self.sessions.len() {
            match self.sessions[i].settle() {
                Ok(Some(d)) => self.print_delta(&d)?,
                Ok(None) => {}
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
        let Some(i) = self.sessions.iter().position(|s| s.pid == ev.tgid) else {
            return Ok(());
        };
        if ev.kind == kind::EXEC {
            self.printer.exec(ev.tgid)?;
        }
        if ev.kind == kind::FORK {
            let child = ev.args[0] as u32;
            let thread = self.sessions[i].note_new_task(child);
            self.printer
                .task(ev.tgid, ev.tid, child, thread, ev.exit_ns)?;
            return Ok(());
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

    /// Confirms the model against the kernel, then prints the table.
    fn table(&mut self, i: usize, reason: &str) -> Result<()> {
        let s = &mut self.sessions[i];
        if s.exited {
            return Ok(());
        }
        // The initial table is the seed itself; events racing with it are
        // still in the ring buffer and are applied after it.
        let checked = if reason == "initial" {
            Ok(None)
        } else {
            s.check()
        };
        match checked {
            Ok(Some(observed)) => self.print_delta(&observed)?,
            Ok(None) => {}
            Err(_) => {
                s.exited = true;
                return Ok(());
            }
        }
        self.printer
            .table(&self.sessions[i], reason, &mut *self.render)?;
        let s = &self.sessions[i];
        let extra = self.insight.after_table(s.pid, s.model());
        self.printer.notes(&extra)?;
        Ok(())
    }

    fn tables(&mut self, reason: &str) -> Result<()> {
        self.pump()?;
        for i in 0..self.sessions.len() {
            self.table(i, reason)?;
        }
        self.printer.flush()?;
        Ok(())
    }

    fn finish(&mut self) -> Result<()> {
        self.pump()?;
        // Differences found by the final table may be calls still on
        // their way; give them a moment before judging.
        for i in 0..self.sessions.len() {
            if !self.sessions[i].exited && self.sessions[i].still_same_process() {
                self.table(i, "final")?;
            }
        }
        if self.sessions.iter().any(|s| s.has_unconfirmed()) {
            std::thread::sleep(Duration::from_millis(100));
            self.pump()?;
        }
        self.expire(0);
        for i in 0..self.sessions.len() {
            if self.sessions[i].exited || !self.sessions[i].still_same_process() {
                self.sessions[i].exited = true;
                self.printer.exit(self.sessions[i].pid)?;
            }
            let lost = self.lost_seen;
            let pid = self.sessions[i].pid;
            let model = self.sessions[i].model();
            self.printer.summary(
                &self.sessions[i],
                lost,
                self.insight
                    .summary_json(pid, model, &self.sessions[i].stats.calls),
            )?;
            if !self.json {
                self.insight.summary(
                    pid,
                    model,
                    &self.sessions[i].stats.calls,
                    self.printer.raw(),
                )?;
            }
        }
        self.printer.flush()?;
        self.insight.finish()?;
        Ok(())
    }

    /// `--summary-interval`: the summary so far, tracing goes on.
    fn interim_summary(&mut self) -> Result<()> {
        self.pump()?;
        for i in 0..self.sessions.len() {
            let pid = self.sessions[i].pid;
            let lost = self.lost_seen;
            let model = self.sessions[i].model();
            self.printer.summary(
                &self.sessions[i],
                lost,
                self.insight
                    .summary_json(pid, model, &self.sessions[i].stats.calls),
            )?;
            if !self.json {
                self.insight.summary(
                    pid,
                    model,
                    &self.sessions[i].stats.calls,
                    self.printer.raw(),
                )?;
            }
        }
        self.printer.flush()?;
        Ok(())
    }

    /// Re-reads process `i` from the kernel and prints what differed as a
    /// delta with `cause` (a resync after loss, or a poll).
    fn reread(&mut self, i: usize, cause: super::delta::Cause) -> Result<()> {
        match self.sessions[i].reread() {
            Ok((change, true)) => {
                // An execve the events did not show (poll, or lost).
                self.printer.exec(self.sessions[i].pid)?;
                let d = self.sessions[i].delta(0, 0, super::delta::Cause::Exec, change);
                self.print_delta(&d)?;
                self.table(i, "exec")?;
            }
            Ok((change, false)) if !change.is_empty() => {
                let d = self.sessions[i].delta(0, 0, cause, change);
                self.print_delta(&d)?;
            }
            Ok(_) => {}
            Err(_) => self.sessions[i].exited = true,
        }
        Ok(())
    }

    /// Poll backend: one look at every process, printing what changed.
    fn poll(&mut self) -> Result<()> {
        for i in 0..self.sessions.len() {
            if self.sessions[i].exited {
                continue;
            }
            self.reread(i, super::delta::Cause::Polled)?;
            self.poll_threads(i)?;
        }
        self.printer.flush()?;
        Ok(())
    }

    /// Poll backend: the threads of process `i` now; new ones are counted
    /// and printed (a thread that starts and ends between two looks is
    /// missed: the summary says the count is by polling).
    fn poll_threads(&mut self, i: usize) -> Result<()> {
        let s = &mut self.sessions[i];
        let Ok(dir) = s.dir().read_dir("task") else {
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
        }
        Ok(())
    }

    fn all_exited(&mut self) -> bool {
        for s in &mut self.sessions {
            if !s.exited && !s.still_same_process() {
                s.exited = true;
            }
        }
        self.untarget_exited();
        self.sessions.iter().all(|s| s.exited)
    }

    /// Takes processes that exited out of the kernel's filter: a new
    /// process given the same id must send nothing through the ring.
    fn untarget_exited(&mut self) {
        let Some(probes) = &mut self.probes else {
            return;
        };
        for s in self.sessions.iter().filter(|s| s.exited) {
            if !self.untargeted.contains(&s.pid) {
                probes.remove_target(s.pid);
                self.untargeted.push(s.pid);
            }
        }
    }
}

fn load(args: &TraceArgs) -> Result<Probes> {
    Probes::load(&ProbeOptions {
        ring_size: args.ring_size,
        stacks: args.stacks,
    })
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

async fn trace(args: TraceArgs, range: Range, render: &mut TableRenderer) -> Result<u8> {
    // Handlers first: a script may send SIGUSR1 as soon as it sees the
    // "tracing" line, and the default action would kill the tracer.
    let mut usr1 = signal(SignalKind::user_defined1())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut hup = signal(SignalKind::hangup())?;
    let pids = args.parse_pids().map_err(anyhow::Error::msg)?;
    if !pids.is_empty() && !args.command.is_empty() {
        bail!("give either PIDs or `-- COMMAND`, not both");
    }
    // Arguments that can only fail at the end are checked now, before
    // anything is loaded or started.
    if let Some(r) = &args.report {
        check_report_path(r)?;
    }
    let output: Box<dyn Write> = match &args.output {
        Some(path) => Box::new(open_output(path)?),
        None => Box::new(io::stdout().lock()),
    };
    let out_fd = match &args.output {
        Some(_) => None,
        None => Some(io::stdout().as_raw_fd()),
    };
    let start_ns = monotonic_ns();
    let mut probes = match args.backend {
        Backend::Poll => None,
        Backend::Ebpf => Some(load(&args)?),
        Backend::Auto => match check_environment() {
            Ok(_) => Some(load(&args)?),
            Err(why) => {
                eprintln!(
                    "pmap trace: eBPF cannot be used here: {why}\n\
                     pmap trace: falling back to polling the kernel's view every {}s (--backend poll): \
                     changes are observed, not traced (no thread, no syscall; changes between two looks are merged)",
                    args.poll_interval
                );
                None
            }
        },
    };

    // Nothing below needs a capability: the maps and links are open fds.
    // A user running a copy installed with file capabilities drops them
    // now, so processes are opened with that user's own credentials (see
    // privileges.rs). Root keeps its rights: it may read any map anyway.
    // SAFETY: getuid has no preconditions.
    if unsafe { libc::getuid() } != 0 {
        privileges::drop_all().context("dropping capabilities after attaching failed")?;
    }
    // A thread id (as `top -H` shows it) means its process: the kernel
    // filter and the map are per process.
    let mut procs: Vec<u32> = Vec::with_capacity(pids.len());
    for pid in pids {
        let pid = match process_of_thread(pid) {
            Some(tgid) => {
                eprintln!(
                    "pmap trace: {pid} is a thread of process {tgid}; tracing process {tgid} (all its threads)"
                );
                tgid
            }
            None => pid,
        };
        if !procs.contains(&pid) {
            procs.push(pid);
        }
    }
    let pids = procs;
    let me = std::process::id();
    if pids.contains(&me) {
        bail!("refusing to trace itself (pid {me}): its own output would feed its own trace");
    }

    // Launch mode: the child is stopped right after execve, before its
    // first instruction; it is added to the filter, seeded, then released.
    // Its stdout goes to our stderr when the trace is on stdout.
    let mut launched = None;
    let pids = if args.command.is_empty() {
        pids
    } else {
        let l = Launched::start(&args.command, args.output.is_none())?;
        let pid = l.pid;
        launched = Some(l);
        vec![pid]
    };

    // Attach first, then snapshot: changes between the two arrive as
    // events and are confirmed against the kernel, so none are missed.
    let mut sessions = Vec::new();
    for &pid in &pids {
        if let Some(p) = &mut probes {
            p.add_target(pid)?;
        }
        sessions.push(Session::open(pid)?);
    }
    let polled = probes.is_none();
    let mut tracer = Tracer {
        probes,
        sessions,
        // Room for what a 2 ms drain prints under a storm: one write per
        // drain instead of one per 8 KiB.
        printer: Printer::new(
            io::BufWriter::with_capacity(256 * 1024, output),
            args.json,
            start_ns,
            polled,
        ),
        render,
        show_failed: args.show_failed,
        range,
        lost_seen: 0,
        untargeted: Vec::new(),
        buf: Vec::new(),
        insight: Insight::new(InsightOptions {
            stacks: args.stacks,
            stack_depth: args.stack_depth,
            provenance: args.provenance,
            report: args.report.clone(),
            start_ns,
            jit_symbols: args.jit_symbols,
        }),
        json: args.json,
        tasks: HashMap::new(),
    };
    if polled {
        // The threads there at the start are not counted as started.
        for i in 0..tracer.sessions.len() {
            tracer.poll_threads(i)?;
        }
    }
    if !args.no_initial_table {
        for i in 0..tracer.sessions.len() {
            tracer.table(i, "initial")?;
        }
        tracer.printer.flush()?;
    }
    let how = match &tracer.probes {
        Some(p) => {
            let syscalls = p
                .attached
                .iter()
                .filter(|a| a.starts_with("syscalls:"))
                .count();
            let sched = p.attached.len() - syscalls;
            format!("ebpf: {syscalls} syscall tracepoints, {sched} sched tracepoints")
        }
        None => format!("poll: every {}s", args.poll_interval),
    };
    let list: Vec<String> = pids.iter().map(u32::to_string).collect();
    eprintln!(
        "pmap trace: tracing pid {} ({how}); SIGUSR1 prints the table",
        list.join(", pid ")
    );
    if let Some(l) = &mut launched {
        l.release()?;
    }

    let ended = event_loop(
        &mut tracer,
        &args,
        &mut launched,
        out_fd,
        Signals {
            usr1: &mut usr1,
            int: &mut int,
            term: &mut term,
            hup: &mut hup,
        },
    )
    .await;
    // Whatever ended the trace, a launched command does not outlive it
    // (see launch.rs); a traced process that was running already is never
    // touched. Its final table and summary come first, while it still runs.
    // Every traced process exited: the command is exiting (its exit record
    // comes before it can be reaped), not to be signalled.
    let exiting = matches!(ended, Ok(End::Exited));
    let why = match &ended {
        Ok(end) => end.why(),
        Err(e) if is_broken_pipe(e) => End::OutputClosed.why(),
        Err(_) => "the trace stopped",
    };
    let finished = match ended {
        // Nothing more can be printed; the report is a file of its own.
        Ok(End::OutputClosed) => tracer.insight.finish(),
        Ok(_) => tracer.finish(),
        Err(e) => Err(e),
    };
    if let Some(l) = &mut launched {
        if exiting {
            l.wait_for(std::time::Duration::from_secs(2));
        }
        l.end(why);
    }
    finished?;
    Ok(0)
}

struct Signals<'a> {
    usr1: &'a mut tokio::signal::unix::Signal,
    int: &'a mut tokio::signal::unix::Signal,
    term: &'a mut tokio::signal::unix::Signal,
    hup: &'a mut tokio::signal::unix::Signal,
}

/// Streams deltas and prints tables on demand until something ends the
/// trace; says what.
async fn event_loop<W: Write>(
    tracer: &mut Tracer<'_, W>,
    args: &TraceArgs,
    launched: &mut Option<Launched>,
    out_fd: Option<RawFd>,
    sig: Signals<'_>,
) -> Result<End> {
    let deadline = args
        .duration
        .map(|s| tokio::time::Instant::now() + Duration::from_secs_f64(s));
    let mut interval = args
        .interval
        .map(|s| tokio::time::interval(Duration::from_secs_f64(s)));
    if let Some(iv) = &mut interval {
        iv.tick().await; // the first tick is immediate
    }
    // Enter on a terminal prints the table (not in launch mode: the
    // command owns the terminal).
    // SAFETY: isatty has no preconditions.
    let tty = launched.is_none() && unsafe { libc::isatty(0) } == 1;
    let mut stdin = tty.then(|| tokio::io::BufReader::new(tokio::io::stdin()).lines());
    // Also how soon a closed output is noticed: well under the second
    // after which someone who typed `| head` wonders why it hangs.
    let mut liveness = tokio::time::interval(Duration::from_millis(200));
    let mut summary_tick = args
        .summary_interval
        .map(|s| tokio::time::interval(Duration::from_secs_f64(s)));
    if let Some(iv) = &mut summary_tick {
        iv.tick().await; // the first tick is immediate
    }
    // The kernel side wakes us only when the ring is a quarter full (a
    // wake-up per event costs the traced process dearly), so also drain it
    // on a short timer: this bounds the delay of a delta.
    let mut drain_tick = tracer.probes.is_some().then(|| {
        let mut t = tokio::time::interval(Duration::from_millis(DRAIN_MS));
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        t
    });
    let mut poll_tick = tracer
        .probes
        .is_none()
        .then(|| tokio::time::interval(Duration::from_secs_f64(args.poll_interval)));

    loop {
        tokio::select! {
            r = async { match &mut tracer.probes { Some(p) => p.readable().await, None => std::future::pending().await } } => {
                r?;
                tracer.pump()?;
                if tracer.sessions.iter().all(|s| s.exited) {
                    return Ok(End::Exited);
                }
            }
            _ = async { match &mut drain_tick { Some(t) => { t.tick().await; } None => std::future::pending().await } } => {
                tracer.pump()?;
                if tracer.sessions.iter().all(|s| s.exited) {
                    return Ok(End::Exited);
                }
            }
            _ = async { match &mut poll_tick { Some(t) => { t.tick().await; } None => std::future::pending().await } } => tracer.poll()?,
            _ = sig.usr1.recv() => tracer.tables("SIGUSR1")?,
            _ = async { match &mut summary_tick { Some(iv) => { iv.tick().await; } None => std::future::pending().await } } => tracer.interim_summary()?,
            _ = sig.int.recv() => return Ok(End::Signal("SIGINT")),
            _ = sig.term.recv() => return Ok(End::Signal("SIGTERM")),
            _ = sig.hup.recv() => return Ok(End::Signal("SIGHUP")),
            _ = async { match deadline { Some(d) => tokio::time::sleep_until(d).await, None => std::future::pending().await } } => return Ok(End::Duration),
            _ = async { match &mut interval { Some(iv) => { iv.tick().await; } None => std::future::pending().await } } => tracer.tables("interval")?,
            line = async { match &mut stdin { Some(l) => l.next_line().await, None => std::future::pending().await } } => {
                match line {
                    Ok(Some(_)) => tracer.tables("enter")?,
                    _ => stdin = None,
                }
            }
            _ = liveness.tick() => {
                if out_fd.is_some_and(output_closed) {
                    return Ok(End::OutputClosed);
                }
                tracer.expire(CONFIRM_GRACE_NS);
                if let Some(l) = launched.as_mut() {
                    l.reap();
                }
                if tracer.all_exited() {
                    return Ok(End::Exited);
                }
            }
        }
    }
}
