//! A core's address space, for what pmap reads from a core beyond its
//! headers (the link map for `-l`, the command line on the stack): its
//! dumped segments, then, for what a core left out but a file mapping holds
//! unchanged (read-only file pages), the file `NT_FILE` names, if it is
//! still there.

use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;

use super::elf::{self, Segment};
use super::notes::{self, FileMapping};
use crate::source::link_map::Memory;

pub struct CoreMem {
    core: File,
    pub segments: Vec<Segment>,
    files: Vec<FileMapping>,
    /// `NT_AUXV`: (type, value) pairs.
    pub auxv: Vec<(u64, u64)>,
    /// The raw `NT_AUXV` bytes, as they also lie on the initial stack.
    pub auxv_raw: Vec<u8>,
}

impl CoreMem {
    /// Opens the core at `path` (headers and notes only).
    pub fn open(path: &Path) -> Result<CoreMem, String> {
        let raw = elf::read(path).map_err(|e| e.to_string())?;
        let mut files = Vec::new();
        let mut auxv_raw = Vec::new();
        for note in raw.notes.iter().filter(|n| n.name == b"CORE") {
            match note.n_type {
                object::elf::NT_FILE => files = notes::nt_file(&note.desc).unwrap_or_default(),
                object::elf::NT_AUXV => auxv_raw.clone_from(&note.desc),
                _ => {}
            }
        }
        Ok(CoreMem {
            core: File::open(path).map_err(|e| e.to_string())?,
            segments: raw.segments,
            files,
            auxv: notes::auxv(&auxv_raw),
            auxv_raw,
        })
    }

    /// The dumped bytes of the segment holding `addr`, and its start.
    pub fn segment_bytes(&self, addr: u64) -> Option<(u64, Vec<u8>)> {
        let s = self
            .segments
            .iter()
            .find(|s| s.vaddr <= addr && addr < s.vaddr.saturating_add(s.filesz))?;
        let mut buf = vec![0; usize::try_from(s.filesz.min(64 << 20)).ok()?];
        self.core.read_exact_at(&mut buf, s.offset).ok()?;
        Some((s.vaddr, buf))
    }
}

impl Memory for CoreMem {
    fn read_at(&self, addr: u64, buf: &mut [u8]) -> io::Result<()> {
        let end = addr
            .checked_add(buf.len() as u64)
            .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
        if let Some(s) = self
            .segments
            .iter()
            .find(|s| s.vaddr <= addr && end <= s.vaddr.saturating_add(s.filesz))
        {
            return self
                .core
                .read_exact_at(buf, s.offset.saturating_add(addr - s.vaddr));
        }
        if let Some(f) = self.files.iter().find(|f| f.start <= addr && end <= f.end) {
            // Non-blocking, and only a regular file: a core names any path,
            // and opening a FIFO or a device could hang or mean nothing.
            let file = std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(OsStr::from_bytes(&f.name))?;
            if !file.metadata()?.is_file() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "the mapped file is not a regular file",
                ));
            }
            return file.read_exact_at(buf, f.offset.saturating_add(addr - f.start));
        }
        Err(io::Error::new(
            io::ErrorKind::NotFound,
            "neither dumped in the core nor in a file mapping",
        ))
    }
}
