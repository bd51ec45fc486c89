//! What `pmap trace --stacks` needs to know about a mapped ELF file: how
//! its file offsets map to the addresses its symbols use, its build id and
//! debug link (to find the separate debug file a `-dbg` package installs),
//! and its call-frame information (`.eh_frame`, `.debug_frame`) for
//! unwinding. Read with `object` from the file, lazily (`ReadCache`): only
//! the headers and the sections wanted are read, not the whole file (node
//! is about 90 MB).

use std::{
    fs::File,
    ops::Range,
    path::{Path, PathBuf},
    rc::Rc,
};

use object::{Object, ObjectSection, ObjectSegment, ReadCache};

use crate::map::region::Region;

/// Where distributions install separate debug files (`libc6-dbg` puts
/// libc's at `/usr/lib/debug/.build-id/xx/yyyy.debug`).
pub const DEFAULT_DEBUG_DIR: &str = "/usr/lib/debug";

/// One section's address range (as linked) and bytes.
#[derive(Clone, Debug)]
pub struct SectionData {
    pub svma: Range<u64>,
    pub data: Rc<[u8]>,
}

/// The facts of one ELF file.
#[derive(Clone, Debug, Default)]
pub struct ElfModule {
    /// `(file offset, address, size, executable)` of each loadable segment.
    segments: Vec<(u64, u64, u64, bool)>,
    pub build_id: Option<Vec<u8>>,
    /// `.gnu_debuglink`'s file name.
    pub debuglink: Option<PathBuf>,
    pub text: Option<Range<u64>>,
    pub got: Option<Range<u64>>,
    pub eh_frame: Option<SectionData>,
    pub eh_frame_hdr: Option<SectionData>,
    pub debug_frame: Option<SectionData>,
}

fn section<'a>(file: &object::File<'a, &'a ReadCache<File>>, name: &str) -> Option<SectionData> {
    let s = file.section_by_name(name)?;
    // A debug file keeps the headers of sections it does not carry
    // (SHT_NOBITS): no bytes, which is the same as none.
    let data = s.data().ok().filter(|d| !d.is_empty())?;
    Some(SectionData {
        svma: s.address()..s.address() + s.size(),
        data: data.into(),
    })
}

fn range<'a>(file: &object::File<'a, &'a ReadCache<File>>, name: &str) -> Option<Range<u64>> {
    let s = file.section_by_name(name)?;
    Some(s.address()..s.address() + s.size())
}

impl ElfModule {
    /// Reads `path`'s headers, ids and (with `unwind`) its call-frame
    /// sections. An error says what failed and why.
    pub fn read(path: &Path, unwind: bool) -> Result<ElfModule, String> {
        let file = File::open(path).map_err(|e| format!("opening {}: {e}", path.display()))?;
        let cache = ReadCache::new(file);
        let elf = object::File::parse(&cache)
            .map_err(|e| format!("reading {} as ELF: {e}", path.display()))?;
        let segments = elf
            .segments()
            .map(|s| {
                let (off, size) = s.file_range();
                let exec = match s.flags() {
                    object::SegmentFlags::Elf { p_flags } => p_flags & object::elf::PF_X != 0,
                    _ => false,
                };
                (off, s.address(), size, exec)
            })
            .collect();
        let debuglink = elf
            .gnu_debuglink()
            .ok()
            .flatten()
            .map(|(name, _crc)| PathBuf::from(String::from_utf8_lossy(name).into_owned()));
        let mut m = ElfModule {
            segments,
            build_id: elf.build_id().ok().flatten().map(<[u8]>::to_vec),
            debuglink,
            text: range(&elf, ".text"),
            got: range(&elf, ".got"),
            ..ElfModule::default()
        };
        if unwind {
            m.eh_frame = section(&elf, ".eh_frame");
            m.eh_frame_hdr = section(&elf, ".eh_frame_hdr");
            m.debug_frame = section(&elf, ".debug_frame");
        }
        Ok(m)
    }

    /// The linked address (what symbol tables and call-frame information
    /// use) of file offset `off` in a mapping that is (or not) executable,
    /// if a loadable segment holds it. Segments share file pages: the page
    /// where the code segment starts is also the end of the read-only one
    /// before it, at another address (lld lays files out so). A segment of
    /// the mapping's kind that holds `off` wins, then one whose first page
    /// holds it (a mapping starts at the page where its segment starts).
    pub fn address_of(&self, off: u64, exec: bool) -> Option<u64> {
        let page = |o: u64| o & !4095;
        let kind = |&&(_, _, _, x): &&(u64, u64, u64, bool)| x == exec;
        let holds = |&&(o, _, size, _): &&(u64, u64, u64, bool)| off >= o && off < o + size;
        let from_page =
            |&&(o, _, size, _): &&(u64, u64, u64, bool)| off >= page(o) && off < o + size;
        let at = |&(o, vaddr, _, _): &(u64, u64, u64, bool)| (vaddr + off).wrapping_sub(o);
        let segs = || self.segments.iter();
        segs()
            .find(|s| kind(s) && holds(s))
            .or_else(|| segs().find(|s| kind(s) && from_page(s)))
            .or_else(|| segs().find(holds))
            .map(at)
    }

