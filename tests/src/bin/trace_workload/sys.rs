//! Thin wrappers over the memory syscalls: each returns the kernel's result
//! or its errno, and says nothing else. The workload calls them on ranges it
//! owns (see `blocks.rs`), never on memory Rust or libc hands out.

use std::ffi::CStr;

pub const PAGE: usize = 4096;

pub type SysResult = Result<usize, i32>;

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

fn check(ret: libc::c_long) -> SysResult {
    if ret < 0 {
        Err(errno())
    } else {
        Ok(ret as usize)
    }
}

pub fn mmap(addr: usize, len: usize, prot: i32, flags: i32, fd: i32, off: usize) -> SysResult {
    // SAFETY: callers pass either a null hint, MAP_FIXED_NOREPLACE, or a
    // MAP_FIXED address inside a range this program mapped itself and no
    // Rust object lives in; the kernel validates the rest.
    let p = unsafe { libc::mmap(addr as *mut _, len, prot, flags, fd, off as libc::off_t) };
    if p == libc::MAP_FAILED {
        Err(errno())
    } else {
        Ok(p as usize)
    }
}

pub fn munmap(addr: usize, len: usize) -> SysResult {
    // SAFETY: only ranges this program mapped itself (no Rust references into them).
    check(unsafe { libc::munmap(addr as *mut _, len) } as libc::c_long)
}

pub fn mprotect(addr: usize, len: usize, prot: i32) -> SysResult {
    // SAFETY: changes protection of a range this program owns; it never
    // touches a page whose protection forbids it (see `Block::touch`).
    check(unsafe { libc::mprotect(addr as *mut _, len, prot) } as libc::c_long)
}

pub fn pkey_mprotect(addr: usize, len: usize, prot: i32, pkey: i32) -> SysResult {
    // SAFETY: as for mprotect; pkey is -1 or one allocated by pkey_alloc.
    check(unsafe { libc::syscall(libc::SYS_pkey_mprotect, addr, len, prot, pkey) })
}

pub fn pkey_alloc() -> SysResult {
    // SAFETY: no memory is involved; fails with ENOSPC/EINVAL without PKU.
    check(unsafe { libc::syscall(libc::SYS_pkey_alloc, 0, 0) })
}

pub fn mremap(
    old: usize,
    old_len: usize,
    new_len: usize,
    flags: i32,
    new_addr: usize,
) -> SysResult {
    // SAFETY: `old` is a range this program owns; with MREMAP_FIXED the
    // destination is a reservation it mapped for this purpose.
    let p = unsafe {
        libc::mremap(
            old as *mut _,
            old_len,
            new_len,
            flags,
            new_addr as *mut libc::c_void,
        )
    };
    if p == libc::MAP_FAILED {
        Err(errno())
    } else {
        Ok(p as usize)
    }
}

pub fn madvise(addr: usize, len: usize, advice: i32) -> SysResult {
    // SAFETY: advice on a range this program owns; MADV_DONTNEED/FREE only
    // discard contents nobody relies on.
    check(unsafe { libc::madvise(addr as *mut _, len, advice) } as libc::c_long)
}

pub fn mlock(addr: usize, len: usize, on_fault: bool) -> SysResult {
    let flags: libc::c_long = if on_fault { 1 } else { 0 }; // MLOCK_ONFAULT
    // SAFETY: locking pages of a range this program owns.
    check(unsafe { libc::syscall(libc::SYS_mlock2, addr, len, flags) })
}

pub fn munlock(addr: usize, len: usize) -> SysResult {
    // SAFETY: unlocking pages of a range this program owns.
    check(unsafe { libc::munlock(addr as *const _, len) } as libc::c_long)
}

pub fn shmget(key: i32, size: usize, flags: i32) -> SysResult {
    // SAFETY: creates or finds a segment; no memory is touched.
    check(unsafe { libc::shmget(key, size, flags) } as libc::c_long)
}

pub fn shmat(id: i32, flags: i32) -> SysResult {
    // SAFETY: the kernel picks the address (null hint), so nothing is replaced.
    let p = unsafe { libc::shmat(id, std::ptr::null(), flags) };
    if p as isize == -1 {
        Err(errno())
    } else {
        Ok(p as usize)
    }
}

pub fn shmdt(addr: usize) -> SysResult {
    // SAFETY: `addr` is an address shmat returned and nothing references it.
    check(unsafe { libc::shmdt(addr as *const _) } as libc::c_long)
}

pub fn shm_rmid(id: i32) -> SysResult {
    // SAFETY: IPC_RMID takes no buffer.
    check(unsafe { libc::shmctl(id, libc::IPC_RMID, std::ptr::null_mut()) } as libc::c_long)
}

pub fn memfd_create(name: &CStr) -> SysResult {
    // SAFETY: `name` is a valid C string.
    check(unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) } as libc::c_long)
}

pub fn ftruncate(fd: i32, len: usize) -> SysResult {
    // SAFETY: fd is a descriptor this program opened.
    check(unsafe { libc::ftruncate(fd, len as libc::off_t) } as libc::c_long)
}

pub fn close(fd: i32) {
    // SAFETY: fd is a descriptor this program opened and closes once.
    unsafe { libc::close(fd) };
}

pub fn sbrk(delta: isize) -> SysResult {
    // SAFETY: growth is owned by this program; shrinking is only done by
    // `Brk`, which gives back exactly what it added when the break has not
    // moved since (so malloc's heap is never cut).
    let p = unsafe { libc::sbrk(delta as libc::intptr_t) };
    if p as isize == -1 {
        Err(errno())
    } else {
        Ok(p as usize)
    }
}

pub fn dlopen(name: &CStr) -> Option<usize> {
    // SAFETY: loads a system library by name; its constructors are the
    // system's own (libz, libm have none that matter).
    let h = unsafe { libc::dlopen(name.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
    (!h.is_null()).then_some(h as usize)
}

pub fn dlclose(handle: usize) {
    // SAFETY: `handle` came from dlopen and no symbol from it is in use.
    unsafe { libc::dlclose(handle as *mut _) };
}

/// Stops the whole process (all threads) until SIGCONT: a checkpoint.
pub fn stop_self() {
    // SAFETY: raising a signal has no memory-safety preconditions.
    unsafe { libc::raise(libc::SIGSTOP) };
}

/// Reads one byte at `addr` so the page is faulted in.
pub fn touch_read(addr: usize) {
    // SAFETY: the caller checked that the page is mapped readable and backed.
    unsafe { std::ptr::read_volatile(addr as *const u8) };
}

/// Writes one byte at `addr`.
pub fn touch_write(addr: usize, v: u8) {
    // SAFETY: the caller checked that the page is mapped writable and backed.
    unsafe { std::ptr::write_volatile(addr as *mut u8, v) };
}
