//! Asking the kernel what a range of a process's address space looks like
//! now, with the `PROCMAP_QUERY` ioctl on an open `/proc/PID/maps` (Linux
//! 6.11+): one exact region per call, named as `/proc/PID/maps` names it,
//! without reading and parsing the whole file.
//!
//! The model never guesses how the kernel merges or splits regions; after
//! every change it asks here and takes the answer.

use std::{fs::File, io, os::fd::AsRawFd};

use crate::map::region::{Perms, Region};

/// `struct procmap_query` from `include/uapi/linux/fs.h`.
#[repr(C)]
#[derive(Default)]
struct ProcmapQuery {
    size: u64,
    query_flags: u64,
    query_addr: u64,
    vma_start: u64,
    vma_end: u64,
    vma_flags: u64,
    vma_page_size: u64,
    vma_offset: u64,
    inode: u64,
    dev_major: u32,
    dev_minor: u32,
    vma_name_size: u32,
    build_id_size: u32,
    vma_name_addr: u64,
    build_id_addr: u64,
}
const _: () = assert!(std::mem::size_of::<ProcmapQuery>() == 104);

const VMA_READABLE: u64 = 0x01;
const VMA_WRITABLE: u64 = 0x02;
const VMA_EXECUTABLE: u64 = 0x04;
const VMA_SHARED: u64 = 0x08;
const COVERING_OR_NEXT_VMA: u64 = 0x10;

/// `_IOWR('f', 17, struct procmap_query)`.
const PROCMAP_QUERY: u64 = (3 << 30) | (104 << 16) | ((b'f' as u64) << 8) | 17;

/// Room for a path of PATH_MAX bytes and its NUL.
const NAME_BUF: usize = 4096 + 1;

/// An open `/proc/PID/maps` to query. It stays bound to the address space
/// it was opened on: after an execve it must be reopened.
pub struct KernelView {
    maps: File,
    name_buf: Vec<u8>,
    /// False on kernels without PROCMAP_QUERY: ranges are then read from
    /// the text of the same open file (slower, same answers).
    ioctl: bool,
}

impl KernelView {
    /// Opens `/proc/PID/maps` by id (tests; sessions open it through the
    /// process's held directory).
    #[cfg(test)]
    pub fn open(pid: u32) -> io::Result<KernelView> {
        let path = format!("/proc/{pid}/maps");
        Self::from_file(File::open(&path)?)
    }

    /// A view on an already open `/proc/PID/maps`.
    pub fn from_file(maps: File) -> io::Result<KernelView> {
        let mut view = KernelView {
            maps,
            name_buf: vec![0; NAME_BUF],
            ioctl: true,
        };
        view.ioctl = view.supported();
        Ok(view)
    }

    /// Whether ranges come from PROCMAP_QUERY (else from the maps text).
    #[cfg(test)]
    pub fn uses_ioctl(&self) -> bool {
        self.ioctl
    }

    /// Every region of the maps text, read from the start of the open file.
    /// An address space that is gone reads as empty: reported as ESRCH, as
    /// the ioctl does.
    fn read_text(&mut self) -> io::Result<Vec<Region>> {
        use std::io::{Read, Seek};
        self.maps.seek(io::SeekFrom::Start(0))?;
        let mut text = Vec::new();
        self.maps.read_to_end(&mut text)?;
        if text.is_empty() {
            return Err(io::Error::from_raw_os_error(libc::ESRCH));
        }
        crate::source::maps::parse(&text)
            .map(|r| r.map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string())))
            .collect()
    }

    /// Whether this kernel answers PROCMAP_QUERY (6.11+).
    pub fn supported(&mut self) -> bool {
        !matches!(self.query(0), Err(e) if e.raw_os_error() == Some(libc::ENOTTY))
    }

    /// The region containing `addr`, or else the first one above it.
    /// `Ok(None)` when there is none (or the process has no address space
    /// any more).
    pub fn query(&mut self, addr: u64) -> io::Result<Option<Region>> {
        let mut q = ProcmapQuery {
            size: std::mem::size_of::<ProcmapQuery>() as u64,
            query_flags: COVERING_OR_NEXT_VMA,
            query_addr: addr,
            vma_name_size: NAME_BUF as u32,
            vma_name_addr: self.name_buf.as_mut_ptr() as u64,
            ..Default::default()
        };
        // SAFETY: `q` is a correctly sized procmap_query, and the name
        // buffer it points to is NAME_BUF bytes long and outlives the call.
        let rc = unsafe { libc::ioctl(self.maps.as_raw_fd(), PROCMAP_QUERY as _, &mut q) };
        if rc != 0 {
            let err = io::Error::last_os_error();
            // ENOENT: nothing at or above addr. ESRCH (the address space
            // this file was opened on is gone: exit or execve) is an error
            // the caller tells apart with `is_gone`.
            return match err.raw_os_error() {
                Some(libc::ENOENT) => Ok(None),
                _ => Err(err),
            };
        }
        let name_len = (q.vma_name_size as usize)
            .saturating_sub(1)
            .min(NAME_BUF - 1);
        let name = escape_name(&self.name_buf[..name_len]);
        let flag = |bit, c| if q.vma_flags & bit != 0 { c } else { b'-' };
        Ok(Some(Region {
            start: q.vma_start,
            end: q.vma_end,
            perms: Perms([
                flag(VMA_READABLE, b'r'),
                flag(VMA_WRITABLE, b'w'),
                flag(VMA_EXECUTABLE, b'x'),
                if q.vma_flags & VMA_SHARED != 0 {
                    b's'
                } else {
                    b'p'
                },
            ]),
            offset: q.vma_offset,
            dev_major: q.dev_major,
            dev_minor: q.dev_minor,
            inode: q.inode,
            name,
        }))
    }

    /// Every region that intersects `[lo, hi)`, in address order.
    pub fn range(&mut self, lo: u64, hi: u64) -> io::Result<Vec<Region>> {
        if !self.ioctl {
            let mut all = self.read_text()?;
            // The gate page is not part of the VMA tree the ioctl walks.
            all.retain(|r| r.start < hi && r.end > lo && r.name != b"[vsyscall]");
            return Ok(all);
        }
        let mut out = Vec::new();
        let mut addr = lo;
        while addr < hi {
            match self.query(addr)? {
                Some(r) if r.start < hi => {
                    addr = r.end;
                    out.push(r);
                }
                _ => break,
            }
        }
        Ok(out)
    }

    /// The whole address space, as the VMA tree holds it (without the
    /// `[vsyscall]` gate page, which is not in the tree).
    pub fn all(&mut self) -> io::Result<Vec<Region>> {
        self.range(0, u64::MAX)
    }
}

