//! `-l` (Solaris: "unresolved dynamic linker map names"): each loaded
//! object's regions are named by the name the dynamic linker loaded it by
//! (its link map, `proc::link_map`), `libz.so.1` for the file
//! `libz.so.1.2.13`, `linux-vdso.so.1` for the vDSO. Regions of no object
//! (the executable, whose link-map name is empty, heap, stacks, anonymous
//! memory) keep their names.

use std::collections::HashMap;
use std::io;

use crate::proc::link_map::LinkObject;
use crate::region::Region;

/// What identifies the object's file among the regions: device and inode
/// where known (live), else the path (core files record no inode), else
/// only the region itself (the vDSO).
#[derive(PartialEq, Eq)]
enum Key<'a> {
    Inode(u32, u32, u64),
    Path(&'a [u8]),
    Only(u64),
}

fn key(r: &Region) -> Key<'_> {
    if r.inode != 0 {
        Key::Inode(r.dev_major, r.dev_minor, r.inode)
    } else if r.name.starts_with(b"/") {
        Key::Path(&r.name)
    } else {
        Key::Only(r.start)
    }
}

/// The link-map name of each region that belongs to a loaded object, by
/// region start. An object's regions are those of the file that holds its
/// dynamic section (`l_ld`).
pub fn assign<'a>(
    objects: &[LinkObject],
    regions: impl Iterator<Item = &'a Region>,
) -> HashMap<u64, Vec<u8>> {
    let sorted: Vec<&Region> = regions.collect();
    let mut out = HashMap::new();
    for o in objects.iter().filter(|o| !o.name.is_empty()) {
        let Some(home) = sorted
            .iter()
            .find(|r| (r.start..r.end).contains(&o.dynamic))
        else {
            continue;
        };
        let k = key(home);
        for r in sorted.iter().filter(|r| key(r) == k) {
            out.entry(r.start).or_insert_with(|| o.name.clone());
        }
    }
    out
}

/// The Mapping column for a link-map name: as procps shows file names (the
/// part after the last `/`, the whole path with `-p`), a name without `/`
/// (`linux-vdso.so.1`, a bare soname) as it is; bytes that are not
/// printable ASCII as `?`, as the live tables print them.
pub fn display(name: &[u8], show_path: bool) -> Vec<u8> {
    let mut scratch = Vec::new();
    let name = crate::format::names::sanitize(name, &mut scratch);
    match memchr::memrchr(b'/', name) {
        Some(last) if !show_path && last + 1 < name.len() => name[last + 1..].to_vec(),
        _ => name.to_vec(),
    }
}

/// The link-map names of a live process's regions; an error (refused
/// `/proc/PID/mem`, a damaged list) says what failed, why and what to do.
pub fn live(snap: &super::Snapshot) -> io::Result<HashMap<u64, Vec<u8>>> {
    let objects = crate::proc::link_map::read_live(&snap.dir).map_err(|e| {
        let kind = match &e {
            crate::proc::link_map::LiveError::Access { err, .. } => err.kind(),
            _ => io::ErrorKind::InvalidData,
        };
        io::Error::new(kind, format!("-l: {e}"))
    })?;
    Ok(assign(&objects, snap.entries.iter().map(|e| &e.region)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn region(start: u64, end: u64, inode: u64, name: &str) -> Region {
        Region {
            start,
            end,
            inode,
            name: name.as_bytes().to_vec(),
            ..Region::default()
        }
    }

    #[test]
    fn objects_name_the_regions_of_their_file() {
        let regions = [
            region(0x1000, 0x2000, 7, "/usr/bin/app"),
            region(0x10000, 0x11000, 9, "/usr/lib/libz.so.1.2.13"),
            region(0x11000, 0x12000, 9, "/usr/lib/libz.so.1.2.13"),
            region(0x12000, 0x13000, 0, ""),
            region(0x20000, 0x22000, 0, "[vdso]"),
            region(0x30000, 0x31000, 0, "/core/lib/libc.so.6"),
            region(0x31000, 0x32000, 0, "/core/lib/libc.so.6"),
        ];
        let obj = |name: &str, dynamic| LinkObject {
            name: name.as_bytes().to_vec(),
            base: 0,
            dynamic,
        };
        let objects = [
            obj("", 0x1800),
            obj("/lib/libz.so.1", 0x11800),
            obj("linux-vdso.so.1", 0x21000),
            obj("/lib/libc.so.6", 0x31800),
            obj("/gone.so", 0x90000),
        ];
        let got = assign(&objects, regions.iter());
        assert_eq!(got.get(&0x1000), None);
        assert_eq!(got[&0x10000], b"/lib/libz.so.1");
        assert_eq!(got[&0x11000], b"/lib/libz.so.1");
        assert_eq!(got.get(&0x12000), None);
        assert_eq!(got[&0x20000], b"linux-vdso.so.1");
        assert_eq!(got[&0x30000], b"/lib/libc.so.6");
        assert_eq!(got.len(), 5);
    }

    #[test]
    fn display_like_procps_names() {
        assert_eq!(display(b"/lib/libz.so.1", false), b"libz.so.1");
        assert_eq!(display(b"/lib/libz.so.1", true), b"/lib/libz.so.1");
        assert_eq!(display(b"linux-vdso.so.1", false), b"linux-vdso.so.1");
        assert_eq!(display(b"/lib/caf\xc3\xa9.so", false), b"caf??.so");
    }
}
