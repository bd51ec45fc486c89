//! `--json`: one JSON document per process or core, one per line, with stable
//! keys (documented in docs/json.md). Numbers are numbers (sizes in KiB, as
//! the kernel and the text formats count them); addresses and offsets are
//! `0x`-prefixed lowercase hex strings, since they exceed what JSON readers
//! hold exactly in a double. Names that are not UTF-8 are converted lossily
//! (U+FFFD), the kernel's `\012` escapes are kept as printed.

use std::io::{self, Write};

use serde::Serialize;

use crate::core_file::Core;
use crate::core_file::print::{CoreFormat, CoreOptions, mapping_name, mode};

/// `0x`-prefixed lowercase hex, as every address in the JSON output.
pub fn hex(v: u64) -> String {
    format!("{v:#x}")
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn format_name(f: CoreFormat) -> &'static str {
    match f {
        CoreFormat::Default => "default",
        CoreFormat::Extended => "extended",
        CoreFormat::Device => "device",
    }
}

#[derive(Serialize)]
struct CoreDoc<'a> {
    source: &'static str,
    format: &'static str,
    core: String,
    pid: u32,
    ppid: u32,
    uid: u32,
    gid: u32,
    command: String,
    name: String,
    page_size: u64,
    threads: Vec<CoreThread>,
    regions: Vec<CoreRegionDoc<'a>>,
    totals: CoreTotals,
}

#[derive(Serialize)]
struct CoreThread {
    tid: u32,
    signal: u16,
    stack_pointer: Option<String>,
}

#[derive(Serialize)]
struct CoreRegionDoc<'a> {
    address: String,
    end: String,
    size_kb: u64,
    perms: &'a str,
    mode: String,
    offset: String,
    file_backed: bool,
    name: String,
    mapping: String,
    dumped_kb: u64,
}

#[derive(Serialize)]
struct CoreTotals {
    size_kb: u64,
    dumped_kb: u64,
    writeable_private_kb: u64,
    shared_kb: u64,
}

/// The JSON document of a core file (same content for every format; the
/// `format` key records which was asked for).
pub fn write_core(out: &mut dyn Write, core: &Core, opts: &CoreOptions) -> io::Result<()> {
    let mut totals = CoreTotals {
        size_kb: 0,
        dumped_kb: 0,
        writeable_private_kb: 0,
        shared_kb: 0,
    };
    let regions = core
        .regions
        .iter()
        .map(|r| {
            let size_kb = r.region.size() / 1024;
            totals.size_kb += size_kb;
            totals.dumped_kb += r.dumped / 1024;
            if r.region.perms.shared() {
                totals.shared_kb += size_kb;
            } else if r.region.perms.writable() {
                totals.writeable_private_kb += size_kb;
            }
            CoreRegionDoc {
                address: hex(r.region.start),
                end: hex(r.region.end),
                size_kb,
                perms: r.region.perms.as_str(),
                mode: text(&mode(r)),
                offset: hex(r.region.offset),
                file_backed: r.file_backed,
                name: text(&r.region.name),
                mapping: text(mapping_name(r, opts.show_path).trim_ascii_start()),
                dumped_kb: r.dumped / 1024,
            }
        })
        .collect();
    let doc = CoreDoc {
        source: "core",
        format: format_name(opts.format),
        core: core.path.display().to_string(),
        pid: core.process.pid,
        ppid: core.process.ppid,
        uid: core.process.uid,
        gid: core.process.gid,
        command: text(core.command()),
        name: text(&core.process.fname),
        page_size: core.page_size,
        threads: core
            .threads
            .iter()
            .map(|t| CoreThread {
                tid: t.tid,
                signal: t.signal,
                stack_pointer: t.sp.map(hex),
            })
            .collect(),
        regions,
        totals,
    };
    serde_json::to_writer(&mut *out, &doc).map_err(io::Error::other)?;
    out.write_all(b"\n")
}

// ---- live processes ----

use crate::format::{Format, Options};
use crate::views::Snapshot;
use crate::views::args::SortKey;
use crate::views::solaris::{Cell, Table};
use crate::views::summary::{Row, sort_rows, total};

fn live_format_name(f: &Format) -> &'static str {
    match f {
        Format::Default => "default",
        Format::Extended => "extended",
        Format::Device => "device",
        Format::MoreExtended => "more_extended",
        Format::All => "all",
        Format::Rc(_) => "rc",
    }
}

#[derive(Serialize)]
struct ProcessDoc {
    source: &'static str,
    format: &'static str,
    pid: u32,
    command: String,
    regions: Vec<RegionDoc>,
    totals: serde_json::Map<String, serde_json::Value>,
}

#[derive(Serialize)]
struct RegionDoc {
    address: String,
    end: String,
    size_kb: u64,
    perms: String,
    mode: String,
    offset: String,
    device: String,
    inode: u64,
    name: String,
    mapping: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    fields: Option<serde_json::Map<String, serde_json::Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    vm_flags: Option<Vec<String>>,
}

