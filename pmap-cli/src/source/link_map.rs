//! The dynamic linker's link map (`pmap -l`): the names the objects were
//! loaded by (`libz.so.1`, `linux-vdso.so.1`), as glibc's `ld.so` keeps them
//! for debuggers in `struct r_debug` → `struct link_map` (`<link.h>`).
//!
//! The walk is the debuggers' one: the auxiliary vector's `AT_PHDR` gives the
//! executable's program headers in memory, `PT_PHDR` its load bias,
//! `PT_DYNAMIC` its dynamic section, whose `DT_DEBUG` entry the dynamic
//! linker fills with the address of its `r_debug`. From there the list is
//! followed node by node (and, for `dlmopen` namespaces, `r_next` of
//! `r_debug` version 2). The same walk reads a live process (through
//! `/proc/PID/mem`, [`ProcMem`]) and a core file (its dumped segments, see
//! `core_file::link_map`), behind [`Memory`]. [`assign`] then finds each
//! object's regions.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use std::collections::HashMap;

use super::pid_dir::PidDir;
use crate::map::region::Region;

/// Reads another address space.
pub trait Memory {
    /// Fills `buf` from address `addr`, or fails (unmapped, not dumped...).
    fn read_at(&self, addr: u64, buf: &mut [u8]) -> io::Result<()>;
}

/// One object of the link map.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkObject {
    /// `l_name`: the name the object was loaded by; empty for the executable.
    pub name: Vec<u8>,
    /// `l_addr`: the load bias.
    pub base: u64,
    /// `l_ld`: the address of the object's dynamic section, which lies in
    /// one of its mappings: how its regions are found.
    pub dynamic: u64,
}

/// Why there is no link map to show.
#[derive(Debug)]
pub enum WalkError {
    /// The auxiliary vector lacks `AT_PHDR`/`AT_PHNUM`.
    NoAuxv,
    /// The executable has no dynamic section: statically linked.
    Static,
    /// `DT_DEBUG` is absent or still 0: the dynamic linker has not run yet.
    NoDebug,
    /// A read of the address space failed.
    Read {
        what: &'static str,
        addr: u64,
        err: io::Error,
    },
}

impl std::fmt::Display for WalkError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WalkError::NoAuxv => write!(f, "the auxiliary vector has no AT_PHDR"),
            WalkError::Static => write!(
                f,
                "the executable is statically linked (no dynamic section, so no link map)"
            ),
            WalkError::NoDebug => write!(
                f,
                "the executable's DT_DEBUG entry is empty (the dynamic linker has not run yet)"
            ),
            WalkError::Read { what, addr, err } => {
                write!(f, "cannot read {what} at {addr:#x}: {err}")
            }
        }
    }
}

const AT_PHDR: u64 = 3;
const AT_PHENT: u64 = 4;
const AT_PHNUM: u64 = 5;
const PT_DYNAMIC: u32 = 2;
const PT_PHDR: u32 = 6;
const DT_NULL: u64 = 0;
const DT_DEBUG: u64 = 21;
/// Bounds against a damaged or hostile address space.
const MAX_OBJECTS: usize = 65_536;
const MAX_NAMESPACES: usize = 64;
const MAX_DYNAMIC: u64 = 1 << 20;
const MAX_NAME: usize = 4096;

fn u64_at(b: &[u8], off: usize) -> u64 {
    b.get(off..off + 8)
        .map_or(0, |s| u64::from_ne_bytes(s.try_into().unwrap_or_default()))
}

fn read(mem: &dyn Memory, what: &'static str, addr: u64, len: usize) -> Result<Vec<u8>, WalkError> {
    let mut buf = vec![0; len];
    mem.read_at(addr, &mut buf)
        .map_err(|err| WalkError::Read { what, addr, err })?;
    Ok(buf)
}

