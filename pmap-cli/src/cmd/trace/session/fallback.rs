//! When a call's capture cannot be used: what its arguments say it
//! changed, and asking the kernel afterwards.

use std::io;

use pmap_common::{Event, FLAG_NO_ARGS, kind};

use super::{READ_IN_FLIGHT_NS, Session};
use crate::{
    cmd::trace::{
        batch::LaterCalls,
        capture::Fallback,
        clock::monotonic_ns,
        delta::{Cause, Delta},
        effect,
        syscalls::{Affected, Call, affected, map_shared},
    },
    map::model::Change,
    map::region::Region,
    source::gone::address_space_gone as is_gone,
};

impl Session {
    /// A call whose capture cannot be used (`fallback` says why): its
    /// effect from its arguments if a later call of the batch overtook it,
    /// else the kernel's rows for its range, read now (and said so).
    /// `what` is its footprint, if already worked out.
    pub(super) fn apply_fallback(
        &mut self,
        call: Call,
        ev: &Event,
        fallback: Fallback,
        what: Option<Affected>,
        keep_failed: bool,
        later: &LaterCalls,
    ) -> io::Result<Option<Delta>> {
        *self.stats.fallbacks.entry(fallback).or_default() += 1;
        let what = match what {
            Some(w) => w,
            None => match self.footprint_now(call, ev) {
                Err(e) if is_gone(&e) => return Ok(None),
                other => other?,
            },
        };
        let overtaken = ev.flags & FLAG_NO_ARGS == 0
            && ev.ret >= 0
            && effect::derivable(call)
            && match &what {
                Affected::Ranges(rs) => rs.iter().any(|&(lo, hi)| {
                    let (lo, hi) = self.sync_extent(lo, hi);
                    later.change(self.pid, lo, hi)
                }),
                _ => false,
            };
        let derived = if overtaken {
            effect::from_arguments(call, ev, &self.model, self.start_brk)
        } else {
            None
        };
        if let Some(e) = derived {
            return Ok(self.apply_effect(call, ev, e, fallback));
        }
        let mut change = Change::default();
        // Rows read from the kernel since this call ended may hold its
        // effect already: a failed call that changed part of its range
        // (mprotect, madvise, mlock stop at the first hole) then shows no
        // change here, and is printed all the same, so that it is not
        // lost from view.
        let ended = ev.exit_ns;
        let read_since = match &what {
            Affected::Ranges(rs) => rs.iter().any(|&(lo, hi)| {
                self.uncertain
                    .iter()
                    .any(|&(l, h, until)| until > ended && l < hi && h > lo)
            }),
            Affected::All => true,
            Affected::Nothing => false,
        };
        // The call's own range is read from the kernel now, not as of the
        // call: whatever the call did there may be undone or redone by
        // later calls already, and their deltas cannot show only theirs.
        if let Affected::Ranges(rs) = &what {
            let until = monotonic_ns() + READ_IN_FLIGHT_NS;
            for &(lo, hi) in rs {
                let (lo, hi) = self.model.extent(lo, hi);
                self.uncertain.push((lo, hi, until));
            }
        }
        let synced = match what {
            Affected::Nothing => Ok(()),
            Affected::All => self.resync_unaccounted().map(|c| change = c),
            Affected::Ranges(ranges) => ranges.into_iter().try_for_each(|(lo, hi)| {
                let c = self.sync_range(lo, hi)?;
                change.then(c);
                Ok(())
            }),
        };
        match synced {
            // The address space this call changed is gone (the process
            // exec'd or exited since): the exec record re-seeds the model.
            Err(e) if is_gone(&e) => return Ok(None),
            other => other?,
        }
        // The rows just read are the kernel's now, not as of this call.
        if let Some((lo, hi)) = change.span() {
            self.uncertain
                .push((lo, hi, monotonic_ns() + READ_IN_FLIGHT_NS));
        }
        self.account(&change);
        // A successful call that can change the map but shows no change was
        // either a no-op or already shown by an earlier delta (the tracer
        // asks the kernel when it processes the event, and a later call on
        // the same range may have happened by then). Printed, so that every
        // mapping call is seen; failed calls are only counted by default.
        let visible = (ev.ret >= 0 && call.maps_or_unmaps()) || (ev.ret < 0 && read_since);
        if change.is_empty() && !visible && !(keep_failed && ev.ret < 0) {
            return Ok(None);
        }
        let superseded = ev.ret >= 0 && !change.is_empty() && !self.shows_own_effect(call, ev);
        let mut d = self.delta(
            ev.tid,
            ev.exit_ns,
            Cause::Syscall(call, Box::new(*ev)),
            change,
        );
        d.superseded = superseded;
        d.fallback = Some(fallback);
        Ok(Some(d))
    }

