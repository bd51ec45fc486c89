//! `--stacks` with `--stack-bytes N`: the kernel program sends, with each
//! call, the user registers (ip, sp, bp) and the top N bytes of the user
//! stack; this unwinds that copy with framehop (the unwinder samply uses),
//! from the call-frame information of the modules mapped in the process
//! (`.eh_frame`, `.debug_frame`), and with frame pointers where a frame has
//! none (JIT code, a module without call-frame information). Debian's
//! libc, python and node are built without frame pointers: the kernel's
//! own frame-pointer walk stops at their first frame, this goes on.
//!
//! The result replaces the record's stack in the shape everything else
//! reads (the recording too): instruction addresses, innermost first, at
//! most `MAX_STACK_DEPTH`, with `FLAG_UNWOUND`; `FLAG_STACK_END` when the
//! unwind reached the outermost frame. When the unwind gets no further
//! than the kernel's walk did (no module known, the copy too short), the
//! kernel's walk is kept.
//!
//! Modules come from the tracer's region model at the time the batch is
//! read: each executable file-backed region becomes a framehop module when
//! a frame first lands in it (and is replaced when another file is mapped
//! there). Call-frame sections are read once per file (device, inode),
//! shared by every process that maps it (`files`).

mod files;

use std::{cell::Cell, collections::HashMap};

use framehop::{
    ExplicitModuleSectionInfo, Module, Unwinder as _,
    x86_64::{CacheX86_64, UnwindRegsX86_64, UnwinderX86_64},
};
use pmap_common::{
    Event, FLAG_SP_WORD, FLAG_STACK, FLAG_STACK_END, FLAG_UNWOUND, MAX_STACK_DEPTH, StackCopy,
};

use self::files::{FileUnwind, UnwindFiles};
use crate::map::{model::RegionModel, region::Region};

/// Section bytes, shared between every module made from the same file.
type Bytes = std::rc::Rc<[u8]>;

/// One process's modules: framehop's unwinder, and which file each
/// module (by start address) was made from; and how much stack its
/// unwinds have needed (see [`Need`]).
#[derive(Default)]
struct ProcessModules {
    unwinder: UnwinderX86_64<Bytes>,
    /// Module start -> (end, device, inode) it was made from.
    made: HashMap<u64, (u64, u32, u32, u64)>,
    need: Need,
}

/// How many bytes of stack a process's unwinds read: copying the whole
/// `--stack-bytes` costs the traced program about 0.2x per 4 KiB on a
/// mapping loop (BENCHMARKS.md), and most calls need far less (a C
/// program's call site is a few hundred bytes up). Once [`LEARN`] unwinds
/// have been whole, the kernel program is told to copy what the deepest
/// of them read plus [`MARGIN`]; an unwind that runs out of copy doubles
/// it again, up to `--stack-bytes`.
#[derive(Clone, Copy, Debug, Default)]
struct Need {
    /// What the kernel program was told (`None`: all of `--stack-bytes`).
    told: Option<u64>,
    /// The most any unwind read since the last change.
    deepest: u64,
    /// Unwinds since the last change.
    seen: u32,
}

/// Unwinds seen whole before the copy is shortened.
const LEARN: u32 = 64;
/// The copy of a process's first calls, before anything is learned: the
/// first batch arrives while the tracer loads the modules' unwind tables
/// and symbols, and copies of a full 8 KiB fill the ring (4,000 records in
/// 32 MiB) before that is done; a short unwind doubles it (see [`Need`]).
const FIRST_COPY: u64 = 2048;
/// Room left above the deepest read: callers a little deeper still unwind.
/// (1 KiB cost the mapping loop about 0.1x more, through a copy one size
/// class bigger; a caller deeper than this gets one cut stack, then twice
/// the copy.)
const MARGIN: u64 = 256;

/// Unwinds copied user stacks (see the module documentation).
#[derive(Default)]
pub struct StackUnwinder {
    files: UnwindFiles,
    procs: HashMap<u32, ProcessModules>,
    cache: Option<CacheX86_64>,
    /// `--stack-bytes`: the most the kernel program copies.
    asked: u64,
    /// Copy sizes to tell the kernel program, by process.
    updates: Vec<(u32, u64)>,
    /// Copies read with their calls and not yet unwound, by (thread, exit
    /// time) of the call: the registers and where the bytes are in `arena`
    /// (one buffer for the batch, not an allocation per call).
    held: HashMap<(u32, u64), (StackCopy, std::ops::Range<usize>)>,
    arena: Vec<u8>,
    /// Stacks unwound, and those where the unwind was kept (went further
    /// than the kernel's walk).
    pub unwound: u64,
    pub kept: u64,
}

