//! A process for Solaris's `-l`, `Locked` and `R`: it loads zlib with
//! `dlopen("libz.so.1")` (by its soname, as a program asks for a library),
//! locks 64 KiB with mlock, and maps 1 MiB with MAP_NORESERVE.
//!
//! Usage: `solaris_l_workload [ARGS...]` (the arguments are only there to
//! be seen in the process's command line). Prints one line
//! `ready locked=0x... noreserve=0x...`, then sleeps until killed.

use std::io::Write;

fn fail(what: &str) -> ! {
    eprintln!(
        "solaris_l_workload: {what}: {}",
        std::io::Error::last_os_error()
    );
    std::process::exit(2)
}

fn map(len: usize, flags: i32) -> usize {
    // SAFETY: a fresh private anonymous mapping chosen by the kernel (no
    // MAP_FIXED), so no existing memory is affected.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | flags,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        fail("mmap");
    }
    p as usize
}

fn main() {
    // SAFETY: dlopen with a NUL-terminated name; the handle is kept (never
    // closed) so the library stays mapped.
    let handle = unsafe { libc::dlopen(c"libz.so.1".as_ptr(), libc::RTLD_NOW) };
    if handle.is_null() {
        eprintln!(
            "solaris_l_workload: dlopen(\"libz.so.1\") failed: install Debian's zlib1g (`apt-get install zlib1g`)"
        );
        std::process::exit(2);
    }

    let locked = map(64 * 1024, 0);
    // SAFETY: locked..locked+64K is the mapping just made.
    if unsafe { libc::mlock(locked as *const libc::c_void, 64 * 1024) } != 0 {
        fail("mlock 64 KiB (raise `ulimit -l`)");
    }
    let noreserve = map(1024 * 1024, libc::MAP_NORESERVE);

    let mut out = std::io::stdout();
    writeln!(out, "ready locked={locked:#x} noreserve={noreserve:#x}")
        .and_then(|()| out.flush())
        .unwrap_or_else(|_| fail("write the ready line"));
    loop {
        std::thread::sleep(std::time::Duration::from_secs(3600));
    }
}
