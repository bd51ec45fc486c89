//! The workload's state and the operations on it: each picks its target
//! among the owned blocks, makes the call, and updates the bookkeeping only
//! from what the kernel says it did.

mod attrs;
mod map;
mod remap;

use crate::blocks::{Backing, Blocks, Page};
use crate::ops::{MAX_BLOCKS, MAX_PAGES, Op, Outcome, Stats};
use crate::resources::{FILE_PAGES, Resources};
use crate::sys;
use pmap_tests::rng::Rng;

pub struct World {
    pub blocks: Blocks,
    pub res: Resources,
    pub stats: Stats,
    /// Ranges sealed so far (they stay mapped until exit).
    pub sealed: usize,
}

pub(super) fn random_prot(rng: &mut Rng) -> i32 {
    const R: i32 = libc::PROT_READ;
    const W: i32 = libc::PROT_WRITE;
    const X: i32 = libc::PROT_EXEC;
    *rng.pick(&[R, R | W, R | W, R | W, libc::PROT_NONE, R | X, R])
}

pub(super) fn pages(n: usize, prot: i32, backed: bool) -> Vec<Page> {
    vec![Page { prot, backed }; n]
}

pub(super) fn done_or(r: sys::SysResult) -> Outcome {
    match r {
        Ok(_) => Outcome::Done,
        Err(e) => Outcome::Failed(e),
    }
}

/// The source of a new mapping: flags, fd, offset and which of its pages are backed.
pub(super) struct Source {
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
            Op::Mseal => self.mseal(rng),
            Op::Burst | Op::StackGrow | Op::ThreadStart | Op::ThreadEnd => {
                unreachable!("main-thread op {op:?} given to World::apply")
            }
        })
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

    /// Checks the bookkeeping against /proc/self/maps: every page of every
    /// block is mapped, with the protection recorded. Returns what is wrong.
    pub fn verify(&self) -> Vec<String> {
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap_or_default();
        let regions: Vec<(usize, usize, String, String)> = maps
            .lines()
            .filter_map(|l| {
                let mut f = l.split_whitespace();
                let (s, e) = f.next()?.split_once('-')?;
                let perms = f.next()?.to_string();
                let name = l.splitn(6, ' ').nth(5).unwrap_or("").trim().to_string();
                Some((
                    usize::from_str_radix(s, 16).ok()?,
                    usize::from_str_radix(e, 16).ok()?,
                    perms,
                    name,
                ))
            })
            .collect();
        let mut bad = Vec::new();
        for b in &self.blocks.list {
            for (i, p) in b.pages.iter().enumerate() {
                let a = b.page_addr(i);
                let Some(r) = regions.iter().find(|r| r.0 <= a && a < r.1) else {
                    bad.push(format!(
                        "{:?} block {:#x}+{} page {i} ({a:#x}) is not mapped",
                        b.backing,
                        b.addr,
                        b.pages.len()
                    ));
                    break;
                };
                let want = [
                    if p.prot & libc::PROT_READ != 0 {
                        'r'
                    } else {
                        '-'
                    },
                    if p.prot & libc::PROT_WRITE != 0 {
                        'w'
                    } else {
                        '-'
                    },
                    if p.prot & libc::PROT_EXEC != 0 {
                        'x'
                    } else {
                        '-'
                    },
                ];
                if !r.2.starts_with(&want.iter().collect::<String>())
                    || (b.backing == Backing::Shm) != r.3.starts_with("/SYSV")
                {
                    bad.push(format!(
                        "{:?} block {:#x} page {i}: kernel has {} {}",
                        b.backing, b.addr, r.2, r.3
                    ));
                    break;
                }
            }
        }
        bad
    }
}
