//! W^X: regions writable and executable at once, flips between writable
//! and executable, and files mapped shared-writable and executable.
//!
//! Protections are followed call by call, in the order the calls ended: a
//! JIT flips a page and back within microseconds, and each flip must
//! count. What a range had before a call comes from that call's own delta
//! (the rows it replaced, captured at the call's exit), else from the
//! model. So the shadow only keeps ranges with a W^X history (a flip, time
//! spent writable and executable): a process that never makes code maps
//! and unmaps without touching it.

use std::collections::BTreeMap;

use smallvec::SmallVec;

use serde_json::{Value, json};

use crate::map::region::Perms;

/// Flips kept for ranges that are gone, for the summary (the busiest).
const RETIRED_MAX: usize = 256;

const R: u8 = libc::PROT_READ as u8;
const W: u8 = libc::PROT_WRITE as u8;
const X: u8 = libc::PROT_EXEC as u8;

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

/// `PROT_*` bits of a region's permissions.
pub fn prot_of(p: Perms) -> u8 {
    (if p.readable() { R } else { 0 })
        | (if p.writable() { W } else { 0 })
        | (if p.executable() { X } else { 0 })
}

/// `rw-` for `PROT_*` bits.
pub fn prot_str(p: u8) -> String {
    let b = |bit: u8, c: char| if p & bit != 0 { c } else { '-' };
    format!("{}{}{}", b(R, 'r'), b(W, 'w'), b(X, 'x'))
}

pub fn flip(before: u8, after: u8) -> Option<Flip> {
    let (w0, x0, w1, x1) = (
        before & W != 0,
        before & X != 0,
        after & W != 0,
        after & X != 0,
    );
    if w0 && !x0 && x1 {
        Some(Flip::WtoX)
    } else if x0 && !w0 && w1 {
        Some(Flip::XtoW)
    } else {
        None
    }
}

/// A range with one protection, as the process's calls left it.
#[derive(Clone, Debug)]
struct Piece {
    end: u64,
    prot: u8,
    flips: u32,
    /// When it became writable and executable at once (ns since start).
    rwx_since: Option<u64>,
    /// Time spent writable and executable before that.
    rwx_ns: u64,
}

impl Piece {
    fn new(end: u64, prot: u8, t_ns: u64) -> Piece {
        Piece {
            end,
            prot,
            flips: 0,
            rwx_since: (prot & (W | X) == W | X).then_some(t_ns),
            rwx_ns: 0,
        }
    }

    fn history(&self) -> bool {
        self.flips > 0 || self.rwx_ns > 0 || self.rwx_since.is_some()
    }

    fn rwx_total(&self, now_ns: u64) -> u64 {
        self.rwx_ns + self.rwx_since.map_or(0, |s| now_ns.saturating_sub(s))
    }
}

/// A range with a W^X history, for the summary.
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

/// One change of protection a call made, for the note under its delta.
#[derive(Clone, Debug)]
pub enum Event {
    Flip {
        lo: u64,
        hi: u64,
        flip: Flip,
        before: u8,
        after: u8,
        count: u32,
    },
    Rwx {
        lo: u64,
        hi: u64,
    },
}

/// The pieces of a range, taken out of the shadow (a call touches few).
type Pieces = SmallVec<[(u64, Piece); 4]>;

#[derive(Debug, Default)]
pub struct WxStats {
    pub flips_w_to_x: u64,
    pub flips_x_to_w: u64,
    /// Times a range became writable and executable at once.
    pub rwx_events: u64,
    /// Files seen mapped shared-writable and executable at once.
    pub dual_files: Vec<String>,
    shadow: BTreeMap<u64, Piece>,
    retired: Vec<Finding>,
    /// (t_ns, label) of every flip, for the report (bounded).
    pub marks: Vec<(u64, String)>,
}

impl WxStats {
    /// Removes the pieces in `[lo, hi)` from the shadow (pieces reaching
    /// outside are split) and returns them, clipped.
    fn take(&mut self, lo: u64, hi: u64) -> Pieces {
        let mut out = Pieces::new();
        // A piece that begins before `lo` keeps its head, shortened in
        // place; its tail past `hi`, if any, becomes a piece of its own.
        let mut tail = None;
        if let Some((_, p)) = self.shadow.range_mut(..lo).next_back()
            && p.end > lo
        {
            let whole = p.clone();
            p.end = lo;
            if whole.end > hi {
                tail = Some(whole.clone());
            }
            out.push((
                lo,
                Piece {
                    end: whole.end.min(hi),
                    ..whole
                },
            ));
        }
        let keys: SmallVec<[u64; 4]> = self.shadow.range(lo..hi).map(|(&k, _)| k).collect();
        for k in keys {
            let Some(p) = self.shadow.remove(&k) else {
                continue;
            };
            if p.end > hi {
                tail = Some(p.clone());
            }
            out.push((
                k,
                Piece {
                    end: p.end.min(hi),
                    ..p
                },
            ));
        }
        if let Some(p) = tail {
            self.shadow.insert(hi, p);
        }
        out
    }

