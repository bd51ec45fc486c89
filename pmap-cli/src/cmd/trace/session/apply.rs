//! Applying one traced call to the model: from the kernel's rows it
//! captured, from its arguments, or by reading the kernel's view, and the
//! delta that says what it did.

use super::*;

impl Session {
    /// Applies one event. Returns the delta to print, if the map changed
    /// (or the call failed and `keep_failed` is set). `later` tells what
    /// the rest of the batch changes: where it changes what the tracer
    /// would read for this call, the kernel can no longer show this call's
    /// own effect, so a call whose effect its arguments give is applied
    /// from them (the kernel's rows replace them when the later call is
    /// applied, or at `settle`).
    pub fn apply(
        &mut self,
        ev: &Event,
        keep_failed: bool,
        later: &LaterCalls,
    ) -> io::Result<Option<Delta>> {
        // Events for this id after the process exited come from a new
        // process that reuses it: none of its history is ours.
        if self.exited {
            return Ok(None);
        }
        self.open_dir();
        match ev.kind {
            kind::EXEC => {
                if ev.exit_ns < self.seeded_ns && self.view.is_some() {
                    // A read since holds the new program's map already (a
                    // chain of execs the tracer is behind on): its table
                    // was printed then.
                    self.exec_parts = Default::default();
                    return Ok(None);
                }
                let at_exec = self.exec_parts.take(ev, self.seeded_ns);
                // Exited since (its exit event may have been lost): a new
                // process has the id, and its exec is not ours. With the
                // map read at the exec, the record is this process's own,
                // even if it is gone by now (its exit record follows).
                if at_exec.is_none() && !self.still_same_process() {
                    self.exited = true;
                    return Ok(None);
                }
                let (d, captured) = self.exec(ev, at_exec)?;
                self.exec_captured = captured;
                return Ok(Some(d));
            }
            kind::EXEC_MAP => {
                self.exec_parts.add(ev);
                return Ok(None);
            }
            kind::EXIT => {
                if ev.args[0] != 0 {
                    self.exited = true;
                }
                return Ok(None);
            }
            kind::FORK => {
                // Counted by the caller, which knows whether it is a thread.
                return Ok(None);
            }
            _ => {}
        }
        let Some(call) = Call::from_nr(ev.kind) else {
            return Ok(None);
        };
        let entry = self.stats.calls.entry(call).or_default();
        entry.0 += 1;
        if ev.ret < 0 {
            entry.1 += 1;
        }
        // Where the call may have changed the map, from its arguments:
        // needed to explain a difference a table check found, and by the
        // fallback below; a captured call needs neither (worked out only
        // when asked: this runs for every call).
        let mut what = None;
        if self.has_unconfirmed() {
            let w = match self.footprint_now(call, ev) {
                Err(e) if is_gone(&e) => return Ok(None),
                other => other?,
            };
            self.explain(ev.exit_ns, &w);
            what = Some(w);
        }
        // The break as this call found it and as it left it. Only brk moves
        // it, and returns the break it left (the old one when it fails):
        // kept from the calls in order, not from a capture's `brk`, which
        // is read at the end of the exit program and may hold another
        // thread's later brk already.
        let brk_before = self.brk;
        if call == Call::Brk && ev.ret > 0 {
            self.brk = ev.ret as u64;
        }
        if ev.exit_ns < self.seeded_ns {
            // The table read after it holds its effect already. Its
            // capture is not applied either: it is the state of an earlier
            // moment (after an exec read late, of another program).
            self.stats.before_table += 1;
            return Ok(None);
        }

        let effect = |s: &Self| {
            capture::effect(call, ev, brk_before, |addr| {
                Self::attachment_extent(addr, s.model.regions())
            })
        };
        let fallback = match effect(self) {
            Ok(e) => match self.apply_capture(call, ev, e, false) {
                Ok((change, certain)) => {
                    if certain {
                        self.stats.exact += 1;
                    } else {
                        *self.stats.fallbacks.entry(Fallback::Uncertain).or_default() += 1;
                    }
                    if !certain {
                        // Shown even if it looks like no change: the rows
                        // it is compared with may hold its own effect.
                        let mut d = self.delta(
                            ev.tid,
                            ev.exit_ns,
                            Cause::Syscall(call, Box::new(*ev)),
                            change,
                        );
                        d.fallback = Some(Fallback::Uncertain);
                        return Ok(Some(d));
                    }
                    return Ok(self.call_delta(call, ev, change, keep_failed));
                }
                Err(f) => f,
            },
            Err(f) => f,
        };
        if fallback == Fallback::Unnamed {
            // The file cannot be named any more: the kernel's row at its
            // address is not this mapping now (unmapped or mapped over, as
            // the loader does with /etc/ld.so.cache, or the process exited
            // or exec'd) and its descriptor is closed. Reading the kernel
            // would show only what came later; the capture's rows are
            // exact but for the name.
            if let Ok(e) = effect(self)
                && let Ok((change, _)) = self.apply_capture(call, ev, e, true)
            {
                *self
                    .stats
                    .fallbacks
                    .entry(Fallback::NameUnknown)
                    .or_default() += 1;
                let mut d = self.call_delta(call, ev, change, keep_failed);
                if let Some(d) = &mut d {
                    d.fallback = Some(Fallback::NameUnknown);
                }
                return Ok(d);
            }
        }
        self.apply_fallback(call, ev, fallback, what, keep_failed, later)
    }

