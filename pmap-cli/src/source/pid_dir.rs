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
    let limit = start.saturating_add(max);
    let mut filled = start;
    let end = loop {
        if filled >= limit {
            break Ok(());
        }
        if filled == buf.len() {
            // Room for a page, then twice what came so far.
            let want = (filled - start).max(4096).min(limit - filled);
            buf.resize(filled + want, 0);
        }
        match file.read(&mut buf[filled..]) {
            Ok(0) => break Ok(()),
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => break Err(e),
        }
    };
    buf.truncate(filled);
    end
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Hands out at most `step` bytes a call, then fails if `fail` is set.
    struct Trickle<'a> {
        data: &'a [u8],
        step: usize,
        fail: bool,
    }

    impl Read for Trickle<'_> {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            if self.data.is_empty() && self.fail {
                return Err(io::Error::other("cut"));
            }
            let n = self.step.min(out.len()).min(self.data.len());
            out[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    #[test]
    fn reads_whole_files_up_to_a_limit_and_keeps_what_came_before_an_error() {
        let data: Vec<u8> = (0..20_000u32).map(|i| (i % 251) as u8).collect();
        for step in [1, 7, 4096, 100_000] {
            let mut buf = b"head".to_vec();
            let mut r = Trickle {
                data: &data,
                step,
                fail: false,
            };
            read_whole(&mut r, &mut buf, usize::MAX).expect("no error");
            assert_eq!(&buf[..4], b"head");
            assert_eq!(buf[4..], data[..]);
            let mut cut = Vec::new();
            let mut r = Trickle {
                data: &data,
                step,
                fail: false,
            };
            read_whole(&mut r, &mut cut, 5000).expect("no error");
            assert_eq!(cut, data[..5000]);
        }
        let mut buf = Vec::new();
        let mut r = Trickle {
            data: &data[..300],
            step: 100,
            fail: true,
        };
        assert!(read_whole(&mut r, &mut buf, usize::MAX).is_err());
        assert_eq!(buf, data[..300]);
        // A real /proc file, whole.
        let dir = PidDir::open(std::process::id()).expect("own /proc dir");
        let stat = dir.read("stat").expect("own stat");
        assert!(
            stat.ends_with(b"\n") && stat.starts_with(std::process::id().to_string().as_bytes())
        );
    }
}
