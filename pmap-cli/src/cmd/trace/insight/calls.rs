//! What one traced call did, as the insight records it: the allocator's
//! accounting (`account`), protection changes for W^X (`protections`),
//! code mapped twice (`dual_mappings`), and the ranges a change unmapped.

use std::{collections::HashMap, rc::Rc};

use pmap_common::Event;

use super::{
    Proc,
    alloc::{self, AllocStats, PATTERN_MIN, human},
    notes::Note,
    regions,
    wx::{self, WxStats},
};
use crate::{
    cmd::trace::syscalls::Call,
    map::{
        model::{Change, RegionModel},
        region::Region,
    },
};

/// `n` rounded up to whole pages, as the kernel rounds a call's length.
pub(super) fn page_up(n: u64) -> u64 {
    n.saturating_add(4095) & !4095
}

pub(super) fn wx_prot(p: u64) -> String {
    let b = |bit: i32, c: char| if p & bit as u64 != 0 { c } else { '-' };
    format!(
        "{}{}{}",
        b(libc::PROT_READ, 'r'),
        b(libc::PROT_WRITE, 'w'),
        b(libc::PROT_EXEC, 'x')
    )
}

/// Ranges covered before the change and not after.
pub(super) fn unmapped(c: &Change) -> Vec<(u64, u64)> {
    let mut v = Vec::new();
    let added = regions::Sorted::new(&c.added);
    for r in &c.removed {
        let mut lo = r.start;
        for a in added.overlapping(r.start, r.end) {
            if a.start > lo {
                v.push((lo, a.start));
            }
            lo = lo.max(a.end);
        }
        if lo < r.end {
            v.push((lo, r.end));
        }
    }
    v
}

/// The W^X view of one syscall: protections as the call set them.
pub(super) fn protections(
    wx: &mut WxStats,
    call: Call,
    ev: &Event,
    change: &Change,
    model: &RegionModel,
    t_ns: u64,
) -> Vec<wx::Event> {
    let a = &ev.args;
    if ev.ret < 0 {
        return Vec::new();
    }
    let prot = (a[2] & 7) as u8;
    match call {
        Call::Mmap => {
            let lo = ev.ret as u64;
            wx.map(lo, lo.saturating_add(page_up(a[1])), prot, t_ns)
        }
        Call::Mprotect | Call::PkeyMprotect => {
            // Before the call: the rows this change replaced, else the
            // model (the range did not change, or changed back already).
            let seed = |lo: u64, hi: u64| -> Vec<(u64, u64, u8)> {
                let before: Vec<(u64, u64, u8)> = change
                    .removed
                    .iter()
                    .filter(|r| r.start < hi && lo < r.end)
                    .map(|r| (r.start, r.end, wx::prot_of(r.perms)))
                    .collect();
                if !before.is_empty() {
                    return before;
                }
                model
                    .within(lo, hi)
                    .map(|r| (r.start, r.end, wx::prot_of(r.perms)))
                    .collect()
            };
            wx.protect(a[0], a[0].saturating_add(page_up(a[1])), prot, t_ns, &seed)
        }
        Call::Munmap => {
            wx.unmap(a[0], a[0].saturating_add(page_up(a[1])), t_ns);
            Vec::new()
        }
        Call::Mremap => {
            wx.remap(a[0], page_up(a[1]), ev.ret as u64, page_up(a[2]), t_ns);
            Vec::new()
        }
        _ => Vec::new(),
    }
}

/// The allocator view of one syscall.
pub(super) fn account(
    p: &mut Proc,
    call: Call,
    ev: &Event,
    change: &Change,
    t_ns: u64,
    site: Option<Rc<str>>,
    notes: &mut Vec<Note>,
) {
    let a = &ev.args;
    // Calls are counted here only when they changed the map (the
    // tracer's summary counts every call; the two are shown together).
    let changed = !change.is_empty();
    if ev.ret < 0 {
        if changed {
            p.alloc.call(call.name(), 0);
        }
        return;
    }
    let grew = match call {
        Call::Mmap => {
            p.alloc.mapped(t_ns, ev.ret as u64, a[1]);
            if a[1] >= 1 << 20 {
                p.timeline
                    .mark(t_ns, "map", format!("mmap {}", human(a[1])));
            }
            a[1]
        }
        Call::Munmap => {
            if let Some(len) = p.alloc.unmapped(t_ns, a[0], a[1]) {
                let n = p.alloc.churn_by_len.get(&len).copied().unwrap_or(0);
                if n == PATTERN_MIN {
                    p.timeline
                        .mark(t_ns, "churn", format!("churn {}", human(len)));
                    notes.push(Note::churn(
                        len,
                        n,
                        alloc::CHURN_NS / 1_000_000_000,
                        AllocStats::hint(len),
                    ));
                }
            }
            0
        }
        Call::Mremap => a[2].saturating_sub(a[1]),
        Call::Brk => {
            let heap = change
                .added
                .iter()
                .find(|r| r.name == b"[heap]")
                .map(|r| r.size());
            let gone = change.removed.iter().any(|r| r.name == b"[heap]");
            match heap {
                Some(h) => {
                    let grew = h.saturating_sub(p.heap);
                    p.heap = h;
                    p.alloc.brk_point(t_ns, h);
                    grew
                }
                None if gone => {
                    p.heap = 0;
                    p.alloc.brk_point(t_ns, 0);
                    0
                }
                None => 0,
            }
        }
        _ => 0,
    };
    let bytes = match call {
        Call::Munmap | Call::Mprotect | Call::PkeyMprotect | Call::Madvise => a[1],
        _ => grew,
    };
    if changed {
        p.alloc.call(call.name(), bytes);
    }
    if grew > 0
        && let Some(s) = site
    {
        p.alloc.site(s, grew);
    }
}

/// The same file mapped shared-writable and executable at once (a JIT's
/// dual mapping, or a hole in W^X).
/// A file: device major, minor, inode.
type FileId = (u32, u32, u64);

pub(super) fn dual_mappings(
    model: &RegionModel,
    change: &Change,
    wx: &mut WxStats,
    notes: &mut Vec<Note>,
) {
    let file = |r: &Region| -> FileId { (r.dev_major, r.dev_minor, r.inode) };
    let shared_w = |r: &Region| r.perms.writable() && r.perms.shared();
    let candidates: std::collections::HashSet<FileId> = change
        .added
        .iter()
        .filter(|a| a.inode != 0 && (shared_w(a) || a.perms.executable()))
        .map(file)
        .collect();
    if candidates.is_empty() {
        return;
    }
    // One pass over the map for all the files this change touched.
    // Per file: a shared-writable region and an executable one.
    let mut seen: HashMap<FileId, [Option<&Region>; 2]> = HashMap::new();
    for r in model.regions().filter(|r| candidates.contains(&file(r))) {
        let e = seen.entry(file(r)).or_default();
        // One rwxs region is flagged as rwx already; this is about two.
        if shared_w(r) && !r.perms.executable() {
            e[0].get_or_insert(r);
        }
        if r.perms.executable() && !shared_w(r) {
            e[1].get_or_insert(r);
        }
    }
    for [w, x] in seen.into_values() {
        let (Some(w), Some(x)) = (w, x) else { continue };
        let name = String::from_utf8_lossy(&w.name).into_owned();
        if !wx.dual_files.contains(&name) {
            notes.push(Note::wx_dual(&name, w.start, x.start));
            wx.dual_files.push(name);
        }
    }
}
