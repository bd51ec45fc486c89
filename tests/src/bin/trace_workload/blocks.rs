//! The ranges the workload owns: what it mapped, page by page, so that every
//! operation targets its own memory (never libc's or Rust's) and only touches
//! pages it knows are readable or writable and backed.
//!
//! A block is a contiguous range made by one call (mmap, shmat, a moved
//! piece...). The kernel may merge neighbouring blocks into one region or
//! split a block into several; the workload does not care: blocks are only
//! address bookkeeping, and the tracer is checked against the kernel.

use crate::sys::{self, PAGE};
use pmap_tests::rng::Rng;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backing {
    Anon,
    AnonShared,
    File,
    Memfd,
    /// A SysV attach: only whole-attach detaches; no cutting or moving.
    Shm,
}

#[derive(Clone, Copy, Debug)]
pub struct Page {
    pub prot: i32,
    /// Touching the page is defined (false past the end of a file or shm
    /// object, e.g. after an mremap growth of a shared mapping).
    pub backed: bool,
}

#[derive(Debug)]
pub struct Block {
    pub addr: usize,
    pub pages: Vec<Page>,
    pub backing: Backing,
    /// Anchors stay mapped until cleanup (the attach that keeps a
    /// removed SysV segment alive).
    pub anchor: bool,
}

impl Block {
    pub fn new(addr: usize, pages: Vec<Page>, backing: Backing) -> Self {
        Block {
            addr,
            pages,
            backing,
            anchor: false,
        }
    }

    pub fn len(&self) -> usize {
        self.pages.len() * PAGE
    }

    pub fn end(&self) -> usize {
        self.addr + self.len()
    }

    pub fn page_addr(&self, i: usize) -> usize {
        self.addr + i * PAGE
    }

    pub fn movable(&self) -> bool {
        self.backing != Backing::Shm
    }

    /// A random sub-range `(first page, page count)`.
    pub fn sub_range(&self, rng: &mut Rng) -> (usize, usize) {
        let n = self.pages.len();
        let s = rng.below(n);
        let l = rng.range(1, n - s);
        (s, l)
    }

    /// A random run of pages that all have the same protection: mremap
    /// needs its source inside one kernel region, and equal protection
    /// makes that likely (not certain: mlock or madvise may still split it).
    pub fn uniform_run(&self, rng: &mut Rng) -> (usize, usize) {
        let n = self.pages.len();
        let i = rng.below(n);
        let prot = self.pages[i].prot;
        let mut s = i;
        while s > 0 && self.pages[s - 1].prot == prot {
            s -= 1;
        }
        let mut e = i + 1;
        while e < n && self.pages[e].prot == prot {
            e += 1;
        }
        (s, e - s)
    }

    /// Faults in a few pages the way a program would: writes where the
    /// protection allows it, reads otherwise.
    pub fn touch(&self, rng: &mut Rng, count: usize) {
        for _ in 0..count {
            let i = rng.below(self.pages.len());
            let p = self.pages[i];
            if !p.backed {
                continue;
            }
            let addr = self.page_addr(i) + rng.below(PAGE);
            if p.prot & libc::PROT_WRITE != 0 {
                sys::touch_write(addr, rng.next_u64() as u8);
            } else if p.prot & libc::PROT_READ != 0 {
                sys::touch_read(addr);
            }
        }
    }
}

/// All owned blocks.
#[derive(Default)]
pub struct Blocks {
    pub list: Vec<Block>,
}

impl Blocks {
    pub fn total_pages(&self) -> usize {
        self.list.iter().map(|b| b.pages.len()).sum()
    }

    pub fn push(&mut self, b: Block) {
        if !b.pages.is_empty() {
            self.list.push(b);
        }
    }

    /// A random block index that satisfies `f`.
    pub fn pick(&self, rng: &mut Rng, f: impl Fn(&Block) -> bool) -> Option<usize> {
        let ok: Vec<usize> = (0..self.list.len()).filter(|&i| f(&self.list[i])).collect();
        (!ok.is_empty()).then(|| *rng.pick(&ok))
    }

    /// Removes pages `s..s+l` of block `i` from the bookkeeping (after the
    /// kernel unmapped, replaced or moved them): the block is replaced by
    /// what is left on either side. Returns the removed pages.
    pub fn carve(&mut self, i: usize, s: usize, l: usize) -> (Vec<Page>, Backing) {
        let b = self.list.swap_remove(i);
        let backing = b.backing;
        let anchor = b.anchor;
        let right_addr = b.page_addr(s + l);
        let mut pages = b.pages;
        let right: Vec<Page> = pages.split_off(s + l);
        let mid: Vec<Page> = pages.split_off(s);
        let left = pages;
        for (addr, p) in [(b.addr, left), (right_addr, right)] {
            if !p.is_empty() {
                self.list.push(Block {
                    addr,
                    pages: p,
                    backing,
                    anchor,
                });
            }
        }
        (mid, backing)
    }
}
