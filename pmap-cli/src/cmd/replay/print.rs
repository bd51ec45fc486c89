//! The whole trace again, through the trace's printer (so the bytes are
//! the trace's), with this run's table format and focus filters.

use std::{
    borrow::Cow,
    collections::HashMap,
    io::{self, Write},
};

use crate::{
    cmd::trace::record::{
        format::{Record, SummaryInsight},
        reader::{Recording, Stop},
    },
    cmd::trace::{
        delta::{Delta, Stats},
        focus::Focus,
        output::Printer,
    },
    render::{self, Options},
};

/// How reading ended, when it was not damage (an error).
pub enum Outcome {
    Complete,
    /// Cut short (a killed tracer, a full disk): said on stderr.
    Short(String),
}

/// Damage is an error; a recording cut short is not (what it holds was
/// printed).
pub fn stopped(stop: Stop) -> io::Result<Outcome> {
    if stop.is_damage() {
        return Err(io::Error::other(stop.to_string()));
    }
    Ok(Outcome::Short(stop.to_string()))
}

/// The part of `d` in `opts.range` (as the tracer's `-A` shows it).
fn in_range<'d>(opts: &Options, d: &'d Delta) -> Option<Cow<'d, Delta>> {
    let r = opts.range;
    if r.low == 0 && r.high == u64::MAX {
        return Some(Cow::Borrowed(d));
    }
    let mut part = d.clone();
    part.change.removed.retain(|x| r.contains(x));
    part.change.added.retain(|x| r.contains(x));
    (!part.change.is_empty()).then_some(Cow::Owned(part))
}

pub fn replay(
    rec: &Recording,
    opts: &Options,
    focus: &Focus,
    as_json: bool,
) -> io::Result<Outcome> {
    let h = &rec.header;
    let stdout = io::stdout().lock();
    let mut p = Printer::new(
        io::BufWriter::with_capacity(256 * 1024, stdout),
        as_json,
        h.start_ns,
        h.polled,
    );
    let mut outcome = Outcome::Complete;
    // The last summary of each process, for a total.
    let mut last: HashMap<u32, (Stats, u64)> = HashMap::new();
    for r in rec.records() {
        let r = match r {
            Ok(r) => r,
            Err(stop) => {
                p.flush()?;
                outcome = stopped(stop)?;
                break;
            }
        };
        p.set_clock(r.time());
        match r {
            Record::Header(_) | Record::Checkpoint { .. } | Record::End { .. } => {}
            Record::Table {
                t,
                reason,
                proc,
                notes,
            } => {
                let render = proc.info.as_ref().map(|info| {
                    move |mut out: &mut dyn Write, rows: &[crate::map::region::Region]| {
                        render::print_maps_table(&mut out, opts, info, rows)
                    }
                });
                let who = (proc.pid, proc.ppid, proc.ns_pid);
                p.table(who, t, &reason, &proc.regions, render)?;
                p.notes(&notes)?;
            }
            Record::Delta { delta, notes, .. } => {
                if focus.admits(&delta)
                    && let Some(shown) = in_range(opts, &delta)
                {
                    p.delta(&shown, &notes)?;
                }
            }
            Record::Joined { pid, ppid, by, .. } => p.joined(pid, ppid, &by)?,
            Record::Exec { pid, .. } => p.exec(pid)?,
            Record::Fork {
                t,
                ppid,
                tid,
                child,
                regions,
            } => p.fork(ppid, tid, child, regions as usize, t)?,
            Record::Task {
                t,
                pid,
                tid,
                child,
                thread,
            } => p.task(pid, tid, child, thread, t)?,
            Record::ThreadSeen { pid, tid, .. } => p.thread_seen(pid, tid)?,
            Record::Exit { pid, ppid, .. } => p.exit(pid, ppid)?,
            Record::Lost { count, total, .. } => p.lost(count, total)?,
            Record::Summary {
                pid,
                ppid,
                lost,
                regions,
                stats,
                insight,
                ..
            } => {
                let SummaryInsight { ns_pid, json, text } = *insight;
                p.summary((pid, ppid, ns_pid), &stats, regions as usize, lost, json)?;
                if !as_json {
                    p.raw().write_all(&text)?;
                }
                last.insert(pid, (*stats, regions));
            }
            Record::Total { pids, lost, .. } => {
                let mut st = Stats::default();
                let mut regions = 0;
                for (s, n) in pids.iter().filter_map(|p| last.get(p)) {
                    st.add(s);
                    regions += n;
                }
                p.total(&pids, &st, regions as usize, lost)?;
            }
        }
    }
    p.flush()?;
    Ok(outcome)
}

/// `--info`: when the recording began and ended, what it holds.
pub fn info(rec: &Recording) -> io::Result<Outcome> {
    let h = &rec.header;
    let (mut records, mut deltas, mut checkpoints, mut last) = (0u64, 0u64, 0u64, h.start_ns);
    let mut first_map = None;
    let mut pids = std::collections::BTreeSet::new();
    let mut outcome = Outcome::Complete;
    for r in rec.records() {
        match r {
            Ok(r) => {
                records += 1;
                last = last.max(r.time().unwrap_or(0));
                match &r {
                    Record::Delta { delta, .. } => {
                        deltas += 1;
                        pids.insert(delta.pid);
                    }
                    Record::Checkpoint { procs, t } => {
                        first_map.get_or_insert(*t);
                        checkpoints += 1;
                        pids.extend(procs.iter().map(|p| p.pid));
                    }
                    _ => {}
                }
            }
            Err(stop) => {
                outcome = stopped(stop)?;
                break;
            }
        }
    }
    let mut out = io::stdout().lock();
    let secs = |ns: u64| ns as f64 / 1e9;
    writeln!(out, "command: {}", h.command)?;
    writeln!(
        out,
        "began: {} (@{}.{:09})",
        super::when::rfc3339(h.start_real_ns),
        h.start_real_ns / 1_000_000_000,
        h.start_real_ns % 1_000_000_000
    )?;
    // `--at` answers from the first map on (the probes load before it).
    if let Some(t) = first_map {
        writeln!(
            out,
            "first map: +{:.6}s",
            secs(t.saturating_sub(h.start_ns))
        )?;
    }
    writeln!(
        out,
        "last record: +{:.6}s",
        secs(last.saturating_sub(h.start_ns))
    )?;
    let list: Vec<String> = pids.iter().map(u32::to_string).collect();
    writeln!(out, "processes: {}", list.join(" "))?;
    writeln!(
        out,
        "records: {records} ({deltas} deltas, {checkpoints} checkpoints), {} bytes",
        rec.len()
    )?;
    writeln!(out, "format: version {}", rec.version)?;
    writeln!(
        out,
        "backend: {}; stacks: {}",
        if h.polled { "poll" } else { "ebpf" },
        if h.stacks { "yes" } else { "no" }
    )?;
    writeln!(
        out,
        "complete: {}",
        if matches!(outcome, Outcome::Complete) {
            "yes"
        } else {
            "no (cut short)"
        }
    )?;
    Ok(outcome)
}
