//! `pmap -l CORE`: the dynamic linker's link map, where the core holds it.
//!
//! `NT_FILE` names only the resolved files. The link map itself (`r_debug`,
//! the `link_map` nodes, their names) lives in the dynamic linker's data and
//! heap, which gcore and the kernel dump under the default
//! `coredump_filter` (private anonymous memory, and private file mappings
//! the process wrote to, such as the executable's dynamic section, where
//! `DT_DEBUG` was filled in). The walk is `proc::link_map::walk` over the
//! core's memory ([`CoreMem`]: dumped segments, then the mapped files for
//! the executable's program headers, which a core usually leaves out).

use std::collections::HashMap;
use std::path::Path;

use super::memory::CoreMem;
use crate::source::link_map::{LinkObject, WalkError, walk};

/// The link map of the core at `path`, or why it is not there.
pub fn read(path: &Path) -> Result<Vec<LinkObject>, String> {
    let mem = CoreMem::open(path)?;
    walk(&mem, &mem.auxv).map_err(|e| match e {
        WalkError::Read { .. } => format!(
            "{e}: the link map is not in this core (the dynamic linker's data was not dumped, \
             see coredump_filter in core(5), or a mapped file is gone); names are the files' \
             from NT_FILE"
        ),
        _ => format!("{e}; names are the files' from NT_FILE"),
    })
}

/// Renames the regions of `core` that belong to a loaded object to its
/// link-map name; `Err` says why there is no link map (names unchanged).
pub fn apply(core: &mut super::Core) -> Result<(), String> {
    let objects = read(&core.path)?;
    let names: HashMap<u64, Vec<u8>> =
        crate::source::link_map::assign(&objects, core.regions.iter().map(|r| &r.region));
    for r in &mut core.regions {
        if let Some(name) = names.get(&r.region.start) {
            r.region.name.clone_from(name);
        }
    }
    Ok(())
}
