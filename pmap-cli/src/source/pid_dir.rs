//! One process's `/proc/PID` directory, held open, so that every file read
//! about it belongs to the same process.
//!
//! A path like `/proc/123/smaps` names whatever process has id 123 when it
//! is opened: if the process exits and a new one takes its id between two
//! reads, the two reads describe different processes. Files opened relative
//! to the directory instead fail (ENOENT) once the process is gone, whoever
//! holds the id by then.

use std::{
    ffi::CString,
    fs::File,
    io::{self, Read},
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
};

use super::stat::StatFacts;

/// Appends what `file` holds, up to `max` bytes, to `buf`: the first read
/// asks for a page, which holds most of `/proc/PID`'s small files whole.
/// (`read_to_end` asks the size first, which `/proc` does not know, then
/// reads 32 bytes at a time: eight system calls for a `stat`, where this
/// makes two.) A read error keeps what was read before it in `buf`.
pub fn read_whole(file: &mut impl Read, buf: &mut Vec<u8>, max: usize) -> io::Result<()> {
    let start = buf.len();
    loop {
        let got = buf.len() - start;
        if got >= max {
            return Ok(());
        }
        let want = (got.max(4096)).min(max - got);
        buf.reserve(want);
        let at = buf.len();
        buf.resize(at + want, 0);
        match file.read(&mut buf[at..]) {
            Ok(n) => {
                buf.truncate(at + n);
                if n == 0 {
                    return Ok(());
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => buf.truncate(at),
            Err(e) => {
                buf.truncate(at);
                return Err(e);
            }
        }
    }
}

/// An open `/proc/PID` directory.
#[derive(Debug)]
pub struct PidDir {
    fd: OwnedFd,
    pid: u32,
}

impl PidDir {
    /// Opens `/proc/PID`; fails with ENOENT if there is no such process.
    pub fn open(pid: u32) -> io::Result<PidDir> {
        let path = CString::new(format!("/proc/{pid}")).map_err(io::Error::other)?;
        // SAFETY: `path` is NUL-terminated; the returned descriptor, if any,
        // is owned by the OwnedFd below and closed once.
        let fd = unsafe {
            libc::open(
                path.as_ptr(),
                libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just opened and nothing else owns it.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(PidDir { fd, pid })
    }

    /// The id the directory was opened by.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Opens `name` (`maps`, `stat`...) of this process for reading. ENOENT
    /// once the process has exited and been reaped, even if its id is reused.
    pub fn open_file(&self, name: &str) -> io::Result<File> {
        let cname = CString::new(name).map_err(io::Error::other)?;
        // SAFETY: the directory descriptor is open for the life of `self`,
        // `cname` is NUL-terminated, and the result is owned by the File.
        let fd = unsafe {
            libc::openat(
                self.fd.as_raw_fd(),
                cname.as_ptr(),
                libc::O_RDONLY | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just opened and nothing else owns it.
        Ok(unsafe { File::from_raw_fd(fd) })
    }

    /// The entries of directory `name` (`task`) of this process, through
    /// the held directory (its `/proc/self/fd` link), not by id.
    pub fn read_dir(&self, name: &str) -> io::Result<std::fs::ReadDir> {
        std::fs::read_dir(format!("/proc/self/fd/{}/{name}", self.fd.as_raw_fd()))
    }

    /// What `name` (e.g. `fd/3`) leads to, followed, through the held
    /// directory.
    pub fn metadata(&self, name: &str) -> io::Result<std::fs::Metadata> {
        std::fs::metadata(format!("/proc/self/fd/{}/{name}", self.fd.as_raw_fd()))
    }

    /// The target of link `name` (e.g. `fd/3`), through the held directory.
    pub fn read_link(&self, name: &str) -> io::Result<std::path::PathBuf> {
        std::fs::read_link(format!("/proc/self/fd/{}/{name}", self.fd.as_raw_fd()))
    }

    /// The whole of file `name`.
    pub fn read(&self, name: &str) -> io::Result<Vec<u8>> {
        let mut buf = Vec::new();
        read_whole(&mut self.open_file(name)?, &mut buf, usize::MAX)?;
        Ok(buf)
    }

    /// The `stat` facts that say whether this is still the same, live
    /// process with the same program.
    pub fn stat(&self) -> io::Result<StatFacts> {
        let raw = self.read("stat")?;
        StatFacts::parse(&raw).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("/proc/{}/stat: malformed", self.pid),
            )
        })
    }
}