/// `/proc/PID/maps` escapes a newline in a path as `\012` (seq_file_path
/// with "\n"); the ioctl returns the raw path, so do the same here.
fn escape_name(raw: &[u8]) -> Vec<u8> {
    if !raw.contains(&b'\n') {
        return raw.to_vec();
    }
    let mut out = Vec::with_capacity(raw.len() + 8);
    for &b in raw {
        if b == b'\n' {
            out.extend_from_slice(b"\\012");
        } else {
            out.push(b);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newline_is_escaped_like_proc_maps() {
        assert_eq!(escape_name(b"/tmp/a\nb"), b"/tmp/a\\012b".to_vec());
        assert_eq!(escape_name(b"/tmp/plain"), b"/tmp/plain".to_vec());
    }

    #[test]
    fn text_fallback_gives_the_same_regions_as_the_ioctl() {
        // A still process, so both reads see the same state.
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .expect("sleep runs");
        std::thread::sleep(std::time::Duration::from_millis(100));
        let mut ioctl = KernelView::open(child.id()).expect("open maps");
        let mut text = KernelView::open(child.id()).expect("open maps");
        text.ioctl = false;
        let a = ioctl.all().expect("ioctl view");
        let b = text.all().expect("text view");
        let _ = child.kill();
        let _ = child.wait();
        // This project's machines run 6.11+: a kernel without the ioctl
        // would leave the comparison checking the text reader against
        // itself.
        assert!(
            ioctl.uses_ioctl(),
            "this kernel has no PROCMAP_QUERY (Linux 6.11+), which the tracer uses"
        );
        assert!(a.len() > 5, "too few regions: {a:#?}");
        assert_eq!(a, b);
    }

    #[test]
    fn own_address_space_matches_proc_maps() {
        let mut view = KernelView::open(std::process::id()).expect("open own maps");
        assert!(
            view.supported(),
            "this kernel has no PROCMAP_QUERY (Linux 6.11+), which the tracer uses"
        );
        // Map something distinctive so the check is not vacuous.
        let len = 3 * 4096;
        // SAFETY: fresh anonymous mapping, unmapped below.
        let addr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(addr, libc::MAP_FAILED);
        let ours = view.all().expect("query all");
        let text = std::fs::read("/proc/self/maps").expect("read maps");
        // SAFETY: unmapping what was mapped above.
        unsafe { libc::munmap(addr, len) };
        let found = ours
            .iter()
            .any(|r| r.start == addr as u64 && r.size() == len as u64);
        assert!(found, "the new mapping is missing from {ours:#?}");
        // Every region the ioctl gave appears as the same line in maps
        // (other threads of the test binary may change regions in between,
        // so compare the distinctive one and the named file regions).
        let lines: Vec<&[u8]> = text.split(|&b| b == b'\n').collect();
        for r in ours.iter().filter(|r| r.inode != 0) {
            let prefix = format!(
                "{:08x}-{:08x} {} {:08x}",
                r.start,
                r.end,
                r.perms.as_str(),
                r.offset
            );
            assert!(
                lines
                    .iter()
                    .any(|l| l.starts_with(prefix.as_bytes()) && l.ends_with(&r.name)),
                "no maps line for {prefix} {}",
                String::from_utf8_lossy(&r.name)
            );
        }
    }
}
