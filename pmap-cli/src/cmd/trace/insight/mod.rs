//! Answers for people debugging JIT compilers and allocators (issue 6):
//! who made each region, W^X flips, churn, allocator structures, JIT
//! symbols, and an HTML report.
//!
//! The event loop feeds every delta here; what comes back is printed under
//! the delta (notes), after tables (outside their frames, which hold
//! exactly what `pmap` prints) and after the tracer's summary.
//!
//! - `symbols`: names for code addresses (blazesym), cached.
//! - `stacks`: the captured user stack, checked and named; the call site.
//! - `notes`: what is said under a delta, as text lines and JSON keys.
//! - `regions`: per-region records (creator, last change, W^X history).
//! - `wx`: W^X flips and findings.
//! - `alloc`: allocator statistics (syscalls, size classes, churn, brk).
//! - `structures`: arenas, thread stacks, reservations; fragmentation.
//! - `jit`: `/tmp/perf-PID.map`.
//! - `timeline`, `report`: the HTML report.

mod alloc;
mod calls;
mod jit;
mod notes;
mod regions;
mod report;
mod stacks;
mod structures;
mod summary;
mod symbols;
mod timeline;
mod wx;

use std::{
    collections::{BTreeMap, HashMap},
    io::{self, Write},
    rc::Rc,
    time::Instant,
};

use pmap_common::Event;
use serde_json::Value;

pub use self::notes::{DeltaNotes, Note, StackNote};

/// A stack's call site (if any frame is one) and its frames, innermost
/// first.
pub type NamedStack = (Option<std::rc::Rc<str>>, Vec<std::rc::Rc<str>>);

/// Names recorded stacks after the trace (`pmap replay --leaks`), from the
/// files still on disk: the same frames and call site a live trace shows.
pub struct StackNamer {
    syms: Symbols,
    jit: JitMap,
}

impl Default for StackNamer {
    fn default() -> Self {
        StackNamer {
            syms: Symbols::new(),
            // No JIT map after the fact: anonymous code is named by address.
            jit: JitMap::at(std::path::PathBuf::new()),
        }
    }
}

impl StackNamer {
    /// The call site and every frame (innermost first) of `ev`'s stack,
    /// checked against `model` (the process's rows at the call); `None`
    /// without a stack.
    pub fn name(&mut self, pid: u32, ev: &Event, model: &RegionModel) -> Option<NamedStack> {
        let st = Stack::from_event(ev, model)?;
        let frames = st.names(pid, model, &mut self.syms, &self.jit, usize::MAX);
        Some((st.site(pid, model, &mut self.syms, &self.jit), frames))
    }
}

use self::{
    alloc::AllocStats,
    calls::{account, dual_mappings, page_up, protections, unmapped, wx_prot},
    jit::JitMap,
    regions::{RegionInfo, RegionTable, Stamp},
    stacks::{Stack, StackCache},
    symbols::Symbols,
    timeline::Timeline,
    wx::WxStats,
};
use super::{
    clock::monotonic_ns,
    delta::{Cause, Delta},
    syscalls::Call,
};
use crate::map::model::RegionModel;

/// Options from the command line that concern the insight features.
#[derive(Clone, Debug, Default)]
pub struct InsightOptions {
    /// User stacks were captured in the kernel (`--stacks`).
    pub stacks: bool,
    /// Frames to show under each delta (`--stack-depth`).
    pub stack_depth: usize,
    /// Where separate debug files are looked for (`--debug-dir`; empty:
    /// the distributions' place).
    pub debug_dirs: Vec<std::path::PathBuf>,
    /// Provenance lines after tables (`--provenance`).
    pub provenance: bool,
    /// Write a self-contained HTML report here at the end (`--report`).
    pub report: Option<std::path::PathBuf>,
    /// CLOCK_MONOTONIC when the trace started (times are shown from it).
    pub start_ns: u64,
    /// JIT functions named per line, newest first (`--jit-symbols`;
    /// `usize::MAX` for all).
    pub jit_symbols: usize,
}

/// Notes about W^X under one delta, at most (the rest are counted).
const WX_NOTES_MAX: usize = 4;

/// What is known about one traced process.
#[derive(Debug)]
struct Proc {
    pid: u32,
    regions: RegionTable,
    wx: WxStats,
    alloc: AllocStats,
    jit: JitMap,
    timeline: Timeline,
    last_rss: Option<Instant>,
    /// Latest trace time seen (ns since start).
    last_t_ns: u64,
    /// Size of `[heap]` after the last brk.
    heap: u64,
    /// Named stacks (`--stacks`).
    stacks: StackCache,
    /// Each thread's `(tid, stack pointer)` as last read by the tracer
    /// (see `Insight::threads`), for recognising thread stacks.
    threads: Vec<(u32, u64)>,
}

