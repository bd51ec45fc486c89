//! Printing what the tracer found, as text or JSON Lines. Nothing here
//! reads the process or changes state; it formats what it is given.

use std::{
    cell::Cell,
    io::{self, Write},
};

use serde::Serialize;
use serde_json::{Map, Value, json};

use super::{
    capture::Fallback,
    clock::monotonic_ns,
    delta::{Cause, Delta, Stats},
    insight::DeltaNotes,
    syscalls::CallText,
};
use crate::map::region::Region;

mod json_out;
mod records;
mod text;

use records::{DeltaRecord, fallbacks_json, write_table};
pub use text::write_change;
use text::{Micros, calls_line, deltas_line, write_shape};

/// Indent of insight lines under a delta or after a table.
const NOTE_INDENT: &str = "    ";

pub struct Printer<W: Write> {
    out: W,
    json: bool,
    /// CLOCK_MONOTONIC at start, to turn kernel timestamps into offsets.
    start_ns: u64,
    /// A delta's rows, built before one write.
    scratch: Vec<u8>,
    /// The poll backend: threads are counted by looking, not traced.
    polled: bool,
    /// The clock as last read for a record's time, until taken (the
    /// recorder stamps the record with the time printed).
    clock_read: Cell<Option<u64>>,
    /// `pmap replay`: the recorded time instead of the clock.
    fixed_clock: Option<u64>,
}

impl<W: Write> Printer<W> {
    pub fn new(out: W, json: bool, start_ns: u64, polled: bool) -> Printer<W> {
        Printer {
            out,
            json,
            start_ns,
            scratch: Vec::new(),
            polled,
            clock_read: Cell::new(None),
            fixed_clock: None,
        }
    }

    /// One JSON record and its newline, built in the scratch buffer (no
    /// allocation per record) and written whole.
    fn json_line(&mut self, write: impl FnOnce(&mut Vec<u8>)) -> io::Result<()> {
        self.scratch.clear();
        write(&mut self.scratch);
        self.scratch.push(b'\n');
        self.out.write_all(&self.scratch)
    }

    /// The clock reading the last record printed used, once.
    pub fn take_clock(&self) -> Option<u64> {
        self.clock_read.take()
    }

    /// Records printed from now on are at `ns` (CLOCK_MONOTONIC), not at
    /// the time they are printed: for replaying a recording.
    pub fn set_clock(&mut self, ns: Option<u64>) {
        self.fixed_clock = ns;
    }

    fn t(&self, ns: u64) -> f64 {
        ns.saturating_sub(self.start_ns) as f64 / 1e9
    }

    fn now(&self) -> f64 {
        let ns = self.fixed_clock.unwrap_or_else(monotonic_ns);
        self.clock_read.set(Some(ns));
        self.t(ns)
    }

    fn line(&mut self, v: Value) -> io::Result<()> {
        self.record(&v)
    }

