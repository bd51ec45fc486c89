//! One traced process: its region model, the kernel view that confirms it,
//! and what happened to it. Events go in; records for the printer come out.

use std::{cell::RefCell, collections::HashMap, io, rc::Rc};

use pmap_common::{Event, kind};

use super::{
    batch::LaterCalls,
    capture::{self, Fallback},
    clock::monotonic_ns,
    delta::{Cause, Delta, Stats},
    syscalls::Call,
};
use crate::{
    map::{
        model::{Change, RegionModel},
        ranges::RangeSet,
        region::Region,
    },
    source::{gone::address_space_gone as is_gone, pid_dir::PidDir, query::KernelView},
};

mod apply;
mod check;
mod exec;
mod fallback;
mod fork;
mod naming;

pub use check::Unconfirmed;
use fork::own_ns_pid;

/// How long after a table-time check a call on the addresses that differed
/// may end and still count as under way during the check. The kernel
/// programs see calls at their exit only (no entry time is recorded, which
/// halves their cost); mapping calls take microseconds, or a few
/// milliseconds when they wait for the map lock. A call that waited longer
/// leaves a difference counted as a model correction: reported, not hidden.
const IN_FLIGHT_NS: u64 = 50_000_000;

/// The `[vsyscall]` page is not in the VMA tree, so PROCMAP_QUERY never
/// returns it; `/proc/PID/maps` prints it last. Read it from there.
fn read_gate(dir: &PidDir) -> Option<Region> {
    let maps = dir.read("maps").ok()?;
    let last = maps.trim_ascii_end().rsplit(|&b| b == b'\n').next()?;
    crate::source::maps::parse_line(last)
        .ok()
        .filter(|r| r.name == b"[vsyscall]")
}

/// Names of mapped files by (major, minor, inode), as the kernel printed
/// them (see `Session::file_names`).
type FileNames = Rc<RefCell<HashMap<(u32, u32, u64), Region>>>;

/// The names of the files the tracer itself maps (its own C library and
/// dynamic loader are, nearly always, the traced programs' too): a
/// program that maps them and exits before the tracer can ask the kernel
/// about it still gets its file rows named, and its deltas shown.
fn own_file_names() -> FileNames {
    let names = crate::source::maps::own_files()
        .iter()
        .map(|r| ((r.dev_major, r.dev_minor, r.inode), r.clone()))
        .collect();
    Rc::new(RefCell::new(names))
}

/// What reading a process that is gone fails with.
fn gone() -> io::Error {
    io::Error::from_raw_os_error(libc::ESRCH)
}

/// A view of the address space the process has now, through its own
/// directory.
fn open_view(dir: &PidDir) -> io::Result<KernelView> {
    KernelView::from_file(dir.open_file("maps")?)
}

/// Why a process could not be traced.
#[derive(Debug)]
pub enum OpenError {
    NoProcess(u32),
    /// A kernel thread or a zombie: no address space to trace.
    NoMap(u32, &'static str),
    Access(u32, io::Error),
    Other(u32, io::Error),
}

impl std::fmt::Display for OpenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OpenError::NoProcess(pid) => write!(f, "no process {pid}"),
            OpenError::NoMap(pid, what) => {
                write!(f, "process {pid} is {what}: it has no memory map to trace")
            }
            OpenError::Access(pid, e) => write!(
                f,
                "cannot read the memory map of process {pid} ({e}): tracing needs the same \
                 access as reading /proc/{pid}/maps (same user and ptrace allowed, or root)"
            ),
            OpenError::Other(pid, e) => write!(f, "cannot trace process {pid}: {e}"),
        }
    }
}

impl std::error::Error for OpenError {}

fn open_error(pid: u32, e: io::Error) -> OpenError {
    match e.kind() {
        io::ErrorKind::NotFound => OpenError::NoProcess(pid),
        io::ErrorKind::PermissionDenied => OpenError::Access(pid, e),
        _ => OpenError::Other(pid, e),
    }
}

