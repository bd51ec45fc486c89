//! A call's exact effect, from the regions the kernel program read at its
//! exit.
//!
//! At a syscall's exit tracepoint the calling thread is still in the
//! kernel, so the regions read there are what this call left: nothing the
//! thread does later can be in them. Two facts of the kernel complete the
//! picture without imitating its merge rules:
//! - a call changes only its own range, except that the regions it leaves
//!   there may merge with their neighbours; a merged region holds the whole
//!   neighbour, and the capture reads it whole;
//! - removing a range never merges anything (munmap, a moved mremap's old
//!   range, brk shrinking), so what is left there is known from the call.
//!
//! So the rows after the call are: the model's rows with the call's range
//! cut out, less the neighbours a captured region swallowed, plus the
//! captured regions. This module decides that from an event; the session
//! names the captured rows and applies them to its model.

use pmap_common::{
    Event, MREMAP_DONTUNMAP, Vma, advice_changes_regions, capture, failed, page_up, walk_plan,
};
use smallvec::{SmallVec, smallvec};

use super::syscalls::Call;
use crate::map::region::{Perms, Region};

/// Why a call's effect could not be taken from its capture; the tracer then
/// asks the kernel about the call's range instead (counted per reason).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Fallback {
    /// The map lock was held by another thread at the call's exit.
    Busy,
    /// The call's range held more regions than a record carries.
    Full,
    /// The captured regions do not cover what the call must have left
    /// mapped: another thread changed the range in between.
    Uncovered,
    /// A call this tracer does not capture (mlockall, munlockall,
    /// remap_file_pages, an mremap with MREMAP_DONTUNMAP), or one whose
    /// arguments could not be read.
    NotCaptured,
    /// The kernel gave no name for a new file mapping.
    Unnamed,
    /// The capture was taken, but rows it replaced came from a fallback
    /// earlier in the batch (read later than their call), so the
    /// difference may not be this call's alone.
    Uncertain,
    /// The capture was taken and applied, but a new file mapping in it
    /// could not be named: the mapping, or the whole address space, was
    /// gone before the tracer looked, its descriptor closed. Its rows are
    /// exact but for the name, which is the call's descriptor (`(fd 3)`).
    NameUnknown,
}

impl Fallback {
    /// Every reason, in the order recordings number them (new ones go
    /// last).
    pub const ALL: [Fallback; 7] = [
        Fallback::Busy,
        Fallback::Full,
        Fallback::Uncovered,
        Fallback::NotCaptured,
        Fallback::Unnamed,
        Fallback::Uncertain,
        Fallback::NameUnknown,
    ];

    /// A short name, for the summary and JSON.
    pub fn name(self) -> &'static str {
        match self {
            Fallback::Busy => "lock_busy",
            Fallback::Full => "too_many_regions",
            Fallback::Uncovered => "raced",
            Fallback::NotCaptured => "not_captured",
            Fallback::Unnamed => "unnamed_file",
            Fallback::Uncertain => "after_fallback",
            Fallback::NameUnknown => "name_unknown",
        }
    }
}

/// What a call did, as far as the capture tells.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Effect {
    /// Ranges whose old rows are gone (the call's own range).
    pub cleared: SmallVec<[(u64, u64); 2]>,
    /// The regions read at the call's exit, in address order, unnamed.
    pub captured: SmallVec<[Vma; 4]>,
}

const VM_READ: u64 = 0x1;
const VM_WRITE: u64 = 0x2;
const VM_EXEC: u64 = 0x4;
const VM_MAYSHARE: u64 = 0x80;
/// `MADV_DONTFORK`: a fork does not copy the region.
pub const VM_DONTCOPY: u64 = 0x0002_0000;

/// The permissions column as `/proc/PID/maps` prints it from `vm_flags`
/// (`s` is VM_MAYSHARE, not VM_SHARED: fs/proc/task_mmu.c).
pub fn perms(flags: u64) -> Perms {
    let bit = |b: u64, c: u8| if flags & b != 0 { c } else { b'-' };
    Perms([
        bit(VM_READ, b'r'),
        bit(VM_WRITE, b'w'),
        bit(VM_EXEC, b'x'),
        if flags & VM_MAYSHARE != 0 { b's' } else { b'p' },
    ])
}

/// A captured region as a row, without its name (the session names it).
/// The kernel prints an offset, device and inode only for file mappings.
pub fn row(v: &Vma) -> Region {
    let file = v.ino != 0;
    Region {
        start: v.start,
        end: v.end,
        perms: perms(v.flags),
        offset: if file { v.pgoff << 12 } else { 0 },
        dev_major: if file { v.dev >> 20 } else { 0 },
        dev_minor: if file { v.dev & 0xf_ffff } else { 0 },
        inode: if file { v.ino } else { 0 },
        name: Vec::new(),
    }
}

