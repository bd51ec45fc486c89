//! One traced process: its region model, the kernel view that confirms it,
//! and what happened to it. Events go in; records for the printer come out.

use std::io;

use pmap_common::{Event, FLAG_NO_ARGS, failed, kind, nr};

use super::{
    batch::LaterCalls,
    capture::{self, Fallback},
    clock::monotonic_ns,
    delta::{Cause, Delta, Stats},
    effect,
    syscalls::{Affected, Call, affected, map_shared},
};
use crate::{
    map::{
        model::{Change, RegionModel},
        ranges::RangeSet,
        region::Region,
    },
    source::{gone::address_space_gone as is_gone, pid_dir::PidDir, query::KernelView},
};

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

/// A view of the address space the process has now, through its own
/// directory.
fn open_view(dir: &PidDir) -> io::Result<KernelView> {
    KernelView::from_file(dir.open_file("maps")?)
}

/// Names the kernel gives special mappings (`vm_ops->name`, arch names).
fn is_special(name: &[u8]) -> bool {
    matches!(
        name,
        b"[vdso]" | b"[vvar]" | b"[vvar_vclock]" | b"[vsyscall]" | b"[uprobes]" | b"[sigpage]"
    )
}

/// The main stack grows on page faults, with no syscall.
fn is_stack(r: &Region) -> bool {
    r.name == b"[stack]"
}

/// The same region, whose file was unlinked since: the kernel adds
/// " (deleted)" to the name with no mapping syscall.
fn just_unlinked(old: &Region, new: &Region) -> bool {
    new.name.strip_suffix(b" (deleted)") == Some(&old.name[..])
        && Region {
            name: old.name.clone(),
            ..new.clone()
        } == *old
}

