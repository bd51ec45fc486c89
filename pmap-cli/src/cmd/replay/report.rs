//! `pmap replay FILE --report out.html`: the HTML report `pmap trace
//! --report` writes, built from a recording. Its records go through the
//! trace's own insight in the order the trace handled them, each delta
//! with its stack as the trace named it, so the call sites are the live
//! report's. Resident memory is not recorded: the timeline has no resident
//! line.

use std::{collections::HashMap, io, path::Path};

use super::print::{Outcome, stopped};
use crate::{
    cmd::trace::{
        insight::Insight,
        record::{format::Record, reader::Recording},
    },
    map::model::RegionModel,
};

pub fn main(rec: &Recording, path: &Path) -> io::Result<Outcome> {
    let mut insight = Insight::replaying(path.to_path_buf(), rec.header.start_ns);
    // Each process's rows as the insight saw them: after each delta.
    let mut models: HashMap<u32, RegionModel> = HashMap::new();
    let mut outcome = Outcome::Complete;
    for r in rec.records() {
        let r = match r {
            Ok(r) => r,
            Err(stop) => {
                outcome = stopped(stop)?;
                break;
            }
        };
        if let Some(t) = r.time() {
            insight.replay_at(t);
        }
        match r {
            // Not printed, so not seen by the live insight: only the rows.
            Record::Checkpoint { procs, .. } => {
                for p in procs {
                    models.insert(p.pid, RegionModel::new(p.regions));
                }
            }
            Record::Table { proc, .. } => {
                let model = RegionModel::new(proc.regions);
                insight.after_table(proc.pid, &model);
                models.insert(proc.pid, model);
            }
            Record::Delta { delta, notes, .. } => {
                let model = models.entry(delta.pid).or_default();
                model.apply(&delta.change);
                insight.observe_recorded(&delta, model, notes.stack);
            }
            Record::Fork { ppid, child, .. } => {
                let copy = models.get(&ppid).cloned().unwrap_or_default();
                models.insert(child, copy);
            }
            _ => {}
        }
    }
    insight
        .write_report()
        .map_err(|e| io::Error::other(format!("{e:#}")))?;
    eprintln!("pmap replay: report written to {}", path.display());
    Ok(outcome)
}
