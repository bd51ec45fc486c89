//! An execve: the map the new program starts with, as the kernel program
//! read it at the exec (`kind::EXEC_MAP` parts), or else as read now.

use std::io;

use pmap_common::{Event, Vma, capture as status, exec_map};

use super::Session;
use crate::{
    cmd::trace::{
        capture::{self, Fallback},
        clock::monotonic_ns,
        delta::{Cause, Delta},
    },
    map::{kind, region::Region},
    source::gone::address_space_gone as is_gone,
};

/// The parts of an exec's map received so far.
#[derive(Debug, Default)]
pub(super) struct ExecParts {
    regions: Vec<Vma>,
    /// The first part's `args` and status (the walk's).
    head: Option<([u64; 6], u32)>,
    parts: u64,
}

/// The map at an exec, whole.
struct ExecMap {
    regions: Vec<Vma>,
    brk: u64,
    start_stack: u64,
}

impl ExecParts {
    /// Adds one `kind::EXEC_MAP` record.
    pub(super) fn add(&mut self, ev: &Event) {
        if ev.args[exec_map::ARG_PART] == 0 {
            *self = ExecParts {
                head: Some((ev.args, ev.capture.status)),
                ..ExecParts::default()
            };
        } else if ev.args[exec_map::ARG_PART] != self.parts {
            // A part was lost: the map is not whole.
            self.head = None;
        }
        let n = (ev.capture.count as usize).min(ev.capture.vmas.len());
        self.regions.extend_from_slice(&ev.capture.vmas[..n]);
        self.parts += 1;
    }

    /// The map, if every part came and it holds every region the address
    /// space had.
    fn take(&mut self) -> Option<ExecMap> {
        let ExecParts { regions, head, .. } = std::mem::take(self);
        let (args, walk) = head?;
        let total = args[exec_map::ARG_TOTAL] as usize;
        let whole = walk == status::OK
            && regions.len() == total
            && total as u64 == args[exec_map::ARG_MAP_COUNT]
            && regions
                .windows(2)
                .all(|w| w[0].end <= w[1].start || w[1].end <= w[0].start);
        whole.then(|| {
            let mut regions = regions;
            regions.sort_by_key(|v| v.start);
            ExecMap {
                regions,
                brk: args[exec_map::ARG_BRK],
                start_stack: args[exec_map::ARG_START_STACK],
            }
        })
    }
}

impl Session {
    /// The process exec'd: its model becomes the new program's map. Taken
    /// from the kernel program's read at the exec when it came whole and
    /// can be named, so that the loader's first calls are deltas from it;
    /// else read now, with those calls in it (`before_table`). Returns the
    /// exec's delta, and whether the map is the one at the exec.
    pub(super) fn exec(&mut self, ev: &Event) -> io::Result<(Delta, bool)> {
        let at_exec = self
            .exec_parts
            .take()
            .filter(|_| ev.exit_ns >= self.seeded_ns);
        // The open maps file belongs to the old address space. A read can
        // find the address space it opened gone if the process exec'd once
        // more meanwhile: then the newest one is read (that exec's own
        // record finds it read already).
        let mut tries = 0;
        let now = loop {
            self.reopen()?;
            self.seeded_ns = monotonic_ns();
            match self.view()?.all() {
                Err(e) if is_gone(&e) && tries < 3 && self.still_same_process() => tries += 1,
                other => break other?,
            }
        };
        self.dirty.clear();
        self.uncertain.clear();
        let named = at_exec.and_then(|m| {
            let rows = self.name_exec_rows(&m, &now)?;
            Some((m, rows))
        });
        let captured = named.is_some();
        let change = match named {
            Some((m, rows)) => {
                self.seeded_ns = ev.exit_ns;
                self.brk = m.brk.max(self.start_brk);
                self.model.replace_all(rows)
            }
            None => {
                // Read now: calls that ended before may be in it.
                self.uncertain
                    .push((0, u64::MAX, monotonic_ns() + super::READ_IN_FLIGHT_NS));
                let c = self.model.replace_all(now);
                self.brk = self.heap().1.max(self.start_brk);
                c
            }
        };
        self.account(&change);
        if self.no_fork.is_some() {
            self.track_no_fork();
        }
        let mut d = self.delta(ev.tid, ev.exit_ns, Cause::Exec, change);
        if !captured {
            d.fallback = Some(Fallback::NotCaptured);
        }
        Ok((d, captured))
    }

