//! A delta's bytes (docs/recording.md, "Delta"): its flags word, who and
//! when, the call with its arguments and stack, the rows removed (as
//! their start when the reader has them) and added, and (format version
//! 2) what insight printed under it.

use pmap_common::{Event, MAX_STACK_DEPTH};

use super::{
    codec::{Decoder, Encoder, tag},
    format::Record,
    notes,
    wire::{Cursor, Malformed, bad, put_i, put_u},
};
use crate::{
    cmd::trace::{
        capture::Fallback,
        delta::{Cause, Delta},
        insight::DeltaNotes,
        syscalls::Call,
    },
    map::model::Change,
    map::region::Region,
};

/// Bits of a delta's flags word.
mod df {
    pub const CAUSE: u64 = 7;
    pub const NEW_PID: u64 = 1 << 3;
    pub const NEW_TID: u64 = 1 << 4;
    pub const SUPERSEDED: u64 = 1 << 5;
    pub const FROM_ARGUMENTS: u64 = 1 << 6;
    pub const FALLBACK: u64 = 1 << 7;
    pub const STACK: u64 = 1 << 8;
    pub const EVENT_FLAGS: u64 = 1 << 9;
    /// `ktime_ns` is 0 (not a syscall).
    pub const NO_KTIME: u64 = 1 << 10;
    /// `ktime_ns` is neither 0 nor the record's time: written out.
    pub const OWN_KTIME: u64 = 1 << 11;
    /// Format version 2 on: `ns_pid` follows.
    pub const NS_PID: u64 = 1 << 12;
    /// Format version 2 on: the stack as the trace named it follows the
    /// rows.
    pub const STACK_NOTE: u64 = 1 << 13;
    /// Format version 2 on: insight's notes follow the rows (and stack).
    pub const NOTES: u64 = 1 << 14;
    /// Bits version 1 writes; version 2 writes all of these.
    pub const V1_BITS: u32 = 12;
    pub const V2_BITS: u32 = 15;
}

/// Which of a call's arguments are addresses (written as differences from
/// the last address), and whether its result is one.
fn address_args(call: Call) -> (&'static [usize], bool) {
    match call {
        Call::Mmap => (&[0], true),
        Call::Brk => (&[0], true),
        Call::Mremap => (&[0, 4], true),
        Call::Shmat => (&[1], true),
        Call::Munlockall => (&[], false),
        _ => (&[0], false),
    }
}

fn cause_code(c: &Cause) -> u64 {
    match c {
        Cause::Syscall(..) => 0,
        Cause::Observed => 1,
        Cause::Resync => 2,
        Cause::Polled => 3,
        Cause::Exec => 4,
        Cause::Settled => 5,
    }
}

impl Encoder {
    pub(super) fn put_delta(&mut self, b: &mut Vec<u8>, t: u64, d: &Delta, n: &DeltaNotes) {
        let s = &mut self.state;
        b.push(tag::DELTA);
        s.put_time(b, t);
        let mut flags = cause_code(&d.cause);
        if d.pid != s.pid || d.ppid != s.ppid {
            flags |= df::NEW_PID;
        }
        if d.tid != s.tid {
            flags |= df::NEW_TID;
        }
        flags |= if d.superseded { df::SUPERSEDED } else { 0 };
        flags |= if d.from_arguments {
            df::FROM_ARGUMENTS
        } else {
            0
        };
        flags |= if d.fallback.is_some() {
            df::FALLBACK
        } else {
            0
        };
        if let Cause::Syscall(_, ev) = &d.cause {
            flags |= if ev.stack_len > 0 { df::STACK } else { 0 };
            flags |= if ev.flags != 0 { df::EVENT_FLAGS } else { 0 };
        }
        if d.ktime_ns == 0 {
            flags |= df::NO_KTIME;
        } else if d.ktime_ns != t {
            flags |= df::OWN_KTIME;
        }
        flags |= if d.ns_pid != 0 { df::NS_PID } else { 0 };
        let (has_stack, has_notes) = notes::has(n);
        flags |= if has_stack { df::STACK_NOTE } else { 0 };
        flags |= if has_notes { df::NOTES } else { 0 };
        put_u(b, flags);
        if flags & df::NEW_PID != 0 {
            put_u(b, u64::from(d.pid));
            put_u(b, u64::from(d.ppid));
            (s.pid, s.ppid) = (d.pid, d.ppid);
        }
        if flags & df::NEW_TID != 0 {
            put_u(b, u64::from(d.tid));
            s.tid = d.tid;
        }
        if flags & df::OWN_KTIME != 0 {
            put_u(b, d.ktime_ns);
        }
        if d.ns_pid != 0 {
            put_u(b, u64::from(d.ns_pid));
        }
        if let Some(f) = d.fallback {
            let i = Fallback::ALL.iter().position(|x| *x == f).unwrap_or(0);
            b.push(i as u8);
        }
        if let Cause::Syscall(call, ev) = &d.cause {
            let i = Call::ALL.iter().position(|x| x == call).unwrap_or(0);
            b.push(i as u8);
            if ev.flags != 0 {
                put_u(b, u64::from(ev.flags));
            }
            let (addrs, ret_addr) = address_args(*call);
            for (k, &a) in ev.args[..call.arity()].iter().enumerate() {
                if addrs.contains(&k) {
                    s.put_addr(b, a);
                } else {
                    put_i(b, a as i64);
                }
            }
            if ret_addr && ev.ret > 0 {
                b.push(1);
                s.put_addr(b, ev.ret as u64);
            } else {
                put_i(b, ev.ret.wrapping_mul(2));
            }
            if ev.stack_len > 0 {
                let n = (ev.stack_len as usize).min(MAX_STACK_DEPTH);
                put_u(b, n as u64);
                let mut prev = 0u64;
                for &w in &ev.stack[..n] {
                    put_i(b, w.wrapping_sub(prev) as i64);
                    prev = w;
                }
            }
        }
        let (removed, added) = (&d.change.removed, &d.change.added);
        put_u(b, removed.len() as u64);
        put_u(b, added.len() as u64);
        // Rows the reader has are written as their start only: a bit set
        // in the mask marks one written whole.
        let rows = s.world.procs.get(&d.pid).map(|p| &p.regions);
        let known = |r: &Region| rows.and_then(|m| m.get(&r.start)) == Some(r);
        let mask: u64 = if removed.len() <= 63 {
            let m = removed
                .iter()
                .enumerate()
                .filter(|(_, r)| !known(r))
                .fold(0, |m, (i, _)| m | 1 << i);
            put_u(b, m);
            m
        } else {
            u64::MAX
        };
        for (i, r) in removed.iter().enumerate() {
            if mask & (1 << i.min(63)) != 0 {
                s.put_region(b, r);
            } else {
                s.put_addr(b, r.start);
                s.cur = r.end & !4095;
            }
        }
        for r in added {
            s.put_region(b, r);
        }
        if let Some(st) = &n.stack {
            s.notes.put_stack(b, st);
        }
        if has_notes {
            notes::put_notes(b, &n.notes);
        }
    }
}

