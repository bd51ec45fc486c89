//! The operations: each picks its target among the owned blocks, makes the
//! call, and updates the bookkeeping only from what the kernel says it did.

use std::collections::BTreeMap;

use crate::blocks::{Backing, Block, Blocks, Page};
use crate::resources::{FILE_PAGES, Resources};
use crate::rng::Rng;
use crate::sys::{self, PAGE};

/// Bounds that keep the process at a few hundred regions.
pub const MAX_BLOCKS: usize = 110;
pub const MAX_PAGES: usize = 3000;
const MAX_SHM_ATTACHES: usize = 10;
const MAX_BRK_PAGES: usize = 64;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Op {
    MapAnon,
    MapAnonShared,
    MapFile,
    MapMemfd,
    ShmAttach,
    ShmDetach,
    FixedOverlay,
    MunmapPart,
    MunmapWhole,
    Mprotect,
    PkeyMprotect,
    MremapGrowInPlace,
    MremapGrowMaymove,
    MremapShrink,
    MremapMoveFixed,
    MremapDontunmap,
    BrkGrow,
    BrkShrink,
    Madvise,
    Mlock,
    Munlock,
    Touch,
    Dlopen,
    Dlclose,
    // Run by the main thread only (threads.rs, main.rs).
    Burst,
    StackGrow,
    ThreadStart,
    ThreadEnd,
}

impl Op {
    pub const ALL: [Op; 28] = [
        Op::MapAnon,
        Op::MapAnonShared,
        Op::MapFile,
        Op::MapMemfd,
        Op::ShmAttach,
        Op::ShmDetach,
        Op::FixedOverlay,
        Op::MunmapPart,
        Op::MunmapWhole,
        Op::Mprotect,
        Op::PkeyMprotect,
        Op::MremapGrowInPlace,
        Op::MremapGrowMaymove,
        Op::MremapShrink,
        Op::MremapMoveFixed,
        Op::MremapDontunmap,
        Op::BrkGrow,
        Op::BrkShrink,
        Op::Madvise,
        Op::Mlock,
        Op::Munlock,
        Op::Touch,
        Op::Dlopen,
        Op::Dlclose,
        Op::Burst,
        Op::StackGrow,
        Op::ThreadStart,
        Op::ThreadEnd,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Op::MapAnon => "mmap_anon",
            Op::MapAnonShared => "mmap_anon_shared",
            Op::MapFile => "mmap_file",
            Op::MapMemfd => "mmap_memfd",
            Op::ShmAttach => "shmat",
            Op::ShmDetach => "shmdt",
            Op::FixedOverlay => "mmap_fixed_overlay",
            Op::MunmapPart => "munmap_part",
            Op::MunmapWhole => "munmap_whole",
            Op::Mprotect => "mprotect",
            Op::PkeyMprotect => "pkey_mprotect",
            Op::MremapGrowInPlace => "mremap_grow_in_place",
            Op::MremapGrowMaymove => "mremap_grow_maymove",
            Op::MremapShrink => "mremap_shrink",
            Op::MremapMoveFixed => "mremap_move_fixed",
            Op::MremapDontunmap => "mremap_dontunmap",
            Op::BrkGrow => "brk_grow",
            Op::BrkShrink => "brk_shrink",
            Op::Madvise => "madvise",
            Op::Mlock => "mlock",
            Op::Munlock => "munlock",
            Op::Touch => "touch",
            Op::Dlopen => "dlopen",
            Op::Dlclose => "dlclose",
            Op::Burst => "thread_burst",
            Op::StackGrow => "stack_grow",
            Op::ThreadStart => "thread_start",
            Op::ThreadEnd => "thread_end",
        }
    }

    /// Ops that only the main thread may run (they create or join threads,
    /// or grow the main stack).
    pub fn main_only(self) -> bool {
        matches!(
            self,
            Op::Burst | Op::StackGrow | Op::ThreadStart | Op::ThreadEnd
        )
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Done,
    /// The call failed and, by the kernel's contract, changed nothing we track.
    Failed(i32),
    /// No suitable target right now.
    Skipped,
}