/// A difference between the model and the kernel found at table time,
/// not yet explained by an event.
#[derive(Clone, Debug)]
pub struct Unconfirmed {
    pub region: Region,
    /// The model had this region and the kernel did not (else the other
    /// way round).
    pub in_model: bool,
    /// CLOCK_MONOTONIC ns of the check.
    pub checked_at: u64,
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
    /// `/proc/PID`, held open: every later read goes through it, so none
    /// can reach a new process given the same id.
    dir: PidDir,
    view: KernelView,
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
    file_names: std::collections::HashMap<(u32, u32, u64), Region>,
    pub stats: Stats,
    pub exited: bool,
    unconfirmed: Vec<Unconfirmed>,
    /// Ranges whose rows were derived from call arguments and not yet
    /// replaced by the kernel's (see `settle`).
    dirty: RangeSet,
    /// Ranges whose rows were read from the kernel (a fallback, `settle`,
    /// a table) or derived from arguments later than calls that may still
    /// be applied on them, as (lo, hi, until): a captured call on them that
    /// ended before `until` compares its capture with rows that may hold
    /// its own or a later call's change, so its delta is not certain to be
    /// its own alone (the rows it leaves are exact all the same).
    uncertain: Vec<(u64, u64, u64)>,
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
            dir,
            view,
            model,
            gate,
            start_time: stat.start_time,
            start_brk: stat.start_brk,
            start_stack: stat.start_stack,
            brk: 0,
            seeded_ns,
            file_names: Default::default(),
            stats: Stats::default(),
            exited: false,
            unconfirmed: Vec::new(),
            dirty: RangeSet::default(),
            uncertain: Vec::new(),
        };
        s.brk = s.heap().1.max(s.start_brk);
        s.note_peaks();
        Ok(s)
    }

    /// The process's `/proc` directory, held open since the session began:
    /// what is read through it is this process's even if its id is reused.
    pub fn dir(&self) -> &PidDir {
        &self.dir
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

    /// Whether the process is still the one we opened (not exited, not a
    /// reused PID).
    pub fn still_same_process(&self) -> bool {
        matches!(self.dir.stat(),
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
            let fresh = self.view.range(lo, hi)?;
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
        self.dirty.clear();
        self.uncertain.clear();
        self.uncertain
            .push((0, u64::MAX, monotonic_ns() + READ_IN_FLIGHT_NS));
        let fresh = self.view.all()?;
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
        match self.resync() {
            Err(e) if is_gone(&e) && self.still_same_process() => {
                self.reopen()?;
                Ok((self.resync()?, true))
            }
            other => other.map(|c| (c, false)),
        }
    }

    /// After an execve: a view, gate and brk of the new address space.
    fn reopen(&mut self) -> io::Result<()> {
        self.view = open_view(&self.dir)?;
        self.gate = read_gate(&self.dir);
        if let Ok(stat) = self.dir.stat() {
            self.start_brk = stat.start_brk;
            self.start_stack = stat.start_stack;
        }
        self.brk = self.start_brk;
        self.file_names.clear();
        Ok(())
    }

    /// Compares the model with the kernel before a table is printed, and
    /// takes the kernel's view, so the table is exact.
    ///
    /// Stack growth and unlinked files (changes without a syscall) come
    /// back as an `Observed` delta. Any other difference is held as
    /// unconfirmed: on a running process it may be a call whose event is
    /// still on its way. A later event for those addresses that entered
    /// the kernel before this check explains it; what stays unexplained
    /// becomes a model correction (see `expire`).
    pub fn check(&mut self) -> io::Result<Option<Delta>> {
        self.dirty.clear();
        self.uncertain.clear();
        self.uncertain
            .push((0, u64::MAX, monotonic_ns() + READ_IN_FLIGHT_NS));
        // The table printed after this shows the map as read now: calls
        // that ended before are in it, and are not shown again after it.
        self.seeded_ns = monotonic_ns();
        let fresh = self.view.all()?;
        let checked_at = monotonic_ns();
        let change = self.model.replace_all(fresh);
        if change.is_empty() {
            return Ok(None);
        }
        self.account(&change);
        let mut observed = Change::default();
        let mut added: Vec<Option<Region>> = change.added.into_iter().map(Some).collect();
        for old in change.removed {
            let pair = added.iter_mut().find(|a| {
                a.as_ref().is_some_and(|new| {
                    (is_stack(&old) && is_stack(new)) || just_unlinked(&old, new)
                })
            });
            match pair.and_then(Option::take) {
                Some(new) => {
                    observed.removed.push(old);
                    observed.added.push(new);
                }
                None => self.unconfirmed.push(Unconfirmed {
                    region: old,
                    in_model: true,
                    checked_at,
                }),
            }
        }
        for new in added.into_iter().flatten() {
            self.unconfirmed.push(Unconfirmed {
                region: new,
                in_model: false,
                checked_at,
            });
        }
        if observed.is_empty() {
            return Ok(None);
        }
        Ok(Some(self.delta(0, 0, Cause::Observed, observed)))
    }

    /// Drops unconfirmed differences that an event explains: one for the
    /// same addresses whose call may have been under way at the check (it
    /// ended no later than [`IN_FLIGHT_NS`] after it).
    fn explain(&mut self, exit_ns: u64, what: &Affected) {
        if self.unconfirmed.is_empty() {
            return;
        }
        self.unconfirmed.retain(|u| {
            let explained = exit_ns <= u.checked_at.saturating_add(IN_FLIGHT_NS)
                && match what {
                    Affected::Nothing => false,
                    Affected::All => true,
                    // Touching counts: a call can merge or split the
                    // neighbours on either side of its range.
                    Affected::Ranges(rs) => rs
                        .iter()
                        .any(|&(lo, hi)| lo <= u.region.end && hi >= u.region.start),
                };
            !explained
        });
    }

    /// Unconfirmed differences older than `grace_ns` (or all, with 0):
    /// no event explained them, so the model was wrong. Counted as model
    /// corrections and returned for reporting.
    pub fn expire(&mut self, grace_ns: u64) -> Vec<Unconfirmed> {
        let now = monotonic_ns();
        let (old, keep): (Vec<Unconfirmed>, Vec<Unconfirmed>) =
            std::mem::take(&mut self.unconfirmed)
                .into_iter()
                .partition(|u| now.saturating_sub(u.checked_at) >= grace_ns);
        self.unconfirmed = keep;
        self.stats.corrections += old.len() as u64;
        old
    }

    pub fn has_unconfirmed(&self) -> bool {
        !self.unconfirmed.is_empty()
    }

    pub fn delta(&self, tid: u32, ktime_ns: u64, cause: Cause, change: Change) -> Delta {
        Delta {
            pid: self.pid,
            tid,
            ktime_ns,
            cause,
            change,
            superseded: false,
            from_arguments: false,
            fallback: None,
        }
    }

    /// Whether task `tid` is a thread of this process (else a forked child
    /// process, or gone already).
    pub fn note_new_task(&mut self, tid: u32) -> bool {
        let thread = self.dir.open_file(&format!("task/{tid}")).is_ok();
        if thread {
            self.stats.threads_started += 1;
        } else {
            self.stats.processes_forked += 1;
        }
        thread
    }

    /// Like [`Session::footprint`], with a shmat's extent as the kernel
    /// holds it now (its size is not in the arguments).
    fn footprint_now(&mut self, call: Call, ev: &Event) -> io::Result<Affected> {
        if call == Call::Shmat && ev.ret > 0 && ev.flags & FLAG_NO_ARGS == 0 {
            return Ok(Affected::Ranges(vec![self.attached_now(ev.ret as u64)?]));
        }
        Ok(self.footprint(ev))
    }

    /// Where `ev` may have changed the map, as far as the event and the
    /// model tell without asking the kernel (a shmat's size is not in its
    /// arguments: only its first page is given).
    pub fn footprint(&self, ev: &Event) -> Affected {
        match ev.kind {
            kind::EXEC => return Affected::All,
            kind::EXIT | kind::FORK => return Affected::Nothing,
            _ => {}
        }
        let Some(call) = Call::from_nr(ev.kind) else {
            return Affected::Nothing;
        };
        if ev.flags & FLAG_NO_ARGS != 0 {
            // Its arguments could not be read: look at everything.
            Affected::All
        } else if call == Call::Shmdt {
            // What the model holds: the attachment is gone from the kernel.
            let addr = ev.args[0];
            Affected::Ranges(vec![Self::attachment_extent(addr, self.model.regions())])
        } else {
            affected(call, ev, self.heap())
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

    /// The range `sync_range` would read for `[lo, hi)` as the model
    /// stands (it may widen further by what the kernel answers).
    fn sync_extent(&self, mut lo: u64, mut hi: u64) -> (u64, u64) {
        loop {
            let (l, h) = self.model.extent(lo, hi);
            let (l, h) = self.dirty.cover(l, h);
            if (l, h) == (lo, hi) {
                return (lo, hi);
            }
            (lo, hi) = (l, h);
        }
    }

    /// Applies one event. Returns the delta to print, if the map changed
    /// (or the call failed and `keep_failed` is set). `later` tells what
    /// the rest of the batch changes: where it changes what the tracer
    /// would read for this call, the kernel can no longer show this call's
    /// own effect, so a call whose effect its arguments give is applied
    /// from them (the kernel's rows replace them when the later call is
    /// applied, or at `settle`).
    pub fn apply(
        &mut self,
        ev: &Event,
        keep_failed: bool,
        later: &LaterCalls,
    ) -> io::Result<Option<Delta>> {
        // Events for this id after the process exited come from a new
        // process that reuses it: none of its history is ours.
        if self.exited {
            return Ok(None);
        }
        match ev.kind {
            kind::EXEC => {
                // Exited since (its exit event may have been lost): a new
                // process has the id, and its exec is not ours.
                if !self.still_same_process() {
                    self.exited = true;
                    return Ok(None);
                }
                // The open maps file belongs to the old address space.
                self.reopen()?;
                self.seeded_ns = monotonic_ns();
                let change = self.resync()?;
                self.brk = self.heap().1.max(self.start_brk);
                return Ok(Some(self.delta(ev.tid, ev.exit_ns, Cause::Exec, change)));
            }
            kind::EXIT => {
                if ev.args[0] != 0 {
                    self.exited = true;
                }
                return Ok(None);
            }
            kind::FORK => {
                // Counted by the caller, which knows whether it is a thread.
                return Ok(None);
            }
            _ => {}
        }
        let Some(call) = Call::from_nr(ev.kind) else {
            return Ok(None);
        };
        let entry = self.stats.calls.entry(call).or_default();
        entry.0 += 1;
        if ev.ret < 0 {
            entry.1 += 1;
        }
        // Where the call may have changed the map, from its arguments:
        // needed to explain a difference a table check found, and by the
        // fallback below; a captured call needs neither (worked out only
        // when asked: this runs for every call).
        let mut what = None;
        if self.has_unconfirmed() {
            let w = match self.footprint_now(call, ev) {
                Err(e) if is_gone(&e) => return Ok(None),
                other => other?,
            };
            self.explain(ev.exit_ns, &w);
            what = Some(w);
        }
        let before_table = ev.exit_ns < self.seeded_ns;
        let fallback = match capture::effect(call, ev, self.brk, |addr| {
            Self::attachment_extent(addr, self.model.regions())
        }) {
            Ok(e) => match self.apply_capture(call, ev, e) {
                Ok((change, certain)) => {
                    if certain {
                        self.stats.exact += 1;
                    } else {
                        *self.stats.fallbacks.entry(Fallback::Uncertain).or_default() += 1;
                    }
                    if before_table {
                        self.stats.before_table += 1;
                        return Ok(None);
                    }
                    if !certain {
                        // Shown even if it looks like no change: the rows
                        // it is compared with may hold its own effect.
                        let mut d = self.delta(
                            ev.tid,
                            ev.exit_ns,
                            Cause::Syscall(call, Box::new(*ev)),
                            change,
                        );
                        d.fallback = Some(Fallback::Uncertain);
                        return Ok(Some(d));
                    }
                    return Ok(self.call_delta(call, ev, change, keep_failed));
                }
                Err(f) => f,
            },
            Err(f) => f,
        };
        if before_table {
            // The table read after it holds its effect already.
            self.stats.before_table += 1;
            return Ok(None);
        }
        *self.stats.fallbacks.entry(fallback).or_default() += 1;
        let what = match what {
            Some(w) => w,
            None => match self.footprint_now(call, ev) {
                Err(e) if is_gone(&e) => return Ok(None),
                other => other?,
            },
        };
        let overtaken = ev.flags & FLAG_NO_ARGS == 0
            && ev.ret >= 0
            && effect::derivable(call)
            && match &what {
                Affected::Ranges(rs) => rs.iter().any(|&(lo, hi)| {
                    let (lo, hi) = self.sync_extent(lo, hi);
                    later.change(self.pid, lo, hi)
                }),
                _ => false,
            };
        let derived = if overtaken {
            effect::from_arguments(call, ev, &self.model, self.start_brk)
        } else {
            None
        };
        if let Some(e) = derived {
            return Ok(self.apply_effect(call, ev, e, fallback));
        }
        let mut change = Change::default();
        // The call's own range is read from the kernel now, not as of the
        // call: whatever the call did there may be undone or redone by
        // later calls already, and their deltas cannot show only theirs.
        if let Affected::Ranges(rs) = &what {
            let until = monotonic_ns() + READ_IN_FLIGHT_NS;
            for &(lo, hi) in rs {
                let (lo, hi) = self.model.extent(lo, hi);
                self.uncertain.push((lo, hi, until));
            }
        }
        let synced = match what {
            Affected::Nothing => Ok(()),
            Affected::All => self.resync_unaccounted().map(|c| change = c),
            Affected::Ranges(ranges) => ranges.into_iter().try_for_each(|(lo, hi)| {
                let c = self.sync_range(lo, hi)?;
                change.then(c);
                Ok(())
            }),
        };
        match synced {
            // The address space this call changed is gone (the process
            // exec'd or exited since): the exec record re-seeds the model.
            Err(e) if is_gone(&e) => return Ok(None),
            other => other?,
        }
        // The rows just read are the kernel's now, not as of this call.
        if let Some((lo, hi)) = change.span() {
            self.uncertain
                .push((lo, hi, monotonic_ns() + READ_IN_FLIGHT_NS));
        }
        self.account(&change);
        // A successful call that can change the map but shows no change was
        // either a no-op or already shown by an earlier delta (the tracer
        // asks the kernel when it processes the event, and a later call on
        // the same range may have happened by then). Printed, so that every
        // mapping call is seen; failed calls are only counted by default.
        let visible = ev.ret >= 0 && call.maps_or_unmaps();
        if change.is_empty() && !visible && !(keep_failed && ev.ret < 0) {
            return Ok(None);
        }
        let superseded = ev.ret >= 0 && !change.is_empty() && !self.shows_own_effect(call, ev);
        let mut d = self.delta(
            ev.tid,
            ev.exit_ns,
            Cause::Syscall(call, Box::new(*ev)),
            change,
        );
        d.superseded = superseded;
        d.fallback = Some(fallback);
        Ok(Some(d))
    }

    /// The delta of a call whose change is exact, if there is one to print:
    /// a call that changed nothing is printed only if it maps or unmaps
    /// (so every such call is seen), or failed and `keep_failed` is set.
    fn call_delta(
        &self,
        call: Call,
        ev: &Event,
        change: Change,
        keep_failed: bool,
    ) -> Option<Delta> {
        let failed = ev.ret < 0;
        let shown_anyway = if failed {
            keep_failed
        } else {
            call.maps_or_unmaps()
        };
        if change.is_empty() && !shown_anyway {
            return None;
        }
        Some(self.delta(
            ev.tid,
            ev.exit_ns,
            Cause::Syscall(call, Box::new(*ev)),
            change,
        ))
    }

    /// Applies a call's effect as its capture shows it (see `capture`).
    /// Fails only if a new file mapping cannot be named; the model is then
    /// untouched.
    fn apply_capture(
        &mut self,
        call: Call,
        ev: &Event,
        e: capture::Effect,
    ) -> Result<(Change, bool), Fallback> {
        let brk_after = match ev.capture.brk {
            0 if call == Call::Brk => ev.ret as u64,
            0 => self.brk,
            b => b,
        };
        let Some((lo, hi)) = capture::reach(&e) else {
            self.brk = brk_after;
            return Ok((Change::default(), true));
        };
        let old: Vec<Region> = self.model.within(lo, hi).cloned().collect();
        let mut rows = Vec::with_capacity(e.captured.len());
        for v in &e.captured {
            let mut r = capture::row(v);
            self.name_captured(&mut r, call, ev, &old, brk_after)?;
            rows.push(r);
        }
        let new = capture::overlay(&old, &e.cleared, &rows);
        let (lo, hi) = old
            .iter()
            .chain(&new)
            .fold((lo, hi), |(lo, hi), r| (lo.min(r.start), hi.max(r.end)));
        let ended = ev.exit_ns;
        self.uncertain.retain(|u| u.2 > ended);
        let certain = !self.uncertain.iter().any(|&(l, h, _)| l < hi && h > lo);
        let change = self.model.replace(lo, hi, new);
        self.brk = brk_after;
        self.account(&change);
        Ok((change, certain))
    }

    /// Names a captured row as `/proc/PID/maps` would (fs/proc/task_mmu.c
    /// `get_vma_name`): a file's path, a special mapping's name, `[heap]`,
    /// `[stack]`, or an anonymous region's own name.
    fn name_captured(
        &mut self,
        r: &mut Region,
        call: Call,
        ev: &Event,
        old: &[Region],
        brk: u64,
    ) -> Result<(), Fallback> {
        let overlaps = |o: &&Region| o.start < r.end && o.end > r.start;
        if r.inode != 0 || r.dev_major != 0 || r.dev_minor != 0 || r.offset != 0 {
            return self.name_file(r, ev, old);
        }
        // A special mapping ([vdso], [vvar], ...) keeps its name; it
        // never merges with anything.
        if let Some(o) = old.iter().filter(overlaps).find(|o| is_special(&o.name)) {
            r.name = o.name.clone();
            return Ok(());
        }
        if r.start <= brk && r.end >= self.start_brk && self.start_brk != 0 {
            r.name = b"[heap]".to_vec();
        } else if r.start <= self.start_stack && r.end >= self.start_stack {
            r.name = b"[stack]".to_vec();
        } else if call != Call::Mmap
            && call != Call::Mremap
            && let Some(o) = old
                .iter()
                .filter(overlaps)
                .find(|o| o.name.starts_with(b"[anon:") || o.name.starts_with(b"[anon_shmem:"))
        {
            // A named anonymous region keeps its name through splits and
            // merges (regions merge only with equal names).
            r.name = o.name.clone();
        }
        Ok(())
    }

    /// Names a captured file row: from the rows it overlapped, from the
    /// names seen for that file, from the kernel's row at that address now,
    /// or from the descriptor the mmap was given.
    fn name_file(&mut self, r: &mut Region, ev: &Event, old: &[Region]) -> Result<(), Fallback> {
        let id = (r.dev_major, r.dev_minor, r.inode);
        let same = |o: &Region| (o.dev_major, o.dev_minor, o.inode) == id;
        // The name, device and inode the kernel prints (for SysV segments
        // and overlayfs, not those of the file the region holds).
        let take = |r: &mut Region, k: &Region| {
            (r.name, r.dev_major, r.dev_minor, r.inode) =
                (k.name.clone(), k.dev_major, k.dev_minor, k.inode);
        };
        if let Some(o) = old
            .iter()
            .find(|o| same(o) && o.start < r.end && o.end > r.start)
        {
            r.name = o.name.clone();
            return Ok(());
        }
        // A row it overlapped that maps the same file pages at the same
        // place (a split or merge of it), shown with another identity. Not
        // for calls that make new mappings: a new mapping over an old one
        // of the same kind (shared anonymous memory) is another object.
        let base = r.start.wrapping_sub(r.offset);
        let creates = matches!(ev.kind, nr::MMAP | nr::MREMAP | nr::SHMAT);
        if !creates
            && let Some(o) = old
                .iter()
                .find(|o| {
                    o.inode != 0
                        && o.start < r.end
                        && o.end > r.start
                        && o.start.wrapping_sub(o.offset) == base
                        && o.perms.shared() == r.perms.shared()
                })
                .cloned()
        {
            take(r, &o);
            return Ok(());
        }
        // A region mremap moved: the row it came from, at the old address
        // with the same file offset.
        if ev.kind == nr::MREMAP && !failed(ev.ret) {
            let from = ev.args[0].wrapping_add(r.start.wrapping_sub(ev.ret as u64));
            if let Some(o) = self
                .model
                .containing(from)
                .filter(|o| o.inode != 0 && o.offset + (from - o.start) == r.offset)
                .cloned()
            {
                take(r, &o);
                return Ok(());
            }
        }
        if let Some(k) = self.file_names.get(&id) {
            let k = k.clone();
            take(r, &k);
            return Ok(());
        }
        if let Some(o) = self.model.regions().find(|o| same(o)).cloned() {
            self.file_names.insert(id, o.clone());
            take(r, &o);
            return Ok(());
        }
        // The kernel's row there now, if it is still this mapping.
        if let Ok(Some(k)) = self.view.query(r.start)
            && k.start == r.start
            && k.offset == r.offset
            && (same(&k) || k.perms == r.perms)
        {
            if same(&k) {
                self.file_names.insert(id, k.clone());
            }
            take(r, &k);
            return Ok(());
        }
        if ev.kind == nr::MMAP
            && let Some(name) = self.fd_name(ev.args[4] as i32, id)
        {
            r.name = name;
            self.file_names.insert(id, r.clone());
            return Ok(());
        }
        Err(Fallback::Unnamed)
    }

    /// The path of the process's descriptor `fd`, if it is the file `id`.
    fn fd_name(&self, fd: i32, id: (u32, u32, u64)) -> Option<Vec<u8>> {
        use std::os::unix::{ffi::OsStrExt, fs::MetadataExt};
        if fd < 0 {
            return None;
        }
        let link = format!("fd/{fd}");
        let meta = self.dir.metadata(&link).ok()?;
        let dev = meta.dev();
        if (libc::major(dev), libc::minor(dev), meta.ino()) != id {
            return None;
        }
        let target = self.dir.read_link(&link).ok()?;
        Some(target.as_os_str().as_bytes().to_vec())
    }

    /// Applies what a call did from its arguments (see `effect`); its
    /// rows stay dirty until the kernel's replace them.
    fn apply_effect(
        &mut self,
        call: Call,
        ev: &Event,
        parts: Vec<effect::Effect>,
        fallback: Fallback,
    ) -> Option<Delta> {
        let mut change = Change::default();
        for mut e in parts {
            self.name_files(&mut e.rows);
            let c = self.model.replace(e.lo, e.hi, e.rows);
            let (lo, hi) = c
                .span()
                .map_or((e.lo, e.hi), |(l, h)| (l.min(e.lo), h.max(e.hi)));
            self.dirty.insert(lo, hi);
            // Approximate until `settle` reads them.
            self.uncertain.push((lo, hi, u64::MAX));
            change.then(c);
        }
        if change.is_empty() && !call.maps_or_unmaps() {
            return None;
        }
        self.account(&change);
        let mut d = self.delta(
            ev.tid,
            ev.exit_ns,
            Cause::Syscall(call, Box::new(*ev)),
            change,
        );
        // Nothing left to show: an earlier delta, which asked the kernel
        // after this call, showed its effect already (`map unchanged now`).
        d.from_arguments = !d.change.is_empty();
        d.fallback = Some(fallback);
        Some(d)
    }

    /// Gives rows derived from an mmap of a descriptor the name, device
    /// and inode of the file the kernel has at their addresses now, if it
    /// still maps the same page of a file there (a later call may have
    /// replaced it; the descriptor itself is often closed already). Stacks
    /// are named from these rows before the batch settles, and a delta
    /// that says `(fd 3)` where the kernel says `libc.so.6` helps nobody.
    fn name_files(&mut self, rows: &mut [Region]) {
        for r in rows.iter_mut().filter(|r| effect::unnamed_file(r)) {
            let Ok(now) = self.view.range(r.start, r.end) else {
                return;
            };
            let base = r.start.wrapping_sub(r.offset);
            if let Some(k) = now
                .into_iter()
                .find(|k| k.inode != 0 && k.start.wrapping_sub(k.offset) == base)
            {
                r.name = k.name;
                r.dev_major = k.dev_major;
                r.dev_minor = k.dev_minor;
                r.inode = k.inode;
            }
        }
    }

    /// The addresses a SysV attachment at `addr` covers, as the kernel's
    /// shmdt finds them: regions from `addr` on whose offset into the
    /// segment equals their distance from `addr` (mprotect, mlock or munmap
    /// may have split it, and the call's arguments do not give its size).
    /// `regions` are the candidates in address order. Taking a region too
    /// many only makes the tracer ask the kernel about it.
    fn attachment_extent<'a>(addr: u64, regions: impl Iterator<Item = &'a Region>) -> (u64, u64) {
        let mut hi = addr + 1;
        let mut file = None;
        for r in regions.skip_while(|r| r.end <= addr) {
            let placed = r.start >= addr && r.offset == r.start - addr;
            let id = (r.dev_major, r.dev_minor, r.inode);
            match file {
                None if placed => {
                    file = Some(id);
                    hi = r.end;
                }
                Some(f) if placed && f == id => hi = r.end,
                _ => {}
            }
        }
        (addr, hi)
    }

    /// Whether the model (just synced with the kernel) shows what this
    /// successful call itself leaves on its own addresses. When it does
    /// not, a later call changed them before the tracer looked, and the
    /// delta says so instead of passing that change off as this call's.
    fn shows_own_effect(&self, call: Call, ev: &Event) -> bool {
        let a = &ev.args;
        let covered = |lo: u64, hi: u64, ok: &dyn Fn(&Region) -> bool| {
            let mut at = lo;
            for r in self.model.within(lo, hi) {
                if r.start > at || !ok(r) {
                    return false;
                }
                at = r.end;
            }
            at >= hi
        };
        let perms_are = |prot: u64, shared: Option<bool>| {
            move |r: &Region| {
                r.perms.readable() == (prot & libc::PROT_READ as u64 != 0)
                    && r.perms.writable() == (prot & libc::PROT_WRITE as u64 != 0)
                    && r.perms.executable() == (prot & libc::PROT_EXEC as u64 != 0)
                    && shared.is_none_or(|s| r.perms.shared() == s)
            }
        };
        let len = |l: u64| l.saturating_add(4095) & !4095;
        match call {
            Call::Mmap => {
                let shared = map_shared(a[3]);
                let lo = ev.ret as u64;
                covered(lo, lo + len(a[1]), &perms_are(a[2], Some(shared)))
            }
            Call::Mprotect | Call::PkeyMprotect => {
                covered(a[0], a[0] + len(a[1]), &perms_are(a[2], None))
            }
            Call::Munmap => self.model.within(a[0], a[0] + len(a[1])).next().is_none(),
            Call::Mremap => {
                let lo = ev.ret as u64;
                covered(lo, lo + len(a[2]), &|_| true)
            }
            _ => true,
        }
    }

    /// The kernel's regions of the attachment made at `addr`, walked one
    /// region at a time until one is not part of it.
    fn attached_now(&mut self, addr: u64) -> io::Result<(u64, u64)> {
        let mut seen = Vec::new();
        let mut at = addr;
        while let Some(r) = self.view.query(at)? {
            let part = r.start >= addr
                && r.offset == r.start - addr
                && seen.first().is_none_or(|f: &Region| {
                    (f.dev_major, f.dev_minor, f.inode) == (r.dev_major, r.dev_minor, r.inode)
                });
            if !part {
                break;
            }
            at = r.end;
            seen.push(r);
        }
        Ok(Self::attachment_extent(addr, seen.iter()))
    }

    fn resync_unaccounted(&mut self) -> io::Result<Change> {
        self.dirty.clear();
        let fresh = self.view.all()?;
        Ok(self.model.replace_all(fresh))
    }
}