impl std::fmt::Debug for StackUnwinder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StackUnwinder")
            .field("processes", &self.procs.len())
            .field("unwound", &self.unwound)
            .field("kept", &self.kept)
            .finish()
    }
}

/// Most times one stack is unwound again after a frame landed in a module
/// not yet known (each time adds at least one module).
const MAX_RETRIES: usize = 16;

impl StackUnwinder {
    /// An unwinder for copies of at most `stack_bytes`.
    pub fn new(stack_bytes: u64) -> StackUnwinder {
        StackUnwinder {
            asked: stack_bytes,
            ..StackUnwinder::default()
        }
    }

    /// The copy size to give the kernel program for process `pid` when it
    /// starts being traced (`Probes::set_stack_need`), remembered as what
    /// it was told; `None` when that is all of `--stack-bytes`.
    pub fn first_copy(&mut self, pid: u32) -> Option<u64> {
        let first = FIRST_COPY.min(self.asked);
        if first == 0 || first >= self.asked {
            return None;
        }
        self.procs.entry(pid).or_default().need.told = Some(first);
        Some(first)
    }

    /// The copy sizes learned since the last call, by process, for the
    /// kernel program (`Probes::set_stack_need`).
    pub fn take_updates(&mut self) -> Vec<(u32, u64)> {
        std::mem::take(&mut self.updates)
    }

    /// Keeps the copy of `ev`'s stack until the call is applied
    /// ([`StackUnwinder::unwind_held`]): the calls of a batch are read
    /// before any is applied, and a library mapped by an earlier call of
    /// the batch (at startup, most are) must be in the map the unwind
    /// uses.
    pub fn hold(&mut self, ev: &Event, copy: &StackCopy, bytes: &[u8]) {
        let at = self.arena.len();
        self.arena.extend_from_slice(bytes);
        self.held
            .insert((ev.tid, ev.exit_ns), (*copy, at..self.arena.len()));
    }

    /// Unwinds the copy held for `ev`, if any (see [`StackUnwinder::unwind`]).
    pub fn unwind_held(&mut self, ev: &mut Event, model: &RegionModel) {
        if self.held.is_empty() {
            return;
        }
        if let Some((copy, range)) = self.held.remove(&(ev.tid, ev.exit_ns)) {
            let arena = std::mem::take(&mut self.arena);
            if let Some(bytes) = arena.get(range) {
                self.unwind(ev, &copy, bytes, model);
            }
            self.arena = arena;
        }
    }

    /// Replaces `ev`'s stack with the frames unwound from `copy` (the
    /// registers) and `bytes` (the stack from `copy.sp` up), with the
    /// modules mapped in `model`.
    pub fn unwind(&mut self, ev: &mut Event, copy: &StackCopy, bytes: &[u8], model: &RegionModel) {
        if ev.flags & FLAG_STACK == 0 || ev.stack_len == 0 {
            return;
        }
        self.unwound += 1;
        let ip = ev.stack[0];
        // How far up the unwind read, and whether it wanted more than was
        // copied (but within what a copy may hold).
        let (deepest, short) = (Cell::new(0u64), Cell::new(false));
        let asked = self.asked;
        let read = |addr: u64| -> Result<u64, ()> {
            let off = addr.checked_sub(copy.sp).ok_or(())?;
            let at = usize::try_from(off).map_err(|_| ())?;
            match bytes.get(at..at.checked_add(8).ok_or(())?) {
                Some(word) => {
                    deepest.set(deepest.get().max(off + 8));
                    Ok(u64::from_le_bytes(word.try_into().map_err(|_| ())?))
                }
                None => {
                    if off < asked {
                        short.set(true);
                    }
                    Err(())
                }
            }
        };
        let cache = self.cache.get_or_insert_with(CacheX86_64::new);
        let procs = self.procs.entry(ev.tgid).or_default();
        let mut frames = [0u64; MAX_STACK_DEPTH];
        let mut n = 0;
        let mut ended = false;
        for _ in 0..MAX_RETRIES {
            n = 0;
            ended = false;
            let mut missing: Option<&Region> = None;
            let mut read = read;
            let regs = UnwindRegsX86_64::new(ip, copy.sp, copy.bp);
            let mut it = procs.unwinder.iter_frames(ip, regs, cache, &mut read);
            loop {
                match it.next() {
                    Ok(Some(f)) => {
                        let lookup = f.address_for_lookup();
                        if let Some(r) = model.containing(lookup)
                            && r.inode != 0
                            && r.perms.executable()
                            && !procs.knows(r)
                        {
                            // framehop guessed this frame's caller with
                            // frame pointers: add the module, start over.
                            missing = Some(r);
                            break;
                        }
                        if n == MAX_STACK_DEPTH {
                            break;
                        }
                        frames[n] = f.address();
                        n += 1;
                    }
                    Ok(None) => {
                        ended = true;
                        break;
                    }
                    Err(_) => break,
                }
            }
            let Some(r) = missing else { break };
            let file = self.files.get(ev.tgid, r);
            procs.add(r, file);
        }
        if let Some(told) = procs
            .need
            .learn(deepest.get(), short.get() && !ended, self.asked)
        {
            self.updates.push((ev.tgid, told));
        }
        // The kernel's walk: the wrapper's caller (the word at sp) and the
        // frame-pointer chain. Kept when the unwind did no better.
        let walked = ev.stack_len as usize;
        if n < 2 || (!ended && n < walked) {
            return;
        }
        self.kept += 1;
        ev.stack = frames;
        ev.stack_len = n as u32;
        ev.flags &= !(FLAG_SP_WORD | FLAG_STACK_END);
        ev.flags |= FLAG_UNWOUND;
        if ended {
            ev.flags |= FLAG_STACK_END;
        }
    }

