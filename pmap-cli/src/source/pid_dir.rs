//! One process's `/proc/PID` directory, held open, so that every file read
//! about it belongs to the same process, and a check of whether a finished
//! read of `maps`/`smaps` is the whole map.
//!
//! A path like `/proc/123/smaps` names whatever process has id 123 when it
//! is opened: if the process exits and a new one takes its id between two
//! reads, the two reads describe different processes. Files opened relative
//! to the directory instead fail (ENOENT) once the process is gone, whoever
//! holds the id by then.
//!
//! An open `maps`/`smaps` file is bound to the address space it was opened
//! on. When that address space dies mid-read (exit or execve), the kernel
//! just ends the file early (or fails with ESRCH once the process is
//! reaped): a short read looks like a complete one. [`judge_read`] tells
//! them apart after the fact.

use std::{
    ffi::CString,
    fs::File,
    io::{self, Read, Seek, SeekFrom},
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
};

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
        self.open_file(name)?.read_to_end(&mut buf)?;
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

/// `PF_EXITING` and `PF_KTHREAD` in the flags field of `stat`.
const PF_EXITING: u64 = 0x0000_0004;
const PF_KTHREAD: u64 = 0x0020_0000;

/// Fields of `/proc/PID/stat` used to judge a read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StatFacts {
    /// 'R', 'S', ... 'Z' (zombie), 'X' (dead).
    pub state: u8,
    /// Exiting: set before the address space is released, while the
    /// state still says running (a large map takes a while to free).
    pub exiting: bool,
    /// Kernel thread: no address space, an empty map is its whole map.
    pub kernel_thread: bool,
    /// Clock ticks after boot: with the id, names one process for good.
    pub start_time: u64,
    /// `startstack`: changes with execve (a new stack, randomly placed).
    pub start_stack: u64,
    /// `start_brk`: where the heap begins (0 where the kernel hides it).
    pub start_brk: u64,
}

impl StatFacts {
    /// Parses `stat`; `None` if it is malformed. The command name (field
    /// 2) may hold blanks and parentheses: fields count from its last ')'.
    pub fn parse(raw: &[u8]) -> Option<StatFacts> {
        let close = memchr::memrchr(b')', raw)?;
        let mut fields = raw[close + 1..]
            .split(|c| c.is_ascii_whitespace())
            .filter(|f| !f.is_empty());
        let state = *fields.next()?.first()?;
        // Field n (1-based) is the (n - 3)th after the state.
        let rest: Vec<&[u8]> = fields.collect();
        let num =
            |n: usize| -> Option<u64> { std::str::from_utf8(rest.get(n - 4)?).ok()?.parse().ok() };
        let flags = num(9)?;
        Some(StatFacts {
            state,
            exiting: flags & PF_EXITING != 0,
            kernel_thread: flags & PF_KTHREAD != 0,
            start_time: num(22)?,
            start_stack: num(28)?,
            // Field 47 is in kernels since 3.3.
            start_brk: num(47).unwrap_or(0),
        })
    }

    /// A zombie (or a dead process): `pmap` shows it with an empty map.
    pub fn is_zombie(&self) -> bool {
        matches!(self.state, b'Z' | b'X')
    }

    /// A zombie, dead or exiting process has (or soon has) no address
    /// space any more.
    pub fn is_dead(&self) -> bool {
        self.exiting || matches!(self.state, b'Z' | b'X')
    }
}

/// What a read of a process's `maps`/`smaps` to its end amounted to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadEnd {
    /// The whole map of one program of the process.
    Complete,
    /// The process exited during (or right after) the read: what was read
    /// may be only part of its map.
    Exited,
    /// The process replaced its program (execve) around the read: the rows
    /// may be part of the old map, or the new map under the old header.
    Changed,
}

/// Whether the address space `file` was opened on still exists: a read
/// from the start gives at least one byte then (a live process has at
/// least one region), nothing once it is gone.
fn address_space_alive(file: &File) -> bool {
    let mut f = file;
    let mut byte = [0u8; 1];
    f.seek(SeekFrom::Start(0)).is_ok() && matches!(f.read(&mut byte), Ok(1))
}

/// Judges a read of `file` (opened in `dir`) that reached its end after
/// `rows` rows; `before` was read from `dir` before `file` was opened.
///
/// The kernel ends the file early when the address space dies mid-read, so
/// a read is complete only if that address space is still alive after it
/// (then the end seen was the real end) and the program did not change
/// between `before` and the open (same start of stack).
pub fn judge_read(dir: &PidDir, file: &File, before: &StatFacts, rows: usize) -> ReadEnd {
    // First the address space, then the process: alive now means alive
    // when the end of the file was read.
    let alive = rows > 0 && address_space_alive(file);
    let after = dir.stat();
    if alive {
        return match after {
            Ok(a) if !a.is_dead() && a.start_stack != before.start_stack => ReadEnd::Changed,
            // Exiting after a complete read does not spoil it.
            _ => ReadEnd::Complete,
        };
    }
    match after {
        Err(_) => ReadEnd::Exited,
        Ok(a) if a.is_dead() => {
            if before.is_zombie() && rows == 0 {
                // A zombie before the read: its empty map is its map.
                ReadEnd::Complete
            } else {
                ReadEnd::Exited
            }
        }
        Ok(a) if rows == 0 && a.kernel_thread && a.start_stack == before.start_stack => {
            ReadEnd::Complete
        }
        // Alive, and the address space read is gone (or was empty for a
        // user process): it exec'd.
        Ok(_) => ReadEnd::Changed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields() {
        let line = b"123 (a (b) c) S 1 2 3 4 5 2097216 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 140737 26\n";
        let s = StatFacts::parse(line).expect("parses");
        assert_eq!(s.state, b'S');
        assert!(s.kernel_thread && !s.exiting);
        assert_eq!(s.start_time, 19);
        assert_eq!(s.start_stack, 140737);
        assert!(!s.is_dead());
        assert_eq!(StatFacts::parse(b"1 (x) Z 1"), None);
    }

    #[test]
    fn own_directory_and_a_complete_read() {
        let dir = PidDir::open(std::process::id()).expect("own /proc dir");
        let before = dir.stat().expect("own stat");
        assert!(!before.kernel_thread && !before.is_dead());
        let mut f = dir.open_file("maps").expect("own maps");
        let mut text = Vec::new();
        f.read_to_end(&mut text).expect("read maps");
        let rows = text.iter().filter(|&&c| c == b'\n').count();
        assert!(rows > 0);
        assert_eq!(judge_read(&dir, &f, &before, rows), ReadEnd::Complete);
    }

    #[test]
    fn a_dead_process_is_not_read_through_its_old_directory() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("sleep runs");
        let dir = PidDir::open(child.id()).expect("child's /proc dir");
        let before = dir.stat().expect("child's stat");
        let f = dir.open_file("maps").expect("child's maps");
        let _ = child.kill();
        let _ = child.wait();
        // Reaped: the directory no longer opens anything, and a read that
        // ended now is judged as cut short.
        assert!(dir.open_file("maps").is_err());
        assert_eq!(judge_read(&dir, &f, &before, 5), ReadEnd::Exited);
    }
}
