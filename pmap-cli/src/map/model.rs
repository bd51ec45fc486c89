//! The live region model of one traced process: the one place that says
//! what the process's address space looks like.
//!
//! It never imitates the kernel's merge and split rules (userspace cannot
//! see all their inputs, so such a model drifts). Each change replaces the
//! rows of an address range with what the kernel reports for it now, and
//! the difference between the old and new rows is the delta.

use std::collections::BTreeMap;

use crate::map::region::Region;

/// What one replacement changed: rows that went away and rows that came,
/// leaving out rows that are identical before and after.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Change {
    pub removed: Vec<Region>,
    pub added: Vec<Region>,
}

impl Change {
    pub fn is_empty(&self) -> bool {
        self.removed.is_empty() && self.added.is_empty()
    }

    /// Appends a change that happened after this one, so that the result
    /// goes straight from the rows before the first to the rows after the
    /// second (a region the first added and the second removed is in
    /// neither list).
    pub fn then(&mut self, later: Change) {
        for r in later.removed {
            match self.added.iter().position(|a| *a == r) {
                Some(i) => {
                    self.added.remove(i);
                }
                None => self.removed.push(r),
            }
        }
        for r in later.added {
            match self.removed.iter().position(|a| *a == r) {
                Some(i) => {
                    self.removed.remove(i);
                }
                None => self.added.push(r),
            }
        }
        self.removed.sort_by_key(|r| r.start);
        self.added.sort_by_key(|r| r.start);
    }

    /// The addresses its rows span, removed and added.
    pub fn span(&self) -> Option<(u64, u64)> {
        self.removed
            .iter()
            .chain(&self.added)
            .map(|r| (r.start, r.end))
            .reduce(|(a, b), (c, d)| (a.min(c), b.max(d)))
    }

    /// Bytes of address space covered after the change and not before.
    pub fn newly_mapped(&self) -> u64 {
        uncovered_by(&self.added, &self.removed)
    }

    /// Bytes of address space covered before the change and not after.
    pub fn newly_unmapped(&self) -> u64 {
        uncovered_by(&self.removed, &self.added)
    }
}

/// Bytes of `a` (sorted, disjoint) not covered by `b` (sorted, disjoint).
fn uncovered_by(a: &[Region], b: &[Region]) -> u64 {
    let mut total = 0;
    for r in a {
        let mut covered = 0;
        for s in b {
            let lo = r.start.max(s.start);
            let hi = r.end.min(s.end);
            if lo < hi {
                covered += hi - lo;
            }
        }
        // Both lists are disjoint, so `covered` cannot exceed the size;
        // saturate anyway rather than trust that in a release build.
        total += r.size().saturating_sub(covered);
    }
    total
}

/// Regions keyed by start address; never overlapping.
#[derive(Clone, Debug, Default)]
pub struct RegionModel {
    regions: BTreeMap<u64, Region>,
    mapped: u64,
}

impl RegionModel {
    pub fn new(regions: Vec<Region>) -> RegionModel {
        let mut m = RegionModel::default();
        for r in regions {
            m.mapped += r.size();
            m.regions.insert(r.start, r);
        }
        m
    }

    pub fn regions(&self) -> impl Iterator<Item = &Region> {
        self.regions.values()
    }

    pub fn to_vec(&self) -> Vec<Region> {
        self.regions.values().cloned().collect()
    }

    pub fn len(&self) -> usize {
        self.regions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.regions.is_empty()
    }

    /// Total bytes mapped.
    pub fn mapped(&self) -> u64 {
        self.mapped
    }

    /// The region whose name is exactly `name` (e.g. `[heap]`).
    pub fn find_named(&self, name: &[u8]) -> Option<&Region> {
        self.regions.values().find(|r| r.name == name)
    }

    /// The region that holds `addr`, if any.
    pub fn containing(&self, addr: u64) -> Option<&Region> {
        self.regions
            .range(..=addr)
            .next_back()
            .map(|(_, r)| r)
            .filter(|r| r.end > addr)
    }

    /// The regions that intersect `[lo, hi)`, in address order.
    pub fn within(&self, lo: u64, hi: u64) -> impl Iterator<Item = &Region> {
        let before = self
            .regions
            .range(..lo)
            .next_back()
            .map(|(_, r)| r)
            .filter(|r| r.end > lo);
        before
            .into_iter()
            .chain(self.regions.range(lo..hi).map(|(_, r)| r))
    }