/// The end of the run of adjacent captured regions that starts with the
/// one holding `lo` (`lo` itself if none holds it).
fn covered_to(caps: &[Vma], lo: u64) -> u64 {
    let mut at = lo;
    for v in caps {
        if v.start <= at && v.end > at {
            at = v.end;
        }
    }
    at
}

/// The effect of `ev` (a `call` record) from its capture, or why it cannot
/// be known that way. `brk_before` is the program break before the call
/// (for brk), `attachment` the range a shmdt detaches (from the model:
/// the call's arguments do not give it).
pub fn effect(
    call: Call,
    ev: &Event,
    brk_before: u64,
    attachment: impl FnOnce(u64) -> (u64, u64),
) -> Result<Effect, Fallback> {
    let c = &ev.capture;
    match c.status {
        capture::BUSY => return Err(Fallback::Busy),
        capture::FULL => return Err(Fallback::Full),
        _ => {}
    }
    let caps = SmallVec::from_slice(&c.vmas[..(c.count as usize).min(c.vmas.len())]);
    let a = &ev.args;
    if ev.flags & pmap_common::FLAG_NO_ARGS != 0 && call != Call::Brk {
        return Err(Fallback::NotCaptured);
    }
    let ok = !failed(ev.ret);
    let walk = walk_plan(ev.kind, a, ev.ret);
    let covers = |(lo, hi): (u64, u64)| covered_to(&caps, lo) >= hi;
    let cleared = match call {
        Call::Munmap if ok => smallvec![(a[0], a[0].saturating_add(page_up(a[1])))],
        // A failed munmap, shmat or shmdt changes nothing; nor does a
        // failed mmap or mremap (the kernel undoes what it began: since
        // 6.12 an overlaid range is put back).
        Call::Munmap | Call::Shmat | Call::Shmdt | Call::Mmap | Call::Mremap if !ok => smallvec![],
        // Advice on pages, not regions.
        Call::Madvise if !advice_changes_regions(a[2]) => smallvec![],
        Call::Shmdt => smallvec![attachment(a[0])],
        Call::Mmap | Call::Shmat if ok => {
            let (lo, hi) = walk;
            let hi = match call {
                // The attachment's size is the captured region's.
                Call::Shmat => {
                    caps.first()
                        .filter(|v| v.start == lo)
                        .ok_or(Fallback::Uncovered)?
                        .end
                }
                _ => hi,
            };
            if !covers((lo, hi)) {
                return Err(Fallback::Uncovered);
            }
            smallvec![(lo, hi)]
        }
        Call::Mprotect
        | Call::PkeyMprotect
        | Call::Madvise
        | Call::Mlock
        | Call::Mlock2
        | Call::Munlock
        | Call::Mbind
        | Call::Mseal => {
            let (lo, hi) = walk;
            // The madvise walk steps over holes, to the end of the range
            // (else the record says FULL): every region there was read.
            let to = match call {
                Call::Madvise => hi,
                _ => covered_to(&caps, lo).min(hi),
            };
            if to < hi {
                // Regions up to a hole: a successful call has none, so the
                // map changed under it. mprotect stops at the first hole
                // (its regions beyond are as they were); the others go on
                // past it, to regions the capture did not read.
                let stops = matches!(call, Call::Mprotect | Call::PkeyMprotect);
                if ok || !stops {
                    return Err(Fallback::Uncovered);
                }
            }
            smallvec![(lo, to)]
        }
        Call::Brk => {
            // brk returns the break it left (the old one when it fails).
            let (old, new) = (page_up(brk_before), page_up(ev.ret as u64));
            if old == new {
                smallvec![]
            } else {
                smallvec![(old.min(new), old.max(new))]
            }
        }
        Call::Mremap if ok => {
            let (old_lo, old_len, new_len) = (a[0], page_up(a[1]), page_up(a[2]));
            let moved = ev.ret as u64 != old_lo;
            if !moved && new_len <= old_len {
                // Shrinking in place (or to the same size) unmaps the tail
                // and checks nothing else: the rest need not be mapped.
                return Ok(Effect {
                    cleared: smallvec![(old_lo + new_len, old_lo + old_len)],
                    captured: caps,
                });
            }
            // Its walk steps over holes (a move of several regions keeps
            // the holes between them): a complete walk read every region.
            let new = walk;
            if c.status != capture::OK || (!covers(new) && !moved) {
                return Err(Fallback::Uncovered);
            }
            let old = if old_len == 0 {
                // A duplicate of a shared mapping: the old one stays.
                None
            } else if moved && a[3] & MREMAP_DONTUNMAP != 0 {
                // The old range stays mapped, emptied; the walk read only
                // the new one.
                return Err(Fallback::NotCaptured);
            } else if moved {
                Some((old_lo, old_lo + old_len))
            } else {
                // Grown in place: the new range holds the old.
                None
            };
            std::iter::once(new).chain(old).collect()
        }
        _ => return Err(Fallback::NotCaptured),
    };
    Ok(Effect {
        cleared,
        captured: caps,
    })
}

