//! Allocator behaviour from the mapping calls: calls and bytes by syscall
//! and size class, churn (short-lived mappings, the glibc mmap-threshold
//! pattern), heap growth, peaks, and the biggest call sites.

use std::{
    collections::{BTreeMap, HashMap},
    rc::Rc,
};

use serde_json::{Value, json};

/// A mapping unmapped within this time of being mapped is churn.
pub const CHURN_NS: u64 = 1_000_000_000;
/// This many churned map/unmap pairs of one size make a pattern.
pub const PATTERN_MIN: u64 = 8;
/// glibc's default M_MMAP_THRESHOLD (128 KiB) and its dynamic maximum on
/// 64-bit (DEFAULT_MMAP_THRESHOLD_MAX, 32 MiB).
const GLIBC_THRESHOLD_MIN: u64 = 128 * 1024;
const GLIBC_THRESHOLD_MAX: u64 = 32 * 1024 * 1024;
/// Heap growth points kept (thinned by half when full).
const BRK_POINTS: usize = 256;

fn page_up(n: u64) -> u64 {
    n.saturating_add(4095) & !4095
}

/// Size class index: 0 for <= 4 KiB, then one per power of two.
pub fn size_class(len: u64) -> usize {
    let len = len.max(1);
    (64 - (len - 1).leading_zeros()).saturating_sub(12) as usize
}

pub fn class_label(i: usize) -> String {
    human(4096u64 << i)
}

