//! What a successful call did to its own addresses, from its arguments and
//! result alone.
//!
//! The tracer normally asks the kernel what a call left. When a later call
//! in the same batch of events changes the same addresses, the kernel can
//! no longer show this call's effect (the later one is already done), and
//! asking it would only make the traced process wait on its own map lock.
//! Such a call's delta is derived from its arguments instead: exact about
//! the addresses, permissions and sharing it gave them, silent about what
//! the arguments do not say (file names, merges with neighbours). The
//! model takes these rows only until the batch ends; the kernel's rows for
//! every address they touched replace them before anything else is printed
//! (see `Session::settle`).

use pmap_common::Event;

use super::syscalls::{Call, map_shared};
use crate::map::{
    model::RegionModel,
    region::{Perms, Region},
};

/// The rows to put in place of every model region that intersects
/// `[lo, hi)`.
#[derive(Debug, PartialEq, Eq)]
pub struct Effect {
    pub lo: u64,
    pub hi: u64,
    pub rows: Vec<Region>,
}

const PAGE: u64 = 4096;

fn page_up(v: u64) -> u64 {
    v.saturating_add(PAGE - 1) & !(PAGE - 1)
}

fn perms(prot: u64, shared: bool) -> Perms {
    let bit = |b: i32, c: u8| {
        if prot & b as u64 != 0 { c } else { b'-' }
    };
    Perms([
        bit(libc::PROT_READ, b'r'),
        bit(libc::PROT_WRITE, b'w'),
        bit(libc::PROT_EXEC, b'x'),
        if shared { b's' } else { b'p' },
    ])
}

/// The name that stands in for a file the tracer knows only as an mmap's
/// descriptor `fd` (the call's raw argument): `(fd 3)`.
pub fn fd_name(fd: u64) -> Vec<u8> {
    format!("(fd {})", fd as i32).into_bytes()
}

/// A row derived from an mmap of a descriptor whose file the kernel has
/// not named yet (see `Session::name_files`).
pub fn unnamed_file(r: &Region) -> bool {
    r.inode == 0 && r.name.starts_with(b"(fd ")
}

/// The part `[lo, hi)` of `r`, whose file offset moves with its start.
fn piece(r: &Region, lo: u64, hi: u64) -> Region {
    let offset = if r.inode != 0 || unnamed_file(r) {
        r.offset + (lo - r.start)
    } else {
        r.offset
    };
    Region {
        start: lo,
        end: hi,
        offset,
        ..r.clone()
    }
}

/// The model's rows that intersect `[lo, hi)`, cut at `lo` and `hi`, with
/// `f` applied to the parts inside (`None` drops them).
fn reshape(
    model: &RegionModel,
    lo: u64,
    hi: u64,
    f: impl Fn(Region) -> Option<Region>,
) -> Vec<Region> {
    let mut rows = Vec::new();
    for r in model.within(lo, hi) {
        if r.start < lo {
            rows.push(piece(r, r.start, lo));
        }
        if let Some(inside) = f(piece(r, r.start.max(lo), r.end.min(hi))) {
            rows.push(inside);
        }
        if r.end > hi {
            rows.push(piece(r, hi, r.end));
        }
    }
    rows
}

/// Whether `call` is one whose effect on its own addresses its arguments
/// fully give (when it succeeded).
pub fn derivable(call: Call) -> bool {
    matches!(
        call,
        Call::Mmap | Call::Munmap | Call::Mprotect | Call::PkeyMprotect | Call::Brk | Call::Mremap
    )
}

/// The effect of the successful call `ev` on `model`, as replacements to
/// make in order (a moving mremap has two: where it was, where it went);
/// `None` when it is not derivable from the arguments or changed nothing.
/// `brk_start` is the program break's start (where `[heap]` begins).
pub fn from_arguments(
    call: Call,
    ev: &Event,
    model: &RegionModel,
    brk_start: u64,
) -> Option<Vec<Effect>> {
    if ev.ret < 0 || !derivable(call) {
        return None;
    }
    if call == Call::Mremap {
        return mremap(ev, model);
    }
    one(call, ev, model, brk_start).map(|e| vec![e])
}

