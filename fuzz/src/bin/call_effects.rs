//! Calls applied from their arguments (`trace::effect`) against a
//! page-granular reference: random mmap (MAP_FIXED), munmap, mprotect, brk
//! and mremap (moves, growth, shrinking) must leave every page with the permissions and sharing the calls
//! gave it, no overlaps, a correct byte count, and a Change that turns the
//! old rows into the new ones. Now and then the reference's view replaces
//! the model wholesale (`replace_all`, as at table time): the model must
//! then equal it exactly.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pmap_cli::{
    cmd::trace::{effect, syscalls::Call},
    map::{
        model::{Change, RegionModel},
        region::{Perms, Region},
    },
};
use pmap_common::Event;
use pmap_fuzz::assert_change_explains;

/// Pages in the toy address space; the program break starts at page
/// `BRK_PAGE` (addresses are page numbers * 4096, offset by `BASE`).
const PAGES: usize = 64;
const PAGE: u64 = 4096;
const BASE: u64 = 0x10_0000;
const BRK_PAGE: u64 = 48;

/// Per page: (perms, is heap) or unmapped.
type Reference = [Option<([u8; 4], bool)>; PAGES];

fn event(args: [u64; 6], ret: i64) -> Event {
    Event {
        args,
        ret,
        ..Event::default()
    }
}

fn perms_of(prot: u8, shared: bool) -> [u8; 4] {
    [
        if prot & 1 != 0 { b'r' } else { b'-' },
        if prot & 2 != 0 { b'w' } else { b'-' },
        if prot & 4 != 0 { b'x' } else { b'-' },
        if shared { b's' } else { b'p' },
    ]
}

/// The reference as the kernel would list it: maximal runs of pages with
/// the same permissions (anonymous, so no offsets break them).
fn reference_rows(reference: &Reference) -> Vec<Region> {
    let mut rows: Vec<Region> = Vec::new();
    for (i, page) in reference.iter().enumerate() {
        let Some((perms, heap)) = page else { continue };
        let start = BASE + i as u64 * PAGE;
        let name = if *heap {
            b"[heap]".to_vec()
        } else {
            Vec::new()
        };
        match rows.last_mut() {
            Some(last) if last.end == start && last.perms.0 == *perms && last.name == name => {
                last.end += PAGE;
            }
            _ => rows.push(Region {
                start,
                end: start + PAGE,
                perms: Perms(*perms),
                name,
                ..Default::default()
            }),
        }
    }
    rows
}

