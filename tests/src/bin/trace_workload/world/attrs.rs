//! Changes to existing ranges: protection, advice, locking, touching
//! pages; and the break and shared libraries.

use super::{World, done_or, random_prot};
use crate::ops::{MAX_BRK_PAGES, Outcome};
use crate::sys::{self, PAGE};
use pmap_tests::rng::Rng;

impl World {
    pub(super) fn protect(&mut self, rng: &mut Rng, pkey: bool) -> Outcome {
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

    pub(super) fn brk_grow(&mut self, rng: &mut Rng) -> Outcome {
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

    pub(super) fn brk_shrink(&mut self, rng: &mut Rng) -> Outcome {
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

    pub(super) fn madvise(&mut self, rng: &mut Rng) -> Outcome {
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

    pub(super) fn lock(&mut self, rng: &mut Rng, lock: bool) -> Outcome {
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

    pub(super) fn touch(&mut self, rng: &mut Rng) -> Outcome {
        if self.blocks.list.is_empty() {
            return Outcome::Skipped;
        }
        let i = rng.below(self.blocks.list.len());
        let count = rng.range(1, 8);
        self.blocks.list[i].touch(rng, count);
        Outcome::Done
    }

    pub(super) fn dl(&mut self, rng: &mut Rng, open: bool) -> Outcome {
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
}