/// `r` less the ranges in `cut`, as rows: a file row keeps the offset of
/// each piece's first byte, as the kernel does when it splits a region.
fn cut_out(r: &Region, cut: &[(u64, u64)], out: &mut Vec<Region>) {
    let mut pieces: SmallVec<[(u64, u64); 4]> = smallvec![(r.start, r.end)];
    for &(lo, hi) in cut {
        let mut next = SmallVec::new();
        for (s, e) in pieces {
            if hi <= s || lo >= e {
                next.push((s, e));
                continue;
            }
            for (s, e) in [(s, lo.max(s)), (hi.min(e), e)] {
                if s < e {
                    next.push((s, e));
                }
            }
        }
        pieces = next;
    }
    for (s, e) in pieces {
        let mut p = r.clone();
        if p.inode != 0 || p.offset != 0 {
            p.offset = r.offset + (s - r.start);
        }
        p.start = s;
        p.end = e;
        out.push(p);
    }
}

/// The rows after the call, from the rows before it that intersect its
/// reach (`old`), what it cleared, and what was captured (named rows).
pub fn overlay(old: &[Region], cleared: &[(u64, u64)], captured: &[Region]) -> Vec<Region> {
    let taken: SmallVec<[(u64, u64); 8]> = cleared
        .iter()
        .copied()
        .chain(captured.iter().map(|r| (r.start, r.end)))
        .collect();
    let mut rows = Vec::with_capacity(old.len() + captured.len());
    for r in old {
        cut_out(r, &taken, &mut rows);
    }
    rows.extend(captured.iter().cloned());
    rows.sort_by_key(|r| r.start);
    rows
}

