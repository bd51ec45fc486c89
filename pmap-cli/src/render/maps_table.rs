//! The fixed-width tables: default, `-d` (from maps lines) and `-x` (from
//! smaps entries). Rows are printed as they come; nothing is kept.

use std::io::{self, Write};

use super::{Format, Options, names::push_mapping_name, num};
use crate::map::{process::ProcessInfo, region::Region, smaps::SmapsEntry};

/// Whether the caller should keep feeding rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Row {
    Continue,
    /// The region starts after the `-A` range: procps-ng stops reading here
    /// (regions are sorted), and so should the caller.
    Stop,
}

/// Byte totals by kind, as procps-ng keeps them.
#[derive(Default)]
struct Totals {
    shared: u64,
    private_writeable: u64,
    private_readonly: u64,
}

impl Totals {
    fn add(&mut self, r: &Region) {
        let size = r.end.wrapping_sub(r.start);
        match r.perms.0[3] {
            b's' => self.shared = self.shared.wrapping_add(size),
            b'p' if r.perms.writable() => {
                self.private_writeable = self.private_writeable.wrapping_add(size)
            }
            b'p' => self.private_readonly = self.private_readonly.wrapping_add(size),
            _ => {}
        }
    }
    fn mapped(&self) -> u64 {
        self.shared
            .wrapping_add(self.private_writeable)
            .wrapping_add(self.private_readonly)
    }
}

/// `rw-p` -> `rw---`, `r--s` -> `r--s-`.
fn push_mode(buf: &mut Vec<u8>, r: &Region) {
    let mut m = r.perms.0;
    if m[3] == b'p' {
        m[3] = b'-';
    }
    buf.extend_from_slice(&m);
    buf.push(b'-');
}

/// `%ld` of an unsigned total, as procps-ng prints it.
fn push_signed(buf: &mut Vec<u8>, v: u64) {
    let v = v as i64;
    if v < 0 {
        buf.push(b'-');
    }
    num::dec(buf, v.unsigned_abs());
}

/// Default and `-d` tables, one region at a time.
pub struct MapsTable<'a, W: Write> {
    out: &'a mut W,
    opts: &'a Options,
    start_stack: u64,
    totals: Totals,
    buf: Vec<u8>,
    scratch: Vec<u8>,
}

impl<'a, W: Write> MapsTable<'a, W> {
    /// Prints the column headings (`-d` only, unless quiet).
    pub fn begin(out: &'a mut W, opts: &'a Options, info: &ProcessInfo) -> io::Result<Self> {
        if opts.format == Format::Device && !opts.quiet {
            out.write_all(b"Address           Kbytes Mode  Offset           Device    Mapping\n")?;
        }
        Ok(MapsTable {
            out,
            opts,
            start_stack: info.start_stack,
            totals: Totals::default(),
            buf: Vec::with_capacity(256),
            scratch: Vec::new(),
        })
    }

    /// Prints `r` if it is in the `-A` range.
    pub fn row(&mut self, r: &Region) -> io::Result<Row> {
        let range = &self.opts.range;
        if range.ends_before(r) {
            return Ok(Row::Continue);
        }
        if range.starts_after(r) {
            return Ok(Row::Stop);
        }
        self.totals.add(r);
        let b = &mut self.buf;
        b.clear();
        num::hex_zero(b, r.start, 16);
        b.push(b' ');
        let kb = r.end.wrapping_sub(r.start) >> 10;
        if self.opts.format == Format::Device {
            num::dec_right(b, kb, 7);
            b.push(b' ');
            push_mode(b, r);
            b.push(b' ');
            num::hex_zero(b, r.offset, 16);
            b.push(b' ');
            num::hex_zero(b, u64::from(r.dev_major), 3);
            b.push(b':');
            num::hex_zero(b, u64::from(r.dev_minor), 5);
        } else {
            num::dec_right(b, kb, 6);
            b.extend_from_slice(b"K ");
            push_mode(b, r);
        }
        b.push(b' ');
        push_mapping_name(b, r, self.opts, self.start_stack, &mut self.scratch);
        b.push(b'\n');
        self.out.write_all(b)?;
        Ok(Row::Continue)
    }

