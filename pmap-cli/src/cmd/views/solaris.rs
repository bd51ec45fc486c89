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
//! columns (unless `-q`).

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Write};

use super::Snapshot;
use super::args::ViewArgs;
use crate::{map::smaps::SmapsEntry, source::pid_dir::PidDir};

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(untagged)]
pub enum Cell {
    Num(u64),
    Text(String),
    /// Not applicable (e.g. Anon of a shared mapping without `-a`).
    #[serde(serialize_with = "null")]
    Dash,
}

fn null<S: serde::Serializer>(s: S) -> Result<S::Ok, S::Error> {
    s.serialize_none()
}

pub struct Table {
    pub columns: Vec<String>,
    /// Per row: start address, the cells of `columns`, mode, mapping.
    pub rows: Vec<TableRow>,
    pub totals: Vec<Option<u64>>,
}

pub struct TableRow {
    pub start: u64,
    pub cells: Vec<Cell>,
    pub mode: String,
    pub mapping: String,
}

/// NUMA residency of one region: policy and KiB per node.
struct Numa {
    policy: String,
    nodes: BTreeMap<u32, u64>,
}

fn read_numa(dir: &PidDir) -> BTreeMap<u64, Numa> {
    let mut out = BTreeMap::new();
    let Ok(raw) = dir.read("numa_maps") else {
        return out;
    };
    let text = String::from_utf8_lossy(&raw);
    for line in text.lines() {
        let mut it = line.split_whitespace();
        let (Some(addr), Some(policy)) = (it.next(), it.next()) else {
            continue;
        };
        let Ok(addr) = u64::from_str_radix(addr, 16) else {
            continue;
        };
        let mut page_kb = 4;
        let mut pages = Vec::new();
        for tok in it {
            if let Some(v) = tok.strip_prefix("kernelpagesize_kB=") {
                page_kb = v.parse().unwrap_or(4);
            } else if let Some((n, v)) = tok.strip_prefix('N').and_then(|t| t.split_once('='))
                && let (Ok(n), Ok(v)) = (n.parse::<u32>(), v.parse::<u64>())
            {
                pages.push((n, v));
            }
        }
        let nodes = pages.into_iter().map(|(n, p)| (n, p * page_kb)).collect();
        out.insert(
            addr,
            Numa {
                policy: policy.to_string(),
                nodes,
            },
        );
    }
    out
}

/// A run of pages of one size within a region.
struct Run {
    start: u64,
    end: u64,
    /// Page size in KiB, or `None` where nothing is mapped.
    page_kb: Option<u64>,
}

/// Splits `[start, end)` into runs of one page size from pagemap and
/// kpageflags; `None` if they cannot be read (not root, or PFNs hidden).
///
/// A page counts as part of a huge page only when its whole huge-page-sized,
/// aligned block is present with physically contiguous, aligned frames
/// flagged THP or hugetlb: smaller large folios (page-cache folios, mTHP)
/// count as base pages.
fn page_runs(dir: &PidDir, start: u64, end: u64, base_kb: u64, huge_kb: u64) -> Option<Vec<Run>> {
    use std::os::unix::fs::FileExt;
    const PRESENT: u64 = 1 << 63;
    const PFN_MASK: u64 = (1 << 55) - 1;
    const KPF_HUGE: u64 = 1 << 17;
    const KPF_THP: u64 = 1 << 22;
    let pages = usize::try_from((end - start) / 4096).ok()?;
    if pages > (1 << 22) {
        return None; // Over 16 GiB: too slow to walk page by page.
    }
    let pagemap = dir.open_file("pagemap").ok()?;
    let kflags = std::fs::File::open("/proc/kpageflags").ok()?;
    let mut raw = vec![0u8; pages * 8];
    pagemap.read_exact_at(&mut raw, start / 4096 * 8).ok()?;
    // Per page: None (not present) or (pfn, part of a huge folio).
    let mut info: Vec<Option<(u64, bool)>> = Vec::with_capacity(pages);
    for e in raw.chunks_exact(8) {
        let e = u64::from_ne_bytes(e.try_into().ok()?);
        if e & PRESENT == 0 {
            info.push(None);
            continue;
        }
        let pfn = e & PFN_MASK;
        if pfn == 0 {
            return None; // PFNs hidden (no CAP_SYS_ADMIN).
        }
        info.push(Some((pfn, false)));
    }
    // kpageflags, one read per run of consecutive frames.
    let mut i = 0;
    let mut flags = Vec::new();
    while i < pages {
        let Some((pfn0, _)) = info[i] else {
            i += 1;
            continue;
        };
        let mut n = 1;
        while i + n < pages && matches!(info[i + n], Some((p, _)) if p == pfn0 + n as u64) {
            n += 1;
        }
        flags.resize(n * 8, 0);
        kflags.read_exact_at(&mut flags, pfn0 * 8).ok()?;
        for (k, f) in flags.chunks_exact(8).enumerate() {
            let f = u64::from_ne_bytes(f.try_into().ok()?);
            if let Some((_, huge)) = &mut info[i + k] {
                *huge = f & (KPF_THP | KPF_HUGE) != 0;
            }
        }
        i += n;
    }
    let per_huge = usize::try_from(huge_kb / 4).ok()?.max(1);
    let mut sizes: Vec<Option<u64>> = info.iter().map(|p| p.map(|_| base_kb)).collect();
    let first =
        usize::try_from((start / 4096).next_multiple_of(per_huge as u64) - start / 4096).ok()?;
    let mut i = first;
    while i + per_huge <= pages {
        let block = &info[i..i + per_huge];
        let huge = match block[0] {
            Some((pfn0, true)) if pfn0 % per_huge as u64 == 0 => block
                .iter()
                .enumerate()
                .all(|(k, p)| matches!(p, Some((pfn, true)) if *pfn == pfn0 + k as u64)),
            _ => false,
        };
        if huge {
            sizes[i..i + per_huge].fill(Some(huge_kb));
        }
        i += per_huge;
    }
    let mut runs: Vec<Run> = Vec::new();
    for (i, size) in sizes.into_iter().enumerate() {
        let at = start + i as u64 * 4096;
        match runs.last_mut() {
            Some(r) if r.page_kb == size => r.end = at + 4096,
            _ => runs.push(Run {
                start: at,
                end: at + 4096,
                page_kb: size,
            }),
        }
    }
    Some(runs)
}

