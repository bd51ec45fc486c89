//! Records to bytes and back (the layout is in docs/recording.md).
//!
//! Compactness comes from state both sides keep: times are differences
//! from the previous record's, addresses differences from the last one
//! written (in pages when aligned), a file's identity (device, inode,
//! name) is written once and then referred to by number, and a delta's
//! removed rows are only their start address: the reader has them in its
//! [`World`]. A checkpoint resets that state, so a reader can start at
//! any checkpoint.

pub use super::state::State;
use super::{
    format::{Header, Record, SummaryInsight},
    notes,
    wire::{Cursor, Malformed, VERSION, bad, put_bytes, put_u},
};

pub(super) mod tag {
    pub const HEADER: u8 = 1;
    pub const CHECKPOINT: u8 = 2;
    pub const TABLE: u8 = 3;
    pub const DELTA: u8 = 4;
    pub const EXEC: u8 = 5;
    pub const FORK: u8 = 6;
    pub const TASK: u8 = 7;
    pub const THREAD_SEEN: u8 = 8;
    pub const EXIT: u8 = 9;
    pub const LOST: u8 = 10;
    pub const SUMMARY: u8 = 11;
    pub const END: u8 = 12;
    pub const TOTAL: u8 = 13;
    /// Format version 2 on.
    pub const JOINED: u8 = 14;
}

/// Writes records (see [`Decoder`] for the other side).
#[derive(Default)]
pub struct Encoder {
    pub state: State,
}

impl Encoder {
    /// Appends `rec`'s payload to `b`, then applies it to the world.
    pub fn encode(&mut self, rec: &Record, b: &mut Vec<u8>) {
        let s = &mut self.state;
        match rec {
            Record::Header(h) => {
                b.push(tag::HEADER);
                put_u(b, h.start_ns);
                put_u(b, h.start_real_ns);
                put_u(b, u64::from(h.polled) | u64::from(h.stacks) << 1);
                put_bytes(b, h.command.as_bytes());
                s.reset(h.start_ns);
            }
            Record::Checkpoint { t, procs } => {
                b.push(tag::CHECKPOINT);
                put_u(b, *t);
                s.reset(*t);
                put_u(b, procs.len() as u64);
                for p in procs {
                    s.put_proc(b, p);
                }
            }
            Record::Table {
                t,
                reason,
                proc,
                notes,
            } => {
                b.push(tag::TABLE);
                s.put_time(b, *t);
                put_bytes(b, reason.as_bytes());
                s.put_proc(b, proc);
                notes::put_lines(b, notes);
            }
            Record::Delta { t, delta, notes } => self.put_delta(b, *t, delta, notes),
            Record::Joined { t, pid, ppid, by } => {
                b.push(tag::JOINED);
                s.put_time(b, *t);
                put_u(b, u64::from(*pid));
                put_u(b, u64::from(*ppid));
                put_bytes(b, by.as_bytes());
            }
            Record::Exec { t, pid } => {
                b.push(tag::EXEC);
                s.put_time(b, *t);
                put_u(b, u64::from(*pid));
            }
            Record::Fork {
                t,
                ppid,
                tid,
                child,
                regions,
            } => {
                b.push(tag::FORK);
                s.put_time(b, *t);
                for v in [ppid, tid, child] {
                    put_u(b, u64::from(*v));
                }
                put_u(b, *regions);
            }
            Record::Task {
                t,
                pid,
                tid,
                child,
                thread,
            } => {
                b.push(tag::TASK);
                s.put_time(b, *t);
                for v in [pid, tid, child] {
                    put_u(b, u64::from(*v));
                }
                b.push(u8::from(*thread));
            }
            Record::ThreadSeen { t, pid, tid } => {
                b.push(tag::THREAD_SEEN);
                s.put_time(b, *t);
                put_u(b, u64::from(*pid));
                put_u(b, u64::from(*tid));
            }
            Record::Exit { t, pid, ppid } => {
                b.push(tag::EXIT);
                s.put_time(b, *t);
                put_u(b, u64::from(*pid));
                put_u(b, u64::from(*ppid));
            }
            Record::Lost { t, count, total } => {
                b.push(tag::LOST);
                s.put_time(b, *t);
                put_u(b, *count);
                put_u(b, *total);
            }
            Record::Summary {
                t,
                pid,
                ppid,
                lost,
                regions,
                stats,
                insight,
            } => {
                b.push(tag::SUMMARY);
                s.put_time(b, *t);
                put_u(b, u64::from(*pid));
                put_u(b, u64::from(*ppid));
                put_u(b, *lost);
                put_u(b, *regions);
                super::stats::put(b, stats);
                put_u(b, u64::from(insight.ns_pid));
                notes::put_json(b, insight.json.as_ref());
                put_bytes(b, &insight.text);
            }
            Record::End { t } => {
                b.push(tag::END);
                s.put_time(b, *t);
            }
            Record::Total { t, pids, lost } => {
                b.push(tag::TOTAL);
                s.put_time(b, *t);
                put_u(b, *lost);
                put_u(b, pids.len() as u64);
                for p in pids {
                    put_u(b, u64::from(*p));
                }
            }
        }
        self.state.world.apply(rec);
    }
}