    /// Prints the totals line (unless quiet).
    pub fn finish(self) -> io::Result<()> {
        if self.opts.quiet {
            return Ok(());
        }
        let t = &self.totals;
        let mut b = Vec::with_capacity(128);
        if self.opts.format == Format::Device {
            b.extend_from_slice(b"mapped: ");
            push_signed(&mut b, t.mapped() >> 10);
            b.extend_from_slice(b"K    writeable/private: ");
            push_signed(&mut b, t.private_writeable >> 10);
            b.extend_from_slice(b"K    shared: ");
            push_signed(&mut b, t.shared >> 10);
            b.extend_from_slice(b"K\n");
        } else {
            b.extend_from_slice(b" total ");
            let v = t.mapped() >> 10;
            let mut digits = Vec::new();
            push_signed(&mut digits, v);
            num::str_right(&mut b, &digits, 16);
            b.extend_from_slice(b"K\n");
        }
        self.out.write_all(&b)
    }
}

/// The `-x` table, one smaps entry at a time.
pub struct ExtendedTable<'a, W: Write> {
    out: &'a mut W,
    opts: &'a Options,
    start_stack: u64,
    totals: Totals,
    rss: u64,
    dirty: u64,
    buf: Vec<u8>,
    scratch: Vec<u8>,
}

impl<'a, W: Write> ExtendedTable<'a, W> {
    /// Prints the column headings (unless quiet).
    pub fn begin(out: &'a mut W, opts: &'a Options, info: &ProcessInfo) -> io::Result<Self> {
        if !opts.quiet {
            out.write_all(b"Address           Kbytes     RSS   Dirty Mode  Mapping\n")?;
        }
        Ok(ExtendedTable {
            out,
            opts,
            start_stack: info.start_stack,
            totals: Totals::default(),
            rss: 0,
            dirty: 0,
            buf: Vec::with_capacity(256),
            scratch: Vec::new(),
        })
    }

    /// Prints `e` if it is in the `-A` range. Only regions in the range
    /// count towards the totals (procps-ng also adds the RSS and Dirty of
    /// the regions below the range: see README.md, "Compatibility with procps-ng").
    pub fn row(&mut self, e: &SmapsEntry) -> io::Result<Row> {
        let r = &e.region;
        let range = &self.opts.range;
        if range.ends_before(r) {
            return Ok(Row::Continue);
        }
        if range.starts_after(r) {
            return Ok(Row::Stop);
        }
        self.totals.add(r);
        let (mut rss, mut shared_dirty, mut private_dirty, mut swap) = (0, 0, 0, false);
        for f in &e.fields {
            match &*f.name {
                "Rss" => rss = f.value,
                "Shared_Dirty" => shared_dirty = f.value,
                "Private_Dirty" => private_dirty = f.value,
                "Swap" => swap = true,
                _ => {}
            }
        }
        let dirty = u64::wrapping_add(shared_dirty, private_dirty);
        self.rss = self.rss.wrapping_add(rss);
        self.dirty = self.dirty.wrapping_add(dirty);
        // procps-ng prints a row when it reaches the region's Swap line.
        if !swap {
            return Ok(Row::Continue);
        }
        let b = &mut self.buf;
        b.clear();
        num::hex_zero(b, r.start, 16);
        b.push(b' ');
        num::dec_right(b, r.end.wrapping_sub(r.start) >> 10, 7);
        b.push(b' ');
        num::dec_right(b, rss, 7);
        b.push(b' ');
        num::dec_right(b, dirty, 7);
        b.push(b' ');
        push_mode(b, r);
        b.push(b' ');
        push_mapping_name(b, r, self.opts, self.start_stack, &mut self.scratch);
        b.push(b'\n');
        self.out.write_all(b)?;
        Ok(Row::Continue)
    }

    /// Prints the totals (unless quiet).
    pub fn finish(self) -> io::Result<()> {
        if self.opts.quiet {
            return Ok(());
        }
        let mut b = Vec::with_capacity(128);
        b.extend_from_slice(b"---------------- ------- ------- ------- \ntotal kB         ");
        let mut digits = Vec::new();
        push_signed(&mut digits, self.totals.mapped() >> 10);
        num::str_right(&mut b, &digits, 7);
        b.push(b' ');
        num::dec_right(&mut b, self.rss, 7);
        b.push(b' ');
        num::dec_right(&mut b, self.dirty, 7);
        b.push(b'\n');
        self.out.write_all(&b)
    }
}