    /// Puts a piece in the shadow if it has a history to keep.
    fn keep(&mut self, lo: u64, p: Piece) {
        if p.history() {
            self.shadow.insert(lo, p);
        }
    }

    fn retire(&mut self, lo: u64, p: &Piece, now_ns: u64) {
        if !p.history() {
            return;
        }
        self.retired.push(Finding {
            start: lo,
            end: p.end,
            perms: prot_str(p.prot),
            name: String::new(),
            flips: p.flips,
            rwx_ns: p.rwx_total(now_ns),
            gone: Some(now_ns),
        });
        if self.retired.len() > RETIRED_MAX * 2 {
            self.retired.sort_by_key(|f| std::cmp::Reverse(f.flips));
            self.retired.truncate(RETIRED_MAX);
        }
    }

    fn rwx_event(&mut self, lo: u64, hi: u64, out: &mut Vec<Event>) {
        self.rwx_events += 1;
        out.push(Event::Rwx { lo, hi });
    }

    /// A new mapping of `[lo, hi)` (replacing whatever was there).
    pub fn map(&mut self, lo: u64, hi: u64, prot: u8, t_ns: u64) -> Vec<Event> {
        for (k, p) in self.take(lo, hi) {
            self.retire(k, &p, t_ns);
        }
        let mut out = Vec::new();
        let piece = Piece::new(hi, prot, t_ns);
        if piece.rwx_since.is_some() {
            self.rwx_event(lo, hi, &mut out);
            self.shadow.insert(lo, piece);
        }
        out
    }

    /// `[lo, hi)` was unmapped.
    pub fn unmap(&mut self, lo: u64, hi: u64, t_ns: u64) {
        for (k, p) in self.take(lo, hi) {
            self.retire(k, &p, t_ns);
        }
    }

    /// The address space was replaced (execve).
    pub fn clear(&mut self, t_ns: u64) {
        self.unmap(0, u64::MAX, t_ns);
    }

    /// mprotect of `[lo, hi)` to `prot`. `seed` gives the protections of
    /// ranges no traced call has set (from the region model).
    pub fn protect(
        &mut self,
        lo: u64,
        hi: u64,
        prot: u8,
        t_ns: u64,
        seed: &dyn Fn(u64, u64) -> Vec<(u64, u64, u8)>,
    ) -> Vec<Event> {
        let mut pieces = self.take(lo, hi);
        // Fill the gaps from the model.
        let mut gaps = Vec::new();
        let mut at = lo;
        for (k, p) in &pieces {
            if *k > at {
                gaps.push((at, *k));
            }
            at = p.end;
        }
        if at < hi {
            gaps.push((at, hi));
        }
        for (glo, ghi) in gaps {
            for (slo, shi, sprot) in seed(glo, ghi) {
                let (slo, shi) = (slo.max(glo), shi.min(ghi));
                if slo < shi {
                    pieces.push((slo, Piece::new(shi, sprot, t_ns)));
                }
            }
        }
        pieces.sort_by_key(|(k, _)| *k);
        let mut out = Vec::new();
        let mut at = lo;
        for (k, mut p) in pieces {
            if k > at {
                // Unknown before: now known.
                self.keep(at, Piece::new(k, prot, t_ns));
            }
            at = p.end;
            if let Some(f) = flip(p.prot, prot) {
                p.flips += 1;
                match f {
                    Flip::WtoX => self.flips_w_to_x += 1,
                    Flip::XtoW => self.flips_x_to_w += 1,
                }
                if self.marks.len() < 10_000 {
                    self.marks.push((t_ns, format!("{} {k:#x}", f.label())));
                }
                out.push(Event::Flip {
                    lo: k,
                    hi: p.end,
                    flip: f,
                    before: p.prot,
                    after: prot,
                    count: p.flips,
                });
            }
            let now_rwx = prot & (W | X) == W | X;
            match (p.rwx_since, now_rwx) {
                (None, true) => {
                    p.rwx_since = Some(t_ns);
                    self.rwx_event(k, p.end, &mut out);
                }
                (Some(since), false) => {
                    p.rwx_ns += t_ns.saturating_sub(since);
                    p.rwx_since = None;
                }
                _ => {}
            }
            p.prot = prot;
            self.keep(k, p);
        }
        if at < hi {
            self.keep(at, Piece::new(hi, prot, t_ns));
        }
        out
    }

