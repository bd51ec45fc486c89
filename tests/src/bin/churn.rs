//! Maps and unmaps the same size in a loop (the pattern glibc malloc
//! produces for blocks above M_MMAP_THRESHOLD), touching each mapping.
//! Arguments: rounds (default 100), size in bytes (default 256 KiB). Lives
//! half a second after the last round.

use std::ptr;

fn main() {
    let mut args = std::env::args().skip(1);
    let rounds: u32 = args.next().and_then(|a| a.parse().ok()).unwrap_or(100);
    let size: usize = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(256 * 1024);
    for i in 0..rounds {
        // SAFETY: an anonymous private mapping with no address hint.
        let p = unsafe {
            libc::mmap(
                ptr::null_mut(),
                size,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(p, libc::MAP_FAILED, "mmap failed");
        // SAFETY: the mapping is `size` bytes long and writable.
        unsafe { ptr::write_bytes(p.cast::<u8>(), i as u8, size) };
        // Paced, so that the tracer sees the mapping before it goes.
        std::thread::sleep(std::time::Duration::from_millis(2));
        // SAFETY: unmapping what was mapped above; not used after.
        assert_eq!(unsafe { libc::munmap(p, size) }, 0, "munmap failed");
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    println!("churn: {rounds} rounds of {size} bytes");
    // Stay alive until the tracer has looked at everything.
    std::thread::sleep(std::time::Duration::from_millis(500));
}
