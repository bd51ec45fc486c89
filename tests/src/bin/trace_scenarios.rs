//! trace_scenarios: short, fixed sequences of map changes made faster than
//! a tracer can follow, each a minimal reproduction of a way a live model
//! can go wrong. `trace_scenarios NAME` waits for a line on stdin, runs the
//! scenario, stopping itself (SIGSTOP) at each checkpoint, and exits 0.
//!
//! - `sysv-split`: shmat a 4-page segment, mprotect its second page (3
//!   regions) | shmdt | .
//! - `sysv-split-gone`: shmat, madvise its last page (2 regions), shmdt, all
//!   at once | .
//! - `sysv-known-split-gone`: shmat, madvise its last page | mprotect its
//!   first page and shmdt, at once | .
//! - `unlink-mapped`: map a file and close it | unlink it | .
//! - `failed-noreplace`: map 2 pages | MAP_FIXED_NOREPLACE over them fails
//!   (EEXIST, nothing changes); right after, replace them with a shared
//!   file mapping | .
//! - `anon-then-file`: map an anonymous page and at once MAP_FIXED a file
//!   page over it | .
//! - `stack-growth`: | grow the main stack by about 2 MiB (no syscall) | .
//! - `burst`: reserve 64 KiB PROT_NONE | 100 times at once: map 16 KiB rw-
//!   at its second quarter (MAP_FIXED), mprotect the first page r--, unmap
//!   the 16 KiB | . The PROT_NONE neighbours keep the kernel from merging,
//!   so each call's own effect has fixed, known rows. Prints `burst ADDR`
//!   (the 16 KiB's address, hex) on stdout first.
//! - `loader`: 20 times at once, as a dynamic loader maps a library: map 4
//!   pages of a file r--, map its second page again r-x over them
//!   (MAP_FIXED, same descriptor), close the descriptor, mprotect the last
//!   page to ---  | . The tracer derives most of these calls from their
//!   arguments, which name no file.
//! - `shared-anon-overlay`: 20 times at once: map 5 pages of shared
//!   anonymous memory at a reserved place (MAP_FIXED), then 3 pages of new
//!   shared anonymous memory over its start; then the same with two files
//!   | . Each is an object of its own, with its own inode; the same
//!   protection and offset 0 make the second look like the first
//!   everywhere but in that inode.
//! - `mapped-and-gone`: 20 times at once: map 2 pages of a file, close its
//!   descriptor, unmap them | . By the time the tracer looks, neither the
//!   mapping nor the descriptor is left to name the file by (the loader
//!   does this with /etc/ld.so.cache at every start).
//!
//! (`|` is a checkpoint.)

use std::io::BufRead;
use std::os::fd::AsRawFd;
use std::process::ExitCode;

const PAGE: usize = 4096;

fn stop() {
    // SAFETY: raising a signal has no memory-safety preconditions.
    unsafe { libc::raise(libc::SIGSTOP) };
}

fn check(what: &str, ok: bool) -> Result<(), String> {
    if ok {
        Ok(())
    } else {
        Err(format!("{what}: {}", std::io::Error::last_os_error()))
    }
}

fn mmap(addr: usize, len: usize, prot: i32, flags: i32, fd: i32) -> usize {
    // SAFETY: null hint, MAP_FIXED_NOREPLACE, or MAP_FIXED over pages this
    // program mapped itself just before and holds no reference into.
    unsafe { libc::mmap(addr as *mut _, len, prot, flags, fd, 0) as usize }
}

fn temp_file(name: &str) -> Result<(std::fs::File, std::path::PathBuf), String> {
    let path = std::env::temp_dir().join(format!("pmap-scenario-{}-{name}", std::process::id()));
    std::fs::write(&path, vec![7u8; 4 * PAGE]).map_err(|e| format!("{}: {e}", path.display()))?;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok((f, path))
}

fn sysv(split_last: bool, detach_at_once: bool) -> Result<(), String> {
    // SAFETY: plain SysV calls on a private segment this program creates;
    // the attach is never dereferenced.
    unsafe {
        let id = libc::shmget(libc::IPC_PRIVATE, 4 * PAGE, libc::IPC_CREAT | 0o600);
        check("shmget", id >= 0)?;
        let a = libc::shmat(id, std::ptr::null(), 0);
        let ok = a as isize != -1;
        libc::shmctl(id, libc::IPC_RMID, std::ptr::null_mut());
        check("shmat", ok)?;
        let a = a as usize;
        if split_last {
            let advice = libc::MADV_DONTFORK;
            check(
                "madvise",
                libc::madvise((a + 3 * PAGE) as *mut _, PAGE, advice) == 0,
            )?;
        } else {
            check(
                "mprotect",
                libc::mprotect((a + PAGE) as *mut _, PAGE, libc::PROT_READ) == 0,
            )?;
        }
        if !detach_at_once {
            stop();
        }
        check("shmdt", libc::shmdt(a as *const _) == 0)?;
    }
    stop();
    Ok(())
}

