//! `--json` of a core file: the same content for every format; the
//! `format` key records which was asked for.

use std::io::{self, Write};

use serde::Serialize;

use super::core_file::{CoreFormat, CoreOptions, mapping_name, mode};
use super::json::{hex, text};
use crate::map::core::Core;

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