    /// Like [`Session::footprint`], with a shmat's extent as the kernel
    /// holds it now (its size is not in the arguments).
    pub(super) fn footprint_now(&mut self, call: Call, ev: &Event) -> io::Result<Affected> {
        if call == Call::Shmat && ev.ret > 0 && ev.flags & FLAG_NO_ARGS == 0 {
            return Ok(Affected::Ranges(vec![self.attached_now(ev.ret as u64)?]));
        }
        Ok(self.footprint(ev))
    }

    /// Where `ev` may have changed the map, as far as the event and the
    /// model tell without asking the kernel (a shmat's size is not in its
    /// arguments: only its first page is given).
    pub fn footprint(&self, ev: &Event) -> Affected {
        match ev.kind {
            kind::EXEC => return Affected::All,
            kind::EXIT | kind::FORK => return Affected::Nothing,
            _ => {}
        }
        let Some(call) = Call::from_nr(ev.kind) else {
            return Affected::Nothing;
        };
        if ev.flags & FLAG_NO_ARGS != 0 {
            // Its arguments could not be read: look at everything.
            Affected::All
        } else if call == Call::Shmdt {
            // What the model holds: the attachment is gone from the kernel.
            let addr = ev.args[0];
            Affected::Ranges(vec![Self::attachment_extent(addr, self.model.regions())])
        } else {
            affected(call, ev, self.heap())
        }
    }

    /// The range `sync_range` would read for `[lo, hi)` as the model
    /// stands (it may widen further by what the kernel answers).
    pub(super) fn sync_extent(&self, mut lo: u64, mut hi: u64) -> (u64, u64) {
        loop {
            let (l, h) = self.model.extent(lo, hi);
            let (l, h) = self.dirty.cover(l, h);
            if (l, h) == (lo, hi) {
                return (lo, hi);
            }
            (lo, hi) = (l, h);
        }
    }

    /// Applies what a call did from its arguments (see `effect`); its
    /// rows stay dirty until the kernel's replace them.
    pub(super) fn apply_effect(
        &mut self,
        call: Call,
        ev: &Event,
        parts: Vec<effect::Effect>,
        fallback: Fallback,
    ) -> Option<Delta> {
        let mut change = Change::default();
        for mut e in parts {
            self.name_files(&mut e.rows);
            let c = self.model.replace(e.lo, e.hi, e.rows);
            let (lo, hi) = c
                .span()
                .map_or((e.lo, e.hi), |(l, h)| (l.min(e.lo), h.max(e.hi)));
            self.dirty.insert(lo, hi);
            // Approximate until `settle` reads them.
            self.uncertain.push((lo, hi, u64::MAX));
            change.then(c);
        }
        if change.is_empty() && !call.maps_or_unmaps() {
            return None;
        }
        self.account(&change);
        let mut d = self.delta(
            ev.tid,
            ev.exit_ns,
            Cause::Syscall(call, Box::new(*ev)),
            change,
        );
        // Nothing left to show: an earlier delta, which asked the kernel
        // after this call, showed its effect already (`map unchanged now`).
        d.from_arguments = !d.change.is_empty();
        d.fallback = Some(fallback);
        Some(d)
    }