/// An attach the tracer has seen in two pieces, then changed at its start
/// and detached at once.
fn sysv_known_then_gone() -> Result<(), String> {
    // SAFETY: as in `sysv`.
    unsafe {
        let id = libc::shmget(libc::IPC_PRIVATE, 4 * PAGE, libc::IPC_CREAT | 0o600);
        check("shmget", id >= 0)?;
        let a = libc::shmat(id, std::ptr::null(), 0);
        let ok = a as isize != -1;
        libc::shmctl(id, libc::IPC_RMID, std::ptr::null_mut());
        check("shmat", ok)?;
        let a = a as usize;
        let advice = libc::MADV_DONTFORK;
        check(
            "madvise",
            libc::madvise((a + 3 * PAGE) as *mut _, PAGE, advice) == 0,
        )?;
        stop();
        check(
            "mprotect",
            libc::mprotect(a as *mut _, PAGE, libc::PROT_READ) == 0,
        )?;
        check("shmdt", libc::shmdt(a as *const _) == 0)?;
    }
    stop();
    Ok(())
}

fn unlink_mapped() -> Result<(), String> {
    let (f, path) = temp_file("unlinked")?;
    let a = mmap(0, PAGE, libc::PROT_READ, libc::MAP_SHARED, f.as_raw_fd());
    drop(f);
    check("mmap", a != libc::MAP_FAILED as usize)?;
    stop();
    std::fs::remove_file(&path).map_err(|e| format!("unlink: {e}"))?;
    stop();
    Ok(())
}

fn failed_noreplace() -> Result<(), String> {
    let (f, path) = temp_file("replace")?;
    let anon = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS;
    let rw = libc::PROT_READ | libc::PROT_WRITE;
    let a = mmap(0, 2 * PAGE, rw, anon, -1);
    check("mmap", a != libc::MAP_FAILED as usize)?;
    stop();
    let r = mmap(
        a,
        2 * PAGE,
        libc::PROT_NONE,
        anon | libc::MAP_FIXED_NOREPLACE,
        -1,
    );
    check(
        "MAP_FIXED_NOREPLACE must fail",
        r == libc::MAP_FAILED as usize,
    )?;
    let shared = libc::MAP_SHARED | libc::MAP_FIXED;
    let b = mmap(a, 2 * PAGE, libc::PROT_READ, shared, f.as_raw_fd());
    check("mmap fixed", b == a)?;
    let _ = std::fs::remove_file(path);
    stop();
    Ok(())
}

fn anon_then_file() -> Result<(), String> {
    let (f, path) = temp_file("overlay")?;
    let anon = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS;
    let a = mmap(0, PAGE, libc::PROT_NONE, anon, -1);
    check("mmap", a != libc::MAP_FAILED as usize)?;
    let shared = libc::MAP_SHARED | libc::MAP_FIXED;
    let b = mmap(a, PAGE, libc::PROT_READ, shared, f.as_raw_fd());
    check("mmap fixed", b == a)?;
    let _ = std::fs::remove_file(path);
    stop();
    Ok(())
}

fn shared_anon_overlay() -> Result<(), String> {
    let anon = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS;
    let shared = libc::MAP_SHARED | libc::MAP_ANONYMOUS | libc::MAP_FIXED;
    for _ in 0..20 {
        // PROT_NONE pages on both sides keep neighbours apart.
        let r = mmap(0, 7 * PAGE, libc::PROT_NONE, anon, -1);
        check("mmap reserve", r != libc::MAP_FAILED as usize)?;
        let a = r + PAGE;
        check(
            "mmap shared",
            mmap(a, 5 * PAGE, libc::PROT_READ, shared, -1) == a,
        )?;
        check(
            "mmap shared over it",
            mmap(a, 3 * PAGE, libc::PROT_READ, shared, -1) == a,
        )?;
    }
    let (f1, p1) = temp_file("first")?;
    let (f2, p2) = temp_file("second")?;
    let file = libc::MAP_SHARED | libc::MAP_FIXED;
    for _ in 0..20 {
        let r = mmap(0, 6 * PAGE, libc::PROT_NONE, anon, -1);
        check("mmap reserve", r != libc::MAP_FAILED as usize)?;
        let a = r + PAGE;
        let first = mmap(a, 4 * PAGE, libc::PROT_READ, file, f1.as_raw_fd());
        check("mmap first file", first == a)?;
        let second = mmap(a, 2 * PAGE, libc::PROT_READ, file, f2.as_raw_fd());
        check("mmap second file over it", second == a)?;
    }
    drop((f1, f2));
    let _ = std::fs::remove_file(p1);
    let _ = std::fs::remove_file(p2);
    stop();
    Ok(())
}