pub struct Session {
    pub pid: u32,
    /// The parent process: the one it was followed from (`-f`), else its
    /// parent when the trace began.
    pub ppid: u32,
    /// Its id in its own PID namespace (a container's), when that is not
    /// the id we see; 0 otherwise.
    pub ns_pid: u32,
    /// `/proc/PID`, held open: every later read goes through it, so none
    /// can reach a new process given the same id. None for a followed
    /// child that was gone before the tracer could open it: its captured
    /// calls are still exact; reads fail as for an exited process.
    dir: Option<PidDir>,
    view: Option<KernelView>,
    model: RegionModel,
    gate: Option<Region>,
    start_time: u64,
    start_brk: u64,
    start_stack: u64,
    /// The program break as of the last applied call.
    brk: u64,
    /// CLOCK_MONOTONIC ns just before the last full read of the map (the
    /// seed, or the table after an exec): calls that ended earlier are in
    /// it already.
    seeded_ns: u64,
    /// Names of mapped files by (major, minor, inode), as the kernel last
    /// printed them: a capture carries the file's identity, not its path.
    /// Shared by a process and the processes it forks (followed with
    /// `-f`), which map the same files: a short-lived child's libraries are
    /// named from what its parent or a sibling showed.
    file_names: FileNames,
    pub stats: Stats,
    pub exited: bool,
    unconfirmed: Vec<Unconfirmed>,
    /// Ranges whose rows were derived from call arguments and not yet
    /// replaced by the kernel's (see `settle`).
    dirty: RangeSet,
    /// Regions a fork does not copy (`MADV_DONTFORK`, VM_DONTCOPY), kept
    /// only when forks are followed: from smaps at each full read of the
    /// map, then from the flags each capture reads.
    no_fork: Option<RangeSet>,
    /// Ranges whose rows were read from the kernel (a fallback, `settle`,
    /// a table) or derived from arguments later than calls that may still
    /// be applied on them, as (lo, hi, until): a captured call on them that
    /// ended before `until` compares its capture with rows that may hold
    /// its own or a later call's change, so its delta is not certain to be
    /// its own alone (the rows it leaves are exact all the same).
    uncertain: Vec<(u64, u64, u64)>,
    /// The parts of the map at an exec received so far.
    exec_parts: exec::ExecParts,
    /// Whether the last exec's map is the one read at the exec (its table
    /// needs no check against the kernel's map now, which holds later
    /// calls).
    exec_captured: bool,
}

/// How long after the kernel was read a call may end and still have
/// changed the map before that read (it was inside the kernel then).
const READ_IN_FLIGHT_NS: u64 = 5_000_000;

impl Session {
    /// Opens the process and takes the seed snapshot.
    pub fn open(pid: u32) -> Result<Session, OpenError> {
        let dir = PidDir::open(pid).map_err(|e| open_error(pid, e))?;
        let stat = dir.stat().map_err(|e| open_error(pid, e))?;
        let mut view = open_view(&dir).map_err(|e| open_error(pid, e))?;
        let seeded_ns = monotonic_ns();
        let regions = view.all().map_err(|e| {
            // ESRCH: the process has no address space (any more).
            match dir.stat() {
                Ok(st) if is_gone(&e) && st.kernel_thread => {
                    OpenError::NoMap(pid, "a kernel thread")
                }
                Ok(st) if is_gone(&e) && st.is_dead() => {
                    OpenError::NoMap(pid, "exiting or a zombie")
                }
                _ => open_error(pid, e),
            }
        })?;
        let model = RegionModel::new(regions);
        let gate = read_gate(&dir);
        let mut s = Session {
            pid,
            ppid: stat.ppid,
            ns_pid: own_ns_pid(&dir, pid),
            dir: Some(dir),
            view: Some(view),
            model,
            gate,
            start_time: stat.start_time,
            start_brk: stat.start_brk,
            start_stack: stat.start_stack,
            brk: 0,
            seeded_ns,
            file_names: own_file_names(),
            stats: Stats::default(),
            exited: false,
            unconfirmed: Vec::new(),
            dirty: RangeSet::default(),
            no_fork: None,
            uncertain: Vec::new(),
            exec_parts: exec::ExecParts::default(),
            exec_captured: false,
        };
        s.brk = s.heap().1.max(s.start_brk);
        s.note_peaks();
        Ok(s)
    }

