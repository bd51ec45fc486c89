//! The operations the workload chooses from, their outcomes and counts.
//! `world/` carries them out.

use std::collections::BTreeMap;

/// Bounds that keep the process at a few hundred regions.
pub const MAX_BLOCKS: usize = 110;
pub const MAX_PAGES: usize = 3000;
pub const MAX_SHM_ATTACHES: usize = 10;
pub const MAX_BRK_PAGES: usize = 64;
/// Sealed ranges can never be unmapped: keep them few.
pub const MAX_SEALED: usize = 16;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Op {
    MapAnon,
    MapAnonShared,
    MapFile,
    MapMemfd,
    ShmAttach,
    ShmDetach,
    FixedOverlay,
    MunmapPart,
    MunmapWhole,
    Mprotect,
    PkeyMprotect,
    MremapGrowInPlace,
    MremapGrowMaymove,
    MremapShrink,
    MremapMoveFixed,
    MremapDontunmap,
    BrkGrow,
    BrkShrink,
    Madvise,
    Mlock,
    Munlock,
    Touch,
    Dlopen,
    Dlclose,
    Mseal,
    // Run by the main thread only (threads.rs, main.rs).
    Burst,
    StackGrow,
    ThreadStart,
    ThreadEnd,
}

impl Op {
    pub const ALL: [Op; 29] = [
        Op::MapAnon,
        Op::MapAnonShared,
        Op::MapFile,
        Op::MapMemfd,
        Op::ShmAttach,
        Op::ShmDetach,
        Op::FixedOverlay,
        Op::MunmapPart,
        Op::MunmapWhole,
        Op::Mprotect,
        Op::PkeyMprotect,
        Op::MremapGrowInPlace,
        Op::MremapGrowMaymove,
        Op::MremapShrink,
        Op::MremapMoveFixed,
        Op::MremapDontunmap,
        Op::BrkGrow,
        Op::BrkShrink,
        Op::Madvise,
        Op::Mlock,
        Op::Munlock,
        Op::Touch,
        Op::Dlopen,
        Op::Dlclose,
        Op::Mseal,
        Op::Burst,
        Op::StackGrow,
        Op::ThreadStart,
        Op::ThreadEnd,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Op::MapAnon => "mmap_anon",
            Op::MapAnonShared => "mmap_anon_shared",
            Op::MapFile => "mmap_file",
            Op::MapMemfd => "mmap_memfd",
            Op::ShmAttach => "shmat",
            Op::ShmDetach => "shmdt",
            Op::FixedOverlay => "mmap_fixed_overlay",
            Op::MunmapPart => "munmap_part",
            Op::MunmapWhole => "munmap_whole",
            Op::Mprotect => "mprotect",
            Op::PkeyMprotect => "pkey_mprotect",
            Op::MremapGrowInPlace => "mremap_grow_in_place",
            Op::MremapGrowMaymove => "mremap_grow_maymove",
            Op::MremapShrink => "mremap_shrink",
            Op::MremapMoveFixed => "mremap_move_fixed",
            Op::MremapDontunmap => "mremap_dontunmap",
            Op::BrkGrow => "brk_grow",
            Op::BrkShrink => "brk_shrink",
            Op::Madvise => "madvise",
            Op::Mlock => "mlock",
            Op::Munlock => "munlock",
            Op::Touch => "touch",
            Op::Dlopen => "dlopen",
            Op::Dlclose => "dlclose",
            Op::Mseal => "mseal",
            Op::Burst => "thread_burst",
            Op::StackGrow => "stack_grow",
            Op::ThreadStart => "thread_start",
            Op::ThreadEnd => "thread_end",
        }
    }

    /// Ops that only the main thread may run (they create or join threads,
    /// or grow the main stack).
    pub fn main_only(self) -> bool {
        matches!(
            self,
            Op::Burst | Op::StackGrow | Op::ThreadStart | Op::ThreadEnd
        )
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Done,
    /// The call failed and, by the kernel's contract, changed nothing we track.
    Failed(i32),
    /// No suitable target right now.
    Skipped,
}

#[derive(Default)]
pub struct Stats {
    /// op name -> [done, failed, skipped]
    pub by_op: BTreeMap<&'static str, [u64; 3]>,
}

impl Stats {
    pub fn record(&mut self, op: Op, out: Outcome) {
        let e = self.by_op.entry(op.name()).or_default();
        match out {
            Outcome::Done => e[0] += 1,
            Outcome::Failed(_) => e[1] += 1,
            Outcome::Skipped => e[2] += 1,
        }
    }
}
