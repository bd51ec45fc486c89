//! Printers: bytes from data already read (`map`'s types). Nothing here
//! reads a file, and nothing here imports a command or a reader (the one
//! exception, the core file's types, is named in `pmap-cli/tests/layout.rs`).
//!
//! - procps-ng pmap's tables, byte for byte (here, `maps_table`,
//!   `smaps_table`, `names` for the Mapping column, `num`);
//! - `json`: the `--json` document of those tables;
//! - `core_file`, `core_json`: a core file's tables and JSON.
//!
//! Entry points:
//! - [`print_process_line`]: the `PID:   cmdline` line that heads every table.
//! - [`print_maps_table`]: a whole table (process line through totals) for
//!   the maps formats (default, `-d`) from `&[Region]`; [`MapsTable`] is the
//!   same, one row at a time.
//! - [`print_smaps_table`]: a whole table for the smaps formats (`-x`, `-X`,
//!   `-XX`, rc file) from `&[SmapsEntry]`; [`ExtendedTable`] and
//!   [`SmapsTable`] are the streaming forms.
pub mod core_file;
pub mod core_json;
pub mod json;
pub mod maps_table;
pub mod names;
pub mod num;
pub(crate) mod smaps_row;
pub(crate) mod smaps_store;
pub mod smaps_table;
pub(crate) mod solaris;

use std::io::{self, Write};

pub use maps_table::{ExtendedTable, MapsTable, Row};
pub use smaps_table::{SmapsColumns, SmapsTable, TableError};

use crate::{
    map::region::Region,
    map::{process::ProcessInfo, smaps::SmapsEntry},
};

/// Which table to print.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum Format {
    /// No format option: address, Kbytes, mode, mapping.
    #[default]
    Default,
    /// `-x`: adds RSS and Dirty (from smaps).
    Extended,
    /// `-d`: adds offset and device, and a mapped/writeable/shared footer.
    Device,
    /// `-X`: every smaps field but the "unimportant" ones.
    MoreExtended,
    /// `-XX`: every field the kernel provides, and VmFlags.
    All,
    /// `-c`/`-C FILE`: the columns named in the rc file's `[Fields Display]`.
    Rc(Vec<String>),
}

impl Format {
    /// Whether this table is built from `/proc/PID/smaps` (else `maps`).
    pub fn uses_smaps(&self) -> bool {
        !matches!(self, Format::Default | Format::Device)
    }
}

/// `-A low[,high]`: regions overlapping `low..=high` are shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Range {
    pub low: u64,
    pub high: u64,
}

impl Default for Range {
    fn default() -> Self {
        Range {
            low: 0,
            high: u64::MAX,
        }
    }
}

impl Range {
    /// procps-ng's test: the region ends at or after `low`...
    pub fn ends_before(&self, r: &Region) -> bool {
        r.end.wrapping_sub(1) < self.low
    }
    /// ...and starts at or before `high`.
    pub fn starts_after(&self, r: &Region) -> bool {
        self.high < r.start
    }
    pub fn contains(&self, r: &Region) -> bool {
        !self.ends_before(r) && !self.starts_after(r)
    }
}

/// Everything that shapes a table besides the data.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Options {
    pub format: Format,
    /// `-q`: no column headings and no totals.
    pub quiet: bool,
    /// `-p` (or the rc file's `ShowPath`): the full path, not the file name.
    pub show_path: bool,
    /// `-k`: show `[heap]`, `[vdso]`, `[anon:x]`... as the kernel names them.
    pub kernel_name: bool,
    /// `-A`.
    pub range: Range,
    /// The device minor of SysV shared memory, so that such regions print
    /// as `[ shmid=0x... ]`.
    pub shm_minor: ShmMinor,
}

/// The device minor of SysV shared memory: known, or found the first time a
/// region that may be SysV shared memory is printed (finding it creates a
/// segment, as procps-ng does; a map without such regions never needs it).
#[derive(Clone, Copy, Debug)]
pub enum ShmMinor {
    Known(Option<u32>),
    /// Asks this (`source::shm::shm_minor`, which finds it once).
    Lazy(fn() -> Option<u32>),
}

impl Default for ShmMinor {
    fn default() -> ShmMinor {
        ShmMinor::Known(None)
    }
}

impl PartialEq for ShmMinor {
    fn eq(&self, other: &ShmMinor) -> bool {
        match (self, other) {
            (ShmMinor::Known(a), ShmMinor::Known(b)) => a == b,
            (ShmMinor::Lazy(f), ShmMinor::Lazy(g)) => std::ptr::fn_addr_eq(*f, *g),
            _ => false,
        }
    }
}