fn mapped_and_gone() -> Result<(), String> {
    let (f, path) = temp_file("gone")?;
    let _ = std::fs::remove_file(path);
    for _ in 0..20 {
        let dup = f.try_clone().map_err(|e| format!("dup: {e}"))?;
        let a = mmap(
            0,
            2 * PAGE,
            libc::PROT_READ,
            libc::MAP_PRIVATE,
            dup.as_raw_fd(),
        );
        drop(dup);
        check("mmap", a != libc::MAP_FAILED as usize)?;
        // SAFETY: unmapping the pages just mapped, never dereferenced.
        check(
            "munmap",
            unsafe { libc::munmap(a as *mut _, 2 * PAGE) } == 0,
        )?;
    }
    stop();
    Ok(())
}

#[inline(never)]
fn recurse(depth: usize) -> u8 {
    let mut buf = [0u8; 16 * 1024];
    for i in (0..buf.len()).step_by(PAGE) {
        buf[i] = depth as u8;
    }
    let buf = std::hint::black_box(buf);
    let below = if depth > 0 { recurse(depth - 1) } else { 0 };
    buf[0].wrapping_add(below)
}

fn stack_growth() -> Result<(), String> {
    stop();
    std::hint::black_box(recurse(128));
    stop();
    Ok(())
}

/// Calls on the same addresses faster than a tracer looks at them.
fn burst() -> Result<(), String> {
    let anon = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS;
    let r = mmap(0, 16 * PAGE, libc::PROT_NONE, anon, -1);
    check("mmap reserve", r != libc::MAP_FAILED as usize)?;
    let a = r + 4 * PAGE;
    println!("burst {a:x}");
    stop();
    let rw = libc::PROT_READ | libc::PROT_WRITE;
    for _ in 0..100 {
        check(
            "mmap fixed",
            mmap(a, 4 * PAGE, rw, anon | libc::MAP_FIXED, -1) == a,
        )?;
        // SAFETY: pages this program just mapped and holds no reference into.
        check("mprotect", unsafe {
            libc::mprotect(a as *mut _, PAGE, libc::PROT_READ) == 0
        })?;
        // SAFETY: as above.
        check("munmap", unsafe {
            libc::munmap(a as *mut _, 4 * PAGE) == 0
        })?;
    }
    stop();
    Ok(())
}

/// Maps one file many times the way ld.so maps a library.
fn loader() -> Result<(), String> {
    let (f, path) = temp_file("loader")?;
    let private = libc::MAP_PRIVATE;
    for _ in 0..20 {
        // A new descriptor each time, closed right after, as ld.so does.
        let fd = f.try_clone().map_err(|e| format!("dup: {e}"))?;
        let a = mmap(0, 4 * PAGE, libc::PROT_READ, private, fd.as_raw_fd());
        check("mmap", a != libc::MAP_FAILED as usize)?;
        // SAFETY: MAP_FIXED over a page this program just mapped.
        let b = unsafe {
            libc::mmap(
                (a + PAGE) as *mut _,
                PAGE,
                libc::PROT_READ | libc::PROT_EXEC,
                private | libc::MAP_FIXED,
                fd.as_raw_fd(),
                PAGE as libc::off_t,
            ) as usize
        };
        check("mmap fixed", b == a + PAGE)?;
        drop(fd);
        // SAFETY: a page this program mapped and holds no reference into.
        check("mprotect", unsafe {
            libc::mprotect((a + 3 * PAGE) as *mut _, PAGE, libc::PROT_NONE) == 0
        })?;
    }
    stop();
    let _ = std::fs::remove_file(path);
    Ok(())
}

fn main() -> ExitCode {
    let name = std::env::args().nth(1).unwrap_or_default();
    let _ = std::io::stdin().lock().read_line(&mut String::new());
    let r = match name.as_str() {
        "sysv-split" => sysv(false, false),
        "sysv-split-gone" => sysv(true, true),
        "sysv-known-split-gone" => sysv_known_then_gone(),
        "unlink-mapped" => unlink_mapped(),
        "failed-noreplace" => failed_noreplace(),
        "anon-then-file" => anon_then_file(),
        "stack-growth" => stack_growth(),
        "burst" => burst(),
        "loader" => loader(),
        "shared-anon-overlay" => shared_anon_overlay(),
        "mapped-and-gone" => mapped_and_gone(),
        other => Err(format!("unknown scenario {other:?}")),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("trace_scenarios {name}: {e}");
            ExitCode::FAILURE
        }
    }
}
