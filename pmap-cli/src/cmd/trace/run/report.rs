//! What the tracer prints at its checkpoints besides deltas: the tables
//! (each confirmed against the kernel first) and the summaries, per
//! process and in total, and what the recorder keeps of them.

use super::*;
use crate::cmd::trace::{capture::Fallback, delta::Cause};

impl<W: Write> Tracer<'_, W> {
    /// Confirms the model against the kernel, then prints the table.
    pub(super) fn table(&mut self, i: usize, reason: &str) -> Result<()> {
        let s = &mut self.sessions[i];
        if s.exited {
            return Ok(());
        }
        // The initial table is the seed itself; events racing with it are
        // still in the ring buffer and are applied after it. So is an
        // exec's map read at the exec: the kernel's now holds the calls
        // after it, still to be shown.
        let checked = if reason == "initial" || (reason == "exec" && s.exec_captured()) {
            Ok(None)
        } else {
            s.check()
        };
        match checked {
            Ok(Some(observed)) => self.print_delta(&observed)?,
            Ok(None) => {}
            // Exec'd again since (or exiting): that record follows, with
            // its own table (or the exit).
            Err(e) if is_gone(&e) && s.still_same_process() => return Ok(()),
            Err(_) => {
                s.exited = true;
                return Ok(());
            }
        }
        let s = &self.sessions[i];
        // When its read began: the calls that ended before are in it.
        let render = &mut *self.render;
        let (pid, dir) = (s.pid, s.dir());
        self.printer.table(
            (s.pid, s.ppid, s.ns_pid),
            s.table_read_ns(),
            reason,
            &s.table_regions(),
            Some(move |out: &mut dyn Write, rows: &[Region]| render(out, pid, dir, rows)),
        )?;
        let extra = self.insight.after_table(s.pid, s.model());
        if let Some(r) = &mut self.recorder {
            r.table(s, reason, &extra);
        }
        self.printer.notes(&extra)?;
        Ok(())
    }

    pub(super) fn tables(&mut self, reason: &str) -> Result<()> {
        // A table asked for is the map now: the poll backend takes a look
        // first (its last one may be a whole interval old), the eBPF one
        // applies what the ring holds.
        if self.probes.is_none() {
            self.poll()?;
        } else {
            self.pump()?;
        }
        for i in 0..self.sessions.len() {
            self.table(i, reason)?;
        }
        self.printer.flush()?;
        Ok(())
    }

    pub(super) fn finish(&mut self) -> Result<()> {
        self.pump()?;
        // Differences found by the final table may be calls still on
        // their way; give them a moment before judging.
        for i in 0..self.sessions.len() {
            if !self.sessions[i].exited && self.sessions[i].still_same_process() {
                self.table(i, "final")?;
            }
        }
        if self.sessions.iter().any(|s| s.has_unconfirmed()) {
            std::thread::sleep(Duration::from_millis(100));
            self.pump()?;
        }
        self.expire(0);
        for i in 0..self.sessions.len() {
            if self.sessions[i].exited || !self.sessions[i].still_same_process() {
                self.sessions[i].exited = true;
                let (pid, ppid) = (self.sessions[i].pid, self.sessions[i].ppid);
                self.printer.exit(pid, ppid)?;
                self.record(|t| Record::Exit { t, pid, ppid });
            }
            self.summary(i)?;
        }
        if self.sessions.len() > 1 {
            let mut st = Stats::default();
            for s in &self.sessions {
                st.add(&s.stats);
            }
            let regions = self.sessions.iter().map(|s| s.model().len()).sum();
            let pids: Vec<u32> = self.sessions.iter().map(|s| s.pid).collect();
            self.printer.total(&pids, &st, regions, self.lost_seen)?;
            let (pids, lost) = (
                self.sessions.iter().map(|s| s.pid).collect(),
                self.lost_seen,
            );
            self.record(|t| Record::Total { t, pids, lost });
        }
        self.printer.flush()?;
        self.record(|t| Record::End { t });
        if let Some(r) = &mut self.recorder {
            r.flush();
        }
        self.insight.finish()?;
        Ok(())
    }

    /// `--summary-interval`: the summary so far, tracing goes on.
    pub(super) fn interim_summary(&mut self) -> Result<()> {
        self.pump()?;
        for i in 0..self.sessions.len() {
            self.summary(i)?;
        }
        self.printer.flush()?;
        Ok(())
    }

    /// Re-reads process `i` from the kernel and prints what differed as a
    /// delta with `cause` (a resync after loss, or a poll).
    pub(super) fn reread(&mut self, i: usize, cause: Cause) -> Result<()> {
        match self.sessions[i].reread() {
            Ok((change, true)) => {
                // An execve the events did not show (poll, or lost).
                let pid = self.sessions[i].pid;
                self.printer.exec(pid)?;
                self.record(|t| Record::Exec { t, pid });
                let mut d = self.sessions[i].delta(0, 0, Cause::Exec, change);
                // Read at a look, not at the exec.
                d.fallback = Some(Fallback::NotCaptured);
                self.print_delta(&d)?;
                self.table(i, "exec")?;
            }
            Ok((change, false)) if !change.is_empty() => {
                let d = self.sessions[i].delta(0, 0, cause, change);
                self.print_delta(&d)?;
            }
            Ok(_) => {}
            // Exec'd once more while being read (a chain of execs): the
            // next look reads the newest map.
            Err(e) if is_gone(&e) && self.sessions[i].still_same_process() => {}
            Err(_) => self.sessions[i].exited = true,
        }
        Ok(())
    }

    /// Process `i`'s summary: the printer's, insight's (text), and the
    /// recording's.
    pub(super) fn summary(&mut self, i: usize) -> Result<()> {
        let s = &self.sessions[i];
        let (pid, model) = (s.pid, s.model());
        if let Some(dir) = s.dir().filter(|_| !s.exited) {
            self.insight.threads(pid, threads::stack_pointers(dir));
        }
        let insight = self.insight.summary_json(pid, model, &s.stats.calls);
        self.printer.summary(
            (s.pid, s.ppid, s.ns_pid),
            &s.stats,
            model.len(),
            self.lost_seen,
            insight.clone(),
        )?;
        // The text sections: printed in text mode, and recorded in either
        // (a replay may print the other form).
        let mut text = Vec::new();
        if !self.json || self.recorder.is_some() {
            self.insight
                .summary(pid, model, &s.stats.calls, &mut text)?;
        }
        if !self.json {
            self.printer.raw().write_all(&text)?;
        }
        self.record_summary(i, insight, text);
        Ok(())
    }

    pub(super) fn record_summary(
        &mut self,
        i: usize,
        json: Option<serde_json::Value>,
        text: Vec<u8>,
    ) {
        let s = &self.sessions[i];
        let (pid, ppid, lost) = (s.pid, s.ppid, self.lost_seen);
        let (regions, stats) = (s.model().len() as u64, Box::new(s.stats.clone()));
        let insight = Box::new(SummaryInsight {
            ns_pid: s.ns_pid,
            json,
            text,
        });
        self.record(|t| Record::Summary {
            t,
            pid,
            ppid,
            lost,
            regions,
            stats,
            insight,
        });
    }
}
