//! mremap in all its forms: grow in place, grow or move anywhere, shrink,
//! move onto a reservation, and MREMAP_DONTUNMAP.

use super::{World, pages};
use crate::blocks::{Backing, Block, Page};
use crate::ops::Outcome;
use crate::sys::{self, PAGE};
use pmap_tests::rng::Rng;

impl World {
    /// The trailing run of equal protection of a movable block.
    pub(super) fn trailing_run(b: &Block) -> (usize, usize) {
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
    pub(super) fn grown(mut p: Vec<Page>, g: usize, backing: Backing) -> Vec<Page> {
        let prot = p.last().map_or(libc::PROT_READ, |x| x.prot);
        p.extend(pages(g, prot, backing == Backing::Anon));
        p
    }

    pub(super) fn mremap_grow_in_place(&mut self, rng: &mut Rng) -> Outcome {
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

    pub(super) fn mremap_grow_maymove(&mut self, rng: &mut Rng) -> Outcome {
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

    pub(super) fn mremap_shrink(&mut self, rng: &mut Rng) -> Outcome {
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
    pub(super) fn reserve(n: usize) -> sys::SysResult {
        sys::mmap(
            0,
            n * PAGE,
            libc::PROT_NONE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    }

    pub(super) fn mremap_move_fixed(&mut self, rng: &mut Rng) -> Outcome {
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

    pub(super) fn mremap_dontunmap(&mut self, rng: &mut Rng) -> Outcome {
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
}
