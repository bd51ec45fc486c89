//! The JSON records of `pmap trace --json`, serialized straight into the
//! output: deltas come by the hundred thousand and tables by the 60,000
//! rows, and building a `Value` for each allocates a map per region.

use serde::{Serialize, Serializer, ser::SerializeStruct};
use serde_json::{Map, Value, json};

use super::json_out::{self, Obj};
use crate::{
    cmd::trace::{
        capture::Fallback,
        delta::{Cause, Delta, Stats},
        insight::DeltaNotes,
    },
    map::region::Region,
};

/// `"0x7f0000000000"`.
pub(super) struct Hex(u64);

impl Serialize for Hex {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&format_args!("{:#x}", self.0))
    }
}

/// A table as a JSON record (without the newline) into `buf`: the
/// process, when its rows were read (`t`), why, and every row.
pub(super) fn write_table(
    buf: &mut Vec<u8>,
    (pid, ppid, ns_pid): (u32, u32, u32),
    t: f64,
    reason: &str,
    regions: &[Region],
) {
    let mut m = Obj::new(buf);
    m.word("type", "table");
    m.uint("pid", pid.into());
    m.uint("ppid", ppid.into());
    if ns_pid != 0 {
        m.uint("ns_pid", ns_pid.into());
    }
    m.value("t", &t);
    m.value("reason", reason);
    m.array("regions", regions, write_region);
    m.end();
}

/// A delta as a JSON record, serialized straight into the output: the
/// tracer writes one per traced call, and building a `Value` map for each
/// (the cause's keys, the notes') cost more than the rest of the record.
/// Keys: the fixed ones first, then the cause's and the notes' in
/// alphabetical order.
pub(super) struct DeltaRecord<'a> {
    pub(super) d: &'a Delta,
    pub(super) t: f64,
    pub(super) notes: &'a DeltaNotes,
}

impl DeltaRecord<'_> {
    /// The record as one line of JSON (without the newline) into `buf`.
    pub(super) fn write(&self, buf: &mut Vec<u8>) {
        let (d, notes) = (self.d, self.notes);
        let call = match &d.cause {
            Cause::Syscall(call, ev) => Some((*call, &**ev)),
            _ => None,
        };
        let stack = notes.stack.as_deref();
        let mut m = Obj::new(buf);
        m.word("type", "delta");
        m.uint("pid", d.pid.into());
        m.uint("ppid", d.ppid.into());
        if d.ns_pid != 0 {
            m.uint("ns_pid", d.ns_pid.into());
        }
        m.value("t", &self.t);
        m.uint("tid", d.tid.into());
        m.uint("ktime_ns", d.ktime_ns);
        m.bool("superseded", d.superseded);
        m.bool("from_arguments", d.from_arguments);
        // Exactly what the call did (from its capture), or for an exec
        // the map as the kernel program read it at the exec.
        let exact = call.is_some() || matches!(d.cause, Cause::Exec);
        m.bool("exact", exact && d.fallback.is_none());
        if let Some(f) = d.fallback {
            m.word("fallback", f.name());
        }
        m.array("removed", &d.change.removed, write_region);
        m.array("added", &d.change.added, write_region);
        if let Some((call, ev)) = call {
            m.array("args", &ev.args[..call.arity()], |b, &a| {
                b.extend_from_slice(itoa::Buffer::new().format(a).as_bytes())
            });
        }
        if let Some(st) = stack {
            m.value("call_site", &st.site.as_deref());
        }
        m.word(
            "cause",
            match d.cause {
                Cause::Syscall(..) => "syscall",
                Cause::Observed | Cause::Polled => "observed",
                Cause::Resync => "resync",
                Cause::Exec => "exec",
                Cause::Settled => "settled",
            },
        );
        if let Some(st) = stack {
            m.value("frames", &Frames(&st.frames));
            m.uint("frames_hidden", st.hidden as u64);
        }
        m.value("notes", &NotesJson(&notes.notes));
        if let Some((_, ev)) = call {
            m.int("ret", ev.ret);
            let depth = (ev.stack_len as usize).min(ev.stack.len());
            if depth > 0 {
                m.array("stack", &ev.stack[..depth], |b, &w| json_out::hex(b, w));
            }
        }
        if let Some(st) = stack {
            m.bool("stack_truncated", st.truncated);
        }
        if let Some((call, _)) = call {
            m.word("syscall", call.name());
        }
        m.end();
    }
}

/// A region as a JSON object into `buf`.
fn write_region(buf: &mut Vec<u8>, r: &Region) {
    let mut m = Obj::new(buf);
    m.hex("start", r.start);
    m.hex("end", r.end);
    m.uint("size", r.size());
    m.word("perms", r.perms.as_str());
    m.uint("offset", r.offset);
    json_out::dev(m.raw("dev"), r.dev_major, r.dev_minor);
    m.uint("inode", r.inode);
    // Borrowed, not copied, when the name is UTF-8 (nearly always).
    m.str("name", &String::from_utf8_lossy(&r.name));
    m.end();
}

/// `[{"addr": "0x..", "name": "..."}, ...]`.
pub(super) struct Frames<'a>(&'a [(u64, std::rc::Rc<str>)]);

impl Serialize for Frames<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(|(a, n)| Frame(*a, n)))
    }
}

pub(super) struct Frame<'a>(u64, &'a str);

impl Serialize for Frame<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_struct("Frame", 2)?;
        m.serialize_field("addr", &Hex(self.0))?;
        m.serialize_field("name", self.1)?;
        m.end()
    }
}

/// The notes' JSON objects, by reference.
pub(super) struct NotesJson<'a>(&'a [crate::cmd::trace::insight::Note]);

impl Serialize for NotesJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(|n| &n.json))
    }
}

/// Fallback counts by reason, every reason present (0 when none).
pub(super) fn fallbacks_json(st: &Stats) -> Value {
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
