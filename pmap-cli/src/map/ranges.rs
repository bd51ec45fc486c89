//! A set of address ranges kept merged, for the rows the session has not
//! confirmed with the kernel yet.

use std::collections::BTreeMap;

/// Disjoint `[lo, hi)` ranges by start; ranges that overlap or touch are
/// merged on insertion, so lookups stay logarithmic however many calls of
/// a batch added to it.
#[derive(Clone, Debug, Default)]
pub struct RangeSet(BTreeMap<u64, u64>);

impl RangeSet {
    pub fn insert(&mut self, mut lo: u64, mut hi: u64) {
        while let Some((&s, &e)) = self.0.range(..=hi).next_back() {
            if e < lo {
                break;
            }
            self.0.remove(&s);
            lo = lo.min(s);
            hi = hi.max(e);
        }
        self.0.insert(lo, hi);
    }

    /// `[lo, hi)` widened by the ranges that overlap it.
    pub fn cover(&self, lo: u64, hi: u64) -> (u64, u64) {
        let mut out = (lo, hi);
        for (&s, &e) in self.0.range(..hi).rev() {
            if e <= lo {
                break;
            }
            out = (out.0.min(s), out.1.max(e));
        }
        out
    }

    /// Like `cover`, and takes the overlapping ranges out.
    pub fn take(&mut self, lo: u64, hi: u64) -> (u64, u64) {
        let (l, h) = self.cover(lo, hi);
        let doomed: Vec<u64> = self
            .0
            .range(..hi)
            .rev()
            .take_while(|&(_, &e)| e > lo)
            .map(|(&s, _)| s)
            .collect();
        for s in doomed {
            self.0.remove(&s);
        }
        (l, h)
    }

    /// Takes `[lo, hi)` out, cutting the ranges it overlaps.
    pub fn remove(&mut self, lo: u64, hi: u64) {
        let hit: Vec<(u64, u64)> = self
            .0
            .range(..hi)
            .rev()
            .take_while(|&(_, &e)| e > lo)
            .map(|(&s, &e)| (s, e))
            .collect();
        for (s, e) in hit {
            self.0.remove(&s);
            if s < lo {
                self.0.insert(s, lo);
            }
            if e > hi {
                self.0.insert(hi, e);
            }
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.0.iter().map(|(&s, &e)| (s, e))
    }

    pub fn pop(&mut self) -> Option<(u64, u64)> {
        self.0.pop_first()
    }

    pub fn clear(&mut self) {
        self.0.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merges_and_takes_what_overlaps() {
        let mut s = RangeSet::default();
        s.insert(0x1000, 0x2000);
        s.insert(0x2000, 0x3000);
        s.insert(0x5000, 0x6000);
        assert_eq!(s.cover(0x2800, 0x2900), (0x1000, 0x3000));
        // Touching is not overlapping.
        assert_eq!(s.cover(0x3000, 0x5000), (0x3000, 0x5000));
        assert_eq!(s.take(0x2fff, 0x5001), (0x1000, 0x6000));
        assert_eq!(s.pop(), None);
    }

    /// Whether `[lo, hi)` lies wholly inside one range of `s`.
    fn inside(s: &RangeSet, lo: u64, hi: u64) -> bool {
        s.iter().any(|(a, b)| a <= lo && hi <= b)
    }

    #[test]
    fn removing_cuts_what_it_overlaps() {
        let mut s = RangeSet::default();
        s.insert(0x1000, 0x5000);
        s.insert(0x8000, 0x9000);
        s.remove(0x2000, 0x3000);
        assert!(inside(&s, 0x1000, 0x2000) && inside(&s, 0x3000, 0x5000));
        assert!(!inside(&s, 0x1000, 0x3000) && !inside(&s, 0x2000, 0x2800));
        s.remove(0x4000, 0x8800);
        assert!(inside(&s, 0x3000, 0x4000) && inside(&s, 0x8800, 0x9000));
        assert!(!inside(&s, 0x8000, 0x8800));
    }
}
