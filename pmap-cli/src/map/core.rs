//! What pmap knows of a process from its ELF core file: the mappings
//! (`PT_LOAD` and `NT_FILE`), the process (`NT_PRPSINFO`) and its threads
//! (`NT_PRSTATUS`). Data only: `source::core_file` reads it, `render`
//! prints it.

use std::path::PathBuf;

use crate::map::region::Region;

/// `struct elf_prpsinfo` on 64-bit Linux.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CoreProcess {
    pub pid: u32,
    pub ppid: u32,
    pub uid: u32,
    pub gid: u32,
    /// `pr_sname`: the state letter (`R`, `S`, `T`...).
    pub state: char,
    /// `pr_fname`: the command name (at most 15 bytes).
    pub fname: Vec<u8>,
    /// `pr_psargs`: the command line, arguments joined by spaces, at most 80 bytes.
    pub psargs: Vec<u8>,
}

/// One `struct elf_prstatus`: one thread.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CoreThread {
    pub tid: u32,
    /// The signal being delivered when the core was written (0 for gcore).
    pub signal: u16,
    /// The stack pointer register.
    pub sp: Option<u64>,
}

/// One mapping of the core.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CoreRegion {
    /// Address, size, `rwx`, file offset and name. The shared flag is only
    /// set where the name proves it (SysV shm, shared anonymous memory);
    /// device and inode are always 0 (a core does not record them).
    pub region: Region,
    /// Bytes of this mapping stored in the core file.
    pub dumped: u64,
    /// Listed in `NT_FILE` (backed by a file).
    pub file_backed: bool,
}

/// What pmap reads from a core.
#[derive(Clone, Debug, Default)]
pub struct Core {
    pub path: PathBuf,
    pub process: CoreProcess,
    /// From `NT_PRSTATUS`, in the order the writer put them (the kernel puts
    /// the thread that dumped first).
    pub threads: Vec<CoreThread>,
    pub regions: Vec<CoreRegion>,
    /// Page size from `AT_PAGESZ` (4096 if the core does not say).
    pub page_size: u64,
    /// The command line for the header, escaped (see `cmdline`).
    pub cmdline: Vec<u8>,
}

impl Core {
    /// The command line with its arguments, as the live header has it.
    pub fn command(&self) -> &[u8] {
        &self.cmdline
    }
}
