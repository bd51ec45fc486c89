//! `--json` of the Solaris tables (`-S`/`-r`/`-a`/`-L`/`-s`): the view's
//! document lives with the view.

use std::io::{self, Write};

use serde::Serialize;

use super::Snapshot;
use crate::map::solaris::{Cell, Table};
use crate::render::json::{hex, text};

#[derive(Serialize)]
struct SolarisRowDoc<'a> {
    address: String,
    columns: serde_json::Map<String, serde_json::Value>,
    mode: &'a str,
    mapping: &'a str,
}

#[derive(Serialize)]
struct SolarisDoc<'a> {
    source: &'static str,
    view: &'static str,
    pid: u32,
    command: String,
    columns: &'a [String],
    regions: Vec<SolarisRowDoc<'a>>,
    totals: serde_json::Map<String, serde_json::Value>,
}

/// `-S`/`-r`/`-a`/`-L`/`-s` with `--json`: each row's cells by column name
/// (numbers in KiB, `null` where the table prints `-`).
pub fn write(out: &mut dyn Write, snap: &Snapshot, table: &Table) -> io::Result<()> {
    let cell = |c: &Cell| match c {
        Cell::Num(n) => serde_json::Value::from(*n),
        Cell::Text(t) => serde_json::Value::from(t.as_str()),
        Cell::Dash => serde_json::Value::Null,
    };
    let regions = table
        .rows
        .iter()
        .map(|r| SolarisRowDoc {
            address: hex(r.start),
            columns: table
                .columns
                .iter()
                .cloned()
                .zip(r.cells.iter().map(cell))
                .collect(),
            mode: &r.mode,
            mapping: r.mapping.trim_start(),
        })
        .collect();
    let totals = table
        .columns
        .iter()
        .zip(&table.totals)
        .filter_map(|(c, t)| t.map(|t| (c.clone(), serde_json::Value::from(t))))
        .collect();
    let doc = SolarisDoc {
        source: "process",
        view: "solaris",
        pid: snap.info.tgid,
        command: text(&snap.info.cmdline),
        columns: &table.columns,
        regions,
        totals,
    };
    serde_json::to_writer(&mut *out, &doc).map_err(io::Error::other)?;
    out.write_all(b"\n")
}