fn pmd_size_kb() -> u64 {
    std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/hpage_pmd_size")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .map_or(2048, |b| b / 1024)
}

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
        shm_minor: crate::source::shm::shm_minor(),
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

impl Table {
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
            read_numa(&snap.dir)
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
        let labels = if v.reserved {
            super::names::label(snap)
        } else {
            Default::default()
        };
        let huge_kb = pmd_size_kb();
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
                page_runs(
                    &snap.dir,
                    r.start,
                    r.end,
                    f("KernelPageSize").max(4),
                    huge_kb,
                )
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
                        "Kind" => Cell::Text(reserved_kind(r, labels.get(&r.start))),
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
        let totals = (0..columns.len())
            .map(|i| {
                let mut any = false;
                let mut sum = 0;
                for r in &rows {
                    match &r.cells[i] {
                        Cell::Num(n) => {
                            any = true;
                            sum += n;
                        }
                        Cell::Text(_) => return None,
                        Cell::Dash => {}
                    }
                }
                any.then_some(sum)
            })
            .collect();
        Ok(Table {
            columns,
            rows,
            totals,
        })
    }

    pub fn print(&self, out: &mut dyn Write, snap: &Snapshot, v: &ViewArgs) -> io::Result<()> {
        let mut buf = Vec::new();
        let text = |c: &Cell| match c {
            Cell::Num(n) => n.to_string(),
            Cell::Text(t) => t.clone(),
            Cell::Dash => "-".into(),
        };
        let widths: Vec<usize> = self
            .columns
            .iter()
            .enumerate()
            .map(|(i, c)| {
                self.rows
                    .iter()
                    .map(|r| text(&r.cells[i]).len())
                    .chain(self.totals[i].map(|t| t.to_string().len()))
                    .chain([c.len(), 7])
                    .max()
                    .unwrap_or(7)
            })
            .collect();
        if !v.quiet {
            crate::render::print_process_line(&mut buf, &snap.info)?;
            write!(buf, "Address         ")?;
            for (c, w) in self.columns.iter().zip(&widths) {
                write!(buf, " {c:>w$}")?;
            }
            writeln!(buf, " Mode  Mapping")?;
        }
        for r in &self.rows {
            write!(buf, "{:016x}", r.start)?;
            for (c, w) in r.cells.iter().zip(&widths) {
                write!(buf, " {:>w$}", text(c))?;
            }
            writeln!(buf, " {} {}", r.mode, r.mapping)?;
        }
        if !v.quiet {
            write!(buf, "----------------")?;
            for w in &widths {
                write!(buf, " {}", "-".repeat(*w))?;
            }
            writeln!(buf)?;
            write!(buf, "total kB        ")?;
            for (t, w) in self.totals.iter().zip(&widths) {
                match t {
                    Some(t) => write!(buf, " {t:>w$}")?,
                    None => write!(buf, " {:>w$}", "")?,
                }
            }
            writeln!(buf)?;
            if v.reserved {
                let kb: u64 = self
                    .rows
                    .iter()
                    .map(|r| match r.cells[0] {
                        Cell::Num(n) => n,
                        _ => 0,
                    })
                    .sum();
                writeln!(buf, "reserved: {kb}K in {} regions", self.rows.len())?;
            }
        }
        out.write_all(&buf)
    }
}

/// What a `PROT_NONE` region is, as far as its neighbours tell.
fn reserved_kind(r: &crate::map::region::Region, label: Option<&Vec<u8>>) -> String {
    match label.map(Vec::as_slice) {
        Some(l) if l.starts_with(b"[ stack guard") => "stack guard".into(),
        Some(b"[ malloc arena reserve ]") => "arena reserve".into(),
        _ if !r.name.is_empty() && r.name.starts_with(b"/") => "file guard".into(),
        _ if r.size() <= 64 * 1024 => "guard".into(),
        _ => "reservation".into(),
    }
}
