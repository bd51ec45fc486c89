//! New mappings (anonymous, file, memfd, SysV, sealed), MAP_FIXED
//! overlays and unmapping.

use super::{World, pages, random_prot};
use crate::blocks::{Backing, Block};
use crate::ops::{MAX_SEALED, MAX_SHM_ATTACHES, Outcome};
use crate::resources::FILE_PAGES;
use crate::sys::{self, PAGE};
use pmap_tests::rng::Rng;

impl World {
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

    pub(super) fn map_new(&mut self, rng: &mut Rng, backing: Backing) -> Result<Outcome, String> {
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

    pub(super) fn shm_attach(&mut self, rng: &mut Rng) -> Outcome {
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

    pub(super) fn shm_detach(&mut self, rng: &mut Rng) -> Outcome {
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

    pub(super) fn fixed_overlay(&mut self, rng: &mut Rng) -> Result<Outcome, String> {
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

    pub(super) fn munmap(&mut self, rng: &mut Rng, whole: bool) -> Outcome {
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

    /// Maps a few pages and seals some of them (a split the tracer must
    /// see); the unsealed rest becomes ordinary blocks.
    pub(super) fn mseal(&mut self, rng: &mut Rng) -> Outcome {
        if self.sealed >= MAX_SEALED || self.full() {
            return Outcome::Skipped;
        }
        let n = rng.range(2, 6);
        let prot = random_prot(rng);
        let flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS;
        let Ok(a) = sys::mmap(0, n * PAGE, prot, flags, -1, 0) else {
            return Outcome::Skipped;
        };
        let mut b = Block::new(a, pages(n, prot, true), Backing::Anon);
        let (s, l) = b.sub_range(rng);
        match sys::mseal(b.page_addr(s), l * PAGE) {
            Ok(_) => {
                self.sealed += 1;
                self.blocks.push(b);
                let i = self.blocks.list.len() - 1;
                self.blocks.carve(i, s, l);
                Outcome::Done
            }
            Err(e) => {
                b.pages.clear();
                let _ = sys::munmap(a, n * PAGE);
                Outcome::Failed(e)
            }
        }
    }
}
