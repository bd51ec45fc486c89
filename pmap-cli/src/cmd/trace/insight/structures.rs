//! Allocator and runtime structures recognised in the map: glibc malloc
//! arenas, thread stacks with their guard pages, large PROT_NONE
//! reservations (jemalloc, mimalloc, Go, V8, the JVM's heap), the JVM's
//! code cache; and fragmentation figures.

use serde_json::{Value, json};

use super::{alloc::human, regions::RegionTable};
use crate::map::{model::RegionModel, region::Region};

/// glibc's HEAP_MAX_SIZE on 64-bit: non-main arenas are heaps of this size,
/// aligned to it, committed from the bottom, the rest PROT_NONE.
const ARENA: u64 = 64 << 20;
/// A PROT_NONE run this large is a reservation, not a guard.
const RESERVATION_MIN: u64 = 64 << 20;
/// Largest guard page run glibc puts under a thread stack.
const GUARD_MAX: u64 = 1 << 20;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Structure {
    pub kind: &'static str,
    pub start: u64,
    pub end: u64,
    /// Bytes readable or writable (committed) in it.
    pub committed: u64,
    pub detail: String,
}

fn anon(r: &Region) -> bool {
    r.inode == 0 && r.name.is_empty()
}

fn none(r: &Region) -> bool {
    &r.perms.0[..3] == b"---"
}

/// Runs of adjacent anonymous private regions.
fn anon_runs(regions: &[&Region]) -> Vec<(usize, usize)> {
    let mut runs = Vec::new();
    let mut i = 0;
    while i < regions.len() {
        if !anon(regions[i]) || regions[i].perms.shared() {
            i += 1;
            continue;
        }
        let mut j = i + 1;
        while j < regions.len()
            && anon(regions[j])
            && !regions[j].perms.shared()
            && regions[j].start == regions[j - 1].end
        {
            j += 1;
        }
        runs.push((i, j));
        i = j;
    }
    runs
}

pub fn recognise(model: &RegionModel, table: &RegionTable) -> Vec<Structure> {
    let regions: Vec<&Region> = model.regions().collect();
    let jvm = regions.iter().any(|r| r.name.ends_with(b"/libjvm.so"));
    let mut out = Vec::new();
    for (i, j) in anon_runs(&regions) {
        let run = &regions[i..j];
        let (start, end) = (run[0].start, run[run.len() - 1].end);
        let size = end - start;
        let committed: u64 = run.iter().filter(|r| !none(r)).map(|r| r.size()).sum();
        let reserved = size - committed;
        let has_x = run.iter().any(|r| r.perms.executable());
        // Thread stacks: a small PROT_NONE guard right under a rw- stack
        // (glibc maps both at once, with MAP_STACK).
        let mut k = 0;
        while k + 1 < run.len() {
            let (g, s) = (run[k], run[k + 1]);
            let by_flag = table.get(g.start).is_some_and(|i| i.map_stack)
                || table.get(s.start).is_some_and(|i| i.map_stack);
            if none(g)
                && g.size() <= GUARD_MAX
                && s.perms.writable()
                && !s.perms.executable()
                && (s.size() >= 64 * 1024 || by_flag)
                && (by_flag || s.size() % (1 << 20) == 0 || (s.size() + g.size()) % (1 << 20) == 0)
            {
                out.push(Structure {
                    kind: "thread stack",
                    start: g.start,
                    end: s.end,
                    committed: s.size(),
                    detail: format!("{} stack + {} guard", human(s.size()), human(g.size())),
                });
                k += 2;
                continue;
            }
            k += 1;
        }
        // glibc arenas: 64 MiB aligned heaps, rw- from the bottom, then
        // PROT_NONE. Several may sit next to each other in one run.
        let mut arena_tails = 0;
        let mut a = start.next_multiple_of(ARENA);
        while a + ARENA <= end {
            let inside: Vec<&&Region> = run
                .iter()
                .filter(|r| r.start >= a && r.end <= a + ARENA)
                .collect();
            let covers = inside.iter().map(|r| r.size()).sum::<u64>() == ARENA;
            let shaped = covers
                && inside.first().is_some_and(|r| r.perms.writable())
                && inside.last().is_some_and(|r| none(r))
                && inside.len() == 2;
            if shaped {
                let used = inside[0].size();
                arena_tails += ARENA - used;
                out.push(Structure {
                    kind: "glibc arena heap",
                    start: a,
                    end: a + ARENA,
                    committed: used,
                    detail: format!(
                        "{} in use, {} reserved tail",
                        human(used),
                        human(ARENA - used)
                    ),
                });
            }
            a += ARENA;
        }
        if has_x && jvm {
            out.push(Structure {
                kind: "JVM code cache",
                start,
                end,
                committed,
                detail: format!(
                    "{} reserved, {} committed rwx",
                    human(size),
                    human(committed)
                ),
            });
        } else if reserved.saturating_sub(arena_tails) >= RESERVATION_MIN {
            let kind = if jvm {
                "JVM heap/metaspace reservation"
            } else if has_x {
                "JIT code reservation"
            } else {
                "large reservation (jemalloc/mimalloc/Go/V8-style)"
            };
            out.push(Structure {
                kind,
                start,
                end,
                committed,
                detail: format!("{} reserved, {} committed", human(size), human(committed)),
            });
        }
    }
    out.sort_by_key(|s| s.start);
    out
}

