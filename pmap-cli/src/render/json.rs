//! `--json`: one JSON document per process or core, one per line, with stable
//! keys (documented in docs/json.md). This is the document of the procps
//! table formats, and what every document shares; the document of each view
//! lives with the view, the core file's with its printer (`core_json`). Numbers are numbers (sizes in KiB, as
//! the kernel and the text formats count them); addresses and offsets are
//! `0x`-prefixed lowercase hex strings, since they exceed what JSON readers
//! hold exactly in a double. Names that are not UTF-8 are converted lossily
//! (U+FFFD), the kernel's `\012` escapes are kept as printed.

use std::io::{self, Write};

use serde::Serialize;

use super::{Format, Options};
use crate::map::{process::ProcessInfo, smaps::SmapsEntry};

/// `0x`-prefixed lowercase hex, as every address in the JSON output.
pub fn hex(v: u64) -> String {
    format!("{v:#x}")
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

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
    super::names::push_mapping_name(&mut buf, r, opts, start_stack, &mut scratch);
    text(buf.trim_ascii_start())
}

/// The JSON document of a live process in the table formats: every field
/// the format reads (maps columns; with `-x`/`-X`/`-XX`, every smaps field
/// by its kernel name, in KiB; with `-XX`, the VmFlags).
pub fn write_process(
    out: &mut dyn Write,
    info: &ProcessInfo,
    entries: &[SmapsEntry],
    opts: &Options,
) -> io::Result<()> {
    let smaps = opts.format.uses_smaps();
    let mut totals = serde_json::Map::new();
    let (mut size, mut wp, mut shared) = (0u64, 0u64, 0u64);
    let mut sums: Vec<(String, u64)> = Vec::new();
    let regions = entries
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
                mapping: mapping_text(r, opts, info.start_stack),
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
        pid: info.tgid,
        command: text(&info.cmdline),
        regions,
        totals,
    };
    serde_json::to_writer(&mut *out, &doc).map_err(io::Error::other)?;
    out.write_all(b"\n")
}
