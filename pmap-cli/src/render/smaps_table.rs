//! The self-sizing smaps tables: `-X`, `-XX` and the rc file's columns.
//!
//! Column widths depend on every row (and, unless quiet, on the totals), so
//! the rows are kept until the end, in a compact form (`smaps_store`):
//! numbers as varints, names and VmFlags interned. 60,000 regions take a
//! few MiB.

use std::{
    fmt,
    io::{self, Write},
    ops::Range,
    sync::Arc,
};

use super::{
    Format, Options, num,
    smaps_row::{RowLayout, Widths},
    smaps_store::{Interner, Mark, Rows, SEGMENT, TWO_THREADS_PAST, push_varint},
};
use crate::{map::smaps::SmapsEntry, sys::spread::two_cpus};

/// The smaps data did not have the same fields in the same order for every
/// region (procps-ng stops with the same complaint), or writing failed.
#[derive(Debug)]
pub enum TableError {
    Inconsistent { field: String, expected: String },
    Io(io::Error),
}

impl fmt::Display for TableError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TableError::Inconsistent { field, expected } => write!(
                f,
                "inconsistent detail field in smaps file: {field:?} where {expected:?} was expected"
            ),
            TableError::Io(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for TableError {}

impl From<io::Error> for TableError {
    fn from(e: io::Error) -> Self {
        TableError::Io(e)
    }
}

/// Fields `-X` leaves out (procps-ng's `is_unimportant`).
fn is_unimportant(name: &str) -> bool {
    matches!(
        name,
        "AnonHugePages"
            | "KernelPageSize"
            | "MMUPageSize"
            | "Shared_Dirty"
            | "Private_Dirty"
            | "Shared_Clean"
            | "Private_Clean"
            | "VmFlags"
    )
}

/// Fields whose sum means nothing (page sizes, key numbers): their total is
/// left blank where procps-ng prints the sum (README.md, "Compatibility with procps-ng").
fn has_no_total(name: &str) -> bool {
    matches!(name, "KernelPageSize" | "MMUPageSize" | "ProtectionKey")
}

fn is_enabled(format: &Format, name: &str) -> bool {
    match format {
        Format::MoreExtended => !is_unimportant(name),
        Format::Rc(list) => list.iter().any(|f| f == name),
        _ => true,
    }
}

#[derive(Clone, Debug)]
struct Column {
    name: Box<str>,
    width: usize,
    total: u64,
}

/// The value columns and their widths. procps-ng keeps them from one PID to
/// the next in one call (widths only grow), so callers printing several
/// tables in a row keep one of these; a standalone table takes a fresh one.
#[derive(Clone, Debug, Default)]
pub struct SmapsColumns {
    columns: Vec<Column>,
}

/// One `-X`/`-XX`/rc table, built from the entries and printed at the end.
pub struct SmapsTable<'a> {
    opts: &'a Options,
    columns: &'a mut SmapsColumns,
    /// Widths of address, perms, offset, device, inode, VmFlags.
    w: [usize; 6],
    has_vmflags: bool,
    any_region: bool,
    rows: Vec<u8>,
    /// Where every `SEGMENT` rows start in `rows`, with the values a row
    /// lacking a field prints there, so that the rows can be printed in
    /// pieces on two threads (see `print`).
    marks: Vec<Mark>,
    /// Rows since the last mark, and each column's last value so far.
    since_mark: usize,
    last: Vec<u64>,
    names: Interner,
    flags: Interner,
    /// For each field position of the last entry: its name and the column
    /// it feeds (`None`: not shown). Entries from one reader share name
    /// `Arc`s, so the usual check is a pointer comparison.
    positions: Vec<(Arc<str>, Option<usize>)>,
    values: Vec<u64>,
}

