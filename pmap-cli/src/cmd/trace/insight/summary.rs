//! The insight sections of the summary (text and JSON), and provenance
//! lines after tables.

use std::{collections::BTreeMap, io, io::Write, time::Duration};

use serde_json::{Value, json};

use super::{
    Proc,
    alloc::{AllocStats, class_label, human},
    regions::{RegionTable, Stamp},
    structures,
};
use crate::{cmd::trace::syscalls::Call, map::model::RegionModel};

/// The name of the region holding `addr`, as tables show it.
fn region_name(model: &RegionModel, addr: u64) -> Option<String> {
    model.containing(addr).map(|r| {
        if r.name.is_empty() {
            "[ anon ]".to_string()
        } else {
            String::from_utf8_lossy(&r.name).into_owned()
        }
    })
}

fn secs(ns: u64) -> String {
    format!("+{:.3}s", ns as f64 / 1e9)
}

fn stamp(s: &Stamp) -> String {
    let mut out = format!("{} tid {} {}", secs(s.t_ns), s.tid, s.what);
    if let Some(site) = &s.site {
        out.push_str(&format!(" at {site}"));
    }
    out
}

/// `--provenance`: who created and last changed each region made or
/// changed while traced (regions untouched since the start are left out).
pub fn provenance(model: &RegionModel, table: &RegionTable) -> Vec<String> {
    let mut out = Vec::new();
    let mut untouched = 0;
    for r in model.regions() {
        let Some(i) = table
            .get(r.start)
            .filter(|i| i.created.is_some() || i.changed.is_some())
        else {
            untouched += 1;
            continue;
        };
        let created = i
            .created
            .as_ref()
            .map_or("before the trace".to_string(), stamp);
        let mut line = format!(
            "provenance {:016x} {:>7}K {} created {created}",
            r.start,
            r.size() / 1024,
            r.perms.as_str()
        );
        if let Some(c) = &i.changed {
            line.push_str(&format!("; changed {}", stamp(c)));
        }
        out.push(line);
    }
    out.push(format!(
        "provenance: {untouched} region(s) unchanged since the trace started"
    ));
    out
}

