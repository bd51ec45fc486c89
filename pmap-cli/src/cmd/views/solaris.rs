//! The tables of Solaris pmap's options, with Linux meanings:
//!
//! | option | columns added |
//! |---|---|
//! | `-x` | `RSS`, `Anon` (smaps `Anonymous`), `Locked` (smaps `Locked`: mlock'ed), `Dirty` (private + shared dirty) |
//! | `-S` | `Swap`, `SwapPss` |
//! | `-a` | counts shared mappings in `Anon` and `Swap` (else `-` there, as Solaris); adds both columns if missing |
//! | `-s` | `Pgsz` (KernelPageSize), `MMU` (MMUPageSize), `THP` (AnonHugePages + FilePmdMapped + ShmemPmdMapped), `Hugetlb`; one row per run of one page size when `/proc/PID/pagemap` and `/proc/kpageflags` are readable (root) |
//! | `-L` | `Policy` and one column per NUMA node (`N0`...) of resident KiB, from `/proc/PID/numa_maps` |
//! | `-r` | only reserved address space (`PROT_NONE` regions) with a `Kind` column (`stack guard`, `arena reserve`, `guard`, `reservation`) and a total |
//! | `-F` | accepted, no effect (Linux needs no process grab) |
//! | `-l` | no column: loaded objects' regions named as the dynamic linker has them (`link_names`) |
//!
//! Mode is Solaris's `rwxsR`: `s` shared, `R` no swap reserved (MAP_NORESERVE,
//! VmFlags `nr`).
//!
//! Sizes are KiB. Every table ends with a `total kB` line over its numeric
//! columns (unless `-q`). The table is `map::solaris`'s data, printed by
//! `render::solaris` (text) or `solaris_json` (JSON).

use std::collections::{BTreeMap, BTreeSet};
use std::io;

use super::Snapshot;
use super::args::ViewArgs;
use crate::{
    map::{
        kind,
        page_runs::{self, Run},
        smaps::SmapsEntry,
        solaris::{Cell, Table, TableRow},
    },
    source::{numa_maps, page_frames},
};

fn kb_text(kb: u64) -> String {
    if kb >= 1024 * 1024 && kb.is_multiple_of(1024 * 1024) {
        format!("{}G", kb / (1024 * 1024))
    } else if kb >= 1024 && kb.is_multiple_of(1024) {
        format!("{}M", kb / 1024)
    } else {
        format!("{kb}K")
    }
}

fn mode(e: &SmapsEntry) -> String {
    let p = e.region.perms.0;
    let noreserve = e
        .vm_flags
        .as_deref()
        .is_some_and(|f| f.split(|&c| c == b' ').any(|flag| flag == b"nr"));
    String::from_utf8_lossy(&[
        p[0],
        p[1],
        p[2],
        if p[3] == b's' { b's' } else { b'-' },
        if noreserve { b'R' } else { b'-' },
    ])
    .into_owned()
}

fn mapping(e: &SmapsEntry, snap: &Snapshot, v: &ViewArgs, link: Option<&Vec<u8>>) -> String {
    if let Some(name) = link {
        return String::from_utf8_lossy(&super::link_names::display(name, v.show_path))
            .into_owned();
    }
    let mut buf = Vec::new();
    let mut scratch = Vec::new();
    let opts = crate::render::Options {
        show_path: v.show_path,
        kernel_name: v.kernel_name || v.names,
        shm_minor: crate::render::ShmMinor::Lazy(crate::source::shm::shm_minor),
        ..Default::default()
    };
    crate::render::names::push_mapping_name(
        &mut buf,
        &e.region,
        &opts,
        snap.info.start_stack,
        &mut scratch,
    );
    String::from_utf8_lossy(&buf).into_owned()
}

