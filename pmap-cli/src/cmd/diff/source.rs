//! The two sides of `pmap diff`: a moment of a recording (`FILE@WHEN`), a
//! live process (`PID`), a core file, or a saved `pmap --json` snapshot,
//! each read to the same shape.

use std::{path::Path, rc::Rc};

use crate::{
    cmd::replay::{leaks, when},
    cmd::trace::record::reader::Recording,
    map::region::{Perms, Region},
    source::core_file,
};

/// Call sites and their bytes in `[lo, hi)`.
pub type Creator = Box<dyn Fn(u64, u64) -> Vec<(Rc<str>, u64)>>;

/// One side: its regions (address order) and what else is known.
pub struct Side {
    /// How it is shown: `PID 4242`, `app.pmaprec@+2.5 (pid 4242)`, ...
    pub label: String,
    pub regions: Vec<Region>,
    /// RSS per region in KiB, when the source has it (a live process, a
    /// snapshot taken with -x/-X).
    pub rss_kb: Option<Vec<u64>>,
    /// Who mapped the bytes of a range, and how many each (a recording).
    pub creator: Option<Creator>,
    /// A core file: no device, inode or (mostly) shared flag recorded.
    pub core: bool,
}

/// Reads `spec`; the error says what it was taken for and why it failed.
pub fn read(spec: &str) -> Result<Side, String> {
    if let Ok(pid) = spec.parse::<u32>() {
        return live(pid);
    }
    if let Some((file, w)) = spec.rsplit_once('@')
        && Path::new(file).is_file()
    {
        return recording(file, w);
    }
    let path = Path::new(spec);
    let head = std::fs::read(path)
        .map(|b| b.into_iter().take(8).collect::<Vec<u8>>())
        .map_err(|e| {
            format!(
                "{spec}: cannot read it ({e}); give a PID, FILE@WHEN (a recording), a core \
                 file or a `pmap --json` snapshot"
            )
        })?;
    if head.starts_with(b"PMAPREC") {
        return Err(format!(
            "{spec} is a recording: say which moment, e.g. {spec}@+2.5 or {spec}@2026-12-06T10:00:00Z"
        ));
    }
    if head.starts_with(b"\x7fELF") {
        let core = core_file::read(path).map_err(|e| e.to_string())?;
        return Ok(Side {
            label: format!("core {spec} (pid {})", core.process.pid),
            regions: core.regions.into_iter().map(|r| r.region).collect(),
            rss_kb: None,
            creator: None,
            core: true,
        });
    }
    snapshot(spec)
}

fn live(pid: u32) -> Result<Side, String> {
    use crate::source::{checked, pid_dir::PidDir, process};
    let why = |e: std::io::Error| format!("process {pid}: cannot read its map ({e})");
    let dir = PidDir::open(pid).map_err(why)?;
    let info = process::fetch_in(&dir).ok_or_else(|| format!("process {pid}: no such process"))?;
    // The one checked read: a map that changed while it was read is read
    // again, not compared torn.
    let read = checked::read_entries(&dir, &info, true).map_err(why)?;
    let entries = match read {
        checked::Tried::Done(e) => e.entries,
        checked::Tried::Vanished => {
            return Err(format!("process {pid} exited while its map was read"));
        }
        checked::Tried::Unsettled => {
            return Err(format!(
                "process {pid}: its map changed (execve) at every attempt to read it; try again"
            ));
        }
    };
    let rss = entries
        .iter()
        .map(|e| e.field("Rss").unwrap_or(0))
        .collect();
    Ok(Side {
        label: format!("pid {pid} now"),
        regions: entries.into_iter().map(|e| e.region).collect(),
        rss_kb: Some(rss),
        creator: None,
        core: false,
    })
}

fn recording(file: &str, w: &str) -> Result<Side, String> {
    let rec = Recording::open(Path::new(file))?;
    let t = when::parse(w, &rec.header)?;
    let (world, tracker, _, _) = leaks::walk(&rec, t).map_err(|e| format!("{file}: {e}"))?;
    // The moment must be known (the same checks as `replay --at`).
    crate::cmd::replay::at::world_at(&rec, t).map_err(|e| format!("{file}: {e}"))?;
    let live: Vec<u32> = world
        .procs
        .iter()
        .filter(|(_, p)| !p.exited)
        .map(|(pid, _)| *pid)
        .collect();
    let pid = match live[..] {
        [pid] => pid,
        [] => return Err(format!("{file}@{w}: no traced process was alive then")),
        _ => {
            return Err(format!(
                "{file}@{w}: several processes were traced then ({live:?}); `pmap diff` compares \
                 one: record them separately, or use `pmap replay --at {w} --pid PID`"
            ));
        }
    };
    let regions = world.procs[&pid].regions.values().cloned().collect();
    Ok(Side {
        label: format!("{file}@{w} (pid {pid})"),
        regions,
        rss_kb: None,
        creator: Some(Box::new(move |lo, hi| tracker.sites_in(pid, lo, hi))),
        core: false,
    })
}

/// The first document of a `pmap --json` snapshot.
fn snapshot(spec: &str) -> Result<Side, String> {
    let text = std::fs::read_to_string(spec).map_err(|e| format!("{spec}: {e}"))?;
    let first = text.lines().next().unwrap_or("");
    let v: serde_json::Value = serde_json::from_str(first).map_err(|e| {
        format!(
            "{spec}: not a PID, a recording moment, a core file or a `pmap --json` snapshot \
             (its first line is not JSON: {e})"
        )
    })?;
    let bad = |what: &str| format!("{spec}: not a `pmap --json` snapshot ({what})");
    let list = v["regions"].as_array().ok_or_else(|| bad("no `regions`"))?;
    let hex = |x: &serde_json::Value| {
        x.as_str()
            .and_then(|s| s.strip_prefix("0x"))
            .and_then(|s| u64::from_str_radix(s, 16).ok())
    };
    let mut regions = Vec::with_capacity(list.len());
    let mut rss = Vec::with_capacity(list.len());
    for r in list {
        let (Some(start), Some(end)) = (hex(&r["address"]), hex(&r["end"])) else {
            return Err(bad("a region without `address` and `end`"));
        };
        let p = r["perms"].as_str().unwrap_or("----").as_bytes();
        let mut perms = [b'-'; 4];
        for (d, s) in perms.iter_mut().zip(p) {
            *d = *s;
        }
        let dev = r["device"].as_str().unwrap_or("00:00");
        let (maj, min) = dev.split_once(':').unwrap_or(("0", "0"));
        regions.push(Region {
            start,
            end,
            perms: Perms(perms),
            offset: hex(&r["offset"]).unwrap_or(0),
            dev_major: u32::from_str_radix(maj, 16).unwrap_or(0),
            dev_minor: u32::from_str_radix(min, 16).unwrap_or(0),
            inode: r["inode"].as_u64().unwrap_or(0),
            name: r["name"].as_str().unwrap_or("").as_bytes().to_vec(),
        });
        rss.push(r["fields"]["Rss"].as_u64());
    }
    regions.sort_by_key(|r| r.start);
    let pid = v["pid"].as_u64().unwrap_or(0);
    let rss_kb = rss
        .iter()
        .all(Option::is_some)
        .then(|| rss.into_iter().flatten().collect());
    Ok(Side {
        label: format!("snapshot {spec} (pid {pid})"),
        regions,
        rss_kb,
        creator: None,
        core: false,
    })
}