/// The address range an effect reaches: its cleared ranges and captured
/// regions (the rows of the model that intersect it are the ones it may
/// change).
pub fn reach(e: &Effect) -> Option<(u64, u64)> {
    e.cleared
        .iter()
        .copied()
        .chain(e.captured.iter().map(|v| (v.start, v.end)))
        .filter(|(lo, hi)| lo < hi)
        .reduce(|(a, b), (c, d)| (a.min(c), b.max(d)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::map::region::test_region as r;
    use pmap_common::{Capture, MAX_CAPTURE, nr};

    fn vma(start: u64, end: u64, flags: u64) -> Vma {
        Vma {
            start,
            end,
            flags,
            ..Vma::default()
        }
    }

    fn event(kind: u32, args: [u64; 6], ret: i64, caps: &[Vma]) -> Event {
        let mut vmas = [Vma::default(); MAX_CAPTURE];
        vmas[..caps.len()].copy_from_slice(caps);
        Event {
            kind,
            args,
            ret,
            capture: Capture {
                brk: 0,
                status: if caps.is_empty() {
                    capture::NONE
                } else {
                    capture::OK
                },
                count: caps.len() as u32,
                vmas,
            },
            ..Event::default()
        }
    }

    const RW: u64 = VM_READ | VM_WRITE;

    fn apply(old: &[Region], call: Call, ev: &Event) -> Vec<Region> {
        let e = effect(call, ev, 0, |_| (0, 0)).expect("captured");
        let caps: Vec<Region> = e.captured.iter().map(row).collect();
        overlay(old, &e.cleared, &caps)
    }

    #[test]
    fn perms_follow_vm_flags() {
        assert_eq!(perms(RW).as_str(), "rw-p");
        assert_eq!(perms(VM_READ | VM_EXEC | VM_MAYSHARE).as_str(), "r-xs");
        assert_eq!(perms(0).as_str(), "---p");
    }

    #[test]
    fn an_mmap_merged_into_its_neighbour_replaces_it() {
        let old = [r(0x1000, 0x3000, b"rw-p")];
        let ev = event(
            nr::MMAP,
            [0, 0x1000, 3, 0x22, 0, 0],
            0x3000,
            &[vma(0x1000, 0x4000, RW)],
        );
        assert_eq!(
            apply(&old, Call::Mmap, &ev),
            vec![r(0x1000, 0x4000, b"rw-p")]
        );
    }

    #[test]
    fn an_mprotect_to_the_same_protection_changes_nothing() {
        let old = [r(0x1000, 0x5000, b"rw-p")];
        let ev = event(
            nr::MPROTECT,
            [0x2000, 0x1000, 3, 0, 0, 0],
            0,
            &[vma(0x1000, 0x5000, RW)],
        );
        assert_eq!(apply(&old, Call::Mprotect, &ev), old.to_vec());
    }

    #[test]
    fn an_mprotect_in_the_middle_splits_in_three() {
        let old = [r(0x1000, 0x5000, b"rw-p")];
        let ev = event(
            nr::MPROTECT,
            [0x2000, 0x1000, 1, 0, 0, 0],
            0,
            &[vma(0x2000, 0x3000, VM_READ)],
        );
        assert_eq!(
            apply(&old, Call::Mprotect, &ev),
            vec![
                r(0x1000, 0x2000, b"rw-p"),
                r(0x2000, 0x3000, b"r--p"),
                r(0x3000, 0x5000, b"rw-p")
            ]
        );
    }

    #[test]
    fn a_partial_munmap_cuts_a_file_row_keeping_offsets() {
        let mut f = r(0x1000, 0x5000, b"r--p");
        f.inode = 7;
        f.offset = 0x10000;
        let ev = event(nr::MUNMAP, [0x2000, 0x1000, 0, 0, 0, 0], 0, &[]);
        let rows = apply(&[f.clone()], Call::Munmap, &ev);
        assert_eq!(rows.len(), 2);
        assert_eq!(
            (rows[0].start, rows[0].end, rows[0].offset),
            (0x1000, 0x2000, 0x10000)
        );
        assert_eq!(
            (rows[1].start, rows[1].end, rows[1].offset),
            (0x3000, 0x5000, 0x12000)
        );
    }

    #[test]
    fn a_moved_mremap_clears_the_old_range() {
        let old = [r(0x1000, 0x3000, b"rw-p")];
        let ev = event(
            nr::MREMAP,
            [0x1000, 0x2000, 0x4000, 1, 0, 0],
            0x9000,
            &[vma(0x9000, 0xd000, RW)],
        );
        assert_eq!(
            apply(&old, Call::Mremap, &ev),
            vec![r(0x9000, 0xd000, b"rw-p")]
        );
    }

    #[test]
    fn a_capture_that_misses_the_new_mapping_falls_back() {
        let ev = event(
            nr::MMAP,
            [0, 0x2000, 3, 0x22, 0, 0],
            0x3000,
            &[vma(0x3000, 0x4000, RW)],
        );
        assert_eq!(
            effect(Call::Mmap, &ev, 0, |_| (0, 0)),
            Err(Fallback::Uncovered)
        );
        let mut busy = ev;
        busy.capture.status = capture::BUSY;
        assert_eq!(
            effect(Call::Mmap, &busy, 0, |_| (0, 0)),
            Err(Fallback::Busy)
        );
    }

    #[test]
    fn a_failed_mprotect_stops_at_the_first_hole() {
        // [0x1000,0x2000) mapped, then a hole: the call changed only the
        // first page and failed with ENOMEM.
        let old = [r(0x1000, 0x2000, b"rw-p"), r(0x3000, 0x4000, b"rw-p")];
        let ev = event(
            nr::MPROTECT,
            [0x1000, 0x3000, 1, 0, 0, 0],
            -12,
            &[vma(0x1000, 0x2000, VM_READ)],
        );
        assert_eq!(
            apply(&old, Call::Mprotect, &ev),
            vec![r(0x1000, 0x2000, b"r--p"), r(0x3000, 0x4000, b"rw-p")]
        );
    }

    #[test]
    fn brk_grows_and_shrinks_from_the_previous_break() {
        let old = [r(0x1000, 0x3000, b"rw-p")];
        let grow = event(
            nr::BRK,
            [0x5000, 0, 0, 0, 0, 0],
            0x5000,
            &[vma(0x1000, 0x5000, RW)],
        );
        let e = effect(Call::Brk, &grow, 0x3000, |_| (0, 0)).expect("captured");
        assert_eq!(e.cleared[..], [(0x3000, 0x5000)]);
        let shrink = event(
            nr::BRK,
            [0x1800, 0, 0, 0, 0, 0],
            0x1800,
            &[vma(0x1000, 0x2000, RW)],
        );
        let e = effect(Call::Brk, &shrink, 0x3000, |_| (0, 0)).expect("captured");
        let caps: Vec<Region> = e.captured.iter().map(row).collect();
        assert_eq!(
            overlay(&old, &e.cleared, &caps),
            vec![r(0x1000, 0x2000, b"rw-p")]
        );
    }
}
