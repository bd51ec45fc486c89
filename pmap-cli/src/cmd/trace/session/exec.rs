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
    /// The first part's `args`, status (the walk's) and `brk`.
    head: Option<([u64; 6], u32, u64)>,
    parts: u64,
}

/// The map at an exec, whole.
pub(super) struct ExecMap {
    regions: Vec<Vma>,
    brk: u64,
    start_brk: u64,
    start_stack: u64,
    vdso: u64,
}

impl ExecParts {
    /// Adds one `kind::EXEC_MAP` record.
    pub(super) fn add(&mut self, ev: &Event) {
        if ev.args[exec_map::ARG_PART] == 0 {
            *self = ExecParts {
                head: Some((ev.args, ev.capture.status, ev.capture.brk)),
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

    /// The map of the exec `ev`, if every part came, it holds every region
    /// the address space had, and the exec came after the table read at
    /// `seeded_ns` (else that table holds more than it).
    pub(super) fn take(&mut self, ev: &Event, seeded_ns: u64) -> Option<ExecMap> {
        self.take_whole().filter(|_| ev.exit_ns >= seeded_ns)
    }

    fn take_whole(&mut self) -> Option<ExecMap> {
        let ExecParts { regions, head, .. } = std::mem::take(self);
        let (args, walk, brk) = head?;
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
                brk,
                start_brk: args[exec_map::ARG_START_BRK],
                start_stack: args[exec_map::ARG_START_STACK],
                vdso: args[exec_map::ARG_VDSO],
            }
        })
    }
}

/// How the rows of an exec's map were named.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Naming {
    /// As `/proc/PID/maps` names them now.
    Exact,
    /// The process was gone before it could be read: files the tracer has
    /// not seen before are `(unknown file)`, and of the kernel's special
    /// mappings only the vDSO is named.
    Guessed,
}

impl Session {
    /// The process exec'd: its model becomes the new program's map. Taken
    /// from the kernel program's read at the exec when it came whole and
    /// can be named, so that the loader's first calls are deltas from it;
    /// else read now, with those calls in it (`before_table`). If the
    /// process is gone already (a short program, exited before the tracer
    /// got to its exec), the map at the exec is all there is: taken, with
    /// names it cannot confirm marked so. Returns the exec's delta, and
    /// whether the map is the one at the exec.
    pub(super) fn exec(
        &mut self,
        ev: &Event,
        at_exec: Option<ExecMap>,
    ) -> io::Result<(Delta, bool)> {
        let now = self.read_new_map();
        self.dirty.clear();
        self.uncertain.clear();
        // Differences a table found before are about an address space that
        // is gone: the new map replaces all of it.
        self.unconfirmed.clear();
        let taken = match (at_exec, now) {
            (Some(m), Ok(now)) => match self.name_exec_rows(&m, Some(&now)) {
                Some(rows) => Ok((m, rows, Naming::Exact)),
                None => Err(now),
            },
            (Some(m), Err(_)) => {
                // Nothing of it can be read any more: no view, so that its
                // calls still to come are named as for a gone process.
                self.view = None;
                (self.start_brk, self.start_stack) = (m.start_brk, m.start_stack);
                match self.name_exec_rows(&m, None) {
                    Some(rows) => Ok((m, rows, Naming::Guessed)),
                    None => return Err(super::gone()),
                }
            }
            (None, now) => Err(now?),
        };
        let captured = taken.is_ok();
        let mut fallback = None;
        let change = match taken {
            Ok((m, rows, naming)) => {
                self.seeded_ns = ev.exit_ns;
                self.brk = m.brk.max(self.start_brk);
                if naming == Naming::Guessed {
                    fallback = Some(Fallback::NameUnknown);
                }
                self.model.replace_all(rows)
            }
            Err(now) => {
                // Read now: calls that ended before may be in it.
                self.uncertain
                    .push((0, u64::MAX, monotonic_ns() + super::READ_IN_FLIGHT_NS));
                let c = self.model.replace_all(now);
                self.brk = self.heap().1.max(self.start_brk);
                fallback = Some(Fallback::NotCaptured);
                c
            }
        };
        self.account(&change);
        if self.no_fork.is_some() && self.view.is_some() {
            self.track_no_fork();
        }
        let mut d = self.delta(ev.tid, ev.exit_ns, Cause::Exec, change);
        d.fallback = fallback;
        Ok((d, captured))
    }