    /// The smallest range that holds `[lo, hi)` and every region that
    /// intersects it.
    pub fn extent(&self, lo: u64, hi: u64) -> (u64, u64) {
        let mut hits = self.within(lo, hi);
        let first = hits.next();
        let last = hits.last().or(first);
        (
            first.map_or(lo, |r| r.start.min(lo)),
            last.map_or(hi, |r| r.end.max(hi)),
        )
    }

    /// Replaces every region that intersects `[lo, hi)` with `fresh` (the
    /// kernel's regions for that range, sorted, which may reach beyond it).
    /// Rows identical before and after stay where they are: a call's
    /// capture holds its neighbours too, and this runs once per call.
    pub fn replace(&mut self, lo: u64, hi: u64, mut fresh: Vec<Region>) -> Change {
        // Sorted (and so searchable) whatever the caller did: a range can
        // hold thousands of rows.
        if !fresh.is_sorted_by_key(|r| r.start) {
            fresh.sort_by_key(|r| r.start);
        }
        let at = |rows: &[Region], start: u64| rows.binary_search_by_key(&start, |r| r.start);
        let (lo, hi) = fresh
            .iter()
            .fold((lo, hi), |(lo, hi), r| (lo.min(r.start), hi.max(r.end)));
        let mut change = Change::default();
        for r in self.within(lo, hi) {
            if at(&fresh, r.start).map_or(true, |i| fresh[i] != *r) {
                change.removed.push(r.clone());
            }
        }
        for r in &change.removed {
            self.mapped -= r.size();
            // A row that a new one replaces at the same start is
            // overwritten below, in place.
            if at(&fresh, r.start).is_err() {
                self.regions.remove(&r.start);
            }
        }
        for r in fresh {
            // Every row of the range left in the model is in `fresh`, or
            // a removed one not yet overwritten.
            let same =
                self.regions.get(&r.start) == Some(&r) && at(&change.removed, r.start).is_err();
            if !same {
                change.added.push(r.clone());
                self.mapped += r.size();
                self.regions.insert(r.start, r);
            }
        }
        change
    }

    /// Replaces everything with `fresh` (a full view of the kernel's,
    /// sorted by start). Walks both in address order and touches only the
    /// rows that differ: on a large map at rest that is none, and no
    /// second copy of the map is built.
    pub fn replace_all(&mut self, fresh: Vec<Region>) -> Change {
        let mut change = Change::default();
        let mut old = self.regions.values().peekable();
        let mut new = fresh.into_iter().peekable();
        loop {
            match (old.peek(), new.peek()) {
                (None, None) => break,
                (Some(o), Some(f)) if *o == f => {
                    old.next();
                    new.next();
                }
                (Some(o), Some(f)) if o.start > f.start => change.added.extend(new.next()),
                (Some(_), _) => change.removed.extend(old.next().cloned()),
                (None, Some(_)) => change.added.extend(new.next()),
            }
        }
        self.apply(&change);
        change
    }