/// Reads records written by an [`Encoder`], of this version or the one
/// before.
pub struct Decoder {
    pub state: State,
    /// Format version 1: no insight, `ns_pid` or joins recorded.
    pub(super) v1: bool,
}

impl Decoder {
    /// A decoder of a recording of format `version` (1 or [`VERSION`]).
    pub fn new(version: u16) -> Decoder {
        Decoder {
            state: State::default(),
            v1: version < VERSION,
        }
    }

    pub fn decode(&mut self, payload: &[u8]) -> Result<Record, Malformed> {
        let mut c = Cursor::new(payload);
        let rec = self.record(&mut c)?;
        if !c.at_end() {
            return bad("a record has bytes after its last field");
        }
        self.state.world.apply(&rec);
        Ok(rec)
    }

    fn record(&mut self, c: &mut Cursor) -> Result<Record, Malformed> {
        let s = &mut self.state;
        Ok(match c.u8()? {
            tag::HEADER => {
                let start_ns = c.u()?;
                let start_real_ns = c.u()?;
                let flags = c.u()?;
                let command = String::from_utf8_lossy(c.bytes()?).into_owned();
                s.reset(start_ns);
                Record::Header(Header {
                    start_ns,
                    start_real_ns,
                    polled: flags & 1 != 0,
                    stacks: flags & 2 != 0,
                    command,
                })
            }
            tag::CHECKPOINT => {
                let t = c.u()?;
                s.reset(t);
                let n = c.count()?;
                let mut procs = Vec::with_capacity(n);
                for _ in 0..n {
                    procs.push(s.proc(c, self.v1)?);
                }
                Record::Checkpoint { t, procs }
            }
            tag::TABLE => Record::Table {
                t: s.time(c)?,
                reason: String::from_utf8_lossy(c.bytes()?).into_owned(),
                proc: s.proc(c, self.v1)?,
                notes: if self.v1 {
                    Vec::new()
                } else {
                    notes::lines(c)?
                },
            },
            tag::JOINED if !self.v1 => Record::Joined {
                t: s.time(c)?,
                pid: c.u32()?,
                ppid: c.u32()?,
                by: String::from_utf8_lossy(c.bytes()?).into_owned(),
            },
            tag::DELTA => self.delta(c)?,
            tag::EXEC => Record::Exec {
                t: s.time(c)?,
                pid: c.u32()?,
            },
            tag::FORK => Record::Fork {
                t: s.time(c)?,
                ppid: c.u32()?,
                tid: c.u32()?,
                child: c.u32()?,
                regions: c.u()?,
            },
            tag::TASK => Record::Task {
                t: s.time(c)?,
                pid: c.u32()?,
                tid: c.u32()?,
                child: c.u32()?,
                thread: c.u8()? != 0,
            },
            tag::THREAD_SEEN => Record::ThreadSeen {
                t: s.time(c)?,
                pid: c.u32()?,
                tid: c.u32()?,
            },
            tag::EXIT => Record::Exit {
                t: s.time(c)?,
                pid: c.u32()?,
                ppid: c.u32()?,
            },
            tag::LOST => Record::Lost {
                t: s.time(c)?,
                count: c.u()?,
                total: c.u()?,
            },
            tag::SUMMARY => Record::Summary {
                t: s.time(c)?,
                pid: c.u32()?,
                ppid: c.u32()?,
                lost: c.u()?,
                regions: c.u()?,
                stats: Box::new(super::stats::get(c)?),
                insight: Box::new(if self.v1 {
                    SummaryInsight::default()
                } else {
                    SummaryInsight {
                        ns_pid: c.u32()?,
                        json: notes::json(c)?,
                        text: c.bytes()?.to_vec(),
                    }
                }),
            },
            tag::END => Record::End { t: s.time(c)? },
            tag::TOTAL => {
                let t = s.time(c)?;
                let lost = c.u()?;
                let n = c.count()?;
                let mut pids = Vec::with_capacity(n);
                for _ in 0..n {
                    pids.push(c.u32()?);
                }
                Record::Total { t, pids, lost }
            }
            x => return bad(format!("record type {x} is not one this version writes")),
        })
    }
}

/// The time of a checkpoint record, without decoding it (`None`: another
/// record).
pub fn checkpoint_time(payload: &[u8]) -> Option<u64> {
    let (&first, rest) = payload.split_first()?;
    (first == tag::CHECKPOINT)
        .then(|| Cursor::new(rest).u().ok())
        .flatten()
}
