//! Mapped memory by category over time (for the HTML report), kept up to
//! date from each delta's removed and added rows, not by rescanning.

use crate::map::{model::RegionModel, region::Region};

pub const CATEGORIES: [&str; 7] = [
    "heap",
    "anon rw",
    "anon exec (JIT)",
    "reserved (PROT_NONE)",
    "stack",
    "file",
    "shared",
];
const N: usize = CATEGORIES.len();
/// Samples kept; when full, every second one is dropped.
const MAX_SAMPLES: usize = 4000;

pub fn category(r: &Region) -> usize {
    let p = r.perms;
    if r.name == b"[heap]" {
        0
    } else if r.name == b"[stack]" {
        4
    } else if p.shared() {
        6
    } else if r.inode != 0 {
        5
    } else if &p.0[..3] == b"---" {
        3
    } else if p.executable() {
        2
    } else {
        1
    }
}

#[derive(Clone, Debug)]
pub struct Sample {
    pub t_ns: u64,
    pub bytes: [u64; N],
    pub rss: Option<u64>,
}

#[derive(Debug, Default)]
pub struct Timeline {
    now: Option<[u64; N]>,
    pub samples: Vec<Sample>,
    /// (t_ns, kind, label): flips, exec, large maps, churn patterns.
    pub marks: Vec<(u64, &'static str, String)>,
}

impl Timeline {
    /// Brings the totals up to date with a change already in `model`.
    pub fn update(&mut self, model: &RegionModel, removed: &[Region], added: &[Region]) {
        match &mut self.now {
            None => {
                let mut b = [0u64; N];
                for r in model.regions() {
                    b[category(r)] += r.size();
                }
                self.now = Some(b);
            }
            Some(b) => {
                for r in removed {
                    let c = category(r);
                    b[c] = b[c].saturating_sub(r.size());
                }
                for r in added {
                    b[category(r)] += r.size();
                }
            }
        }
    }

    pub fn sample(&mut self, t_ns: u64, rss: Option<u64>) {
        let Some(bytes) = self.now else { return };
        if let Some(last) = self.samples.last_mut()
            && last.t_ns + 1_000_000 > t_ns
            && rss.is_none()
        {
            // Same millisecond: keep the latest state.
            last.bytes = bytes;
            return;
        }
        if self.samples.len() >= MAX_SAMPLES {
            let mut i = 0;
            self.samples.retain(|_| {
                i += 1;
                i % 2 == 1
            });
        }
        self.samples.push(Sample { t_ns, bytes, rss });
    }

    pub fn mark(&mut self, t_ns: u64, kind: &'static str, label: String) {
        if self.marks.len() < 2000 {
            self.marks.push((t_ns, kind, label));
        }
    }
}
