//! The procps table of one process, read and printed as `pmap PID`
//! prints it: shared by the snapshot command line and the tracer's tables
//! (`pmap trace -X`), which must print the same bytes.
//!
//! The map is read through `source::checked` (the whole map of one
//! program, read again while torn) and printed row by row as it is read,
//! held back in a `Spool` until the read is judged whole; a self-sizing
//! table (`-X`, `-XX`, rc columns) is kept until the end anyway, and
//! printed once the read is judged whole.

use std::io::{self, Write};

use super::spool;
use crate::{
    map::{process::ProcessInfo, region::Region, smaps::SmapsEntry},
    render::{
        ExtendedTable, Format, MapsTable, Options, Row, SmapsColumns, SmapsTable, TableError,
        print_process_line,
    },
    source::{
        checked::{self, ATTEMPTS, Admit, Order, Pass, ReadEnd, Step, Tried},
        gone::gone,
        maps::MapsReader,
        pid_dir::PidDir,
        prefetch::Prefetch,
        smaps::SmapsReader,
    },
};

/// How `pmap PID` went for one process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rendered {
    /// Table printed.
    Shown,
    /// Header printed, but the maps/smaps file could not be opened (procps
    /// exit status bit 1).
    Unreadable,
    /// The process exited while its map was read: nothing printed, since
    /// what was read may be only part of the map (exit status 42, as for a
    /// process that did not exist).
    Vanished,
    /// The process replaced its program (execve) every time its map was
    /// read: nothing printed (exit status bit 1).
    Unsettled,
    /// Table printed, but the map changed during every read: this many
    /// rows that overlapped an earlier row of the same read were left out.
    Overlaps(usize),
    /// A table too large to hold back (see `spool`) was printed as it was
    /// read, and the read was then cut short: the process exited (exit
    /// status 42), or replaced its program (exit status bit 1), during it.
    Incomplete { exited: bool },
}

/// The warning for a table that left out `n` overlapping rows of process
/// `pid` (see [`Rendered::Overlaps`]).
pub fn overlaps_warning(pid: u32, n: usize) -> String {
    format!(
        "process {pid} changed its memory map during each of the {ATTEMPTS} reads; \
         the table shows the last read, less {n} regions that overlapped regions \
         read before them; stop the process (kill -STOP) for a consistent table"
    )
}

/// A failure that ends the whole run (procps-ng exits at once).
#[derive(Debug)]
pub enum Fatal {
    /// Writing the output failed.
    Io(io::Error),
    /// procps-ng's message (without `pmap: `), exit status 1.
    Message(String),
}

impl From<io::Error> for Fatal {
    fn from(e: io::Error) -> Self {
        Fatal::Io(e)
    }
}

/// Prints the process of `dir` (looked up as `info`), all of its files
/// read through `dir`. Nothing is written unless the map read is the
/// whole map of the program the header names: the table is built in
/// memory, then judged (see `source::pid_dir::judge_read`); a process that
/// exec'd meanwhile, or whose rows came out of order because the map
/// changed during the read, is read again.
pub fn render_process_in(
    out: &mut impl Write,
    dir: &PidDir,
    info: &ProcessInfo,
    opts: &Options,
    columns: &mut SmapsColumns,
) -> Result<Rendered, Fatal> {
    let tried = checked::read_with_retries(dir, info, |maps_dir, info, before, last_try| {
        let mut buf = spool::Spool::new(&mut *out, spool::HOLD_LIMIT);
        let mut cols = columns.clone();
        let Some((pass, dropped, table)) =
            read_table(&mut buf, maps_dir, info, opts, &mut cols, last_try)?
        else {
            buf.commit()?;
            return Ok::<_, Fatal>(Step::Done(Rendered::Unreadable));
        };
        let overlaps = match pass {
            Pass::Read { whole: true, .. } => dropped,
            _ => 0,
        };
        let end = checked::judge(maps_dir, before, pass);
        // Output already went out: no second read can replace it.
        if buf.written_through() && end != ReadEnd::Complete {
            return Ok(Step::Done(Rendered::Incomplete {
                exited: end == ReadEnd::Exited,
            }));
        }
        Ok(match end {
            ReadEnd::Complete => {
                buf.commit()?;
                drop(buf);
                // A self-sizing table is printed once judged whole: to the
                // output itself, not held back (12 MB of `-X` text for
                // 60,000 regions would be copied into the spool first).
                if let Some(t) = table {
                    t.print(&mut *out)?;
                }
                *columns = cols;
                Step::Done(if overlaps > 0 {
                    Rendered::Overlaps(overlaps)
                } else {
                    Rendered::Shown
                })
            }
            ReadEnd::Exited => Step::Done(Rendered::Vanished),
            ReadEnd::Changed => Step::Again,
        })
    })?;
    Ok(match tried {
        Tried::Done(r) => r,
        Tried::Vanished => Rendered::Vanished,
        Tried::Unsettled => Rendered::Unsettled,
    })
}

