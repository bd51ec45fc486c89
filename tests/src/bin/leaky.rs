//! Leaks known mappings from known functions, for `pmap replay --leaks`:
//! `leak_big` maps 3 x 256 KiB read-write and keeps them, `leak_small`
//! maps 2 x 64 KiB read-only and keeps them, `no_leak` maps and unmaps
//! 128 KiB 4 times. Each mapping is touched. Then it lives 300 ms and
//! exits.

use std::ptr;

// Inlined: the call site of each mmap is the function that leaks.
#[inline(always)]
fn map(len: usize, prot: i32) -> *mut libc::c_void {
    // SAFETY: an anonymous private mapping with no address hint.
    let p = unsafe {
        libc::mmap(
            ptr::null_mut(),
            len,
            prot,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    assert_ne!(p, libc::MAP_FAILED, "mmap failed");
    p
}

#[inline(never)]
fn leak_big() -> *mut libc::c_void {
    let p = map(256 * 1024, libc::PROT_READ | libc::PROT_WRITE);
    // SAFETY: the mapping is 256 KiB long and writable.
    unsafe { ptr::write_bytes(p.cast::<u8>(), 1, 256 * 1024) };
    p
}

#[inline(never)]
fn leak_small() -> *mut libc::c_void {
    map(64 * 1024, libc::PROT_READ)
}

#[inline(never)]
fn no_leak() {
    let p = map(128 * 1024, libc::PROT_READ | libc::PROT_WRITE);
    // SAFETY: unmapping what was mapped above; not used after.
    assert_eq!(unsafe { libc::munmap(p, 128 * 1024) }, 0, "munmap failed");
}

fn main() {
    let mut kept = Vec::new();
    for i in 0..4 {
        if i < 3 {
            kept.push(leak_big());
        }
        if i < 2 {
            kept.push(leak_small());
        }
        no_leak();
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    println!("leaky: kept {} mappings", kept.len());
    std::thread::sleep(std::time::Duration::from_millis(300));
}