impl Decoder {
    pub(super) fn delta(&mut self, c: &mut Cursor) -> Result<Record, Malformed> {
        let s = &mut self.state;
        let t = s.time(c)?;
        let flags = c.u()?;
        if flags >> (if self.v1 { df::V1_BITS } else { df::V2_BITS }) != 0 {
            return bad(format!(
                "delta flags {flags:#x} hold bits this version does not write"
            ));
        }
        if flags & df::NEW_PID != 0 {
            (s.pid, s.ppid) = (c.u32()?, c.u32()?);
        }
        if flags & df::NEW_TID != 0 {
            s.tid = c.u32()?;
        }
        let ktime_ns = match flags & (df::NO_KTIME | df::OWN_KTIME) {
            0 => t,
            df::NO_KTIME => 0,
            df::OWN_KTIME => c.u()?,
            _ => return bad("a delta's time is both absent and given"),
        };
        let ns_pid = if flags & df::NS_PID != 0 { c.u32()? } else { 0 };
        let fallback = if flags & df::FALLBACK != 0 {
            let i = c.u8()?;
            match Fallback::ALL.get(usize::from(i)) {
                Some(f) => Some(*f),
                None => return bad(format!("fallback number {i} is not one this version knows")),
            }
        } else {
            None
        };
        let cause = match flags & df::CAUSE {
            0 => {
                let i = c.u8()?;
                let Some(&call) = Call::ALL.get(usize::from(i)) else {
                    return bad(format!("syscall number {i} is not one this version knows"));
                };
                let mut ev = Event {
                    exit_ns: ktime_ns,
                    tgid: s.pid,
                    tid: s.tid,
                    ..Event::default()
                };
                if flags & df::EVENT_FLAGS != 0 {
                    ev.flags = c.u32()?;
                }
                let (addrs, ret_addr) = address_args(call);
                for k in 0..call.arity() {
                    ev.args[k] = if addrs.contains(&k) {
                        s.addr(c)?
                    } else {
                        c.i()? as u64
                    };
                }
                let r = c.i()?;
                ev.ret = if ret_addr && r == -1 {
                    // (1 as a zigzag number, which `ret * 2` never is.)
                    s.addr(c)? as i64
                } else {
                    r / 2
                };
                if flags & df::STACK != 0 {
                    let n = c.count()?;
                    if n > MAX_STACK_DEPTH {
                        return bad(format!("a stack of {n} frames (at most {MAX_STACK_DEPTH})"));
                    }
                    let mut prev = 0u64;
                    for w in &mut ev.stack[..n] {
                        prev = prev.wrapping_add(c.i()? as u64);
                        *w = prev;
                    }
                    ev.stack_len = n as u32;
                }
                Cause::Syscall(call, Box::new(ev))
            }
            1 => Cause::Observed,
            2 => Cause::Resync,
            3 => Cause::Polled,
            4 => Cause::Exec,
            5 => Cause::Settled,
            x => return bad(format!("cause number {x} is not one this version knows")),
        };
        let n_removed = c.count()?;
        let n_added = c.count()?;
        let mask = if n_removed <= 63 { c.u()? } else { u64::MAX };
        let mut change = Change::default();
        for i in 0..n_removed {
            if mask & (1 << i.min(63)) != 0 {
                change.removed.push(s.region(c)?);
                continue;
            }
            let start = s.addr(c)?;
            let row = s
                .world
                .procs
                .get(&s.pid)
                .and_then(|p| p.regions.get(&start));
            let Some(row) = row else {
                return bad(format!(
                    "a delta of pid {} removes a region at {start:#x} that the recording never had",
                    s.pid
                ));
            };
            s.cur = row.end & !4095;
            change.removed.push(row.clone());
        }
        for _ in 0..n_added {
            change.added.push(s.region(c)?);
        }
        let mut notes = DeltaNotes::default();
        if flags & df::STACK_NOTE != 0 {
            notes.stack = Some(s.notes.stack(c)?);
        }
        if flags & df::NOTES != 0 {
            notes.notes = notes::notes(c)?;
        }
        Ok(Record::Delta {
            t,
            delta: Delta {
                pid: s.pid,
                ppid: s.ppid,
                ns_pid,
                tid: s.tid,
                ktime_ns,
                cause,
                change,
                superseded: flags & df::SUPERSEDED != 0,
                from_arguments: flags & df::FROM_ARGUMENTS != 0,
                fallback,
            },
            notes,
        })
    }
}