fuzz_target!(|data: &[u8]| {
    let mut reference: Reference = [None; PAGES];
    let mut model = RegionModel::new(Vec::new());
    let mut brk = BRK_PAGE;
    for op in data.chunks_exact(4) {
        let lo = u64::from(op[1]) % BRK_PAGE;
        let len = 1 + u64::from(op[2] % 8);
        let hi = (lo + len).min(BRK_PAGE);
        let (addr, bytes) = (BASE + lo * PAGE, (hi - lo) * PAGE);
        let prot = op[3] & 7;
        let (call, ev) = match op[0] % 6 {
            0 | 1 => {
                let shared = op[3] & 8 != 0;
                let kind = if shared {
                    libc::MAP_SHARED
                } else {
                    libc::MAP_PRIVATE
                };
                let flags = (kind | libc::MAP_ANONYMOUS | libc::MAP_FIXED) as u64;
                for p in lo..hi {
                    reference[p as usize] = Some((perms_of(prot, shared), false));
                }
                let args = [addr, bytes, u64::from(prot), flags, u64::MAX, 0];
                (Call::Mmap, event(args, addr as i64))
            }
            5 => {
                // mremap of [lo, hi): in place, or to `to` (MREMAP_FIXED),
                // to a new length of 1-6 pages. Only what the kernel would
                // accept: the old range fully mapped; in place, a growth
                // into free pages; a move that does not overlap.
                let new_len = 1 + u64::from(op[3] >> 4) % 6;
                let to = if op[3] & 8 != 0 {
                    lo
                } else {
                    u64::from(op[3] & 7) * 6
                };
                let to_end = to + new_len;
                let mapped = (lo..hi).all(|p| reference[p as usize].is_some());
                let fits = to_end <= BRK_PAGE
                    && if to == lo {
                        (hi..to_end).all(|p| reference[p as usize].is_none())
                    } else {
                        to_end <= lo || to >= hi
                    };
                if !mapped || !fits {
                    continue;
                }
                let pages: Vec<_> = (lo..hi).map(|p| reference[p as usize]).collect();
                for p in lo..hi {
                    reference[p as usize] = None;
                }
                for (i, p) in (to..to_end).enumerate() {
                    reference[p as usize] = pages[i.min(pages.len() - 1)];
                }
                let flags = (libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED) as u64;
                let args = [addr, bytes, new_len * PAGE, flags, BASE + to * PAGE, 0];
                (Call::Mremap, event(args, (BASE + to * PAGE) as i64))
            }
            2 => {
                for p in lo..hi {
                    reference[p as usize] = None;
                }
                (Call::Munmap, event([addr, bytes, 0, 0, 0, 0], 0))
            }
            3 => {
                for p in lo..hi {
                    if let Some((perms, _)) = &mut reference[p as usize] {
                        *perms = perms_of(prot, perms[3] == b's');
                    }
                }
                let args = [addr, bytes, u64::from(prot), 0, 0, 0];
                (Call::Mprotect, event(args, 0))
            }
            _ => {
                // brk to a page in [BRK_PAGE, PAGES]; the heap is rw-p.
                let new = BRK_PAGE + u64::from(op[1]) % (PAGES as u64 - BRK_PAGE + 1);
                for p in BRK_PAGE..PAGES as u64 {
                    reference[p as usize] = (p < new).then_some((*b"rw-p", true));
                }
                let changed = new != brk;
                brk = new;
                let to = BASE + new * PAGE;
                let e = event([to, 0, 0, 0, 0, 0], to as i64);
                if !changed {
                    let base = BASE + BRK_PAGE * PAGE;
                    let fx = effect::from_arguments(Call::Brk, &e, &model, base);
                    assert!(fx.is_none(), "brk to the same break changed {fx:?}");
                    continue;
                }
                (Call::Brk, e)
            }
        };
        let parts = effect::from_arguments(call, &ev, &model, BASE + BRK_PAGE * PAGE)
            .expect("a successful mmap, munmap, mprotect, brk or mremap is derivable");
        let before = model.to_vec();
        let mut change = Change::default();
        for fx in parts {
            change.then(model.replace(fx.lo, fx.hi, fx.rows));
        }
        let after = model.to_vec();
        assert_change_explains(&before, &after, &change);
        for pair in after.windows(2) {
            assert!(pair[0].end <= pair[1].start, "overlap {pair:?}");
        }
        // Page by page, the model says what the calls did.
        let mut mapped = 0;
        for r in &after {
            mapped += r.size();
            for page in (r.start - BASE) / PAGE..(r.end - BASE) / PAGE {
                let (perms, _) = reference[page as usize]
                    .unwrap_or_else(|| panic!("model maps page {page}, the calls did not"));
                assert_eq!(r.perms.0, perms, "page {page} in {r:?}");
            }
        }
        assert_eq!(mapped, model.mapped());
        let ref_pages = reference.iter().flatten().count() as u64;
        assert_eq!(
            ref_pages * PAGE,
            mapped,
            "the calls mapped pages the model lacks"
        );

        // A table-time check: the kernel's rows replace the model's.
        if op[3] & 0x80 != 0 {
            let fresh = reference_rows(&reference);
            let before = model.to_vec();
            let change = model.replace_all(fresh.clone());
            assert_eq!(model.to_vec(), fresh);
            assert_eq!(model.mapped(), ref_pages * PAGE);
            assert_change_explains(&before, &fresh, &change);
        }
    }
});