    /// The new address space's map as the kernel has it now. The open maps
    /// file belongs to the old one. A read can find the address space it
    /// opened gone if the process exec'd once more meanwhile: then the
    /// newest one is read (that exec's own record finds it read already).
    fn read_new_map(&mut self) -> io::Result<Vec<Region>> {
        let (mut gone, mut loading) = (0, 0);
        loop {
            self.reopen()?;
            let read_at = monotonic_ns();
            let before = self.proc_dir()?.stat().ok();
            let read = self.view()?.all();
            let after = self.proc_dir()?.stat().ok();
            // Whole only if the kernel had finished mapping the program
            // (its interpreter, then the vDSO, come last) before the read
            // began, and no other exec came during it.
            let whole = match (&before, &after) {
                (Some(b), Some(a)) => b.same_whole_program(a),
                _ => true,
            };
            match read {
                Err(e) if is_gone(&e) && gone < 3 && self.still_same_process() => gone += 1,
                Ok(_) if !whole && loading < 100 => {
                    loading += 1;
                    std::thread::sleep(std::time::Duration::from_micros(100));
                }
                // Calls that ended before are in it (and only then: a
                // failed read holds none of them).
                Ok(now) => {
                    self.seeded_ns = read_at;
                    return Ok(now);
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// The regions read at the exec, named as `/proc/PID/maps` names them:
    /// files from the rows of the same file the kernel has `now` (the new
    /// program's own files stay mapped) or the names seen before, the
    /// stack and heap by their addresses, the kernel's special mappings
    /// from its row of the same extent now. None if one cannot be named.
    /// Without `now` (the process is gone), see [`Naming::Guessed`].
    fn name_exec_rows(&mut self, m: &ExecMap, now: Option<&[Region]>) -> Option<Vec<Region>> {
        let mut rows = Vec::with_capacity(m.regions.len());
        for v in &m.regions {
            let mut r = capture::row(v);
            if r.inode != 0 {
                let id = (r.dev_major, r.dev_minor, r.inode);
                let same =
                    |o: &&Region| (o.dev_major, o.dev_minor, o.inode) == id && !o.name_stands_in();
                // The kernel's rows now, the names seen, the rows before
                // the exec (a forked child execs the files its parent has).
                let known = now.and_then(|now| now.iter().find(same).cloned());
                let known = known
                    .or_else(|| self.file_names.borrow().get(&id).cloned())
                    .or_else(|| self.model.regions().find(same).cloned());
                r.name = match (known, now) {
                    (Some(k), _) => k.name,
                    (None, Some(_)) => return None,
                    (None, None) => b"(unknown file)".to_vec(),
                };
            } else if r.start <= m.start_stack && m.start_stack < r.end {
                r.name = b"[stack]".to_vec();
            } else if self.start_brk != 0 && r.start <= m.brk && r.end >= self.start_brk {
                r.name = b"[heap]".to_vec();
            } else if let Some(now) = now {
                if let Some(k) = now.iter().find(|k| {
                    k.start == r.start
                        && k.end == r.end
                        && matches!(kind::name(k), kind::Name::Special)
                }) {
                    r.name = k.name.clone();
                } else if now.iter().any(|k| {
                    k.start < r.end && k.end > r.start && !k.name.is_empty() && k.inode == 0
                }) {
                    // A special mapping that is not where it was, or a
                    // name given since: not a plain anonymous region.
                    return None;
                }
            } else if r.start <= m.vdso && m.vdso < r.end {
                r.name = b"[vdso]".to_vec();
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
        let m = p.take_whole().expect("whole");
        let starts: Vec<u64> = m.regions.iter().map(|v| v.start).collect();
        let mut sorted = starts.clone();
        sorted.sort();
        assert_eq!((starts.len(), starts), (8, sorted));
        // Taken: nothing left for the next exec.
        assert!(p.take_whole().is_none());

        // The address space holds a region the walk did not find.
        let mut p = ExecParts::default();
        p.add(&part(0, 8, 9, a));
        p.add(&part(1, 8, 9, b));
        assert!(p.take_whole().is_none());

        // A part lost on the way.
        let mut p = ExecParts::default();
        p.add(&part(1, 8, 8, b));
        assert!(p.take_whole().is_none());
        let mut p = ExecParts::default();
        p.add(&part(0, 8, 8, a));
        assert!(p.take_whole().is_none());

        // A walk that ran into a busy lock.
        let mut p = ExecParts::default();
        let mut busy = part(0, 2, 2, &runs(2));
        busy.capture.status = status::BUSY;
        p.add(&busy);
        assert!(p.take_whole().is_none());

        // A new exec's first part starts over.
        let mut p = ExecParts::default();
        p.add(&part(0, 8, 8, a));
        p.add(&part(0, 2, 2, &runs(2)));
        assert_eq!(p.take_whole().map(|m| m.regions.len()), Some(2));
    }
}