#[derive(Default)]
pub struct Stats {
    /// op name -> [done, failed, skipped]
    pub by_op: BTreeMap<&'static str, [u64; 3]>,
}

impl Stats {
    pub fn record(&mut self, op: Op, out: Outcome) {
        let e = self.by_op.entry(op.name()).or_default();
        match out {
            Outcome::Done => e[0] += 1,
            Outcome::Failed(_) => e[1] += 1,
            Outcome::Skipped => e[2] += 1,
        }
    }
}

pub struct World {
    pub blocks: Blocks,
    pub res: Resources,
    pub stats: Stats,
}

fn random_prot(rng: &mut Rng) -> i32 {
    const R: i32 = libc::PROT_READ;
    const W: i32 = libc::PROT_WRITE;
    const X: i32 = libc::PROT_EXEC;
    *rng.pick(&[R, R | W, R | W, R | W, libc::PROT_NONE, R | X, R])
}

fn pages(n: usize, prot: i32, backed: bool) -> Vec<Page> {
    vec![Page { prot, backed }; n]
}

fn done_or(r: sys::SysResult) -> Outcome {
    match r {
        Ok(_) => Outcome::Done,
        Err(e) => Outcome::Failed(e),
    }
}

/// The source of a new mapping: flags, fd, offset and which of its pages are backed.
struct Source {
    backing: Backing,
    flags: i32,
    fd: i32,
    close_after: bool,
    off_pages: usize,
    /// Pages of the object from `off_pages` on (touching past them is SIGBUS).
    avail: usize,
}

impl World {
    fn source(&self, rng: &mut Rng, backing: Backing) -> Result<Source, String> {
        let anon = libc::MAP_ANONYMOUS;
        let shared = rng.chance(1, 2);
        let share = if shared {
            libc::MAP_SHARED
        } else {
            libc::MAP_PRIVATE
        };
        let (fd, close_after) = match backing {
            Backing::File => self.res.file_fd(rng.below(self.res.files.len()))?,
            Backing::Memfd => (*rng.pick(&self.res.memfds), false),
            _ => (-1, false),
        };
        Ok(match backing {
            Backing::Anon => {
                let mut flags = libc::MAP_PRIVATE | anon;
                if rng.chance(1, 4) {
                    flags |= libc::MAP_NORESERVE;
                }
                Source {
                    backing,
                    flags,
                    fd,
                    close_after,
                    off_pages: 0,
                    avail: usize::MAX,
                }
            }
            Backing::AnonShared => Source {
                backing,
                flags: libc::MAP_SHARED | anon,
                fd,
                close_after,
                off_pages: 0,
                avail: usize::MAX,
            },
            Backing::File | Backing::Memfd => {
                let off_pages = rng.below(FILE_PAGES);
                Source {
                    backing,
                    flags: share,
                    fd,
                    close_after,
                    off_pages,
                    avail: FILE_PAGES - off_pages,
                }
            }
            Backing::Shm => unreachable!("shm attaches are not made by mmap"),
        })
    }

    /// Page count for a new mapping from `src`.
    fn size_for(rng: &mut Rng, src: &Source) -> usize {
        if src.avail == usize::MAX {
            rng.range(1, 32)
        } else {
            // Sometimes a little past the end of the object, as programs do.
            rng.range(1, src.avail + 2)
        }
    }

    fn page_states(src: &Source, n: usize, prot: i32) -> Vec<Page> {
        let mut p = pages(n, prot, true);
        if src.backing == Backing::AnonShared {
            return p;
        }
        for (j, pg) in p.iter_mut().enumerate() {
            pg.backed = j < src.avail;
        }
        p
    }

    fn full(&self) -> bool {
        self.blocks.list.len() >= MAX_BLOCKS || self.blocks.total_pages() >= MAX_PAGES
    }

