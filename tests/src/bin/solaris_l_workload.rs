//! A process for Solaris's `-l`, `Locked` and `R`: it loads zlib with
//! `dlopen("libz.so.1")` (by its soname, as a program asks for a library),
//! locks 64 KiB with mlock, and maps 1 MiB with MAP_NORESERVE.
//!
//! Usage: `solaris_l_workload [DIR [ARGS...]]`: with DIR, it also maps a
//! file of DIR whose name is not UTF-8 (`odd-\xff\xe9.dat`); the other
//! arguments are only there to be seen in the process's command line.
//! Prints one line `ready locked=0x... noreserve=0x... [odd=0x...]`, then
//! sleeps until killed.

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

/// Maps 8 KiB of a new file of `dir` named with bytes that are not UTF-8.
fn map_odd_file(dir: std::path::PathBuf) -> usize {
    use std::os::unix::ffi::OsStrExt;
    let path = dir.join(std::ffi::OsStr::from_bytes(b"odd-\xff\xe9.dat"));
    std::fs::write(&path, [7u8; 8192]).unwrap_or_else(|_| fail("write the odd-named file"));
    let file = std::fs::File::open(&path).unwrap_or_else(|_| fail("open the odd-named file"));
    // SAFETY: a fresh private read-only mapping of a file of 8 KiB.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            8192,
            libc::PROT_READ,
            libc::MAP_PRIVATE,
            std::os::fd::AsRawFd::as_raw_fd(&file),
            0,
        )
    };
    if p == libc::MAP_FAILED {
        fail("mmap the odd-named file");
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
    let odd = std::env::args_os()
        .nth(1)
        .map(|dir| map_odd_file(dir.into()));

    let mut out = std::io::stdout();
    let odd = odd.map_or(String::new(), |a| format!(" odd={a:#x}"));
    writeln!(
        out,
        "ready locked={locked:#x} noreserve={noreserve:#x}{odd}"
    )
    .and_then(|()| out.flush())
    .unwrap_or_else(|_| fail("write the ready line"));
    loop {
        std::thread::sleep(std::time::Duration::from_secs(3600));
    }
}