impl Eq for ShmMinor {}

impl ShmMinor {
    pub fn get(&self) -> Option<u32> {
        match self {
            ShmMinor::Known(m) => *m,
            ShmMinor::Lazy(find) => find(),
        }
    }
}

/// `PID:   cmdline` (the thread group id and the escaped command line).
pub fn print_process_line(out: &mut impl Write, info: &ProcessInfo) -> io::Result<()> {
    let mut buf = Vec::with_capacity(info.cmdline.len() + 16);
    num::dec(&mut buf, u64::from(info.tgid));
    buf.extend_from_slice(b":   ");
    buf.extend_from_slice(&info.cmdline);
    buf.push(b'\n');
    out.write_all(&buf)
}

/// A complete maps-format table (default or `-d`), as `pmap [opts] PID`
/// prints it. The smaps formats need [`print_smaps_table`]: asking for one
/// here is an `InvalidInput` error (nothing is printed).
pub fn print_maps_table(
    out: &mut impl Write,
    opts: &Options,
    info: &ProcessInfo,
    regions: &[Region],
) -> io::Result<()> {
    if opts.format.uses_smaps() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "print_maps_table: -x/-X/-XX/rc tables need smaps data; use print_smaps_table",
        ));
    }
    print_process_line(out, info)?;
    let mut t = MapsTable::begin(out, opts, info)?;
    for r in regions {
        if t.row(r)? == Row::Stop {
            break;
        }
    }
    t.finish()
}

