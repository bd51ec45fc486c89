//! The roles of a live process's regions (`map::kind::roles`: arenas,
//! thread stacks and their guards, JIT code), from what is read of it now:
//! each thread's stack pointer and its JIT symbols. Shared by every command
//! that classifies a live map (`--names`, `--summary`, `-r`).

use crate::{
    map::{
        kind::{self, Roles},
        region::Region,
    },
    source::{perf_map, pid_dir::PidDir, threads},
};

/// The roles of `regions`, the map of the process of `dir` (thread group
/// `tgid`, whose perf map names its JIT code).
pub fn of_process(dir: &PidDir, tgid: u32, regions: &[&Region]) -> Roles {
    kind::roles(
        regions,
        &threads::stack_pointers(dir),
        &perf_map::starts(tgid),
    )
}