impl Proc {
    fn new(pid: u32) -> Proc {
        Proc {
            pid,
            regions: RegionTable::default(),
            wx: WxStats::default(),
            alloc: AllocStats::default(),
            jit: JitMap::new(pid),
            timeline: Timeline::default(),
            last_rss: None,
            last_t_ns: 0,
            heap: 0,
            stacks: StackCache::default(),
            threads: Vec::new(),
        }
    }

    /// Resident set size in bytes, read at most every 100 ms.
    fn sample_rss(&mut self, force: bool) -> Option<u64> {
        if !force && self.last_rss.is_some_and(|t| t.elapsed().as_millis() < 100) {
            return None;
        }
        self.last_rss = Some(Instant::now());
        let rss = crate::source::system::resident_bytes(self.pid)?;
        self.alloc.peak_rss_kib = self.alloc.peak_rss_kib.max(rss / 1024);
        Some(rss)
    }
}

#[derive(Debug)]
pub struct Insight {
    opts: InsightOptions,
    syms: Symbols,
    procs: HashMap<u32, Proc>,
    /// `pmap replay --report`: the time of the record being replayed
    /// (CLOCK_MONOTONIC ns). The processes are gone: their resident memory
    /// is not read (a pid may belong to another process by now).
    replay_clock: Option<u64>,
}

fn what(cause: &Cause) -> &'static str {
    match cause {
        Cause::Syscall(call, _) => call.name(),
        Cause::Observed => "observed",
        Cause::Resync => "resync",
        Cause::Polled => "polled",
        Cause::Exec => "execve",
        Cause::Settled => "settled",
    }
}

impl Insight {
    pub fn new(opts: InsightOptions) -> Insight {
        let syms = match opts.debug_dirs.is_empty() {
            true => Symbols::new(),
            false => Symbols::with_debug_dirs(opts.debug_dirs.clone()),
        };
        Insight {
            opts,
            syms,
            procs: HashMap::new(),
            replay_clock: None,
        }
    }

    /// An insight fed from a recording, for its report (`pmap replay
    /// --report`): stacks come named from the recording, times from its
    /// records ([`Insight::replay_at`]); resident memory is not recorded,
    /// so the report has no resident line.
    pub fn replaying(report: std::path::PathBuf, start_ns: u64) -> Insight {
        let mut i = Insight::new(InsightOptions {
            report: Some(report),
            start_ns,
            ..InsightOptions::default()
        });
        i.replay_clock = Some(start_ns);
        i
    }

    /// Replaying: the records fed from now on happened at `t_ns`
    /// (CLOCK_MONOTONIC).
    pub fn replay_at(&mut self, t_ns: u64) {
        self.replay_clock = Some(t_ns);
    }

    fn t_ns(&self, ktime_ns: u64) -> u64 {
        let k = if ktime_ns != 0 {
            ktime_ns
        } else {
            self.replay_clock.unwrap_or_else(monotonic_ns)
        };
        k.saturating_sub(self.opts.start_ns)
    }

    /// Looks at one delta (the model already includes it); returns what
    /// to print under it (or add to its JSON record).
    pub fn observe(&mut self, d: &Delta, model: &RegionModel) -> DeltaNotes {
        self.observe_named(d, model, None)
    }

    /// A recorded delta (`pmap replay --report`), with its stack as the
    /// trace named it (`None`: recorded without `--stacks`).
    pub fn observe_recorded(
        &mut self,
        d: &Delta,
        model: &RegionModel,
        stack: Option<Rc<StackNote>>,
    ) -> DeltaNotes {
        self.observe_named(d, model, stack)
    }

