//! What the tracer remembers about each region of the model: who created
//! it and who last changed it. The record follows the
//! region through splits, merges and re-protections (a piece inherits the
//! record of the region it came from).

use std::{collections::BTreeMap, rc::Rc};

use smallvec::SmallVec;

use crate::map::{model::Change, region::Region};

/// One change-causing call, as remembered.
#[derive(Clone, Debug)]
pub struct Stamp {
    pub tid: u32,
    /// Nanoseconds since the trace started.
    pub t_ns: u64,
    /// `mmap`, `mprotect`, ... or `observed`, `exec`.
    pub what: &'static str,
    /// The call site (with --stacks), see `Stack::site`.
    pub site: Option<Rc<str>>,
}

#[derive(Clone, Debug, Default)]
pub struct RegionInfo {
    pub created: Option<Stamp>,
    pub changed: Option<Stamp>,
    /// Created by mmap with MAP_STACK (glibc thread stacks).
    pub map_stack: bool,
}

/// Regions sorted by start, disjoint (so also sorted by end), for
/// overlap queries in O(log n + hits): a resync can bring tens of
/// thousands of rows at once.
pub struct Sorted<'c>(Vec<&'c Region>);

impl<'c> Sorted<'c> {
    pub fn new(regions: &'c [Region]) -> Sorted<'c> {
        let mut v: Vec<&Region> = regions.iter().collect();
        v.sort_by_key(|r| r.start);
        Sorted(v)
    }

    /// The regions that intersect `[lo, hi)`.
    pub fn overlapping(&self, lo: u64, hi: u64) -> impl Iterator<Item = &'c Region> + '_ {
        let first = self.0.partition_point(|r| r.end <= lo);
        self.0[first..]
            .iter()
            .take_while(move |r| r.start < hi)
            .copied()
    }
}

#[derive(Debug, Default)]
pub struct RegionTable {
    info: BTreeMap<u64, RegionInfo>,
}

impl RegionTable {
    pub fn get(&self, start: u64) -> Option<&RegionInfo> {
        self.info.get(&start)
    }

    /// Moves the records of `change.removed` to `change.added`; `update`
    /// adjusts each added region's record, given the regions it came from.
    /// Returns the records of regions that are gone (no added region came
    /// from them). Runs once per traced call: small changes allocate
    /// nothing but the result.
    pub fn apply(
        &mut self,
        change: &Change,
        mut update: impl FnMut(&Region, &[Region], &mut RegionInfo),
    ) -> Vec<(Region, RegionInfo)> {
        let by_start = |v: &[Region]| v.is_sorted_by_key(|r| r.start);
        if !by_start(&change.removed) || !by_start(&change.added) {
            let mut sorted = change.clone();
            sorted.removed.sort_by_key(|r| r.start);
            sorted.added.sort_by_key(|r| r.start);
            return self.apply(&sorted, update);
        }
        let (removed, added) = (&change.removed[..], &change.added[..]);
        // The records of the removed rows, by index in `removed`.
        // (A record whose start an added row takes is overwritten in place
        // below, not removed: fewer shifts inside the tree's nodes.)
        let mut old: SmallVec<[Option<RegionInfo>; 4]> = removed
            .iter()
            .map(|r| {
                if added.binary_search_by_key(&r.start, |a| a.start).is_ok() {
                    self.info.get(&r.start).cloned()
                } else {
                    self.info.remove(&r.start)
                }
            })
            .collect();
        for a in added {
            let from = overlapping(removed, a.start, a.end);
            // A region made of several (a merge) is as old as its oldest
            // piece; a piece with no record was there before the trace.
            let oldest = from.clone().min_by_key(|&i| {
                old[i]
                    .as_ref()
                    .and_then(|info| info.created.as_ref())
                    .map(|c| c.t_ns)
            });
            let mut info = oldest.and_then(|i| old[i].clone()).unwrap_or_default();
            update(a, &removed[from], &mut info);
            self.info.insert(a.start, info);
        }
        removed
            .iter()
            .enumerate()
            .filter(|(_, o)| overlapping(added, o.start, o.end).is_empty())
            .filter_map(|(i, o)| old[i].take().map(|info| (o.clone(), info)))
            .collect()
    }
}

/// The indices of the rows of `rows` (sorted by start, disjoint) that
/// intersect `[lo, hi)`.
fn overlapping(rows: &[Region], lo: u64, hi: u64) -> std::ops::Range<usize> {
    let first = rows.partition_point(|r| r.end <= lo);
    first..first + rows[first..].partition_point(|r| r.start < hi)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::map::region::test_region as r;

    #[test]
    fn pieces_inherit_their_record_and_gone_regions_are_returned() {
        let mut t = RegionTable::default();
        let create = Change {
            removed: vec![],
            added: vec![r(0x1000, 0x4000, b"rw-p"), r(0x8000, 0x9000, b"rw-p")],
        };
        let gone = t.apply(&create, |_, from, info| {
            assert!(from.is_empty());
            info.map_stack = true;
        });
        assert!(gone.is_empty());
        // mprotect of the middle page splits the first region in three.
        let split = Change {
            removed: vec![r(0x1000, 0x4000, b"rw-p")],
            added: vec![
                r(0x1000, 0x2000, b"rw-p"),
                r(0x2000, 0x3000, b"r-xp"),
                r(0x3000, 0x4000, b"rw-p"),
            ],
        };
        let mut seen = Vec::new();
        t.apply(&split, |a, from, info| {
            assert_eq!(from.len(), 1);
            seen.push((a.start, info.map_stack));
        });
        assert_eq!(seen, vec![(0x1000, true), (0x2000, true), (0x3000, true)]);
        let unmap = Change {
            removed: vec![r(0x8000, 0x9000, b"rw-p")],
            added: vec![],
        };
        let gone = t.apply(&unmap, |_, _, _| {});
        assert_eq!(gone.len(), 1);
        assert!(gone[0].1.map_stack);
        assert!(t.get(0x8000).is_none());
    }

    #[test]
    fn a_merge_with_a_region_from_before_the_trace_is_as_old_as_it() {
        let mut t = RegionTable::default();
        let stamp = |t_ns| Stamp {
            tid: 1,
            t_ns,
            what: "mmap",
            site: None,
        };
        // 0x2000-0x3000 was made while traced; 0x3000-0x5000 was there at
        // the start (no record).
        t.apply(
            &Change {
                removed: vec![],
                added: vec![r(0x2000, 0x3000, b"rw-p")],
            },
            |_, _, info| info.created = Some(stamp(5)),
        );
        let merge = Change {
            removed: vec![r(0x2000, 0x3000, b"rw-p"), r(0x3000, 0x5000, b"rw-p")],
            added: vec![r(0x2000, 0x5000, b"rw-p")],
        };
        let mut created = Vec::new();
        t.apply(&merge, |_, _, info| created.push(info.created.clone()));
        assert_eq!(created.len(), 1);
        assert!(created[0].is_none(), "{created:?}");
    }
}
