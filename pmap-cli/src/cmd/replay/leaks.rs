//! `pmap replay FILE --leaks [--at WHEN] [--folded]`: the address space
//! mapped by a traced call during the recording and still mapped at its
//! end (or at WHEN), grouped by the call site that mapped it, largest
//! first. Bytes are followed, not rows: a region merged with or split from
//! others keeps each byte's creator; unmapped bytes are forgotten.

use std::{
    collections::{BTreeMap, HashMap},
    io::{self, Write},
    rc::Rc,
};

use super::print::{Outcome, stopped};
use crate::{
    cmd::trace::record::{
        format::{Record, World},
        reader::Recording,
    },
    cmd::trace::{
        delta::{Cause, Delta},
        insight::{StackNamer, StackNote},
    },
    map::model::RegionModel,
    map::region::Region,
};

/// Who mapped some bytes.
#[derive(Debug, PartialEq, Eq, Hash)]
struct Site {
    /// The call site (`function+0xoff [module]`), or the call without a
    /// stack.
    name: Rc<str>,
    /// Every frame, innermost first (empty without `--stacks`).
    frames: Vec<Rc<str>>,
}

/// Address ranges and who mapped them: start -> (end, site).
type Origins = BTreeMap<u64, (u64, Rc<Site>)>;

/// Forgets who mapped `[lo, hi)`.
fn forget(o: &mut Origins, lo: u64, hi: u64) {
    let keys: Vec<u64> = o
        .range(..hi)
        .rev()
        .take_while(|(_, (end, _))| *end > lo)
        .map(|(k, _)| *k)
        .collect();
    for k in keys {
        let Some((end, site)) = o.remove(&k) else {
            continue;
        };
        if k < lo {
            o.insert(k, (lo, site.clone()));
        }
        if end > hi {
            o.insert(hi, (end, site));
        }
    }
}

/// `a` less what `b` covers, as ranges (both sorted, disjoint).
fn minus(a: &[Region], b: &[Region]) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    for r in a {
        let mut lo = r.start;
        for s in b.iter().filter(|s| s.end > r.start && s.start < r.end) {
            if s.start > lo {
                out.push((lo, s.start));
            }
            lo = lo.max(s.end);
        }
        if lo < r.end {
            out.push((lo, r.end));
        }
    }
    out
}

#[derive(Default)]
pub struct Tracker {
    origins: HashMap<u32, Origins>,
    namer: Option<StackNamer>,
    /// Sites by raw stack: most calls come from a few places.
    sites: HashMap<(u32, &'static str, Vec<u64>), Rc<Site>>,
}

impl Tracker {
    /// Who made `d`: its call site and frames as the trace named them
    /// (format version 2, `--stacks`), else named now from the files on
    /// disk (frames the trace did not show, or an older recording).
    fn site(&mut self, d: &Delta, recorded: Option<&StackNote>, world: &World) -> Option<Rc<Site>> {
        let Cause::Syscall(call, ev) = &d.cause else {
            return None;
        };
        let words = ev.stack[..(ev.stack_len as usize).min(ev.stack.len())].to_vec();
        let key = (d.pid, call.name(), words);
        if let Some(s) = self.sites.get(&key) {
            return Some(s.clone());
        }
        let complete = recorded.filter(|s| s.hidden == 0 && s.site.is_some());
        let named = if let Some(s) = complete {
            Some((
                s.site.clone(),
                s.frames.iter().map(|(_, n)| n.clone()).collect(),
            ))
        } else if ev.stack_len > 0 {
            let rows = world
                .procs
                .get(&d.pid)
                .map(|p| p.regions.values().cloned().collect())
                .unwrap_or_default();
            let namer = self.namer.get_or_insert_with(StackNamer::default);
            namer.name(d.pid, ev, &RegionModel::new(rows))
        } else {
            None
        };
        let site = Rc::new(match named {
            Some((site, frames)) => Site {
                name: recorded
                    .and_then(|s| s.site.clone())
                    .or(site)
                    .unwrap_or_else(|| format!("{} (stack not readable)", call.name()).into()),
                frames,
            },
            None => Site {
                name: format!("{} (no stack: record with --stacks)", call.name()).into(),
                frames: Vec::new(),
            },
        });
        self.sites.insert(key, site.clone());
        Some(site)
    }