    /// The delta of a call whose change is exact, if there is one to print:
    /// a call that changed nothing is printed only if it maps or unmaps
    /// (so every such call is seen), or failed and `keep_failed` is set.
    fn call_delta(
        &self,
        call: Call,
        ev: &Event,
        change: Change,
        keep_failed: bool,
    ) -> Option<Delta> {
        let failed = ev.ret < 0;
        let shown_anyway = if failed {
            keep_failed
        } else {
            call.maps_or_unmaps()
        };
        if change.is_empty() && !shown_anyway {
            return None;
        }
        Some(self.delta(
            ev.tid,
            ev.exit_ns,
            Cause::Syscall(call, Box::new(*ev)),
            change,
        ))
    }

    /// Applies a call's effect as its capture shows it (see `capture`).
    /// Fails only if a new file mapping cannot be named; the model is then
    /// untouched. With `placeholder`, such a row is named by the call's
    /// descriptor instead (`(fd 3)`), or `(unnamed file)`.
    fn apply_capture(
        &mut self,
        call: Call,
        ev: &Event,
        e: capture::Effect,
        placeholder: bool,
    ) -> Result<(Change, bool), Fallback> {
        let brk_after = self.brk;
        let Some((lo, hi)) = capture::reach(&e) else {
            return Ok((Change::default(), true));
        };
        let old: Vec<Region> = self.model.within(lo, hi).cloned().collect();
        let mut rows = Vec::with_capacity(e.captured.len());
        for v in &e.captured {
            let mut r = capture::row(v);
            match self.name_captured(&mut r, call, ev, &old, brk_after) {
                Err(Fallback::Unnamed) if placeholder => {
                    r.name = match call {
                        Call::Mmap => crate::cmd::trace::effect::fd_name(ev.args[4]),
                        _ => b"(unnamed file)".to_vec(),
                    }
                }
                other => other?,
            }
            rows.push(r);
        }
        let new = capture::overlay(&old, &e.cleared, &rows);
        let (lo, hi) = old
            .iter()
            .chain(&new)
            .fold((lo, hi), |(lo, hi), r| (lo.min(r.start), hi.max(r.end)));
        let ended = ev.exit_ns;
        self.uncertain.retain(|u| u.2 > ended);
        let certain = !self.uncertain.iter().any(|&(l, h, _)| l < hi && h > lo);
        let change = self.model.replace(lo, hi, new);
        if let Some(set) = &mut self.no_fork {
            for &(l, h) in &e.cleared {
                set.remove(l, h);
            }
            for v in &e.captured {
                match v.flags & capture::VM_DONTCOPY {
                    0 => set.remove(v.start, v.end),
                    _ => set.insert(v.start, v.end),
                }
            }
        }
        self.account(&change);
        Ok((change, certain))
    }
}