    fn record<T: Serialize>(&mut self, v: &T) -> io::Result<()> {
        serde_json::to_writer(&mut self.out, v)?;
        self.out.write_all(b"\n")
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    /// A table of `pid` read at `read_ns`; `render` prints its body (none:
    /// no header could be read, no text table is printed).
    pub fn table(
        &mut self,
        (pid, ppid, ns_pid): (u32, u32, u32),
        read_ns: u64,
        reason: &str,
        regions: &[Region],
        render: Option<impl FnOnce(&mut dyn Write, &[Region]) -> io::Result<()>>,
    ) -> io::Result<()> {
        let t = self.t(read_ns);
        if self.json {
            return self.json_line(|b| write_table(b, (pid, ppid, ns_pid), t, reason, regions));
        }
        let Some(render) = render else {
            return Ok(());
        };
        writeln!(self.out, "--- table pid {pid} ({reason}) +{t:.3}s ---")?;
        render(&mut self.out, regions)?;
        writeln!(self.out, "--- end table ---")
    }

    /// One delta, with what insight says about it: lines under it in text
    /// mode, keys of its record in JSON (see `DeltaNotes::add_json`).
    pub fn delta(&mut self, d: &Delta, notes: &DeltaNotes) -> io::Result<()> {
        let t = if d.ktime_ns != 0 {
            self.t(d.ktime_ns)
        } else {
            self.now()
        };
        if self.json {
            return self.json_line(|b| DeltaRecord { d, t, notes }.write(b));
        }
        write!(self.out, "+{} pid {}", Micros(t), d.pid)?;
        if d.tid != 0 {
            write!(self.out, " tid {}", d.tid)?;
        }
        match &d.cause {
            Cause::Syscall(call, ev) => write!(self.out, " {}", CallText(*call, ev))?,
            Cause::Observed => self
                .out
                .write_all(b" observed (no syscall: stack growth or file unlinked)")?,
            Cause::Resync => self.out.write_all(b" resync (re-read from the kernel)")?,
            Cause::Polled => self
                .out
                .write_all(b" observed by polling (no thread or syscall known)")?,
            Cause::Exec if d.fallback != Some(Fallback::NotCaptured) => self
                .out
                .write_all(b" execve: new program, its map as at the exec")?,
            Cause::Exec => self.out.write_all(
                b" execve: new program, its map read after the exec (calls made before are in it)",
            )?,
            Cause::Settled => self.out.write_all(
                b" settled: the kernel's rows for addresses the calls above changed \
                 (merges and names their arguments do not give)",
            )?,
        }
        let call = matches!(d.cause, Cause::Syscall(..));
        if d.change.is_empty() && call && d.fallback.is_none() {
            self.out.write_all(b"   (no change to the map)")?;
        } else if d.change.is_empty() && call && !d.from_arguments {
            self.out.write_all(b"   (map unchanged now)")?;
        } else {
            write_shape(&mut self.out, &d.change)?;
            if d.from_arguments {
                self.out.write_all(b"   (from the call's arguments: a later call changed these addresses before the tracer looked)")?;
            } else if d.superseded {
                self.out.write_all(b"   (changed again by a later call before the tracer looked: the rows show both)")?;
            } else if d.fallback == Some(Fallback::NameUnknown) {
                self.out.write_all(
                    b"   (file not named: the mapping was gone before the tracer looked)",
                )?;
            } else if let Some(f) = d.fallback.filter(|_| call) {
                write!(
                    self.out,
                    "   (read from the kernel after the call: {})",
                    f.name()
                )?;
            }
        }
        self.out.write_all(b"\n")?;
        self.scratch.clear();
        write_change(&mut self.scratch, &d.change);
        self.out.write_all(&self.scratch)?;
        notes.write_text(&mut self.out, NOTE_INDENT)
    }

    pub fn lost(&mut self, count: u64, total: u64) -> io::Result<()> {
        if self.json {
            let t = self.now();
            return self.line(json!({"type": "lost", "t": t, "count": count, "total": total}));
        }
        Ok(())
    }

    pub fn exec(&mut self, pid: u32) -> io::Result<()> {
        if self.json {
            let t = self.now();
            return self.line(json!({"type": "exec", "pid": pid, "t": t}));
        }
        Ok(())
    }

    /// A process created by a traced one and traced from its creation on
    /// (`-f`), whose map has `regions` regions: its map starts as a copy of
    /// its parent's, as the kernel made it, and its own deltas follow.
    pub fn fork(
        &mut self,
        ppid: u32,
        tid: u32,
        child: u32,
        regions: usize,
        ktime_ns: u64,
    ) -> io::Result<()> {
        let t = self.t(ktime_ns);
        if self.json {
            return self.line(json!({
                "type": "fork", "pid": child, "ppid": ppid, "tid": tid, "t": t,
                "regions": regions, "copy_of": ppid,
            }));
        }
        writeln!(
            self.out,
            "+{t:.6} pid {ppid} tid {tid} forked process {child} (traced: its map starts as a \
             copy of pid {ppid}'s, {regions} regions)",
        )
    }

    /// Process `pid`, child of `ppid`, joined the trace by matching
    /// `--comm` or `--cgroup`, or was found by polling as a child of a
    /// traced one (`by`: `comm`, `cgroup`, `fork`); its table follows.
    pub fn joined(&mut self, pid: u32, ppid: u32, by: &str) -> io::Result<()> {
        let t = self.now();
        if self.json {
            return self.line(json!({
                "type": "joined", "pid": pid, "ppid": ppid, "t": t, "by": by,
            }));
        }
        let what = match by {
            "comm" => "its command name matches --comm",
            "cgroup" => "it is in the --cgroup group",
            _ => "a child of a traced process (-f, seen by polling: its map as read now)",
        };
        writeln!(self.out, "+{t:.6} pid {pid} joined the trace: {what}")
    }

    /// A task created by a traced thread: a new thread (traced, it shares
    /// the map) or a forked child process (not traced).
    pub fn task(
        &mut self,
        pid: u32,
        tid: u32,
        child: u32,
        thread: bool,
        ktime_ns: u64,
    ) -> io::Result<()> {
        let t = self.t(ktime_ns);
        if self.json {
            return Ok(());
        }
        if thread {
            writeln!(self.out, "+{t:.6} pid {pid} tid {tid} new thread {child}")
        } else {
            writeln!(
                self.out,
                "+{t:.6} pid {pid} tid {tid} forked process {child} (not traced)"
            )
        }
    }

    /// Poll backend: a thread found in `/proc/PID/task` that was not there
    /// at the last look (who started it is not known).
    pub fn thread_seen(&mut self, pid: u32, tid: u32) -> io::Result<()> {
        if self.json {
            return Ok(());
        }
        let t = self.now();
        writeln!(
            self.out,
            "+{t:.6} pid {pid} new thread {tid} (seen by polling)"
        )
    }

    pub fn exit(&mut self, pid: u32, ppid: u32) -> io::Result<()> {
        let t = self.now();
        if self.json {
            return self.line(json!({"type": "exit", "pid": pid, "ppid": ppid, "t": t}));
        }
        writeln!(self.out, "+{t:.6} pid {pid} exited")
    }

    /// Insight lines, indented (text mode only): under a delta, or after a
    /// table (outside its frame).
    pub fn notes(&mut self, notes: &[String]) -> io::Result<()> {
        if self.json {
            return Ok(());
        }
        for n in notes {
            writeln!(self.out, "{NOTE_INDENT}{n}")?;
        }
        Ok(())
    }

    /// The underlying writer, for sections printed by other modules.
    pub fn raw(&mut self) -> &mut dyn Write {
        &mut self.out
    }

    /// The summary of a process (`pid`, `ppid`, `ns_pid`: 0 for
    /// none) with these counts and `regions` regions now.
    pub fn summary(
        &mut self,
        (pid, ppid, ns_pid): (u32, u32, u32),
        st: &Stats,
        regions: usize,
        lost: u64,
        insight: Option<Value>,
    ) -> io::Result<()> {
        let t = self.now();
        if self.json {
            let calls: serde_json::Map<String, Value> = st
                .calls
                .iter()
                .map(|(c, (n, _))| (c.name().to_string(), json!(n)))
                .collect();
            let failed: serde_json::Map<String, Value> = st
                .calls
                .iter()
                .map(|(c, (_, f))| (c.name().to_string(), json!(f)))
                .collect();
            let mut v = json!({
                "type": "summary", "pid": pid, "ppid": ppid, "t": t, "calls": calls, "failed": failed,
                "bytes_mapped": st.bytes_mapped, "bytes_unmapped": st.bytes_unmapped,
                "peak_mapped": st.peak_mapped, "regions": regions,
                "peak_regions": st.peak_regions, "lost": lost, "corrections": st.corrections,
                "exact_deltas": st.exact, "fallback_deltas": fallbacks_json(st),
                "before_table": st.before_table,
                "threads_started": st.threads_started,
                "threads_counted_by": if self.polled { "polling" } else { "tracing" },
                "processes_forked": st.processes_forked, "insight": insight,
            });
            if ns_pid != 0 {
                v["ns_pid"] = json!(ns_pid);
            }
            return self.line(v);
        }
        writeln!(self.out, "--- summary pid {pid} +{t:.3}s ---")?;
        // Every traced call, whether it changed the map or not (the
        // insight section's `allocator calls` splits them).
        writeln!(self.out, "calls: {}", calls_line(st))?;
        writeln!(
            self.out,
            "mapped {}K, unmapped {}K, peak mapped {}K",
            st.bytes_mapped / 1024,
            st.bytes_unmapped / 1024,
            st.peak_mapped / 1024
        )?;
        if self.polled {
            // No fork events without eBPF: only threads can be seen (in
            // /proc/PID/task), and only those alive at one of the looks.
            writeln!(
                self.out,
                "regions: {} now, {} at peak; threads started: {} (seen by polling: one that \
                 ended between two looks is missed), processes forked: unknown with polling",
                regions, st.peak_regions, st.threads_started,
            )?;
        } else {
            writeln!(
                self.out,
                "regions: {} now, {} at peak; threads started: {}, processes forked: {}",
                regions, st.peak_regions, st.threads_started, st.processes_forked
            )?;
        }
        writeln!(
            self.out,
            "events lost: {lost}, model corrections: {}",
            st.corrections
        )?;
        writeln!(self.out, "deltas: {}", deltas_line(st))?;
        writeln!(self.out, "--- end summary ---")
    }
}

impl<W: Write> Printer<W> {
    /// The total over every process traced (printed when there was more
    /// than one: a tree followed with `-f`, or several PIDs): processes
    /// `pids`, whose counts add up to `st` and regions to `regions`.
    pub fn total(&mut self, pids: &[u32], st: &Stats, regions: usize, lost: u64) -> io::Result<()> {
        let t = self.now();
        if self.json {
            let calls: Map<String, Value> = st
                .calls
                .iter()
                .map(|(c, (n, _))| (c.name().to_string(), json!(n)))
                .collect();
            let failed: Map<String, Value> = st
                .calls
                .iter()
                .map(|(c, (_, f))| (c.name().to_string(), json!(f)))
                .collect();
            return self.line(json!({
                "type": "total", "t": t, "processes": pids.len(), "pids": pids,
                "calls": calls, "failed": failed,
                "bytes_mapped": st.bytes_mapped, "bytes_unmapped": st.bytes_unmapped,
                "regions": regions, "lost": lost, "corrections": st.corrections,
                "exact_deltas": st.exact, "fallback_deltas": fallbacks_json(st),
                "before_table": st.before_table, "threads_started": st.threads_started,
                "processes_forked": st.processes_forked,
            }));
        }
        writeln!(self.out, "--- total: {} processes +{t:.3}s ---", pids.len())?;
        writeln!(self.out, "calls: {}", calls_line(st))?;
        writeln!(
            self.out,
            "mapped {}K, unmapped {}K",
            st.bytes_mapped / 1024,
            st.bytes_unmapped / 1024
        )?;
        writeln!(
            self.out,
            "regions: {regions} now; threads started: {}, processes forked: {}",
            st.threads_started, st.processes_forked
        )?;
        writeln!(
            self.out,
            "events lost: {lost}, model corrections: {}",
            st.corrections
        )?;
        writeln!(self.out, "deltas: {}", deltas_line(st))?;
        writeln!(self.out, "--- end total ---")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::map::region::test_region as r;
    use crate::{cmd::trace::syscalls::Call, map::model::Change};

    #[test]
    fn split_is_shown_as_change_plus_additions() {
        let c = Change {
            removed: vec![r(0x1000, 0x5000, b"rw-p")],
            added: vec![r(0x1000, 0x2000, b"r--p"), r(0x2000, 0x5000, b"rw-p")],
        };
        let mut out = Vec::new();
        write_change(&mut out, &c);
        let text = String::from_utf8(out).expect("utf8");
        assert_eq!(
            text,
            "  ~ 0000000000001000      16K rw-p [ anon ]  ->  4K r--p\n  + 0000000000002000      12K rw-p [ anon ]\n"
        );
        let mut shape = Vec::new();
        write_shape(&mut shape, &c).expect("write to a Vec");
        assert_eq!(shape, b"   1 region -> 2");
    }

    #[test]
    fn a_delta_record_carries_the_calls_and_the_notes_keys() {
        use crate::cmd::trace::insight::{DeltaNotes, Note};
        let mut ev = pmap_common::Event {
            args: [0x7f00_0000_0000, 4096, 5, 0, 0, 0],
            ret: 0,
            stack_len: 1,
            ..Default::default()
        };
        ev.stack[0] = 0x1007;
        let d = Delta {
            pid: 7,
            ppid: 1,
            ns_pid: 0,
            tid: 8,
            ktime_ns: 5,
            cause: Cause::Syscall(Call::Mprotect, Box::new(ev)),
            change: Change {
                removed: vec![r(0x1000, 0x2000, b"rw-p")],
                added: vec![r(0x1000, 0x2000, b"r-xp")],
            },
            superseded: false,
            from_arguments: false,
            fallback: None,
        };
        let site: std::rc::Rc<str> = "jit+0x1e [app]".into();
        let notes = DeltaNotes {
            stack: Some(std::rc::Rc::new(crate::cmd::trace::insight::StackNote {
                frames: vec![
                    (0x1007, "__mprotect+0x7 [libc.so.6]".into()),
                    (0x5100, site.clone()),
                ],
                hidden: 0,
                truncated: true,
                unwound: false,
                site: Some(site.clone()),
            })),
            notes: vec![Note::churn(262144, 8, 1, None)],
        };
        let json = |notes: &DeltaNotes| -> Value {
            let mut buf = Vec::new();
            DeltaRecord {
                d: &d,
                t: 1.5,
                notes,
            }
            .write(&mut buf);
            serde_json::from_slice(&buf).expect("valid JSON")
        };
        let v = json(&notes);
        assert_eq!(
            (&v["type"], &v["pid"], &v["ppid"], &v["tid"], &v["exact"]),
            (
                &json!("delta"),
                &json!(7),
                &json!(1),
                &json!(8),
                &json!(true)
            )
        );
        assert!(v.get("ns_pid").is_none() && v.get("fallback").is_none());
        assert_eq!(v["syscall"], "mprotect");
        assert_eq!(v["args"], json!([0x7f00_0000_0000u64, 4096, 5]));
        assert_eq!((&v["cause"], &v["ret"]), (&json!("syscall"), &json!(0)));
        assert_eq!(v["stack"], json!(["0x1007"]));
        assert_eq!(
            v["frames"][1],
            json!({"addr": "0x5100", "name": "jit+0x1e [app]"})
        );
        assert_eq!(
            (&v["frames_hidden"], &v["stack_truncated"]),
            (&json!(0), &json!(true))
        );
        assert_eq!(v["call_site"], "jit+0x1e [app]");
        assert_eq!(v["notes"][0]["kind"], "churn");
        assert_eq!(v["added"][0]["perms"], "r-xp");
        // Without a stack or notes: no stack keys, and an empty notes list.
        let bare = json(&DeltaNotes::default());
        assert!(bare.get("frames").is_none() && bare.get("call_site").is_none());
        assert_eq!(bare["notes"], json!([]));
    }

    #[test]
    fn micros_print_as_six_decimals_do() {
        // (Exact ties may round the other way: no matter for a timestamp.)
        for t in [
            0.0,
            0.0000004,
            0.0000006,
            0.060800123,
            1.5,
            12.999_999_6,
            3600.25,
        ] {
            assert_eq!(Micros(t).to_string(), format!("{t:.6}"), "{t}");
        }
    }
}
