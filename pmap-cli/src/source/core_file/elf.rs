//! The ELF layer of a core file: header checks, `PT_LOAD` segments and the
//! `PT_NOTE` notes. Only headers and notes are read (through a read cache), so
//! a multi-gigabyte core costs a few small reads.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use object::elf;
use object::read::ReadCache;
use object::read::elf::{FileHeader, ProgramHeader};
use object::{Endianness, ReadRef};

use super::CoreProblem;

/// The machine this pmap reads cores of: the note layouts below
/// (`elf_prstatus`, `elf_prpsinfo`) are those of this architecture.
#[cfg(target_arch = "x86_64")]
pub const HOST_MACHINE: u16 = elf::EM_X86_64;
#[cfg(target_arch = "aarch64")]
pub const HOST_MACHINE: u16 = elf::EM_AARCH64;
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
pub const HOST_MACHINE: u16 = 0xffff;

/// One `PT_LOAD` program header: a mapping of the process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Segment {
    pub vaddr: u64,
    pub memsz: u64,
    /// Bytes of this mapping stored in the core (0 when the kernel or gdb
    /// left it out, e.g. read-only file mappings under the default
    /// `coredump_filter`).
    pub filesz: u64,
    pub offset: u64,
    /// `PF_R`/`PF_W`/`PF_X`.
    pub flags: u32,
}

/// A note of the core, with its owner name (`CORE`, `LINUX`...) and type.
pub struct RawNote {
    pub name: Vec<u8>,
    pub n_type: u32,
    pub desc: Vec<u8>,
}

pub struct RawCore {
    pub segments: Vec<Segment>,
    pub notes: Vec<RawNote>,
}

const EHDR_SIZE: usize = 64;

/// Reads the segments and notes of the 64-bit ELF core at `path`, checking
/// that it is a core of this machine and complete.
pub fn read(path: &Path) -> Result<RawCore, CoreProblem> {
    let mut file = File::open(path).map_err(CoreProblem::Open)?;
    let len = file.metadata().map_err(CoreProblem::Open)?.len();
    let mut ident = [0u8; EHDR_SIZE];
    let got = read_up_to(&mut file, &mut ident).map_err(CoreProblem::Read)?;
    check_ident(&ident[..got])?;

    let cache = ReadCache::new(file);
    let header = elf::FileHeader64::<Endianness>::parse(&cache)
        .map_err(|e| CoreProblem::Malformed(format!("ELF header: {e}")))?;
    let endian = header
        .endian()
        .map_err(|e| CoreProblem::Malformed(format!("ELF header: {e}")))?;
    let e_type = header.e_type(endian);
    if e_type != elf::ET_CORE {
        return Err(CoreProblem::NotCore(e_type));
    }
    let machine = header.e_machine(endian);
    if machine != HOST_MACHINE {
        return Err(CoreProblem::OtherMachine(machine_name(machine)));
    }
    let phoff: u64 = header.e_phoff(endian);
    let phnum = u64::from(header.e_phnum(endian));
    let ph_end = phoff.saturating_add(phnum.saturating_mul(56));
    if ph_end > len {
        return Err(CoreProblem::Truncated(format!(
            "the program headers end at byte {ph_end} but the file has {len} bytes"
        )));
    }
    let phdrs = header
        .program_headers(endian, &cache)
        .map_err(|e| CoreProblem::Malformed(format!("program headers: {e}")))?;

    let mut segments = Vec::new();
    let mut notes = Vec::new();
    for ph in phdrs {
        let (offset, filesz) = (ph.p_offset(endian), ph.p_filesz(endian));
        let end = offset.checked_add(filesz).ok_or_else(|| {
            CoreProblem::Malformed(format!("segment at file offset {offset:#x} overflows"))
        })?;
        match ph.p_type(endian) {
            elf::PT_LOAD => {
                let (vaddr, memsz) = (ph.p_vaddr(endian), ph.p_memsz(endian));
                if vaddr.checked_add(memsz).is_none() {
                    return Err(CoreProblem::Malformed(format!(
                        "segment at {vaddr:#x} of {memsz} bytes wraps around the address space"
                    )));
                }
                if end > len {
                    return Err(CoreProblem::Truncated(format!(
                        "the data of the mapping at {vaddr:#x} ends at byte {end} but the file has {len} bytes"
                    )));
                }
                segments.push(Segment {
                    vaddr,
                    memsz,
                    filesz,
                    offset,
                    flags: ph.p_flags(endian),
                });
            }
            elf::PT_NOTE => {
                if end > len {
                    return Err(CoreProblem::Truncated(format!(
                        "the notes end at byte {end} but the file has {len} bytes"
                    )));
                }
                let mut it = ph
                    .notes(endian, &cache)
                    .map_err(|e| CoreProblem::Malformed(format!("notes: {e}")))?
                    .ok_or_else(|| CoreProblem::Malformed("PT_NOTE without notes".into()))?;
                while let Some(note) = it
                    .next()
                    .map_err(|e| CoreProblem::Malformed(format!("notes: {e}")))?
                {
                    notes.push(RawNote {
                        name: note.name().to_vec(),
                        n_type: note.n_type(endian),
                        desc: note.desc().to_vec(),
                    });
                }
            }
            _ => {}
        }
    }
    // Cores list mappings in address order; keep that even if a writer did not.
    segments.sort_by_key(|s| s.vaddr);
    // Cheap sanity read that the cache really reaches the end of the data
    // (a file that shrank while we read it).
    if let Some(last) = segments
        .iter()
        .map(|s| s.offset.saturating_add(s.filesz))
        .max()
        && last > 0
        && (&cache).read_bytes_at(last - 1, 1).is_err()
    {
        return Err(CoreProblem::Truncated(format!(
            "byte {} cannot be read",
            last - 1
        )));
    }
    Ok(RawCore { segments, notes })
}

fn read_up_to(file: &mut File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match file.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// Checks `e_ident` before handing the header to `object`, so that each kind
/// of wrong file gets its own message.
fn check_ident(ident: &[u8]) -> Result<(), CoreProblem> {
    if ident.len() < 4 || ident[..4] != elf::ELFMAG {
        return Err(CoreProblem::NotElf);
    }
    if ident.len() < EHDR_SIZE {
        return Err(CoreProblem::Truncated(format!(
            "the ELF header has {} of its {EHDR_SIZE} bytes",
            ident.len()
        )));
    }
    match ident[4] {
        elf::ELFCLASS64 => {}
        elf::ELFCLASS32 => {
            return Err(CoreProblem::OtherMachine(
                "a 32-bit ELF file (ELFCLASS32)".into(),
            ));
        }
        c => return Err(CoreProblem::Malformed(format!("unknown ELF class {c}"))),
    }
    let native = if cfg!(target_endian = "little") {
        elf::ELFDATA2LSB
    } else {
        elf::ELFDATA2MSB
    };
    if ident[5] != native {
        return Err(CoreProblem::OtherMachine(
            "an ELF file of the other byte order".into(),
        ));
    }
    Ok(())
}

fn machine_name(m: u16) -> String {
    let name = match m {
        elf::EM_X86_64 => "x86_64",
        elf::EM_AARCH64 => "aarch64",
        elf::EM_386 => "i386",
        elf::EM_ARM => "arm",
        elf::EM_RISCV => "riscv",
        elf::EM_PPC64 => "ppc64",
        elf::EM_S390 => "s390",
        elf::EM_LOONGARCH => "loongarch",
        _ => "",
    };
    if name.is_empty() {
        format!("a core of machine type {m}")
    } else {
        format!("a core of {name} (machine type {m})")
    }
}
