//! A process holding N distinct memory mappings, for benchmarks and tests of
//! `pmap` on large maps.
//!
//! Usage: `many_maps [N] [--file]` (N defaults to 60,000).
//!
//! Without `--file`: one anonymous reservation of N pages whose pages get
//! alternating protections (r-- / rw-), so the kernel cannot merge neighbours.
//! With `--file`: N one-page mappings of a scratch file at offsets that are not
//! contiguous with their neighbours, so every line carries a path name.
//!
//! Prints `ready N` once the mappings exist (N = regions in /proc/self/maps),
//! then sleeps until killed. `vm.max_map_count` (65,530 by default) bounds N.

use std::io::Write;
use std::os::fd::AsRawFd;

const DEFAULT_N: usize = 60_000;

fn main() {
    if let Err(e) = run() {
        eprintln!("many_maps: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), String> {
    let mut n = DEFAULT_N;
    let mut file = false;
    for a in std::env::args().skip(1) {
        match a.as_str() {
            "--file" => file = true,
            "-h" | "--help" => {
                println!("usage: many_maps [N] [--file]   (N defaults to {DEFAULT_N})");
                return Ok(());
            }
            s => {
                n = s
                    .replace('_', "")
                    .parse()
                    .map_err(|e| format!("bad mapping count {s:?}: {e}"))?;
            }
        }
    }
    if n == 0 {
        return Err("the mapping count must be at least 1".into());
    }
    if file {
        map_file_pages(n)?;
    } else {
        map_anon_alternating(n)?;
    }
    let regions = std::fs::read("/proc/self/maps")
        .map_err(|e| format!("reading /proc/self/maps: {e}"))?
        .iter()
        .filter(|&&b| b == b'\n')
        .count();
    let mut out = std::io::stdout().lock();
    writeln!(out, "ready {regions}").map_err(|e| format!("writing to stdout: {e}"))?;
    out.flush().map_err(|e| format!("flushing stdout: {e}"))?;
    drop(out);
    loop {
        // SAFETY: pause() only blocks until a signal arrives.
        unsafe { libc::pause() };
    }
}

fn page_size() -> usize {
    // SAFETY: sysconf has no memory-safety preconditions.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(p).unwrap_or(4096)
}

fn os_err(what: &str) -> String {
    let e = std::io::Error::last_os_error();
    let hint = if e.raw_os_error() == Some(libc::ENOMEM) {
        " (vm.max_map_count reached? see /proc/sys/vm/max_map_count)"
    } else {
        ""
    };
    format!("{what}: {e}{hint}")
}

/// One reservation, then every other page made writable: N regions.
fn map_anon_alternating(n: usize) -> Result<(), String> {
    let page = page_size();
    let len = n.checked_mul(page).ok_or("mapping count too large")?;
    // SAFETY: a fresh anonymous mapping at an address the kernel chooses;
    // nothing else refers to it.
    let base = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if base == libc::MAP_FAILED {
        return Err(os_err(&format!("mmap of {len} bytes")));
    }
    for i in (1..n).step_by(2) {
        // SAFETY: the page lies inside the mapping made above, which this
        // process owns and never frees.
        let rc = unsafe {
            libc::mprotect(
                base.cast::<u8>().add(i * page).cast(),
                page,
                libc::PROT_READ | libc::PROT_WRITE,
            )
        };
        if rc != 0 {
            return Err(os_err(&format!("mprotect of page {i} of {n}")));
        }
    }
    Ok(())
}

/// N one-page mappings of a scratch file; page i maps file page (i*2 % pages)
/// so neighbouring offsets never follow on, and the kernel cannot merge them.
fn map_file_pages(n: usize) -> Result<(), String> {
    let page = page_size();
    let pages = 64usize;
    let path = std::env::temp_dir().join(format!("many_maps.{}", std::process::id()));
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(|e| format!("creating {}: {e}", path.display()))?;
    f.set_len((pages * page) as u64)
        .map_err(|e| format!("sizing {}: {e}", path.display()))?;
    // The mappings keep the file alive; the name stays readable in the maps
    // (with " (deleted)" appended by the kernel) and no litter is left behind.
    let _ = std::fs::remove_file(&path);
    let len = n.checked_mul(page).ok_or("mapping count too large")?;
    // SAFETY: reserve an address range to place the file pages into.
    let base = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_NONE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if base == libc::MAP_FAILED {
        return Err(os_err(&format!("reserving {len} bytes")));
    }
    for i in 0..n {
        let off = ((i * 2) % pages) * page;
        // SAFETY: MAP_FIXED over our own reservation, page by page.
        let p = unsafe {
            libc::mmap(
                base.cast::<u8>().add(i * page).cast(),
                page,
                libc::PROT_READ,
                libc::MAP_PRIVATE | libc::MAP_FIXED,
                f.as_raw_fd(),
                off as libc::off_t,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(os_err(&format!("mmap of file page {i} of {n}")));
        }
    }
    Ok(())
}
