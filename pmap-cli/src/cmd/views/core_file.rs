//! Running `pmap [options] CORE...`: each core is read and printed in turn;
//! a core that cannot be read gets a one-line error on stderr and the others
//! are still printed; the exit status is 1 if any failed.

use std::io::Write;
use std::path::Path;

use crate::render::core_file::CoreOptions;
use crate::{map::core::Core, source::core_file};

/// Whether `arg` should be read as a core file rather than a PID: it is not a
/// number and names an existing regular file (procps-ng would reject such an
/// argument with its usage text, so no compatible invocation changes).
pub fn is_core_arg(arg: &std::ffi::OsStr) -> bool {
    let b = arg.as_encoded_bytes();
    if b.first().is_some_and(|c| c.is_ascii_digit()) {
        return false;
    }
    std::fs::metadata(arg).is_ok_and(|m| m.is_file())
}

/// Prints each core in `paths` to `out`, errors to `err` (prefixed `pmap: `).
/// Returns whether all were printed.
pub fn print_cores(
    paths: &[&Path],
    opts: &CoreOptions,
    json: bool,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> std::io::Result<bool> {
    let mut ok = true;
    for path in paths {
        match core_file::read(path) {
            Ok(mut core) => {
                if opts.names {
                    label(&mut core);
                }
                if opts.link_names
                    && let Err(why) = crate::source::core_file::link_map::apply(&mut core)
                {
                    out.flush()?;
                    writeln!(err, "pmap: {}: -l: {why}", path.display())?;
                }
                if json {
                    crate::render::core_json::write_core(out, &core, opts)?;
                } else {
                    crate::render::core_file::write(out, &core, opts)?;
                }
            }
            Err(e) => {
                ok = false;
                out.flush()?;
                writeln!(err, "pmap: {e}")?;
            }
        }
    }
    Ok(ok)
}

/// `--names` for a core: the threads' stack pointers come from `NT_PRSTATUS`.
fn label(core: &mut Core) {
    let threads: Vec<(u32, u64)> = core
        .threads
        .iter()
        .filter_map(|t| Some((t.tid, t.sp?)))
        .collect();
    let labels = super::names::label_regions(
        core.regions.iter().map(|r| &r.region).collect(),
        &threads,
        &[],
        false,
    );
    for r in &mut core.regions {
        if let Some(l) = labels.get(&r.region.start) {
            r.region.name.clone_from(l);
        }
    }
}
