//! What the encoder and decoder both keep between records (times, the
//! address cursor, the name table, the world), and the rows and process
//! tables written with it (layout: docs/recording.md).

use std::collections::HashMap;

use super::{
    format::{ProcState, World},
    notes::Tables,
    wire::{Cursor, Malformed, bad, put_bytes, put_i, put_u, unzigzag, zigzag},
};
use crate::{
    map::process::ProcessInfo,
    map::region::{Perms, Region},
};

/// Bits of a region's permission byte.
mod pf {
    pub const R: u8 = 1;
    pub const W: u8 = 2;
    pub const X: u8 = 4;
    pub const SHARED: u8 = 8;
    pub const OFFSET: u8 = 16;
    /// Letters other than `rwxsp-`: the four bytes follow.
    pub const RAW: u8 = 32;
}

/// A file's identity in a region: device, inode, name.
type Ident = (u32, u32, u64, Vec<u8>);

/// What both sides keep between records.
#[derive(Default)]
pub struct State {
    pub(super) t: u64,
    /// The last address written (page-aligned).
    pub(super) cur: u64,
    pub(super) pid: u32,
    pub(super) ppid: u32,
    pub(super) tid: u32,
    names: Vec<Ident>,
    /// Encoder only: the number of each name in `names`.
    ids: HashMap<Ident, u64>,
    /// Interned frame names and named stacks (format version 2).
    pub(super) notes: Tables,
    /// What the records so far add up to.
    pub world: World,
}

impl State {
    pub(super) fn reset(&mut self, t: u64) {
        self.t = t;
        self.cur = 0;
        (self.pid, self.ppid, self.tid) = (0, 0, 0);
        self.names.clear();
        self.ids.clear();
        self.notes.clear();
        // The anonymous identity is number 1 from the start.
        let anon: Ident = (0, 0, 0, Vec::new());
        self.ids.insert(anon.clone(), 1);
        self.names.push(anon);
    }

    pub(super) fn put_time(&mut self, b: &mut Vec<u8>, t: u64) {
        put_i(b, t.wrapping_sub(self.t) as i64);
        self.t = t;
    }

    pub(super) fn time(&mut self, c: &mut Cursor) -> Result<u64, Malformed> {
        self.t = self.t.wrapping_add(c.i()? as u64);
        Ok(self.t)
    }

    /// 0 for 0; a difference from the last address in pages (tag 1); an
    /// unaligned address as it is (tag 2).
    pub(super) fn put_addr(&mut self, b: &mut Vec<u8>, v: u64) {
        if v == 0 {
            return put_u(b, 0);
        }
        let d = v.wrapping_sub(self.cur) as i64;
        if v.is_multiple_of(4096) {
            put_u(b, zigzag(d >> 12) << 2 | 1);
        } else {
            put_u(b, 2);
            put_u(b, v);
        }
        self.cur = v & !4095;
    }

    pub(super) fn addr(&mut self, c: &mut Cursor) -> Result<u64, Malformed> {
        let x = c.u()?;
        let v = match x & 3 {
            _ if x == 0 => return Ok(0),
            1 => self.cur.wrapping_add((unzigzag(x >> 2) as u64) << 12),
            2 if x == 2 => c.u()?,
            _ => return bad(format!("address code {x} is not one this version writes")),
        };
        self.cur = v & !4095;
        Ok(v)
    }

    pub(super) fn put_region(&mut self, b: &mut Vec<u8>, r: &Region) {
        self.put_addr(b, r.start);
        put_len(b, r.size());
        let p = r.perms.0;
        let mut bits = 0u8;
        let plain = [
            (p[0], b'r', pf::R),
            (p[1], b'w', pf::W),
            (p[2], b'x', pf::X),
            (p[3], b's', pf::SHARED),
        ];
        let mut raw = !matches!(p[3], b'p' | b's');
        for (have, letter, bit) in plain {
            if have == letter {
                bits |= bit;
            } else if have != b'-' && letter != b's' {
                raw = true;
            }
        }
        if raw {
            bits = pf::RAW;
        }
        if r.offset != 0 {
            bits |= pf::OFFSET;
        }
        b.push(bits);
        if raw {
            b.extend_from_slice(&p);
        }
        let ident: Ident = (r.dev_major, r.dev_minor, r.inode, r.name.clone());
        match self.ids.get(&ident) {
            Some(&n) => put_u(b, n),
            None => {
                put_u(b, 0);
                put_u(b, u64::from(r.dev_major));
                put_u(b, u64::from(r.dev_minor));
                put_u(b, r.inode);
                put_bytes(b, &r.name);
                self.names.push(ident.clone());
                self.ids.insert(ident, self.names.len() as u64);
            }
        }
        if r.offset != 0 {
            put_len(b, r.offset);
        }
        self.cur = r.end & !4095;
    }

