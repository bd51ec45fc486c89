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

use std::collections::HashMap;

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
/// module (by start address) was made from.
#[derive(Default)]
struct ProcessModules {
    unwinder: UnwinderX86_64<Bytes>,
    /// Module start -> (end, device, inode) it was made from.
    made: HashMap<u64, (u64, u32, u32, u64)>,
}

/// Unwinds copied user stacks (see the module documentation).
#[derive(Default)]
pub struct StackUnwinder {
    files: UnwindFiles,
    procs: HashMap<u32, ProcessModules>,
    cache: Option<CacheX86_64>,
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
    /// Replaces `ev`'s stack with the frames unwound from `copy` (the
    /// registers) and `bytes` (the stack from `copy.sp` up), with the
    /// modules mapped in `model`.
    pub fn unwind(&mut self, ev: &mut Event, copy: &StackCopy, bytes: &[u8], model: &RegionModel) {
        if ev.flags & FLAG_STACK == 0 || ev.stack_len == 0 {
            return;
        }
        self.unwound += 1;
        let ip = ev.stack[0];
        let read = |addr: u64| -> Result<u64, ()> {
            let at = usize::try_from(addr.checked_sub(copy.sp).ok_or(())?).map_err(|_| ())?;
            let word = bytes.get(at..at.checked_add(8).ok_or(())?).ok_or(())?;
            Ok(u64::from_le_bytes(word.try_into().map_err(|_| ())?))
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

    /// Forgets the processes not in `live` (their modules).
    pub fn retain(&mut self, live: impl Fn(u32) -> bool) {
        self.procs.retain(|&pid, _| live(pid));
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