/// Walks the link map of the address space `mem` whose auxiliary vector
/// is `auxv` ((type, value) pairs), in the dynamic linker's order.
pub fn walk(mem: &dyn Memory, auxv: &[(u64, u64)]) -> Result<Vec<LinkObject>, WalkError> {
    let aux = |t: u64| auxv.iter().find(|&&(k, _)| k == t).map(|&(_, v)| v);
    let (Some(phdr), Some(phnum)) = (aux(AT_PHDR), aux(AT_PHNUM)) else {
        return Err(WalkError::NoAuxv);
    };
    let phent = aux(AT_PHENT).unwrap_or(56).max(56);
    let len = usize::try_from(phent * phnum.min(4096)).unwrap_or(0);
    let headers = read(mem, "the executable's program headers", phdr, len)?;
    let mut bias = None;
    let mut dynamic = None;
    for h in headers.chunks_exact(phent as usize) {
        let p_type = u32::from_ne_bytes(h[0..4].try_into().unwrap_or_default());
        let (vaddr, memsz) = (u64_at(h, 16), u64_at(h, 40));
        match p_type {
            PT_PHDR => bias = Some(phdr.wrapping_sub(vaddr)),
            PT_DYNAMIC => dynamic = Some((vaddr, memsz)),
            _ => {}
        }
    }
    let (vaddr, memsz) = dynamic.ok_or(WalkError::Static)?;
    // Without PT_PHDR the executable is not position-independent: no bias.
    let at = bias.unwrap_or(0).wrapping_add(vaddr);
    let raw = read(
        mem,
        "the executable's dynamic section",
        at,
        usize::try_from(memsz.min(MAX_DYNAMIC)).unwrap_or(0),
    )?;
    let r_debug = raw
        .chunks_exact(16)
        .map(|e| (u64_at(e, 0), u64_at(e, 8)))
        .take_while(|&(tag, _)| tag != DT_NULL)
        .find(|&(tag, _)| tag == DT_DEBUG)
        .map(|(_, v)| v)
        .filter(|&v| v != 0)
        .ok_or(WalkError::NoDebug)?;

    let mut objects = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut namespace = r_debug;
    for _ in 0..MAX_NAMESPACES {
        // r_version@0 (int), r_map@8, r_brk@16, r_state@24, r_ldbase@32;
        // version 2 (`r_debug_extended`) adds r_next@40.
        let rd = read(mem, "the dynamic linker's r_debug", namespace, 40)?;
        let version = u32::from_ne_bytes(rd[0..4].try_into().unwrap_or_default());
        let mut node = u64_at(&rd, 8);
        while node != 0 && objects.len() < MAX_OBJECTS && seen.insert(node) {
            // l_addr@0, l_name@8, l_ld@16, l_next@24, l_prev@32.
            let lm = read(mem, "a link_map entry", node, 32)?;
            objects.push(LinkObject {
                name: read_c_string(mem, u64_at(&lm, 8)),
                base: u64_at(&lm, 0),
                dynamic: u64_at(&lm, 16),
            });
            node = u64_at(&lm, 24);
        }
        if version < 2 {
            break;
        }
        namespace = read(mem, "r_debug_extended.r_next", namespace + 40, 8)
            .map(|b| u64_at(&b, 0))
            .unwrap_or(0);
        if namespace == 0 {
            break;
        }
    }
    Ok(objects)
}

/// A NUL-terminated string at `addr`, read a page at most at a time so
/// that a name near the end of a mapping is still read; empty if unreadable.
pub fn read_c_string(mem: &dyn Memory, addr: u64) -> Vec<u8> {
    let mut out = Vec::new();
    let mut at = addr;
    while addr != 0 && out.len() < MAX_NAME {
        let chunk = usize::try_from(4096 - at % 4096).unwrap_or(4096);
        let mut buf = vec![0; chunk.min(MAX_NAME - out.len())];
        if mem.read_at(at, &mut buf).is_err() {
            return Vec::new();
        }
        if let Some(nul) = buf.iter().position(|&c| c == 0) {
            out.extend_from_slice(&buf[..nul]);
            return out;
        }
        out.extend_from_slice(&buf);
        at += buf.len() as u64;
    }
    out
}

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

/// A live process's memory, through its held `/proc/PID/mem`.
pub struct ProcMem(File);

impl Memory for ProcMem {
    fn read_at(&self, addr: u64, buf: &mut [u8]) -> io::Result<()> {
        // Unmapped addresses fail with EIO; a short read means the end of
        // a mapping.
        self.0.read_exact_at(buf, addr)
    }
}

/// Why a live process's link map could not be read.
#[derive(Debug)]
pub enum LiveError {
    /// `/proc/PID/mem` or `auxv` was refused or unreadable.
    Access {
        file: &'static str,
        err: io::Error,
    },
    Walk(WalkError),
}

impl std::fmt::Display for LiveError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LiveError::Access { file, err } => {
                write!(
                    f,
                    "cannot read the dynamic linker's link map: /proc/PID/{file}: {err}"
                )?;
                if matches!(err.kind(), io::ErrorKind::PermissionDenied)
                    || err.raw_os_error() == Some(libc::EPERM)
                {
                    write!(
                        f,
                        " (reading another process's memory needs ptrace access to it: run pmap as \
                         the process's owner, as root or with CAP_SYS_PTRACE; under Yama \
                         ptrace_scope 1 only root or a parent may, see \
                         /proc/sys/kernel/yama/ptrace_scope; without -l the names are shown resolved)"
                    )?;
                }
                Ok(())
            }
            LiveError::Walk(e) => write!(f, "cannot read the dynamic linker's link map: {e}"),
        }
    }
}