    pub fn apply(&mut self, op: Op, rng: &mut Rng) -> Outcome {
        let out = match self.run(op, rng) {
            Ok(o) => o,
            Err(msg) => {
                eprintln!("trace_workload: {}: {msg}", op.name());
                Outcome::Skipped
            }
        };
        self.stats.record(op, out);
        out
    }

    fn run(&mut self, op: Op, rng: &mut Rng) -> Result<Outcome, String> {
        Ok(match op {
            Op::MapAnon => self.map_new(rng, Backing::Anon)?,
            Op::MapAnonShared => self.map_new(rng, Backing::AnonShared)?,
            Op::MapFile => self.map_new(rng, Backing::File)?,
            Op::MapMemfd => self.map_new(rng, Backing::Memfd)?,
            Op::ShmAttach => self.shm_attach(rng),
            Op::ShmDetach => self.shm_detach(rng),
            Op::FixedOverlay => self.fixed_overlay(rng)?,
            Op::MunmapPart => self.munmap(rng, false),
            Op::MunmapWhole => self.munmap(rng, true),
            Op::Mprotect => self.protect(rng, false),
            Op::PkeyMprotect => self.protect(rng, true),
            Op::MremapGrowInPlace => self.mremap_grow_in_place(rng),
            Op::MremapGrowMaymove => self.mremap_grow_maymove(rng),
            Op::MremapShrink => self.mremap_shrink(rng),
            Op::MremapMoveFixed => self.mremap_move_fixed(rng),
            Op::MremapDontunmap => self.mremap_dontunmap(rng),
            Op::BrkGrow => self.brk_grow(rng),
            Op::BrkShrink => self.brk_shrink(rng),
            Op::Madvise => self.madvise(rng),
            Op::Mlock => self.lock(rng, true),
            Op::Munlock => self.lock(rng, false),
            Op::Touch => self.touch(rng),
            Op::Dlopen => self.dl(rng, true),
            Op::Dlclose => self.dl(rng, false),
            Op::Burst | Op::StackGrow | Op::ThreadStart | Op::ThreadEnd => {
                unreachable!("main-thread op {op:?} given to World::apply")
            }
        })
    }

    /// Maps a whole file; used at setup for the file unlinked later.
    pub fn map_whole_file(&mut self, i: usize) -> Result<(), String> {
        let (fd, close_after) = self.res.file_fd(i)?;
        let prot = libc::PROT_READ | libc::PROT_WRITE;
        let r = sys::mmap(0, FILE_PAGES * PAGE, prot, libc::MAP_SHARED, fd, 0);
        if close_after {
            sys::close(fd);
        }
        let addr = r.map_err(|e| format!("mmap of file {i}: errno {e}"))?;
        self.blocks.push(Block::new(
            addr,
            pages(FILE_PAGES, prot, true),
            Backing::File,
        ));
        Ok(())
    }

    /// Attaches every segment once as an anchor and marks the early ones
    /// for removal (the anchor keeps them attachable).
    pub fn anchor_shm(&mut self) -> Result<(), String> {
        for s in &self.res.shm {
            let addr = sys::shmat(s.id, 0).map_err(|e| format!("shmat anchor: errno {e}"))?;
            let mut b = Block::new(
                addr,
                pages(s.pages, libc::PROT_READ | libc::PROT_WRITE, true),
                Backing::Shm,
            );
            b.anchor = true;
            self.blocks.push(b);
            if s.removed_early {
                sys::shm_rmid(s.id).map_err(|e| format!("IPC_RMID: errno {e}"))?;
            }
        }
        Ok(())
    }

    fn map_new(&mut self, rng: &mut Rng, backing: Backing) -> Result<Outcome, String> {
        if self.full() {
            return Ok(Outcome::Skipped);
        }
        let src = self.source(rng, backing)?;
        let n = Self::size_for(rng, &src);
        let prot = random_prot(rng);
        let mut flags = src.flags;
        if rng.chance(1, 8) {
            flags |= libc::MAP_POPULATE;
        }
        let r = sys::mmap(0, n * PAGE, prot, flags, src.fd, src.off_pages * PAGE);
        if src.close_after {
            sys::close(src.fd);
        }
        Ok(match r {
            Ok(addr) => {
                self.blocks
                    .push(Block::new(addr, Self::page_states(&src, n, prot), backing));
                Outcome::Done
            }
            Err(e) => Outcome::Failed(e),
        })
    }