/// The table of `snap` for the options in `v`, read as it is built (NUMA
/// residency, page frames and the dynamic linker's names when asked).
pub fn build(snap: &Snapshot, v: &ViewArgs) -> io::Result<Table> {
    let extended = v.format == crate::render::Format::Extended;
    let mut columns: Vec<String> = vec!["Kbytes".into()];
    if extended {
        columns.extend(["RSS", "Anon", "Locked", "Dirty"].map(String::from));
    } else if v.all_shared {
        columns.push("Anon".into());
    }
    if v.swap {
        columns.extend(["Swap", "SwapPss"].map(String::from));
    } else if v.all_shared {
        columns.push("Swap".into());
    }
    if v.page_sizes {
        columns.extend(["Pgsz", "MMU", "THP", "Hugetlb"].map(String::from));
    }
    let numa = if v.numa {
        numa_maps::read(&snap.dir)
    } else {
        BTreeMap::new()
    };
    let nodes: BTreeSet<u32> = numa
        .values()
        .flat_map(|n| n.nodes.keys().copied())
        .collect();
    if v.numa {
        columns.push("Policy".into());
        columns.extend(nodes.iter().map(|n| format!("N{n}")));
    }
    if v.reserved {
        columns.push("Kind".into());
    }
    let roles = if v.reserved {
        super::names::roles(snap)
    } else {
        Default::default()
    };
    let huge_kb = page_frames::pmd_size_kb();
    let links = if v.link_names {
        super::link_names::live(snap)?
    } else {
        Default::default()
    };

    let mut rows = Vec::new();
    for e in &snap.entries {
        let r = &e.region;
        let reserved = !r.perms.readable() && !r.perms.writable() && !r.perms.executable();
        if v.reserved && !reserved {
            continue;
        }
        let f = |n: &str| e.field(n).unwrap_or(0);
        let shared = r.perms.shared();
        let private_only = |x: u64| {
            if shared && !v.all_shared {
                Cell::Dash
            } else {
                Cell::Num(x)
            }
        };
        let runs = if v.page_sizes {
            page_frames::read(&snap.dir, r.start, r.end).map(|frames| {
                page_runs::runs(r.start, &frames, f("KernelPageSize").max(4), huge_kb)
            })
        } else {
            None
        };
        let runs = runs.unwrap_or_else(|| {
            vec![Run {
                start: r.start,
                end: r.end,
                page_kb: Some(f("KernelPageSize")),
            }]
        });
        let whole = runs.len() == 1;
        for run in &runs {
            let size = (run.end - run.start) / 1024;
            let mut cells = Vec::new();
            for c in &columns {
                let cell = match c.as_str() {
                    "Kbytes" => Cell::Num(size),
                    "RSS" if whole => Cell::Num(f("Rss")),
                    "RSS" => Cell::Num(if run.page_kb.is_some() { size } else { 0 }),
                    // Per-run rows: only what is known per page.
                    _ if !whole && !matches!(c.as_str(), "Pgsz" | "MMU" | "THP" | "Kind") => {
                        Cell::Dash
                    }
                    "Anon" => private_only(f("Anonymous")),
                    "Locked" => Cell::Num(f("Locked")),
                    "Dirty" => Cell::Num(f("Private_Dirty") + f("Shared_Dirty")),
                    "Swap" => private_only(f("Swap")),
                    "SwapPss" => private_only(f("SwapPss")),
                    "Pgsz" => match run.page_kb {
                        Some(kb) if kb > 0 => Cell::Text(kb_text(kb)),
                        _ => Cell::Dash,
                    },
                    "MMU" => Cell::Text(kb_text(f("MMUPageSize"))),
                    "THP" if whole => {
                        Cell::Num(f("AnonHugePages") + f("FilePmdMapped") + f("ShmemPmdMapped"))
                    }
                    "THP" => Cell::Num(if run.page_kb == Some(huge_kb) {
                        size
                    } else {
                        0
                    }),
                    "Hugetlb" => Cell::Num(f("Shared_Hugetlb") + f("Private_Hugetlb")),
                    "Policy" => Cell::Text(
                        numa.get(&r.start)
                            .map_or_else(|| "-".into(), |n| n.policy.clone()),
                    ),
                    "Kind" => Cell::Text(
                        kind::reserved(r, roles.get(&r.start).copied())
                            .as_str()
                            .into(),
                    ),
                    node => {
                        let id: u32 = node[1..].parse().unwrap_or(u32::MAX);
                        Cell::Num(
                            numa.get(&r.start)
                                .and_then(|n| n.nodes.get(&id))
                                .copied()
                                .unwrap_or(0),
                        )
                    }
                };
                cells.push(cell);
            }
            rows.push(TableRow {
                start: run.start,
                cells,
                mode: mode(e),
                mapping: mapping(e, snap, v, links.get(&r.start)),
            });
        }
    }
    Ok(Table::new(columns, rows))
}