    /// The process's `/proc` directory, held open since the session began:
    /// what is read through it is this process's even if its id is reused.
    /// None for a followed child gone before it could be opened.
    pub fn dir(&self) -> Option<&PidDir> {
        self.dir.as_ref()
    }

    /// The directory, or ESRCH (as for an exited process) without one.
    fn proc_dir(&self) -> io::Result<&PidDir> {
        self.dir.as_ref().ok_or_else(gone)
    }

    /// The kernel's view of the map, or ESRCH without one.
    fn view(&mut self) -> io::Result<&mut KernelView> {
        self.view.as_mut().ok_or_else(gone)
    }

    pub fn model(&self) -> &RegionModel {
        &self.model
    }

    /// CLOCK_MONOTONIC ns when the last full read of the map (the table
    /// printed last) began.
    pub fn table_read_ns(&self) -> u64 {
        self.seeded_ns
    }

    /// The regions as `/proc/PID/maps` lists them (the gate page last).
    pub fn table_regions(&self) -> Vec<Region> {
        let mut v = self.model.to_vec();
        if let Some(g) = &self.gate {
            v.push(g.clone());
        }
        v
    }

    /// Whether the map of the exec just applied is the one read at the
    /// exec (its table is then printed as is, without a check).
    pub fn exec_captured(&self) -> bool {
        self.exec_captured
    }

    /// Whether the process is still the one we opened (not exited, not a
    /// reused PID).
    pub fn still_same_process(&self) -> bool {
        matches!(self.proc_dir().and_then(PidDir::stat),
            Ok(s) if s.start_time == self.start_time && !s.is_zombie())
    }

    fn note_peaks(&mut self) {
        self.stats.peak_mapped = self.stats.peak_mapped.max(self.model.mapped());
        self.stats.peak_regions = self.stats.peak_regions.max(self.model.len());
    }

    fn account(&mut self, change: &Change) {
        self.stats.bytes_mapped += change.newly_mapped();
        self.stats.bytes_unmapped += change.newly_unmapped();
        self.note_peaks();
    }

    /// Replaces the rows of `[lo, hi)`, widened until it holds every model
    /// and kernel region that touches it, with the kernel's current rows.
    /// Rows derived from arguments that overlap it are confirmed with it.
    fn sync_range(&mut self, lo: u64, hi: u64) -> io::Result<Change> {
        let (mut lo, mut hi) = self.absorb_dirty(lo, hi);
        (lo, hi) = self.model.extent(lo, hi);
        loop {
            (lo, hi) = self.absorb_dirty(lo, hi);
            let fresh = self.view()?.range(lo, hi)?;
            let klo = fresh.first().map_or(lo, |r| r.start.min(lo));
            let khi = fresh.last().map_or(hi, |r| r.end.max(hi));
            let (mlo, mhi) = self.model.extent(klo, khi);
            if (mlo, mhi) == (lo, hi) {
                return Ok(self.model.replace(lo, hi, fresh));
            }
            (lo, hi) = (mlo, mhi);
        }
    }

    /// `[lo, hi)` widened by every dirty range that overlaps it (those
    /// are taken out of the dirty set: the caller syncs them; the others
    /// wait for `settle`).
    fn absorb_dirty(&mut self, mut lo: u64, mut hi: u64) -> (u64, u64) {
        loop {
            let (l, h) = self.dirty.take(lo, hi);
            if (l, h) == (lo, hi) {
                return (lo, hi);
            }
            (lo, hi) = (l, h);
        }
    }

