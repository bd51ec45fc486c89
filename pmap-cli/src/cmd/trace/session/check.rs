//! Confirming the model against the kernel when a table is printed, and
//! what is done with the differences found.

use std::io;

use super::{IN_FLIGHT_NS, READ_IN_FLIGHT_NS, Session};
use crate::{
    cmd::trace::{
        clock::monotonic_ns,
        delta::{Cause, Delta},
        syscalls::Affected,
    },
    map::model::Change,
    map::region::Region,
};

/// The main stack grows on page faults, with no syscall.
pub(super) fn is_stack(r: &Region) -> bool {
    r.name == b"[stack]"
}

/// The same region, whose file was unlinked since: the kernel adds
/// " (deleted)" to the name with no mapping syscall.
pub(super) fn just_unlinked(old: &Region, new: &Region) -> bool {
    new.name.strip_suffix(b" (deleted)") == Some(&old.name[..])
        && Region {
            name: old.name.clone(),
            ..new.clone()
        } == *old
}

/// A difference between the model and the kernel found at table time,
/// not yet explained by an event.
#[derive(Clone, Debug)]
pub struct Unconfirmed {
    pub region: Region,
    /// The model had this region and the kernel did not (else the other
    /// way round).
    pub in_model: bool,
    /// CLOCK_MONOTONIC ns of the check.
    pub checked_at: u64,
}

impl Session {
    /// Compares the model with the kernel before a table is printed, and
    /// takes the kernel's view, so the table is exact.
    ///
    /// Stack growth and unlinked files (changes without a syscall) come
    /// back as an `Observed` delta. Any other difference is held as
    /// unconfirmed: on a running process it may be a call whose event is
    /// still on its way. A later event for those addresses that entered
    /// the kernel before this check explains it; what stays unexplained
    /// becomes a model correction (see `expire`).
    pub fn check(&mut self) -> io::Result<Option<Delta>> {
        // The table printed after this shows the map as read now: calls
        // that ended before are in it, and are not shown again after it.
        // Only once the read succeeded: a failed one holds none of them.
        let read_at = monotonic_ns();
        let fresh = self.view()?.all()?;
        self.seeded_ns = read_at;
        self.dirty.clear();
        self.uncertain.clear();
        self.uncertain
            .push((0, u64::MAX, monotonic_ns() + READ_IN_FLIGHT_NS));
        let checked_at = monotonic_ns();
        let change = self.model.replace_all(fresh);
        if change.is_empty() {
            return Ok(None);
        }
        self.account(&change);
        let mut observed = Change::default();
        let mut added: Vec<Option<Region>> = change.added.into_iter().map(Some).collect();
        for old in change.removed {
            let pair = added.iter_mut().find(|a| {
                a.as_ref().is_some_and(|new| {
                    (is_stack(&old) && is_stack(new)) || just_unlinked(&old, new)
                })
            });
            match pair.and_then(Option::take) {
                Some(new) => {
                    observed.removed.push(old);
                    observed.added.push(new);
                }
                None => self.unconfirmed.push(Unconfirmed {
                    region: old,
                    in_model: true,
                    checked_at,
                }),
            }
        }
        for new in added.into_iter().flatten() {
            self.unconfirmed.push(Unconfirmed {
                region: new,
                in_model: false,
                checked_at,
            });
        }
        if observed.is_empty() {
            return Ok(None);
        }
        Ok(Some(self.delta(0, 0, Cause::Observed, observed)))
    }

    /// Drops unconfirmed differences that an event explains: one for the
    /// same addresses whose call may have been under way at the check (it
    /// ended no later than [`IN_FLIGHT_NS`] after it).
    pub(super) fn explain(&mut self, exit_ns: u64, what: &Affected) {
        if self.unconfirmed.is_empty() {
            return;
        }
        self.unconfirmed.retain(|u| {
            let explained = exit_ns <= u.checked_at.saturating_add(IN_FLIGHT_NS)
                && match what {
                    Affected::Nothing => false,
                    Affected::All => true,
                    // Touching counts: a call can merge or split the
                    // neighbours on either side of its range.
                    Affected::Ranges(rs) => rs
                        .iter()
                        .any(|&(lo, hi)| lo <= u.region.end && hi >= u.region.start),
                };
            !explained
        });
    }

    /// Unconfirmed differences older than `grace_ns` (or all, with 0):
    /// no event explained them, so the model was wrong. Counted as model
    /// corrections and returned for reporting.
    pub fn expire(&mut self, grace_ns: u64) -> Vec<Unconfirmed> {
        let now = monotonic_ns();
        let (old, keep): (Vec<Unconfirmed>, Vec<Unconfirmed>) =
            std::mem::take(&mut self.unconfirmed)
                .into_iter()
                .partition(|u| now.saturating_sub(u.checked_at) >= grace_ns);
        self.unconfirmed = keep;
        self.stats.corrections += old.len() as u64;
        old
    }

    pub fn has_unconfirmed(&self) -> bool {
        !self.unconfirmed.is_empty()
    }
}
