//! Starting a trace: the arguments checked, the kernel programs loaded (or
//! polling chosen), the processes opened, then the event loop run.

use std::{
    collections::HashMap,
    fs::File,
    io::{self, Write},
    os::fd::AsRawFd,
    path::Path,
};

use anyhow::{Context as _, Result, bail};
use tokio::signal::unix::{SignalKind, signal};

use super::{End, Groups, Signals, TableRenderer, Tracer, event_loop, is_broken_pipe};
use crate::{
    cmd::trace::record::writer::Recorder,
    cmd::trace::{
        args::{Backend, TraceArgs},
        clock::monotonic_ns,
        insight::{Insight, InsightOptions},
        launch::Launched,
        output::Printer,
        session::Session,
        unwind::StackUnwinder,
    },
    render::Range,
    source::{
        kernel::{
            privileges,
            probes::{DEFAULT_RING_SIZE, ProbeOptions, Probes, check_environment},
        },
        pid_dir::PidDir,
        process,
    },
};

/// The process `pid` is a thread of, when it is a thread and not the
/// process itself (`pmap TID` shows the thread's process; so does trace).
pub(super) fn process_of_thread(pid: u32) -> Option<u32> {
    let info = process::fetch_in(&PidDir::open(pid).ok()?)?;
    (info.tgid != 0 && info.tgid != pid).then_some(info.tgid)
}

