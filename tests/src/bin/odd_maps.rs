//! A process whose memory map holds every kind of region name the kernel
//! prints, for comparing pmap implementations on it:
//! SysV shared memory, memfd (kept and deleted), a deleted file, files whose
//! names have spaces, a newline, a tab, bytes that are not UTF-8, UTF-8, a
//! trailing space, a very long name, a shared anonymous region
//! (`/dev/zero (deleted)`), a named anonymous region where the kernel
//! supports it, plus optionally many threads and many mappings.
//!
//! Usage: `odd_maps DIR [--threads N] [--maps N]`. Files are created in DIR
//! (the caller removes it). Prints `ready` on stdout when all is mapped, then
//! sleeps until killed. The SysV segments are marked for removal at once, so
//! they vanish with the process.

use std::{
    ffi::{CString, OsStr},
    fs,
    io::Write,
    os::unix::ffi::OsStrExt,
    path::{Path, PathBuf},
    ptr,
};

const PAGE: usize = 4096;

fn die(what: &str) -> ! {
    eprintln!("odd_maps: {what}: {}", std::io::Error::last_os_error());
    std::process::exit(1);
}

/// Maps `len` bytes of `fd` (or anonymous memory if `fd` is -1).
fn map(fd: i32, len: usize, prot: i32, flags: i32) -> *mut libc::c_void {
    // SAFETY: a fresh mapping at an address the kernel picks; nothing else
    // refers to that memory.
    let p = unsafe { libc::mmap(ptr::null_mut(), len, prot, flags, fd, 0) };
    if p == libc::MAP_FAILED {
        die("mmap");
    }
    p
}

/// Creates `dir/name` with `pages` pages and maps it (private, read-only
/// unless `shared`). Returns the path.
fn map_file(dir: &Path, name: &[u8], pages: usize, shared: bool) -> PathBuf {
    let path = dir.join(OsStr::from_bytes(name));
    fs::write(&path, vec![b'x'; pages * PAGE]).unwrap_or_else(|e| {
        eprintln!("odd_maps: writing {}: {e}", path.display());
        std::process::exit(1)
    });
    let c = CString::new(path.as_os_str().as_bytes()).expect("no NUL in test names");
    let flags = if shared { libc::O_RDWR } else { libc::O_RDONLY };
    // SAFETY: a valid NUL-terminated path.
    let fd = unsafe { libc::open(c.as_ptr(), flags) };
    if fd < 0 {
        die("open");
    }
    let (prot, mflags) = if shared {
        (libc::PROT_READ | libc::PROT_WRITE, libc::MAP_SHARED)
    } else {
        (libc::PROT_READ, libc::MAP_PRIVATE)
    };
    let p = map(fd, pages * PAGE, prot, mflags);
    // Touch the first page so RSS is not all zero.
    // SAFETY: p points at pages*PAGE readable bytes.
    unsafe { ptr::read_volatile(p as *const u8) };
    // SAFETY: fd is ours; the mapping keeps the file referenced.
    unsafe { libc::close(fd) };
    path
}

fn sysv(size: usize, readonly: bool) {
    // SAFETY: a private segment, attached at an address the kernel picks,
    // then marked for removal (it stays until detached at exit).
    unsafe {
        let id = libc::shmget(libc::IPC_PRIVATE, size, libc::IPC_CREAT | 0o600);
        if id < 0 {
            die("shmget");
        }
        let flags = if readonly { libc::SHM_RDONLY } else { 0 };
        let p = libc::shmat(id, ptr::null(), flags);
        if p as isize == -1 {
            die("shmat");
        }
        if !readonly {
            ptr::write_volatile(p as *mut u8, 1);
        }
        libc::shmctl(id, libc::IPC_RMID, ptr::null_mut());
    }
}