/// `madvise 90, 3 changed the map (12K)`, per syscall, most calls first
/// (the order of the tracer's `calls:` line): every traced call, from
/// the tracer's counts, and those of them that changed the map, with the
/// bytes they covered, from the deltas insight saw.
fn calls_line(calls: &BTreeMap<Call, (u64, u64)>, a: &AllocStats) -> String {
    let mut all: Vec<(&'static str, u64)> =
        calls.iter().map(|(c, (n, _))| (c.name(), *n)).collect();
    // A call insight saw that the tracer did not count (none should be).
    for (name, c) in &a.by_call {
        if !all.iter().any(|(n, _)| n == name) {
            all.push((name, c.calls));
        }
    }
    all.sort_by(|x, y| y.1.cmp(&x.1).then(x.0.cmp(y.0)));
    if all.is_empty() {
        return "none".into();
    }
    all.iter()
        .map(|(name, n)| {
            let c = a.by_call.get(name).copied().unwrap_or_default();
            format!(
                "{name} {n}, {} changed the map ({})",
                c.calls,
                human(c.bytes)
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

pub fn text(
    p: &Proc,
    model: &RegionModel,
    calls: &BTreeMap<Call, (u64, u64)>,
    now_ns: u64,
    stacks: bool,
    cost: (Duration, u64, usize),
    out: &mut dyn Write,
) -> io::Result<()> {
    let a = &p.alloc;
    writeln!(out, "--- insight pid {} ---", p.pid)?;

    // W^X.
    let findings = p.wx.findings(now_ns, &|a| region_name(model, a));
    writeln!(
        out,
        "W^X: {} W->X flips, {} X->W flips, {} times a region became writable+executable; {} regions rwx now",
        p.wx.flips_w_to_x,
        p.wx.flips_x_to_w,
        p.wx.rwx_events,
        p.wx.rwx_now()
    )?;
    for f in findings.iter().take(10) {
        writeln!(
            out,
            "  {:016x}-{:016x} {}{}: {} flips, {:.3}s rwx{}",
            f.start,
            f.end,
            f.perms,
            if f.name.is_empty() {
                String::new()
            } else {
                format!(" {}", f.name)
            },
            f.flips,
            f.rwx_ns as f64 / 1e9,
            f.gone
                .map_or(String::new(), |t| format!(" (unmapped at {})", secs(t)))
        )?;
    }
    if findings.len() > 10 {
        writeln!(out, "  ... {} more regions", findings.len() - 10)?;
    }
    for file in &p.wx.dual_files {
        writeln!(out, "  file mapped shared-writable and executable: {file}")?;
    }

    // Calls and bytes.
    writeln!(out, "allocator calls: {}", calls_line(calls, a))?;
    if !a.classes.is_empty() {
        writeln!(out, "mmap sizes:")?;
        let max = a
            .classes
            .values()
            .map(|c| c.calls)
            .max()
            .unwrap_or(1)
            .max(1);
        for (&i, c) in &a.classes {
            let bar = "#".repeat(((c.calls * 40).div_ceil(max)) as usize);
            writeln!(
                out,
                "  <= {:>6} {:>8} calls {:>8}  {bar}",
                class_label(i),
                c.calls,
                human(c.bytes)
            )?;
        }
    }

    // Churn.
    writeln!(
        out,
        "churn: {} mappings unmapped within {}s of being mapped ({})",
        a.churn,
        super::alloc::CHURN_NS / 1_000_000_000,
        human(a.churn_bytes)
    )?;
    for (len, n) in a.patterns().iter().take(5) {
        writeln!(out, "  {} mapped and unmapped {n} times", human(*len))?;
        if let Some(h) = AllocStats::hint(*len) {
            writeln!(out, "  hint: {h}")?;
        }
    }

    // Heap, peaks.
    match (a.brk.first(), a.brk.last()) {
        (Some(first), Some(last)) => {
            let max = a.brk.iter().map(|b| b.1).max().unwrap_or(0);
            let step = (a.brk.len() / 8).max(1);
            let points: Vec<String> = a
                .brk
                .iter()
                .step_by(step)
                .map(|&(t, h)| format!("{} {}", secs(t), human(h)))
                .collect();
            writeln!(
                out,
                "heap (brk): {} -> {} (max {}) over {} changes: {}",
                human(first.1),
                human(last.1),
                human(max),
                a.brk.len(),
                points.join(", ")
            )?;
        }
        _ => writeln!(out, "heap (brk): no change")?,
    }
    writeln!(
        out,
        "peak mapped {} at {}; peak resident (sampled) {}",
        human(a.peak_mapped.1.max(model.mapped())),
        secs(a.peak_mapped.0),
        human(a.peak_rss_kib * 1024)
    )?;
    writeln!(out, "{}", structures::fragmentation(model).line())?;

    // Call sites.
    if stacks {
        for (title, by_bytes) in [("by bytes", true), ("by calls", false)] {
            let top = a.top_sites(by_bytes, 5);
            if top.is_empty() {
                continue;
            }
            writeln!(out, "top call sites {title}:")?;
            for (s, c) in top {
                writeln!(out, "  {:>8} {:>6} calls  {s}", human(c.bytes), c.calls)?;
            }
        }
    }

    // Structures.
    let found = structures::recognise(model, &p.regions, &p.threads);
    if found.is_empty() {
        writeln!(out, "recognised structures: none")?;
    } else {
        writeln!(out, "recognised structures:")?;
        let mut shown = std::collections::BTreeMap::<&str, usize>::new();
        for s in &found {
            let n = shown.entry(s.kind).or_default();
            *n += 1;
            if *n <= 8 {
                writeln!(
                    out,
                    "  {:<18} {:016x}-{:016x} {}",
                    s.kind, s.start, s.end, s.detail
                )?;
            }
        }
        for (kind, n) in shown.iter().filter(|(_, n)| **n > 8) {
            writeln!(out, "  ... {} {kind}s in all", n)?;
        }
    }

    if p.jit.seen > 0 {
        writeln!(
            out,
            "JIT: {}: {} functions read, {} dropped (unmapped or reused)",
            p.jit.sources(),
            p.jit.seen,
            p.jit.dropped
        )?;
    }
    if stacks {
        writeln!(
            out,
            "symbolization: {} lookups, {} distinct addresses, {:.1} ms",
            cost.1,
            cost.2,
            cost.0.as_secs_f64() * 1e3
        )?;
    }
    writeln!(out, "--- end insight ---")
}

pub fn json(
    p: &Proc,
    model: &RegionModel,
    calls: &BTreeMap<Call, (u64, u64)>,
    now_ns: u64,
) -> Value {
    let findings = p.wx.findings(now_ns, &|a| region_name(model, a));
    let totals: BTreeMap<&'static str, u64> =
        calls.iter().map(|(c, (n, _))| (c.name(), *n)).collect();
    json!({
        "wx": p.wx.json(&findings),
        "alloc": p.alloc.json(&totals),
        "fragmentation": structures::fragmentation(model).json(),
        "structures": structures::json(&structures::recognise(model, &p.regions, &p.threads)),
        "jit": {"perf_map_functions": p.jit.seen, "dropped": p.jit.dropped},
    })
}