/// A complete table in any format from smaps entries (`-x`, `-X`, `-XX`,
/// rc; the default and `-d` formats use only the regions), as `pmap [opts]
/// PID` prints it. `columns` carries the column list and widths from one
/// table to the next, as procps-ng does across the PIDs of one call; pass a
/// fresh `SmapsColumns::default()` for a standalone table.
pub fn print_smaps_table(
    out: &mut impl Write,
    opts: &Options,
    info: &ProcessInfo,
    entries: &[SmapsEntry],
    columns: &mut SmapsColumns,
) -> Result<(), TableError> {
    if !opts.format.uses_smaps() {
        let regions: Vec<Region> = entries.iter().map(|e| e.region.clone()).collect();
        return Ok(print_maps_table(out, opts, info, &regions)?);
    }
    print_process_line(out, info)?;
    if opts.format == Format::Extended {
        let mut t = ExtendedTable::begin(out, opts, info)?;
        for e in entries {
            if t.row(e)? == Row::Stop {
                break;
            }
        }
        t.finish()?;
        return Ok(());
    }
    let mut t = SmapsTable::new(opts, columns);
    for e in entries {
        t.add(e)?;
    }
    t.print(out)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{map::region::Region, map::smaps::SmapsField, source::maps::parse_line};

    fn info() -> ProcessInfo {
        ProcessInfo {
            pid: 42,
            tgid: 42,
            cmdline: b"prog arg".to_vec(),
            start_stack: 0x7ffc_0000_1000,
        }
    }

    fn regions() -> Vec<Region> {
        [
            &b"55d0a0000000-55d0a0002000 r--p 00000000 fe:00 1234                       /usr/bin/prog"[..],
            b"55d0a0002000-55d0a0003000 rw-p 00002000 fe:00 1234                       /usr/bin/prog",
            b"55d0a1000000-55d0a1021000 rw-p 00000000 00:00 0                          [heap]",
            b"7f0000000000-7f0000004000 rw-s 00000000 00:01 99                         /SYSV0000abcd (deleted)",
            b"7ffc00000000-7ffc00021000 rw-p 00000000 00:00 0                          [stack]",
        ]
        .iter()
        .map(|l| parse_line(l).expect("valid line"))
        .collect()
    }

    fn print(opts: &Options) -> String {
        let mut out = Vec::new();
        print_maps_table(&mut out, opts, &info(), &regions()).expect("in-memory write");
        String::from_utf8(out).expect("ASCII")
    }

    #[test]
    fn default_table() {
        let opts = Options {
            shm_minor: ShmMinor::Known(Some(1)),
            ..Options::default()
        };
        assert_eq!(
            print(&opts),
            "42:   prog arg
000055d0a0000000      8K r---- prog
000055d0a0002000      4K rw--- prog
000055d0a1000000    132K rw---   [ anon ]
00007f0000000000     16K rw-s-   [ shmid=0x63 ]
00007ffc00000000    132K rw---   [ stack ]
 total              292K
"
        );
    }

    #[test]
    fn device_table_with_range_and_kernel_names() {
        let opts = Options {
            format: Format::Device,
            kernel_name: true,
            range: Range {
                low: 0x55d0a0002fff,
                high: 0x7effffffffff,
            },
            ..Options::default()
        };
        assert_eq!(
            print(&opts),
            "42:   prog arg
Address           Kbytes Mode  Offset           Device    Mapping
000055d0a0002000       4 rw--- 0000000000002000 0fe:00000 prog
000055d0a1000000     132 rw--- 0000000000000000 000:00000 [heap]
mapped: 136K    writeable/private: 136K    shared: 0K
"
        );
    }

    fn entry(r: &Region, rss: u64, pss: u64) -> SmapsEntry {
        SmapsEntry {
            region: r.clone(),
            fields: vec![
                SmapsField::new("Size", r.size() / 1024),
                SmapsField::new("KernelPageSize", 4),
                SmapsField::new("Rss", rss),
                SmapsField::new("Pss", pss),
                SmapsField::new("Shared_Dirty", 0),
                SmapsField::new("Private_Dirty", rss / 2),
                SmapsField::new("Swap", 0),
            ],
            vm_flags: Some(b"rd wr mr".to_vec()),
        }
    }

    fn smaps(opts: &Options, columns: &mut SmapsColumns) -> String {
        let entries: Vec<SmapsEntry> = regions()
            .iter()
            .enumerate()
            .map(|(i, r)| entry(r, 4 * i as u64, 2 * i as u64))
            .collect();
        let mut out = Vec::new();
        print_smaps_table(&mut out, opts, &info(), &entries, columns).expect("in-memory write");
        String::from_utf8(out).expect("ASCII")
    }

    #[test]
    fn extended_table() {
        let opts = Options {
            format: Format::Extended,
            ..Options::default()
        };
        assert_eq!(
            smaps(&opts, &mut SmapsColumns::default()),
            "42:   prog arg
Address           Kbytes     RSS   Dirty Mode  Mapping
000055d0a0000000       8       0       0 r---- prog
000055d0a0002000       4       4       2 rw--- prog
000055d0a1000000     132       8       4 rw---   [ anon ]
00007f0000000000      16      12       6 rw-s- SYSV0000abcd (deleted)
00007ffc00000000     132      16       8 rw---   [ stack ]
---------------- ------- ------- ------- 
total kB             292      40      20
"
        );
    }

    #[test]
    fn more_extended_and_all() {
        let opts = Options {
            format: Format::MoreExtended,
            ..Options::default()
        };
        assert_eq!(
            smaps(&opts, &mut SmapsColumns::default()),
            "42:   prog arg
     Address Perm   Offset Device Inode Size Rss Pss Swap Mapping
55d0a0000000 r--p 00000000  fe:00  1234    8   0   0    0 prog
55d0a0002000 rw-p 00002000  fe:00  1234    4   4   2    0 prog
55d0a1000000 rw-p 00000000  00:00     0  132   8   4    0 [heap]
7f0000000000 rw-s 00000000  00:01    99   16  12   6    0 SYSV0000abcd (deleted)
7ffc00000000 rw-p 00000000  00:00     0  132  16   8    0 [stack]
                                        ==== === === ==== 
                                         292  40  20    0 KB 
"
        );
        let all = Options {
            format: Format::All,
            quiet: true,
            show_path: true,
            ..Options::default()
        };
        let text = smaps(&all, &mut SmapsColumns::default());
        assert!(text.contains(
            "7f0000000000 rw-s 00000000 00:01   99  16 4 12 6 0 6 0 rd wr mr /SYSV0000abcd (deleted)\n"
        ));
        // Page sizes have no total.
        let full = smaps(
            &Options {
                format: Format::All,
                ..Options::default()
            },
            &mut SmapsColumns::default(),
        );
        let totals = full.lines().last().expect("a totals line");
        assert_eq!(
            totals.split_whitespace().collect::<Vec<_>>(),
            ["292", "40", "20", "0", "20", "0", "KB"]
        );
    }

    #[test]
    fn rc_columns_and_range() {
        let opts = Options {
            format: Format::Rc(vec!["Rss".into(), "Mapping".into()]),
            range: Range {
                low: 0x7f0000000000,
                high: u64::MAX,
            },
            ..Options::default()
        };
        assert_eq!(
            smaps(&opts, &mut SmapsColumns::default()),
            "42:   prog arg
     Address Rss Mapping
7f0000000000  12 SYSV0000abcd (deleted)
7ffc00000000  16 [stack]
             === 
              28 KB 
"
        );
    }
}