fn memfd(name: &str, pages: usize, close_name: bool) {
    let c = CString::new(name).expect("no NUL");
    // SAFETY: valid name; the fd is mapped then closed.
    unsafe {
        let fd = libc::memfd_create(c.as_ptr(), 0);
        if fd < 0 {
            die("memfd_create");
        }
        if libc::ftruncate(fd, (pages * PAGE) as libc::off_t) != 0 {
            die("ftruncate");
        }
        let p = map(
            fd,
            pages * PAGE,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
        );
        ptr::write_volatile(p as *mut u8, 1);
        if close_name {
            libc::close(fd);
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let Some(dir) = args.get(1).map(PathBuf::from) else {
        eprintln!("usage: odd_maps DIR [--threads N] [--maps N]");
        std::process::exit(2);
    };
    let mut threads = 0usize;
    let mut maps = 0usize;
    let mut it = args.iter().skip(2);
    while let Some(a) = it.next() {
        let n = it.next().and_then(|v| v.parse().ok()).unwrap_or(0);
        match a.as_str() {
            "--threads" => threads = n,
            "--maps" => maps = n,
            _ => {
                eprintln!("odd_maps: unknown option {a}");
                std::process::exit(2);
            }
        }
    }

    sysv(3 * PAGE, false);
    sysv(PAGE, true);
    memfd("pmap-test", 2, false);
    memfd("pmap test gone", 1, true);
    map_file(&dir, b"plain.bin", 2, false);
    map_file(&dir, b"with space.bin", 1, false);
    map_file(&dir, b"trailing space ", 1, false);
    map_file(&dir, b"new\nline.bin", 1, false);
    map_file(&dir, b"tab\there.bin", 1, false);
    map_file(&dir, b"not-utf8-\xff\xfe.bin", 1, false);
    map_file(&dir, "utf8-caf\u{e9}.bin".as_bytes(), 1, false);
    map_file(&dir, b"shared-rw.bin", 2, true);
    let long: Vec<u8> = [b"long-".to_vec(), vec![b'n'; 180], b".bin".to_vec()].concat();
    map_file(&dir, &long, 1, false);
    let gone = map_file(&dir, b"deleted file.bin", 1, false);
    let _ = fs::remove_file(gone);

    // Shared anonymous memory shows as "/dev/zero (deleted)".
    let p = map(
        -1,
        2 * PAGE,
        libc::PROT_READ | libc::PROT_WRITE,
        libc::MAP_SHARED | libc::MAP_ANONYMOUS,
    );
    // SAFETY: p is a fresh writable 2-page mapping.
    unsafe { ptr::write_volatile(p as *mut u8, 1) };

    // A named anonymous region ("[anon:pmap test]"), where the kernel has
    // CONFIG_ANON_VMA_NAME; elsewhere this fails and the region is unnamed.
    let p = map(
        -1,
        3 * PAGE,
        libc::PROT_READ | libc::PROT_WRITE,
        libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
    );
    let name = c"pmap test";
    // SAFETY: names a region we own; failure is harmless.
    unsafe {
        libc::prctl(
            libc::PR_SET_VMA,
            libc::PR_SET_VMA_ANON_NAME as libc::c_ulong,
            p as libc::c_ulong,
            3 * PAGE,
            name.as_ptr(),
        );
    }

    // Many distinct mappings: alternate protections so neighbours never merge.
    if maps > 0 {
        let base = map(
            -1,
            maps * PAGE,
            libc::PROT_READ,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
        );
        for i in (0..maps).step_by(2) {
            // SAFETY: changes protection of one page of our own mapping.
            let rc = unsafe {
                libc::mprotect(
                    (base as usize + i * PAGE) as *mut libc::c_void,
                    PAGE,
                    libc::PROT_READ | libc::PROT_WRITE,
                )
            };
            if rc != 0 {
                die("mprotect");
            }
        }
    }

    for _ in 0..threads {
        std::thread::spawn(|| {
            loop {
                std::thread::park();
            }
        });
    }

    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "ready");
    let _ = out.flush();
    loop {
        std::thread::park();
    }
}
