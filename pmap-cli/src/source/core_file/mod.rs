//! `pmap CORE`: the memory map recorded in an ELF core file (written by the
//! kernel on a crash or by gdb's `gcore`).
//!
//! A core records each mapping's address, size and `rwx` permissions
//! (`PT_LOAD`), the file and offset of file-backed mappings (`NT_FILE`), the
//! process (`NT_PRPSINFO`), its threads (`NT_PRSTATUS`) and its auxiliary
//! vector (`NT_AUXV`). It does not record whether a mapping was shared, its
//! device and inode, or anything resident/dirty/swapped: those columns are
//! what `render::core_file` documents as unavailable.

mod cmdline;
mod elf;
pub mod link_map;
mod memory;
pub mod notes;

use std::fmt;
use std::path::{Path, PathBuf};

use crate::map::region::{Perms, Region};
use notes::FileMapping;

use crate::map::core::{Core, CoreRegion};

/// Why a file could not be read as a core. Each message says what to do.
#[derive(Debug)]
pub enum CoreProblem {
    Open(std::io::Error),
    Read(std::io::Error),
    NotElf,
    NotCore(u16),
    OtherMachine(String),
    Truncated(String),
    Malformed(String),
}

impl fmt::Display for CoreProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CoreProblem::Open(e) => write!(f, "cannot open: {e}"),
            CoreProblem::Read(e) => write!(f, "cannot read: {e}"),
            CoreProblem::NotElf => write!(
                f,
                "not an ELF file, so not a core file (give a PID or a core written by the kernel or gcore)"
            ),
            CoreProblem::NotCore(t) => write!(
                f,
                "an ELF {}, not a core file (give a core written by the kernel or gcore)",
                match *t {
                    object::elf::ET_EXEC => "executable".to_string(),
                    object::elf::ET_DYN => "shared object or executable".to_string(),
                    object::elf::ET_REL => "object file".to_string(),
                    t => format!("file of type {t}"),
                }
            ),
            CoreProblem::OtherMachine(what) => write!(
                f,
                "{what}, but this pmap reads cores of {} (read it on a machine of that kind)",
                std::env::consts::ARCH
            ),
            CoreProblem::Truncated(what) => write!(
                f,
                "truncated core file: {what} (raise `ulimit -c` or free disk space, then dump it again)"
            ),
            CoreProblem::Malformed(what) => write!(f, "damaged core file: {what}"),
        }
    }
}

/// A core file that failed to read, for the one-line error `pmap` prints.
#[derive(Debug)]
pub struct CoreError {
    pub path: PathBuf,
    pub problem: CoreProblem,
}

impl fmt::Display for CoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.problem)
    }
}

impl std::error::Error for CoreError {}

/// Reads the core at `path`.
pub fn read(path: &Path) -> Result<Core, CoreError> {
    read_inner(path).map_err(|problem| CoreError {
        path: path.to_path_buf(),
        problem,
    })
}