    /// [`Insight::observe`], the stack named already when `named` is given.
    fn observe_named(
        &mut self,
        d: &Delta,
        model: &RegionModel,
        named: Option<Rc<StackNote>>,
    ) -> DeltaNotes {
        let t_ns = self.t_ns(d.ktime_ns);
        let mut out = DeltaNotes::default();
        let notes = &mut out.notes;
        let p = self.procs.entry(d.pid).or_insert_with(|| Proc::new(d.pid));
        p.last_t_ns = p.last_t_ns.max(t_ns);
        let event: Option<(Call, &Event)> = match &d.cause {
            Cause::Syscall(c, ev) => Some((*c, ev)),
            _ => None,
        };

        // Names of code that moved are stale.
        if matches!(d.cause, Cause::Exec | Cause::Resync)
            || d.change
                .added
                .iter()
                .chain(&d.change.removed)
                .any(|r| r.perms.executable())
        {
            p.stacks.clear();
        }

        // Call site: the stack, named, under the delta.
        let mut site: Option<Rc<str>> = None;
        if let Some(note) = named {
            site = note.site.clone();
            out.stack = Some(note);
        } else if self.opts.stacks
            && let Some((_, ev)) = event
            && let Some(key) = StackCache::key(ev)
        {
            let cached = p.stacks.get(&key, self.syms.lines_found());
            let note = match cached {
                Some(n) => Some(n),
                None => Stack::from_event(ev, model).map(|stack| {
                    let jit_frames = stack.through_anon_code(model);
                    if !p.jit.is_empty() || p.jit.has_dump() || jit_frames {
                        p.jit.refresh(false);
                    }
                    let depth = self.opts.stack_depth.max(1);
                    let note = Rc::new(stack.note(d.pid, model, &mut self.syms, &p.jit, depth));
                    if !jit_frames {
                        p.stacks.insert(key, note.clone());
                    }
                    note
                }),
            };
            site = note.as_ref().and_then(|n| n.site.clone());
            out.stack = note;
        }

        if let Some((call, ev)) = event {
            account(p, call, ev, &d.change, t_ns, site.clone(), notes);
        }
        if matches!(d.cause, Cause::Exec) {
            p.timeline.mark(t_ns, "exec", "execve".into());
            p.jit = JitMap::new(d.pid);
        }
        // A runtime maps its jitdump file so that tools can find it.
        // (The name is only formatted when a row could be one: this runs
        // once per traced call.)
        if let Some(r) = d
            .change
            .added
            .iter()
            .filter(|r| r.name.ends_with(b".dump"))
            .find(|r| r.name.ends_with(format!("/jit-{}.dump", d.pid).as_bytes()))
        {
            p.jit
                .found_dump(String::from_utf8_lossy(&r.name).into_owned().into());
        }

        // Region records: creation, changes, W^X.
        let stamp = Stamp {
            tid: d.tid,
            t_ns,
            what: what(&d.cause),
            site,
        };
        // What the call made new: an added region is created by it only if
        // it lies inside that range. A region the call merged into a
        // neighbour (or one it split off an older region) keeps the older
        // region's creation and is marked changed.
        let created_range: Option<(u64, u64)> = match event {
            Some((Call::Mmap, ev)) if ev.ret >= 0 => {
                let lo = ev.ret as u64;
                Some((lo, lo.saturating_add(page_up(ev.args[1]))))
            }
            // shmat's size is not in its arguments; segments never merge.
            Some((Call::Shmat, _)) => Some((0, u64::MAX)),
            Some(_) => None,
            None if matches!(d.cause, Cause::Exec) => Some((0, u64::MAX)),
            None => None,
        };
        let map_stack = event.is_some_and(|(call, ev)| {
            call == Call::Mmap && ev.args[3] & libc::MAP_STACK as u64 != 0
        });
        let Proc {
            regions, wx, jit, ..
        } = p;
        regions.apply(&d.change, |a, from, info| {
            let made = created_range.is_some_and(|(lo, hi)| lo <= a.start && a.end <= hi);
            if made || from.is_empty() {
                *info = RegionInfo {
                    created: Some(stamp.clone()),
                    map_stack,
                    ..Default::default()
                };
            } else {
                info.changed = Some(stamp.clone());
            }
        });
        let wx_events = match event {
            Some((call, ev)) => protections(wx, call, ev, &d.change, model, t_ns),
            None if matches!(d.cause, Cause::Exec) => {
                wx.clear(t_ns);
                Vec::new()
            }
            None => Vec::new(),
        };
        let by = stamp.site.as_ref();
        notes.extend(wx_events.iter().take(WX_NOTES_MAX).map(|e| match e {
            wx::Event::Flip {
                lo,
                hi,
                flip,
                before,
                after,
                count,
            } => Note::wx_flip(
                *lo,
                *hi,
                flip.label(),
                &wx::prot_str(*before),
                &wx::prot_str(*after),
                *count,
                by,
            ),
            wx::Event::Rwx { lo, hi } => Note::wx_rwx(*lo, *hi, by),
        }));
        if wx_events.len() > WX_NOTES_MAX {
            notes.push(Note::wx_more(wx_events.len() - WX_NOTES_MAX));
        }
        dual_mappings(model, &d.change, wx, notes);

        // JIT: forget functions in unmapped code; name the ones affected.
        if !jit.is_empty() {
            for r in unmapped(&d.change) {
                jit.unmapped(r.0, r.1);
            }
        }
        if let Some((call, ev)) = event
            && matches!(
                call,
                Call::Mprotect | Call::PkeyMprotect | Call::Mmap | Call::Munmap
            )
            && ev.ret >= 0
        {
            let touches_code = d
                .change
                .added
                .iter()
                .chain(&d.change.removed)
                .any(|r| r.inode == 0 && r.perms.executable());
            if touches_code {
                jit.refresh(false);
            }
            if !jit.is_empty() {
                let (lo, len) = if call == Call::Mmap {
                    (ev.ret as u64, ev.args[1])
                } else {
                    (ev.args[0], ev.args[1])
                };
                let names = jit.within(lo, lo.saturating_add(len));
                if !names.is_empty() {
                    let prot = match call {
                        Call::Munmap => None,
                        _ => Some(wx_prot(ev.args[2])),
                    };
                    notes.push(Note::jit_symbols(
                        call.name(),
                        prot.as_deref(),
                        &names,
                        self.opts.jit_symbols,
                    ));
                }
            }
        }

        // Peaks, timeline.
        let mapped = model.mapped();
        if mapped > p.alloc.peak_mapped.1 {
            p.alloc.peak_mapped = (t_ns, mapped);
        }
        let rss = match self.replay_clock {
            Some(_) => None,
            None => p.sample_rss(false),
        };
        if self.opts.report.is_some() {
            p.timeline.update(model, &d.change.removed, &d.change.added);
            p.timeline.sample(t_ns, rss);
        }
        out
    }