    /// Forgets the processes not in `live` (their modules), and copies
    /// whose call was never applied (its process has no session).
    pub fn retain(&mut self, live: impl Fn(u32) -> bool) {
        self.procs.retain(|&pid, _| live(pid));
        self.held.clear();
        self.arena.clear();
    }
}

impl Need {
    /// Takes one unwind that read `deepest` bytes (`short`: it wanted more
    /// than the copy held); returns a new copy size for the kernel
    /// program when there is one.
    fn learn(&mut self, deepest: u64, short: bool, asked: u64) -> Option<u64> {
        let round = |n: u64| n.div_ceil(512) * 512;
        if short {
            let told = self.told?;
            let more = round(told.saturating_mul(2)).min(asked);
            *self = Need {
                told: Some(more),
                ..Need::default()
            };
            return (more != told).then_some(more);
        }
        self.deepest = self.deepest.max(deepest);
        self.seen = self.seen.saturating_add(1);
        if self.told.is_some() || self.seen < LEARN {
            return None;
        }
        let n = round(self.deepest + MARGIN).min(asked);
        self.told = Some(n);
        (n < asked).then_some(n)
    }
}

impl ProcessModules {
    /// Whether a module was made from region `r` (same place, same file).
    fn knows(&self, r: &Region) -> bool {
        self.made.get(&r.start) == Some(&(r.end, r.dev_major, r.dev_minor, r.inode))
    }

    /// Makes region `r` a module, from its file's call-frame information
    /// (none: framehop unwinds its frames with frame pointers), replacing
    /// whatever module was there.
    fn add(&mut self, r: &Region, file: Option<&FileUnwind>) {
        if self.made.remove(&r.start).is_some() {
            self.unwinder.remove_module(r.start);
        }
        // Modules that overlap this region belong to files unmapped since.
        let stale: Vec<u64> = self
            .made
            .iter()
            .filter(|&(&start, &(end, ..))| start < r.end && r.start < end)
            .map(|(&start, _)| start)
            .collect();
        for start in stale {
            self.made.remove(&start);
            self.unwinder.remove_module(start);
        }
        self.made
            .insert(r.start, (r.end, r.dev_major, r.dev_minor, r.inode));
        let (base_avma, info) = match file.and_then(|f| Some((f, f.address_of(r.offset)?))) {
            Some((f, linked)) => (r.start.wrapping_sub(linked), f.section_info()),
            None => (r.start, empty_info()),
        };
        let name = String::from_utf8_lossy(&r.name).into_owned();
        self.unwinder
            .add_module(Module::new(name, r.start..r.end, base_avma, info));
    }
}

fn empty_info() -> ExplicitModuleSectionInfo<Bytes> {
    ExplicitModuleSectionInfo {
        base_svma: 0,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests;