fn read_inner(path: &Path) -> Result<Core, CoreProblem> {
    let raw = elf::read(path)?;
    let mut process = None;
    let mut threads = Vec::new();
    let mut files: Vec<FileMapping> = Vec::new();
    let mut auxv = Vec::new();
    for note in &raw.notes {
        if note.name != b"CORE" {
            continue;
        }
        let bad = |what: &str| CoreProblem::Malformed(format!("{what} note is too short"));
        match note.n_type {
            object::elf::NT_PRPSINFO => {
                process = Some(notes::prpsinfo(&note.desc).ok_or_else(|| bad("NT_PRPSINFO"))?)
            }
            object::elf::NT_PRSTATUS => {
                threads.push(notes::prstatus(&note.desc).ok_or_else(|| bad("NT_PRSTATUS"))?)
            }
            object::elf::NT_FILE => {
                files = notes::nt_file(&note.desc).ok_or_else(|| bad("NT_FILE"))?
            }
            object::elf::NT_AUXV => auxv = notes::auxv(&note.desc),
            _ => {}
        }
    }
    let process = process.ok_or_else(|| {
        CoreProblem::Malformed("no NT_PRPSINFO note (which process this was)".into())
    })?;
    let aux = |t: u64| auxv.iter().find(|&&(k, _)| k == t).map(|&(_, v)| v);
    // Where procps finds `[ stack ]`: the region holding the initial stack.
    // AT_EXECFN points into it; the main thread's stack pointer is the fallback.
    let main_sp = threads
        .iter()
        .find(|t| t.tid == process.pid)
        .or(threads.first())
        .and_then(|t| t.sp);
    let stack_probe = aux(notes::AT_EXECFN).or(main_sp);
    let vdso = aux(notes::AT_SYSINFO_EHDR);

    files.sort_by_key(|f| f.start);
    let mut regions = Vec::with_capacity(raw.segments.len());
    for seg in &raw.segments {
        let start = seg.vaddr;
        let end = seg.vaddr.saturating_add(seg.memsz);
        let file = lookup(&files, start);
        let name: Vec<u8> = match file {
            Some(f) => escape_name(&f.name),
            None if Some(start) == vdso => b"[vdso]".to_vec(),
            None if stack_probe.is_some_and(|p| (start..end).contains(&p)) => b"[stack]".to_vec(),
            None if cfg!(target_arch = "x86_64") && start == 0xffff_ffff_ff60_0000 => {
                b"[vsyscall]".to_vec()
            }
            None => Vec::new(),
        };
        let shared =
            file.is_some_and(|f| f.name.starts_with(b"/SYSV") || f.name.starts_with(b"/dev/zero"));
        let flag = |bit: u32, c: u8| if seg.flags & bit != 0 { c } else { b'-' };
        let perms = Perms([
            flag(object::elf::PF_R, b'r'),
            flag(object::elf::PF_W, b'w'),
            flag(object::elf::PF_X, b'x'),
            if shared { b's' } else { b'p' },
        ]);
        regions.push(CoreRegion {
            region: Region {
                start,
                end,
                perms,
                offset: file.map_or(0, |f| f.offset.saturating_add(start - f.start)),
                dev_major: 0,
                dev_minor: 0,
                inode: 0,
                name,
            },
            dumped: seg.filesz,
            file_backed: file.is_some(),
        });
    }
    add_undumped_files(&mut regions, &files);
    let cmdline = cmdline::command(memory::CoreMem::open(path).ok().as_ref(), &process);
    Ok(Core {
        path: path.to_path_buf(),
        process,
        threads,
        regions,
        page_size: aux(notes::AT_PAGESZ).unwrap_or(4096),
        cmdline,
    })
}

/// gcore leaves out mappings it chose not to dump (no `PT_LOAD` at all),
/// but `NT_FILE` still lists the file-backed ones: add those, with `???`
/// permissions since only `PT_LOAD` records them.
fn add_undumped_files(regions: &mut Vec<CoreRegion>, files: &[FileMapping]) {
    let mut extra = Vec::new();
    for f in files {
        // Regions are sorted and disjoint: walk those overlapping the file
        // mapping and keep the gaps.
        let mut at = f.start;
        let first = regions.partition_point(|r| r.region.end <= f.start);
        for r in regions[first..]
            .iter()
            .take_while(|r| r.region.start < f.end)
        {
            if r.region.start > at {
                extra.push((at, r.region.start, f));
            }
            at = at.max(r.region.end);
        }
        if at < f.end {
            extra.push((at, f.end, f));
        }
    }
    for (start, end, f) in extra {
        regions.push(CoreRegion {
            region: Region {
                start,
                end,
                perms: Perms(*b"???p"),
                // Offsets come from the file: a hostile one must not overflow.
                offset: f.offset.saturating_add(start - f.start),
                dev_major: 0,
                dev_minor: 0,
                inode: 0,
                name: escape_name(&f.name),
            },
            dumped: 0,
            file_backed: true,
        });
    }
    regions.sort_by_key(|r| r.region.start);
}

/// The `NT_FILE` entry covering `addr` (entries are sorted and disjoint).
fn lookup(files: &[FileMapping], addr: u64) -> Option<&FileMapping> {
    let i = files.partition_point(|f| f.start <= addr);
    files[..i].last().filter(|f| addr < f.end)
}

/// `NT_FILE` names are raw; `/proc/PID/maps` escapes newlines as `\012`.
/// Escape the same way so every printer can treat both alike.
fn escape_name(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    for &c in raw {
        if c == b'\n' {
            out.extend_from_slice(b"\\012");
        } else {
            out.push(c);
        }
    }
    out
}