pub fn human(b: u64) -> String {
    const U: [&str; 5] = ["B", "K", "M", "G", "T"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u < U.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if v.fract() == 0.0 || u == 0 {
        format!("{v:.0}{}", U[u])
    } else {
        format!("{v:.1}{}", U[u])
    }
}

#[derive(Debug, Default, Clone, Copy)]
pub struct Count {
    pub calls: u64,
    pub bytes: u64,
}

impl Count {
    fn add(&mut self, bytes: u64) {
        self.calls += 1;
        self.bytes += bytes;
    }
}

#[derive(Debug, Default)]
pub struct AllocStats {
    pub by_call: BTreeMap<&'static str, Count>,
    /// Successful anonymous/file mmaps by size class.
    pub classes: BTreeMap<usize, Count>,
    /// Live mappings made by mmap: start -> (t_ns, length).
    live: BTreeMap<u64, (u64, u64)>,
    /// Churned map/unmap pairs by length, and total.
    pub churn_by_len: HashMap<u64, u64>,
    pub churn: u64,
    pub churn_bytes: u64,
    /// (t_ns, heap bytes) at each brk change.
    pub brk: Vec<(u64, u64)>,
    pub peak_mapped: (u64, u64),
    pub peak_rss_kib: u64,
    /// Call site -> bytes and calls that mapped memory (with --stacks).
    pub sites: HashMap<Rc<str>, Count>,
}

impl AllocStats {
    /// A call that changed the map, covering `bytes`.
    pub fn call(&mut self, name: &'static str, bytes: u64) {
        self.by_call.entry(name).or_default().add(bytes);
    }

    pub fn site(&mut self, site: Rc<str>, bytes: u64) {
        self.sites.entry(site).or_default().add(bytes);
    }

    pub fn mapped(&mut self, t_ns: u64, addr: u64, len: u64) {
        let len = page_up(len);
        self.classes.entry(size_class(len)).or_default().add(len);
        self.live.insert(addr, (t_ns, len));
        // Bound the bookkeeping for programs that never unmap.
        if self.live.len() > 200_000
            && let Some(&k) = self.live.keys().next()
        {
            self.live.remove(&k);
        }
    }

    /// An unmap of `[addr, addr+len)`; returns the churned length when it
    /// undid a recent mmap of exactly that range.
    pub fn unmapped(&mut self, t_ns: u64, addr: u64, len: u64) -> Option<u64> {
        let len = page_up(len);
        let exact = self.live.get(&addr).copied();
        let gone: Vec<u64> = self
            .live
            .range(addr..addr.saturating_add(len))
            .map(|(&k, _)| k)
            .collect();
        for k in gone {
            self.live.remove(&k);
        }
        let (t0, l0) = exact?;
        if l0 == len && t_ns.saturating_sub(t0) <= CHURN_NS {
            self.churn += 1;
            self.churn_bytes += len;
            *self.churn_by_len.entry(len).or_default() += 1;
            return Some(len);
        }
        None
    }

    pub fn brk_point(&mut self, t_ns: u64, heap: u64) {
        if self.brk.last().is_some_and(|&(_, h)| h == heap) {
            return;
        }
        if self.brk.len() >= BRK_POINTS {
            // Keep the first and every second point after it.
            let mut i = 0;
            self.brk.retain(|_| {
                i += 1;
                i % 2 == 1
            });
        }
        self.brk.push((t_ns, heap));
    }

    /// Sizes mapped and unmapped again and again, most frequent first.
    pub fn patterns(&self) -> Vec<(u64, u64)> {
        let mut v: Vec<(u64, u64)> = self
            .churn_by_len
            .iter()
            .filter(|&(_, &n)| n >= PATTERN_MIN)
            .map(|(&l, &n)| (l, n))
            .collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        v
    }

    /// What to tune for a repeated size, when it looks like glibc malloc's
    /// mmap threshold at work.
    pub fn hint(len: u64) -> Option<String> {
        if len > GLIBC_THRESHOLD_MAX {
            return Some(format!(
                "glibc malloc serves every block above 32M (the most M_MMAP_THRESHOLD can be) \
                 with its own mmap and gives it back on free; keep and reuse the {} buffer \
                 instead of allocating it again",
                human(len)
            ));
        }
        if len < GLIBC_THRESHOLD_MIN {
            return None;
        }
        // Requests just under the mapped length land below a threshold
        // one page above it.
        let want = len + 4096;
        Some(format!(
            "if these {} blocks come from malloc, glibc is serving them with mmap because they \
             are above M_MMAP_THRESHOLD: raise it above the block size with \
             MALLOC_MMAP_THRESHOLD_={want} in the environment or mallopt(M_MMAP_THRESHOLD, {want}) \
             at startup (this also turns off glibc's dynamic threshold); if the program maps them \
             itself, keep one mapping and reuse it",
            human(len)
        ))
    }

    pub fn top_sites(&self, by_bytes: bool, n: usize) -> Vec<(Rc<str>, Count)> {
        let mut v: Vec<(Rc<str>, Count)> =
            self.sites.iter().map(|(k, c)| (k.clone(), *c)).collect();
        if by_bytes {
            v.sort_by(|a, b| b.1.bytes.cmp(&a.1.bytes).then(a.0.cmp(&b.0)));
        } else {
            v.sort_by(|a, b| b.1.calls.cmp(&a.1.calls).then(a.0.cmp(&b.0)));
        }
        v.truncate(n);
        v
    }

    /// `totals`: every traced call by syscall (the tracer's summary
    /// counts), so that `calls` here is the summary's figure and
    /// `changed_map` the part of it that changed the map.
    pub fn json(&self, totals: &BTreeMap<&'static str, u64>) -> Value {
        let names: std::collections::BTreeSet<&str> = totals
            .keys()
            .copied()
            .chain(self.by_call.keys().copied())
            .collect();
        let by_call: serde_json::Map<String, Value> = names
            .into_iter()
            .map(|k| {
                let c = self.by_call.get(k).copied().unwrap_or_default();
                let all = totals.get(k).copied().unwrap_or(c.calls);
                (
                    k.to_string(),
                    json!({"calls": all, "changed_map": c.calls, "bytes": c.bytes}),
                )
            })
            .collect();
        let classes: Vec<Value> = self
            .classes
            .iter()
            .map(|(&i, c)| json!({"up_to": 4096u64 << i, "calls": c.calls, "bytes": c.bytes}))
            .collect();
        let patterns: Vec<Value> = self
            .patterns()
            .iter()
            .map(|&(l, n)| json!({"size": l, "pairs": n, "hint": AllocStats::hint(l)}))
            .collect();
        let site = |v: Vec<(Rc<str>, Count)>| -> Vec<Value> {
            v.iter()
                .map(|(s, c)| json!({"site": &**s, "calls": c.calls, "bytes": c.bytes}))
                .collect()
        };
        json!({
            "by_syscall": by_call,
            "size_classes": classes,
            "churn": {"pairs": self.churn, "bytes": self.churn_bytes, "window_seconds": CHURN_NS as f64 / 1e9, "repeated_sizes": patterns},
            "brk": self.brk.iter().map(|&(t, h)| json!([t as f64 / 1e9, h])).collect::<Vec<_>>(),
            "peak_mapped": {"bytes": self.peak_mapped.1, "t": self.peak_mapped.0 as f64 / 1e9},
            "peak_rss": self.peak_rss_kib * 1024,
            "top_sites_by_bytes": site(self.top_sites(true, 10)),
            "top_sites_by_calls": site(self.top_sites(false, 10)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_classes_are_powers_of_two_from_4k() {
        assert_eq!(size_class(1), 0);
        assert_eq!(size_class(4096), 0);
        assert_eq!(size_class(4097), 1);
        assert_eq!(size_class(8192), 1);
        assert_eq!(size_class(1 << 20), 8);
        assert_eq!(class_label(8), "1M");
    }

    #[test]
    fn exact_unmap_soon_after_map_is_churn() {
        let mut a = AllocStats::default();
        a.mapped(0, 0x1000_0000, 200_000);
        assert_eq!(a.unmapped(10, 0x1000_0000, 200_000), Some(200_704));
        a.mapped(0, 0x2000_0000, 8192);
        assert_eq!(a.unmapped(CHURN_NS * 2, 0x2000_0000, 8192), None);
        a.mapped(0, 0x3000_0000, 8192);
        // A partial unmap is not churn, and forgets the mapping.
        assert_eq!(a.unmapped(1, 0x3000_0000, 4096), None);
        assert_eq!(a.unmapped(2, 0x3000_0000, 8192), None);
        assert_eq!(a.churn, 1);
        assert!(
            AllocStats::hint(200_704).is_some_and(|h| h.contains("MALLOC_MMAP_THRESHOLD_=204800"))
        );
        assert!(AllocStats::hint(4096).is_none());
    }
}