    /// Replaces the rows derived from arguments that are left with the
    /// kernel's. Called at the end of each batch of events, so that
    /// tables and the next batch start from the kernel's view.
    pub fn settle(&mut self) -> io::Result<Option<Delta>> {
        let mut change = Change::default();
        let read_ns = monotonic_ns();
        // Rows derived from arguments are the kernel's from now on.
        for u in self.uncertain.iter_mut().filter(|u| u.2 == u64::MAX) {
            u.2 = read_ns + READ_IN_FLIGHT_NS;
        }
        while let Some((lo, hi)) = self.dirty.pop() {
            match self.sync_range(lo, hi) {
                Ok(c) => {
                    // What was read, which may reach beyond the range.
                    let (l, h) = c.span().map_or((lo, hi), |(l, h)| (l.min(lo), h.max(hi)));
                    self.uncertain.push((l, h, read_ns + READ_IN_FLIGHT_NS));
                    change.then(c)
                }
                Err(e) if is_gone(&e) => {
                    self.dirty.clear();
                    return Ok(None);
                }
                Err(e) => return Err(e),
            }
        }
        if change.is_empty() {
            return Ok(None);
        }
        self.account(&change);
        Ok(Some(self.delta(0, 0, Cause::Settled, change)))
    }

    /// Re-reads everything from the kernel; returns what differed.
    pub fn resync(&mut self) -> io::Result<Change> {
        // Nothing is forgotten before the read succeeds.
        let fresh = self.view()?.all()?;
        self.dirty.clear();
        self.uncertain.clear();
        self.uncertain
            .push((0, u64::MAX, monotonic_ns() + READ_IN_FLIGHT_NS));
        let change = self.model.replace_all(fresh);
        self.account(&change);
        Ok(change)
    }

    /// Like [`Session::resync`], for the poll backend and after lost
    /// events, where an execve may have gone unseen: if the address space
    /// the view was opened on is gone but the process is the same, it
    /// exec'd; the view is reopened and the new map read. Returns what
    /// differed and whether the process exec'd. Fails (ESRCH) if the
    /// process exited: the new map of a reused id is never read.
    pub fn reread(&mut self) -> io::Result<(Change, bool)> {
        self.exec_captured = false;
        if self.exec_kept_old_map() {
            self.reopen()?;
            return Ok((self.resync()?, true));
        }
        match self.resync() {
            Err(e) if is_gone(&e) && self.still_same_process() => {
                self.reopen()?;
                Ok((self.resync()?, true))
            }
            other => other.map(|c| (c, false)),
        }
    }

    /// Whether the process exec'd and the address space the view reads
    /// lives on: a vfork child opened before its exec shares its parent's,
    /// which the exec leaves to the parent, so the view never finds it
    /// gone. The new program's stack starts elsewhere (as the snapshot's
    /// own check of an exec mid-read, `source::checked`, also takes it).
    fn exec_kept_old_map(&self) -> bool {
        matches!(self.proc_dir().and_then(PidDir::stat),
            Ok(s) if s.start_time == self.start_time
                && !s.is_dead()
                && s.start_stack != 0
                && s.start_stack != self.start_stack)
    }

    /// After an execve: a view, gate and brk of the new address space.
    fn reopen(&mut self) -> io::Result<()> {
        let dir = self.proc_dir()?;
        let view = open_view(dir)?;
        let gate = read_gate(dir);
        let stat = dir.stat();
        (self.view, self.gate) = (Some(view), gate);
        if let Ok(stat) = stat {
            self.start_brk = stat.start_brk;
            self.start_stack = stat.start_stack;
        }
        self.brk = self.start_brk;
        Ok(())
    }

    pub fn delta(&self, tid: u32, ktime_ns: u64, cause: Cause, change: Change) -> Delta {
        Delta {
            pid: self.pid,
            ppid: self.ppid,
            ns_pid: self.ns_pid,
            tid,
            ktime_ns,
            cause,
            change,
            superseded: false,
            from_arguments: false,
            fallback: None,
        }
    }

    /// Counts a task this process created: a thread, or a child process.
    pub fn note_new_task(&mut self, thread: bool) {
        if thread {
            self.stats.threads_started += 1;
        } else {
            self.stats.processes_forked += 1;
        }
    }

    /// The `[heap]` extent, or the program break's start. The heap
    /// begins at the break's start: a lookup there, not a scan of the map
    /// (this runs for every event).
    fn heap(&self) -> (u64, u64) {
        self.model
            .containing(self.start_brk)
            .filter(|r| r.name == b"[heap]")
            .map_or((self.start_brk, self.start_brk), |r| (r.start, r.end))
    }
}
