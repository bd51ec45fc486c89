//! One collection: which processes are selected, their gauges from /proc
//! (through `proc` and `--summary`'s classifier), their counters from the
//! kernel, and which get series of their own.
//!
//! Cardinality is bounded by `--top N`: the N processes with the most
//! mappings get per-process series; the others are summed into one series
//! with `pid="other"`. Its counters are kept monotonic here (each process's
//! increase since the previous collection is added), so `rate()` over it
//! stays meaningful as processes come, go and move in and out of the top.

use std::collections::HashMap;
use std::io;

use pmap_common::counters::{ProcCounters, SYSCALL_SLOTS};

use super::args::Selection;
use super::kernel::Counters;
use crate::map::region::Region;
use crate::source::{groups, maps::MapsReader, pid_dir::PidDir};
use crate::{
    cmd::common::roles,
    map::summary,
    source::{checked, process},
};

/// Bytes of one kind of memory (a `--summary` category, with each
/// library's name left out: `libc.so.6 (code)` counts as `code`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KindBytes {
    pub kind: String,
    pub size: u64,
    pub rss: u64,
}

/// What one process looks like now.
#[derive(Clone, Debug, Default)]
pub struct ProcSample {
    pub pid: u32,
    pub start_time: u64,
    pub comm: String,
    /// Its cgroup v2 path; empty if unknown (no unified hierarchy).
    pub cgroup: String,
    pub mappings: u64,
    /// Regions both writable and executable.
    pub rwx: u64,
    /// By kind; empty for processes outside the top N (needs smaps).
    pub kinds: Vec<KindBytes>,
    /// Its kernel counters; `None` without eBPF or before its first call.
    pub counters: Option<ProcCounters>,
}

/// The processes without series of their own, summed.
#[derive(Clone, Debug, Default)]
pub struct Other {
    pub processes: usize,
    pub mappings: u64,
    pub rwx: u64,
    /// Monotonic: see the module comment.
    pub counters: ProcCounters,
}

/// Everything one scrape shows.
#[derive(Clone, Debug, Default)]
pub struct Collection {
    pub max_map_count: u64,
    /// The top N, most mappings first.
    pub shown: Vec<ProcSample>,
    pub other: Other,
    /// Processes selected (shown and other).
    pub selected: usize,
    /// Selected processes whose maps could not be read (permissions).
    pub unreadable: usize,
    /// Kernel updates lost (eBPF only).
    pub lost: Option<u64>,
    /// Processes the kernel map holds now (eBPF only).
    pub kernel_entries: Option<usize>,
}

/// Collects, and keeps what the `other` counters need between collections.
pub struct Collector {
    selection: Selection,
    top: usize,
    /// Counters at the previous collection, by pid, with the start time
    /// that tells a reused pid apart. Holds live selected processes only.
    prev: HashMap<u32, (u64, ProcCounters)>,
    other: ProcCounters,
}

impl Collector {
    pub fn new(selection: Selection, top: usize) -> Collector {
        Collector {
            selection,
            top,
            prev: HashMap::new(),
            other: ProcCounters::default(),
        }
    }

    pub fn collect(&mut self, kernel: Option<&Counters>) -> Collection {
        let mut out = Collection {
            max_map_count: crate::source::system::max_map_count().unwrap_or(0),
            lost: kernel.map(Counters::lost),
            kernel_entries: kernel.map(Counters::entries),
            ..Collection::default()
        };
        let mut all = Vec::new();
        for pid in pids() {
            match self.sample(pid) {
                Ok(Some(mut s)) => {
                    s.counters = kernel.and_then(|k| k.get(pid));
                    all.push(s);
                }
                Ok(None) => {}
                Err(e) if e.kind() == io::ErrorKind::PermissionDenied => out.unreadable += 1,
                // Gone between listing and reading: not there any more.
                Err(_) => {}
            }
        }
        out.selected = all.len() + out.unreadable;
        all.sort_by(|a, b| b.mappings.cmp(&a.mappings).then(a.pid.cmp(&b.pid)));
        let rest = all.split_off(self.top.min(all.len()));
        let mut prev = HashMap::with_capacity(all.len() + rest.len());
        for s in &rest {
            out.other.processes += 1;
            out.other.mappings += s.mappings;
            out.other.rwx += s.rwx;
            if let Some(c) = s.counters {
                let before = match self.prev.get(&s.pid) {
                    Some((t, p)) if *t == s.start_time => *p,
                    _ => ProcCounters::default(),
                };
                add(&mut self.other, &increase(&c, &before));
            }
        }
        for s in all.iter().chain(&rest) {
            if let Some(c) = s.counters {
                prev.insert(s.pid, (s.start_time, c));
            }
        }
        self.prev = prev;
        out.other.counters = self.other;
        for s in &mut all {
            s.kinds = kinds(s.pid);
        }
        out.shown = all;
        out
    }

    /// Reads one process if it is selected; `Ok(None)` if not, or if it
    /// has no address space (kernel threads, zombies).
    fn sample(&self, pid: u32) -> io::Result<Option<ProcSample>> {
        let dir = PidDir::open(pid)?;
        let stat = dir.stat()?;
        if stat.kernel_thread || stat.is_dead() {
            return Ok(None);
        }
        let comm = String::from_utf8_lossy(dir.read("comm")?.trim_ascii_end()).into_owned();
        let cgroup = cgroup_of(&dir.read("cgroup").unwrap_or_default());
        if !selects(&self.selection, &comm, &cgroup) {
            return Ok(None);
        }
        let mut reader = MapsReader::new(dir.open_file("maps")?);
        let mut r = Region::default();
        let (mut mappings, mut rwx) = (0, 0);
        while reader.next_into(&mut r)? {
            mappings += 1;
            rwx += u64::from(r.perms.writable() && r.perms.executable());
        }
        if mappings == 0 {
            return Ok(None);
        }
        Ok(Some(ProcSample {
            pid,
            start_time: stat.start_time,
            comm,
            cgroup,
            mappings,
            rwx,
            kinds: Vec::new(),
            counters: None,
        }))
    }
}

