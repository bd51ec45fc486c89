//! Printing what the tracer found, as text or JSON Lines. Nothing here
//! reads the process or changes state; it formats what it is given.

use std::io::{self, Write};

use serde::{Serialize, Serializer, ser::SerializeStruct};
use serde_json::{Map, Value, json};

use super::{
    capture::Fallback,
    clock::monotonic_ns,
    delta::{Cause, Delta, Stats},
    insight::DeltaNotes,
    session::Session,
    syscalls::{Call, CallText},
};
use crate::{
    map::{model::Change, region::Region},
    render::num,
    source::pid_dir::PidDir,
};

/// Indent of insight lines under a delta or after a table.
const NOTE_INDENT: &str = "    ";

/// Renders one complete table (header line through totals) exactly as
/// `pmap` prints it for the same format options.
pub type TableRenderer = dyn FnMut(&mut dyn Write, &PidDir, &[Region]) -> io::Result<()>;

pub struct Printer<W: Write> {
    out: W,
    json: bool,
    /// CLOCK_MONOTONIC at start, to turn kernel timestamps into offsets.
    start_ns: u64,
    /// A delta's rows, built before one write.
    scratch: Vec<u8>,
    /// The poll backend: threads are counted by looking, not traced.
    polled: bool,
}

/// A region as a JSON object, serialized straight into the output:
/// deltas come by the hundred thousand and tables by the 60,000 rows, and
/// building a `Value` for each allocates a map per region.
struct RegionJson<'a>(&'a Region);

impl Serialize for RegionJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let r = self.0;
        let mut m = s.serialize_struct("Region", 8)?;
        m.serialize_field("start", &Hex(r.start))?;
        m.serialize_field("end", &Hex(r.end))?;
        m.serialize_field("size", &r.size())?;
        m.serialize_field("perms", r.perms.as_str())?;
        m.serialize_field("offset", &r.offset)?;
        m.serialize_field("dev", &Dev(r.dev_major, r.dev_minor))?;
        m.serialize_field("inode", &r.inode)?;
        m.serialize_field("name", &String::from_utf8_lossy(&r.name))?;
        m.end()
    }
}

/// `"0x7f0000000000"`.
struct Hex(u64);

impl Serialize for Hex {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&format_args!("{:#x}", self.0))
    }
}

/// `"fd:01"`.
struct Dev(u32, u32);

impl Serialize for Dev {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&format_args!("{:02x}:{:02x}", self.0, self.1))
    }
}

struct Regions<'a>(&'a [Region]);

impl Serialize for Regions<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(RegionJson))
    }
}

#[derive(Serialize)]
struct TableRecord<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    pid: u32,
    t: f64,
    reason: &'a str,
    regions: Regions<'a>,
}

#[derive(Serialize)]
struct DeltaRecord<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    pid: u32,
    t: f64,
    tid: u32,
    ktime_ns: u64,
    superseded: bool,
    from_arguments: bool,
    /// The delta is exactly what the call did (from its capture).
    exact: bool,
    /// Why it is not (see `capture::Fallback::name`).
    #[serde(skip_serializing_if = "Option::is_none")]
    fallback: Option<&'static str>,
    removed: Regions<'a>,
    added: Regions<'a>,
    /// The cause's keys and insight's (see `DeltaNotes::add_json`).
    #[serde(flatten)]
    more: Map<String, Value>,
}

/// Fallback counts by reason, every reason present (0 when none).
fn fallbacks_json(st: &Stats) -> Value {
    let m: Map<String, Value> = Fallback::ALL
        .iter()
        .map(|f| {
            (
                f.name().to_string(),
                json!(st.fallbacks.get(f).copied().unwrap_or(0)),
            )
        })
        .collect();
    Value::Object(m)
}