    fn shm_attach(&mut self, rng: &mut Rng) -> Outcome {
        let attached = self
            .blocks
            .list
            .iter()
            .filter(|b| b.backing == Backing::Shm)
            .count();
        if attached >= MAX_SHM_ATTACHES || self.full() {
            return Outcome::Skipped;
        }
        let seg = &self.res.shm[rng.below(self.res.shm.len())];
        let rdonly = rng.chance(1, 3);
        let flags = if rdonly { libc::SHM_RDONLY } else { 0 };
        let prot = if rdonly {
            libc::PROT_READ
        } else {
            libc::PROT_READ | libc::PROT_WRITE
        };
        match sys::shmat(seg.id, flags) {
            Ok(addr) => {
                self.blocks
                    .push(Block::new(addr, pages(seg.pages, prot, true), Backing::Shm));
                Outcome::Done
            }
            Err(e) => Outcome::Failed(e),
        }
    }

    fn shm_detach(&mut self, rng: &mut Rng) -> Outcome {
        let Some(i) = self
            .blocks
            .pick(rng, |b| b.backing == Backing::Shm && !b.anchor)
        else {
            return Outcome::Skipped;
        };
        match sys::shmdt(self.blocks.list[i].addr) {
            Ok(_) => {
                self.blocks.list.swap_remove(i);
                Outcome::Done
            }
            Err(e) => Outcome::Failed(e),
        }
    }

    fn fixed_overlay(&mut self, rng: &mut Rng) -> Result<Outcome, String> {
        let Some(i) = self.blocks.pick(rng, Block::movable) else {
            return Ok(Outcome::Skipped);
        };
        let (s, l) = self.blocks.list[i].sub_range(rng);
        let backing = *rng.pick(&[
            Backing::Anon,
            Backing::AnonShared,
            Backing::File,
            Backing::Memfd,
        ]);
        let mut src = self.source(rng, backing)?;
        if src.avail != usize::MAX {
            // Keep the overlay inside the object when it fits.
            src.off_pages = src.off_pages.min(FILE_PAGES.saturating_sub(l));
            src.avail = FILE_PAGES - src.off_pages;
        }
        let prot = random_prot(rng);
        let addr = self.blocks.list[i].page_addr(s);
        let r = sys::mmap(
            addr,
            l * PAGE,
            prot,
            src.flags | libc::MAP_FIXED,
            src.fd,
            src.off_pages * PAGE,
        );
        if src.close_after {
            sys::close(src.fd);
        }
        Ok(match r {
            Ok(a) => {
                assert_eq!(a, addr, "MAP_FIXED returned another address");
                self.blocks.carve(i, s, l);
                self.blocks
                    .push(Block::new(addr, Self::page_states(&src, l, prot), backing));
                Outcome::Done
            }
            Err(e) => Outcome::Failed(e),
        })
    }

    fn munmap(&mut self, rng: &mut Rng, whole: bool) -> Outcome {
        let pick = |b: &Block| b.movable() && !b.anchor && (whole || b.pages.len() >= 2);
        let Some(i) = self.blocks.pick(rng, pick) else {
            return Outcome::Skipped;
        };
        let b = &self.blocks.list[i];
        let n = b.pages.len();
        let (s, l) = if whole {
            (0, n)
        } else {
            // A head, a tail, or a hole in the middle (cutting the block in two).
            let (mut s, mut l) = b.sub_range(rng);
            if l == n {
                l = n - 1;
                s = rng.below(2);
            }
            (s, l)
        };
        match sys::munmap(b.page_addr(s), l * PAGE) {
            Ok(_) => {
                self.blocks.carve(i, s, l);
                Outcome::Done
            }
            Err(e) => Outcome::Failed(e),
        }
    }

