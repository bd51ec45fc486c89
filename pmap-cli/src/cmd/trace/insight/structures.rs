//! Allocator and runtime structures recognised in the map: glibc malloc
//! arenas, thread stacks with their guard pages, large PROT_NONE
//! reservations (jemalloc, mimalloc, Go, V8, the JVM's heap), the JVM's
//! code cache; and fragmentation figures.

use serde_json::{Value, json};

use super::{alloc::human, regions::RegionTable};
use crate::map::{
    kind::{self, Role},
    model::RegionModel,
    region::Region,
};

/// A PROT_NONE run this large is a reservation, not a guard.
const RESERVATION_MIN: u64 = 64 << 20;

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

/// What the regions are, recognised by the one classifier
/// (`map::kind::roles`): thread stacks by the threads' stack pointers
/// (`threads`, read while the process lives) and by the regions the
/// trace saw made with `MAP_STACK` (glibc's thread stacks, also once the
/// process is gone); glibc arenas by their shape. Then what only the
/// insight names: large reservations and the JVM's code cache.
pub fn recognise(
    model: &RegionModel,
    table: &RegionTable,
    threads: &[(u32, u64)],
) -> Vec<Structure> {
    let regions: Vec<&Region> = model.regions().collect();
    // A region made with MAP_STACK is a stack as a stack pointer in it
    // would say (thread unknown: 0); its guard is the PROT_NONE piece
    // below, which the classifier finds from the stack.
    let mut hints = threads.to_vec();
    hints.extend(
        regions
            .iter()
            .filter(|r| r.perms.writable() && table.get(r.start).is_some_and(|i| i.map_stack))
            .map(|r| (0, r.start)),
    );
    let roles = kind::roles(&regions, &hints, &[]);
    let role = |r: &Region| roles.get(&r.start).copied();
    let jvm = regions.iter().any(|r| r.name.ends_with(b"/libjvm.so"));
    let mut out = Vec::new();
    for (k, r) in regions.iter().enumerate() {
        match role(r) {
            Some(Role::ThreadStack(_)) => {
                let guard = k
                    .checked_sub(1)
                    .map(|g| regions[g])
                    .filter(|g| matches!(role(g), Some(Role::StackGuard(_))));
                let guard_size = guard.map_or(0, |g| g.size());
                out.push(Structure {
                    kind: "thread stack",
                    start: guard.map_or(r.start, |g| g.start),
                    end: r.end,
                    committed: r.size(),
                    detail: format!("{} stack + {} guard", human(r.size()), human(guard_size)),
                });
            }
            Some(Role::Arena) => {
                let tail = regions
                    .get(k + 1)
                    .filter(|t| matches!(role(t), Some(Role::ArenaReserve)));
                let reserved = tail.map_or(0, |t| t.size());
                out.push(Structure {
                    kind: "glibc arena heap",
                    start: r.start,
                    end: r.end + reserved,
                    committed: r.size(),
                    detail: format!(
                        "{} in use, {} reserved tail",
                        human(r.size()),
                        human(reserved)
                    ),
                });
            }
            _ => {}
        }
    }
    for (i, j) in anon_runs(&regions) {
        let run = &regions[i..j];
        let (start, end) = (run[0].start, run[run.len() - 1].end);
        let size = end - start;
        let committed: u64 = run.iter().filter(|r| !none(r)).map(|r| r.size()).sum();
        let reserved = size - committed;
        let has_x = run.iter().any(|r| r.perms.executable());
        // Arenas' reserved tails are accounted for above.
        let arena_tails: u64 = run
            .iter()
            .filter(|r| matches!(role(r), Some(Role::ArenaReserve)))
            .map(|r| r.size())
            .sum();
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
        max_map_count: crate::source::system::max_map_count(),
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
            r(a + 0x21000, a + kind::ARENA, b"---p"),
            // thread stack: 4K guard + 8M stack, elsewhere
            r(a + 0x1000_0000, a + 0x1000_1000, b"---p"),
            r(a + 0x1000_1000, a + 0x1080_1000, b"rw-p"),
            // 1 GiB reservation with 2 MiB committed
            r(a + 0x2000_0000, a + 0x2020_0000, b"rw-p"),
            r(a + 0x2020_0000, a + 0x6000_0000, b"---p"),
        ]);
        let s = recognise(&model, &RegionTable::default(), &[(7, a + 0x1070_0000)]);
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
    fn a_stack_made_with_map_stack_is_recognised_without_its_thread() {
        let a = 0x7f00_1000_0000u64;
        let (guard, stack) = (
            r(a, a + 0x1000, b"---p"),
            r(a + 0x1000, a + 0x2_1000, b"rw-p"),
        );
        let model = RegionModel::new(vec![guard.clone(), stack.clone()]);
        let mut table = RegionTable::default();
        let made = crate::map::model::Change {
            removed: vec![],
            added: vec![guard, stack],
        };
        table.apply(&made, |_, _, info| info.map_stack = true);
        let s = recognise(&model, &table, &[]);
        assert_eq!(s.len(), 1, "{s:?}");
        assert_eq!(
            (s[0].kind, s[0].start, s[0].end),
            ("thread stack", a, a + 0x2_1000)
        );
        // Without the flag or a thread in it, a rw- region is not a stack.
        assert!(recognise(&model, &RegionTable::default(), &[]).is_empty());
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