fn mapping_text(r: &crate::map::region::Region, opts: &Options, start_stack: u64) -> String {
    let mut buf = Vec::new();
    let mut scratch = Vec::new();
    crate::format::names::push_mapping_name(&mut buf, r, opts, start_stack, &mut scratch);
    text(buf.trim_ascii_start())
}

/// The JSON document of a live process in the table formats: every field
/// the format reads (maps columns; with `-x`/`-X`/`-XX`, every smaps field
/// by its kernel name, in KiB; with `-XX`, the VmFlags).
pub fn write_process(out: &mut dyn Write, snap: &Snapshot, opts: &Options) -> io::Result<()> {
    let smaps = opts.format.uses_smaps();
    let mut totals = serde_json::Map::new();
    let (mut size, mut wp, mut shared) = (0u64, 0u64, 0u64);
    let mut sums: Vec<(String, u64)> = Vec::new();
    let regions = snap
        .entries
        .iter()
        .map(|e| {
            let r = &e.region;
            let kb = r.size() / 1024;
            size += kb;
            if r.perms.shared() {
                shared += kb;
            } else if r.perms.writable() {
                wp += kb;
            }
            let fields = smaps.then(|| {
                let mut m = serde_json::Map::new();
                for f in &e.fields {
                    m.insert(f.name.to_string(), f.value.into());
                    match sums.iter_mut().find(|(n, _)| **n == *f.name) {
                        Some((_, s)) => *s += f.value,
                        None => sums.push((f.name.to_string(), f.value)),
                    }
                }
                m
            });
            let p = r.perms.0;
            RegionDoc {
                address: hex(r.start),
                end: hex(r.end),
                size_kb: kb,
                perms: text(&p),
                mode: text(&[
                    p[0],
                    p[1],
                    p[2],
                    if p[3] == b's' { b's' } else { b'-' },
                    b'-',
                ]),
                offset: hex(r.offset),
                device: format!("{:02x}:{:02x}", r.dev_major, r.dev_minor),
                inode: r.inode,
                name: text(&r.name),
                mapping: mapping_text(r, opts, snap.info.start_stack),
                fields,
                vm_flags: (opts.format == Format::All).then(|| {
                    e.vm_flags
                        .as_deref()
                        .unwrap_or_default()
                        .split(|&c| c == b' ')
                        .filter(|f| !f.is_empty())
                        .map(text)
                        .collect()
                }),
            }
        })
        .collect();
    totals.insert("size_kb".into(), size.into());
    if opts.format == Format::Device {
        totals.insert("writeable_private_kb".into(), wp.into());
        totals.insert("shared_kb".into(), shared.into());
    }
    if smaps {
        let mut f = serde_json::Map::new();
        for (n, s) in sums {
            f.insert(n, s.into());
        }
        totals.insert("fields".into(), f.into());
    }
    let doc = ProcessDoc {
        source: "process",
        format: live_format_name(&opts.format),
        pid: snap.info.tgid,
        command: text(&snap.info.cmdline),
        regions,
        totals,
    };
    serde_json::to_writer(&mut *out, &doc).map_err(io::Error::other)?;
    out.write_all(b"\n")
}

#[derive(Serialize)]
struct CategoryDoc<'a> {
    category: &'a str,
    count: u64,
    size_kb: u64,
    rss_kb: u64,
    pss_kb: u64,
    private_dirty_kb: u64,
    shared_dirty_kb: u64,
    swap_kb: u64,
}

impl<'a> From<&'a Row> for CategoryDoc<'a> {
    fn from(r: &'a Row) -> Self {
        CategoryDoc {
            category: &r.category,
            count: r.count,
            size_kb: r.size,
            rss_kb: r.rss,
            pss_kb: r.pss,
            private_dirty_kb: r.private_dirty,
            shared_dirty_kb: r.shared_dirty,
            swap_kb: r.swap,
        }
    }
}

#[derive(Serialize)]
struct SummaryDoc<'a> {
    source: &'static str,
    view: &'static str,
    pid: u32,
    command: String,
    categories: Vec<CategoryDoc<'a>>,
    total: CategoryDoc<'a>,
}

/// `--summary --json`.
pub fn write_summary(
    out: &mut dyn Write,
    snap: &Snapshot,
    rows: &[Row],
    key: Option<SortKey>,
) -> io::Result<()> {
    let mut rows = rows.to_vec();
    sort_rows(&mut rows, key);
    let t = total(&rows);
    let doc = SummaryDoc {
        source: "process",
        view: "summary",
        pid: snap.info.tgid,
        command: text(&snap.info.cmdline),
        categories: rows.iter().map(CategoryDoc::from).collect(),
        total: CategoryDoc::from(&t),
    };
    serde_json::to_writer(&mut *out, &doc).map_err(io::Error::other)?;
    out.write_all(b"\n")
}

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
pub fn write_solaris(out: &mut dyn Write, snap: &Snapshot, table: &Table) -> io::Result<()> {
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
