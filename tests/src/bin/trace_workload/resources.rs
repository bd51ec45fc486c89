//! What mappings are made from: temporary files (one mapped with its
//! descriptor closed right away, one unlinked while mapped, one with a space
//! in its name), memfds, SysV segments, shared libraries, and the break.

use std::ffi::CString;
use std::os::fd::IntoRawFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicI32, Ordering};

use crate::sys::{self, PAGE};

/// Pages in each temp file and memfd.
pub const FILE_PAGES: usize = 64;

pub struct FileRes {
    pub path: PathBuf,
    /// Kept open for the whole run, or `None`: opened for each mmap and
    /// closed right after it (the region keeps its name regardless).
    pub fd: Option<i32>,
    pub unlink_after_start: bool,
}

pub struct ShmSeg {
    pub id: i32,
    pub pages: usize,
    /// Marked for removal at start (its name then ends in " (deleted)");
    /// an anchor attach keeps it alive so it can be attached again.
    pub removed_early: bool,
}

/// Segment ids, so that a SIGTERM handler can remove them (a killed
/// workload must not leave segments behind).
pub static SHM_IDS: [AtomicI32; 3] = [const { AtomicI32::new(-1) }; 3];

pub struct Resources {
    pub dir: PathBuf,
    pub files: Vec<FileRes>,
    pub memfds: Vec<i32>,
    pub shm: Vec<ShmSeg>,
    /// (soname, handle if open)
    pub libs: Vec<(CString, Option<usize>)>,
    pub pkey: i32,
    /// Bytes this program added to the break and may give back.
    pub brk_owned: usize,
    /// The break right after this program last moved it.
    pub brk_end: usize,
}

fn fill_file(path: &PathBuf) -> std::io::Result<()> {
    let data: Vec<u8> = (0..FILE_PAGES * PAGE).map(|i| (i / PAGE) as u8).collect();
    std::fs::write(path, data)
}

fn open_rw(path: &PathBuf) -> Result<i32, String> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map(IntoRawFd::into_raw_fd)
        .map_err(|e| format!("opening {}: {e}", path.display()))
}

impl Resources {
    pub fn setup() -> Result<Self, String> {
        let dir = std::env::temp_dir().join(format!("pmap-trace-workload-{}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        let specs = [
            ("kept.dat", true, false),
            ("kept with space.dat", true, false),
            ("closed-after-mmap.dat", false, false),
            ("unlinked-while-mapped.dat", true, true),
        ];
        let mut files = Vec::new();
        for (name, keep, unlink) in specs {
            let path = dir.join(name);
            fill_file(&path).map_err(|e| format!("writing {}: {e}", path.display()))?;
            let fd = if keep { Some(open_rw(&path)?) } else { None };
            files.push(FileRes {
                path,
                fd,
                unlink_after_start: unlink,
            });
        }

        let mut memfds = Vec::new();
        for name in [c"pmapw", c"pmapw spaced"] {
            let fd =
                sys::memfd_create(name).map_err(|e| format!("memfd_create: errno {e}"))? as i32;
            sys::ftruncate(fd, FILE_PAGES * PAGE)
                .map_err(|e| format!("ftruncate memfd: errno {e}"))?;
            memfds.push(fd);
        }

        let mut shm = Vec::new();
        for (i, pages) in [4usize, 8, 16].into_iter().enumerate() {
            // One private segment (named SYSV00000000), two with a key.
            let id = if i == 0 {
                sys::shmget(libc::IPC_PRIVATE, pages * PAGE, libc::IPC_CREAT | 0o600)
            } else {
                // Keys from the pid, not from `rng`: a segment left by an
                // earlier, killed run makes this retry, and a retry must
                // not change the seed's sequence of calls.
                let mut r = Err(0);
                for attempt in 0..64u32 {
                    let mixed = (std::process::id() << 10 | (i as u32) << 6 | attempt)
                        .wrapping_mul(0x9e37_79b1);
                    let key = (mixed as i32 & 0x7fff_ffff) | 1;
                    r = sys::shmget(key, pages * PAGE, libc::IPC_CREAT | libc::IPC_EXCL | 0o600);
                    if r != Err(libc::EEXIST) {
                        break;
                    }
                }
                r
            }
            .map_err(|e| format!("shmget: errno {e}"))? as i32;
            SHM_IDS[i].store(id, Ordering::SeqCst);
            shm.push(ShmSeg {
                id,
                pages,
                removed_early: i != 2,
            });
        }

        let libs = [c"libz.so.1", c"libm.so.6"]
            .into_iter()
            .map(|n| (n.to_owned(), None))
            .collect();
        let pkey = sys::pkey_alloc().map(|k| k as i32).unwrap_or(-1);
        let brk_end = sys::sbrk(0).map_err(|e| format!("sbrk(0): errno {e}"))?;
        Ok(Resources {
            dir,
            files,
            memfds,
            shm,
            libs,
            pkey,
            brk_owned: 0,
            brk_end,
        })
    }

    /// A descriptor to map file `i` from, and whether to close it after.
    pub fn file_fd(&self, i: usize) -> Result<(i32, bool), String> {
        match self.files[i].fd {
            Some(fd) => Ok((fd, false)),
            None => open_rw(&self.files[i].path).map(|fd| (fd, true)),
        }
    }

    pub fn remove_shm(&self) {
        for (i, s) in self.shm.iter().enumerate() {
            let _ = sys::shm_rmid(s.id);
            SHM_IDS[i].store(-1, Ordering::SeqCst);
        }
    }

    pub fn close_all(&mut self) {
        for f in &mut self.files {
            if let Some(fd) = f.fd.take() {
                sys::close(fd);
            }
        }
        for fd in self.memfds.drain(..) {
            sys::close(fd);
        }
        for (_, h) in &mut self.libs {
            if let Some(h) = h.take() {
                sys::dlclose(h);
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// SIGTERM: remove the SysV segments, then exit.
extern "C" fn on_sigterm(_: libc::c_int) {
    for id in &SHM_IDS {
        let id = id.load(Ordering::SeqCst);
        if id >= 0 {
            let _ = sys::shm_rmid(id);
        }
    }
    // SAFETY: _exit is async-signal-safe.
    unsafe { libc::_exit(128 + libc::SIGTERM) };
}

pub fn install_sigterm_cleanup() {
    let handler: extern "C" fn(libc::c_int) = on_sigterm;
    // SAFETY: the handler only calls async-signal-safe functions (shmctl, _exit).
    unsafe { libc::signal(libc::SIGTERM, handler as libc::sighandler_t) };
}