    fn protect(&mut self, rng: &mut Rng, pkey: bool) -> Outcome {
        if self.blocks.list.is_empty() {
            return Outcome::Skipped;
        }
        let i = rng.below(self.blocks.list.len());
        let (s, l) = self.blocks.list[i].sub_range(rng);
        let prot = random_prot(rng);
        let addr = self.blocks.list[i].page_addr(s);
        let r = if pkey {
            // With a different key the range cannot merge with its neighbours;
            // without PKU (-1) it behaves as mprotect.
            let key = if rng.chance(1, 2) { self.res.pkey } else { -1 };
            sys::pkey_mprotect(addr, l * PAGE, prot, key)
        } else {
            sys::mprotect(addr, l * PAGE, prot)
        };
        if r.is_ok() {
            for p in &mut self.blocks.list[i].pages[s..s + l] {
                p.prot = prot;
            }
        }
        done_or(r)
    }

    /// The trailing run of equal protection of a movable block.
    fn trailing_run(b: &Block) -> (usize, usize) {
        let n = b.pages.len();
        let prot = b.pages[n - 1].prot;
        let mut s = n - 1;
        while s > 0 && b.pages[s - 1].prot == prot {
            s -= 1;
        }
        (s, n - s)
    }

    /// Pages after a growth by `g`: anonymous private memory is zero-filled,
    /// anything else may lie past the end of its object.
    fn grown(mut p: Vec<Page>, g: usize, backing: Backing) -> Vec<Page> {
        let prot = p.last().map_or(libc::PROT_READ, |x| x.prot);
        p.extend(pages(g, prot, backing == Backing::Anon));
        p
    }

    fn mremap_grow_in_place(&mut self, rng: &mut Rng) -> Outcome {
        if self.full() {
            return Outcome::Skipped;
        }
        let Some(i) = self.blocks.pick(rng, Block::movable) else {
            return Outcome::Skipped;
        };
        let b = &self.blocks.list[i];
        let (s, l) = Self::trailing_run(b);
        let g = rng.range(1, 8);
        let end = b.end();
        let src = b.page_addr(s);
        // Make sure the room after the block is free, so growth can happen
        // in place (a probe the tracer sees as one more mmap/munmap pair).
        let probe = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED_NOREPLACE;
        match sys::mmap(end, g * PAGE, libc::PROT_NONE, probe, -1, 0) {
            Ok(a) => {
                let _ = sys::munmap(a, g * PAGE);
                if a != end {
                    return Outcome::Skipped;
                }
            }
            Err(_) => return Outcome::Skipped,
        }
        match sys::mremap(src, l * PAGE, (l + g) * PAGE, 0, 0) {
            Ok(a) => {
                assert_eq!(a, src, "mremap without MAYMOVE moved");
                let (p, backing) = self.blocks.carve(i, s, l);
                self.blocks
                    .push(Block::new(a, Self::grown(p, g, backing), backing));
                Outcome::Done
            }
            Err(e) => Outcome::Failed(e),
        }
    }

    fn mremap_grow_maymove(&mut self, rng: &mut Rng) -> Outcome {
        if self.full() {
            return Outcome::Skipped;
        }
        let Some(i) = self.blocks.pick(rng, Block::movable) else {
            return Outcome::Skipped;
        };
        let b = &self.blocks.list[i];
        let (s, l) = b.uniform_run(rng);
        let g = rng.range(1, 16);
        match sys::mremap(
            b.page_addr(s),
            l * PAGE,
            (l + g) * PAGE,
            libc::MREMAP_MAYMOVE,
            0,
        ) {
            Ok(a) => {
                let (p, backing) = self.blocks.carve(i, s, l);
                self.blocks
                    .push(Block::new(a, Self::grown(p, g, backing), backing));
                Outcome::Done
            }
            Err(e) => Outcome::Failed(e),
        }
    }