/// Checks that the report can be written at `path`, so that a mistyped
/// path fails at the start and not after a long trace. Nothing is created.
pub(crate) fn check_report_path(path: &Path) -> Result<()> {
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
pub(super) fn open_output(path: &Path) -> Result<File> {
    File::create(path).with_context(|| {
        format!(
            "-o {}: cannot create the output file; check that its directory exists and is writable",
            path.display()
        )
    })
}

/// Whether this process is in the initial PID namespace, whose proc inode
/// number is fixed (`PROC_PID_INIT_INO` in include/linux/proc_ns.h).
pub(super) fn in_host_pid_namespace() -> bool {
    use std::os::unix::fs::MetadataExt;
    const PROC_PID_INIT_INO: u64 = 0xEFFF_FFFC;
    std::fs::metadata("/proc/self/ns/pid").map_or(true, |m| m.ino() == PROC_PID_INIT_INO)
}

/// The ring buffer's size: `--ring-size`, or with stack copies, unless
/// given, room for as many records as the default holds in 40 ms at
/// the fastest rate measured here: a record with an 8 KiB copy is 80
/// times one without.
fn ring_size(args: &TraceArgs) -> u32 {
    if args.stacks && args.stack_bytes > 0 && args.ring_size == DEFAULT_RING_SIZE {
        STACK_COPY_RING_SIZE
    } else {
        args.ring_size
    }
}

/// 32 MiB: some 4,000 records with an 8 KiB stack copy.
const STACK_COPY_RING_SIZE: u32 = 32 << 20;

pub(super) fn load(args: &TraceArgs, groups: Option<&Groups>) -> Result<Probes> {
    Probes::load(&ProbeOptions {
        ring_size: ring_size(args),
        stacks: args.stacks,
        stack_bytes: args.stack_bytes,
        follow: args.follow,
        comm: groups.and_then(|g| g.comm.as_ref()).map(|c| c.0),
        cgroup: groups
            .and_then(|g| g.cgroup.as_ref())
            .map(|c| (c.id, c.level)),
    })
}

pub(super) async fn trace(args: TraceArgs, range: Range, render: &mut TableRenderer) -> Result<u8> {
    // Handlers first: a script may send SIGUSR1 as soon as it sees the
    // "tracing" line, and the default action would kill the tracer.
    let mut usr1 = signal(SignalKind::user_defined1())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut hup = signal(SignalKind::hangup())?;
    let focus = args.focus().map_err(anyhow::Error::msg)?;
    let groups = Groups::from_args(&args)?;
    let pids = args.parse_pids().map_err(anyhow::Error::msg)?;
    if !pids.is_empty() && !args.command.is_empty() {
        bail!("give either PIDs or `-- COMMAND`, not both");
    }
    // Arguments that can only fail at the end are checked now, before
    // anything is loaded or started.
    if let Some(r) = &args.report {
        check_report_path(r)?;
    }
    // Created now, so that a path that cannot be written fails at once.
    let mut recorder = match &args.record {
        Some(path) => Some(Recorder::create(path).map_err(anyhow::Error::msg)?),
        None => None,
    };
    let output: Box<dyn Write> = match &args.output {
        Some(path) => Box::new(open_output(path)?),
        None => Box::new(io::stdout().lock()),
    };
    let out_fd = match &args.output {
        Some(_) => None,
        None => Some(io::stdout().as_raw_fd()),
    };
    let start_ns = monotonic_ns();
    // The kernel program sees ids as the host's PID namespace numbers
    // them; from inside another namespace (a container's) every id would be
    // wrong. Polling reads /proc as this namespace sees it, and works there.
    const OTHER_NS: &str = "this tracer runs in a PID namespace other than the host's \
        (a container's), where the ids the kernel reports are not this namespace's; run it \
        on the host (e.g. `nsenter -t 1 -p -- pmap trace ...`, or a container started with \
        --pid=host)";
    let usable = match in_host_pid_namespace() {
        true => check_environment().map_err(|e| e.to_string()),
        false => Err(OTHER_NS.to_string()),
    };
    let probes = match (args.backend, usable) {
        (Backend::Poll, _) => None,
        (Backend::Ebpf, Err(why)) if !in_host_pid_namespace() => {
            bail!("the eBPF backend cannot be used: {why}, or use --backend poll")
        }
        (Backend::Ebpf, _) => Some(load(&args, groups.as_ref())?),
        (Backend::Auto, Ok(_)) => Some(load(&args, groups.as_ref())?),
        (Backend::Auto, Err(why)) => {
            eprintln!(
                "pmap trace: eBPF cannot be used here: {why}\n\
                 pmap trace: falling back to polling the kernel's view every {}s (--backend poll): \
                 changes are observed, not traced (no thread, no syscall; changes between two looks are merged)",
                args.poll_interval
            );
            None
        }
    };
    if probes.is_none() && args.follow {
        eprintln!(
            "pmap trace: -f with polling: children are found at each look (every {}s), with \
             their table read then; one that lives less than that is missed. The eBPF backend \
             (root, or CAP_BPF and CAP_PERFMON) follows them from their first instruction",
            args.poll_interval
        );
    }
    let mut probes = probes;

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
    let mut unwinder = StackUnwinder::new(args.stack_bytes);
    // With stack copies, a process's first calls get a short copy (see
    // `StackUnwinder::first_copy`); a size not set leaves the whole copy.
    let mut add_target = |p: &mut Probes, pid: u32| -> Result<()> {
        p.add_target(pid)?;
        if args.stacks
            && let Some(bytes) = unwinder.first_copy(pid)
        {
            let _ = p.set_stack_need(pid, bytes);
        }
        Ok(())
    };
    for &pid in &pids {
        if let Some(p) = &mut probes {
            add_target(p, pid)?;
        }
        sessions.push(Session::open(pid)?);
    }
    // The groups' processes there now (one that is gone by the time it is
    // opened is skipped); later ones join as they come.
    if let Some(g) = &groups {
        for pid in g.members().1 {
            if pids.contains(&pid) {
                continue;
            }
            if let Some(p) = &mut probes {
                add_target(p, pid)?;
            }
            if let Ok(s) = Session::open(pid) {
                sessions.push(s);
            }
        }
    }
    let polled = probes.is_none();
    let probes_follow = !polled && (args.follow || groups.is_some());
    if probes_follow {
        for s in &mut sessions {
            s.track_no_fork();
        }
    }
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
        follow: probes_follow,
        follow_polled: polled && args.follow,
        groups,
        focus,
        lost_seen: 0,
        buf: Vec::new(),
        insight: Insight::new(InsightOptions {
            stacks: args.stacks,
            stack_depth: args.stack_depth,
            debug_dirs: args.debug_dir.clone(),
            provenance: args.provenance,
            report: args.report.clone(),
            start_ns,
            jit_symbols: args.jit_symbols,
        }),
        json: args.json,
        tasks: HashMap::new(),
        recorder: None,
        unwinder,
    };
    if let Some(r) = &mut recorder {
        r.begin(start_ns, polled, args.stacks);
        r.checkpoint(&tracer.sessions, monotonic_ns());
    }
    tracer.recorder = recorder;
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
    let list: Vec<String> = tracer.sessions.iter().map(|s| s.pid.to_string()).collect();
    let what = match (&tracer.groups, list.is_empty()) {
        (None, _) => format!("pid {}", list.join(", pid ")),
        (Some(g), _) => {
            let mut parts = Vec::new();
            if let Some((_, name)) = &g.comm {
                parts.push(format!("--comm {name}"));
            }
            if let Some(c) = &g.cgroup {
                parts.push(format!("--cgroup {}", c.path));
            }
            let now = if list.is_empty() {
                "none yet".to_string()
            } else {
                format!("pid {}", list.join(", pid "))
            };
            format!("{} ({now}; others as they come)", parts.join(" and "))
        }
    };
    eprintln!("pmap trace: tracing {what} ({how}); SIGUSR1 prints the table");
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