/// `N exact (each call's own capture), M read from the kernel afterwards
/// (raced 2, ...)`.
fn deltas_line(st: &Stats) -> String {
    let mut line = format!(
        "{} exact (from each call's capture), {} read from the kernel afterwards",
        st.exact,
        st.fallback_total()
    );
    let reasons: Vec<String> = st
        .fallbacks
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(f, n)| format!("{} {n}", f.name()))
        .collect();
    if !reasons.is_empty() {
        line.push_str(&format!(" ({})", reasons.join(", ")));
    }
    if st.before_table > 0 {
        line.push_str(&format!(
            "; {} calls ended before the table they follow was read (in it, not printed)",
            st.before_table
        ));
    }
    line
}

/// Seconds with six decimals, rounded as `{:.6}` does, without the float
/// formatting (the tracer prints one per delta).
struct Micros(f64);

impl std::fmt::Display for Micros {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let us = (self.0 * 1e6).round() as u64;
        write!(f, "{}.{:06}", us / 1_000_000, us % 1_000_000)
    }
}

/// `0000560a1b2c3000      16K rw-p name`: a region as deltas show it, with
/// the kernel's permission letters (p/s kept) and the raw name, appended to
/// `buf` (one per row of every delta: no `fmt` machinery).
fn push_row(buf: &mut Vec<u8>, r: &Region) {
    num::hex_zero(buf, r.start, 16);
    buf.push(b' ');
    num::dec_right(buf, r.size() / 1024, 7);
    buf.extend_from_slice(b"K ");
    buf.extend_from_slice(r.perms.as_str().as_bytes());
    buf.push(b' ');
    push_name(buf, &r.name);
}

/// A region's name as text (invalid UTF-8 replaced, as everywhere in
/// trace output), or `[ anon ]` for an empty one.
fn push_name(buf: &mut Vec<u8>, name: &[u8]) {
    if name.is_empty() {
        buf.extend_from_slice(b"[ anon ]");
    } else {
        buf.extend_from_slice(String::from_utf8_lossy(name).as_bytes());
    }
}

impl<W: Write> Printer<W> {
    pub fn new(out: W, json: bool, start_ns: u64, polled: bool) -> Printer<W> {
        Printer {
            out,
            json,
            start_ns,
            scratch: Vec::new(),
            polled,
        }
    }

    fn t(&self, ns: u64) -> f64 {
        ns.saturating_sub(self.start_ns) as f64 / 1e9
    }

