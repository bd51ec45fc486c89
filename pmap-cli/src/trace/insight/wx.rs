//! W^X: regions writable and executable at once, flips between writable
//! and executable, and files mapped shared-writable and executable.

use serde_json::{Value, json};

use super::regions::{RegionInfo, RegionTable};
use crate::region::{Perms, Region};

/// Flips kept for regions that are gone, for the summary (the busiest).
const RETIRED_MAX: usize = 256;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flip {
    /// Was writable and not executable, now executable.
    WtoX,
    /// Was executable and not writable, now writable.
    XtoW,
}

impl Flip {
    pub fn label(self) -> &'static str {
        match self {
            Flip::WtoX => "W->X",
            Flip::XtoW => "X->W",
        }
    }
}

pub fn rwx(p: Perms) -> bool {
    p.writable() && p.executable()
}

pub fn flip(before: Perms, after: Perms) -> Option<Flip> {
    if before.writable() && !before.executable() && after.executable() {
        Some(Flip::WtoX)
    } else if before.executable() && !before.writable() && after.writable() {
        Some(Flip::XtoW)
    } else {
        None
    }
}

/// A region with a W^X history, for the summary.
#[derive(Clone, Debug)]
pub struct Finding {
    pub start: u64,
    pub end: u64,
    pub perms: String,
    pub name: String,
    pub flips: u32,
    pub rwx_ns: u64,
    /// When it was unmapped (ns since start), if it was.
    pub gone: Option<u64>,
}

#[derive(Debug, Default)]
pub struct WxStats {
    pub flips_w_to_x: u64,
    pub flips_x_to_w: u64,
    /// Times a region became writable and executable at once.
    pub rwx_events: u64,
    /// Files seen mapped shared-writable and executable at once.
    pub dual_files: Vec<String>,
    retired: Vec<Finding>,
    /// (t_ns, label) of every flip, for the report (bounded).
    pub marks: Vec<(u64, String)>,
}

fn finding(r: &Region, i: &RegionInfo, now_ns: u64, gone: Option<u64>) -> Finding {
    let open = i.rwx_since.map_or(0, |s| now_ns.saturating_sub(s));
    Finding {
        start: r.start,
        end: r.end,
        perms: r.perms.as_str().to_string(),
        name: if r.name.is_empty() {
            "[ anon ]".into()
        } else {
            String::from_utf8_lossy(&r.name).into_owned()
        },
        flips: i.flips,
        rwx_ns: i.rwx_ns + open,
        gone,
    }
}

impl WxStats {
    pub fn count(&mut self, f: Flip, t_ns: u64, what: String) {
        match f {
            Flip::WtoX => self.flips_w_to_x += 1,
            Flip::XtoW => self.flips_x_to_w += 1,
        }
        if self.marks.len() < 10_000 {
            self.marks.push((t_ns, what));
        }
    }

    /// Keeps the W^X history of a region that was unmapped.
    pub fn retire(&mut self, r: &Region, i: &RegionInfo, now_ns: u64) {
        if i.flips == 0 && i.rwx_ns == 0 && i.rwx_since.is_none() {
            return;
        }
        self.retired.push(finding(r, i, now_ns, Some(now_ns)));
        if self.retired.len() > RETIRED_MAX * 2 {
            self.retired.sort_by_key(|f| std::cmp::Reverse(f.flips));
            self.retired.truncate(RETIRED_MAX);
        }
    }

    /// Regions with W^X history, busiest first: live ones from the model.
    pub fn findings(
        &self,
        regions: &mut dyn Iterator<Item = &Region>,
        table: &RegionTable,
        now_ns: u64,
    ) -> Vec<Finding> {
        let mut v: Vec<Finding> = regions
            .filter_map(|r| {
                let i = table.get(r.start)?;
                let live_rwx = rwx(r.perms);
                (i.flips > 0 || i.rwx_ns > 0 || live_rwx).then(|| finding(r, i, now_ns, None))
            })
            .collect();
        v.extend(self.retired.iter().cloned());
        v.sort_by(|a, b| b.flips.cmp(&a.flips).then(b.rwx_ns.cmp(&a.rwx_ns)));
        v
    }

    pub fn json(&self, findings: &[Finding]) -> Value {
        json!({
            "flips_w_to_x": self.flips_w_to_x,
            "flips_x_to_w": self.flips_x_to_w,
            "rwx_events": self.rwx_events,
            "dual_mapped_files": self.dual_files,
            "regions": findings.iter().take(20).map(|f| json!({
                "start": format!("{:#x}", f.start), "end": format!("{:#x}", f.end),
                "perms": f.perms, "name": f.name, "flips": f.flips,
                "rwx_seconds": f.rwx_ns as f64 / 1e9, "unmapped_at": f.gone.map(|t| t as f64 / 1e9),
            })).collect::<Vec<_>>(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flips_are_told_apart_from_other_changes() {
        let p = |s: &[u8; 4]| Perms(*s);
        assert_eq!(flip(p(b"rw-p"), p(b"r-xp")), Some(Flip::WtoX));
        assert_eq!(flip(p(b"rw-p"), p(b"rwxp")), Some(Flip::WtoX));
        assert_eq!(flip(p(b"r-xp"), p(b"rw-p")), Some(Flip::XtoW));
        assert_eq!(flip(p(b"r-xp"), p(b"r--p")), None);
        assert_eq!(flip(p(b"rw-p"), p(b"r--p")), None);
        assert_eq!(flip(p(b"rwxp"), p(b"r-xp")), None);
        assert!(rwx(p(b"rwxp")) && !rwx(p(b"r-xp")));
    }
}
