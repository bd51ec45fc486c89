//! Which device minor the kernel gives SysV shared memory segments, so that
//! `/SYSV0000abcd (deleted)` regions can be shown as `[ shmid=0x... ]`.
//!
//! The internal shm mount's device number is only visible in a maps line,
//! so (like procps-ng) we create a private 42-byte segment, attach it, find
//! it in our own maps, and remove it again. Done at most once, and only when
//! a region that may be SysV shared memory is met.

use std::sync::OnceLock;

use super::maps::MapsReader;
use crate::map::region::Region;

/// The device minor of SysV shared memory regions, if it could be found.
pub fn shm_minor() -> Option<u32> {
    static MINOR: OnceLock<Option<u32>> = OnceLock::new();
    *MINOR.get_or_init(discover)
}

fn discover() -> Option<u32> {
    // SAFETY: shmget/shmat/shmdt/shmctl on a fresh private segment that
    // nothing else uses; the attached address is never dereferenced, and
    // the segment is detached and removed before returning.
    unsafe {
        let id = libc::shmget(libc::IPC_PRIVATE, 42, libc::IPC_CREAT | 0o666);
        if id == -1 {
            return None;
        }
        let addr = libc::shmat(id, std::ptr::null(), libc::SHM_RDONLY);
        let found = if addr as isize == -1 {
            None
        } else {
            let found = find_in_own_maps(addr as u64);
            libc::shmdt(addr);
            found
        };
        libc::shmctl(id, libc::IPC_RMID, std::ptr::null_mut());
        found
    }
}

fn find_in_own_maps(addr: u64) -> Option<u32> {
    let mut reader = MapsReader::open(std::process::id()).ok()?;
    let mut r = Region::default();
    while reader.next_into(&mut r).ok()? {
        if r.start == addr
            && r.dev_major == 0
            && r.perms.shared()
            && crate::sys::bytes::find_str(&r.name, b"/SYSV").is_some()
        {
            return Some(r.dev_minor);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    #[test]
    fn finds_a_minor() {
        // Root on Linux can always create a segment; a failure here means
        // SysV IPC is unavailable, which the e2e tests would show anyway.
        if let Some(m) = super::shm_minor() {
            assert!(m > 0, "shm lives on an anonymous device (00:NN, NN > 0)");
        }
    }
}
