//! Whether a failed read means the process is gone. Two errors say so,
//! and they say different things, so each has its name:
//! - ESRCH: the address space is gone. A `maps`/`smaps` file (or a
//!   `PROCMAP_QUERY`) opened while the process lived fails so once it has
//!   exited or replaced its program; the process itself may still be there
//!   (a zombie, or the new program).
//! - ENOENT: the process is gone. A file opened through its held
//!   `/proc/PID` directory fails so once it has been reaped, whoever has
//!   its id by then.

use std::io;

/// ESRCH: the address space the file was opened on is gone.
pub fn address_space_gone(e: &io::Error) -> bool {
    e.raw_os_error() == Some(libc::ESRCH)
}

/// ENOENT (through a held `/proc/PID`): the process has been reaped.
pub fn process_reaped(e: &io::Error) -> bool {
    e.raw_os_error() == Some(libc::ENOENT)
}

/// Either: what was being read of the process will not be read whole.
pub fn gone(e: &io::Error) -> bool {
    address_space_gone(e) || process_reaped(e)
}