    pub(super) fn region(&mut self, c: &mut Cursor) -> Result<Region, Malformed> {
        let start = self.addr(c)?;
        let size = len(c)?;
        let Some(end) = start.checked_add(size) else {
            return bad("a region reaches past the end of the address space");
        };
        let bits = c.u8()?;
        let perms = if bits & pf::RAW != 0 {
            Perms([c.u8()?, c.u8()?, c.u8()?, c.u8()?])
        } else {
            let l = |bit: u8, yes: u8, no: u8| if bits & bit != 0 { yes } else { no };
            Perms([
                l(pf::R, b'r', b'-'),
                l(pf::W, b'w', b'-'),
                l(pf::X, b'x', b'-'),
                l(pf::SHARED, b's', b'p'),
            ])
        };
        let n = c.u()?;
        let (dev_major, dev_minor, inode, name) = if n == 0 {
            let ident: Ident = (c.u32()?, c.u32()?, c.u()?, c.bytes()?.to_vec());
            self.names.push(ident.clone());
            ident
        } else {
            match self.names.get(n as usize - 1) {
                Some(i) => i.clone(),
                None => return bad(format!("name number {n} was never defined")),
            }
        };
        let offset = if bits & pf::OFFSET != 0 { len(c)? } else { 0 };
        self.cur = end & !4095;
        Ok(Region {
            start,
            end,
            perms,
            offset,
            dev_major,
            dev_minor,
            inode,
            name,
        })
    }

    pub(super) fn put_proc(&mut self, b: &mut Vec<u8>, p: &ProcState) {
        put_u(b, u64::from(p.pid));
        put_u(b, u64::from(p.ppid));
        put_u(b, u64::from(p.ns_pid));
        match &p.info {
            None => b.push(0),
            Some(i) => {
                b.push(1);
                put_u(b, u64::from(i.tgid));
                put_bytes(b, &i.cmdline);
                put_u(b, i.start_stack);
            }
        }
        put_u(b, p.regions.len() as u64);
        for r in &p.regions {
            self.put_region(b, r);
        }
    }

    /// A process's table; `v1`: a recording of format version 1 (no
    /// `ns_pid`).
    pub(super) fn proc(&mut self, c: &mut Cursor, v1: bool) -> Result<ProcState, Malformed> {
        let pid = c.u32()?;
        let ppid = c.u32()?;
        let ns_pid = if v1 { 0 } else { c.u32()? };
        let info = match c.u8()? {
            0 => None,
            1 => Some(ProcessInfo {
                pid,
                tgid: c.u32()?,
                cmdline: c.bytes()?.to_vec(),
                start_stack: c.u()?,
            }),
            x => return bad(format!("process header marker {x} is neither 0 nor 1")),
        };
        let n = c.count()?;
        let mut regions = Vec::with_capacity(n);
        for _ in 0..n {
            regions.push(self.region(c)?);
        }
        Ok(ProcState {
            pid,
            ppid,
            ns_pid,
            info,
            regions,
        })
    }
}

/// A length: in pages when aligned (even), else 1 and the raw number.
pub(super) fn put_len(b: &mut Vec<u8>, v: u64) {
    if v.is_multiple_of(4096) {
        put_u(b, v >> 11);
    } else {
        put_u(b, 1);
        put_u(b, v);
    }
}

pub(super) fn len(c: &mut Cursor) -> Result<u64, Malformed> {
    match c.u()? {
        1 => c.u(),
        x if x & 1 == 0 => Ok(x << 11),
        x => bad(format!("length code {x} is not one this version writes")),
    }
}