/// Whether a process with this command name and cgroup is selected.
fn selects(selection: &Selection, comm: &str, cgroup: &str) -> bool {
    match selection {
        Selection::All => true,
        Selection::Comm(c) => c == comm,
        // The cgroup itself or one below it.
        Selection::Cgroup(g) => g.holds(cgroup),
    }
}

/// Mapped and resident bytes by kind, from smaps through `--summary`'s
/// classifier; empty if the process is gone or unreadable.
fn kinds(pid: u32) -> Vec<KindBytes> {
    let Ok(dir) = PidDir::open(pid) else {
        return Vec::new();
    };
    let Some(info) = process::fetch_in(&dir) else {
        return Vec::new();
    };
    // The one checked read of a map (see source::checked), classified as
    // `--summary` classifies it.
    let Ok(checked::Tried::Done(read)) = checked::read_entries(&dir, &info, true) else {
        return Vec::new();
    };
    let regions: Vec<&Region> = read.entries.iter().map(|e| &e.region).collect();
    let roles = roles::of_process(&dir, info.tgid, &regions);
    let mut out: Vec<KindBytes> = Vec::new();
    for row in summary::summarize(&read.entries, &roles) {
        let kind = kind_of(&row.category);
        let (size, rss) = (row.size * 1024, row.rss * 1024);
        match out.iter_mut().find(|k| k.kind == kind) {
            Some(k) => {
                k.size += size;
                k.rss += rss;
            }
            None => out.push(KindBytes {
                kind: kind.to_string(),
                size,
                rss,
            }),
        }
    }
    out.sort_by(|a, b| a.kind.cmp(&b.kind));
    out
}

/// A `--summary` category without the library's name, so the label's
/// values are a small fixed set: `libc.so.6 (code)` is `code`.
pub fn kind_of(category: &str) -> &str {
    for part in ["code", "rodata", "data"] {
        if let Some(head) = category.strip_suffix(')')
            && head.ends_with(&format!(" ({part}"))
        {
            return part;
        }
    }
    category
}

/// The cgroup v2 path in a /proc/PID/cgroup file ("0::/path").
fn cgroup_of(raw: &[u8]) -> String {
    groups::v2_path(&String::from_utf8_lossy(raw))
        .unwrap_or_default()
        .to_string()
}

fn pids() -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect()
}

/// What `now` counted since `before` (the kernel's counters only grow
/// while a process lives).
fn increase(now: &ProcCounters, before: &ProcCounters) -> ProcCounters {
    let mut d = ProcCounters::default();
    for i in 0..SYSCALL_SLOTS {
        d.syscalls[i] = now.syscalls[i].saturating_sub(before.syscalls[i]);
    }
    d.splits = now.splits.saturating_sub(before.splits);
    d.wx_flips = now.wx_flips.saturating_sub(before.wx_flips);
    d
}

fn add(sum: &mut ProcCounters, d: &ProcCounters) {
    for i in 0..SYSCALL_SLOTS {
        sum.syscalls[i] += d.syscalls[i];
    }
    sum.splits += d.splits;
    sum.wx_flips += d.wx_flips;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_leave_out_library_names() {
        assert_eq!(kind_of("libc.so.6 (code)"), "code");
        assert_eq!(kind_of("ld-linux-x86-64.so.2 (rodata)"), "rodata");
        assert_eq!(kind_of("x (data)"), "data");
        assert_eq!(kind_of("thread stacks"), "thread stacks");
        assert_eq!(kind_of("guard/reserved"), "guard/reserved");
    }

    #[test]
    fn cgroup_selects_itself_and_below() {
        let group = |path: &str| {
            Selection::Cgroup(groups::Cgroup {
                path: path.into(),
                id: 0,
                level: 0,
            })
        };
        let g = group("/system.slice/a.service");
        assert!(selects(&g, "x", "/system.slice/a.service"));
        assert!(selects(&g, "x", "/system.slice/a.service/worker"));
        assert!(!selects(&g, "x", "/system.slice/a.service2"));
        assert!(!selects(&g, "x", "/system.slice"));
        assert!(selects(&group("/"), "x", "/user.slice"));
        assert!(selects(&Selection::Comm("x".into()), "x", ""));
        assert!(!selects(&Selection::Comm("x".into()), "xy", ""));
    }

    #[test]
    fn cgroup_is_the_unified_path() {
        assert_eq!(
            cgroup_of(b"0::/system.slice/x.service\n"),
            "/system.slice/x.service"
        );
        assert_eq!(cgroup_of(b"1:name=systemd:/a\n"), "");
    }

    #[test]
    fn this_process_is_sampled() {
        let c = Collector::new(Selection::All, 1);
        let me = std::process::id();
        let s = c.sample(me).expect("reads").expect("selected");
        let lines = std::fs::read_to_string("/proc/self/maps")
            .expect("maps")
            .lines()
            .count();
        // Reading maps may itself map memory; close is enough here.
        assert!(
            s.mappings.abs_diff(lines as u64) <= 2,
            "{} vs {lines}",
            s.mappings
        );
    }
}