    /// Applies a change found elsewhere (a recording's delta): its removed
    /// rows go, its added rows come.
    pub fn apply(&mut self, change: &Change) {
        for r in &change.removed {
            if let Some(old) = self.regions.remove(&r.start) {
                self.mapped -= old.size();
            }
        }
        for r in &change.added {
            self.mapped += r.size();
            if let Some(old) = self.regions.insert(r.start, r.clone()) {
                self.mapped -= old.size();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::map::region::test_region as r;

    #[test]
    fn split_by_mprotect_reports_one_removed_three_added() {
        let mut m = RegionModel::new(vec![r(0x1000, 0x5000, b"rw-p"), r(0x9000, 0xa000, b"r--p")]);
        let fresh = vec![
            r(0x1000, 0x2000, b"rw-p"),
            r(0x2000, 0x3000, b"r--p"),
            r(0x3000, 0x5000, b"rw-p"),
        ];
        let c = m.replace(0x2000, 0x3000, fresh.clone());
        assert_eq!(c.removed, vec![r(0x1000, 0x5000, b"rw-p")]);
        assert_eq!(c.added, fresh);
        assert_eq!(m.len(), 4);
        assert_eq!(m.mapped(), 0x4000 + 0x1000);
        assert_eq!(c.newly_mapped(), 0);
        assert_eq!(c.newly_unmapped(), 0);
    }

    #[test]
    fn unchanged_neighbours_are_not_reported() {
        let mut m = RegionModel::new(vec![r(0x1000, 0x2000, b"rw-p"), r(0x2000, 0x3000, b"r--p")]);
        let c = m.replace(0x1000, 0x3000, vec![r(0x1000, 0x2000, b"rw-p")]);
        assert_eq!(c.removed, vec![r(0x2000, 0x3000, b"r--p")]);
        assert!(c.added.is_empty());
        assert_eq!(c.newly_unmapped(), 0x1000);
    }

    #[test]
    fn kernel_merge_beyond_the_range_replaces_the_neighbour() {
        // mprotect of [0x2000,0x3000) to rw- merges it with its neighbours.
        let mut m = RegionModel::new(vec![
            r(0x1000, 0x2000, b"rw-p"),
            r(0x2000, 0x3000, b"r--p"),
            r(0x3000, 0x4000, b"rw-p"),
        ]);
        let c = m.replace(0x2000, 0x3000, vec![r(0x1000, 0x4000, b"rw-p")]);
        assert_eq!(c.removed.len(), 3);
        assert_eq!(c.added, vec![r(0x1000, 0x4000, b"rw-p")]);
        assert_eq!(m.to_vec(), vec![r(0x1000, 0x4000, b"rw-p")]);
    }

    #[test]
    fn consecutive_changes_compose() {
        // mremap: the first range's sync adds a region the second removes.
        let mut first = Change {
            removed: vec![r(0x1000, 0x2000, b"rw-p")],
            added: vec![r(0x5000, 0x6000, b"rw-p")],
        };
        first.then(Change {
            removed: vec![r(0x5000, 0x6000, b"rw-p")],
            added: vec![r(0x5000, 0x7000, b"rw-p")],
        });
        assert_eq!(first.removed, vec![r(0x1000, 0x2000, b"rw-p")]);
        assert_eq!(first.added, vec![r(0x5000, 0x7000, b"rw-p")]);
        assert_eq!(first.newly_mapped(), 0x2000);
        assert_eq!(first.newly_unmapped(), 0x1000);
        // A region removed and then added back is no change at all.
        let mut c = Change {
            removed: vec![r(0x1000, 0x2000, b"rw-p")],
            added: vec![],
        };
        c.then(Change {
            removed: vec![],
            added: vec![r(0x1000, 0x2000, b"rw-p")],
        });
        assert!(c.is_empty());
    }

    #[test]
    fn extent_covers_partially_overlapping_regions() {
        let m = RegionModel::new(vec![r(0x1000, 0x4000, b"rw-p"), r(0x8000, 0x9000, b"rw-p")]);
        assert_eq!(m.extent(0x2000, 0x3000), (0x1000, 0x4000));
        assert_eq!(m.extent(0x5000, 0x6000), (0x5000, 0x6000));
        assert_eq!(m.extent(0x3000, 0x8800), (0x1000, 0x9000));
        // A region ending exactly at lo does not intersect.
        assert_eq!(m.extent(0x4000, 0x5000), (0x4000, 0x5000));
    }

    #[test]
    fn replace_all_diffs_everything() {
        let mut m = RegionModel::new(vec![r(0x1000, 0x2000, b"rw-p"), r(0x3000, 0x4000, b"r--p")]);
        let c = m.replace_all(vec![r(0x1000, 0x2000, b"rw-p"), r(0x5000, 0x6000, b"r-xp")]);
        assert_eq!(c.removed, vec![r(0x3000, 0x4000, b"r--p")]);
        assert_eq!(c.added, vec![r(0x5000, 0x6000, b"r-xp")]);
        assert_eq!(m.mapped(), 0x2000);
    }

    #[test]
    fn replace_all_takes_a_changed_row_at_the_same_start() {
        let mut m = RegionModel::new(vec![
            r(0x1000, 0x3000, b"rw-p"),
            r(0x3000, 0x4000, b"r--p"),
            r(0x8000, 0x9000, b"r--p"),
        ]);
        let fresh = vec![
            r(0x1000, 0x2000, b"r--p"),
            r(0x2000, 0x4000, b"rw-p"),
            r(0x8000, 0x9000, b"r--p"),
        ];
        let c = m.replace_all(fresh.clone());
        assert_eq!(
            c.removed,
            vec![r(0x1000, 0x3000, b"rw-p"), r(0x3000, 0x4000, b"r--p")]
        );
        assert_eq!(c.added, fresh[..2].to_vec());
        assert_eq!(m.to_vec(), fresh);
        assert_eq!(m.mapped(), 0x4000);
    }
}
