//! Printers: procps-ng pmap's tables, byte for byte, from data already read.
//! Nothing here reads `/proc`.
//!
//! Entry points:
//! - [`print_process_line`]: the `PID:   cmdline` line that heads every table.
//! - [`print_maps_table`]: a whole table (process line through totals) for
//!   the maps formats (default, `-d`) from `&[Region]`; [`MapsTable`] is the
//!   same, one row at a time.
//! - [`print_smaps_table`]: a whole table for the smaps formats (`-x`, `-X`,
//!   `-XX`, rc file) from `&[SmapsEntry]`; [`ExtendedTable`] and
//!   [`SmapsTable`] are the streaming forms.
pub mod json;
pub mod maps_table;
pub mod names;
pub mod num;
pub mod smaps_table;

use std::io::{self, Write};

pub use maps_table::{ExtendedTable, MapsTable, Row};
pub use smaps_table::{SmapsColumns, SmapsTable, TableError};

use crate::{
    proc::{process::ProcessInfo, smaps::SmapsEntry},
    region::Region,
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

    /// Whether this is one of the self-sizing smaps tables (`-X`, `-XX`, rc).
    pub fn is_smaps_table(&self) -> bool {
        matches!(self, Format::MoreExtended | Format::All | Format::Rc(_))
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
    /// The device minor of SysV shared memory (`proc::shm::shm_minor()`),
    /// so that such regions print as `[ shmid=0x... ]`.
    pub shm_minor: Option<u32>,
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

/// A complete maps-format table (default or `-d`; for the smaps formats use
/// [`print_smaps_table`]), as `pmap [opts] PID` prints it.
pub fn print_maps_table(
    out: &mut impl Write,
    opts: &Options,
    info: &ProcessInfo,
    regions: &[Region],
) -> io::Result<()> {
    print_process_line(out, info)?;
    let mut t = MapsTable::begin(out, opts, info)?;
    for r in regions {
        if t.row(r)? == Row::Stop {
            break;
        }
    }
    t.finish()
}

/// A complete smaps-format table (`-x`, `-X`, `-XX`, rc), as `pmap [opts]
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
