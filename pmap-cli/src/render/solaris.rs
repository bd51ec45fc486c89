//! Solaris pmap's tables as text: the `PID:   cmdline` line, a header of
//! the columns, one line per row, and a `total kB` line (none with `-q`).

use std::io::{self, Write};

use crate::map::{
    process::ProcessInfo,
    solaris::{Cell, Table},
};

/// `quiet`: rows only (`-q`); `reserved`: a last line totalling the
/// reserved address space (`-r`).
pub fn print(
    out: &mut dyn Write,
    info: &ProcessInfo,
    table: &Table,
    quiet: bool,
    reserved: bool,
) -> io::Result<()> {
    let mut buf = Vec::new();
    let text = |c: &Cell| match c {
        Cell::Num(n) => n.to_string(),
        Cell::Text(t) => t.clone(),
        Cell::Dash => "-".into(),
    };
    let widths: Vec<usize> = table
        .columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            table
                .rows
                .iter()
                .map(|r| text(&r.cells[i]).len())
                .chain(table.totals[i].map(|t| t.to_string().len()))
                .chain([c.len(), 7])
                .max()
                .unwrap_or(7)
        })
        .collect();
    if !quiet {
        super::print_process_line(&mut buf, info)?;
        write!(buf, "Address         ")?;
        for (c, w) in table.columns.iter().zip(&widths) {
            write!(buf, " {c:>w$}")?;
        }
        writeln!(buf, " Mode  Mapping")?;
    }
    for r in &table.rows {
        write!(buf, "{:016x}", r.start)?;
        for (c, w) in r.cells.iter().zip(&widths) {
            write!(buf, " {:>w$}", text(c))?;
        }
        writeln!(buf, " {} {}", r.mode, r.mapping)?;
    }
    if !quiet {
        write!(buf, "----------------")?;
        for w in &widths {
            write!(buf, " {}", "-".repeat(*w))?;
        }
        writeln!(buf)?;
        write!(buf, "total kB        ")?;
        for (t, w) in table.totals.iter().zip(&widths) {
            match t {
                Some(t) => write!(buf, " {t:>w$}")?,
                None => write!(buf, " {:>w$}", "")?,
            }
        }
        writeln!(buf)?;
        if reserved {
            let kb: u64 = table
                .rows
                .iter()
                .map(|r| match r.cells[0] {
                    Cell::Num(n) => n,
                    _ => 0,
                })
                .sum();
            writeln!(buf, "reserved: {kb}K in {} regions", table.rows.len())?;
        }
    }
    out.write_all(&buf)
}