impl<'a> SmapsTable<'a> {
    pub fn new(opts: &'a Options, columns: &'a mut SmapsColumns) -> Self {
        for c in &mut columns.columns {
            c.total = 0;
        }
        let mut flags = Interner::default();
        // Id 0: no VmFlags line.
        flags.id(b"");
        SmapsTable {
            opts,
            columns,
            w: [0; 6],
            has_vmflags: false,
            any_region: false,
            rows: Vec::new(),
            marks: Vec::new(),
            since_mark: 0,
            last: Vec::new(),
            names: Interner::default(),
            flags,
            positions: Vec::new(),
            values: Vec::new(),
        }
    }

    fn enabled(&self, name: &str) -> bool {
        is_enabled(&self.opts.format, name)
    }

    /// Measures `e` and keeps it if it is in the `-A` range.
    pub fn add(&mut self, e: &SmapsEntry) -> Result<(), TableError> {
        let r = &e.region;
        self.any_region = true;
        // The widths of the address, offset and device as printed (see
        // `smaps_row`).
        let widen = |i: usize, len: usize, w: &mut [usize; 6]| w[i] = w[i].max(len);
        widen(0, num::hex_len(r.start).max(8), &mut self.w);
        widen(1, r.perms.0.len(), &mut self.w);
        widen(2, num::hex_len(r.offset).max(8), &mut self.w);
        let dev =
            num::hex_len(r.dev_major.into()).max(2) + 1 + num::hex_len(r.dev_minor.into()).max(2);
        widen(3, dev, &mut self.w);
        widen(4, num::dec_len(r.inode), &mut self.w);
        let in_range = self.opts.range.contains(r);

        self.values.clear();
        let mut known = true;
        for (pos, f) in e.fields.iter().enumerate() {
            let cached = match self.positions.get(pos) {
                Some((name, col)) if known && Arc::ptr_eq(name, &f.name) => Some(*col),
                _ => None,
            };
            let col = match cached {
                Some(col) => col,
                None => {
                    known = false;
                    let col = self.resolve(pos, &f.name)?;
                    self.positions.truncate(pos);
                    self.positions.push((f.name.clone(), col));
                    col
                }
            };
            let Some(k) = col else { continue };
            if in_range {
                let c = &mut self.columns.columns[k];
                c.total = c.total.wrapping_add(f.value);
                if self.opts.quiet {
                    c.width = c.width.max(num::dec_len(f.value));
                }
                self.values.push(f.value);
            }
        }
        if let Some(fl) = &e.vm_flags {
            self.w[5] = self.w[5].max(fl.len());
            self.has_vmflags = true;
        }
        if !in_range {
            return Ok(());
        }
        self.since_mark += 1;
        if self.since_mark > SEGMENT {
            self.since_mark = 1;
            self.marks.push(Mark {
                pos: self.rows.len(),
                last: self.last.clone(),
            });
        }
        if self.last.len() < self.values.len() {
            self.last.resize(self.values.len(), 0);
        }
        self.last[..self.values.len()].copy_from_slice(&self.values);
        let row = &mut self.rows;
        push_varint(row, r.start);
        row.extend_from_slice(&r.perms.0);
        push_varint(row, r.offset);
        push_varint(row, u64::from(r.dev_major));
        push_varint(row, u64::from(r.dev_minor));
        push_varint(row, r.inode);
        push_varint(row, u64::from(self.names.id(&r.name)));
        let flags = e.vm_flags.as_deref().map_or(0, |f| self.flags.id(f));
        push_varint(row, u64::from(flags));
        push_varint(row, self.values.len() as u64);
        for &v in &self.values {
            push_varint(row, v);
        }
        Ok(())
    }

