//! The trace region model against a page-granular reference: random
//! sequences of "the kernel now says range [lo, hi) holds these regions"
//! must leave the model equal to the reference, with no overlaps, a correct
//! byte count, and a Change that turns the old rows into the new ones.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pmap_cli::map::{
    model::RegionModel,
    region::{Perms, Region},
};
use pmap_fuzz::assert_change_explains;

/// Pages in the toy address space (addresses are page numbers * 4096).
const PAGES: usize = 64;
const PAGE: u64 = 4096;

/// Reference: per page, the region (start, end, perms byte) covering it.
type Reference = [Option<(u64, u64, u8)>; PAGES];

fn region(start: u64, end: u64, p: u8) -> Region {
    let perms = [b"r--p", b"rw-p", b"r-xp", b"rw-s"][(p % 4) as usize];
    Region {
        start: start * PAGE,
        end: end * PAGE,
        perms: Perms(*perms),
        ..Default::default()
    }
}

/// Decodes a list of disjoint regions from bytes: (gap, len, perms) triples.
fn regions(bytes: &[u8], from: u64, limit: u64) -> Vec<(u64, u64, u8)> {
    let mut at = from;
    let mut out = Vec::new();
    for chunk in bytes.chunks_exact(3) {
        let start = at + u64::from(chunk[0] % 4);
        let end = start + 1 + u64::from(chunk[1] % 8);
        if end > limit {
            break;
        }
        out.push((start, end, chunk[2]));
        at = end;
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&n, rest)) = data.split_first() else {
        return;
    };
    let (seed, mut ops) = rest.split_at(rest.len().min(3 * usize::from(n % 16)));
    let initial = regions(seed, 0, PAGES as u64);
    let mut reference: Reference = [None; PAGES];
    for &(s, e, p) in &initial {
        for page in s..e {
            reference[page as usize] = Some((s, e, p));
        }
    }
    let mut model = RegionModel::new(initial.iter().map(|&(s, e, p)| region(s, e, p)).collect());

    while ops.len() >= 3 {
        let lo = u64::from(ops[0]) % PAGES as u64;
        let hi = (lo + 1 + u64::from(ops[1] % 16)).min(PAGES as u64);
        let count = usize::from(ops[2] % 4);
        ops = &ops[3..];
        let take = (3 * count).min(ops.len());
        let (desc, tail) = ops.split_at(take);
        ops = tail;
        // What the kernel reports for [lo, hi): regions that intersect it,
        // possibly reaching beyond it (merges). The reference first drops
        // every region intersecting the widened range, as the model must.
        let mut fresh = regions(desc, lo.saturating_sub(2), (hi + 2).min(PAGES as u64));
        fresh.retain(|&(s, e, _)| s < hi && e > lo);
        let wlo = fresh.iter().map(|r| r.0).min().unwrap_or(lo).min(lo);
        let whi = fresh.iter().map(|r| r.1).max().unwrap_or(hi).max(hi);
        let doomed: Vec<(u64, u64, u8)> = reference[wlo as usize..whi as usize]
            .iter()
            .flatten()
            .copied()
            .collect();
        for (s, e, _) in doomed {
            for page in s..e {
                reference[page as usize] = None;
            }
        }
        for &(s, e, p) in &fresh {
            for page in s..e {
                reference[page as usize] = Some((s, e, p));
            }
        }
        let before = model.to_vec();
        let change = model.replace(
            lo * PAGE,
            hi * PAGE,
            fresh.iter().map(|&(s, e, p)| region(s, e, p)).collect(),
        );
        let after = model.to_vec();
        // The change explains the difference exactly.
        assert_change_explains(&before, &after, &change);
    }

    // The model equals the reference, page by page, and is consistent.
    let rows = model.to_vec();
    let mut mapped = 0;
    for pair in rows.windows(2) {
        assert!(pair[0].end <= pair[1].start, "overlap {pair:?}");
    }
    for r in &rows {
        mapped += r.size();
        for page in r.start / PAGE..r.end / PAGE {
            let (s, e, p) = reference[page as usize].expect("model has a page the reference lacks");
            assert_eq!(region(s, e, p), *r);
        }
    }
    assert_eq!(mapped, model.mapped());
    let ref_pages = reference.iter().flatten().count() as u64;
    assert_eq!(
        ref_pages * PAGE,
        mapped,
        "reference has pages the model lacks"
    );
});
