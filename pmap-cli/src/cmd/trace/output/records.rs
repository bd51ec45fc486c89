//! The JSON records of `pmap trace --json`, serialized straight into the
//! output: deltas come by the hundred thousand and tables by the 60,000
//! rows, and building a `Value` for each allocates a map per region.

use serde::{
    Serialize, Serializer,
    ser::{SerializeMap, SerializeStruct},
};
use serde_json::{Map, Value, json};

use crate::{
    cmd::trace::{
        capture::Fallback,
        delta::{Cause, Delta, Stats},
        insight::DeltaNotes,
    },
    map::region::Region,
};

/// A region as a JSON object, serialized straight into the output:
/// deltas come by the hundred thousand and tables by the 60,000 rows, and
/// building a `Value` for each allocates a map per region.
pub(super) struct RegionJson<'a>(&'a Region);

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
pub(super) struct Hex(u64);

impl Serialize for Hex {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&format_args!("{:#x}", self.0))
    }
}

/// `"fd:01"`.
pub(super) struct Dev(u32, u32);

impl Serialize for Dev {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&format_args!("{:02x}:{:02x}", self.0, self.1))
    }
}

pub(super) struct Regions<'a>(pub(super) &'a [Region]);

impl Serialize for Regions<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(RegionJson))
    }
}

#[derive(Serialize)]
pub(super) struct TableRecord<'a> {
    #[serde(rename = "type")]
    pub(super) kind: &'static str,
    pub(super) pid: u32,
    pub(super) ppid: u32,
    #[serde(skip_serializing_if = "is_zero")]
    pub(super) ns_pid: u32,
    pub(super) t: f64,
    pub(super) reason: &'a str,
    pub(super) regions: Regions<'a>,
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

impl Serialize for DeltaRecord<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let (d, notes) = (self.d, self.notes);
        let call = match &d.cause {
            Cause::Syscall(call, ev) => Some((*call, &**ev)),
            _ => None,
        };
        let stack = notes.stack.as_deref();
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("type", "delta")?;
        m.serialize_entry("pid", &d.pid)?;
        m.serialize_entry("ppid", &d.ppid)?;
        if d.ns_pid != 0 {
            m.serialize_entry("ns_pid", &d.ns_pid)?;
        }
        m.serialize_entry("t", &self.t)?;
        m.serialize_entry("tid", &d.tid)?;
        m.serialize_entry("ktime_ns", &d.ktime_ns)?;
        m.serialize_entry("superseded", &d.superseded)?;
        m.serialize_entry("from_arguments", &d.from_arguments)?;
        // Exactly what the call did (from its capture).
        m.serialize_entry("exact", &(call.is_some() && d.fallback.is_none()))?;
        if let Some(f) = d.fallback {
            m.serialize_entry("fallback", f.name())?;
        }
        m.serialize_entry("removed", &Regions(&d.change.removed))?;
        m.serialize_entry("added", &Regions(&d.change.added))?;
        if let Some((call, ev)) = call {
            m.serialize_entry("args", &ev.args[..call.arity()])?;
        }
        if let Some(st) = stack {
            m.serialize_entry("call_site", &st.site.as_deref())?;
        }
        m.serialize_entry(
            "cause",
            match d.cause {
                Cause::Syscall(..) => "syscall",
                Cause::Observed | Cause::Polled => "observed",
                Cause::Resync => "resync",
                Cause::Exec => "exec",
                Cause::Settled => "settled",
            },
        )?;
        if let Some(st) = stack {
            m.serialize_entry("frames", &Frames(&st.frames))?;
            m.serialize_entry("frames_hidden", &st.hidden)?;
        }
        m.serialize_entry("notes", &NotesJson(&notes.notes))?;
        if let Some((_, ev)) = call {
            m.serialize_entry("ret", &ev.ret)?;
            let depth = (ev.stack_len as usize).min(ev.stack.len());
            if depth > 0 {
                m.serialize_entry("stack", &HexWords(&ev.stack[..depth]))?;
            }
        }
        if let Some(st) = stack {
            m.serialize_entry("stack_truncated", &st.truncated)?;
        }
        if let Some((call, _)) = call {
            m.serialize_entry("syscall", call.name())?;
        }
        m.end()
    }
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

/// `["0x7f..", ...]`.
pub(super) struct HexWords<'a>(&'a [u64]);

impl Serialize for HexWords<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(|&w| Hex(w)))
    }
}

pub(super) fn is_zero(n: &u32) -> bool {
    *n == 0
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