/// Region count, room left under vm.max_map_count, largest free gap.
#[derive(Clone, Debug, Default)]
pub struct Fragmentation {
    pub regions: usize,
    pub max_map_count: Option<u64>,
    /// Largest gap between two mappings of the mmap area (the regions
    /// between the program and heap and the main stack).
    pub largest_gap: u64,
    pub gap_at: u64,
}

pub fn fragmentation(model: &RegionModel) -> Fragmentation {
    let stack = model.find_named(b"[stack]").map_or(u64::MAX, |r| r.start);
    let mut f = Fragmentation {
        regions: model.len(),
        max_map_count: std::fs::read_to_string("/proc/sys/vm/max_map_count")
            .ok()
            .and_then(|s| s.trim().parse().ok()),
        ..Default::default()
    };
    // Gaps between neighbours below the stack, in address order. The
    // widest is the unused space between the program and heap and the
    // mmap area (terabytes); the mmap area is what lies above it. Gaps
    // below it (the random one under the heap, or between the program's
    // segments) are not holes an allocator could fill.
    let mut gaps: Vec<(u64, u64)> = Vec::new();
    let mut prev: Option<&Region> = None;
    for r in model.regions().take_while(|r| r.start < stack) {
        if let Some(p) = prev
            && r.start > p.end
        {
            gaps.push((r.start - p.end, p.end));
        }
        prev = Some(r);
    }
    let Some(widest) = gaps
        .iter()
        .enumerate()
        .max_by_key(|(_, g)| g.0)
        .map(|(i, _)| i)
    else {
        return f;
    };
    // The first of equal sizes: the lowest address.
    let in_area = gaps[widest + 1..]
        .iter()
        .copied()
        .reduce(|best, g| if g.0 > best.0 { g } else { best });
    if let Some((gap, at)) = in_area {
        f.largest_gap = gap;
        f.gap_at = at;
    }
    f
}

impl Fragmentation {
    pub fn line(&self) -> String {
        let headroom = match self.max_map_count {
            Some(m) => format!(
                "{} left under vm.max_map_count {m} ({:.1}% used)",
                m.saturating_sub(self.regions as u64),
                self.regions as f64 * 100.0 / m.max(1) as f64
            ),
            None => "vm.max_map_count unknown".into(),
        };
        format!(
            "fragmentation: {} regions, {headroom}; largest free gap in the mmap area {} at {:#x}",
            self.regions,
            human(self.largest_gap),
            self.gap_at
        )
    }

    pub fn json(&self) -> Value {
        json!({
            "regions": self.regions, "max_map_count": self.max_map_count,
            "largest_gap": self.largest_gap, "largest_gap_at": format!("{:#x}", self.gap_at),
        })
    }
}

pub fn json(s: &[Structure]) -> Value {
    json!(
        s.iter()
            .map(|s| json!({
                "kind": s.kind, "start": format!("{:#x}", s.start), "end": format!("{:#x}", s.end),
                "size": s.end - s.start, "committed": s.committed, "detail": s.detail,
            }))
            .collect::<Vec<_>>()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::map::region::test_region as r;

    #[test]
    fn arena_stack_and_reservation_are_recognised() {
        let a = 0x7f00_0000_0000u64;
        let model = RegionModel::new(vec![
            // arena: 132K used, rest reserved
            r(a, a + 0x21000, b"rw-p"),
            r(a + 0x21000, a + ARENA, b"---p"),
            // thread stack: 4K guard + 8M stack, elsewhere
            r(a + 0x1000_0000, a + 0x1000_1000, b"---p"),
            r(a + 0x1000_1000, a + 0x1080_1000, b"rw-p"),
            // 1 GiB reservation with 2 MiB committed
            r(a + 0x2000_0000, a + 0x2020_0000, b"rw-p"),
            r(a + 0x2020_0000, a + 0x6000_0000, b"---p"),
        ]);
        let s = recognise(&model, &RegionTable::default());
        let kinds: Vec<&str> = s.iter().map(|s| s.kind).collect();
        assert_eq!(
            kinds,
            vec![
                "glibc arena heap",
                "thread stack",
                "large reservation (jemalloc/mimalloc/Go/V8-style)"
            ]
        );
        assert_eq!(s[0].committed, 0x21000);
    }

    #[test]
    fn the_largest_gap_is_looked_for_in_the_mmap_area_only() {
        let model = RegionModel::new(vec![
            // program, then a 16M gap (brk randomisation), then the heap
            r(0x5555_0000_0000, 0x5555_0001_0000, b"r-xp"),
            r(0x5555_0101_0000, 0x5555_0102_0000, b"rw-p"),
            // the mmap area, with a 1M hole and a 64K hole
            r(0x7f00_0000_0000, 0x7f00_0010_0000, b"rw-p"),
            r(0x7f00_0020_0000, 0x7f00_0030_0000, b"rw-p"),
            r(0x7f00_0031_0000, 0x7f00_0040_0000, b"rw-p"),
        ]);
        let f = fragmentation(&model);
        assert_eq!(f.largest_gap, 0x10_0000);
        assert_eq!(f.gap_at, 0x7f00_0010_0000);
    }
}
