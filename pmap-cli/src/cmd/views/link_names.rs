//! `-l` (Solaris: "unresolved dynamic linker map names"): each loaded
//! object's regions are named by the name the dynamic linker loaded it by
//! (its link map, `proc::link_map`), `libz.so.1` for the file
//! `libz.so.1.2.13`, `linux-vdso.so.1` for the vDSO. Regions of no object
//! (the executable, whose link-map name is empty, heap, stacks, anonymous
//! memory) keep their names.

use std::collections::HashMap;
use std::io;

/// The Mapping column for a link-map name: as procps shows file names (the
/// part after the last `/`, the whole path with `-p`), a name without `/`
/// (`linux-vdso.so.1`, a bare soname) as it is; bytes that are not
/// printable ASCII as `?`, as the live tables print them.
pub fn display(name: &[u8], show_path: bool) -> Vec<u8> {
    let mut scratch = Vec::new();
    let name = crate::render::names::sanitize(name, &mut scratch);
    match crate::sys::bytes::rfind(b'/', name) {
        Some(last) if !show_path && last + 1 < name.len() => name[last + 1..].to_vec(),
        _ => name.to_vec(),
    }
}

/// The link-map names of a live process's regions; an error (refused
/// `/proc/PID/mem`, a damaged list) says what failed, why and what to do.
pub fn live(snap: &super::Snapshot) -> io::Result<HashMap<u64, Vec<u8>>> {
    if snap.entries.is_empty() {
        // A kernel thread (or a range with nothing in it): no objects.
        return Ok(HashMap::new());
    }
    let objects = crate::source::link_map::read_live(&snap.dir).map_err(|e| {
        let kind = match &e {
            crate::source::link_map::LiveError::Access { err, .. } => err.kind(),
            _ => io::ErrorKind::InvalidData,
        };
        io::Error::new(kind, format!("-l: {e}"))
    })?;
    // The whole map, not only the rows `-A` kept: an object's regions are
    // found through the one holding its dynamic section, which may be
    // outside the range.
    let all = crate::source::maps::read(snap.dir.open_file("maps")?)?;
    Ok(crate::source::link_map::assign(&objects, all.iter()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_like_procps_names() {
        assert_eq!(display(b"/lib/libz.so.1", false), b"libz.so.1");
        assert_eq!(display(b"/lib/libz.so.1", true), b"/lib/libz.so.1");
        assert_eq!(display(b"linux-vdso.so.1", false), b"linux-vdso.so.1");
        assert_eq!(display(b"/lib/caf\xc3\xa9.so", false), b"caf??.so");
    }
}