/// mremap(old, old_len, new_len, flags, new): the rows of `[old, old +
/// old_len)` keep their permissions, names and offsets at their new place
/// (or in place), cut to `new_len` or with the last one grown to it. Not
/// derivable with MREMAP_DONTUNMAP (the old range stays, emptied) or a zero
/// `old_len` (a second mapping of shared memory), or when the model does
/// not hold the whole old range.
fn mremap(ev: &Event, model: &RegionModel) -> Option<Vec<Effect>> {
    let a = &ev.args;
    let (old, old_len, new_len) = (a[0], page_up(a[1]), page_up(a[2]));
    let new = ev.ret as u64;
    if a[3] & libc::MREMAP_DONTUNMAP as u64 != 0 || old_len == 0 || new_len == 0 {
        return None;
    }
    let old_end = old.checked_add(old_len)?;
    let new_end = new.checked_add(new_len)?;
    // The old range's rows, cut to it; they must cover it.
    let mut moved = reshape(model, old, old_end, Some)
        .into_iter()
        .filter(|r| r.start >= old && r.end <= old_end)
        .collect::<Vec<_>>();
    let covered: u64 = moved.iter().map(Region::size).sum();
    if covered != old_len {
        return None;
    }
    // Shift to the new place, then cut or grow to the new length.
    for r in &mut moved {
        (r.start, r.end) = (r.start - old + new, r.end - old + new);
    }
    moved.retain(|r| r.start < new_end);
    if let Some(last) = moved.last_mut() {
        last.end = new_end;
    }
    let mut parts = Vec::new();
    if new != old {
        parts.push(Effect {
            lo: old,
            hi: old_end,
            rows: reshape(model, old, old_end, |_| None),
        });
    }
    // What was at the new place (MREMAP_FIXED unmaps it first) goes; in
    // place, so does the tail a shrink gives up.
    let hi = if new == old {
        new_end.max(old_end)
    } else {
        new_end
    };
    let mut rows = reshape(model, new, hi, |_| None);
    if new != old {
        // A region that spans both places lost the old range already.
        rows = rows
            .iter()
            .flat_map(|r| {
                let left = (r.start < old).then(|| piece(r, r.start, r.end.min(old)));
                let right = (r.end > old_end).then(|| piece(r, r.start.max(old_end), r.end));
                left.into_iter().chain(right)
            })
            .collect();
    }
    rows.extend(moved);
    rows.sort_by_key(|r| r.start);
    parts.push(Effect { lo: new, hi, rows });
    Some(parts)
}

