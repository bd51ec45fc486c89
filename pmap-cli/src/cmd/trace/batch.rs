//! What the events of a batch that are not applied yet will change.
//!
//! The tracer applies the events it drained from the ring in time order.
//! When it applies one, the later ones have already happened in the
//! kernel: where they changed the addresses the tracer is about to read,
//! the kernel's answer would show their effect under this event (see
//! `effect`). This index answers "does a later event of this process in
//! the batch change any of `[lo, hi)`?".

use std::collections::BTreeSet;

use super::syscalls::Affected;

#[derive(Debug, Default)]
pub struct LaterCalls {
    /// `(pid, lo, hi, index)` of each range an unapplied event may change.
    ranges: BTreeSet<(u32, u64, u64, usize)>,
    /// `(pid, index)` of unapplied events that may change anything.
    all: BTreeSet<(u32, usize)>,
    /// The longest range: an overlapping range starts at most this far
    /// below the queried one.
    max_len: u64,
}

impl LaterCalls {
    /// The index of a whole batch: `footprints[i]` is event i's process
    /// and what it may change.
    pub fn new(footprints: &[(u32, Affected)]) -> LaterCalls {
        let mut later = LaterCalls::default();
        for (i, (pid, what)) in footprints.iter().enumerate() {
            match what {
                Affected::Nothing => {}
                Affected::All => {
                    later.all.insert((*pid, i));
                }
                Affected::Ranges(rs) => {
                    for &(lo, hi) in rs {
                        later.max_len = later.max_len.max(hi.saturating_sub(lo));
                        later.ranges.insert((*pid, lo, hi, i));
                    }
                }
            }
        }
        later
    }

    /// Event `i` is being applied: it is no longer later than anything.
    pub fn take(&mut self, i: usize, pid: u32, what: &Affected) {
        match what {
            Affected::Nothing => {}
            Affected::All => {
                self.all.remove(&(pid, i));
            }
            Affected::Ranges(rs) => {
                for &(lo, hi) in rs {
                    self.ranges.remove(&(pid, lo, hi, i));
                }
            }
        }
    }

    /// Whether an unapplied event of `pid` may change any of `[lo, hi)`.
    pub fn change(&self, pid: u32, lo: u64, hi: u64) -> bool {
        if self
            .all
            .range((pid, 0)..=(pid, usize::MAX))
            .next()
            .is_some()
        {
            return true;
        }
        let from = lo.saturating_sub(self.max_len);
        self.ranges
            .range((pid, from, 0, 0)..(pid, hi, 0, 0))
            .any(|&(_, l, h, _)| l < hi && h > lo)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_unapplied_overlapping_events_of_the_same_process_count() {
        let batch = vec![
            (1, Affected::Ranges(vec![(0x1000, 0x5000)])),
            (1, Affected::Ranges(vec![(0x2000, 0x3000)])),
            (2, Affected::Ranges(vec![(0x8000, 0x9000)])),
            (1, Affected::Nothing),
        ];
        let mut later = LaterCalls::new(&batch);
        later.take(0, 1, &batch[0].1);
        assert!(later.change(1, 0x1000, 0x5000));
        assert!(later.change(1, 0x2fff, 0x4000));
        // Touching is not changing.
        assert!(!later.change(1, 0x3000, 0x4000));
        assert!(!later.change(1, 0x1000, 0x2000));
        assert!(!later.change(1, 0x8000, 0x9000));
        assert!(later.change(2, 0x8000, 0x9000));
        later.take(1, 1, &batch[1].1);
        assert!(!later.change(1, 0x0, u64::MAX));
    }

    #[test]
    fn an_event_that_may_change_anything_overlaps_everything() {
        let batch = vec![(1, Affected::Nothing), (1, Affected::All)];
        let mut later = LaterCalls::new(&batch);
        assert!(later.change(1, 0x1000, 0x2000));
        assert!(!later.change(2, 0x1000, 0x2000));
        later.take(1, 1, &batch[1].1);
        assert!(!later.change(1, 0x1000, 0x2000));
    }

    #[test]
    fn a_long_range_far_below_is_found() {
        let batch = vec![(1, Affected::Ranges(vec![(0x1000, 0x100_0000)]))];
        let later = LaterCalls::new(&batch);
        assert!(later.change(1, 0x80_0000, 0x80_1000));
        assert!(!later.change(1, 0x100_0000, 0x100_1000));
    }
}