    fn mremap_shrink(&mut self, rng: &mut Rng) -> Outcome {
        let Some(i) = self
            .blocks
            .pick(rng, |b| b.movable() && !b.anchor && b.pages.len() >= 2)
        else {
            return Outcome::Skipped;
        };
        let b = &self.blocks.list[i];
        let (s, l) = b.uniform_run(rng);
        if l < 2 {
            return Outcome::Skipped;
        }
        let nl = rng.range(1, l - 1);
        let src = b.page_addr(s);
        match sys::mremap(src, l * PAGE, nl * PAGE, 0, 0) {
            Ok(a) => {
                let (mut p, backing) = self.blocks.carve(i, s, l);
                p.truncate(nl);
                self.blocks.push(Block::new(a, p, backing));
                Outcome::Done
            }
            Err(e) => Outcome::Failed(e),
        }
    }

    /// A fresh PROT_NONE range for MREMAP_FIXED to move onto.
    fn reserve(n: usize) -> sys::SysResult {
        sys::mmap(
            0,
            n * PAGE,
            libc::PROT_NONE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    }

    fn mremap_move_fixed(&mut self, rng: &mut Rng) -> Outcome {
        if self.full() {
            return Outcome::Skipped;
        }
        let Some(i) = self.blocks.pick(rng, |b| b.movable() && !b.anchor) else {
            return Outcome::Skipped;
        };
        let b = &self.blocks.list[i];
        let (s, l) = b.uniform_run(rng);
        let nl = rng.range(l.saturating_sub(2).max(1), l + 4);
        let Ok(dest) = Self::reserve(nl) else {
            return Outcome::Skipped;
        };
        let flags = libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED;
        match sys::mremap(b.page_addr(s), l * PAGE, nl * PAGE, flags, dest) {
            Ok(a) => {
                let (mut p, backing) = self.blocks.carve(i, s, l);
                if nl <= l {
                    p.truncate(nl);
                } else {
                    p = Self::grown(p, nl - l, backing);
                }
                self.blocks.push(Block::new(a, p, backing));
                Outcome::Done
            }
            Err(e) => {
                let _ = sys::munmap(dest, nl * PAGE);
                Outcome::Failed(e)
            }
        }
    }

    fn mremap_dontunmap(&mut self, rng: &mut Rng) -> Outcome {
        if self.full() {
            return Outcome::Skipped;
        }
        let Some(i) = self.blocks.pick(rng, Block::movable) else {
            return Outcome::Skipped;
        };
        let b = &self.blocks.list[i];
        let (s, l) = b.uniform_run(rng);
        let fixed = rng.chance(1, 2);
        let mut flags = libc::MREMAP_MAYMOVE | libc::MREMAP_DONTUNMAP;
        let mut dest = 0;
        if fixed {
            let Ok(d) = Self::reserve(l) else {
                return Outcome::Skipped;
            };
            dest = d;
            flags |= libc::MREMAP_FIXED;
        }
        match sys::mremap(b.page_addr(s), l * PAGE, l * PAGE, flags, dest) {
            Ok(a) => {
                // The source stays mapped (emptied, for anonymous memory).
                let p = b.pages[s..s + l].to_vec();
                let backing = b.backing;
                self.blocks.push(Block::new(a, p, backing));
                Outcome::Done
            }
            Err(e) => {
                if fixed {
                    let _ = sys::munmap(dest, l * PAGE);
                }
                Outcome::Failed(e)
            }
        }
    }

    fn brk_grow(&mut self, rng: &mut Rng) -> Outcome {
        let res = &mut self.res;
        match sys::sbrk(0) {
            Ok(cur) if cur != res.brk_end => {
                // malloc moved the break after us: what we added is now below
                // its heap, so it is no longer ours to give back.
                res.brk_owned = 0;
                res.brk_end = cur;
            }
            _ => {}
        }
        let g = rng.range(1, 16);
        if res.brk_owned / PAGE + g > MAX_BRK_PAGES {
            return Outcome::Skipped;
        }
        match sys::sbrk((g * PAGE) as isize) {
            Ok(old) => {
                res.brk_end = old + g * PAGE;
                res.brk_owned += g * PAGE;
                sys::touch_write(old, 1);
                sys::touch_write(res.brk_end - 1, 1);
                Outcome::Done
            }
            Err(e) => Outcome::Failed(e),
        }
    }

    fn brk_shrink(&mut self, rng: &mut Rng) -> Outcome {
        let res = &mut self.res;
        if res.brk_owned == 0 || sys::sbrk(0) != Ok(res.brk_end) {
            res.brk_owned = 0;
            return Outcome::Skipped;
        }
        let k = rng.range(1, res.brk_owned / PAGE) * PAGE;
        match sys::sbrk(-(k as isize)) {
            Ok(_) => {
                res.brk_end -= k;
                res.brk_owned -= k;
                Outcome::Done
            }
            Err(e) => Outcome::Failed(e),
        }
    }

    fn madvise(&mut self, rng: &mut Rng) -> Outcome {
        if self.blocks.list.is_empty() {
            return Outcome::Skipped;
        }
        let i = rng.below(self.blocks.list.len());
        let (s, l) = self.blocks.list[i].sub_range(rng);
        let advice = *rng.pick(&[
            libc::MADV_DONTFORK,
            libc::MADV_DOFORK,
            libc::MADV_WIPEONFORK,
            libc::MADV_KEEPONFORK,
            libc::MADV_HUGEPAGE,
            libc::MADV_NOHUGEPAGE,
            libc::MADV_DONTDUMP,
            libc::MADV_DODUMP,
            libc::MADV_RANDOM,
            libc::MADV_SEQUENTIAL,
            libc::MADV_NORMAL,
            libc::MADV_DONTNEED,
        ]);
        done_or(sys::madvise(
            self.blocks.list[i].page_addr(s),
            l * PAGE,
            advice,
        ))
    }

    fn lock(&mut self, rng: &mut Rng, lock: bool) -> Outcome {
        if self.blocks.list.is_empty() {
            return Outcome::Skipped;
        }
        let i = rng.below(self.blocks.list.len());
        let (s, l) = self.blocks.list[i].sub_range(rng);
        let addr = self.blocks.list[i].page_addr(s);
        if lock {
            done_or(sys::mlock(addr, l * PAGE, rng.chance(1, 2)))
        } else {
            done_or(sys::munlock(addr, l * PAGE))
        }
    }

    fn touch(&mut self, rng: &mut Rng) -> Outcome {
        if self.blocks.list.is_empty() {
            return Outcome::Skipped;
        }
        let i = rng.below(self.blocks.list.len());
        let count = rng.range(1, 8);
        self.blocks.list[i].touch(rng, count);
        Outcome::Done
    }

    fn dl(&mut self, rng: &mut Rng, open: bool) -> Outcome {
        let candidates: Vec<usize> = (0..self.res.libs.len())
            .filter(|&i| self.res.libs[i].1.is_some() != open)
            .collect();
        if candidates.is_empty() {
            return Outcome::Skipped;
        }
        let (name, handle) = &mut self.res.libs[*rng.pick(&candidates)];
        if open {
            match sys::dlopen(name) {
                Some(h) => {
                    *handle = Some(h);
                    Outcome::Done
                }
                None => Outcome::Failed(libc::ENOENT),
            }
        } else {
            if let Some(h) = handle.take() {
                sys::dlclose(h);
            }
            Outcome::Done
        }
    }

    /// Unmaps or detaches everything the workload owns.
    pub fn cleanup(&mut self) {
        for b in self.blocks.list.drain(..) {
            let r = if b.backing == Backing::Shm {
                sys::shmdt(b.addr)
            } else {
                sys::munmap(b.addr, b.len())
            };
            if let Err(e) = r {
                eprintln!(
                    "trace_workload: cleanup of {:#x}+{:#x}: errno {e}",
                    b.addr,
                    b.len()
                );
            }
        }
        if self.res.brk_owned > 0 && sys::sbrk(0) == Ok(self.res.brk_end) {
            let _ = sys::sbrk(-(self.res.brk_owned as isize));
            self.res.brk_owned = 0;
        }
        self.res.remove_shm();
        self.res.close_all();
    }
}