fn one(call: Call, ev: &Event, model: &RegionModel, brk_start: u64) -> Option<Effect> {
    let a = &ev.args;
    let len = page_up(a[1]);
    match call {
        Call::Mmap => {
            let lo = ev.ret as u64;
            let hi = lo.checked_add(len).filter(|&hi| hi > lo)?;
            let flags = a[3];
            let shared = map_shared(flags);
            let anonymous = flags & libc::MAP_ANONYMOUS as u64 != 0;
            // What the arguments say of the object: the kernel names
            // files by path, which the call does not carry (the session
            // asks the kernel for it).
            let (name, offset) = if anonymous {
                (Vec::new(), 0)
            } else {
                (fd_name(a[4]), a[5])
            };
            let mut rows = reshape(model, lo, hi, |_| None);
            rows.push(Region {
                start: lo,
                end: hi,
                perms: perms(a[2], shared),
                offset,
                name,
                ..Region::default()
            });
            rows.sort_by_key(|r| r.start);
            Some(Effect { lo, hi, rows })
        }
        Call::Munmap => {
            let (lo, hi) = (a[0], a[0].checked_add(len)?);
            Some(Effect {
                lo,
                hi,
                rows: reshape(model, lo, hi, |_| None),
            })
        }
        Call::Mprotect | Call::PkeyMprotect => {
            let (lo, hi) = (a[0], a[0].checked_add(len)?);
            let rows = reshape(model, lo, hi, |r| {
                Some(Region {
                    perms: perms(a[2], r.perms.shared()),
                    ..r
                })
            });
            Some(Effect { lo, hi, rows })
        }
        Call::Brk => {
            // A failed brk returns the old break: no change below.
            let new = page_up(ev.ret as u64);
            if a[0] == 0 || new < brk_start {
                return None;
            }
            let heap = model
                .containing(brk_start)
                .filter(|r| r.name == b"[heap]")
                .cloned();
            let old_end = heap.as_ref().map_or(brk_start, |h| h.end);
            if new == old_end {
                return None;
            }
            let start = heap.as_ref().map_or(brk_start, |h| h.start);
            let (lo, hi) = (start, new.max(old_end));
            let mut rows = reshape(model, new.min(old_end), hi, |_| None);
            // The heap's own rows are replaced by one up to the new break.
            rows.retain(|r| r.start >= new || r.end <= start);
            if new > start {
                rows.push(Region {
                    start,
                    end: new,
                    perms: heap.as_ref().map_or(Perms(*b"rw-p"), |h| h.perms),
                    name: b"[heap]".to_vec(),
                    ..Region::default()
                });
            }
            rows.sort_by_key(|r| r.start);
            Some(Effect { lo, hi, rows })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::map::region::test_region;

    fn event(args: [u64; 6], ret: i64) -> Event {
        Event {
            args,
            ret,
            ..Event::default()
        }
    }

    fn apply(model: &mut RegionModel, call: Call, ev: &Event) {
        for e in from_arguments(call, ev, model, 0x10_0000).expect("derivable") {
            model.replace(e.lo, e.hi, e.rows);
        }
    }

    fn rows(model: &RegionModel) -> Vec<(u64, u64, String)> {
        model
            .regions()
            .map(|r| (r.start, r.end, r.perms.as_str().to_string()))
            .collect()
    }

    const RW: u64 = (libc::PROT_READ | libc::PROT_WRITE) as u64;
    const ANON_PRIVATE: u64 = (libc::MAP_ANONYMOUS | libc::MAP_PRIVATE) as u64;

    #[test]
    fn map_protect_unmap_one_region() {
        let mut m = RegionModel::new(vec![]);
        apply(
            &mut m,
            Call::Mmap,
            &event([0, 0x4000, RW, ANON_PRIVATE, u64::MAX, 0], 0x20_0000),
        );
        assert_eq!(rows(&m), vec![(0x20_0000, 0x20_4000, "rw-p".into())]);
        apply(
            &mut m,
            Call::Mprotect,
            &event([0x20_1000, 0x1000, libc::PROT_READ as u64, 0, 0, 0], 0),
        );
        assert_eq!(
            rows(&m),
            vec![
                (0x20_0000, 0x20_1000, "rw-p".into()),
                (0x20_1000, 0x20_2000, "r--p".into()),
                (0x20_2000, 0x20_4000, "rw-p".into()),
            ]
        );
        apply(
            &mut m,
            Call::Munmap,
            &event([0x20_0000, 0x3000, 0, 0, 0, 0], 0),
        );
        assert_eq!(rows(&m), vec![(0x20_3000, 0x20_4000, "rw-p".into())]);
    }

    #[test]
    fn fixed_map_over_a_file_keeps_the_offsets_of_what_is_left() {
        let mut file = test_region(0x40_0000, 0x40_8000, b"r--p");
        file.inode = 7;
        file.offset = 0x1000;
        file.name = b"/lib/x.so".to_vec();
        let mut m = RegionModel::new(vec![file]);
        let fixed = (libc::MAP_FIXED | libc::MAP_ANONYMOUS | libc::MAP_PRIVATE) as u64;
        apply(
            &mut m,
            Call::Mmap,
            &event([0x40_2000, 0x2000, RW, fixed, u64::MAX, 0], 0x40_2000),
        );
        let got: Vec<(u64, u64, u64)> = m.regions().map(|r| (r.start, r.offset, r.inode)).collect();
        assert_eq!(
            got,
            vec![
                (0x40_0000, 0x1000, 7),
                (0x40_2000, 0, 0),
                (0x40_4000, 0x5000, 7)
            ]
        );
    }

    #[test]
    fn file_mapping_is_named_by_its_descriptor() {
        let m = RegionModel::new(vec![]);
        let e = from_arguments(
            Call::Mmap,
            &event([0, 100, 1, libc::MAP_SHARED as u64, 5, 0x3000], 0x30_0000),
            &m,
            0,
        )
        .expect("derivable");
        assert_eq!(e[0].rows[0].name, b"(fd 5)");
        assert_eq!(e[0].rows[0].perms.as_str(), "r--s");
        assert_eq!((e[0].rows[0].end, e[0].rows[0].offset), (0x30_1000, 0x3000));
    }

    #[test]
    fn a_piece_of_a_file_mapping_not_yet_named_keeps_its_file_offset() {
        let mut m = RegionModel::new(vec![]);
        apply(
            &mut m,
            Call::Mmap,
            &event(
                [0, 0x3000, 1, libc::MAP_PRIVATE as u64, 5, 0x3000],
                0x30_0000,
            ),
        );
        apply(
            &mut m,
            Call::Mprotect,
            &event([0x30_1000, 0x1000, 0, 0, 0, 0], 0),
        );
        let got: Vec<(u64, u64)> = m.regions().map(|r| (r.start, r.offset)).collect();
        assert_eq!(
            got,
            vec![
                (0x30_0000, 0x3000),
                (0x30_1000, 0x4000),
                (0x30_2000, 0x5000)
            ]
        );
    }

    #[test]
    fn brk_grows_and_shrinks_the_heap() {
        let mut m = RegionModel::new(vec![]);
        apply(
            &mut m,
            Call::Brk,
            &event([0x12_1000, 0, 0, 0, 0, 0], 0x12_1000),
        );
        assert_eq!(rows(&m), vec![(0x10_0000, 0x12_1000, "rw-p".into())]);
        assert_eq!(m.find_named(b"[heap]").map(|r| r.end), Some(0x12_1000));
        apply(
            &mut m,
            Call::Brk,
            &event([0x11_0800, 0, 0, 0, 0, 0], 0x11_0800),
        );
        assert_eq!(rows(&m), vec![(0x10_0000, 0x11_1000, "rw-p".into())]);
        apply(
            &mut m,
            Call::Brk,
            &event([0x10_0000, 0, 0, 0, 0, 0], 0x10_0000),
        );
        assert_eq!(rows(&m), vec![]);
    }

    #[test]
    fn mremap_moves_grows_and_shrinks() {
        let mut file = test_region(0x40_0000, 0x40_4000, b"r--p");
        file.inode = 7;
        file.offset = 0x1000;
        let mut m = RegionModel::new(vec![file, test_region(0x40_4000, 0x40_6000, b"rw-p")]);
        let may_move = libc::MREMAP_MAYMOVE as u64;
        // Both regions move and the last grows by a page.
        apply(
            &mut m,
            Call::Mremap,
            &event([0x40_0000, 0x6000, 0x7000, may_move, 0, 0], 0x80_0000),
        );
        let got: Vec<(u64, u64, String, u64)> = m
            .regions()
            .map(|r| (r.start, r.end, r.perms.as_str().to_string(), r.offset))
            .collect();
        assert_eq!(
            got,
            vec![
                (0x80_0000, 0x80_4000, "r--p".into(), 0x1000),
                (0x80_4000, 0x80_7000, "rw-p".into(), 0),
            ]
        );
        // Shrunk in place to its first two pages.
        apply(
            &mut m,
            Call::Mremap,
            &event([0x80_0000, 0x7000, 0x2000, 0, 0, 0], 0x80_0000),
        );
        assert_eq!(rows(&m), vec![(0x80_0000, 0x80_2000, "r--p".into())]);
        // Grown in place.
        apply(
            &mut m,
            Call::Mremap,
            &event([0x80_0000, 0x2000, 0x3000, 0, 0, 0], 0x80_0000),
        );
        assert_eq!(rows(&m), vec![(0x80_0000, 0x80_3000, "r--p".into())]);
    }

    #[test]
    fn failed_and_other_calls_are_not_derived() {
        let m = RegionModel::new(vec![]);
        let failed = event([0, 0x1000, RW, ANON_PRIVATE, u64::MAX, 0], -12);
        assert_eq!(from_arguments(Call::Mmap, &failed, &m, 0), None);
        let kept = event([0x1000, 0x1000, 0x1000, 7, 0, 0], 0x5000);
        assert_eq!(
            from_arguments(Call::Mremap, &kept, &m, 0),
            None,
            "DONTUNMAP"
        );
        // The model does not hold the old range.
        let moved = event([0x1000, 0x1000, 0x2000, 1, 0, 0], 0x5000);
        assert_eq!(from_arguments(Call::Mremap, &moved, &m, 0), None);
        assert_eq!(from_arguments(Call::Madvise, &moved, &m, 0), None);
    }
}
