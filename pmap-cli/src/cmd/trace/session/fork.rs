//! A process followed from its fork (`-f`): its model as a copy of its
//! parent's, and the regions a fork does not copy.

use std::rc::Rc;

use super::{Session, open_view};
use crate::{
    cmd::trace::delta::Stats, map::ranges::RangeSet, map::region::Region, source::pid_dir::PidDir,
};

/// `pid`'s id in its own PID namespace, if that is not `pid`.
pub(super) fn own_ns_pid(dir: &PidDir, pid: u32) -> u32 {
    match crate::source::process::ns_pids(dir).last() {
        Some(&own) if own != pid => own,
        _ => 0,
    }
}

/// Adds the regions of `smaps` whose `VmFlags` has `dc` (VM_DONTCOPY).
pub(super) fn no_fork_in_smaps(smaps: &[u8], set: &mut RangeSet) {
    let mut range = None;
    for line in smaps.split(|&b| b == b'\n') {
        if let Some(flags) = line.strip_prefix(b"VmFlags:") {
            if let Some((lo, hi)) = range.take()
                && flags.split(|b| b.is_ascii_whitespace()).any(|f| f == b"dc")
            {
                set.insert(lo, hi);
            }
        } else if line.first().is_some_and(u8::is_ascii_hexdigit)
            && let Ok(r) = crate::source::maps::parse_line(line)
        {
            range = Some((r.start, r.end));
        }
    }
}

impl Session {
    /// A process forked by `parent` (followed with `-f`), at CLOCK_MONOTONIC
    /// `fork_ns`. Its map starts as a copy of its parent's, as the kernel
    /// made it: only the child's own calls change it from there. No table
    /// is read: the child may have run, and changed its map, by now.
    pub fn forked(parent: &Session, pid: u32, fork_ns: u64) -> Session {
        // What the kernel's dup_mmap copies: every region but those marked
        // VM_DONTCOPY (whole regions: the flag is per region).
        let mut model = parent.model.clone();
        for (lo, hi) in parent.no_fork.iter().flat_map(RangeSet::iter) {
            let keep: Vec<Region> = model
                .within(lo, hi)
                .filter(|r| r.start < lo || r.end > hi)
                .cloned()
                .collect();
            model.replace(lo, hi, keep);
        }
        let mut s = Session {
            pid,
            ppid: parent.pid,
            ns_pid: 0,
            dir: None,
            view: None,
            model,
            gate: parent.gate.clone(),
            start_time: 0,
            start_brk: parent.start_brk,
            start_stack: parent.start_stack,
            brk: parent.brk,
            seeded_ns: fork_ns,
            file_names: Rc::clone(&parent.file_names),
            stats: Stats {
                peak_mapped: parent.model.mapped(),
                peak_regions: parent.model.len(),
                ..Stats::default()
            },
            exited: false,
            unconfirmed: Vec::new(),
            // Rows the parent holds from its arguments or from reads since
            // calls still in flight are as uncertain in the copy.
            dirty: parent.dirty.clone(),
            // None of its regions came from a VM_DONTCOPY one.
            no_fork: parent.no_fork.as_ref().map(|_| RangeSet::default()),
            uncertain: parent.uncertain.clone(),
            exec_parts: Default::default(),
            exec_captured: false,
        };
        s.open_dir();
        s
    }

    /// Keeps track of the regions a fork does not copy, from now on (see
    /// `no_fork`): for a process whose forks are followed.
    pub fn track_no_fork(&mut self) {
        let mut set = RangeSet::default();
        if let Ok(smaps) = self.proc_dir().and_then(|d| d.read("smaps")) {
            no_fork_in_smaps(&smaps, &mut set);
        }
        self.no_fork = Some(set);
    }

    /// Opens the `/proc` directory of a followed child if it is not open
    /// yet: at its fork record it may not be there (or no longer). Taken
    /// only if the process there is a child of the parent it was forked
    /// by, so that an id reused since is not taken for it.
    pub(super) fn open_dir(&mut self) {
        if self.dir.is_some() {
            return;
        }
        let Ok(dir) = PidDir::open(self.pid) else {
            return;
        };
        let Ok(st) = dir.stat() else {
            return;
        };
        // Its parent, or init if the parent exited since (a subreaper
        // adopting it is not recognised: its calls are still exact, its
        // tables and fallbacks are not read).
        if st.ppid != self.ppid && st.ppid != 1 {
            return;
        }
        self.view = open_view(&dir).ok();
        self.ns_pid = own_ns_pid(&dir, self.pid);
        self.start_time = st.start_time;
        self.dir = Some(dir);
    }
}