    /// The addresses a SysV attachment at `addr` covers, as the kernel's
    /// shmdt finds them: regions from `addr` on whose offset into the
    /// segment equals their distance from `addr` (mprotect, mlock or munmap
    /// may have split it, and the call's arguments do not give its size).
    /// `regions` are the candidates in address order. Taking a region too
    /// many only makes the tracer ask the kernel about it.
    pub(super) fn attachment_extent<'a>(
        addr: u64,
        regions: impl Iterator<Item = &'a Region>,
    ) -> (u64, u64) {
        let mut hi = addr + 1;
        let mut file = None;
        for r in regions.skip_while(|r| r.end <= addr) {
            let placed = r.start >= addr && r.offset == r.start - addr;
            let id = (r.dev_major, r.dev_minor, r.inode);
            match file {
                None if placed => {
                    file = Some(id);
                    hi = r.end;
                }
                Some(f) if placed && f == id => hi = r.end,
                _ => {}
            }
        }
        (addr, hi)
    }

    /// Whether the model (just synced with the kernel) shows what this
    /// successful call itself leaves on its own addresses. When it does
    /// not, a later call changed them before the tracer looked, and the
    /// delta says so instead of passing that change off as this call's.
    pub(super) fn shows_own_effect(&self, call: Call, ev: &Event) -> bool {
        let a = &ev.args;
        let covered = |lo: u64, hi: u64, ok: &dyn Fn(&Region) -> bool| {
            let mut at = lo;
            for r in self.model.within(lo, hi) {
                if r.start > at || !ok(r) {
                    return false;
                }
                at = r.end;
            }
            at >= hi
        };
        let perms_are = |prot: u64, shared: Option<bool>| {
            move |r: &Region| {
                r.perms.readable() == (prot & libc::PROT_READ as u64 != 0)
                    && r.perms.writable() == (prot & libc::PROT_WRITE as u64 != 0)
                    && r.perms.executable() == (prot & libc::PROT_EXEC as u64 != 0)
                    && shared.is_none_or(|s| r.perms.shared() == s)
            }
        };
        let len = |l: u64| l.saturating_add(4095) & !4095;
        match call {
            Call::Mmap => {
                let shared = map_shared(a[3]);
                let lo = ev.ret as u64;
                covered(lo, lo + len(a[1]), &perms_are(a[2], Some(shared)))
            }
            Call::Mprotect | Call::PkeyMprotect => {
                covered(a[0], a[0] + len(a[1]), &perms_are(a[2], None))
            }
            Call::Munmap => self.model.within(a[0], a[0] + len(a[1])).next().is_none(),
            Call::Mremap => {
                let lo = ev.ret as u64;
                covered(lo, lo + len(a[2]), &|_| true)
            }
            _ => true,
        }
    }

    /// The kernel's regions of the attachment made at `addr`, walked one
    /// region at a time until one is not part of it.
    pub(super) fn attached_now(&mut self, addr: u64) -> io::Result<(u64, u64)> {
        let mut seen = Vec::new();
        let mut at = addr;
        while let Some(r) = self.view()?.query(at)? {
            let part = r.start >= addr
                && r.offset == r.start - addr
                && seen.first().is_none_or(|f: &Region| {
                    (f.dev_major, f.dev_minor, f.inode) == (r.dev_major, r.dev_minor, r.inode)
                });
            if !part {
                break;
            }
            at = r.end;
            seen.push(r);
        }
        Ok(Self::attachment_extent(addr, seen.iter()))
    }

    pub(super) fn resync_unaccounted(&mut self) -> io::Result<Change> {
        self.dirty.clear();
        let fresh = self.view()?.all()?;
        Ok(self.model.replace_all(fresh))
    }
}
