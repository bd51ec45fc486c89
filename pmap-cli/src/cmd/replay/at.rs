//! `pmap replay FILE --at WHEN`: the table of each traced process at that
//! moment, as `pmap PID` printed it then: from the last checkpoint before
//! it, the records up to it.

use std::io::{self, Write};

use super::print::Outcome;
use crate::{
    cmd::trace::output::Printer,
    cmd::trace::record::{
        format::{Record, World},
        reader::{Recording, Stop},
    },
    map::region::Region,
    render::{self, Options},
};

/// A JSON table has no text body.
type NoBody = fn(&mut dyn Write, &[Region]) -> io::Result<()>;

/// The world at `t` (CLOCK_MONOTONIC ns); the error says why it is not
/// known.
pub fn world_at(rec: &Recording, t: u64) -> Result<World, String> {
    let h = &rec.header;
    let rel = |ns: u64| format!("+{:.6}s", ns.saturating_sub(h.start_ns) as f64 / 1e9);
    let Some(from) = rec.checkpoint_before(t).map_err(|s| s.to_string())? else {
        return Err(format!(
            "at {} the trace had not read the map yet: give a later time (`pmap replay --info \
             FILE` shows when the first map was read)",
            rel(t)
        ));
    };
    let mut world = World::default();
    let mut last = 0;
    for r in rec.records_from(from) {
        match r {
            Ok(Record::End { t: end }) if t > end => {
                return Err(format!(
                    "{} is after the trace ended ({}): the map then is not in the recording; give \
                     a time up to the end",
                    rel(t),
                    rel(end)
                ));
            }
            Ok(r) => {
                let rt = r.time().unwrap_or(0);
                if rt > t && !r.settles() {
                    return Ok(world);
                }
                last = rt;
                world.apply(&r);
            }
            Err(s @ Stop::Damaged { .. }) => return Err(s.to_string()),
            Err(s) => {
                return Err(format!(
                    "{} is after the recording's last record ({}): {s}; the map then is not known, \
                     give a time up to the last record",
                    rel(t),
                    rel(last)
                ));
            }
        }
    }
    Ok(world)
}

pub fn main(
    rec: &Recording,
    when: &str,
    pid: Option<u32>,
    opts: &Options,
    json: bool,
) -> io::Result<Outcome> {
    let t = super::when::parse(when, &rec.header).map_err(io::Error::other)?;
    let world = world_at(rec, t).map_err(io::Error::other)?;
    let live: Vec<(u32, &crate::cmd::trace::record::format::Proc)> = world
        .procs
        .iter()
        .filter(|(p, s)| !s.exited && pid.is_none_or(|want| **p == want))
        .map(|(p, s)| (*p, s))
        .collect();
    if live.is_empty() {
        return Err(io::Error::other(match pid {
            Some(p) if world.procs.contains_key(&p) => {
                format!("process {p} had exited by {when}")
            }
            Some(p) => format!("process {p} is not in the recording at {when}"),
            None => format!("every traced process had exited by {when}"),
        }));
    }
    let mut out = io::BufWriter::new(io::stdout().lock());
    if json {
        let mut p = Printer::new(&mut out, true, rec.header.start_ns, rec.header.polled);
        for (pid, s) in &live {
            let rows: Vec<Region> = s.regions.values().cloned().collect();
            p.table((*pid, s.ppid, 0), t, "at", &rows, None::<NoBody>)?;
        }
        p.flush()?;
        return Ok(Outcome::Complete);
    }
    for (pid, s) in &live {
        let Some(info) = &s.info else {
            return Err(io::Error::other(format!(
                "process {pid}: the recording has no table header for it (it could not be read \
                 when traced)"
            )));
        };
        let rows: Vec<Region> = s.regions.values().cloned().collect();
        render::print_maps_table(&mut out, opts, info, &rows)?;
    }
    out.flush()?;
    Ok(Outcome::Complete)
}