    fn now(&self) -> f64 {
        self.t(monotonic_ns())
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

    pub fn table(
        &mut self,
        s: &Session,
        reason: &str,
        render: &mut TableRenderer,
    ) -> io::Result<()> {
        // When its read began: the calls that ended before are in it.
        let t = self.t(s.table_read_ns());
        let regions = s.table_regions();
        if self.json {
            return self.record(&TableRecord {
                kind: "table",
                pid: s.pid,
                t,
                reason,
                regions: Regions(&regions),
            });
        }
        writeln!(self.out, "--- table pid {} ({reason}) +{t:.3}s ---", s.pid)?;
        render(&mut self.out, s.dir(), &regions)?;
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
            let mut v = Value::Object(Map::new());
            match &d.cause {
                Cause::Syscall(call, ev) => {
                    v["cause"] = json!("syscall");
                    v["syscall"] = json!(call.name());
                    v["args"] = json!(&ev.args[..call.arity()]);
                    v["ret"] = json!(ev.ret);
                    let depth = (ev.stack_len as usize).min(ev.stack.len());
                    if depth > 0 {
                        let frames: Vec<String> = ev.stack[..depth]
                            .iter()
                            .map(|a| format!("{a:#x}"))
                            .collect();
                        v["stack"] = json!(frames);
                    }
                }
                Cause::Observed => v["cause"] = json!("observed"),
                Cause::Resync => v["cause"] = json!("resync"),
                Cause::Polled => v["cause"] = json!("observed"),
                Cause::Exec => v["cause"] = json!("exec"),
                Cause::Settled => v["cause"] = json!("settled"),
            }
            notes.add_json(&mut v);
            let more = match v {
                Value::Object(m) => m,
                _ => Map::new(),
            };
            return self.record(&DeltaRecord {
                kind: "delta",
                pid: d.pid,
                t,
                tid: d.tid,
                ktime_ns: d.ktime_ns,
                superseded: d.superseded,
                from_arguments: d.from_arguments,
                exact: matches!(d.cause, Cause::Syscall(..)) && d.fallback.is_none(),
                fallback: d.fallback.map(|f| f.name()),
                removed: Regions(&d.change.removed),
                added: Regions(&d.change.added),
                more,
            });
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
            Cause::Exec => self.out.write_all(b" execve: new program, map re-read")?,
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

    pub fn exit(&mut self, pid: u32) -> io::Result<()> {
        let t = self.now();
        if self.json {
            return self.line(json!({"type": "exit", "pid": pid, "t": t}));
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

    pub fn summary(&mut self, s: &Session, lost: u64, insight: Option<Value>) -> io::Result<()> {
        let t = self.now();
        let st = &s.stats;
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
            return self.line(json!({
                "type": "summary", "pid": s.pid, "t": t, "calls": calls, "failed": failed,
                "bytes_mapped": st.bytes_mapped, "bytes_unmapped": st.bytes_unmapped,
                "peak_mapped": st.peak_mapped, "regions": s.model().len(),
                "peak_regions": st.peak_regions, "lost": lost, "corrections": st.corrections,
                "exact_deltas": st.exact, "fallback_deltas": fallbacks_json(st),
                "before_table": st.before_table,
                "threads_started": st.threads_started,
                "threads_counted_by": if self.polled { "polling" } else { "tracing" },
                "processes_forked": st.processes_forked, "insight": insight,
            }));
        }
        writeln!(self.out, "--- summary pid {} +{t:.3}s ---", s.pid)?;
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
                s.model().len(),
                st.peak_regions,
                st.threads_started,
            )?;
        } else {
            writeln!(
                self.out,
                "regions: {} now, {} at peak; threads started: {}, processes forked: {}",
                s.model().len(),
                st.peak_regions,
                st.threads_started,
                st.processes_forked
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

fn calls_line(st: &Stats) -> String {
    if st.calls.is_empty() {
        return "none".into();
    }
    let mut calls: Vec<(&Call, &(u64, u64))> = st.calls.iter().collect();
    calls.sort_by(|a, b| b.1.0.cmp(&a.1.0).then(a.0.cmp(b.0)));
    calls
        .iter()
        .map(|(c, (n, f))| {
            if *f > 0 {
                format!("{} {n} ({f} failed)", c.name())
            } else {
                format!("{} {n}", c.name())
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// `   1 region -> 3` when a change split or merged regions.
/// `   1 region -> 3` when a change splits or merges regions.
fn write_shape(out: &mut impl Write, c: &Change) -> io::Result<()> {
    let (before, after) = (c.removed.len(), c.added.len());
    if before == 0 || after == 0 || before == after {
        return Ok(());
    }
    let plural = |n: usize| if n == 1 { "region" } else { "regions" };
    write!(out, "   {before} {} -> {after}", plural(before))
}

/// The rows of a change: `~` for a region that kept its start address and
/// changed, `-` for one gone, `+` for one new.
fn write_change(buf: &mut Vec<u8>, c: &Change) {
    let mut added: Vec<Option<&Region>> = c.added.iter().map(Some).collect();
    for old in &c.removed {
        let same_start = added
            .iter_mut()
            .find(|a| a.is_some_and(|a| a.start == old.start));
        match same_start {
            Some(slot) => {
                let new = slot.take().expect("found as Some above");
                buf.extend_from_slice(b"  ~ ");
                push_row(buf, old);
                buf.extend_from_slice(b"  ->  ");
                num::dec(buf, new.size() / 1024);
                buf.extend_from_slice(b"K ");
                buf.extend_from_slice(new.perms.as_str().as_bytes());
                if new.name != old.name {
                    buf.push(b' ');
                    push_name(buf, &new.name);
                }
            }
            None => {
                buf.extend_from_slice(b"  - ");
                push_row(buf, old);
            }
        }
        buf.push(b'\n');
    }
    for new in added.into_iter().flatten() {
        buf.extend_from_slice(b"  + ");
        push_row(buf, new);
        buf.push(b'\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::map::region::test_region as r;

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