    /// The regions read at the exec, named as `/proc/PID/maps` names them:
    /// files from the rows of the same file the kernel has now (the new
    /// program's own files stay mapped) or the names seen before, the
    /// stack and heap by their addresses, the kernel's special mappings
    /// from its row of the same extent now. None if one cannot be named.
    fn name_exec_rows(&mut self, m: &ExecMap, now: &[Region]) -> Option<Vec<Region>> {
        let mut rows = Vec::with_capacity(m.regions.len());
        for v in &m.regions {
            let mut r = capture::row(v);
            if r.inode != 0 {
                let id = (r.dev_major, r.dev_minor, r.inode);
                let same = |o: &&Region| (o.dev_major, o.dev_minor, o.inode) == id;
                let known = now.iter().find(same).cloned();
                let known = known.or_else(|| self.file_names.borrow().get(&id).cloned())?;
                r.name = known.name;
            } else if r.start <= m.start_stack && m.start_stack < r.end {
                r.name = b"[stack]".to_vec();
            } else if self.start_brk != 0 && r.start <= m.brk && r.end >= self.start_brk {
                r.name = b"[heap]".to_vec();
            } else if let Some(k) = now.iter().find(|k| {
                k.start == r.start && k.end == r.end && matches!(kind::name(k), kind::Name::Special)
            }) {
                r.name = k.name.clone();
            } else if now
                .iter()
                .any(|k| k.start < r.end && k.end > r.start && !k.name.is_empty() && k.inode == 0)
            {
                // A special mapping that is not where it was, or a name
                // given since: not a plain anonymous region for sure.
                return None;
            }
            rows.push(r);
        }
        Some(rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pmap_common::{MAX_CAPTURE, kind};

    /// Part `part` of an exec's map of `total` regions (`map_count` in the
    /// address space), holding `vmas`.
    fn part(part: u64, total: u64, map_count: u64, vmas: &[(u64, u64)]) -> Event {
        let mut ev = Event {
            kind: kind::EXEC_MAP,
            ..Event::default()
        };
        ev.args[exec_map::ARG_PART] = part;
        ev.args[exec_map::ARG_TOTAL] = total;
        ev.args[exec_map::ARG_MAP_COUNT] = map_count;
        ev.capture.status = status::OK;
        ev.capture.count = vmas.len() as u32;
        for (i, &(start, end)) in vmas.iter().enumerate() {
            ev.capture.vmas[i] = Vma {
                start,
                end,
                ..Vma::default()
            };
        }
        ev
    }

    fn runs(n: u64) -> Vec<(u64, u64)> {
        // Out of address order, as the walk sends them (run by run).
        (0..n)
            .rev()
            .map(|i| (0x1000 * (2 * i + 1), 0x1000 * (2 * i + 2)))
            .collect()
    }

    #[test]
    fn a_map_in_parts_is_whole_and_sorted_only_if_it_holds_every_region() {
        let all = runs(8);
        let (a, b) = all.split_at(MAX_CAPTURE);
        let mut p = ExecParts::default();
        p.add(&part(0, 8, 8, a));
        p.add(&part(1, 8, 8, b));
        let m = p.take().expect("whole");
        let starts: Vec<u64> = m.regions.iter().map(|v| v.start).collect();
        let mut sorted = starts.clone();
        sorted.sort();
        assert_eq!((starts.len(), starts), (8, sorted));
        // Taken: nothing left for the next exec.
        assert!(p.take().is_none());

        // The address space holds a region the walk did not find.
        let mut p = ExecParts::default();
        p.add(&part(0, 8, 9, a));
        p.add(&part(1, 8, 9, b));
        assert!(p.take().is_none());

        // A part lost on the way.
        let mut p = ExecParts::default();
        p.add(&part(1, 8, 8, b));
        assert!(p.take().is_none());
        let mut p = ExecParts::default();
        p.add(&part(0, 8, 8, a));
        assert!(p.take().is_none());

        // A walk that ran into a busy lock.
        let mut p = ExecParts::default();
        let mut busy = part(0, 2, 2, &runs(2));
        busy.capture.status = status::BUSY;
        p.add(&busy);
        assert!(p.take().is_none());

        // A new exec's first part starts over.
        let mut p = ExecParts::default();
        p.add(&part(0, 8, 8, a));
        p.add(&part(0, 2, 2, &runs(2)));
        assert_eq!(p.take().map(|m| m.regions.len()), Some(2));
    }
}