    /// The separate debug file of the module at `path`, looked for in
    /// `dirs` as gdb does: by build id (`DIR/.build-id/xx/yyyy.debug`),
    /// then by debug link (beside the file, in its `.debug/`, and in
    /// `DIR/` + the file's directory). A file found by its link whose
    /// build id differs is someone else's and is skipped.
    pub fn debug_file(&self, path: &Path, dirs: &[PathBuf]) -> Option<PathBuf> {
        if let Some(id) = self.build_id.as_deref().filter(|id| id.len() >= 2) {
            let hex: String = id.iter().map(|b| format!("{b:02x}")).collect();
            for d in dirs {
                let p = d
                    .join(".build-id")
                    .join(&hex[..2])
                    .join(format!("{}.debug", &hex[2..]));
                if p.is_file() {
                    return Some(p);
                }
            }
        }
        let link = self.debuglink.as_deref()?;
        let parent = path.parent().unwrap_or(Path::new("/"));
        let mut candidates = vec![parent.join(link), parent.join(".debug").join(link)];
        for d in dirs {
            candidates.push(
                d.join(parent.strip_prefix("/").unwrap_or(parent))
                    .join(link),
            );
        }
        candidates.into_iter().find(|p| {
            p.as_path() != path
                && p.is_file()
                && match (&self.build_id, ElfModule::read(p, false)) {
                    (Some(id), Ok(m)) => m.build_id.as_ref().is_none_or(|other| other == id),
                    (None, Ok(_)) => true,
                    (_, Err(_)) => false,
                }
        })
    }
}

/// The file behind a region: its path if it still names that file, else
/// the kernel's handle on it (`/proc/PID/map_files/..`, works after the
/// file was deleted or in another mount namespace, while the process lives).
pub fn path_of(pid: u32, r: &Region) -> PathBuf {
    let name = String::from_utf8_lossy(&r.name).into_owned();
    let p = PathBuf::from(&name);
    let same = std::fs::metadata(&p).is_ok_and(|m| {
        use std::os::unix::fs::MetadataExt;
        m.ino() == r.inode
    });
    if same {
        return p;
    }
    PathBuf::from(format!("/proc/{pid}/map_files/{:x}-{:x}", r.start, r.end))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_running_test_binary_maps_offsets_to_addresses_and_has_call_frames() {
        let exe = std::env::current_exe().expect("the test binary");
        let m = ElfModule::read(&exe, true).expect("an ELF file");
        let text = m.text.clone().expect("a .text section");
        // Rust builds for Linux keep .eh_frame (panics unwind with it).
        let eh = m.eh_frame.as_ref().expect("an .eh_frame section");
        assert!(!eh.data.is_empty());
        // The first loadable segment starts at file offset 0.
        assert_eq!(m.address_of(0, false), Some(0));
        assert!(text.end > text.start);
        assert!(m.address_of(u64::MAX - 1, false).is_none());
    }

    #[test]
    fn a_file_page_shared_by_two_segments_has_the_address_of_the_mappings_kind() {
        // As lld lays out a PIE: read-only data up to 0x270a60, code from
        // there, one page (0x1000) higher in memory.
        let m = ElfModule {
            segments: vec![
                (0, 0, 0x270a60, false),
                (0x270a60, 0x271a60, 0x7aef40, true),
            ],
            ..ElfModule::default()
        };
        // The code mapping starts at file page 0x270000.
        assert_eq!(m.address_of(0x270000, true), Some(0x271000));
        assert_eq!(m.address_of(0x270000, false), Some(0x270000));
        assert_eq!(m.address_of(0x280000, true), Some(0x281000));
        assert_eq!(m.address_of(0x1000, true), Some(0x1000));
    }

    #[test]
    fn debug_files_are_found_by_build_id_in_the_given_dirs_only() {
        let dir = std::env::temp_dir().join(format!("pmap-debugdir-{}", std::process::id()));
        let m = ElfModule {
            build_id: Some(vec![0xab, 0xcd, 0xef]),
            ..ElfModule::default()
        };
        let want = dir.join(".build-id/ab/cdef.debug");
        std::fs::create_dir_all(want.parent().expect("a parent")).expect("mkdir");
        assert_eq!(
            m.debug_file(Path::new("/x/lib.so"), std::slice::from_ref(&dir)),
            None
        );
        std::fs::write(&want, b"").expect("write");
        let found = m.debug_file(Path::new("/x/lib.so"), std::slice::from_ref(&dir));
        assert_eq!(found, Some(want));
        assert_eq!(m.debug_file(Path::new("/x/lib.so"), &[]), None);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