/// Reads the link map of the process held by `dir`. A statically linked
/// process, or one the dynamic linker has not started yet, has none: an
/// empty list, not an error.
pub fn read_live(dir: &PidDir) -> Result<Vec<LinkObject>, LiveError> {
    let access = |file: &'static str| move |err| LiveError::Access { file, err };
    let auxv = dir.read("auxv").map_err(access("auxv"))?;
    let mem = ProcMem(dir.open_file("mem").map_err(access("mem"))?);
    let auxv = crate::source::core_file::notes::auxv(&auxv);
    // A running process may be inside dlopen/dlclose, its list half
    // updated: a walk that fails to read is tried again.
    let mut result = walk(&mem, &auxv);
    for _ in 0..2 {
        if !matches!(&result, Err(WalkError::Read { err, .. }) if err.kind() != io::ErrorKind::PermissionDenied)
        {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
        result = walk(&mem, &auxv);
    }
    match result {
        Ok(objects) => Ok(objects),
        Err(WalkError::Static | WalkError::NoDebug) => Ok(Vec::new()),
        Err(WalkError::Read { err, .. })
            if err.kind() == io::ErrorKind::PermissionDenied
                || err.raw_os_error() == Some(libc::EPERM) =>
        {
            Err(LiveError::Access { file: "mem", err })
        }
        Err(e) => Err(LiveError::Walk(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake address space: (address, bytes) blocks.
    struct Fake(Vec<(u64, Vec<u8>)>);

    impl Memory for Fake {
        fn read_at(&self, addr: u64, buf: &mut [u8]) -> io::Result<()> {
            for (at, bytes) in &self.0 {
                if addr >= *at && addr + buf.len() as u64 <= at + bytes.len() as u64 {
                    let o = (addr - at) as usize;
                    buf.copy_from_slice(&bytes[o..o + buf.len()]);
                    return Ok(());
                }
            }
            Err(io::Error::from_raw_os_error(libc::EIO))
        }
    }

    fn words(w: &[u64]) -> Vec<u8> {
        w.iter().flat_map(|v| v.to_ne_bytes()).collect()
    }

    fn phdr(p_type: u32, vaddr: u64, memsz: u64) -> Vec<u8> {
        let mut h = vec![0u8; 56];
        h[0..4].copy_from_slice(&p_type.to_ne_bytes());
        h[16..24].copy_from_slice(&vaddr.to_ne_bytes());
        h[40..48].copy_from_slice(&memsz.to_ne_bytes());
        h
    }

    #[test]
    fn walks_a_pie_link_map() {
        let bias = 0x5555_0000_0000;
        let headers = [phdr(PT_PHDR, 0x40, 112), phdr(PT_DYNAMIC, 0x3000, 48)].concat();
        let mem = Fake(vec![
            (bias + 0x40, headers),
            (bias + 0x3000, words(&[1, 5, DT_DEBUG, 0x9000, 0, 0])),
            (0x9000, words(&[1, 0xa000, 0, 0, 0])),
            (0xa000, words(&[bias, 0xb000, bias + 0x3000, 0xa100])),
            (0xa100, words(&[0x7f00_0000, 0xb100, 0x7f00_1000, 0])),
            // Names are read up to the end of their page.
            (0xb000, vec![0; 256]),
            (
                0xb100,
                [&b"/lib/libz.so.1\0"[..], &[0xee; 4096 - 0x100 - 15]].concat(),
            ),
        ]);
        let got = walk(&mem, &[(AT_PHDR, bias + 0x40), (AT_PHNUM, 2)]).expect("walk");
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].name, b"");
        assert_eq!(got[1].name, b"/lib/libz.so.1");
        assert_eq!(got[1].dynamic, 0x7f00_1000);
    }

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
    fn a_refused_read_says_why_and_what_to_do() {
        let e = LiveError::Access {
            file: "mem",
            err: io::Error::from_raw_os_error(libc::EACCES),
        };
        let msg = e.to_string();
        assert!(msg.contains("/proc/PID/mem: Permission denied"), "{msg}");
        assert!(
            msg.contains("ptrace access") && msg.contains("CAP_SYS_PTRACE"),
            "{msg}"
        );
    }

    #[test]
    fn static_and_unstarted_and_cycles() {
        let headers = [phdr(PT_PHDR, 0x40, 56)].concat();
        let mem = Fake(vec![(0x40, headers)]);
        let aux = [(AT_PHDR, 0x40), (AT_PHNUM, 1)];
        assert!(matches!(walk(&mem, &aux), Err(WalkError::Static)));
        assert!(matches!(walk(&mem, &[]), Err(WalkError::NoAuxv)));

        let headers = [phdr(PT_PHDR, 0x40, 112), phdr(PT_DYNAMIC, 0x3000, 32)].concat();
        let unstarted = Fake(vec![
            (0x40, headers.clone()),
            (0x3000, words(&[DT_DEBUG, 0, 0, 0])),
        ]);
        let aux = [(AT_PHDR, 0x40), (AT_PHNUM, 2)];
        assert!(matches!(walk(&unstarted, &aux), Err(WalkError::NoDebug)));

        // A list that loops back on itself ends at the first repeat.
        let looped = Fake(vec![
            (0x40, headers),
            (0x3000, words(&[DT_DEBUG, 0x9000, 0, 0])),
            (0x9000, words(&[1, 0xa000, 0, 0, 0])),
            (0xa000, words(&[0, 0, 0, 0xa000])),
        ]);
        assert_eq!(walk(&looped, &aux).expect("walk").len(), 1);
    }
}