    /// Lines to print after a table of process `pid` (outside its frame,
    /// which holds exactly what `pmap` prints).
    pub fn after_table(&mut self, pid: u32, model: &RegionModel) -> Vec<String> {
        let t_ns = self.t_ns(0);
        let p = self.procs.entry(pid).or_insert_with(|| Proc::new(pid));
        // Replaying, the perf map of that pid is another process's or none.
        if self.replay_clock.is_none() {
            p.jit.refresh(true);
        }
        if self.opts.report.is_some() {
            p.timeline.update(model, &[], &[]);
            let rss = match self.replay_clock {
                Some(_) => None,
                None => p.sample_rss(true),
            };
            p.timeline.sample(t_ns, rss);
        }
        let mut out = Vec::new();
        if !p.jit.is_empty() {
            for r in model
                .regions()
                .filter(|r| r.perms.executable() && r.inode == 0)
            {
                let names = p.jit.within(r.start, r.end);
                if !names.is_empty() {
                    out.push(format!(
                        "JIT {:016x}-{:016x} {} {}",
                        r.start,
                        r.end,
                        r.perms.as_str(),
                        jit::list(&names, self.opts.jit_symbols)
                    ));
                }
            }
        }
        if self.opts.provenance {
            out.extend(summary::provenance(model, &p.regions));
        }
        out
    }

    /// Called once at the end: writes the report.
    pub fn finish(&mut self) -> anyhow::Result<()> {
        if let Some(path) = self.write_report()? {
            eprintln!("pmap trace: report written to {}", path.display());
        }
        Ok(())
    }

    /// Writes the report (`--report`); returns where, if one was asked for.
    pub fn write_report(&self) -> anyhow::Result<Option<&std::path::Path>> {
        let Some(path) = &self.opts.report else {
            return Ok(None);
        };
        let mut procs: Vec<&Proc> = self.procs.values().collect();
        procs.sort_by_key(|p| p.pid);
        report::write(path, &procs)?;
        Ok(Some(path))
    }

    /// The threads of process `pid` and their stack pointers, read now
    /// (while it lives), for the summary's recognised thread stacks.
    pub fn threads(&mut self, pid: u32, threads: Vec<(u32, u64)>) {
        let p = self.procs.entry(pid).or_insert_with(|| Proc::new(pid));
        p.threads = threads;
    }

    /// Writes the text summary sections for process `pid`. `calls` are
    /// the tracer's counts of every traced call (its summary's `calls:`),
    /// so that both sections give the same totals.
    pub fn summary(
        &mut self,
        pid: u32,
        model: &RegionModel,
        calls: &BTreeMap<Call, (u64, u64)>,
        out: &mut dyn Write,
    ) -> io::Result<()> {
        let t_ns = self.t_ns(0);
        let stacks = self.opts.stacks;
        let cost = self.syms.cost();
        let p = self.procs.entry(pid).or_insert_with(|| Proc::new(pid));
        p.sample_rss(true);
        p.jit.refresh(true);
        summary::text(p, model, calls, t_ns, stacks, cost, out)
    }

    /// The same as JSON, merged into the `summary` record under "insight".
    pub fn summary_json(
        &mut self,
        pid: u32,
        model: &RegionModel,
        calls: &BTreeMap<Call, (u64, u64)>,
    ) -> Option<Value> {
        let t_ns = self.t_ns(0);
        let p = self.procs.entry(pid).or_insert_with(|| Proc::new(pid));
        p.sample_rss(true);
        p.jit.refresh(true);
        Some(summary::json(p, model, calls, t_ns))
    }
}