    /// Before `d` (with its stack as the trace named it) is applied to
    /// `world`.
    fn delta(&mut self, d: &Delta, named: Option<&StackNote>, world: &World) {
        let (removed, added) = (&d.change.removed, &d.change.added);
        let gone = minus(removed, added);
        let new = minus(added, removed);
        if gone.is_empty() && new.is_empty() {
            return;
        }
        let site = if new.is_empty() {
            None
        } else {
            self.site(d, named, world)
        };
        let o = self.origins.entry(d.pid).or_default();
        for (lo, hi) in gone {
            forget(o, lo, hi);
        }
        if let Some(site) = site {
            for (lo, hi) in new {
                forget(o, lo, hi);
                o.insert(lo, (hi, site.clone()));
            }
        }
    }
}

impl Tracker {
    /// Who mapped the bytes of `[lo, hi)` of `pid` (those a traced call
    /// mapped): call sites and their bytes, in address order of first use.
    pub fn sites_in(&self, pid: u32, lo: u64, hi: u64) -> Vec<(Rc<str>, u64)> {
        let mut out: Vec<(Rc<str>, u64)> = Vec::new();
        let Some(o) = self.origins.get(&pid) else {
            return out;
        };
        let first = o
            .range(..=lo)
            .next_back()
            .filter(|(_, (end, _))| *end > lo)
            .map_or(lo, |(k, _)| *k);
        for (start, (end, site)) in o.range(first..hi) {
            let bytes = (*end).min(hi) - (*start).max(lo);
            match out.iter_mut().find(|(n, _)| *n == site.name) {
                Some(e) => e.1 += bytes,
                None => out.push((site.name.clone(), bytes)),
            }
        }
        out
    }
}

/// The records up to `until` (CLOCK_MONOTONIC ns) applied: the world, who
/// mapped what, how reading ended and the last record's time.
pub fn walk(rec: &Recording, until: u64) -> io::Result<(World, Tracker, Outcome, u64)> {
    let mut world = World::default();
    let mut t = Tracker::default();
    let mut outcome = Outcome::Complete;
    let mut last = rec.header.start_ns;
    for r in rec.records() {
        let r = match r {
            Ok(r) => r,
            Err(stop) => {
                outcome = stopped(stop)?;
                break;
            }
        };
        let rt = r.time().unwrap_or(0);
        if rt > until && !r.settles() {
            break;
        }
        last = last.max(rt);
        match &r {
            Record::Delta { delta, notes, .. } => t.delta(delta, notes.stack.as_deref(), &world),
            Record::Fork { ppid, child, .. } => {
                let copy = t.origins.get(ppid).cloned().unwrap_or_default();
                t.origins.insert(*child, copy);
            }
            // A new program: nothing of the old one is mapped.
            Record::Exec { pid, .. } => {
                t.origins.remove(pid);
            }
            _ => {}
        }
        world.apply(&r);
    }
    Ok((world, t, outcome, last))
}

pub fn main(
    rec: &Recording,
    at: Option<&str>,
    folded: bool,
    pid: Option<u32>,
) -> io::Result<Outcome> {
    let until = match at {
        Some(w) => super::when::parse(w, &rec.header).map_err(io::Error::other)?,
        None => u64::MAX,
    };
    let (world, t, outcome, last) = walk(rec, until)?;
    let mut out = io::BufWriter::new(io::stdout().lock());
    let secs = last.saturating_sub(rec.header.start_ns) as f64 / 1e9;
    for (p, proc) in &world.procs {
        if pid.is_some_and(|want| want != *p) {
            continue;
        }
        let Some(o) = t.origins.get(p) else {
            continue;
        };
        // Bytes and rows still mapped, by site.
        let mut by_site: HashMap<Rc<Site>, (u64, u64)> = HashMap::new();
        for r in proc.regions.values() {
            let mut seen: Vec<&Rc<Site>> = Vec::new();
            for (lo, (hi, site)) in o
                .range(..r.end)
                .rev()
                .take_while(|(_, (e, _))| *e > r.start)
            {
                let bytes = (*hi).min(r.end) - (*lo).max(r.start);
                let e = by_site.entry(site.clone()).or_default();
                e.0 += bytes;
                if !seen.contains(&site) {
                    seen.push(site);
                    e.1 += 1;
                }
            }
        }
        let mut sites: Vec<(Rc<Site>, (u64, u64))> = by_site.into_iter().collect();
        sites.sort_by(|a, b| b.1.0.cmp(&a.1.0).then(a.0.name.cmp(&b.0.name)));
        if folded {
            for (site, (bytes, _)) in &sites {
                let mut frames: Vec<&str> = site.frames.iter().rev().map(|f| &**f).collect();
                if frames.is_empty() {
                    frames.push(&site.name);
                }
                // `;` separates frames in the folded format.
                let line: Vec<String> = frames.iter().map(|f| f.replace(';', ",")).collect();
                writeln!(out, "{} {bytes}", line.join(";"))?;
            }
            continue;
        }
        let total: u64 = sites.iter().map(|(_, (b, _))| b).sum();
        let cmd = proc
            .info
            .as_ref()
            .map(|i| String::from_utf8_lossy(&i.cmdline).into_owned())
            .unwrap_or_default();
        writeln!(
            out,
            "pid {p} ({cmd}): {}K mapped during the recording and still mapped at +{secs:.3}s, \
             from {} call site{}",
            total / 1024,
            sites.len(),
            if sites.len() == 1 { "" } else { "s" }
        )?;
        for (site, (bytes, rows)) in &sites {
            let plural = if *rows == 1 { "region " } else { "regions" };
            writeln!(
                out,
                "  {:>9}K  {rows:>4} {plural}  {}",
                bytes / 1024,
                site.name
            )?;
        }
    }
    out.flush()?;
    Ok(outcome)
}