    /// mremap of `[old, old+old_len)` to `[new, new+new_len)`: the
    /// protections move with the mapping; a grown tail takes the last one.
    pub fn remap(&mut self, old: u64, old_len: u64, new: u64, new_len: u64, t_ns: u64) {
        let pieces = self.take(old, old.saturating_add(old_len));
        let last = pieces.last().map(|(_, p)| p.prot);
        let new_end = new.saturating_add(new_len);
        for (k, p) in pieces {
            let (k2, e2) = (k - old + new, p.end - old + new);
            if k2 >= new_end {
                self.retire(k, &p, t_ns);
                continue;
            }
            self.shadow.insert(
                k2,
                Piece {
                    end: e2.min(new_end),
                    ..p
                },
            );
        }
        let covered = new.saturating_add(old_len.min(new_len));
        if let Some(prot) = last
            && covered < new_end
        {
            self.keep(covered, Piece::new(new_end, prot, t_ns));
        }
    }

    /// Ranges with W^X history, busiest first; `name` names a live range.
    pub fn findings(&self, now_ns: u64, name: &dyn Fn(u64) -> Option<String>) -> Vec<Finding> {
        let mut v: Vec<Finding> = self
            .shadow
            .iter()
            .filter(|(_, p)| p.history())
            .map(|(&k, p)| Finding {
                start: k,
                end: p.end,
                perms: prot_str(p.prot),
                name: name(k).unwrap_or_default(),
                flips: p.flips,
                rwx_ns: p.rwx_total(now_ns),
                gone: None,
            })
            .collect();
        v.extend(self.retired.iter().cloned());
        v.sort_by(|a, b| b.flips.cmp(&a.flips).then(b.rwx_ns.cmp(&a.rwx_ns)));
        v
    }

    /// Ranges writable and executable now, by the process's calls.
    pub fn rwx_now(&self) -> usize {
        self.shadow
            .values()
            .filter(|p| p.rwx_since.is_some())
            .count()
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
        let p = |s: &[u8; 4]| prot_of(Perms(*s));
        assert_eq!(flip(p(b"rw-p"), p(b"r-xp")), Some(Flip::WtoX));
        assert_eq!(flip(p(b"rw-p"), p(b"rwxp")), Some(Flip::WtoX));
        assert_eq!(flip(p(b"r-xp"), p(b"rw-p")), Some(Flip::XtoW));
        assert_eq!(flip(p(b"r-xp"), p(b"r--p")), None);
        assert_eq!(flip(p(b"rw-p"), p(b"r--p")), None);
        assert_eq!(flip(p(b"rwxp"), p(b"r-xp")), None);
        assert_eq!(prot_str(p(b"r-xp")), "r-x");
    }

    #[test]
    fn flips_follow_the_calls_through_splits_and_unmaps() {
        // What the model (the call's own delta) says the range had: rw-
        // wherever the shadow has nothing (the shadow keeps history only).
        let rw = |lo: u64, hi: u64| vec![(lo, hi, R | W)];
        let mut wx = WxStats::default();
        assert!(wx.map(0x1000, 0x3000, R | W, 0).is_empty());
        // Flip the second page only: one flip, the first page keeps rw-.
        let ev = wx.protect(0x2000, 0x3000, R | X, 10, &rw);
        assert!(matches!(
            ev[..],
            [Event::Flip {
                lo: 0x2000,
                hi: 0x3000,
                flip: Flip::WtoX,
                count: 1,
                ..
            }]
        ));
        let ev = wx.protect(0x1000, 0x3000, R | W, 20, &rw);
        assert!(matches!(
            ev[..],
            [Event::Flip {
                lo: 0x2000,
                flip: Flip::XtoW,
                count: 2,
                ..
            }]
        ));
        // rwx is timed until it ends.
        let ev = wx.protect(0x1000, 0x2000, R | W | X, 30, &rw);
        assert!(matches!(
            ev[..],
            [
                Event::Flip { .. },
                Event::Rwx {
                    lo: 0x1000,
                    hi: 0x2000
                }
            ]
        ));
        wx.unmap(0x1000, 0x3000, 80);
        assert_eq!((wx.flips_w_to_x, wx.flips_x_to_w, wx.rwx_events), (2, 1, 1));
        let f = wx.findings(100, &|_| None);
        assert_eq!(f.len(), 2);
        assert_eq!((f[0].start, f[0].flips, f[0].gone), (0x2000, 2, Some(80)));
        assert_eq!((f[1].start, f[1].rwx_ns), (0x1000, 50));
        // A range no call has set takes its protection from the model.
        let seeded = |lo: u64, hi: u64| vec![(lo, hi, R | W)];
        let ev = wx.protect(0x9000, 0xa000, R | X, 200, &seeded);
        assert!(matches!(
            ev[..],
            [Event::Flip {
                flip: Flip::WtoX,
                count: 1,
                ..
            }]
        ));
    }
}