/// One read of a map file, row by row: where it stands and how it ended.
struct Walk {
    path: String,
    order: Order,
    /// Set once the table outgrew what is held back: overlapping rows are
    /// then left out, since no second read can replace what went out.
    through: std::rc::Rc<std::cell::Cell<bool>>,
    rows: usize,
    /// Set when the read ended early (Gone or Raced).
    cut: Option<Pass>,
}

impl Walk {
    /// Reads every row with `next` (into `item`, whose region is
    /// `region(item)`) and hands each one admitted to `row`, until the end
    /// of the file, a cut (the process reaped mid-read: ESRCH, not bad
    /// data; or the map changed under the read), or `row` returning false
    /// (a row past the `-A` range: procps-ng stops reading there). Returns
    /// whether the read went on to its end.
    fn each<T>(
        &mut self,
        item: &mut T,
        mut next: impl FnMut(&mut T) -> io::Result<bool>,
        region: fn(&T) -> &Region,
        mut row: impl FnMut(&T) -> Result<bool, Fatal>,
    ) -> Result<bool, Fatal> {
        loop {
            match next(item) {
                Ok(true) => {}
                Ok(false) => return Ok(true),
                Err(e) if gone(&e) => {
                    self.cut = Some(Pass::Gone);
                    return Ok(true);
                }
                Err(e) => return Err(Fatal::Message(format!("{}: {e}", self.path))),
            }
            self.order.drop_overlaps |= self.through.get();
            match self.order.admit(region(item)) {
                Admit::Keep => self.rows += 1,
                Admit::Skip => continue,
                Admit::Raced => {
                    self.cut = Some(Pass::Raced);
                    return Ok(true);
                }
            }
            if !row(item)? {
                return Ok(false);
            }
        }
    }
}

/// Prints the header and table of `info` into `out`, reading `dir`'s
/// maps or smaps: how the read went, how many overlapping rows were left
/// out, and a self-sizing table (`-X`, `-XX`, rc columns) still to print,
/// which is only printed at the end anyway; or `None` if the file could
/// not be opened (`out` then holds the header). With `last_try`, rows that
/// overlap an earlier row are left out rather than the read given up.
fn read_table<'a>(
    out: &mut spool::Spool<'_, impl Write>,
    dir: &PidDir,
    info: &ProcessInfo,
    opts: &'a Options,
    columns: &'a mut SmapsColumns,
    last_try: bool,
) -> Result<Option<(Pass, usize, Option<SmapsTable<'a>>)>, Fatal> {
    print_process_line(out, info)?;
    let file = if opts.format.uses_smaps() {
        "smaps"
    } else {
        "maps"
    };
    let path = format!("/proc/{}/{file}", dir.pid());
    let f = match dir.open_file(file) {
        Ok(f) => f,
        Err(e) if gone(&e) => return Ok(Some((Pass::Gone, 0, None))),
        Err(_) => return Ok(None),
    };
    let probe = f
        .try_clone()
        .map_err(|e| Fatal::Message(format!("{path}: cannot duplicate the descriptor: {e}")))?;
    let mut walk = Walk {
        path,
        order: Order::new(last_try),
        through: out.through_flag(),
        rows: 0,
        cut: None,
    };
    let mut table = None;
    let whole = match &opts.format {
        Format::Default | Format::Device => {
            let mut reader = MapsReader::from_lines(Prefetch::new(f));
            let mut t = MapsTable::begin(out, opts, info)?;
            let whole = walk.each(
                &mut Region::default(),
                |r| reader.next_into(r),
                |r| r,
                |r| Ok(t.row(r)? == Row::Continue),
            )?;
            t.finish()?;
            whole
        }
        Format::Extended => {
            let mut reader = SmapsReader::new(Prefetch::new(f));
            let mut t = ExtendedTable::begin(out, opts, info)?;
            let whole = walk.each(
                &mut SmapsEntry::default(),
                |e| reader.next_into(e),
                |e| &e.region,
                |e| Ok(t.row(e)? == Row::Continue),
            )?;
            t.finish()?;
            whole
        }
        Format::MoreExtended | Format::All | Format::Rc(_) => {
            let mut reader = SmapsReader::new(Prefetch::new(f));
            let mut t = SmapsTable::new(opts, columns);
            walk.each(
                &mut SmapsEntry::default(),
                |e| reader.next_into(e),
                |e| &e.region,
                |e| {
                    t.add(e).map_err(|err| match err {
                        TableError::Io(e) => Fatal::Io(e),
                        other => Fatal::Message(format!("ERROR: {other}")),
                    })?;
                    Ok(true)
                },
            )?;
            table = Some(t);
            true
        }
    };
    let Walk {
        order, rows, cut, ..
    } = walk;
    if let Some(end) = cut {
        return Ok(Some((end, order.dropped, None)));
    }
    Ok(Some((
        Pass::Read {
            file: probe,
            rows,
            whole,
        },
        order.dropped,
        table,
    )))
}