    /// The column field `name` at position `pos` of an entry feeds (a new
    /// one if the list is shorter), or `None` if the format hides it.
    fn resolve(&mut self, pos: usize, name: &Arc<str>) -> Result<Option<usize>, TableError> {
        if !self.enabled(name) {
            return Ok(None);
        }
        // The column index is the number of shown fields before this one.
        let k = self.positions[..pos.min(self.positions.len())]
            .iter()
            .filter(|(_, c)| c.is_some())
            .count();
        match self.columns.columns.get(k) {
            None => self.columns.columns.push(Column {
                name: Box::from(&**name),
                width: if self.opts.quiet { 0 } else { name.len() },
                total: 0,
            }),
            Some(c) if *c.name != **name => {
                return Err(TableError::Inconsistent {
                    field: name.to_string(),
                    expected: c.name.to_string(),
                });
            }
            Some(_) => {}
        }
        Ok(Some(k))
    }

    /// Prints headings, rows and totals (headings and totals unless quiet).
    pub fn print(self, out: &mut impl Write) -> io::Result<()> {
        let two_threads = two_cpus();
        self.print_on(out, two_threads)
    }

    fn print_on(self, out: &mut impl Write, two_threads: bool) -> io::Result<()> {
        let opts = self.opts;
        let format = &opts.format;
        let on = |name: &str| is_enabled(format, name);
        let mut w = self.w;
        let columns = &mut self.columns.columns;
        if !opts.quiet {
            for c in columns.iter_mut().filter(|c| !has_no_total(&c.name)) {
                c.width = c.width.max(num::dec_len(c.total));
            }
        }
        let show_flags = self.has_vmflags && on("VmFlags");
        let show_mapping = on("Mapping");
        let fixed: [(&str, usize); 4] = [("Perm", 1), ("Offset", 2), ("Device", 3), ("Inode", 4)];
        let mut b = Vec::with_capacity(64 * 1024);

        if self.any_region && !opts.quiet {
            w[0] = num::justify(&mut b, b"Address", w[0], true);
            for (name, i) in fixed {
                if on(name) {
                    w[i] = num::justify(&mut b, name.as_bytes(), w[i], true);
                }
            }
            for c in columns.iter() {
                num::justify(&mut b, c.name.as_bytes(), c.width, true);
            }
            if show_flags {
                w[5] = num::justify(&mut b, b"VmFlags", w[5], true);
            }
            if show_mapping {
                num::justify(&mut b, b"Mapping", 0, false);
            } else {
                b.push(b'\n');
            }
        }

        let layout = RowLayout::new(Widths {
            address: w[0],
            perm: on("Perm").then_some(w[1]),
            offset: on("Offset").then_some(w[2]),
            device: on("Device").then_some(w[3]),
            inode: on("Inode").then_some(w[4]),
            columns: columns.iter().map(|c| c.width).collect(),
            flags: show_flags.then_some(w[5]),
        });
        let rows = Rows {
            rows: &self.rows,
            names: &self.names,
            flags: &self.flags,
            layout: &layout,
            columns: columns.len(),
            mapping: show_mapping.then_some(opts.show_path),
        };
        let mut starts = vec![Mark {
            pos: 0,
            last: Vec::new(),
        }];
        starts.extend(self.marks);
        let segments: Vec<(Range<usize>, &[u64])> = starts
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let end = starts.get(i + 1).map_or(self.rows.len(), |n| n.pos);
                (m.pos..end, &m.last[..])
            })
            .collect();
        if segments.len() > TWO_THREADS_PAST && two_threads {
            rows.print_on_two_threads(&segments, &mut b, out)?;
        } else {
            for (range, last) in &segments {
                rows.print(range.clone(), last, &mut b, &mut |b| {
                    out.write_all(b)?;
                    b.clear();
                    Ok(())
                })?;
            }
        }

        if !opts.quiet && !columns.is_empty() {
            let mut gap = w[0] + 1;
            for (name, i) in fixed {
                if on(name) {
                    gap += w[i] + 1;
                }
            }
            b.extend(std::iter::repeat_n(b' ', gap));
            for c in columns.iter() {
                b.extend(std::iter::repeat_n(b'=', c.width));
                b.push(b' ');
            }
            b.push(b'\n');
            b.extend(std::iter::repeat_n(b' ', gap));
            for c in columns.iter() {
                if has_no_total(&c.name) {
                    b.extend(std::iter::repeat_n(b' ', c.width));
                } else {
                    num::dec_right(&mut b, c.total, c.width);
                }
                b.push(b' ');
            }
            b.extend_from_slice(b"KB \n");
        }
        out.write_all(&b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_len_is_the_printed_width() {
        for v in [
            0u64,
            1,
            0xf,
            0x10,
            0xfff,
            0x1000,
            0x7fff_ffff_f000,
            u64::MAX,
        ] {
            assert_eq!(num::hex_len(v), format!("{v:x}").len(), "{v:x}");
        }
    }
    use crate::{
        map::{process::ProcessInfo, region::Region},
        render::{ExtendedTable, MapsTable, Range},
        source::{
            maps::MapsReader,
            smaps::{SliceLines, SmapsReader},
        },
    };

    /// The table of `smaps` (all regions, headings and totals) as text,
    /// printed on one thread or two, and the pieces it was kept in.
    fn table_text(smaps: &str, format: Format, two_threads: bool) -> (String, usize) {
        let opts = Options {
            format,
            quiet: false,
            show_path: false,
            kernel_name: false,
            range: Range {
                low: 0,
                high: u64::MAX,
            },
            shm_minor: crate::render::ShmMinor::Known(None),
        };
        let mut columns = SmapsColumns::default();
        let mut t = SmapsTable::new(&opts, &mut columns);
        let mut reader = SmapsReader::new(SliceLines(smaps.as_bytes()));
        let mut e = SmapsEntry::default();
        while reader.next_into(&mut e).expect("well-formed") {
            t.add(&e).expect("consistent");
        }
        let pieces = t.marks.len() + 1;
        let mut out = Vec::new();
        t.print_on(&mut out, two_threads).expect("vec write");
        (String::from_utf8(out).expect("ascii"), pieces)
    }

    /// A value wider than its column (here: a total that wrapped, so the
    /// column is sized for the wrapped sum) is printed whole, pushing the
    /// rest of its line right, as printf's `%*lu` does.
    #[test]
    fn a_value_wider_than_its_column_pushes_the_line_right() {
        let big = 1u64 << 63;
        let smaps = format!(
            "00400000-00401000 r--p 00000000 08:01 42   /bin/x\nRss: {big} kB\n\
             00401000-00402000 r--p 00000000 08:01 42   /bin/x\nRss: 4 kB\n\
             00402000-00403000 r--p 00000000 08:01 42   /bin/x\nRss: {big} kB\n"
        );
        let (text, _) = table_text(
            &smaps,
            Format::Rc(vec!["Rss".into(), "Mapping".into()]),
            two_cpus(),
        );
        let rows: Vec<&str> = text.lines().skip(1).take(3).collect();
        assert_eq!(
            rows,
            [
                format!("00400000 {big} x"),
                "00401000   4 x".to_string(),
                format!("00402000 {big} x"),
            ]
        );
    }

    /// A table of several pieces prints the same on two threads as on
    /// one, rows lacking a field included (they print the column's last
    /// value, which each piece starts from).
    #[test]
    fn two_threads_print_what_one_prints() {
        // Enough pieces to be printed on two threads, the last one short.
        let pieces = TWO_THREADS_PAST + 2;
        let rows = (pieces - 1) * SEGMENT + 5;
        let mut smaps = String::new();
        for i in 0..rows as u64 {
            let start = 0x10_0000 + i * 0x1000;
            smaps += &format!(
                "{start:08x}-{:08x} rw-p 00000000 00:00 0\nRss: {} kB\n",
                start + 0x1000,
                i % 7
            );
            // Every 997th region lacks Pss (and prints the last one).
            if i % 997 != 0 {
                smaps += &format!("Pss: {} kB\n", i * 3);
            }
            smaps += &format!("VmFlags: rd wr {}\n", if i % 2 == 0 { "mr" } else { "ac" });
        }
        let print = |two_threads: bool| {
            let (text, kept_in) = table_text(&smaps, Format::All, two_threads);
            assert_eq!(kept_in, pieces, "pieces of SEGMENT rows");
            text
        };
        let one = print(false);
        assert_eq!(one.lines().count(), rows + 3);
        // Region 997 (at 0x4e5000) lacks Pss: it prints region 996's.
        let row = one
            .lines()
            .find(|l| l.starts_with("004e5000"))
            .expect("region 997");
        assert_eq!(row.split_whitespace().nth(6), Some("2988"), "{row}");
        assert_eq!(print(true), one);
    }

    /// xorshift: deterministic pseudo-random mutations.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n.max(1) as u64) as usize
        }
    }

    /// Every reader and printer, fed mutated real smaps text, either prints
    /// or reports an error; it never panics.
    #[test]
    fn mutated_input_never_panics() {
        let smaps =
            std::fs::read(format!("/proc/{}/smaps", std::process::id())).expect("own smaps");
        let maps = std::fs::read(format!("/proc/{}/maps", std::process::id())).expect("own maps");
        let info = ProcessInfo {
            pid: 1,
            tgid: 1,
            cmdline: b"x".to_vec(),
            start_stack: 0,
        };
        let formats = [
            Format::Default,
            Format::Extended,
            Format::Device,
            Format::MoreExtended,
            Format::All,
            Format::Rc(vec!["Rss".into(), "VmFlags".into(), "Mapping".into()]),
        ];
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for round in 0..1200 {
            let format = formats[round % formats.len()].clone();
            let mut m = if format.uses_smaps() {
                smaps.clone()
            } else {
                maps.clone()
            };
            for _ in 0..1 + rng.below(8) {
                if m.is_empty() {
                    break;
                }
                let at = rng.below(m.len());
                match rng.below(4) {
                    0 => m[at] = [b':', b'\n', b' ', b'0', b'9', 0xff, 0, b'-'][rng.below(8)],
                    1 => {
                        m.remove(at);
                    }
                    2 => m.insert(at, [b':', b'\n', b'7', b'V'][rng.below(4)]),
                    _ => m.truncate(at),
                }
            }
            let opts = Options {
                format,
                quiet: round % 3 == 0,
                show_path: round % 2 == 0,
                kernel_name: round % 5 == 0,
                range: Range {
                    low: rng.next() >> 20,
                    high: u64::MAX >> rng.below(20),
                },
                shm_minor: crate::render::ShmMinor::Known(Some(1)),
            };
            let mut out = Vec::new();
            match &opts.format {
                Format::Default | Format::Device => {
                    let mut reader = MapsReader::new(&m[..]);
                    let mut t = MapsTable::begin(&mut out, &opts, &info).expect("vec write");
                    let mut r = Region::default();
                    while let Ok(true) = reader.next_into(&mut r) {
                        let _ = t.row(&r);
                    }
                    let _ = t.finish();
                }
                Format::Extended => {
                    let mut reader = SmapsReader::new(SliceLines(&m));
                    let mut t = ExtendedTable::begin(&mut out, &opts, &info).expect("vec write");
                    let mut e = SmapsEntry::default();
                    while let Ok(true) = reader.next_into(&mut e) {
                        let _ = t.row(&e);
                    }
                    let _ = t.finish();
                }
                _ => {
                    let mut columns = SmapsColumns::default();
                    let mut t = SmapsTable::new(&opts, &mut columns);
                    let mut reader = SmapsReader::new(SliceLines(&m));
                    let mut e = SmapsEntry::default();
                    while let Ok(true) = reader.next_into(&mut e) {
                        if t.add(&e).is_err() {
                            break;
                        }
                    }
                    let _ = t.print(&mut out);
                }
            }
        }
    }
}
